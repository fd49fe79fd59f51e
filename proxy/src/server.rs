//! Serving HTTP on the connections [`crate::conn`] accepts, shared by the proxy and the
//! admin server.
//!
//! Each connection's first bytes tell its protocol: the HTTP/2 connection preface (prior
//! knowledge, h2c) goes to hyper's HTTP/2 server; anything else to understudy's own HTTP/1
//! engine ([`crate::h1::server`]: keep-alive, pipelining, upgrades, every framing ambiguity
//! refused with 400 before anything is handed on). Handlers see one request type either way
//! ([`RequestBody`]). Limits: header read timeout and head size/count (HTTP/1), header list
//! size (HTTP/2), and an idle timeout (HTTP/2, where idle means that no stream's frame
//! moved, PINGs aside: shut down gracefully after it, requests in flight finish unless they
//! wait only on a client that reads nothing; HTTP/1: a keep-alive connection waits at most
//! that long for its next request). A connection that sends nothing at all is closed after
//! the header read timeout. Open connections are bounded by the connection layer.
//!
//! [`serve_tls`] is the same behind a TLS handshake that requires a client certificate (the
//! mTLS peer port); the handshake must finish within the header read timeout.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::IntCounter;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ProxyBody;
use crate::conn::{self, Accepted, Prefixed};
use crate::h1::{codec, server as h1};
use crate::limits::ConnectionLimit;
use crate::peer_tls::PeerTls;

mod progress;

/// Connection limits and timeouts.
#[derive(Clone, Debug)]
pub struct Limits {
    /// HTTP/1 header read timeout (also bounds how long an idle keep-alive connection waits
    /// for its next request, and how long a new connection may send nothing at all).
    pub header_read_timeout: Duration,
    /// Shut a connection down after this long without traffic: a byte either way on
    /// HTTP/1, a stream's frame either way on HTTP/2 (PINGs and other upkeep aside).
    pub idle_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// Most headers per request.
    pub max_headers: usize,
    /// Most connections open at once.
    pub connections: ConnectionLimit,
    /// Counts requests refused for carrying both `Content-Length` and `Transfer-Encoding`,
    /// or a line ended by a bare LF.
    pub smuggling: IntCounter,
}

/// Default bound on open connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            connections: ConnectionLimit::unmetered(DEFAULT_MAX_CONNECTIONS),
            smuggling: IntCounter::new("smuggling", "unregistered").expect("valid name"),
        }
    }
}

/// Serves `listener` until `stop` is cancelled; connection tasks are spawned on `tracker`,
/// and shut down gracefully once `stop` is cancelled.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    limits: Limits,
    stop: CancellationToken,
    tracker: TaskTracker,
    handler: F,
) where
    F: Fn(Request<RequestBody>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    accept(listener, limits, None, stop, tracker, handler).await
}

/// [`serve`] over TLS with `tls`'s current files at each new connection: a client without a
/// certificate that chains to its CA is refused in the handshake (and counted), before any
/// request is read.
pub async fn serve_tls<F, Fut>(
    listener: TcpListener,
    limits: Limits,
    tls: PeerTls,
    stop: CancellationToken,
    tracker: TaskTracker,
    handler: F,
) where
    F: Fn(Request<RequestBody>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    accept(listener, limits, Some(tls), stop, tracker, handler).await
}

async fn accept<F, Fut>(
    listener: TcpListener,
    limits: Limits,
    tls: Option<PeerTls>,
    stop: CancellationToken,
    tracker: TaskTracker,
    handler: F,
) where
    F: Fn(Request<RequestBody>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let http = Http {
        h2: Arc::new(h2),
        h1: Arc::new(h1_settings(&limits, stop.clone())),
    };
    // The TLS handshake is bounded like the first request head.
    let handshake = limits.header_read_timeout;
    conn::accept(
        listener,
        limits.connections,
        tls,
        handshake,
        stop,
        tracker,
        move |accepted| http.clone().serve(accepted, handler.clone()),
    )
    .await
}

