//! Queries: what an analyst asks for, parsed from a URL path, a JSON body or a form body,
//! normalised, and rendered for Stenographer, for libpcap, as a canonical string and job id,
//! and back into the URL grammar.
//!
//! The module does no I/O. It owns these invariants of every [`Query`] it returns:
//! - the time window is half-open `[after, before)`, non-empty, within years 1970..=9999;
//!   absolute times are kept to the nanosecond, relative ones and the defaults quantised to
//!   `QueryConfig::time_window_secs` (after rounded down, before rounded up);
//! - hosts, nets, ports and sensors are sorted and free of duplicates; nets hold their network
//!   address (host bits cleared); IPv6 addresses are values, so every spelling is equal;
//! - so the same request in any order, spelling or input type (URL, JSON, form) has the same
//!   [`Query::canonical`] string and the same [`JobId`], and requests that differ in anything
//!   that changes the result (limits, sensors, bpf, format included) have different ones.
//!
//! Compatibility with Docket-py's grammar (`/work/shared/DOCKET-PY.md` §1.3–1.5), with its
//! faults fixed: RFC 3339 offsets are converted (not dropped), time clauses go first in the
//! Stenographer query, no ±120 s padding is baked into the query (callers widen with
//! [`Query::stenographer_widened`] and gate exactly), `proto/N` works, conflicting protocols
//! are an error rather than "last one wins", an IPv6 `/128` net is accepted, and absolute
//! windows are exact (Docket-py floored them to the window and padded them by 120 s). A bare
//! number is a duration in seconds, as in Docket-py; epoch seconds are written `@1700000000`.

mod body;
mod builder;
mod grammar;
mod text;
mod time;
mod values;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

pub use body::{parse_form, parse_json, text_of_json};
pub use grammar::parse_path;
pub use text::parse_text;
pub use time::rfc3339;
pub use values::{MAX_BPF_LEN, MAX_SENSOR_LEN};

/// Whether `name` can be asked for with `sensor/<name>` (the configuration refuses any other
/// name at load, not at the first query that names it); the reason if not.
///
/// # Errors
/// The name is empty, longer than [`MAX_SENSOR_LEN`], only dots, or has other characters than
/// `[A-Za-z0-9_.-]`.
pub fn check_sensor_name(name: &str) -> Result<(), Error> {
    values::sensor("sensor", name).map(drop)
}

use crate::pcap::Timestamp;

/// Settings that decide how times are resolved and quantised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryConfig {
    /// Quantum of the time window in seconds (Docket-py `TIME_WINDOW`, default 60). Requests
    /// within the same window share a job. 0 is treated as 1.
    pub time_window_secs: u64,
    /// How far back a query without `after` reaches, in seconds (Docket-py `LONG_AGO`,
    /// default 86400 = 24 h).
    pub long_ago_secs: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            time_window_secs: 60,
            long_ago_secs: 86_400,
        }
    }
}

/// The output container the client asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputKind {
    /// pcap when every input allows it, pcapng otherwise (no `format` clause).
    #[default]
    Auto,
    /// Always pcapng (`format/pcapng`).
    Pcapng,
    /// Always classic pcap (`format/pcap`): inputs of more than one link type cannot be
    /// written as one, and the job is refused (409) instead of silently turning pcapng.
    Pcap,
}

/// An IP network: `addr` is the network address (host bits zero), `prefix` its length
/// (0..=32 for IPv4, 0..=128 for IPv6). Build it with [`Net::new`] or parse it, which keep
/// that invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net {
    /// Network address, host bits cleared.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Net {
    /// The net of `addr` with `prefix` bits (capped at the address width), host bits cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Net {
        let prefix = prefix.min(if addr.is_ipv4() { 32 } else { 128 });
        Net {
            addr: values::network(addr, prefix),
            prefix,
        }
    }
}

impl fmt::Display for Net {
    /// `addr/prefix`, as Stenographer and libpcap read it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Net {
    type Err = Error;

    /// `addr/prefix` or (IPv4) `addr/dotted-mask`; host bits are cleared.
    fn from_str(s: &str) -> Result<Net, Error> {
        values::net_text("net", s)
    }
}

