//! Capture files Docket did not write, read with `pread` in bounded chunks — never mapped.
//!
//! A capture directory changes under its readers: ring buffers (`tcpdump -C … -W …`) reopen
//! their oldest file with `O_TRUNC`, `copytruncate` rotation empties a file in place. A mapped
//! page past a new end raises SIGBUS and kills the process; a `pread` past it returns 0. So a
//! [`CaptureFile`] reads chunk by chunk and a file that ends before the size it had when opened
//! simply ends: packets up to its last whole record, and [`CaptureFile::shrunk`] says so.
//!
//! Opening never blocks on something that is not a file: the open is non-blocking (a FIFO
//! opens at once instead of waiting for a writer) and anything but a regular file is refused
//! before a byte is read ([`OpenError::NotRegular`]).
//!
//! **Compressed captures** are recognised from their first bytes, whatever the name: gzip
//! (`flate2`, zlib-rs backend; concatenated members as `gzip` writes them), LZ4 frame
//! (`lz4_flex`; what Suricata's pcap-log and Debian's `lz4` write) and zstd (`zstd`). They are
//! decompressed as a stream, a chunk at a time — never inflated whole to disk or memory — into
//! the same reader, so their packets are those of the uncompressed file. A damaged or cut
//! compressed stream ends the file after the packets before the damage
//! ([`ReadError::Decompress`]).
//!
//! Invariants: reading stops at the size the file had when opened (bytes appended later belong
//! to a later query); at most one chunk ([`CHUNK`]) is read ahead; packets are slices of the
//! chunk they lie in (no copy per packet).

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::BytesMut;

use super::reader::{Next, Precision, Reader};
use super::{Error, LinkType, Packet};

/// Bytes read per `pread`. Every file of a merge keeps the chunk of its current packet alive,
/// so this is also the memory per open file.
pub const CHUNK: usize = 64 * 1024;

/// Bytes of the previous read that each read checks again (see [`CaptureFile::ended_early`]).
const OVERLAP: usize = 64;

/// Why a capture file cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A FIFO, socket, device or directory: reading it could block forever.
    #[error("not a regular file")]
    NotRegular,
    /// The open or the `fstat` failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Why reading a capture file stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not a valid capture from here on.
    #[error("{0}")]
    Capture(#[from] Error),
    /// The read itself failed (an I/O error of the disk or mount).
    #[error("read failed at offset {offset}: {source}")]
    Io {
        /// File offset of the failed read.
        offset: u64,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The compressed stream is damaged or cut short.
    #[error("{format} stream damaged after {decompressed} bytes of capture: {source}")]
    Decompress {
        /// The compression.
        format: Compression,
        /// Capture bytes decompressed before the damage.
        decompressed: u64,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
}

/// How a capture file is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (RFC 1952), one or more members.
    Gzip,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard frames.
    Zstd,
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        })
    }
}

impl Compression {
    /// The compression whose magic number `head` starts with.
    pub fn detect(head: &[u8]) -> Option<Compression> {
        match head {
            [0x1f, 0x8b, ..] => Some(Compression::Gzip),
            [0x04, 0x22, 0x4d, 0x18, ..] => Some(Compression::Lz4),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Where a file's capture bytes come from.
enum Source {
    /// The bytes themselves, by `pread`.
    Plain,
    /// A decoder over the file's first `size` bytes.
    Compressed {
        format: Compression,
        decoder: Box<dyn std::io::Read + Send>,
        /// Capture bytes decompressed so far.
        out: u64,
        done: bool,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Plain => f.write_str("Plain"),
            Source::Compressed { format, out, .. } => {
                write!(f, "Compressed({format}, {out} bytes out)")
            }
        }
    }
}

/// An open capture file not yet read: a handle taken early keeps the file a query listed,
/// whatever happens to its path before the query reaches it. Costs a descriptor, no buffer.
#[derive(Debug)]
pub struct Held {
    file: File,
    meta: std::fs::Metadata,
}

impl Held {
    /// Opens `path` for reading, refusing anything but a regular file without blocking.
    ///
    /// # Errors
    /// [`OpenError::NotRegular`], or the I/O error of the open.
    pub fn open(path: &Path) -> Result<Held, OpenError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            // A FIFO opens at once instead of waiting for a writer; no controlling terminal
            // from a tty device. O_NONBLOCK has no effect on reads of regular files.
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(OpenError::NotRegular);
        }
        Ok(Held { file, meta })
    }

    /// (device, inode) of the file.
    pub fn identity(&self) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        (self.meta.dev(), self.meta.ino())
    }
}

