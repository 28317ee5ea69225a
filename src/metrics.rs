//! The process's operational metrics and their Prometheus exposition (OpenMetrics text, the
//! `prometheus-client` crate), served at `<prefix>metrics`.
//!
//! Prometheus asks for OpenMetrics and gets it; any other client (`promtool check metrics`,
//! curl) gets the classic text format 0.0.4, rewritten from the same exposition.
//!
//! Two kinds of series:
//! - **Events** (counters, histograms) are recorded where they happen, through the typed
//!   methods below: a job started or ended, an upstream asked, answering, failing (by the
//!   [`upstream::Error`] variant), bytes served, a cleanup, a failed login, a TLS handshake.
//! - **Levels** (jobs by state, queue depth, spool and index sizes, free space, each
//!   upstream's health) are read at scrape time: the caller fills a [`Levels`] from the
//!   registry, the spool and the health monitor, and [`Metrics::encode`] sets them just before
//!   encoding. A level never drifts from what `/stats` shows, because both read the same
//!   source.
//!
//! Invariants: label values come from a closed set (states, reasons, results are `&'static
//! str` of this crate) or from the configuration (upstream names): nothing a client sends
//! becomes a label, so a client cannot grow the series set. This module is a leaf: it knows
//! no registry, job or connection type.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::jobs::State;
use crate::upstream;

/// The OpenMetrics 1.0 text media type (what Prometheus asks for).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The classic Prometheus text format's media type (for clients that do not ask for
/// OpenMetrics: `promtool check metrics`, older scrapers, people with curl).
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which text format a scraper gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (`# EOF`, `# UNIT`, counter families named without `_total`).
    OpenMetrics,
    /// The classic text format 0.0.4.
    Classic,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics only when it names it (as
    /// Prometheus does), the classic format otherwise.
    ///
    /// OpenMetrics is chosen when it is named with a weight above 0 and at least that of
    /// the classic format (`text/plain`, or else `*/*`), as RFC 9110 weighs them.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut openmetrics, mut plain, mut any) = (None::<f32>, None::<f32>, None::<f32>);
        for part in accept.unwrap_or("").split(',') {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(0.0);
            let slot = match media.as_str() {
                "application/openmetrics-text" => &mut openmetrics,
                "text/plain" => &mut plain,
                "*/*" => &mut any,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |s| s.max(q)));
        }
        match openmetrics {
            Some(q) if q > 0.0 && q >= plain.or(any).unwrap_or(0.0) => Format::OpenMetrics,
            _ => Format::Classic,
        }
    }

    /// Its media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Classic => CLASSIC,
        }
    }
}

