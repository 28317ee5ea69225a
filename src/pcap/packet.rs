//! The unit every other module passes around: one captured packet, with its time as
//! nanoseconds since the Unix epoch and its link type.
//!
//! Invariants: `data` is the captured bytes only (no padding, no record header); `ts` can hold
//! any timestamp a pcap or pcapng file can express (pcapng allows 2^64 units with an i64
//! second offset), so arithmetic on it never overflows.

use bytes::Bytes;
use std::fmt;

/// Nanoseconds per second.
pub const NANOS_PER_SEC: i128 = 1_000_000_000;

/// A point in time: nanoseconds since 1970-01-01T00:00:00Z.
///
/// An `i128` because pcapng timestamps are 64-bit counts of arbitrary units plus a signed 64-bit
/// offset in seconds: the corpus has packets near 2^64 µs (≈ 1.8e22 ns), beyond `u64` ns.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timestamp(pub i128);

impl Timestamp {
    /// The wall clock now (the one clock every job time and relative query is read from).
    pub fn now() -> Timestamp {
        Timestamp::from(std::time::SystemTime::now())
    }

    /// From whole seconds and a sub-second fraction in `units_per_sec` units. A fraction of
    /// one second or more (invalid, but present in real files) is carried into the seconds.
    pub fn from_parts(secs: i128, frac: u64, units_per_sec: u64) -> Timestamp {
        Timestamp(secs * NANOS_PER_SEC + scale_to_nanos(frac as u128, units_per_sec))
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> i128 {
        self.0
    }

    /// Whole seconds (floored) and the nanosecond remainder in `0..1e9`.
    pub fn secs_nanos(self) -> (i128, u32) {
        (
            self.0.div_euclid(NANOS_PER_SEC),
            self.0.rem_euclid(NANOS_PER_SEC) as u32,
        )
    }
}

/// `count` units of `1/units_per_sec` s, in ns, rounded down (as Wireshark does).
pub(crate) fn scale_to_nanos(count: u128, units_per_sec: u64) -> i128 {
    let ups = units_per_sec as u128;
    let nanos = if ups == 1_000_000_000 {
        count
    } else if ups < 1_000_000_000 && 1_000_000_000 % ups == 0 {
        count * (1_000_000_000 / ups)
    } else {
        // count < 2^64 and 1e9 < 2^30: the product fits in u128.
        count * 1_000_000_000 / ups
    };
    nanos as i128
}

impl fmt::Display for Timestamp {
    /// `seconds.nanoseconds`, the form `tshark -T fields -e frame.time_epoch` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, ns) = self.secs_nanos();
        write!(f, "{s}.{ns:09}")
    }
}

/// A link-layer header type (`LINKTYPE_*` / DLT value), as the capture file declares it.
pub type LinkType = u16;

/// One captured packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Capture time.
    pub ts: Timestamp,
    /// Link type of the interface the packet was captured on.
    pub link_type: LinkType,
    /// Length of the packet on the wire (may exceed `data.len()` when the capture was cut).
    pub orig_len: u32,
    /// Captured bytes: a slice of the reader's input chunk whenever the record lay inside one.
    pub data: Bytes,
}

/// Gives a batch of packets their own copy of their bytes, one buffer for the whole batch.
///
/// A packet's `data` is a slice of the chunk its reader read ([`super::CaptureFile`]): while
/// the packet lives, so does the whole chunk. A selective filter keeps a few packets of each
/// chunk, so the packets in flight between a reader and the spool would hold many times their
/// own size; copied, they hold what they are.
pub fn compact(batch: &mut [Packet]) {
    let total: usize = batch.iter().map(|p| p.data.len()).sum();
    let mut buf = bytes::BytesMut::with_capacity(total);
    for p in batch.iter() {
        buf.extend_from_slice(&p.data);
    }
    let mut buf = buf.freeze();
    for p in batch.iter_mut() {
        p.data = buf.split_to(p.data.len());
    }
}

impl From<std::time::SystemTime> for Timestamp {
    /// A time before the epoch (a broken clock) reads as the epoch.
    fn from(t: std::time::SystemTime) -> Timestamp {
        Timestamp(
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i128),
        )
    }
}
