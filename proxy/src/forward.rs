//! The one HTTP client: pooled connections to the local app and to peer sidecars.
//!
//! The protocol is kept end to end: an HTTP/2 request goes out over HTTP/2 (h2c prior
//! knowledge, which every understudy listener and gRPC server speaks), anything else over
//! HTTP/1.1. That keeps gRPC trailers and streaming intact without translating between the two.
//!
//! With the mTLS peer channel on, requests to `https://peer` go over a second pair of
//! clients whose connector adds the TLS handshake ([`crate::peer_tls::PeerConnector`]); the
//! plain clients are the same as without it.

use std::time::Duration;

use http::uri::Scheme;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::peer_tls::{Alpn, PeerConnector, PeerTls};
use crate::retry::{ReplayBody, Sent};

/// A failed attempt to send a request to the app or a peer.
#[derive(Debug, thiserror::Error)]
#[error("forward to {peer}: {source}")]
pub struct ForwardError {
    /// Where it was sent (`host:port`).
    pub peer: String,
    /// Whether the request may have reached an app.
    pub sent: Sent,
    /// The client's error.
    #[source]
    pub source: hyper_util::client::legacy::Error,
}

impl ForwardError {
    /// The innermost cause, as the operating system or the TLS layer gave it ("Connection
    /// refused (os error 111)"), which the client's own message ("client error (Connect)")
    /// hides.
    pub fn cause(&self) -> String {
        let mut err: &dyn std::error::Error = &self.source;
        while let Some(next) = err.source() {
            err = next;
        }
        err.to_string()
    }
}

/// Pooled HTTP/1.1 and HTTP/2 clients.
#[derive(Clone, Debug)]
pub struct Forwarder {
    h1: Client<HttpConnector, ReplayBody>,
    h2: Client<HttpConnector, ReplayBody>,
    /// The same over mTLS, for `https://` peers.
    tls: Option<TlsClients>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

#[derive(Clone, Debug)]
struct TlsClients {
    h1: Client<PeerConnector, ReplayBody>,
    h2: Client<PeerConnector, ReplayBody>,
}

impl Forwarder {
    /// Clients with `connect_timeout`, closing pooled connections idle for `idle_timeout`.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Forwarder {
        let connector = tcp(connect_timeout);
        Forwarder {
            h1: client(connector.clone(), false, connect_timeout, idle_timeout),
            h2: client(connector, true, connect_timeout, idle_timeout),
            tls: None,
            connect_timeout,
            idle_timeout,
        }
    }

    /// Also sends to `https://` peers, over mTLS with `tls`'s current files (the TLS
    /// handshake is bounded by the connect timeout too).
    pub fn with_peer_tls(mut self, tls: PeerTls) -> Forwarder {
        let (connect, idle) = (self.connect_timeout, self.idle_timeout);
        let connector = |alpn| PeerConnector::new(tcp(connect), tls.clone(), alpn, connect);
        self.tls = Some(TlsClients {
            h1: client(connector(Alpn::Http1), false, connect, idle),
            h2: client(connector(Alpn::Http2), true, connect, idle),
        });
        self
    }

    /// Sends `req` (URI already absolute, `http://peer/...`, or `https://peer/...` over the
    /// mTLS peer channel). HTTP/2 requests go over the HTTP/2 client, all others over
    /// HTTP/1.1.
    pub async fn send(
        &self,
        mut req: Request<ReplayBody>,
    ) -> Result<Response<Incoming>, ForwardError> {
        let peer = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let http2 = req.version() == Version::HTTP_2;
        if !http2 {
            *req.version_mut() = Version::HTTP_11;
        }
        let sent = match (&self.tls, req.uri().scheme() == Some(&Scheme::HTTPS)) {
            (Some(tls), true) if http2 => tls.h2.request(req).await,
            (Some(tls), true) => tls.h1.request(req).await,
            _ if http2 => self.h2.request(req).await,
            _ => self.h1.request(req).await,
        };
        sent.map_err(|source| ForwardError {
            peer,
            // A connect error is the only one that proves nothing was written. (Requests
            // that never left a reused connection are resent by the client itself.)
            sent: if source.is_connect() {
                Sent::Nothing
            } else {
                Sent::Maybe
            },
            source,
        })
    }
}

/// The TCP connector every client starts from.
fn tcp(connect_timeout: Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector
}

fn client<C>(
    connector: C,
    http2: bool,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Client<C, ReplayBody>
where
    C: Connect + Clone,
{
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(idle_timeout)
        .http2_only(http2);
    if http2 {
        // Notice a dead peer on a quiet HTTP/2 connection.
        b.http2_keep_alive_interval(Some(idle_timeout / 4))
            .http2_keep_alive_timeout(connect_timeout.max(Duration::from_secs(5)));
    }
    b.build(connector)
}

#[cfg(test)]
mod tests;
