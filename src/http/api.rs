//! Routes, all under the configured prefix (default `/app/docket/`):
//!
//! | route | answer |
//! |---|---|
//! | `GET q/<clauses…>` | job JSON `{id, state, query, url, time}` (starts or joins the job) |
//! | `GET q/<clauses…>/pcap` | the merged capture, streamed as it is merged |
//! | `POST q` (JSON or form) | job JSON |
//! | `GET uri/<clauses…>` | Docket-py's click-to-pcap path: job JSON, or 303 to the job page for a browser |
//! | `GET raw/<query>`, `POST query/` | Docket-py's raw Stenographer query (`and` only) → job JSON |
//! | `POST find` | the jobs whose query holds the clauses sent |
//! | `GET cleanup`, `clean` | the spool cleanup runs now |
//! | `GET <id>/merged.pcap`, `results/<id>/merged.pcap` | the capture: streamed while the job runs; validators, conditional requests and one `Range` when complete |
//! | `GET status[/<ids>]`, `ids[/<ids>]`, `urls[/<ids>]`, `jobs`, `stats` | Docket-py's shapes, plus per-upstream progress |
//! | `DELETE <id>` | cancels and removes the job |
//! | `GET healthz` | `ok` (alive; no login) |
//! | `GET readyz` | 200 or 503 with JSON: spool writable, each upstream's last health check, index backlog (no login) |
//! | `GET metrics` | Prometheus metrics: OpenMetrics when asked for, else the classic text format (no login with `[http] metrics_open`) |
//! | `GET` (the prefix itself), `GET ui/…` | the web UI (see [`super::ui`]) |
//! | `api/…` | every route again, as ROCK serves Docket-py: job JSON with Docket-py's states |
//!
//! Every `GET` answers `HEAD`; a route asked with another method answers 405 with `Allow`.
//!
//! [`ROUTES`] lists one example request per route, so tests can walk the table.
//!
//! Routes that start or serve a job attach an [`AuditInfo`] to the response; the front door
//! turns it into the audit line.
//!
//! A capture response is `application/vnd.tcpdump.pcap` (or `application/x-pcapng`), chunked
//! while the job runs. Its head waits for the capture's first bytes, so a job whose every
//! upstream failed answers 502/504, not 200; the final state follows as a `Docket-State`
//! trailer. If the job fails mid-stream the body is aborted, so the client sees a truncated
//! transfer rather than a clean end of a wrong file.

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
    ("GET", "uri/host/10.0.0.1/after/5m"),
    ("GET", "raw/host+10.0.0.1+and+after+5m+ago"),
    ("POST", "query/"),
    ("POST", "find"),
    ("GET", "cleanup"),
    ("GET", "results/{id}/merged.pcap"),
    ("GET", "api/status"),
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
    ("GET", "metrics"),
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
    // Docket-py's API, as ROCK serves it under `api/` (`/app/docket/api/…`): every route
    // answers there too, with Docket-py's state strings in its job shapes.
    let (segs, py) = match segs {
        ["api", rest @ ..] => (rest, true),
        _ => (segs, false),
    };
    let (audit, r) = route_path(req, body, state, segs, &method, py).await;
    let r = match r {
        Ok(r) if py => Ok(docket_py_states(r).await),
        r => r,
    };
    (audit, r)
}

