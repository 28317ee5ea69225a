//! Per-capture-file indexes: which records of a capture file can hold a key, and when each
//! slice of records was captured — built from the very keys the structured clauses match
//! ([`crate::pcap::keys`]), so an index can only ever say *where to look*: the packets it points
//! to are confirmed by the same matcher and gate the scan uses (the index is an accelerator,
//! never the judge).
//!
//! An index holds:
//! - **slices**: every [`SLICE_RECORDS`] records, the byte offset of the slice's first record
//!   and the earliest and latest time in it (a file need not be sorted);
//! - **postings**: for every key (address, port, protocol) the records that carry it: record
//!   ordinals as a compressed bitmap (`roaring`) or as varint gaps, whichever is shorter.
//!
//! On disk ([`FileIndex::to_bytes`], read back with [`IndexView::open`]): a header with
//! the format version and the identity of the capture it describes (device, inode, bytes
//! indexed, modification time, hashes of its first and last indexed bytes), the slice table,
//! the sorted key table, the postings, and a SHA-256 of everything before the postings.
//! Invariants: an index that fails any check (magic, version, lengths, hash, a posting that
//! does not decode or names a record past the end) is refused whole — rebuilt, never used; a
//! query reads the tables and only the postings of the keys it asks for.

pub mod store;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::ControlFlow;

use roaring::RoaringBitmap;
use sha2::{Digest, Sha256};

use crate::pcap::{keys, mask4, mask6, Key, Timestamp};

/// Records per slice: the unit an index narrows a read to. Measured on the 8 GiB bench set
/// (`benches/index.sh`): 16 instead of 64 took a rare host's answer from 27.5 to 20.2 ms (a
/// sparse match reads and confirms a quarter of the records) and dense ones 20–25 % faster
/// too, for an index of 2.0 % of the capture instead of 1.6 %.
pub const SLICE_RECORDS: u32 = 16;

/// Distinct keys one file's index may hold. Past it the file is not indexed (it is scanned):
/// a capture of a flood with a random source per packet has a key per packet, and a posting
/// per key would cost several times the capture in memory and most of it on disk (measured:
/// 2 M random-source SYNs, 140 MB, took 817 MB to index into 75 MB). Bounds the builder's
/// memory to a few tens of MiB.
pub const MAX_KEYS: usize = 1 << 17;

const MAGIC: &[u8; 8] = b"DOCKETIX";
/// Bumped whenever the format or the meaning of a key changes (a new encapsulation the
/// dissector looks through changes which records hold a key): older indexes are rebuilt.
pub const VERSION: u32 = 6;

/// Bytes of a key in the key table: a kind byte, then the value left-aligned in 16 bytes.
const KEY_LEN: usize = 17;
/// A key-table entry: the key, its posting's offset in the blob (u64; it ends where the next
/// one starts), and the first 4 bytes of the posting's SHA-256 (a damaged posting that still
/// decodes is caught).
const ENTRY_LEN: usize = KEY_LEN + 12;
/// A posting's first byte: how the record ordinals after it are written. Each posting is
/// written both ways and the shorter kept (measured on the corpus: most keys are rare — an
/// ephemeral port, a peer seen once — and a run of small gaps costs a byte each as varints,
/// two as a roaring array).
const POSTING_ROARING: u8 = 0;
/// Gaps between ascending ordinals as LEB128 varints (the first from 0).
const POSTING_GAPS: u8 = 1;
/// A slice-table entry: offset (u64), earliest and latest time (i128 each).
const SLICE_LEN: usize = 8 + 16 + 16;
/// Header: magic, version, identity (dev, ino, size), two hashes, counts, flags, mtime, ctime,
/// end.
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 8 + 32 + 32 + 8 + 4 + 4 + 4 + 8 + 8 + 8;

/// A capture file's modification and change times (ns since the epoch) when it was indexed.
/// The change time cannot be set back by hand: a file rewritten in place with the same length
/// and a restored modification time (`cp -p`, `rsync --inplace -t`) is still told apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Times {
    /// Modification time.
    pub mtime_ns: i64,
    /// Status change time.
    pub ctime_ns: i64,
}

impl Times {
    /// The times of a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Times {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Times {
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}
/// Header flag: the records are in time order (no record earlier than the one before it).
const SORTED: u32 = 1;
/// Header flag: the slices' offsets cannot be read from (a compressed file's are in its
/// decompressed stream; a pcapng file with a section or interface block after its first
/// packet cannot be read from a slice with only its head): the file is read whole, or skipped
/// when nothing in it can match — a file-level key set.
const WHOLE: u32 = 2;

/// Which capture file an index describes, and how much of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Device of the capture file.
    pub dev: u64,
    /// Inode of the capture file.
    pub ino: u64,
    /// Bytes of the file indexed (a file that grew since is still the file indexed, up to
    /// here; one that shrank or was rewritten is not).
    pub size: u64,
    /// SHA-256 of the first (up to) 4 KiB of the file.
    pub head: [u8; 32],
    /// SHA-256 of the last (up to) 4 KiB of the indexed bytes.
    pub tail: [u8; 32],
}

/// Why an index cannot be used.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Not an index, another version, or damaged.
    #[error("index unusable: {0}")]
    Unusable(&'static str),
}

/// One slice of records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// Byte offset (in the capture file) of the slice's first record.
    pub offset: u64,
    /// Earliest packet time in the slice.
    pub first: Timestamp,
    /// Latest packet time in the slice.
    pub last: Timestamp,
}

/// A key as the key table stores it: sortable, fixed length, nets of one family contiguous.
fn encode(key: Key) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    match key {
        Key::V4(a) => {
            k[0] = 1;
            k[1..5].copy_from_slice(&a);
        }
        Key::V6(a) => {
            k[0] = 2;
            k[1..17].copy_from_slice(&a);
        }
        Key::Port(p) => {
            k[0] = 3;
            k[1..3].copy_from_slice(&p.to_be_bytes());
        }
        Key::Proto(p) => {
            k[0] = 4;
            k[1] = p;
        }
    }
    k
}

