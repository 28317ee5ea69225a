//! The writing end of a job's spool file: a thread that owns the part file, fed whole records
//! through a bounded channel, telling the job's [`Feed`] directly how much of the capture is
//! durable in the file (so the feed can let go of those bytes).
//!
//! Invariants: the part file's name is unique per writer (`Spool::part_path`); after each
//! chunk is written the thread calls [`Feed::written`] with an offset that ends on a record
//! boundary (the job only sends whole records); [`SpoolWriter::finish`] fsyncs and renames the
//! part file to its final name and only then answers `Ok`; any failure, and a writer dropped
//! without `finish`, removes the part file, so a crash, a cancel or a full disk never looks
//! like success; a rename that a stalled disk completes after the owner gave up is undone
//! (the owner's giving up and the rename are decided under one lock, [`Phase`]), so the spool
//! holds a complete file exactly when its job was told so.
//!
//! **io_uring.** The thread runs a tokio-uring runtime and keeps up to [`URING_IN_FLIGHT`]
//! writes in flight, reporting each chunk's end only once every earlier chunk is written too.
//! Measured (`benches/spool_write.rs`, 256 KiB chunks with fsync): io_uring with 4 writes in
//! flight beat `write(2)` by about 11 %, with 1 in flight it lost 6 %. Where io_uring is
//! unavailable (old kernel, seccomp), the thread says so once and falls back to `write(2)`.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::Feed;

/// Chunks queued to a spool writer before the job waits: with chunks of up to
/// [`crate::jobs::FLUSH_BYTES`] and [`URING_IN_FLIGHT`] more being written, the most a job
/// runs ahead of its disk (each is anonymous memory until written).
pub const WRITE_QUEUE: usize = 2;

/// Writes in flight per spool file under io_uring.
pub const URING_IN_FLIGHT: usize = 4;

/// Why a spool file could not be completed. The part file is gone in every case.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A write failed (a full disk, most often).
    #[error("spool write failed: {0}")]
    Write(#[source] std::io::Error),
    /// The final fsync failed.
    #[error("spool fsync failed: {0}")]
    Sync(#[source] std::io::Error),
    /// The rename to the final name failed.
    #[error("spool rename failed: {0}")]
    Rename(#[source] std::io::Error),
    /// A write or the final sync did not return within this long (a frozen or hung disk);
    /// the writer was given up.
    #[error("the spool disk did not take a write within {} s (a frozen or hung file system)", .0.as_secs())]
    Stalled(std::time::Duration),
    /// The writer thread ended without an answer (it panicked).
    #[error("the spool writer thread ended without an answer")]
    Vanished,
}

enum Command {
    Write(Bytes),
    Finish,
}

/// Writer threads alive (started and not yet done with their part file).
static ALIVE: AtomicUsize = AtomicUsize::new(0);

/// The writer threads' handles, so that they can be joined (finished ones are dropped as new
/// ones start).
static THREADS: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// How many spool writer threads have not yet removed or renamed their part file.
pub fn writers_alive() -> usize {
    ALIVE.load(Ordering::SeqCst)
}

/// Waits until every spool writer thread started so far has exited (whole: its thread-local
/// destructors run). For a process that must leave no thread behind at a point it chooses —
/// the fuzz harness between inputs, where LeakSanitizer may scan while a thread is halfway
/// through its exit. A writer ends once its job drops it.
pub fn join_writers() {
    let handles = std::mem::take(&mut *THREADS.lock().unwrap_or_else(|e| e.into_inner()));
    for h in handles {
        let _ = h.join();
    }
}

/// Where a writer's file stands between its owner and its thread: the owner's giving up and
/// the thread's rename are decided under one lock, so a file is complete in the spool exactly
/// when its owner was told so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Being written (or renamed: the rename itself may stall on a frozen disk).
    Open,
    /// Renamed, and the owner had not given up: the file is complete.
    Committed,
    /// The owner gave up (dropped the writer): no file, even if a rename was under way — the
    /// thread removes what it renamed.
    Abandoned,
}

/// The writing end of a job's file. Dropping it without [`finish`](Self::finish) abandons the
/// file (the thread removes it) — also while `finish` is waiting, and even if a stalled rename
/// completes later: a caller that gave up on a stalled disk never finds the file in place
/// behind its back.
#[derive(Debug)]
pub struct SpoolWriter {
    tx: Option<mpsc::Sender<Command>>,
    done: oneshot::Receiver<Result<u64, WriteError>>,
    part: PathBuf,
    phase: Arc<Mutex<Phase>>,
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        self.give_up();
    }
}

