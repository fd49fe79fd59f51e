//! The harness's one HTTP client setup, used by the kubelet's probes, the load generator,
//! status queries and the end-to-end tests. Plain HTTP/1.1 to addresses of this run only.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// An HTTP/1.1 client. Without `keep_alive`, every request opens (and closes) a connection.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client; `keep_alive` pools connections, otherwise each request has its own.
pub fn client(keep_alive: bool, connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    let mut builder = Client::builder(TokioExecutor::new());
    if !keep_alive {
        builder.pool_max_idle_per_host(0);
    }
    builder.build(connector)
}

/// Why a GET got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetError {
    /// No connection was made: nothing was sent (refused, unreachable, connect timeout).
    Connect(String),
    /// Sent, but no complete answer (reset, closed early).
    Io(String),
    /// No answer in time.
    Timeout,
}

impl std::fmt::Display for GetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetError::Connect(e) => write!(f, "connect: {e}"),
            GetError::Io(e) => write!(f, "{e}"),
            GetError::Timeout => f.write_str("timed out"),
        }
    }
}

/// `GET http://addr/path`, with `Connection: close` unless `keep_alive`; the status and body.
pub async fn get(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    keep_alive: bool,
    timeout: Duration,
) -> Result<(StatusCode, String), GetError> {
    let mut req = Request::get(format!("http://{addr}{path}"));
    if !keep_alive {
        req = req.header(http::header::CONNECTION, "close");
    }
    let req = req.body(Full::default()).expect("a valid request");
    send(client, req, timeout).await
}

/// Sends `req`; the status and body (as text).
pub async fn send(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, String), GetError> {
    let call = async {
        let resp = client.request(req).await.map_err(|e| {
            if e.is_connect() {
                GetError::Connect(source_text(&e))
            } else {
                GetError::Io(source_text(&e))
            }
        })?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| GetError::Io(e.to_string()))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| GetError::Timeout)?
}

/// The innermost cause: hyper's top-level messages ("client error (Connect)") say little.
fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text = s.to_string();
        cur = s.source();
    }
    text
}
