//! What the API shows of jobs and upstreams, as typed `Serialize` structs: the JSON routes
//! serialise them and the UI renders the very same values (it never reads its own API's JSON
//! back by string keys).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::error::ApiError;
use super::AppState;
use crate::jobs::{Event, Job, Snapshot, State, UpstreamState, UpstreamStatus};
use crate::query::JobId;
use crate::upstream::Health;

/// Docket-py's job JSON: `{id, state, query, url, time}`, plus the owner.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// The job id.
    pub id: String,
    /// Its state.
    pub state: State,
    /// The query, every clause shown (`Query::describe`).
    pub query: String,
    /// Where its capture is.
    pub url: String,
    /// When it was requested (RFC 3339).
    pub time: String,
    /// Who first asked for it.
    pub user: Option<String>,
    /// Packets written.
    pub packets: u64,
    /// Bytes written so far.
    pub bytes: u64,
    /// Whether there is a capture to download (running or complete).
    pub capture: bool,
    /// What the indexes estimated of its answer before it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<crate::jobs::Weight>,
}

impl JobView {
    /// The view of `job` now.
    pub fn of(state: &AppState, job: &Job) -> JobView {
        let (st, packets, bytes, direct) = job.with(|s| {
            let direct = matches!(s.mode, crate::jobs::Mode::Direct(_));
            (s.state, s.packets, s.bytes, direct)
        });
        JobView {
            id: job.id.to_string(),
            state: st,
            query: job.query.describe(),
            url: url(state, job),
            time: rfc3339_ms(job.created),
            user: job.user.clone(),
            packets,
            bytes,
            // A finished job streamed without a spool kept nothing to download.
            capture: match st {
                State::Running => true,
                State::Completed | State::Partial => !direct,
                _ => false,
            },
            estimate: job.estimate().cloned(),
        }
    }
}

/// One job in `/status`: Docket-py's `{state, requests, events, successes}` plus per-upstream
/// progress and counts.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// Overall state.
    pub state: State,
    /// The query, every clause shown (`Query::describe`).
    pub query: String,
    /// Who first asked for it.
    pub user: Option<String>,
    /// Per upstream, by name (Docket-py's `requests`).
    pub requests: BTreeMap<String, UpstreamStatus>,
    /// History.
    pub events: Vec<Event>,
    /// The upstreams that answered in full.
    pub successes: Vec<UpstreamStatus>,
    /// Per upstream, in order.
    pub upstreams: Vec<UpstreamStatus>,
    /// Packets written.
    pub packets: u64,
    /// Bytes written.
    pub bytes: u64,
    /// A limit ended the merge early.
    pub truncated_by_limit: bool,
    /// Final, with nothing in it.
    pub no_packets: bool,
    /// `spooled` or `direct`, with the reason.
    #[serde(flatten)]
    pub mode: crate::jobs::Mode,
    /// What ended it.
    pub end: Option<String>,
}

impl StatusView {
    /// The status of `job` now.
    pub fn of(job: &Job) -> StatusView {
        let s: Snapshot = job.snapshot();
        StatusView {
            state: s.state,
            query: job.query.describe(),
            user: job.user.clone(),
            requests: s
                .upstreams
                .iter()
                .map(|u| (u.name.clone(), u.clone()))
                .collect(),
            successes: s
                .upstreams
                .iter()
                .filter(|u| u.state == UpstreamState::Done)
                .cloned()
                .collect(),
            no_packets: s.state.is_final() && s.packets == 0,
            events: s.events,
            upstreams: s.upstreams,
            packets: s.packets,
            bytes: s.bytes,
            truncated_by_limit: s.truncated_by_limit,
            mode: s.mode,
            end: s.end.map(|e| e.to_string()),
        }
    }
}

/// The spool's line in `/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct SpoolStats {
    /// Docket-py's `[free bytes, free inodes]` (inodes `null` on a file system without an
    /// inode limit).
    #[serde(rename = "Free space")]
    pub free_space: (u64, Option<u64>),
    /// Jobs known.
    pub jobs: usize,
}

/// `/stats`: each upstream's health by name, and the spool under `docket`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsView {
    /// Per upstream, in configuration order.
    #[serde(flatten)]
    pub upstreams: indexmap_free::Ordered<Health>,
    /// The gateway itself.
    pub docket: SpoolStats,
}

