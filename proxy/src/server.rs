//! Serving HTTP on the connections [`crate::conn`] accepts, shared by the proxy and the
//! admin server.
//!
//! HTTP/1.1 (keep-alive, upgrades) and HTTP/2 with prior knowledge on one port (hyper-util's
//! `auto` server). Limits: header read timeout and head size/count (HTTP/1), header list
//! size (HTTP/2), and an idle timeout after which a connection is shut down gracefully:
//! requests in flight finish, no new ones are read. A connection that sends nothing at all
//! is closed after the header read timeout too (hyper's own timer only starts once the
//! protocol is known, which takes a first byte). Open connections are bounded by the
//! connection layer.
//!
//! HTTP/1 requests with both `Content-Length` and `Transfer-Encoding` are refused with 400
//! and the connection closed, never forwarded ([`crate::framing`]).
//!
//! [`serve_tls`] is the same behind a TLS handshake that requires a client certificate (the
//! mTLS peer port); the handshake must finish within the header read timeout.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ProxyBody;
use crate::conn::{self, Accepted};
use crate::framing::Framing;
use crate::limits::ConnectionLimit;
use crate::peer_tls::PeerTls;

/// Connection limits and timeouts.
#[derive(Clone, Debug)]
pub struct Limits {
    /// HTTP/1 header read timeout (also bounds how long an idle keep-alive connection waits
    /// for its next request, and how long a new connection may send nothing at all).
    pub header_read_timeout: Duration,
    /// Shut a connection down after this long without a byte either way.
    pub idle_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// Most headers per request.
    pub max_headers: usize,
    /// Most connections open at once.
    pub connections: ConnectionLimit,
    /// Counts requests refused for carrying both `Content-Length` and `Transfer-Encoding`.
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
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
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
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
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
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let http = Http {
        builder: Arc::new(builder),
        header_read_timeout: limits.header_read_timeout,
        idle_timeout: limits.idle_timeout,
        smuggling: limits.smuggling.clone(),
        stop: stop.clone(),
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
        move |accepted| {
            let (http, handler) = (http.clone(), handler.clone());
            async move { http.serve(accepted, handler).await }
        },
    )
    .await
}

/// hyper's HTTP server, as each connection runs it.
#[derive(Clone)]
struct Http {
    builder: Arc<auto::Builder<TokioExecutor>>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    smuggling: IntCounter,
    stop: CancellationToken,
}

impl Http {
    /// Serves HTTP on `accepted` (behind the framing guard) until it closes, idles out, or
    /// `stop` is cancelled.
    async fn serve<F, Fut>(self, accepted: Accepted, handler: F)
    where
        F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
    {
        let Accepted {
            stream,
            client,
            activity,
        } = accepted;
        let io = Guarded {
            inner: stream,
            guard: Guard {
                framing: Framing::new(),
                client,
                refused: self.smuggling.clone(),
            },
        };
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(req, client).await) }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let silent = tokio::time::sleep(self.header_read_timeout);
        tokio::pin!(silent);
        let mut listening = true;
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(client = %client, error = %e, "connection ended with error");
                    }
                    return;
                }
                _ = self.stop.cancelled(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = activity.idle_for(self.idle_timeout), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = &mut silent, if listening && !closing => {
                    listening = false;
                    if !activity.heard() {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// What replaces a refused head from its offending byte on.
const REFUSE: &[u8] = b"\0\r\n\r\n";

/// A client stream whose bytes pass through a [`Framing`] guard as they are read.
struct Guarded<I> {
    inner: I,
    guard: Guard,
}

/// The framing guard of one connection.
///
/// A request head with both `Content-Length` and `Transfer-Encoding`, or with a line ended by
/// a bare LF, is cut at the colon after the second name (or at the LF) and ended there with a
/// NUL and an empty line ([`REFUSE`]) before hyper reads it: hyper then refuses the head with
/// its own 400 and closes the connection, after answering any request before it. No request
/// is made of it, so nothing is forwarded; everything else is passed through untouched.
struct Guard {
    framing: Framing,
    client: SocketAddr,
    refused: IntCounter,
}

impl Guard {
    /// Checks what was just read into `buf` after its first `before` bytes.
    fn check(&mut self, buf: &mut ReadBuf<'_>, before: usize) {
        if let Some(at) = self.framing.scan(&buf.filled()[before..]) {
            // From the offending byte on, the client's bytes are dropped (the connection ends
            // with the 400) and replaced by a NUL and an empty line: given the end of a head,
            // the parser refuses the NUL at once, where an unfinished line would have it wait.
            buf.set_filled(before + at);
            let room = buf.remaining().min(REFUSE.len());
            buf.initialize_unfilled_to(room)
                .copy_from_slice(&REFUSE[..room]);
            buf.advance(room);
            self.refused.inc();
            tracing::debug!(
                client = %self.client,
                "request head with both Content-Length and Transfer-Encoding, or a bare LF, refused (400)"
            );
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.guard.check(buf, before);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
