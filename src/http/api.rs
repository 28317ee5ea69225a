//! Routes, all under the configured prefix (default `/app/docket/`):
//!
//! | route | answer |
//! |---|---|
//! | `GET q/<clauses…>` | job JSON `{id, state, query, url, time}` (starts or joins the job) |
//! | `GET q/<clauses…>/pcap` | the merged capture, streamed as it is merged |
//! | `POST q` (JSON or form) | job JSON |
//! | `GET api/uri/<clauses…>` | job JSON (Docket-py's click-to-pcap path; no redirect loop) |
//! | `GET <id>/merged.pcap` | the capture: streamed while the job runs, `Range` when complete |
//! | `GET status[/<ids>]`, `ids[/<ids>]`, `urls[/<ids>]`, `jobs`, `stats` | Docket-py's shapes, plus per-upstream progress |
//! | `DELETE <id>` | cancels and removes the job |
//! | `GET healthz` | `ok` |
//! | `GET` (the prefix itself), `GET ui/…` | the web UI (see [`super::ui`]) |
//!
//! [`ROUTES`] lists one example request per route, so tests can walk the table.
//!
//! Routes that start or serve a job attach an [`AuditInfo`] to the response; the front door
//! turns it into the audit line.
//!
//! A capture response is `application/vnd.tcpdump.pcap`, chunked while the job runs. If the
//! job fails mid-stream the body is aborted, so the client sees a truncated transfer rather
//! than a clean end of a wrong file.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::audit::AuditInfo;
use super::front::User;
use super::{error, full, json, AppState, Body};
use crate::jobs::{self, Job, State};
use crate::pcap::Timestamp;
use crate::query::{self, JobId, Query, QueryConfig};
use crate::spool::{self, FollowEnd};

/// Piece size when serving a complete (mapped) spool file.
const HIT_CHUNK: usize = 1024 * 1024;

/// Largest request body accepted (a query is tiny).
pub const MAX_BODY: usize = 64 * 1024;

/// Chunks buffered between a capture's reader task and hyper: backpressure from a slow client
/// stops the reader (not the job: the job writes the spool). With `spool::READ_CHUNK`, what
/// one client can hold in memory.
const BODY_CHUNKS: usize = 2;

/// One example request (method, path under the prefix) for every route, in the order the
/// router tries them; `{id}` stands for a job id. Tests walk this table (every route must
/// refuse a request without a user), so a new route belongs here too.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", ""),
    ("GET", "ui/jobs"),
    ("GET", "ui/jobs.json"),
    ("GET", "ui/job/{id}"),
    ("GET", "ui/sensors"),
    ("GET", "ui/app.js"),
    ("GET", "ui/style.css"),
    ("GET", "q/host/10.0.0.1/after/5m"),
    ("GET", "q/host/10.0.0.1/after/5m/pcap"),
    ("GET", "api/uri/host/10.0.0.1/after/5m"),
    ("POST", "q"),
    ("POST", "api"),
    ("GET", "{id}/merged.pcap"),
    ("DELETE", "{id}"),
    ("GET", "status"),
    ("GET", "status/{id}"),
    ("GET", "ids"),
    ("GET", "urls"),
    ("GET", "jobs"),
    ("GET", "stats"),
    ("GET", "no/such/route"),
];

fn user_of(req: &Request<Incoming>) -> Option<String> {
    req.extensions().get::<User>().map(|u| u.0.clone())
}

/// Adds the audit record to a response.
fn audited(
    mut r: Response<Body>,
    query: Option<&Query>,
    job: Option<&JobId>,
    capture: bool,
) -> Response<Body> {
    r.extensions_mut().insert(AuditInfo {
        query: query.map(Query::canonical),
        job: job.map(JobId::to_string),
        capture,
    });
    r
}

