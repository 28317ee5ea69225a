//! The spool: one file per job, written once, read by every client of the job.
//!
//! **Layout.** `<dir>/<id>.pcap` is a complete capture; `<dir>/<id>.<pid>-<n>.pcap.part` is a
//! capture being written (unique per writer, so that a successor job never truncates a file
//! its predecessor is still syncing). Only complete files are ever served as complete.
//!
//! **Writing.** [`Spool::create`] starts a writer thread owning the part file, fed through a
//! bounded channel ([`WRITE_QUEUE`] chunks). After each chunk is written, the writer publishes
//! the new length on a `watch` channel: the job only sends whole records, so the published
//! length always ends on a record boundary. [`SpoolWriter::finish`] fsyncs and renames the
//! part file to its final name, then publishes `Complete`. A writer dropped without
//! `finish`, or a write error (a full disk), removes the part file and publishes `Failed`: a
//! crash, a cancel or a full disk can never look like success.
//!
//! **Reading.** A client of a running job reads the job's [`Feed`] (the last chunks the merge
//! produced, shared in memory) and, for what has already left the feed, the part file it
//! opened when it arrived (the descriptor stays valid across the rename or the unlink); see
//! [`Follower`]. A client that keeps up never touches the disk; one that falls behind reads
//! file-backed views, so a client costs no heap either way. A complete file is mapped and
//! served with its length (and ranges).
//!
//! **Recovery and cleanup.** [`Spool::open`] deletes part files left by a crash. Cleanup deletes
//! complete files unused for `expire_time` (use = mtime, touched on every hit), then the least
//! recently used until `expire_space` bytes are free. Files are unlinked, never truncated, so a
//! client still reading a mapped file is unaffected.
//!
//! **io_uring.** The writer thread runs a tokio-uring runtime and keeps up to
//! [`URING_IN_FLIGHT`] writes in flight, publishing each chunk's end only once every earlier
//! chunk is written too. Measured (`benches/spool_write.rs`, 256 KiB chunks with fsync):
//! io_uring with 4 writes in flight beat `write(2)` by about 11 %, with 1 in flight it lost
//! 6 %. Where io_uring is unavailable (old kernel, seccomp), the thread says so once and falls
//! back to plain `write(2)`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

mod feed;
pub use feed::{Feed, FeedReader, Lookup, FEED_BYTES};

/// Chunks queued to a spool writer before the job waits: with chunks of up to
/// [`crate::jobs::FLUSH_BYTES`] and [`URING_IN_FLIGHT`] more being written, the most a job
/// runs ahead of its disk (each is anonymous memory until written).
pub const WRITE_QUEUE: usize = 2;

/// Writes in flight per spool file under io_uring.
pub const URING_IN_FLIGHT: usize = 4;

/// Largest piece a follower hands out at once. Pieces are views of the mapped file, not heap
/// copies, so a client costs file-backed pages only (measured: heap copies of 256 KiB-1 MiB put
/// 20 clients of one job at 72-128 MiB of anonymous memory).
pub const READ_CHUNK: usize = 1024 * 1024;

/// Maps `len` bytes of `file` from `offset` (page-aligned underneath) as `Bytes`.
///
/// Sound because spool files only grow while followed and are never truncated (a failed file
/// is unlinked, which leaves the pages of an open file in place), and only bytes below the
/// published length, already written, are mapped.
fn map_range(file: &File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let aligned = offset - offset % page;
    let skip = (offset - aligned) as usize;
    // SAFETY: see above; the map is read-only and private.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(aligned)
            .len(skip + len)
            .map(file)?
    };
    Ok(Bytes::from_owner(map).slice(skip..))
}

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

/// Where a job's file stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Being written; more may come.
    Writing,
    /// Complete under its final name.
    Complete,
    /// Abandoned: the file is gone; readers must not present what they read as complete.
    Failed(String),
}