/// A posting as [`POSTING_GAPS`]: its tag, then each ordinal's distance from the one before
/// (the first from 0) as an LEB128 varint.
fn encode_gaps(p: &RoaringBitmap) -> Vec<u8> {
    let mut out = vec![POSTING_GAPS];
    let mut prev: Option<u32> = None;
    for v in p {
        let mut gap = prev.map_or(v, |q| v - q);
        prev = Some(v);
        loop {
            let byte = (gap & 0x7f) as u8;
            gap >>= 7;
            if gap == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

/// The ordinals of a [`POSTING_GAPS`] posting (after its tag); `None` for bytes that are not
/// one (a varint over 32 bits, a gap of 0 after the first, an ordinal past 2^32, a cut varint).
fn decode_gaps(mut g: &[u8]) -> Option<RoaringBitmap> {
    let mut values = Vec::with_capacity(g.len());
    let mut prev: Option<u32> = None;
    while !g.is_empty() {
        let mut gap: u32 = 0;
        let mut shift = 0;
        loop {
            let (&b, rest) = g.split_first()?;
            g = rest;
            if shift > 28 || (shift == 28 && b & 0x70 != 0) {
                return None;
            }
            gap |= u32::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let v = match prev {
            None => gap,
            Some(_) if gap == 0 => return None,
            Some(q) => q.checked_add(gap)?,
        };
        values.push(v);
        prev = Some(v);
    }
    RoaringBitmap::from_sorted_iter(values).ok()
}

/// How many ordinals a posting holds in place, in the builder's hash table, before it becomes
/// a bitmap: most keys of a file (a rare host, an ephemeral port) occur a few times, and a
/// posting in place costs one memory access per record instead of a chase through a bitmap's
/// containers (measured: that chase was a third of building an index).
const FEW: usize = 5;

/// Ordinals a frequent key gathers before they are appended to its bitmap in one go.
const BATCH: usize = 64;

/// A posting being built: a few ordinals in place, then a bitmap fed in batches. Ordinals
/// only grow; a key met twice in one record is added once.
///
/// Batches, because roaring's own single-value paths are slow for a builder: `push` onto a
/// bitmap container first finds its maximum by scanning its 1,024 words from the top, and
/// `insert` binary-searches an array container even to append (measured: each was a third
/// of building an index, on the frequent keys). `append` of sorted values does neither.
#[derive(Debug, Clone)]
enum Growing {
    Few {
        n: u8,
        ords: [u32; FEW],
    },
    Many {
        bits: RoaringBitmap,
        batch: Vec<u32>,
        last: u32,
    },
}

impl Growing {
    fn new(ordinal: u32) -> Growing {
        let mut ords = [0; FEW];
        ords[0] = ordinal;
        Growing::Few { n: 1, ords }
    }

    /// A posting built already (an index being extended).
    fn of(bits: RoaringBitmap) -> Growing {
        let last = bits.max().unwrap_or(0);
        Growing::Many {
            bits,
            batch: Vec::new(),
            last,
        }
    }

    fn push(&mut self, ordinal: u32) {
        match self {
            Growing::Few { n, ords } => {
                let len = usize::from(*n);
                if ords[len - 1] >= ordinal {
                    return;
                }
                if len < FEW {
                    ords[len] = ordinal;
                    *n += 1;
                } else {
                    let mut batch = Vec::with_capacity(BATCH);
                    batch.extend_from_slice(ords);
                    batch.push(ordinal);
                    *self = Growing::Many {
                        bits: RoaringBitmap::new(),
                        batch,
                        last: ordinal,
                    };
                }
            }
            Growing::Many { bits, batch, last } => {
                // `last` holds only once an ordinal is in (an extended index may bring none).
                let any = !batch.is_empty() || !bits.is_empty();
                if any && *last >= ordinal {
                    return;
                }
                *last = ordinal;
                batch.push(ordinal);
                if batch.len() >= BATCH {
                    let _ = bits.append(batch.drain(..));
                }
            }
        }
    }

    fn into_bitmap(self) -> RoaringBitmap {
        match self {
            Growing::Few { n, ords } => {
                RoaringBitmap::from_sorted_iter(ords[..usize::from(n)].iter().copied())
                    .expect("ordinals in order")
            }
            Growing::Many {
                mut bits, batch, ..
            } => {
                let _ = bits.append(batch);
                bits
            }
        }
    }
}

/// A key as the builder's map holds it: hashed as two words and a byte (hashing the 17 bytes
/// as a slice took the byte-string path of the hasher, a fifth of an indexer's instructions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MapKey([u8; KEY_LEN]);

impl std::hash::Hash for MapKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let k = &self.0;
        state.write_u64(u64::from_le_bytes(k[0..8].try_into().expect("8 bytes")));
        state.write_u64(u64::from_le_bytes(k[8..16].try_into().expect("8 bytes")));
        state.write_u8(k[16]);
    }
}

/// Collects an index while a capture file is read, record by record.
#[derive(Debug, Default)]
pub struct Builder {
    records: u32,
    /// Where the last record added ends (in the offsets `add` was given).
    end: u64,
    /// The latest time so far, and whether a record went back in time.
    latest: Option<Timestamp>,
    unsorted: bool,
    slices: Vec<Slice>,
    /// Hashed while building (a B-tree on 17-byte keys was over half of an indexer's time),
    /// sorted once at [`Builder::finish`].
    postings: hashbrown::HashMap<MapKey, Growing>,
    /// More than [`MAX_KEYS`] keys were met: the index is given up.
    overflow: bool,
}

impl Builder {
    /// A builder for an empty file.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Adds the next record: its byte offset in the file, time, link type and bytes.
    ///
    /// # Panics
    /// Past 2^32 records in one file (a 4-billion-packet file is not a rotation anyone writes).
    pub fn add(&mut self, offset: u64, ts: Timestamp, link_type: u16, data: &[u8]) {
        let ordinal = self.records;
        if self.latest.is_some_and(|l| ts < l) {
            self.unsorted = true;
        }
        self.latest = Some(self.latest.map_or(ts, |l| l.max(ts)));
        if ordinal % SLICE_RECORDS == 0 {
            self.slices.push(Slice {
                offset,
                first: ts,
                last: ts,
            });
        } else {
            let s = self.slices.last_mut().expect("a slice was opened");
            s.first = s.first.min(ts);
            s.last = s.last.max(ts);
        }
        let postings = &mut self.postings;
        let overflow = &mut self.overflow;
        let _ = keys(link_type, data, |key| {
            let full = postings.len() >= MAX_KEYS;
            // One lookup per key (this map is most of an indexer's time).
            match postings.entry(MapKey(encode(key))) {
                // Ordinals only grow: an append, not a search (a key twice in one record is
                // refused by `try_push` as not greater, which is what a set wants).
                hashbrown::hash_map::Entry::Occupied(mut p) => p.get_mut().push(ordinal),
                hashbrown::hash_map::Entry::Vacant(_) if full => {
                    *overflow = true;
                    return ControlFlow::Break(());
                }
                hashbrown::hash_map::Entry::Vacant(v) => {
                    v.insert(Growing::new(ordinal));
                }
            }
            ControlFlow::Continue(())
        });
        self.records = ordinal.checked_add(1).expect("fewer than 2^32 records");
    }

    /// Whether more than [`MAX_KEYS`] keys were met (the index is then not to be used).
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// Where the records added so far end (the offset after the last one).
    pub fn end_at(&mut self, end: u64) {
        self.end = end;
    }

    /// The index of what was added; `whole`: its offsets cannot be read from (see [`WHOLE`]).
    pub fn finish(self, whole: bool) -> FileIndex {
        FileIndex {
            records: self.records,
            sorted: !self.unsorted,
            whole,
            end: self.end,
            slices: self.slices,
            postings: self
                .postings
                .into_iter()
                .map(|(k, p)| (k.0, p.into_bitmap()))
                .collect(),
        }
    }
}

/// The index of one capture file, in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct FileIndex {
    records: u32,
    sorted: bool,
    whole: bool,
    end: u64,
    slices: Vec<Slice>,
    postings: BTreeMap<[u8; KEY_LEN], RoaringBitmap>,
}

/// The structured clauses as an index asks them: every group must be met (AND); a group is met
/// by any of its key ranges (OR). A host is a one-key range; a net, the range of its addresses.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    groups: Vec<Vec<([u8; KEY_LEN], [u8; KEY_LEN])>>,
}

