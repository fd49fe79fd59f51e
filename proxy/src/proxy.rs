//! The proxy service: one request in, routed by the election view, one response out.
//!
//! Per request: take the routing facts and clean the headers at the edge, then loop:
//! decide a route from the latest view; hold while there is no one to send to; send to the
//! local app or the leader's sidecar; on failure resend only as [`crate::retry`] allows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::{self, Either};
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use understudy_elector::View;

mod answer;
mod app_down;
mod target;

pub(crate) use answer::{Outcome, bad_gateway, text, unavailable, unreachable};
pub(crate) use target::{Extra, Target, Wait};

use crate::balance::Balancer;
use crate::body::Keep;
use crate::dial::Dialer;
use crate::forward::{ForwardBody, ForwardError, Forwarder};
use crate::headers::{self, Claims, Inbound};
use crate::hold::Holder;
use crate::limits::{self, MAX_URI_BYTES, RequestLimit};
use crate::metrics::{Metrics, Retry};
use crate::peer_tls::PeerTls;
use crate::retry::{self, ReplayBody, Sent};
use crate::route::Kind;
use crate::settings::ProxySettings;
use crate::tenure::{self, Tenure};
use crate::upgrade::{self, ClientUpgrade};
use crate::{BoxError, ProxyBody};

/// Resends after a reset, at most, per request (idempotent, replayable requests only). Each
/// waits like a refused connection does, so a leader that just died is not hammered and the
/// request is held until the view names its successor (or the hold deadline passes).
const MAX_RESENDS: u32 = 4;

/// The proxy's shared state; cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) views: watch::Receiver<View>,
    pub(crate) settings: ProxySettings,
    /// `--upstream` as an authority, formatted once.
    pub(crate) upstream: Arc<str>,
    pub(crate) forwarder: Forwarder,
    /// Opens the connections of upgrades (the forwarder's pools dial through it too).
    pub(crate) dialer: Dialer,
    pub(crate) holder: Holder,
    /// Which active a standby sends to, with N slots.
    pub(crate) balancer: Balancer,
    /// Bound on requests being handled at once.
    pub(crate) requests: RequestLimit,
    pub(crate) metrics: Metrics,
    /// Upgraded tunnels, which outlive their HTTP connection.
    pub(crate) tunnels: TaskTracker,
    /// Requests sent to the local app whose response has not ended: one token each, from
    /// the attempt until its response body is done or dropped ([`Proxy::local_drained`]).
    pub(crate) local: TaskTracker,
    /// Cancelled when the sidecar stops: closes the remaining tunnels.
    pub(crate) stop: CancellationToken,
    /// The mTLS peer channel: when on, peers are reached over it only, and only requests
    /// that came in over it may carry routing headers.
    pub(crate) peer_tls: Option<PeerTls>,
    /// Set when the sidecar drains (SIGTERM): HTTP/1 responses then ask the client to close.
    pub(crate) draining: AtomicBool,
    /// Rate-limits the warnings while the local app refuses connections.
    pub(crate) app_down: app_down::AppDown,
    /// The fencing headers of the current local leadership, built once.
    pub(crate) fencing: target::FencingCache,
    /// What forwards to peers carry (the leader's names, the routing headers' values),
    /// kept while they stay the same.
    pub(crate) routing: target::RoutingCache,
}

/// Where a request came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Edge {
    /// The data port (`--listen`).
    Data,
    /// The mTLS peer port (`--peer-listen`): a sidecar with a valid certificate.
    Peer,
}

impl Proxy {
    /// A proxy routing by `views`, sharing `metrics` with the admin server.
    pub fn new(settings: ProxySettings, views: watch::Receiver<View>, metrics: Metrics) -> Proxy {
        Proxy::with_peer_tls(settings, views, metrics, None)
    }

