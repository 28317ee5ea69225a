//! The front door every request passes before a route: who is asking, whether the request
//! may come from where it comes from, the audit line, and the security headers.
//!
//! Invariants:
//! - With authentication configured (`[auth] htpasswd` or `[tls] client_ca`), every path but
//!   `<prefix>healthz`, `<prefix>readyz` (and `<prefix>metrics` with `[http] metrics_open`)
//!   needs a user: a verified client certificate, or HTTP Basic credentials
//!   that match the htpasswd file. Anything else is 401 (with `WWW-Authenticate` when
//!   passwords are on), before any routing: unknown paths do not leak as 404s.
//! - An address with `max_failures` failed logins in the window is refused with 429 until the
//!   window ends, without its password being checked; each failure is logged with the address.
//! - A request that changes state (anything but GET/HEAD/OPTIONS) coming from another site is
//!   refused (403): browsers send Basic credentials cross-site, so `Sec-Fetch-Site` (or
//!   failing that `Origin` against `Host`) is checked. Docket sets no cookies.
//! - `X-Forwarded-For` is believed only from `http.trusted_proxies`.
//! - Every response carries `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`, a
//!   CSP that allows only Docket's own script and style files, `Referrer-Policy`, and on TLS
//!   `Strict-Transport-Security`.

use std::net::IpAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use tracing::Instrument;

use super::audit::{AuditInfo, Tracked, Who};
use super::error::ApiError;
use super::{auth, AppState, Body, ConnInfo, User};

/// The UI's policy: scripts and styles only from Docket's own files, no inline script, no
/// framing, forms only to Docket.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The client's address: the peer, or the last address a trusted proxy forwarded for.
pub fn client_addr(req: &Request<Incoming>, conn: &ConnInfo, trusted: &[IpAddr]) -> IpAddr {
    let mut addr = conn.peer.ip();
    if !trusted.contains(&addr) {
        return addr;
    }
    // Walk X-Forwarded-For from the right: the first address not itself a trusted proxy is the
    // client; anything to its left was written by the client and proves nothing.
    let hops: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for hop in hops.into_iter().rev() {
        addr = hop;
        if !trusted.contains(&hop) {
            break;
        }
    }
    addr
}

/// Whether a state-changing request comes from another site: an origin is this site only
/// with the same scheme and the same host and port.
fn cross_site(req: &Request<Incoming>, scheme: &str) -> bool {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    let h = req.headers();
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        // "none": typed by the user; "same-origin": our own pages.
        return !matches!(site, "same-origin" | "none");
    }
    if let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                h.get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
        let same = match (origin.split_once("://"), host) {
            (Some((s, rest)), Some(host)) => s.eq_ignore_ascii_case(scheme) && rest == host,
            _ => false,
        };
        return !same;
    }
    // Not a browser (curl, scripts): no ambient credentials to abuse.
    false
}

fn unauthorized(state: &AppState) -> ApiError {
    ApiError::Unauthorized {
        realm: state
            .htpasswd
            .is_some()
            .then(|| state.config.auth.realm.clone()),
    }
}

/// Who is asking: `Ok(Some(user))`, `Ok(None)` when authentication is off, or the refusal.
async fn authenticate(
    req: &Request<Incoming>,
    state: &Arc<AppState>,
    conn: &ConnInfo,
    client: IpAddr,
) -> Result<Option<String>, ApiError> {
    if !state.config.login_required {
        return Ok(None);
    }
    if let Some(u) = &conn.cert_user {
        return Ok(Some(u.clone()));
    }
    if state.htpasswd.is_none() {
        // Client certificates only, and this client has none.
        return Err(unauthorized(state));
    }
    let Some((user, password)) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::parse_basic)
    else {
        return Err(unauthorized(state));
    };
    // Counted before the check: parallel guesses cannot outrun the limit.
    let attempt = match state.limiter.attempt(client) {
        Ok(n) => n,
        Err(wait) => {
            state.registry.metrics().login_refused(true);
            tracing::warn!(%client, user = %user.escape_debug(), "login refused: too many failures from this address");
            return Err(ApiError::LockedOut(wait));
        }
    };
    // bcrypt is deliberately slow: off the async workers, and a bounded number at once.
    let ok = {
        let _slot = state.hashing.acquire().await.expect("never closed");
        let st = Arc::clone(state);
        let (u, p) = (user.clone(), password);
        tokio::task::spawn_blocking(move || st.htpasswd.as_ref().is_some_and(|s| s.verify(&u, &p)))
            .await
            .unwrap_or(false)
    };
    if ok {
        state.limiter.succeeded(client);
        Ok(Some(user))
    } else {
        state.registry.metrics().login_refused(false);
        tracing::warn!(%client, user = %user.escape_debug(), attempts = attempt, "login failed");
        Err(unauthorized(state))
    }
}

