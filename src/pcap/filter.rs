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