/// Handles one request.
pub async fn handle(req: Request<Incoming>, state: Arc<AppState>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let prefix = &state.config.prefix;
    if path == prefix.trim_end_matches('/') {
        return Response::builder()
            .status(StatusCode::MOVED_PERMANENTLY)
            .header(header::LOCATION, prefix.as_str())
            .body(full(""))
            .expect("valid response");
    }
    let Some(rest) = path.strip_prefix(prefix.as_str()) else {
        return error(StatusCode::NOT_FOUND, "not found", None, None);
    };
    let rest = rest.to_owned();
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    match (method, segs.as_slice()) {
        (Method::GET, ["healthz"]) => Response::new(full("ok\n")),
        (Method::GET, []) | (Method::GET, ["ui", ..]) => {
            let user = user_of(&req);
            super::ui::handle(&state, &segs, user.as_deref()).await
        }
        (Method::GET, ["q", clauses @ ..]) | (Method::GET, ["api", "uri", clauses @ ..]) => {
            let (clauses, want_pcap) = match clauses.split_last() {
                Some((&"pcap", head)) => (head, true),
                _ => (clauses, false),
            };
            let q = match query::parse_path(&clauses.join("/"), now(), &query_config(&state)) {
                Ok(q) => q,
                Err(e) => return audited(query_error(&e), None, None, want_pcap),
            };
            start(&state, q, want_pcap, &req).await
        }
        (Method::POST, ["q"]) | (Method::POST, ["api"]) => post_query(req, &state).await,
        (Method::GET, [id, "merged.pcap"]) => match id.parse::<JobId>() {
            Ok(id) => match state.registry.get(&id) {
                Some(job) => {
                    let q = job.query.clone();
                    audited(capture(&state, job, &req).await, Some(&q), Some(&id), true)
                }
                None => match state.registry.spool().lookup(&id.to_string()) {
                    Some((path, _)) => {
                        audited(complete_file(&path, &id, &req), None, Some(&id), true)
                    }
                    None => error(
                        StatusCode::NOT_FOUND,
                        "no such job",
                        Some("id"),
                        Some(&id.to_string()),
                    ),
                },
            },
            Err(_) => error(StatusCode::NOT_FOUND, "not a job id", Some("id"), Some(id)),
        },
        (Method::DELETE, [id]) => match id.parse::<JobId>() {
            Ok(id) if state.registry.remove(&id) => json(
                StatusCode::OK,
                &serde_json::json!({"id": id.to_string(), "deleted": true}),
            ),
            Ok(id) => error(
                StatusCode::NOT_FOUND,
                "no such job",
                Some("id"),
                Some(&id.to_string()),
            ),
            Err(_) => error(StatusCode::NOT_FOUND, "not a job id", Some("id"), Some(id)),
        },
        (Method::GET, ["status", ids @ ..]) => json(StatusCode::OK, &status_map(&state, ids)),
        (Method::GET, ["ids", ids @ ..]) => {
            let v: Vec<String> = selected(&state, ids)
                .iter()
                .map(|j| j.id.to_string())
                .collect();
            json(StatusCode::OK, &serde_json::json!(v))
        }
        (Method::GET, ["urls", ids @ ..]) => {
            let mut m = serde_json::Map::new();
            for j in selected(&state, ids) {
                if matches!(
                    j.state(),
                    State::Completed | State::Partial | State::Running | State::Queued
                ) {
                    m.insert(j.id.to_string(), url(&state, &j.id).into());
                }
            }
            json(StatusCode::OK, &serde_json::Value::Object(m))
        }
        (Method::GET, ["jobs"]) => {
            let v: Vec<serde_json::Value> = state
                .registry
                .all()
                .iter()
                .map(|j| job_json(&state, j))
                .collect();
            json(StatusCode::OK, &serde_json::json!(v))
        }
        (Method::GET, ["stats", names @ ..]) => json(StatusCode::OK, &stats(&state, names).await),
        (_, _) => error(
            StatusCode::NOT_FOUND,
            "unrecognised request: try q/…, status, stats, ids, urls or jobs",
            None,
            None,
        ),
    }
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(d.as_nanos() as i128)
}

fn query_config(state: &AppState) -> QueryConfig {
    QueryConfig {
        time_window_secs: state.config.time_window,
        long_ago_secs: state.config.long_ago,
    }
}

fn query_error(e: &query::Error) -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        &e.message,
        Some(&e.clause),
        Some(&e.value),
    )
}

pub(super) fn url(state: &AppState, id: &JobId) -> String {
    format!("{}{id}/merged.pcap", state.config.prefix)
}

pub(super) fn rfc3339(t: std::time::SystemTime) -> String {
    let ns = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    query::rfc3339(ns)
}

/// Docket-py's job JSON.
pub(super) fn job_json(state: &AppState, j: &Job) -> serde_json::Value {
    serde_json::json!({
        "id": j.id.to_string(),
        "state": j.state(),
        "query": j.query.stenographer(),
        "url": url(state, &j.id),
        "time": rfc3339(j.created),
    })
}

async fn post_query(req: Request<Incoming>, state: &AppState) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, ());
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body over {MAX_BODY} bytes"),
                Some("body"),
                None,
            )
        }
    };
    let parsed = if ctype.starts_with("application/json") {
        query::parse_json(&body, now(), &query_config(state))
    } else if ctype.starts_with("application/x-www-form-urlencoded") || ctype.is_empty() {
        query::parse_form(&body, now(), &query_config(state))
    } else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json or application/x-www-form-urlencoded",
            Some("content-type"),
            Some(&ctype),
        );
    };
    match parsed {
        Ok(q) => start(state, q, false, &req).await,
        Err(e) => audited(query_error(&e), None, None, false),
    }
}