/// What readers watch: bytes durably written so far, and the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Bytes written; always a record boundary.
    pub len: u64,
    /// Every byte of the capture is written (fsync and rename may still be pending). A stream
    /// reader may end here: its copy is complete, and durability only matters to later hits,
    /// which are served from the final name alone.
    pub sealed: bool,
    /// Writing, complete or failed.
    pub stage: Stage,
}

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating) the spool directory and removes leftovers of a crash: part files.
    ///
    /// # Errors
    /// The directory cannot be created or listed.
    pub fn open(dir: &Path) -> Result<Spool, Error> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        for entry in fs::read_dir(dir).map_err(io(dir))?.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "part") {
                tracing::info!(path = %p.display(), "removing an incomplete spool file left by a crash");
                let _ = fs::remove_file(&p);
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

    /// The final path of a job's file. `name` is a job id (32 hex chars: no path separators).
    pub fn final_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pcap"))
    }

    /// A part file name unique to one writer: a job id can have two writers at once (a
    /// cancelled or failed job still syncing while its successor starts), and they must never
    /// share an inode. The last to finish renames its complete file over the final name.
    fn part_path(&self, name: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dir
            .join(format!("{name}.{}-{n}.pcap.part", std::process::id()))
    }

    /// The marker saying a job's file holds a partial result (some upstream failed): such a
    /// file is served to the job's own readers but never as a hit for a new request, which
    /// runs the job again (Docket-py served a partial result again after the sensor came back).
    fn partial_marker(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.partial"))
    }

    /// Marks `name`'s file as partial (before its rename) or clears the mark (only after a
    /// complete rename of a whole result), so that a crash in between errs on the side of
    /// running the job again.
    pub fn mark_partial(&self, name: &str, partial: bool) {
        let m = self.partial_marker(name);
        if partial {
            if let Err(e) = File::create(&m) {
                tracing::warn!(path = %m.display(), error = %e, "cannot mark a partial result");
            }
        } else {
            let _ = fs::remove_file(&m);
        }
    }

    /// Whether `name`'s file holds a partial result.
    pub fn is_partial(&self, name: &str) -> bool {
        self.partial_marker(name).exists()
    }

    /// The complete file of a job, if there is one; a hit refreshes its age for cleanup.
    pub fn lookup(&self, name: &str) -> Option<(PathBuf, u64)> {
        let p = self.final_path(name);
        let f = File::options().append(true).open(&p).ok()?;
        let len = f.metadata().ok()?.len();
        let _ = f.set_modified(SystemTime::now());
        Some((p, len))
    }

    /// Starts writing a job's file, publishing on `progress` (owned by the job, so that it
    /// outlives the writer and late readers see the final state).
    ///
    /// # Errors
    /// The part file cannot be created.
    pub fn create(
        &self,
        name: &str,
        progress: Arc<watch::Sender<Progress>>,
    ) -> Result<SpoolWriter, Error> {
        let part = self.part_path(name);
        let file = OpenOptions::new()
            .write(true)
            // Never reuse an existing inode (see `part_path`).
            .create_new(true)
            .open(&part)
            .map_err(io(&part))?;
        progress.send_replace(Progress {
            len: 0,
            sealed: false,
            stage: Stage::Writing,
        });
        let (tx, rx) = mpsc::channel::<Command>(WRITE_QUEUE);
        let thread_progress = Arc::clone(&progress);
        let final_path = self.final_path(name);
        let thread_part = part.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || write_thread(file, thread_part, final_path, rx, &thread_progress))
            .map_err(io(&part))?;
        Ok(SpoolWriter {
            tx: Some(tx),
            progress,
            part,
        })
    }

    /// Free bytes on the spool's file system (for unprivileged users).
    pub fn free_bytes(&self) -> u64 {
        free_bytes(&self.dir).unwrap_or(0)
    }

    /// Deletes complete files unused for `expire_time` (0: never), then the least recently
    /// used until `expire_space` bytes are free (0: no target). Returns the ids deleted.
    pub fn cleanup(&self, expire_time: Duration, expire_space: u64) -> Vec<String> {
        let mut files: Vec<(SystemTime, PathBuf)> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pcap"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        files.sort();
        let now = SystemTime::now();
        let mut deleted = Vec::new();
        for (mtime, path) in files {
            let old = !expire_time.is_zero()
                && now.duration_since(mtime).unwrap_or_default() > expire_time;
            let short = expire_space > 0 && self.free_bytes() < expire_space;
            if !(old || short) {
                continue;
            }
            if fs::remove_file(&path).is_ok() {
                if let Some(stem) = path.file_stem() {
                    let name = stem.to_string_lossy().into_owned();
                    let _ = fs::remove_file(self.partial_marker(&name));
                    deleted.push(name);
                }
            }
        }
        deleted
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a valid C string.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) != 0 {
            return None;
        }
        Some(s.f_bavail as u64 * s.f_frsize as u64)
    }
}