/// The HTTP/1 engine's settings under `limits`.
fn h1_settings(limits: &Limits, stop: CancellationToken) -> h1::Settings {
    h1::Settings {
        limits: codec::Limits {
            max_head_bytes: limits.max_header_bytes,
            max_headers: limits.max_headers,
            // Long targets are the proxy's to answer (414, counted).
            max_target_bytes: limits.max_header_bytes,
        },
        header_read_timeout: limits.header_read_timeout,
        idle_timeout: limits.idle_timeout,
        smuggling: limits.smuggling.clone(),
        stop,
    }
}

/// Serves HTTP/1 on one connection whose first bytes were already read into `buf`, under
/// `limits`, until it closes or `stop` is cancelled: how TCP mode takes the failsafe's
/// messages from other sidecars on its data port ([`crate::tcp`]).
pub async fn serve_http1<F, Fut>(
    stream: conn::Stream,
    buf: BytesMut,
    client: SocketAddr,
    limits: &Limits,
    stop: CancellationToken,
    mut handler: F,
) where
    F: FnMut(Request<RequestBody>) -> Fut,
    Fut: Future<Output = Response<ProxyBody>>,
{
    let settings = h1_settings(limits, stop);
    let first_head = Instant::now() + limits.header_read_timeout;
    let serve_one = |req: Request<h1::RequestBody>| handler(req.map(RequestBody::Engine));
    h1::serve(stream, buf, first_head, client, &settings, serve_one).await;
}

/// What a request's body is: read by the HTTP/1 engine, or by hyper's HTTP/2 server.
pub type RequestBody = crate::body::EngineOrHyper<h1::RequestBody>;

/// The HTTP/2 connection preface, which a prior-knowledge client opens with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol servers, as each connection runs them.
#[derive(Clone)]
struct Http {
    h2: Arc<hyper::server::conn::http2::Builder<TokioExecutor>>,
    h1: Arc<h1::Settings>,
}

impl Http {
    /// Serves `accepted` with the protocol its first bytes ask for, until it closes, idles
    /// out, or the server stops. (Not an `async fn`, which would keep `accepted` whole beside
    /// its parts for the connection's life.)
    fn serve<F, Fut>(self, accepted: Accepted, handler: F) -> impl Future<Output = ()>
    where
        F: Fn(Request<RequestBody>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
    {
        // (HTTP/2 measures its own activity; the HTTP/1 engine finds it in the stream.)
        let Accepted {
            mut stream,
            client,
            activity: _,
        } = accepted;
        async move {
            let first_head = Instant::now() + self.h1.header_read_timeout;
            let mut buf = BytesMut::new();
            // Until the first bytes rule HTTP/2 in or out.
            while buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&buf) {
                let read = tokio::select! {
                    _ = self.h1.stop.cancelled() => return,
                    _ = tokio::time::sleep_until(first_head) => {
                        tracing::debug!(client = %client, "nothing received in time");
                        return;
                    }
                    read = std::future::poll_fn(|cx| {
                        let stream = std::pin::Pin::new(&mut stream);
                        crate::h1::read::poll_head(stream, cx, &mut buf, 4096)
                    }) => read,
                };
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
            if buf.starts_with(H2_PREFACE) {
                let io = Prefixed::new(buf.freeze(), stream);
                // Boxed: hyper's HTTP/2 connection is larger than the HTTP/1 engine's, and a
                // connection's task is as large as the largest thing it may await.
                return Box::pin(self.serve_h2(io, client, handler)).await;
            }
            let serve_one =
                |req: Request<h1::RequestBody>| handler(req.map(RequestBody::Engine), client);
            h1::serve(stream, buf, first_head, client, &self.h1, serve_one).await;
        }
    }

    /// hyper's HTTP/2 server on `io`, shut down gracefully once idle (no stream's frame moved
    /// for the idle timeout: PINGs do not count, see [`progress`]) or stopped, and closed
    /// if, shutting down, it sends no stream's frame for the idle timeout again while no
    /// stream waits on its app: then every stream left waits on the client, which reads none
    /// of its response (nginx's `send_timeout`, as the HTTP/1 engine has it). A stream whose
    /// app is slow or quiet (a long poll, a gRPC stream between messages) keeps the
    /// connection.
    async fn serve_h2<F, Fut>(&self, io: Prefixed<conn::Stream>, client: SocketAddr, handler: F)
    where
        F: Fn(Request<RequestBody>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
    {
        let on_app = Arc::new(AtomicUsize::new(0));
        let counted = on_app.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let handler = handler.clone();
            let on_app = counted.clone();
            async move {
                let waiting = OnApp::waiting(on_app);
                let resp = handler(req.map(RequestBody::Hyper), client).await;
                Ok::<_, Infallible>(resp.map(|body| waiting.body(body)))
            }
        });
        let (moved, sent) = (conn::Activity::new(), conn::Activity::new());
        let io = progress::progress(io, moved.clone(), sent.clone());
        let conn = self.h2.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(client = %client, error = %e, "connection ended with error");
                    }
                    return;
                }
                _ = self.h1.stop.cancelled(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = moved.idle_for(self.h1.idle_timeout), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = left_to_the_client(&sent, self.h1.idle_timeout, &on_app), if closing => {
                    tracing::debug!(
                        client = %client,
                        "closed: the client read nothing for the idle timeout while shutting down"
                    );
                    return;
                }
            }
        }
    }
}

