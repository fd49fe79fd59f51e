//! The admin server (`--http`): the seed-compatible `GET /`, health, status and metrics.
//!
//! | path | answer |
//! |---|---|
//! | `/healthz` | 200 `ok` while the process runs |
//! | `/readyz` | 200 per `--ready-when` (`synced`: the Lease was read; `leader`: acting leader), 503 otherwise and while draining |
//! | `/status` | JSON: role, leader, address, epoch, timings, last transition, held requests, `failsafe` (on or off, and whether this pod acts on its members' confirmations now), and `slots` (one entry per active slot: lease, holder, address, epoch, whether this pod holds it) |
//! | `/actives` | JSON list of every active slot's holder: `[{"slot":0,"name":"pod-a","address":"10.0.0.5:8080","epoch":3}, ...]` |
//! | `/metrics` | Prometheus text |
//! | `POST /handover[?to=<pod>]` | a planned handover of the slot this pod leads to `<pod>` (or the best ready member; in TCP mode after draining for up to `--close-grace`), answered once the successor has renewed the Lease: 200 `{"lease","from","to","epoch","took_ms"}`; 400 malformed query, 409 not the leader (`leader` named), 422 target not a live ready member, 503 write failed, 504 successor too slow; 405 with `Allow: POST` for other methods |
//! | `GET /prestop[?within=20s]` | for the app container's `preStop` hook (native sidecars): hands the slot this pod leads to the best ready member in the planned way, steps down for good (takes no slot again), fails `/readyz`, and answers once the requests on their way to the local app have finished, all within `within` (default 20 s): 200 `{"handed_over_to","handover_error","released","drained","in_flight","took_ms"}`; 400 for a malformed query; 503 when the step-down failed; 405 with `Allow: GET` for other methods. See [`Admin::prestop`] |
//! | `/watch` | `text/event-stream`: an `event: view` with this pod's role, the slot it holds and every slot's holder and epoch at once, then one per change, and `: keep-alive` after 15 s without one; at most 64 streams at once (503 beyond), GET only (405 with `Allow: GET`). See [`sse`] |
//! | anything else | `{"name":"<leader id>"}` (the holder of slot 0), exactly as the old leader-elector image answered (its handler served every path) |

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use tokio::sync::watch;
use understudy_elector::{HandoverError, Role, Slots, Switcher, View};

use crate::cli::ReadyWhen;
use crate::hold::Holder;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::settings::Settings;
use crate::tcp::TcpProxy;
use crate::{BoxError, ProxyBody};

/// What the admin server reads from.
#[derive(Clone)]
pub struct Admin {
    views: watch::Receiver<View>,
    slots: Option<watch::Receiver<Slots>>,
    settings: Arc<Settings>,
    holder: Option<Holder>,
    metrics: Metrics,
    draining: Arc<AtomicBool>,
    watchers: sse::Watchers,
    switcher: Option<Switcher>,
    proxy: Option<Proxy>,
    /// TCP mode, with `--close-grace` (the election drains it before a planned handover).
    tcp: Option<(TcpProxy, Duration)>,
}

impl Admin {
    /// An admin server for `settings`, reading `views`; `holder` when a proxy runs.
    pub fn new(
        settings: Arc<Settings>,
        views: watch::Receiver<View>,
        holder: Option<Holder>,
        metrics: Metrics,
    ) -> Admin {
        Admin {
            views,
            slots: None,
            settings,
            holder,
            watchers: sse::Watchers::new(metrics.watchers()),
            metrics,
            draining: Arc::new(AtomicBool::new(false)),
            switcher: None,
            proxy: None,
            tcp: None,
        }
    }

    /// Drains TCP mode's connections to the local app (for up to `grace`) before a planned
    /// handover ([`TcpProxy::quiesce`]).
    pub fn with_tcp(mut self, tcp: TcpProxy, grace: Duration) -> Admin {
        self.tcp = Some((tcp, grace));
        self
    }

    /// Drains `proxy` on `GET /prestop`.
    pub fn with_proxy(mut self, proxy: Proxy) -> Admin {
        self.proxy = Some(proxy);
        self
    }

    /// Serves `POST /handover` through `switcher`.
    pub fn with_switcher(mut self, switcher: Switcher) -> Admin {
        self.switcher = Some(switcher);
        self
    }