impl SpoolWriter {
    /// Starts the writer thread for an already created `file` at `part`.
    pub(super) fn start(
        file: File,
        part: PathBuf,
        final_path: PathBuf,
        feed: Arc<Feed>,
    ) -> std::io::Result<SpoolWriter> {
        let (tx, rx) = mpsc::channel::<Command>(WRITE_QUEUE);
        let (done_tx, done) = oneshot::channel();
        let thread_part = part.clone();
        let phase = Arc::new(Mutex::new(Phase::Open));
        let thread_phase = Arc::clone(&phase);
        ALIVE.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || {
                let end = Thread {
                    part: thread_part,
                    final_path,
                    feed,
                    phase: thread_phase,
                }
                .run(file, rx);
                let _ = done_tx.send(end);
                ALIVE.fetch_sub(1, Ordering::SeqCst);
            });
        match spawned {
            Ok(h) => {
                let mut threads = THREADS.lock().unwrap_or_else(|e| e.into_inner());
                threads.retain(|t| !t.is_finished());
                threads.push(h);
            }
            Err(e) => {
                ALIVE.fetch_sub(1, Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(SpoolWriter {
            tx: Some(tx),
            done,
            part,
            phase,
        })
    }

    /// Abandons the file unless it is already complete; true when it is (then the thread's
    /// answer is on its way, without I/O).
    fn give_up(&self) -> bool {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if *phase == Phase::Committed {
            return true;
        }
        *phase = Phase::Abandoned;
        false
    }

    /// Appends whole records. Waits while the writer thread is [`WRITE_QUEUE`] chunks behind.
    ///
    /// # Errors
    /// The file has failed (and is gone); the writer is spent.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), WriteError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(Command::Write(bytes)).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        self.tx = None;
        Err(match (&mut self.done).await {
            Ok(Err(e)) => e,
            _ => WriteError::Vanished,
        })
    }

    /// Completes the file: fsync, rename. Returns the file's length.
    ///
    /// # Errors
    /// Any failure on the way; the part file is removed.
    pub async fn finish(mut self) -> Result<u64, WriteError> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Command::Finish).await;
        }
        (&mut self.done).await.unwrap_or(Err(WriteError::Vanished))
    }

    /// [`finish`](Self::finish) within `wait`; past it the file is abandoned
    /// ([`WriteError::Stalled`]) — unless its rename has completed meanwhile, and then it is
    /// complete and its length is returned: the answer always says what the spool holds.
    ///
    /// # Errors
    /// As `finish`, and `Stalled`.
    pub async fn finish_within(mut self, wait: std::time::Duration) -> Result<u64, WriteError> {
        let finishing = async {
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(Command::Finish).await;
            }
            (&mut self.done).await.unwrap_or(Err(WriteError::Vanished))
        };
        match tokio::time::timeout(wait, finishing).await {
            Ok(r) => r,
            Err(_) if self.give_up() => (&mut self.done).await.unwrap_or(Err(WriteError::Vanished)),
            Err(_) => Err(WriteError::Stalled(wait)),
        }
    }

    /// The part file's path (readers open it while the job runs).
    pub fn part_path(&self) -> &Path {
        &self.part
    }
}

/// What the writer thread owns besides the file and its channel.
struct Thread {
    part: PathBuf,
    final_path: PathBuf,
    feed: Arc<Feed>,
    /// Shared with the [`SpoolWriter`]: see [`Phase`].
    phase: Arc<Mutex<Phase>>,
}

