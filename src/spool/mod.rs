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
pub use writer::{SpoolWriter, WriteError, URING_IN_FLIGHT, WRITE_QUEUE};

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
}

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
        })
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

    /// The complete file of a job, mapped, if there is one; a hit refreshes its age for
    /// cleanup.
    pub fn open_complete(&self, id: &JobId) -> Option<Complete> {
        let p = self.final_path(id);
        if let Ok(f) = File::options().append(true).open(&p) {
            let _ = f.set_modified(SystemTime::now());
        }
        match Complete::open(&p) {
            Ok(c) => Some(c),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(error = %e, path = %p.display(), "cannot map a spool file");
                None
            }
        }
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
