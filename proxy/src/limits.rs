//! Bounds on what one sidecar takes on at once, so that no client can make it grow without
//! limit: open connections per listener, requests being handled, requests held (see
//! [`crate::hold`]) and the replay buffer per request (see [`crate::retry`]).
//!
//! Past a bound the answer is immediate: a 503 with `Retry-After`, never a queue. Each
//! refusal is counted in the metrics (`understudy_proxy_connections_rejected_total`,
//! `understudy_proxy_sidecar_answers_total{reason="request_limit"|"hold_full"}`).

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::BoxError;
use crate::body::Cut;

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

/// The error a request body ends with when it is late ([`body_deadline`]).
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {allowed:?} (--body-timeout)")]
pub struct BodyTimeout {
    /// The bound.
    pub allowed: Duration,
}

/// A request body that must arrive in full within `allowed` of `started`: the idle timeout
/// alone lets a client that sends one byte now and then hold a request (and its place) for
/// ever.
pub fn body_deadline<B>(
    body: B,
    started: Instant,
    allowed: Duration,
) -> Cut<B, impl Future<Output = BoxError> + Send + 'static> {
    Cut::new(body, async move {
        tokio::time::sleep_until(started + allowed).await;
        BoxError::from(BodyTimeout { allowed })
    })
}

#[cfg(test)]
mod tests;
