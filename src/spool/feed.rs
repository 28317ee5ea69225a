//! The in-memory tail of a job's capture: the chunks the merge produced most recently, shared
//! (by reference count, not copied) by every client following the job.
//!
//! Two modes:
//! - **Spooled** (the normal case): the feed holds at most about [`FEED_BYTES`] beyond what the
//!   spool file already has; a chunk leaves the feed only once it is in the file, so a reader
//!   that falls behind the feed reads the file, and one that keeps up never touches the disk.
//!   The job is paced by the spool writer, never by a client.
//! - **Direct** (spooling switched off, or the spool's disk failed mid-job): there is no file to
//!   fall back on, so a chunk leaves the feed only once every attached reader has taken it:
//!   the slowest client paces the job, and memory stays bounded by [`FEED_BYTES`] plus one
//!   chunk. A reader attaching after byte 0 has left cannot be served from the start.
//!
//! Invariants: the chunks are contiguous and cover `[start, end)`; `end` only grows and is
//! always a record boundary (the producer pushes whole records); the outcome is set once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

/// Bytes the feed keeps beyond what it must (spooled: beyond the file; direct: the pacing
/// window).
pub const FEED_BYTES: u64 = 8 << 20;

/// What the feed holds.
#[derive(Debug, Default)]
struct Window {
    chunks: VecDeque<Bytes>,
    start: u64,
    end: u64,
    /// How much of the capture the spool file holds (spooled mode).
    written: u64,
    direct: bool,
    outcome: Option<Result<(), Incomplete>>,
}

/// Why a capture will never be whole: what its readers were given must not be presented as
/// complete (an HTTP body ends without its final chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Incomplete {
    /// A user cancelled the job.
    #[error("the job was cancelled")]
    Cancelled,
    /// Every upstream failed: a header-only capture must not look like a clean "no packets".
    #[error("every upstream failed")]
    AllUpstreamsFailed,
    /// Classic pcap was asked for (`format/pcap`) and the inputs have more than one link type.
    #[error("classic pcap was asked for, and the inputs have more than one link type")]
    MixedLinkTypes,
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShutDown,
    /// The job ended without saying how (it was dropped).
    #[error("the job ended before its capture was complete")]
    Abandoned,
}

impl Window {
    /// Drops front chunks no one needs from memory any more, keeping `keep` bytes: spooled,
    /// those the file holds; direct, those every reader (`min_reader`) has taken. Returns
    /// whether something was dropped, and whether a reader holds back a direct feed.
    fn evict(&mut self, min_reader: Option<u64>, keep: u64) -> (bool, bool) {
        let mut changed = false;
        while self.end - self.start > keep {
            let front = self.chunks.front().map_or(0, |c| c.len() as u64);
            let front_end = self.start + front;
            let free = if self.direct {
                min_reader.is_none_or(|m| m >= front_end)
            } else {
                self.written >= front_end
            };
            if !free {
                return (changed, self.direct);
            }
            self.chunks.pop_front();
            self.start = front_end;
            changed = true;
        }
        (changed, false)
    }
}

/// Space is given back in steps of this many bytes (a power of two).
const GIVE_BACK_STEP: u64 = 1 << 20;

/// See the module documentation.
#[derive(Debug)]
pub struct Feed {
    window: watch::Sender<Window>,
    /// Reader id → the offset it has consumed up to (direct mode paces on the minimum).
    readers: Mutex<(u64, HashMap<u64, u64>)>,
    /// Bumped when a reader advances or leaves.
    advanced: watch::Sender<u64>,
    /// Maps of the part file handed out and still alive (see `reader`).
    live_maps: Arc<AtomicUsize>,
    /// Bytes at the start of an abandoned part file already given back to the file system.
    punched: Arc<AtomicU64>,
    /// A punch is under way (on a blocking thread: a stalled file system holds one thread
    /// per feed, never an async worker).
    punching: Arc<std::sync::atomic::AtomicBool>,
}

/// What a reader finds at its offset.
#[derive(Debug)]
pub enum Lookup {
    /// Bytes starting at the offset.
    Data(Bytes),
    /// The offset has left the feed; bytes before `start` are in the spool file (spooled mode).
    Evicted {
        /// The feed's first offset.
        start: u64,
    },
    /// Nothing yet.
    Pending,
    /// The capture ended here (`Ok`), or will never be whole (`Err`, whatever the offset).
    Ended(Result<(), Incomplete>),
}

impl Feed {
    /// An empty feed in spooled mode.
    pub fn new() -> Arc<Feed> {
        Arc::new(Feed {
            window: watch::Sender::new(Window::default()),
            readers: Mutex::new((0, HashMap::new())),
            advanced: watch::Sender::new(0),
            live_maps: Arc::new(AtomicUsize::new(0)),
            punched: Arc::default(),
            punching: Arc::default(),
        })
    }

    /// Bytes of an abandoned part file that its readers still hold on the disk (unlinked but
    /// open, not yet given back): space the file system will get back as they read on.
    pub fn held_bytes(&self) -> u64 {
        let (direct, written) = {
            let w = self.window.borrow();
            (w.direct, w.written)
        };
        let readers = !self.readers.lock().expect("readers lock").1.is_empty();
        if direct && readers {
            written.saturating_sub(self.punched.load(Ordering::SeqCst))
        } else {
            0
        }
    }

