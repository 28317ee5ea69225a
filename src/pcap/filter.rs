//! BPF filters compiled by libpcap (through the `pcap` crate): tcpdump's filter language with
//! tcpdump's meaning, applied to packets already in memory (`pcap_offline_filter`).
//!
//! A program is compiled for one link type, since the same expression reads different offsets
//! on Ethernet, Linux cooked capture or raw IP. libpcap's filter sees the captured bytes as the
//! whole packet (the crate passes `len = caplen`), which only matters for `len`/`greater`/`less`.

use super::{Error, LinkType};

/// A compiled filter for one link type.
pub struct BpfFilter(::pcap::BpfProgram);

impl std::fmt::Debug for BpfFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BpfFilter")
    }
}

impl BpfFilter {
    /// Compiles `expr` for packets of `link_type`.
    ///
    /// # Errors
    /// [`Error::BadFilter`] with libpcap's message: a syntax error, or an expression that makes
    /// no sense for the link type.
    pub fn compile(expr: &str, link_type: LinkType) -> Result<BpfFilter, Error> {
        let bad = |reason: String| Error::BadFilter {
            expr: expr.to_owned(),
            reason,
        };
        let dlt = dlt_of(link_type);
        let dead = ::pcap::Capture::dead(::pcap::Linktype(dlt)).map_err(|e| bad(e.to_string()))?;
        let program = dead.compile(expr, true).map_err(|e| bad(e.to_string()))?;
        Ok(BpfFilter(program))
    }

    /// True when the packet bytes match.
    pub fn matches(&self, data: &[u8]) -> bool {
        self.0.filter(data)
    }
}

/// The DLT libpcap uses for a file's LINKTYPE (libpcap's `linktype_to_dlt` on Linux): a file
/// records LINKTYPE values, `pcap_compile` wants the DLT the reading platform uses for them.
/// They differ only where early DLT numbers clashed between systems.
fn dlt_of(link_type: LinkType) -> i32 {
    match link_type {
        100 => 11, // ATM_RFC1483
        101 => 12, // RAW: raw IPv4/IPv6
        102 => 15, // SLIP_BSDOS
        103 => 16, // PPP_BSDOS
        106 => 19, // ATM_CLIP
        other => i32::from(other),
    }
}

/// BSD loopback headers (DLT_NULL in the writer's byte order, DLT_LOOP in network order) as
/// libpcap's filter sees them when it reads a file: a family written in the other byte order
/// is swapped (as Wireshark guesses it: a family above 0xFFFF only makes sense swapped), and
/// every BSD's AF_INET6 (24, 28, 30) counts as IPv6 — libpcap checks all of them for a file,
/// but a program compiled without one (`pcap_open_dead`) checks only this system's (10).
/// `None` when the packet can be filtered as it is.
fn loopback_as_libpcap_reads(link_type: LinkType, data: &[u8]) -> Option<Vec<u8>> {
    const BSD_INET6: [u32; 3] = [24, 28, 30];
    const LINUX_INET6: u32 = 10;
    let head: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let family = match link_type {
        0 => {
            let native = u32::from_ne_bytes(head);
            if native > 0xFFFF {
                native.swap_bytes()
            } else {
                native
            }
        }
        108 => u32::from_be_bytes(head),
        _ => return None,
    };
    let family = if BSD_INET6.contains(&family) {
        LINUX_INET6
    } else {
        family
    };
    // libpcap's program compares the family as this host writes it (NULL) or in network
    // order (LOOP).
    let want = if link_type == 108 {
        family.to_be_bytes()
    } else {
        family.to_ne_bytes()
    };
    (want != head).then(|| {
        let mut d = data.to_vec();
        d[..4].copy_from_slice(&want);
        d
    })
}

/// What an upstream lets through: the exact window `[after, before)`, the structured clauses
/// (through every encapsulation, [`super::Clauses`]) and the raw BPF clause, compiled once per
/// link type on first use. One gate serves every upstream kind, so that a local directory and a
/// sensor's stream can never disagree about what a query admits.
#[derive(Debug)]
pub struct Gate {
    after: super::Timestamp,
    before: super::Timestamp,
    clauses: Option<super::Clauses>,
    expr: Option<String>,
    /// Few link types appear in one answer: a short list beats a map. `None` marks a link
    /// type the expression cannot compile for.
    programs: Vec<(LinkType, Option<BpfFilter>)>,
}

impl Gate {
    /// A gate for the window `[after, before)`, the structured clauses (`None` for a source that
    /// applied them already, or a query without any) and the optional BPF expression.
    pub fn new(
        after: super::Timestamp,
        before: super::Timestamp,
        clauses: Option<super::Clauses>,
        expr: Option<String>,
    ) -> Gate {
        Gate {
            after,
            before,
            clauses,
            expr,
            programs: Vec::new(),
        }
    }