    /// [`Proxy::new`], with the mTLS peer channel when `peer_tls` is given: forwards to
    /// `https://` targets go over it, and [`Proxy::handle`] (the data port) treats every
    /// request as a client's. `views` should then name peers by their peer addresses
    /// ([`crate::peer_tls::peer_views`]).
    pub fn with_peer_tls(
        settings: ProxySettings,
        views: watch::Receiver<View>,
        metrics: Metrics,
        peer_tls: Option<PeerTls>,
    ) -> Proxy {
        let dialer = Dialer::new(settings.connect_timeout, peer_tls.clone());
        // As many idle connections per address as requests may be in flight: a burst's
        // connections are all there for the next one (a smaller cap closes and redials
        // under steady load), and the pool stays bounded.
        let forwarder =
            Forwarder::new(dialer.clone(), settings.idle_timeout, settings.max_requests)
                .counting_redials(metrics.retries(Retry::StaleConnection));
        let holder = Holder::new(settings.max_held, settings.hold_timeout);
        let requests = RequestLimit::new(settings.max_requests);
        Proxy {
            inner: Arc::new(Inner {
                views,
                upstream: Arc::from(settings.upstream.to_string()),
                settings,
                forwarder,
                dialer,
                holder,
                balancer: Balancer::default(),
                requests,
                metrics,
                tunnels: TaskTracker::new(),
                local: TaskTracker::new(),
                stop: CancellationToken::new(),
                peer_tls,
                draining: AtomicBool::new(false),
                app_down: app_down::AppDown::default(),
                fencing: target::FencingCache::default(),
                routing: target::RoutingCache::default(),
            }),
        }
    }

    /// The hold queue (for `/status` and metrics).
    pub fn holder(&self) -> &Holder {
        &self.inner.holder
    }

    /// Starts the drain: from now on every HTTP/1 response carries `Connection: close`, so
    /// keep-alive clients open their next connection through the Service (which no longer
    /// picks this pod) instead of racing the close at the end of the drain.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Waits until no request is on its way to the local app or streaming its response back
    /// (upgraded tunnels aside, see [`Proxy::close_tunnels`]), at most `within`; true when
    /// none is left. For the pre-stop hook: once this pod has handed over, nothing new goes
    /// to its app.
    pub async fn local_drained(&self, within: std::time::Duration) -> bool {
        let local = &self.inner.local;
        local.close();
        tokio::time::timeout(within, local.wait()).await.is_ok()
    }

    /// Requests to the local app not yet finished.
    pub fn local_in_flight(&self) -> usize {
        self.inner.local.len()
    }

    /// Closes the remaining upgraded tunnels and waits for their tasks.
    pub async fn close_tunnels(&self) {
        self.inner.stop.cancel();
        self.inner.tunnels.close();
        self.inner.tunnels.wait().await;
    }

    /// Proxies one request from `client` on the data port (see [`crate::edge`]).
    ///
    /// Neither this nor the layers under it, down to the attempts (the `async` block that
    /// `route_request` returns), is an `async fn`: an `async fn` keeps its arguments for its
    /// whole life beside the future it awaits, so every layer that passed the request on by
    /// value would hold one more copy of it (a few hundred bytes each). The future returned
    /// owns what it needs; the HTTP/1 engine boxes one for every request in flight, so its
    /// size is memory per connection.
    pub fn handle<B>(
        &self,
        req: Request<B>,
        client: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + use<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.handle_at(Edge::Data, req, client)
    }

    /// Proxies one request from a sidecar on the mTLS peer port (the TLS handshake has
    /// checked its certificate).
    pub fn handle_peer<B>(
        &self,
        req: Request<B>,
        client: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + use<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.handle_at(Edge::Peer, req, client)
    }

    fn handle_at<B>(
        &self,
        edge: Edge,
        req: Request<B>,
        client: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + use<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let in_flight = self.inner.metrics.in_flight();
        // Kept for the access log only: not cloned for every request when it is off (nor
        // room for it kept in the future: boxed).
        let logged = self
            .inner
            .settings
            .access_log
            .then(|| Box::new((req.method().clone(), req.uri().clone())));
        let target_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
        // A tunnel (CONNECT, or an upgrade answered 101) must not be told to close.
        let closable = req.version() < Version::HTTP_2 && req.method() != Method::CONNECT;
        let routed = if target_len > MAX_URI_BYTES {
            Either::Left(future::ready(answer::uri_too_long()))
        } else {
            match (host_of(&req), self.inner.requests.admit()) {
                (Err(why), _) => Either::Left(future::ready(answer::bad_host(why))),
                (Ok(host), Some(permit)) => {
                    let routed = self.route_request(edge, req, host, client, started, permit);
                    Either::Right(routed)
                }
                (Ok(_), None) => Either::Left(future::ready(answer::over_request_limit(
                    self.inner.requests.max(),
                ))),
            }
        };
        let this = self.clone();
        routed.map(move |outcome| {
            let response = this.finish(outcome, started, closable, logged, client);
            drop(in_flight);
            response
        })
    }

