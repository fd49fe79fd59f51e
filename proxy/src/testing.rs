//! Test helpers: views, tiny apps, proxies and clients on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::server::RequestBody as Incoming;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use understudy_elector::{Leader, Role, View};

use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::server::{self, Limits};
use crate::settings::ProxySettings;
use crate::{BoxError, ProxyBody};

/// A leader entry.
pub fn leader(id: &str, address: Option<&str>, epoch: u64) -> Leader {
    Leader {
        identity: id.into(),
        address: address.map(String::from),
        peer_address: None,
        epoch,
    }
}

/// `me` leads with `epoch`, acting for a minute.
pub fn leading(me: &str, address: &str, epoch: u64) -> View {
    View {
        role: Role::Leader,
        leader: Some(leader(me, Some(address), epoch)),
        acting_until: Some(Instant::now() + Duration::from_secs(60)),
        synced: true,
        ..View::initial("test", me, Instant::now())
    }
}

/// `me` follows `id` at `address`.
pub fn following(me: &str, id: &str, address: &str, epoch: u64) -> View {
    View {
        role: Role::Follower,
        leader: Some(leader(id, Some(address), epoch)),
        synced: true,
        ..View::initial("test", me, Instant::now())
    }
}

/// `me` knows of no leader.
pub fn leaderless(me: &str) -> View {
    View {
        synced: true,
        ..View::initial("test", me, Instant::now())
    }
}

/// Proxy settings for tests: short hold timeout.
pub fn proxy_settings(upstream: SocketAddr) -> ProxySettings {
    ProxySettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.to_string().parse().unwrap(),
        advertise: "127.0.0.1:1".parse().unwrap(),
        hold_timeout: Duration::from_secs(3),
        max_held: 16,
        access_log: true,
        connect_timeout: Duration::from_millis(500),
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        max_header_bytes: 16 * 1024,
        max_headers: 100,
        max_connections: 64,
        max_requests: 64,
        replay_buffer: crate::retry::REPLAY_LIMIT,
        body_timeout: Duration::from_secs(30),
        peer: None,
        stream_grace: Duration::from_millis(200),
        tcp: None,
    }
}

/// Serves `handler` on a fresh 127.0.0.1 port until the test ends.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        max_header_bytes: 16 * 1024,
        ..Limits::default()
    };
    tokio::spawn(server::serve(
        listener,
        limits,
        CancellationToken::new(),
        TaskTracker::new(),
        handler,
    ));
    addr
}

/// A proxy with its view channel's sender.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub proxy: Proxy,
    pub views: watch::Sender<View>,
}

/// Starts a proxy in front of `upstream`, routing by `view` (sendable later).
pub async fn start_proxy(settings: ProxySettings, view: View) -> TestProxy {
    let (tx, rx) = watch::channel(view);
    let proxy = Proxy::new(settings, rx, Metrics::default());
    let p = proxy.clone();
    let addr = serve(move |req, client| {
        let p = p.clone();
        async move { p.handle(req, client).await }
    })
    .await;
    TestProxy {
        addr,
        proxy,
        views: tx,
    }
}

/// Counts requests; answers with its name, and echoes what it was told in `x-seen-*` headers.
#[derive(Clone)]
pub struct App {
    pub name: &'static str,
    pub hits: Arc<AtomicUsize>,
}