/// A name → value map that serialises in insertion order (configuration order).
pub mod indexmap_free {
    use serde::ser::{Serialize, SerializeMap, Serializer};

    /// See the module documentation.
    #[derive(Debug, Clone, Default)]
    pub struct Ordered<T>(pub Vec<(String, T)>);

    impl<T: Serialize> Serialize for Ordered<T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }
}

/// Upstreams' health (sensors asked concurrently, each within its `stats_timeout`; a dead one
/// shows as down, never as an error of the route), restricted to `names` when given.
pub async fn stats(state: &AppState, names: &[&str]) -> StatsView {
    let names: Vec<&str> = names.iter().flat_map(|n| n.split(',')).collect();
    let mut checks = tokio::task::JoinSet::new();
    for (i, u) in state.registry.upstreams().iter().enumerate() {
        if names.is_empty() || names.contains(&u.name()) {
            let u = u.clone();
            checks.spawn(async move { (i, u.name().to_owned(), u.health().await) });
        }
    }
    let mut healths = checks.join_all().await;
    healths.sort_by_key(|(i, _, _)| *i);
    let spool = state.registry.spool();
    StatsView {
        upstreams: indexmap_free::Ordered(healths.into_iter().map(|(_, n, h)| (n, h)).collect()),
        docket: SpoolStats {
            free_space: (spool.free_bytes(), spool.free_inodes()),
            jobs: state.registry.all().len(),
        },
    }
}

/// A job's capture URL.
pub fn url(state: &AppState, job: &Job) -> String {
    format!("{}{}/merged.pcap", state.config.prefix, job.id)
}

/// RFC 3339 of a system time.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    crate::query::rfc3339(crate::pcap::Timestamp::from(t).as_nanos())
}

/// RFC 3339 to the millisecond, always with its three digits (`2026-11-30T16:35:12.340Z`):
/// when a job was asked for, as the jobs table shows it.
pub fn rfc3339_ms(t: std::time::SystemTime) -> String {
    let ns = crate::pcap::Timestamp::from(t).as_nanos();
    let ms = ns.div_euclid(1_000_000);
    let whole = crate::query::rfc3339(ms.div_euclid(1000) * 1_000_000_000);
    format!(
        "{}.{:03}Z",
        whole.trim_end_matches('Z'),
        ms.rem_euclid(1000)
    )
}

/// `/jobs?limit=N&before=ID&state=S&user=U`: newest first, a page of `limit` jobs older than
/// job `before` (the last id of the previous page), filtered by state and owner.
#[derive(Debug, Default)]
pub struct Listing {
    /// Most jobs on the page.
    pub limit: Option<usize>,
    /// Only jobs after this one in the listing (older).
    pub before: Option<JobId>,
    /// Only jobs in one of these states (empty: all).
    pub states: Vec<State>,
    /// Only jobs of this user.
    pub user: Option<String>,
}

impl Listing {
    /// Reads the URL's query string.
    ///
    /// # Errors
    /// A parameter that cannot be read, named.
    pub fn parse(q: Option<&str>) -> Result<Listing, ApiError> {
        Listing::parse_as(q, false)
    }

