//! Upstreams: where a job's packets come from. Each upstream answers a query with a stream of
//! [`Message`]s on a bounded channel: first what link types it will deliver, then batches of
//! packets in time order, warnings along the way, and possibly a final failure. The channel
//! closing ends the stream; a `Failed` message before it means the stream is incomplete.
//!
//! Kinds ([`Upstream`]): [`local`] (a directory of capture files, the embedded default) and
//! [`stenographer`] (a sensor over HTTPS with a client certificate, TLS in [`sensor_tls`]).
//! Both answer the same messages, so a job mixes them freely.

pub mod local;
pub mod monitor;
pub mod sensor_tls;
pub mod stenographer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pcap::{LinkType, Packet, Precision, Timestamp};
use crate::query::Query;

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
    /// The sensor cannot be reached.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS handshake failed (wrong CA, refused client certificate, name mismatch...).
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The HTTP exchange failed (connection closed, malformed response...).
    #[error("HTTP: {0}")]
    Http(String),
    /// The sensor answered with an error status; its body says why.
    #[error("the sensor answered {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// A phase took longer than its budget.
    #[error("timed out: {phase} after {} s", after.as_secs())]
    Timeout {
        /// Which phase: connect, TLS handshake, response headers, idle, whole answer, stats.
        phase: &'static str,
        /// Its budget.
        after: Duration,
    },
    /// The answer is not a capture, or a damaged or truncated one.
    #[error("the answer is not a valid capture: {0}")]
    Capture(#[source] crate::pcap::Error),
    /// The job no longer wants the answer (internal: never reported).
    #[error("the job has gone")]
    Gone,
    /// The process ran out of file handles opening a directory's files: the answer would miss
    /// files, so the upstream fails rather than answer in part as if whole.
    #[error("out of file handles opening {}: {source}", path.display())]
    Handles {
        /// The file that could not be opened.
        path: std::path::PathBuf,
        /// EMFILE or ENFILE.
        source: std::io::Error,
    },
    /// A local directory's reader made no progress (a hung mount): it fails alone.
    #[error("stuck: no progress for {} s{}", after.as_secs(), file.as_ref().map(|f| format!(" reading {}", f.display())).unwrap_or_default())]
    Stuck {
        /// The file being opened or read, if known.
        file: Option<std::path::PathBuf>,
        /// How long nothing happened.
        after: Duration,
    },
}

impl Error {
    /// A short, fixed name of the variant: the `reason` label of the failure metrics (never
    /// the message, which carries addresses and paths).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Directory { .. } => "directory",
            Error::Unwritable(_) => "unwritable",
            Error::Connect { .. } => "connect",
            Error::Tls(_) => "tls",
            Error::Http(_) => "http",
            Error::Status { .. } => "status",
            Error::Timeout { .. } => "timeout",
            Error::Capture(_) => "capture",
            Error::Gone => "gone",
            Error::Handles { .. } => "handles",
            Error::Stuck { .. } => "stuck",
        }
    }
}

/// Result limits to push down to an upstream that can apply them (`None`: no limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// At most this many packets.
    pub packets: Option<u64>,
    /// At most this many bytes.
    pub bytes: Option<u64>,
}

/// One upstream of the registry, in configuration order (local directories first).
#[derive(Debug, Clone)]
pub enum Upstream {
    /// A local directory of capture files.
    Local(Arc<local::LocalUpstream>),
    /// A Stenographer sensor.
    Stenographer(Arc<stenographer::Sensor>),
}

/// What `/stats` shows of an upstream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    /// "local" or "stenographer".
    pub kind: &'static str,
    /// Answering (a local directory that can be read; a sensor whose stats came back).
    pub up: bool,
    /// Oldest packet held (RFC 3339), when known: data availability.
    pub oldest_timestamp: Option<String>,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The sensor's own counters (`/debug/stats`), for sensors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<serde_json::Map<String, serde_json::Value>>,
    /// A local directory's files: readable, and unreadable with reasons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<local::FileCounts>,
}

impl Upstream {
    /// Its name (`sensor/<name>`).
    pub fn name(&self) -> &str {
        match self {
            Upstream::Local(u) => u.name(),
            Upstream::Stenographer(s) => s.name(),
        }
    }

    /// Starts answering `query` on `tx` (on a task or thread of its own) until done, `tx`
    /// closes, or `cancel` fires.
    pub fn query(
        &self,
        query: &Arc<Query>,
        limits: Limits,
        tx: mpsc::Sender<Message>,
        cancel: CancellationToken,
    ) {
        match self {
            Upstream::Local(u) => {
                if let Some(oldest) = u.oldest().filter(|&o| query.after < o) {
                    let _ = tx.try_send(Message::Warning(format!(
                        "the window starts before the directory's oldest data ({})",
                        crate::query::rfc3339(oldest.0)
                    )));
                }
                u.query(Arc::clone(query), tx, cancel);
            }
            Upstream::Stenographer(s) => s.query(Arc::clone(query), limits, tx, cancel),
        }
    }

    /// Health and data availability; a sensor is asked concurrently-safe and briefly, and a
    /// dead one shows as down.
    pub async fn health(&self) -> Health {
        match self {
            Upstream::Local(u) => {
                // A missing directory (an unmounted share) shows as down, with the reason.
                let error = u.unavailable();
                Health {
                    kind: "local",
                    up: error.is_none(),
                    oldest_timestamp: u.oldest().map(|t| crate::query::rfc3339(t.0)),
                    error,
                    stats: None,
                    files: Some(u.files()),
                }
            }
            Upstream::Stenographer(s) => match s.stats().await {
                Ok(st) => Health {
                    kind: "stenographer",
                    up: true,
                    oldest_timestamp: st.oldest().map(|t: Timestamp| crate::query::rfc3339(t.0)),
                    error: None,
                    files: None,
                    stats: Some(
                        st.values
                            .into_iter()
                            .map(|(k, v)| (k, serde_json::Value::from(v)))
                            .collect(),
                    ),
                },
                Err(e) => Health {
                    kind: "stenographer",
                    up: false,
                    oldest_timestamp: None,
                    error: Some(e.to_string()),
                    stats: None,
                    files: None,
                },
            },
        }
    }
}
