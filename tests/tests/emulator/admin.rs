//! Authentication, request statistics, the admin endpoint and the `kube-emulator` binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use http::Method;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use serde_json::json;

use super::*;

async fn client_from_yaml(yaml: &str) -> Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    let emu = start().await;
    let token = emu.add_client("pod-a");
    assert_eq!(emu.add_client("pod-a"), token, "idempotent");
    let forged = client_from_yaml(&emu.kubeconfig_yaml("pod-a").replace(&token, "forged")).await;
    let api: Api<Lease> = Api::default_namespaced(forged);
    let s = status(api.list(&ListParams::default()).await);
    assert_eq!(
        (s.code, s.reason.as_str(), s.message.as_str()),
        (401, "Unauthorized", "Unauthorized")
    );
}

#[tokio::test]
async fn stats_count_requests_by_client_verb_and_resource() {
    let emu = start().await;
    let api = leases(&emu, "counter").await;
    let l = api
        .create(&PostParams::default(), &lease("l", "c"))
        .await
        .unwrap();
    api.get("l").await.unwrap();
    api.list(&ListParams::default()).await.unwrap();
    let mut w = api
        .watch(&WatchParams::default().disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    w.next().await.unwrap().unwrap();
    api.replace("l", &PostParams::default(), &l).await.unwrap();
    api.patch("l", &PatchParams::default(), &Patch::Merge(json!({})))
        .await
        .unwrap();
    api.delete("l", &DeleteParams::default()).await.unwrap();
    leases(&emu, "other").await.get("l").await.unwrap_err();
    let stats = emu.stats();
    for verb in [
        "create", "get", "list", "watch", "update", "patch", "delete",
    ] {
        assert_eq!(stats.count("counter", verb, "leases"), 1, "{verb}");
    }
    assert_eq!(stats.total("counter"), 7);
    assert_eq!(stats.count("other", "get", "leases"), 1);
}

/// As the audit log's `objectRef.name`: the path's name, or for a list or watch the one its
/// field selector requires; a collection counts under `""`.
#[tokio::test]
async fn stats_name_the_object_a_request_was_about() {
    let emu = start().await;
    let api = leases(&emu, "named").await;
    api.create(&PostParams::default(), &lease("a", "c"))
        .await
        .unwrap();
    api.get("a").await.unwrap();
    let one = ListParams::default().fields("metadata.name=a");
    api.list(&one).await.unwrap();
    api.list(&ListParams::default()).await.unwrap();
    let mut w = api
        .watch(&WatchParams::default().fields("metadata.name==a"), "0")
        .await
        .unwrap()
        .boxed();
    w.next().await.unwrap().unwrap();
    let stats = emu.stats();
    assert_eq!(stats.count_named("named", "create", "leases", ""), 1);
    assert_eq!(stats.count_named("named", "get", "leases", "a"), 1);
    assert_eq!(stats.count_named("named", "list", "leases", "a"), 1);
    assert_eq!(stats.count_named("named", "list", "leases", ""), 1);
    assert_eq!(stats.count_named("named", "watch", "leases", "a"), 1);
    assert_eq!(
        stats.count("named", "list", "leases"),
        2,
        "whatever the name"
    );

    let admin = emu.kube_client("admin").await;
    let (code, json) = get_stats(&admin).await;
    assert_eq!(code, 200);
    let counts = json["counts"].as_array().unwrap();
    for entry in [
        json!({ "client": "named", "verb": "get", "resource": "leases", "name": "a", "count": 1 }),
        json!({ "client": "named", "verb": "list", "resource": "leases", "count": 1 }),
    ] {
        assert!(counts.contains(&entry), "{entry} not in {json}");
    }
}

#[tokio::test]
async fn admin_endpoint_registers_clients_sets_faults_and_reports_stats() {
    let emu = start().await;
    let admin = emu.kube_client("admin").await;
    let (code, _, yaml) = raw(
        &admin,
        Method::POST,
        "/emulator/v1/clients",
        "application/json",
        r#"{"name":"late"}"#,
    )
    .await;
    assert_eq!(code, 200);
    let late: Api<Lease> = Api::default_namespaced(client_from_yaml(yaml.as_str().unwrap()).await);
    late.list(&ListParams::default()).await.unwrap();

    let fault = r#"{"scope":{"client":"late"},"fault":{"error_rate":1.0,"error_code":500}}"#;
    let (code, _, _) = raw(
        &admin,
        Method::POST,
        "/emulator/v1/faults",
        "application/json",
        fault,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(status(late.list(&ListParams::default()).await).code, 500);
    let (code, _, body) = raw(
        &admin,
        Method::POST,
        "/emulator/v1/faults",
        "application/json",
        r#"{"outage":true,"heal":true}"#,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    raw(
        &admin,
        Method::POST,
        "/emulator/v1/faults",
        "application/json",
        r#"{"clear_all":true}"#,
    )
    .await;
    late.list(&ListParams::default()).await.unwrap();

    let (code, stats) = get_stats(&admin).await;
    assert_eq!(code, 200);
    assert_eq!(stats["totals"]["late"], 3, "{stats}");
    assert!(
        stats["counts"].as_array().unwrap().contains(
            &json!({ "client": "late", "verb": "list", "resource": "leases", "count": 3 })
        )
    );

    let (code, s) = get_stats(&emu.kube_client("pod-a").await).await;
    assert_eq!((code, s["reason"].as_str()), (403, Some("Forbidden")));
}

#[tokio::test]
async fn plain_http_mode_serves_http() {
    let emu = start_with(|o| o.tls = false).await;
    assert!(emu.server_url().starts_with("http://127.0.0.1:"));
    assert!(!emu.kubeconfig_yaml("c").contains("certificate-authority"));
    leases(&emu, "c")
        .await
        .create(&PostParams::default(), &lease("l", "c"))
        .await
        .unwrap();
}

/// Kills the child on drop so a failing test leaves no process behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_writes_kubeconfigs_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let admin_path = dir.path().join("admin.kubeconfig");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_kube-emulator"))
            .args(["--listen", "127.0.0.1:0", "--kubeconfig-out"])
            .arg(&admin_path)
            .args(["--client", "pod-a", "--client", "pod-b", "--kubeconfig-dir"])
            .arg(dir.path().join("clients"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .expect("ready line")
        .unwrap()
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("kube-emulator listening on ")
        .unwrap_or_else(|| panic!("{line:?}"));
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let admin = client_from_yaml(&std::fs::read_to_string(&admin_path).unwrap()).await;
    let pod_a = client_from_yaml(
        &std::fs::read_to_string(dir.path().join("clients/pod-a.kubeconfig")).unwrap(),
    )
    .await;
    Api::<Lease>::default_namespaced(pod_a)
        .create(&PostParams::default(), &lease("l", "pod-a"))
        .await
        .unwrap();
    let (code, stats) = get_stats(&admin).await;
    assert_eq!(
        (code, &stats["totals"]["pod-a"]),
        (200, &json!(1)),
        "{stats}"
    );
    assert!(dir.path().join("clients/pod-b.kubeconfig").exists());

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn shutdown_ends_watches_and_refuses_new_requests() {
    let emu = start().await;
    let api = leases(&emu, "c").await;
    api.create(&PostParams::default(), &lease("l", "c"))
        .await
        .unwrap();
    let mut w = api
        .watch(&WatchParams::default().disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    assert!(w.next().await.unwrap().is_ok());
    emu.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("the watch ends");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
    let err = tokio::time::timeout(Duration::from_secs(5), api.get("l"))
        .await
        .expect("refused quickly");
    assert!(err.is_err());
}
