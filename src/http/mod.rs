//! The HTTP front: hyper 1 over tokio, every route under the configured prefix.
//!
//! [`serve`] takes a bound listener and a shutdown future (tests bind `127.0.0.1:0`); each
//! connection is served on its own task, at most `http.max_connections` at once (the accept
//! loop waits for a free slot, so a flood waits in the kernel's queue, not in our memory).
//! With `[tls]`, each connection is a rustls handshake (bounded by `http.header_timeout`)
//! and then HTTP/2 or HTTP/1.1 as ALPN chose; without, plain HTTP/1.1.
//!
//! Who owns what: [`front`] checks who is asking, opens the request's span, writes the
//! access-log and audit lines ([`audit`]) and adds the security headers; routes live in
//! [`api`] (JSON and captures) and [`ui`] (pages); both show jobs through the typed views of
//! [`views`]; [`error`] is the one place an error becomes a status code and a JSON body.
//! Imports run one way: front → api → ui → views (no cycle).
//!
//! **Shutdown** ([`serve`]): when `shutdown` completes, the listener closes (no new
//! connections), every connection is told to finish (HTTP/1.1: after the response in flight;
//! HTTP/2: GOAWAY), and live streams get `shutdown_grace` to end on their own. Then
//! [`AppState::cut`] fires: each capture stream ends at its next record boundary without the
//! final chunk (a visibly truncated transfer), jobs still running are stopped (recorded as
//! interrupted), and `serve` returns once the connections are gone (bounded).

pub mod api;
pub mod audit;
pub mod auth;
pub mod conn;
pub mod error;
pub mod front;
pub mod tls;
pub mod ui;
pub mod views;
pub mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::AuthConfig;
use crate::jobs::{Job, Registry};
use crate::query::QueryConfig;

/// The body type of every response.
pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// How long connections may take to close once their streams are cut (a cut body waits up
/// to [`wire::HOLD`] for its last bytes to be flushed).
const CUT_WAIT: Duration = Duration::from_secs(8);

/// The user a request is made by (a request extension for the routes).
#[derive(Debug, Clone)]
pub struct User(pub String);

/// The HTTP front's configuration (built by [`crate::config::Config::http`]).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The path prefix every route is under (`/app/docket/`).
    pub prefix: String,
    /// Password file, realm, failed-login limits.
    pub auth: AuthConfig,
    /// Whether every route but `healthz` and `readyz` (and `metrics` with `metrics_open`)
    /// needs a user (a password file or a client CA).
    pub login_required: bool,
    /// Audit log file.
    pub audit_path: Option<std::path::PathBuf>,
    /// Time a client has to send its request head (and, on a refused request, its body).
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// A connection without a request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `metrics` needs no login.
    pub metrics_open: bool,
    /// Time live streams get to finish after a stop signal.
    pub shutdown_grace: Duration,
    /// How the query grammar quantises and defaults times.
    pub query: QueryConfig,
}

/// Shared state of the server.
#[derive(Debug)]
pub struct AppState {
    /// The front's configuration.
    pub config: HttpConfig,
    /// The jobs.
    pub registry: Arc<Registry>,
    /// Password store, if `[auth] htpasswd` is set.
    pub htpasswd: Option<auth::Htpasswd>,
    /// Failed-login limiter.
    pub limiter: auth::Limiter,
    /// Password checks running at once (one per core): a flood of logins queues here
    /// instead of filling the blocking pool.
    pub hashing: tokio::sync::Semaphore,
    /// Audit log, if `[audit] path` is set.
    pub audit: Option<Arc<audit::AuditLog>>,
    /// Fired when the shutdown grace is over: capture streams end at their next record
    /// boundary, without the final chunk.
    pub cut: CancellationToken,
    /// Each upstream's last health check (`readyz`, the metrics).
    pub monitor: Arc<crate::upstream::monitor::Monitor>,
    /// `readyz`'s spool write test, one at a time whatever the probes.
    pub spool_probe: crate::spool::WriteProbe,
}

