use std::time::Duration;

use clap::Parser;
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
