//! The spool: one file per job, written once, read by every client of the job.
//!
//! **Layout.** `<dir>/<id>.pcap` is a complete capture; `<dir>/<id>.<pid>-<n>.pcap.part` is a
//! capture being written (unique per writer, so that a successor job never truncates a file
//! its predecessor is still syncing). Only complete files are ever served as complete. The job
//! store (`jobs.sqlite`, owned by [`crate::jobs`]) lives in the same directory.
//!
//! **Writing** ([`SpoolWriter`], in `writer`): a thread owns the part file; after each chunk it
//! tells the job's [`Feed`] how much is durable; `finish` fsyncs and renames. A writer dropped
//! without `finish`, or a write error (a full disk), removes the part file.
//!
//! **Reading** (in `reader`): a client of a running job reads the job's [`Feed`] (the last
//! chunks the merge produced, shared in memory) and, for what has already left the feed, the
//! part file it opened when it arrived (the descriptor stays valid across the rename or the
//! unlink); see [`Follower`]. A complete file is mapped whole ([`Complete`]): its length,
//! validators and `Range` answers live there, not in `http`.
//!
//! **Recovery and cleanup.** [`Spool::open`] deletes part files left by a crash. Cleanup deletes
//! complete files unused for `expire_time` (use = mtime, touched on every hit), then the least
//! recently used until `expire_space` bytes are free. Files are unlinked, never truncated, so a
//! client still reading a mapped file is unaffected. The spool decides nothing about jobs: it
//! reports the ids it deleted and the job registry forgets them.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::query::JobId;

mod feed;
mod reader;
mod writer;
pub use feed::{Feed, FeedReader, Incomplete, Lookup, FEED_BYTES};
pub use reader::{Complete, FollowEnd, Follower, Ranged, READ_CHUNK};
pub use writer::{
    join_writers, writers_alive, SpoolWriter, WriteError, URING_IN_FLIGHT, WRITE_QUEUE,
};

/// A spool failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file operation did not return in time (a frozen or hung file system); it may still
    /// complete later, and its result is then given up.
    #[error("spool {}: a file operation has not returned for {} s (a frozen or hung file system)", dir.display(), waited.as_secs())]
    Stalled {
        /// The spool directory.
        dir: PathBuf,
        /// How long the oldest operation still pending has waited.
        waited: Duration,
    },
}

/// How long an async caller waits for a spool file operation (create, open, touch, unlink).
pub const FS_WAIT: Duration = Duration::from_secs(5);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// A complete file found in the spool.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    /// Its job.
    pub id: JobId,
    /// Its length.
    pub len: u64,
    /// Last use (mtime).
    pub used: SystemTime,
}

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    /// The file operations running on blocking threads for async callers (see
    /// [`Spool::off_thread`]): number → start.
    pending: Arc<std::sync::Mutex<Pending>>,
    /// How long an async caller waits ([`FS_WAIT`]; shorter in unit tests).
    wait: Duration,
}

#[derive(Debug, Default)]
struct Pending {
    next: u64,
    /// Per [`Lane`]: number → start.
    started: [std::collections::BTreeMap<u64, std::time::Instant>; 2],
}

/// What a spool file operation does to the file system, for [`Spool::off_thread`]: a file
/// system can stall writes and still answer reads (a frozen one does exactly that), so a
/// stall of one lane does not refuse the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Looks up, opens, maps: changes nothing.
    Read = 0,
    /// Creates, writes metadata (times), unlinks.
    Write = 1,
}

/// Takes a pending operation off the list when its closure ends — or is dropped unrun (a
/// runtime shutting down).
struct PendingGuard {
    pending: Arc<std::sync::Mutex<Pending>>,
    lane: Lane,
    n: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.started[self.lane as usize].remove(&self.n);
    }
}