impl AppState {
    /// Builds the state: opens the audit log.
    ///
    /// # Errors
    /// The audit log cannot be opened.
    pub fn new(config: HttpConfig, registry: Arc<Registry>) -> std::io::Result<AppState> {
        let audit = match &config.audit_path {
            Some(p) => Some(Arc::new(audit::AuditLog::open(p).map_err(|e| {
                std::io::Error::new(e.kind(), format!("audit log {}: {e}", p.display()))
            })?)),
            None => None,
        };
        let htpasswd = config.auth.htpasswd.clone().map(auth::Htpasswd::new);
        if let Some((h, Err(e))) = htpasswd.as_ref().map(|h| (h, h.readable())) {
            // Not fatal (the file may appear; it is re-read when it changes), but every login
            // fails meanwhile: say so now, not only as "login failed" lines.
            tracing::error!(
                file = %h.path().display(),
                error = %e,
                "cannot read the password file: every login is refused until it can be read"
            );
        }
        Ok(AppState {
            htpasswd,
            limiter: auth::Limiter::new(config.auth.max_failures, config.auth.failure_window),
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            ),
            audit,
            cut: CancellationToken::new(),
            monitor: Arc::new(crate::upstream::monitor::Monitor::new(registry.upstreams())),
            spool_probe: crate::spool::WriteProbe::default(),
            config,
            registry,
        })
    }

    /// How the query grammar quantises and defaults times.
    pub fn query_config(&self) -> QueryConfig {
        self.config.query
    }

    /// Whether `user` may delete (stop) `job`: its owner or an admin; anyone when nobody
    /// logs in. A job started before logins were required has no owner: admins only.
    pub fn may_manage(&self, user: Option<&str>, job: &Job) -> bool {
        if !self.config.login_required {
            return true;
        }
        let Some(user) = user else { return false };
        job.user.as_deref() == Some(user) || self.config.auth.admins.iter().any(|a| a == user)
    }

    /// Whether `user` sees `job` in listings and by id (`[auth] share_jobs`).
    pub fn may_see(&self, user: Option<&str>, job: &Job) -> bool {
        self.config.auth.share_jobs || self.may_manage(user, job)
    }

    /// Every job `user` may see, newest first as the registry lists them.
    pub fn jobs_for(&self, user: Option<&str>) -> Vec<Arc<Job>> {
        let mut all = self.registry.all();
        all.retain(|j| self.may_see(user, j));
        all
    }
}

/// What the connection knows about the client.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The user named by a verified client certificate.
    pub cert_user: Option<String>,
    /// What the connection's writer has flushed (capture bodies end after their bytes left).
    pub wire: Arc<wire::Wire>,
    /// Requests in flight, idleness, whether it has authenticated.
    pub activity: Arc<conn::Activity>,
}