/// A parsed, normalised request. See the module docs for the invariants the parsers keep;
/// code that builds a `Query` by hand should keep them too (lists sorted and de-duplicated),
/// or the canonical string will not match the parsed equivalent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Start of the window (inclusive), quantised.
    pub after: Timestamp,
    /// End of the window (exclusive), quantised.
    pub before: Timestamp,
    /// Hosts; a packet must involve every one (`host A and host B`).
    pub hosts: Vec<IpAddr>,
    /// Nets; a packet must involve every one.
    pub nets: Vec<Net>,
    /// TCP/UDP ports; a packet must involve every one.
    pub ports: Vec<u16>,
    /// IP protocol number, from `proto/N` or `tcp` (6), `udp` (17), `icmp` (1).
    pub proto: Option<u8>,
    /// Sensors to ask; empty = all.
    pub sensors: Vec<String>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
    /// Stop after this many packets.
    pub limit_packets: Option<u64>,
    /// A raw tcpdump expression AND-ed to the rest, verbatim (compiled elsewhere).
    pub bpf: Option<String>,
    /// Requested output container.
    pub output: OutputKind,
    /// `ignore-weight`: start the job even when its estimate is over `max_estimated_bytes`.
    /// Not part of the canonical form: it changes whether a job starts, not its answer.
    pub ignore_weight: bool,
}

