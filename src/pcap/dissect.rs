//! The keys of a packet: every IP address, transport port and IP protocol number it carries,
//! at every layer, through every encapsulation a sensor sees. One function, [`keys`], that the
//! structured clauses ([`Clauses`]) and the index both use, so a query answered from the index
//! and one answered by a scan can never disagree about what a packet is about.
//!
//! What is a layer (the rule the README's "what a clause means" states):
//! - Link layers: Ethernet (and 802.3 LLC/SNAP), 802.1Q/802.1ad/QinQ tags (twenty nested, as
//!   Wireshark), MPLS label stacks (payload by first nibble: 4 IPv4, 6 IPv6, 0 an Ethernet
//!   pseudowire, with or without a control word as Wireshark guesses; nothing else), PPPoE
//!   session, PPP (with or without address/control, compressed protocol field), Linux SLL/SLL2, raw IP (LINKTYPE 101, 228,
//!   229 and the DLT 12/14 numbers some systems write), NULL/LOOP in either byte order with the
//!   BSDs' AF_INET6 values (24, 28, 30), IP over InfiniBand, 802.11 data frames (bare or behind
//!   radiotap) with LLC/SNAP — not A-MSDU aggregates, nor radiotap's data padding.
//! - Tunnels: GRE version 0 (any payload type, transparent Ethernet bridging, ERSPAN I/II/III,
//!   Cisco MetaData) and version 1 (PPTP's enhanced GRE carrying PPP); IP-in-IP, 6in4, 4in6; AH
//!   (its next header); VXLAN (UDP 4789), VXLAN-GPE (4790), GTP-U (2152, G-PDUs), Geneve
//!   (6081), Teredo (3544), NSH — as Wireshark, the lower UDP port is asked first, then the
//!   higher (never port 0); a tunnel's port is followed when reached, and a well-known service
//!   Wireshark decodes on a port reached first ([`CLAIMED_UDP_PORTS`]) claims the payload.
//! - ICMP/ICMPv6 errors: the packet quoted inside is a layer (an "unreachable" about a flow to X
//!   is about X), as far as it was quoted.
//! - Ports (TCP, UDP, UDP-Lite, SCTP) only from a packet that is not a non-first fragment; the
//!   addresses and protocol of a non-first fragment count, nothing inside it does.
//! - Protocols: the IPv4 protocol field; for IPv6 every Next Header of the chain — the fixed
//!   header's and each extension header's (hop-by-hop, routing, fragment, destination options,
//!   AH) — so `proto/6` finds TCP behind extension headers.
//!
//! Invariants: no allocation; every read is bounds-checked against the captured bytes (and an
//! IP layer's payload against its own length field, so Ethernet padding is never taken for a
//! header). Every layer moves forward in the packet, so the work per packet is bounded by its
//! length; a layer budget ([`MAX_LAYERS`]) bounds it further against nesting built to be slow
//! (GRE in GRE in …). IPv6 extension headers and VLAN tags do not count against it: each moves
//! at least 4 bytes on, and stacking them must not hide what tshark finds (it reads through a
//! hundred extension headers, and twenty nested VLAN tags — as many as Docket).

use std::ops::ControlFlow;

use super::LinkType;

/// A key of a packet, handed to the visitor of [`keys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// An IPv4 address (source or destination) at some layer.
    V4([u8; 4]),
    /// An IPv6 address (source or destination) at some layer.
    V6([u8; 16]),
    /// A TCP, UDP, UDP-Lite or SCTP port (source or destination) at some layer.
    Port(u16),
    /// An IP protocol number at some layer (IPv6: any Next Header of the chain).
    Proto(u8),
}

/// Most layers one packet is dissected through (each link header, tag, label stack, IP header
/// or tunnel header is one). Real traffic needs fewer than a dozen.
pub const MAX_LAYERS: usize = 64;

