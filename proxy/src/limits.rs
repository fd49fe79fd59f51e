//! Bounds on what one sidecar takes on at once, so that no client can make it grow without
//! limit: open connections per listener, requests being handled, requests held (see
//! [`crate::hold`]) and the replay buffer per request (see [`crate::retry`]).
//!
//! Past a bound the answer is immediate: a 503 with `Retry-After`, never a queue. Each
//! refusal is counted in the metrics (`understudy_proxy_connections_rejected_total`,
//! `understudy_proxy_sidecar_answers_total{reason="request_limit"|"hold_full"}`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus::{IntCounter, IntGauge};
use std::future::Future;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::BoxError;

/// Longest request target accepted, bytes; a longer one is answered 414. (A request line
/// longer than `--max-header-bytes` is refused by the HTTP/1 parser with 431 before that.)
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// What a connection over the limit is told before it is closed: the listener serves both
/// HTTP/1 and h2c, and an HTTP/1 answer is what a client that is turned away can read.
pub(crate) const CONNECTION_REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 39\r\n\
\r\n\
understudy: too many open connections\r\n";

/// The bound on a listener's open connections, with its gauges.
#[derive(Clone, Debug)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
    open: IntGauge,
    rejected: IntCounter,
}

impl ConnectionLimit {
    /// At most `max` connections at once; `open` and `rejected` count them.
    pub fn new(max: usize, open: IntGauge, rejected: IntCounter) -> ConnectionLimit {
        ConnectionLimit {
            permits: Arc::new(Semaphore::new(max)),
            max,
            open,
            rejected,
        }
    }

    /// At most `max` connections, counted nowhere (the admin server, tests).
    pub fn unmetered(max: usize) -> ConnectionLimit {
        let gauge = IntGauge::new("connections_open", "unregistered").expect("valid name");
        let counter = IntCounter::new("connections_rejected", "unregistered").expect("valid name");
        ConnectionLimit::new(max, gauge, counter)
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for one more connection, held until dropped; `None` (and counted) when full.
    pub fn admit(&self) -> Option<Admitted> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                self.open.inc();
                Some(Admitted {
                    _permit: permit,
                    open: self.open.clone(),
                })
            }
            Err(_) => {
                self.rejected.inc();
                None
            }
        }
    }
}

/// One admitted connection.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// The bound on requests being handled at once (held ones included), up to their response
/// head.
#[derive(Clone, Debug)]
pub struct RequestLimit {
    permits: Arc<Semaphore>,
    max: usize,
}

impl RequestLimit {
    /// At most `max` requests at once.
    pub fn new(max: usize) -> RequestLimit {
        RequestLimit {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for one more request, or `None` when full.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }
}

/// A request body that must arrive in full by a deadline: the idle timeout alone lets a
/// client that sends one byte now and then hold a request (and its place) for ever.
pub struct DeadlineBody<B> {
    inner: Pin<Box<B>>,
    deadline: Pin<Box<Sleep>>,
    allowed: Duration,
}

/// The error a [`DeadlineBody`] ends with.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {allowed:?} (--body-timeout)")]
pub struct BodyTimeout {
    /// The bound.
    pub allowed: Duration,
}

impl<B> DeadlineBody<B> {
    /// `inner`, which must end within `allowed` of `started`.
    pub fn new(inner: B, started: Instant, allowed: Duration) -> DeadlineBody<B> {
        DeadlineBody {
            inner: Box::pin(inner),
            deadline: Box::pin(tokio::time::sleep_until(started + allowed)),
            allowed,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = this.inner.as_mut().poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout {
                allowed: this.allowed,
            }
            .into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
