//! Reading a job's capture: [`Follower`] for a capture still being produced, [`Complete`] for
//! a finished file (its length, validators, `Range`).
//!
//! Invariants:
//! - Every chunk a [`Follower`] hands out ends on a record boundary of the capture (the feed's
//!   chunks are whole records; file pieces are extended to the end of the record they cut), so
//!   a stream cut between two of them ends at a record boundary. A complete file is served in
//!   plain pieces (walking every record of a hit would halve its throughput); a stream of one
//!   that must end early is first completed to the next boundary ([`Complete::record_end`]).
//! - Only spool files are mapped here: they only grow while followed and are never truncated
//!   (a failed file is unlinked, which leaves an open file's pages in place), and only bytes
//!   below what the feed says the file holds are mapped.

use std::fs::File;
use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::feed::{Feed, FeedReader, Incomplete, Lookup};
use crate::pcap::MAX_BLOCK;

/// Largest piece a reader hands out at once (plus the rest of the record it cuts). Pieces are
/// views of the mapped file, not heap copies, so a client costs file-backed pages only
/// (measured: heap copies of 256 KiB-1 MiB put 20 clients of one job at 72-128 MiB of
/// anonymous memory).
pub const READ_CHUNK: usize = 1024 * 1024;

/// A map of a spool file counted while alive (see [`Feed::give_back`]).
struct CountedMap {
    map: memmap2::Mmap,
    live: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for CountedMap {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for CountedMap {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads `len` bytes of `file` from `offset` into memory (a copy, for abandoned part files
/// whose consumed bytes are given back: no map may outlive the hole punched under it).
fn read_copy(file: &File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
}

/// Maps `len` bytes of `file` from `offset` (page-aligned underneath) as `Bytes`, counted in
/// `live` while any slice of it is alive.
///
/// Sound for spool files only; see the module invariants.
fn map_range(
    file: &File,
    offset: u64,
    len: usize,
    live: &Arc<AtomicUsize>,
) -> std::io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let aligned = offset - offset % page;
    let skip = (offset - aligned) as usize;
    // SAFETY: see the module invariants; the map is read-only and private.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(aligned)
            .len(skip + len)
            .map(file)?
    };
    live.fetch_add(1, Ordering::SeqCst);
    let map = CountedMap {
        map,
        live: Arc::clone(live),
    };
    Ok(Bytes::from_owner(map).slice(skip..))
}

/// Which container a spool file holds, from its first four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Pcap,
    Pcapng,
}

fn record_len_in(c: Container, rest: &[u8]) -> Option<usize> {
    match c {
        Container::Pcap => {
            let caplen = u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?);
            Some(16 + caplen as usize)
        }
        Container::Pcapng => {
            let len = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?) as usize;
            (len >= 12).then_some(len)
        }
    }
}

/// Walks record boundaries of one spool file.
#[derive(Debug, Clone, Copy)]
struct Walker {
    container: Container,
}

impl Walker {
    fn detect(head: &[u8]) -> Option<Walker> {
        let container = match head.get(..4)? {
            [0x0a, 0x0d, 0x0d, 0x0a] => Container::Pcapng,
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => Container::Pcap,
            _ => return None,
        };
        Some(Walker { container })
    }

    /// The end of the whole records of `data` (starting at file offset `at`, a boundary)
    /// covering at least `min` bytes, or the first record whole if it is longer; `data.len()`
    /// when the bytes make no sense (never less than `min`).
    fn boundary(&self, data: &[u8], at: u64, min: usize) -> usize {
        let mut end = 0usize;
        while end < min.min(data.len()) {
            let len = if at == 0 && end == 0 && self.container == Container::Pcap {
                24
            } else {
                match record_len_in(self.container, &data[end..]) {
                    Some(n) => n,
                    None => return data.len(),
                }
            };
            end = end.saturating_add(len);
        }
        end.min(data.len())
    }
}

/// How a follower's stream ended.
#[derive(Debug)]
pub enum FollowEnd {
    /// Everything was read and the capture is whole.
    Complete,
    /// The capture will never be whole: what was read must not be presented as complete.
    Incomplete(Incomplete),
    /// The start of the capture is no longer available (streamed without a spool).
    StartLost,
    /// Reading the spool file failed.
    Read(Arc<std::io::Error>),
}

/// Reads a job's capture from byte 0 while it grows: from the job's [`Feed`] while the bytes
/// are there (no disk read, no copy), from the spool file for what has left the feed. Each
/// [`next`](Follower::next) returns the next whole records, waiting for more; the stream ends
/// when the feed says the capture is whole (or will never be). The file, when there is one,
/// must be opened before the job can rename or delete it (the part file).
#[derive(Debug)]
pub struct Follower {
    file: Option<File>,
    walker: Option<Walker>,
    feed: FeedReader,
    offset: u64,
}

impl Follower {
    /// Follows a job's feed, with its part file (if the job has one) for what leaves the feed.
    pub fn new(file: Option<File>, feed: &Arc<Feed>) -> Follower {
        Follower::with_reader(file, feed.reader())
    }

