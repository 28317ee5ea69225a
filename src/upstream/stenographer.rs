//! A Stenographer sensor as an upstream: `POST https://host:port/query` over HTTP/1.1 with the
//! sensor's client certificate, the response body streamed chunk by chunk into the pcap
//! [`Reader`] and on into the job's merge — never buffered whole.
//!
//! Invariants:
//! - The sensor is asked for the query's window widened by `slack` on both sides (Stenographer
//!   selects whole files by time, with its own minute of slack), and every packet is gated here
//!   to the exact half-open window `[after, before)`.
//! - The structured clauses (host, net, port, proto) are pushed down in Stenographer's language;
//!   a raw `bpf` clause, which Stenographer cannot evaluate, is applied here (libpcap, per link
//!   type) to this sensor's packets.
//! - Any fault fails only this sensor, with a reason a person can act on: refused connection,
//!   TLS failure, a non-200 status (its body text is the reason), a body that is not pcap, a
//!   stream that stalls (idle timeout) or ends mid-record. Packets already merged stay merged.
//! - Each phase has its own budget (connect + handshake, first byte, idle, total); an answer
//!   that ends cleanly near the sensor's own cut-off (15 min) is flagged "possibly truncated".

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{sensor_tls, Error, Limits, Message, BATCH_PACKETS};
use crate::config;
use crate::pcap::{Gate, Next, Packet, Reader, Timestamp};
use crate::query::Query;

/// Bytes of a non-200 body kept as the error text.
const ERROR_BODY_MAX: usize = 1024;

/// An answer ending within this much of the sensor's cut-off may have been cut by it.
const CUTOFF_MARGIN: Duration = Duration::from_secs(30);

/// A configured sensor, with its TLS configuration built once.
pub struct Sensor {
    config: config::Stenographer,
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Sensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sensor")
            .field("config", &self.config)
            .finish()
    }
}

/// `/debug/stats` of a sensor: `name value` lines.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Every counter, in the sensor's order.
    pub values: Vec<(String, i64)>,
}

impl Stats {
    /// Oldest packet the sensor holds (`oldest_timestamp`, ns since the epoch; absent or 0
    /// means nothing stored yet).
    pub fn oldest(&self) -> Option<Timestamp> {
        self.values
            .iter()
            .find(|(k, _)| k == "oldest_timestamp")
            .and_then(|&(_, v)| (v > 0).then_some(Timestamp(i128::from(v))))
    }
}

impl Sensor {
    /// Loads the sensor's certificates and key.
    ///
    /// # Errors
    /// Unreadable or unusable TLS material, or a host that is no name or address.
    pub fn new(config: &config::Stenographer) -> Result<Sensor, sensor_tls::Error> {
        let tls = sensor_tls::client_config(&config.ca, &config.cert, &config.key, &config.host)?;
        let server_name =
            sensor_tls::server_name(&config.host).map_err(|message| sensor_tls::Error {
                path: "host".into(),
                message,
            })?;
        Ok(Sensor {
            config: config.clone(),
            tls: tokio_rustls::TlsConnector::from(tls),
            server_name,
        })
    }

    /// The sensor's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// `https://host:port`.
    pub fn url(&self) -> String {
        if self.config.host.contains(':') {
            format!("https://[{}]:{}", self.config.host, self.config.port)
        } else {
            format!("https://{}:{}", self.config.host, self.config.port)
        }
    }