impl Lookup {
    /// The lookup for hosts, nets (address, prefix), ports and a protocol, all AND-ed.
    pub fn new(
        hosts: &[IpAddr],
        nets: impl IntoIterator<Item = (IpAddr, u8)>,
        ports: &[u16],
        proto: Option<u8>,
    ) -> Lookup {
        let exact = |k: Key| vec![(encode(k), encode(k))];
        let addr = |a: IpAddr| match a {
            IpAddr::V4(a) => Key::V4(a.octets()),
            IpAddr::V6(a) => Key::V6(a.octets()),
        };
        let mut groups: Vec<Vec<_>> = hosts.iter().map(|&h| exact(addr(h))).collect();
        for (a, prefix) in nets {
            // A net is the range of its addresses, first to last.
            let (lo, hi) = match a {
                IpAddr::V4(v) => {
                    let (lo, mask) = (u32::from(v) & mask4(prefix), mask4(prefix));
                    (
                        Key::V4(lo.to_be_bytes()),
                        Key::V4((lo | !mask).to_be_bytes()),
                    )
                }
                IpAddr::V6(v) => {
                    let (lo, mask) = (u128::from(v) & mask6(prefix), mask6(prefix));
                    (
                        Key::V6(lo.to_be_bytes()),
                        Key::V6((lo | !mask).to_be_bytes()),
                    )
                }
            };
            groups.push(vec![(encode(lo), encode(hi))]);
        }
        groups.extend(ports.iter().map(|&p| exact(Key::Port(p))));
        groups.extend(proto.map(|p| exact(Key::Proto(p))));
        Lookup { groups }
    }
}

impl FileIndex {
    /// Records indexed.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// The index as its file holds it, for a capture of `identity` with `times`.
    pub fn to_bytes(&self, identity: &Identity, times: Times) -> Vec<u8> {
        let mut blob = Vec::new();
        let mut table = Vec::with_capacity(self.postings.len() * ENTRY_LEN);
        for (key, p) in &self.postings {
            let at = blob.len() as u64;
            let mut roaring = vec![POSTING_ROARING];
            p.serialize_into(&mut roaring).expect("writing to a Vec");
            let gaps = encode_gaps(p);
            blob.extend_from_slice(if gaps.len() < roaring.len() {
                &gaps
            } else {
                &roaring
            });
            table.extend_from_slice(key);
            table.extend_from_slice(&at.to_le_bytes());
            table.extend_from_slice(&Sha256::digest(&blob[at as usize..])[..4]);
        }
        let mut out = Vec::with_capacity(HEADER_LEN + table.len() + blob.len() + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&identity.dev.to_le_bytes());
        out.extend_from_slice(&identity.ino.to_le_bytes());
        out.extend_from_slice(&identity.size.to_le_bytes());
        out.extend_from_slice(&identity.head);
        out.extend_from_slice(&identity.tail);
        out.extend_from_slice(&u64::from(self.records).to_le_bytes());
        out.extend_from_slice(&(self.slices.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.postings.len() as u32).to_le_bytes());
        let flags = if self.sorted { SORTED } else { 0 } | if self.whole { WHOLE } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&times.mtime_ns.to_le_bytes());
        out.extend_from_slice(&times.ctime_ns.to_le_bytes());
        out.extend_from_slice(&self.end.to_le_bytes());
        for s in &self.slices {
            out.extend_from_slice(&s.offset.to_le_bytes());
            out.extend_from_slice(&s.first.0.to_le_bytes());
            out.extend_from_slice(&s.last.0.to_le_bytes());
        }
        out.extend_from_slice(&table);
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out.extend_from_slice(&blob);
        out
    }
}

/// An index file's bytes (typically a memory map), checked and read lazily: the header, slice
/// and key tables are verified when it is opened; a posting is decoded only when a query asks
/// for its key.
#[derive(Debug)]
pub struct IndexView<'a> {
    records: u32,
    flags: u32,
    times: Times,
    end: u64,
    slices: &'a [u8],
    keys: &'a [u8],
    blob: &'a [u8],
}

