//! The embedded backend: a local directory of pcap/pcapng files as one upstream.
//!
//! - **Time index.** Each file's first and last timestamp (min and max: a file need not be
//!   sorted), declared link types and packet count, keyed by path and remembered with the
//!   file's size and mtime. [`LocalUpstream::refresh`] re-stats the directory and rescans only
//!   files that appeared or changed; vanished files are forgotten. A query reads only files
//!   whose range overlaps its window.
//! - **Order.** The overlapping files are merged by timestamp with [`KWay`] in file-name order,
//!   so a directory of overlapping captures answers in time order; with contiguous groups, the
//!   job's merge of directories then equals one flat `mergecap` of all files in that order.
//! - **Exact window and filter.** Every packet is gated to `[after, before)` and, if the query
//!   has one, passed through a BPF program compiled by libpcap (the `pcap` crate) for the
//!   packet's link type, so `host/net/port/proto/bpf` mean what they mean to tcpdump. A link
//!   type the expression cannot be compiled for (`port 80` on netlink) matches nothing.
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

use std::collections::HashMap;
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

/// What the index knows of one file.
#[derive(Debug, Clone)]
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
}

/// A directory upstream. Cheap to share (`Arc`); the index is behind a mutex held only briefly.
#[derive(Debug)]
pub struct LocalUpstream {
    name: String,
    dir: PathBuf,
    index: Mutex<HashMap<PathBuf, FileEntry>>,
    /// Held for a whole refresh, so concurrent queries do not scan the same new files twice.
    refreshing: Mutex<()>,
}

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
        }
    }
}

fn scan(path: &Path, size: u64, mtime: SystemTime, progress: &Progress) -> FileEntry {
    let mut e = FileEntry::unread(size, mtime);
    progress.opening(path);
    let mut f = match CaptureFile::open(path) {
        Ok(f) => f,
        Err(err) => {
            e.error = Some(err.to_string());
            return e;
        }
    };
    while let Some(p) = f.next_packet() {
        progress.step();
        match p {
            Ok(p) => {
                e.packets += 1;
                e.first = Some(e.first.map_or(p.ts, |f| f.min(p.ts)));
                e.last = Some(e.last.map_or(p.ts, |l| l.max(p.ts)));
            }
            Err(err) => e.error = Some(err.to_string()),
        }
    }
    if f.ended_early().is_some() {
        // Read again at the next refresh: its size and mtime changed.
        e.size = f.size();
    }
    e.declared = f.declared().to_vec();
    e
}

impl LocalUpstream {
    /// An upstream over `dir`, with an empty index (call [`refresh`](Self::refresh)).
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> LocalUpstream {
        LocalUpstream {
            name: name.into(),
            dir: dir.into(),
            index: Mutex::new(HashMap::new()),
            refreshing: Mutex::new(()),
        }
    }