/// Reads and drops a refused request's body beside its answer (at most [`DRAIN_MAX`] bytes,
/// within the header timeout). Dropping an unread body at once makes the kernel answer the
/// client's unread bytes with a reset (HTTP/1.1), or resets the stream (HTTP/2), either of
/// which can destroy the answer before the client reads it.
pub(super) fn drain_beside(body: Incoming, state: &AppState) {
    let within = state.config.header_timeout;
    tokio::spawn(async move {
        let drain = http_body_util::Limited::new(body, DRAIN_MAX).collect();
        let _ = tokio::time::timeout(within, drain).await;
    });
}

/// Most bytes of a refused request body read (and dropped) so that its answer arrives.
const DRAIN_MAX: usize = 16 << 20;

fn secure(mut r: Response<Body>, tls: bool) -> Response<Body> {
    let h = r.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    if tls {
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    r
}

/// Handles one request: authenticate, check the origin, route, log, audit, add headers. The
/// whole request runs in a `request` span (method, path, client, then user).
pub async fn handle(
    req: Request<Incoming>,
    state: Arc<AppState>,
    conn: ConnInfo,
) -> Response<Body> {
    let client = client_addr(&req, &conn, &state.config.trusted_proxies);
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path().escape_debug(),
        %client,
        user = tracing::field::Empty,
    );
    let start = std::time::Instant::now();
    let mut who = Who {
        user: None,
        client,
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
    };
    let (r, audit) = admit(req, &state, &conn, client, &mut who)
        .instrument(span.clone())
        .await;
    if let Some(u) = &who.user {
        span.record("user", tracing::field::display(u.escape_debug()));
    }
    let status = r.status().as_u16();
    let expect = r
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let counted = super::audit::Counted {
        metrics: Arc::clone(state.registry.metrics()),
        // Only a capture body counts as one (a refusal or a 502 of a capture route is JSON),
        // and a HEAD sends none.
        capture: audit
            .as_ref()
            .filter(|a| a.capture && matches!(status, 200 | 206) && who.method != "HEAD")
            .map(|a| {
                a.job
                    .as_deref()
                    .and_then(|id| id.parse().ok())
                    .and_then(|id| state.registry.get(&id))
            }),
    };
    let audit = match (&state.audit, audit) {
        (Some(log), Some(info)) => Some((Arc::clone(log), info)),
        _ => None,
    };
    let (parts, mut body) = r.into_parts();
    let mut expect = expect;
    if who.method == "HEAD" {
        // The headers of a GET without its body, on every protocol (hyper drops the body of
        // a HEAD answer on HTTP/1.1 only; on HTTP/2 a body is a protocol error).
        body = super::full("");
        expect = None;
    }
    let body = Tracked::new(body, audit, counted, who, start, status, expect);
    secure(Response::from_parts(parts, body.boxed()), conn.tls)
}

/// Authentication, the origin check and the route: the response and its audit record.
async fn admit(
    mut req: Request<Incoming>,
    state: &Arc<AppState>,
    conn: &ConnInfo,
    client: IpAddr,
    who: &mut Who,
) -> (Response<Body>, Option<AuditInfo>) {
    // Only the health checks (and the metrics, when the configuration opens them) go
    // without a user. A user who does send credentials is still checked: `readyz` shows
    // more to a user.
    let path = req.uri().path().strip_prefix(state.config.prefix.as_str());
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    let open = read
        && path.is_some_and(|p| {
            p == "healthz" || p == "readyz" || (p == "metrics" && state.config.metrics_open)
        });
    // `healthz` never looks at credentials (a stale password must not fail a liveness probe).
    let anonymous =
        open && (path == Some("healthz") || !req.headers().contains_key(header::AUTHORIZATION));
    if anonymous {
        who.user = conn
            .cert_user
            .clone()
            .filter(|_| state.config.login_required);
    } else {
        match authenticate(&req, state, conn, client).await {
            Ok(u) => {
                who.user = u;
                conn.activity.authenticated();
            }
            Err(e) => {
                drain_beside(req.into_body(), state);
                return (e.into_response(), None);
            }
        }
    }
    // The scheme the browser used: a trusted proxy that terminates TLS says so.
    let forwarded = state
        .config
        .trusted_proxies
        .contains(&conn.peer.ip())
        .then(|| req.headers().get("x-forwarded-proto"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let scheme = forwarded.unwrap_or_else(|| if conn.tls { "https" } else { "http" }.to_owned());
    if cross_site(&req, &scheme) {
        tracing::warn!("cross-site request refused");
        drain_beside(req.into_body(), state);
        return (ApiError::CrossSite.into_response(), None);
    }
    if let Some(u) = &who.user {
        req.extensions_mut().insert(User(u.clone()));
    }
    req.extensions_mut().insert(Arc::clone(&conn.wire));
    let mut r = super::api::handle(req, Arc::clone(state)).await;
    let info = r.extensions_mut().remove::<AuditInfo>();
    (r, info)
}
