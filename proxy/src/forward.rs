//! The one HTTP client: pooled connections to the local app and to peer sidecars.
//!
//! The protocol is kept end to end: an HTTP/2 request goes out over HTTP/2 (h2c prior
//! knowledge, which every understudy listener and gRPC server speaks) with hyper's client,
//! anything else over HTTP/1.1 with the engine's own ([`crate::h1::client`]). That keeps gRPC
//! trailers and streaming intact without translating between the two.
//!
//! Both clients dial through the one [`Dialer`] ([`crate::dial`]): `http://` in the clear,
//! `https://peer` over the mTLS peer channel.

use std::borrow::Cow;
use std::time::Duration;

use futures::FutureExt;
use futures::future::Either;
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus::IntCounter;

use crate::BoxError;
use crate::dial::{Connector, Dialer, Reach};
use crate::h1::client::{self, ClientError};
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
    pub source: BoxError,
}

impl ForwardError {
    /// The innermost cause, as the operating system or the TLS layer gave it ("Connection
    /// refused (os error 111)"), which the client's own message ("client error (Connect)")
    /// hides.
    pub fn cause(&self) -> String {
        crate::innermost_cause(self.source.as_ref())
    }
}

/// The body of a response from the app or a peer: read by the engine's client (HTTP/1.1)
/// or by hyper (HTTP/2).
pub type ForwardBody = crate::body::EngineOrHyper<client::ResponseBody>;

/// Pooled HTTP/1.1 and HTTP/2 clients.
#[derive(Clone, Debug)]
pub struct Forwarder {
    h1: client::Client,
    h2: Client<Connector, ReplayBody>,
}

impl Forwarder {
    /// Clients dialing with `dialer`, closing pooled connections idle for `idle_timeout`;
    /// the HTTP/1 client keeps at most `max_idle` idle connections per address.
    pub fn new(dialer: Dialer, idle_timeout: Duration, max_idle: usize) -> Forwarder {
        let connect_timeout = dialer.timeout();
        let connector = |alpn| Connector::new(dialer.clone(), alpn);
        Forwarder {
            h1: client::Client::new(dialer.clone(), idle_timeout, max_idle),
            h2: h2_client(connector(Alpn::Http2), connect_timeout, idle_timeout),
        }
    }

    /// These clients, counting in `counter` each HTTP/1.1 request sent whole on a new
    /// connection because a pooled one failed its first write. (HTTP/2's client resends
    /// such requests itself, uncounted.)
    pub fn counting_redials(self, counter: IntCounter) -> Forwarder {
        Forwarder {
            h1: self.h1.counting_redials(counter),
            ..self
        }
    }

    /// Sends `req` (URI already absolute, `http://peer/...`, or `https://peer/...` over the
    /// mTLS peer channel). HTTP/2 requests go over the HTTP/2 client, all others over
    /// HTTP/1.1.
    pub async fn send(
        &self,
        req: Request<ReplayBody>,
    ) -> Result<Response<ForwardBody>, ForwardError> {
        let peer = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let secure = req.uri().scheme() == Some(&Scheme::HTTPS);
        if req.version() == Version::HTTP_2 {
            return match self.h2.request(req).await {
                Ok(resp) => Ok(resp.map(ForwardBody::Hyper)),
                Err(source) => Err(ForwardError {
                    peer,
                    // A connect error is the only one that proves nothing was written.
                    // (Requests that never left a reused connection are resent by the
                    // client itself.)
                    sent: if source.is_connect() {
                        Sent::Nothing
                    } else {
                        Sent::Maybe
                    },
                    source: source.into(),
                }),
            };
        }
        let reach = if secure { Reach::Mtls } else { Reach::Plain };
        let (parts, body) = req.into_parts();
        self.send_h1(&peer, reach, client::Head::from(&parts), body)
            .await
    }

