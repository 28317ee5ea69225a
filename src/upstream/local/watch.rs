//! The change watch of a capture directory tree: an inotify instance with a watch on every
//! directory of the tree. It wakes the refresher when something changed, and tells a query
//! whether the file table can be trusted as the last refresh left it — so that a query over a
//! directory where nothing changed does not list and stat every file again.
//!
//! Only changes are asked of the kernel (created, written, closed after writing, attributes,
//! moved, deleted): never opens or reads, so Docket's own reads of the captures queue no event
//! (the `notify` crate asks for every open; measured, queueing and waking for them cost a
//! rare-host query over 681 files about a tenth of its CPU).
//!
//! Invariants: the watch answers "unchanged" only when (1) every directory of the tree is
//! watched, on a file system whose changes inotify reports whoever makes them (local ones:
//! not NFS, SMB, FUSE — their other clients' writes are never reported), (2) the last refresh
//! found no file with a second name (a write through a name outside the tree is not reported
//! here) and followed no link out of the tree, and (3) no event has been read from the kernel
//! since that refresh began. Events are read from the kernel's queue at the moment of asking:
//! a change whose write returned before the query asked is seen. A queue overflow, a watch that
//! could not be added, or the tree's root moved or deleted makes it answer "changed" for good;
//! the refreshes then run as if there were no watch.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

/// What a directory's watch reports: changes only (no opens, no reads).
fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::DONT_FOLLOW
        | WatchMask::ONLYDIR
}

/// At most this many directories are watched (each watch is kernel memory, and the user's
/// watch limit is shared); a bigger tree is not trusted.
const MAX_DIRS: usize = 65_536;

/// The watch of one directory tree.
#[derive(Debug)]
pub struct Watch {
    inner: Mutex<Inner>,
    /// Event batches read from the kernel since the start.
    changes: AtomicU64,
    /// `changes` when the last refresh that completed began (`u64::MAX`: none yet).
    refreshed_at: AtomicU64,
    /// Every directory is watched on a file system that reports every change.
    complete: AtomicBool,
    /// The last refresh found nothing the watch cannot see (a second name, a link out).
    seeable: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    root: Option<WatchDescriptor>,
}

impl Watch {
    /// Watches `root` (the directory a configured path leads to) and every directory below it
    /// (not through links).
    ///
    /// # Errors
    /// inotify cannot be set up, or `root` cannot be watched.
    pub fn new(root: &Path) -> std::io::Result<Watch> {
        let root = &std::fs::canonicalize(root)?;
        let inotify = Inotify::init()?;
        let wd = inotify.watches().add(root, mask())?;
        let mut inner = Inner {
            inotify,
            dirs: HashMap::from([(wd.clone(), root.to_path_buf())]),
            root: Some(wd),
        };
        let complete = local_fs(root) && inner.add_below(root);
        Ok(Watch {
            inner: Mutex::new(inner),
            changes: AtomicU64::new(0),
            refreshed_at: AtomicU64::new(u64::MAX),
            complete: AtomicBool::new(complete),
            seeable: AtomicBool::new(false),
        })
    }

    /// Waits up to `timeout` for a change; whether one came (read, and counted).
    pub fn wait(&self, timeout: Duration) -> bool {
        let fd = self.inner.lock().expect("watch lock").inotify.as_raw_fd();
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the call's duration; the fd lives as long as `self`.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        ready > 0 && self.drain()
    }

