//! The HTTP front: hyper 1 over tokio, every route under the configured prefix.
//!
//! [`serve`] takes a bound listener and a shutdown future (tests bind `127.0.0.1:0`); each
//! connection is served on its own task. Routes live in [`api`]; this module owns the accept
//! loop, the response helpers and the mapping of errors to status codes (client faults → 4xx
//! with a JSON body naming the clause, capacity → 503/507, our faults → 500 with details only
//! in the log).

pub mod api;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::jobs::Registry;

/// The body type of every response.
pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Shared state of the server.
#[derive(Debug)]
pub struct AppState {
    /// The configuration.
    pub config: Config,
    /// The jobs.
    pub registry: Arc<Registry>,
}

/// Serves HTTP on `listener` until `shutdown` completes. Connections in flight finish on their
/// own tasks.
///
/// # Errors
/// Only if accepting fails persistently (transient errors back off and retry).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<Incoming>| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(api::handle(req, state).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                // A client that dribbles its headers is cut off.
                .header_read_timeout(std::time::Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
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
