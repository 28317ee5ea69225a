//! The capture writer: packets in, pcap or pcapng bytes appended to a caller's buffer.
//!
//! The writer does no I/O: it encodes into a `BytesMut` that the caller drains into a file, a
//! spool or an HTTP body, so one encoder serves them all.
//!
//! Output rule (the README states it for users): **never mislabel a link type, never drop
//! timestamp precision.** [`OutputFormat::choose`] picks classic pcap when every declared
//! interface has the same link type — with the nanosecond magic if any of them is finer than
//! microseconds — and pcapng otherwise. The writer then refuses, with
//! [`Error::Unwritable`], any packet the chosen header cannot describe exactly: another link
//! type in classic pcap, a timestamp with sub-microsecond digits in a microsecond file, a time
//! outside the format's range. pcapng output declares one interface per (link type,
//! resolution) pair on first use, with nanosecond resolution whenever the time fits in 64 bits
//! of nanoseconds and microseconds otherwise (the year-586524 timestamps of the corpus).

use bytes::{BufMut, BytesMut};

use super::packet::{LinkType, Packet};
use super::reader::Precision;
use super::Error;

/// The container to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Classic pcap, little-endian, with one link type for the whole file.
    Pcap {
        /// Link type in the file header.
        link_type: LinkType,
        /// Nanosecond magic (`a1b23c4d`) instead of microseconds.
        nanos: bool,
    },
    /// pcapng, little-endian, one section.
    Pcapng,
}

impl OutputFormat {
    /// The output rule: classic pcap when every declared (link type, precision) shares one link
    /// type, nanosecond magic if any precision is finer than µs; pcapng otherwise. When nothing
    /// is declared (no input has an interface), there can be no packet to mislabel: a classic
    /// Ethernet pcap, which every tool reads (libpcap refuses a pcapng without interfaces).
    pub fn choose<'a>(
        declared: impl IntoIterator<Item = &'a (LinkType, Precision)>,
    ) -> OutputFormat {
        let mut link: Option<LinkType> = None;
        let mut nanos = false;
        for &(lt, prec) in declared {
            match link {
                None => link = Some(lt),
                Some(l) if l != lt => return OutputFormat::Pcapng,
                _ => {}
            }
            nanos |= prec == Precision::Nano;
        }
        OutputFormat::Pcap {
            link_type: link.unwrap_or(1),
            nanos,
        }
    }
}

/// Interface resolutions the pcapng writer uses (`if_tsresol` values).
const RESOL_NS: u8 = 9;
const RESOL_US: u8 = 6;

/// Largest snaplen written in headers (libpcap's maximum).
const SNAPLEN: u32 = 262_144;

/// Encodes packets in one [`OutputFormat`].
#[derive(Debug)]
pub struct Writer {
    format: OutputFormat,
    /// pcapng: the interfaces declared so far, by (link type, if_tsresol); the index is the id.
    interfaces: Vec<(LinkType, u8)>,
    header_written: bool,
}

impl Writer {
    /// A writer that has written nothing yet.
    pub fn new(format: OutputFormat) -> Writer {
        Writer {
            format,
            interfaces: Vec::new(),
            header_written: false,
        }
    }