async fn route_path(
    req: &Request<()>,
    body: &mut Option<Incoming>,
    state: &Arc<AppState>,
    segs: &[&str],
    method: &Method,
    py: bool,
) -> (AuditOf, Result<Response<Body>, ApiError>) {
    let plain = |r| (None, r);
    match (method.clone(), segs) {
        (Method::GET, ["healthz"]) => plain(Ok(Response::new(full("ok\n")))),
        (Method::GET, ["readyz"]) => {
            let (ready, view) = views::ready(state, user_of(req).is_some()).await;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            plain(Ok(json(status, &view)))
        }
        (Method::GET, ["metrics"]) => {
            let format = crate::metrics::Format::negotiate(
                req.headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            let text = views::metrics(state, format).await;
            plain(Ok(Response::builder()
                .header(header::CONTENT_TYPE, format.content_type())
                .header(header::VARY, "Accept")
                .header(header::CACHE_CONTROL, "no-store")
                .body(full(text))
                .expect("valid response")))
        }
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
        (Method::GET, ["q", clauses @ ..]) | (Method::GET, ["uri", clauses @ ..]) => {
            // A trailing `pcap` asks for the capture — unless it is `format/pcap`'s value.
            let (clauses, want_pcap) = match clauses.split_last() {
                Some((&"pcap", head))
                    if !head
                        .last()
                        .is_some_and(|w| w.eq_ignore_ascii_case("format")) =>
                {
                    (head, true)
                }
                _ => (clauses, false),
            };
            let parsed =
                query::parse_path(&clauses.join("/"), Timestamp::now(), &state.query_config())
                    .map_err(ApiError::from)
                    .and_then(|q| with_headers(req, q));
            start_audited(state, parsed, want_pcap, req).await
        }
        (Method::POST, ["q"]) | (Method::POST, []) => {
            let parsed = read_query(req, body, state)
                .await
                .and_then(|q| with_headers(req, q));
            start_audited(state, parsed, false, req).await
        }
        // Docket-py's raw Stenographer queries: `raw/<query>` (`+` a space), `POST query/`
        // (the query as the body, as `curl -d 'host 1.2.3.4'` sends it, or JSON `query`).
        (Method::GET, ["raw", words @ ..]) => {
            let text = words.join("/").replace('+', " ");
            let text = percent_encoding::percent_decode_str(&text).decode_utf8_lossy();
            let parsed = query::parse_text(&text, Timestamp::now(), &state.query_config())
                .map_err(ApiError::from)
                .and_then(|q| with_headers(req, q));
            start_audited(state, parsed, false, req).await
        }
        (Method::POST, ["query"]) => {
            let parsed = match read_text(req, body, state).await {
                Ok(text) => query::parse_text(&text, Timestamp::now(), &state.query_config())
                    .map_err(ApiError::from)
                    .and_then(|q| with_headers(req, q)),
                Err(e) => Err(e),
            };
            start_audited(state, parsed, false, req).await
        }
        // Docket-py's forced cleanup: the next spool cleanup runs now.
        (Method::GET, ["cleanup"] | ["clean"]) => {
            state.registry.request_cleanup();
            plain(Ok(json(StatusCode::OK, &"Cleanup queued")))
        }
        // Docket-py's search of the job history: the jobs whose query holds every clause
        // given (and whose window meets the times given).
        (Method::POST, ["find"]) => plain(find(req, body, state).await),
        (Method::GET, [id, "merged.pcap"]) | (Method::GET, ["results", id, "merged.pcap"]) => {
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
                        capture(state, job, None, req).await,
                    )
                }
                None => match state.registry.spool().open_complete_async(&id).await {
                    Ok(Some(c)) => (
                        Some((None, Some(id), true)),
                        Ok(complete(state, &id, c, req)),
                    ),
                    Ok(None) => plain(Err(ApiError::NoSuchJob(id.to_string()))),
                    Err(_) => plain(Err(ApiError::SpoolStalled)),
                },
            }
        }
        // (`DELETE status` is a wrong method on a route, not a bad job id.)
        (Method::DELETE, [id]) if allowed(segs).is_none_or(|a| a == "DELETE") => {
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
                Some(_) => match state.registry.remove(&id).await {
                    Ok(true) => {
                        tracing::info!(job = %id, "job deleted");
                        Ok(json(
                            StatusCode::OK,
                            &serde_json::json!({"id": id.to_string(), "deleted": true}),
                        ))
                    }
                    Ok(false) => Err(ApiError::NoSuchJob(id.to_string())),
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "cannot delete a job now");
                        Err(ApiError::SpoolStalled)
                    }
                },
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
        (Method::GET, ["jobs"]) => {
            plain(views::Listing::parse_as(req.uri().query(), py).map(|l| {
                json(
                    StatusCode::OK,
                    &l.apply(state, &state.jobs_for(user_of(req))),
                )
            }))
        }
        (Method::GET, ["stats", names @ ..]) => {
            plain(Ok(json(StatusCode::OK, &views::stats(state, names).await)))
        }
        (_, _) => plain(Err(match allowed(segs) {
            Some(methods) => ApiError::MethodNotAllowed(methods),
            None => ApiError::NoRoute,
        })),
    }
}

