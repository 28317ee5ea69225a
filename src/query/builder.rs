//! The clause collector every front end (URL, JSON, form) feeds, and its resolution into a
//! [`Query`]: times resolved against "now" and quantised, lists sorted and de-duplicated.
//!
//! Doing this in one place is what makes the same request produce the same [`Query`] (and so
//! the same job id) whatever its input type, order or spelling.
//!
//! Single-valued clauses (`after`, `before`, `proto`, the limits, `bpf`, `format`) may be
//! repeated with the same value; a different second value is an error rather than a silent
//! "last one wins" (Docket-py's behaviour for `tcp`/`udp`).

use std::net::IpAddr;

use super::time::{ceil_to, check_range, floor_to, TimeSpec};
use super::{Error, Net, OutputKind, Query, QueryConfig};
use crate::pcap::{Timestamp, NANOS_PER_SEC};

/// A time clause with the text it came from (for errors after resolution).
#[derive(Clone, Debug)]
struct TimeClause {
    spec: TimeSpec,
    clause: String,
    text: String,
}

/// Clauses as they arrive; [`Builder::finish`] turns them into a [`Query`].
#[derive(Default, Debug)]
pub(crate) struct Builder {
    after: Option<TimeClause>,
    before: Option<TimeClause>,
    hosts: Vec<IpAddr>,
    nets: Vec<Net>,
    ports: Vec<u16>,
    proto: Option<u8>,
    sensors: Vec<String>,
    limit_bytes: Option<u64>,
    limit_packets: Option<u64>,
    bpf: Option<String>,
    output: Option<OutputKind>,
    ignore_weight: bool,
}

