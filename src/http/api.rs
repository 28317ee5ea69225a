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
use super::error::{self, ApiError};
use super::views::{self, JobView, StatusView};
use super::wire::{Guarded, Wire};
use super::{full, json, AppState, Body, User};
use crate::jobs::{Capture, Job, State};
use crate::pcap::Timestamp;
use crate::query::{self, JobId, Query};
use crate::spool::{Complete, FollowEnd, Follower, Ranged};

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
    ("GET", "q/host/10.0.0.1/after/5m/estimate"),
    ("POST", "q/estimate"),
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
        request: String::new(),
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
        return ApiError::NoRoute.into_response();
    };
    let rest = rest.to_owned();
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, ());
    // Packet routes carry their audit record whatever the outcome.
    let mut body = Some(body);
    let (audit, r) = route(&req, &mut body, &state, &segs).await;
    let r = r.unwrap_or_else(ApiError::into_response);
    if let Some(unread) = body {
        super::front::drain_beside(unread, &state);
    }
    match audit {
        Some((q, id, capture)) => audited(r, q.as_ref(), id.as_ref(), capture),
        None => r,
    }
}

/// What the audit line says of a packet route: its query, its job, and whether it served a
/// capture.
type AuditOf = Option<(Option<Query>, Option<JobId>, bool)>;

