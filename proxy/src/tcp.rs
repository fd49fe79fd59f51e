//! TCP mode (`--mode tcp`): active/standby for apps that do not speak HTTP (Redis,
//! PostgreSQL, brokers).
//!
//! A connection is routed once, when it arrives, by the same rules as an HTTP request
//! ([`crate::route::decide`]): on the acting leader to the local app, on a standby to the
//! leader's sidecar, and with no leader to send to it is held (nothing read from it, a place
//! in the same bounded hold queue, the same hold deadline), then connected or closed. After
//! that the sidecar relays bytes both ways (half-closes passed on) until either side ends,
//! nothing moves for `--idle-timeout`, or **the leadership it was routed under ends**
//! ([`crate::tenure`]): a pod that stops leading closes its connections to its app at once,
//! and a standby closes its connections to a leader that is no longer leader. Clients
//! reconnect and reach the new leader; none goes on writing to a demoted primary.
//!
//! ## A planned handover drains first
//! Before a planned handover the leader [quiesces](TcpProxy::quiesce): new connections are
//! held for the next leader instead of going to the local app, and the ones open may end by
//! themselves for `--close-grace` (0 by default) while this pod still leads and renews. Then
//! the Lease moves and what is left is closed. The app is never active beside the next one's.
//! SIGTERM quiesces before it steps down; every other planned handover (the
//! `understudy.io/handover-to` annotation and `kubectl understudy switchover`, `POST
//! /handover`, `GET /prestop`, a failback) is accepted by the election, prepared for with
//! [`Drain`] and only then written.
//!
//! ## The hand-off between sidecars
//! A standby opens a connection to the leader's advertised address and sends a PROXY
//! protocol v2 header first ([`proxy_header`]) with the client's address and understudy's
//! hand-off TLV (the pod it is meant for, the hops, which listener the client reached, what is left
//! of the hold deadline). The leader reads such a header **only from a sidecar**: a
//! connection whose source address is the host of a member's advertised address
//! ([`understudy_elector::Members`]). From anyone else the bytes are the app's, relayed
//! untouched, so a client cannot pass itself off as another (towards an app that reads the
//! PROXY protocol, `--proxy-protocol`, the sidecar's own header comes first). A sidecar's
//! connection that does not start with a header is a client in a member pod (an app's own
//! client): it waits at most `--connect-timeout` for its first bytes, then is relayed like
//! any other. One that starts with `POST /.understudy/` is the failsafe's message from a
//! member, answered here as in HTTP mode.
//!
//! With the mTLS peer channel (`--peer-listen`, `--peer-tls-dir`) the hand-off and the
//! failsafe's messages go to the leader's peer port instead, over mutually authenticated TLS
//! ([`TcpProxy::serve_peer`]); the data port then reads no header from anyone, so that not
//! even a process in a member pod can pass itself off as another client.

pub mod proxy_header;
mod splice;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{Request, StatusCode};
use prometheus::IntCounter;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use understudy_elector::{Answerer, Members, Prepare, View};

use crate::balance::Balancer;
use crate::conn::{Accepted, Observe, Observed, Prefixed, Stream};
use crate::dial::{Conn, Dialer, Reach};
use crate::headers::Inbound;
use crate::hold::Holder;
use crate::metrics::{Close, Metrics, TcpMetrics};
use crate::peer_tls::Alpn;
use crate::route::{self, Kind, Route};
use crate::server::{self, Limits};
use crate::tenure::Tenure;
use crate::tls_or_plain::MaybeTls;
use proxy_header::{HandOff, HeaderError};

/// The start of a failsafe message from a member sidecar.
const FAILSAFE_PREFIX: &[u8] = b"POST /.understudy/";

/// Each direction's relay buffer: HAProxy's default `tune.bufsize`. Twice tokio's default
/// halves the system calls per byte moved (bench/run's TCP step) for 16 KiB more per
/// connection.
const RELAY_BUFFER: usize = 16 * 1024;