impl Thread {
    /// io_uring if the kernel allows it, else plain writes. On failure the part file is gone.
    fn run(self, file: File, rx: mpsc::Receiver<Command>) -> Result<u64, WriteError> {
        let r = match tokio_uring::Runtime::new(&tokio_uring::builder()) {
            Ok(rt) => rt.block_on(self.uring_loop(file, rx)),
            Err(e) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(error = %e, "io_uring is unavailable; the spool uses plain write(2)")
                });
                self.write_loop(file, rx)
            }
        };
        match r {
            Ok(Some(len)) => Ok(len),
            // Dropped without `finish`: abandoned, which is not an error of the disk's.
            Ok(None) => {
                let _ = fs::remove_file(&self.part);
                Ok(0)
            }
            Err(e) => {
                let _ = fs::remove_file(&self.part);
                Err(e)
            }
        }
    }

    /// The end shared by both loops: every byte written, fsync done by the caller; rename.
    fn complete(&self, len: u64) -> Result<Option<u64>, WriteError> {
        let phase = || self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if *phase() == Phase::Abandoned {
            return Ok(None);
        }
        // Not under the lock: the rename may stall (a frozen disk) and the owner must be able
        // to give up meanwhile.
        fs::rename(&self.part, &self.final_path).map_err(WriteError::Rename)?;
        let mut p = phase();
        if *p == Phase::Abandoned {
            drop(p);
            // The owner gave up while the rename stalled: it said the file is not kept.
            let _ = fs::remove_file(&self.final_path);
            return Ok(None);
        }
        *p = Phase::Committed;
        Ok(Some(len))
    }

    async fn uring_loop(
        &self,
        file: File,
        mut rx: mpsc::Receiver<Command>,
    ) -> Result<Option<u64>, WriteError> {
        type Pending =
            std::collections::VecDeque<(tokio::task::JoinHandle<std::io::Result<()>>, u64)>;
        let file = std::rc::Rc::new(tokio_uring::fs::File::from_std(file));
        let mut in_flight: Pending = Pending::new();
        let mut offset = 0u64;
        let settled = |r: Result<std::io::Result<()>, tokio::task::JoinError>, end: u64| match r {
            Ok(Ok(())) => {
                self.feed.written(end);
                Ok(())
            }
            Ok(Err(e)) => Err(WriteError::Write(e)),
            Err(e) => Err(WriteError::Write(std::io::Error::other(e))),
        };
        loop {
            let cmd = if let Some((front, end)) = in_flight.front_mut() {
                // Report completions as they happen, not only when the next chunk arrives, so
                // the feed lets go promptly.
                tokio::select! {
                    biased;
                    done = front => {
                        let end = *end;
                        in_flight.pop_front();
                        settled(done, end)?;
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
                        let (h, end) = in_flight.pop_front().expect("a write in flight");
                        settled(h.await, end)?;
                    }
                    let (f, at) = (std::rc::Rc::clone(&file), offset);
                    offset += bytes.len() as u64;
                    let handle =
                        tokio_uring::spawn(async move { f.write_all_at(bytes, at).await.0 });
                    in_flight.push_back((handle, offset));
                }
                Some(Command::Finish) => {
                    while let Some((h, end)) = in_flight.pop_front() {
                        settled(h.await, end)?;
                    }
                    file.sync_all().await.map_err(WriteError::Sync)?;
                    return self.complete(offset);
                }
                None => {
                    // Let writes in flight end before the file is removed under them.
                    while let Some((h, _)) = in_flight.pop_front() {
                        let _ = h.await;
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// The fallback: plain `write(2)`.
    fn write_loop(
        &self,
        mut file: File,
        mut rx: mpsc::Receiver<Command>,
    ) -> Result<Option<u64>, WriteError> {
        let mut len = 0u64;
        while let Some(cmd) = rx.blocking_recv() {
            match cmd {
                Command::Write(bytes) => {
                    file.write_all(&bytes).map_err(WriteError::Write)?;
                    len += bytes.len() as u64;
                    self.feed.written(len);
                }
                Command::Finish => {
                    file.sync_all().map_err(WriteError::Sync)?;
                    return self.complete(len);
                }
            }
        }
        Ok(None)
    }
}
