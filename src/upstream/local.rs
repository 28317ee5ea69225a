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
//!   reported as a warning; the rest of the directory still answers.
//! - **mmap.** Files are mapped (read-only, private): packets are slices of the map, and the
//!   merge copies nothing. The index scan maps too. A file truncated while mapped would raise
//!   SIGBUS; capture directories are appended to, not truncated, while Docket runs.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Error, Message, BATCH_PACKETS};
use crate::merge::KWay;
use crate::pcap::{self, LinkType, Precision, Reader, Timestamp};

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

/// Maps a file read-only; empty files give empty bytes.
fn map(path: &Path) -> std::io::Result<Bytes> {
    // SAFETY: capture directories are appended to, not truncated (see the module doc).
    unsafe { crate::mapped::map_file(&File::open(path)?) }
}

fn scan(path: &Path, size: u64, mtime: SystemTime) -> FileEntry {
    let mut e = FileEntry {
        size,
        mtime,
        first: None,
        last: None,
        declared: Vec::new(),
        packets: 0,
        error: None,
    };
    let data = match map(path) {
        Ok(d) => d,
        Err(err) => {
            e.error = Some(err.to_string());
            return e;
        }
    };
    let mut r = Reader::from_bytes(data);
    for p in r.by_ref() {
        match p {
            Ok(p) => {
                e.packets += 1;
                e.first = Some(e.first.map_or(p.ts, |f| f.min(p.ts)));
                e.last = Some(e.last.map_or(p.ts, |l| l.max(p.ts)));
            }
            Err(err) => e.error = Some(err.to_string()),
        }
    }
    e.declared = r.declared().to_vec();
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
        let _one_at_a_time = self.refreshing.lock().expect("refresh lock");
        let listing = std::fs::read_dir(&self.dir).map_err(|source| Error::Directory {
            path: self.dir.clone(),
            source,
        })?;
        let mut present = std::collections::HashSet::new();
        for entry in listing.flatten() {
            // Follows symlinks (a directory of links to capture files is a fine upstream);
            // `DirEntry::metadata` would not.
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let path = entry.path();
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let known = {
                let idx = self.index.lock().expect("index lock");
                idx.get(&path)
                    .is_some_and(|e| e.size == meta.len() && e.mtime == mtime)
            };
            if !known {
                let e = scan(&path, meta.len(), mtime);
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

    /// Earliest packet time in the directory (data availability).
    pub fn oldest(&self) -> Option<Timestamp> {
        let idx = self.index.lock().expect("index lock");
        idx.values().filter_map(|e| e.first).min()
    }

    /// Answers `[after, before)` filtered by `bpf` on `tx`, on a blocking thread, until done,
    /// the receiver goes away, or `cancel` fires.
    pub fn query(
        self: &Arc<Self>,
        after: Timestamp,
        before: Timestamp,
        bpf: Option<String>,
        tx: mpsc::Sender<Message>,
        cancel: CancellationToken,
    ) {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = me.refresh() {
                let _ = tx.blocking_send(Message::Failed(e));
                return;
            }
            me.answer(after, before, bpf.as_deref(), &tx, &cancel);
        });
    }

    fn answer(
        &self,
        after: Timestamp,
        before: Timestamp,
        bpf: Option<&str>,
        tx: &mpsc::Sender<Message>,
        cancel: &CancellationToken,
    ) {
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
        let mut readers: Vec<(PathBuf, Option<Reader>)> = files
            .into_iter()
            .map(|(p, _)| match map(&p) {
                Ok(data) => (p, Some(Reader::from_bytes(data))),
                Err(e) => {
                    let warning = format!("{}: {e}; skipped", p.display());
                    let _ = tx.blocking_send(Message::Warning(warning));
                    (p, None)
                }
            })
            .collect();
        let mut gate = pcap::Gate::new(after, before, bpf.map(str::to_owned));
        let mut kway = KWay::new(readers.len());
        let mut batch = Vec::with_capacity(BATCH_PACKETS);
        let fill = |i: usize, kway: &mut KWay, readers: &mut [(PathBuf, Option<Reader>)]| {
            let (path, reader) = &mut readers[i];
            let Some(r) = reader else {
                kway.end(i);
                return;
            };
            match r.next() {
                Some(Ok(p)) => kway.push(i, p),
                Some(Err(e)) => {
                    let _ = tx.blocking_send(Message::Warning(format!(
                        "{}: {e}; packets after it are skipped",
                        path.display()
                    )));
                    kway.end(i);
                }
                None => kway.end(i),
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
