//! The one HTTP client: pooled connections to the local app and to peer sidecars.
//!
//! The protocol is kept end to end: an HTTP/2 request goes out over HTTP/2 (h2c prior
//! knowledge, which every understudy listener and gRPC server speaks), anything else over
//! HTTP/1.1. That keeps gRPC trailers and streaming intact without translating between the two.

use std::time::Duration;

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

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

/// Pooled HTTP/1.1 and HTTP/2 clients.
#[derive(Clone, Debug)]
pub struct Forwarder {
    h1: Client<HttpConnector, ReplayBody>,
    h2: Client<HttpConnector, ReplayBody>,
}

impl Forwarder {
    /// Clients with `connect_timeout`, closing pooled connections idle for `idle_timeout`.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let build = |http2: bool| {
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
            b.build(connector.clone())
        };
        Forwarder {
            h1: build(false),
            h2: build(true),
        }
    }

    /// Sends `req` (URI already absolute, `http://peer/...`). HTTP/2 requests go over the
    /// HTTP/2 client, all others over HTTP/1.1.
    pub async fn send(
        &self,
        mut req: Request<ReplayBody>,
    ) -> Result<Response<Incoming>, ForwardError> {
        let peer = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let client = if req.version() == Version::HTTP_2 {
            &self.h2
        } else {
            *req.version_mut() = Version::HTTP_11;
            &self.h1
        };
        client.request(req).await.map_err(|source| ForwardError {
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

#[cfg(test)]
mod tests;
