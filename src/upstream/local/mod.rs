//! The embedded backend: a local directory of pcap/pcapng files as one upstream.
//!
//! - **Layout** ([`Layout`]). Files in the directory and its subdirectories down to
//!   `max_depth`; symbolic links followed within the directory (outside it only with
//!   `follow_symlinks`; otherwise named as skipped); each directory read once (by device and
//!   inode). A missing directory fails each query with [`Error::Directory`], never the gateway.
//! - **Rotation names** ([`EpochName`]). A file whose name carries its start epoch is probed
//!   (its first packet only) instead of read whole; the next file of its sequence (same
//!   directory and pattern) bounds it, plus `ROTATION_SLACK`. A name its first packet
//!   contradicts is read whole. A query that reads a rotation file whole records its real
//!   range. Invariant: a file is skipped only on its real range, or on an uncontradicted name's.
//!
//! - **Time index.** Each file's first and last timestamp (min and max: a file need not be
//!   sorted), declared link types and packet count, keyed by path and remembered with the
//!   file's size and mtime. [`LocalUpstream::refresh`] re-stats the directory and rescans only
//!   files that appeared or changed; vanished files are forgotten. A query reads only files
//!   whose range overlaps its window. With an index directory the table is kept across
//!   restarts ([`catalog`]), and [`indexer`] refreshes and indexes in the background.
//! - **Order.** Each overlapping file's packets pass the gate (below) on their own; what passes
//!   is merged by timestamp with [`KWay`] in file-name order — `tcpdump -r FILE FILTER` per
//!   file, then `mergecap` — so a directory of overlapping captures answers in time order; with
//!   contiguous groups, the job's merge of directories then equals one flat `mergecap` of all
//!   files' results in that order. A file whose earliest time is known (read whole before;
//!   or, known by name and first packet, the start `overlapping` trusts too) and that is not
//!   being written is opened only when the merge reaches that time: a placeholder head no
//!   later than any of its packets stands in for it, which changes no comparison the merge
//!   makes; a file is closed when it ends. Such files are opened when the query starts all
//!   the same, unread (a descriptor, no buffer; within a quarter of the process's descriptor
//!   limit, the rest by path when reached): a file renamed, compressed away or deleted before
//!   the merge reaches it is still read as listed. A wide window holds buffers for the files
//!   it is in, not for the directory. A named file whose packets the answer took from before
//!   that start is named in the job (their order there may differ from mergecap's) and learnt.
//! - **Memory in flight.** Packets are slices of their reader's 64 KiB chunks; packets that
//!   keep less than half of the bytes read are copied out ([`pcap::compact`]) before they
//!   travel, so a selective query holds about what it sends.
//! - **Indexes** ([`crate::index`]). With an index directory, each file that is scanned at a
//!   refresh (or by the [`indexer`]) gets an index file from that same pass; a query reads an
//!   indexed classic-pcap file only in its planned slices ([`CaptureFile::restrict`]) — exact
//!   whatever the order of its records, since each file is gated before the merge —, any
//!   indexed file not at all when nothing in it can match (compressed and pcapng files
//!   have file-level indexes), and every packet read still passes the gate below. Invariant:
//!   the answer is the scan's, byte for byte. [`LocalUpstream::estimate`] predicts an answer
//!   from the indexes before anything is read.
//! - **Exact window and filter.** Every packet goes through the one [`pcap::Gate`]: the window
//!   `[after, before)`, the structured clauses at any layer ([`pcap::Clauses`]), and the raw
//!   BPF clause compiled by libpcap for the packet's link type (a link type it cannot be
//!   compiled for, `port 80` on netlink, matches nothing).
//! - **Damage.** A file that fails part-way contributes its packets before the damage and is
//!   reported as a warning; the rest of the directory still answers. A file that yields no
//!   packet because it cannot be read (bad magic, empty, first record corrupt, not a regular
//!   file, …) is named with its reason in every job over the directory and in `/stats`.
//! - **Files that change underneath.** Files are read with `pread` ([`CaptureFile`]), never
//!   mapped: a file truncated or rotated in place while a query reads it ends at its last whole
//!   record, with a warning naming it. FIFOs and devices are never opened for reading.
//! - **Stuck reads.** The directory is read on a blocking thread; a relay task forwards its
//!   messages and watches its progress. A thread that makes none for [`STUCK_AFTER`] (a hung
//!   network mount) fails the upstream alone, naming the file, and the job's slot is freed;
//!   the thread itself stays blocked in the kernel until the mount answers.

mod catalog;
pub mod indexer;
mod watch;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Error, Message, BATCH_PACKETS, CHANNEL_BATCHES};
use crate::merge::KWay;
use crate::pcap::{self, CaptureFile, LinkType, Precision, Timestamp};
use crate::query::Query;

/// What the index knows of one file (kept across restarts in the catalog).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FileEntry {
    size: u64,
    mtime: SystemTime,
    /// Earliest packet time (None: no packet).
    pub first: Option<Timestamp>,
    /// Latest packet time.
    pub last: Option<Timestamp>,
    /// Declared (link type, precision) pairs.
    pub declared: Vec<(LinkType, Precision)>,
    /// Packets readable.
    pub packets: u64,
    /// Why reading stopped early, if it did.
    pub error: Option<String>,
    /// (device, inode) when indexed: the file a query opens must still be this one.
    id: (u64, u64),
    /// For a rotation file whose name carries its start (and whose first packet agrees):
    /// (the sequence — directory and pattern —, the name's epoch). Until the file has been read
    /// whole, `last` is unknown and the next file of the sequence bounds it.
    named: Option<(Sequence, Timestamp)>,
    /// Whether an index file describes it.
    #[serde(default)]
    index: IndexState,
    /// A plain pcap file read whole: where its last whole record ends, and a hash of its first
    /// and last 4 KiB up to there. A file that grows past it with those bytes unchanged is
    /// read on from there ([`LocalUpstream::extend`]), not again from the start.
    #[serde(default)]
    read_to: Option<(u64, [u8; 32])>,
    /// Status change time (ns) when it was read: with the modification time, what tells a
    /// file rewritten in place at the same length (its modification time set back) apart.
    #[serde(default)]
    ctime: i64,
}

/// Whether a file has an index file, as the indexer last left it. Work bookkeeping only: a
/// query uses an index after checking it against the file, whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum IndexState {
    /// None yet (or it went missing): to be built.
    #[default]
    Missing,
    /// Built over the file's first `size` bytes; the index file is `bytes` long.
    Built { size: u64, bytes: u64 },
    /// Tried when the file had `size` bytes: it cannot be indexed (damaged, or more keys
    /// than an index takes); tried again once it has doubled (a growing file is not read
    /// whole again at every pass).
    Unfit { size: u64 },
    /// Its index could not be written (the index directory unusable for a moment: full,
    /// replaced, out of file handles): tried again after a pause.
    WriteFailed,
}

/// A rotation sequence: a directory, one of the epoch-name patterns, and the writer's thread
/// number when the pattern has one.
type Sequence = (PathBuf, usize, u64);

/// A file of a rotation sequence may hold packets this much past the next file's start
/// (a writer's timestamps are not strictly ordered): reading one extra file at a window's edge
/// costs little, a missed packet would not.
const ROTATION_SLACK: i128 = 5 * pcap::NANOS_PER_SEC;

/// How a directory's files are laid out (the `[[local]]` table's layout keys).
#[derive(Debug, Clone)]
pub struct Layout {
    /// Subdirectory levels read below the directory (0: the directory alone).
    pub max_depth: usize,
    /// Follow symbolic links that lead outside the directory.
    pub follow_symlinks: bool,
    /// Rotation names that carry a start epoch.
    pub epoch_names: Vec<EpochName>,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout {
            max_depth: 3,
            follow_symlinks: false,
            epoch_names: EpochName::DEFAULTS
                .iter()
                .filter_map(|n| EpochName::parse(n))
                .collect(),
        }
    }
}

/// A rotation file name with its start time in it: literal text, `{epoch}` (the start in whole
/// seconds: 9 to 12 digits, years 2001 to 9999) and at most one `{n}` (a writer's thread
/// number: files of different threads are different sequences). After the pattern a name may
/// carry a sub-second part (`.123456`, Suricata's `ts-format: usec`) and a compression
/// extension (`.gz`, `.lz4`, `.zst`, `.zstd`): a compressed rotation keeps its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochName {
    parts: Vec<NamePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NamePart {
    Text(String),
    Epoch,
    Thread,
}

impl EpochName {
    /// Suricata's pcap-log (`log.pcap.<epoch>`, in a directory per thread, and its multi mode's
    /// `log.pcap.<thread>.<epoch>`) and Security Onion's (`so-pcap.<epoch>`).
    pub const DEFAULTS: [&'static str; 3] = [
        "log.pcap.{epoch}",
        "log.pcap.{n}.{epoch}",
        "so-pcap.{epoch}",
    ];

