//! Where requests come in, and the first question asked of them: is this the election's
//! business or traffic?
//!
//! Two ports take requests: the data port (`--listen`), which clients and, without mTLS,
//! other sidecars reach, and the mTLS peer port (`--peer-listen`), which only sidecars with
//! a certificate reach. With the failsafe on, a request for its endpoint
//! ([`understudy_elector::failsafe::PEER_PATH`]) is a member's message to the election: it
//! is answered here (by the failsafe module) and never proxied, and with mTLS on it is
//! taken on the peer port only (the data port answers 403, so that no client can speak for
//! a member). Everything else goes to the [`Proxy`], which knows which port it came in on.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{self, BoxFuture, Either};
use http::{Request, Response, StatusCode};
use http_body::Body;
use understudy_elector::Answerer;

use crate::failsafe;
use crate::proxy::{Proxy, text};
use crate::{BoxError, ProxyBody};

/// The request handlers of the data port and the peer port; cheap to clone.
#[derive(Clone)]
pub struct Edge {
    proxy: Proxy,
    /// Answers the failsafe endpoint; `None` with `--failsafe off` (the path is then an
    /// ordinary one, proxied like any other).
    failsafe: Option<Answerer>,
}

impl Edge {
    /// Handlers for `proxy`, answering the failsafe endpoint with `failsafe` when given.
    pub fn new(proxy: Proxy, failsafe: Option<Answerer>) -> Edge {
        Edge { proxy, failsafe }
    }

    /// The election's answerer, when `req` is for the failsafe endpoint and the failsafe is on.
    fn failsafe_for<B>(&self, req: &Request<B>) -> Option<&Answerer> {
        self.failsafe
            .as_ref()
            .filter(|_| failsafe::is_failsafe(req))
    }

    /// Handles one request from `client` on the data port. (The future owns what it needs,
    /// and is what the HTTP/1 engine boxes for each request: see [`Proxy::handle`].)
    pub fn data<B>(
        &self,
        req: Request<B>,
        client: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + use<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        match self.failsafe_for(&req) {
            Some(_) if self.proxy.inner.peer_tls.is_some() => Either::Left(
                future::ready(text(
                    StatusCode::FORBIDDEN,
                    "understudy: failsafe requests are taken on the mTLS peer port only",
                ))
                .boxed(),
            ),
            Some(answerer) => Either::Left(answer_failsafe(answerer.clone(), req)),
            None => Either::Right(self.proxy.handle(req, client)),
        }
    }

    /// Handles one request from a sidecar on the mTLS peer port (the TLS handshake has
    /// checked its certificate).
    pub fn peer<B>(
        &self,
        req: Request<B>,
        client: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + use<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        match self.failsafe_for(&req) {
            Some(answerer) => Either::Left(answer_failsafe(answerer.clone(), req)),
            None => Either::Right(self.proxy.handle_peer(req, client)),
        }
    }
}

/// The failsafe's answer to a member's message, boxed: such messages are few, and a future
/// is as large as its largest branch.
fn answer_failsafe<B>(
    answerer: Answerer,
    req: Request<B>,
) -> BoxFuture<'static, Response<ProxyBody>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    async move { failsafe::respond(&answerer, req).await }.boxed()
}

#[cfg(test)]
mod tests;