/// Where the dissection goes next: a header of some kind at an offset.
#[derive(Clone, Copy, Debug)]
enum Layer {
    Ethernet,
    /// An Ethernet type value (any context where it is always a type, e.g. after a VLAN tag).
    EtherType(u16),
    Ipv4,
    Ipv6,
    Mpls,
    /// A PPP frame: optional `ff 03`, then the protocol field.
    Ppp,
    Ieee80211,
    /// IP by its first nibble (raw IP, GTP-U payloads).
    RawIp,
    /// An 802.1Q/802.1ad tag: 4 bytes, the next Ethernet type in the last two.
    Tag,
    /// A PPPoE session header: 6 bytes, then a PPP frame.
    PppoeSession,
    /// 802.2 LLC (with SNAP).
    Llc,
    /// A Network Service Header: its length in 4-byte words, the next protocol in its fourth
    /// byte.
    Nsh,
    /// A Cisco MetaData header: 8 bytes, the next Ethernet type at 6.
    CiscoMetaData,
}

/// The next layer and where it starts; it ends where the enclosing one ends.
type Step = Option<(Layer, usize)>;

/// Calls `visit` with every key of a packet of `link_type` whose captured bytes are `data`;
/// stops when the visitor breaks. A key may be reported more than once (a packet to itself, an
/// address repeated in a tunnel). Unknown link types and undecodable layers end the dissection
/// quietly: what was found before still counts.
pub fn keys<F>(link_type: LinkType, data: &[u8], mut visit: F) -> ControlFlow<()>
where
    F: FnMut(Key) -> ControlFlow<()>,
{
    let Some((layer, at)) = first_layer(link_type, data) else {
        return ControlFlow::Continue(());
    };
    let mut d = Dissector {
        data,
        visit: &mut visit,
        budget: MAX_LAYERS,
        tags: 0,
    };
    d.walk(layer, at, data.len())
}

/// The first layer of a frame of this link type, and where it starts.
fn first_layer(link_type: LinkType, data: &[u8]) -> Option<(Layer, usize)> {
    Some(match link_type {
        1 => (Layer::Ethernet, 0),
        // LINKTYPE_RAW, and DLT_RAW's numbers on BSDs written as link types.
        101 | 12 | 14 => (Layer::RawIp, 0),
        228 => (Layer::Ipv4, 0),
        229 => (Layer::Ipv6, 0),
        // NULL: the family in the writer's byte order; LOOP: network order. Some writers put
        // an Ethernet type there instead. Read as Wireshark reads it.
        0 | 108 => {
            let b: [u8; 4] = data.get(..4)?.try_into().ok()?;
            match null_header(b, link_type == 108) {
                2 => (Layer::Ipv4, 4),
                // The BSDs' AF_INET6 values (libpcap and Wireshark read these; Linux's 10 is
                // never written in a NULL header, and neither reads it).
                24 | 28 | 30 => (Layer::Ipv6, 4),
                t if t > 1500 => (Layer::EtherType(t as u16), 4),
                _ => return None,
            }
        }
        // PPP, PPP in HDLC framing, PPP_PPPD.
        9 | 50 | 166 => (Layer::Ppp, 0),
        // Cisco HDLC: address, control, then an Ethernet type.
        104 => (Layer::EtherType(be16(data, 2)?), 4),
        // Linux cooked v1: the protocol at 14; v2: at 0. Values below 0x0600 are Linux's own
        // (802.3, 802.2 LLC, CAN…), not Ethernet types.
        113 => match be16(data, 14)? {
            t if t >= 0x0600 => (Layer::EtherType(t), 16),
            _ => return None,
        },
        276 => match be16(data, 0)? {
            t if t >= 0x0600 => (Layer::EtherType(t), 20),
            _ => return None,
        },
        // IP over InfiniBand (LINKTYPE_IPOIB): a 40-byte pseudo-header of addresses, then the
        // type and two reserved bytes.
        242 => (Layer::EtherType(be16(data, 40)?), 44),
        105 => (Layer::Ieee80211, 0),
        // Radiotap: its own length (little-endian) at 2, then the 802.11 frame.
        127 => (Layer::Ieee80211, usize::from(le16(data, 2)?)),
        _ => return None,
    })
}

struct Dissector<'d, F> {
    data: &'d [u8],
    visit: &'d mut F,
    budget: usize,
    /// VLAN tags read so far: Wireshark reads [`MAX_TAGS`] nested tags and no more.
    tags: usize,
}