/// The methods a path takes, if it is a route at all (for `405` and its `Allow`).
fn allowed(segs: &[&str]) -> Option<&'static str> {
    Some(match segs {
        [] | ["q"] | ["q", "estimate"] => "GET, HEAD, POST",
        ["query"] | ["find"] => "POST",
        ["healthz"]
        | ["readyz"]
        | ["metrics"]
        | ["ui", ..]
        | ["q", ..]
        | ["uri", ..]
        | ["raw", ..]
        | ["status", ..]
        | ["ids", ..]
        | ["urls", ..]
        | ["jobs"]
        | ["stats", ..]
        | ["cleanup"]
        | ["clean"]
        | [_, "merged.pcap"]
        | ["results", _, "merged.pcap"] => "GET, HEAD",
        [id] if id.parse::<JobId>().is_ok() => "DELETE",
        _ => return None,
    })
}

/// Starts the job of a parsed query (its capture, or its JSON answer), with its audit record.
async fn start_audited(
    state: &AppState,
    parsed: Result<Query, ApiError>,
    want_pcap: bool,
    req: &Request<()>,
) -> (AuditOf, Result<Response<Body>, ApiError>) {
    match parsed {
        Ok(q) => {
            let id = q.id();
            let r = start(state, q.clone(), want_pcap, req).await;
            (Some((Some(q), Some(id), want_pcap)), r)
        }
        Err(e) => (Some((None, None, want_pcap)), Err(e)),
    }
}

/// Docket-py's name of a state: `Created`, `Requesting`, `Completed` (a partial answer too,
/// its capture is there), or `Failed` (a cancelled job too).
fn py_state(native: &str) -> &'static str {
    match native {
        "Queued" => "Created",
        "Running" => "Requesting",
        "Completed" | "Partial" => "Completed",
        _ => "Failed",
    }
}

/// Docket-py's state strings in a job JSON, a list of them, or a `status` map (`api/` routes):
/// scripts wait for `Completed` or `Failed`. A partial answer is `Completed` (its capture is
/// there to fetch) with `"partial": true`; a cancelled job is `Failed`. Docket's own state
/// stays as `docket_state`.
async fn docket_py_states(r: Response<Body>) -> Response<Body> {
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_json || !r.status().is_success() {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let Ok(bytes) = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
    else {
        return Response::from_parts(parts, full(""));
    };
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, full(bytes));
    };
    fn rename(job: &mut serde_json::Value) {
        let Some(s) = job.get("state").and_then(|s| s.as_str()).map(str::to_owned) else {
            return;
        };
        job["docket_state"] = s.clone().into();
        job["state"] = py_state(&s).into();
        if s == "Partial" {
            job["partial"] = true.into();
        }
        if let Some(events) = job.get_mut("events").and_then(|e| e.as_array_mut()) {
            for e in events {
                let Some(py) = e.get("state").and_then(|s| s.as_str()).map(py_state) else {
                    continue;
                };
                e["state"] = py.into();
            }
        }
    }
    match &mut v {
        serde_json::Value::Array(jobs) => jobs.iter_mut().for_each(rename),
        serde_json::Value::Object(m) if m.contains_key("state") => rename(&mut v),
        serde_json::Value::Object(m) => m.values_mut().for_each(rename),
        _ => {}
    }
    let text = serde_json::to_vec(&v).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, full(text))
}

