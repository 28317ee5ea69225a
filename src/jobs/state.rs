//! A job's one typed state: what [`super::Job`] publishes on its `watch` and what the job store
//! keeps. Every reader (http, the UI, the store) sees the same [`Snapshot`]; nothing about a
//! job's condition is kept anywhere else.
//!
//! Invariants: a final [`State`] never changes again; `end` is set exactly when the state
//! becomes final; an upstream's state moves Queued → Requesting → Done | Failed only.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::spool::WriteError;
use crate::upstream;

/// A job's overall state (Docket-py's strings where it had one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Waiting for a merge slot.
    Queued,
    /// Merging.
    Running,
    /// Every upstream answered; the capture is complete.
    Completed,
    /// Some upstreams failed; the capture holds the others' packets.
    Partial,
    /// No usable capture.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl State {
    /// Final states never change.
    pub fn is_final(self) -> bool {
        !matches!(self, State::Queued | State::Running)
    }

    /// Its name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "Queued",
            State::Running => "Running",
            State::Completed => "Completed",
            State::Partial => "Partial",
            State::Failed => "Failed",
            State::Cancelled => "Cancelled",
        }
    }

    /// Every state, in their order of life.
    pub const ALL: [State; 6] = [
        State::Queued,
        State::Running,
        State::Completed,
        State::Partial,
        State::Failed,
        State::Cancelled,
    ];

    /// The state of a name ([`State::as_str`]).
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Where an upstream stands in a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamState {
    /// Not asked yet (the job waits for a slot).
    Queued,
    /// Asked; answering.
    Requesting,
    /// Answered in full.
    Done,
    /// Failed; its `error` says why.
    Failed,
}

/// Why an upstream failed: the typed error of this run, or the text an earlier run of the
/// process recorded in the job store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// This run's error, cause kept.
    #[error(transparent)]
    Upstream(Arc<upstream::Error>),
    /// As recorded by an earlier run.
    #[error("{0}")]
    Recorded(String),
}

impl Serialize for Failure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Failure {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Failure::Recorded)
    }
}

/// One upstream's part in a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamStatus {
    /// Sensor name.
    pub name: String,
    /// Where it stands.
    pub state: UpstreamState,
    /// Packets delivered into the merge.
    pub packets: u64,
    /// Captured bytes of those packets.
    pub bytes: u64,
    /// Why it failed, or else its latest warning (Docket-py's single `error` field).
    pub error: Option<Failure>,
    /// Every warning it gave (damaged files, data older than asked for...).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// How the job hands its capture to its readers.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "mode", content = "reason", rename_all = "lowercase")]
pub enum Mode {
    /// Through the spool file (the normal case): the result is kept for later hits.
    Spooled,
    /// Straight to the clients attached, paced by the slowest; nothing is kept.
    Direct(DirectReason),
}

/// Why a job streams without a spool file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DirectReason {
    /// `spool = false` in the configuration.
    #[error("spooling is off")]
    SpoolOff,
    /// The part file could not be created.
    #[error("the spool cannot take the capture: {0}")]
    CannotCreate(Arc<crate::spool::Error>),
    /// Writing the part file failed mid-job (a full disk).
    #[error("the spool failed mid-job: {0}")]
    Failed(Arc<WriteError>),
    /// The spool's free space fell below `free_bytes` while the job wrote.
    #[error("the spool's free space fell to {free} bytes, below free_bytes = {floor}")]
    LowSpace {
        /// Free bytes seen.
        free: u64,
        /// The configured floor.
        floor: u64,
    },
}

impl Serialize for DirectReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What ended the job: with [`State`], the whole outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EndReason {
    /// Every upstream answered and packets were written.
    #[error("finished")]
    Finished,
    /// Every upstream answered, with nothing matching.
    #[error("Completed. no packets returned")]
    NoPackets,
    /// Some upstreams failed; the capture holds the others' packets.
    #[error("{failed} of {of} upstreams failed")]
    SomeUpstreamsFailed {
        /// How many failed.
        failed: usize,
        /// Of how many asked.
        of: usize,
    },
    /// Every upstream failed.
    #[error("every upstream failed")]
    AllUpstreamsFailed,
    /// `format/pcap` over inputs of more than one link type (classic pcap has one).
    #[error("classic pcap was asked for (format/pcap), and the inputs have more than one link type: ask without format/pcap (pcapng), or per sensor")]
    MixedLinkTypes,
    /// A user cancelled it.
    #[error("cancelled")]
    Cancelled,
    /// The server shut down while it ran.
    #[error("interrupted by shutdown")]
    Shutdown,
    /// The process died while it ran (found so at the next start).
    #[error("interrupted by restart")]
    Restart,
    /// Its complete capture was found in the spool, with no history (kept by an older version).
    #[error("served from the spool")]
    FoundInSpool,
    /// The capture could not be kept (the spool failed at the end).
    #[error("the capture could not be kept: {0}")]
    NotKept(Arc<WriteError>),
    /// As recorded by an earlier run.
    #[error("{0}")]
    Recorded(String),
}

impl Serialize for EndReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One entry of a job's history: a line for humans, with the state it left the job in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// When (RFC 3339, UTC).
    pub datetime: String,
    /// Who: "job" or an upstream's name.
    pub name: String,
    /// What happened.
    pub msg: String,
    /// The job's state after it.
    pub state: State,
}

/// Everything known about a job at one moment: the value of its `watch`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Overall state.
    pub state: State,
    /// Per upstream, in the job's order.
    pub upstreams: Vec<UpstreamStatus>,
    /// Packets written (counted as the merge hands its output on).
    pub packets: u64,
    /// Bytes of capture produced so far (the file's size once complete).
    pub bytes: u64,
    /// Spooled or direct.
    pub mode: Mode,
    /// The part file being written, while the job runs spooled.
    pub part: Option<std::path::PathBuf>,
    /// A limit ended the merge early.
    pub truncated_by_limit: bool,
    /// What ended it, once final.
    pub end: Option<EndReason>,
    /// When it ended (ns since the epoch).
    pub ended_ns: Option<i128>,
    /// History.
    pub events: Vec<Event>,
}