    /// Answers `query` on `tx` from a task of its own, until done, `tx` closes or `cancel` fires.
    pub fn query(
        self: &Arc<Self>,
        query: Arc<Query>,
        limits: Limits,
        tx: mpsc::Sender<Message>,
        cancel: CancellationToken,
    ) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            // Data availability, concurrently with the query: a window that starts before the
            // sensor's oldest packet gets a warning (the answer is complete for what exists).
            let warn_tx = tx.clone();
            let after = query.after;
            let stats_me = Arc::clone(&me);
            let stats = tokio::spawn(async move {
                if let Ok(s) = stats_me.stats().await {
                    if let Some(oldest) = s.oldest().filter(|&o| after < o) {
                        let _ = warn_tx
                            .send(Message::Warning(format!(
                                "the window starts before the sensor's oldest data ({})",
                                crate::query::rfc3339(oldest.0)
                            )))
                            .await;
                    }
                }
            });
            let outcome = tokio::select! {
                r = me.answer(&query, limits, &tx) => r,
                _ = cancel.cancelled() => Ok(()),
            };
            stats.abort();
            if let Err(e) = outcome {
                let _ = tx.send(Message::Failed(e)).await;
            }
        });
    }

    /// Connects and completes the TLS handshake within `connect_timeout`, and returns an
    /// HTTP/1.1 sender whose connection runs on its own task.
    async fn connect(&self) -> Result<http1::SendRequest<Full<Bytes>>, Error> {
        // One budget for both steps.
        let budget = self.config.connect_timeout;
        let deadline = tokio::time::Instant::now() + budget;
        let addr = self.url().trim_start_matches("https://").to_owned();
        let tcp = tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(&addr))
            .await
            .map_err(|_| Error::Timeout {
                phase: "connect",
                after: budget,
            })?
            .map_err(|source| Error::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let tls =
            tokio::time::timeout_at(deadline, self.tls.connect(self.server_name.clone(), tcp))
                .await
                .map_err(|_| Error::Timeout {
                    phase: "TLS handshake",
                    after: budget,
                })?
                .map_err(|e| Error::Tls(e.to_string()))?;
        let (send, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| http_error(&e))?;
        tokio::spawn(async move {
            // Errors surface through the request or the body.
            let _ = conn.await;
        });
        Ok(send)
    }

    /// Sends one request and waits for the response head within `first_byte_timeout`; a
    /// non-200 answer is an error carrying (the start of) its body.
    async fn request(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        let mut send = self.connect().await?;
        let budget = self.config.first_byte_timeout;
        let resp = tokio::time::timeout(budget, send.send_request(req))
            .await
            .map_err(|_| Error::Timeout {
                phase: "response headers",
                after: budget,
            })?
            .map_err(|e| http_error(&e))?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let mut body = resp.into_body();
            let mut text = Vec::new();
            while text.len() < ERROR_BODY_MAX {
                match tokio::time::timeout(self.config.idle_timeout, body.frame()).await {
                    Ok(Some(Ok(f))) => {
                        if let Some(d) = f.data_ref() {
                            text.extend_from_slice(d);
                        }
                    }
                    _ => break,
                }
            }
            text.truncate(ERROR_BODY_MAX);
            return Err(Error::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&text).trim().to_owned(),
            });
        }
        Ok(resp)
    }

    fn build(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.url().trim_start_matches("https://"))
    }

    async fn answer(
        &self,
        query: &Query,
        limits: Limits,
        tx: &mpsc::Sender<Message>,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let text = query.stenographer_widened(self.config.slack);
        // The sensor counts packets outside the exact window (its slack, ours) towards a
        // limit, and a post-filtered sensor would count packets Docket drops: forward limits
        // only when every packet it returns inside the window is kept, and say so otherwise.
        let mut req = self
            .build(Method::POST, "/query")
            .header(header::CONTENT_TYPE, "text/plain");
        if query.bpf.is_none() {
            if let Some(n) = limits.packets {
                req = req.header("Steno-Limit-Packets", n.to_string());
            }
            if let Some(n) = limits.bytes {
                req = req.header("Steno-Limit-Bytes", n.to_string());
            }
        }
        let req = req
            .body(Full::new(Bytes::from(text)))
            .map_err(|e| http_error(&e))?;
        let received = self.stream(req, query, tx).await?;
        if started.elapsed() + CUTOFF_MARGIN >= self.config.server_limit {
            let _ = tx
                .send(Message::Warning(format!(
                    "possibly truncated: the answer took {} s, near the sensor's own limit of {} s",
                    started.elapsed().as_secs(),
                    self.config.server_limit.as_secs()
                )))
                .await;
        }
        if query.bpf.is_none() && limits.packets.is_some_and(|l| received >= l) {
            let _ = tx
                .send(Message::Warning(format!(
                    "stopped at the forwarded limit of {received} packets; the sensor counts \
                     packets outside the exact window too, so its share may end early"
                )))
                .await;
        }
        Ok(())
    }

    /// Sends the request and feeds the response body, frame by frame, through the reader and
    /// the gate into `tx`. Returns how many packets the sensor sent (before gating).
    ///
    /// The total budget (`deadline`) counts only time spent waiting for the sensor, not time
    /// spent waiting for the merge to take packets (a slow client of a direct stream, a slower
    /// sibling upstream): back-pressure must not fail a healthy sensor.
    async fn stream(
        &self,
        req: Request<Full<Bytes>>,
        query: &Query,
        tx: &mpsc::Sender<Message>,
    ) -> Result<u64, Error> {
        let budget = self.config.total_timeout;
        let total = || Error::Timeout {
            phase: "whole answer",
            after: budget.unwrap_or_default(),
        };
        let started = Instant::now();
        let head = match budget {
            Some(b) => tokio::time::timeout(b, self.request(req))
                .await
                .map_err(|_| total())??,
            None => self.request(req).await?,
        };
        // Time spent waiting on the sensor, against `budget`.
        let mut waited = started.elapsed();
        let mut body = head.into_body();
        let mut out = Stream {
            reader: Reader::new(),
            // The structured clauses were pushed down: Stenographer applied them (looking through
            // VLAN and MPLS itself); only the raw BPF clause is Docket's to apply.
            gate: Gate::new(query.after, query.before, None, query.bpf.clone()),
            batch: Vec::with_capacity(BATCH_PACKETS),
            declared: false,
            received: 0,
        };
        loop {
            let left = budget.map(|b| b.saturating_sub(waited));
            let wait = left.map_or(self.config.idle_timeout, |l| {
                l.min(self.config.idle_timeout)
            });
            let asked = Instant::now();
            let frame = tokio::time::timeout(wait, body.frame()).await;
            waited += asked.elapsed();
            let frame = match frame {
                Ok(f) => f,
                Err(_) if left.is_some_and(|l| l < self.config.idle_timeout) => return Err(total()),
                Err(_) => {
                    return Err(Error::Timeout {
                        phase: "idle (no data)",
                        after: self.config.idle_timeout,
                    })
                }
            };
            match frame {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        out.reader.push(data);
                    }
                    out.drain(tx).await?;
                }
                Some(Err(e)) => {
                    // Whatever arrived whole is kept; the rest is this sensor's failure.
                    out.drain(tx).await?;
                    return Err(Error::Http(format!(
                        "the answer broke off after {} bytes: {}",
                        out.reader.offset() + out.reader.buffered() as u64,
                        chain(&e)
                    )));
                }
                None => {
                    out.reader.finish();
                    out.drain(tx).await?;
                    return Ok(out.received);
                }
            }
        }
    }

    /// `GET /debug/stats` within `stats_timeout`.
    ///
    /// # Errors
    /// The sensor is unreachable, refuses, or answers something that is not `name value` lines.
    pub async fn stats(&self) -> Result<Stats, Error> {
        let budget = self.config.stats_timeout;
        let fetch = async {
            let req = self
                .build(Method::GET, "/debug/stats")
                .body(Full::new(Bytes::new()))
                .map_err(|e| http_error(&e))?;
            let resp = self.request(req).await?;
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| http_error(&e))?
                .to_bytes();
            Ok::<_, Error>(body)
        };
        let body = tokio::time::timeout(budget, fetch)
            .await
            .map_err(|_| Error::Timeout {
                phase: "stats",
                after: budget,
            })??;
        let text = String::from_utf8_lossy(&body);
        let values = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let (k, v) = (it.next()?, it.next()?);
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect();
        Ok(Stats { values })
    }
}