impl<'a> IndexView<'a> {
    /// Opens an index file's bytes for the capture `identity` (any other capture's index, an
    /// older version or a damaged file is refused).
    ///
    /// # Errors
    /// [`Error::Unusable`] naming the first check that failed.
    pub fn open(bytes: &'a [u8], identity: &Identity) -> Result<IndexView<'a>, Error> {
        Self::open_with(bytes, Some(identity), true)
    }

    /// [`open`](Self::open), comparing the identity only when one is given and hashing the
    /// tables only when `hash_tables` (the caller knows these very bytes were checked against
    /// this very capture before: see `store::Mapped::view`). Every other check is made.
    ///
    /// # Errors
    /// [`Error::Unusable`] naming the first check that failed.
    pub fn open_with(
        bytes: &'a [u8],
        identity: Option<&Identity>,
        hash_tables: bool,
    ) -> Result<IndexView<'a>, Error> {
        let bad = Error::Unusable;
        let mut r = Cursor { bytes, at: 0 };
        if r.take(8).ok_or(bad("short"))? != MAGIC {
            return Err(bad("not an index"));
        }
        if r.u32()? != VERSION {
            return Err(bad("another version"));
        }
        let found = Identity {
            dev: r.u64()?,
            ino: r.u64()?,
            size: r.u64()?,
            head: r.array()?,
            tail: r.array()?,
        };
        if identity.is_some_and(|i| found != *i) {
            return Err(bad("another file's, or the file changed"));
        }
        let records = u32::try_from(r.u64()?).map_err(|_| bad("record count"))?;
        let slices = r.u32()? as usize;
        let keys = r.u32()? as usize;
        let flags = r.u32()?;
        let times = Times {
            mtime_ns: i64::from_le_bytes(r.array()?),
            ctime_ns: i64::from_le_bytes(r.array()?),
        };
        let end = r.u64()?;
        if slices != (records as usize).div_ceil(SLICE_RECORDS as usize) {
            return Err(bad("slice count"));
        }
        let slice_end = HEADER_LEN + slices * SLICE_LEN;
        let tables = slice_end + keys * ENTRY_LEN;
        if bytes.len() < tables + 32
            || (hash_tables && Sha256::digest(&bytes[..tables])[..] != bytes[tables..tables + 32])
        {
            return Err(bad("damaged"));
        }
        let view = IndexView {
            records,
            flags,
            times,
            end,
            slices: &bytes[HEADER_LEN..slice_end],
            keys: &bytes[slice_end..tables],
            blob: &bytes[tables + 32..],
        };
        // The structure below was checked when these very bytes were first opened against this
        // capture (the caller says so by not asking for the hash): not again at every query.
        if hash_tables {
            view.check_structure(found.size)?;
        }
        Ok(view)
    }

    /// The tables' structure: keys in order, slices at their records in file order and
    /// matching the identity's size (`size`), every posting inside the blob.
    fn check_structure(&self, size: u64) -> Result<(), Error> {
        let bad = Error::Unusable;
        let keys = self.keys.len() / ENTRY_LEN;
        if (1..keys).any(|i| self.key(i - 1) >= self.key(i)) {
            return Err(bad("key table out of order"));
        }
        // Slices start at their records, in file order, each no earlier than it ends; a sliced
        // index covers exactly the bytes its identity names: a forged or damaged table that
        // still hashes cannot send a read elsewhere.
        let n = self.slices();
        let (mut prev, whole) = (None, self.whole_only());
        for i in 0..n {
            let s = self.slice(i);
            if s.first > s.last || prev.is_some_and(|p| s.offset <= p) {
                return Err(bad("slice table"));
            }
            prev = Some(s.offset);
        }
        // The first slice starts after the file's head: a classic header's 24 bytes, or a
        // pcapng section header and interfaces (more). A later start only reads more records,
        // which the gate judges anyway.
        if !whole
            && (self.end != size
                || (n > 0 && (self.slice(0).offset < 24 || self.slice(n - 1).offset >= self.end)))
        {
            return Err(bad("slices and identity disagree"));
        }
        // Every posting lies inside the file, in key order: a cut index is refused here, not
        // at a query.
        if (0..keys).any(|i| {
            let (at, len) = self.span(i);
            len == 0 || at.checked_add(len).is_none_or(|end| end > self.blob.len())
        }) {
            return Err(bad("cut short"));
        }
        Ok(())
    }

    /// Records indexed.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// Whether the records are in time order (informational: a query's answer does not depend
    /// on it, each file being filtered before the merge).
    pub fn sorted(&self) -> bool {
        self.flags & SORTED != 0
    }

    /// Whether the file can only be read whole (or skipped): see [`WHOLE`].
    pub fn whole_only(&self) -> bool {
        self.flags & WHOLE != 0
    }

    /// The capture's modification time when it was indexed (nanoseconds since the epoch).
    pub fn mtime_ns(&self) -> i64 {
        self.times.mtime_ns
    }

    /// The capture's modification and change times when it was indexed.
    pub fn times(&self) -> Times {
        self.times
    }

    /// Number of slices.
    pub fn slices(&self) -> u32 {
        (self.slices.len() / SLICE_LEN) as u32
    }

    /// Slice `i`.
    pub fn slice(&self, i: u32) -> Slice {
        let e = &self.slices[i as usize * SLICE_LEN..][..SLICE_LEN];
        let i128_at = |at: usize| i128::from_le_bytes(e[at..at + 16].try_into().expect("16 bytes"));
        Slice {
            offset: u64::from_le_bytes(e[..8].try_into().expect("8 bytes")),
            first: Timestamp(i128_at(8)),
            last: Timestamp(i128_at(24)),
        }
    }