    /// The response for `outcome`, counted and, with the access log on, logged (`logged`:
    /// the request's method and target).
    fn finish(
        &self,
        mut outcome: Outcome,
        started: Instant,
        closable: bool,
        logged: Option<Box<(Method, Uri)>>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let status = outcome.response.status();
        if closable
            && status != StatusCode::SWITCHING_PROTOCOLS
            && self.inner.draining.load(Ordering::Relaxed)
        {
            outcome.response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        let elapsed = started.elapsed().as_secs_f64();
        self.inner
            .metrics
            .request(outcome.route, &outcome.response, elapsed);
        if let Some(logged) = logged {
            let (method, uri) = *logged;
            tracing::info!(
                target: "understudy::access",
                client = %client,
                method = %method,
                uri = %uri,
                route = outcome.route.as_str(),
                peer = outcome.peer.as_deref().unwrap_or("-"),
                status = status.as_u16(),
                duration_ms = (elapsed * 1000.0).round() as u64,
            );
        }
        outcome.response
    }

    /// Makes an admitted request ready to forward (its head as it goes out, its routing
    /// claims, its body kept for replay), then sends it to where the view says, again after
    /// a refusal or (idempotent and replayable) a reset, until it is answered or its hold
    /// deadline passes. `host`: the request's, as [`host_of`] found it.
    fn route_request<B>(
        &self,
        edge: Edge,
        req: Request<B>,
        host: Option<header::HeaderValue>,
        client: SocketAddr,
        started: Instant,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = Outcome> + Send + use<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = req.into_parts();
        // The routing claims, read off the head by the HTTP/1 engine or off the map. With
        // the peer channel on, they count only from a certified sidecar.
        let trusted = edge == Edge::Peer || self.inner.peer_tls.is_none();
        let read = parts.extensions.remove::<Claims>();
        let inbound = Inbound::of(&mut parts.headers, read, trusted);
        let upgrade = headers::is_upgrade(&parts.method, parts.version, &parts.headers);
        // The client's connection, handed over for a tunnel once the target switches.
        let mut client_upgrade = upgrade
            .then(|| ClientUpgrade::take(&mut parts.extensions))
            .flatten();
        // An HTTP/1 request in absolute form is sent on in origin form: the app is told the
        // host it named (see `host_of`).
        if let Some(named) = host
            .as_ref()
            .filter(|_| absolute_form(&parts.method, parts.version, &parts.uri))
        {
            parts.headers.insert(header::HOST, named.clone());
        }
        // Room for the lines added below that the head lacks, in one allocation: the map
        // hyper parsed is sized to the headers that came in (the engine's has the room
        // already). (An attempt's own headers are kept beside the map.)
        parts
            .headers
            .reserve(headers::forwarding_room(&parts.headers));
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        headers::add_forwarded(&mut parts.headers, client, parts.version, host);
        let head = Head {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
        };
        // One hold deadline for the whole way: an earlier sidecar's leftover, if it sent one.
        let deadline = self.inner.holder.deadline(started, inbound.hold);
        let settings = &self.inner.settings;
        // A body that has ended (a GET's, most often) has nothing left to arrive late: no
        // deadline for it (nor its two allocations).
        let body = if body.is_end_stream() {
            ReplayBody::new(body, settings.replay_buffer)
        } else {
            let body = limits::body_deadline(Box::pin(body), started, settings.body_timeout);
            ReplayBody::new(body, settings.replay_buffer)
        };
        // Everything the attempts need, owned by the future (used in place: an async
        // block, unlike an `async fn`, does not copy what it captures into locals).
        let this = self.clone();
        async move {
            let mut wait = Wait::new(&this, deadline);
            let mut resends = 0;
            loop {
                let (target, extra) = match wait.target(&inbound).await {
                    Ok(t) => t,
                    Err(outcome) => return outcome,
                };
                let Some(attempt) = body.attempt() else {
                    return unavailable(target.route, "request body too large to send again");
                };
                let local =
                    matches!(target.tenure, Tenure::Local { .. }).then(|| this.inner.local.token());
                // In a block: what the attempt returned is dropped before any wait for the
                // next one, so the future keeps no room for it across those waits.
                let failure = {
                    // Sorted before any wait for the rest of a held-back response: a wait in
                    // a match whose guards borrow `sent` would keep room for it meanwhile.
                    let whole = {
                        // (why, the innermost cause): the client's message hides the operating
                        // system's.
                        let sent = if upgrade {
                            match head.request(&target, extra, attempt) {
                                Ok(req) => {
                                    let (dialer, to) = (&this.inner.dialer, &target.authority);
                                    Box::pin(upgrade::send(dialer, to, target.reach, req))
                                        .await
                                        .map(|resp| resp.map(ForwardBody::Hyper))
                                        .map_err(|e| (e.sent, e.to_string(), e.cause()))
                                }
                                // As the HTTP/2 path takes it: nothing was sent.
                                Err(e) => Err((Sent::Nothing, e.to_string(), e.to_string())),
                            }
                        } else {
                            // Boxed, as the rarer waits are: a request's whole future is
                            // then under 1 KiB, which the allocator serves from its
                            // per-thread cache (larger blocks take its slow path).
                            let send = head.send(&this.inner.forwarder, &target, extra, attempt);
                            match Box::pin(send).await {
                                Err(e) => match answer::clients_fault(&body) {
                                    Some(outcome) => return outcome,
                                    None => {
                                        Err((e.sent, format!("{e} ({})", e.cause()), e.cause()))
                                    }
                                },
                                Ok(resp) => Ok(resp),
                            }
                        };
                        match sent {
                            Ok(resp) if refused_by_sidecar(&target, &resp) => {
                                Err((Sent::Nothing, "refused by sidecar".to_string()))
                            }
                            Ok(resp)
                                if upgrade && upgrade::switched(&head.method, resp.status()) =>
                            {
                                return this.tunnel(
                                    resp,
                                    target,
                                    client_upgrade.take(),
                                    &head.method,
                                );
                            }
                            Ok(resp) if holds_back(&target, &head.method, &body, &resp) => Ok(
                                Box::pin(this.read_whole(resp, target.tenure.clone(), deadline.at)),
                            ),
                            Ok(resp) => return this.respond(resp, target, local),
                            Err((sent, why, cause)) => {
                                if sent == Sent::Nothing {
                                    this.inner.metrics.connect_error(target.route);
                                    if target.route == Kind::Local {
                                        this.inner.app_down.note(&this.inner.upstream, &cause);
                                    }
                                }
                                Err((sent, why))
                            }
                        }
                    };
                    match whole {
                        Ok(read) => match read.await {
                            Ok(resp) => {
                                // Counted as a request being handled until it is sent on: the
                                // bound on requests then bounds these buffers too.
                                let resp = resp.map(|body| Keep::new(body, permit));
                                return this.respond(resp, target, local);
                            }
                            Err(e) => (Sent::Maybe, format!("response cut short: {e}")),
                        },
                        Err(failure) => failure,
                    }
                };
                let (sent, why) = failure;
                tracing::debug!(peer = %target.authority, error = %why, "attempt failed");
                if !retry::may_retry(&head.method, sent, &body) {
                    return match sent {
                        Sent::Nothing => unavailable(target.route, &why),
                        Sent::Maybe | Sent::Answered => {
                            bad_gateway(target.route, target.authority, &why)
                        }
                    };
                }
                match sent {
                    Sent::Nothing => {
                        this.inner.metrics.retry(Retry::NotSent);
                        if let Err(outcome) = wait.backoff().await {
                            return unreachable(outcome, target.route, &target.unreachable(), &why);
                        }
                    }
                    Sent::Maybe | Sent::Answered => {
                        resends += 1;
                        if resends > MAX_RESENDS {
                            return bad_gateway(target.route, target.authority, &why);
                        }
                        this.inner.metrics.retry(Retry::Reset);
                        if let Err(outcome) = wait.backoff().await {
                            return outcome;
                        }
                    }
                }
            }
        }
    }

    /// `resp` read whole (see [`holds_back`]), or, if it is not complete by `until` (the
    /// request's hold deadline), passed on as it comes after what has arrived: a slow
    /// response is held no longer than a request may be. A leader that stops sending holds
    /// it no longer than its leadership (`tenure`) lasts, and the stream grace after,
    /// either: then the read ends like a cut, and the request goes to the next leader.
    async fn read_whole(
        &self,
        resp: Response<ForwardBody>,
        tenure: Tenure,
        until: Instant,
    ) -> Result<Response<ProxyBody>, BoxError> {
        let (parts, body) = resp.into_parts();
        let views = self.inner.views.clone();
        let grace = self.inner.settings.stream_grace;
        let mut body = tenure::fenced(body, tenure, views, grace);
        let mut data = BytesMut::new();
        let mut trailers = None;
        loop {
            let frame = match tokio::time::timeout_at(until, body.frame()).await {
                Ok(Some(frame)) => frame?,
                Ok(None) => break,
                Err(_late) => {
                    // Late: what came so far, then the rest as it comes. (The length the
                    // response announced stays in its head.)
                    let first = Frame::data(data.freeze());
                    let rest = BodyStream::new(body);
                    let first = futures::stream::iter([Ok::<_, BoxError>(first)]);
                    let frames = futures::StreamExt::chain(first, rest);
                    let body = StreamBody::new(frames).boxed_unsync();
                    return Ok(Response::from_parts(parts, body));
                }
            };
            match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        let whole = Full::new(data.freeze()).map_err(BoxError::from);
        let body = match trailers {
            Some(t) => whole.with_trailers(async { Some(Ok(t)) }).boxed_unsync(),
            None => whole.boxed_unsync(),
        };
        Ok(Response::from_parts(parts, body))
    }

    /// A target's `101` (or `2xx` to a `CONNECT`): the tunnel starts once the client has it.
    fn tunnel(
        &self,
        mut resp: Response<ForwardBody>,
        target: Target,
        client: Option<ClientUpgrade>,
        method: &Method,
    ) -> Outcome {
        if let Some(client) = client {
            let fence = upgrade::Fence {
                tenure: target.tenure.clone(),
                views: self.inner.views.clone(),
                stop: self.inner.stop.clone(),
            };
            let peer = target.authority.to_string();
            upgrade::tunnel(&self.inner.tunnels, client, &mut resp, fence, peer);
        }
        let (mut parts, _) = resp.into_parts();
        // The upgrade headers stay: the client switches too.
        headers::strip_hop_by_hop(&mut parts.headers, method != Method::CONNECT);
        headers::add_via(&mut parts.headers, parts.version);
        Outcome {
            route: target.route,
            peer: Some(target.authority),
            response: Response::from_parts(parts, ProxyBody::default()),
        }
    }

    /// The response of `target`; `local` is held until the body is done or dropped.
    fn respond<B>(
        &self,
        resp: Response<B>,
        target: Target,
        local: Option<TaskTrackerToken>,
    ) -> Outcome
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, false);
        headers::add_via(&mut parts.headers, parts.version);
        parts.headers.remove(headers::REFUSED);
        let body = match target.tenure {
            Tenure::Local { .. } => {
                let views = self.inner.views.clone();
                let grace = self.inner.settings.stream_grace;
                let body = tenure::fenced(body, target.tenure, views, grace);
                Keep::new(body, local).boxed_unsync()
            }
            // Outstanding at the active until the response is through (or dropped).
            Tenure::Peer { .. } => Keep::new(body, target.load).boxed_unsync(),
        };
        Outcome {
            route: target.route,
            peer: Some(target.authority),
            response: Response::from_parts(parts, body),
        }
    }
}