/// The classic text format of an OpenMetrics exposition of ours: the families this module
/// registers are counters, gauges, histograms and one info, so the rewrite is by family type:
/// a counter family `x` is `x_total` there, an info `x` a gauge `x_info`; `# UNIT` and `# EOF`
/// lines have no classic form. Samples are the same lines in both.
fn classic(openmetrics: &str) -> String {
    let mut types: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for l in openmetrics.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                types.insert(name, kind);
            }
        }
    }
    let renamed = |name: &str| -> String {
        match types.get(name) {
            Some(&"counter") => format!("{name}_total"),
            Some(&"info") => format!("{name}_info"),
            _ => name.to_owned(),
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for l in openmetrics.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = l.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", renamed(name)));
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let kind = if kind == "info" { "gauge" } else { kind };
            out.push_str(&format!("# TYPE {} {kind}\n", renamed(name)));
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabel {
    upstream: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilesLabel {
    upstream: String,
    files: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: &'static str,
}

/// A gauge of bytes or counts far beyond `i64`'s need; `u64` values saturate.
type Level = Gauge<i64, std::sync::atomic::AtomicI64>;

fn level(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Latency buckets: 1 ms to ~17 min, each four times the last (first bytes of an index hit are milliseconds; a
/// whole Stenographer answer can take its 15-minute cut-off).
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 11))
}

/// Every series Docket exports. See the module documentation.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    jobs_started: Counter,
    jobs_ended: Family<StateLabel, Counter>,
    merged_packets: Counter,
    merged_bytes: Counter,
    upstream_requests: Family<UpstreamLabel, Counter>,
    upstream_failures: Family<FailureLabel, Counter>,
    upstream_first_byte: Family<UpstreamLabel, Histogram, fn() -> Histogram>,
    upstream_duration: Family<UpstreamLabel, Histogram, fn() -> Histogram>,
    responses: Family<CodeLabel, Counter>,
    served_bytes: Family<KindLabel, Counter>,
    served_packets: Counter,
    captures_served: Family<ResultLabel, Counter>,
    capture_first_byte: Histogram,
    cleanup_runs: Counter,
    cleanup_deleted: Counter,
    cleanup_freed: Counter,
    auth_failures: Counter,
    auth_lockouts: Counter,
    tls_handshakes: Family<ResultLabel, Counter>,
    connections: Level,
    capture_streams: Level,
    jobs: Family<StateLabel, Level>,
    queue_depth: Level,
    spool_bytes: Level,
    spool_files: Level,
    spool_free_bytes: Level,
    /// No labels; absent (no series) where the file system has no inode limit: a 0 would
    /// read as "full".
    spool_free_inodes: Family<Vec<(String, String)>, Level>,
    upstream_up: Family<UpstreamLabel, Level>,
    upstream_files: Family<FilesLabel, Level>,
    index_bytes: Family<UpstreamLabel, Level>,
    index_backlog: Family<UpstreamLabel, Level>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Where each level stands at a scrape (see the module documentation).
#[derive(Debug, Default)]
pub struct Levels {
    /// Jobs known, by state (every state, zeros included).
    pub jobs: Vec<(State, u64)>,
    /// Jobs waiting for a merge slot.
    pub queued: u64,
    /// Complete captures kept in the spool, and their bytes.
    pub spool_files: u64,
    /// Bytes of those captures.
    pub spool_bytes: u64,
    /// Free bytes on the spool's file system.
    pub spool_free_bytes: u64,
    /// Free inodes there (`None`: no inode limit; the series is left out).
    pub spool_free_inodes: Option<u64>,
    /// Each upstream's level.
    pub upstreams: Vec<UpstreamLevel>,
}

/// One upstream's levels.
#[derive(Debug, Default)]
pub struct UpstreamLevel {
    /// Its name.
    pub name: String,
    /// Up at its last health check (`None`: not checked yet).
    pub up: Option<bool>,
    /// A local directory's files: readable, unreadable, indexed, unindexable.
    pub files: Option<FileLevels>,
}

/// A local directory's file and index levels.
#[derive(Debug, Default)]
pub struct FileLevels {
    /// Files that yield packets.
    pub readable: u64,
    /// Files that cannot be read.
    pub unreadable: u64,
    /// Files with an index (when indexed).
    pub indexed: Option<u64>,
    /// Files that cannot be indexed.
    pub unindexable: u64,
    /// Bytes of the index files.
    pub index_bytes: u64,
    /// Bytes of capture waiting to be indexed.
    pub backlog_bytes: u64,
}

impl Metrics {
    /// Every series registered, all at zero.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("docket");
        let m = Metrics {
            registry: Registry::default(),
            jobs_started: Counter::default(),
            jobs_ended: Family::default(),
            merged_packets: Counter::default(),
            merged_bytes: Counter::default(),
            upstream_requests: Family::default(),
            upstream_failures: Family::default(),
            upstream_first_byte: Family::new_with_constructor(latency),
            upstream_duration: Family::new_with_constructor(latency),
            responses: Family::default(),
            served_bytes: Family::default(),
            served_packets: Counter::default(),
            captures_served: Family::default(),
            capture_first_byte: latency(),
            cleanup_runs: Counter::default(),
            cleanup_deleted: Counter::default(),
            cleanup_freed: Counter::default(),
            auth_failures: Counter::default(),
            auth_lockouts: Counter::default(),
            tls_handshakes: Family::default(),
            connections: Level::default(),
            capture_streams: Level::default(),
            jobs: Family::default(),
            queue_depth: Level::default(),
            spool_bytes: Level::default(),
            spool_files: Level::default(),
            spool_free_bytes: Level::default(),
            spool_free_inodes: Family::default(),
            upstream_up: Family::default(),
            upstream_files: Family::default(),
            index_bytes: Family::default(),
            index_backlog: Family::default(),
        };
        r.register(
            "build",
            "Docket's version",
            Info::new(BuildLabel {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        r.register("jobs_started", "Jobs started", m.jobs_started.clone());
        r.register(
            "jobs_ended",
            "Jobs ended, by final state",
            m.jobs_ended.clone(),
        );
        r.register(
            "merged_packets",
            "Packets written by jobs' merges",
            m.merged_packets.clone(),
        );
        r.register_with_unit(
            "merged",
            "Capture bytes written by jobs' merges (records with their headers)",
            Unit::Bytes,
            m.merged_bytes.clone(),
        );
        r.register(
            "upstream_requests",
            "Queries sent to each upstream",
            m.upstream_requests.clone(),
        );
        r.register(
            "upstream_failures",
            "Upstream answers that failed, by upstream and reason",
            m.upstream_failures.clone(),
        );
        r.register_with_unit(
            "upstream_first_byte",
            "Time from asking an upstream to its first packets (or its end, if it had none)",
            Unit::Seconds,
            m.upstream_first_byte.clone(),
        );
        r.register_with_unit(
            "upstream_duration",
            "Time from asking an upstream to the end of its answer",
            Unit::Seconds,
            m.upstream_duration.clone(),
        );
        r.register(
            "http_responses",
            "HTTP responses, by status class",
            m.responses.clone(),
        );
        r.register_with_unit(
            "served",
            "Response body bytes handed to clients, by kind (capture, other)",
            Unit::Bytes,
            m.served_bytes.clone(),
        );
        r.register(
            "served_packets",
            "Packets of captures delivered whole to clients",
            m.served_packets.clone(),
        );
        r.register(
            "captures_served",
            "Capture responses, by how they ended (complete, aborted, disconnected)",
            m.captures_served.clone(),
        );
        r.register_with_unit(
            "capture_first_byte",
            "Time from a capture request to its response head (its first bytes ready)",
            Unit::Seconds,
            m.capture_first_byte.clone(),
        );
        r.register("cleanup_runs", "Spool cleanups run", m.cleanup_runs.clone());
        r.register(
            "cleanup_deleted_captures",
            "Captures the spool cleanup deleted",
            m.cleanup_deleted.clone(),
        );
        r.register_with_unit(
            "cleanup_freed",
            "Bytes the spool cleanup freed",
            Unit::Bytes,
            m.cleanup_freed.clone(),
        );
        r.register(
            "auth_failures",
            "Logins refused for a wrong or unknown user or password",
            m.auth_failures.clone(),
        );
        r.register(
            "auth_lockouts",
            "Logins refused without a check: too many failures from the address",
            m.auth_lockouts.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes, by result (ok, failed, timeout)",
            m.tls_handshakes.clone(),
        );
        r.register(
            "http_connections",
            "Client connections open",
            m.connections.clone(),
        );
        r.register(
            "capture_streams",
            "Capture responses being sent",
            m.capture_streams.clone(),
        );
        r.register("jobs", "Jobs known, by state", m.jobs.clone());
        r.register(
            "job_queue_depth",
            "Jobs waiting for a merge slot",
            m.queue_depth.clone(),
        );
        r.register(
            "spool_captures",
            "Complete captures kept in the spool",
            m.spool_files.clone(),
        );
        r.register_with_unit(
            "spool",
            "Bytes of the captures kept in the spool",
            Unit::Bytes,
            m.spool_bytes.clone(),
        );
        r.register_with_unit(
            "spool_free",
            "Free bytes on the spool's file system",
            Unit::Bytes,
            m.spool_free_bytes.clone(),
        );
        r.register(
            "spool_free_inodes",
            "Free inodes on the spool's file system",
            m.spool_free_inodes.clone(),
        );
        r.register(
            "upstream_up",
            "Whether the upstream answered its last health check (1) or not (0)",
            m.upstream_up.clone(),
        );
        r.register(
            "upstream_files",
            "A local directory's capture files, by kind (readable, unreadable, indexed, unindexable)",
            m.upstream_files.clone(),
        );
        r.register_with_unit(
            "index",
            "Bytes of a local directory's index files",
            Unit::Bytes,
            m.index_bytes.clone(),
        );
        r.register_with_unit(
            "index_backlog",
            "Bytes of capture waiting to be indexed",
            Unit::Bytes,
            m.index_backlog.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// A job was created (started or queued).
    pub fn job_started(&self) {
        self.jobs_started.inc();
    }

    /// A job ended in `state` after merging `packets` records of `bytes` bytes.
    pub fn job_ended(&self, state: State, packets: u64, bytes: u64) {
        self.jobs_ended
            .get_or_create(&StateLabel {
                state: state.as_str(),
            })
            .inc();
        self.merged_packets.inc_by(packets);
        self.merged_bytes.inc_by(bytes);
    }

    /// Upstream `name` was asked.
    pub fn upstream_asked(&self, name: &str) {
        self.upstream_requests
            .get_or_create(&UpstreamLabel {
                upstream: name.to_owned(),
            })
            .inc();
    }

    /// Upstream `name`'s first packets (or its end) came `after` it was asked.
    pub fn upstream_first_byte(&self, name: &str, after: Duration) {
        self.upstream_first_byte
            .get_or_create(&UpstreamLabel {
                upstream: name.to_owned(),
            })
            .observe(after.as_secs_f64());
    }

    /// Upstream `name`'s answer ended (whole or failed) `after` it was asked.
    pub fn upstream_done(&self, name: &str, after: Duration) {
        self.upstream_duration
            .get_or_create(&UpstreamLabel {
                upstream: name.to_owned(),
            })
            .observe(after.as_secs_f64());
    }

    /// Upstream `name` failed with `error`.
    pub fn upstream_failed(&self, name: &str, error: &upstream::Error) {
        self.upstream_failures
            .get_or_create(&FailureLabel {
                upstream: name.to_owned(),
                reason: error.kind(),
            })
            .inc();
    }

    /// A response with `status` ended after `bytes` body bytes (`capture`: a capture body).
    pub fn response(&self, status: u16, capture: bool, bytes: u64) {
        let code = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.responses.get_or_create(&CodeLabel { code }).inc();
        let kind = if capture { "capture" } else { "other" };
        self.served_bytes
            .get_or_create(&KindLabel { kind })
            .inc_by(bytes);
    }

    /// A capture response ended: `result` is `complete`, `aborted` or `disconnected`;
    /// `packets` those it delivered whole (a complete answer to a whole-file request).
    pub fn capture_served(&self, result: &'static str, packets: Option<u64>) {
        self.captures_served
            .get_or_create(&ResultLabel { result })
            .inc();
        if let Some(p) = packets {
            self.served_packets.inc_by(p);
        }
    }

    /// A capture response's head went out `after` its request came in.
    pub fn capture_head(&self, after: Duration) {
        self.capture_first_byte.observe(after.as_secs_f64());
    }

    /// A capture response began (`true`) or ended (`false`).
    pub fn capture_stream(&self, open: bool) {
        if open {
            self.capture_streams.inc();
        } else {
            self.capture_streams.dec();
        }
    }

    /// A client connection opened (`true`) or closed (`false`).
    pub fn connection(&self, open: bool) {
        if open {
            self.connections.inc();
        } else {
            self.connections.dec();
        }
    }

    /// A spool cleanup ran and deleted `captures` files of `bytes` bytes.
    pub fn cleanup(&self, captures: u64, bytes: u64) {
        self.cleanup_runs.inc();
        self.cleanup_deleted.inc_by(captures);
        self.cleanup_freed.inc_by(bytes);
    }

    /// A login was refused: a wrong password or user (`locked: false`), or refused unchecked
    /// because its address has failed too often (`locked: true`).
    pub fn login_refused(&self, locked: bool) {
        if locked {
            self.auth_lockouts.inc();
        } else {
            self.auth_failures.inc();
        }
    }

    /// A TLS handshake ended: `ok`, `failed` or `timeout`.
    pub fn tls_handshake(&self, result: &'static str) {
        self.tls_handshakes
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Sets the levels and encodes every series in `format`.
    pub fn encode(&self, levels: &Levels, format: Format) -> String {
        for (state, n) in &levels.jobs {
            self.jobs
                .get_or_create(&StateLabel {
                    state: state.as_str(),
                })
                .set(level(*n));
        }
        self.queue_depth.set(level(levels.queued));
        self.spool_files.set(level(levels.spool_files));
        self.spool_bytes.set(level(levels.spool_bytes));
        self.spool_free_bytes.set(level(levels.spool_free_bytes));
        match levels.spool_free_inodes {
            Some(n) => {
                self.spool_free_inodes
                    .get_or_create(&Vec::new())
                    .set(level(n));
            }
            None => {
                self.spool_free_inodes.remove(&Vec::new());
            }
        }
        for u in &levels.upstreams {
            let label = UpstreamLabel {
                upstream: u.name.clone(),
            };
            match u.up {
                Some(up) => {
                    self.upstream_up.get_or_create(&label).set(i64::from(up));
                }
                None => {
                    self.upstream_up.remove(&label);
                }
            }
            let Some(f) = &u.files else { continue };
            let files = |files: &'static str, n: u64| {
                self.upstream_files
                    .get_or_create(&FilesLabel {
                        upstream: u.name.clone(),
                        files,
                    })
                    .set(level(n));
            };
            files("readable", f.readable);
            files("unreadable", f.unreadable);
            if let Some(indexed) = f.indexed {
                files("indexed", indexed);
                files("unindexable", f.unindexable);
                self.index_bytes
                    .get_or_create(&label)
                    .set(level(f.index_bytes));
                self.index_backlog
                    .get_or_create(&label)
                    .set(level(f.backlog_bytes));
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        match format {
            Format::OpenMetrics => out,
            Format::Classic => classic(&out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_client_naming_openmetrics_gets_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Classic);
        assert_eq!(Format::negotiate(None), Format::Classic);
        for refused in [
            "application/openmetrics-text; q=0, text/plain",
            "application/openmetrics-text;q=0.0",
            "application/openmetrics-text; Q=0.000, */*",
            "text/plain, application/openmetrics-text;q=0.1",
            "application/openmetrics-text;q=nonsense",
        ] {
            assert_eq!(
                Format::negotiate(Some(refused)),
                Format::Classic,
                "{refused}"
            );
        }
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0;q=0.9,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
    }

    #[test]
    fn the_classic_form_names_counters_and_info_as_the_classic_format_does() {
        let m = Metrics::new();
        m.job_started();
        let text = m.encode(&Levels::default(), Format::Classic);
        assert!(text
            .contains("# TYPE docket_jobs_started_total counter\ndocket_jobs_started_total 1\n"));
        assert!(text.contains("# TYPE docket_build_info gauge\n"));
        assert!(!text.contains("# UNIT") && !text.contains("# EOF"));
        let om = m.encode(&Levels::default(), Format::OpenMetrics);
        assert!(om.contains("# TYPE docket_jobs_started counter\n"));
        assert!(om.ends_with("# EOF\n"));
    }
}
