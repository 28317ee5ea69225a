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
        let dead = ::pcap::Capture::dead(::pcap::Linktype(link_type as i32))
            .map_err(|e| bad(e.to_string()))?;
        let program = dead.compile(expr, true).map_err(|e| bad(e.to_string()))?;
        Ok(BpfFilter(program))
    }

    /// True when the packet bytes match.
    pub fn matches(&self, data: &[u8]) -> bool {
        self.0.filter(data)
    }
}

/// What an upstream lets through: the exact window `[after, before)` and the raw BPF clause,
/// compiled once per link type on first use. One gate serves every upstream kind, so that a
/// local directory and a sensor's stream can never disagree about what a query admits.
#[derive(Debug)]
pub struct Gate {
    after: super::Timestamp,
    before: super::Timestamp,
    expr: Option<String>,
    /// Few link types appear in one answer: a short list beats a map. `None` marks a link
    /// type the expression cannot compile for.
    programs: Vec<(LinkType, Option<BpfFilter>)>,
}

impl Gate {
    /// A gate for the window `[after, before)` and the optional BPF expression.
    pub fn new(after: super::Timestamp, before: super::Timestamp, expr: Option<String>) -> Gate {
        Gate {
            after,
            before,
            expr,
            programs: Vec::new(),
        }
    }

    /// True when the packet falls in the window and matches the expression. A link type the
    /// expression cannot compile for matches nothing (tcpdump would refuse to filter it); the
    /// query was validated for Ethernet when it was parsed.
    pub fn admits(&mut self, p: &super::Packet) -> bool {
        if p.ts < self.after || p.ts >= self.before {
            return false;
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
        self.programs[i]
            .1
            .as_ref()
            .is_some_and(|f| f.matches(&p.data))
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
    for word in words(expr) {
        let lower = word.to_ascii_lowercase();
        if let Some(c) = qualifier(&lower) {
            context = c;
            continue;
        }
        if KEYWORDS.contains(&lower.as_str())
            || lower.starts_with("icmp-")
            || lower.starts_with("icmp6-")
            || lower.starts_with("tcp-")
            || literal(word)
        {
            continue;
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

/// libpcap's keywords that are not qualifiers (scanner.l).
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
];

/// Numbers and numeric addresses (IPv4 with 1–4 parts, IPv6, MAC, `$` addresses).
fn literal(word: &str) -> bool {
    let w = word.split('/').next().unwrap_or(word);
    w.starts_with('$')
        || w.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        // Byte-wise: the word may hold any character (slicing a `str` could split one).
        || w
            .as_bytes()
            .strip_prefix(b"0x")
            .or_else(|| w.as_bytes().strip_prefix(b"0X"))
            .is_some_and(|h| !h.is_empty() && h.iter().all(u8::is_ascii_hexdigit))
        || w.parse::<std::net::Ipv6Addr>().is_ok()
        || (w.contains([':', '-', '.'])
            && w.split([':', '-', '.'])
                .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_hexdigit())))
}

/// The words of an expression as libpcap's scanner splits them: runs of letters, digits and
/// `-_.:$`, or a backslash-escaped run (`\tcp`), between operators and blanks.
fn words(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| c.is_whitespace() || "+*/%[]!<>()&|^=".contains(c))
        .map(|w| w.trim_start_matches('\\'))
        .filter(|w| !w.is_empty())
}
