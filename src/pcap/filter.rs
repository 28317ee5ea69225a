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