    /// [`Listing::parse`], with `docket_py` the `api/` routes' state names too: `Created`,
    /// `Requesting`, and `Completed`/`Failed` as they read there (a partial answer is
    /// `Completed`, a cancelled job `Failed`).
    ///
    /// # Errors
    /// A parameter that cannot be read, named.
    pub fn parse_as(q: Option<&str>, docket_py: bool) -> Result<Listing, ApiError> {
        let mut l = Listing::default();
        let bad = |name: &'static str, value: &str, message: &str| ApiError::BadParameter {
            name,
            value: value.to_owned(),
            message: message.to_owned(),
        };
        for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
            match &*k {
                "limit" => {
                    l.limit = Some(
                        v.parse()
                            .map_err(|_| bad("limit", &v, "limit is a number of jobs"))?,
                    )
                }
                "before" => {
                    l.before = Some(
                        v.parse()
                            .map_err(|_| bad("before", &v, "before is a job id"))?,
                    )
                }
                "state" => {
                    l.states = match (&*v, docket_py) {
                        ("Created", true) => vec![State::Queued],
                        ("Requesting", true) => vec![State::Running],
                        ("Completed", true) => vec![State::Completed, State::Partial],
                        ("Failed", true) => vec![State::Failed, State::Cancelled],
                        _ => vec![State::parse(&v).ok_or_else(|| {
                            bad(
                                "state",
                                &v,
                                if docket_py {
                                    "state is one of Created, Requesting, Completed, Failed"
                                } else {
                                    "state is one of Queued, Running, Completed, Partial, \
                                     Failed, Cancelled"
                                },
                            )
                        })?],
                    }
                }
                "user" => l.user = Some(v.into_owned()),
                _ => {}
            }
        }
        Ok(l)
    }

    /// The page of `jobs` (given oldest first).
    pub fn apply(&self, state: &AppState, jobs: &[Arc<Job>]) -> Vec<JobView> {
        let mut newest_first = jobs.iter().rev();
        if let Some(b) = &self.before {
            // Skip up to and including the cursor (all, if it is unknown: an empty page).
            for j in newest_first.by_ref() {
                if j.id == *b {
                    break;
                }
            }
        }
        newest_first
            .filter(|j| self.states.is_empty() || self.states.contains(&j.state()))
            .filter(|j| {
                self.user
                    .as_deref()
                    .is_none_or(|u| j.user.as_deref() == Some(u))
            })
            .take(self.limit.unwrap_or(usize::MAX))
            .map(|j| JobView::of(state, j))
            .collect()
    }
}

/// An HTTP date (IMF-fixdate, RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: std::time::SystemTime) -> String {
    let secs = whole_seconds(t);
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    dt.format(IMF_FIXDATE).unwrap_or_default()
}

/// Seconds since the epoch of an HTTP date in IMF-fixdate form (what every current client
/// sends); `None` for anything else (RFC 9110: an invalid date is ignored).
pub fn parse_http_date(s: &str) -> Option<i64> {
    time::PrimitiveDateTime::parse(s.trim(), IMF_FIXDATE)
        .ok()
        .map(|dt| dt.assume_utc().unix_timestamp())
}

/// `t` in whole seconds since the epoch (HTTP dates have no fraction).
pub fn whole_seconds(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

const IMF_FIXDATE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// `/readyz`: whether Docket can answer queries now, and why not.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyView {
    /// Ready: the spool can be written (and has `free_bytes`), the password file (if any) can
    /// be read, and at least one upstream answered its last check.
    pub ready: bool,
    /// Why not (empty when ready).
    pub reasons: Vec<String>,
    /// This answer itself proves the listener serves.
    pub listening: bool,
    /// The spool.
    pub spool: SpoolReady,
    /// Each upstream's last health check, in configuration order.
    pub upstreams: indexmap_free::Ordered<UpstreamReady>,
    /// Bytes of capture the local directories still have to index (queries scan them
    /// meanwhile: slower, never wrong).
    pub index_backlog_bytes: u64,
}

/// The spool's part of `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct SpoolReady {
    /// A file could be created and written there just now.
    pub writable: bool,
    /// Free bytes on its file system.
    pub free_bytes: u64,
    /// Why it cannot be written (shown to users only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One upstream's part of `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamReady {
    /// "local" or "stenographer" (`null` until its first check).
    pub kind: Option<&'static str>,
    /// Up at its last check (`null`: not checked yet).
    pub up: Option<bool>,
    /// When it was last checked (RFC 3339).
    pub checked: Option<String>,
    /// Why it is down (shown to users only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `/readyz` (see [`ReadyView`]); `detailed`: the asker is a user (or nobody logs in), who