/// One capture file being read.
#[derive(Debug)]
pub struct CaptureFile {
    path: PathBuf,
    file: File,
    reader: Reader,
    /// File offset of the next `pread`.
    offset: u64,
    /// The size when opened: where reading stops.
    size: u64,
    /// The file ended at this offset, before `size`: truncated, or rewritten in place.
    ended_early: Option<u64>,
    /// The last bytes read (up to [`OVERLAP`]), checked again by the next read.
    seen: Vec<u8>,
    source: Source,
    /// Damage found by the decoder, reported once the packets before it are out.
    damage: Option<ReadError>,
    /// (device, inode) of the file opened.
    identity: (u64, u64),
    /// The file's metadata when opened.
    meta: std::fs::Metadata,
    /// Where the part being read ends: the size, unless [`CaptureFile::restrict`] chose parts.
    stop: u64,
    /// The parts still to read after the current one (an index's plan).
    parts: std::collections::VecDeque<(u64, u64)>,
}

impl CaptureFile {
    /// Opens `path` for reading, refusing anything but a regular file without blocking.
    ///
    /// # Errors
    /// [`OpenError::NotRegular`], or the I/O error of the open.
    pub fn open(path: &Path) -> Result<CaptureFile, OpenError> {
        CaptureFile::from_held(path, Held::open(path)?)
    }

