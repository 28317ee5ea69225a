//! Merging capture files into one output: the library half of `docket merge`.
//!
//! Regular files are memory-mapped and handed to the reader as one `Bytes`, so packets are
//! slices of the map; anything that cannot be mapped (a pipe, `/dev/stdin`) is read in
//! [`READ_CHUNK`] pieces instead. The output is staged for `writev`: record headers (and
//! payloads under [`INLINE_MAX`]) are encoded into a small buffer, larger payloads are passed
//! to the kernel *by reference* into the map, so the only copy of a payload is the kernel's
//! into the output file. Profiling showed why: to a file, the kernel's page-cache copy is most
//! of the time, and a user-space copy into an output buffer was the next largest cost.
//! Memory stays flat whatever the input size: at most [`MAX_SEGMENTS`] segments are staged,
//! and file-backed map pages are the kernel's to evict.
//!
//! An input that fails (unreadable, malformed, truncated, or holding a packet the chosen
//! output cannot describe) ends there: its good packets before the fault are merged, the others
//! go on, and the failure is returned in the [`Report`].

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use super::KWay;
use crate::pcap::{self, LinkType, Next, OutputFormat, Reader, Writer};

/// Staged header bytes at which the output is written out.
pub const FLUSH_AT: usize = 1 << 20;

/// Segments staged per `writev`: Linux's `IOV_MAX`.
pub const MAX_SEGMENTS: usize = 1024;

/// Payloads shorter than this are copied next to their header rather than referenced: an
/// iovec entry costs the kernel about what copying a few hundred bytes costs us.
pub const INLINE_MAX: usize = 256;

/// Read size for inputs that cannot be mapped.
pub const READ_CHUNK: usize = 1 << 20;

/// The output container asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// The output rule: classic pcap if one link type, else pcapng (see [`OutputFormat::choose`]).
    Auto,
    /// Classic pcap (nanosecond magic when an input is finer than µs).
    Pcap,
    /// pcapng.
    Pcapng,
}

/// What a merge did.
#[derive(Debug)]
pub struct Report {
    /// Packets written.
    pub packets: u64,
    /// The format written.
    pub format: OutputFormat,
    /// Inputs that failed, with why; their packets before the failure were merged.
    pub failed: Vec<(PathBuf, InputError)>,
}

/// Why one input stopped early.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// It could not be opened or read.
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    /// Its content is not a valid capture from some offset on.
    #[error(transparent)]
    Pcap(#[from] pcap::Error),
}

/// A failure of the merge as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the output failed (a full disk, a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
}

struct Input {
    path: PathBuf,
    reader: Reader,
    /// Interfaces a mapped pcapng declares anywhere in the file (see `choose`).
    later_interfaces: Vec<(LinkType, pcap::Precision)>,
    /// Set for inputs read in chunks rather than mapped.
    stream: Option<File>,
}

impl Input {
    fn open(path: &Path) -> Result<Input, io::Error> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_file() {
            // SAFETY: `docket merge` reads capture files at rest; a file truncated by another
            // process during the merge would raise SIGBUS, a risk accepted as mergecap's readers
            // accept a file changing under them.
            let data = unsafe { crate::mapped::map_file(&file)? };
            return Ok(Input {
                path: path.to_owned(),
                later_interfaces: pcap::scan_pcapng_interfaces(&data),
                reader: Reader::from_bytes(data),
                stream: None,
            });
        }
        Ok(Input {
            path: path.to_owned(),
            later_interfaces: Vec::new(),
            reader: Reader::new(),
            stream: Some(file),
        })
    }

    /// The next packet, reading more from a stream input as needed.
    fn next(&mut self) -> Result<Option<pcap::Packet>, InputError> {
        loop {
            match self.reader.next_packet()? {
                Next::Packet(p) => return Ok(Some(p)),
                Next::End => return Ok(None),
                Next::NeedMore => {
                    let Some(file) = self.stream.as_mut() else {
                        // A mapped input is finished from the start; NeedMore cannot happen.
                        return Ok(None);
                    };
                    let mut buf = vec![0u8; READ_CHUNK];
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        self.reader.finish();
                    } else {
                        buf.truncate(n);
                        self.reader.push(Bytes::from(buf));
                    }
                }
            }
        }
    }
}