/// also sees why the spool or an upstream is down. Anonymous probes see states only: error
/// texts name paths and addresses.
pub async fn ready(state: &AppState, detailed: bool) -> (bool, ReadyView) {
    let detailed = detailed || !state.config.login_required;
    let writable = state.registry.spool().writable(&state.spool_probe).await;
    let mut reasons = Vec::new();
    let free_bytes = match &writable {
        Ok(free) => {
            if let Some(floor) = state.registry.space_floor_unmet(*free) {
                reasons.push(format!(
                    "the spool has {free} bytes free, under free_bytes ({floor}): new jobs are refused"
                ));
            }
            *free
        }
        Err(_) => {
            reasons.push("the spool cannot be written".to_owned());
            0
        }
    };
    if let Some(Err(e)) = state.htpasswd.as_ref().map(super::auth::Htpasswd::readable) {
        reasons.push(if detailed {
            format!("the password file cannot be read ({e}): every login is refused")
        } else {
            "the password file cannot be read: every login is refused".to_owned()
        });
    }
    let latest = state.monitor.latest();
    let mut upstreams = Vec::new();
    let (mut up, mut unchecked) = (0, 0);
    for (name, checked) in latest {
        let view = match checked {
            None => {
                unchecked += 1;
                UpstreamReady {
                    kind: None,
                    up: None,
                    checked: None,
                    error: None,
                }
            }
            Some(c) => {
                up += usize::from(c.health.up);
                UpstreamReady {
                    kind: Some(c.health.kind),
                    up: Some(c.health.up),
                    checked: Some(rfc3339(c.at)),
                    error: c.health.error.filter(|_| detailed),
                }
            }
        };
        upstreams.push((name.to_owned(), view));
    }
    if up == 0 {
        reasons.push(if upstreams.is_empty() {
            "no upstream is configured".to_owned()
        } else if unchecked > 0 {
            "upstreams not checked yet (starting)".to_owned()
        } else {
            "every upstream is down".to_owned()
        });
    }
    let index_backlog_bytes = state
        .registry
        .upstreams()
        .iter()
        .filter_map(|u| match u {
            crate::upstream::Upstream::Local(l) => l.files().index.map(|i| i.backlog_bytes),
            crate::upstream::Upstream::Stenographer(_) => None,
        })
        .sum();
    let ready = reasons.is_empty();
    (
        ready,
        ReadyView {
            ready,
            reasons,
            listening: true,
            spool: SpoolReady {
                writable: writable.is_ok(),
                free_bytes,
                error: writable.err().filter(|_| detailed),
            },
            upstreams: indexmap_free::Ordered(upstreams),
            index_backlog_bytes,
        },
    )
}

/// The metrics exposition: the levels read now (jobs, spool, upstreams' last checks and
/// indexes), then every series.
pub async fn metrics(state: &AppState, format: crate::metrics::Format) -> String {
    use crate::metrics::{FileLevels, Levels, UpstreamLevel};
    let jobs = state.registry.all();
    let mut by_state: Vec<(State, u64)> = State::ALL.iter().map(|&s| (s, 0)).collect();
    for j in &jobs {
        let st = j.state();
        if let Some(e) = by_state.iter_mut().find(|(s, _)| *s == st) {
            e.1 += 1;
        }
    }
    let queued = by_state
        .iter()
        .find(|(s, _)| *s == State::Queued)
        .map_or(0, |e| e.1);
    let spool = state.registry.spool().clone();
    let (files, free, inodes) = tokio::task::spawn_blocking(move || {
        (spool.list(), spool.free_bytes(), spool.free_inodes())
    })
    .await
    .unwrap_or_default();
    let latest = state.monitor.latest();
    let upstreams = state
        .registry
        .upstreams()
        .iter()
        .zip(latest)
        .map(|(u, (name, checked))| UpstreamLevel {
            name: name.to_owned(),
            up: checked.map(|c| c.health.up),
            files: match u {
                crate::upstream::Upstream::Local(l) => {
                    let f = l.files();
                    let index = f.index.clone().unwrap_or_default();
                    Some(FileLevels {
                        readable: f.readable as u64,
                        unreadable: f.unreadable.len() as u64,
                        indexed: f.index.as_ref().map(|i| i.indexed as u64),
                        unindexable: index.unindexable as u64,
                        index_bytes: index.index_bytes,
                        backlog_bytes: index.backlog_bytes,
                    })
                }
                crate::upstream::Upstream::Stenographer(_) => None,
            },
        })
        .collect();
    let levels = Levels {
        jobs: by_state,
        queued,
        spool_files: files.len() as u64,
        spool_bytes: files.iter().map(|f| f.len).sum(),
        spool_free_bytes: free,
        spool_free_inodes: inodes,
        upstreams,
    };
    state.registry.metrics().encode(&levels, format)
}
