//! `Upgrade` (WebSocket and others) and `CONNECT` tunnels.
//!
//! An upgrade gets its own connection to the target (an upgraded connection cannot go back
//! to a pool). Once both sides have switched protocols, bytes are copied both ways until
//! either side closes, the sidecar stops, or the [`Tenure`] the tunnel was routed under
//! ends: a tunnel never outlives the leadership it was opened for, so clients reconnect and
//! land on the new leader.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::BoxError;
use crate::headers::{self, Inbound};
use crate::hold::Deadline;
use crate::peer_tls::Alpn;
use crate::proxy::{
    Head, Outcome, Proxy, Target, Wait, bad_gateway, refused_by_sidecar, unavailable,
};
use crate::tenure::Tenure;

/// A tunnel that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The HTTP/1.1 handshake or exchange with the target failed.
    #[error("upgrade via {peer}: {source}")]
    Http {
        /// The target.
        peer: String,
        /// hyper's error.
        source: hyper::Error,
    },
}

/// Proxies an upgrade request (body usually empty) and, on `101` (or a 2xx to `CONNECT`),
/// splices the two upgraded connections.
pub(crate) async fn proxy<B>(
    proxy: &Proxy,
    mut head: Head,
    body: B,
    inbound: Inbound,
    on_client: OnUpgrade,
    deadline: Deadline,
) -> Outcome
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut wait = Wait::new(proxy, deadline);
    let (target, stream) = loop {
        let target = match wait.target(&inbound).await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let dialed = proxy
            .inner
            .dialer
            .dial(&target.authority, target.reach, Alpn::Http1)
            .await;
        match dialed {
            Ok(stream) => break (target, stream),
            Err(e) => tracing::debug!(error = %e, "upgrade: no connection"),
        }
        proxy.inner.metrics.connect_error(target.route);
        // Nothing was sent: wait for a new view or a moment, then route again.
        if let Err(outcome) = wait.backoff().await {
            return outcome;
        }
    };
    let mut req = head.request(&target, body.map_err(Into::into).boxed_unsync());
    // The connection is ours alone, so the request line is origin-form (authority-form for
    // CONNECT), as a client would write it.
    *req.uri_mut() = if head.method == Method::CONNECT {
        head.uri.clone()
    } else {
        head.uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static("/"))
    };
    let mut resp = match exchange(&target.authority, stream, req).await {
        Ok(resp) => resp,
        Err(e) => return bad_gateway(target.route, target.authority, &e.to_string()),
    };
    let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS
        || (head.method == Method::CONNECT && resp.status().is_success());
    if !switched {
        if refused_by_sidecar(&target, &resp) {
            return unavailable(target.route, "refused by sidecar");
        }
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, false);
        headers::add_via(&mut parts.headers, parts.version);
        parts.headers.remove(headers::REFUSED);
        return Outcome {
            route: target.route,
            peer: Some(target.authority),
            response: Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync()),
        };
    }
    let on_target = hyper::upgrade::on(&mut resp);
    spawn_tunnel(proxy, &target, on_client, on_target);
    let (mut parts, _) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, head.method != Method::CONNECT);
    headers::add_via(&mut parts.headers, parts.version);
    Outcome {
        route: target.route,
        peer: Some(target.authority),
        response: Response::from_parts(parts, Empty::new().map_err(BoxError::from).boxed_unsync()),
    }
}

async fn exchange<S>(
    peer: &str,
    stream: S,
    req: http::Request<http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>>,
) -> Result<Response<hyper::body::Incoming>, UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let err = |source| UpgradeError::Http {
        peer: peer.to_string(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(err)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgrade connection ended");
        }
    });
    sender.send_request(req).await.map_err(err)
}

fn spawn_tunnel(proxy: &Proxy, target: &Target, on_client: OnUpgrade, on_target: OnUpgrade) {
    let views = proxy.inner.views.clone();
    let stop = proxy.inner.stop.clone();
    let tenure: Tenure = target.tenure.clone();
    let peer = target.authority.clone();
    proxy.inner.tunnels.spawn(async move {
        let (client, upstream) = match tokio::try_join!(on_client, on_target) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
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
