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
pub use registry::{JobsConfig, Registry};
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
}
