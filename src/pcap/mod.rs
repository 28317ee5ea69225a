//! Capture files and streams: the [`Packet`] type, the incremental [`Reader`] (pcap and pcapng
//! from byte chunks, zero-copy where a record lies in one chunk), and the [`Writer`] (pcap or
//! pcapng into a buffer), and [`CaptureFile`] (a capture file on disk read with `pread`,
//! safe against truncation under it). This module knows nothing of HTTP or jobs.

mod clauses;
mod dissect;
mod error;
mod file;
mod filter;
mod packet;
mod reader;
mod writer;

pub use clauses::Clauses;
pub(crate) use clauses::{mask4, mask6};
pub use dissect::{keys, Key, MAX_LAYERS};
pub use error::Error;
pub use file::{CaptureFile, Compression, Held, OpenError, ReadError, CHUNK};
pub use filter::{host_name, BpfFilter, Gate};
pub use packet::{compact, LinkType, Packet, Timestamp, NANOS_PER_SEC};
pub use reader::{
    scan_pcapng_interfaces, Format, Next, Precision, Reader, MAX_BLOCK, MAX_INTERFACES, MAX_RECORD,
    MAX_ZERO_RECORDS,
};
pub use writer::{OutputFormat, Tail, Writer};
