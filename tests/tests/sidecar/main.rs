//! The `understudy` sidecar end to end: real processes on 127.0.0.x, the real API server
//! (RBAC on, the ServiceAccount and Role of `deploy/base`) behind ordinary kubeconfigs, and
//! apps that answer their own name. Every request sent to any sidecar must be answered by
//! the leader's app, also while leadership moves.

mod failsafe;
mod hostile;
mod logs;
mod midway;
mod peer_tls;
mod postgres;
mod switchover;
mod tcp;
mod watch;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{StatusCode, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use understudy_tests::cluster::loopback::{
    Loopback, Sidecar, agreed_leader, agreed_leader_not, eventually, get, send,
};
use understudy_tests::cluster::sidecar::{FAST_HEALTH_FLAGS, SLOW_TIMINGS};
use understudy_tests::cluster::test_app::{app, app_with_health};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A bounded stream of GETs from `workers` sequential clients, round-robin over `targets`
/// (the Service's endpoints, changed by the test as the endpoints controller would).
struct Load {
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<Vec<Result<String, String>>>>,
}

impl Load {
    fn start(targets: Vec<SocketAddr>, workers: usize) -> Load {
        let targets = Arc::new(Mutex::new(targets));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let workers = (0..workers)
            .map(|w| {
                let (targets, stop, sent) = (targets.clone(), stop.clone(), sent.clone());
                tokio::spawn(async move {
                    let mut results = Vec::new();
                    let until = tokio::time::Instant::now() + Duration::from_secs(40);
                    // Bounded in count and time, whatever the test does.
                    for i in 0..2000 {
                        if stop.load(Ordering::SeqCst) || tokio::time::Instant::now() > until {
                            break;
                        }
                        let target = {
                            let t = targets.lock().unwrap();
                            t[(i + w) % t.len()]
                        };
                        let r = get(target, "/", CLIENT_TIMEOUT)
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|(status, body)| {
                                if status == StatusCode::OK {
                                    Ok(body)
                                } else {
                                    Err(format!("{status}: {body}"))
                                }
                            });
                        results.push(r);
                        sent.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    results
                })
            })
            .collect();
        Load {
            targets,
            stop,
            sent,
            workers,
        }
    }

    fn set_targets(&self, targets: Vec<SocketAddr>) {
        *self.targets.lock().unwrap() = targets;
    }

    /// Waits until `n` more requests have been answered.
    async fn pass(&self, n: usize) {
        let goal = self.sent.load(Ordering::SeqCst) + n;
        eventually(Duration::from_secs(30), || async {
            self.sent.load(Ordering::SeqCst) >= goal
        })
        .await;
    }

    /// Stops and returns every worker's answers, in order.
    async fn finish(self) -> Vec<Vec<Result<String, String>>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut out = Vec::new();
        for w in self.workers {
            out.push(w.await.unwrap());
        }
        out
    }
}

/// No failures; each worker saw `old` and then only `new` (never back to `old`).
fn assert_handover(results: &[Vec<Result<String, String>>], old: &str, new: &str) {
    let mut total = 0;
    for (w, answers) in results.iter().enumerate() {
        let failed: Vec<_> = answers.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(
            failed.is_empty(),
            "worker {w}: {} failed requests: {failed:?}",
            failed.len()
        );
        let names: Vec<&str> = answers
            .iter()
            .map(|r| r.as_ref().unwrap().as_str())
            .collect();
        let first_new = names.iter().position(|n| *n == new).unwrap_or(names.len());
        assert!(
            names[..first_new].iter().all(|n| *n == old),
            "worker {w}: {names:?}"
        );
        assert!(
            names[first_new..].iter().all(|n| *n == new),
            "worker {w}: went back to {old}: {names:?}"
        );
        total += names.len();
    }
    assert!(total > 0);
}

fn listens(pods: &[Sidecar]) -> Vec<SocketAddr> {
    pods.iter().filter_map(|p| p.listen).collect()
}

/// The endpoints once `gone` has been removed from them.
fn listens_except(pods: &[Sidecar], gone: SocketAddr) -> Vec<SocketAddr> {
    listens(pods).into_iter().filter(|a| *a != gone).collect()
}