/// Whether the client is a browser navigating: its `Accept` prefers `text/html` to JSON
/// (by q-value, then by order; RFC 9110 §12.5.1), and accepts it at all (`q=0` refuses).
fn wants_html<B>(req: &Request<B>) -> bool {
    let accept = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase();
    // (q, order) of a media type, if listed.
    let weight = |ty: &str| {
        accept.split(',').enumerate().find_map(|(i, item)| {
            let mut parts = item.split(';').map(str::trim);
            (parts.next() == Some(ty)).then(|| {
                let q = parts
                    .find_map(|p| p.strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (q, i)
            })
        })
    };
    match (weight("text/html"), weight("application/json")) {
        (Some((h, _)), _) if h <= 0.0 => false,
        (Some(_), None) => true,
        (Some((h, hi)), Some((j, ji))) => h > j || (h == j && hi < ji),
        (None, _) => false,
    }
}

/// `q` with Docket-py's `Steno-Limit-Packets` / `Steno-Limit-Bytes` headers applied.
fn with_headers<B>(req: &Request<B>, mut q: Query) -> Result<Query, ApiError> {
    // Given twice, or not text: refused as a clause given twice or malformed would be.
    let header = |name: &'static str| -> Result<Option<&str>, ApiError> {
        let mut values = req.headers().get_all(name).iter();
        let Some(v) = values.next() else {
            return Ok(None);
        };
        let bad = |message: &str| ApiError::BadParameter {
            name,
            value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            message: format!("{name}: {message}"),
        };
        if values.next().is_some() {
            return Err(bad("given twice"));
        }
        v.to_str().map(Some).map_err(|_| bad("not text"))
    };
    q.limits_from_headers(header("steno-limit-packets")?, header("steno-limit-bytes")?)?;
    Ok(q)
}

fn user_of<B>(req: &Request<B>) -> Option<&str> {
    req.extensions().get::<User>().map(|u| u.0.as_str())
}

/// The query of a POST body (JSON or form).
/// The request body (JSON or a form, by `Content-Type`), within the size and time limits.
async fn read_body(
    req: &Request<()>,
    body: &mut Option<Incoming>,
    state: &AppState,
) -> Result<(Bytes, bool), ApiError> {
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
    Ok((body, json_body))
}

async fn read_query(
    req: &Request<()>,
    body: &mut Option<Incoming>,
    state: &AppState,
) -> Result<Query, ApiError> {
    let (body, json_body) = read_body(req, body, state).await?;
    parse_body(&body, json_body, state)
}

/// A query body: JSON, or a form.
fn parse_body(body: &[u8], json_body: bool, state: &AppState) -> Result<Query, ApiError> {
    let qc = state.query_config();
    Ok(if json_body {
        query::parse_json(body, Timestamp::now(), &qc)?
    } else {
        query::parse_form(body, Timestamp::now(), &qc)?
    })
}