    /// Answers one admin request, waiting where the answer takes time (`POST /handover`).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ProxyBody> {
        match (req.uri().path(), req.method()) {
            ("/handover", &Method::POST) => self.handover(&req).await,
            ("/prestop", &Method::GET) => self.prestop(&req).await,
            _ => self.respond(&req),
        }
    }

    /// How long a planned handover may drain TCP mode's connections first (0 in HTTP mode).
    fn close_grace(&self) -> Duration {
        self.tcp
            .as_ref()
            .map_or(Duration::ZERO, |(_, grace)| *grace)
    }

    /// The slot this pod acts for now, if any, and slot 0's leader as this pod knows it.
    fn held_slot(&self) -> (Option<usize>, Option<String>) {
        let now = crate::now();
        match &self.slots {
            Some(slots) => {
                let s = slots.borrow();
                let held = s.acting(now).map(|(slot, _)| slot);
                (held, s.views[0].leader.as_ref().map(|l| l.identity.clone()))
            }
            None => {
                let v = self.views.borrow();
                let held = v.is_acting(now).then_some(0);
                (held, v.leader.as_ref().map(|l| l.identity.clone()))
            }
        }
    }

    /// `GET /prestop[?within=<duration>]`, for the app container's `preStop` hook when
    /// understudy runs as a native sidecar (the kubelet stops the app first, the sidecar only
    /// after the app has exited; a lifecycle `httpGet` handler can only send GET, hence a path
    /// of its own rather than `POST /handover`). In order, all within `within` (the step-down
    /// gets at least a second whatever is left; default
    /// [`PRESTOP_WITHIN`]; the default 30 s `terminationGracePeriodSeconds` also covers the
    /// app's stop and the sidecar's drain after it):
    /// 1. the slot this pod leads, if any, goes to the best ready member in the planned way
    ///    (as `POST /handover`), waiting at most leaseDuration + renewDeadline;
    /// 2. `/readyz` fails and HTTP/1 responses ask clients to close (as on SIGTERM);
    /// 3. this pod steps down for good: it takes no slot again and releases the Lease if it
    ///    still holds it (no other ready member, or the handover failed): its requests then
    ///    wait for whoever takes it;
    /// 4. it waits for the requests on their way to the local app, or streaming back from it,
    ///    to finish, at most hold timeout + connect timeout (upgraded tunnels are closed on
    ///    SIGTERM, not waited for).
    ///
    /// Then 200 `{"handed_over_to": "<pod>" | null, "handover_error": "<why>" | null,
    /// "released": bool, "drained": bool, "in_flight": n, "took_ms": n}` (`released`: this pod
    /// held a slot and no handover completed; after a handover that timed out the successor
    /// may still take the Lease); 400 for a malformed query; 503 with the error when the
    /// step-down failed or did not finish in time. Calling it again does no harm. The sidecar
    /// keeps forwarding to the new leader until its own SIGTERM, which then drains as usual.
    pub async fn prestop<B>(&self, req: &Request<B>) -> Response<ProxyBody> {
        let started = Instant::now();
        let within = match prestop_within(req.uri().query()) {
            Ok(within) => within,
            Err(why) => return problem(StatusCode::BAD_REQUEST, &why, None),
        };
        let deadline = started + within;
        let left = || deadline.saturating_duration_since(Instant::now());
        let Some(switcher) = &self.switcher else {
            return problem(StatusCode::SERVICE_UNAVAILABLE, "no election here", None);
        };
        let timings = &self.settings.timings;
        let (slot, _) = self.held_slot();
        let mut handed_over_to = None;
        let mut handover_error = None;
        if let Some(slot) = slot {
            // (TCP mode drains before the Lease moves: the election prepares every planned
            // handover with `tcp::Drain`.)
            let wait =
                (timings.lease_duration + timings.renew_deadline + self.close_grace()).min(left());
            match switcher.hand_over(slot, None, wait).await {
                Ok(done) => handed_over_to = Some(done.to),
                Err(error) => {
                    tracing::warn!(error = %error, "pre-stop: no planned handover; releasing the lease instead");
                    handover_error = Some(error.to_string());
                }
            }
        }
        self.set_draining();
        if let Some(proxy) = &self.proxy {
            proxy.start_draining();
        }
        // The release write is bounded by renewDeadline per slot; the hook's budget bounds it
        // in all, but the step-down, which must happen, always gets a second.
        let bound = left().max(Duration::from_secs(1));
        let stepped = match tokio::time::timeout(bound, switcher.step_down()).await {
            Ok(stepped) => stepped.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "the step-down did not finish within {}ms",
                bound.as_millis()
            )),
        };
        if let Err(error) = stepped {
            tracing::warn!(error = %error, "pre-stop: step-down failed");
            return problem(StatusCode::SERVICE_UNAVAILABLE, &error, None);
        }
        let (drained, in_flight) = match (&self.proxy, &self.settings.proxy) {
            (Some(proxy), Some(p)) => {
                let wait = (p.hold_timeout + p.connect_timeout).min(left());
                let drained = proxy.local_drained(wait).await;
                (drained, proxy.local_in_flight())
            }
            _ => (true, 0),
        };
        let took_ms = started.elapsed().as_millis() as u64;
        let released = slot.is_some() && handed_over_to.is_none();
        tracing::info!(
            handed_over_to = handed_over_to.as_deref().unwrap_or("-"),
            released,
            drained,
            in_flight,
            took_ms,
            "pre-stop: stepped down"
        );
        #[derive(Serialize)]
        struct PreStop {
            handed_over_to: Option<String>,
            handover_error: Option<String>,
            released: bool,
            drained: bool,
            in_flight: usize,
            took_ms: u64,
        }
        json(&PreStop {
            handed_over_to,
            handover_error,
            released,
            drained,
            in_flight,
            took_ms,
        })
    }

    /// `POST /handover[?to=<pod>]`: a planned handover of the slot this pod leads, answered
    /// once the successor has renewed the Lease (200), or with why not: 400 for a malformed
    /// query, 409 when this pod does not lead (naming who does), 422 when the target cannot
    /// take over, 503 when the write failed or the election has ended, 504 when the
    /// successor did not renew in time.
    async fn handover<B>(&self, req: &Request<B>) -> Response<ProxyBody> {
        let to = match handover_target(req.uri().query()) {
            Ok(to) => to,
            Err(why) => return problem(StatusCode::BAD_REQUEST, &why, None),
        };
        let Some(switcher) = &self.switcher else {
            return problem(StatusCode::SERVICE_UNAVAILABLE, "no election here", None);
        };
        let (slot, leader) = self.held_slot();
        let Some(slot) = slot else {
            let leader = leader.unwrap_or_default();
            let why = format!(
                "this pod is not the leader; the leader is {}",
                if leader.is_empty() {
                    "unknown"
                } else {
                    &leader
                }
            );
            return problem(StatusCode::CONFLICT, &why, Some(leader));
        };
        // The successor renews as soon as it sees itself named: a few round trips. Bounded
        // by one lease duration on top, after which it would have expired for the others.
        // TCP mode drains before the Lease moves (the election prepares every planned
        // handover with `tcp::Drain`, whether or not this client waits for the end): that
        // is `--close-grace` more.
        let timings = &self.settings.timings;
        let within = timings.lease_duration + timings.renew_deadline + self.close_grace();
        match switcher.hand_over(slot, to, within).await {
            Ok(done) => json(&HandedOver {
                lease: &done.lease,
                from: &done.from,
                to: &done.to,
                epoch: done.epoch,
                took_ms: done.took.as_millis() as u64,
            }),
            Err(error) => {
                let status = match &error {
                    HandoverError::NotLeader { .. } => StatusCode::CONFLICT,
                    HandoverError::NotAMember { .. }
                    | HandoverError::NotReady { .. }
                    | HandoverError::AlreadyLeader { .. }
                    | HandoverError::ActiveElsewhere { .. }
                    | HandoverError::NoCandidate { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                    HandoverError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                problem(status, &error.to_string(), None)
            }
        }
    }

    /// Also reads the per-slot view (`GET /` names slot 0's holder; `/actives`, `/status`).
    pub fn with_slots(mut self, slots: watch::Receiver<Slots>) -> Admin {
        self.slots = Some(slots);
        self
    }

    /// Marks the sidecar as draining: `/readyz` fails from now on, so endpoints drop the pod.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Answers one admin request.
    pub fn respond<B>(&self, req: &Request<B>) -> Response<ProxyBody> {
        let view = self.views.borrow().clone();
        let now = crate::now();
        match req.uri().path() {
            "/handover" => {
                // POST is served by `handle`, which waits for the handover.
                let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                resp
            }
            "/prestop" => {
                // GET is served by `handle`, which waits for the handover and the drain.
                let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET"));
                resp
            }
            "/watch" if req.method() != Method::GET => {
                let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET"));
                resp
            }
            "/watch" => {
                let source = match &self.slots {
                    Some(slots) => sse::Source::Slots(slots.clone()),
                    None => sse::Source::View(self.views.clone()),
                };
                sse::respond(&self.watchers, source)
            }
            "/healthz" => text(StatusCode::OK, "ok"),
            "/readyz" => {
                let ready = !self.draining.load(Ordering::SeqCst)
                    && match self.settings.ready_when {
                        ReadyWhen::Synced => view.synced,
                        ReadyWhen::Leader => view.is_acting(now),
                    };
                if ready {
                    text(StatusCode::OK, "ready")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }
            "/status" => {
                let slots = self.slots.as_ref().map(|s| s.borrow().clone());
                let mut status = self.status(&view, now);
                status.slots = slots.as_ref().map(slot_status);
                json(&status)
            }
            "/actives" => {
                let actives = match &self.slots {
                    Some(slots) => actives(&slots.borrow()),
                    None => view
                        .leader
                        .iter()
                        .map(|l| Active {
                            slot: 0,
                            name: l.identity.clone(),
                            address: l.address.clone(),
                            epoch: l.epoch,
                        })
                        .collect(),
                };
                json(&actives)
            }
            "/metrics" => {
                let body = self.metrics.render(&view, now, self.held());
                let mut resp = text(StatusCode::OK, &body);
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            _ => match &self.slots {
                Some(slots) => json(&Name {
                    name: slots.borrow().views[0].leader_name(),
                }),
                None => json(&Name {
                    name: view.leader_name(),
                }),
            },
        }
    }

    fn held(&self) -> usize {
        self.holder.as_ref().map_or(0, Holder::held)
    }

    fn status<'a>(&'a self, view: &'a View, now: Instant) -> Status<'a> {
        let s = &self.settings;
        let t = &s.timings;
        let since = now.saturating_duration_since(view.role_since);
        let last_transition = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::try_from(since).unwrap_or_default())
            .map(|t| t.to_string())
            .unwrap_or_default();
        Status {
            election: &s.election,
            namespace: &s.namespace,
            identity: &view.identity,
            role: view.role,
            acting: view.is_acting(now),
            synced: view.synced,
            leader: view.leader.as_ref().map(|l| l.identity.as_str()),
            address: view.leader.as_ref().and_then(|l| l.address.as_deref()),
            epoch: view.leader.as_ref().map(|l| l.epoch),
            acting_for_seconds: view
                .acting_until
                .filter(|_| view.role == Role::Leader)
                .map(|u| u.saturating_duration_since(now).as_secs_f64()),
            lease: Timings {
                lease_duration_seconds: t.lease_duration.as_secs_f64(),
                renew_deadline_seconds: t.renew_deadline.as_secs_f64(),
                retry_period_seconds: t.retry_period.as_secs_f64(),
            },
            last_transition,
            role_since_seconds: since.as_secs_f64(),
            failsafe: FailsafeStatus {
                enabled: s.failsafe.is_some(),
                max_seconds: s.failsafe.map(|m| m.as_secs_f64()),
                active: view.is_acting(now) && view.failsafe,
            },
            held_requests: self.held(),
            draining: self.draining.load(Ordering::SeqCst),
            ready_when: s.ready_when.as_str(),
            slots: None,
            proxy: s.proxy.as_ref().map(|p| ProxyStatus {
                listen: p.listen.to_string(),
                advertise: p.advertise.to_string(),
                upstream: p.upstream.to_string(),
                hold_timeout_seconds: p.hold_timeout.as_secs_f64(),
                tcp: self.tcp.as_ref().map(|(tcp, grace)| TcpStatus {
                    close_grace_seconds: grace.as_secs_f64(),
                    quiesced: tcp.is_quiesced(),
                    local_connections: tcp.local_open(),
                }),
            }),
        }
    }
}

/// The old image's body.
#[derive(Serialize)]
struct Name<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Status<'a> {
    election: &'a str,
    namespace: &'a str,
    identity: &'a str,
    #[serde(serialize_with = "role")]
    role: Role,
    acting: bool,
    synced: bool,
    leader: Option<&'a str>,
    address: Option<&'a str>,
    epoch: Option<u64>,
    acting_for_seconds: Option<f64>,
    lease: Timings,
    last_transition: String,
    role_since_seconds: f64,
    failsafe: FailsafeStatus,
    held_requests: usize,
    draining: bool,
    ready_when: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    slots: Option<Vec<SlotStatus>>,
    proxy: Option<ProxyStatus>,
}

/// The failsafe in `/status`: on or off, and whether this pod acts on its members'
/// confirmations right now (its Lease alone would have stopped it).
#[derive(Serialize)]
struct FailsafeStatus {
    enabled: bool,
    max_seconds: Option<f64>,
    active: bool,
}

/// One slot in `/status`.
#[derive(Serialize)]
struct SlotStatus {
    slot: usize,
    lease: String,
    #[serde(serialize_with = "role")]
    role: Role,
    holder: Option<String>,
    address: Option<String>,
    epoch: Option<u64>,
    mine: bool,
    failsafe: bool,
}

/// One entry of `/actives`.
#[derive(Serialize)]
struct Active {
    slot: usize,
    name: String,
    address: Option<String>,
    epoch: u64,
}

fn slot_status(slots: &Slots) -> Vec<SlotStatus> {
    slots
        .views
        .iter()
        .enumerate()
        .map(|(slot, v)| SlotStatus {
            slot,
            lease: v.lease.clone(),
            role: v.role,
            holder: v.leader.as_ref().map(|l| l.identity.clone()),
            address: v.leader.as_ref().and_then(|l| l.address.clone()),
            epoch: v.leader.as_ref().map(|l| l.epoch),
            mine: slots.held == Some(slot),
            failsafe: v.failsafe && v.role == Role::Leader,
        })
        .collect()
}

fn actives(slots: &Slots) -> Vec<Active> {
    slots
        .actives()
        .map(|(slot, l)| Active {
            slot,
            name: l.identity.clone(),
            address: l.address.clone(),
            epoch: l.epoch,
        })
        .collect()
}

#[derive(Serialize)]
struct Timings {
    lease_duration_seconds: f64,
    renew_deadline_seconds: f64,
    retry_period_seconds: f64,
}

#[derive(Serialize)]
struct ProxyStatus {
    listen: String,
    advertise: String,
    upstream: String,
    hold_timeout_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpStatus>,
}

/// TCP mode in `/status`: the grace, whether a planned handover is draining it, and the
/// connections to the local app.
#[derive(Serialize)]
struct TcpStatus {
    close_grace_seconds: f64,
    quiesced: bool,
    local_connections: usize,
}

fn role<S: serde::Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role.as_str())
}