async fn route(
    req: &Request<()>,
    body: &mut Option<Incoming>,
    state: &Arc<AppState>,
    segs: &[&str],
) -> (AuditOf, Result<Response<Body>, ApiError>) {
    // HEAD is answered as GET; the front door sends the headers only.
    let method = match req.method() {
        &Method::HEAD => Method::GET,
        m => m.clone(),
    };
    let plain = |r| (None, r);
    match (method, segs) {
        (Method::GET, ["healthz"]) => plain(Ok(Response::new(full("ok\n")))),
        (Method::GET, []) | (Method::GET, ["ui", ..]) => plain(Ok(super::ui::handle(
            state,
            segs,
            user_of(req),
            req.uri().query(),
        )
        .await)),
        // The dry run: what the indexes estimate of the answer; no job starts.
        (Method::GET, ["q", clauses @ .., "estimate"]) => plain(
            match query::parse_path(&clauses.join("/"), Timestamp::now(), &state.query_config()) {
                Ok(q) => estimate(state, &q).await,
                Err(e) => Err(e.into()),
            },
        ),
        (Method::POST, ["q", "estimate"]) => plain(match read_query(req, body, state).await {
            Ok(q) => estimate(state, &q).await,
            Err(e) => Err(e),
        }),
        (Method::GET, ["q", clauses @ ..]) | (Method::GET, ["api", "uri", clauses @ ..]) => {
            let (clauses, want_pcap) = match clauses.split_last() {
                Some((&"pcap", head)) => (head, true),
                _ => (clauses, false),
            };
            match query::parse_path(&clauses.join("/"), Timestamp::now(), &state.query_config()) {
                Ok(q) => {
                    let id = q.id();
                    let r = start(state, q.clone(), want_pcap, req).await;
                    (Some((Some(q), Some(id), want_pcap)), r)
                }
                Err(e) => (Some((None, None, want_pcap)), Err(e.into())),
            }
        }
        (Method::POST, ["q"]) | (Method::POST, ["api"]) => match read_query(req, body, state).await
        {
            Ok(q) => {
                let id = q.id();
                let r = start(state, q.clone(), false, req).await;
                (Some((Some(q), Some(id), false)), r)
            }
            Err(e) => (Some((None, None, false)), Err(e)),
        },
        (Method::GET, [id, "merged.pcap"]) => {
            let id = match id.parse::<JobId>() {
                Ok(id) => id,
                Err(_) => return plain(Err(ApiError::BadJobId((*id).to_owned()))),
            };
            match state.registry.get(&id) {
                Some(job) if !state.may_see(user_of(req), &job) => {
                    plain(Err(ApiError::NoSuchJob(id.to_string())))
                }
                Some(job) => {
                    let q = job.query.clone();
                    (
                        Some((Some(q), Some(id), true)),
                        capture(state, job, req).await,
                    )
                }
                None => match state.registry.spool().open_complete(&id) {
                    Some(c) => (
                        Some((None, Some(id), true)),
                        Ok(complete(state, &id, c, req)),
                    ),
                    None => plain(Err(ApiError::NoSuchJob(id.to_string()))),
                },
            }
        }
        (Method::DELETE, [id]) => {
            let id = match id.parse::<JobId>() {
                Ok(id) => id,
                Err(_) => return plain(Err(ApiError::BadJobId((*id).to_owned()))),
            };
            let user = user_of(req);
            let job = state.registry.get(&id).filter(|j| state.may_see(user, j));
            // Deleting is audited: who removed whose job.
            let audit = Some((job.as_ref().map(|j| j.query.clone()), Some(id), false));
            let r = match job {
                None => Err(ApiError::NoSuchJob(id.to_string())),
                Some(j) if !state.may_manage(user, &j) => Err(ApiError::NotOwner {
                    id: id.to_string(),
                    owner: j.user.clone().unwrap_or_else(|| "nobody".to_owned()),
                    action: "delete",
                }),
                Some(_) if state.registry.remove(&id) => {
                    tracing::info!(job = %id, "job deleted");
                    Ok(json(
                        StatusCode::OK,
                        &serde_json::json!({"id": id.to_string(), "deleted": true}),
                    ))
                }
                Some(_) => Err(ApiError::NoSuchJob(id.to_string())),
            };
            (audit, r)
        }
        (Method::GET, ["status", ids @ ..]) => {
            let m: std::collections::BTreeMap<String, StatusView> =
                selected(state, user_of(req), ids)
                    .iter()
                    .map(|j| (j.id.to_string(), StatusView::of(j)))
                    .collect();
            plain(Ok(json(StatusCode::OK, &m)))
        }
        (Method::GET, ["ids", ids @ ..]) => {
            let v: Vec<String> = selected(state, user_of(req), ids)
                .iter()
                .map(|j| j.id.to_string())
                .collect();
            plain(Ok(json(StatusCode::OK, &v)))
        }
        (Method::GET, ["urls", ids @ ..]) => {
            let m: std::collections::BTreeMap<String, String> = selected(state, user_of(req), ids)
                .iter()
                .filter(|j| {
                    matches!(
                        j.state(),
                        State::Completed | State::Partial | State::Running | State::Queued
                    )
                })
                .map(|j| (j.id.to_string(), views::url(state, j)))
                .collect();
            plain(Ok(json(StatusCode::OK, &m)))
        }
        (Method::GET, ["jobs"]) => plain(views::Listing::parse(req.uri().query()).map(|l| {
            json(
                StatusCode::OK,
                &l.apply(state, &state.jobs_for(user_of(req))),
            )
        })),
        (Method::GET, ["stats", names @ ..]) => {
            plain(Ok(json(StatusCode::OK, &views::stats(state, names).await)))
        }
        (_, _) => plain(Err(ApiError::NoRoute)),
    }
}

fn user_of<B>(req: &Request<B>) -> Option<&str> {
    req.extensions().get::<User>().map(|u| u.0.as_str())
}

