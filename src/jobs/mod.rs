//! Jobs: one per distinct query ([`JobId`]), each merging its upstreams into its capture.
//!
//! Who owns what:
//! - [`Registry`] (`registry`): the map of jobs — dedup, join in flight, admission (at most
//!   `max_jobs` merging, `max_queued` waiting; beyond that requests are refused) — with no I/O
//!   under its lock; the history at start (jobs that were running are marked interrupted) and
//!   the stop of every job at shutdown.
//! - [`Job`] (`job`): one job's one typed state, [`Snapshot`], published on one `watch` —
//!   overall [`State`], each upstream's [`UpstreamStatus`] with counters and typed failure,
//!   bytes and packets, [`Mode`] (spooled or direct), the [`EndReason`] — and
//!   [`Job::open`], which tells a reader how to read the capture ([`Capture`]).
//! - The run (`run`): the merge loop, upstream messages handled in one place, and the sink
//!   that owns both the spool writer and the job's feed.
//! - The job store (`store`): SQLite history in the spool directory, written at state changes
//!   and events.
//!
//! **A job's life.** Queued → Running → Completed | Partial (some upstream failed; each says
//! why) | Failed (nothing usable: every upstream failed, a shutdown or a restart interrupted
//! it) | Cancelled. Every change is an [`Event`] with a timestamp.

mod job;
mod registry;
mod run;
mod state;
pub mod store;

pub use job::{Capture, Gone, Job, Stop};
pub use registry::{JobsConfig, Registry, Started, ESTIMATE_WITHIN};
pub use run::FLUSH_BYTES;
pub use state::{
    DirectReason, EndReason, Event, Failure, Mode, Snapshot, State, UpstreamState, UpstreamStatus,
};

/// Why a job cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spool's disk is below `free_bytes`.
    #[error("low on spool space: {free} bytes free, {needed} required to start a job")]
    InsufficientStorage {
        /// Free bytes.
        free: u64,
        /// The configured minimum.
        needed: u64,
    },
    /// Too many jobs are waiting.
    #[error("too many jobs queued ({0}); try again later")]
    Busy(usize),
    /// The request names sensors that do not exist.
    #[error("unknown sensor {0:?}")]
    UnknownSensor(String),
    /// The answer is estimated over `max_estimated_bytes` and the request did not say
    /// `ignore-weight`.
    #[error(
        "the answer is estimated at {} bytes ({} packets), over max_estimated_bytes = {}: \
         narrow the window, add host, net, port or proto clauses, or add ignore-weight",
        .0.of.bytes, .0.of.packets, .0.limit
    )]
    TooHeavy(Box<Weight>),
}

/// What the indexes estimate of a query's answer over the upstreams it asks, before any packet
/// is read (`…/estimate`, the job's JSON, the 413 of an over-weight request).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Weight {
    /// The directories' estimates, summed (packets, bytes, files estimated from their index,
    /// files counted whole).
    #[serde(flatten)]
    pub of: crate::upstream::local::Estimate,
    /// Upstreams that cannot estimate (Stenographer sensors; a directory that did not answer
    /// in time): not counted.
    pub not_estimated: Vec<String>,
    /// The configured `max_estimated_bytes` (0: no check).
    pub limit: u64,
}
