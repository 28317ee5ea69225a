//! The URL path grammar (`/q/…`, `/api/uri/…`): `/`-separated keywords and values, keywords
//! case-insensitive, all clauses AND-ed.
//!
//! The path is split on `/` *before* percent-decoding, so a value may carry an encoded `/`
//! (`%2F`): a BPF expression with a division, or a whole CIDR in one segment
//! (`net/10.0.0.0%2F8`). Empty segments are ignored, so doubled and trailing slashes are fine.

use percent_encoding::percent_decode_str;

use super::builder::Builder;
use super::time::parse_time;
use super::{values, Error, Query, QueryConfig};
use crate::pcap::Timestamp;

/// Parses the part of a request path after `/q/` (or `/api/uri/`) into a [`Query`], resolving
/// relative times against `now`.
///
/// Grammar (keywords any case): `host/<ip>`, `net/<addr>/<prefix|dotted mask>`,
/// `port/<1-65535>`, `proto/<0-255>`, `tcp`, `udp`, `icmp`, `after/<time>`, `before/<time>`,
/// `sensor/<name>`, `limit-bytes/<size>`, `limit-packets/<n>`, `bpf/<expr>`,
/// `format/pcap|pcapng`, `ignore-weight`. A time is RFC 3339 (any offset, converted to UTC),
/// an ISO time without a zone or a date (UTC), `@` and epoch seconds, or a duration before
/// `now` (`1h30m`; a bare number is seconds, as in Docket-py). In a `bpf/` value a `+` is a
/// space (Docket-py's `unquote_plus`; `%2B` is a plus). A trailing `pcap` segment is not part
/// of the grammar: the HTTP layer strips it.
pub fn parse_path(path: &str, now: Timestamp, cfg: &QueryConfig) -> Result<Query, Error> {
    let raws: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let decode = |raw: &str| {
        percent_decode_str(raw)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| {
                Error::new(
                    "path",
                    raw,
                    format!("path segment {raw} is not UTF-8 after percent-decoding"),
                )
            })
    };
    let segments = raws
        .iter()
        .map(|raw| decode(raw))
        .collect::<Result<Vec<String>, Error>>()?;
    // A `bpf` value spelled with `+` for spaces, decoded as a form value would be.
    let plus_spaced: Vec<Option<String>> = raws
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let after_bpf = i > 0 && raws[i - 1].eq_ignore_ascii_case("bpf");
            (after_bpf && raw.contains('+'))
                .then(|| decode(&raw.replace('+', " ")))
                .transpose()
        })
        .collect::<Result<_, Error>>()?;

    let mut b = Builder::default();
    let mut it = segments
        .iter()
        .zip(&plus_spaced)
        .map(|(s, p)| p.as_deref().unwrap_or(s));
    while let Some(word) = it.next() {
        let kw = word.to_ascii_lowercase();
        // The value segment of a one-value clause, or "incomplete <kw> clause".
        let mut value = |kw: &str| {
            it.next().ok_or_else(|| {
                Error::new(
                    kw,
                    "",
                    format!("incomplete {kw} clause: {kw} needs a value"),
                )
            })
        };
        match kw.as_str() {
            "host" => b.host(values::host("host", value("host")?)?),
            "net" => {
                let addr = value("net")?;
                let net = if addr.contains('/') {
                    values::net_text("net", addr)?
                } else {
                    let mask = it.next().ok_or_else(|| {
                        Error::new(
                            "net",
                            addr,
                            "incomplete net clause: net needs an address and a prefix, \
                             e.g. net/10.0.0.0/8"
                                .to_owned(),
                        )
                    })?;
                    values::net("net", addr, mask)?
                };
                b.net(net);
            }
            "port" => b.port(values::port("port", value("port")?)?),
            "proto" => {
                let v = value("proto")?;
                b.proto(values::proto("proto", v)?, &format!("proto {v}"))?;
            }
            "tcp" | "udp" | "icmp" => {
                let p = values::proto_name(&kw).expect("matched a protocol name");
                b.proto(p, &kw)?;
            }
            "after" => {
                let v = value("after")?;
                b.after(parse_time("after", v)?, "after", v)?;
            }
            "before" => {
                let v = value("before")?;
                b.before(parse_time("before", v)?, "before", v)?;
            }
            "sensor" => b.sensor(values::sensor("sensor", value("sensor")?)?),
            "limit-bytes" => {
                let v = value("limit-bytes")?;
                b.limit_bytes(values::capacity("limit-bytes", v)?, "limit-bytes", v)?;
            }
            "limit-packets" => {
                let v = value("limit-packets")?;
                b.limit_packets(values::count("limit-packets", v)?, "limit-packets", v)?;
            }
            "bpf" => {
                let v = value("bpf")?;
                b.bpf(values::bpf("bpf", v)?, "bpf")?;
            }
            "format" => {
                let v = value("format")?;
                b.output(values::format("format", v)?, "format", v)?;
            }
            // Docket-py's switch for its "fat-finger" weight check.
            "ignore-weight" => b.ignore_weight(),
            _ => {
                return Err(Error::new(
                    word,
                    word,
                    format!("unrecognized clause: {word}"),
                ))
            }
        }
    }
    b.finish(now, cfg)
}