    /// True when the packet falls in the window and matches the clauses and the expression. A
    /// link type the expression cannot compile for matches nothing (tcpdump would refuse to
    /// filter it); the query was validated for Ethernet when it was parsed.
    pub fn admits(&mut self, p: &super::Packet) -> bool {
        if p.ts < self.after || p.ts >= self.before {
            return false;
        }
        if let Some(c) = &mut self.clauses {
            if !c.matches(p.link_type, &p.data) {
                return false;
            }
        }
        let Some(expr) = &self.expr else { return true };
        let i = match self.programs.iter().position(|(lt, _)| *lt == p.link_type) {
            Some(i) => i,
            None => {
                let program = BpfFilter::compile(expr, p.link_type).ok();
                self.programs.push((p.link_type, program));
                self.programs.len() - 1
            }
        };
        let Some(f) = self.programs[i].1.as_ref() else {
            return false;
        };
        // BSD loopback: a copy with the family as libpcap would see it (a rare link type: the
        // copy costs nothing that matters).
        if let Some(d) = loopback_as_libpcap_reads(p.link_type, &p.data) {
            return f.matches(&d);
        }
        f.matches(&p.data)
    }
}

/// The first host name in a tcpdump expression, if any: a word libpcap would resolve through
/// the system resolver (DNS) when compiling it. Compiling must never make a request leave the
/// machine, so callers refuse such expressions.
///
/// libpcap's scanner makes an identifier of any word that is not one of its keywords; the
/// grammar resolves it by the most recent qualifier (`host foo or bar` resolves both as hosts).
/// Identifiers after `port`/`portrange` (services), `proto`/`protochain` (protocols), `net`
/// (networks), `ether`/`link` (ethers), and the 802.11/llc/pf qualifiers are looked up in local
/// files, not the resolver; after `host`, `gateway` or no qualifier they are host names.
pub fn host_name(expr: &str) -> Option<&str> {
    let mut context = Context::Host;
    for raw in words(expr) {
        // A backslash makes any word an identifier (`\tcp` is a name, not the keyword).
        let (escaped, word) = match raw.strip_prefix('\\') {
            Some(w) => (true, w),
            None => (false, raw),
        };
        if !escaped {
            // libpcap's keywords are case-sensitive: `TCP` is an identifier.
            if let Some(c) = qualifier(word) {
                context = c;
                continue;
            }
            if KEYWORDS.contains(&word) || literal(word) {
                continue;
            }
            // `ip[2:2]`: a colon not in an address separates numbers.
            if word.contains(':') && word.split(':').all(|p| p.is_empty() || literal(p)) {
                continue;
            }
        }
        if context == Context::Host {
            return Some(word);
        }
    }
    None
}

/// What an identifier after the most recent qualifier names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// A host (resolved by DNS).
    Host,
    /// Anything looked up in local files or taken literally.
    Local,
}

fn qualifier(word: &str) -> Option<Context> {
    match word {
        "host" | "gateway" => Some(Context::Host),
        "port" | "portrange" | "proto" | "protochain" | "net" | "ether" | "link" | "ppp"
        | "slip" | "fddi" | "tr" | "wlan" | "type" | "subtype" | "dir" | "direction" | "llc"
        | "on" | "ifname" | "rset" | "ruleset" | "reason" | "action" | "addr1" | "addr2"
        | "addr3" | "addr4" | "address1" | "address2" | "address3" | "address4" | "ra" | "ta" => {
            Some(Context::Local)
        }
        _ => None,
    }
}