/// Sets a single-valued clause: a repeat must carry the same value.
fn set_once<T: PartialEq + std::fmt::Debug>(
    slot: &mut Option<T>,
    value: T,
    clause: &str,
    text: &str,
) -> Result<(), Error> {
    match slot {
        Some(old) if *old != value => Err(Error::new(
            clause,
            text,
            format!("{clause} {text} conflicts with an earlier {clause} clause"),
        )),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

impl Builder {
    /// Adds a host.
    pub(crate) fn host(&mut self, ip: IpAddr) {
        self.hosts.push(ip);
    }

    /// Adds a net.
    pub(crate) fn net(&mut self, net: Net) {
        self.nets.push(net);
    }

    /// Adds a port.
    pub(crate) fn port(&mut self, port: u16) {
        self.ports.push(port);
    }

    /// Sets the IP protocol; a different protocol than an earlier one is a conflict. The error
    /// always names `proto`, whether the clause was `proto/N`, `tcp` or `proto-name`.
    pub(crate) fn proto(&mut self, proto: u8, text: &str) -> Result<(), Error> {
        match self.proto {
            Some(old) if old != proto => Err(Error::new(
                "proto",
                text,
                format!(
                    "conflicting protocols: {text} (ip proto {proto}) and ip proto {old}; \
                     a packet has only one"
                ),
            )),
            _ => {
                self.proto = Some(proto);
                Ok(())
            }
        }
    }

    /// Sets `after` (from `after` or `after-ago`; `clause` names which).
    pub(crate) fn after(&mut self, spec: TimeSpec, clause: &str, text: &str) -> Result<(), Error> {
        Self::time(&mut self.after, spec, clause, text)
    }

    /// Sets `before` (from `before` or `before-ago`; `clause` names which).
    pub(crate) fn before(&mut self, spec: TimeSpec, clause: &str, text: &str) -> Result<(), Error> {
        Self::time(&mut self.before, spec, clause, text)
    }

    fn time(
        slot: &mut Option<TimeClause>,
        spec: TimeSpec,
        clause: &str,
        text: &str,
    ) -> Result<(), Error> {
        match slot {
            Some(old) if old.spec != spec => Err(Error::new(
                clause,
                text,
                format!(
                    "{clause} {text} conflicts with an earlier {} {}",
                    old.clause, old.text
                ),
            )),
            _ => {
                *slot = Some(TimeClause {
                    spec,
                    clause: clause.to_owned(),
                    text: text.to_owned(),
                });
                Ok(())
            }
        }
    }

    /// Adds a sensor.
    pub(crate) fn sensor(&mut self, name: String) {
        self.sensors.push(name);
    }

    /// Sets the byte limit.
    pub(crate) fn limit_bytes(&mut self, n: u64, clause: &str, text: &str) -> Result<(), Error> {
        set_once(&mut self.limit_bytes, n, clause, text)
    }

    /// Sets the packet limit.
    pub(crate) fn limit_packets(&mut self, n: u64, clause: &str, text: &str) -> Result<(), Error> {
        set_once(&mut self.limit_packets, n, clause, text)
    }

    /// Sets the raw BPF expression.
    pub(crate) fn bpf(&mut self, expr: String, clause: &str) -> Result<(), Error> {
        let shown: String = expr.chars().take(64).collect();
        set_once(&mut self.bpf, expr, clause, &shown)
    }

    /// Sets the output format.
    pub(crate) fn output(
        &mut self,
        kind: OutputKind,
        clause: &str,
        text: &str,
    ) -> Result<(), Error> {
        set_once(&mut self.output, kind, clause, text)
    }

    /// `ignore-weight`: the answer is wanted even if its estimate is over the limit.
    pub(crate) fn ignore_weight(&mut self) {
        self.ignore_weight = true;
    }

    /// Resolves the times at `now`, quantises the relative ones to the window and normalises
    /// the lists.
    ///
    /// An absolute time is kept to the nanosecond, as asked. A relative one ("5m", "3600") is
    /// quantised — after = floor, before = ceil (a before on a boundary stays) — and so are the
    /// defaults, now − long_ago and floor(now) + window: that is what lets "the last 20
    /// minutes" asked twice within a window share a job. Both ends must lie in years
    /// 1970..=9999 and after < before.
    pub(crate) fn finish(mut self, now: Timestamp, cfg: &QueryConfig) -> Result<Query, Error> {
        // A zero window would divide by zero; one second is the finest meaningful window.
        let w = i128::from(cfg.time_window_secs.max(1)) * NANOS_PER_SEC;
        let after = match &self.after {
            Some(c) => match c.spec {
                TimeSpec::At(t) => t.0,
                TimeSpec::Ago(_) => floor_to(c.spec.resolve(now, &c.clause, &c.text)?, w),
            },
            None => {
                let long_ago = i128::from(cfg.long_ago_secs) * NANOS_PER_SEC;
                let t = check_range(
                    now.0.saturating_sub(long_ago),
                    "after",
                    "(default: now - long_ago)",
                )?;
                floor_to(t, w)
            }
        };
        let before = match &self.before {
            Some(c) => match c.spec {
                TimeSpec::At(t) => t.0,
                TimeSpec::Ago(_) => ceil_to(c.spec.resolve(now, &c.clause, &c.text)?, w),
            },
            None => floor_to(check_range(now.0, "before", "(default: now)")?, w) + w,
        };
        let (bclause, btext) = match &self.before {
            Some(c) => (c.clause.as_str(), c.text.as_str()),
            None => ("before", "(default: end of the current time window)"),
        };
        // Rounding up may leave year 9999; refuse rather than print a five-digit year.
        check_range(before, bclause, btext)?;
        if after >= before {
            return Err(Error::new(
                bclause,
                btext,
                format!(
                    "empty time range: after {} is not before {} (relative times quantised to {} s)",
                    super::time::rfc3339(after),
                    super::time::rfc3339(before),
                    w / NANOS_PER_SEC
                ),
            ));
        }
        // ICMP has no ports: a port with `icmp` would match nothing, silently (a Kibana link
        // of an ICMP event carries Suricata's type and code as ports).
        if matches!(self.proto, Some(1 | 58)) && !self.ports.is_empty() {
            let port = self.ports[0].to_string();
            return Err(Error::new(
                "port",
                &port,
                format!(
                    "port {port}: ICMP has no ports (an ICMP event's ports are its type and \
                     code); ask without the port clause"
                ),
            ));
        }
        self.hosts.sort_unstable();
        self.hosts.dedup();
        self.nets.sort_unstable();
        self.nets.dedup();
        self.ports.sort_unstable();
        self.ports.dedup();
        self.sensors.sort_unstable();
        self.sensors.dedup();
        Ok(Query {
            after: Timestamp(after),
            before: Timestamp(before),
            hosts: self.hosts,
            nets: self.nets,
            ports: self.ports,
            proto: self.proto,
            sensors: self.sensors,
            limit_bytes: self.limit_bytes,
            limit_packets: self.limit_packets,
            bpf: self.bpf,
            output: self.output.unwrap_or_default(),
            ignore_weight: self.ignore_weight,
        })
    }
}