/// Merges `paths` by timestamp into `out`. Always writes a valid capture (a bare header when no
/// packet survives).
///
/// # Errors
/// Only output failures; input failures are in the [`Report`].
pub fn merge_files(
    paths: &[PathBuf],
    requested: Requested,
    out: &mut dyn Write,
) -> Result<Report, Error> {
    let mut failed = Vec::new();
    let mut inputs: Vec<Option<Input>> = Vec::with_capacity(paths.len());
    for p in paths {
        match Input::open(p) {
            Ok(i) => inputs.push(Some(i)),
            Err(e) => {
                failed.push((p.clone(), InputError::Io(e)));
                inputs.push(None);
            }
        }
    }
    let mut kway = KWay::new(inputs.len());
    let fill = |i: usize, kway: &mut KWay, inputs: &mut [Option<Input>], failed: &mut Vec<_>| {
        let Some(input) = inputs[i].as_mut() else {
            kway.end(i);
            return;
        };
        match input.next() {
            Ok(Some(p)) => kway.push(i, p),
            Ok(None) => kway.end(i),
            Err(e) => {
                failed.push((input.path.clone(), e));
                kway.end(i);
            }
        }
    };
    for i in 0..inputs.len() {
        fill(i, &mut kway, &mut inputs, &mut failed);
    }
    // Every input now has its first packet (or has ended), so every interface that precedes a
    // first packet is declared: the output format is decided here.
    let format = choose(requested, &inputs);
    let mut writer = Writer::new(format);
    let mut staged = Staged::default();
    writer.write_header(&mut staged.buf);
    for input in inputs.iter().flatten() {
        for &(link_type, _) in input
            .reader
            .declared()
            .iter()
            .chain(&input.later_interfaces)
        {
            writer.declare(&mut staged.buf, link_type);
        }
    }
    staged.extend_buf(0);
    let mut packets = 0u64;
    while let Some((i, p)) = kway.pop() {
        let start = staged.buf.len();
        match writer.write_head(&mut staged.buf, &p) {
            Ok(tail) => {
                staged.extend_buf(start);
                staged.payload(&p.data);
                staged.copy(tail.as_slice());
                packets += 1;
                fill(i, &mut kway, &mut inputs, &mut failed);
            }
            Err(e) => {
                if let Some(input) = &inputs[i] {
                    failed.push((input.path.clone(), InputError::Pcap(e)));
                }
                kway.end(i);
            }
        }
        if staged.is_full() {
            staged.flush(out).map_err(Error::Output)?;
        }
    }
    staged.flush(out).map_err(Error::Output)?;
    out.flush().map_err(Error::Output)?;
    Ok(Report {
        packets,
        format,
        failed,
    })
}

/// Output staged for one `writev`: a buffer of encoded bytes and the payloads referenced in
/// place, as an ordered list of segments.
#[derive(Default)]
struct Staged {
    buf: BytesMut,
    segments: Vec<Segment>,
    payloads: Vec<Bytes>,
}

enum Segment {
    /// `buf[start..end]`.
    Buf(usize, usize),
    /// `payloads[index]`.
    Payload(usize),
}

impl Staged {
    /// Declares `buf[start..]` (just appended) as the next output bytes.
    fn extend_buf(&mut self, start: usize) {
        let end = self.buf.len();
        if start == end {
            return;
        }
        match self.segments.last_mut() {
            Some(Segment::Buf(_, e)) if *e == start => *e = end,
            _ => self.segments.push(Segment::Buf(start, end)),
        }
    }

    fn copy(&mut self, bytes: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.extend_buf(start);
    }

    fn payload(&mut self, data: &Bytes) {
        if data.len() < INLINE_MAX {
            self.copy(data);
        } else {
            self.payloads.push(data.clone());
            self.segments
                .push(Segment::Payload(self.payloads.len() - 1));
        }
    }

    fn is_full(&self) -> bool {
        self.segments.len() >= MAX_SEGMENTS - 2 || self.buf.len() >= FLUSH_AT
    }

    fn flush(&mut self, out: &mut dyn Write) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = self
            .segments
            .iter()
            .map(|s| match *s {
                Segment::Buf(a, b) => IoSlice::new(&self.buf[a..b]),
                Segment::Payload(i) => IoSlice::new(&self.payloads[i]),
            })
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match out.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.segments.clear();
        self.payloads.clear();
        Ok(())
    }
}

/// The output format: from what every input declared before its first packet and, for mapped
/// pcapng files, every interface declared anywhere in them (a pcapng may add an interface of
/// another link type after its first packet; a stream input cannot be scanned ahead, and such
/// a late interface then fails that input instead of being mislabelled).
fn choose(requested: Requested, inputs: &[Option<Input>]) -> OutputFormat {
    let declared = inputs
        .iter()
        .flatten()
        .flat_map(|i| i.reader.declared().iter().chain(&i.later_interfaces));
    match (requested, OutputFormat::choose(declared.clone())) {
        (Requested::Pcapng, _) => OutputFormat::Pcapng,
        (Requested::Auto, f) => f,
        (Requested::Pcap, f @ OutputFormat::Pcap { .. }) => f,
        // Asked for classic pcap over several link types: declare the first; packets of the
        // others fail their input rather than being mislabelled.
        (Requested::Pcap, OutputFormat::Pcapng) => {
            let mut d = declared;
            let first = d.next().map_or(1, |&(lt, _)| lt);
            let nanos = d.any(|&(_, p)| p == pcap::Precision::Nano);
            OutputFormat::Pcap {
                link_type: first,
                nanos,
            }
        }
    }
}