impl Spool {
    /// Opens (creating) the spool directory and removes leftovers of a crash: part files, and
    /// the partial markers earlier versions kept (with the files they marked: partial results
    /// are never hits, and the job store now knows which results are partial).
    ///
    /// # Errors
    /// The directory cannot be created or listed.
    pub fn open(dir: &Path) -> Result<Spool, Error> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        for entry in fs::read_dir(dir).map_err(io(dir))?.flatten() {
            let p = entry.path();
            match p.extension().and_then(|e| e.to_str()) {
                Some("part") => {
                    tracing::info!(path = %p.display(), "removing an incomplete spool file left by a crash");
                    let _ = fs::remove_file(&p);
                }
                Some("partial") => {
                    let _ = fs::remove_file(p.with_extension("pcap"));
                    let _ = fs::remove_file(&p);
                }
                _ => {}
            }
        }
        Ok(Spool {
            dir: dir.to_owned(),
            pending: Arc::default(),
            wait: FS_WAIT,
        })
    }

    /// Runs a file operation for an async caller: on a blocking thread, so that a stalled file
    /// system (frozen, a hung mount) never holds an async worker, and within [`FS_WAIT`]. Once
    /// an operation has been pending longer than that, later ones are refused at once rather
    /// than each taking a thread that would hang too: a stall costs the threads of the first
    /// [`FS_WAIT`], not one per request (per [`Lane`]: stalled writes do not refuse reads).
    /// An operation that ends after its caller gave up has its result dropped (a late
    /// [`SpoolWriter`] removes its part file; a late map is unmapped).
    ///
    /// # Errors
    /// [`Error::Stalled`]; a panic in `f` as [`Error::Io`].
    pub async fn off_thread<T, F>(&self, lane: Lane, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Spool) -> T + Send + 'static,
    {
        let guard = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            // Numbers only grow: the first entry is the oldest.
            if let Some(since) = p.started[lane as usize].values().next() {
                if since.elapsed() >= self.wait {
                    return Err(self.stalled(since.elapsed()));
                }
            }
            let n = p.next;
            p.next += 1;
            p.started[lane as usize].insert(n, std::time::Instant::now());
            PendingGuard {
                pending: Arc::clone(&self.pending),
                lane,
                n,
            }
        };
        let me = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            f(&me)
        });
        match tokio::time::timeout(self.wait, task).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(join)) => Err(Error::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(join.to_string()),
            }),
            Err(_) => Err(self.stalled(self.wait)),
        }
    }

    /// File operations of [`off_thread`](Self::off_thread) not yet returned (including those
    /// whose callers gave up).
    pub fn pending_ops(&self) -> usize {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.started.iter().map(|m| m.len()).sum()
    }

    fn stalled(&self, waited: Duration) -> Error {
        Error::Stalled {
            dir: self.dir.clone(),
            waited,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The final path of a job's file.
    pub fn final_path(&self, id: &JobId) -> PathBuf {
        self.dir.join(format!("{id}.pcap"))
    }

    /// A part file name unique to one writer: a job id can have two writers at once (a
    /// cancelled or failed job still syncing while its successor starts), and they must never
    /// share an inode. The last to finish renames its complete file over the final name.
    fn part_path(&self, id: &JobId) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dir
            .join(format!("{id}.{}-{n}.pcap.part", std::process::id()))
    }

    /// Whether a file can be created (and written) in the spool now: creates, writes one
    /// byte to and removes a probe file. Its name ends in `.part`, so a crash between the two
    /// leaves nothing [`open`](Self::open) does not remove.
    ///
    /// # Errors
    /// Why the spool cannot be written (read-only, full, permissions, gone).
    pub fn probe_writable(&self) -> std::io::Result<()> {
        use std::io::Write;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = self
            .dir
            .join(format!("probe-{}-{n}.part", std::process::id()));
        let r = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .and_then(|mut f| f.write_all(b"\0"));
        let _ = fs::remove_file(&p);
        r
    }

    /// Whether the spool can be written now, as [`WriteProbe`] asks it (at most one probe in
    /// flight whatever the callers, each bounded in time): its free bytes if so.
    ///
    /// # Errors
    /// Why not, in words.
    pub async fn writable(&self, probe: &WriteProbe) -> Result<u64, String> {
        probe.check(self).await
    }

    /// The complete file of a job, mapped, if there is one. (A hit refreshes its age for
    /// cleanup: [`touch`](Self::touch), apart, because a frozen file system blocks that write
    /// but not the read.)
    pub fn open_complete(&self, id: &JobId) -> Option<Complete> {
        let p = self.final_path(id);
        match Complete::open(&p) {
            Ok(c) => Some(c),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(error = %e, path = %p.display(), "cannot map a spool file");
                None
            }
        }
    }

    /// Marks a job's complete file used now (its mtime: cleanup deletes the least recently
    /// used first).
    pub fn touch(&self, id: &JobId) {
        if let Ok(f) = File::options().append(true).open(self.final_path(id)) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// [`open_complete`](Self::open_complete) for an async caller ([`off_thread`]
    /// (Self::off_thread)); a file found is touched in the background, so a frozen file
    /// system still serves what it holds.
    ///
    /// # Errors
    /// [`Error::Stalled`].
    pub async fn open_complete_async(&self, id: &JobId) -> Result<Option<Complete>, Error> {
        let id = *id;
        let c = self
            .off_thread(Lane::Read, move |sp| sp.open_complete(&id))
            .await?;
        if c.is_some() {
            let me = self.clone();
            tokio::spawn(async move { me.off_thread(Lane::Write, move |sp| sp.touch(&id)).await });
        }
        Ok(c)
    }

    /// The length of a job's complete file, if there is one.
    pub fn complete_len(&self, id: &JobId) -> Option<u64> {
        fs::metadata(self.final_path(id)).ok().map(|m| m.len())
    }

    /// Removes a job's complete file; whether there was one.
    pub fn remove(&self, id: &JobId) -> bool {
        fs::remove_file(self.final_path(id)).is_ok()
    }

    /// Every complete file, for the job store's reconciliation at start.
    pub fn list(&self) -> Vec<Stored> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                if p.extension()? != "pcap" {
                    return None;
                }
                let id = p.file_stem()?.to_str()?.parse().ok()?;
                let m = e.metadata().ok()?;
                Some(Stored {
                    id,
                    len: m.len(),
                    used: m.modified().ok()?,
                })
            })
            .collect()
    }

    /// Starts writing a job's file; the writer tells `feed` what is durable.
    ///
    /// # Errors
    /// The part file cannot be created.
    pub fn create(&self, id: &JobId, feed: Arc<Feed>) -> Result<SpoolWriter, Error> {
        let part = self.part_path(id);
        let file = OpenOptions::new()
            .write(true)
            // Never reuse an existing inode (see `part_path`).
            .create_new(true)
            .open(&part)
            .map_err(io(&part))?;
        SpoolWriter::start(file, part.clone(), self.final_path(id), feed).map_err(|e| {
            let _ = fs::remove_file(&part);
            io(&part)(e)
        })
    }

    /// Free bytes on the spool's file system (for unprivileged users).
    pub fn free_bytes(&self) -> u64 {
        statvfs(&self.dir).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// Free inodes on the spool's file system (for unprivileged users); `None` where the file
    /// system has no inode limit (Btrfs, and others that report 0 inodes in all): a 0 there
    /// would read as "full".
    pub fn free_inodes(&self) -> Option<u64> {
        statvfs(&self.dir).and_then(|s| (s.f_files > 0).then_some(s.f_favail))
    }

    /// Deletes complete files unused for `expire_time` (0: never), then the least recently
    /// used until `expire_space` bytes are free (0: no target). Returns the files it deleted.
    pub fn cleanup(&self, expire_time: Duration, expire_space: u64) -> Vec<Stored> {
        let mut files = self.list();
        files.sort_by_key(|f| f.used);
        let now = SystemTime::now();
        let mut deleted = Vec::new();
        for f in files {
            let old = !expire_time.is_zero()
                && now.duration_since(f.used).unwrap_or_default() > expire_time;
            let short = expire_space > 0 && self.free_bytes() < expire_space;
            if (old || short) && self.remove(&f.id) {
                deleted.push(f);
            }
        }
        deleted
    }
}

