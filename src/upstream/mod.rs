//! Upstreams: where a job's packets come from. Each upstream answers a query with a stream of
//! [`Message`]s on a bounded channel: first what link types it will deliver, then batches of
//! packets in time order, warnings along the way, and possibly a final failure. The channel
//! closing ends the stream; a `Failed` message before it means the stream is incomplete.
//!
//! Kinds: [`local`] (a directory of capture files, the embedded default). Stenographer sensors
//! come next (issue 5).

pub mod local;

use crate::pcap::{LinkType, Packet, Precision};

/// Packets per batch on an upstream's channel: large enough to amortise channel costs, small
/// enough that a batch leaves promptly.
pub const BATCH_PACKETS: usize = 256;

/// Batches buffered per upstream channel: with [`BATCH_PACKETS`], the most an upstream runs
/// ahead of the merge.
pub const CHANNEL_BATCHES: usize = 4;

/// One message of an upstream's answer.
#[derive(Debug)]
pub enum Message {
    /// The (link type, precision) pairs this answer may contain; sent before any packet.
    Declared(Vec<(LinkType, Precision)>),
    /// Packets, in the upstream's time order.
    Batch(Vec<Packet>),
    /// Something the job should record but that does not stop this upstream (a damaged file).
    Warning(String),
    /// The upstream failed; nothing follows.
    Failed(Error),
}

/// Why an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Its directory cannot be read.
    #[error("cannot read directory {path}: {source}")]
    Directory {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It delivered a packet the job's output format cannot describe (a link type the
    /// classic header does not declare, a time out of range).
    #[error("{0}")]
    Unwritable(#[source] crate::pcap::Error),
}