    /// Bytes of the capture the part file holds (what the writer said is durable).
    pub fn file_len(&self) -> u64 {
        self.window.borrow().written
    }

    /// The count of live maps of the part file (readers count the maps they hand out).
    pub fn live_maps(&self) -> &Arc<AtomicUsize> {
        &self.live_maps
    }

    /// In direct mode, after the part file was abandoned (unlinked, held open only by slow
    /// readers): gives the bytes every reader has consumed back to the file system by punching
    /// a hole in `file`, so that a full disk empties as the readers advance. Only while no map
    /// of the file is alive — mapped pieces may still be on their way to a client — and only
    /// below the slowest reader.
    pub fn give_back(&self, file: &std::fs::File) {
        if !self.is_direct() || self.live_maps.load(Ordering::SeqCst) != 0 {
            return;
        }
        let slowest = {
            let r = self.readers.lock().expect("readers lock");
            r.1.values().copied().min()
        };
        let Some(slowest) = slowest else { return };
        let target = slowest & !(GIVE_BACK_STEP - 1);
        let done = self.punched.load(Ordering::SeqCst);
        if target <= done || self.punching.swap(true, Ordering::SeqCst) {
            return;
        }
        let (punched, punching) = (Arc::clone(&self.punched), Arc::clone(&self.punching));
        let Ok(file) = file.try_clone() else {
            punching.store(false, Ordering::SeqCst);
            return;
        };
        let punch = move || {
            use std::os::fd::AsRawFd;
            // SAFETY: fallocate on a descriptor we own; the range is within the file's size
            // and KEEP_SIZE leaves the size alone, so later reads past the hole are
            // unaffected.
            let r = unsafe {
                libc::fallocate(
                    file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    done as libc::off_t,
                    (target - done) as libc::off_t,
                )
            };
            if r == 0 {
                punched.fetch_max(target, Ordering::SeqCst);
            } else {
                tracing::debug!(error = %std::io::Error::last_os_error(), "cannot give back spool space");
            }
            punching.store(false, Ordering::SeqCst);
        };
        // Off the async threads: on a frozen file system the punch waits for the thaw (the
        // hostile pass saw both workers held there).
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(punch)),
            Err(_) => punch(),
        }
    }

    /// Switches to direct mode: from now on only readers free the feed.
    pub fn set_direct(&self) {
        self.window.send_modify(|w| w.direct = true);
    }

    /// Whether the feed is in direct mode.
    pub fn is_direct(&self) -> bool {
        self.window.borrow().direct
    }

    /// Whether a new reader could still get the capture from byte 0 through the feed (or, in
    /// spooled mode, the file).
    pub fn replayable(&self) -> bool {
        let w = self.window.borrow();
        !w.direct || w.start == 0
    }

    /// Appends a chunk of whole records. In direct mode, waits while the feed is over its size
    /// and a reader still needs its oldest chunk. (In spooled mode the spool writer paces the
    /// job, and tells the feed what the file holds through [`Feed::written`].)
    pub async fn push(&self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.window.send_modify(|w| {
            w.end += chunk.len() as u64;
            w.chunks.push_back(chunk);
        });
        loop {
            let mut advanced = self.advanced.subscribe();
            let min_reader = {
                let r = self.readers.lock().expect("readers lock");
                r.1.values().copied().min()
            };
            let mut blocked = false;
            self.window.send_if_modified(|w| {
                let (changed, held) = w.evict(min_reader, FEED_BYTES);
                blocked = held;
                changed
            });
            if !blocked {
                return;
            }
            // A reader still needs the oldest chunk: wait until one advances or leaves.
            if advanced.changed().await.is_err() {
                return;
            }
        }
    }

    /// Ends the capture: `Ok` once every byte has been pushed, `Err` when it will never be
    /// whole. Only the first call counts. From now on the feed shrinks to what its readers
    /// still need (a finished job may stay in the registry for days: it must not hold memory).
    pub fn finish(&self, outcome: Result<(), Incomplete>) {
        self.window.send_if_modified(|w| {
            if w.outcome.is_some() {
                return false;
            }
            w.outcome = Some(outcome);
            true
        });
        self.trim();
    }

    /// Records that the spool file durably holds the capture's first `written` bytes (called by
    /// the spool writer) and frees what no one needs from memory any more.
    pub fn written(&self, written: u64) {
        self.window.send_if_modified(|w| {
            w.written = w.written.max(written);
            match w.outcome {
                None if !w.direct => w.evict(None, FEED_BYTES).0,
                _ => false,
            }
        });
        self.trim();
    }

    /// Once finished, drops every chunk the file holds (spooled) or every reader has taken
    /// (direct).
    fn trim(&self) {
        let min_reader = self
            .readers
            .lock()
            .expect("readers lock")
            .1
            .values()
            .copied()
            .min();
        self.window.send_if_modified(|w| match w.outcome {
            None => false,
            // Nobody can read a failed capture: drop it all.
            Some(Err(_)) => {
                let had = !w.chunks.is_empty();
                w.chunks.clear();
                w.start = w.end;
                had
            }
            Some(Ok(())) => w.evict(min_reader, 0).0,
        });
    }

    /// A new reader at offset 0.
    pub fn reader(self: &Arc<Self>) -> FeedReader {
        let id = {
            let mut r = self.readers.lock().expect("readers lock");
            r.0 += 1;
            let id = r.0;
            r.1.insert(id, 0);
            id
        };
        FeedReader {
            feed: Arc::clone(self),
            rx: self.window.subscribe(),
            id,
        }
    }
}