/// The answer to a completed `POST /handover`.
#[derive(Serialize)]
struct HandedOver<'a> {
    lease: &'a str,
    from: &'a str,
    to: &'a str,
    epoch: u64,
    took_ms: u64,
}

/// An error answer: `{"error": "...", "leader": "..."}` (the leader when known and useful).
fn problem(status: StatusCode, error: &str, leader: Option<String>) -> Response<ProxyBody> {
    #[derive(Serialize)]
    struct Problem<'a> {
        error: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        leader: Option<String>,
    }
    let mut resp = json(&Problem { error, leader });
    *resp.status_mut() = status;
    resp
}

/// How long `GET /prestop` may take in all when the hook does not say (`?within=`): the
/// default `terminationGracePeriodSeconds` of 30 s also covers the app's own stop and the
/// sidecar's drain after it (`--drain`, 5 s).
pub const PRESTOP_WITHIN: Duration = Duration::from_secs(20);

/// The value of the one parameter `name` a query may carry, if given: anything else, or
/// `name` twice, is an error naming it.
fn only_param<'q>(query: Option<&'q str>, name: &str) -> Result<Option<&'q str>, String> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != name {
            return Err(format!(
                "unknown parameter {key:?}: only {name:?} is accepted"
            ));
        }
        if found.replace(value).is_some() {
            return Err(format!("{name:?} given twice"));
        }
    }
    Ok(found)
}

