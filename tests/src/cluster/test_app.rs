//! Apps for tests that run sidecars on loopback: in-process HTTP/1.1 and h2c servers that
//! name themselves, echo bodies, streams, gRPC-style trailers and WebSockets, and can be made
//! to fail their health check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The body of the apps' answers.
pub type AppBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// An in-process app on 127.0.0.1 (HTTP/1.1 and h2c) named `name`, which it puts in an
/// `x-app` header on every answer. It answers:
/// - a WebSocket handshake: a text message `name`, then echoes every message;
/// - `content-type: application/grpc`: echoes the body as it streams, then trailers
///   `grpc-status: 0` (a gRPC-style unary or bidirectional call);
/// - `/echo`: streams the request body back;
/// - anything else: `name` (POST: `name:` + the body).
pub async fn app(name: &'static str) -> SocketAddr {
    app_with_health(name).await.0
}

/// [`app`], whose `/healthz` answers 503 while the returned flag is false.
pub async fn app_with_health(name: &'static str) -> (SocketAddr, Arc<AtomicBool>) {
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let flag = flag.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let sick = req.uri().path() == "/healthz" && !flag.load(Ordering::SeqCst);
                    async move {
                        if sick {
                            let body = Full::from("sick").map_err(|e| match e {}).boxed_unsync();
                            let mut resp = Response::new(body);
                            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                            return Ok(resp);
                        }
                        answer(name, req).await
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, healthy)
}

async fn answer(
    name: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<AppBody>, hyper::Error> {
    let mut resp = if let Some(key) = req.headers().get("sec-websocket-key") {
        let accept = derive_accept_key(key.as_bytes());
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(websocket_echo(name, on));
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "upgrade")
            .header("sec-websocket-accept", accept)
            .body(UnsyncBoxBody::default())
            .unwrap()
    } else if req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
    {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let body = req
            .into_body()
            .with_trailers(async move { Some(Ok(trailers)) });
        Response::builder()
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(body.boxed_unsync())
            .unwrap()
    } else if req.uri().path() == "/echo" {
        Response::new(req.into_body().boxed_unsync())
    } else {
        let post = req.method() == http::Method::POST;
        let epoch = req.headers().get("x-understudy-epoch").cloned();
        let body = req.into_body().collect().await?.to_bytes();
        let text = if post {
            format!("{name}:{}", String::from_utf8_lossy(&body))
        } else {
            name.to_string()
        };
        let mut resp = Response::new(Full::from(text).map_err(|e| match e {}).boxed_unsync());
        if let Some(e) = epoch {
            resp.headers_mut().insert("x-app-saw-epoch", e);
        }
        resp
    };
    resp.headers_mut()
        .insert("x-app", HeaderValue::from_static(name));
    Ok(resp)
}

/// Greets with `name`, then echoes text and binary messages until the client closes.
async fn websocket_echo(name: &'static str, on: hyper::upgrade::OnUpgrade) {
    let Ok(upgraded) = on.await else { return };
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    if ws.send(Message::text(name)).await.is_err() {
        return;
    }
    // Ends when the client closes (tungstenite answers the close frame) or goes away.
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}