    fn key(&self, i: usize) -> &'a [u8] {
        &self.keys[i * ENTRY_LEN..i * ENTRY_LEN + KEY_LEN]
    }

    /// Where key `i`'s posting starts in the blob.
    fn start(&self, i: usize) -> usize {
        let e = &self.keys[i * ENTRY_LEN + KEY_LEN..][..8];
        usize::try_from(u64::from_le_bytes(e.try_into().expect("8 bytes"))).unwrap_or(usize::MAX)
    }

    /// Where key `i`'s posting lies in the blob: offset and length (0 when the offsets are
    /// out of order: refused at open).
    fn span(&self, i: usize) -> (usize, usize) {
        let at = self.start(i);
        let end = if (i + 1) * ENTRY_LEN < self.keys.len() {
            self.start(i + 1)
        } else {
            self.blob.len()
        };
        (at, end.saturating_sub(at))
    }

    /// The check of key `i`'s posting: the first 4 bytes of its SHA-256.
    fn check(&self, i: usize) -> &'a [u8] {
        &self.keys[i * ENTRY_LEN + KEY_LEN + 8..(i + 1) * ENTRY_LEN]
    }

    fn posting(&self, i: usize) -> Result<RoaringBitmap, Error> {
        let bad = Error::Unusable("posting");
        let (at, len) = self.span(i);
        let raw = self
            .blob
            .get(at..at.checked_add(len).ok_or(bad)?)
            .ok_or(bad)?;
        if Sha256::digest(raw)[..4] != *self.check(i) {
            return Err(Error::Unusable("posting damaged"));
        }
        let p = match raw.split_first() {
            Some((&POSTING_ROARING, r)) => RoaringBitmap::deserialize_from(r).map_err(|_| bad)?,
            Some((&POSTING_GAPS, g)) => decode_gaps(g).ok_or(bad)?,
            _ => return Err(bad),
        };
        if p.max().is_some_and(|m| m >= self.records) {
            return Err(Error::Unusable("posting past the last record"));
        }
        Ok(p)
    }

    /// The records that can match `lookup` (every record when it has no group).
    ///
    /// # Errors
    /// A posting that does not decode: the index is unusable.
    pub fn candidates(&self, lookup: &Lookup) -> Result<RoaringBitmap, Error> {
        let n = self.keys.len() / ENTRY_LEN;
        let mut result: Option<RoaringBitmap> = None;
        for group in &lookup.groups {
            let mut any = RoaringBitmap::new();
            for (lo, hi) in group {
                // The first key not below `lo` (the table is sorted), then every key up to `hi`.
                let (mut i, mut j) = (0, n);
                while i < j {
                    let m = i + (j - i) / 2;
                    if self.key(m) < &lo[..] {
                        i = m + 1;
                    } else {
                        j = m;
                    }
                }
                while i < n && self.key(i) <= &hi[..] {
                    any |= self.posting(i)?;
                    i += 1;
                }
            }
            let r = match result {
                Some(r) => r & any,
                None => any,
            };
            if r.is_empty() {
                return Ok(r);
            }
            result = Some(r);
        }
        Ok(result.unwrap_or_else(|| (0..self.records).collect()))
    }

    /// The slices to read for `lookup` in `[after, before)`, in file order.
    ///
    /// # Errors
    /// A posting that does not decode: the index is unusable.
    pub fn plan(
        &self,
        lookup: &Lookup,
        after: Timestamp,
        before: Timestamp,
    ) -> Result<Vec<u32>, Error> {
        let mut slices: Vec<u32> = self
            .candidates(lookup)?
            .iter()
            .map(|r| r / SLICE_RECORDS)
            .collect();
        slices.dedup();
        slices.retain(|&i| {
            let s = self.slice(i);
            s.first < before && s.last >= after
        });
        Ok(slices)
    }
}

/// What an index predicts of an answer, before any packet is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// Packets.
    pub packets: u64,
    /// Bytes of capture records (headers included).
    pub bytes: u64,
}

impl IndexView<'_> {
    /// The answer of `lookup` in `[after, before)` as the index predicts it: in each slice
    /// that overlaps the window, the records that carry every key asked for, scaled by the
    /// part of the slice's time span inside the window (a slice at a window's edge); each
    /// such record counted with its slice's average record size (of the decompressed stream,
    /// for a compressed file). Exact for a window that holds whole slices, short of what a raw
    /// `bpf` clause then removes.
    ///
    /// # Errors
    /// A posting that does not decode: the index is unusable.
    pub fn estimate(
        &self,
        lookup: &Lookup,
        after: Timestamp,
        before: Timestamp,
    ) -> Result<Estimate, Error> {
        let candidates = self.candidates(lookup)?;
        let (mut packets, mut bytes) = (0f64, 0f64);
        for i in 0..self.slices() {
            let s = self.slice(i);
            if s.first >= before || s.last < after {
                continue;
            }
            let lo = i * SLICE_RECORDS;
            let hi = lo.saturating_add(SLICE_RECORDS).min(self.records);
            let hits = candidates.range_cardinality(lo..hi) as f64;
            if hits == 0.0 {
                continue;
            }
            let span = (s.last.0 - s.first.0) as f64;
            let inside = (s.last.0.min(before.0 - 1) - s.first.0.max(after.0)) as f64;
            let share = if span > 0.0 {
                (inside / span).clamp(0.0, 1.0)
            } else {
                1.0
            };
            let next = if i + 1 < self.slices() {
                self.slice(i + 1).offset
            } else {
                self.end
            };
            let per_record = next.saturating_sub(s.offset) as f64 / f64::from(hi - lo).max(1.0);
            packets += hits * share;
            bytes += hits * share * per_record;
        }
        Ok(Estimate {
            packets: packets.round() as u64,
            bytes: bytes.round() as u64,
        })
    }
}

impl IndexView<'_> {
    /// Where the records indexed end (the offset after the last one).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The latest time indexed (`None`: no record).
    pub fn latest(&self) -> Option<Timestamp> {
        (0..self.slices()).map(|i| self.slice(i).last).max()
    }

    /// A builder holding everything this index holds, to add the records a file gained since.
    ///
    /// # Errors
    /// A posting that does not decode: the index is unusable.
    pub fn resume(&self) -> Result<Builder, Error> {
        let mut postings = hashbrown::HashMap::new();
        for i in 0..self.keys.len() / ENTRY_LEN {
            let key: [u8; KEY_LEN] = self.key(i).try_into().map_err(|_| Error::Unusable("key"))?;
            postings.insert(MapKey(key), Growing::of(self.posting(i)?));
        }
        Ok(Builder {
            overflow: false,
            records: self.records,
            end: self.end,
            latest: self.latest(),
            unsorted: !self.sorted(),
            slices: (0..self.slices()).map(|i| self.slice(i)).collect(),
            postings,
        })
    }
}

/// Adds to `b` (an index of `f`'s records up to `from`, a classic pcap file) the records `f`
/// gained after `from`, up to its last whole record (a record the end of the file cuts is
/// still being written). The index and the identity of the bytes it now covers; `None` when
/// the new part cannot be read (damage, a file that changed underneath).
pub fn extend_indexing(
    f: &mut crate::pcap::CaptureFile,
    mut b: Builder,
    from: u64,
) -> Option<(FileIndex, Identity)> {
    // Classic pcap only: a grown pcapng file may have gained interfaces, and is indexed again.
    let mut magic = [0u8; 4];
    if std::os::unix::fs::FileExt::read_at(f.file(), &mut magic, 0).ok()? < 4
        || magic == [0x0a, 0x0d, 0x0d, 0x0a]
    {
        return None;
    }
    if !f.restrict(&[(0, 24), (from, f.size())]) {
        return None;
    }
    let mut at = from;
    while let Some(p) = f.next_packet() {
        match p {
            Ok(p) => {
                b.add(at, p.ts, p.link_type, &p.data);
                // The reader counts the 24-byte header it read first.
                at = from + (f.offset() - 24);
            }
            Err(crate::pcap::ReadError::Capture(e)) if e.is_truncation() => break,
            Err(_) => return None,
        }
    }
    if f.ended_early().is_some() || b.overflowed() {
        return None;
    }
    b.end_at(at);
    let identity = Identity::of(f.file(), at).ok()?;
    Some((b.finish(false), identity))
}

