//! `Upgrade` (WebSocket and others) and `CONNECT` tunnels.
//!
//! Routing never knows about them. The protocol server hands over the client's connection as
//! a request extension ([`ClientUpgrade`]); the request is routed, held and resent like any
//! other, except that it is sent on a connection of its own ([`send`]: an upgraded
//! connection cannot go back to a pool). Once the target has switched protocols ([`switched`]),
//! [`tunnel`] copies bytes both ways until either side closes, the sidecar stops, or the
//! [`Tenure`] the tunnel was routed under ends: a tunnel never outlives the leadership it was
//! opened for, so clients reconnect and land on the new leader.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Extensions, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use understudy_elector::View;

use crate::BoxError;
use crate::dial::{Dialer, Reach};
use crate::peer_tls::Alpn;
use crate::retry::{ReplayBody, Sent};
use crate::tenure::Tenure;

/// A connection after it switched protocols.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The client's side of an upgrade: resolves to its connection once the `101` (or the `2xx`
/// to a `CONNECT`) has been sent to it. (Shared, as request extensions must be `Clone` and
/// `Sync`; the first to await it takes it.)
#[derive(Clone)]
pub struct ClientUpgrade(Arc<Mutex<Option<Handoff>>>);

type Handoff = BoxFuture<'static, io::Result<Box<dyn Io>>>;

impl ClientUpgrade {
    /// The hand-off that `upgraded` completes; a protocol server puts it in the request's
    /// extensions.
    pub fn new(upgraded: impl Future<Output = io::Result<Box<dyn Io>>> + Send + 'static) -> Self {
        ClientUpgrade(Arc::new(Mutex::new(Some(Box::pin(upgraded)))))
    }

    /// The connection, once switched.
    pub async fn upgraded(self) -> io::Result<Box<dyn Io>> {
        let handoff = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match handoff {
            Some(handoff) => handoff.await,
            None => Err(io::Error::other("upgrade already taken")),
        }
    }

    /// The hand-off in a request's `extensions`: the one a protocol server put there, or
    /// hyper's own.
    pub fn take(extensions: &mut Extensions) -> Option<ClientUpgrade> {
        extensions.remove::<ClientUpgrade>().or_else(|| {
            let on = extensions.remove::<OnUpgrade>()?;
            Some(ClientUpgrade::new(from_hyper(on)))
        })
    }
}

async fn from_hyper(on: OnUpgrade) -> io::Result<Box<dyn Io>> {
    let upgraded = on.await.map_err(io::Error::other)?;
    Ok(Box::new(TokioIo::new(upgraded)))
}

/// Whether a response with `status` to a `method` request switched protocols.
pub fn switched(method: &Method, status: StatusCode) -> bool {
    status == StatusCode::SWITCHING_PROTOCOLS || (method == Method::CONNECT && status.is_success())
}

/// An upgrade request that could not be exchanged.
#[derive(Debug, thiserror::Error)]
#[error("upgrade via {peer}: {source}")]
pub struct SendError {
    /// Where it was sent.
    pub peer: String,
    /// Whether the request may have reached an app.
    pub sent: Sent,
    /// The dialer's or hyper's error.
    #[source]
    pub source: BoxError,
}

impl SendError {
    /// The innermost cause (the operating system's or the TLS layer's).
    pub fn cause(&self) -> String {
        crate::innermost_cause(self.source.as_ref())
    }
}

/// Sends the upgrade or `CONNECT` request `req` to `authority` (reached as `reach`) on a
/// connection of its own, in origin form (a `CONNECT` keeps its authority form).
pub async fn send(
    dialer: &Dialer,
    authority: &str,
    reach: Reach,
    mut req: Request<ReplayBody>,
) -> Result<Response<Incoming>, SendError> {
    let failed = |sent, source: BoxError| SendError {
        peer: authority.to_string(),
        sent,
        source,
    };
    let stream = dialer
        .dial(authority, reach, Alpn::Http1)
        .await
        .map_err(|e| failed(Sent::Nothing, e.into()))?;
    if req.method() != Method::CONNECT {
        let origin = req.uri().path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = origin
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static("/"));
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(Sent::Nothing, e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgrade connection ended");
        }
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| failed(Sent::Maybe, e.into()))
}

/// What a tunnel needs to know to close in time.
pub struct Fence {
    /// The leadership the tunnel was routed under.
    pub tenure: Tenure,
    /// The election view, to see that leadership end.
    pub views: watch::Receiver<View>,
    /// Cancelled when the sidecar stops.
    pub stop: CancellationToken,
}

/// Splices `client` with the target's side of `resp` (which switched protocols) once both
/// have switched, on `tracker`; see the module docs for when it closes.
pub fn tunnel<B>(
    tracker: &TaskTracker,
    client: ClientUpgrade,
    resp: &mut Response<B>,
    fence: Fence,
    peer: String,
) {
    let target = ClientUpgrade::new(from_hyper(hyper::upgrade::on(resp)));
    let Fence {
        tenure,
        views,
        stop,
    } = fence;
    tracker.spawn(async move {
        let (mut client, mut upstream) =
            match tokio::try_join!(client.upgraded(), target.upgraded()) {
                Ok(both) => both,
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "upgrade did not complete");
                    return;
                }
            };
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                tracing::debug!(peer = %peer, ?copied, "tunnel closed");
                return;
            }
            _ = tenure.ended(views) => {
                tracing::info!(peer = %peer, "closing tunnel: leadership moved");
            }
            _ = stop.cancelled() => {
                tracing::debug!(peer = %peer, "closing tunnel: shutting down");
            }
        }
        // Close both ways with a FIN where the peers still listen; never wait long for it.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = client.shutdown().await;
            let _ = upstream.shutdown().await;
        })
        .await;
    });
}
