//! Holding requests while there is no leader to send them to.
//!
//! A held request's body is not read, so holding costs a task and a socket, not memory for
//! the body. The number of requests held at once is bounded; past the bound, and past the
//! hold deadline, the answer is 503 with `Retry-After`.
//!
//! The deadline is set once, by the first sidecar a request reaches, and travels with it
//! when it is forwarded ([`crate::headers::HOLD_MS`]): a request held first at a standby and
//! then at the leader's sidecar waits about one hold timeout in all, not one per sidecar.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use understudy_elector::View;

/// Why a request could not be held until a leader appeared.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HoldError {
    /// The hold queue is full.
    #[error("hold queue full ({max} requests already waiting for a leader)")]
    Full {
        /// The bound.
        max: usize,
    },
    /// The deadline passed with no leader to send to.
    #[error("no leader within the hold timeout of {timeout:?}")]
    Timeout {
        /// How long this request was allowed to wait here: the hold timeout, or what an
        /// earlier sidecar left of it.
        timeout: Duration,
    },
}

/// Until when one request may be held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// The moment it stops waiting.
    pub at: Instant,
    /// What it was allowed from its arrival here.
    pub allowed: Duration,
}

impl Deadline {
    /// What is left of it at `now`: the budget to pass on when forwarding.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.at.saturating_duration_since(now)
    }

    /// Waits until `ready(view)` holds, or until this deadline.
    pub async fn until<F>(
        self,
        views: &mut watch::Receiver<View>,
        mut ready: F,
    ) -> Result<(), HoldError>
    where
        F: FnMut(&View) -> bool,
    {
        let waited = tokio::time::timeout_at(self.at, views.wait_for(|v| ready(v)))
            .await
            .map(|r| r.map(drop));
        match waited {
            Ok(Ok(())) => Ok(()),
            // The election stopped publishing: nothing will change any more.
            Ok(Err(_)) => {
                tokio::time::sleep_until(self.at).await;
                Err(self.expired())
            }
            Err(_) => Err(self.expired()),
        }
    }

    /// Waits for any new view, or `backoff`, whichever is first, but not past this
    /// deadline. Used after a leader could not be reached: either the view moves on, or we
    /// try again.
    pub async fn backoff(
        self,
        views: &mut watch::Receiver<View>,
        backoff: Duration,
    ) -> Result<(), HoldError> {
        if Instant::now() >= self.at {
            return Err(self.expired());
        }
        let wake = (Instant::now() + backoff).min(self.at);
        tokio::select! {
            changed = views.changed() => {
                if changed.is_err() {
                    tokio::time::sleep_until(wake).await;
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        Ok(())
    }

    fn expired(&self) -> HoldError {
        HoldError::Timeout {
            timeout: self.allowed,
        }
    }
}

/// The bounded hold queue of one proxy.
#[derive(Debug, Clone)]
pub struct Holder {
    slots: Arc<Semaphore>,
    max: usize,
    timeout: Duration,
}

/// A place in the hold queue; released on drop.
#[derive(Debug)]
pub struct Place {
    _permit: OwnedSemaphorePermit,
}

impl Holder {
    /// A queue of at most `max` requests, each held at most `timeout` from its arrival.
    pub fn new(max: usize, timeout: Duration) -> Holder {
        Holder {
            slots: Arc::new(Semaphore::new(max)),
            max,
            timeout,
        }
    }

    /// The hold timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The deadline of a request that arrived at `arrived`: the hold timeout, or less when
    /// an earlier sidecar passed on a smaller `remaining` budget. Never more than the local
    /// setting, whatever a peer sent.
    pub fn deadline(&self, arrived: Instant, remaining: Option<Duration>) -> Deadline {
        let allowed = remaining.map_or(self.timeout, |r| r.min(self.timeout));
        Deadline {
            at: arrived + allowed,
            allowed,
        }
    }

    /// Requests held right now.
    pub fn held(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// Takes a place in the queue, or fails at once when it is full.
    pub fn enter(&self) -> Result<Place, HoldError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map(|permit| Place { _permit: permit })
            .map_err(|_| HoldError::Full { max: self.max })
    }
}

#[cfg(test)]
mod tests;
