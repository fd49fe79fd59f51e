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

/// Most leaders whose [`headers::FOR`] value is kept: with N slots a standby spreads its
/// requests over N actives, and each would otherwise be built again on every request.
const KEPT_LEADERS: usize = 8;

/// The routing headers' values last sent to a peer, kept (as [`FencingCache`] keeps the
/// fencing ones): the leader's identity for as long as it leads, and the milliseconds left
/// of the hold deadline, which are the same for most requests that arrive within a
/// millisecond of each other. A value built for every forward is an allocation and a copy;
/// a kept one is cloned by a count.
#[derive(Default)]
pub(crate) struct RoutingCache(Mutex<RoutingKept>);

#[derive(Default)]
struct RoutingKept {
    /// `(identity, its value)`, at most [`KEPT_LEADERS`]; the oldest goes first.
    leaders: Vec<(String, HeaderValue)>,
    /// The last hold value sent, and its value.
    hold_ms: Option<(u64, HeaderValue)>,
}

impl RoutingCache {
    /// The routing headers for a request forwarded to `identity` as its `hops`th sidecar,
    /// with `hold_ms` milliseconds left of its hold deadline.
    pub(crate) fn headers(&self, identity: &str, hops: u8, hold_ms: u64) -> Extra {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let for_pod = match kept.leaders.iter().find(|(id, _)| id == identity) {
            Some((_, value)) => value.clone(),
            None => {
                let value = headers::value(identity);
                if kept.leaders.len() == KEPT_LEADERS {
                    kept.leaders.remove(0);
                }
                kept.leaders.push((identity.to_string(), value.clone()));
                value
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
        [
            (headers::FOR, for_pod),
            (headers::HOPS, headers::hops_value(hops)),
            (headers::HOLD_MS, hold),
        ]
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
        loop {
            let balancer = &self.proxy.inner.balancer;
            // What the route needs of the view, read in one borrow: a slot change in between
            // must not mix one slot's epoch with another's Lease.
            let (route, fencing, several) = {
                let view = self.views.borrow_and_update();
                let route = route::decide(&view, crate::now(), inbound, balancer);
                let fencing = match &route {
                    Route::Local { epoch } => Some(self.proxy.inner.fencing.headers(
                        &view.identity,
                        *epoch,
                        &view.lease,
                    )),
                    _ => None,
                };
                (route, fencing, !view.peers.is_empty())
            };
            let kind = route.kind();
            match route {
                Route::Hold => {
                    // `fencing` (`None` here) is dropped before the wait, so the future
                    // keeps no room for it; the wait is boxed: held requests are few, and
                    // every request's future would keep room for it (as for `backoff`).
                    drop(fencing);
                    Box::pin(self.hold(inbound)).await?;
                }
                Route::Reject(why) => return Err(misdirected(&self.views.borrow().identity, &why)),
                Route::Local { epoch } => {
                    // (Always set: read above for every local route.)
                    let extra = fencing.unwrap_or_else(|| {
                        Fencing::build(&self.views.borrow().identity, epoch, "")
                    });
                    let target = Target {
                        authority: self.proxy.inner.upstream.clone(),
                        tenure: Tenure::Local { epoch },
                        route: kind,
                        reach: Reach::Plain,
                        load: None,
                    };
                    return Ok((target, extra));
                }
                Route::Forward {
                    identity,
                    epoch,
                    address,
                    hops,
                } => {
                    let left = self.deadline.remaining(Instant::now()).as_millis();
                    let left = u64::try_from(left).unwrap_or(u64::MAX);
                    let extra = self.proxy.inner.routing.headers(&identity, hops, left);
                    let load = several.then(|| balancer.start(&identity));
                    let reach = match self.proxy.inner.peer_tls {
                        Some(_) => Reach::Mtls,
                        None => Reach::Plain,
                    };
                    let target = Target {
                        authority: address,
                        tenure: Tenure::Peer { identity, epoch },
                        route: kind,
                        reach,
                        load,
                    };
                    return Ok((target, extra));
                }
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
