//! Accepting connections (TLS or plain, HTTP/1.1 or HTTP/2) and the per-request pipeline:
//! authenticate, count, inject faults, dispatch.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::admin;
use super::clients::Clients;
use super::faults::{Decision, Faults};
use super::routes::{self, Caller, Query};
use super::stats::Counter;
use super::status::{ApiError, Body};
use super::store::Store;

/// The real server's request body limit (3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Everything the request handlers share.
pub(crate) struct Shared {
    pub store: Arc<Store>,
    pub faults: Faults,
    pub stats: Counter,
    pub clients: Clients,
    pub bookmark_interval: Duration,
    pub server_url: String,
    pub ca_pem: Option<String>,
    /// Flips to `true` once, on shutdown, to release blackholed requests.
    pub shutdown: watch::Sender<bool>,
}

/// Returned by the service to make hyper drop the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by the emulator (outage or shutdown)")]
pub(crate) struct Reset;

/// Accept connections until the task is aborted; aborting drops `conns`, which aborts every
/// connection task with it.
pub(crate) async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, sh: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually EMFILE; back off instead of spinning.
                tracing::warn!(error = %e, "kube-emulator: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        conns.spawn(serve_connection(tcp, peer, tls.clone(), sh.clone()));
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    sh: Arc<Shared>,
) {
    let _ = tcp.set_nodelay(true);
    let svc = service_fn(move |req| handle(sh.clone(), peer.ip(), req));
    let builder = auto::Builder::new(TokioExecutor::new());
    let result = match tls {
        Some(acceptor) => {
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => builder.serve_connection(TokioIo::new(stream), svc).await,
                _ => return,
            }
        }
        None => builder.serve_connection(TokioIo::new(tcp), svc).await,
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, %peer, "kube-emulator: connection ended");
    }
}

fn bearer(req: &Request<Incoming>) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

/// Paths anonymous users may read (`system:public-info-viewer`).
fn public(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/version/"
    )
}

async fn handle(
    sh: Arc<Shared>,
    ip: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Reset> {
    let client = bearer(&req).and_then(|t| sh.clients.name_for(t));
    let path = req.uri().path().to_string();
    if path.starts_with("/emulator/") {
        return Ok(admin::handle(&sh, client.as_deref(), req).await);
    }
    let client = match client {
        Some(c) => c,
        None if public(&path) => "system:anonymous".to_string(),
        None => return Ok(ApiError::unauthorized().into_response()),
    };
    let query = Query::parse(req.uri().query());
    let info = routes::classify(req.method(), &path, &query);
    sh.stats
        .record(&client, info.verb, &info.resource, &info.name);
    tracing::debug!(%client, verb = info.verb, %path, "kube-emulator: request");
    let (parts, body) = req.into_parts();
    match sh.faults.decide(&client, ip, info.verb) {
        Decision::Reset => return Err(Reset),
        Decision::Blackhole => {
            // Read the request like a server that then hangs, and hang until shutdown.
            let _ = body.collect().await;
            let _ = sh.shutdown.subscribe().wait_for(|down| *down).await;
            return Err(Reset);
        }
        Decision::Proceed { delay, error } => {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            if let Some(e) = error {
                return Ok(e.into_response());
            }
        }
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let e = ApiError {
                code: 413,
                reason: "RequestEntityTooLarge",
                message: "limit is 3145728".into(),
                details: None,
                retry_after: None,
            };
            return Ok(e.into_response());
        }
    };
    let caller = Caller { client, ip };
    Ok(routes::dispatch(&sh, &parts, &body, info, caller)
        .await
        .unwrap_or_else(ApiError::into_response))
}
