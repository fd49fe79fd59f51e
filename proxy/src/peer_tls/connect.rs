//! The client side: a connector for hyper-util's pooled client that opens TCP with the
//! plain client's settings, then runs the TLS handshake with the current files.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tower_service::Service;

use super::{Alpn, PeerTls};
use crate::BoxError;

/// Connects to a peer's `https://host:port` over mTLS.
#[derive(Clone, Debug)]
pub struct PeerConnector {
    tcp: HttpConnector,
    tls: PeerTls,
    alpn: Alpn,
    timeout: Duration,
}

impl PeerConnector {
    /// TCP by `tcp` (its connect timeout, nodelay), then a handshake offering `alpn`, itself
    /// bounded by `timeout`.
    pub fn new(mut tcp: HttpConnector, tls: PeerTls, alpn: Alpn, timeout: Duration) -> Self {
        // The URIs are `https://`; the TLS is ours.
        tcp.enforce_http(false);
        PeerConnector {
            tcp,
            tls,
            alpn,
            timeout,
        }
    }
}

impl Service<Uri> for PeerConnector {
    type Response = TokioIo<PeerStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tcp = self.tcp.call(uri);
        let (tls, alpn, timeout) = (self.tls.clone(), self.alpn, self.timeout);
        Box::pin(async move {
            let stream = tcp.await?.into_inner();
            let tls = tokio::time::timeout(timeout, tls.connect(stream, alpn))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            Ok(TokioIo::new(PeerStream(tls)))
        })
    }
}

/// A TLS connection to a peer.
#[derive(Debug)]
pub struct PeerStream(pub TlsStream<TcpStream>);

impl Connection for PeerStream {
    fn connected(&self) -> Connected {
        let (tcp, session) = self.0.get_ref();
        let connected = tcp.connected();
        if session.alpn_protocol() == Some(b"h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