/// Asks whether the spool can be written (`Spool::probe_writable`) on behalf of any number of
/// callers (`readyz` probes) without letting them pile up: a result is reused for
/// [`PROBE_FRESH`]; at most one probe runs at a time, on a blocking thread; a caller waits at
/// most [`PROBE_WAIT`] for it. A spool whose file system has stalled (frozen, a hung mount)
/// thus holds one thread, not one per probe, and each caller hears "not writable" in bounded
/// time.
#[derive(Debug, Default)]
pub struct WriteProbe {
    state: Arc<std::sync::Mutex<ProbeState>>,
}

#[derive(Debug, Default)]
struct ProbeState {
    /// When the probe in flight started.
    running: Option<std::time::Instant>,
    /// The last answer and when it came.
    last: Option<(std::time::Instant, Result<u64, String>)>,
    /// Wakes the callers waiting for the probe in flight.
    done: Option<Arc<tokio::sync::Notify>>,
}

/// How long a probe's answer is reused.
pub const PROBE_FRESH: Duration = Duration::from_secs(1);

/// How long a caller waits for a probe.
pub const PROBE_WAIT: Duration = Duration::from_secs(2);

impl WriteProbe {
    async fn check(&self, spool: &Spool) -> Result<u64, String> {
        let done = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, r)) = &st.last {
                if at.elapsed() < PROBE_FRESH && st.running.is_none() {
                    return r.clone();
                }
            }
            match st.running {
                Some(since) if since.elapsed() > PROBE_WAIT => {
                    return Err(format!(
                        "a write to the spool has not returned for {} s",
                        since.elapsed().as_secs()
                    ));
                }
                Some(_) => Arc::clone(st.done.get_or_insert_with(Default::default)),
                None => {
                    st.running = Some(std::time::Instant::now());
                    let done = Arc::clone(st.done.get_or_insert_with(Default::default));
                    let spool = spool.clone();
                    let state = Arc::clone(&self.state);
                    tokio::task::spawn_blocking(move || {
                        let r = spool
                            .probe_writable()
                            .map(|()| spool.free_bytes())
                            .map_err(|e| e.to_string());
                        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                        st.running = None;
                        st.last = Some((std::time::Instant::now(), r));
                        if let Some(n) = st.done.take() {
                            n.notify_waiters();
                        }
                    });
                    done
                }
            }
        };
        let notified = done.notified();
        tokio::pin!(notified);
        // Registered before looking again, so a probe that ends in between is not missed.
        notified.as_mut().enable();
        let finished = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running
            .is_none();
        if !finished {
            let _ = tokio::time::timeout(PROBE_WAIT, notified).await;
        }
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match (&st.running, &st.last) {
            (None, Some((_, r))) => r.clone(),
            _ => Err(format!(
                "a write to the spool did not return within {} s",
                PROBE_WAIT.as_secs()
            )),
        }
    }
}