    /// The format being written.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// Appends the file header (classic) or section header (pcapng), once. Called by
    /// [`Writer::write`] as needed; call it directly for a valid empty capture.
    pub fn write_header(&mut self, out: &mut BytesMut) {
        if self.header_written {
            return;
        }
        self.header_written = true;
        match self.format {
            OutputFormat::Pcap { link_type, nanos } => {
                out.put_u32_le(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
                out.put_u16_le(2);
                out.put_u16_le(4);
                out.put_i32_le(0);
                out.put_u32_le(0);
                out.put_u32_le(SNAPLEN);
                out.put_u32_le(link_type as u32);
            }
            OutputFormat::Pcapng => {
                // SHB: type, length 28, BOM, version 1.0, section length unknown (-1), length.
                out.put_u32_le(0x0A0D_0D0A);
                out.put_u32_le(28);
                out.put_u32_le(0x1A2B_3C4D);
                out.put_u16_le(1);
                out.put_u16_le(0);
                out.put_i64_le(-1);
                out.put_u32_le(28);
            }
        }
    }

    /// Appends one packet.
    ///
    /// # Errors
    /// [`Error::Unwritable`] when the packet cannot be written faithfully in this format;
    /// nothing is appended then.
    pub fn write(&mut self, out: &mut BytesMut, p: &Packet) -> Result<(), Error> {
        let tail = self.write_head(out, p)?;
        out.extend_from_slice(&p.data);
        out.extend_from_slice(tail.as_slice());
        Ok(())
    }

    /// Appends the packet's record up to its payload (and any IDB it needs first), and returns
    /// what must follow the payload: for callers that hand the payload to the kernel by
    /// reference (`writev` from a mapped file) instead of copying it into `out`.
    ///
    /// # Errors
    /// As [`Writer::write`]; nothing is appended then.
    pub fn write_head(&mut self, out: &mut BytesMut, p: &Packet) -> Result<Tail, Error> {
        self.write_header(out);
        let caplen = p.data.len() as u32;
        match self.format {
            OutputFormat::Pcap { link_type, nanos } => {
                if p.link_type != link_type {
                    return Err(unwritable(format!(
                        "link type {} in a pcap file declared as link type {link_type}",
                        p.link_type
                    )));
                }
                let (secs, ns) = p.ts.secs_nanos();
                let secs = u32::try_from(secs).map_err(|_| {
                    unwritable(format!("time {} is outside classic pcap's range", p.ts))
                })?;
                let frac = if nanos {
                    ns
                } else if ns % 1000 == 0 {
                    ns / 1000
                } else {
                    return Err(unwritable(format!(
                        "time {} has nanoseconds a microsecond pcap cannot hold",
                        p.ts
                    )));
                };
                let mut h = [0u8; 16];
                h[..4].copy_from_slice(&secs.to_le_bytes());
                h[4..8].copy_from_slice(&frac.to_le_bytes());
                h[8..12].copy_from_slice(&caplen.to_le_bytes());
                h[12..].copy_from_slice(&p.orig_len.to_le_bytes());
                out.extend_from_slice(&h);
                Ok(Tail::default())
            }
            OutputFormat::Pcapng => {
                let ns = p.ts.as_nanos();
                let (resol, units) = if (0..=u64::MAX as i128).contains(&ns) {
                    (RESOL_NS, ns as u64)
                } else if ns >= 0 && ns % 1000 == 0 && ns / 1000 <= u64::MAX as i128 {
                    (RESOL_US, (ns / 1000) as u64)
                } else {
                    return Err(unwritable(format!(
                        "time {} is outside pcapng's 64-bit range",
                        p.ts
                    )));
                };
                let if_id = self.interface(out, p.link_type, resol);
                let pad = (4 - p.data.len() % 4) % 4;
                let block_len = 32 + (p.data.len() + pad) as u32;
                out.put_u32_le(6);
                out.put_u32_le(block_len);
                out.put_u32_le(if_id);
                out.put_u32_le((units >> 32) as u32);
                out.put_u32_le(units as u32);
                out.put_u32_le(caplen);
                out.put_u32_le(p.orig_len);
                let mut tail = Tail::default();
                tail.bytes[pad..pad + 4].copy_from_slice(&block_len.to_le_bytes());
                tail.len = pad as u8 + 4;
                Ok(tail)
            }
        }
    }

    /// Declares a link type up front (pcapng: writes its nanosecond IDB now; classic: nothing),
    /// so that a capture with no packets still names its interfaces — libpcap refuses a pcapng
    /// without any.
    pub fn declare(&mut self, out: &mut BytesMut, link_type: LinkType) {
        self.write_header(out);
        if self.format == OutputFormat::Pcapng {
            self.interface(out, link_type, RESOL_NS);
        }
    }

    /// The pcapng interface id for (link type, resolution), writing its IDB on first use.
    fn interface(&mut self, out: &mut BytesMut, link_type: LinkType, resol: u8) -> u32 {
        if let Some(i) = self
            .interfaces
            .iter()
            .position(|&k| k == (link_type, resol))
        {
            return i as u32;
        }
        // IDB: type 1, length 32: link type, reserved, snaplen, option if_tsresol (code 9,
        // length 1, padded to 4), opt_endofopt, trailing length.
        out.put_u32_le(1);
        out.put_u32_le(32);
        out.put_u16_le(link_type);
        out.put_u16_le(0);
        out.put_u32_le(SNAPLEN);
        out.put_u16_le(9);
        out.put_u16_le(1);
        out.put_u8(resol);
        out.put_bytes(0, 3);
        out.put_u32_le(0);
        out.put_u32_le(32);
        self.interfaces.push((link_type, resol));
        (self.interfaces.len() - 1) as u32
    }
}

/// The bytes of a record that follow its payload (pcapng: padding and the trailing length).
#[derive(Debug, Default, Clone, Copy)]
pub struct Tail {
    bytes: [u8; 8],
    len: u8,
}

impl Tail {
    /// The bytes to write after the payload (empty for classic pcap).
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

fn unwritable(reason: String) -> Error {
    Error::Unwritable { reason }
}