#[tokio::test]
async fn every_request_to_any_sidecar_reaches_the_leaders_app() {
    let cluster = Loopback::start("e2e-route").await;
    let pods = cluster.three(&[]).await;
    let leader = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    for i in 0..30 {
        let pod = &pods[i % 3];
        let (status, body) = get(pod.listen.unwrap(), "/", CLIENT_TIMEOUT).await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, leader.as_str()),
            "via {}",
            pod.name
        );
    }
    // Exactly one is Ready-as-leader in /status, and its app sees the fencing epoch.
    let statuses: Vec<String> = futures::future::join_all(
        pods.iter()
            .map(|p| async { p.admin_get("/status").await.unwrap().1 }),
    )
    .await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| s.contains("\"role\":\"leader\""))
            .count(),
        1,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn sigterm_of_the_leader_loses_no_request() {
    let cluster = Loopback::start("e2e-sigterm").await;
    let mut pods = cluster.three(&[]).await;
    let old = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    let load = Load::start(listens(&pods), 3);
    load.pass(30).await;
    let li = pods.iter().position(|p| p.name == old).unwrap();
    let old_listen = pods[li].listen.unwrap();
    pods[li].sigterm();
    // Endpoints drop the terminating pod; the pod itself keeps serving through its drain.
    load.set_targets(listens_except(&pods, old_listen));
    // Once it has stepped down (the signal is handled asynchronously; until then it still
    // leads and may serve), what reaches it goes to the new leader.
    eventually(Duration::from_secs(5), || async {
        pods[li].leader_name().await.is_some_and(|n| n != old)
    })
    .await;
    let during_drain = get(old_listen, "/", CLIENT_TIMEOUT)
        .await
        .expect("still accepting while draining");
    assert_eq!(during_drain.0, StatusCode::OK);
    assert_ne!(
        during_drain.1, old,
        "the old leader hands requests to the new one"
    );
    let others: Vec<&Sidecar> = pods.iter().filter(|p| p.name != old).collect();
    let new = agreed_leader_not(&others, &old, Duration::from_secs(10)).await;
    assert_ne!(new, old);
    load.pass(60).await;
    let code = pods[li].exit_code(Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "SIGTERM ends with exit 0");
    assert_handover(&load.finish().await, &old, &new);
}

#[tokio::test]
async fn sigkill_of_the_leader_loses_no_request() {
    let cluster = Loopback::start("e2e-sigkill").await;
    let mut pods = cluster.three(&[]).await;
    let old = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    let li = pods.iter().position(|p| p.name == old).unwrap();
    let old_listen = pods[li].listen.unwrap();
    // The dead pod's endpoint lingers for a while in a real cluster; here clients only use
    // the survivors, which must hold requests until the Lease expires.
    let load = Load::start(listens_except(&pods, old_listen), 3);
    load.pass(30).await;
    pods[li].sigkill().await;
    let others: Vec<&Sidecar> = pods
        .iter()
        .filter(|p| p.name != old && p.child.is_some())
        .collect();
    let new = agreed_leader_not(&others, &old, Duration::from_secs(15)).await;
    assert_ne!(new, old);
    load.pass(60).await;
    let results = load.finish().await;
    assert_handover(&results, &old, &new);
}

#[tokio::test]
async fn killing_a_standby_costs_nothing() {
    let cluster = Loopback::start("e2e-standby").await;
    let mut pods = cluster.three(&[]).await;
    let leader = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    let si = pods.iter().position(|p| p.name != leader).unwrap();
    let standby_listen = pods[si].listen.unwrap();
    let load = Load::start(listens_except(&pods, standby_listen), 2);
    load.pass(20).await;
    pods[si].sigkill().await;
    load.pass(40).await;
    let results = load.finish().await;
    assert_handover(&results, &leader, &leader);
    let rest: Vec<&Sidecar> = pods.iter().filter(|p| p.child.is_some()).collect();
    assert_eq!(agreed_leader(&rest, Duration::from_secs(5)).await, leader);
}