/// The text of a raw query sent as a body: JSON `{"query": "…"}`, or the body itself as
/// `curl -d 'host 1.2.3.4'` sends it (a form whose only key is the query; `+` a space).
async fn read_text(
    req: &Request<()>,
    body: &mut Option<Incoming>,
    state: &AppState,
) -> Result<String, ApiError> {
    let (body, json_body) = read_body(req, body, state).await?;
    if json_body {
        return Ok(query::text_of_json(&body)?);
    }
    let text: String = form_urlencoded::parse(&body)
        .map(|(k, v)| {
            if v.is_empty() {
                k.into_owned()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    Ok(text)
}

/// `POST find`: the jobs (this user may see) whose query holds every host, net, port,
/// protocol and sensor the request names, and whose window meets the request's window when
/// the request names a time.
async fn find(
    req: &Request<()>,
    body: &mut Option<Incoming>,
    state: &AppState,
) -> Result<Response<Body>, ApiError> {
    let (bytes, json_body) = read_body(req, body, state).await?;
    // A search's missing end is open, not a job's default (a `before` alone must not meet a
    // default start after it): the other end is filled in at the edge of time.
    let keys_of = |bytes: &[u8]| -> Vec<String> {
        if json_body {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        } else {
            form_urlencoded::parse(bytes)
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, _)| k.into_owned())
                .collect()
        }
    };
    let given = keys_of(&bytes);
    let has = |a: &str, b: &str| given.iter().any(|k| k == a || k == b);
    let mut fill = Vec::new();
    if has("before", "before-ago") && !has("after", "after-ago") {
        fill.push(("after", "@0"));
    }
    if has("after", "after-ago") && !has("before", "before-ago") {
        fill.push(("before", "@253402300799"));
    }
    let bytes: Vec<u8> = if fill.is_empty() {
        bytes.to_vec()
    } else if json_body {
        let mut m: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes).unwrap_or_default();
        for (k, v) in &fill {
            m.insert((*k).to_owned(), (*v).into());
        }
        serde_json::to_vec(&m).unwrap_or_default()
    } else {
        let mut b = bytes.to_vec();
        for (k, v) in &fill {
            b.extend_from_slice(format!("&{k}={}", v.replace('@', "%40")).as_bytes());
        }
        b
    };
    let q = parse_body(&bytes, json_body, state)?;
    let timed = has("after", "after-ago") || has("before", "before-ago");
    fn holds<T: PartialEq>(have: &[T], want: &[T]) -> bool {
        want.iter().all(|w| have.contains(w))
    }
    let user = user_of(req);
    let found: Vec<JobView> = state
        .jobs_for(user)
        .iter()
        .filter(|j| {
            let jq = &j.query;
            holds(&jq.hosts, &q.hosts)
                && holds(&jq.nets, &q.nets)
                && holds(&jq.ports, &q.ports)
                && holds(&jq.sensors, &q.sensors)
                && (q.proto.is_none() || jq.proto == q.proto)
                && (!timed || (jq.after < q.before && q.after < jq.before))
        })
        .map(|j| JobView::of(state, j))
        .collect();
    Ok(json(StatusCode::OK, &found))
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
    let crate::jobs::Started { job, reserved } = state.registry.start(q, user).await?;
    if want_pcap {
        return capture(state, job, reserved, req).await;
    }
    drop(reserved);
    // A browser following a link (Kibana's "Query PCAP") lands on the job's page; a script
    // gets the job JSON.
    if wants_html(req) {
        return Ok(Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(
                header::LOCATION,
                format!("{}ui/job/{}", state.config.prefix, job.id),
            )
            .body(full(""))
            .expect("valid response"));
    }
    let mut view = JobView::of(state, &job);
    if !state.may_see(user, &job) {
        // Another user's job for the same query (`share_jobs = false`): the capture is
        // shared, not who asked for it or when; the link is the query's own.
        view.user = None;
        view.time = views::rfc3339_ms(std::time::SystemTime::now());
        view.url = format!("{}q/{}/pcap", state.config.prefix, job.query.to_path());
    }
    Ok(json(StatusCode::OK, &view))
}

/// A capture's type and file name, by its first bytes: pcapng (`application/x-pcapng`,
/// `<id>.pcapng`) or classic pcap (`application/vnd.tcpdump.pcap`, `<id>.pcap`).
fn capture_headers(id: &JobId, magic: Option<&[u8]>) -> http::response::Builder {
    let (ctype, ext) = if magic == Some(&[0x0a, 0x0d, 0x0d, 0x0a][..]) {
        ("application/x-pcapng", "pcapng")
    } else {
        ("application/vnd.tcpdump.pcap", "pcap")
    };
    Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{id}.{ext}\""),
        )
        .header(header::ACCEPT_RANGES, "bytes")
}

