//! What really went out, per response: the access-log line (every request, to the tracing
//! output under the target `docket::access`: method, path, status, bytes, duration, user,
//! client, result) and the audit log (one JSON line per request for packets — a capture
//! download or a job submission — appended to its own file, never to the tracing output).
//!
//! A route that serves or starts a job attaches an [`AuditInfo`] (canonical query, job id) to
//! its response's extensions; the front door wraps every response's body in [`Tracked`],
//! which counts the bytes the client was handed and writes the line when the body ends or is
//! dropped. So the line says what really went out: `"result": "complete"` when the body
//! ended cleanly, `"aborted"` when the job failed mid-stream, `"disconnected"` when the client
//! went away first. Each line is written with one `write` on an `O_APPEND` file, so
//! concurrent lines never interleave.
//!
//! An audited request has two lines sharing a `request` id: `"event": "start"` when its
//! response begins (who, from where, which query and job), and `"event": "end"` with the bytes
//! and the result. A transfer cut by a crash or `kill -9` keeps its start line.

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// What a packet route tells the audit log about its response.
#[derive(Debug, Clone)]
pub struct AuditInfo {
    /// The canonical query, if the request carried one.
    pub query: Option<String>,
    /// The job, if the request got that far.
    pub job: Option<String>,
    /// Whether the body is a capture (bytes delivered count) or job JSON.
    pub capture: bool,
    /// The id the start and end lines share (set when the start line is written).
    pub request: String,
}

/// The audit file.
#[derive(Debug)]
pub struct AuditLog(Mutex<File>);

impl AuditLog {
    /// Opens (creates) `path` for appending.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AuditLog(Mutex::new(f)))
    }

    fn write(&self, v: &serde_json::Value) {
        let mut line = serde_json::to_vec(v).unwrap_or_default();
        line.push(b'\n');
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}

/// The request side of an audit line.
#[derive(Debug, Clone)]
pub struct Who {
    /// The user (None when authentication is off).
    pub user: Option<String>,
    /// The client address (after trusted proxies).
    pub client: IpAddr,
    /// Method.
    pub method: String,
    /// Path as requested.
    pub path: String,
}

/// What the metrics learn of a response when it ends.
pub struct Counted {
    /// Where it is counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// A capture response: its job (whose packets a whole answer delivered).
    pub capture: Option<Option<Arc<crate::jobs::Job>>>,
}

/// A body that writes the access-log line, and the audit line when there is one, when it
/// ends or is dropped, and counts it in the metrics.
pub struct Tracked<B> {
    inner: B,
    audit: Option<(Arc<AuditLog>, AuditInfo)>,
    counted: Counted,
    who: Who,
    start: std::time::Instant,
    status: u16,
    bytes: u64,
    /// `Content-Length`, if known: hyper stops polling a body once it has that many bytes.
    expect: Option<u64>,
    result: Option<&'static str>,
}

/// A process-unique id for an audited request: the start time of the process (hex ns) and a
/// counter, so ids do not repeat across restarts.
fn request_id() -> String {
    static STARTED: std::sync::OnceLock<i128> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let boot = STARTED.get_or_init(|| crate::pcap::Timestamp::now().as_nanos());
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{boot:x}-{n}")
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl<B> Tracked<B> {
    /// Wraps `inner`; `audit` when the response is one the audit log records (its start line
    /// is written now).
    pub fn new(
        inner: B,
        mut audit: Option<(Arc<AuditLog>, AuditInfo)>,
        counted: Counted,
        who: Who,
        start: std::time::Instant,
        status: u16,
        expect: Option<u64>,
    ) -> Self {
        if counted.capture.is_some() {
            counted.metrics.capture_head(start.elapsed());
            counted.metrics.capture_stream(true);
        }
        if let Some((log, info)) = &mut audit {
            info.request = request_id();
            log.write(&serde_json::json!({
                "event": "start",
                "request": info.request,
                "time": now_rfc3339(),
                "user": who.user,
                "client": who.client.to_string(),
                "method": who.method,
                "path": who.path,
                "query": info.query,
                "job": info.job,
                "kind": if info.capture { "capture" } else { "job" },
                "status": status,
            }));
        }
        Tracked {
            inner,
            audit,
            counted,
            who,
            start,
            status,
            bytes: 0,
            expect,
            result: None,
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        let result = self.result.unwrap_or(if Some(self.bytes) == self.expect {
            "complete"
        } else {
            "disconnected"
        });
        tracing::info!(
            target: "docket::access",
            method = %self.who.method,
            path = %self.who.path.escape_debug(),
            status = self.status,
            bytes = self.bytes,
            duration_ms = self.start.elapsed().as_millis() as u64,
            user = %self.who.user.as_deref().unwrap_or("-").escape_debug(),
            client = %self.who.client,
            result,
            "request"
        );
        let m = &self.counted.metrics;
        m.response(self.status, self.counted.capture.is_some(), self.bytes);
        if let Some(job) = &self.counted.capture {
            m.capture_stream(false);
            // Packets count only for a whole answer delivered in full (not a range of one).
            let whole = result == "complete" && self.status == 200;
            let packets = job.as_ref().filter(|_| whole).map(|j| j.snapshot().packets);
            m.capture_served(result, packets);
        }
        let Some((log, info)) = &self.audit else {
            return;
        };
        log.write(&serde_json::json!({
            "event": "end",
            "request": info.request,
            "time": now_rfc3339(),
            "user": self.who.user,
            "client": self.who.client.to_string(),
            "method": self.who.method,
            "path": self.who.path,
            "query": info.query,
            "job": info.job,
            "kind": if info.capture { "capture" } else { "job" },
            "status": self.status,
            "bytes": self.bytes,
            "result": result,
            "duration_ms": self.start.elapsed().as_millis() as u64,
        }));
    }
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.bytes += d.len() as u64;
                }
                // Trailers are the last frame: hyper may stop polling after them (an HTTP/1.1
                // client that did not ask for trailers never gets them, nor the `None`).
                if (f.is_trailers() || self.inner.is_end_stream()) && self.result.is_none() {
                    self.result = Some("complete");
                }
            }
            Poll::Ready(Some(Err(_))) => self.result = Some("aborted"),
            Poll::Ready(None) => {
                if self.result.is_none() {
                    self.result = Some("complete");
                }
            }
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