    /// A pattern with exactly one `{epoch}` and at most one `{n}`, not side by side.
    pub fn parse(pattern: &str) -> Option<EpochName> {
        let mut parts = Vec::new();
        let mut rest = pattern;
        while !rest.is_empty() {
            let next = [("{epoch}", NamePart::Epoch), ("{n}", NamePart::Thread)]
                .into_iter()
                .filter_map(|(tok, part)| rest.find(tok).map(|at| (at, tok, part)))
                .min_by_key(|(at, _, _)| *at);
            match next {
                Some((at, tok, part)) => {
                    if at > 0 {
                        parts.push(NamePart::Text(rest[..at].to_owned()));
                    } else if matches!(parts.last(), Some(NamePart::Epoch | NamePart::Thread)) {
                        // Two numbers side by side cannot be told apart.
                        return None;
                    }
                    parts.push(part);
                    rest = &rest[at + tok.len()..];
                }
                None => {
                    parts.push(NamePart::Text(rest.to_owned()));
                    rest = "";
                }
            }
        }
        let count = |want: &NamePart| parts.iter().filter(|p| *p == want).count();
        (count(&NamePart::Epoch) == 1 && count(&NamePart::Thread) <= 1)
            .then_some(EpochName { parts })
    }

    /// The start epoch and thread number a file name carries, if it matches.
    pub fn matches(&self, name: &str) -> Option<(Timestamp, u64)> {
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let (mut rest, mut epoch, mut thread) = (name, None, 0u64);
        for part in &self.parts {
            match part {
                NamePart::Text(t) => rest = rest.strip_prefix(t.as_str())?,
                NamePart::Epoch => {
                    let n = digits(rest);
                    if !(9..=12).contains(&n) {
                        return None;
                    }
                    epoch = Some(rest[..n].parse::<i128>().ok()?);
                    rest = &rest[n..];
                }
                NamePart::Thread => {
                    let n = digits(rest);
                    if n == 0 || n > 9 {
                        return None;
                    }
                    thread = rest[..n].parse().ok()?;
                    rest = &rest[n..];
                }
            }
        }
        // A sub-second part, then a compression extension, then nothing.
        if let Some(frac) = rest.strip_prefix('.') {
            let n = digits(frac);
            if (1..=9).contains(&n) {
                rest = &frac[n..];
            }
        }
        if let Some(ext) = rest.strip_prefix('.') {
            if ["gz", "lz4", "zst", "zstd"].contains(&ext) {
                rest = "";
            }
        }
        rest.is_empty()
            .then(|| epoch.map(|e| (Timestamp(e * pcap::NANOS_PER_SEC), thread)))
            .flatten()
    }

    /// The start epoch a file name carries, if it matches.
    pub fn epoch(&self, name: &str) -> Option<Timestamp> {
        self.matches(name).map(|(t, _)| t)
    }
}

/// A directory upstream. Cheap to share (`Arc`); the index is behind a mutex held only briefly.
#[derive(Debug)]
pub struct LocalUpstream {
    name: String,
    dir: PathBuf,
    layout: Layout,
    /// Where this directory's capture indexes live (`None`: every query scans).
    index_dir: Option<PathBuf>,
    index: Mutex<HashMap<PathBuf, FileEntry>>,
    /// Held for a whole refresh, so concurrent queries do not scan the same new files twice.
    refreshing: Mutex<()>,
    /// The progress of the refresh under way, watched by those waiting for it.
    refresher: Mutex<Option<Arc<Progress>>>,
    /// Why the last refresh could not list the directory.
    unavailable: Mutex<Option<String>>,
    /// A refresh has looked at the directory (so `unavailable` says something).
    listed: std::sync::atomic::AtomicBool,
    /// The file table changed since the catalog was last written, and when that was.
    catalog: Mutex<CatalogState>,
    /// Files read whole (to learn their range, or to index them) since the start.
    reads: AtomicU64,
    /// The tree's change watch, once the refresher has set it up: a query skips its refresh
    /// while it says nothing changed.
    watch: std::sync::OnceLock<watch::Watch>,
}

/// When the catalog was written, and whether the file table changed since.
#[derive(Debug, Default)]
struct CatalogState {
    dirty: bool,
    saved: Option<std::time::Instant>,
}

/// The catalog is written at most this often while files change (a growing capture changes at
/// every refresh).
const CATALOG_EVERY: Duration = Duration::from_secs(2);

/// A thread that makes no progress for this long is stuck (a hung mount).
pub const STUCK_AFTER: Duration = Duration::from_secs(30);

/// Unreadable files named one by one in a job; more are counted.
const NAMED_UNREADABLE: usize = 20;

/// What the blocking reader has done, for the relay that watches it.
#[derive(Debug, Default)]
struct Progress {
    /// Bumped at every file opened and every packet read.
    steps: AtomicU64,
    /// The file being opened or read.
    file: Mutex<Option<PathBuf>>,
}

impl Progress {
    fn opening(&self, path: &Path) {
        *self.file.lock().expect("progress lock") = Some(path.to_owned());
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    fn step(&self) {
        self.steps.fetch_add(1, Ordering::Relaxed);
    }
}

impl FileEntry {
    /// Whether it can be read at all (an unreadable file is noted with its reason and no
    /// packet).
    fn readable(&self) -> bool {
        self.packets > 0 || self.error.is_none()
    }

    /// Whether the indexer has work on it: readable, and neither indexed nor found unfit at
    /// its present size.
    fn wants_index(&self) -> bool {
        self.readable()
            && match self.index {
                IndexState::Built { size, .. } => size != self.size,
                IndexState::Unfit { size } => {
                    self.size < size || self.size >= size.saturating_mul(2)
                }
                IndexState::Missing | IndexState::WriteFailed => true,
            }
    }

    /// A file of `size` bytes modified at `mtime`, before it is read.
    fn unread(size: u64, mtime: SystemTime) -> FileEntry {
        FileEntry {
            size,
            mtime,
            first: None,
            last: None,
            declared: Vec::new(),
            packets: 0,
            error: None,
            id: (0, 0),
            named: None,
            index: IndexState::Missing,
            read_to: None,
            ctime: 0,
        }
    }