/// A job's capture, as the job says to read it.
async fn capture<B>(
    state: &AppState,
    job: Arc<Job>,
    reserved: Option<crate::spool::FeedReader>,
    req: &Request<B>,
) -> Result<Response<Body>, ApiError> {
    let r = match job.open(reserved).await {
        Capture::Complete(c) => {
            let mut r = complete(state, &job.id, c, req);
            r.headers_mut().insert(
                "docket-state",
                http::HeaderValue::from_static(job.state().as_str()),
            );
            r
        }
        Capture::Follow(f) => follow(state, &job, f).await,
        // Failed before this request could follow it (local directories fail in
        // microseconds): the same answer as a follower waiting for the first byte gets.
        Capture::Gone(crate::jobs::Gone::Ended)
            if job.with(|s| matches!(s.end, Some(crate::jobs::EndReason::MixedLinkTypes))) =>
        {
            mixed_link_types(&job).await
        }
        Capture::Gone(crate::jobs::Gone::Ended) if job.state() == State::Failed => {
            let end = FollowEnd::Incomplete(crate::spool::Incomplete::AllUpstreamsFailed);
            failed_before_bytes(&job, &end).await
        }
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

/// A running job's capture, followed as it is merged.
///
/// The response head waits for the capture's first bytes — its file header, written once every
/// upstream has declared its link type or failed (milliseconds for local data) — so that the
/// status says what happened: when every upstream failed first, `502` (`504` when each timed
/// out) with the job's reasons in JSON, never a `200` cut after 0 bytes. Once streaming, the
/// job's final state goes in a `Docket-State` trailer (HTTP/2, and HTTP/1.1 clients that send
/// `TE: trailers`); a job that fails mid-stream still ends without the final chunk, which
/// every client reports as a truncated transfer.
async fn follow(state: &AppState, job: &Arc<Job>, mut follower: Follower) -> Response<Body> {
    let id = job.id;
    let first = match follower.next().await {
        Ok(chunk) => chunk,
        // Cancelled by a user: gone, as for any request after it; not a gateway failure.
        Err(FollowEnd::Incomplete(crate::spool::Incomplete::Cancelled)) => {
            return ApiError::Gone(crate::jobs::Gone::Ended, id.to_string()).into_response()
        }
        // `format/pcap` over mixed link types: the request conflicts with the data.
        Err(FollowEnd::Incomplete(crate::spool::Incomplete::MixedLinkTypes)) => {
            return mixed_link_types(job).await
        }
        Err(end) => return failed_before_bytes(job, &end).await,
    };
    let (mut tx, body) = channel();
    let head = capture_headers(&id, first.get(..4))
        .status(StatusCode::OK)
        .header("docket-job", id.to_string())
        .header(header::TRAILER, "Docket-State");
    let job = Arc::clone(job);
    let cut = state.cut.clone();
    tokio::spawn(async move {
        let mut next = Some(first);
        loop {
            let chunk = match next.take() {
                Some(c) => c,
                None => match follower.next().await {
                    Ok(chunk) => chunk,
                    Err(FollowEnd::Complete) => {
                        let _ = tx.send_trailers(final_state_trailer(&job).await).await;
                        return;
                    }
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
                },
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
    head.body(body).expect("valid response")
}

/// The answer to a capture request whose job ended before its first byte: `502` with the
/// job's state and each upstream's reason (`504` when every upstream timed out).
async fn failed_before_bytes(job: &Job, end: &FollowEnd) -> Response<Body> {
    let snap = wait_final(job).await;
    let timeouts = !snap.upstreams.is_empty()
        && snap.upstreams.iter().all(|u| {
            matches!(&u.error, Some(crate::jobs::Failure::Upstream(e))
                if matches!(**e, crate::upstream::Error::Timeout { .. }))
        });
    let status = if timeouts {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    let why = match end {
        FollowEnd::Incomplete(i) => i.to_string(),
        FollowEnd::StartLost => "the start of the capture is no longer available".to_owned(),
        FollowEnd::Read(e) => format!("spool read failed: {e}"),
        FollowEnd::Complete => "the capture is empty".to_owned(),
    };
    let upstreams: Vec<serde_json::Value> = snap
        .upstreams
        .iter()
        .map(|u| {
            serde_json::json!({
                "name": u.name,
                "state": u.state,
                "error": u.error.as_ref().map(ToString::to_string),
            })
        })
        .collect();
    let mut r = json(
        status,
        &serde_json::json!({
            "error": why,
            "id": job.id.to_string(),
            "state": snap.state,
            "upstreams": upstreams,
        }),
    );
    if let Ok(v) = http::HeaderValue::from_str(&job.id.to_string()) {
        r.headers_mut().insert("docket-job", v);
    }
    r
}

/// `409`: classic pcap (`format/pcap`) was asked for over inputs of more than one link type.
async fn mixed_link_types(job: &Job) -> Response<Body> {
    let snap = wait_final(job).await;
    let why = snap.end.as_ref().map_or_else(
        || crate::jobs::EndReason::MixedLinkTypes.to_string(),
        ToString::to_string,
    );
    json(
        StatusCode::CONFLICT,
        &serde_json::json!({ "error": why, "clause": "format", "value": "pcap", "id": job.id.to_string() }),
    )
}

/// The job's snapshot once final (bounded: the job's end is moments after its feed's).
async fn wait_final(job: &Job) -> crate::jobs::Snapshot {
    let mut rx = job.subscribe();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        rx.wait_for(|s| s.state.is_final()),
    )
    .await;
    job.snapshot()
}

/// The `Docket-State` trailer: the job's final state (`Completed`, `Partial`…).
async fn final_state_trailer(job: &Job) -> http::HeaderMap {
    let snap = wait_final(job).await;
    let mut h = http::HeaderMap::new();
    h.insert(
        "docket-state",
        http::HeaderValue::from_static(snap.state.as_str()),
    );
    h
}

/// A complete capture: with `Content-Length`, and one `Range` if asked (as the spool decides).
fn complete<B>(state: &AppState, id: &JobId, c: Complete, req: &Request<B>) -> Response<Body> {
    let h = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let etag = c.etag();
    let modified = c.born().map(views::http_date);
    let magic = c.head(4);
    let magic_headers = |id: &JobId| capture_headers(id, Some(&magic[..]));
    // Conditional requests (RFC 9110 §13): a client that has this very file already gets
    // 304, headers only. If-None-Match wins over If-Modified-Since.
    let unchanged = match (h(header::IF_NONE_MATCH), h(header::IF_MODIFIED_SINCE)) {
        (Some(tags), _) => tags
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag),
        (None, Some(since)) => match (c.born(), views::parse_http_date(since)) {
            (Some(born), Some(since)) => views::whole_seconds(born) <= since,
            _ => false,
        },
        (None, None) => false,
    };
    if unchanged {
        let mut b = Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, &etag);
        if let Some(m) = &modified {
            b = b.header(header::LAST_MODIFIED, m);
        }
        return b.body(full("")).expect("valid response");
    }
    // If-Range: the range only of this very file (a strong tag, or its exact date); else the
    // whole file.
    let range = match h(header::IF_RANGE) {
        Some(v) if v.trim() != etag && Some(v.trim()) != modified.as_deref() => None,
        _ => h(header::RANGE),
    };
    let (b, data, whole) = match c.range(range) {
        Ranged::Whole(data) => (magic_headers(id).status(StatusCode::OK), data, true),
        Ranged::Part {
            data,
            start,
            end,
            total,
        } => (
            magic_headers(id)
                .status(StatusCode::PARTIAL_CONTENT)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{total}"),
                ),
            data,
            false,
        ),
        Ranged::Unsatisfiable { total } => return error::unsatisfiable(total),
    };
    let mut b = b
        .header(header::CONTENT_LENGTH, data.len())
        .header("docket-job", id.to_string())
        .header(header::ETAG, &etag);
    if let Some(m) = &modified {
        b = b.header(header::LAST_MODIFIED, m);
    }
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
    // Docket-py's separators: `,` `;` `+` space and tab (spelled %20 and %09 in a path).
    let decoded: Vec<String> = ids
        .iter()
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    decoded
        .iter()
        .flat_map(|s| s.split([',', ';', '+', ' ', '\t']))
        .map(str::to_ascii_lowercase)
        .filter(|s| seen.insert(s.clone()))
        .filter_map(|s| s.parse::<JobId>().ok())
        .filter_map(|id| state.registry.get(&id))
        .filter(|j| state.may_see(user, j))
        .collect()
}