/// Nested VLAN tags read before giving up, as Wireshark ("too many nested VLAN tags").
const MAX_TAGS: usize = 20;

impl<F> Dissector<'_, F>
where
    F: FnMut(Key) -> ControlFlow<()>,
{
    /// Dissects `layer` at `at`, with the enclosing layer's bytes ending at `end`.
    fn walk(&mut self, mut layer: Layer, mut at: usize, mut end: usize) -> ControlFlow<()> {
        loop {
            if self.budget == 0 || at >= end {
                return ControlFlow::Continue(());
            }
            if !matches!(layer, Layer::Tag) {
                self.budget -= 1;
            }
            let step = match layer {
                Layer::Ethernet => self.ethernet(at, end),
                Layer::EtherType(t) => ether_type(t, at),
                // A tag, then a type — or an 802.3 length, with LLC after it.
                Layer::Tag if self.tags == MAX_TAGS => None,
                Layer::Tag => {
                    self.tags += 1;
                    match self.u16(at + 2, end) {
                        Some(t) if t >= 0x0600 => ether_type(t, at + 4),
                        Some(t) if t <= 1500 => Some((Layer::Llc, at + 4)),
                        _ => None,
                    }
                }
                // A PPP frame without address and control (RFC 2516); some writers compress the
                // protocol field anyway, and Wireshark reads that.
                Layer::PppoeSession => Some((Layer::Ppp, at + 6)),
                Layer::CiscoMetaData => self.u16(at + 6, end).and_then(|t| ether_type(t, at + 8)),
                Layer::Ipv4 => {
                    let (step, inner_end) = self.ipv4(at, end)?;
                    end = inner_end;
                    step
                }
                Layer::Ipv6 => {
                    let (step, inner_end) = self.ipv6(at, end)?;
                    end = inner_end;
                    step
                }
                Layer::Llc => self.llc(at, end),
                Layer::Nsh => match (self.u8(at + 1, end), self.u8(at + 3, end)) {
                    (Some(len), Some(p)) if len & 0x3f != 0 => {
                        next_protocol(p, at + usize::from(len & 0x3f) * 4)
                    }
                    _ => None,
                },
                Layer::Mpls => self.mpls(at, end),
                Layer::Ppp => self.ppp(at, end),
                Layer::Ieee80211 => self.ieee80211(at, end),
                Layer::RawIp => match self.data[at] >> 4 {
                    4 => Some((Layer::Ipv4, at)),
                    6 => Some((Layer::Ipv6, at)),
                    _ => None,
                },
            };
            match step {
                Some((l, a)) => (layer, at) = (l, a),
                None => return ControlFlow::Continue(()),
            }
        }
    }

    fn emit(&mut self, key: Key) -> ControlFlow<()> {
        (self.visit)(key)
    }

    fn u8(&self, at: usize, end: usize) -> Option<u8> {
        (at < end).then(|| self.data[at])
    }

    fn u16(&self, at: usize, end: usize) -> Option<u16> {
        (at + 2 <= end).then(|| u16::from_be_bytes([self.data[at], self.data[at + 1]]))
    }

    /// Ethernet II, or 802.3 with LLC/SNAP carrying an Ethernet type.
    fn ethernet(&self, at: usize, end: usize) -> Step {
        let t = self.u16(at + 12, end)?;
        if t >= 0x0600 {
            return ether_type(t, at + 14);
        }
        if t > 1500 {
            return None;
        }
        self.llc(at + 14, end)
    }

    /// LLC with SNAP, OUI 0 (an encapsulated Ethernet type): `aa aa 03 00 00 00 TT TT`.
    fn llc(&self, at: usize, end: usize) -> Step {
        let h = self.data.get(at..at + 8).filter(|_| at + 8 <= end)?;
        if h[..6] != [0xaa, 0xaa, 0x03, 0, 0, 0] {
            return None;
        }
        ether_type(u16::from_be_bytes([h[6], h[7]]), at + 8)
    }

    /// An MPLS label stack; the payload guessed by its first nibble, as Wireshark does.
    fn mpls(&self, mut at: usize, end: usize) -> Step {
        loop {
            let bottom = self.u8(at + 2, end)? & 1 == 1;
            at += 4;
            if bottom {
                break;
            }
        }
        match self.u8(at, end)? >> 4 {
            4 => Some((Layer::Ipv4, at)),
            6 => Some((Layer::Ipv6, at)),
            // An Ethernet pseudowire (Wireshark reads one only behind a first nibble of 0),
            // guessed as Wireshark guesses: a frame right here when it looks like one — a type
            // where a frame's type would be, MACs a vendor could own (Wireshark looks both up
            // in its vendor table; a locally administered address has no vendor, and a zero
            // control word is no MAC) —, else after a control word.
            0 => {
                let mac_ok = |i: usize| self.u8(at + i, end).is_some_and(|b| b & 0x02 == 0);
                let zero_cw = self.data.get(at..at + 4).is_some_and(|w| w == [0, 0, 0, 0]);
                let plain = !zero_cw
                    && mac_ok(0)
                    && mac_ok(6)
                    && self
                        .u16(at + 12, end)
                        .is_some_and(|t| ether_type(t, 0).is_some());
                Some((Layer::Ethernet, if plain { at } else { at + 4 }))
            }
            _ => None,
        }
    }

    /// A PPP frame: `ff 03` when present, then a protocol field of one byte (odd) or two.
    fn ppp(&self, mut at: usize, end: usize) -> Step {
        if self.u16(at, end)? == 0xff03 {
            at += 2;
        }
        let first = self.u8(at, end)?;
        if first & 1 == 1 {
            return ppp_proto(u16::from(first), at + 1);
        }
        ppp_proto(self.u16(at, end)?, at + 2)
    }

    /// An 802.11 data frame's body through LLC/SNAP; management, control, null-data and
    /// protected frames carry nothing to read.
    fn ieee80211(&self, at: usize, end: usize) -> Step {
        let fc0 = self.u8(at, end)?;
        let fc1 = self.u8(at + 1, end)?;
        let (kind, subtype) = ((fc0 >> 2) & 3, fc0 >> 4);
        if kind != 2 || subtype & 0x4 != 0 || fc1 & 0x40 != 0 {
            return None;
        }
        let mut len = 24;
        if fc1 & 3 == 3 {
            len += 6;
        }
        if subtype & 0x8 != 0 {
            len += 2;
            if fc1 & 0x80 != 0 {
                len += 4;
            }
        }
        self.llc(at + len, end)
    }

    /// An IPv4 header: addresses and protocol, then the payload unless this is a non-first
    /// fragment.
    fn ipv4(&mut self, at: usize, end: usize) -> ControlFlow<(), (Step, usize)> {
        let Some(h) = self.data.get(at..at + 20).filter(|_| at + 20 <= end) else {
            return ControlFlow::Continue((None, end));
        };
        let hlen = usize::from(h[0] & 0x0f) * 4;
        if h[0] >> 4 != 4 || hlen < 20 {
            return ControlFlow::Continue((None, end));
        }
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let proto = h[9];
        let offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
        // A total length of 0 is a segmentation-offloaded packet: the capture is the length. A
        // total length shorter than the header is no IPv4 header (Wireshark shows no address).
        let end = match total {
            0 => end,
            t if t < hlen => return ControlFlow::Continue((None, end)),
            t => end.min(at + t),
        };
        let (src, dst) = ([h[12], h[13], h[14], h[15]], [h[16], h[17], h[18], h[19]]);
        self.emit(Key::V4(src))?;
        self.emit(Key::V4(dst))?;
        self.emit(Key::Proto(proto))?;
        if offset != 0 {
            return ControlFlow::Continue((None, end));
        }
        ControlFlow::Continue((self.transport(proto, at + hlen, end)?, end))
    }

    /// An IPv6 header and its extension headers: addresses, every Next Header, then the
    /// payload unless a fragment header says this is a non-first fragment.
    fn ipv6(&mut self, at: usize, end: usize) -> ControlFlow<(), (Step, usize)> {
        let Some(h) = self.data.get(at..at + 40).filter(|_| at + 40 <= end) else {
            return ControlFlow::Continue((None, end));
        };
        if h[0] >> 4 != 6 {
            return ControlFlow::Continue((None, end));
        }
        let src: [u8; 16] = h[8..24].try_into().expect("16 bytes");
        let dst: [u8; 16] = h[24..40].try_into().expect("16 bytes");
        self.emit(Key::V6(src))?;
        self.emit(Key::V6(dst))?;
        let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
        // A payload length of 0 is a jumbogram or an offloaded packet: the capture is the length.
        let end = if payload == 0 {
            end
        } else {
            end.min(at + 40 + payload)
        };
        let mut next = h[6];
        let mut at = at + 40;
        loop {
            self.emit(Key::Proto(next))?;
            let len = match next {
                // Hop-by-hop, routing, destination options: (n + 1) × 8 bytes.
                0 | 43 | 60 => match self.u8(at + 1, end) {
                    Some(n) => (usize::from(n) + 1) * 8,
                    None => return ControlFlow::Continue((None, end)),
                },
                // Fragment: a non-first fragment carries nothing to read but the protocol.
                44 => match self.u16(at + 2, end) {
                    Some(off) if off >> 3 != 0 => {
                        self.emit(Key::Proto(self.data[at]))?;
                        return ControlFlow::Continue((None, end));
                    }
                    Some(_) => 8,
                    None => return ControlFlow::Continue((None, end)),
                },
                // AH: (n + 2) × 4 bytes.
                51 => match self.u8(at + 1, end) {
                    Some(n) => (usize::from(n) + 2) * 4,
                    None => return ControlFlow::Continue((None, end)),
                },
                _ => break,
            };
            let Some(n) = self.u8(at, end) else {
                return ControlFlow::Continue((None, end));
            };
            next = n;
            at += len;
        }
        ControlFlow::Continue((self.transport(next, at, end)?, end))
    }

    /// The payload of an IP layer whose protocol is `proto`: ports, tunnels, quoted packets.
    fn transport(&mut self, proto: u8, at: usize, end: usize) -> ControlFlow<(), Step> {
        let (mut proto, mut at) = (proto, at);
        // IPv4's AH (IPv6 reads it in its extension chain): its next header is a protocol of
        // this layer too.
        while proto == 51 {
            let (Some(next), Some(n)) = (self.u8(at, end), self.u8(at + 1, end)) else {
                return ControlFlow::Continue(None);
            };
            self.emit(Key::Proto(next))?;
            (proto, at) = (next, at + (usize::from(n) + 2) * 4);
        }
        let next = match proto {
            4 => Some((Layer::Ipv4, at)),
            41 => Some((Layer::Ipv6, at)),
            6 | 132 => {
                self.ports(at, end)?;
                None
            }
            17 | 136 => match self.ports(at, end)? {
                Some((sport, dport)) => self.udp_tunnel(sport, dport, at + 8, end),
                None => None,
            },
            47 => self.gre(at, end),
            // ICMP errors quote the packet they are about: destination unreachable, source
            // quench, redirect, time exceeded, parameter problem.
            1 => match self.u8(at, end) {
                Some(3 | 4 | 5 | 11 | 12) => Some((Layer::Ipv4, at + 8)),
                _ => None,
            },
            // ICMPv6 errors: destination unreachable, packet too big, time exceeded, parameter
            // problem.
            58 => match self.u8(at, end) {
                Some(1..=4) => Some((Layer::Ipv6, at + 8)),
                _ => None,
            },
            _ => None,
        };
        ControlFlow::Continue(next)
    }

    /// The two ports at the start of a transport header, when both were captured.
    fn ports(&mut self, at: usize, end: usize) -> ControlFlow<(), Option<(u16, u16)>> {
        let (Some(s), Some(d)) = (self.u16(at, end), self.u16(at + 2, end)) else {
            return ControlFlow::Continue(None);
        };
        self.emit(Key::Port(s))?;
        self.emit(Key::Port(d))?;
        ControlFlow::Continue(Some((s, d)))
    }

    /// A UDP payload at `at` when either port is a tunnel's.
    fn udp_tunnel(&self, sport: u16, dport: u16, at: usize, end: usize) -> Step {
        // As Wireshark: the lower port is asked first, then the higher (port 0 never). A
        // tunnel's port is followed when reached; a well-known service Wireshark decodes on
        // that port claims the payload first and ends the search.
        let (low, high) = (sport.min(dport), sport.max(dport));
        for port in [low, high] {
            if port == 0 {
                continue;
            }
            if let Some(step) = self.tunnel_on(port, at, end) {
                return step;
            }
            if CLAIMED_UDP_PORTS.contains(&port) {
                return None;
            }
        }
        None
    }

    /// The payload of a UDP tunnel on `port`: `None` when no tunnel uses the port, `Some(step)`
    /// when one does (a step of `None`: the tunnel header did not check).
    fn tunnel_on(&self, port: u16, at: usize, end: usize) -> Option<Step> {
        Some(match port {
            // VXLAN: 8 bytes, then Ethernet.
            4789 => Some((Layer::Ethernet, at + 8)),
            2152 => self.gtpu(at, end),
            // Geneve: version 0, options of 4-byte words, then a payload by Ethernet type.
            6081 => self.u8(at, end).filter(|b0| b0 >> 6 == 0).and_then(|b0| {
                let t = self.u16(at + 2, end)?;
                ether_type(t, at + 8 + usize::from(b0 & 0x3f) * 4)
            }),
            3544 => self.teredo(at, end),
            // VXLAN-GPE: 8 bytes, the next protocol in the fourth.
            4790 => self.u8(at + 3, end).and_then(|p| next_protocol(p, at + 8)),
            _ => return None,
        })
    }

    /// GTP-U: a G-PDU of version 1 carries an IP packet after its header and extensions.
    fn gtpu(&self, at: usize, end: usize) -> Step {
        let flags = self.u8(at, end)?;
        if flags >> 5 != 1 || flags & 0x10 == 0 || self.u8(at + 1, end)? != 0xff {
            return None;
        }
        let mut at = at + 8;
        if flags & 0x07 != 0 {
            // Sequence number, N-PDU number, next extension type.
            let mut ext = self.u8(at + 3, end)?;
            at += 4;
            if flags & 0x04 != 0 {
                // Extension headers: a length in 4-byte units, the next type in the last byte.
                while ext != 0 {
                    let words = usize::from(self.u8(at, end)?);
                    if words == 0 {
                        return None;
                    }
                    at += words * 4;
                    ext = self.u8(at - 1, end)?;
                }
            }
        }
        Some((Layer::RawIp, at))
    }

    /// Teredo: optional authentication and origin indication headers, then IPv6.
    fn teredo(&self, mut at: usize, end: usize) -> Step {
        if self.u16(at, end)? == 0x0001 {
            let id = usize::from(self.u8(at + 2, end)?);
            let auth = usize::from(self.u8(at + 3, end)?);
            at += 4 + id + auth + 8 + 1;
        }
        if self.u16(at, end)? == 0x0000 {
            at += 8;
        }
        (self.u8(at, end)? >> 4 == 6).then_some((Layer::Ipv6, at))
    }

    /// GRE version 0 (RFC 2784/2890) or 1 (PPTP, RFC 2637).
    fn gre(&self, at: usize, end: usize) -> Step {
        let b0 = self.u8(at, end)?;
        let b1 = self.u8(at + 1, end)?;
        let proto = self.u16(at + 2, end)?;
        let (checksum, routing, key, seq) = (
            b0 & 0x80 != 0,
            b0 & 0x40 != 0,
            b0 & 0x20 != 0,
            b0 & 0x10 != 0,
        );
        let mut len = 4;
        match b1 & 7 {
            0 => {
                if routing {
                    // Source routing (RFC 1701): deprecated and never seen; not followed.
                    return None;
                }
                len += 4 * (usize::from(checksum) + usize::from(key) + usize::from(seq));
            }
            1 => {
                // Enhanced GRE: a key (payload length, call id) always, sequence and
                // acknowledgement numbers when flagged.
                len += 4 + 4 * usize::from(seq) + 4 * usize::from(b1 & 0x80 != 0);
            }
            _ => return None,
        }
        let at = at + len;
        match proto {
            0x880b => Some((Layer::Ppp, at)),
            // ERSPAN type II has an 8-byte header (and GRE a sequence number); type I neither.
            0x88be => Some((Layer::Ethernet, if seq { at + 8 } else { at })),
            // ERSPAN type III: 12 bytes, 8 more when the platform-specific header is there.
            0x22eb => {
                let o = self.u8(at + 11, end)? & 1 == 1;
                Some((Layer::Ethernet, at + 12 + if o { 8 } else { 0 }))
            }
            // Cisco MetaData in GRE puts the next type first (in Ethernet, last).
            0x8909 => ether_type(self.u16(at, end)?, at + 8),
            t => ether_type(t, at),
        }
    }
}

