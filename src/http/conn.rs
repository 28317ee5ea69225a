//! How long a connection may live without work, and how many may be strangers.
//!
//! Each connection has an [`Activity`]: requests in flight (a request counts until its
//! response body has ended or been dropped, so a long download is never idle), the time the
//! last one ended, and whether it has made an authenticated request. A connection with nothing
//! in flight is closed after `idle_timeout`, or, while it has never authenticated, once it is
//! `header_timeout` old — a client that completes TLS and answers HTTP/2 pings without asking
//! for anything, or polls `healthz`, holds a slot for no longer than one that dribbles its
//! headers.
//!
//! [`Strangers`] bounds connections that have not authenticated to half of `max_connections`:
//! past that, the oldest stranger is closed to make room, so a flood of idle connections can
//! never keep an analyst out (her connection authenticates with its first request and leaves
//! the queue).
//!
//! Invariant: a connection is closed for idleness only with no request in flight.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Body;

/// What a connection is doing.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when the last request ended (or the connection opened).
    last_ms: AtomicU64,
    authenticated: AtomicBool,
    /// This connection's place among the strangers (removed when it authenticates).
    stranger: Option<(u64, Arc<Strangers>)>,
}

impl Activity {
    /// A new connection's activity; a stranger until it authenticates.
    pub fn new(stranger: Option<(u64, Arc<Strangers>)>) -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            authenticated: AtomicBool::new(false),
            stranger,
        }
    }

    /// A request has begun; the returned guard ends it when dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    /// The connection has made an authenticated request: the longer idle limit applies, and
    /// it is no longer counted among the strangers.
    pub fn authenticated(&self) {
        if !self.authenticated.swap(true, Ordering::SeqCst) {
            if let Some((id, s)) = &self.stranger {
                s.leave(*id);
            }
        }
    }

    /// Waits until the connection has been idle for its limit.
    pub async fn idle(&self, idle_timeout: Duration, stranger_timeout: Duration) {
        loop {
            let known = self.authenticated.load(Ordering::SeqCst);
            let limit = if known {
                idle_timeout
            } else {
                stranger_timeout
            };
            // A stranger's time counts from the connection's start: requests that need no
            // login (`healthz`) do not keep it open.
            let since = if known {
                self.opened + Duration::from_millis(self.last_ms.load(Ordering::SeqCst))
            } else {
                self.opened
            };
            let busy = self.in_flight.load(Ordering::SeqCst) > 0;
            if !busy && since.elapsed() >= limit {
                return;
            }
            // Re-checked at least once a second; a busy connection is checked again after its
            // request could have ended.
            let next = if busy {
                Duration::from_secs(1)
            } else {
                (limit - since.elapsed()).min(Duration::from_secs(1))
            };
            tokio::time::sleep(next.max(Duration::from_millis(10))).await;
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        if let Some((id, s)) = &self.stranger {
            s.leave(*id);
        }
    }
}

/// A request in flight; ends when dropped (with its response body).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_ms
            .store(a.opened.elapsed().as_millis() as u64, Ordering::SeqCst);
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps something alive until it ends: its request in flight
/// ([`InFlight`]), or an unread request body (dropping an HTTP/2 request body resets the
/// stream, which would destroy a refusal sent before reading it).
pub struct Held<T> {
    inner: Body,
    _held: T,
}

impl<T> Held<T> {
    /// Holds `held` as long as `inner`.
    pub fn new(inner: Body, held: T) -> Held<T> {
        Held { inner, _held: held }
    }
}

impl<T: Unpin> http_body::Body for Held<T> {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Connections that have not authenticated yet, oldest first, at most `cap`.
#[derive(Debug)]
pub struct Strangers {
    cap: usize,
    next: AtomicU64,
    queue: Mutex<VecDeque<(u64, CancellationToken)>>,
}

impl Strangers {
    /// At most `cap` strangers at once.
    pub fn new(cap: usize) -> Arc<Strangers> {
        Arc::new(Strangers {
            cap: cap.max(1),
            next: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
        })
    }

    /// A new connection joins: its id, and the token that closes it if it is evicted. The
    /// oldest stranger is evicted when the queue is full.
    pub fn join(self: &Arc<Self>) -> (u64, CancellationToken) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        while q.len() >= self.cap {
            if let Some((_, oldest)) = q.pop_front() {
                tracing::debug!("too many unauthenticated connections: closing the oldest");
                oldest.cancel();
            }
        }
        q.push_back((id, token.clone()));
        (id, token)
    }

    fn leave(&self, id: u64) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = q.iter().position(|(x, _)| *x == id) {
            q.remove(i);
        }
    }
}