/// The bytes of a BPF expression that stay literal in [`Query::to_path`]; everything else,
/// `/` and `%` above all, is percent-encoded.
const PATH_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Query {
    /// The filter clauses Stenographer and the canonical form share, time first.
    fn steno_clauses(&self, after: i128, before: i128) -> Vec<String> {
        let mut c = vec![
            format!("after {}", time::rfc3339(after)),
            format!("before {}", time::rfc3339(before)),
        ];
        c.extend(self.hosts.iter().map(|h| format!("host {h}")));
        c.extend(self.nets.iter().map(|n| format!("net {n}")));
        c.extend(self.ports.iter().map(|p| format!("port {p}")));
        c.extend(self.proto.map(|p| format!("ip proto {p}")));
        c
    }

    /// The query as an analyst reads it, every clause shown: the filter in tcpdump's words
    /// (`tcp`, `udp`, `icmp` by name — `ip proto 6` would mean IPv4 only to tcpdump, while
    /// Docket matches IPv6 too; the raw `bpf` in parentheses), then what is not a filter —
    /// sensors, limits, format — only when set:
    /// `after … and before … and host 10.0.0.1 and tcp and (len > 100) | sensors=a,b | limit-packets=7`.
    pub fn describe(&self) -> String {
        let mut c = vec![
            format!("after {}", time::rfc3339(self.after.0)),
            format!("before {}", time::rfc3339(self.before.0)),
        ];
        c.extend(self.hosts.iter().map(|h| format!("host {h}")));
        c.extend(self.nets.iter().map(|n| format!("net {n}")));
        c.extend(self.ports.iter().map(|p| format!("port {p}")));
        c.extend(self.proto.map(|p| match p {
            6 => "tcp".to_owned(),
            17 => "udp".to_owned(),
            1 => "icmp".to_owned(),
            n => format!("proto {n}"),
        }));
        c.extend(self.bpf.as_ref().map(|b| format!("({b})")));
        let mut s = c.join(" and ");
        if !self.sensors.is_empty() {
            s.push_str(&format!(" | sensors={}", self.sensors.join(",")));
        }
        if let Some(n) = self.limit_packets {
            s.push_str(&format!(" | limit-packets={n}"));
        }
        if let Some(n) = self.limit_bytes {
            s.push_str(&format!(" | limit-bytes={n}"));
        }
        match self.output {
            OutputKind::Pcapng => s.push_str(" | format=pcapng"),
            OutputKind::Pcap => s.push_str(" | format=pcap"),
            OutputKind::Auto => {}
        }
        s
    }

    /// The canonical form: everything that changes the result, in a fixed order and spelling.
    /// The Stenographer query (time first, then sorted hosts, nets, ports, proto) followed by
    /// `| sensors=… | limit-bytes=… | limit-packets=… | bpf=… | format=…`, with `-` for
    /// absent values and the BPF expression as a JSON string (so no text inside it can
    /// imitate a separator). Example:
    ///
    /// `after 2024-01-02T03:04:00Z and before 2024-01-02T03:10:00Z and host 10.0.0.1 and
    /// port 80 and ip proto 6 | sensors=a,b | limit-bytes=1048576 | limit-packets=- |
    /// bpf="tcp[13] & 2 != 0" | format=auto` (on one line).
    pub fn canonical(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let sensors = if self.sensors.is_empty() {
            "-".to_owned()
        } else {
            self.sensors.join(",")
        };
        let bpf = self.bpf.as_ref().map_or_else(
            || "-".to_owned(),
            |b| serde_json::to_string(b).expect("a string serialises"),
        );
        let format = match self.output {
            OutputKind::Auto => "auto",
            OutputKind::Pcapng => "pcapng",
            OutputKind::Pcap => "pcap",
        };
        format!(
            "{} | sensors={sensors} | limit-bytes={} | limit-packets={} | bpf={bpf} | format={format}",
            self.stenographer(),
            opt(self.limit_bytes),
            opt(self.limit_packets),
        )
    }

    /// The job id: the first 16 bytes of SHA-256 of [`Query::canonical`].
    pub fn id(&self) -> JobId {
        let digest = Sha256::digest(self.canonical().as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        JobId(id)
    }

    /// The query in Stenographer's language, time clauses first (cheapest for Stenographer),
    /// absolute RFC 3339 UTC times, clauses joined by ` and `, e.g.
    /// `after 2024-01-02T03:04:00Z and before 2024-01-02T03:10:00Z and host 10.0.0.1 and
    /// net 10.0.0.0/8 and port 80 and ip proto 6`. Sensors, limits, bpf and format are not
    /// part of it: Docket applies them itself.
    pub fn stenographer(&self) -> String {
        self.steno_clauses(self.after.0, self.before.0)
            .join(" and ")
    }

    /// [`Query::stenographer`] with the window widened by `slack_secs` on both sides
    /// (clamped to years 1970..=9999): Stenographer selects files by time with some slack of
    /// its own, and Docket gates the packets to the exact window afterwards.
    pub fn stenographer_widened(&self, slack_secs: u64) -> String {
        let slack = i128::from(slack_secs) * crate::pcap::NANOS_PER_SEC;
        self.steno_clauses(self.after.0 - slack, self.before.0 + slack)
            .join(" and ")
    }

    /// The structured clauses (hosts, nets, ports, proto) as one per-packet test through every
    /// encapsulation; `None` when the query has none.
    pub fn clauses(&self) -> Option<crate::pcap::Clauses> {
        crate::pcap::Clauses::new(
            &self.hosts,
            self.nets.iter().map(|n| (n.addr, n.prefix)),
            &self.ports,
            self.proto,
        )
    }

    /// tcpdump's literal reading of every clause except time and sensors, e.g. `host 10.0.0.1
    /// and net 10.0.0.0/8 and port 80 and (ip proto 6 or ip6 proto 6) and (tcp[13] & 2 != 0)`;
    /// `None` when nothing filters. Not what Docket applies (libpcap looks at the outermost
    /// headers only; [`Query::clauses`] looks through encapsulations): the baseline the
    /// matcher's benchmark compares with.
    pub fn bpf_filter(&self) -> Option<String> {
        let mut c: Vec<String> = Vec::new();
        c.extend(self.hosts.iter().map(|h| format!("host {h}")));
        c.extend(self.nets.iter().map(|n| format!("net {n}")));
        c.extend(self.ports.iter().map(|p| format!("port {p}")));
        c.extend(
            self.proto
                .map(|p| format!("(ip proto {p} or ip6 proto {p})")),
        );
        c.extend(self.bpf.as_ref().map(|b| format!("({b})")));
        (!c.is_empty()).then(|| c.join(" and "))
    }

    /// Applies Docket-py's `Steno-Limit-Packets` / `Steno-Limit-Bytes` request headers (the
    /// values as the `limit-packets` / `limit-bytes` clauses take them). A header that names
    /// another limit than the request's own clause is an error, as a clause given twice is.
    ///
    /// # Errors
    /// A header value that is not a count (a size), or that contradicts the request.
    pub fn limits_from_headers(
        &mut self,
        packets: Option<&str>,
        bytes: Option<&str>,
    ) -> Result<(), Error> {
        fn merge(
            have: &mut Option<u64>,
            header: &str,
            text: &str,
            value: u64,
        ) -> Result<(), Error> {
            match *have {
                Some(v) if v != value => Err(Error::new(
                    header,
                    text,
                    format!("{header}: {text} contradicts the request's own limit ({v})"),
                )),
                _ => {
                    *have = Some(value);
                    Ok(())
                }
            }
        }
        if let Some(t) = packets {
            let n = values::count("Steno-Limit-Packets", t.trim())?;
            merge(&mut self.limit_packets, "Steno-Limit-Packets", t, n)?;
        }
        if let Some(t) = bytes {
            let n = values::capacity("Steno-Limit-Bytes", t)?;
            merge(&mut self.limit_bytes, "Steno-Limit-Bytes", t, n)?;
        }
        Ok(())
    }

    /// The query in the URL grammar, absolute epoch times, values percent-encoded where needed,
    /// without a leading slash: `after/@1704164640/before/@1704165000/host/10.0.0.1/…`.
    /// [`parse_path`] of it gives back an equal query (with the same time window config),
    /// whatever "now" is.
    pub fn to_path(&self) -> String {
        let mut p: Vec<String> = vec![
            "after".into(),
            time::epoch_text(self.after.0),
            "before".into(),
            time::epoch_text(self.before.0),
        ];
        for h in &self.hosts {
            p.extend(["host".into(), h.to_string()]);
        }
        for n in &self.nets {
            p.extend(["net".into(), n.addr.to_string(), n.prefix.to_string()]);
        }
        for port in &self.ports {
            p.extend(["port".into(), port.to_string()]);
        }
        if let Some(proto) = self.proto {
            p.extend(["proto".into(), proto.to_string()]);
        }
        for s in &self.sensors {
            p.extend([
                "sensor".into(),
                utf8_percent_encode(s, PATH_VALUE).to_string(),
            ]);
        }
        if let Some(n) = self.limit_bytes {
            p.extend(["limit-bytes".into(), n.to_string()]);
        }
        if let Some(n) = self.limit_packets {
            p.extend(["limit-packets".into(), n.to_string()]);
        }
        if let Some(b) = &self.bpf {
            p.extend(["bpf".into(), utf8_percent_encode(b, PATH_VALUE).to_string()]);
        }
        match self.output {
            OutputKind::Pcapng => p.extend(["format".into(), "pcapng".into()]),
            OutputKind::Pcap => p.extend(["format".into(), "pcap".into()]),
            OutputKind::Auto => {}
        }
        if self.ignore_weight {
            p.push("ignore-weight".into());
        }
        p.join("/")
    }
}

/// A job's id: 16 bytes, written as 32 lower-case hex digits. Parsing accepts exactly that
/// form and nothing else, so a parsed id is always safe as a file name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub [u8; 16]);

impl JobId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

impl FromStr for JobId {
    type Err = Error;

    /// Exactly 32 characters of `0-9a-f`; upper case, separators and any other length are
    /// rejected (the id names directories later).
    fn from_str(s: &str) -> Result<JobId, Error> {
        let bad = || {
            let shown: String = s.chars().take(64).collect();
            Error::new(
                "id",
                &shown,
                "a job id is 32 lower-case hex digits".to_owned(),
            )
        };
        let b = s.as_bytes();
        if b.len() != 32 {
            return Err(bad());
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut id = [0u8; 16];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            id[i] = (nibble(pair[0]).ok_or_else(bad)? << 4) | nibble(pair[1]).ok_or_else(bad)?;
        }
        Ok(JobId(id))
    }
}

/// A request the query grammar rejects. Rendered for HTTP as
/// `{"error": message, "clause": clause, "value": value}` (see [`Error::to_json`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{message}")]
pub struct Error {
    /// Human-readable explanation, e.g. `port 66000 out of range 1-65535`.
    pub message: String,
    /// The clause or field at fault: `port`, `host`, `after`…, the unknown keyword itself,
    /// `body` for a body that is not a JSON object, `path` for undecodable percent-encoding.
    pub clause: String,
    /// The offending text (possibly shortened), empty when a value is missing.
    pub value: String,
}

impl Error {
    /// An error about `clause` with the offending `value`.
    pub fn new(clause: &str, value: &str, message: String) -> Error {
        Error {
            message,
            clause: clause.to_owned(),
            value: value.to_owned(),
        }
    }

    /// The HTTP error body: `{"error": message, "clause": clause, "value": value}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.message,
            "clause": self.clause,
            "value": self.value,
        })
    }
}
