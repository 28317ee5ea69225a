//! Index files on disk: one per capture file, in an index directory, named by a hash of the
//! capture's path. Written once, atomically (a new temporary file, fsync, rename), never
//! modified in place: that is what makes mapping them safe. Read by mapping, so a query touches
//! only the pages of the tables and postings it asks for.
//!
//! Invariants: an index is used only for the capture whose identity it carries (device, inode,
//! the hashes of the bytes it covers, its modification time); anything else — another file's
//! index copied over, an older version, a damaged or cut file — is refused, and the capture is
//! scanned (and its index rebuilt). Only files Docket could have written are opened: regular,
//! owned by this process's user, not writable by group or others, with one link, opened
//! without following a link and without blocking — so a planted FIFO cannot hang a query and
//! a planted file cannot be truncated under a map (SIGBUS). The directory is made `0700`.
//! Deleting the directory at any time is safe: indexes are rebuilt.
//!
//! The directory also holds its capture directory's catalog (`catalog.json`, see
//! `upstream::local::catalog`), written and read under the same rules.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{indexed_size, FileIndex, Identity, IndexView};

/// Where the index of `capture` lives in `dir`.
pub fn path_in(dir: &Path, capture: &Path) -> PathBuf {
    let digest = Sha256::digest(capture.as_os_str().as_bytes());
    let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{name}.idx"))
}

/// Whether a file's metadata is that of a file Docket wrote and nobody else could change.
fn ours(meta: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    meta.is_file() && meta.uid() == me && meta.mode() & 0o022 == 0 && meta.nlink() == 1
}

/// Writes the index of `capture` into `dir`: a new temporary file (never an existing one, nor
/// through a link), fsync, rename. Returns the index file's length.
///
/// # Errors
/// The directory cannot be made or the file written.
pub fn save(
    dir: &Path,
    capture: &Path,
    index: &FileIndex,
    identity: &Identity,
    times: super::Times,
) -> std::io::Result<u64> {
    let bytes = index.to_bytes(identity, times);
    write_atomically(dir, &path_in(dir, capture), &bytes)?;
    Ok(bytes.len() as u64)
}

/// Where a directory's catalog (its files' identities and time ranges) lives in `dir`.
pub fn catalog_path(dir: &Path) -> PathBuf {
    dir.join(CATALOG)
}

const CATALOG: &str = "catalog.json";

/// Writes the catalog of the directory indexed in `dir`, atomically.
///
/// # Errors
/// The directory cannot be made or the file written.
pub fn save_catalog(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically(dir, &catalog_path(dir), bytes)
}

/// The catalog of the directory indexed in `dir`, if there is one of ours (at most
/// `max_bytes`: a catalog is never trusted with memory either).
pub fn load_catalog(dir: &Path, max_bytes: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = open_ours(&catalog_path(dir))?;
    let mut bytes = Vec::new();
    f.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .ok()?;
    (bytes.len() as u64 <= max_bytes).then_some(bytes)
}

/// `bytes` into `to` (in `dir`, made `0700` if missing): a new temporary file (never an existing
/// one, nor through a link), fsync, rename — a crash leaves the old file or the new, whole.
fn write_atomically(dir: &Path, to: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // Only into a directory of this user's that nobody else can write to: not one swapped for
    // a link to a shared directory.
    let meta = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{}: not a directory of this user's that only it can write to",
                dir.display()
            ),
        ));
    }
    let mut name = to.as_os_str().to_owned();
    name.push(format!(".{}.{}.tmp", std::process::id(), next_tmp()));
    let tmp = PathBuf::from(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, to)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    forget_map(to);
    Ok(())
}

/// A number no other temporary file of this process uses (two threads may write the same
/// index at once: the indexer and a refresh).
fn next_tmp() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// `path` opened for reading if it is a file Docket could have written: without following a
/// link, without blocking (a planted FIFO), and [`ours`].
fn open_ours(path: &Path) -> Option<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    ours(&f.metadata().ok()?).then_some(f)
}

/// An index file mapped for reading, with the identity of the capture bytes it covers.
#[derive(Debug)]
pub struct Mapped {
    map: std::sync::Arc<memmap2::Mmap>,
    /// The identity of the capture's bytes up to where the index says it ends; `None` when
    /// this index was checked against this very capture before ([`VERIFIED`]).
    identity: Option<Identity>,
    /// The capture bytes the index says it covers.
    size: u64,
    /// The index file and the capture file as they were opened.
    pair: (FileKey, CaptureKey),
}

/// An index file's device, inode, length, modification and change times (ns).
type FileKey = (u64, u64, u64, i64, i64);

/// A capture file's device, inode, length, modification and change times (ns).
type CaptureKey = FileKey;

/// A file's device, inode, length, modification and change times.
fn key_of(meta: &std::fs::Metadata) -> FileKey {
    let t = super::Times::of(meta);
    (meta.dev(), meta.ino(), meta.len(), t.mtime_ns, t.ctime_ns)
}

/// Index files checked whole (tables hashed) against a capture file (its first and last bytes
/// hashed), as both were then. Docket writes an index once and renames it into place, never
/// in place, so an index file with the same device, inode, length, modification and change
/// times holds the same bytes; a capture with the same five was not rewritten. Such a pair is
/// not checked again at every query (measured: the hashing was 42 % of a rare-host query's
/// CPU over 681 files). Bounded: forgotten whole past [`VERIFIED_MAX`] entries.
static VERIFIED: std::sync::Mutex<Option<std::collections::HashSet<(FileKey, CaptureKey)>>> =
    std::sync::Mutex::new(None);