/// The query of a POST body (JSON or form).
async fn read_query(
    req: &Request<()>,
    body: &mut Option<Incoming>,
    state: &AppState,
) -> Result<Query, ApiError> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let json_body = ctype.starts_with("application/json");
    if !json_body && !ctype.starts_with("application/x-www-form-urlencoded") && !ctype.is_empty() {
        return Err(ApiError::UnsupportedMedia(ctype));
    }
    // A declared length over the limit is refused before the body is polled, so that hyper
    // never sends `100 Continue` for a body that will not be read.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ApiError::BodyTooLarge(MAX_BODY));
    }
    // The body gets the time the head had: a client dribbling it holds a connection for no
    // longer than one dribbling its headers.
    let within = state.config.header_timeout;
    let Some(body) = body.take() else {
        return Err(ApiError::BodyUnreadable);
    };
    let body = match tokio::time::timeout(within, Limited::new(body, MAX_BODY).collect()).await {
        Err(_) => return Err(ApiError::BodyTimeout(within)),
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::BodyTooLarge(MAX_BODY))
        }
        Ok(Err(_)) => return Err(ApiError::BodyUnreadable),
    };
    let qc = state.query_config();
    Ok(if json_body {
        query::parse_json(&body, Timestamp::now(), &qc)?
    } else {
        query::parse_form(&body, Timestamp::now(), &qc)?
    })
}

/// `…/estimate`: the query as understood, and its answer as the indexes estimate it.
async fn estimate(state: &AppState, q: &Query) -> Result<Response<Body>, ApiError> {
    let w = state.registry.estimate(q).await?;
    let over = w.limit > 0 && w.of.bytes > w.limit;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "id": q.id().to_string(),
            "query": q.stenographer(),
            "estimate": w,
            "over_limit": over,
            "ignore_weight": q.ignore_weight,
        }),
    ))
}