    /// Reads every event the kernel has queued; whether there was any. New directories are
    /// watched as they appear.
    fn drain(&self) -> bool {
        let mut inner = self.inner.lock().expect("watch lock");
        let mut buffer = [0u8; 8192];
        let mut any = false;
        loop {
            let events = match inner.inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.complete.store(false, Ordering::Relaxed);
                    any = true;
                    break;
                }
            };
            let mut new_dirs = Vec::new();
            let mut read = false;
            for ev in events {
                read = true;
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    self.complete.store(false, Ordering::Relaxed);
                    continue;
                }
                if ev
                    .mask
                    .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                    && inner.root.as_ref() == Some(&ev.wd)
                {
                    // The root itself went: what is now at its path is not watched.
                    self.complete.store(false, Ordering::Relaxed);
                }
                if ev.mask.contains(EventMask::IGNORED) {
                    inner.dirs.remove(&ev.wd);
                    continue;
                }
                if ev.mask.contains(EventMask::ISDIR)
                    && ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
                {
                    if let (Some(dir), Some(name)) = (inner.dirs.get(&ev.wd), ev.name) {
                        new_dirs.push(dir.join(name));
                    }
                }
            }
            for d in new_dirs {
                if !(local_fs(&d) && inner.add(&d) && inner.add_below(&d)) {
                    self.complete.store(false, Ordering::Relaxed);
                }
            }
            if !read {
                break;
            }
            any = true;
        }
        if any {
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
        any
    }

    /// A refresh begins: the events so far are what it will see. Returns its mark for
    /// [`refreshed`](Self::refreshed).
    pub fn begin(&self) -> u64 {
        self.drain();
        self.changes.load(Ordering::Acquire)
    }

    /// The refresh begun at `mark` completed; `seeable` says it found nothing the watch
    /// cannot see (no file with a second name, no link followed out of the tree).
    pub fn refreshed(&self, mark: u64, seeable: bool) {
        self.seeable.store(seeable, Ordering::Relaxed);
        self.refreshed_at.store(mark, Ordering::Release);
    }

    /// Whether the file table is as the last refresh left it: nothing changed since it began,
    /// and the watch would have seen any change.
    pub fn unchanged(&self) -> bool {
        self.drain();
        self.complete.load(Ordering::Relaxed)
            && self.seeable.load(Ordering::Relaxed)
            && self.refreshed_at.load(Ordering::Acquire) == self.changes.load(Ordering::Acquire)
    }
}

impl Inner {
    /// Watches `dir`; whether it could.
    fn add(&mut self, dir: &Path) -> bool {
        if self.dirs.len() >= MAX_DIRS {
            return false;
        }
        match self.inotify.watches().add(dir, mask()) {
            Ok(wd) => {
                self.dirs.insert(wd, dir.to_path_buf());
                true
            }
            Err(_) => false,
        }
    }

    /// Watches every directory below `dir` (not through links); whether all could be.
    fn add_below(&mut self, dir: &Path) -> bool {
        let mut todo = vec![dir.to_path_buf()];
        let mut all = true;
        while let Some(d) = todo.pop() {
            let Ok(listing) = std::fs::read_dir(&d) else {
                all = false;
                continue;
            };
            for entry in listing {
                let Ok(entry) = entry else {
                    all = false;
                    break;
                };
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let p = entry.path();
                    if !(local_fs(&p) && self.add(&p)) {
                        all = false;
                    }
                    todo.push(p);
                }
            }
        }
        all
    }
}

/// Whether `dir` is on a file system whose every change inotify reports (local ones).
fn local_fs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a zeroed statfs is a valid out-parameter; `c` is a NUL-terminated path.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return false;
    }
    // ext2/3/4, XFS, Btrfs, tmpfs, ZFS, F2FS, overlayfs (its changes made through it).
    const LOCAL: [i64; 7] = [
        0xEF53,
        0x5846_5342,
        0x9123_683E,
        0x0102_1994,
        0x2FC1_2FC1,
        0xF2F5_2010,
        0x794C_7630,
    ];
    #[allow(clippy::unnecessary_cast)]
    LOCAL.contains(&(s.f_type as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_anywhere_in_the_tree_is_seen_and_a_read_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/x.pcap"), b"x").unwrap();
        let w = Watch::new(dir.path()).unwrap();
        let mark = w.begin();
        w.refreshed(mark, true);
        assert!(w.unchanged());
        // Reads queue nothing.
        let _ = std::fs::read(dir.path().join("a/x.pcap")).unwrap();
        assert!(w.unchanged());
        // A write below a watched directory is seen at once.
        std::fs::write(dir.path().join("a/x.pcap"), b"xy").unwrap();
        assert!(!w.unchanged());
        let mark = w.begin();
        w.refreshed(mark, true);
        assert!(w.unchanged());
        // A new directory is watched, and what is written in it seen.
        std::fs::create_dir(dir.path().join("b")).unwrap();
        assert!(!w.unchanged());
        let mark = w.begin();
        w.refreshed(mark, true);
        std::fs::write(dir.path().join("b/y.pcap"), b"y").unwrap();
        assert!(!w.unchanged());
        // A refresh that found something the watch cannot see is never trusted.
        let mark = w.begin();
        w.refreshed(mark, false);
        assert!(!w.unchanged());
    }
}
