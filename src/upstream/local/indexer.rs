//! Background work of an indexed directory, off the query path: a refresher that notices new
//! and changed files between queries — woken by an inotify watch of the directory tree
//! (inotify, `watch`), with a periodic refresh as the fallback for what a watch misses (network mounts,
//! the inotify watch limit) — and an indexer that builds the index of every file that has
//! none — rotation files a refresh only probed, files whose index went missing (a deleted
//! `index_dir`), files that changed.
//!
//! Invariants: the indexer runs at the lowest CPU and I/O priority and never holds the refresh
//! lock, so a query never waits for it (it holds the file table's lock only to read an entry
//! and to store what it learned); a file that grew since it was indexed (one being written) is
//! indexed on from where its index ends, at every pass (every second): its index lags its
//! last whole record by about a second; what it learned is stored only if the file is still
//! the one it read. Both threads end by themselves when the upstream is dropped.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use std::path::Path;

use super::{FileEntry, IndexState, LocalUpstream, Progress};
use crate::pcap::CaptureFile;

/// How often the directory is looked at between queries when no change is reported.
const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// After a reported change, how long more changes are gathered before the refresh: a capture
/// being written reports every write, and one refresh answers them all.
const GATHER: Duration = Duration::from_millis(500);

/// How often the indexer looks for work when it has none.
const INDEX_EVERY: Duration = Duration::from_secs(1);

/// After an index could not be written (the index directory full, replaced, out of file
/// handles), the next pass waits this long.
const AFTER_WRITE_FAILED: Duration = Duration::from_secs(30);

/// A file being written is indexed on when it has grown by this much or an eighth since its
/// index (whichever is more), or has not changed for [`SETTLE`]: each extension rewrites the
/// index whole, so extending at every pass would write O(n²) bytes over a file's life.
const GROWTH_STEP: u64 = 16 << 20;

/// A file not modified for this long is no longer being written.
const SETTLE: Duration = Duration::from_secs(2);

/// Starts the refresher and the indexer of `u` (an indexed directory).
///
/// # Errors
/// A thread cannot be started.
pub fn start(u: &Arc<LocalUpstream>) -> std::io::Result<()> {
    let weak = Arc::downgrade(u);
    let (name, dir) = (u.name.clone(), u.dir.clone());
    std::thread::Builder::new()
        .name(format!("refresh-{}", u.name))
        .spawn(move || {
            // Set up here, not on the start's path: adding watches walks the tree, and a hung
            // mount in it would hold the start.
            match super::watch::Watch::new(&dir) {
                Ok(w) => {
                    if let Some(u) = weak.upgrade() {
                        let _ = u.watch.set(w);
                    }
                }
                Err(e) => {
                    tracing::warn!(sensor = %name, error = %e, "no change notification: the directory is looked at every 2 s, and at every query");
                }
            }
            refresher(&weak);
        })?;
    if u.index_dir.is_some() {
        let weak = Arc::downgrade(u);
        std::thread::Builder::new()
            .name(format!("index-{}", u.name))
            .spawn(move || indexer(&weak))?;
    }
    Ok(())
}

fn refresher(weak: &Weak<LocalUpstream>) {
    loop {
        let Some(u) = weak.upgrade() else { return };
        // Only when no other refresh (a query's) is under way: never a second thread waiting
        // behind one hung on a dead mount.
        if let Err(e) = u.refresh_if_idle() {
            tracing::debug!(sensor = %u.name, error = %e, "refresh");
        }
        u.save_catalog(false);
        match u.watch.get() {
            Some(w) => {
                if w.wait(REFRESH_EVERY) {
                    std::thread::sleep(GATHER);
                }
            }
            // No watch: the clock alone.
            None => {
                drop(u);
                std::thread::sleep(REFRESH_EVERY);
            }
        }
    }
}

fn indexer(weak: &Weak<LocalUpstream>) {
    lower_priority();
    loop {
        let Some(u) = weak.upgrade() else { return };
        u.notice_lost_indexes();
        let work = u.unindexed();
        for path in &work {
            index_one(&u, path.clone());
        }
        // A pass's work is kept at once: a restart after it reads nothing again.
        u.save_catalog(!work.is_empty());
        let failed = u
            .index
            .lock()
            .expect("index lock")
            .values()
            .any(|e| e.index == IndexState::WriteFailed);
        drop(u);
        std::thread::sleep(if failed {
            AFTER_WRITE_FAILED
        } else {
            INDEX_EVERY
        });
    }
}