fn registry_error(e: &jobs::Error) -> Response<Body> {
    match e {
        jobs::Error::InsufficientStorage { .. } => {
            error(StatusCode::INSUFFICIENT_STORAGE, &e.to_string(), None, None)
        }
        jobs::Error::Busy(_) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None, None),
        jobs::Error::UnknownSensor(s) => error(
            StatusCode::BAD_REQUEST,
            &e.to_string(),
            Some("sensor"),
            Some(s),
        ),
    }
}

async fn start<B>(state: &AppState, q: Query, want_pcap: bool, req: &Request<B>) -> Response<Body> {
    let id = q.id();
    let r = match state.registry.get_or_start(q.clone()) {
        Ok(job) => {
            if let Some(u) = req.extensions().get::<User>() {
                state.note_requester(job.id, &u.0);
            }
            if want_pcap {
                capture(state, job, req).await
            } else {
                json(StatusCode::OK, &job_json(state, &job))
            }
        }
        Err(e) => registry_error(&e),
    };
    audited(r, Some(&q), Some(&id), want_pcap)
}

fn pcap_headers(id: &JobId) -> http::response::Builder {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/vnd.tcpdump.pcap")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{id}.pcap\""),
        )
        .header(header::ACCEPT_RANGES, "bytes")
}

/// A job's capture: the complete file if there is one, else a stream that follows the spool.
async fn capture<B>(state: &AppState, job: Arc<Job>, req: &Request<B>) -> Response<Body> {
    let gone = |why: &str| error(StatusCode::GONE, why, Some("id"), Some(&job.id.to_string()));
    let mut progress = job.progress();
    loop {
        progress.borrow_and_update();
        let st = job.state();
        // A finished job's kept file: length, ranges, no feed needed.
        if matches!(st, State::Completed | State::Partial) {
            if let Some((path, _)) = state.registry.spool().lookup(&job.id.to_string()) {
                return complete_file(&path, &job.id, req);
            }
        }
        if matches!(st, State::Failed | State::Cancelled) {
            return gone("the job ended without a capture; ask again to run it again");
        }
        if !job.feed().replayable() {
            return gone("the capture was streamed without a spool and its start is gone; ask again to run the job again");
        }
        if job.feed().is_direct() {
            return follow(job, None);
        }
        if let Some(part) = job.part_path() {
            // Open the part file now: the descriptor survives the rename (or the unlink) at
            // the end, and serves whatever has left the feed.
            if let Ok(f) = std::fs::File::open(&part) {
                return follow(job, Some(f));
            }
        }
        if st.is_final() {
            return gone("the capture was removed from the spool; ask again to run the job again");
        }
        // Queued, or between its part file and its final name: wait for the spool to move.
        // Not every change is published there (a job ending, a switch to direct streaming):
        // look again at least every 50 ms.
        tokio::select! {
            _ = progress.changed() => {}
            () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
}

/// How long a client of a job streaming without a spool may take nothing before it is cut
/// off (it paces the job and every other client).
const DIRECT_STALL: std::time::Duration = std::time::Duration::from_secs(60);

fn follow(job: Arc<Job>, file: Option<std::fs::File>) -> Response<Body> {
    let (mut tx, body) = http_body_util::channel::Channel::<
        Bytes,
        Box<dyn std::error::Error + Send + Sync>,
    >::new(BODY_CHUNKS);
    let mut follower = spool::Follower::new(file, job.feed());
    let id = job.id;
    let feed = Arc::clone(job.feed());
    tokio::spawn(async move {
        loop {
            match follower.next().await {
                Ok(chunk) => {
                    // Without a spool the slowest client paces the job: one that stops reading
                    // altogether is cut off rather than holding every other client (and the
                    // job's slot) forever.
                    let budget = if feed.is_direct() {
                        DIRECT_STALL
                    } else {
                        std::time::Duration::MAX
                    };
                    match tokio::time::timeout(budget, tx.send_data(chunk)).await {
                        Ok(Ok(())) => {}
                        // The client went away; the job goes on without it.
                        Ok(Err(_)) => return,
                        Err(_) => {
                            tracing::info!(job = %id, "a client stalled a direct stream; cut off");
                            tx.abort("client stalled".into());
                            return;
                        }
                    }
                }
                Err(FollowEnd::Complete) => return,
                Err(FollowEnd::Failed(why)) => {
                    tracing::info!(job = %id, %why, "capture stream aborted");
                    // No final chunk: the client sees a truncated transfer.
                    tx.abort(why.into());
                    return;
                }
            }
        }
    });
    pcap_headers(&id)
        .status(StatusCode::OK)
        .body(body.boxed())
        .expect("valid response")
}

/// A complete spool file: mapped, with `Content-Length`, and one `Range` if asked.
fn complete_file<B>(path: &std::path::Path, id: &JobId, req: &Request<B>) -> Response<Body> {
    // SAFETY: complete spool files are never truncated, only unlinked (see `spool`).
    let data = match std::fs::File::open(path).and_then(|f| unsafe { crate::mapped::map_file(&f) })
    {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot map a spool file");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (see the server log)",
                None,
                None,
            );
        }
    };
    let total = data.len() as u64;
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| parse_range(r, total));
    let (status, slice, content_range) = match range {
        None => (StatusCode::OK, data, None),
        Some(Some((a, b))) => (
            StatusCode::PARTIAL_CONTENT,
            data.slice(a as usize..=b as usize),
            Some(format!("bytes {a}-{b}/{total}")),
        ),
        Some(None) => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{total}"))
                .body(full(""))
                .expect("valid response")
        }
    };
    let mut b = pcap_headers(id)
        .status(status)
        .header(header::CONTENT_LENGTH, slice.len());
    if let Some(cr) = content_range {
        b = b.header(header::CONTENT_RANGE, cr);
    }
    // Served in pieces of the map (file-backed memory, not copies): large pieces, since they
    // cost no anonymous memory.
    let (mut tx, body) = http_body_util::channel::Channel::<
        Bytes,
        Box<dyn std::error::Error + Send + Sync>,
    >::new(BODY_CHUNKS);
    tokio::spawn(async move {
        let mut rest = slice;
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(HIT_CHUNK));
            if tx.send_data(piece).await.is_err() {
                return;
            }
        }
    });
    b.body(body.boxed()).expect("valid response")
}

