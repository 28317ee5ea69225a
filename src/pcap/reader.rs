//! The incremental capture reader: byte chunks in, [`Packet`]s out.
//!
//! Feed it chunks of any size with [`Reader::push`], say [`Reader::finish`] at the end of the
//! stream, and pull with [`Reader::next_packet`]. Classic pcap (both byte orders, µs and ns
//! magic, and the "modified" Kuznetzov variant) and pcapng (any number of sections in either
//! byte order, per-interface link type and `if_tsresol`/`if_tsoffset`, EPB/SPB/OPB; other blocks
//! skipped) are recognised from the first bytes, never from a file name.
//!
//! Parsing is delegated to `pcap-parser`'s slice parsers; this module owns what they leave to
//! the caller:
//! - **Buffering without copies.** A record that lies inside one input chunk is returned as a
//!   `Bytes` slice of that chunk. Only a record that straddles chunks is gathered into `carry`,
//!   and only the bytes it needs.
//! - **Limits before waiting.** Length fields are checked against [`MAX_RECORD`] and
//!   [`MAX_BLOCK`] before the reader waits for (or buffers) that many bytes, so a corrupt length
//!   fails the stream instead of allocating. Interfaces per section are capped at
//!   [`MAX_INTERFACES`].
//! - **Errors with offsets.** Every failure is an [`Error`] naming the byte offset of the record
//!   or block at fault, returned after all good packets before it. After an error, or after the
//!   clean end, the reader only answers [`Next::End`].
//!
//! Deliberate tolerances (documented in the README): zero `caplen` records and `caplen` greater
//! than the header's snaplen or than `orig_len` are passed through unchanged (Wireshark reads
//! them, and the snaplen is advisory); a sub-second field of one second or more is carried
//! into the seconds. One deliberate strictness: [`MAX_ZERO_RECORDS`] all-zero classic record
//! headers in a row (time 0, both lengths 0 — what a preallocated or sparse file holds) end
//! the stream as damage ([`Error::ZeroFilled`]); Wireshark would read gigabytes of them as
//! empty frames.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use pcap_parser::nom;
use pcap_parser::pcapng::{Block, InterfaceDescriptionBlock};
use pcap_parser::{OptionCode, PcapError};

use super::packet::{LinkType, Packet, Timestamp};
use super::Error;

/// Largest captured length accepted for one packet (libpcap's maximum snaplen). Records above it
/// fail the stream: this is what stops a corrupt length from becoming an allocation.
pub const MAX_RECORD: u32 = 256 * 1024;

/// Largest pcapng block accepted: a maximal packet plus generous room for options, or a large
/// name-resolution block.
pub const MAX_BLOCK: u32 = 1024 * 1024;

/// Most interfaces one pcapng section may declare (the corpus has 126 in a valid file).
pub const MAX_INTERFACES: usize = 4096;

const SHB_TYPE: u32 = 0x0A0D_0D0A;
const OPB_TYPE: u32 = 0x0000_0002;
const BOM: u32 = 0x1A2B_3C4D;

/// What [`Reader::next_packet`] has to say.
#[derive(Debug)]
pub enum Next {
    /// The next packet, in file order.
    Packet(Packet),
    /// Nothing complete is buffered: push more bytes, or call [`Reader::finish`].
    NeedMore,
    /// The stream ended cleanly at a record boundary (or an error was already returned).
    End,
}

/// Which container the stream turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap format.
    Pcap {
        /// Big-endian fields.
        big_endian: bool,
        /// Nanosecond magic (`a1b23c4d`).
        nanos: bool,
    },
    /// pcapng.
    Pcapng,
}

/// Timestamp resolution of a declared interface, as far as choosing an output format cares.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Precision {
    /// Microseconds or coarser.
    Micro,
    /// Finer than microseconds.
    Nano,
}