/// One client's view of a [`Feed`]; leaving (drop) frees what only it still needed.
#[derive(Debug)]
pub struct FeedReader {
    feed: Arc<Feed>,
    rx: watch::Receiver<Window>,
    id: u64,
}

impl FeedReader {
    /// What is at `offset`; a failure is reported at once, whatever the offset.
    pub fn lookup(&mut self, offset: u64) -> Lookup {
        let w = self.rx.borrow_and_update();
        if let Some(Err(why)) = &w.outcome {
            return Lookup::Ended(Err(*why));
        }
        if offset < w.start {
            return Lookup::Evicted { start: w.start };
        }
        if offset >= w.end {
            return match &w.outcome {
                Some(o) => Lookup::Ended(*o),
                None => Lookup::Pending,
            };
        }
        let mut at = w.start;
        for c in &w.chunks {
            let len = c.len() as u64;
            if offset < at + len {
                return Lookup::Data(c.slice((offset - at) as usize..));
            }
            at += len;
        }
        Lookup::Pending
    }

    /// Records that this reader has consumed everything before `offset`.
    pub fn advance(&self, offset: u64) {
        if let Some(at) = self
            .feed
            .readers
            .lock()
            .expect("readers lock")
            .1
            .get_mut(&self.id)
        {
            *at = offset;
        }
        self.feed.advanced.send_modify(|n| *n = n.wrapping_add(1));
        self.feed.trim();
    }

    /// The feed this reader follows.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// Waits until the feed changes. `false` if the feed is gone.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

impl Drop for FeedReader {
    fn drop(&mut self) {
        self.feed
            .readers
            .lock()
            .expect("readers lock")
            .1
            .remove(&self.id);
        self.feed.advanced.send_modify(|n| *n = n.wrapping_add(1));
        self.feed.trim();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: usize, byte: u8) -> Bytes {
        Bytes::from(vec![byte; n])
    }

    #[tokio::test]
    async fn spooled_mode_keeps_what_the_file_lacks_and_a_reader_falls_back_to_the_file() {
        let feed = Feed::new();
        let mut r = feed.reader();
        let mb = 1 << 20;
        for i in 0..12u8 {
            // The file lags two chunks behind.
            let written = (u64::from(i).saturating_sub(2)) * mb as u64;
            feed.written(written);
            feed.push(chunk(mb, i)).await;
        }
        match r.lookup(0) {
            Lookup::Evicted { start } => assert!(start > 0 && start <= 10 * mb as u64),
            other => panic!("{other:?}"),
        }
        match r.lookup(11 * mb as u64 + 5) {
            Lookup::Data(b) => assert_eq!((b.len(), b[0]), (mb - 5, 11)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.lookup(12 * mb as u64), Lookup::Pending));
        feed.finish(Ok(()));
        assert!(matches!(r.lookup(12 * mb as u64), Lookup::Ended(Ok(()))));
        // Once the file holds everything, nothing stays in memory.
        feed.written(12 * mb as u64);
        assert!(matches!(r.lookup(11 * mb as u64), Lookup::Evicted { .. }));
    }

    #[tokio::test]
    async fn direct_mode_is_paced_by_the_slowest_reader_and_a_failure_is_seen_at_once() {
        let feed = Feed::new();
        feed.set_direct();
        let mut slow = feed.reader();
        let mb = 1u64 << 20;
        let producer = {
            let feed = Arc::clone(&feed);
            tokio::spawn(async move {
                for i in 0..20u8 {
                    feed.push(chunk(mb as usize, i)).await;
                }
            })
        };
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // The producer is stuck: the slow reader has taken nothing.
        assert!(!producer.is_finished());
        assert!(feed.replayable());
        let mut offset = 0;
        let mut seen = 0u8;
        while offset < 20 * mb {
            match slow.lookup(offset) {
                Lookup::Data(b) => {
                    assert_eq!(b[0], seen);
                    offset += b.len() as u64;
                    seen += 1;
                    slow.advance(offset);
                }
                Lookup::Pending => assert!(slow.changed().await),
                other => panic!("{other:?}"),
            }
        }
        producer.await.unwrap();
        assert!(!feed.replayable(), "byte 0 has left a direct feed");
        feed.finish(Err(Incomplete::Cancelled));
        assert!(matches!(slow.lookup(0), Lookup::Ended(Err(_))));
        drop(slow);
        assert_eq!(
            feed.window.borrow().chunks.len(),
            0,
            "a finished feed without readers is empty"
        );
    }
}
