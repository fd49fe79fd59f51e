//! The leadership a long-lived exchange was started under, and when it ends.
//!
//! Tunnels and streaming responses must not outlive the leadership they were routed by: a
//! WebSocket to the old leader's app after a failover would split the clients between two
//! actives. [`Tenure::ended`] resolves when the election moves on; [`fenced`] cuts a
//! response body a grace period after that.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use understudy_elector::View;

use crate::BoxError;
use crate::body::Cut;

/// The leadership a request was routed under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tenure {
    /// Served by the local app while this pod led with `epoch`.
    Local {
        /// The epoch this pod led with.
        epoch: u64,
    },
    /// Forwarded to `identity`, leader with `epoch`.
    Peer {
        /// The leader it was forwarded to (shared with the proxy's kept copy).
        identity: Arc<str>,
        /// Its epoch.
        epoch: u64,
    },
}

impl Tenure {
    /// Whether `view` still carries this tenure at `now`.
    pub fn holds(&self, view: &View, now: std::time::Instant) -> bool {
        let leader = view.leader.as_ref();
        match self {
            Tenure::Local { epoch } => {
                view.is_acting(now) && leader.is_some_and(|l| l.epoch == *epoch)
            }
            Tenure::Peer { identity, epoch } => {
                let is = |l: &understudy_elector::Leader| {
                    *l.identity == **identity && l.epoch == *epoch && l.identity != view.identity
                };
                leader.is_some_and(is) || view.peers.iter().any(is)
            }
        }
    }

    /// Resolves once the tenure no longer holds. The fencing deadline can pass without a new
    /// view, so a local tenure also wakes up at `acting_until`. If the election has stopped
    /// publishing (shutdown), the last view is final.
    pub async fn ended(self, mut views: watch::Receiver<View>) {
        loop {
            let deadline = {
                let view = views.borrow_and_update();
                if !self.holds(&view, crate::now()) {
                    return;
                }
                view.acting_until
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = views.changed() => {
                    if changed.is_err() {
                        let view = views.borrow().clone();
                        if !self.holds(&view, crate::now()) {
                            return;
                        }
                        return std::future::pending().await;
                    }
                }
                _ = sleep => {}
            }
        }
    }
}

/// The error a [`fenced`] body ends with when it is cut.
#[derive(Debug, thiserror::Error)]
#[error("response stream closed: leadership moved {grace:?} ago")]
pub struct LeadershipMoved {
    /// How long the stream was allowed to go on after leadership ended.
    pub grace: Duration,
}

/// A response body that ends with [`LeadershipMoved`] `grace` after `tenure` ends in `views`.
pub fn fenced<B>(
    body: B,
    tenure: Tenure,
    views: watch::Receiver<View>,
    grace: Duration,
) -> Cut<B, impl Future<Output = BoxError> + Send + 'static> {
    Cut::new(body, async move {
        tenure.ended(views).await;
        tokio::time::sleep(grace).await;
        BoxError::from(LeadershipMoved { grace })
    })
}

#[cfg(test)]
mod tests;