    /// Follows with a reader registered earlier (at offset 0: see [`Feed::reader`]).
    pub fn with_reader(file: Option<File>, feed: FeedReader) -> Follower {
        Follower {
            file,
            walker: None,
            feed,
            offset: 0,
        }
    }

    /// Past the end of an abandoned part file this reader needs it no more: what every reader
    /// has read is given back, and its handle is closed (the last handle closed frees the rest).
    fn leave_abandoned_file(&mut self) {
        let feed = self.feed.feed();
        if !feed.is_direct() {
            return;
        }
        if let Some(file) = &self.file {
            feed.give_back(file);
            if self.offset >= feed.file_len() {
                self.file = None;
            }
        }
    }

    /// The next chunk (about [`READ_CHUNK`] bytes from the file; a whole feed chunk from
    /// memory), or how the stream ended.
    ///
    /// # Errors
    /// The end of the stream (see [`FollowEnd`]).
    pub async fn next(&mut self) -> Result<Bytes, FollowEnd> {
        loop {
            match self.feed.lookup(self.offset) {
                Lookup::Data(b) => {
                    if self.offset == 0 {
                        self.walker = Walker::detect(&b);
                    }
                    self.offset += b.len() as u64;
                    self.feed.advance(self.offset);
                    self.leave_abandoned_file();
                    return Ok(b);
                }
                Lookup::Evicted { start } => {
                    // Spooled mode frees only what the file holds, so it is there.
                    let Some(file) = &self.file else {
                        return Err(FollowEnd::StartLost);
                    };
                    let avail = start - self.offset;
                    // An abandoned part file (direct mode) is read by copies, so that what
                    // every reader has consumed can be given back (see `Feed::give_back`).
                    let direct = self.feed.feed().is_direct();
                    let chunk = if direct {
                        // Enough for READ_CHUNK and the whole record (or block) it cuts.
                        let n = avail.min((READ_CHUNK + MAX_BLOCK as usize) as u64);
                        read_copy(file, self.offset, n as usize)
                    } else {
                        map_range(
                            file,
                            self.offset,
                            avail as usize,
                            self.feed.feed().live_maps(),
                        )
                    }
                    .map_err(|e| FollowEnd::Read(Arc::new(e)))?;
                    if self.offset == 0 {
                        self.walker = Walker::detect(&chunk);
                    }
                    let n = match self.walker {
                        Some(w) => w.boundary(&chunk, self.offset, READ_CHUNK),
                        None => chunk.len(),
                    };
                    let chunk = chunk.slice(..n);
                    self.offset += n as u64;
                    self.feed.advance(self.offset);
                    self.leave_abandoned_file();
                    return Ok(chunk);
                }
                Lookup::Ended(Ok(())) => return Err(FollowEnd::Complete),
                Lookup::Ended(Err(why)) => return Err(FollowEnd::Incomplete(why)),
                Lookup::Pending => {}
            }
            if !self.feed.changed().await {
                return Err(FollowEnd::Incomplete(Incomplete::Abandoned));
            }
        }
    }
}

/// A complete spool file, mapped: what a hit or a finished job's reader gets.
#[derive(Debug, Clone)]
pub struct Complete {
    data: Bytes,
    born: Option<std::time::SystemTime>,
    inode: u64,
}

/// What to send for a request's `Range` header (RFC 9110 §14).
#[derive(Debug)]
pub enum Ranged {
    /// The whole file (no `Range`, or one this server ignores: a unit other than bytes, a
    /// malformed or a multi-range spec).
    Whole(Bytes),
    /// One satisfiable range: bytes `start..=end` of `total`.
    Part {
        /// The bytes.
        data: Bytes,
        /// First byte offset.
        start: u64,
        /// Last byte offset (inclusive).
        end: u64,
        /// The file's length.
        total: u64,
    },
    /// A well-formed range that starts past the end.
    Unsatisfiable {
        /// The file's length.
        total: u64,
    },
}

impl Complete {
    /// Maps a complete spool file.
    pub(super) fn open(path: &std::path::Path) -> std::io::Result<Complete> {
        use std::os::unix::fs::MetadataExt;
        let f = File::open(path)?;
        let meta = f.metadata()?;
        let len = meta.len() as usize;
        Ok(Complete {
            // A complete file is never given back while read: its maps need no count.
            data: map_range(&f, 0, len, &Arc::new(AtomicUsize::new(0)))?,
            // When the file was made: a complete file never changes, and its modification
            // time is the cleanup's "last used", moved by every read.
            born: meta.created().ok(),
            inode: meta.ino(),
        })
    }

    /// Its length.
    pub fn len(&self) -> u64 {
        self.data.len() as u64
    }

    /// Its first `n` bytes (fewer if it is shorter): what format it is.
    pub fn head(&self, n: usize) -> Bytes {
        self.data.slice(..n.min(self.data.len()))
    }

    /// Whether it is empty (never, for a capture: it has a header).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// A date that stays while the file does (`Last-Modified`): when it was created (the job's
    /// start; its bytes never change after it completes, and a new run makes a new file).
    /// `None` on a file system that keeps no creation time.
    pub fn born(&self) -> Option<std::time::SystemTime> {
        self.born
    }

