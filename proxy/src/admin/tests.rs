use std::time::Duration;

use clap::Parser;
use http::Method;
use http_body_util::BodyExt;

use super::*;
use crate::cli::Cli;
use crate::settings::Environment;
use crate::testing::{following, leaderless, leading};

fn settings(extra: &[&str]) -> Arc<Settings> {
    let args = ["understudy", "--election", "example", "--id", "pod-b"]
        .into_iter()
        .chain(extra.iter().copied());
    let cli = Cli::try_parse_from(args).unwrap();
    Arc::new(Settings::from_cli(&cli, &Environment::default()).unwrap())
}

fn admin(extra: &[&str], view: View) -> (Admin, watch::Sender<View>) {
    let (tx, rx) = watch::channel(view);
    (
        Admin::new(settings(extra), rx, None, Metrics::default()),
        tx,
    )
}

async fn get(admin: &Admin, path: &str) -> (StatusCode, String, Option<String>) {
    let resp = admin.respond(&Request::get(path).body(()).unwrap());
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap(), ctype)
}

#[tokio::test]
async fn root_answers_exactly_like_the_old_image() {
    let (admin, tx) = admin(&[], following("pod-b", "pod-a", "10.0.0.1:8080", 3));
    let (status, body, ctype) = get(&admin, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"name":"pod-a"}"#);
    assert_eq!(ctype.as_deref(), Some("application/json"));
    // The old handler answered every path it did not know.
    assert_eq!(get(&admin, "/anything").await.1, r#"{"name":"pod-a"}"#);
    tx.send(leaderless("pod-b")).unwrap();
    assert_eq!(get(&admin, "/").await.1, r#"{"name":""}"#);
}

#[tokio::test]
async fn readyz_synced_is_ready_once_the_lease_was_read() {
    let (admin, tx) = admin(&[], View::initial("example", "pod-b", Instant::now()));
    assert_eq!(
        get(&admin, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    tx.send(following("pod-b", "pod-a", "x:1", 1)).unwrap();
    assert_eq!(get(&admin, "/readyz").await.0, StatusCode::OK);
    admin.set_draining();
    assert_eq!(
        get(&admin, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&admin, "/healthz").await.0,
        StatusCode::OK,
        "alive while draining"
    );
}

#[tokio::test]
async fn readyz_leader_is_ready_only_while_acting() {
    let (admin, tx) = admin(
        &["--ready-when", "leader"],
        following("pod-b", "pod-a", "x:1", 1),
    );
    assert_eq!(
        get(&admin, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    tx.send(leading("pod-b", "x:2", 2)).unwrap();
    assert_eq!(get(&admin, "/readyz").await.0, StatusCode::OK);
    // Past the fencing deadline without a new view: no longer ready.
    let mut stale = leading("pod-b", "x:2", 2);
    stale.acting_until = Some(Instant::now() - Duration::from_millis(1));
    tx.send(stale).unwrap();
    assert_eq!(
        get(&admin, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn status_reports_role_leader_and_timings() {
    let (admin, _tx) = admin(
        &["--listen", "127.0.0.2:8080"],
        leading("pod-b", "127.0.0.2:8080", 5),
    );
    let (status, body, _) = get(&admin, "/status").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["role"], "leader");
    assert_eq!(v["acting"], true);
    assert_eq!(v["leader"], "pod-b");
    assert_eq!(v["address"], "127.0.0.2:8080");
    assert_eq!(v["epoch"], 5);
    assert_eq!(v["lease"]["lease_duration_seconds"], 10.0);
    assert_eq!(v["lease"]["renew_deadline_seconds"], 6.0);
    assert_eq!(v["held_requests"], 0);
    assert_eq!(v["proxy"]["advertise"], "127.0.0.2:8080");
    assert!(v["last_transition"].as_str().unwrap().ends_with('Z'));
    assert!(v["acting_for_seconds"].as_f64().unwrap() > 50.0);
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_leadership() {
    let (admin, _tx) = admin(&[], leading("pod-b", "x:1", 9));
    let (status, body, ctype) = get(&admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(body.contains("understudy_election_is_leader 1"), "{body}");
    assert!(
        body.contains("understudy_election_leader_epoch 9"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE understudy_election_renew_duration_seconds histogram"),
        "{body}"
    );
}

/// Over a real socket, byte for byte: no trailing newline, JSON content type.
#[tokio::test]
async fn root_over_http_is_byte_exact() {
    let (admin, _tx) = admin(&[], following("pod-b", "pod-a", "x:1", 1));
    let addr = crate::testing::serve(move |req, _| {
        let admin = admin.clone();
        async move { admin.respond(&req) }
    })
    .await;
    let (status, headers, body) = crate::testing::get(addr, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"], "16");
    assert_eq!(body.as_bytes(), br#"{"name":"pod-a"}"#);
}

#[tokio::test]
async fn status_counts_the_requests_held_right_now() {
    let holder = Holder::new(4, Duration::from_secs(1));
    let (_tx, rx) = watch::channel(leaderless("pod-b"));
    let admin = Admin::new(
        settings(&["--listen", "127.0.0.2:8080"]),
        rx,
        Some(holder.clone()),
        Metrics::default(),
    );
    let held = [holder.enter().unwrap(), holder.enter().unwrap()];
    let v: serde_json::Value = serde_json::from_str(&get(&admin, "/status").await.1).unwrap();
    assert_eq!(v["held_requests"], 2);
    assert_eq!(v["leader"], serde_json::Value::Null);
    drop(held);
    let v: serde_json::Value = serde_json::from_str(&get(&admin, "/status").await.1).unwrap();
    assert_eq!(v["held_requests"], 0);
}

/// The next chunk of a `/watch` body within `within`: `Err` when none came, `Ok(None)` once
/// the stream has ended.
async fn chunk(body: &mut ProxyBody, within: Duration) -> Result<Option<String>, ()> {
    match tokio::time::timeout(within, body.frame()).await {
        Err(_) => Err(()),
        Ok(None) => Ok(None),
        Ok(Some(frame)) => {
            let data = frame.unwrap().into_data().expect("a data frame");
            Ok(Some(String::from_utf8(data.to_vec()).unwrap()))
        }
    }
}

/// The JSON of one `view` event.
fn event(chunk: &str) -> serde_json::Value {
    let data = chunk
        .strip_prefix("event: view\ndata: ")
        .and_then(|c| c.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not a view event: {chunk:?}"));
    serde_json::from_str(data).unwrap()
}

fn watch(admin: &Admin) -> Response<ProxyBody> {
    admin.respond(&Request::get("/watch").body(()).unwrap())
}

#[tokio::test]
async fn watch_refuses_every_method_but_get() {
    let (admin, _tx) = admin(&[], following("pod-b", "pod-a", "x:1", 1));
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::HEAD] {
        let resp = admin.respond(
            &Request::builder()
                .method(method.clone())
                .uri("/watch")
                .body(())
                .unwrap(),
        );
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(resp.headers()[header::ALLOW], "GET", "{method}");
    }
    assert_eq!(admin.watchers.open(), 0);
}

#[tokio::test]
async fn watch_sends_the_current_view_at_once_as_an_event_stream() {
    let (admin, _tx) = admin(&[], following("pod-b", "pod-a", "10.0.0.1:8080", 3));
    let resp = watch(&admin);
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-cache");
    assert!(resp.headers().get(header::CONTENT_LENGTH).is_none());
    let mut body = resp.into_body();
    let first = chunk(&mut body, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let v = event(&first);
    assert_eq!(v["identity"], "pod-b");
    assert_eq!(v["role"], "follower");
    assert_eq!(v["acting"], false);
    assert_eq!(v["slot"], serde_json::Value::Null);
    assert_eq!(v["failsafe"], false);
    assert_eq!(v["slots"][0]["slot"], 0);
    assert_eq!(v["slots"][0]["holder"], "pod-a");
    assert_eq!(v["slots"][0]["epoch"], 3);
    assert_eq!(v["slots"][0]["address"], "10.0.0.1:8080");
    assert_eq!(v["slots"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn watch_sends_one_event_per_change_and_none_for_a_republish() {
    let (admin, tx) = admin(&[], following("pod-b", "pod-a", "x:1", 3));
    let mut body = watch(&admin).into_body();
    let short = Duration::from_millis(300);
    event(&chunk(&mut body, short).await.unwrap().unwrap());
    // The same content published again (a timer's republish): nothing.
    tx.send(following("pod-b", "pod-a", "x:1", 3)).unwrap();
    assert_eq!(chunk(&mut body, short).await, Err(()));
    // A new holder at a new epoch: exactly one event.
    tx.send(following("pod-b", "pod-c", "x:3", 4)).unwrap();
    let v = event(&chunk(&mut body, short).await.unwrap().unwrap());
    assert_eq!(v["slots"][0]["holder"], "pod-c");
    assert_eq!(v["slots"][0]["epoch"], 4);
    assert_eq!(chunk(&mut body, short).await, Err(()));
    // This pod takes over.
    tx.send(leading("pod-b", "x:2", 5)).unwrap();
    let v = event(&chunk(&mut body, short).await.unwrap().unwrap());
    assert_eq!(v["role"], "leader");
    assert_eq!(v["acting"], true);
    assert_eq!(v["slot"], 0);
    assert_eq!(v["slots"][0]["holder"], "pod-b");
    assert_eq!(v["slots"][0]["mine"], true);
    assert_eq!(chunk(&mut body, short).await, Err(()));
    // The election ends (the channel closes at shutdown): so does the stream.
    drop(tx);
    assert_eq!(chunk(&mut body, short).await, Ok(None));
    drop(body);
    assert_eq!(admin.watchers.open(), 0);
}

#[tokio::test]
async fn watch_reads_every_slot_when_there_are_slots() {
    let (admin, _tx) = admin(&[], following("pod-b", "pod-a", "x:1", 3));
    let mut slot1 = leading("pod-b", "x:2", 7);
    slot1.lease = "test-1".into();
    let (stx, srx) = watch::channel(Slots {
        views: vec![following("pod-b", "pod-a", "x:1", 3), slot1],
        held: Some(1),
        eligible: true,
    });
    let admin = admin.with_slots(srx);
    let mut body = watch(&admin).into_body();
    let v = event(
        &chunk(&mut body, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(v["role"], "leader");
    assert_eq!(v["slot"], 1);
    assert_eq!(v["slots"][0]["holder"], "pod-a");
    assert_eq!(v["slots"][1]["holder"], "pod-b");
    assert_eq!(v["slots"][1]["epoch"], 7);
    assert_eq!(v["slots"][1]["lease"], "test-1");
    // Another pod takes slot 0: one event.
    stx.send_modify(|s| s.views[0] = following("pod-b", "pod-c", "x:3", 4));
    let v = event(
        &chunk(&mut body, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(v["slots"][0]["holder"], "pod-c");
    assert_eq!(v["slots"][0]["epoch"], 4);
}

#[tokio::test(start_paused = true)]
async fn watch_sends_a_keep_alive_after_15_seconds_of_silence() {
    let (admin, _tx) = admin(&[], following("pod-b", "pod-a", "x:1", 1));
    let mut body = watch(&admin).into_body();
    event(
        &chunk(&mut body, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap(),
    );
    let start = tokio::time::Instant::now();
    assert_eq!(
        chunk(&mut body, Duration::from_secs(14)).await,
        Err(()),
        "nothing before 15 s"
    );
    let line = chunk(&mut body, Duration::from_secs(2)).await.unwrap();
    assert_eq!(line.as_deref(), Some(": keep-alive\n\n"));
    assert!(start.elapsed() >= sse::KEEP_ALIVE);
}

#[tokio::test]
async fn watch_admits_64_streams_and_a_dropped_one_frees_its_place() {
    let (admin, _tx) = admin(&[], following("pod-b", "pod-a", "x:1", 1));
    let mut open: Vec<_> = (0..sse::MAX_WATCHERS).map(|_| watch(&admin)).collect();
    assert!(open.iter().all(|r| r.status() == StatusCode::OK));
    assert_eq!(admin.watchers.open(), 64);
    let metrics = get(&admin, "/metrics").await.1;
    assert!(metrics.contains("\nunderstudy_watchers 64\n"), "{metrics}");
    // The 65th, on another clone (each request gets one): refused.
    let other = admin.clone();
    let (status, body, _) = get(&other, "/watch").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("64"), "{body}");
    open.pop();
    assert_eq!(admin.watchers.open(), 63);
    let again = watch(&other);
    assert_eq!(again.status(), StatusCode::OK);
    drop((open, again));
    assert_eq!(admin.watchers.open(), 0);
    assert!(
        get(&admin, "/metrics")
            .await
            .1
            .contains("\nunderstudy_watchers 0\n")
    );
}

/// Over a real socket: chunked, the first event at once, and a client that leaves gives its
/// place back without waiting for anything to be sent.
#[tokio::test]
async fn watch_over_http_streams_and_a_client_that_leaves_frees_its_place() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (admin, _tx) = admin(&[], following("pod-b", "pod-a", "x:1", 1));
    let server = admin.clone();
    let addr = crate::testing::serve(move |req, _| {
        let admin = server.clone();
        async move { admin.respond(&req) }
    })
    .await;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /watch HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(2), async {
        while !String::from_utf8_lossy(&got).contains("\"holder\":\"pod-a\"") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first event at once");
    let text = String::from_utf8_lossy(&got).to_lowercase();
    assert!(text.starts_with("http/1.1 200 ok\r\n"), "{text}");
    assert!(
        text.contains("content-type: text/event-stream\r\n"),
        "{text}"
    );
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(text.contains("event: view\ndata: {"), "{text}");
    assert_eq!(admin.watchers.open(), 1);
    drop(conn);
    crate::testing::eventually(Duration::from_secs(2), || admin.watchers.open() == 0).await;
}

/// A leader whose acting deadline passes without a new view stops acting: that is a change.
#[tokio::test]
async fn watch_reports_the_end_of_acting_when_the_deadline_passes() {
    let mut view = leading("pod-b", "x:2", 5);
    view.acting_until = Some(crate::now() + Duration::from_millis(300));
    let (admin, _tx) = admin(&[], view);
    let mut body = watch(&admin).into_body();
    let v = event(
        &chunk(&mut body, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(v["acting"], true);
    let v = event(
        &chunk(&mut body, Duration::from_secs(2))
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(v["acting"], false);
    assert_eq!(v["role"], "leader");
    assert_eq!(
        chunk(&mut body, Duration::from_millis(300)).await,
        Err(()),
        "one event, no spinning"
    );
}

#[test]
fn the_handover_target_is_one_pod_name_or_any() {
    assert_eq!(handover_target(None), Ok(None));
    assert_eq!(handover_target(Some("")), Ok(None));
    assert_eq!(handover_target(Some("to=")), Ok(None));
    assert_eq!(handover_target(Some("to=pod-b")), Ok(Some("pod-b".into())));
    assert_eq!(
        handover_target(Some("to=a&to=b")),
        Err("\"to\" given twice".into())
    );
    assert_eq!(
        handover_target(Some("from=a")),
        Err("unknown parameter \"from\": only \"to\" is accepted".into())
    );
    assert_eq!(
        handover_target(Some("to=Pod%20B")),
        Err("\"Pod%20B\" is not a pod name".into())
    );
}

#[tokio::test]
async fn handover_takes_post_only_and_a_pod_without_an_election_says_so() {
    let (admin, _tx) = admin(&[], leading("pod-b", "198.18.0.2:8080", 1));
    let resp = admin.respond(&Request::get("/handover").body(()).unwrap());
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()[header::ALLOW], "POST");
    let resp = admin
        .handle(Request::post("/handover?to=pod-c").body(()).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let resp = admin
        .handle(Request::post("/handover?who=pod-c").body(()).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn prestop_refuses_every_method_but_get_and_is_not_the_seed_answer() {
    let (admin, _tx) = admin(&[], leading("pod-b", "x:1", 1));
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let req = Request::builder()
            .method(method.clone())
            .uri("/prestop")
            .body(())
            .unwrap();
        let resp = admin.handle(req).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(resp.headers()[header::ALLOW], "GET", "{method}");
    }
    // Without an election to step down from, GET says so instead of answering like `/`.
    let resp = admin
        .handle(Request::get("/prestop").body(()).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("no election here"));
}

#[tokio::test]
async fn prestop_takes_a_bound_and_refuses_a_malformed_one() {
    assert_eq!(prestop_within(None), Ok(PRESTOP_WITHIN));
    assert_eq!(
        prestop_within(Some("within=40s")),
        Ok(Duration::from_secs(40))
    );
    assert_eq!(
        prestop_within(Some("within=1500ms")),
        Ok(Duration::from_millis(1500))
    );
    for bad in [
        "within=",
        "within=0s",
        "within=2h",
        "within=soon",
        "timeout=5s",
        "within=1s&within=2s",
    ] {
        assert!(prestop_within(Some(bad)).is_err(), "{bad}");
    }
    let (admin, _tx) = admin(&[], leading("pod-b", "x:1", 1));
    let resp = admin
        .handle(Request::get("/prestop?within=forever").body(()).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("within"),
        "{body:?}"
    );
}