/// The layer an Ethernet type announces, and where it starts.
fn ether_type(t: u16, at: usize) -> Step {
    Some(match t {
        0x0800 => (Layer::Ipv4, at),
        0x86dd => (Layer::Ipv6, at),
        // 802.1Q, 802.1ad and the pre-standard QinQ types: a 4-byte tag then a type.
        0x8100 | 0x88a8 | 0x9100 | 0x9200 => (Layer::Tag, at),
        0x8847 | 0x8848 => (Layer::Mpls, at),
        // PPPoE session: a 6-byte header, then a PPP frame.
        0x8864 => (Layer::PppoeSession, at),
        // Network Service Header (service function chaining).
        0x894f => (Layer::Nsh, at),
        // Cisco MetaData (TrustSec) in Ethernet: 8 bytes, the next type in the last two.
        0x8909 => (Layer::CiscoMetaData, at),
        // 802.2 LLC announced by a type (jumbo frames), as if by a length.
        0x8870 => (Layer::Llc, at),
        // Transparent Ethernet bridging (GRE, Geneve).
        0x6558 => (Layer::Ethernet, at),
        _ => return None,
    })
}

/// UDP ports whose own protocol Wireshark decodes before a tunnel on the other port is asked
/// (DNS, DHCP, TFTP, NTP, NetBIOS, SNMP, ISAKMP, syslog, RIP, SSDP, IPsec NAT-T, mDNS).
const CLAIMED_UDP_PORTS: [u16; 15] = [
    53, 67, 68, 69, 123, 137, 138, 161, 162, 500, 514, 520, 1900, 4500, 5353,
];

