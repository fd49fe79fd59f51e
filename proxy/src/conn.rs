//! The connection layer: everything about an accepted connection that is not its protocol.
//!
//! [`accept`] takes connections off a listener, bounds how many are open
//! ([`ConnectionLimit`]: one over the bound is answered 503 with `Retry-After` and closed),
//! sets `TCP_NODELAY`, records when bytes last moved either way ([`Activity`], which the
//! protocol servers turn into idle and silence timeouts; HTTP/2 keeps one of its own, of
//! its streams' frames), and on the mTLS peer port runs
//! the TLS handshake, which must finish within the handshake bound and present a
//! certificate the peer CA signed. What comes out is an [`Accepted`] stream with its client
//! address, handed to a protocol server: [`crate::server`] (understudy's own HTTP/1 engine,
//! [`crate::h1`], or hyper's HTTP/2 server for h2c), or TCP mode ([`crate::tcp`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::{CONNECTION_REFUSED, ConnectionLimit};
use crate::peer_tls::{Direction, PeerTls};
use crate::tls_or_plain::MaybeTls;

/// One accepted connection, ready for a protocol.
pub struct Accepted {
    /// The client's bytes (decrypted on the peer port).
    pub stream: Stream,
    /// Where it came from.
    pub client: SocketAddr,
    /// When bytes last moved on it (the TCP bytes, TLS included).
    pub activity: Activity,
}

/// Accepts from `listener` until `stop` is cancelled, and runs `serve` on each connection
/// admitted by `connections` (on `tracker`, holding its place until `serve` returns). With
/// `tls`, the handshake comes first and must finish within `handshake` (and before `stop`).
/// A connection over the bound is answered HTTP's 503 and closed.
pub async fn accept<S, Fut>(
    listener: TcpListener,
    connections: ConnectionLimit,
    tls: Option<PeerTls>,
    handshake: Duration,
    stop: CancellationToken,
    tracker: TaskTracker,
    serve: S,
) where
    S: Fn(Accepted) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let refusal = if tls.is_none() {
        CONNECTION_REFUSED
    } else {
        b""
    };
    accept_refusing(
        listener,
        connections,
        tls,
        handshake,
        refusal,
        stop,
        tracker,
        serve,
    )
    .await
}

