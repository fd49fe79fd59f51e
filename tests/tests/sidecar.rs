//! The `understudy` sidecar end to end: real processes on 127.0.0.x, the Kubernetes API
//! emulator behind ordinary kubeconfigs, and apps that answer their own name. Every request
//! sent to any sidecar must be answered by the leader's app, also while leadership moves.

#[path = "sidecar/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A bounded stream of GETs from `workers` sequential clients, round-robin over `targets`
/// (the Service's endpoints, changed by the test as the endpoints controller would).
struct Load {
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<Vec<Result<String, Failed>>>>,
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
                        let r =
                            get(target, "/", CLIENT_TIMEOUT)
                                .await
                                .and_then(|(status, body)| {
                                    if status == StatusCode::OK {
                                        Ok(body)
                                    } else {
                                        Err(Failed(format!("{status}: {body}")))
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
    async fn finish(self) -> Vec<Vec<Result<String, Failed>>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut out = Vec::new();
        for w in self.workers {
            out.push(w.await.unwrap());
        }
        out
    }
}

/// No failures; each worker saw `old` and then only `new` (never back to `old`).
fn assert_handover(results: &[Vec<Result<String, Failed>>], old: &str, new: &str) {
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

#[tokio::test]
async fn every_request_to_any_sidecar_reaches_the_leaders_app() {
    let cluster = Cluster::new("e2e-route").await;
    let pods = three(&cluster, 11, &[]).await;
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
    let cluster = Cluster::new("e2e-sigterm").await;
    let mut pods = three(&cluster, 21, &[]).await;
    let old = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    let load = Load::start(listens(&pods), 3);
    load.pass(30).await;
    let li = pods.iter().position(|p| p.name == old).unwrap();
    let old_listen = pods[li].listen.unwrap();
    pods[li].sigterm();
    // Endpoints drop the terminating pod; the pod itself keeps serving through its drain.
    load.set_targets(
        listens(&pods)
            .into_iter()
            .filter(|a| *a != old_listen)
            .collect(),
    );
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
    let cluster = Cluster::new("e2e-sigkill").await;
    let mut pods = three(&cluster, 31, &[]).await;
    let old = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    let li = pods.iter().position(|p| p.name == old).unwrap();
    let old_listen = pods[li].listen.unwrap();
    // The dead pod's endpoint lingers for a while in a real cluster; here clients only use
    // the survivors, which must hold requests until the Lease expires.
    let load = Load::start(
        listens(&pods)
            .into_iter()
            .filter(|a| *a != old_listen)
            .collect(),
        3,
    );
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
    let cluster = Cluster::new("e2e-standby").await;
    let mut pods = three(&cluster, 41, &[]).await;
    let leader = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    let si = pods.iter().position(|p| p.name != leader).unwrap();
    let standby_listen = pods[si].listen.unwrap();
    let load = Load::start(
        listens(&pods)
            .into_iter()
            .filter(|a| *a != standby_listen)
            .collect(),
        2,
    );
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
    let mut cluster = Cluster::new("e2e-seed").await;
    cluster.timings = SLOW;
    let a = cluster.sidecar("pod-a", 51, None, &[]).await;
    let b = cluster.sidecar("pod-b", 52, None, &[]).await;
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
    let cluster = Cluster::new("e2e-ready").await;
    let pods = three(&cluster, 61, &["--ready-when", "leader"]).await;
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
        .sidecar("pod-d", 64, Some(app("pod-d").await), &[])
        .await;
    assert_eq!(plain.admin_get("/readyz").await.unwrap().0, StatusCode::OK);
}

/// Opens an `Upgrade: echo` tunnel through `addr`; returns the stream and the app's greeting.
async fn open_tunnel(addr: SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
            1,
            "closed before the response head"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut greeting = Vec::new();
    while !greeting.ends_with(b">") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1);
        greeting.push(byte[0]);
    }
    (s, String::from_utf8(greeting).unwrap())
}

#[tokio::test]
async fn a_tunnel_through_a_standby_closes_when_leadership_moves() {
    let cluster = Cluster::new("e2e-tunnel").await;
    let pods = three(&cluster, 71, &[]).await;
    let old = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    let standby = pods.iter().position(|p| p.name != old).unwrap();
    let via = pods[standby].listen.unwrap();
    let (mut tunnel, greeting) = open_tunnel(via).await;
    assert_eq!(greeting, format!("{old}>"));
    tunnel.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tunnel.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");
    let li = pods.iter().position(|p| p.name == old).unwrap();
    pods[li].sigterm();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), tunnel.read(&mut buf))
        .await
        .expect("tunnel closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let others: Vec<&Sidecar> = pods.iter().filter(|p| p.name != old).collect();
    let new = agreed_leader_not(&others, &old, Duration::from_secs(10)).await;
    let (_tunnel, greeting) = open_tunnel(via).await;
    assert_eq!(
        greeting,
        format!("{new}>"),
        "a reconnect reaches the new leader"
    );
}

#[tokio::test]
async fn a_post_is_answered_once_across_a_forward() {
    let cluster = Cluster::new("e2e-post").await;
    let pods = three(&cluster, 81, &[]).await;
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