impl App {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// An app that answers `name`. Paths: `/` (its name; POST: `name:` + the body it read),
/// `/echo` (streams the request body back), `/stream` (its name, then never ends),
/// `/trailers` (its name, then trailer `grpc-status: 0`), and any `Upgrade` request
/// (101, then writes `name>` and echoes).
pub async fn app(name: &'static str) -> (SocketAddr, App) {
    let app = App {
        name,
        hits: Arc::new(AtomicUsize::new(0)),
    };
    let a = app.clone();
    let addr = serve(move |req: Request<Incoming>, _| {
        let a = a.clone();
        async move { a.answer(req).await }
    })
    .await;
    (addr, app)
}

impl App {
    async fn answer(&self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let mut seen = http::HeaderMap::new();
        // (The engine reads the routing headers off a head, apart from its map.)
        let claims = req.extensions().get::<crate::headers::Claims>();
        let lines = claims.into_iter().flat_map(|c| c.lines());
        let lines = req
            .headers()
            .iter()
            .map(|(k, v)| (k.clone(), v))
            .chain(lines);
        for (k, v) in lines {
            if let Ok(name) = http::HeaderName::from_bytes(format!("x-seen-{k}").as_bytes()) {
                seen.append(name, v.clone());
            }
        }
        let name = self.name;
        let mut resp = if req.headers().contains_key(http::header::UPGRADE) {
            let on = crate::upgrade::ClientUpgrade::take(req.extensions_mut());
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Some(Ok(mut io)) =
                    futures::future::OptionFuture::from(on.map(|on| on.upgraded())).await
                else {
                    return;
                };
                let _ = io.write_all(format!("{name}>").as_bytes()).await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let mut resp = Response::new(full(""));
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            resp.headers_mut()
                .insert("upgrade", req.headers()["upgrade"].clone());
            resp.headers_mut()
                .insert("connection", http::HeaderValue::from_static("upgrade"));
            resp
        } else {
            match req.uri().path() {
                "/echo" => Response::new(req.into_body().map_err(BoxError::from).boxed_unsync()),
                "/stream" => {
                    let first = futures::stream::once(async move {
                        Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(name)))
                    });
                    let never = futures::stream::pending();
                    Response::new(
                        http_body_util::StreamBody::new(futures::StreamExt::chain(first, never))
                            .boxed_unsync(),
                    )
                }
                "/trailers" => {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let frames = vec![
                        Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(name))),
                        Ok(http_body::Frame::trailers(trailers)),
                    ];
                    Response::new(
                        http_body_util::StreamBody::new(futures::stream::iter(frames))
                            .boxed_unsync(),
                    )
                }
                _ => {
                    let post = req.method() == http::Method::POST;
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let text = if post {
                        format!("{name}:{}", String::from_utf8_lossy(&body))
                    } else {
                        name.to_string()
                    };
                    Response::new(full(text))
                }
            }
        };
        resp.headers_mut().extend(seen);
        resp
    }
}

pub fn full(s: impl Into<Bytes>) -> ProxyBody {
    Full::new(s.into()).map_err(BoxError::from).boxed_unsync()
}

/// A plain HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The length of the body [`send_unread_body`] sends: more than the sockets' buffers hold,
/// so that its writes wait for the other end to read.
pub const UNREAD_BODY: usize = 32 << 20;

/// Writes `head` and then [`UNREAD_BODY`] bytes of body on `c` (which the other end leaves
/// unread), then reads what comes until the close: a client still sending a body after it
/// was answered. Panics if a write fails (a reset, say).
pub async fn send_unread_body(c: &mut tokio::net::TcpStream, head: &str) -> String {
    use tokio::io::AsyncWriteExt;
    c.write_all(head.as_bytes()).await.unwrap();
    let piece = vec![b'q'; 64 << 10];
    for i in 0..UNREAD_BODY / piece.len() {
        if let Err(e) = c.write_all(&piece).await {
            panic!("write {i} failed: {e}");
        }
    }
    until_closed(c).await
}

/// GET `path` from `addr`; returns status, headers and body text.
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, http::HeaderMap, String) {
    send(
        addr,
        Request::get(format!("http://{addr}{path}"))
            .body(Full::default())
            .unwrap(),
    )
    .await
}

/// Sends `req`; returns status, headers and body text.
pub async fn send(
    _addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> (StatusCode, http::HeaderMap, String) {
    let resp = client().request(req).await.expect("request");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Polls `cond` until it holds, yielding in between; panics after `within`.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A loopback listener whose accept queue is full, so that a further connect hangs (the
/// kernel drops the SYN) instead of being refused. Keep the returned streams open.
pub async fn unanswered() -> (
    std::net::SocketAddr,
    tokio::net::TcpListener,
    Vec<TcpStream>,
) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("connect: {e}"),
            Err(_) => return (addr, listener, fillers),
        }
    }
    panic!("accept queue never filled");
}

/// Reads from `s` until what came ends with `end` (an answer whose length the test knows);
/// what came. Panics if the server closes first.
pub async fn until_ends_with(s: &mut tokio::net::TcpStream, end: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(end.as_bytes()) {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until the server closes `s` (or resets it); what it sent. Panics if it stays open
/// 3 s.
pub async fn until_closed(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("connection left open");
    String::from_utf8_lossy(&out).into_owned()
}