enum Command {
    Write(Bytes),
    Finish,
}

/// The writer thread: io_uring if the kernel allows it, else plain writes.
fn write_thread(
    file: File,
    part: PathBuf,
    final_path: PathBuf,
    rx: mpsc::Receiver<Command>,
    progress: &watch::Sender<Progress>,
) {
    match tokio_uring::Runtime::new(&tokio_uring::builder()) {
        Ok(rt) => rt.block_on(uring_loop(file, part, final_path, rx, progress)),
        Err(e) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(error = %e, "io_uring is unavailable; the spool uses plain write(2)")
            });
            write_loop(file, part, final_path, rx, progress)
        }
    }
}

async fn uring_loop(
    file: File,
    part: PathBuf,
    final_path: PathBuf,
    mut rx: mpsc::Receiver<Command>,
    progress: &watch::Sender<Progress>,
) {
    type Pending = std::collections::VecDeque<(tokio::task::JoinHandle<std::io::Result<()>>, u64)>;
    let fail = |reason: String| {
        let _ = fs::remove_file(&part);
        progress.send_modify(|p| p.stage = Stage::Failed(reason));
    };
    let file = std::rc::Rc::new(tokio_uring::fs::File::from_std(file));
    let mut in_flight: Pending = Pending::new();
    let mut offset = 0u64;
    // Completes the oldest write and publishes its end.
    async fn settle(
        in_flight: &mut Pending,
        progress: &watch::Sender<Progress>,
    ) -> Result<(), String> {
        let (handle, end) = in_flight.pop_front().expect("a write in flight");
        match handle.await {
            Ok(Ok(())) => {
                progress.send_modify(|p| p.len = end);
                Ok(())
            }
            Ok(Err(e)) => Err(format!("spool write failed: {e}")),
            Err(e) => Err(format!("spool write task failed: {e}")),
        }
    }
    loop {
        let cmd = if let Some((front, end)) = in_flight.front_mut() {
            // Publish completions as they happen, not only when the next chunk arrives, so
            // followers see packets promptly.
            tokio::select! {
                biased;
                done = front => {
                    let end = *end;
                    in_flight.pop_front();
                    match done {
                        Ok(Ok(())) => progress.send_modify(|p| p.len = end),
                        Ok(Err(e)) => return fail(format!("spool write failed: {e}")),
                        Err(e) => return fail(format!("spool write task failed: {e}")),
                    }
                    continue;
                }
                cmd = rx.recv() => cmd,
            }
        } else {
            rx.recv().await
        };
        match cmd {
            Some(Command::Write(bytes)) => {
                if in_flight.len() == URING_IN_FLIGHT {
                    if let Err(why) = settle(&mut in_flight, progress).await {
                        return fail(why);
                    }
                }
                let (f, at) = (std::rc::Rc::clone(&file), offset);
                offset += bytes.len() as u64;
                let handle = tokio_uring::spawn(async move { f.write_all_at(bytes, at).await.0 });
                in_flight.push_back((handle, offset));
            }
            Some(Command::Finish) => {
                while !in_flight.is_empty() {
                    if let Err(why) = settle(&mut in_flight, progress).await {
                        return fail(why);
                    }
                }
                progress.send_modify(|p| p.sealed = true);
                if let Err(e) = file.sync_all().await {
                    return fail(format!("spool fsync failed: {e}"));
                }
                if let Err(e) = fs::rename(&part, &final_path) {
                    return fail(format!("spool rename failed: {e}"));
                }
                progress.send_modify(|p| p.stage = Stage::Complete);
                return;
            }
            None => {
                // Let writes in flight end before removing the file under them.
                while let Some((h, _)) = in_flight.pop_front() {
                    let _ = h.await;
                }
                return fail("the job ended before its capture was complete".into());
            }
        }
    }
}

/// The fallback: plain `write(2)`.
fn write_loop(
    mut file: File,
    part: PathBuf,
    final_path: PathBuf,
    mut rx: mpsc::Receiver<Command>,
    progress: &watch::Sender<Progress>,
) {
    let fail = |reason: String| {
        let _ = fs::remove_file(&part);
        progress.send_modify(|p| p.stage = Stage::Failed(reason));
    };
    let mut len = 0u64;
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            Command::Write(bytes) => {
                if let Err(e) = file.write_all(&bytes) {
                    return fail(format!("spool write failed: {e}"));
                }
                len += bytes.len() as u64;
                progress.send_modify(|p| p.len = len);
            }
            Command::Finish => {
                progress.send_modify(|p| p.sealed = true);
                if let Err(e) = file.sync_all() {
                    return fail(format!("spool fsync failed: {e}"));
                }
                if let Err(e) = fs::rename(&part, &final_path) {
                    return fail(format!("spool rename failed: {e}"));
                }
                progress.send_modify(|p| p.stage = Stage::Complete);
                return;
            }
        }
    }
    // The job dropped its writer without finishing: cancelled, failed or panicked.
    fail("the job ended before its capture was complete".into());
}