async fn start<B>(
    state: &AppState,
    q: Query,
    want_pcap: bool,
    req: &Request<B>,
) -> Result<Response<Body>, ApiError> {
    let user = user_of(req);
    let job = state.registry.start(q, user).await?;
    if want_pcap {
        return capture(state, job, req).await;
    }
    let mut view = JobView::of(state, &job);
    if !state.may_see(user, &job) {
        // Another user's job for the same query (`share_jobs = false`): the capture is
        // shared, not who asked for it or when; the link is the query's own.
        view.user = None;
        view.time = views::rfc3339(std::time::SystemTime::now());
        view.url = format!("{}q/{}/pcap", state.config.prefix, job.query.to_path());
    }
    Ok(json(StatusCode::OK, &view))
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

/// A job's capture, as the job says to read it.
async fn capture<B>(
    state: &AppState,
    job: Arc<Job>,
    req: &Request<B>,
) -> Result<Response<Body>, ApiError> {
    let r = match job.open().await {
        Capture::Complete(c) => complete(state, &job.id, c, req),
        Capture::Follow(f) => follow(state, &job, f),
        Capture::Gone(g) => return Err(ApiError::Gone(g, job.id.to_string())),
    };
    // A stream that ends early does so after its last whole record has left.
    let wire = req.extensions().get::<Arc<Wire>>().cloned();
    Ok(r.map(|b| Guarded::new(b, wire).boxed()))
}

/// How long a client of a job streaming without a spool may take nothing before it is cut
/// off (it paces the job and every other client).
const DIRECT_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// A body fed by a task: the sender, and the body for the response.
fn channel() -> (
    http_body_util::channel::Sender<Bytes, Box<dyn std::error::Error + Send + Sync>>,
    Body,
) {
    let (tx, body) = http_body_util::channel::Channel::<
        Bytes,
        Box<dyn std::error::Error + Send + Sync>,
    >::new(BODY_CHUNKS);
    (tx, body.boxed())
}

/// Why a capture stream was cut short (what the aborted body's error says).
#[derive(Debug, thiserror::Error)]
enum Cut {
    #[error("the client stalled a direct stream")]
    Stalled,
    #[error("the server is shutting down")]
    Shutdown,
    #[error("the capture is incomplete: {0}")]
    Incomplete(crate::spool::Incomplete),
    #[error("the start of the capture is no longer available")]
    StartLost,
    #[error("spool read failed: {0}")]
    Read(std::sync::Arc<std::io::Error>),
}

fn follow(state: &AppState, job: &Arc<Job>, mut follower: Follower) -> Response<Body> {
    let (mut tx, body) = channel();
    let id = job.id;
    let job = Arc::clone(job);
    let cut = state.cut.clone();
    tokio::spawn(async move {
        loop {
            let chunk = match follower.next().await {
                Ok(chunk) => chunk,
                Err(FollowEnd::Complete) => return,
                Err(end) => {
                    let why = match end {
                        FollowEnd::Incomplete(i) => Cut::Incomplete(i),
                        FollowEnd::StartLost => Cut::StartLost,
                        FollowEnd::Read(e) => Cut::Read(e),
                        FollowEnd::Complete => unreachable!("handled above"),
                    };
                    tracing::info!(reason = %why, "capture stream aborted");
                    // No final chunk: the client sees a truncated transfer.
                    tx.abort(why.into());
                    return;
                }
            };
            // Without a spool the slowest client paces the job: one that stops reading
            // altogether is cut off rather than holding every other client (and the job's
            // slot, and an abandoned part file's disk space) forever. Looked at per chunk: a
            // job goes direct mid-way when its spool fills.
            let direct = job.with(|s| matches!(s.mode, crate::jobs::Mode::Direct(_)));
            let budget = if direct {
                DIRECT_STALL
            } else {
                std::time::Duration::MAX
            };
            // Chunks end on record boundaries, so a cut between two is a clean cut.
            tokio::select! {
                r = tokio::time::timeout(budget, tx.send_data(chunk)) => match r {
                    Ok(Ok(())) => {}
                    // The client went away; the job goes on without it.
                    Ok(Err(_)) => return,
                    Err(_) => {
                        tracing::info!("a client stalled a direct stream; cut off");
                        tx.abort(Cut::Stalled.into());
                        return;
                    }
                },
                () = cut.cancelled() => {
                    tx.abort(Cut::Shutdown.into());
                    return;
                }
            }
        }
    });
    pcap_headers(&id)
        .status(StatusCode::OK)
        .body(body)
        .expect("valid response")
}

/// A complete capture: with `Content-Length`, and one `Range` if asked (as the spool decides).
fn complete<B>(state: &AppState, id: &JobId, c: Complete, req: &Request<B>) -> Response<Body> {
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (b, data, whole) = match c.range(range) {
        Ranged::Whole(data) => (pcap_headers(id).status(StatusCode::OK), data, true),
        Ranged::Part {
            data,
            start,
            end,
            total,
        } => (
            pcap_headers(id).status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{total}"),
            ),
            data,
            false,
        ),
        Ranged::Unsatisfiable { total } => return error::unsatisfiable(total),
    };
    let b = b
        .header(header::CONTENT_LENGTH, data.len())
        .header(header::ETAG, c.etag());
    // Served in pieces of the map (file-backed memory, not copies). A shutdown's cut first
    // completes the record the stream is in, so that it ends on a record boundary.
    let (mut tx, body) = channel();
    let cut = state.cut.clone();
    tokio::spawn(async move {
        let mut sent = 0usize;
        for piece in Complete::pieces(data.clone()) {
            let len = piece.len();
            tokio::select! {
                r = tx.send_data(piece) => if r.is_err() { return },
                () = cut.cancelled() => {
                    if whole {
                        let end = Complete::record_end(&data, sent);
                        if end > sent && tx.send_data(data.slice(sent..end)).await.is_err() {
                            return;
                        }
                    }
                    tx.abort(Cut::Shutdown.into());
                    return;
                }
            }
            sent += len;
        }
    });
    b.body(body).expect("valid response")
}

/// Jobs named in `ids` (separated by `,`, `;`, `+` or spaces), or all.
pub(super) fn selected(state: &AppState, user: Option<&str>, ids: &[&str]) -> Vec<Arc<Job>> {
    if ids.is_empty() {
        return state.jobs_for(user);
    }
    ids.iter()
        .flat_map(|s| s.split([',', ';', '+', ' ', '\t']))
        .filter_map(|s| s.parse::<JobId>().ok())
        .filter_map(|id| state.registry.get(&id))
        .filter(|j| state.may_see(user, j))
        .collect()
}