/// An error and its sources, `: `-separated: hyper's own message ("connection error") hides
/// the reason (a TLS alert, a reset) in its source.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A failed exchange, as a TLS failure when TLS is the cause: under TLS 1.3 a sensor refuses
/// Docket's client certificate only after the client has finished its handshake, so the alert
/// arrives with the first response instead.
fn http_error(e: &(dyn std::error::Error + 'static)) -> Error {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        // An io::Error's `source()` skips the error it wraps: look inside it explicitly.
        let tls = c.downcast_ref::<rustls::Error>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            let hint = match tls {
                rustls::Error::AlertReceived(
                    rustls::AlertDescription::UnknownCA
                    | rustls::AlertDescription::BadCertificate
                    | rustls::AlertDescription::CertificateRequired
                    | rustls::AlertDescription::CertificateUnknown
                    | rustls::AlertDescription::AccessDenied,
                ) => " (the sensor refused Docket's client certificate)",
                _ => "",
            };
            return Error::Tls(format!("{tls}{hint}"));
        }
        cur = c.source();
    }
    Error::Http(chain(e))
}

/// Sends a message unless the job has gone.
async fn send(tx: &mpsc::Sender<Message>, m: Message) -> Result<(), Error> {
    tx.send(m).await.map_err(|_| Error::Gone)
}

async fn flush(batch: &mut Vec<Packet>, tx: &mpsc::Sender<Message>) -> Result<(), Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let full = std::mem::replace(batch, Vec::with_capacity(BATCH_PACKETS));
    send(tx, Message::Batch(full)).await
}

/// A response being read: the reader, the gate, the batch being filled.
struct Stream {
    reader: Reader,
    gate: Gate,
    batch: Vec<Packet>,
    declared: bool,
    received: u64,
}

impl Stream {
    /// Takes every whole packet out of the reader: declares the stream's link types once the
    /// header is read, gates and filters packets, sends full batches, and what is left when
    /// the reader needs more bytes (the merge may be waiting for it).
    async fn drain(&mut self, tx: &mpsc::Sender<Message>) -> Result<(), Error> {
        loop {
            let next = self.reader.next_packet().map_err(Error::Capture);
            let declarable = !self.reader.declared().is_empty() || matches!(next, Ok(Next::End));
            if !self.declared && declarable {
                self.declared = true;
                send(tx, Message::Declared(self.reader.declared().to_vec())).await?;
            }
            match next {
                Ok(Next::Packet(p)) => {
                    self.received += 1;
                    if self.gate.admits(&p) {
                        self.batch.push(p);
                        if self.batch.len() == BATCH_PACKETS {
                            flush(&mut self.batch, tx).await?;
                        }
                    }
                }
                Ok(Next::NeedMore | Next::End) => return flush(&mut self.batch, tx).await,
                Err(e) => {
                    // Packets before the damage are good: they go out before the failure.
                    flush(&mut self.batch, tx).await?;
                    return Err(e);
                }
            }
        }
    }
}