/// The writing end of a job's file. Dropping it without [`finish`](Self::finish) abandons the
/// file.
#[derive(Debug)]
pub struct SpoolWriter {
    tx: Option<mpsc::Sender<Command>>,
    progress: Arc<watch::Sender<Progress>>,
    part: PathBuf,
}

impl SpoolWriter {
    /// Appends whole records. Waits while the writer thread is [`WRITE_QUEUE`] chunks behind.
    /// Returns false if the file has already failed (see [`Progress`]).
    pub async fn write(&self, bytes: Bytes) -> bool {
        match &self.tx {
            Some(tx) => tx.send(Command::Write(bytes)).await.is_ok(),
            None => false,
        }
    }

    /// Completes the file: fsync, rename, publish `Complete` (or `Failed`). Returns the final
    /// stage.
    pub async fn finish(mut self) -> Stage {
        let mut rx = self.progress.subscribe();
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Command::Finish).await;
        }
        loop {
            let stage = rx.borrow_and_update().stage.clone();
            if stage != Stage::Writing {
                return stage;
            }
            if rx.changed().await.is_err() {
                return Stage::Failed("spool writer vanished".into());
            }
        }
    }

    /// The part file's path (readers open it while the job runs).
    pub fn part_path(&self) -> &Path {
        &self.part
    }
}

/// How a follower's stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum FollowEnd {
    /// Everything was read and the file is complete.
    Complete,
    /// The file failed: what was read is not a complete capture.
    Failed(String),
}

/// Reads a job's capture from byte 0 while it grows: from the job's [`Feed`] while the bytes
/// are there (no disk read, no copy), from the spool file for what has left the feed. Each
/// [`next`](Follower::next) returns the next bytes, waiting for more; the stream ends when the
/// feed says the capture is whole (or failed). The file, when there is one, must be opened
/// before the job can rename or delete it (the part file).
#[derive(Debug)]
pub struct Follower {
    file: Option<File>,
    feed: FeedReader,
    offset: u64,
}

impl Follower {
    /// Follows a job's feed, with its part file (if the job has one) for what leaves the feed.
    pub fn new(file: Option<File>, feed: &Arc<Feed>) -> Follower {
        Follower {
            file,
            feed: feed.reader(),
            offset: 0,
        }
    }

    /// The next chunk (at most [`READ_CHUNK`] bytes from the file; a whole feed chunk from
    /// memory), or how the stream ended.
    ///
    /// # Errors
    /// The end of the stream: [`FollowEnd::Complete`] or [`FollowEnd::Failed`].
    pub async fn next(&mut self) -> Result<Bytes, FollowEnd> {
        loop {
            match self.feed.lookup(self.offset) {
                Lookup::Data(b) => {
                    self.offset += b.len() as u64;
                    self.feed.advance(self.offset);
                    return Ok(b);
                }
                Lookup::Evicted { start } => {
                    // Spooled mode frees only what the file holds, so it is there.
                    let Some(file) = &self.file else {
                        return Err(FollowEnd::Failed(
                            "the start of the capture is no longer available".into(),
                        ));
                    };
                    let n = ((start - self.offset) as usize).min(READ_CHUNK);
                    return match map_range(file, self.offset, n) {
                        Ok(chunk) => {
                            self.offset += n as u64;
                            self.feed.advance(self.offset);
                            Ok(chunk)
                        }
                        Err(e) => Err(FollowEnd::Failed(format!("spool read failed: {e}"))),
                    };
                }
                Lookup::Ended(Ok(())) => return Err(FollowEnd::Complete),
                Lookup::Ended(Err(why)) => return Err(FollowEnd::Failed(why)),
                Lookup::Pending => {}
            }
            if !self.feed.changed().await {
                return Err(FollowEnd::Failed(
                    "the job ended without completing its capture".into(),
                ));
            }
        }
    }
}
