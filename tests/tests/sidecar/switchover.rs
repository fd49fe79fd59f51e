//! Planned switchover across real sidecar processes on the real API server: `POST /handover`
//! on the leader's admin port, and the Lease annotation `understudy.io/handover-to`, under
//! load; and what is refused.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;
use understudy_tests::cluster::loopback::{
    Loopback, NAMESPACE, Sidecar, agreed_leader, agreed_leader_not, send,
};
use understudy_tests::cluster::sidecar::SLOW_TIMINGS;

use super::{Load, agreed_actives, assert_handover, listens};

const NAMES: [&str; 3] = ["pod-a", "pod-b", "pod-c"];

async fn post(pod: &Sidecar, path: &str) -> (StatusCode, Value) {
    admin_call(http::Method::POST, pod, path).await
}

/// A GET on the admin port that may take long to answer (`/prestop`).
async fn get_slowly(pod: &Sidecar, path: &str) -> (StatusCode, Value) {
    admin_call(http::Method::GET, pod, path).await
}

/// `method` on the admin port, waiting up to 30s for the answer (a JSON body, or its text).
async fn admin_call(method: http::Method, pod: &Sidecar, path: &str) -> (StatusCode, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", pod.admin))
        .body(http_body_util::Full::default())
        .unwrap();
    let (status, body) = send(req, Duration::from_secs(30))
        .await
        .expect("admin answers");
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, body)
}

async fn epoch(pod: &Sidecar) -> u64 {
    let (_, body) = pod.admin_get("/status").await.expect("/status");
    let status: Value = serde_json::from_str(&body).unwrap();
    status["epoch"].as_u64().expect("an epoch")
}

/// `POST /handover?to=<standby>` on the leader under load: the named standby leads at the
/// next epoch, the answer comes once it has renewed, and no request fails (every worker sees
/// the old leader, then only the new one). A standby answers 409 naming the leader, a target
/// that is not a member 422, another method 405; none of them moves anything.
#[tokio::test]
async fn post_handover_moves_the_leader_to_the_named_pod_losing_nothing() {
    let cluster = Loopback::start("switch-post").await;
    let pods = cluster.three(&[]).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let old = agreed_leader(&all, Duration::from_secs(15)).await;
    cluster
        .wait_members_named("switch-post", &NAMES, Duration::from_secs(5))
        .await;
    let leader = pods.iter().find(|p| p.name == old).unwrap();
    let standby = pods.iter().find(|p| p.name != old).unwrap();
    let before = epoch(leader).await;

    let (status, body) = post(standby, "/handover").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["leader"], old.as_str(), "{body}");
    let (status, body) = post(leader, "/handover?to=pod-x").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("pod-x is not a live member"),
        "{body}"
    );
    let (status, _) = post(leader, "/handover?to=Pod_X").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = leader.admin_get("/handover").await.unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(agreed_leader(&all, Duration::from_secs(1)).await, old);

    let load = Load::start(listens(&pods), 3);
    load.pass(60).await;
    let asked = Instant::now();
    let (status, body) = post(leader, &format!("/handover?to={}", standby.name)).await;
    let answered = asked.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["from"], old.as_str());
    assert_eq!(body["to"], standby.name.as_str());
    assert_eq!(body["epoch"].as_u64(), Some(before + 1));
    let new = agreed_leader_not(&all, &old, Duration::from_secs(5)).await;
    assert_eq!(new, standby.name);
    load.pass(60).await;
    assert_handover(&load.finish().await, &old, &new);
    assert!(
        answered < Duration::from_secs(5),
        "answered after {answered:?}"
    );
    eprintln!("switchover {old} -> {new}: answered after {answered:?} ({body})");
}