/// Why a capture file could not be indexed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// It could not be opened (or is not a regular file).
    #[error("{0}")]
    Open(#[from] crate::pcap::OpenError),
    /// It failed part-way (damage, or it changed while read).
    #[error("{0}")]
    Read(#[from] crate::pcap::ReadError),
    /// Its metadata could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// More distinct keys than [`MAX_KEYS`] (a flood of random addresses): scanned instead.
    #[error("more than {MAX_KEYS} distinct addresses and ports: scanned, not indexed")]
    TooManyKeys,
}

/// Indexes a capture file: every record, as far as it reads whole; returns the index and the
/// identity of the bytes it describes.
///
/// # Errors
/// [`BuildError`]: a file that cannot be opened or fails part-way.
pub fn build_file(path: &std::path::Path) -> Result<(FileIndex, Identity), BuildError> {
    let mut f = crate::pcap::CaptureFile::open(path)?;
    read_indexing(&mut f, &mut |_| {})
}

/// Reads `f` to its end, handing every packet (or the error that ended it) to `each`, and
/// indexes it on the way: one pass serves whoever reads the file anyway (a directory's refresh)
/// and the index. The index is returned when the file was read whole without damage and
/// without changing underneath. A classic pcap file's index is read by slices, and so is a
/// pcapng file's whose sections and interfaces all come before its first packet (a slice is
/// read after the file's head); a compressed file's, or another pcapng file's, is a file-level
/// key set (see [`WHOLE`]) covering the whole file.
///
/// # Errors
/// Why the file was read but not indexed.
pub fn read_indexing(
    f: &mut crate::pcap::CaptureFile,
    each: &mut dyn FnMut(&Result<crate::pcap::Packet, crate::pcap::ReadError>),
) -> Result<(FileIndex, Identity), BuildError> {
    let mut b = Builder::new();
    // Each record starts where the previous one ended (in the decompressed stream for a
    // compressed file); the first after the 24-byte header of a classic pcap file.
    let mut at: Option<u64> = None;
    let mut damaged = None;
    let pcap = |f: &crate::pcap::CaptureFile| {
        f.compression().is_none() && matches!(f.format(), Some(crate::pcap::Format::Pcap { .. }))
    };
    let pcapng = |f: &crate::pcap::CaptureFile| {
        f.compression().is_none() && f.format() == Some(crate::pcap::Format::Pcapng)
    };
    // A pcapng file's slices start at their packets' blocks, read after the file's head (its
    // section header and interfaces, up to the first packet): possible only while no section
    // or interface block comes after the first packet (each would change what later packets
    // mean). The count of those blocks at the first packet.
    let mut head_blocks = None;
    while let Some(p) = f.next_packet() {
        each(&p);
        match p {
            Ok(p) if damaged.is_none() => {
                let start = if pcapng(f) {
                    head_blocks.get_or_insert(f.state_blocks());
                    f.packet_start()
                } else {
                    at.unwrap_or(if pcap(f) { 24 } else { 0 })
                };
                b.add(start, p.ts, p.link_type, &p.data);
                at = Some(f.offset());
            }
            Ok(_) => {}
            // A last record the end of the file cuts is still being written: the index covers
            // the records before it.
            Err(crate::pcap::ReadError::Capture(e)) if e.is_truncation() => {}
            Err(e) => damaged = Some(BuildError::Read(e)),
        }
    }
    if let Some(e) = damaged {
        return Err(e);
    }
    if b.overflowed() {
        return Err(BuildError::TooManyKeys);
    }
    if let Some(e) = f.ended_early() {
        return Err(BuildError::Read(crate::pcap::ReadError::Io {
            offset: e,
            source: std::io::Error::other("the file changed while it was indexed"),
        }));
    }
    let sliced = pcap(f) || (pcapng(f) && head_blocks.is_some_and(|h| h == f.state_blocks()));
    let end = at.unwrap_or(if pcap(f) { 24 } else { 0 });
    b.end_at(end);
    // The identity of the bytes that were read, through the handle they were read from (the
    // path may name another file by now): a sliced index covers the records read; a
    // file-level one, the whole file as opened.
    let identity = Identity::of(f.file(), if sliced { end } else { f.size() })?;
    Ok((b.finish(!sliced), identity))
}

impl Identity {
    /// The identity of `file`'s first `size` bytes: an error when it has fewer.
    ///
    /// # Errors
    /// The `fstat` or a read failed, or the file is shorter than `size`.
    pub fn of(file: &std::fs::File, size: u64) -> std::io::Result<Identity> {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let meta = file.metadata()?;
        let hash = |from: u64, to: u64| -> std::io::Result<[u8; 32]> {
            let mut buf = vec![0u8; (to - from) as usize];
            file.read_exact_at(&mut buf, from)?;
            Ok(Sha256::digest(&buf).into())
        };
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size,
            head: hash(0, size.min(4096))?,
            tail: hash(size.saturating_sub(4096), size)?,
        })
    }
}

