//! Choosing where an attempt goes, holding until there is somewhere to go.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use tokio::sync::watch;
use tokio::time::Instant;
use understudy_elector::View;

use super::answer::{held, misdirected};
use super::{Outcome, Proxy};
use crate::balance::Outstanding;
use crate::dial::Reach;
use crate::headers::{self, Inbound};
use crate::hold::{Deadline, Place};
use crate::route::{self, Kind, Route};
use crate::tenure::Tenure;

/// First and longest pause before trying an unreachable target again.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(25), Duration::from_secs(1));

/// The headers an attempt adds: the fencing token to the local app, or the routing headers
/// to a peer (three either way). A plain array: no allocation per request.
pub(crate) type Extra = [(HeaderName, HeaderValue); 3];

/// Where an attempt goes. (What it carries there, its [`Extra`], comes beside it: that goes
/// into the request's head before the attempt is sent, while the target is kept until its
/// answer is in, in the future of every request in flight.)
pub(crate) struct Target {
    /// Where the request goes (`host:port`): shared with the route, or for the app with the
    /// settings (so a request served here copies no name).
    pub(crate) authority: Arc<str>,
    pub(crate) tenure: Tenure,
    pub(crate) route: Kind,
    /// How `authority` is reached: the app and, without the peer channel, a peer in the
    /// clear; with it, a peer over mTLS only.
    pub(crate) reach: Reach,
    /// Counts the request as outstanding at the active it goes to, when a standby had
    /// several to choose from (see [`crate::balance`]); dropped with the response body.
    pub(crate) load: Option<Outstanding>,
}

impl Target {
    /// What an attempt that could not connect failed to reach, for the 503 at the hold
    /// deadline ([`super::unreachable`]).
    pub(crate) fn unreachable(&self) -> String {
        match &self.tenure {
            Tenure::Local { .. } => format!(
                "this pod leads, but its app at {} did not accept a connection",
                self.authority
            ),
            Tenure::Peer { identity, .. } => format!(
                "the leader {identity} at {} could not be reached",
                self.authority
            ),
        }
    }
}

/// The fencing headers of the leadership last routed to locally, kept: a leadership lasts
/// many requests, and cloning three kept values costs less than building them each time.
#[derive(Default)]
pub(crate) struct FencingCache(Mutex<Option<Fencing>>);

struct Fencing {
    identity: String,
    epoch: u64,
    lease: String,
    extra: Extra,
}

impl FencingCache {
    /// The fencing headers for `identity`'s leadership `epoch` of `lease`.
    pub(crate) fn headers(&self, identity: &str, epoch: u64, lease: &str) -> Extra {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match kept.as_ref() {
            Some(f) if f.epoch == epoch && f.identity == identity && f.lease == lease => {
                f.extra.clone()
            }
            _ => {
                let extra = Fencing::build(identity, epoch, lease);
                *kept = Some(Fencing {
                    identity: identity.to_string(),
                    epoch,
                    lease: lease.to_string(),
                    extra: extra.clone(),
                });
                extra
            }
        }
    }
}

/// Most leaders [`RoutingCache`] keeps: with N slots a standby spreads its requests over N
/// actives, and each would otherwise be built again on every request.
const KEPT_LEADERS: usize = 8;

/// What a standby sends a request to a peer with, kept (as [`FencingCache`] keeps the
/// fencing headers): for each of the last few leaders, its identity, its address and the
/// value naming it, and the milliseconds left of the hold deadline, which most requests
/// arriving within the same millisecond share. Built for every forward, these were five
/// allocations and their copies; kept, each is cloned by a count.
#[derive(Default)]
pub(crate) struct RoutingCache(Mutex<RoutingKept>);

#[derive(Default)]
struct RoutingKept {
    /// At most [`KEPT_LEADERS`]; the oldest goes first.
    leaders: Vec<KeptLeader>,
    /// The last hold value sent, and its value.
    hold_ms: Option<(u64, HeaderValue)>,
}

struct KeptLeader {
    identity: Arc<str>,
    address: Arc<str>,
    /// [`headers::FOR`]'s value: `identity`.
    for_pod: HeaderValue,
}

/// A forward's shared names and its routing headers, from [`RoutingCache::forward`].
pub(crate) struct Forwarding {
    /// The leader's identity.
    pub(crate) identity: Arc<str>,
    /// Where it is reached.
    pub(crate) address: Arc<str>,
    /// The routing headers: [`headers::FOR`], [`headers::HOPS`], [`headers::HOLD_MS`].
    pub(crate) extra: Extra,
}

impl RoutingCache {
    /// A request forwarded to `identity` at `address` as its `hops`th sidecar, with
    /// `hold_ms` milliseconds left of its hold deadline.
    pub(crate) fn forward(
        &self,
        identity: &str,
        address: &str,
        hops: u8,
        hold_ms: u64,
    ) -> Forwarding {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let same = |l: &&KeptLeader| *l.identity == *identity && *l.address == *address;
        let (identity, address, for_pod) = match kept.leaders.iter().find(same) {
            Some(l) => (l.identity.clone(), l.address.clone(), l.for_pod.clone()),
            None => {
                let l = KeptLeader {
                    identity: Arc::from(identity),
                    address: Arc::from(address),
                    for_pod: headers::value(identity),
                };
                let shared = (l.identity.clone(), l.address.clone(), l.for_pod.clone());
                if kept.leaders.len() == KEPT_LEADERS {
                    kept.leaders.remove(0);
                }
                kept.leaders.push(l);
                shared
            }
        };
        let hold = match &kept.hold_ms {
            Some((ms, value)) if *ms == hold_ms => value.clone(),
            _ => {
                let value = HeaderValue::from(hold_ms);
                kept.hold_ms = Some((hold_ms, value.clone()));
                value
            }
        };
        let extra = [
            (headers::FOR, for_pod),
            (headers::HOPS, headers::hops_value(hops)),
            (headers::HOLD_MS, hold),
        ];
        Forwarding {
            identity,
            address,
            extra,
        }
    }
}

