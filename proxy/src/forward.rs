//! The one HTTP client: pooled connections to the local app and to peer sidecars.
//!
//! The protocol is kept end to end: an HTTP/2 request goes out over HTTP/2 (h2c prior
//! knowledge, which every understudy listener and gRPC server speaks), anything else over
//! HTTP/1.1. That keeps gRPC trailers and streaming intact without translating between the two.
//!
//! Both clients dial through the one [`Dialer`] ([`crate::dial`]): `http://` in the clear,
//! `https://peer` over the mTLS peer channel.

use std::time::Duration;

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::dial::{Connector, Dialer};
use crate::peer_tls::Alpn;
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
        crate::innermost_cause(&self.source)
    }
}

/// Pooled HTTP/1.1 and HTTP/2 clients.
#[derive(Clone, Debug)]
pub struct Forwarder {
    h1: Client<Connector, ReplayBody>,
    h2: Client<Connector, ReplayBody>,
}

impl Forwarder {
    /// Clients dialing with `dialer`, closing pooled connections idle for `idle_timeout`.
    pub fn new(dialer: Dialer, idle_timeout: Duration) -> Forwarder {
        let connect_timeout = dialer.timeout();
        let connector = |alpn| Connector::new(dialer.clone(), alpn);
        Forwarder {
            h1: client(connector(Alpn::Http1), false, connect_timeout, idle_timeout),
            h2: client(connector(Alpn::Http2), true, connect_timeout, idle_timeout),
        }
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
        let sent = if http2 {
            self.h2.request(req).await
        } else {
            self.h1.request(req).await
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

fn client(
    connector: Connector,
    http2: bool,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Client<Connector, ReplayBody> {
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