/// How long to wait before dialling again when the app or the leader could not be reached
/// (while the hold deadline lasts).
const REDIAL: Duration = Duration::from_millis(100);

/// TCP mode's listeners and what they need; cheap to clone.
#[derive(Clone)]
pub struct TcpProxy {
    inner: Arc<Inner>,
}

/// What [`TcpProxy::new`] is given.
pub struct Parts {
    /// The election as the proxy routes by it.
    pub views: watch::Receiver<View>,
    /// The election's members (who may send a PROXY header).
    pub members: watch::Receiver<Members>,
    /// The app address of each listener, in order (`--listen`'s first).
    pub upstreams: Vec<String>,
    /// Connects to the app, and to peers from this pod's advertised address
    /// ([`Dialer::from_source`]), over mTLS when `peer_tls`.
    pub dialer: Dialer,
    /// The mTLS peer channel is on (`--peer-listen`): connections are handed to the leader's
    /// peer address over mTLS (`views` carry peer addresses), hand-offs and the failsafe's
    /// messages are taken on the peer port only ([`TcpProxy::serve_peer`]), and the data port
    /// reads no header from anyone.
    pub peer_tls: bool,
    /// The hold queue (shared with `/status`).
    pub holder: Holder,
    /// The metrics.
    pub metrics: Metrics,
    /// Send a PROXY v2 header to the app first (`--proxy-protocol`).
    pub proxy_protocol: bool,
    /// Close a connection after this long with no byte either way.
    pub idle_timeout: Duration,
    /// Relay plain TCP connections with splice(2) (`--splice`; [`splice`]).
    pub splice: bool,
    /// Answers the failsafe's messages from members; `None` with `--failsafe off`.
    pub failsafe: Option<Answerer>,
    /// Limits of the HTTP/1 server that takes the failsafe's messages.
    pub limits: Limits,
    /// Cancelled at shutdown: every connection closes.
    pub stop: CancellationToken,
}

struct Inner {
    parts: Parts,
    tcp: TcpMetrics,
    balancer: Balancer,
    upstream_bytes: IntCounter,
    downstream_bytes: IntCounter,
    /// Set by [`TcpProxy::quiesce`] to the epoch of the leadership being handed over: while
    /// this pod leads at that epoch, new connections are not given to the local app.
    /// [`NOT_QUIESCED`] otherwise. Tied to the epoch so that leading again later (a failover
    /// back, a failback) is never quiesced.
    quiesced: AtomicU64,
    /// Set by [`TcpProxy::quiesce_for_good`]: a shutdown's quiesce is never resumed.
    for_good: AtomicBool,
    /// Connections to the local app being relayed.
    local_open: watch::Sender<usize>,
}

/// TCP mode's drain before a planned handover, as the election's [`Prepare`]: the election
/// accepts a handover, calls [`Prepare::prepare`] (a [quiesce](TcpProxy::quiesce) of up to
/// `--close-grace`) while it still leads and renews, then checks the handover again and writes
/// it; once it is over, whichever way, it [resumes](TcpProxy::resume) (a pod that handed over
/// does not lead at that epoch any more; one whose handover did not happen leads on as
/// before). Made before the election (which the proxy follows) and given the proxy once that
/// exists: until then there is nothing to drain.
#[derive(Clone, Default)]
pub struct Drain {
    proxy: Arc<OnceLock<(TcpProxy, Duration)>>,
}

impl Drain {
    /// Drains `proxy`'s connections, for up to `grace`, before every planned handover.
    pub fn set(&self, proxy: TcpProxy, grace: Duration) {
        let _ = self.proxy.set((proxy, grace));
    }
}