#[tokio::test]
async fn elector_only_mode_answers_like_the_old_image() {
    let mut cluster = Loopback::start("e2e-seed").await;
    cluster.set_timings(&SLOW_TIMINGS);
    let a = cluster.sidecar("pod-a").start().await;
    let b = cluster.sidecar("pod-b").start().await;
    let leader = agreed_leader(&[&a, &b], Duration::from_secs(15)).await;
    for p in [&a, &b] {
        let (status, body) = p.admin_get("/").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!(r#"{{"name":"{leader}"}}"#));
    }
    assert!(
        a.admin_get("/status")
            .await
            .unwrap()
            .1
            .contains("\"proxy\":null"),
        "no proxy"
    );
    // SIGTERM on the leader hands over at once (not after the 10s Lease runs out), exit 0.
    let (mut leading, other) = if leader == a.name { (a, b) } else { (b, a) };
    leading.sigterm();
    assert_eq!(leading.exit_code(Duration::from_secs(5)).await, Some(0));
    let started = tokio::time::Instant::now();
    let new = agreed_leader_not(&[&other], &leader, Duration::from_secs(5)).await;
    assert_eq!(new, other.name);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "released, not expired: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn ready_when_leader_makes_only_the_leader_ready() {
    let cluster = Loopback::start("e2e-ready").await;
    let pods = cluster.three(&["--ready-when", "leader"]).await;
    let leader = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    for p in &pods {
        let (status, _) = p.admin_get("/readyz").await.unwrap();
        let expected = if p.name == leader {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        assert_eq!(status, expected, "{}", p.name);
    }
    // And with the default, every synced pod is Ready.
    let plain = cluster
        .sidecar("pod-d")
        .upstream(app("pod-d").await)
        .start()
        .await;
    assert_eq!(plain.admin_get("/readyz").await.unwrap().0, StatusCode::OK);
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket through the sidecar at `addr`; returns it and the app's greeting (its
/// name).
async fn websocket(addr: SocketAddr) -> (Ws, String) {
    let (mut ws, resp) =
        tokio::time::timeout(CLIENT_TIMEOUT, connect_async(format!("ws://{addr}/ws")))
            .await
            .expect("handshake in time")
            .expect("handshake");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    match next_message(&mut ws).await {
        Message::Text(name) => (ws, name.to_string()),
        other => panic!("greeting: {other:?}"),
    }
}

async fn next_message(ws: &mut Ws) -> Message {
    tokio::time::timeout(CLIENT_TIMEOUT, ws.next())
        .await
        .expect("message in time")
        .expect("still open")
        .expect("a message")
}

#[tokio::test]
async fn a_websocket_echoes_across_a_forward() {
    let cluster = Loopback::start("e2e-ws").await;
    let fwd = cluster.pair().await;
    // client -> standby's sidecar -> leader's sidecar -> leader's app, and back.
    let (mut ws, greeting) = websocket(fwd.via).await;
    assert_eq!(greeting, fwd.leader);
    let messages: Vec<Message> = (0..12u8)
        .map(|i| match i % 3 {
            0 => Message::text(format!("hello {i}")),
            1 => Message::binary(vec![i; 100 << i]),
            _ => Message::text("ü".repeat(usize::from(i) * 1000)),
        })
        .collect();
    // Both ways at once: everything is sent before the first echo is read.
    for m in &messages {
        ws.send(m.clone()).await.unwrap();
    }
    for m in &messages {
        assert_eq!(next_message(&mut ws).await, *m);
    }
    ws.send(Message::text("bye")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("bye"));
    // The closing handshake passes too: the app's close frame comes back.
    ws.close(None).await.unwrap();
    assert!(matches!(next_message(&mut ws).await, Message::Close(_)));
}

#[tokio::test]
async fn a_websocket_through_a_standby_closes_when_leadership_moves() {
    let cluster = Loopback::start("e2e-tunnel").await;
    let mut pods = cluster.three(&[]).await;
    let old = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    let standby = pods.iter().position(|p| p.name != old).unwrap();
    let via = pods[standby].listen.unwrap();
    let (mut ws, greeting) = websocket(via).await;
    assert_eq!(greeting, old);
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("ping"));
    let li = pods.iter().position(|p| p.name == old).unwrap();
    pods[li].sigterm();
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("websocket closed once leadership moved");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{end:?}"
    );
    let others: Vec<&Sidecar> = pods.iter().filter(|p| p.name != old).collect();
    let new = agreed_leader_not(&others, &old, Duration::from_secs(10)).await;
    let (mut ws, greeting) = websocket(via).await;
    assert_eq!(greeting, new, "a reconnect reaches the new leader");
    ws.send(Message::text("pong")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("pong"));
    assert_eq!(pods[li].exit_code(Duration::from_secs(15)).await, Some(0));
}

#[tokio::test]
async fn sigterm_of_a_standby_loses_no_request() {
    let cluster = Loopback::start("e2e-standby-term").await;
    let mut pods = cluster.three(&[]).await;
    let leader = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    let si = pods.iter().position(|p| p.name != leader).unwrap();
    let standby_listen = pods[si].listen.unwrap();
    let load = Load::start(listens(&pods), 3);
    load.pass(30).await;
    let signalled = tokio::time::Instant::now();
    pods[si].sigterm();
    // It fails its readiness probe, so endpoints drop it; meanwhile it keeps serving.
    eventually(Duration::from_secs(5), || async {
        pods[si].admin_get("/readyz").await.map(|r| r.0) == Some(StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;
    let during_drain = get(standby_listen, "/", CLIENT_TIMEOUT)
        .await
        .expect("still accepting while draining");
    assert_eq!(during_drain, (StatusCode::OK, leader.clone()));
    load.set_targets(listens_except(&pods, standby_listen));
    load.pass(60).await;
    assert_eq!(
        pods[si].exit_code(Duration::from_secs(15)).await,
        Some(0),
        "SIGTERM ends with exit 0"
    );
    assert!(
        signalled.elapsed() >= Duration::from_secs(1),
        "exited before its --drain of 1s: {:?}",
        signalled.elapsed()
    );
    assert_handover(&load.finish().await, &leader, &leader);
    let rest: Vec<&Sidecar> = pods.iter().filter(|p| p.child.is_some()).collect();
    assert_eq!(agreed_leader(&rest, Duration::from_secs(5)).await, leader);
}

/// A gRPC message: uncompressed flag, 4-byte big-endian length, payload.
fn grpc_message(payload: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out.into()
}

/// Chunk `i` of a lockstep echo: `size` bytes of `i % 251`, so that order is checked too.
fn chunk(i: usize, size: usize) -> Bytes {
    vec![(i % 251) as u8; size].into()
}

/// What came back from an echo: the response head's headers and the trailers.
struct Echoed {
    headers: http::HeaderMap,
    version: Version,
    trailers: Option<http::HeaderMap>,
}

/// The next frame of `body`, which has delivered `received` bytes so far.
async fn next_frame(body: &mut Incoming, received: usize) -> Option<Frame<Bytes>> {
    tokio::time::timeout(CLIENT_TIMEOUT, body.frame())
        .await
        .unwrap_or_else(|_| panic!("stalled after {received} bytes"))
        .map(|frame| frame.expect("body frame"))
}

/// POSTs `chunks` chunks of `size` bytes to `path` through `addr` and reads the echo,
/// sending each chunk only after the one before has come back whole. That passes only if
/// every hop streams both ways as it goes; a hop that buffered a body would stall it.
async fn echo_in_lockstep(
    addr: SocketAddr,
    version: Version,
    path: &str,
    content_type: &str,
    (chunks, size): (usize, usize),
) -> Echoed {
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, StreamBody<_>> = Client::builder(TokioExecutor::new())
        .http2_only(version == Version::HTTP_2)
        .build(connector);
    let req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(StreamBody::new(rx))
        .unwrap();
    let pending = client.request(req);
    tx.send(Ok(Frame::data(chunk(0, size)))).await.unwrap();
    let resp = tokio::time::timeout(CLIENT_TIMEOUT, pending)
        .await
        .expect("response head in time")
        .expect("response head");
    assert_eq!(resp.status(), StatusCode::OK);
    let (headers, version) = (resp.headers().clone(), resp.version());
    let mut body = resp.into_body();
    let mut received = 0;
    for next in 1..=chunks {
        // Everything sent so far comes back before the next chunk goes.
        while received < next * size {
            let data = next_frame(&mut body, received)
                .await
                .expect("echo ended early")
                .into_data()
                .expect("data before trailers");
            for (k, byte) in data.iter().enumerate() {
                assert_eq!(usize::from(*byte), ((received + k) / size) % 251);
            }
            received += data.len();
        }
        if next < chunks {
            tx.send(Ok(Frame::data(chunk(next, size)))).await.unwrap();
        }
    }
    tx.close_channel();
    let mut trailers = None;
    while let Some(frame) = next_frame(&mut body, received).await {
        match frame.into_data() {
            // HTTP/2 may end the stream with an empty DATA frame.
            Ok(data) => assert!(data.is_empty(), "{} bytes past the end", data.len()),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    assert_eq!(received, chunks * size);
    Echoed {
        headers,
        version,
        trailers,
    }
}

#[tokio::test]
async fn h2c_grpc_style_calls_keep_their_trailers_across_a_forward() {
    let cluster = Loopback::start("e2e-h2c").await;
    let fwd = cluster.pair().await;
    // A unary call.
    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let message = grpc_message(b"hello");
    let req = http::Request::post(format!("http://{}/echo.Echo/Say", fwd.via))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(message.clone()))
        .unwrap();
    let resp = tokio::time::timeout(CLIENT_TIMEOUT, h2.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.headers()["x-app"], fwd.leader.as_str());
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let via_headers: Vec<_> = resp.headers().get_all("via").iter().collect();
    assert_eq!(via_headers, ["2 understudy", "2 understudy"]);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), message);
    // A bidirectional stream: each message answered before the next is sent, then trailers.
    let echoed = echo_in_lockstep(
        fwd.via,
        Version::HTTP_2,
        "/echo.Echo/Chat",
        "application/grpc",
        (32, 1024),
    )
    .await;
    assert_eq!(echoed.version, Version::HTTP_2);
    assert_eq!(echoed.headers["x-app"], fwd.leader.as_str());
    assert_eq!(echoed.trailers.expect("trailers")["grpc-status"], "0");
}

#[tokio::test]
async fn large_bodies_stream_both_ways_across_a_forward() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 256; // 16 MiB each way, far past the 64 KiB replay buffer
    let cluster = Loopback::start("e2e-stream").await;
    let fwd = cluster.pair().await;
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let echoed = echo_in_lockstep(
            fwd.via,
            version,
            "/echo",
            "application/octet-stream",
            (CHUNKS, CHUNK),
        )
        .await;
        assert_eq!(echoed.version, version);
        assert_eq!(echoed.headers["x-app"], fwd.leader.as_str(), "{version:?}");
    }
}

#[tokio::test]
async fn a_post_is_answered_once_across_a_forward() {
    let cluster = Loopback::start("e2e-post").await;
    let pods = cluster.three(&[]).await;
    let leader = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    let standby = pods.iter().find(|p| p.name != leader).unwrap();
    let req = http::Request::post(format!("http://{}/", standby.listen.unwrap()))
        .body(http_body_util::Full::from("order-1"))
        .unwrap();
    let (status, body) = send(req, CLIENT_TIMEOUT).await.unwrap();
    assert_eq!(
        (status, body),
        (StatusCode::OK, format!("{leader}:order-1"))
    );
}

/// The actives every sidecar in `pods` lists on `/actives`, once they all agree on `n`
/// names, `including` among them.
pub(crate) async fn agreed_actives(
    pods: &[&Sidecar],
    n: usize,
    including: &str,
    within: Duration,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut lists = Vec::new();
        for p in pods {
            let names = understudy_tests::cluster::admin::actives(p.admin)
                .await
                .unwrap_or_default();
            lists.push(names);
        }
        let has = including.is_empty() || lists[0].iter().any(|l| l == including);
        if lists[0].len() == n && has && lists.iter().all(|l| *l == lists[0]) {
            return lists.swap_remove(0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreement on {n} actives: {lists:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_actives_share_the_traffic_and_a_killed_one_is_replaced_losing_nothing() {
    let cluster = Loopback::start("e2e-slots").await;
    let mut pods = cluster.three(&["--actives", "2"]).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let actives = agreed_actives(&all, 2, "", Duration::from_secs(15)).await;
    let standby = pods
        .iter()
        .position(|p| !actives.contains(&p.name))
        .unwrap();
    // `GET /` keeps the old body: the holder of slot 0, the same on every pod.
    let slot0 = agreed_leader(&all, Duration::from_secs(5)).await;
    assert!(actives.contains(&slot0), "{slot0} not in {actives:?}");
    let (_, status) = pods[standby].admin_get("/status").await.unwrap();
    assert!(status.contains("\"lease\":\"e2e-slots-1\""), "{status}");

    // Kill the active of slot 1 once its Lease names the standby, which may then take over
    // on the member expiry (a pod outside the named set waits out the dead lease, and the
    // only other named pod holds slot 0); clients use the survivors (the dead endpoint is
    // gone).
    let names = ["pod-a", "pod-b", "pod-c"];
    cluster
        .wait_members_named("e2e-slots-1", &names, Duration::from_secs(5))
        .await;
    let victim = actives.iter().find(|a| **a != slot0).unwrap().clone();
    let vi = pods.iter().position(|p| p.name == victim).unwrap();
    let load = Load::start(listens_except(&pods, pods[vi].listen.unwrap()), 3);
    load.pass(60).await;
    pods[vi].sigkill().await;
    let survivors: Vec<&Sidecar> = pods.iter().filter(|p| p.child.is_some()).collect();
    let new = pods[standby].name.clone();
    let after = agreed_actives(&survivors, 2, &new, Duration::from_secs(15)).await;
    assert!(after.contains(&slot0), "{after:?}");
    load.pass(90).await;
    let results = load.finish().await;

    let mut served = std::collections::BTreeMap::<String, usize>::new();
    for (w, answers) in results.iter().enumerate() {
        let failed: Vec<_> = answers.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(failed.is_empty(), "worker {w}: {failed:?}");
        for name in answers.iter().map(|r| r.as_ref().unwrap()) {
            *served.entry(name.clone()).or_default() += 1;
        }
    }
    // Both actives served before the kill, and the new one after it; the standby's app
    // served only once it held a slot.
    for name in [&slot0, &victim, &pods[standby].name] {
        assert!(served.get(name).copied().unwrap_or(0) > 0, "{served:?}");
    }
}

#[tokio::test]
async fn an_unhealthy_leaders_app_hands_leadership_over_losing_nothing() {
    let cluster = Loopback::start("e2e-health").await;
    let health = [&FAST_HEALTH_FLAGS[..], &["--health-hold-down", "1s"]].concat();
    let mut pods = Vec::new();
    let mut flags = Vec::new();
    for name in ["pod-a", "pod-b", "pod-c"] {
        let (up, flag) = app_with_health(name).await;
        pods.push(
            cluster
                .sidecar(name)
                .upstream(up)
                .args(&health)
                .start()
                .await,
        );
        flags.push(flag);
    }
    let all: Vec<&Sidecar> = pods.iter().collect();
    let old = agreed_leader(&all, Duration::from_secs(15)).await;
    let li = pods.iter().position(|p| p.name == old).unwrap();
    let load = Load::start(listens(&pods), 3);
    load.pass(60).await;
    let sick = std::time::Instant::now();
    flags[li].store(false, Ordering::SeqCst);
    let new = agreed_leader_not(&all, &old, Duration::from_secs(10)).await;
    // Released on the second failed check, taken through the watch: well under the lease.
    assert!(
        sick.elapsed() < Duration::from_secs(3),
        "{:?}",
        sick.elapsed()
    );
    load.pass(60).await;
    assert_handover(&load.finish().await, &old, &new);
    // Healthy again, the old leader stays a standby: no flapping back.
    flags[li].store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pods[li].leader_name().await.as_deref(), Some(new.as_str()));
}

/// Each pod's name with its `understudy.io/role` and `understudy.io/slot` labels.
async fn roles(cluster: &Loopback) -> Vec<(String, String, String)> {
    let out = kubectl(cluster, &["get", "pods", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut roles: Vec<(String, String, String)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let labels = &p["metadata"]["labels"];
            let get = |k: &str| labels[k].as_str().unwrap_or("").to_string();
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                get("understudy.io/role"),
                get("understudy.io/slot"),
            )
        })
        .collect();
    roles.sort();
    roles
}

/// kubectl (v1.37.2, built with the control plane) as cluster admin; its stdout.
async fn kubectl(cluster: &Loopback, args: &[&str]) -> String {
    cluster
        .cluster()
        .kubectl()
        .run(args)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn pod_role_labels_and_events_show_in_kubectl() {
    // The sidecars may label their Pods and record Events only through the Roles the
    // components add.
    let cluster = Loopback::with_components("e2e-labels", &["pod-labels", "events"]).await;
    let names = ["pod-a", "pod-b", "pod-c"];
    for name in names {
        // Pod objects only (no Node runs them): what the sidecars label.
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{app: web}}}}\nspec: {{serviceAccountName: understudy, automountServiceAccountToken: false, containers: [{{name: app, image: nginx}}]}}\n"
        );
        cluster
            .cluster()
            .kubectl()
            .run_with_input(&["apply", "-f", "-"], Some(&pod))
            .await
            .unwrap();
    }
    let flags = ["--actives", "2", "--label-pods", "--events"];
    let mut pods = Vec::new();
    for name in names {
        pods.push(cluster.sidecar(name).args(&flags).start().await);
    }
    let all: Vec<&Sidecar> = pods.iter().collect();
    let actives = agreed_actives(&all, 2, "", Duration::from_secs(15)).await;
    let expected = |actives: &[String]| -> Vec<(String, String, String)> {
        let mut slots = Vec::new();
        for name in names {
            let (role, slot) = match actives.iter().position(|a| a == name) {
                Some(_) => ("active", "?"),
                None => ("standby", ""),
            };
            slots.push((name.to_string(), role.to_string(), slot.to_string()));
        }
        slots
    };
    let matches = |got: &[(String, String, String)], want: &[(String, String, String)]| {
        got.len() == want.len()
            && got.iter().zip(want).all(|(g, w)| {
                g.0 == w.0
                    && g.1 == w.1
                    && if w.2 == "?" {
                        g.2 == "0" || g.2 == "1"
                    } else {
                        g.2.is_empty()
                    }
            })
            && got
                .iter()
                .filter(|g| g.1 == "active")
                .map(|g| &g.2)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                == 2
    };
    let want = expected(&actives);
    eventually(Duration::from_secs(10), || async {
        matches(&roles(&cluster).await, &want)
    })
    .await;
    // The table a user reads.
    let table = kubectl(
        &cluster,
        &[
            "get",
            "pods",
            "-L",
            "understudy.io/role",
            "-L",
            "understudy.io/slot",
        ],
    )
    .await;
    assert!(table.contains("ROLE") && table.contains("SLOT"), "{table}");
    assert_eq!(table.matches("active").count(), 2, "{table}");
    assert_eq!(table.matches("standby").count(), 1, "{table}");

    // An active hands over on SIGTERM: labels and Events follow.
    let victim = pods.iter().position(|p| p.name == actives[0]).unwrap();
    let standby = names
        .iter()
        .find(|n| !actives.iter().any(|a| a == *n))
        .unwrap();
    pods[victim].sigterm();
    let after = vec![actives[1].clone(), standby.to_string()];
    let want = expected(&after);
    let want = want
        .into_iter()
        .map(|(n, r, s)| {
            if n == actives[0] {
                (n, "standby".into(), String::new())
            } else {
                (n, r, s)
            }
        })
        .collect::<Vec<_>>();
    eventually(Duration::from_secs(10), || async {
        matches(&roles(&cluster).await, &want)
    })
    .await;
    let events = kubectl(&cluster, &["get", "events", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&events).unwrap();
    let messages: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "LeaderElection")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    for name in [&actives[0], &actives[1], &standby.to_string()] {
        assert!(
            messages.contains(&format!("{name} became leader")),
            "{messages:?}"
        );
    }
    assert!(
        messages.contains(&format!("{} stopped leading", actives[0])),
        "{messages:?}"
    );
    let _ = pods[victim].exit_code(Duration::from_secs(10)).await;
}
