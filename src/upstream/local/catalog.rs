//! The catalog of an indexed directory: the file table ([`FileEntry`] per path — identity,
//! size, modification time, time range, packet count, index state) kept in the index
//! directory, so that a restart reads no capture file that did not change.
//!
//! Invariants: written whole and atomically ([`crate::index::store::save_catalog`]); read only
//! if it is ours, of this version, and parses whole — otherwise ignored (everything is read
//! again). Never trusted blindly: an entry is used only for a file whose device, inode, size,
//! modification and change times a fresh `stat` still shows (the refresh's test for every file), and
//! a query checks an index against the file itself before using it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::FileEntry;

/// Bumped when [`FileEntry`]'s meaning changes: an older catalog is ignored.
const VERSION: u32 = 2;

/// A catalog larger than this is not read (10,000 files take about 4 MB).
const MAX_BYTES: u64 = 1 << 30;

#[derive(serde::Serialize)]
struct Written<'a> {
    version: u32,
    files: Vec<(&'a Path, &'a FileEntry)>,
}

#[derive(serde::Deserialize)]
struct Read {
    version: u32,
    files: Vec<(PathBuf, FileEntry)>,
}

/// The file table the catalog in `dir` holds (empty when there is none that can be used).
pub(super) fn load(dir: &Path) -> HashMap<PathBuf, FileEntry> {
    let Some(bytes) = crate::index::store::load_catalog(dir, MAX_BYTES) else {
        return HashMap::new();
    };
    match serde_json::from_slice::<Read>(&bytes) {
        Ok(r) if r.version == VERSION => r.files.into_iter().collect(),
        Ok(_) => HashMap::new(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "catalog unusable: files are read again");
            HashMap::new()
        }
    }
}

/// Writes `files` as the catalog in `dir`. Paths that are not UTF-8 are left out (they are
/// read again after a restart).
///
/// # Errors
/// The catalog cannot be written.
pub(super) fn save(dir: &Path, files: &HashMap<PathBuf, FileEntry>) -> std::io::Result<()> {
    let utf8 = |p: &Path| p.to_str().is_some();
    let w = Written {
        version: VERSION,
        files: files
            .iter()
            .filter(|(p, e)| utf8(p) && e.named.as_ref().is_none_or(|((d, _, _), _)| utf8(d)))
            .map(|(p, e)| (p.as_path(), e))
            .collect(),
    };
    let bytes = serde_json::to_vec(&w).map_err(std::io::Error::other)?;
    crate::index::store::save_catalog(dir, &bytes)
}