/// `kubectl annotate lease <election> understudy.io/handover-to=<pod>`: the holder hands over
/// and the annotation is gone; naming a pod that is not a member is refused: the annotation
/// is removed and the leader stays.
#[tokio::test]
async fn the_handover_annotation_moves_the_leader_and_a_bad_target_is_refused() {
    let cluster = Loopback::start("switch-annotate").await;
    let pods = cluster.three(&[]).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let old = agreed_leader(&all, Duration::from_secs(15)).await;
    cluster
        .wait_members_named("switch-annotate", &NAMES, Duration::from_secs(5))
        .await;
    let annotation = || handover_annotation(&cluster, "switch-annotate");

    // Refused: not a member. The holder removes the request and keeps leading.
    annotate_handover(&cluster, "switch-annotate", "pod-x").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !annotation().await.is_empty() {
        assert!(Instant::now() < deadline, "the refused request stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(agreed_leader(&all, Duration::from_secs(1)).await, old);

    // Any ready member (empty value): it moves, and the request is gone.
    let load = Load::start(listens(&pods), 3);
    load.pass(30).await;
    annotate_handover(&cluster, "switch-annotate", "").await;
    let new = agreed_leader_not(&all, &old, Duration::from_secs(10)).await;
    load.pass(30).await;
    assert_handover(&load.finish().await, &old, &new);
    assert!(annotation().await.is_empty());
}

/// With two actives, the annotation on slot 0's Lease naming the pod active in slot 1 is
/// refused (that pod would never renew slot 0, which would go without an active until the
/// Lease expired): the annotation is removed and slot 0 keeps its holder. "Any" then goes to
/// the idle pod, never to the busy one.
#[tokio::test]
async fn with_two_actives_the_annotation_never_hands_a_slot_to_a_pod_active_in_the_other() {
    let cluster = Loopback::start("switch-busy").await;
    let pods = cluster.three(&["--actives", "2"]).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    agreed_actives(&all, 2, "", Duration::from_secs(15)).await;
    for lease in ["switch-busy-0", "switch-busy-1"] {
        cluster
            .wait_members_named(lease, &NAMES, Duration::from_secs(5))
            .await;
    }
    let get = |lease: &'static str, path: &'static str| lease_field(&cluster, lease, path);
    let holder0 = get("switch-busy-0", ".spec.holderIdentity").await;
    let holder1 = get("switch-busy-1", ".spec.holderIdentity").await;
    assert!(NAMES.contains(&holder0.as_str()) && NAMES.contains(&holder1.as_str()));
    assert_ne!(holder0, holder1);
    let idle = NAMES
        .iter()
        .find(|n| **n != holder0 && **n != holder1)
        .unwrap()
        .to_string();
    annotate_handover(&cluster, "switch-busy-0", &holder1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !handover_annotation(&cluster, "switch-busy-0")
        .await
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the refused request stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get("switch-busy-0", ".spec.holderIdentity").await, holder0);
    assert_eq!(get("switch-busy-1", ".spec.holderIdentity").await, holder1);

    annotate_handover(&cluster, "switch-busy-0", "").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now0 = get("switch-busy-0", ".spec.holderIdentity").await;
        if now0 != holder0 {
            assert_eq!(now0, idle, "slot 0 went to the idle pod");
            break;
        }
        assert!(Instant::now() < deadline, "slot 0 was not handed over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let actives = agreed_actives(&all, 2, &idle, Duration::from_secs(10)).await;
    assert!(actives.contains(&holder1), "{actives:?}");
}

/// `GET /prestop?within=1s` on a leader whose only other member is frozen (SIGSTOP: still a
/// live, ready member by its member Lease, but it never renews what is handed to it): the
/// hook answers within its bound, says why no handover completed, and this pod has stepped
/// down; once the frozen pod thaws it takes the Lease it was handed.
#[tokio::test]
async fn prestop_answers_within_its_bound_when_the_handover_cannot_complete() {
    let cluster = Loopback::start("prestop-bound").await;
    let pods = cluster.sidecars(&["pod-a", "pod-b"], &[]).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let old = agreed_leader(&all, Duration::from_secs(15)).await;
    cluster
        .wait_members_named("prestop-bound", &NAMES[..2], Duration::from_secs(5))
        .await;
    let leader = pods.iter().find(|p| p.name == old).unwrap();
    let other = pods.iter().find(|p| p.name != old).unwrap();
    other.signal("STOP");
    let asked = Instant::now();
    let (status, body) = get_slowly(leader, "/prestop?within=1s").await;
    let took = asked.elapsed();
    other.signal("CONT");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        took < Duration::from_millis(2500),
        "answered after {took:?}, bound 1s: {body}"
    );
    assert_eq!(body["handed_over_to"], Value::Null, "{body}");
    assert!(
        body["handover_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(body["took_ms"].as_u64().unwrap() < 2500, "{body}");
    assert_eq!(
        agreed_leader(&all, Duration::from_secs(15)).await,
        other.name,
        "the thawed pod leads"
    );
}

/// `kubectl annotate lease <lease> understudy.io/handover-to=<value> --overwrite`.
pub(crate) async fn annotate_handover(cluster: &Loopback, lease: &str, value: &str) {
    cluster
        .cluster()
        .kubectl()
        .run(&[
            "annotate",
            "lease",
            lease,
            "-n",
            NAMESPACE,
            "--overwrite",
            &format!("understudy.io/handover-to={value}"),
        ])
        .await
        .unwrap();
}

/// The handover request on `lease`, empty when there is none.
pub(crate) async fn handover_annotation(cluster: &Loopback, lease: &str) -> String {
    lease_field(
        cluster,
        lease,
        r".metadata.annotations.understudy\.io/handover-to",
    )
    .await
}

/// A field of a Lease, by kubectl's jsonpath (`.spec.holderIdentity`).
pub(crate) async fn lease_field(cluster: &Loopback, lease: &str, path: &str) -> String {
    cluster
        .cluster()
        .kubectl()
        .run(&[
            "get",
            "lease",
            lease,
            "-n",
            NAMESPACE,
            "-o",
            &format!("jsonpath={{{path}}}"),
        ])
        .await
        .unwrap()
        .trim()
        .to_string()
}

/// An annotation of a member Lease.
async fn member_annotation(cluster: &Loopback, lease: &str, key: &str) -> String {
    let key = key.replace('.', r"\.");
    lease_field(cluster, lease, &format!(".metadata.annotations.{key}")).await
}

/// Preferred leaders: pod-a (priority 0) leads; pod-b and pod-c join with priority 10. Once
/// they have been ready for `--failback-delay`, pod-a hands over in the planned way to pod-b
/// (the first by name among the highest), under load with no failed request; between equal
/// priorities the leader then stays put. Each pod announces its priority, readiness and
/// actives in its member Lease.
#[tokio::test]
async fn a_higher_priority_member_takes_over_after_the_failback_delay_losing_nothing() {
    const DELAY: Duration = Duration::from_secs(3);
    let cluster = Loopback::start("failback").await;
    let delay = ["--failback-delay", "3s"];
    let app = understudy_tests::cluster::test_app::app("pod-a").await;
    let a = cluster
        .sidecar("pod-a")
        .upstream(app)
        .args(&delay)
        .start()
        .await;
    assert_eq!(agreed_leader(&[&a], Duration::from_secs(15)).await, "pod-a");
    let mut pods = vec![a];
    let joined = Instant::now();
    for name in ["pod-b", "pod-c"] {
        let app = understudy_tests::cluster::test_app::app(name).await;
        let pod = cluster
            .sidecar(name)
            .upstream(app)
            .args(&delay)
            .args(&["--priority", "10"])
            .start()
            .await;
        pods.push(pod);
    }
    let all: Vec<&Sidecar> = pods.iter().collect();
    let load = Load::start(listens(&pods), 3);
    load.pass(30).await;
    let new = agreed_leader_not(&all, "pod-a", DELAY * 5).await;
    let took = joined.elapsed();
    assert_eq!(new, "pod-b");
    assert!(
        took >= DELAY,
        "handed over after {took:?}, before the delay"
    );
    let epoch_after = epoch(&pods[1]).await;
    load.pass(60).await;
    assert_handover(&load.finish().await, "pod-a", "pod-b");
    for (pod, priority) in [("pod-a", "0"), ("pod-b", "10"), ("pod-c", "10")] {
        let lease = format!("failback-member-{pod}");
        assert_eq!(
            member_annotation(&cluster, &lease, "understudy.io/priority").await,
            priority
        );
        assert_eq!(
            member_annotation(&cluster, &lease, "understudy.io/ready").await,
            "true"
        );
        assert_eq!(
            member_annotation(&cluster, &lease, "understudy.io/actives").await,
            "1"
        );
    }
    // Equal priorities: pod-c never takes over from pod-b, however long it has been ready.
    tokio::time::sleep(DELAY * 2).await;
    assert_eq!(agreed_leader(&all, Duration::from_secs(1)).await, "pod-b");
    assert_eq!(epoch(&pods[1]).await, epoch_after);
    eprintln!("failback pod-a -> pod-b {took:?} after the preferred pods joined");
}

/// `GET /prestop` on the leader (what a native sidecar's app runs as its preStop hook) with a
/// request still streaming through it to its app: the answer waits for that request to
/// finish, names the standby it handed over to, and from then on that standby leads; the
/// request in flight completes on the old leader's app; this pod never takes a slot again.
#[tokio::test]
async fn prestop_hands_over_and_answers_once_the_requests_on_the_app_have_finished() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    use hyper_util::rt::TokioIo;

    let mut cluster = Loopback::start("prestop").await;
    // A streaming response from the old leader's app is cut a grace period after the
    // handover, (leaseDuration - renewDeadline) / 2: 2s with these timings.
    cluster.set_timings(&SLOW_TIMINGS);
    let pods = cluster.three(&[]).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let old = agreed_leader(&all, Duration::from_secs(15)).await;
    cluster
        .wait_members_named("prestop", &NAMES, Duration::from_secs(5))
        .await;
    let leader = pods.iter().find(|p| p.name == old).unwrap();

    // A request whose body is still coming: it stays in flight on the leader's app.
    let stream = tokio::net::TcpStream::connect(leader.listen.unwrap())
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (chunks, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    let body = StreamBody::new(tokio_stream_from(rx));
    let req = http::Request::post("/echo")
        .header(http::header::HOST, "app")
        .body(body)
        .unwrap();
    chunks
        .send(Ok(Frame::data(Bytes::from("first "))))
        .await
        .unwrap();
    let mut in_flight = tokio::spawn(async move {
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    });

    let prestop = get_slowly(leader, "/prestop");
    tokio::pin!(prestop);
    // The handover happens while the hook waits for the request on the app.
    let new = tokio::select! {
        answered = &mut prestop => panic!("answered with a request in flight: {answered:?}"),
        new = agreed_leader_not(&all, &old, Duration::from_secs(5)) => new,
    };
    // And the hook keeps waiting (checked for a while, well within the stream grace).
    tokio::select! {
        answered = &mut prestop => panic!("answered with a request in flight: {answered:?}"),
        done = &mut in_flight => panic!("the request finished on its own: {done:?}"),
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
    chunks
        .send(Ok(Frame::data(Bytes::from("last"))))
        .await
        .unwrap();
    drop(chunks);
    let (status, body) = prestop.await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["handed_over_to"], new.as_str(), "{body}");
    assert_eq!(body["released"], false, "{body}");
    assert_eq!(body["drained"], true, "{body}");
    assert_eq!(body["in_flight"], 0, "{body}");
    let (status, echoed) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        echoed, "first last",
        "the request finished on the old leader's app"
    );
    // The old leader stays out: asked again, it has nothing to hand over.
    let (status, again) = get_slowly(leader, "/prestop").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["handed_over_to"], Value::Null, "{again}");
    assert_eq!(agreed_leader(&all, Duration::from_secs(1)).await, new);
    eprintln!("pre-stop {old} -> {new}: {body}");
}

/// A stream of the frames sent on `rx`.
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

/// Switchovers in a row with the default timings (leaseDuration 10s, renewDeadline 6s,
/// retryPeriod 2s), under load: each `POST /handover` (to the best ready member) answers once
/// the successor has renewed, i.e. serves; no request fails. `SWITCHOVER_RUNS` sets how many
/// (default 5; `bench/run` asks for 20 and records the percentiles in docs/BENCHMARKS.md).
/// Times are printed, not asserted: targets are the benchmark's.
#[tokio::test]
async fn switchovers_in_a_row_lose_nothing() {
    let runs: usize = std::env::var("SWITCHOVER_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let mut cluster = Loopback::start("switch-repeat").await;
    cluster.set_timings(&SLOW_TIMINGS);
    let pods = cluster.three(&[]).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let mut leader = agreed_leader(&all, Duration::from_secs(15)).await;
    cluster
        .wait_members_named("switch-repeat", &NAMES, Duration::from_secs(5))
        .await;
    let load = Load::start(listens(&pods), 3);
    load.pass(30).await;
    let mut took = Vec::new();
    for _ in 0..runs {
        let pod = pods.iter().find(|p| p.name == leader).unwrap();
        let asked = Instant::now();
        let (status, body) = post(pod, "/handover").await;
        let answered = asked.elapsed();
        assert_eq!(status, StatusCode::OK, "{body}");
        let new = body["to"].as_str().unwrap().to_string();
        assert_ne!(new, leader);
        assert_eq!(
            agreed_leader_not(&all, &leader, Duration::from_secs(5)).await,
            new
        );
        took.push(answered);
        leader = new;
    }
    load.pass(30).await;
    let results = load.finish().await;
    let failed: Vec<_> = results
        .iter()
        .flatten()
        .filter_map(|r| r.as_ref().err())
        .collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let sent: usize = results.iter().map(Vec::len).sum();
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    eprintln!(
        "switchover latency (default timings): runs={runs} p50_ms={} p99_ms={} max_ms={} requests={sent} failed=0",
        at(0.5).as_millis(),
        at(0.99).as_millis(),
        took.last().unwrap().as_millis(),
    );
}