/// The `within` of `GET /prestop`: a duration as the flags take them (`20s`, `1m`), at most an
/// hour; [`PRESTOP_WITHIN`] when absent.
fn prestop_within(query: Option<&str>) -> Result<Duration, String> {
    let Some(value) = only_param(query, "within")? else {
        return Ok(PRESTOP_WITHIN);
    };
    let d = understudy_elector::parse_duration(value).map_err(|e| format!("within: {e}"))?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err(format!("within: {value:?} is not between 1ms and 1h"));
    }
    Ok(d)
}

/// The `to` of `POST /handover?to=<pod>`: `None` (any member) when absent or empty; an error
/// naming the problem for another parameter, a repeated `to`, or a value that is not a pod
/// name (lower-case letters, digits, `-` and `.`, at most 253).
fn handover_target(query: Option<&str>) -> Result<Option<String>, String> {
    let Some(value) = only_param(query, "to")? else {
        return Ok(None);
    };
    let valid = value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid {
        return Err(format!("{value:?} is not a pod name"));
    }
    Ok(Some(value.to_string()).filter(|t| !t.is_empty()))
}

fn json<T: Serialize>(value: &T) -> Response<ProxyBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, msg: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(msg.as_bytes().to_vec()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn full(bytes: Vec<u8>) -> ProxyBody {
    Full::new(Bytes::from(bytes))
        .map_err(BoxError::from)
        .boxed_unsync()
}

pub mod sse;

#[cfg(test)]
mod tests;