/// The request head, kept to build each attempt.
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
}

/// Once no attempt can be sent any more, the head's map serves a later head.
impl Drop for Head {
    fn drop(&mut self) {
        crate::h1::spare::give_back(std::mem::take(&mut self.headers));
    }
}

impl Head {
    /// One attempt to `target` over `forwarder`, written from the kept head with the
    /// attempt's own headers, `extra` (the fencing token to the local app, or the routing
    /// headers to a peer), after `headers` (which never carries their names: the sidecars'
    /// own headers are taken off every request that comes in).
    ///
    /// `extra` is written out before this returns (see [`Forwarder::send_head`]): taken
    /// here, it takes no room in the request's future while the answer is awaited.
    pub(crate) fn send<'a>(
        &'a self,
        forwarder: &'a Forwarder,
        target: &'a Target,
        extra: Extra,
        body: ReplayBody,
    ) -> impl Future<Output = Result<Response<ForwardBody>, ForwardError>> + Send + use<'a> {
        let head = self.with(&extra);
        forwarder.send_head(&target.authority, target.reach, self.version, head, body)
    }

    /// The request for one attempt to `target` that hyper sends (an upgrade, on a connection
    /// of its own): a copy of the kept head with the attempt's own headers
    /// ([`crate::forward::attempt_request`]). The engine's client writes from the kept head.
    pub(crate) fn request<B>(
        &self,
        target: &Target,
        extra: Extra,
        body: B,
    ) -> Result<Request<B>, http::Error> {
        let head = self.with(&extra);
        crate::forward::attempt_request(&target.authority, target.reach, self.version, head, body)
    }

    /// The kept head as the client writes it, `extra` after its headers.
    fn with<'h>(&'h self, extra: &'h Extra) -> crate::h1::client::Head<'h> {
        crate::h1::client::Head {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            extra,
        }
    }
}

