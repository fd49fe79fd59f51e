//! Where one request goes, decided from the latest election [`View`] alone (no API call).

use std::time::Instant;

use understudy_elector::{Leader, View};

use crate::balance::Balancer;
use crate::headers::{Inbound, MAX_HOPS};

/// The decision for one request at one moment. A forward borrows the leader's names from
/// the view it was decided in: a request routed copies none (the proxy keeps shared copies,
/// `proxy::target::RoutingCache`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route<'v> {
    /// This pod is the acting leader: hand the request to the local app with this fencing token.
    /// (The leader is this pod, the view's `identity`: only the epoch is carried, so that a
    /// request routed here copies no names.)
    Local {
        /// The fencing epoch of this pod's tenure (the Lease's `leaseTransitions` when it
        /// took it).
        epoch: u64,
    },
    /// Forward to the leader's sidecar.
    Forward {
        /// The leader the request is meant for, as the Lease names it.
        identity: &'v str,
        /// Its fencing epoch (the Lease's `leaseTransitions` when it took it).
        epoch: u64,
        /// Its advertised address.
        address: &'v str,
        /// Hop count to send (one more than received).
        hops: u8,
    },
    /// No leader to send to yet: wait for the view to change.
    Hold,
    /// Misdirected (meant for another pod, or out of hops): answer 421, serve nothing.
    Reject(Misdirected),
}

/// Why a request is refused with 421.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Misdirected {
    /// Meant for another pod, and this sidecar cannot (or may not) pass it on.
    NotFor {
        /// The pod the sender meant.
        meant: String,
    },
    /// Passing it on would exceed [`MAX_HOPS`].
    TooManyHops,
}

impl std::fmt::Display for Misdirected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misdirected::NotFor { meant } => write!(f, "request was meant for {meant}"),
            Misdirected::TooManyHops => write!(f, "hop limit {MAX_HOPS} reached"),
        }
    }
}

/// What became of a request, as the access log and the metrics name it (`route="local"`):
/// the kinds of [`Route`], which the HTTP answers are built from at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Served by the local app.
    Local,
    /// Forwarded to the leader's sidecar.
    Forward,
    /// Held until the hold ended without a leader to send to.
    Hold,
    /// Refused by this sidecar (misdirected, over a limit, malformed).
    Reject,
}

impl Kind {
    /// Every kind, in the order of [`Kind::index`].
    pub const ALL: [Kind; 4] = [Kind::Local, Kind::Forward, Kind::Hold, Kind::Reject];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Local => "local",
            Kind::Forward => "forward",
            Kind::Hold => "hold",
            Kind::Reject => "reject",
        }
    }

    /// Its position in [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Route<'_> {
    /// Its [`Kind`].
    pub fn kind(&self) -> Kind {
        match self {
            Route::Local { .. } => Kind::Local,
            Route::Forward { .. } => Kind::Forward,
            Route::Hold => Kind::Hold,
            Route::Reject(_) => Kind::Reject,
        }
    }
}

/// Decides the route of a request that came in with `inbound` routing facts, at `now`.
///
/// - Meant for another pod: never served here. Re-routed once to the leader this pod knows
///   of, if that is a third pod and hops remain; otherwise refused.
/// - Otherwise: local while this pod is acting leader; forwarded while another pod leads and
///   advertises an address (with N active slots: to one of every active that does, as
///   `balancer` picks); held only when there is no one to send to.
pub fn decide<'v>(
    view: &'v View,
    now: Instant,
    inbound: &Inbound,
    balancer: &Balancer,
) -> Route<'v> {
    let me = view.identity.as_str();
    let other_leader = view.leader.as_ref().filter(|l| l.identity != me);
    if let Some(meant) = inbound.for_pod.as_deref().filter(|p| *p != me) {
        let reject = Route::Reject(Misdirected::NotFor {
            meant: meant.to_string(),
        });
        let known_active = view.peers.iter().any(|p| p.identity == meant);
        return match other_leader {
            // The sender's view agrees with ours, yet the request reached us: the address
            // points at the wrong pod (IP reuse). Sending it there again would loop.
            Some(l) if l.identity == meant || known_active => reject,
            Some(l) => forward(l, inbound).unwrap_or(reject),
            None => reject,
        };
    }
    if let Some(leader) = view.leader.as_ref().filter(|_| view.is_acting(now)) {
        return Route::Local {
            epoch: leader.epoch,
        };
    }
    let reachable = |l: &&Leader| l.address.is_some() && l.identity != me;
    match other_leader.filter(reachable) {
        // The common case, one slot: no choice to make.
        Some(l) if view.peers.is_empty() => {
            forward(l, inbound).unwrap_or(Route::Reject(Misdirected::TooManyHops))
        }
        primary => {
            let actives: Vec<&Leader> = primary
                .into_iter()
                .chain(view.peers.iter().filter(reachable))
                .collect();
            if actives.is_empty() {
                // A holder without an address (e.g. a client-go candidate) cannot take
                // traffic; nor can this pod while it holds the Lease outside its fencing
                // window.
                return Route::Hold;
            }
            forward(balancer.pick(&actives), inbound)
                .unwrap_or(Route::Reject(Misdirected::TooManyHops))
        }
    }
}

fn forward<'v>(leader: &'v Leader, inbound: &Inbound) -> Option<Route<'v>> {
    let address = leader.address.as_deref()?;
    if inbound.hops >= MAX_HOPS {
        return None;
    }
    Some(Route::Forward {
        identity: &leader.identity,
        epoch: leader.epoch,
        address,
        hops: inbound.hops + 1,
    })
}

#[cfg(test)]
mod tests;