    /// A reader over a file opened earlier ([`Held::open`]): the file as it is now, through
    /// that handle, whatever its path names since (renamed, compressed away, deleted).
    ///
    /// # Errors
    /// The I/O error of the first read or of the decoder's setup.
    pub fn from_held(path: &Path, held: Held) -> Result<CaptureFile, OpenError> {
        let Held { file, meta: opened } = held;
        // The size and times now: a held file may have grown since it was opened.
        let meta = file.metadata().unwrap_or(opened);
        let size = meta.len();
        let identity = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        let mut head = [0u8; 4];
        let n = file.read_at(&mut head, 0)?;
        let source = match Compression::detect(&head[..n]) {
            None => Source::Plain,
            Some(format) => {
                // The decoder reads the file as it was when opened, through its own handle.
                let raw = std::io::Read::take(file.try_clone()?, size);
                let raw = std::io::BufReader::with_capacity(CHUNK, raw);
                let decoder: Box<dyn std::io::Read + Send> = match format {
                    Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
                    Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(raw)),
                    Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(raw)?),
                };
                Source::Compressed {
                    format,
                    decoder,
                    out: 0,
                    done: false,
                }
            }
        };
        Ok(CaptureFile {
            path: path.to_owned(),
            file,
            reader: Reader::new(),
            offset: 0,
            size,
            ended_early: None,
            seen: Vec::with_capacity(OVERLAP),
            source,
            damage: None,
            identity,
            meta,
            stop: size,
            parts: std::collections::VecDeque::new(),
        })
    }

    /// The compression, if the file is compressed.
    pub fn compression(&self) -> Option<Compression> {
        match &self.source {
            Source::Plain => None,
            Source::Compressed { format, .. } => Some(*format),
        }
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads only these byte ranges of the file, in order (an index's plan: the file header,
    /// then slices of whole records). Ranges are clamped to the size; call before the first
    /// packet. A compressed file cannot be read in parts: `false`, and it is read whole.
    pub fn restrict(&mut self, ranges: &[(u64, u64)]) -> bool {
        if self.compression().is_some() || self.offset != 0 {
            return false;
        }
        self.parts = ranges
            .iter()
            .map(|&(a, b)| (a.min(self.size), b.min(self.size)))
            .filter(|(a, b)| a < b)
            .collect();
        // Nothing to read: the reader ends at once.
        self.stop = 0;
        true
    }

    /// (device, inode) of the file that was opened — which a path may no longer name.
    pub fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// Where the last packet returned began, in the (decompressed) byte stream: for a plain
    /// file read from its start, a file offset.
    pub fn packet_start(&self) -> u64 {
        self.reader.packet_start()
    }

    /// pcapng section headers and interface descriptions read so far (see
    /// `Reader::state_blocks`).
    pub fn state_blocks(&self) -> u64 {
        self.reader.state_blocks()
    }

    /// The file's metadata as it was when opened.
    pub fn metadata(&self) -> &std::fs::Metadata {
        &self.meta
    }

    /// Offset, in the capture's (decompressed) byte stream, just past the last packet returned:
    /// for a plain file, where the next record starts in the file.
    pub fn offset(&self) -> u64 {
        self.reader.offset()
    }

    /// The size the file had when opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// `Some(offset)` when the file stopped being the file that was opened at `offset`, before
    /// the size it had then: it was truncated, or rewritten in place (a ring buffer reopening
    /// it), while being read. Packets up to the last whole record before `offset` were
    /// returned, none after.
    pub fn ended_early(&self) -> Option<u64> {
        self.ended_early
    }

    /// The (link type, precision) pairs declared so far.
    pub fn declared(&self) -> &[(LinkType, Precision)] {
        self.reader.declared()
    }

    /// The container format, once its header has been read.
    pub fn format(&self) -> Option<super::Format> {
        self.reader.format()
    }

    /// The next packet in file order; `None` at the end (or after an error).
    pub fn next_packet(&mut self) -> Option<Result<Packet, ReadError>> {
        loop {
            match self.reader.next_packet() {
                Ok(Next::Packet(p)) => return Some(Ok(p)),
                Ok(Next::End) => return self.damage.take().map(Err),
                Ok(Next::NeedMore) => {
                    if let Err(e) = self.fill() {
                        return Some(Err(e));
                    }
                }
                // A file that shrank ends at its last whole record: the partial record the
                // shrink left is not damage of the file.
                Err(Error::Truncated { .. }) if self.ended_early.is_some() => return None,
                // The record a damaged compressed stream cut is part of that damage.
                Err(Error::Truncated { .. }) if self.damage.is_some() => {
                    return self.damage.take().map(Err)
                }
                Err(e) => return Some(Err(e.into())),
            }
        }
    }

    /// Reads the next chunk into the reader, or tells it the file has ended.
    fn fill(&mut self) -> Result<(), ReadError> {
        if let Source::Compressed {
            format,
            decoder,
            out,
            done,
        } = &mut self.source
        {
            if *done {
                self.reader.finish();
                return Ok(());
            }
            let mut buf = BytesMut::zeroed(CHUNK);
            let mut got = 0;
            while got < CHUNK {
                match decoder.read(&mut buf[got..]) {
                    Ok(0) => {
                        *done = true;
                        break;
                    }
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        // The packets decompressed before the damage still go out; the error
                        // comes after them.
                        *done = true;
                        self.damage = Some(ReadError::Decompress {
                            format: *format,
                            decompressed: *out + got as u64,
                            source,
                        });
                        break;
                    }
                }
            }
            buf.truncate(got);
            *out += got as u64;
            if got > 0 {
                self.reader.push(buf.freeze());
            }
            if *done {
                self.reader.finish();
            }
            return Ok(());
        }
        // The next part, when this one is done (a restricted read jumps ahead; the bytes
        // skipped are not compared, the identity of the file was checked with its index).
        while self.offset >= self.stop {
            match self.parts.pop_front() {
                Some((from, to)) => {
                    (self.offset, self.stop) = (from, to);
                    self.seen.clear();
                }
                None => {
                    self.reader.finish();
                    return Ok(());
                }
            }
        }
        let want = (self.stop - self.offset).min(CHUNK as u64) as usize;
        // Each read starts with the last bytes already read: if they are no longer there, the
        // file was rewritten in place (a ring buffer reopening it with O_TRUNC and writing
        // again) and what follows belongs to another capture.
        let back = self.seen.len();
        let start = self.offset - back as u64;
        // Not zeroed first (a twentieth of a scan's time went to zeroing buffers the read
        // then overwrote).
        let mut buf = BytesMut::with_capacity(back + want);
        let mut got = 0;
        while got < back + want {
            match pread_into(&self.file, &mut buf, back + want - got, start + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ReadError::Io {
                        offset: start + got as u64,
                        source,
                    })
                }
            }
        }
        if got < back || buf[..back] != self.seen[..] {
            self.ended_early = Some(self.offset);
            self.size = self.offset;
            self.stop = self.offset;
            self.parts.clear();
            self.reader.finish();
            return Ok(());
        }
        buf.truncate(got);
        let fresh = buf.split_off(back);
        let n = fresh.len();
        self.offset += n as u64;
        if n < want {
            self.ended_early = Some(self.offset);
            self.size = self.offset;
            self.stop = self.offset;
            self.parts.clear();
        }
        if n > 0 {
            let keep = n.min(OVERLAP);
            self.seen.clear();
            self.seen.extend_from_slice(&fresh[n - keep..]);
            self.reader.push(fresh.freeze());
        }
        if self.offset == self.stop && self.parts.is_empty() {
            self.reader.finish();
        }
        Ok(())
    }
}

impl Iterator for CaptureFile {
    type Item = Result<Packet, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_packet()
    }
}

/// Reads up to `len` bytes from `file` at `at` into `buf`'s spare capacity, without zeroing it
/// first; the bytes read extend `buf`.
fn pread_into(file: &File, buf: &mut BytesMut, len: usize, at: u64) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    buf.reserve(len);
    let spare = &mut buf.spare_capacity_mut()[..len];
    let offset = libc::off_t::try_from(at).map_err(std::io::Error::other)?;
    // SAFETY: pread writes at most `spare.len()` bytes into memory `buf` owns and does not
    // otherwise use; only the `n` bytes it reports written are then counted as initialised.
    let n = unsafe {
        libc::pread(
            file.as_raw_fd(),
            spare.as_mut_ptr().cast(),
            spare.len(),
            offset,
        )
    };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    // SAFETY: the first `n` bytes of the spare capacity were just written by pread.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}