    /// A strong validator: the file's inode and length (a job's file is written once; a new
    /// run of the job makes a new inode).
    pub fn etag(&self) -> String {
        format!("\"{:x}-{:x}\"", self.inode, self.data.len())
    }

    /// The answer to a `Range` header value (`None`: no header).
    pub fn range(&self, header: Option<&str>) -> Ranged {
        let total = self.len();
        match header.map(|h| parse_range(h, total)) {
            None | Some(RangeSpec::Ignore) => Ranged::Whole(self.data.clone()),
            Some(RangeSpec::Unsatisfiable) => Ranged::Unsatisfiable { total },
            Some(RangeSpec::Part(start, end)) => Ranged::Part {
                data: self.data.slice(start as usize..=end as usize),
                start,
                end,
                total,
            },
        }
    }

    /// The file in pieces of [`READ_CHUNK`] bytes (views of the map, not copies).
    pub fn pieces(data: Bytes) -> impl Iterator<Item = Bytes> {
        let mut rest = data;
        std::iter::from_fn(move || {
            (!rest.is_empty()).then(|| rest.split_to(READ_CHUNK.min(rest.len())))
        })
    }

    /// The first record boundary of a whole capture file at or after byte `at` (the file's
    /// length if its bytes make no sense as records). Walks the records from the start, so it
    /// is for the rare moment a stream must end early on a boundary (a shutdown's cut), not
    /// for every piece: walking every record of every hit halved its throughput.
    pub fn record_end(data: &[u8], at: usize) -> usize {
        match Walker::detect(data) {
            Some(w) if at > 0 => w.boundary(data, 0, at),
            Some(_) => 0,
            None => data.len(),
        }
    }
}

enum RangeSpec {
    Ignore,
    Unsatisfiable,
    Part(u64, u64),
}

/// One `bytes=a-b` / `bytes=a-` / `bytes=-n` range within `total`. Per RFC 9110 a server may
/// ignore a Range it does not support: other units, several ranges and malformed specs are
/// answered with the whole file; an end past the file is clamped.
fn parse_range(h: &str, total: u64) -> RangeSpec {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignore;
    };
    if spec.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Ignore;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if a.is_empty() {
        if !digits(b) {
            return RangeSpec::Ignore;
        }
        // A suffix longer than any u64 still means "the whole file".
        let n = b.parse::<u64>().unwrap_or(u64::MAX);
        if n == 0 || total == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Part(total.saturating_sub(n), total - 1);
    }
    if !digits(a) || !(b.is_empty() || digits(b)) {
        return RangeSpec::Ignore;
    }
    let Ok(start) = a.parse::<u64>() else {
        // Past any file.
        return RangeSpec::Unsatisfiable;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        b.parse::<u64>().unwrap_or(u64::MAX)
    };
    if end < start {
        return RangeSpec::Ignore;
    }
    if start >= total {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Part(start, end.min(total - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(h: &str, total: u64) -> Option<(u64, u64)> {
        match parse_range(h, total) {
            RangeSpec::Part(a, b) => Some((a, b)),
            _ => None,
        }
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(part("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(part("bytes=90-", 100), Some((90, 99)));
        assert_eq!(part("bytes=-10", 100), Some((90, 99)));
        assert_eq!(part("bytes=-1000", 100), Some((0, 99)));
        // An end past the file is clamped, even past 2^64.
        assert_eq!(part("bytes=5-99999999999999999999999", 100), Some((5, 99)));
        assert!(matches!(
            parse_range("bytes=100-", 100),
            RangeSpec::Unsatisfiable
        ));
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=x-1",
            "bytes=5-1",
            "bytes",
        ] {
            assert!(
                matches!(parse_range(ignored, 100), RangeSpec::Ignore),
                "{ignored}"
            );
        }
    }

    #[test]
    fn record_end_finds_the_next_boundary_and_pieces_cover_the_file() {
        // A classic pcap: header, then records of 16 + 1000 bytes.
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1];
        f.resize(24, 0);
        for i in 0..3000u32 {
            let mut h = [0u8; 16];
            h[8..12].copy_from_slice(&1000u32.to_le_bytes());
            f.extend_from_slice(&h);
            f.extend(std::iter::repeat_n(i as u8, 1000));
        }
        let total = f.len();
        for at in [1, 24, 25, 1040, 1041, READ_CHUNK, 2 * READ_CHUNK + 7, total] {
            let end = Complete::record_end(&f, at);
            assert!(end >= at && (end - 24) % 1016 == 0, "{at} -> {end}");
            assert!(end - at < 1016, "{at} -> {end}: the first boundary");
        }
        assert_eq!(Complete::record_end(&f, 0), 0);
        let pieces: Vec<Bytes> = Complete::pieces(Bytes::from(f.clone())).collect();
        assert!(pieces.iter().all(|p| p.len() <= READ_CHUNK));
        assert_eq!(pieces.concat(), f);
    }
}