/// The host `req` is for, or why that cannot be told: an HTTP/1.1 request without `Host`,
/// or any HTTP/1 request with more than one (RFC 9112 section 3.2 asks for 400). A target
/// in absolute form (`GET http://b/x`) names it whatever `Host` says (section 3.2.2); HTTP/2
/// names it in `:authority` when it has no `Host`. (One lookup of `Host` a request.)
fn host_of<B>(req: &Request<B>) -> Result<Option<header::HeaderValue>, &'static str> {
    let authority = || {
        let authority = req.uri().authority()?;
        header::HeaderValue::from_str(authority.as_str()).ok()
    };
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if req.version() >= Version::HTTP_2 {
        return Ok(first.cloned().or_else(authority));
    }
    match (first, second) {
        (Some(_), Some(_)) => Err("more than one Host header"),
        (None, _) if req.version() == Version::HTTP_11 => {
            Err("an HTTP/1.1 request needs a Host header")
        }
        _ if absolute_form(req.method(), req.version(), req.uri()) => Ok(authority()),
        (first, _) => Ok(first.cloned()),
    }
}

/// Whether an HTTP/1 request's target is in absolute form (a `CONNECT`'s authority form
/// aside).
fn absolute_form(method: &Method, version: Version, uri: &Uri) -> bool {
    version < Version::HTTP_2 && *method != Method::CONNECT && uri.authority().is_some()
}

