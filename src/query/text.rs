//! Stenographer's text grammar, as Docket-py's raw routes took it (`GET raw/<query>`, `POST
//! query/` with `curl -d 'host 1.2.3.4 and port 53'`): clauses joined by `and` (or `&&`).
//!
//! Clauses: `host <ip>`, `net <addr>/<prefix>`, `net <addr> mask <dotted mask>`, `port <n>`,
//! `ip proto <n>`, `tcp`, `udp`, `icmp`, `after <time>`, `before <time>` — a time is what the
//! URL grammar takes, and Stenographer's `<duration> ago` is a duration before now.
//!
//! Invariant: the result is the same [`Query`] the URL grammar gives for the same clauses (one
//! builder), so a raw request and a `q/` link for the same thing are one job. What a [`Query`]
//! cannot say — `or`, `not`, parentheses — is refused with a 400 that says to use `bpf`,
//! never read as something else.

use super::builder::Builder;
use super::time::{parse_duration, parse_time, TimeSpec};
use super::{values, Error, Query, QueryConfig};
use crate::pcap::Timestamp;

/// Parses a Stenographer-style query; `now` resolves relative times.
///
/// # Errors
/// An unknown or incomplete clause, a bad value, or an operator other than `and`.
pub fn parse_text(text: &str, now: Timestamp, cfg: &QueryConfig) -> Result<Query, Error> {
    let spaced = text.replace('(', " ( ").replace(')', " ) ");
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let mut b = Builder::default();
    let mut i = 0;
    let mut expect_clause = true;
    while i < words.len() {
        let word = words[i];
        let kw = word.to_ascii_lowercase();
        if !expect_clause {
            if kw == "and" || kw == "&&" {
                expect_clause = true;
                i += 1;
                continue;
            }
            return Err(Error::new(
                "query",
                word,
                format!(
                    "{word}: only clauses joined by `and` are understood here; for `or`, \
                     `not` and grouping, use a bpf clause"
                ),
            ));
        }
        let value = |n: usize| {
            words.get(i + n).copied().ok_or_else(|| {
                Error::new(
                    &kw,
                    "",
                    format!("incomplete {kw} clause: {kw} needs a value"),
                )
            })
        };
        let used = match kw.as_str() {
            "host" => {
                b.host(values::host("host", value(1)?)?);
                2
            }
            "net" => {
                let addr = value(1)?;
                if words
                    .get(i + 2)
                    .is_some_and(|w| w.eq_ignore_ascii_case("mask"))
                {
                    b.net(values::net("net", addr, value(3)?)?);
                    4
                } else {
                    b.net(values::net_text("net", addr)?);
                    2
                }
            }
            "port" => {
                b.port(values::port("port", value(1)?)?);
                2
            }
            "ip" if words
                .get(i + 1)
                .is_some_and(|w| w.eq_ignore_ascii_case("proto")) =>
            {
                let v = value(2)?;
                b.proto(values::proto("proto", v)?, &format!("ip proto {v}"))?;
                3
            }
            "tcp" | "udp" | "icmp" => {
                b.proto(values::proto_name(&kw).expect("a protocol name"), &kw)?;
                1
            }
            "after" | "before" => {
                let v = value(1)?;
                let ago = words
                    .get(i + 2)
                    .is_some_and(|w| w.eq_ignore_ascii_case("ago"));
                let spec = if ago {
                    TimeSpec::Ago(parse_duration(v, true).ok_or_else(|| {
                        Error::new(
                            &kw,
                            v,
                            format!("{kw} {v} ago: not a duration (like 90s, 5m, 1h30m)"),
                        )
                    })?)
                } else {
                    parse_time(&kw, v)?
                };
                if kw == "after" {
                    b.after(spec, "after", v)?;
                } else {
                    b.before(spec, "before", v)?;
                }
                if ago {
                    3
                } else {
                    2
                }
            }
            _ => {
                return Err(Error::new(
                    word,
                    word,
                    format!(
                        "unrecognized clause: {word} (host, net, port, ip proto, tcp, udp, \
                         icmp, after, before; joined by and)"
                    ),
                ))
            }
        };
        i += used;
        expect_clause = false;
    }
    if expect_clause && !words.is_empty() {
        return Err(Error::new(
            "query",
            text,
            "the query ends with `and`: a clause is missing".to_owned(),
        ));
    }
    b.finish(now, cfg)
}