    /// The sensor name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Brings the index up to date with the directory: scans new and changed files, forgets
    /// vanished ones. Blocking (reads files); run it off the async threads.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn refresh(&self) -> Result<(), Error> {
        self.refresh_watched(&Progress::default())
    }

    fn refresh_watched(&self, progress: &Progress) -> Result<(), Error> {
        let _one_at_a_time = self.refreshing.lock().expect("refresh lock");
        let listing = std::fs::read_dir(&self.dir).map_err(|source| Error::Directory {
            path: self.dir.clone(),
            source,
        })?;
        let mut present = std::collections::HashSet::new();
        for entry in listing.flatten() {
            let path = entry.path();
            progress.opening(&path);
            // Follows symlinks (a directory of links to capture files is a fine upstream);
            // `DirEntry::metadata` would not.
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    // A dangling link or a link loop: named, like any file that cannot be read.
                    let e = FileEntry {
                        error: Some(e.to_string()),
                        ..FileEntry::unread(0, SystemTime::UNIX_EPOCH)
                    };
                    self.index
                        .lock()
                        .expect("index lock")
                        .insert(path.clone(), e);
                    present.insert(path);
                    continue;
                }
            };
            if meta.is_dir() {
                continue;
            }
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let known = {
                let idx = self.index.lock().expect("index lock");
                idx.get(&path)
                    .is_some_and(|e| e.size == meta.len() && e.mtime == mtime)
            };
            if !known {
                // A FIFO or device is refused by the open, without blocking, and named.
                let e = scan(&path, meta.len(), mtime, progress);
                self.index
                    .lock()
                    .expect("index lock")
                    .insert(path.clone(), e);
            }
            present.insert(path);
        }
        self.index
            .lock()
            .expect("index lock")
            .retain(|p, _| present.contains(p));
        Ok(())
    }

    /// The indexed files whose time range overlaps `[after, before)`, in name order.
    pub fn overlapping(&self, after: Timestamp, before: Timestamp) -> Vec<(PathBuf, FileEntry)> {
        let idx = self.index.lock().expect("index lock");
        let mut v: Vec<(PathBuf, FileEntry)> = idx
            .iter()
            .filter(|(_, e)| match (e.first, e.last) {
                (Some(f), Some(l)) => f < before && l >= after,
                _ => false,
            })
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Files that yield no packet because they cannot be read, with the reason, in name order.
    pub fn unreadable(&self) -> Vec<(PathBuf, String)> {
        let idx = self.index.lock().expect("index lock");
        let mut v: Vec<(PathBuf, String)> = idx
            .iter()
            .filter(|(_, e)| e.packets == 0)
            .filter_map(|(p, e)| Some((p.clone(), e.error.clone()?)))
            .collect();
        v.sort();
        v
    }

    /// Readable and unreadable files, for `/stats`.
    pub fn files(&self) -> FileCounts {
        let unreadable = self.unreadable();
        let total = self.index.lock().expect("index lock").len();
        FileCounts {
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
            if let Err(e) = me.refresh_watched(&watched) {
                let _ = inner_tx.blocking_send(Message::Failed(e));
                return;
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
        let mut readers: Vec<Option<CaptureFile>> = files
            .into_iter()
            .map(|(p, _)| {
                progress.opening(&p);
                match CaptureFile::open(&p) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        let warning = format!("{}: {e}; skipped", p.display());
                        let _ = tx.blocking_send(Message::Warning(warning));
                        None
                    }
                }
            })
            .collect();
        let mut gate = pcap::Gate::new(after, before, query.clauses(), query.bpf.clone());
        let mut kway = KWay::new(readers.len());
        let mut batch = Vec::with_capacity(BATCH_PACKETS);
        let fill = |i: usize, kway: &mut KWay, readers: &mut [Option<CaptureFile>]| {
            let Some(f) = &mut readers[i] else {
                kway.end(i);
                return;
            };
            progress.step();
            match f.next_packet() {
                Some(Ok(p)) => kway.push(i, p),
                Some(Err(e)) => {
                    let _ = tx.blocking_send(Message::Warning(format!(
                        "{}: {e}; packets after it are skipped",
                        f.path().display()
                    )));
                    kway.end(i);
                }
                None => {
                    if let Some(at) = f.ended_early() {
                        let _ = tx.blocking_send(Message::Warning(format!(
                            "{}: the file shrank or was rewritten while being read (truncated, \
                             rotated or rewritten in place) at byte {at}; its packets before \
                             that were used, none after",
                            f.path().display()
                        )));
                    }
                    kway.end(i);
                }
            }
        };
        for i in 0..readers.len() {
            fill(i, &mut kway, &mut readers);
        }
        let mut popped = 0u32;
        while let Some((i, p)) = kway.pop() {
            popped = popped.wrapping_add(1);
            // A selective filter may send nothing for a long while: notice a stop or a
            // departed job between sends too.
            if popped % 4096 == 0 && (cancel.is_cancelled() || tx.is_closed()) {
                return;
            }
            fill(i, &mut kway, &mut readers);
            if !gate.admits(&p) {
                continue;
            }
            batch.push(p);
            if batch.len() == BATCH_PACKETS {
                if cancel.is_cancelled() {
                    return;
                }
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_PACKETS));
                if tx.blocking_send(Message::Batch(full)).is_err() {
                    return;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(Message::Batch(batch));
        }
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
    /// Files that yield packets (or could).
    pub readable: usize,
    /// Files that yield nothing because they cannot be read, with the reason.
    pub unreadable: Vec<UnreadableFile>,
}

/// A file that cannot be read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnreadableFile {
    /// Its path.
    pub file: String,
    /// Why.
    pub reason: String,
}
