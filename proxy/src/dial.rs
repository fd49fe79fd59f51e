//! The one way out: every connection the sidecar opens to its app or to a peer sidecar.
//!
//! TCP with the connect timeout and `TCP_NODELAY`, then, for a peer reached over the mTLS
//! peer channel ([`Reach::Mtls`]), the TLS handshake, bounded by the same timeout and counted
//! when it fails. The engine's HTTP/1.1 client ([`crate::h1::client`]), upgrades and the
//! failsafe's messages call [`Dialer::dial`]; hyper-util's HTTP/2 client dials through it as
//! its connector ([`Connector`]: `http://` in the clear, `https://` over mTLS). What "a peer" is and how it is reached is decided once, where
//! a request is routed (`Target::reach` in the proxy).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use http::uri::Scheme;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tower_service::Service;

use crate::BoxError;
use crate::peer_tls::{Alpn, Direction, PeerTls};
use crate::tls_or_plain::MaybeTls;

/// How an address is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reach {
    /// Plain TCP: the local app, or a peer's data port without the peer channel.
    Plain,
    /// TLS with this sidecar's certificate, to a peer's `--peer-listen` port.
    Mtls,
}

/// A connection that could not be opened. Nothing was sent on it.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// TCP connect failed (refused, unreachable, a name that does not resolve).
    #[error("connect to {address}: {source}")]
    Connect {
        /// Where.
        address: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// TCP connect or the TLS handshake took longer than the connect timeout.
    #[error("connect to {address}: timed out after {after:?}")]
    TimedOut {
        /// Where.
        address: String,
        /// The connect timeout.
        after: Duration,
    },
    /// The TLS handshake failed (certificate refused, not TLS, closed).
    #[error("TLS handshake with {address}: {source}")]
    Handshake {
        /// Where.
        address: String,
        /// The TLS layer's error.
        source: io::Error,
    },
    /// A peer is to be reached over mTLS, but the peer channel is off.
    #[error("{address} is to be reached over mTLS, but --peer-listen is off")]
    NoPeerTls {
        /// Where.
        address: String,
    },
}

/// Opens connections; cheap to clone.
#[derive(Clone, Debug)]
pub struct Dialer {
    timeout: Duration,
    tls: Option<PeerTls>,
    source: Option<IpAddr>,
}

impl Dialer {
    /// Connects within `timeout` (the handshake included), over mTLS with `tls` when asked.
    pub fn new(timeout: Duration, tls: Option<PeerTls>) -> Dialer {
        Dialer {
            timeout,
            tls,
            source: None,
        }
    }

    /// Opens connections to peers ([`Dialer::dial_peer`]) from `source`, this pod's
    /// advertised address, which is how a peer in TCP mode tells a sidecar from a client
    /// ([`crate::tcp`]). `None`, or an address this host does not have, lets the kernel
    /// choose (a pod's only address anyway).
    pub fn from_source(mut self, source: Option<IpAddr>) -> Dialer {
        self.source = source;
        self
    }

    /// Whether peers can be reached over mTLS (the peer channel is on).
    pub fn has_peer_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Counts a handshake the peer refused after it seemed done (TLS 1.3 tells a client
    /// its certificate was refused at its first read).
    pub fn handshake_refused(&self) {
        if let Some(tls) = &self.tls {
            tls.handshake_failed(Direction::Outbound);
        }
    }

    /// The connect timeout (the TLS handshake included).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A connection to `address` (`host:port`), reached as `reach`, offering `alpn` in the
    /// TLS handshake.
    pub async fn dial(&self, address: &str, reach: Reach, alpn: Alpn) -> Result<Conn, DialError> {
        self.open(address, reach, alpn, None).await
    }

    /// [`Dialer::dial`] to another sidecar: from this pod's advertised address, when set
    /// ([`Dialer::from_source`]).
    pub async fn dial_peer(
        &self,
        address: &str,
        reach: Reach,
        alpn: Alpn,
    ) -> Result<Conn, DialError> {
        self.open(address, reach, alpn, self.source).await
    }

    async fn open(
        &self,
        address: &str,
        reach: Reach,
        alpn: Alpn,
        source: Option<IpAddr>,
    ) -> Result<Conn, DialError> {
        let timed_out = || DialError::TimedOut {
            address: address.to_string(),
            after: self.timeout,
        };
        let tls = match reach {
            Reach::Plain => None,
            Reach::Mtls => Some(self.tls.as_ref().ok_or_else(|| DialError::NoPeerTls {
                address: address.to_string(),
            })?),
        };
        let started = tokio::time::Instant::now();
        let stream = tokio::time::timeout(self.timeout, connect(address, source))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| DialError::Connect {
                address: address.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(MaybeTls::Plain(stream));
        };
        let left = self.timeout.saturating_sub(started.elapsed());
        // (Boxed: a TLS client's handshake is about a KiB, which every dial in the clear
        // would otherwise carry too; a burst of new connections holds one each.)
        match tokio::time::timeout(left, Box::pin(tls.connect(stream, alpn))).await {
            Ok(Ok(stream)) => Ok(MaybeTls::Tls(Box::new(stream))),
            Ok(Err(source)) => Err(DialError::Handshake {
                address: address.to_string(),
                source,
            }),
            Err(_) => {
                tls.handshake_failed(Direction::Outbound);
                Err(timed_out())
            }
        }
    }
}

/// TCP to `address`, from `source` when given and usable here.
async fn connect(address: &str, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(address).await;
    };
    let mut last = None;
    for to in tokio::net::lookup_host(address).await? {
        let socket = if to.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if source.is_ipv4() == to.is_ipv4()
            && let Err(e) = socket.bind(SocketAddr::new(source, 0))
        {
            // Not this host's address (a node's, say): the kernel chooses, and a peer in TCP
            // mode will not recognise this sidecar.
            tracing::warn!(%source, error = %e, "connecting to a peer from the advertised address failed");
        }
        match socket.connect(to).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
}

/// An open connection: plain TCP, or mTLS over it to a peer.
pub type Conn = MaybeTls<TcpStream, TlsStream<TcpStream>>;

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            MaybeTls::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            MaybeTls::Plain(_) | MaybeTls::Tls(_) => Connected::new(),
        }
    }
}

/// The [`Dialer`] as hyper-util's connector: `http://host:port` in the clear,
/// `https://host:port` over the mTLS peer channel, offering `alpn`.
#[derive(Clone, Debug)]
pub struct Connector {
    dialer: Dialer,
    alpn: Alpn,
}

impl Connector {
    /// Dials with `dialer`, offering `alpn` to TLS peers.
    pub fn new(dialer: Dialer, alpn: Alpn) -> Connector {
        Connector { dialer, alpn }
    }
}

impl Service<Uri> for Connector {
    type Response = TokioIo<Conn>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (dialer, alpn) = (self.dialer.clone(), self.alpn);
        Box::pin(async move {
            let reach = if uri.scheme() == Some(&Scheme::HTTPS) {
                Reach::Mtls
            } else {
                Reach::Plain
            };
            let host = uri.host().unwrap_or_default();
            let port = uri.port_u16().unwrap_or(match reach {
                Reach::Plain => 80,
                Reach::Mtls => 443,
            });
            // (An IPv6 host keeps its brackets in `host()`.)
            let conn = dialer.dial(&format!("{host}:{port}"), reach, alpn).await?;
            Ok(TokioIo::new(conn))
        })
    }
}

#[cfg(test)]
mod tests;