/// Whether a peer's response is read whole before it is passed on (held back), so that if
/// the active dies mid-response the request can go to the next one instead of the client
/// getting half a body: on the hop to a sidecar only (the local app's crash is the app's
/// own), for a request that may be sent again after it may have arrived (idempotent, body
/// kept), and for a response whose length is known and fits what the request body left of
/// the replay budget. Streaming and large responses pass through at once.
fn holds_back<B: Body>(
    target: &Target,
    method: &Method,
    body: &ReplayBody,
    resp: &Response<B>,
) -> bool {
    let len = resp.body().size_hint().exact();
    matches!(target.tenure, Tenure::Peer { .. })
        && !resp.body().is_end_stream()
        && retry::may_retry(method, Sent::Maybe, body)
        && len
            .zip(body.spare())
            .is_some_and(|(len, spare)| len <= spare as u64)
}

/// True for a 421 that a peer sidecar gave: it proves nothing reached an app. The same
/// answer from the local app proves nothing, so it is passed on like any other.
pub(crate) fn refused_by_sidecar<B>(target: &Target, resp: &Response<B>) -> bool {
    matches!(target.tenure, Tenure::Peer { .. })
        && resp.status() == StatusCode::MISDIRECTED_REQUEST
        && resp.headers().contains_key(headers::REFUSED)
}

#[cfg(test)]
mod tests;