/// [`accept`], answering a connection over the bound with `refusal` (nothing when empty:
/// TCP mode cannot know what its clients would understand; a TLS client understands
/// nothing before its handshake).
#[allow(clippy::too_many_arguments)]
pub async fn accept_refusing<S, Fut>(
    listener: TcpListener,
    connections: ConnectionLimit,
    tls: Option<PeerTls>,
    handshake: Duration,
    refusal: &'static [u8],
    stop: CancellationToken,
    tracker: TaskTracker,
    serve: S,
) where
    S: Fn(Accepted) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, client) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = connections.admit() else {
            // Best effort and without waiting: a fresh socket's send buffer is empty.
            if !refusal.is_empty() {
                let _ = stream.try_write(refusal);
            }
            tracing::debug!(client = %client, max = connections.max(), "connection limit reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (serve, tls, stop) = (serve.clone(), tls.clone(), stop.clone());
        tracker.spawn(async move {
            let _admitted = admitted;
            let watched = Watched::new(stream);
            let activity = watched.activity.clone();
            let stream = match tls {
                None => MaybeTls::Plain(watched),
                Some(tls) => {
                    // (Boxed: a TLS server's handshake is larger than what follows it, and
                    // every connection's task, TLS or not, would carry its room.)
                    let accept = Box::pin(tls.acceptor().accept(watched));
                    let handshake = tokio::time::timeout(handshake, accept);
                    let result = tokio::select! {
                        _ = stop.cancelled() => return,
                        result = handshake => result,
                    };
                    match result {
                        Ok(Ok(stream)) => MaybeTls::Tls(Box::new(stream)),
                        Ok(Err(e)) => {
                            tls.handshake_failed(Direction::Inbound);
                            tracing::info!(client = %client, error = %e, "peer TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            tls.handshake_failed(Direction::Inbound);
                            tracing::info!(client = %client, "peer TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            serve(Accepted {
                stream,
                client,
                activity,
            })
            .await;
        });
    }
}

/// When a connection last moved a byte, and whether the client ever sent one. (One
/// pointer: the HTTP/1 engine keeps one in every connection's state.)
#[derive(Clone, Debug)]
pub struct Activity(Arc<Moved>);

#[derive(Debug)]
struct Moved {
    origin: Instant,
    last_ms: AtomicU64,
    heard: AtomicBool,
}

impl Activity {
    /// Nothing moved yet: as if a byte had, now.
    pub(crate) fn new() -> Activity {
        Activity(Arc::new(Moved {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            heard: AtomicBool::new(false),
        }))
    }

    /// Records that something moved: a byte written to the client, or on HTTP/2 a
    /// stream's frame either way.
    pub(crate) fn touch(&self) {
        let ms = self.0.origin.elapsed().as_millis() as u64;
        self.0.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Records that the client sent a byte.
    pub(crate) fn touch_read(&self) {
        self.0.heard.store(true, Ordering::Relaxed);
        self.touch();
    }

    /// Whether the client has sent a byte yet.
    pub fn heard(&self) -> bool {
        self.0.heard.load(Ordering::Relaxed)
    }

    /// Resolves once nothing has moved for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let last =
                self.0.origin + Duration::from_millis(self.0.last_ms.load(Ordering::Relaxed));
            let at = last + idle;
            if Instant::now() >= at {
                return;
            }
            tokio::time::sleep_until(at).await;
        }
    }
}

/// A TCP stream that records its [`Activity`].
pub struct Watched {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.activity.touch_read();
        }
        Poll::Ready(Ok(()))
    }
}

/// An accepted plain connection, as [`accept`] hands it on: for tests of what is served
/// on one.
#[cfg(test)]
pub(crate) fn accepted(inner: TcpStream, client: SocketAddr) -> Accepted {
    let watched = Watched::new(inner);
    Accepted {
        activity: watched.activity.clone(),
        stream: MaybeTls::Plain(watched),
        client,
    }
}

impl Watched {
    /// `inner`, its activity recorded from now.
    fn new(inner: TcpStream) -> Watched {
        Watched {
            inner,
            activity: Activity::new(),
        }
    }

    /// The local address the client connected to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The socket itself, and its activity, for a relay that moves bytes without reading
    /// them (TCP mode's splice): it records the activity itself.
    pub(crate) fn parts(&self) -> (&TcpStream, &Activity) {
        (&self.inner, &self.activity)
    }

    fn wrote(&self, poll: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(1..)) = &poll {
            self.activity.touch();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(poll)
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

/// An accepted connection's bytes: plain on the data port, decrypted from TLS on the peer
/// port.
pub type Stream = MaybeTls<Watched, TlsStream<Watched>>;

/// The [`Activity`] of `stream`'s socket.
pub(crate) fn activity(stream: &Stream) -> &Activity {
    match stream {
        MaybeTls::Plain(watched) => &watched.activity,
        MaybeTls::Tls(tls) => &tls.get_ref().0.activity,
    }
}

/// A stream with bytes already read from it in front: what a protocol server read past the
/// point where it hands the connection on (to HTTP/2, or to an upgrade).
pub struct Prefixed<S> {
    prefix: bytes::Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, whose reads give `prefix` first.
    pub fn new(prefix: bytes::Bytes, inner: S) -> Prefixed<S> {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let first = self.prefix.split_to(n);
            buf.put_slice(&first);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
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

/// What an [`Observed`] stream tells of the bytes that pass.
pub(crate) trait Observe {
    /// `bytes` were read, in order.
    fn read(&mut self, bytes: &[u8]);
    /// `bytes` were written, in order.
    fn wrote(&mut self, bytes: &[u8]);
}

/// A stream that shows its bytes, as they pass, to an [`Observe`]r: TCP mode's byte
/// counts, HTTP/2's stream activity ([`crate::server`]).
pub(crate) struct Observed<S, O> {
    inner: S,
    observer: O,
}

impl<S, O> Observed<S, O> {
    /// `inner`, whose bytes `observer` sees from now on.
    pub(crate) fn new(inner: S, observer: O) -> Observed<S, O> {
        Observed { inner, observer }
    }
}

impl<S: AsyncRead + Unpin, O: Observe + Unpin> AsyncRead for Observed<S, O> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.observer.read(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin, O: Observe + Unpin> AsyncWrite for Observed<S, O> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.observer.wrote(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for buf in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(buf.len());
            this.observer.wrote(&buf[..take]);
            left -= take;
        }
        Poll::Ready(Ok(n))
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
mod tests {
    use std::future::poll_fn;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// What an [`Observed`] stream showed, in order.
    #[derive(Default)]
    struct Seen {
        read: Vec<u8>,
        wrote: Vec<u8>,
    }

    impl Observe for Seen {
        fn read(&mut self, bytes: &[u8]) {
            self.read.extend_from_slice(bytes);
        }

        fn wrote(&mut self, bytes: &[u8]) {
            self.wrote.extend_from_slice(bytes);
        }
    }

    /// A writer that takes at most `room` bytes a call, across slices as a socket's
    /// `writev` does, and keeps them.
    struct Narrow {
        room: usize,
        kept: Vec<u8>,
    }

    impl AsyncWrite for Narrow {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = all.len().min(self.room);
            self.kept.extend_from_slice(&all[..n]);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn an_observer_sees_what_a_partial_vectored_write_took_and_no_more() {
        let narrow = Narrow {
            room: 5,
            kept: Vec::new(),
        };
        let mut s = Observed::new(narrow, Seen::default());
        let slices = [
            io::IoSlice::new(b"ab"),
            io::IoSlice::new(b""),
            io::IoSlice::new(b"cdefg"),
            io::IoSlice::new(b"hi"),
        ];
        // The write ends in the middle of the third slice.
        let n = poll_fn(|cx| Pin::new(&mut s).poll_write_vectored(cx, &slices))
            .await
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(s.observer.wrote, b"abcde");
        // Plain writes are seen as taken too.
        s.write_all(b"fghi").await.unwrap();
        assert_eq!(s.observer.wrote, b"abcdefghi");
        assert_eq!(s.observer.wrote, s.inner.kept);
    }

    #[tokio::test]
    async fn an_observer_sees_only_the_bytes_a_read_added() {
        let mut s = Observed::new(&b"new bytes"[..], Seen::default());
        let mut space = [0u8; 32];
        let mut buf = ReadBuf::new(&mut space);
        buf.put_slice(b"old ");
        poll_fn(|cx| Pin::new(&mut s).poll_read(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(buf.filled(), b"old new bytes");
        assert_eq!(s.observer.read, b"new bytes");
        assert!(s.observer.wrote.is_empty());
    }
}
