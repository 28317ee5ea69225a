//! The connection's bytes on their way to the client, and capture bodies that end early
//! without splitting a record.
//!
//! A capture body that must end before its last byte (shutdown cut, job interrupted, a client
//! stalling a direct stream) ends with an error, so that the client sees a truncated transfer
//! (no final chunk; `RST_STREAM` on HTTP/2). hyper drops whatever it still holds of the
//! connection's output when a body fails, so an error returned at once could split the last
//! record that was handed over. [`Watched`] wraps the connection's stream and counts completed
//! flushes ([`Wire`]); [`Guarded`] holds a body's error back until a flush has completed after
//! its last data frame with nothing written since (every byte it returned has left the
//! process), or until [`HOLD`] has passed (a client that does not read loses the tail anyway).
//!
//! Invariant: a [`Guarded`] body never ends early before the bytes it returned were flushed,
//! unless [`HOLD`] ran out.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::Body;

/// How long an ending body waits for its bytes to be flushed.
pub const HOLD: Duration = Duration::from_secs(5);

/// How often a held error re-checks the wire.
const RECHECK: Duration = Duration::from_millis(10);

/// What a connection's writer has done: completed flushes, and whether bytes were written
/// since the last one.
#[derive(Debug, Default)]
pub struct Wire {
    flushes: AtomicU64,
    dirty: AtomicBool,
}

impl Wire {
    fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }

    /// True when a flush completed after flush number `mark` and nothing was written since.
    fn flushed_since(&self, mark: u64) -> bool {
        !self.dirty.load(Ordering::SeqCst) && self.flushes() > mark
    }
}

/// A connection's stream that records its writes and flushes on a [`Wire`].
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    wire: Arc<Wire>,
}

impl<S> Watched<S> {
    /// Wraps `inner`; the [`Wire`] is shared with the connection's bodies.
    pub fn new(inner: S) -> (Watched<S>, Arc<Wire>) {
        let wire = Arc::new(Wire::default());
        (
            Watched {
                inner,
                wire: Arc::clone(&wire),
            },
            wire,
        )
    }

    /// The wrapped stream (e.g. to read the TLS session).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.wire.dirty.store(true, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.wire.dirty.store(true, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        // hyper flushes after writing out everything it buffered: a completed flush with no
        // write since means nothing handed over is left in this process (TLS included).
        self.wire.dirty.store(false, Ordering::SeqCst);
        self.wire.flushes.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body whose early end waits (bounded) until the bytes it returned have been flushed.
pub struct Guarded {
    inner: Body,
    wire: Option<Arc<Wire>>,
    /// The flush count when the last data frame was returned.
    mark: u64,
    held: Option<(BoxError, Instant)>,
    tick: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    /// Guards `inner` on the connection's `wire` (none: errors pass at once).
    pub fn new(inner: Body, wire: Option<Arc<Wire>>) -> Guarded {
        Guarded {
            inner,
            wire,
            mark: 0,
            held: None,
            tick: None,
        }
    }
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some((_, deadline)) = &this.held {
                let flushed = this
                    .wire
                    .as_ref()
                    .is_none_or(|w| w.flushed_since(this.mark));
                if flushed || Instant::now() >= *deadline {
                    let (e, _) = this.held.take().expect("held");
                    return Poll::Ready(Some(Err(e)));
                }
                let tick = this
                    .tick
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(RECHECK)));
                ready!(tick.as_mut().poll(cx));
                this.tick = None;
                continue;
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if frame.is_data() {
                        if let Some(w) = &this.wire {
                            this.mark = w.flushes();
                        }
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(e)) => this.held = Some((e, Instant::now() + HOLD)),
                None => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