/// The lowest CPU (nice 19) and I/O (idle class) priority for this thread: indexing uses what
/// queries leave.
fn lower_priority() {
    // SAFETY: plain system calls about this thread only; failure leaves the priority as it was.
    unsafe {
        let tid = libc::gettid();
        #[allow(clippy::cast_sign_loss)]
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
        // ioprio_set(IOPRIO_WHO_PROCESS, tid, IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT)
        libc::syscall(libc::SYS_ioprio_set, 1, tid, 3 << 13);
    }
}

/// Indexes `path`: on from where its index ends if it has one of a prefix of it (a file being
/// written), else by reading it whole and storing its real range too — if the file is still
/// the one the table knows.
fn index_one(u: &LocalUpstream, path: PathBuf) {
    let Some(known) = u.index.lock().expect("index lock").get(&path).cloned() else {
        return;
    };
    if let Some(state) = extend_index(u, &path, &known) {
        let mut idx = u.index.lock().expect("index lock");
        if let Some(e) = idx.get_mut(&path).filter(|e| e.id == known.id) {
            e.index = state;
            drop(idx);
            u.changed();
        }
        return;
    }
    let mut fresh = u.scan(&path, known.size, known.mtime, &Progress::default());
    let mut idx = u.index.lock().expect("index lock");
    if let Some(e) = idx.get_mut(&path) {
        let same = e.id == known.id
            && e.size == known.size
            && e.mtime == known.mtime
            && e.ctime == known.ctime;
        if same && fresh.id == known.id && fresh.size == known.size {
            fresh.named = e.named.take();
            fresh.ctime = e.ctime;
            *e = fresh;
            drop(idx);
            u.changed();
        }
    }
}

/// The index of a file that grew since it was indexed (a plain pcap file, its indexed bytes
/// unchanged), extended by what it gained: the new index state, or `None` when it has no such
/// index (it is then read whole).
fn extend_index(u: &LocalUpstream, path: &Path, known: &FileEntry) -> Option<IndexState> {
    let dir = u.index_dir.as_deref()?;
    let mut f = CaptureFile::open(path).ok()?;
    if f.identity() != known.id {
        return None;
    }
    let mapped = crate::index::store::load(dir, path, f.file(), f.metadata())?;
    let view = mapped.view()?;
    if view.whole_only() {
        return None;
    }
    let from = mapped.size();
    let b = view.resume().ok()?;
    let times = f.file().metadata().map_or_else(
        |_| crate::index::Times::default(),
        |m| crate::index::Times::of(&m),
    );
    let (index, identity) = crate::index::extend_indexing(&mut f, b, from)?;
    if index.records() == view.records() {
        // Nothing whole was added (the end is a record still being written): nothing to
        // write, and nothing to do until the file changes again.
        return Some(IndexState::Built {
            size: known.size,
            bytes: mapped.bytes(),
        });
    }
    let bytes = crate::index::store::save(dir, path, &index, &identity, times).ok()?;
    Some(IndexState::Built {
        size: identity.size,
        bytes,
    })
}

impl LocalUpstream {
    /// Every index is marked missing when the index directory is gone (deleted by hand):
    /// they are all built again. A single index file that went missing is noticed by the
    /// query that looks for it.
    fn notice_lost_indexes(&self) {
        let Some(dir) = &self.index_dir else { return };
        if dir.exists() {
            return;
        }
        let mut lost = false;
        for e in self.index.lock().expect("index lock").values_mut() {
            if matches!(e.index, IndexState::Built { .. }) {
                e.index = IndexState::Missing;
                lost = true;
            }
        }
        if lost {
            self.changed();
        }
    }

    /// Files the indexer has work on, oldest modification first (files being written last).
    fn unindexed(&self) -> Vec<PathBuf> {
        let now = SystemTime::now();
        let idx = self.index.lock().expect("index lock");
        let mut v: Vec<(SystemTime, PathBuf)> = idx
            .iter()
            .filter(|(_, e)| e.wants_index())
            .filter(|(_, e)| match e.index {
                IndexState::Built { size, .. } if size < e.size => {
                    let settled = now.duration_since(e.mtime).is_ok_and(|d| d >= SETTLE);
                    settled || e.size - size >= (size / 8).max(GROWTH_STEP)
                }
                _ => true,
            })
            .map(|(p, e)| (e.mtime, p.clone()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, p)| p).collect()
    }
}