impl Prepare for Drain {
    fn prepare(&self) -> BoxFuture<'static, ()> {
        let proxy = self.proxy.get().cloned();
        Box::pin(async move {
            if let Some((proxy, grace)) = proxy {
                proxy.quiesce(grace).await;
            }
        })
    }

    fn over(&self) {
        if let Some((proxy, _)) = self.proxy.get() {
            proxy.resume();
        }
    }

    fn longest(&self) -> Duration {
        self.proxy.get().map_or(Duration::ZERO, |(_, grace)| *grace)
    }
}

/// [`Inner::quiesced`] when no handover is being prepared.
const NOT_QUIESCED: u64 = u64::MAX;

/// Counts one connection to the local app while it lives.
struct LocalOpen(watch::Sender<usize>);

impl LocalOpen {
    fn new(count: &watch::Sender<usize>) -> LocalOpen {
        count.send_modify(|n| *n += 1);
        LocalOpen(count.clone())
    }
}

impl Drop for LocalOpen {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Where a connection came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    /// A data listener (`--listen`, `--tcp-listen`).
    Data,
    /// The mTLS peer port (`--peer-listen`).
    Peer,
}

/// What the first bytes from a sidecar's address turned out to be.
enum Sniffed {
    /// A hand-off from another sidecar, and what followed its header.
    HandOff {
        /// The client, and the address it reached.
        addresses: Option<(SocketAddr, SocketAddr)>,
        facts: Option<HandOff>,
        rest: Bytes,
    },
    /// Not a header: a client's bytes (possibly none yet).
    Client(Bytes),
    /// The failsafe's message, as far as it has arrived.
    Failsafe(BytesMut),
    /// A header that is not one.
    Bad(HeaderError),
    /// Closed before anything arrived.
    Closed,
}

impl TcpProxy {
    /// A TCP-mode proxy of `parts`.
    pub fn new(parts: Parts) -> TcpProxy {
        let tcp = parts.metrics.tcp();
        let upstream_bytes = tcp.bytes("upstream");
        let downstream_bytes = tcp.bytes("downstream");
        TcpProxy {
            inner: Arc::new(Inner {
                parts,
                tcp,
                balancer: Balancer::default(),
                upstream_bytes,
                downstream_bytes,
                quiesced: AtomicU64::new(NOT_QUIESCED),
                for_good: AtomicBool::new(false),
                local_open: watch::channel(0).0,
            }),
        }
    }

    /// Gets ready for a planned handover of the leadership this pod holds now: from now on,
    /// while it leads at this epoch, new connections are held for the next leader rather than
    /// given to the local app, and this waits up to `grace` for the connections to the local
    /// app to end by themselves. Returns how many are still open (they close when the
    /// leadership ends). [`TcpProxy::resume`] undoes it (a handover that did not happen); a
    /// later leadership (another epoch) is not affected. Nothing to do on a standby.
    pub async fn quiesce(&self, grace: Duration) -> usize {
        let epoch = {
            let view = self.inner.parts.views.borrow();
            view.leader
                .as_ref()
                .filter(|l| l.identity == view.identity && view.is_acting(crate::now()))
                .map(|l| l.epoch)
        };
        let Some(epoch) = epoch else { return 0 };
        self.inner.quiesced.store(epoch, Ordering::SeqCst);
        let mut open = self.inner.local_open.subscribe();
        let _ = tokio::time::timeout(grace, open.wait_for(|n| *n == 0)).await;
        let left = *open.borrow();
        tracing::info!(
            open = left,
            ?grace,
            "tcp: quiesced for a handover; new connections wait for the next leader"
        );
        left
    }

    /// [`TcpProxy::quiesce`] for a shutdown: no [`TcpProxy::resume`] undoes it (a planned
    /// handover being prepared meanwhile ends without undoing SIGTERM's drain).
    pub async fn quiesce_for_good(&self, grace: Duration) -> usize {
        self.inner.for_good.store(true, Ordering::SeqCst);
        self.quiesce(grace).await
    }