    /// Sends one attempt of a request whose head the caller keeps across attempts to
    /// `authority` (`host:port`), reached as `reach`: over HTTP/2 when `version` says so,
    /// else over HTTP/1.1, written from `head` where it is (no copy of it per attempt).
    /// `head` is written out (or, for HTTP/2, copied into hyper's request) before this
    /// returns: the future borrows neither it nor what it borrows.
    ///
    /// (Not an `async fn`, nor is `send_h1` under it: each layer would keep its arguments
    /// beside the future it awaits, in the future of every request in flight.)
    pub(crate) fn send_head<'a>(
        &'a self,
        authority: &'a str,
        reach: Reach,
        version: Version,
        head: client::Head<'_>,
        body: ReplayBody,
    ) -> impl Future<Output = Result<Response<ForwardBody>, ForwardError>> + Send + use<'a> {
        if version != Version::HTTP_2 {
            return Either::Left(self.send_h1(authority, reach, head, body));
        }
        // hyper's request, a copy of the head, made here. (Boxed: hyper's HTTP/2 request
        // is large, and HTTP/1 is the common case.)
        let req =
            attempt_request(authority, reach, version, head, body).map_err(|e| ForwardError {
                peer: authority.to_string(),
                sent: Sent::Nothing,
                source: e.into(),
            });
        Either::Right(Box::pin(async move { self.send(req?).await }))
    }

    fn send_h1<'a>(
        &'a self,
        authority: &'a str,
        reach: Reach,
        head: client::Head<'_>,
        body: ReplayBody,
    ) -> impl Future<Output = Result<Response<ForwardBody>, ForwardError>> + Send + use<'a> {
        let address = match authority.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => Cow::Borrowed(authority),
            _ => Cow::Owned(format!(
                "{authority}:{}",
                if reach == Reach::Mtls { 443 } else { 80 }
            )),
        };
        let sent = self.h1.send_head(address, reach, head, body);
        sent.map(move |result| match result {
            Ok(resp) => Ok(resp.map(ForwardBody::Engine)),
            Err(source) => Err(ForwardError {
                peer: authority.to_string(),
                sent: match source {
                    ClientError::Dial(_) => Sent::Nothing,
                    ClientError::Response(_) | ClientError::Switched => Sent::Answered,
                    _ => Sent::Maybe,
                },
                source: source.into(),
            }),
        })
    }
}

/// hyper's request for one attempt that hyper sends (HTTP/2, or an upgrade on a connection
/// of its own): a copy of `head`, its own headers (`head.extra`) set in it, to the URI
/// [`attempt_uri`] gives; a `CONNECT` keeps the client's target, in authority form. The one
/// place such a request is built, whichever path sends it.
pub(crate) fn attempt_request<B>(
    authority: &str,
    reach: Reach,
    version: Version,
    head: client::Head<'_>,
    body: B,
) -> Result<Request<B>, http::Error> {
    let uri = if *head.method == Method::CONNECT {
        head.uri.clone()
    } else {
        attempt_uri(authority, reach, head.uri)?
    };
    let mut req = Request::new(body);
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    let headers = req.headers_mut();
    *headers = head.headers.clone();
    for (name, value) in head.extra {
        headers.insert(name, value.clone());
    }
    Ok(req)
}

/// The absolute URI of an attempt (HTTP/2, or an upgrade): the scheme `reach` says,
/// `authority`, and the path the client sent, kept as it is (`*` of an `OPTIONS *` too,
/// which text would run into the port).
pub(crate) fn attempt_uri(authority: &str, reach: Reach, sent: &Uri) -> Result<Uri, http::Error> {
    let scheme = match reach {
        Reach::Plain => Scheme::HTTP,
        Reach::Mtls => Scheme::HTTPS,
    };
    let path = sent
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
}

fn h2_client(
    connector: Connector,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Client<Connector, ReplayBody> {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(idle_timeout)
        .http2_only(true)
        // Notice a dead peer on a quiet HTTP/2 connection.
        .http2_keep_alive_interval(Some(idle_timeout / 4))
        .http2_keep_alive_timeout(connect_timeout.max(Duration::from_secs(5)));
    b.build(connector)
}

#[cfg(test)]
mod tests;