    /// No packet of the file is earlier than this: its earliest time once read whole; known by
    /// name and first packet, the earlier of the two less the slack — the start
    /// [`LocalUpstream::overlapping`] gives it too (trusted until the file is read whole).
    fn earliest(&self) -> Option<Timestamp> {
        match (&self.named, self.first, self.last) {
            (_, Some(f), Some(_)) => Some(f),
            (Some((_, epoch)), Some(f), None) => Some(Timestamp(f.0.min(epoch.0) - ROTATION_SLACK)),
            _ => None,
        }
    }
}

/// Reads a file whole for its time range, link types and packet count — and, with an index
/// directory, writes its index from the same pass (when it can be indexed).
fn scan(
    path: &Path,
    size: u64,
    mtime: SystemTime,
    progress: &Progress,
    index_dir: Option<&Path>,
    reads: &AtomicU64,
) -> FileEntry {
    let mut e = FileEntry::unread(size, mtime);
    progress.opening(path);
    reads.fetch_add(1, Ordering::Relaxed);
    let mut f = match CaptureFile::open(path) {
        Ok(f) => f,
        Err(err) => {
            e.error = Some(err.to_string());
            return e;
        }
    };
    e.id = f.identity();
    // Whether reading stopped only at a record the end of the file cut (one still being
    // written): the file can be read on from its last whole record when it grows.
    let mut cut = false;
    let built = crate::index::read_indexing(&mut f, &mut |p| {
        progress.step();
        match p {
            Ok(p) => {
                e.packets += 1;
                e.first = Some(e.first.map_or(p.ts, |f| f.min(p.ts)));
                e.last = Some(e.last.map_or(p.ts, |l| l.max(p.ts)));
            }
            Err(err) => {
                cut = is_cut(err);
                e.error = Some(err.to_string());
            }
        }
    });
    if let Some(dir) = index_dir {
        e.index = match built {
            Ok((index, identity)) => {
                let times = f.file().metadata().map_or_else(
                    |_| crate::index::Times::default(),
                    |m| crate::index::Times::of(&m),
                );
                match crate::index::store::save(dir, path, &index, &identity, times) {
                    Ok(bytes) => IndexState::Built {
                        size: identity.size,
                        bytes,
                    },
                    Err(err) => {
                        tracing::warn!(file = %path.display(), error = %err, "cannot write an index");
                        IndexState::WriteFailed
                    }
                }
            }
            Err(_) => IndexState::Unfit { size: f.size() },
        };
    }
    if f.ended_early().is_some() {
        // Read again at the next refresh: its size and mtime changed.
        e.size = f.size();
    } else {
        let plain =
            f.compression().is_none() && matches!(f.format(), Some(pcap::Format::Pcap { .. }));
        if plain && (e.error.is_none() || cut) {
            e.read_to = prefix_hash(&f, f.offset());
        }
    }
    e.declared = f.declared().to_vec();
    e
}

/// The head a file not opened yet stands behind in the merge: its earliest time (no packet of
/// it is earlier, so the merge takes nothing later before it opens the file). Never sent.
fn placeholder(first: Timestamp) -> pcap::Packet {
    pcap::Packet {
        ts: first,
        link_type: 0,
        orig_len: 0,
        data: bytes::Bytes::new(),
    }
}

/// A file not modified for this long is opened lazily by a query (one being written could gain
/// a packet earlier than the earliest the table knows between the refresh and the open).
const LAZY_AFTER: Duration = Duration::from_secs(2);

/// Whether a read stopped at a record the end of the file cut (not damage: the rest is still
/// being written).
fn is_cut(err: &pcap::ReadError) -> bool {
    matches!(err, pcap::ReadError::Capture(c) if c.is_truncation())
}

/// A hash of a file's first and last 4 KiB up to `end` (its identity there).
fn prefix_hash(f: &CaptureFile, end: u64) -> Option<(u64, [u8; 32])> {
    use sha2::Digest;
    let id = crate::index::Identity::of(f.file(), end).ok()?;
    let mut h = sha2::Sha256::new();
    h.update(id.head);
    h.update(id.tail);
    Some((end, h.finalize().into()))
}

/// A plain pcap file that grew since it was read to `old.read_to` (its bytes up to there
/// unchanged): read from there on only, its range and count extended. `None` when it cannot be
/// (not read that way, rewritten, damaged in its new part): it is read whole instead. Its
/// index, which covers less than the file now, is extended by the [`indexer`].
fn extend(
    path: &Path,
    old: &FileEntry,
    mtime: SystemTime,
    progress: &Progress,
) -> Option<FileEntry> {
    let (from, hash) = old.read_to?;
    progress.opening(path);
    let mut f = CaptureFile::open(path).ok()?;
    if f.identity() != old.id || prefix_hash(&f, from)? != (from, hash) {
        return None;
    }
    if !f.restrict(&[(0, 24), (from, f.size())]) {
        return None;
    }
    let mut e = old.clone();
    (e.size, e.mtime, e.error) = (f.size(), mtime, None);
    while let Some(p) = f.next_packet() {
        progress.step();
        let p = match p {
            Ok(p) => p,
            // The last record is still being written: read on from before it next time.
            Err(err) if is_cut(&err) => {
                e.error = Some(err.to_string());
                break;
            }
            Err(_) => return None,
        };
        e.packets += 1;
        e.first = Some(e.first.map_or(p.ts, |x| x.min(p.ts)));
        e.last = Some(e.last.map_or(p.ts, |x| x.max(p.ts)));
    }
    if f.ended_early().is_some() {
        return None;
    }
    // The reader's offset counts the 24-byte header it read first, then the new records.
    e.read_to = prefix_hash(&f, from + (f.offset() - 24));
    Some(e)
}

/// The files of an index that yield no packet because they cannot be read, with the reason,
/// in name order.
fn unreadable_in(idx: &HashMap<PathBuf, FileEntry>) -> Vec<(PathBuf, String)> {
    let mut v: Vec<(PathBuf, String)> = idx
        .iter()
        .filter(|(_, e)| e.packets == 0)
        .filter_map(|(p, e)| Some((p.clone(), e.error.clone()?)))
        .collect();
    v.sort();
    v
}

/// `x` for a name `x.gz`, `x.lz4`, `x.zst` or `x.zstd`.
fn compressed_stem(name: &std::ffi::OsStr) -> Option<std::ffi::OsString> {
    let name = name.to_str()?;
    [".gz", ".lz4", ".zst", ".zstd"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .map(std::ffi::OsString::from)
}

/// A rotation file, read only as far as its first packet: that packet's time (which must not
/// be before the name's epoch, less `ROTATION_SLACK`) and the link types. A pcapng file (whose
/// later blocks may declare more interfaces), a file whose name lies, or one without a packet is
/// read whole instead.
fn probe(
    path: &Path,
    size: u64,
    mtime: SystemTime,
    named: (Sequence, Timestamp),
    progress: &Progress,
    reads: &AtomicU64,
) -> FileEntry {
    progress.opening(path);
    let Ok(mut f) = CaptureFile::open(path) else {
        return scan(path, size, mtime, progress, None, reads);
    };
    let first = match f.next_packet() {
        Some(Ok(p)) => p.ts,
        _ => return scan(path, size, mtime, progress, None, reads),
    };
    let pcap = matches!(f.format(), Some(pcap::Format::Pcap { .. }));
    if !pcap || first.0 < named.1 .0 - ROTATION_SLACK {
        return scan(path, size, mtime, progress, None, reads);
    }
    FileEntry {
        first: Some(first),
        declared: f.declared().to_vec(),
        // At least the one read; the rest are counted when a query reads the file whole.
        packets: 1,
        named: Some(named),
        ..FileEntry::unread(size, mtime)
    }
}

/// The start epochs of every rotation sequence, sorted.
/// Every rotation sequence's files as (name epoch, start), sorted by epoch. A file starts at
/// the later of its name's time and its first packet: a writer whose packets run ahead of the
/// clock it names files by must not cut the previous file short.
fn sequence_starts(
    idx: &HashMap<PathBuf, FileEntry>,
) -> HashMap<&Sequence, Vec<(Timestamp, Timestamp)>> {
    let mut starts: HashMap<&Sequence, Vec<(Timestamp, Timestamp)>> = HashMap::new();
    for e in idx.values() {
        if let Some((seq, epoch)) = &e.named {
            let start = e.first.map_or(*epoch, |f| f.max(*epoch));
            starts.entry(seq).or_default().push((*epoch, start));
        }
    }
    for v in starts.values_mut() {
        v.sort_unstable();
    }
    starts
}

/// The start of the file after the one named `epoch` in `seq`, if there is one.
fn next_start(
    starts: &HashMap<&Sequence, Vec<(Timestamp, Timestamp)>>,
    seq: &Sequence,
    epoch: Timestamp,
) -> Option<Timestamp> {
    let v = starts.get(seq)?;
    v.get(v.partition_point(|(t, _)| *t <= epoch))
        .map(|(_, s)| *s)
}

impl LocalUpstream {
    /// An upstream over a configured directory, with an empty index (call
    /// [`refresh`](Self::refresh)).
    ///
    /// With an index directory, the file table starts as its catalog left it: a file whose
    /// device, inode, size and modification time are unchanged is not read again.
    pub fn new(d: &crate::config::LocalDir) -> LocalUpstream {
        let known = d
            .index_dir
            .as_deref()
            .map(catalog::load)
            .unwrap_or_default();
        LocalUpstream {
            name: d.name.clone(),
            dir: d.path.clone(),
            layout: d.layout.clone(),
            index_dir: d.index_dir.clone(),
            index: Mutex::new(known),
            refreshing: Mutex::new(()),
            refresher: Mutex::new(None),
            unavailable: Mutex::new(None),
            listed: std::sync::atomic::AtomicBool::new(false),
            catalog: Mutex::new(CatalogState::default()),
            reads: AtomicU64::new(0),
            watch: std::sync::OnceLock::new(),
        }
    }

    /// Marks the file table changed (the catalog is to be written).
    fn changed(&self) {
        self.catalog.lock().expect("catalog lock").dirty = true;
    }

    /// Writes the catalog if the file table changed (at shutdown).
    pub fn save_catalog_now(&self) {
        self.save_catalog(true);
    }

    /// Writes the catalog if the file table changed, at most every [`CATALOG_EVERY`] unless
    /// `now`. A catalog lost to a crash costs only reads: whatever it misses is read again.
    fn save_catalog(&self, now: bool) {
        let Some(dir) = &self.index_dir else { return };
        {
            let mut c = self.catalog.lock().expect("catalog lock");
            let due = now || c.saved.is_none_or(|t| t.elapsed() >= CATALOG_EVERY);
            if !c.dirty || !due {
                return;
            }
            c.dirty = false;
            c.saved = Some(std::time::Instant::now());
        }
        let files = self.index.lock().expect("index lock").clone();
        if let Err(e) = catalog::save(dir, &files) {
            self.changed();
            tracing::warn!(sensor = %self.name, error = %e, "cannot write the catalog");
        }
    }

    /// The sensor name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the directory could not be listed at the last refresh (missing, not permitted, …);
    /// `None` when it could. Kept by the refresh, so asking touches no file system (a health
    /// check must not block on a hung mount).
    pub fn unavailable(&self) -> Option<String> {
        self.unavailable.lock().expect("unavailable lock").clone()
    }

    /// Whether a refresh has looked at the directory yet: before, [`unavailable`]
    /// (Self::unavailable) knows nothing (a missing directory would look present).
    pub fn listed(&self) -> bool {
        self.listed.load(Ordering::SeqCst)
    }

    /// Brings the index up to date with the directory: scans new and changed files, forgets
    /// vanished ones. Blocking (reads files); run it off the async threads.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn refresh(&self) -> Result<(), Error> {
        self.refresh_watched(&Arc::new(Progress::default()), &|| false)
            .map(drop)
    }

    /// [`refresh`](Self::refresh) unless another refresh is under way (then nothing).
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn refresh_if_idle(&self) -> Result<(), Error> {
        self.refresh_watched(&Arc::new(Progress::default()), &|| true)
            .map(drop)
    }

    /// [`refresh`](Self::refresh) for a query: `Ok(false)` when `gone()` says the query went
    /// away while it waited for another refresh.
    fn refresh_watched(
        &self,
        progress: &Arc<Progress>,
        gone: &dyn Fn() -> bool,
    ) -> Result<bool, Error> {
        let _one_at_a_time = loop {
            match self.refreshing.try_lock() {
                Ok(guard) => break guard,
                Err(std::sync::TryLockError::Poisoned(e)) => panic!("refresh lock: {e}"),
                // A query that was stopped, or failed as stuck, frees its thread.
                Err(std::sync::TryLockError::WouldBlock) if gone() => return Ok(false),
                Err(std::sync::TryLockError::WouldBlock) => {
                    // Named if this wait is what gets stuck (no step: waiting is no progress).
                    *progress.file.lock().expect("progress lock") = Some(self.dir.clone());
                    // Another refresh is under way: while it makes progress, so does this wait
                    // (a query queued behind the first indexing of a big directory is not
                    // stuck; one behind a refresh hung on a dead mount is, and fails as such).
                    let steps = || {
                        let r = self.refresher.lock().expect("refresher lock");
                        r.as_ref().map(|p| p.steps.load(Ordering::Relaxed))
                    };
                    let before = steps();
                    std::thread::sleep(Duration::from_millis(100));
                    if steps() != before {
                        progress.step();
                    }
                }
            }
        };
        *self.refresher.lock().expect("refresher lock") = Some(Arc::clone(progress));
        // What the watch reported so far is what this refresh sees.
        let mark = self.watch.get().map(watch::Watch::begin);
        // A file with a second name may be written through a name the watch does not cover.
        let mut seeable = !self.layout.follow_symlinks;
        let missing = |source| {
            let e = Error::Directory {
                path: self.dir.clone(),
                source,
            };
            *self.unavailable.lock().expect("unavailable lock") = Some(e.to_string());
            self.listed.store(true, Ordering::SeqCst);
            e
        };
        let root = std::fs::canonicalize(&self.dir).map_err(missing)?;
        *self.unavailable.lock().expect("unavailable lock") = None;
        self.listed.store(true, Ordering::SeqCst);
        let mut present = std::collections::HashSet::new();
        let note =
            |path: PathBuf, reason: String, present: &mut std::collections::HashSet<PathBuf>| {
                // A dangling link, a link loop, a link leading out: named, like any file that
                // cannot be read.
                let e = FileEntry {
                    error: Some(reason),
                    ..FileEntry::unread(0, SystemTime::UNIX_EPOCH)
                };
                self.index
                    .lock()
                    .expect("index lock")
                    .insert(path.clone(), e);
                present.insert(path);
            };
        // Directories and files by (device, inode): a directory reached twice (a link to it,
        // a link loop) is read once, and a file with two names (`current.pcap -> log.pcap.N`,
        // `self -> .`) is indexed once, or its packets would come out twice. Breadth first, in
        // name order: each directory is reached at its shallowest depth, the same way each time.
        let mut visited = std::collections::HashSet::new();
        let mut files_seen = std::collections::HashSet::new();
        if let Ok(m) = std::fs::metadata(&self.dir) {
            visited.insert((m.dev(), m.ino()));
        }
        // Directories whose listing failed part-way: what is indexed below them is kept, not
        // forgotten for having gone unlisted (an NFS hiccup must not hide files).
        let mut incomplete: Vec<PathBuf> = Vec::new();
        let mut dirs = std::collections::VecDeque::from([(self.dir.clone(), 0usize)]);
        while let Some((dir, depth)) = dirs.pop_front() {
            // A subdirectory swapped for a link leading out since it was listed is not read.
            if depth > 0
                && !self.layout.follow_symlinks
                && !std::fs::canonicalize(&dir).is_ok_and(|d| d.starts_with(&root))
            {
                continue;
            }
            let listing = match std::fs::read_dir(&dir) {
                Ok(l) => l,
                Err(source) if depth == 0 => return Err(missing(source)),
                Err(e) => {
                    incomplete.push(dir.clone());
                    note(dir, format!("unreadable directory: {e}"), &mut present);
                    continue;
                }
            };
            let mut entries = Vec::new();
            for entry in listing {
                match entry {
                    Ok(e) => entries.push(e),
                    Err(_) => {
                        incomplete.push(dir.clone());
                        break;
                    }
                }
            }
            entries.sort_by_key(std::fs::DirEntry::file_name);
            let names: std::collections::HashSet<std::ffi::OsString> =
                entries.iter().map(std::fs::DirEntry::file_name).collect();
            for entry in entries {
                let path = entry.path();
                progress.opening(&path);
                // `x.pcap.zst` beside `x.pcap`: a compressor at work (zstd and lz4 keep their
                // input, gzip until it is done) — the same packets twice; the plain one is read.
                if let Some(stem) = compressed_stem(&entry.file_name()) {
                    if names.contains(&stem) {
                        continue;
                    }
                }
                if entry.file_type().is_ok_and(|t| t.is_symlink()) && !self.layout.follow_symlinks {
                    match std::fs::canonicalize(&path) {
                        Ok(target) if target.starts_with(&root) => {}
                        Ok(target) => {
                            let reason = format!(
                                "a symbolic link leading outside the directory (to {}); \
                                 follow_symlinks = true follows it",
                                target.display()
                            );
                            note(path, reason, &mut present);
                            continue;
                        }
                        Err(e) => {
                            note(path, e.to_string(), &mut present);
                            continue;
                        }
                    }
                }
                // Follows symlinks; `DirEntry::metadata` would not.
                let meta = match std::fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) => {
                        note(path, e.to_string(), &mut present);
                        continue;
                    }
                };
                let id = (meta.dev(), meta.ino());
                // The indexes' own directory, configured inside the captures: not captures.
                if meta.is_dir() && self.index_root().is_some_and(|r| r == path) {
                    continue;
                }
                if meta.is_dir() {
                    if depth >= self.layout.max_depth {
                        let reason = format!(
                            "a directory below max_depth ({}): not read",
                            self.layout.max_depth
                        );
                        note(path, reason, &mut present);
                    } else if visited.insert(id) {
                        dirs.push_back((path, depth + 1));
                    }
                    continue;
                }
                if !files_seen.insert(id) {
                    continue;
                }
                if meta.nlink() > 1 {
                    seeable = false;
                }
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let ctime = crate::index::Times::of(&meta).ctime_ns;
                let known = {
                    let idx = self.index.lock().expect("index lock");
                    idx.get(&path).is_some_and(|e| {
                        e.size == meta.len() && e.mtime == mtime && e.ctime == ctime && e.id == id
                    })
                };
                if !known {
                    let grown = self
                        .index
                        .lock()
                        .expect("index lock")
                        .get(&path)
                        .filter(|e| e.id == id && e.named.is_none() && e.size < meta.len())
                        .cloned();
                    // A FIFO or device is refused by the open, without blocking, and named.
                    let mut e = match self.named(&dir, &path) {
                        Some(named) => {
                            probe(&path, meta.len(), mtime, named, progress, &self.reads)
                        }
                        None => match grown.and_then(|g| extend(&path, &g, mtime, progress)) {
                            Some(e) => e,
                            None => self.scan(&path, meta.len(), mtime, progress),
                        },
                    };
                    (e.id, e.ctime) = (id, ctime);
                    self.index
                        .lock()
                        .expect("index lock")
                        .insert(path.clone(), e);
                    self.changed();
                }
                present.insert(path);
            }
        }
        let mut idx = self.index.lock().expect("index lock");
        let before = idx.len();
        idx.retain(|p, _| present.contains(p) || incomplete.iter().any(|d| p.starts_with(d)));
        if idx.len() != before {
            self.changed();
        }
        // A rotation name that lies (its file starts after the next file of its sequence
        // starts) is not trusted: that file is read whole, like an unnamed one.
        let starts = sequence_starts(&idx);
        let liars: Vec<PathBuf> = idx
            .iter()
            .filter(|(_, e)| e.last.is_none() && e.named.is_some())
            .filter(|(_, e)| {
                let (seq, epoch) = e.named.as_ref().expect("filtered");
                let next = next_start(&starts, seq, *epoch);
                matches!((e.first, next), (Some(f), Some(n)) if f >= n)
            })
            .map(|(p, _)| p.clone())
            .collect();
        drop(starts);
        drop(idx);
        if let Some(dir) = &self.index_dir {
            let files: Vec<PathBuf> = self
                .index
                .lock()
                .expect("index lock")
                .keys()
                .cloned()
                .collect();
            crate::index::store::prune(dir, files.iter().map(PathBuf::as_path));
        }
        for path in liars {
            if let Ok(meta) = std::fs::metadata(&path) {
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let mut e = self.scan(&path, meta.len(), mtime, progress);
                e.id = (meta.dev(), meta.ino());
                e.ctime = crate::index::Times::of(&meta).ctime_ns;
                self.index.lock().expect("index lock").insert(path, e);
                self.changed();
            }
        }
        self.save_catalog(false);
        if let (Some(w), Some(mark)) = (self.watch.get(), mark) {
            w.refreshed(mark, seeable && incomplete.is_empty());
        }
        Ok(true)
    }

    /// Opens `p` (known as `e`) for a query without reading it: `Ok(None)` when it is not
    /// read — gone since it was listed, leading outside the directory now, replaced since it
    /// was indexed, or not openable (each with a warning on `tx`). Out of file handles is an
    /// error of the whole answer.
    fn hold(
        &self,
        p: &Path,
        e: &FileEntry,
        tx: &mpsc::Sender<Message>,
        progress: &Progress,
        (root, dirs_inside): (Option<&Path>, &mut HashMap<PathBuf, bool>),
    ) -> Result<Option<pcap::Held>, Error> {
        progress.opening(p);
        let skip = |why: &str| {
            let _ = tx.blocking_send(Message::Warning(format!("{}: {why}; skipped", p.display())));
            Ok(None)
        };
        let meta = match std::fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return skip("deleted or renamed since the directory was listed");
            }
            Err(err) => return skip(&err.to_string()),
        };
        // A path that leads outside the directory now (a link swapped in since it was indexed)
        // is not read. A file that is not a link is inside when its directory is (resolved once
        // per directory per query, not once per file).
        if !self.layout.follow_symlinks {
            let in_root = |q: &Path| {
                root.is_some_and(|r| std::fs::canonicalize(q).is_ok_and(|c| c.starts_with(r)))
            };
            let inside = match p.parent() {
                Some(d) if !meta.file_type().is_symlink() => *dirs_inside
                    .entry(d.to_owned())
                    .or_insert_with(|| in_root(d)),
                _ => in_root(p),
            };
            if !inside {
                return skip("now leads outside the directory");
            }
        }
        match pcap::Held::open(p) {
            // The path names another file than the one indexed (replaced, or a link changed to
            // lead elsewhere — outside the directory, maybe): not read.
            Ok(h) if h.identity() != e.id => {
                skip("replaced since it was listed (the next query reads it)")
            }
            Ok(h) => Ok(Some(h)),
            Err(pcap::OpenError::Io(err))
                if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
            {
                Err(Error::Handles {
                    path: p.to_owned(),
                    source: err,
                })
            }
            Err(err) => skip(&err.to_string()),
        }
    }

    /// Opens `p` (known as `e`) for a query — through `held` when it was opened earlier —:
    /// `Ok(Some((file, read in parts)))`, or `Ok(None)` when it is not read (see
    /// [`hold`](Self::hold)) or its index says nothing in it can match.
    #[allow(clippy::too_many_arguments)]
    fn open_for_query(
        &self,
        p: &Path,
        e: &FileEntry,
        held: Option<pcap::Held>,
        lookup: &crate::index::Lookup,
        (after, before): (Timestamp, Timestamp),
        tx: &mpsc::Sender<Message>,
        progress: &Progress,
        inside: (Option<&Path>, &mut HashMap<PathBuf, bool>),
    ) -> Result<Option<(CaptureFile, bool)>, Error> {
        let held = match held {
            Some(h) => h,
            None => match self.hold(p, e, tx, progress, inside)? {
                Some(h) => h,
                None => return Ok(None),
            },
        };
        progress.opening(p);
        let mut f = match CaptureFile::from_held(p, held) {
            Ok(f) => f,
            Err(err) => {
                let warning = format!("{}: {err}; skipped", p.display());
                let _ = tx.blocking_send(Message::Warning(warning));
                return Ok(None);
            }
        };
        match self.planned_ranges(&f, lookup, after, before) {
            // The index says nothing in this file can match.
            Some(ranges) if ranges.is_empty() => Ok(None),
            Some(ranges) => {
                let parts = f.restrict(&ranges);
                Ok(Some((f, parts)))
            }
            None => Ok(Some((f, false))),
        }
    }

    /// The byte ranges of `f` a query of `lookup` over `[after, before)` needs, from its index:
    /// `None` when it has no usable index (read it whole); `Some(empty)` when nothing in it can
    /// match. The ranges are the file header and the planned slices.
    fn planned_ranges(
        &self,
        f: &CaptureFile,
        lookup: &crate::index::Lookup,
        after: Timestamp,
        before: Timestamp,
    ) -> Option<Vec<(u64, u64)>> {
        let dir = self.index_dir.as_ref()?;
        let mapped = crate::index::store::load(dir, f.path(), f.file(), f.metadata());
        let Some(view) = mapped.as_ref().and_then(|m| m.view()) else {
            self.index_lost(f);
            return None;
        };
        let indexed = mapped.as_ref().map_or(0, |m| m.size());
        // A file as it was indexed (not rewritten in place), or one that grew since (being
        // written; its indexed bytes are unchanged — `load` checked them).
        let times = Some(crate::index::Times::of(f.metadata()));
        let grown = f.size() > indexed;
        if f.size() < indexed {
            return None;
        }
        // Same length: the same times too, or the file was rewritten in place (with its
        // modification time set back, maybe) and its index is built again.
        if !grown && times != Some(view.times()) {
            self.index_lost(f);
            return None;
        }
        // Packets are gated before the merge (see `answer`): skipping records that cannot
        // match changes nothing, whatever the order of the file's records. A grown file's new
        // part is read whole after the planned slices of the indexed part.
        let plan = view.plan(lookup, after, before).ok()?;
        if plan.is_empty() && !grown {
            return Some(Vec::new());
        }
        // A compressed or pcapng file is read whole (or skipped, above).
        if view.whole_only() {
            return None;
        }
        let mut ranges = Vec::with_capacity(plan.len() + 2);
        for i in plan {
            let start = view.slice(i).offset;
            let end = if i + 1 < view.slices() {
                view.slice(i + 1).offset
            } else {
                indexed
            };
            match ranges.last_mut() {
                Some((_, e)) if *e == start => *e = end,
                _ => ranges.push((start, end)),
            }
        }
        if grown {
            match ranges.last_mut() {
                Some((_, e)) if *e == indexed => *e = f.size(),
                _ => ranges.push((indexed, f.size())),
            }
        }
        if !ranges.is_empty() {
            // The file's head the slices' records follow: a classic pcap header, or a pcapng
            // section header and its interfaces (the first slice starts where it ends).
            let head = view.slice(0).offset;
            match ranges.first_mut() {
                Some((s, _)) if *s == head => *s = 0,
                _ => ranges.insert(0, (0, head)),
            }
        }
        Some(ranges)
    }

    /// The directory holding every sensor's index directory (the configured `index_dir`).
    fn index_root(&self) -> Option<&Path> {
        self.index_dir.as_deref().and_then(Path::parent)
    }

    /// Reads a file whole ([`scan`]), indexing it when the directory is indexed.
    fn scan(&self, path: &Path, size: u64, mtime: SystemTime, progress: &Progress) -> FileEntry {
        scan(
            path,
            size,
            mtime,
            progress,
            self.index_dir.as_deref(),
            &self.reads,
        )
    }

    /// Notes that the index of `f` is missing or unusable (deleted with `index_dir`, damaged,
    /// replaced): the indexer builds it again.
    fn index_lost(&self, f: &CaptureFile) {
        let mut idx = self.index.lock().expect("index lock");
        if let Some(e) = idx.get_mut(f.path()) {
            if e.id == f.identity() && matches!(e.index, IndexState::Built { .. }) {
                e.index = IndexState::Missing;
                drop(idx);
                self.changed();
            }
        }
    }

    /// The sequence and start epoch of a file whose name follows a rotation pattern.
    fn named(&self, dir: &Path, path: &Path) -> Option<(Sequence, Timestamp)> {
        let name = path.file_name()?.to_str()?;
        self.layout
            .epoch_names
            .iter()
            .enumerate()
            .find_map(|(i, n)| {
                let (epoch, thread) = n.matches(name)?;
                Some(((dir.to_owned(), i, thread), epoch))
            })
    }

    /// Records what reading a rotation file whole showed (its real first and last times), if
    /// the file is still the one that was read.
    fn learn(
        &self,
        f: &CaptureFile,
        first: Option<Timestamp>,
        last: Option<Timestamp>,
        packets: u64,
    ) {
        let mut idx = self.index.lock().expect("index lock");
        if let Some(e) = idx.get_mut(f.path()) {
            if e.id == f.identity() && e.size == f.size() && e.last.is_none() {
                (e.first, e.last, e.packets) = (first, last, packets);
                drop(idx);
                self.changed();
            }
        }
    }

    /// The indexed files whose time range overlaps `[after, before)`, in name order. A rotation
    /// file not yet read whole ends where the next file of its sequence starts (plus
    /// `ROTATION_SLACK`); the newest of a sequence has no end yet.
    pub fn overlapping(&self, after: Timestamp, before: Timestamp) -> Vec<(PathBuf, FileEntry)> {
        let idx = self.index.lock().expect("index lock");
        let starts = sequence_starts(&idx);
        let mut v: Vec<(PathBuf, FileEntry)> = idx
            .iter()
            .filter(|(_, e)| {
                let (first, last) = match (&e.named, e.earliest(), e.last) {
                    (_, Some(f), Some(l)) => (f, l),
                    // Known by name and first packet: from the earlier of the two (a first
                    // record may be out of order, or wrongly stamped), less the slack, to the
                    // next file's start plus the slack (the newest: no end).
                    (Some((seq, epoch)), Some(f), None) => (
                        f,
                        next_start(&starts, seq, *epoch)
                            .map_or(Timestamp(i128::MAX), |n| Timestamp(n.0 + ROTATION_SLACK)),
                    ),
                    _ => return false,
                };
                first < before && last >= after
            })
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Files that yield no packet because they cannot be read, with the reason, in name order.
    pub fn unreadable(&self) -> Vec<(PathBuf, String)> {
        unreadable_in(&self.index.lock().expect("index lock"))
    }

    /// Readable and unreadable files, for `/stats`.
    pub fn files(&self) -> FileCounts {
        let (total, unreadable, index) = {
            let idx = self.index.lock().expect("index lock");
            let index = self.index_dir.as_ref().map(|_| {
                let mut c = IndexCounts {
                    files_read: self.reads.load(Ordering::Relaxed),
                    ..IndexCounts::default()
                };
                for e in idx.values() {
                    match e.index {
                        IndexState::Built { size, bytes } if size == e.size => {
                            c.indexed += 1;
                            c.index_bytes += bytes;
                        }
                        IndexState::Unfit { size } if !e.wants_index() && size <= e.size => {
                            c.unindexable += 1;
                        }
                        _ if e.readable() => c.backlog_bytes += e.size,
                        _ => {}
                    }
                }
                c
            });
            (idx.len(), unreadable_in(&idx), index)
        };
        FileCounts {
            index,
            readable: total - unreadable.len(),
            unreadable: unreadable
                .into_iter()
                .map(|(p, reason)| UnreadableFile {
                    file: p.display().to_string(),
                    reason,
                })
                .collect(),
        }
    }

    /// What the answer of `query` will be, as far as the indexes tell without reading a
    /// packet: an indexed file by its postings ([`crate::index::IndexView::estimate`]); a file
    /// without a usable index (compressed, pcapng, still growing, not indexed yet) whole,
    /// scaled to the part of its time range inside the window — an upper bound, since nothing
    /// says which of its packets match. Reads only index files and 8 KiB of each capture (to
    /// check that an index is its own). Blocking.
    pub fn estimate(&self, query: &Query) -> Estimate {
        let (after, before) = (query.after, query.before);
        let lookup = crate::index::Lookup::new(
            &query.hosts,
            query.nets.iter().map(|n| (n.addr, n.prefix)),
            &query.ports,
            query.proto,
        );
        let mut est = Estimate::default();
        let files = self.overlapping(after, before);
        // Bytes per packet of the files read whole: to turn an unindexed file's bytes into
        // packets.
        let (sz, n) = files
            .iter()
            .filter(|(_, e)| e.last.is_some() && e.packets > 0)
            .fold((0u64, 0u64), |(s, n), (_, e)| (s + e.size, n + e.packets));
        let per_packet = if n > 0 { sz as f64 / n as f64 } else { 1000.0 };
        for (path, e) in &files {
            let indexed = CaptureFile::open(path).ok().and_then(|f| {
                let dir = self.index_dir.as_ref()?;
                let mapped = crate::index::store::load(dir, path, f.file(), f.metadata())?;
                let view = mapped.view()?;
                (f.size() == mapped.size())
                    .then(|| view.estimate(&lookup, after, before).ok())
                    .flatten()
            });
            match indexed {
                Some(x) => {
                    est += Estimate {
                        packets: x.packets,
                        bytes: x.bytes,
                        indexed_files: 1,
                        scanned_files: 0,
                    };
                }
                None => {
                    let share = match (e.first, e.last) {
                        (Some(f), Some(l)) if l > f => {
                            let inside = l.0.min(before.0) - f.0.max(after.0);
                            (inside as f64 / (l.0 - f.0) as f64).clamp(0.0, 1.0)
                        }
                        _ => 1.0,
                    };
                    let bytes = e.size as f64 * share;
                    est += Estimate {
                        packets: (bytes / per_packet).round() as u64,
                        bytes: bytes.round() as u64,
                        indexed_files: 0,
                        scanned_files: 1,
                    };
                }
            }
        }
        est
    }

    /// Earliest packet time in the directory (data availability).
    pub fn oldest(&self) -> Option<Timestamp> {
        let idx = self.index.lock().expect("index lock");
        idx.values().filter_map(|e| e.first).min()
    }

    /// Answers `query` (its window, structured clauses through every encapsulation, and raw
    /// BPF) on `tx`, on a blocking thread watched by a relay task, until done, the receiver
    /// goes away, or `cancel` fires. A thread stuck for [`STUCK_AFTER`] fails this upstream
    /// with [`Error::Stuck`].
    pub fn query(
        self: &Arc<Self>,
        query: Arc<Query>,
        tx: mpsc::Sender<Message>,
        cancel: CancellationToken,
    ) {
        let me = Arc::clone(self);
        let progress = Arc::new(Progress::default());
        let (inner_tx, inner_rx) = mpsc::channel(CHANNEL_BATCHES);
        let watched = Arc::clone(&progress);
        let thread_cancel = cancel.clone();
        tokio::task::spawn_blocking(move || {
            let gone = || thread_cancel.is_cancelled() || inner_tx.is_closed();
            // Nothing changed since the last refresh (and the watch would have seen it): the
            // file table is current, no need to list and stat every file again.
            let current = me.watch.get().is_some_and(watch::Watch::unchanged);
            match if current {
                Ok(true)
            } else {
                me.refresh_watched(&watched, &gone)
            } {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    let _ = inner_tx.blocking_send(Message::Failed(e));
                    return;
                }
            }
            me.answer(&query, &inner_tx, &thread_cancel, &watched);
        });
        tokio::spawn(relay(inner_rx, tx, progress, cancel));
    }

    fn answer(
        &self,
        query: &Query,
        tx: &mpsc::Sender<Message>,
        cancel: &CancellationToken,
        progress: &Progress,
    ) {
        let unreadable = self.unreadable();
        for (path, reason) in unreadable.iter().take(NAMED_UNREADABLE) {
            let w = format!("{}: unreadable, skipped: {reason}", path.display());
            if tx.blocking_send(Message::Warning(w)).is_err() {
                return;
            }
        }
        if unreadable.len() > NAMED_UNREADABLE {
            let w = format!(
                "{} more unreadable files skipped (see /stats)",
                unreadable.len() - NAMED_UNREADABLE
            );
            let _ = tx.blocking_send(Message::Warning(w));
        }
        let (after, before) = (query.after, query.before);
        let files = self.overlapping(after, before);
        let root = std::fs::canonicalize(&self.dir).ok();
        let lookup = crate::index::Lookup::new(
            &query.hosts,
            query.nets.iter().map(|n| (n.addr, n.prefix)),
            &query.ports,
            query.proto,
        );
        let mut declared: Vec<(LinkType, Precision)> = Vec::new();
        for (_, e) in &files {
            for d in &e.declared {
                if !declared.contains(d) {
                    declared.push(*d);
                }
            }
        }
        if tx.blocking_send(Message::Declared(declared)).is_err() {
            return;
        }
        // Rotation files known only by name and first packet: what reading them whole shows
        // is kept (`learn`), so the index holds their real range from then on.
        let mut spans: Vec<Option<Span>> = files
            .iter()
            .map(|(_, e)| (e.named.is_some() && e.last.is_none()).then(Span::default))
            .collect();
        let mut dirs_inside: HashMap<PathBuf, bool> = HashMap::new();
        let mut readers: Vec<Option<CaptureFile>> = (0..files.len()).map(|_| None).collect();
        // Files read whole before (so `first` is their earliest time) and not being written:
        // opened only when the merge reaches that time (a placeholder head stands in for
        // them until then), so a wide window holds a handle and a read buffer for the few
        // files it is in, not for all of them. The others are opened now.
        // Opens file `i` into `readers` (or leaves it out); out of handles is an error.
        let open_now = |i: usize,
                        p: &Path,
                        e: &FileEntry,
                        held: Option<pcap::Held>,
                        readers: &mut [Option<CaptureFile>],
                        spans: &mut [Option<Span>],
                        dirs_inside: &mut HashMap<PathBuf, bool>|
         -> Result<(), Error> {
            let scope = (after, before);
            if let Some((f, parts)) = self.open_for_query(
                p,
                e,
                held,
                &lookup,
                scope,
                tx,
                progress,
                (root.as_deref(), dirs_inside),
            )? {
                if parts {
                    spans[i] = None;
                }
                readers[i] = Some(f);
            }
            Ok(())
        };
        let now = SystemTime::now();
        let mut pending: Vec<Option<Pending>> = Vec::with_capacity(files.len());
        for (i, (p, e)) in files.into_iter().enumerate() {
            let settled = now.duration_since(e.mtime).is_ok_and(|d| d >= LAZY_AFTER);
            if let Some(earliest) = e.earliest().filter(|_| settled) {
                if let Some(s) = &mut spans[i] {
                    s.assumed = Some(earliest);
                }
                pending.push(Some(Pending {
                    path: p,
                    entry: e,
                    earliest,
                    held: None,
                }));
                continue;
            }
            pending.push(None);
            if let Err(e) = open_now(i, &p, &e, None, &mut readers, &mut spans, &mut dirs_inside) {
                let _ = tx.blocking_send(Message::Failed(e));
                return;
            }
        }
        // The files the merge opens later are opened now all the same, unread (a descriptor
        // each, no buffer): what the query listed is what it reads, even if a path is renamed,
        // compressed away (`tcpdump -z gzip`) or deleted before the merge gets there. Newest
        // first (those are the ones rotation tools move); past the process-wide budget
        // (`HELD_SHARE` of the descriptor limit) the rest are opened by path when reached.
        for i in (0..pending.len()).rev() {
            let Some(w) = &mut pending[i] else { continue };
            let Some(reserved) = HeldSlot::take() else {
                break;
            };
            let inside = (root.as_deref(), &mut dirs_inside);
            match self.hold(&w.path, &w.entry, tx, progress, inside) {
                Ok(Some(h)) => w.held = Some((h, reserved)),
                // Gone, replaced or outside (said on `tx`): not read.
                Ok(None) => pending[i] = None,
                Err(_) => break,
            }
        }
        // Each file's packets are gated before the merge, as `tcpdump -r FILE FILTER` per file
        // then `mergecap` would: the merge takes each file's matching packets in file order,
        // so reading a file in part (its index's plan) cannot change the answer, whatever the
        // order of its records — and a selective query merges only what it keeps.
        let mut gate = pcap::Gate::new(after, before, query.clauses(), query.bpf.clone());
        let mut kway = KWay::new(readers.len());
        let mut batch = Vec::with_capacity(BATCH_PACKETS);
        // Record bytes read since the batch's packets from `loose` on were taken, and the
        // bytes those packets keep of them: packets that keep less than half of what was read
        // are copied out of their readers' chunks (`pcap::compact`) once `COMPACT_AFTER` bytes
        // were read or the batch goes out, so a selective query holds in flight about what it
        // sends, not a chunk per packet.
        let scanned = std::cell::Cell::new(0usize);
        let (mut kept, mut loose) = (0usize, 0usize);
        let compact = |batch: &mut Vec<pcap::Packet>, kept: &mut usize, loose: &mut usize| {
            if *kept * 2 < scanned.replace(0) {
                pcap::compact(&mut batch[*loose..]);
            }
            (*kept, *loose) = (0, batch.len());
        };
        let fill = |i: usize,
                    kway: &mut KWay,
                    readers: &mut [Option<CaptureFile>],
                    spans: &mut [Option<Span>],
                    gate: &mut pcap::Gate| {
            let Some(f) = &mut readers[i] else {
                kway.end(i);
                return;
            };
            // A file is closed as soon as it ends (its handle and buffers are not held to the
            // end of the query), and what reading it whole showed is learnt then.
            // A named file merged from its name's time that held earlier packets: said, and
            // (read whole) learnt, so the next query merges it from its real start.
            let stepped_back = |f: &CaptureFile, s: &Span| {
                if s.first_kept.zip(s.assumed).is_some_and(|(f, a)| f < a) {
                    let _ = tx.blocking_send(Message::Warning(format!(
                        "{}: holds packets from before the time its name and first packet give \
                         it; merged as if it did not (their order in this answer may differ \
                         from mergecap's)",
                        f.path().display()
                    )));
                }
            };
            let ended = |f: CaptureFile, span: Option<Span>| {
                if let Some(s) = span {
                    stepped_back(&f, &s);
                    if s.whole {
                        self.learn(&f, s.first, s.last, s.packets);
                    }
                }
            };
            let mut skipped = 0u32;
            let next = loop {
                progress.step();
                match f.next_packet() {
                    Some(Ok(p)) => {
                        scanned.set(scanned.get() + p.data.len());
                        if let Some(s) = &mut spans[i] {
                            s.saw(p.ts);
                        }
                        if gate.admits(&p) {
                            if let Some(s) = &mut spans[i] {
                                s.kept(p.ts);
                            }
                            break Some(Ok(p));
                        }
                        skipped = skipped.wrapping_add(1);
                        // A long run of packets that do not match: notice a stop between them.
                        if skipped % 4096 == 0 && (cancel.is_cancelled() || tx.is_closed()) {
                            spans[i] = None;
                            readers[i] = None;
                            kway.end(i);
                            return;
                        }
                    }
                    other => break other,
                }
            };
            match next {
                Some(Ok(p)) => kway.push(i, p),
                Some(Err(e)) => {
                    if let Some(s) = spans[i].take() {
                        stepped_back(f, &s);
                    }
                    let _ = tx.blocking_send(Message::Warning(format!(
                        "{}: {e}; packets after it are skipped",
                        f.path().display()
                    )));
                    readers[i] = None;
                    kway.end(i);
                }
                None => {
                    if let Some(s) = &mut spans[i] {
                        s.whole = f.ended_early().is_none();
                    }
                    if let Some(at) = f.ended_early() {
                        let _ = tx.blocking_send(Message::Warning(format!(
                            "{}: the file shrank or was rewritten while being read (truncated, \
                             rotated or rewritten in place) at byte {at}; its packets before \
                             that were used, none after",
                            f.path().display()
                        )));
                    } else if std::fs::metadata(f.path())
                        .map_or(true, |m| (m.dev(), m.ino()) != f.identity())
                    {
                        // Deleted (retention) or rotated away while read: the open handle
                        // still held all of it.
                        let _ = tx.blocking_send(Message::Warning(format!(
                            "{}: deleted or rotated away while being read; read whole through the open file",
                            f.path().display()
                        )));
                    }
                    if let Some(f) = readers[i].take() {
                        ended(f, spans[i].take());
                    }
                    kway.end(i);
                }
            }
        };
        for (i, waiting) in pending.iter().enumerate() {
            match waiting {
                Some(w) => kway.push(i, placeholder(w.earliest)),
                None => fill(i, &mut kway, &mut readers, &mut spans, &mut gate),
            }
        }
        let mut popped = 0u32;
        while let Some((i, p)) = kway.pop() {
            if let Some(w) = pending[i].take() {
                // Its placeholder: the merge has reached the file's earliest time.
                let held = w.held.map(|(h, _slot)| h);
                let opened = open_now(
                    i,
                    &w.path,
                    &w.entry,
                    held,
                    &mut readers,
                    &mut spans,
                    &mut dirs_inside,
                );
                if let Err(e) = opened {
                    let _ = tx.blocking_send(Message::Failed(e));
                    return;
                }
                fill(i, &mut kway, &mut readers, &mut spans, &mut gate);
                continue;
            }
            popped = popped.wrapping_add(1);
            // A selective filter may send nothing for a long while: notice a stop or a
            // departed job between sends too.
            if popped % 4096 == 0 && (cancel.is_cancelled() || tx.is_closed()) {
                return;
            }
            fill(i, &mut kway, &mut readers, &mut spans, &mut gate);
            kept += p.data.len();
            batch.push(p);
            if batch.len() == BATCH_PACKETS {
                if cancel.is_cancelled() {
                    return;
                }
                compact(&mut batch, &mut kept, &mut loose);
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_PACKETS));
                loose = 0;
                if tx.blocking_send(Message::Batch(full)).is_err() {
                    return;
                }
            } else if scanned.get() >= COMPACT_AFTER {
                compact(&mut batch, &mut kept, &mut loose);
            }
        }
        if !batch.is_empty() {
            compact(&mut batch, &mut kept, &mut loose);
            let _ = tx.blocking_send(Message::Batch(batch));
        }
    }
}