    /// Gives new connections to the local app again (a planned handover is over), unless
    /// this pod is shutting down ([`TcpProxy::quiesce_for_good`]).
    pub fn resume(&self) {
        if self.inner.for_good.load(Ordering::SeqCst) {
            return;
        }
        if self.inner.quiesced.swap(NOT_QUIESCED, Ordering::SeqCst) != NOT_QUIESCED {
            tracing::info!("tcp: no handover; new connections go to the local app again");
        }
    }

    /// Whether [`TcpProxy::quiesce`] is in force: this pod leads at the epoch it was
    /// quiesced for.
    pub fn is_quiesced(&self) -> bool {
        let view = self.inner.parts.views.borrow();
        view.leader.as_ref().is_some_and(|l| {
            l.identity == view.identity
                && self.quiesced_for(l.epoch)
                && view.is_acting(crate::now())
        })
    }

    fn quiesced_for(&self, epoch: u64) -> bool {
        self.inner.quiesced.load(Ordering::SeqCst) == epoch
    }

    /// Connections to the local app being relayed now.
    pub fn local_open(&self) -> usize {
        *self.inner.local_open.borrow()
    }

    /// Where a connection goes by `view`: [`route::decide`], except that a quiesced pod holds
    /// what would go to its own app (the next leader takes it), and that a hand-off meant for
    /// this pod by a sender that saw it lead at a later epoch than this pod knows of waits for
    /// this pod's view to catch up (a planned handover names the successor before it acts)
    /// rather than going back the way it came.
    fn decide<'v>(&self, view: &'v View, inbound: &Inbound, sent_at: Option<u64>) -> Route<'v> {
        let now = crate::now();
        // (One slot only: with several, the sender's epoch may be another slot's Lease's.)
        let behind = inbound.for_pod.as_deref() == Some(view.identity.as_str())
            && view.peers.is_empty()
            && !view.is_acting(now)
            && sent_at > view.leader.as_ref().map(|l| l.epoch);
        if behind {
            return Route::Hold;
        }
        let route = route::decide(view, now, inbound, &self.inner.balancer);
        match route {
            Route::Local { epoch } if self.quiesced_for(epoch) => Route::Hold,
            route => route,
        }
    }

    /// Serves one connection accepted on listener number `listener` until it ends, and
    /// counts why it ended.
    pub async fn serve(self, accepted: Accepted, listener: u16) {
        let why = self.run(accepted, listener, Door::Data).await;
        tracing::debug!(reason = why.as_str(), "tcp connection ended");
        self.inner.tcp.closed(why);
    }

    /// Serves one connection accepted on the mTLS peer port (its client certificate already
    /// checked): a sidecar's hand-off or the failsafe's message, nothing else.
    pub async fn serve_peer(self, accepted: Accepted) {
        let why = self.run(accepted, 0, Door::Peer).await;
        tracing::debug!(reason = why.as_str(), "tcp peer connection ended");
        self.inner.tcp.closed(why);
    }

    async fn run(&self, accepted: Accepted, listener: u16, door: Door) -> Close {
        let p = &self.inner.parts;
        let Accepted {
            mut stream,
            client,
            activity,
        } = accepted;
        let arrived = Instant::now();
        // The address the client reached, for the PROXY headers this sidecar writes (for a
        // hand-off, the one the first sidecar's header names).
        let mut to = match &stream {
            crate::tls_or_plain::MaybeTls::Plain(w) => w.local_addr().ok(),
            crate::tls_or_plain::MaybeTls::Tls(_) => None,
        }
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut origin = client;
        let mut inbound = Inbound::default();
        let mut sent_at = None;
        let mut listener = listener;
        let mut prefix = Bytes::new();
        let from_sidecar = match door {
            Door::Peer => true,
            Door::Data => !p.peer_tls && self.is_sidecar(client.ip()),
        };
        if from_sidecar {
            let sniffed = tokio::select! {
                _ = p.stop.cancelled() => return Close::Shutdown,
                sniffed = sniff(&mut stream, p.dialer.timeout()) => sniffed,
            };
            match sniffed {
                Sniffed::HandOff {
                    addresses,
                    facts,
                    rest,
                } => {
                    if let Some((client, reached)) = addresses {
                        origin = client;
                        to = reached;
                    }
                    if let Some(facts) = facts {
                        listener = facts.listener;
                        inbound = Inbound {
                            for_pod: Some(facts.for_pod).filter(|p| !p.is_empty()),
                            hops: facts.hops,
                            hold: Some(facts.hold),
                        };
                        sent_at = Some(facts.epoch);
                    }
                    prefix = rest;
                }
                Sniffed::Client(_) if door == Door::Peer => {
                    tracing::info!(client = %client, "refused a peer connection that is neither a hand-off nor the failsafe's");
                    return Close::BadHeader;
                }
                Sniffed::Client(bytes) => prefix = bytes,
                Sniffed::Failsafe(buf) => return self.failsafe(stream, buf, client).await,
                Sniffed::Bad(e) => {
                    tracing::info!(client = %client, error = %e, "refused a sidecar's connection");
                    return Close::BadHeader;
                }
                Sniffed::Closed => return Close::Done,
            }
        }
        let deadline = p.holder.deadline(arrived, inbound.hold);
        let mut views = p.views.clone();
        let mut place = None;
        let mut held = false;
        let mut local = None;
        let (upstream, tenure, kind) = loop {
            let view = views.borrow_and_update().clone();
            let route = self.decide(&view, &inbound, sent_at);
            let dialled = match &route {
                Route::Local { epoch } => {
                    let Some(address) = self.inner.parts.upstreams.get(usize::from(listener))
                    else {
                        tracing::info!(
                            listener,
                            "no such listener here for a handed-off connection"
                        );
                        self.inner.tcp.routed(Kind::Reject);
                        return Close::Misdirected;
                    };
                    let header = p
                        .proxy_protocol
                        .then(|| proxy_header::encode(origin, to, None));
                    let tenure = Tenure::Local { epoch: *epoch };
                    // Counted from the decision, so that a quiesce waits for it too.
                    let open = LocalOpen::new(&self.inner.local_open);
                    let dialled = self.dial(address, header, tenure, Kind::Local).await;
                    if dialled.is_some() {
                        local = Some(open);
                    }
                    dialled
                }
                Route::Forward {
                    identity,
                    epoch,
                    address,
                    hops,
                } => {
                    let facts = HandOff {
                        for_pod: identity.to_string(),
                        hops: *hops,
                        listener,
                        hold: deadline.remaining(Instant::now()),
                        epoch: *epoch,
                    };
                    let header = proxy_header::encode(origin, to, Some(&facts));
                    let tenure = Tenure::Peer {
                        identity: Arc::from(*identity),
                        epoch: *epoch,
                    };
                    self.dial(address, Some(header), tenure, Kind::Forward)
                        .await
                }
                Route::Hold => None,
                Route::Reject(why) => {
                    tracing::info!(client = %origin, why = %why, "tcp connection refused");
                    self.inner.tcp.routed(Kind::Reject);
                    return Close::Misdirected;
                }
            };
            if let Some(done) = dialled {
                break done;
            }
            // Held: no one to send to, or the one there is could not be reached yet.
            if place.is_none() {
                match p.holder.enter() {
                    Ok(entered) => place = Some(entered),
                    Err(_) => return Close::HoldFull,
                }
            }
            let waited = if route == Route::Hold {
                held = true;
                let inbound = &inbound;
                let ready = |v: &View| self.decide(v, inbound, sent_at) != Route::Hold;
                tokio::select! {
                    _ = p.stop.cancelled() => return Close::Shutdown,
                    waited = deadline.until(&mut views, ready) => waited,
                }
            } else {
                tokio::select! {
                    _ = p.stop.cancelled() => return Close::Shutdown,
                    waited = deadline.backoff(&mut views, REDIAL) => waited,
                }
            };
            if waited.is_err() {
                return if held {
                    Close::HoldTimeout
                } else {
                    Close::Connect
                };
            }
        };
        drop(place);
        self.inner.tcp.routed(kind);
        // The leadership may have ended while the connection was being opened: not one byte
        // then.
        if !tenure.holds(&p.views.borrow(), crate::now()) {
            return Close::Leadership;
        }
        let _open = local;
        let ended = tenure.ended(p.views.clone());
        let relay = self.relay(prefix, stream, upstream);
        let relayed = tokio::select! {
            // The end of the leadership first: never a byte relayed once it is seen.
            biased;
            _ = ended => return Close::Leadership,
            _ = p.stop.cancelled() => return Close::Shutdown,
            _ = activity.idle_for(p.idle_timeout) => return Close::Idle,
            relayed = relay => relayed,
        };
        match relayed {
            Ok(_) => Close::Done,
            Err(e) => {
                tracing::debug!(client = %origin, error = %e, "tcp relay ended with an error");
                Close::Error
            }
        }
    }

    /// Relays bytes both ways between the client (`prefix` first: what was read from it
    /// already) and `upstream` until both have ended: with splice(2) when `--splice` is on
    /// and both are plain TCP, else through two [`RELAY_BUFFER`]s.
    async fn relay(&self, prefix: Bytes, stream: Stream, mut upstream: Conn) -> io::Result<()> {
        let inner = &self.inner;
        if inner.parts.splice
            && let (MaybeTls::Plain(client), MaybeTls::Plain(app)) = (&stream, &mut upstream)
        {
            if !prefix.is_empty() {
                app.write_all(&prefix).await?;
                inner.upstream_bytes.inc_by(prefix.len() as u64);
            }
            let (socket, activity) = client.parts();
            // Counted at the client's end, as the buffered relay counts them.
            let client = splice::End {
                socket,
                read: Some(&inner.upstream_bytes),
                written: Some(&inner.downstream_bytes),
                activity: Some(activity),
            };
            let app = splice::End {
                socket: app,
                read: None,
                written: None,
                activity: None,
            };
            return splice::relay(client, app).await;
        }
        let counts = Counts {
            read: inner.upstream_bytes.clone(),
            written: inner.downstream_bytes.clone(),
        };
        let mut client_io = Observed::new(Prefixed::new(prefix, stream), counts);
        tokio::io::copy_bidirectional_with_sizes(
            &mut client_io,
            &mut upstream,
            RELAY_BUFFER,
            RELAY_BUFFER,
        )
        .await
        .map(drop)
    }

    /// Whether `ip` is where a member sidecar's connections come from.
    fn is_sidecar(&self, ip: IpAddr) -> bool {
        let host_of = |address: &str| {
            let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_canonical(),
            v4 => v4,
        };
        self.inner
            .parts
            .members
            .borrow()
            .values()
            .filter_map(|m| m.address.as_deref())
            .any(|a| host_of(a) == Some(ip))
    }

    /// Connects to `address` and sends `header`; `None` (counted) when it cannot be reached.
    async fn dial(
        &self,
        address: &str,
        header: Option<Vec<u8>>,
        tenure: Tenure,
        kind: Kind,
    ) -> Option<(Conn, Tenure, Kind)> {
        let p = &self.inner.parts;
        let dialled = match kind {
            // To a peer: over mTLS with the peer channel on, else from this pod's own address,
            // which is how the leader knows a sidecar.
            Kind::Forward => {
                let reach = if p.peer_tls {
                    Reach::Mtls
                } else {
                    Reach::Plain
                };
                p.dialer.dial_peer(address, reach, Alpn::Http1).await
            }
            _ => p.dialer.dial(address, Reach::Plain, Alpn::Http1).await,
        };
        let mut conn = match dialled {
            Ok(conn) => conn,
            Err(e) => {
                tracing::info!(error = %e, route = kind.as_str(), "tcp connect failed");
                p.metrics.connect_error(kind);
                return None;
            }
        };
        if let Some(header) = header
            && let Err(e) = conn.write_all(&header).await
        {
            tracing::info!(error = %e, %address, "sending the PROXY header failed");
            p.metrics.connect_error(kind);
            return None;
        }
        Some((conn, tenure, kind))
    }

    /// Answers the failsafe's messages on this connection (HTTP/1, as in HTTP mode).
    async fn failsafe(
        &self,
        stream: crate::conn::Stream,
        buf: BytesMut,
        client: SocketAddr,
    ) -> Close {
        let p = &self.inner.parts;
        let answerer = p.failsafe.clone();
        let handler = move |req: Request<server::RequestBody>| {
            let answerer = answerer.clone();
            async move {
                match answerer.filter(|_| crate::failsafe::is_failsafe(&req)) {
                    Some(answerer) => crate::failsafe::respond(&answerer, req).await,
                    None => crate::proxy::text(
                        StatusCode::NOT_FOUND,
                        "understudy: TCP mode answers nothing but the failsafe here",
                    ),
                }
            }
        };
        let stop = p.stop.clone();
        server::serve_http1(stream, buf, client, &p.limits, stop, handler).await;
        Close::Done
    }
}

