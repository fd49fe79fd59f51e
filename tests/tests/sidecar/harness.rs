//! A loopback cluster for sidecar tests: the emulator, tiny apps that answer their own name,
//! and real `understudy` processes on their own 127.0.0.x addresses, each with its own
//! kubeconfig (the product's only way to the API).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use understudy_tests::emulator::{Emulator, EmulatorOptions};

/// Election timings for tests: takeover after a SIGKILL within ~3s.
pub const TIMINGS: [&str; 6] = [
    "--lease-duration",
    "3s",
    "--renew-deadline",
    "2s",
    "--retry-period",
    "500ms",
];
/// Slow timings: a Lease that is not released takes 8s or more to change hands.
pub const SLOW: [&str; 6] = [
    "--lease-duration",
    "10s",
    "--renew-deadline",
    "6s",
    "--retry-period",
    "2s",
];

/// The `understudy` binary (`UNDERSTUDY_BIN`, else built once per test process); the same
/// lookup the local cluster harness uses.
pub fn binary() -> PathBuf {
    understudy_tests::cluster::sidecar::binary(true).expect("the understudy binary")
}

/// A free port on `ip` (bound, then released for the process to take).
pub async fn free_port(ip: Ipv4Addr) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).await.expect("bind loopback");
    l.local_addr().unwrap()
}

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

/// One `understudy` process.
pub struct Sidecar {
    pub name: String,
    pub admin: SocketAddr,
    pub listen: Option<SocketAddr>,
    pub child: Option<Child>,
}

impl Sidecar {
    /// Sends SIGTERM (via kill(1); the product handles it).
    pub fn sigterm(&self) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL, and reap.
    pub async fn sigkill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.unwrap();
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let status = tokio::time::timeout(within, child.wait())
            .await
            .expect("exit in time")
            .unwrap();
        status.code()
    }

    /// `GET path` on the admin server.
    pub async fn admin_get(&self, path: &str) -> Option<(StatusCode, String)> {
        get(self.admin, path, Duration::from_secs(2)).await.ok()
    }

    /// The leader this sidecar names on `GET /`.
    pub async fn leader_name(&self) -> Option<String> {
        let (_, body) = self.admin_get("/").await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["name"].as_str().map(str::to_string)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// The emulator, apps and sidecars of one test.
pub struct Cluster {
    pub emu: Emulator,
    pub dir: tempfile::TempDir,
    pub election: String,
    pub timings: [&'static str; 6],
}

impl Cluster {
    pub async fn new(election: &str) -> Cluster {
        let emu = Emulator::start(EmulatorOptions::default())
            .await
            .expect("emulator starts");
        Cluster {
            emu,
            dir: tempfile::tempdir().unwrap(),
            election: election.to_string(),
            timings: TIMINGS,
        }
    }

    /// Starts sidecar `name` on 127.0.0.`host`, in front of `upstream` when given (proxy on),
    /// with `extra` flags.
    pub async fn sidecar(
        &self,
        name: &str,
        host: u8,
        upstream: Option<SocketAddr>,
        extra: &[&str],
    ) -> Sidecar {
        let ip = Ipv4Addr::new(127, 0, 0, host);
        // Both ports are chosen while both are held, so they cannot come out the same.
        let admin_port = TcpListener::bind((ip, 0)).await.expect("bind loopback");
        let admin = admin_port.local_addr().unwrap();
        let kubeconfig = self.dir.path().join(format!("{name}.kubeconfig"));
        self.emu.write_kubeconfig(name, &kubeconfig).unwrap();
        let mut cmd = Command::new(binary());
        cmd.env_clear()
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info,understudy::access=info")
            .args([
                "--election",
                &self.election,
                "--id",
                name,
                "--http",
                &admin.to_string(),
            ])
            .args(self.timings)
            .args(["--drain", "1s"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut listen = None;
        if let Some(up) = upstream {
            let addr = free_port(ip).await;
            cmd.args([
                "--listen",
                &addr.to_string(),
                "--upstream",
                &up.to_string(),
                "--access-log",
            ]);
            listen = Some(addr);
        }
        drop(admin_port);
        let child = cmd.spawn().expect("start understudy");
        let sidecar = Sidecar {
            name: name.to_string(),
            admin,
            listen,
            child: Some(child),
        };
        // Up once the admin server answers and the Lease was read.
        eventually(Duration::from_secs(15), || async {
            matches!(sidecar.admin_get("/status").await, Some((StatusCode::OK, body)) if body.contains("\"synced\":true"))
        })
        .await;
        sidecar
    }
}

/// Three proxying sidecars on 127.0.0.{base..base+3}, each with an app named after it.
pub async fn three(cluster: &Cluster, base: u8, extra: &[&str]) -> Vec<Sidecar> {
    sidecars(cluster, &["pod-a", "pod-b", "pod-c"], base, extra).await
}

/// Two sidecars that agree on a leader, for what must pass a forward between processes.
pub struct Pair {
    /// Both sidecars, kept running until the pair is dropped.
    _pods: Vec<Sidecar>,
    /// The leader's name.
    pub leader: String,
    /// The standby's proxy address: what is sent there goes through both sidecars.
    pub via: SocketAddr,
}

/// Two proxying sidecars on 127.0.0.{base, base+1}, each with an app named after it, once
/// they agree on a leader.
pub async fn pair(cluster: &Cluster, base: u8) -> Pair {
    let pods = sidecars(cluster, &["pod-a", "pod-b"], base, &[]).await;
    let leader = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    let via = pods
        .iter()
        .find(|p| p.name != leader)
        .and_then(|p| p.listen)
        .expect("a standby");
    Pair {
        _pods: pods,
        leader,
        via,
    }
}

async fn sidecars(
    cluster: &Cluster,
    names: &[&'static str],
    base: u8,
    extra: &[&str],
) -> Vec<Sidecar> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let upstream = app(name).await;
        out.push(
            cluster
                .sidecar(name, base + i as u8, Some(upstream), extra)
                .await,
        );
    }
    out
}

/// Waits until every sidecar in `pods` names the same non-empty leader; returns it.
pub async fn agreed_leader(pods: &[&Sidecar], within: Duration) -> String {
    agreed_leader_not(pods, "", within).await
}

/// Waits until every sidecar in `pods` names the same leader, other than `old`.
pub async fn agreed_leader_not(pods: &[&Sidecar], old: &str, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut names = Vec::new();
        for p in pods {
            names.push(p.leader_name().await.unwrap_or_default());
        }
        if !names[0].is_empty() && names[0] != old && names.iter().all(|n| *n == names[0]) {
            return names.swap_remove(0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed new leader within {within:?}: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `cond` (a probe of another process) until it holds; panics after `within`.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A request error or a non-2xx answer.
#[derive(Debug)]
pub struct Failed(#[allow(dead_code)] pub String);

/// `GET http://addr/path` with a timeout; body text on 2xx.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(StatusCode, String), Failed> {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Full::default())
        .unwrap();
    send(req, timeout).await
}

pub async fn send(
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, String), Failed> {
    let call = async {
        let resp = client()
            .request(req)
            .await
            .map_err(|e| Failed(format!("request: {e:?}")))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Failed(format!("body: {e}")))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Failed("timed out".into()))?
}