/// One `bytes=a-b` / `bytes=a-` / `bytes=-n` range within `total`; None if unsatisfiable.
fn parse_range(h: &str, total: u64) -> Option<(u64, u64)> {
    let spec = h.strip_prefix("bytes=")?;
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (total.saturating_sub(n), total - 1)
    } else {
        let s: u64 = a.parse().ok()?;
        let e: u64 = if b.is_empty() {
            total - 1
        } else {
            b.parse::<u64>().ok()?.min(total - 1)
        };
        (s, e)
    };
    (start <= end && start < total).then_some((start, end))
}

/// Jobs named in `ids` (separated by `,`, `;`, `+` or spaces), or all.
pub(super) fn selected(state: &AppState, ids: &[&str]) -> Vec<Arc<Job>> {
    let wanted: Vec<JobId> = ids
        .iter()
        .flat_map(|s| s.split([',', ';', '+', ' ', '\t']))
        .filter_map(|s| s.parse().ok())
        .collect();
    if ids.is_empty() {
        state.registry.all()
    } else {
        wanted
            .iter()
            .filter_map(|id| state.registry.get(id))
            .collect()
    }
}

/// `{id: {state, requests, events, successes, upstreams, packets, bytes, truncated_by_limit}}`.
pub(super) fn status_map(state: &AppState, ids: &[&str]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for j in selected(state, ids) {
        let s = j.status();
        let requests: serde_json::Map<String, serde_json::Value> = s
            .upstreams
            .iter()
            .map(|u| (u.name.clone(), serde_json::to_value(u).unwrap_or_default()))
            .collect();
        let successes: Vec<&jobs::UpstreamProgress> =
            s.upstreams.iter().filter(|u| u.state == "done").collect();
        m.insert(
            j.id.to_string(),
            serde_json::json!({
                "state": s.state,
                "query": j.query.stenographer(),
                "requests": requests,
                "events": s.events,
                "successes": successes,
                "upstreams": s.upstreams,
                "packets": s.packets,
                "bytes": s.bytes,
                "truncated_by_limit": s.truncated_by_limit,
                "no_packets": s.state.is_final() && s.packets == 0,
            }),
        );
    }
    serde_json::Value::Object(m)
}

/// Docket-py's `/stats` shape: `{sensor: {...}, "docket": {"Free space": [bytes, inodes]}}`,
/// each upstream with its health (`up`, `oldest_timestamp`, a sensor's own counters under
/// `stats`). Sensors are asked concurrently, each within its `stats_timeout`; a dead one shows
/// as down, never as an error of this route. `names` restricts the upstreams shown.
pub(super) async fn stats(state: &AppState, names: &[&str]) -> serde_json::Value {
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
    let mut m = serde_json::Map::new();
    for (_, name, h) in healths {
        m.insert(name, serde_json::to_value(h).unwrap_or_default());
    }
    m.insert(
        "docket".into(),
        serde_json::json!({ "Free space": [state.registry.spool().free_bytes(), 0], "jobs": state.registry.all().len() }),
    );
    serde_json::Value::Object(m)
}