/// The target and the headers of an attempt routed by `route`, decided in `view` (`None`:
/// hold; `Err`: the answer to give instead). Names are not copied from the view: the kept
/// ones are shared.
#[allow(clippy::result_large_err)]
fn attempt(
    proxy: &Proxy,
    deadline: &Deadline,
    view: &View,
    route: Route<'_>,
) -> Option<Result<(Target, Extra), Outcome>> {
    let kind = route.kind();
    let inner = &proxy.inner;
    match route {
        Route::Hold => None,
        Route::Reject(why) => Some(Err(misdirected(&view.identity, &why))),
        Route::Local { epoch } => {
            let extra = inner.fencing.headers(&view.identity, epoch, &view.lease);
            let target = Target {
                authority: inner.upstream.clone(),
                tenure: Tenure::Local { epoch },
                route: kind,
                reach: Reach::Plain,
                load: None,
            };
            Some(Ok((target, extra)))
        }
        Route::Forward {
            identity,
            epoch,
            address,
            hops,
        } => {
            let left = deadline.remaining(Instant::now()).as_millis();
            let left = u64::try_from(left).unwrap_or(u64::MAX);
            let kept = inner.routing.forward(identity, address, hops, left);
            let load = (!view.peers.is_empty()).then(|| inner.balancer.start(identity));
            let reach = match inner.peer_tls {
                Some(_) => Reach::Mtls,
                None => Reach::Plain,
            };
            let target = Target {
                authority: kept.address,
                tenure: Tenure::Peer {
                    identity: kept.identity,
                    epoch,
                },
                route: kind,
                reach,
                load,
            };
            Some(Ok((target, kept.extra)))
        }
    }
}

impl Fencing {
    fn build(identity: &str, epoch: u64, lease: &str) -> Extra {
        [
            (headers::LEADER, headers::value(identity)),
            (headers::EPOCH, HeaderValue::from(epoch)),
            (headers::LEASE, headers::value(lease)),
        ]
    }
}

/// One request's way through holds and back-offs, up to its deadline.
pub(crate) struct Wait<'a> {
    proxy: &'a Proxy,
    views: watch::Receiver<View>,
    deadline: Deadline,
    place: Option<Place>,
    backoff: Duration,
}

// The `Err` side is the response to give, built at most once per request; boxing it would
// buy nothing.
#[allow(clippy::result_large_err)]
impl<'a> Wait<'a> {
    pub(crate) fn new(proxy: &'a Proxy, deadline: Deadline) -> Wait<'a> {
        Wait {
            proxy,
            views: proxy.inner.views.clone(),
            deadline,
            place: None,
            backoff: BACKOFF.0,
        }
    }

    /// The next target and the headers for it, holding until there is one. `Err` is the
    /// answer to give instead.
    pub(crate) async fn target(&mut self, inbound: &Inbound) -> Result<(Target, Extra), Outcome> {
        let proxy = self.proxy;
        loop {
            // What the attempt needs of the view, taken in one borrow: a slot change in
            // between must not mix one slot's epoch with another's Lease.
            let next = {
                let view = self.views.borrow_and_update();
                let route = route::decide(&view, crate::now(), inbound, &proxy.inner.balancer);
                attempt(proxy, &self.deadline, &view, route)
            };
            match next {
                Some(next) => return next,
                // Boxed: held requests are few, and every request's future would keep room
                // for the wait (as for `backoff`).
                None => Box::pin(self.hold(inbound)).await?,
            }
        }
    }

    /// Holds until the view routes `inbound` somewhere, or the deadline passes.
    async fn hold(&mut self, inbound: &Inbound) -> Result<(), Outcome> {
        self.enter()?;
        let balancer = &self.proxy.inner.balancer;
        let ready = |v: &View| route::decide(v, crate::now(), inbound, balancer) != Route::Hold;
        let timer = self.proxy.inner.metrics.hold_timer();
        let waited = self.deadline.until(&mut self.views, ready).await;
        timer.finish(waited.is_ok());
        waited.map_err(held)
    }

    /// After nothing could be sent: wait for a new view or a growing pause. (The wait is
    /// boxed: attempts that fail are few, and every request's future would keep its room.)
    pub(crate) async fn backoff(&mut self) -> Result<(), Outcome> {
        self.enter()?;
        Box::pin(self.deadline.backoff(&mut self.views, self.backoff))
            .await
            .map_err(held)?;
        self.backoff = (self.backoff * 2).min(BACKOFF.1);
        Ok(())
    }

    fn enter(&mut self) -> Result<(), Outcome> {
        if self.place.is_none() {
            self.place = Some(self.proxy.inner.holder.enter().map_err(held)?);
        }
        Ok(())
    }
}
