//! Holding requests while there is no leader to send them to.
//!
//! A held request's body is not read, so holding costs a task and a socket, not memory for
//! the body. The number of requests held at once is bounded; past the bound, and past the
//! hold deadline, the answer is 503 with `Retry-After`.

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
        /// The hold timeout.
        timeout: Duration,
    },
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

    /// Waits until `ready(view)` holds, or until `deadline`.
    pub async fn until<F>(
        &self,
        views: &mut watch::Receiver<View>,
        deadline: Instant,
        mut ready: F,
    ) -> Result<(), HoldError>
    where
        F: FnMut(&View) -> bool,
    {
        let timeout = HoldError::Timeout {
            timeout: self.timeout,
        };
        let waited = tokio::time::timeout_at(deadline, views.wait_for(|v| ready(v)))
            .await
            .map(|r| r.map(drop));
        match waited {
            Ok(Ok(())) => Ok(()),
            // The election stopped publishing: nothing will change any more.
            Ok(Err(_)) => {
                tokio::time::sleep_until(deadline).await;
                Err(timeout)
            }
            Err(_) => Err(timeout),
        }
    }

    /// Waits for any new view, or `backoff`, whichever is first, but not past `deadline`.
    /// Used after a leader could not be reached: either the view moves on, or we try again.
    pub async fn backoff(
        &self,
        views: &mut watch::Receiver<View>,
        deadline: Instant,
        backoff: Duration,
    ) -> Result<(), HoldError> {
        if Instant::now() >= deadline {
            return Err(HoldError::Timeout {
                timeout: self.timeout,
            });
        }
        let wake = (Instant::now() + backoff).min(deadline);
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
}

#[cfg(test)]
mod tests;