/// The layer a VXLAN-GPE or NSH next-protocol number announces.
fn next_protocol(p: u8, at: usize) -> Step {
    Some(match p {
        1 => (Layer::Ipv4, at),
        2 => (Layer::Ipv6, at),
        3 => (Layer::Ethernet, at),
        4 => (Layer::Nsh, at),
        5 => (Layer::Mpls, at),
        _ => return None,
    })
}

/// The layer a PPP protocol number announces.
fn ppp_proto(p: u16, at: usize) -> Step {
    let l = match p {
        0x0021 => Layer::Ipv4,
        0x0057 => Layer::Ipv6,
        0x0281 | 0x0283 => Layer::Mpls,
        _ => return None,
    };
    Some((l, at))
}

/// The value of a NULL/LOOP header: a BSD address family, or (above 1500) an Ethernet type in
/// its low 16 bits. LOOP is in network order. NULL is in the writer's order, which the value
/// itself shows: a small number read one way is the right way; a value with the high half
/// zero-padded in the other order is a 16-bit one.
fn null_header(b: [u8; 4], network_order: bool) -> u32 {
    if network_order {
        return u32::from_be_bytes(b);
    }
    let h = u32::from_le_bytes(b);
    if h & 0xffff_0000 != 0 {
        if h & 0xff00_0000 == 0 && h & 0x00ff_0000 < 0x0006_0000 {
            h >> 16
        } else {
            h.swap_bytes()
        }
    } else if h & 0xff == 0 && h & 0xff00 < 0x0600 {
        u32::from((h as u16).swap_bytes())
    } else {
        h
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn le16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(link_type: LinkType, data: &[u8]) -> Vec<Key> {
        let mut v = Vec::new();
        let _ = keys(link_type, data, |k| {
            v.push(k);
            ControlFlow::Continue(())
        });
        v
    }

    /// An IPv4 header (20 bytes) for `proto` with `payload` bytes after it.
    fn ipv4(src: u8, dst: u8, proto: u8, payload: usize) -> Vec<u8> {
        let total = (20 + payload) as u16;
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend([198, 51, 100, src, 198, 51, 100, dst]);
        h
    }

    #[test]
    fn hostile_nesting_stops_at_the_layer_budget() {
        // 1000 IP-in-GRE-in-IP layers: the first MAX_LAYERS are read, then the walk ends.
        let depth = 1000;
        let mut packet = Vec::new();
        for i in 0..depth {
            let rest = (depth - i) * 24;
            packet.extend(ipv4(1, 2, 47, rest));
            packet.extend([0, 0, 0x08, 0x00]);
        }
        let keys = all(101, &packet);
        let addrs = keys.iter().filter(|k| matches!(k, Key::V4(_))).count();
        assert!(addrs > 0 && addrs <= 2 * MAX_LAYERS, "{addrs}");
    }

    #[test]
    fn bsd_loopback_is_read_in_either_byte_order() {
        let mut v6 = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
        v6.extend([0u8; 15]);
        v6.push(1);
        v6.extend([0u8; 15]);
        v6.push(1);
        for family in [24u32, 28, 30] {
            for head in [family.to_le_bytes(), family.to_be_bytes()] {
                let p = [&head[..], &v6].concat();
                let mut one = [0u8; 16];
                one[15] = 1;
                assert!(
                    all(0, &p).contains(&Key::V6(one)),
                    "family {family} {head:?}"
                );
            }
        }
        // LOOP is always network order.
        let p = [&2u32.to_be_bytes()[..], &ipv4(1, 2, 6, 0)].concat();
        assert!(all(108, &p).contains(&Key::V4([198, 51, 100, 1])));
    }

    #[test]
    fn a_truncated_transport_header_gives_no_ports() {
        let mut p = ipv4(1, 2, 6, 3);
        p.extend([0x01, 0xbb, 0x00]);
        let k = all(101, &p);
        assert!(!k.iter().any(|k| matches!(k, Key::Port(_))), "{k:?}");
        assert!(k.contains(&Key::Proto(6)));
    }

    #[test]
    fn padding_after_the_ip_length_is_not_read() {
        // Total length says no payload; the bytes after it (Ethernet padding) look like UDP.
        let mut p = ipv4(1, 2, 17, 0);
        p.extend([0x27, 0x11, 0x4e, 0x21, 0, 8, 0, 0]);
        assert!(!all(101, &p).iter().any(|k| matches!(k, Key::Port(_))));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, .. ProptestConfig::default() })]

        /// Any bytes under any link type the dissector knows: no panic, bounded keys.
        #[test]
        fn any_bytes_are_safe(
            lt in prop::sample::select(vec![0u16, 1, 9, 12, 14, 50, 101, 104, 105, 108, 113, 127, 166, 228, 229, 242, 276]),
            data in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let n = all(lt, &data).len();
            prop_assert!(n <= 4 * MAX_LAYERS + 64 * MAX_LAYERS);
        }

        /// Structured packets with random bytes spliced in: still no panic.
        #[test]
        fn damaged_tunnels_are_safe(
            cut in 0usize..200,
            flip in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
        ) {
            let mut p = ipv4(1, 2, 17, 8 + 8 + 14 + 20 + 8);
            p.extend([0x9c, 0x40, 0x12, 0xb5, 0, 0, 0, 0]);
            p.extend([0x08, 0, 0, 0, 0, 0, 0x2a, 0]);
            p.extend([0u8; 12]);
            p.extend([0x08, 0x00]);
            p.extend(ipv4(3, 4, 6, 8));
            p.extend([0x27, 0x11, 0x4e, 0x21, 0, 0, 0, 0]);
            for (at, b) in flip {
                if at < p.len() {
                    p[at] = b;
                }
            }
            p.truncate(cut);
            let _ = all(101, &p);
        }
    }
}