/// A file the merge opens when it reaches `earliest` (see `LocalUpstream::answer`).
struct Pending {
    path: PathBuf,
    entry: FileEntry,
    earliest: Timestamp,
    /// Its handle, opened when the query started (within the process-wide budget).
    held: Option<(pcap::Held, HeldSlot)>,
}

/// The share of the process's descriptor limit that queries may hold ahead of their merge
/// (1/HELD_SHARE), so that held files never starve sockets, spool files or other queries.
const HELD_SHARE: u64 = 4;

/// Descriptors held ahead of the merge, across all queries.
static HELD: AtomicU64 = AtomicU64::new(0);

/// One descriptor of the [`HELD`] budget, given back when dropped.
struct HeldSlot;

impl HeldSlot {
    fn take() -> Option<HeldSlot> {
        static BUDGET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let budget = *BUDGET.get_or_init(|| {
            let mut l = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit on this process with a valid, initialised struct.
            let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0;
            if ok {
                l.rlim_cur / HELD_SHARE
            } else {
                256
            }
        });
        HELD.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < budget).then_some(n + 1)
        })
        .ok()
        .map(|_| HeldSlot)
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Record bytes a query reads before the packets it kept of them are copied out of their
/// chunks when they keep less than half (see `LocalUpstream::answer`): bounds the chunks a
/// batch being filled holds to about this much plus one chunk per file being read.
const COMPACT_AFTER: usize = 1 << 20;