/// The bytes an index file says it covers, read from its header before it is checked (to know
/// which identity to check it against).
pub fn indexed_size(bytes: &[u8]) -> Option<u64> {
    let b = bytes.get(8 + 4 + 16..8 + 4 + 24)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Little-endian reads from a byte slice, every one bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        self.take(N)
            .and_then(|b| b.try_into().ok())
            .ok_or(Error::Unusable("short"))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, Error> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::{CaptureFile, Clauses, Next, Packet, Reader};
    use proptest::prelude::*;
    use std::path::PathBuf;

    fn corpus(rel: &str) -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/pcaps")
            .join(rel)
    }

    /// Plain pcap files of the corpus with many layers and link types between them.
    const FILES: [&str; 6] = [
        "merge/ground-truth__pcpp-tls2.pcap",
        "protocols/gre-various__tcpdump-various_gre.pcap",
        "protocols/vxlan__zeek-vxlan-encapsulated-http.pcap",
        "protocols/pppoe-over-qinq__zeek-pppoe-over-qinq.pcap",
        "protocols/ipv6-fragments__pcpp-ip6_fragments.pcap",
        "formats/sll__arkime-gtp-iphone.pcap",
    ];

    fn packets(path: &std::path::Path) -> Vec<Packet> {
        let mut f = CaptureFile::open(path).unwrap();
        let mut v = Vec::new();
        while let Some(p) = f.next_packet() {
            v.push(p.unwrap());
        }
        v
    }

    /// pcapng files of the corpus: interfaces all before the first packet (read by slices),
    /// and one whose second section comes after packets (file-level only).
    const PCAPNG: [(&str, bool); 5] = [
        ("merge/sensor-b__tls2-streams-mod3-1.pcapng", true),
        (
            "formats/pcapng-le-nsec__zeek-cooper-grill-dvwa.pcapng",
            true,
        ),
        (
            "formats/pcapng-multi-if-3-linktypes__pcpp-many_interfaces-1.pcapng",
            true,
        ),
        ("formats/pcapng-be__pcap-parser-test001-be.pcapng", true),
        ("formats/derived-pcapng-2-sections-le-then-be.pcapng", false),
    ];

    #[test]
    fn slices_point_at_their_records() {
        let pcapng = PCAPNG.iter().map(|&(rel, sliced)| (rel, sliced));
        for (rel, sliced) in FILES.iter().map(|&rel| (rel, true)).chain(pcapng) {
            let path = corpus(rel);
            let (index, id) = build_file(&path).unwrap();
            let bytes = index.to_bytes(&id, Times::default());
            let view = IndexView::open(&bytes, &id).unwrap();
            let all = packets(&path);
            assert_eq!(view.records() as usize, all.len());
            assert_eq!(view.whole_only(), !sliced, "{rel}");
            if !sliced || all.is_empty() {
                continue;
            }
            let file = std::fs::read(&path).unwrap();
            // The head every slice is read after: a classic header, or a pcapng section header
            // and its interfaces.
            let head = view.slice(0).offset as usize;
            for k in 0..all.len().div_ceil(SLICE_RECORDS as usize) {
                let s = view.slice(k as u32);
                let mut r = Reader::new();
                r.push(bytes::Bytes::copy_from_slice(&file[..head]));
                r.push(bytes::Bytes::copy_from_slice(&file[s.offset as usize..]));
                r.finish();
                let Ok(Next::Packet(p)) = r.next_packet() else {
                    panic!("{rel}: slice {k} does not start on a record");
                };
                assert_eq!(p, all[k * SLICE_RECORDS as usize], "{rel}: slice {k}");
            }
        }
    }

    #[test]
    fn a_damaged_foreign_or_old_index_is_refused() {
        let path = corpus(FILES[0]);
        let (index, id) = build_file(&path).unwrap();
        let bytes = index.to_bytes(&id, Times::default());
        assert!(IndexView::open(&bytes, &id).is_ok());
        let other = Identity {
            ino: id.ino + 1,
            ..id.clone()
        };
        assert!(IndexView::open(&bytes, &other).is_err());
        let grown = Identity {
            size: id.size + 1,
            ..id.clone()
        };
        assert!(IndexView::open(&bytes, &grown).is_err());
        let mut old = bytes.clone();
        old[8] = old[8].wrapping_add(1);
        assert_eq!(
            IndexView::open(&old, &id).unwrap_err(),
            Error::Unusable("another version")
        );
        for at in [HEADER_LEN + 3, bytes.len() / 3] {
            let mut d = bytes.clone();
            if at < HEADER_LEN + (index.slices.len() * SLICE_LEN) {
                d[at] ^= 0x40;
                assert!(IndexView::open(&d, &id).is_err(), "damage at {at}");
            }
        }
        for cut in [0, 10, HEADER_LEN, bytes.len() / 2] {
            assert!(IndexView::open(&bytes[..cut], &id).is_err(), "cut at {cut}");
        }
        // A forged slice table under a recomputed hash: a first slice inside the file's head,
        // slices out of order, a slice earlier than it starts.
        let tables = HEADER_LEN + index.slices.len() * SLICE_LEN + index.postings.len() * ENTRY_LEN;
        let forge = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut f = bytes.clone();
            edit(&mut f);
            let h = Sha256::digest(&f[..tables]);
            f[tables..tables + 32].copy_from_slice(&h);
            IndexView::open(&f, &id).map(|_| ())
        };
        assert_eq!(forge(&|_| {}), Ok(()));
        // Before the end of any file's head (a classic header is 24 bytes): refused. Later, it
        // only reads more records, which the gate judges.
        assert!(forge(&|f| f[HEADER_LEN] = 23).is_err());
        assert!(forge(&|f| f[HEADER_LEN + SLICE_LEN..HEADER_LEN + SLICE_LEN + 8].fill(0)).is_err());
        assert!(forge(&|f| f[HEADER_LEN + 8 + 15] = 0x7f).is_err());
        // A damaged posting is found when it is asked for.
        let mut d = bytes.clone();
        let n = d.len();
        d[n - 3..].fill(0xff);
        let view = IndexView::open(&d, &id).unwrap();
        // The last posting in the blob is the highest protocol number's (keys sort by kind).
        let asks = |p: u8| view.candidates(&Lookup::new(&[], [], &[], Some(p)));
        assert!((0..=255u8).any(|p| asks(p).is_err()));
    }

    #[test]
    fn gap_postings_round_trip_and_refuse_what_is_not_one() {
        let sets: [&[u32]; 5] = [
            &[0],
            &[5, 6, 7, 200, 70_000, u32::MAX],
            &[1, 3, 5, 7, 9, 11],
            &[127, 128, 16_383, 16_384, 2_097_151, 2_097_152],
            &[],
        ];
        for set in sets {
            let p: RoaringBitmap = set.iter().copied().collect();
            let g = encode_gaps(&p);
            assert_eq!(g[0], POSTING_GAPS);
            assert_eq!(decode_gaps(&g[1..]), Some(p), "{set:?}");
        }
        // A cut varint, a varint over 32 bits, a repeated ordinal, an ordinal past 2^32.
        for bad in [
            &[0x80][..],
            &[0xff, 0xff, 0xff, 0xff, 0x7f],
            &[3, 0],
            &[0xff, 0xff, 0xff, 0xff, 0x0f, 1],
        ] {
            assert_eq!(decode_gaps(bad), None, "{bad:?}");
        }
        // The shorter form is kept: a rare key as gaps, a dense one (TCP in a 26,000-record
        // trace) as a roaring bitmap.
        let (index, id) = build_file(&corpus("bulk/mix-19-real-captures-10min.pcap")).unwrap();
        let bytes = index.to_bytes(&id, Times::default());
        let view = IndexView::open(&bytes, &id).unwrap();
        let tags: Vec<u8> = (0..view.keys.len() / ENTRY_LEN)
            .map(|i| view.blob[view.span(i).0])
            .collect();
        assert!(tags.contains(&POSTING_GAPS) && tags.contains(&POSTING_ROARING));
    }

    /// What a scan selects: the ordinals of the records in the window that the matcher admits.
    fn scanned(
        all: &[Packet],
        clauses: Option<Clauses>,
        after: Timestamp,
        before: Timestamp,
    ) -> Vec<u32> {
        let mut clauses = clauses;
        all.iter()
            .enumerate()
            .filter(|(_, p)| p.ts >= after && p.ts < before)
            .filter(|(_, p)| {
                clauses
                    .as_mut()
                    .is_none_or(|c| c.matches(p.link_type, &p.data))
            })
            .map(|(i, _)| i as u32)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

        /// The index is an accelerator, never the judge: every record a scan selects lies in a
        /// slice the plan reads, for any clause set and window.
        #[test]
        fn the_plan_reads_every_record_the_scan_selects(
            file in 0usize..FILES.len(),
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 4),
            hosts in 0usize..3,
            net in proptest::option::of(0u8..=32),
            port in any::<bool>(),
            proto in proptest::option::of(prop::sample::select(vec![1u8, 6, 17, 47, 58, 132])),
            window in (0.0f64..1.0, 0.0f64..1.0),
        ) {
            let path = corpus(FILES[file]);
            let all = packets(&path);
            let (index, id) = build_file(&path).unwrap();
            let bytes = index.to_bytes(&id, Times::default());
            let view = IndexView::open(&bytes, &id).unwrap();
            // Values from the file's own keys, so that clauses do match something.
            let mut addrs = Vec::new();
            let mut ports = Vec::new();
            for p in &all {
                let _ = keys(p.link_type, &p.data, |k| {
                    match k {
                        Key::V4(a) => addrs.push(IpAddr::from(a)),
                        Key::V6(a) => addrs.push(IpAddr::from(a)),
                        Key::Port(n) => ports.push(n),
                        Key::Proto(_) => {}
                    }
                    ControlFlow::Continue(())
                });
            }
            let hosts: Vec<IpAddr> = (0..hosts.min(addrs.len())).map(|i| *picks[i].get(&addrs)).collect();
            let nets: Vec<(IpAddr, u8)> = match (net, addrs.is_empty()) {
                (Some(bits), false) => {
                    let a = *picks[2].get(&addrs);
                    vec![(a, if a.is_ipv4() { bits } else { bits * 4 })]
                }
                _ => Vec::new(),
            };
            let ports: Vec<u16> = if port && !ports.is_empty() { vec![*picks[3].get(&ports)] } else { Vec::new() };
            let (lo, hi) = (all.iter().map(|p| p.ts).min().unwrap(), all.iter().map(|p| p.ts).max().unwrap());
            let span = (hi.0 - lo.0) as f64;
            let (a, b) = (window.0.min(window.1), window.0.max(window.1));
            let after = Timestamp(lo.0 + (span * a) as i128);
            let before = Timestamp(lo.0 + (span * b) as i128 + 1);
            let clauses = Clauses::new(&hosts, nets.iter().copied(), &ports, proto);
            let lookup = Lookup::new(&hosts, nets.iter().copied(), &ports, proto);
            let plan = view.plan(&lookup, after, before).unwrap();
            for r in scanned(&all, clauses, after, before) {
                prop_assert!(plan.binary_search(&(r / SLICE_RECORDS)).is_ok(), "record {} missed", r);
            }
        }
    }

    #[test]
    fn a_file_out_of_time_order_is_marked_unsorted() {
        for (times, sorted) in [(vec![1, 2, 2, 3], true), (vec![1, 3, 2], false)] {
            let mut b = Builder::new();
            for (i, t) in times.iter().enumerate() {
                b.add(24 + 16 * i as u64, Timestamp(*t), 1, &[]);
            }
            let end = 24 + 16 * times.len() as u64;
            b.end_at(end);
            let id = Identity {
                dev: 1,
                ino: 2,
                size: end,
                head: [0; 32],
                tail: [0; 32],
            };
            let bytes = b.finish(false).to_bytes(
                &id,
                Times {
                    mtime_ns: 7,
                    ctime_ns: 0,
                },
            );
            let view = IndexView::open(&bytes, &id).unwrap();
            assert_eq!(view.sorted(), sorted, "{times:?}");
            assert_eq!(view.mtime_ns(), 7);
        }
    }

    /// Only files Docket could have written are read; captures gone take their indexes along.
    #[test]
    fn the_store_reads_only_its_own_files_and_prunes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::TempDir::new().unwrap();
        let capture = corpus(FILES[0]);
        let (index, id) = build_file(&capture).unwrap();
        store::save(dir.path(), &capture, &index, &id, Times::default()).unwrap();
        let file = std::fs::File::open(&capture).unwrap();
        assert!(
            store::load(dir.path(), &capture, &file, &file.metadata().unwrap())
                .is_some_and(|m| m.view().is_some())
        );
        let at = store::path_in(dir.path(), &capture);
        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(
            store::load(dir.path(), &capture, &file, &file.metadata().unwrap()).is_none(),
            "writable by others"
        );
        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::hard_link(&at, dir.path().join("second-name")).unwrap();
        assert!(
            store::load(dir.path(), &capture, &file, &file.metadata().unwrap()).is_none(),
            "two links"
        );
        std::fs::remove_file(dir.path().join("second-name")).unwrap();
        assert!(
            store::load(dir.path(), &capture, &file, &file.metadata().unwrap())
                .is_some_and(|m| m.view().is_some())
        );
        std::fs::write(dir.path().join("stale.idx.1.tmp"), b"").unwrap();
        store::prune(dir.path(), [capture.as_path()]);
        assert!(at.exists() && !dir.path().join("stale.idx.1.tmp").exists());
        store::prune(dir.path(), []);
        assert!(!at.exists(), "its capture is gone");
    }
}