const VERIFIED_MAX: usize = 1 << 20;

fn verified(pair: &(FileKey, CaptureKey)) -> bool {
    VERIFIED
        .lock()
        .expect("verified lock")
        .as_ref()
        .is_some_and(|v| v.contains(pair))
}

impl Mapped {
    /// The view of the index, if it describes the capture it was loaded for (same file, same
    /// first bytes, this version, undamaged); `None` otherwise.
    pub fn view(&self) -> Option<IndexView<'_>> {
        let view = match &self.identity {
            None => IndexView::open_with(&self.map, None, false).ok()?,
            Some(id) => {
                let view = IndexView::open_with(&self.map, Some(id), true).ok()?;
                let mut v = VERIFIED.lock().expect("verified lock");
                let v = v.get_or_insert_with(Default::default);
                if v.len() >= VERIFIED_MAX {
                    v.clear();
                }
                v.insert(self.pair);
                view
            }
        };
        Some(view)
    }

    /// The capture bytes the index covers (a capture that grew since has more).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The index file's length.
    pub fn bytes(&self) -> u64 {
        self.map.len() as u64
    }
}

/// The index file of `capture` (opened as `file`, with `meta` its metadata at the open) from
/// `dir`, if there is one of ours, mapped with the identity of `file`'s bytes up to where the
/// index says it ends. Whether it describes that file (and is whole) is checked once, by
/// [`Mapped::view`]: checking here too would hash its tables twice per query.
pub fn load(dir: &Path, capture: &Path, file: &File, meta: &std::fs::Metadata) -> Option<Mapped> {
    let path = path_in(dir, capture);
    let (key, map) = map_ours(&path)?;
    let ckey = key_of(meta);
    let size = indexed_size(&map)?;
    let pair = (key, ckey);
    let identity = if verified(&pair) {
        None
    } else {
        Some(Identity::of(file, size).ok()?)
    };
    Some(Mapped {
        map,
        identity,
        size,
        pair,
    })
}

/// Index files mapped by earlier queries, by path, with the key of the file each map was made
/// from. A query over many files would otherwise open, map, unmap and close every index each
/// time (measured: over half of a rare-host query's CPU over 681 files, the unmapping's TLB
/// shootdowns the most). An entry is used only while the path still names that very file
/// (same device, inode, length, modification and change times, checked with one `lstat`);
/// Docket never changes an index in place, so the map holds what the file holds. An index
/// Docket replaces or prunes leaves the cache at once (its disk space is freed with the map).
/// Bounded: forgotten whole past [`MAPS_MAX`] entries.
static MAPS: std::sync::Mutex<Option<std::collections::HashMap<PathBuf, MapEntry>>> =
    std::sync::Mutex::new(None);

/// A mapped index file, with the key of the file it was made from.
type MapEntry = (FileKey, std::sync::Arc<memmap2::Mmap>);
const MAPS_MAX: usize = 16_384;

/// The index file at `path`, if it is one of ours, mapped (from [`MAPS`] while unchanged).
fn map_ours(path: &Path) -> Option<MapEntry> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        // Gone (the directory deleted, say): its map must not hold the disk space.
        forget_map(path);
        return None;
    };
    if !ours(&meta) {
        // Not a file Docket wrote (planted, or changed by someone else): never used, and its
        // predecessor's map is let go.
        forget_map(path);
        return None;
    }
    let key = key_of(&meta);
    if let Some((k, map)) = MAPS
        .lock()
        .expect("maps lock")
        .as_ref()
        .and_then(|m| m.get(path))
    {
        if *k == key {
            return Some((key, std::sync::Arc::clone(map)));
        }
    }
    let f = open_ours(path)?;
    let key = key_of(&f.metadata().ok()?);
    // SAFETY: the file is a regular file only this user can write, which Docket writes whole
    // under a temporary name and renames into place, never in place; a replaced or deleted one
    // stays mapped as it was.
    let map = std::sync::Arc::new(unsafe { memmap2::Mmap::map(&f) }.ok()?);
    let mut maps = MAPS.lock().expect("maps lock");
    let maps = maps.get_or_insert_with(Default::default);
    if maps.len() >= MAPS_MAX {
        maps.clear();
    }
    maps.insert(path.to_path_buf(), (key, std::sync::Arc::clone(&map)));
    Some((key, map))
}

/// Forgets the map of the index file at `path` (replaced or removed).
fn forget_map(path: &Path) {
    if let Some(maps) = MAPS.lock().expect("maps lock").as_mut() {
        maps.remove(path);
    }
}

/// Removes from `dir` the index files of captures not in `keep`, and temporary files left by
/// a crash (retention deleted the capture: its index goes too). The catalog stays.
pub fn prune<'a>(dir: &Path, keep: impl IntoIterator<Item = &'a Path>) {
    let wanted: std::collections::HashSet<PathBuf> =
        keep.into_iter().map(|c| path_in(dir, c)).collect();
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in listing.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name.ends_with(".idx") || name.ends_with(".tmp");
        // This process's own temporary files are being written.
        let busy = name.ends_with(".tmp") && name.contains(&format!(".{}.", std::process::id()));
        if ours && !busy && !wanted.contains(&path) {
            let _ = std::fs::remove_file(&path);
            forget_map(&path);
        }
    }
}