/// What reading one file showed: its packets' time range and count, and whether it was read
/// to its end.
#[derive(Debug, Default)]
struct Span {
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    packets: u64,
    whole: bool,
    /// The time its name gave the file's packets, when the merge opened it at that time.
    assumed: Option<Timestamp>,
    /// The earliest packet of it the answer took (only those can be out of merge order).
    first_kept: Option<Timestamp>,
}

impl Span {
    fn saw(&mut self, ts: Timestamp) {
        self.first = Some(self.first.map_or(ts, |f| f.min(ts)));
        self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
        self.packets += 1;
    }

    fn kept(&mut self, ts: Timestamp) {
        self.first_kept = Some(self.first_kept.map_or(ts, |f| f.min(ts)));
    }
}

/// Forwards the reading thread's messages to the job, and fails the upstream when the thread
/// has made no progress for [`STUCK_AFTER`] while the job was waiting for it.
async fn relay(
    mut rx: mpsc::Receiver<Message>,
    tx: mpsc::Sender<Message>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = progress.steps.load(Ordering::Relaxed);
    let mut still_since = tokio::time::Instant::now();
    loop {
        tokio::select! {
            // Messages first: a tick is looked at only when the thread has nothing queued,
            // so a thread waiting on a slow job is never taken for a stuck one.
            biased;
            m = rx.recv() => match m {
                Some(m) => {
                    if tx.send(m).await.is_err() {
                        return;
                    }
                    still_since = tokio::time::Instant::now();
                }
                None => return,
            },
            () = cancel.cancelled() => return,
            _ = tick.tick() => {
                let now = progress.steps.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    still_since = tokio::time::Instant::now();
                } else if still_since.elapsed() >= STUCK_AFTER {
                    let file = progress.file.lock().expect("progress lock").clone();
                    let _ = tx.send(Message::Failed(Error::Stuck { file, after: STUCK_AFTER })).await;
                    return;
                }
            }
        }
    }
}