impl Precision {
    fn of_units(units_per_sec: u64) -> Precision {
        if units_per_sec > 1_000_000 {
            Precision::Nano
        } else {
            Precision::Micro
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ClassicState {
    big_endian: bool,
    modified: bool,
    units: u64,
    link_type: LinkType,
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link_type: LinkType,
    units: u64,
    offset_secs: i64,
    snaplen: u32,
}

#[derive(Debug)]
enum State {
    Magic,
    Pcap(ClassicState),
    Pcapng {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
    Done,
}

/// The incremental reader. See the module documentation.
#[derive(Debug)]
pub struct Reader {
    state: State,
    /// Unconsumed input chunks, oldest first. `carry`, when non-empty, logically precedes them.
    chunks: VecDeque<Bytes>,
    /// The start of a record that straddles chunks, gathered up to the length it needs.
    carry: BytesMut,
    /// Bytes in `carry` and `chunks` together.
    buffered: usize,
    /// Stream offset of the first unconsumed byte.
    offset: u64,
    /// No more input will come.
    eof: bool,
    format: Option<Format>,
    /// Distinct (link type, precision) pairs declared so far, in order of appearance.
    declared: Vec<(LinkType, Precision)>,
    /// All-zero classic record headers in a row, and the offset of the first.
    zeros: (u32, u64),
    /// Where the last packet returned began (its record or block).
    packet_start: u64,
    /// pcapng section headers and interface descriptions read so far: the blocks a later
    /// packet's meaning depends on.
    state_blocks: u64,
}

/// All-zero classic record headers (time 0, both lengths 0) in a row that end a stream as
/// damage. No capture tool writes them, but damaged files Wireshark reads hold short runs (the
/// corpus has one, `zero-caplen-records`): up to this many are read as Wireshark reads them (empty packets at
/// the epoch); a preallocated, sparse or zero-filled file holds millions, and reading it as
/// gigabytes of empty packets would fill a spool with nothing.
pub const MAX_ZERO_RECORDS: u32 = 1024;

impl Default for Reader {
    fn default() -> Self {
        Reader::new()
    }
}

impl Reader {
    /// A reader waiting for its first bytes.
    pub fn new() -> Reader {
        Reader {
            state: State::Magic,
            chunks: VecDeque::new(),
            carry: BytesMut::new(),
            buffered: 0,
            offset: 0,
            eof: false,
            format: None,
            declared: Vec::new(),
            zeros: (0, 0),
            packet_start: 0,
            state_blocks: 0,
        }
    }

    /// Stream offset where the last packet returned began (its record, or its block).
    pub fn packet_start(&self) -> u64 {
        self.packet_start
    }

    /// pcapng section headers and interface descriptions read so far (0 for classic pcap):
    /// a part of a file can be read on its own, after the file's head, only while this count
    /// is what it was at the head.
    pub fn state_blocks(&self) -> u64 {
        self.state_blocks
    }

    /// A reader over one complete buffer (a mapped file, a whole response body).
    pub fn from_bytes(data: Bytes) -> Reader {
        let mut r = Reader::new();
        r.push(data);
        r.finish();
        r
    }

    /// Appends a chunk of the stream.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() && !matches!(self.state, State::Done) {
            self.buffered += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Declares the end of the stream: what is buffered is all there is.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// The container format, once the first bytes have been recognised.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Every distinct (link type, precision) the stream has declared so far: the classic
    /// header's, or the IDBs' of every section read.
    pub fn declared(&self) -> &[(LinkType, Precision)] {
        &self.declared
    }

    /// Stream offset of the first byte not yet consumed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// The next packet, or what the reader needs.
    ///
    /// # Errors
    /// A malformed or truncated stream; afterwards the reader answers [`Next::End`].
    pub fn next_packet(&mut self) -> Result<Next, Error> {
        let result = loop {
            let start = self.offset;
            let step = match self.state {
                State::Done => return Ok(Next::End),
                State::Magic => self.read_magic(),
                State::Pcap(st) => self.read_record(st),
                State::Pcapng { .. } => self.read_block(),
            };
            match step {
                Ok(Step::Again) => continue,
                Ok(Step::Out(next)) => {
                    if matches!(next, Next::Packet(_)) {
                        self.packet_start = start;
                    }
                    break Ok(next);
                }
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(Next::End) | Err(_) => {
                self.state = State::Done;
                self.chunks.clear();
                self.carry = BytesMut::new();
                self.buffered = 0;
            }
            _ => {}
        }
        result
    }

    // ---- buffer management -------------------------------------------------------------

    /// The contiguous bytes at the front of the unconsumed input.
    fn front(&self) -> &[u8] {
        if !self.carry.is_empty() {
            &self.carry
        } else {
            self.chunks.front().map_or(&[], |c| c.as_ref())
        }
    }

    /// Makes at least `n` bytes contiguous at the front, if that many are buffered. Copies
    /// only when the front chunk is too short, and then only the `n` bytes needed.
    fn ensure(&mut self, n: usize) -> bool {
        if self.front().len() >= n {
            return true;
        }
        if self.buffered < n {
            return false;
        }
        self.carry.reserve(n - self.carry.len());
        while self.carry.len() < n {
            let Some(mut chunk) = self.chunks.pop_front() else {
                unreachable!("buffered counts the chunks")
            };
            let take = (n - self.carry.len()).min(chunk.len());
            self.carry.extend_from_slice(&chunk[..take]);
            chunk.advance(take);
            if !chunk.is_empty() {
                self.chunks.push_front(chunk);
            }
        }
        true
    }

    /// Removes `n` front bytes (already made contiguous) and returns them without copying.
    fn consume(&mut self, n: usize) -> Bytes {
        self.offset += n as u64;
        self.buffered -= n;
        if !self.carry.is_empty() {
            let out = self.carry.split_to(n).freeze();
            if self.carry.is_empty() {
                // Drop the spent allocation's handle so the next straddle starts small.
                self.carry = BytesMut::new();
            }
            out
        } else {
            let chunk = self.chunks.front_mut().expect("consume within front");
            let out = chunk.split_to(n);
            if chunk.is_empty() {
                self.chunks.pop_front();
            }
            out
        }
    }

    /// `n` bytes are needed for `what` and are not all here: wait, or fail at the end.
    fn need(&self, what: &'static str, n: usize) -> Result<Step, Error> {
        if self.eof {
            Err(Error::Truncated {
                what,
                offset: self.offset,
                need: n as u64,
                have: self.buffered as u64,
            })
        } else {
            Ok(Step::Out(Next::NeedMore))
        }
    }

    fn declare(&mut self, link_type: LinkType, precision: Precision) {
        if !self.declared.contains(&(link_type, precision)) {
            self.declared.push((link_type, precision));
        }
    }

    // ---- format detection --------------------------------------------------------------

    fn read_magic(&mut self) -> Result<Step, Error> {
        if !self.ensure(4) {
            // Fewer than four bytes in all: too short to say what they are.
            return self.need("file header", 24);
        }
        let magic = u32::from_le_bytes(self.front()[..4].try_into().expect("4 bytes"));
        match magic {
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xa1b2_cd34 | 0xd4c3_b2a1 | 0x4d3c_b2a1 | 0x34cd_b2a1 => {
                self.read_pcap_header()
            }
            SHB_TYPE => {
                self.state = State::Pcapng {
                    big_endian: false,
                    interfaces: Vec::new(),
                };
                self.format = Some(Format::Pcapng);
                Ok(Step::Again)
            }
            _ => Err(not_pcap(self.front())),
        }
    }

    fn read_pcap_header(&mut self) -> Result<Step, Error> {
        if !self.ensure(24) {
            return self.need("file header", 24);
        }
        let front = self.front();
        let magic_le = u32::from_le_bytes(front[..4].try_into().expect("4 bytes"));
        if magic_le == 0x34cd_b2a1 {
            // pcap-parser has no big-endian variant of the modified format.
            return Err(Error::NotPcap {
                found: "big-endian modified (Kuznetzov) pcap, unsupported",
                magic: front[..4].to_vec(),
            });
        }
        let (_, header) = pcap_parser::parse_pcap_header(front).map_err(|_| not_pcap(front))?;
        if !(header.version_major == 2 && header.version_minor <= 4) {
            return Err(Error::BadVersion {
                format: "pcap",
                offset: 0,
                major: header.version_major,
                minor: header.version_minor,
            });
        }
        let raw_link = header.network.0 as u32;
        // libpcap: bits 16..25 are reserved (must be zero); 26..31 describe the FCS and are
        // legitimately set by some writers.
        if raw_link & 0x03FF_0000 != 0 {
            return Err(Error::ReservedLinkTypeBits {
                offset: 20,
                value: raw_link,
            });
        }
        let nanos = header.is_nanosecond_precision();
        let st = ClassicState {
            big_endian: header.is_bigendian(),
            modified: header.is_modified_format(),
            units: if nanos { 1_000_000_000 } else { 1_000_000 },
            link_type: (raw_link & 0xFFFF) as LinkType,
        };
        self.consume(24);
        self.format = Some(Format::Pcap {
            big_endian: st.big_endian,
            nanos,
        });
        self.declare(st.link_type, Precision::of_units(st.units));
        self.state = State::Pcap(st);
        Ok(Step::Again)
    }

    // ---- classic pcap records ----------------------------------------------------------

    fn read_record(&mut self, st: ClassicState) -> Result<Step, Error> {
        let hdr_len = if st.modified { 24 } else { 16 };
        let parse = if st.modified {
            pcap_parser::parse_pcap_frame_modified
        } else if st.big_endian {
            pcap_parser::parse_pcap_frame_be
        } else {
            pcap_parser::parse_pcap_frame
        };
        let (ts_sec, frac, caplen, origlen) = loop {
            if self.buffered == 0 && self.eof {
                return Ok(Step::Out(Next::End));
            }
            let front = self.front();
            match parse(front) {
                Ok((_, b)) => {
                    if b.caplen > MAX_RECORD {
                        return Err(self.too_large("record", b.caplen as u64, MAX_RECORD));
                    }
                    break (b.ts_sec, b.ts_usec, b.caplen, b.origlen);
                }
                Err(nom::Err::Incomplete(needed)) => {
                    let more = match needed {
                        nom::Needed::Size(n) => n.get(),
                        nom::Needed::Unknown => 1,
                    };
                    let total = front.len() + more;
                    if front.len() < hdr_len {
                        if !self.ensure(hdr_len) {
                            return self.need("record header", hdr_len);
                        }
                        continue;
                    }
                    let caplen = total - hdr_len;
                    if caplen > MAX_RECORD as usize {
                        return Err(self.too_large("record", caplen as u64, MAX_RECORD));
                    }
                    if !self.ensure(total) {
                        return self.need("record data", total);
                    }
                }
                // pcap-parser's frame parsers only ask for more bytes; should that change, a
                // parse failure fails the stream rather than the process.
                Err(_) => {
                    return Err(Error::BadBlock {
                        offset: self.offset,
                        block_type: 0,
                        reason: "record does not parse",
                    })
                }
            }
        };
        if ts_sec == 0 && frac == 0 && caplen == 0 && origlen == 0 {
            if self.zeros.0 == 0 {
                self.zeros.1 = self.offset;
            }
            self.zeros.0 += 1;
            if self.zeros.0 >= MAX_ZERO_RECORDS {
                return Err(Error::ZeroFilled {
                    offset: self.zeros.1,
                    count: self.zeros.0,
                });
            }
        } else {
            self.zeros.0 = 0;
        }
        let record = self.consume(hdr_len + caplen as usize);
        Ok(Step::Out(Next::Packet(Packet {
            ts: Timestamp::from_parts(ts_sec as i128, frac as u64, st.units),
            link_type: st.link_type,
            orig_len: origlen,
            data: record.slice(hdr_len..),
        })))
    }

    fn too_large(&self, what: &'static str, len: u64, max: u32) -> Error {
        Error::TooLarge {
            what,
            offset: self.offset,
            len,
            max: max as u64,
        }
    }

    // ---- pcapng blocks -----------------------------------------------------------------

    fn read_block(&mut self) -> Result<Step, Error> {
        if self.buffered == 0 && self.eof {
            return Ok(Step::Out(Next::End));
        }
        if !self.ensure(12) {
            return self.need("block header", 12);
        }
        let offset = self.offset;
        let front = self.front();
        let block_type_le = u32::from_le_bytes(front[..4].try_into().expect("4 bytes"));
        let State::Pcapng { big_endian, .. } = self.state else {
            unreachable!("read_block in pcapng state")
        };
        // A section header fixes the byte order of itself and everything up to the next one.
        let be = if block_type_le == SHB_TYPE {
            let bom = u32::from_le_bytes(front[8..12].try_into().expect("4 bytes"));
            match bom {
                BOM => false,
                b if b == BOM.swap_bytes() => true,
                _ => {
                    return Err(Error::BadBlock {
                        offset,
                        block_type: SHB_TYPE,
                        reason: "section header has no valid byte-order magic",
                    })
                }
            }
        } else {
            big_endian
        };
        let rd = |b: &[u8]| {
            let a: [u8; 4] = b.try_into().expect("4 bytes");
            if be {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let block_type = rd(&front[..4]);
        let block_len = rd(&front[4..8]);
        if block_len < 12 {
            return Err(Error::BadBlock {
                offset,
                block_type,
                reason: "block length is less than 12",
            });
        }
        if block_len > MAX_BLOCK {
            return Err(self.too_large("block", block_len as u64, MAX_BLOCK));
        }
        // Some writers give the unpadded length of a padded block; Wireshark reads such a
        // block as taking the length rounded up to 4 (the padding is there), and so does
        // Docket. A block without its padding then fails the trailer check, as in Wireshark.
        let len = (block_len as usize).div_ceil(4) * 4;
        if !self.ensure(len) {
            return self.need("block", len);
        }
        let front = self.front();
        if rd(&front[len - 4..len]) != block_len {
            return Err(Error::BadBlock {
                offset,
                block_type,
                reason: "trailing block length differs from the leading one",
            });
        }
        // pcap-parser wants the lengths to be the block's size: a rare block that gave its
        // unpadded length is parsed from a copy that says the padded one.
        let patched: Vec<u8>;
        let raw: &[u8] = if len == block_len as usize {
            &front[..len]
        } else {
            let l = if be {
                (len as u32).to_be_bytes()
            } else {
                (len as u32).to_le_bytes()
            };
            let mut v = front[..len].to_vec();
            v[4..8].copy_from_slice(&l);
            v[len - 4..len].copy_from_slice(&l);
            patched = v;
            &patched
        };
        let parsed = if be {
            pcap_parser::pcapng::parse_block_be(raw)
        } else {
            pcap_parser::pcapng::parse_block_le(raw)
        };
        let bad = |reason| Error::BadBlock {
            offset,
            block_type,
            reason,
        };
        let block = match parsed {
            Ok((_, block)) => block,
            Err(nom::Err::Incomplete(_)) => {
                return Err(bad("block content runs past its length"));
            }
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                return Err(bad(match e {
                    PcapError::HeaderNotRecognized => "unrecognised header",
                    _ => "block content does not parse",
                }));
            }
        };
        // What to do with the block, decided while it borrows the buffer; applied after.
        enum Action {
            Skip,
            Section {
                be: bool,
            },
            Interface(Interface),
            Packet {
                if_id: u32,
                ts: u64,
                caplen: u32,
                origlen: u32,
                data_at: usize,
            },
            Simple {
                origlen: u32,
            },
        }
        let action = match &block {
            Block::SectionHeader(shb) => {
                if shb.major_version != 1 {
                    return Err(Error::BadVersion {
                        format: "pcapng",
                        offset,
                        major: shb.major_version,
                        minor: shb.minor_version,
                    });
                }
                Action::Section { be }
            }
            Block::InterfaceDescription(idb) => Action::Interface(interface(idb, be, offset)?),
            Block::EnhancedPacket(epb) => Action::Packet {
                if_id: epb.if_id,
                ts: ((epb.ts_high as u64) << 32) | epb.ts_low as u64,
                caplen: epb.caplen,
                origlen: epb.origlen,
                data_at: 28,
            },
            Block::SimplePacket(spb) => Action::Simple {
                origlen: spb.origlen,
            },
            Block::Unknown(ub)
                if ub.block_type == OPB_TYPE || ub.block_type == OPB_TYPE.swap_bytes() =>
            {
                // Obsolete Packet Block: u16 interface, u16 drops, then as an EPB.
                if len < 32 {
                    return Err(bad("obsolete packet block too short"));
                }
                let rd16 = |b: &[u8]| {
                    let a: [u8; 2] = b.try_into().expect("2 bytes");
                    if be {
                        u16::from_be_bytes(a)
                    } else {
                        u16::from_le_bytes(a)
                    }
                };
                Action::Packet {
                    if_id: rd16(&raw[8..10]) as u32,
                    ts: ((rd(&raw[12..16]) as u64) << 32) | rd(&raw[16..20]) as u64,
                    caplen: rd(&raw[20..24]),
                    origlen: rd(&raw[24..28]),
                    data_at: 28,
                }
            }
            _ => Action::Skip,
        };
        drop(block);
        let State::Pcapng {
            big_endian,
            interfaces,
        } = &mut self.state
        else {
            unreachable!("read_block in pcapng state")
        };
        match action {
            Action::Skip => {
                self.consume(len);
                Ok(Step::Again)
            }
            Action::Section { be } => {
                *big_endian = be;
                // Interface ids restart with every section.
                interfaces.clear();
                self.state_blocks += 1;
                self.consume(len);
                Ok(Step::Again)
            }
            Action::Interface(iface) => {
                if interfaces.len() >= MAX_INTERFACES {
                    return Err(Error::TooManyInterfaces {
                        offset,
                        max: MAX_INTERFACES,
                    });
                }
                interfaces.push(iface);
                self.state_blocks += 1;
                self.declare(iface.link_type, Precision::of_units(iface.units));
                self.consume(len);
                Ok(Step::Again)
            }
            Action::Packet {
                if_id,
                ts,
                caplen,
                origlen,
                data_at,
            } => {
                let declared = interfaces.len();
                let Some(iface) = interfaces.get(if_id as usize).copied() else {
                    return Err(Error::UnknownInterface {
                        offset,
                        if_id,
                        declared,
                    });
                };
                if caplen > MAX_RECORD {
                    return Err(self.too_large("record", caplen as u64, MAX_RECORD));
                }
                if data_at + caplen as usize > len - 4 {
                    return Err(bad("captured length runs past the block"));
                }
                let block = self.consume(len);
                Ok(Step::Out(Next::Packet(Packet {
                    ts: Timestamp::from_parts(iface.offset_secs as i128, ts, iface.units),
                    link_type: iface.link_type,
                    orig_len: origlen,
                    data: block.slice(data_at..data_at + caplen as usize),
                })))
            }
            Action::Simple { origlen } => {
                let declared = interfaces.len();
                let Some(iface) = interfaces.first().copied() else {
                    return Err(Error::UnknownInterface {
                        offset,
                        if_id: 0,
                        declared,
                    });
                };
                // An SPB's captured length is implied: the original length, cut by the
                // interface snaplen (0 = unlimited) and by the block itself.
                let mut caplen = (origlen as usize).min(len - 16);
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                let block = self.consume(len);
                Ok(Step::Out(Next::Packet(Packet {
                    // An SPB carries no timestamp.
                    ts: Timestamp(0),
                    link_type: iface.link_type,
                    orig_len: origlen,
                    data: block.slice(12..12 + caplen),
                })))
            }
        }
    }
}

/// Every (link type, precision) a complete pcapng capture declares, found by walking block
/// headers and parsing only section and interface blocks. For choosing an output format before
/// merging whole files: a pcapng may declare an interface after its first packet. Stops
/// quietly at the first damage (the reader reports it when it gets there); a classic pcap or
/// anything else gives an empty list.
pub fn scan_pcapng_interfaces(data: &[u8]) -> Vec<(LinkType, Precision)> {
    let mut found: Vec<(LinkType, Precision)> = Vec::new();
    let mut pos = 0usize;
    let mut be = false;
    while pos + 12 <= data.len() {
        let b = &data[pos..];
        let rd = |x: &[u8], be: bool| {
            let a: [u8; 4] = x[..4].try_into().expect("4 bytes");
            if be {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let kind = rd(b, false);
        if kind == SHB_TYPE {
            match rd(&b[8..], false) {
                BOM => be = false,
                x if x == BOM.swap_bytes() => be = true,
                _ => break,
            }
        } else if pos == 0 {
            break;
        }
        let len = rd(&b[4..], be) as usize;
        if len < 12 || len % 4 != 0 || len > b.len() {
            break;
        }
        if rd(&b[..4], be) == 1 {
            let parsed = if be {
                pcap_parser::pcapng::parse_interfacedescriptionblock_be(&b[..len])
            } else {
                pcap_parser::pcapng::parse_interfacedescriptionblock_le(&b[..len])
            };
            let Ok((_, idb)) = parsed else { break };
            let Ok(iface) = interface(&idb, be, pos as u64) else {
                break;
            };
            let d = (iface.link_type, Precision::of_units(iface.units));
            if !found.contains(&d) {
                found.push(d);
            }
        }
        pos += len;
    }
    found
}

/// Reads an IDB's link type, snaplen and timestamp options in the section's byte order.
/// (pcap-parser's own `if_tsoffset` is read little-endian whatever the section.)
fn interface(idb: &InterfaceDescriptionBlock, be: bool, offset: u64) -> Result<Interface, Error> {
    let mut tsresol = 6u8;
    let mut offset_secs = 0i64;
    for opt in &idb.options {
        let v = opt.value();
        if opt.code == OptionCode::IfTsresol && !v.is_empty() {
            tsresol = v[0];
        } else if opt.code == OptionCode::IfTsoffset && v.len() >= 8 {
            let a: [u8; 8] = v[..8].try_into().expect("8 bytes");
            offset_secs = if be {
                i64::from_be_bytes(a)
            } else {
                i64::from_le_bytes(a)
            };
        }
    }
    let units = ts_units(tsresol).ok_or(Error::BadTsResolution { offset, tsresol })?;
    Ok(Interface {
        link_type: idb.linktype.0 as LinkType,
        units,
        offset_secs,
        snaplen: idb.snaplen,
    })
}

/// Units per second of an `if_tsresol` value: 10^n, or 2^n when the high bit is set.
/// (pcap-parser 0.16's `build_ts_resolution` compares the whole byte, high bit included, with
/// 63, so it refuses every binary resolution: reported upstream, worked around here.)
fn ts_units(tsresol: u8) -> Option<u64> {
    let n = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    }
}

/// Names what a non-capture stream looks like, from its first bytes.
fn not_pcap(b: &[u8]) -> Error {
    let found = if b.starts_with(&[0x1f, 0x8b]) {
        "gzip-compressed data"
    } else if b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd-compressed data"
    } else if b.starts_with(b"snoop") {
        "Solaris snoop capture"
    } else if b.starts_with(b"<") || b.iter().take(4).all(|c| c.is_ascii_graphic() || *c == b' ') {
        "HTML or text"
    } else {
        "unknown format"
    };
    Error::NotPcap {
        found,
        magic: b[..b.len().min(4)].to_vec(),
    }
}

enum Step {
    Again,
    Out(Next),
}

impl Iterator for Reader {
    type Item = Result<Packet, Error>;

    /// Packets until the end or the first error. On a reader that was not [`finish`]ed,
    /// `NeedMore` also ends the iteration.
    ///
    /// [`finish`]: Reader::finish
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_packet() {
            Ok(Next::Packet(p)) => Some(Ok(p)),
            Ok(Next::NeedMore | Next::End) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