/// Reads the first bytes of a connection from a sidecar's address (at most `within`): a
/// PROXY header, the failsafe's request, or a client's bytes.
async fn sniff(stream: &mut crate::conn::Stream, within: Duration) -> Sniffed {
    let mut buf = BytesMut::new();
    let until = Instant::now() + within;
    loop {
        if proxy_header::may_start(&buf) {
            match proxy_header::parse(&buf) {
                Ok(Some((header, used))) => {
                    let rest = buf.split_off(used).freeze();
                    return Sniffed::HandOff {
                        addresses: header.addresses,
                        facts: header.hand_off,
                        rest,
                    };
                }
                Ok(None) => {}
                Err(e) => return Sniffed::Bad(e),
            }
        } else if buf.starts_with(FAILSAFE_PREFIX) {
            return Sniffed::Failsafe(buf);
        } else if !FAILSAFE_PREFIX.starts_with(&buf) {
            return Sniffed::Client(buf.freeze());
        }
        let read = tokio::time::timeout_at(
            until,
            std::future::poll_fn(|cx| {
                crate::h1::read::poll_head(Pin::new(&mut *stream), cx, &mut buf, 4096)
            }),
        )
        .await;
        match read {
            // Nothing (more) in time: a client that waits for the server to speak first.
            Err(_) if proxy_header::may_start(&buf) && !buf.is_empty() => {
                return Sniffed::Bad(HeaderError::Malformed("PROXY header not complete in time"));
            }
            Err(_) => return Sniffed::Client(buf.freeze()),
            Ok(Ok(0)) if buf.is_empty() => return Sniffed::Closed,
            Ok(Ok(0)) => return Sniffed::Client(buf.freeze()),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Sniffed::Closed,
        }
        // No cap on `buf` here: one read may bring the header and the client's first bytes
        // together (a read is at most 4 KiB), and the checks above end the loop once a
        // header is whole (its length is capped by `parse`), refused, or the bytes are a
        // client's.
    }
}

/// The client's side of a relay's byte counts: read from the client (to the app), and
/// written to it.
struct Counts {
    read: IntCounter,
    written: IntCounter,
}

impl Observe for Counts {
    fn read(&mut self, bytes: &[u8]) {
        self.read.inc_by(bytes.len() as u64);
    }

    fn wrote(&mut self, bytes: &[u8]) {
        self.written.inc_by(bytes.len() as u64);
    }
}

#[cfg(test)]
mod tests;