/// Serves on `listener` until `shutdown` completes, then shuts down gracefully (see the
/// module documentation): HTTPS when `tls` is given.
///
/// # Errors
/// None today: accept errors (a full descriptor table) back off and retry.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<Arc<tls::Tls>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(state.config.max_connections));
    let graceful = GracefulShutdown::new();
    let strangers = conn::Strangers::new(state.config.max_connections / 2);
    // Connections still in their TLS handshake when the shutdown starts are dropped.
    let stopping = CancellationToken::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (stranger, evicted) = strangers.join();
        let activity = Arc::new(conn::Activity::new(Some((
            stranger,
            Arc::clone(&strangers),
        ))));
        let state = Arc::clone(&state);
        let tls = tls.clone();
        let watcher = graceful.watcher();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = Connected::new(Arc::clone(state.registry.metrics()));
            let timeout = state.config.header_timeout;
            let served = async move {
                match tls {
                    None => {
                        let (stream, wire) = wire::Watched::new(stream);
                        let info = ConnInfo {
                            peer,
                            tls: false,
                            cert_user: None,
                            wire,
                            activity,
                        };
                        serve_conn(TokioIo::new(stream), info, state, false, timeout, watcher)
                            .await;
                    }
                    Some(tls) => {
                        // A client that stalls its handshake is cut off like a slow header.
                        let s = tokio::select! {
                            r = tokio::time::timeout(timeout, tls.acceptor.accept(stream)) => match r {
                                Ok(Ok(s)) => {
                                    state.registry.metrics().tls_handshake("ok");
                                    s
                                }
                                Ok(Err(e)) => {
                                    state.registry.metrics().tls_handshake("failed");
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    state.registry.metrics().tls_handshake("timeout");
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            },
                            () = stopping.cancelled() => return,
                        };
                        let (_, conn) = s.get_ref();
                        let h2 = conn.alpn_protocol() == Some(b"h2");
                        let cert_user = conn
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(tls::cert_user);
                        let (s, wire) = wire::Watched::new(s);
                        let info = ConnInfo {
                            peer,
                            tls: true,
                            cert_user,
                            wire,
                            activity,
                        };
                        serve_conn(TokioIo::new(s), info, state, h2, timeout, watcher).await;
                    }
                }
            };
            tokio::select! {
                () = served => {}
                () = evicted.cancelled() => {}
            }
        });
    }
    drop(listener);
    stopping.cancel();
    let grace = state.config.shutdown_grace;
    tracing::info!(
        connections = graceful.count(),
        grace_s = grace.as_secs_f64(),
        "shutdown: no longer accepting; live streams may finish within the grace"
    );
    let all_closed = graceful.shutdown();
    tokio::pin!(all_closed);
    if tokio::time::timeout(grace, &mut all_closed).await.is_ok() {
        tracing::info!("shutdown: every connection finished within the grace");
        return Ok(());
    }
    tracing::info!("shutdown: grace over; cutting live streams at a record boundary");
    // Jobs still running stop first (their readers' streams end incomplete, at a record
    // boundary), then streams of complete files are cut.
    state.registry.interrupt();
    state.cut.cancel();
    if tokio::time::timeout(CUT_WAIT, &mut all_closed)
        .await
        .is_err()
    {
        tracing::warn!("shutdown: some connections did not close; leaving them");
    }
    Ok(())
}

/// An open connection, counted in the metrics for as long as it lives.
struct Connected(Arc<crate::metrics::Metrics>);

impl Connected {
    fn new(metrics: Arc<crate::metrics::Metrics>) -> Connected {
        metrics.connection(true);
        Connected(metrics)
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.connection(false);
    }
}

async fn serve_conn<I>(
    io: I,
    info: ConnInfo,
    state: Arc<AppState>,
    h2: bool,
    timeout: Duration,
    watcher: Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = info.peer;
    let activity = Arc::clone(&info.activity);
    let (idle_timeout, stranger_timeout) = (state.config.idle_timeout, timeout);
    let svc = service_fn(move |req: http::Request<Incoming>| {
        let state = Arc::clone(&state);
        let info = info.clone();
        async move {
            // In flight until the response body ends: a long download is never idle.
            let in_flight = info.activity.begin();
            let r = front::handle(req, state, info).await;
            Ok::<_, Infallible>(r.map(|b| conn::Held::new(b, in_flight).boxed()))
        }
    });
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // A client that dribbles its headers is cut off.
        .header_read_timeout(timeout);
    // HTTP/2 has no header timeout in hyper: pings find dead peers instead.
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(timeout);
    // The protocol is known (ALPN, or plain HTTP/1.1 behind a proxy): no sniffing of the
    // first bytes, which would wait on a slow client without a timeout.
    let b = if h2 { b.http2_only() } else { b.http1_only() };
    tokio::select! {
        r = watcher.watch(b.serve_connection(io, svc)) => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = activity.idle(idle_timeout, stranger_timeout) => {
            tracing::debug!(%peer, "idle connection closed");
        }
    }
}

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A JSON response.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("valid response")
}
