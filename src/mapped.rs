//! Whole files mapped read-only as `Bytes`, the one place Docket maps a file: capture files
//! for `docket merge` and the local backend, complete spool files for hits. Packets and HTTP
//! body pieces are then slices of the map, and the map lives as long as any of them.

use std::fs::File;
use std::io;

use bytes::Bytes;

/// Maps all of `file` read-only (an empty file gives empty bytes, which `mmap` cannot map),
/// advising the kernel that it will be read sequentially.
///
/// # Safety
/// The file must not be truncated while any slice of the result is alive: reading a page past
/// the new end raises SIGBUS. Appending, and unlinking, are harmless.
pub unsafe fn map_file(file: &File) -> io::Result<Bytes> {
    if file.metadata()?.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: forwarded to the caller (see above); the map is read-only and private.
    let map = unsafe { memmap2::Mmap::map(file)? };
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(Bytes::from_owner(map))
}