/// Resolves, `idle` at the earliest, once no stream's frame has been sent for `idle` (`sent`)
/// while no stream waits on its app (`on_app`), looking again each `idle` while one does.
/// (Not at once: the shutdown's `GOAWAY` has its time to go, and a client that reads it
/// closes first.) What the client sends does not count: after the `GOAWAY` it opens no
/// stream, and frames for streams that do not exist would otherwise hold the connection.
async fn left_to_the_client(sent: &conn::Activity, idle: Duration, on_app: &AtomicUsize) {
    loop {
        tokio::time::sleep(idle).await;
        sent.idle_for(idle).await;
        if on_app.load(Ordering::Relaxed) == 0 {
            return;
        }
    }
}

/// An HTTP/2 response body, or the answer it is still to be, counted in its connection's
/// streams that wait on their app: from the request's arrival to its response head, and
/// each time the body has nothing to give (hyper polls it for more once the client's window
/// lets it send more, so one not polled is waiting on the client).
struct OnApp {
    body: Option<ProxyBody>,
    count: Arc<AtomicUsize>,
    /// Counted now.
    waits: bool,
}

impl OnApp {
    /// A request just arrived: counted until its body first gives something.
    fn waiting(count: Arc<AtomicUsize>) -> OnApp {
        count.fetch_add(1, Ordering::Relaxed);
        OnApp {
            body: None,
            count,
            waits: true,
        }
    }

    /// The response's body arrived: counted, as the head was, until its first frame.
    fn body(mut self, body: ProxyBody) -> OnApp {
        self.body = Some(body);
        self
    }

    fn set(&mut self, waits: bool) {
        if waits != self.waits {
            self.waits = waits;
            match waits {
                true => self.count.fetch_add(1, Ordering::Relaxed),
                false => self.count.fetch_sub(1, Ordering::Relaxed),
            };
        }
    }
}

impl Drop for OnApp {
    fn drop(&mut self) {
        self.set(false);
    }
}

impl http_body::Body for OnApp {
    type Data = bytes::Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let Some(body) = this.body.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let polled = std::pin::Pin::new(body).poll_frame(cx);
        this.set(polled.is_pending());
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), |b| b.size_hint())
    }
}

#[cfg(test)]
mod tests;