fn statvfs(dir: &Path) -> Option<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a valid C string.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut s) == 0).then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A stalled file system (here: an operation that does not return until told) costs the
    /// thread of the operation that met it; while it hangs, later operations are refused at
    /// once without running, and once it returns the spool is usable again. Reads are not
    /// refused for a stalled write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_stall_costs_one_thread_and_later_operations_are_refused_at_once() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        spool.wait = Duration::from_millis(200);
        let (release, hang) = std::sync::mpsc::channel::<()>();
        let r = spool
            .off_thread(Lane::Write, move |_| hang.recv().is_ok())
            .await;
        assert!(matches!(r, Err(Error::Stalled { .. })), "{r:?}");
        assert_eq!(spool.pending_ops(), 1);
        let ran = Arc::new(AtomicBool::new(false));
        let r2 = Arc::clone(&ran);
        let r = spool
            .off_thread(Lane::Write, move |_| r2.store(true, Ordering::SeqCst))
            .await;
        assert!(matches!(r, Err(Error::Stalled { .. })), "{r:?}");
        assert!(!ran.load(Ordering::SeqCst), "a refused operation ran");
        assert_eq!(spool.pending_ops(), 1);
        // Reads go on meanwhile.
        let read = spool.off_thread(Lane::Read, |sp| sp.dir().to_owned()).await;
        assert_eq!(read.unwrap(), dir.path());
        release.send(()).unwrap();
        for _ in 0..1000 {
            if spool.pending_ops() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(spool.pending_ops(), 0);
        let write = spool
            .off_thread(Lane::Write, |sp| sp.dir().to_owned())
            .await;
        assert_eq!(write.unwrap(), dir.path());
    }

    /// A writer given up while it finishes (its caller stopped waiting on a stalled disk)
    /// never renames its file into place.
    #[tokio::test]
    async fn a_writer_dropped_while_finishing_leaves_no_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let id: JobId = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let mut w = spool.create(&id, Feed::new()).unwrap();
        w.write(bytes::Bytes::from_static(b"records"))
            .await
            .unwrap();
        let finishing = w.finish();
        // Polled once (the finish command sent), then dropped.
        let _ = tokio::time::timeout(Duration::from_micros(1), finishing).await;
        for _ in 0..1000 {
            if writers_alive() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        // Either it had already renamed before the drop (a whole file) or nothing is left.
        assert!(
            left.is_empty() || left == [spool.final_path(&id)],
            "{left:?}"
        );
    }
}