/// libpcap's keywords that are not qualifiers, and its named constants (scanner.l).
const KEYWORDS: &[&str] = &[
    "dst",
    "src",
    "arp",
    "rarp",
    "ip",
    "sctp",
    "tcp",
    "udp",
    "icmp",
    "igmp",
    "igrp",
    "pim",
    "vrrp",
    "carp",
    "radio",
    "ip6",
    "icmp6",
    "ah",
    "esp",
    "atalk",
    "aarp",
    "decnet",
    "lat",
    "sca",
    "moprc",
    "mopdl",
    "iso",
    "esis",
    "es-is",
    "isis",
    "is-is",
    "l1",
    "l2",
    "iih",
    "lsp",
    "snp",
    "csnp",
    "psnp",
    "clnp",
    "stp",
    "ipx",
    "netbeui",
    "mask",
    "less",
    "greater",
    "byte",
    "broadcast",
    "multicast",
    "and",
    "or",
    "not",
    "len",
    "length",
    "inbound",
    "outbound",
    "ifindex",
    "vlan",
    "mpls",
    "pppoed",
    "pppoes",
    "geneve",
    "lane",
    "metac",
    "bcc",
    "oam",
    "oamf4",
    "oamf4ec",
    "oamf4sc",
    "sc",
    "ilmic",
    "vpi",
    "vci",
    "connectmsg",
    "metaconnect",
    "rnr",
    "rulenum",
    "srnr",
    "subrulenum",
    "fisu",
    "lssu",
    "lsu",
    "msu",
    "hfisu",
    "hlssu",
    "hmsu",
    "sio",
    "opc",
    "dpc",
    "sls",
    "hsio",
    "hopc",
    "hdpc",
    "hsls",
    "icmptype",
    "icmpcode",
    "icmp6type",
    "icmp6code",
    "tcpflags",
    "icmp-echoreply",
    "icmp-unreach",
    "icmp-sourcequench",
    "icmp-redirect",
    "icmp-echo",
    "icmp-routeradvert",
    "icmp-routersolicit",
    "icmp-timxceed",
    "icmp-paramprob",
    "icmp-tstamp",
    "icmp-tstampreply",
    "icmp-ireq",
    "icmp-ireqreply",
    "icmp-maskreq",
    "icmp-maskreply",
    "icmp6-destinationunreach",
    "icmp6-packettoobig",
    "icmp6-timeexceeded",
    "icmp6-parameterproblem",
    "icmp6-echo",
    "icmp6-echoreply",
    "icmp6-multicastlistenerquery",
    "icmp6-multicastlistenerreportv1",
    "icmp6-multicastlistenerdone",
    "icmp6-routersolicit",
    "icmp6-routeradvert",
    "icmp6-neighborsolicit",
    "icmp6-neighboradvert",
    "icmp6-redirect",
    "icmp6-routerrenum",
    "icmp6-nodeinformationquery",
    "icmp6-nodeinformationresponse",
    "icmp6-ineighbordiscoverysolicit",
    "icmp6-ineighbordiscoveryadvert",
    "icmp6-multicastlistenerreportv2",
    "icmp6-homeagentdiscoveryrequest",
    "icmp6-homeagentdiscoveryreply",
    "icmp6-mobileprefixsolicit",
    "icmp6-mobileprefixadvert",
    "icmp6-certpathsolicit",
    "icmp6-certpathadvert",
    "icmp6-multicastrouteradvert",
    "icmp6-multicastroutersolicit",
    "icmp6-multicastrouterterm",
    "tcp-fin",
    "tcp-syn",
    "tcp-rst",
    "tcp-push",
    "tcp-ack",
    "tcp-urg",
    "tcp-ece",
    "tcp-cwr",
];

/// What libpcap's scanner reads as a number or an address, never as a name: a number
/// (decimal, or hex with `0x`), an IPv4 address of 2–4 numeric parts, an IPv6 address, a MAC
/// address (six 1–2 digit hex bytes separated by `:`, `-` or `.`, three 4-digit groups
/// separated by `.`, or 12 hex digits), an ARCnet `$` address. Anything else is an
/// identifier libpcap would look up.
fn literal(w: &str) -> bool {
    fn number(p: &str) -> bool {
        let b = p.as_bytes();
        (!b.is_empty() && b.iter().all(u8::is_ascii_digit))
            || b.strip_prefix(b"0x")
                .or_else(|| b.strip_prefix(b"0X"))
                .is_some_and(|h| !h.is_empty() && h.iter().all(u8::is_ascii_hexdigit))
    }
    fn hex(p: &str, len: std::ops::RangeInclusive<usize>) -> bool {
        len.contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit())
    }
    /// `w` split at `sep` into `n` parts (any count in `n`), each satisfying `ok`.
    fn parts(
        w: &str,
        sep: char,
        n: std::ops::RangeInclusive<usize>,
        ok: impl Fn(&str) -> bool,
    ) -> bool {
        n.contains(&w.split(sep).count()) && w.split(sep).all(ok)
    }
    number(w)
        || w.strip_prefix('$').is_some_and(|h| hex(h, 1..=2))
        || parts(w, '.', 2..=4, number)
        || (w.contains(':') && w.parse::<std::net::Ipv6Addr>().is_ok())
        || [':', '-', '.']
            .iter()
            .any(|&sep| parts(w, sep, 6..=6, |p| hex(p, 1..=2)))
        || parts(w, '.', 3..=3, |p| hex(p, 4..=4))
        || hex(w, 12..=12)
}

/// The words of an expression as libpcap's scanner splits them: runs of letters, digits and
/// `-_.:$`, or a backslash-escaped run (`\tcp`), between operators and blanks.
fn words(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| c.is_whitespace() || "+*/%[]!<>()&|^=".contains(c))
        .filter(|w| !w.is_empty())
}
