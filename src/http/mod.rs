//! The HTTP front: hyper 1 over tokio, every route under the configured prefix.
//!
//! [`serve`] takes a bound listener and a shutdown future (tests bind `127.0.0.1:0`); each
//! connection is served on its own task, at most `http.max_connections` at once (the accept
//! loop waits for a free slot, so a flood waits in the kernel's queue, not in our memory).
//! With `[tls]`, each connection is a rustls handshake (bounded by `http.header_timeout`)
//! and then HTTP/2 or HTTP/1.1 as ALPN chose; without, plain HTTP/1.1. [`front`] checks who is
//! asking and adds the security headers; routes live in [`api`] and [`ui`]. This module owns
//! the accept loop, the response helpers and the mapping of errors to status codes (client
//! faults → 4xx with a JSON body naming the clause, capacity → 503/507, our faults → 500 with
//! details only in the log).

pub mod api;
pub mod audit;
pub mod auth;
pub mod front;
pub mod tls;
pub mod ui;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::jobs::Registry;
use crate::query::JobId;

/// The body type of every response.
pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Most job-to-user records kept for the jobs page; older ones are dropped once their job
/// is gone from the registry.
const MAX_REQUESTERS: usize = 4096;

/// Shared state of the server.
#[derive(Debug)]
pub struct AppState {
    /// The configuration.
    pub config: Config,
    /// The jobs.
    pub registry: Arc<Registry>,
    /// Password store, if `[auth] htpasswd` is set.
    pub htpasswd: Option<auth::Htpasswd>,
    /// Failed-login limiter.
    pub limiter: auth::Limiter,
    /// Audit log, if `[audit] path` is set.
    pub audit: Option<Arc<audit::AuditLog>>,
    /// Who first asked for each job (the jobs page's "user" column; jobs don't know users).
    requesters: Mutex<HashMap<JobId, String>>,
}

impl AppState {
    /// Builds the state: opens the audit log.
    ///
    /// # Errors
    /// The audit log cannot be opened.
    pub fn new(config: Config, registry: Arc<Registry>) -> std::io::Result<AppState> {
        let audit = match &config.audit_path {
            Some(p) => Some(Arc::new(audit::AuditLog::open(p).map_err(|e| {
                std::io::Error::new(e.kind(), format!("audit log {}: {e}", p.display()))
            })?)),
            None => None,
        };
        Ok(AppState {
            htpasswd: config.auth.htpasswd.clone().map(auth::Htpasswd::new),
            limiter: auth::Limiter::new(
                config.auth.max_failures,
                Duration::from_secs(config.auth.failure_window),
            ),
            audit,
            requesters: Mutex::new(HashMap::new()),
            config,
            registry,
        })
    }

    /// Records that `user` asked for `id` (the first asker is kept).
    pub fn note_requester(&self, id: JobId, user: &str) {
        let mut m = self.requesters.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_REQUESTERS {
            m.retain(|id, _| self.registry.get(id).is_some());
        }
        m.entry(id).or_insert_with(|| user.to_owned());
    }

    /// Who first asked for `id`, if known.
    pub fn requester(&self, id: &JobId) -> Option<String> {
        self.requesters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
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
}

/// Serves on `listener` until `shutdown` completes: HTTPS when `tls` is given. Connections in
/// flight finish on their own tasks.
///
/// # Errors
/// Only if accepting fails persistently (transient errors back off and retry).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<Arc<tls::Tls>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(state.config.max_connections));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => return Ok(()),
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
            _ = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let timeout = Duration::from_secs(state.config.header_timeout);
            match tls {
                None => {
                    let info = ConnInfo {
                        peer,
                        tls: false,
                        cert_user: None,
                    };
                    serve_conn(TokioIo::new(stream), info, state, false, timeout).await;
                }
                Some(tls) => {
                    // A client that stalls its handshake is cut off like a slow header.
                    let s = match tokio::time::timeout(timeout, tls.acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let (_, conn) = s.get_ref();
                    let h2 = conn.alpn_protocol() == Some(b"h2");
                    let cert_user = conn
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(tls::cert_user);
                    let info = ConnInfo {
                        peer,
                        tls: true,
                        cert_user,
                    };
                    serve_conn(TokioIo::new(s), info, state, h2, timeout).await;
                }
            }
        });
    }
}

async fn serve_conn<I>(io: I, info: ConnInfo, state: Arc<AppState>, h2: bool, timeout: Duration)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = info.peer;
    let svc = service_fn(move |req: http::Request<Incoming>| {
        let state = Arc::clone(&state);
        let info = info.clone();
        async move { Ok::<_, Infallible>(front::handle(req, state, info).await) }
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
    if let Err(e) = b.serve_connection(io, svc).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("valid response")
}

/// A JSON error: `{"error": message, "clause": ..., "value": ...}`.
pub fn error(
    status: StatusCode,
    message: &str,
    clause: Option<&str>,
    value: Option<&str>,
) -> Response<Body> {
    let mut v = serde_json::json!({ "error": message });
    if let Some(c) = clause {
        v["clause"] = c.into();
    }
    if let Some(x) = value {
        v["value"] = x.into();
    }
    json(status, &v)
}