/// Readable and unreadable files of a directory (`/stats`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileCounts {
    /// The indexes, when the directory is indexed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexCounts>,
    /// Files that yield packets (or could).
    pub readable: usize,
    /// Files that yield nothing because they cannot be read, with the reason.
    pub unreadable: Vec<UnreadableFile>,
}

/// What a directory's answer to a query is estimated to be (see [`LocalUpstream::estimate`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// Packets.
    pub packets: u64,
    /// Bytes of capture records.
    pub bytes: u64,
    /// Files in the window estimated from their index.
    pub indexed_files: usize,
    /// Files in the window without a usable index, counted whole (scaled to the window).
    pub scanned_files: usize,
}

impl std::ops::AddAssign for Estimate {
    fn add_assign(&mut self, o: Estimate) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.indexed_files += o.indexed_files;
        self.scanned_files += o.scanned_files;
    }
}

/// A directory's indexes (`/stats`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexCounts {
    /// Files with an index covering all of them.
    pub indexed: usize,
    /// Files that cannot be indexed (damaged, or the index could not be written): scanned by queries.
    pub unindexable: usize,
    /// Bytes of capture waiting to be indexed (new, grown, or still being written).
    pub backlog_bytes: u64,
    /// Bytes of the index files.
    pub index_bytes: u64,
    /// Capture files read whole since the start (to learn their time range or index them):
    /// after a restart over an indexed directory, only files that changed.
    pub files_read: u64,
}

/// A file that cannot be read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnreadableFile {
    /// Its path.
    pub file: String,
    /// Why.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_names_match_as_documented() {
        let suricata = EpochName::parse("log.pcap.{epoch}").unwrap();
        let s = |t: i128| Some(Timestamp(t * pcap::NANOS_PER_SEC));
        assert_eq!(suricata.epoch("log.pcap.1700000000"), s(1_700_000_000));
        assert_eq!(suricata.epoch("log.pcap.1700000000.lz4"), s(1_700_000_000));
        assert_eq!(suricata.epoch("log.pcap.17x"), None);
        assert_eq!(suricata.epoch("xlog.pcap.1700000000"), None);
        assert_eq!(suricata.epoch("log.pcap."), None);
        assert_eq!(suricata.epoch("log.pcap.1234567890123"), None);
        // Suricata's usec names; its multi mode's thread numbers are not epochs.
        assert_eq!(
            suricata.epoch("log.pcap.1700000000.123456"),
            s(1_700_000_000)
        );
        assert_eq!(suricata.epoch("log.pcap.3.1700000000"), None);
        let multi = EpochName::parse("log.pcap.{n}.{epoch}").unwrap();
        assert_eq!(
            multi.matches("log.pcap.3.1700000000.lz4"),
            Some((Timestamp(1_700_000_000 * pcap::NANOS_PER_SEC), 3))
        );
        assert_eq!(multi.matches("log.pcap.1700000000.123456"), None);
        assert_eq!(EpochName::parse("{n}{epoch}"), None);
        assert_eq!(suricata.epoch("log.pcap.1700000000.txt"), None);
        let tcpdump = EpochName::parse("trace-{epoch}.pcap").unwrap();
        assert_eq!(tcpdump.epoch("trace-1700000000.pcap.gz"), s(1_700_000_000));
        assert_eq!(tcpdump.epoch("trace-1700000000.pcapng"), None);
        assert_eq!(EpochName::parse("no-placeholder"), None);
        assert_eq!(EpochName::parse("{epoch}-{epoch}"), None);
    }

    /// A little-endian µs pcap of the corpus.
    fn sample() -> Vec<u8> {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps/merge");
        std::fs::read(corpus.join("sensor-a__tls2-streams-mod3-0.pcap")).unwrap()
    }

    /// An upstream over `dir` with the default layout, no index, refreshed.
    fn refreshed(dir: &Path) -> LocalUpstream {
        let up = LocalUpstream::new(&crate::config::LocalDir {
            name: "r".into(),
            path: dir.to_owned(),
            layout: Layout::default(),
            index_dir: None,
        });
        up.refresh().unwrap();
        up
    }

    /// A little-endian classic pcap with every record's time moved by `secs`.
    fn shifted(pcap: &[u8], secs: u32) -> Vec<u8> {
        assert_eq!(
            pcap[..4],
            [0xd4, 0xc3, 0xb2, 0xa1],
            "a little-endian µs pcap"
        );
        let mut v = pcap.to_vec();
        let mut at = 24;
        while at + 16 <= v.len() {
            let t = u32::from_le_bytes(v[at..at + 4].try_into().unwrap()) + secs;
            v[at..at + 4].copy_from_slice(&t.to_le_bytes());
            at += 16 + u32::from_le_bytes(v[at + 8..at + 12].try_into().unwrap()) as usize;
        }
        v
    }

    /// Rotation files are probed (first packet only), not read whole, and a window picks them
    /// by their names: a file before the window is skipped, its neighbour's start (plus the
    /// slack) bounding it; a name that lies gets its file read whole.
    #[test]
    fn rotation_files_are_chosen_by_name() {
        let dir = tempfile::TempDir::new().unwrap();
        let bytes = sample();
        let first = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
        // Three hours of rotation, one file an hour; and a file whose name is half an hour
        // after its first packet.
        let name = |t: u32| dir.path().join(format!("log.pcap.{t}"));
        for k in 0..3 {
            std::fs::write(name(first + 3600 * k), shifted(&bytes, 3600 * k)).unwrap();
        }
        let liar = dir
            .path()
            .join(format!("log.pcap.{}", first + 3 * 3600 + 1800));
        std::fs::write(&liar, shifted(&bytes, 3 * 3600)).unwrap();
        let up = refreshed(dir.path());
        let idx = up.index.lock().unwrap().clone();
        for k in 0..3 {
            assert!(
                idx[&name(first + 3600 * k)].last.is_none(),
                "probed, not read whole"
            );
        }
        assert!(idx[&liar].last.is_some(), "the liar is read whole");
        let at = |secs: u32| Timestamp(i128::from(secs) * pcap::NANOS_PER_SEC);
        // Half past the first hour: the first file ends at the second's start (plus slack).
        let chosen: Vec<PathBuf> = up
            .overlapping(at(first + 5400), at(first + 5401))
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(chosen, vec![name(first + 3600)]);
        // The last honest file of the sequence is open-ended; the liar holds the fourth hour.
        let chosen: Vec<PathBuf> = up
            .overlapping(at(first + 3 * 3600 + 60), at(first + 3 * 3600 + 61))
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(chosen, vec![name(first + 7200), liar]);
    }

    /// A file whose name is earlier than its first packet (a writer whose packets run ahead of
    /// the clock it names files by) does not cut the previous file short.
    #[test]
    fn a_next_name_earlier_than_its_packets_does_not_cut_the_previous_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let bytes = sample();
        let first = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
        let a = dir.path().join(format!("log.pcap.{first}"));
        std::fs::write(&a, &bytes).unwrap();
        // Named 60 s after A's start; its packets begin 200 s after it.
        std::fs::write(
            dir.path().join(format!("log.pcap.{}", first + 60)),
            shifted(&bytes, 200),
        )
        .unwrap();
        let up = refreshed(dir.path());
        let at = |secs: u32| Timestamp(i128::from(secs) * pcap::NANOS_PER_SEC);
        let chosen = up.overlapping(at(first + 100), at(first + 101));
        assert!(chosen.iter().any(|(p, _)| *p == a), "{chosen:?}");
    }

    /// `x.pcap.gz` beside `x.pcap` (a compressor at work) is the same packets: read once.
    #[test]
    fn a_compressed_copy_beside_its_original_is_not_read_twice() {
        use std::io::Write;
        let dir = tempfile::TempDir::new().unwrap();
        let bytes = sample();
        std::fs::write(dir.path().join("x.pcap"), &bytes).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        std::fs::write(dir.path().join("x.pcap.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(dir.path().join("y.pcap.gz"), b"not really").unwrap();
        let up = refreshed(dir.path());
        let idx = up.index.lock().unwrap();
        let mut names: Vec<String> = idx
            .keys()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["x.pcap", "y.pcap.gz"]);
    }
}
