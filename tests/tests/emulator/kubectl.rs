//! Fidelity with a client nobody here wrote: kubectl (v1.37.2, built by tests/k8s/build),
//! pointed at an emulator through `--kubeconfig` only, runs apply, get, describe, annotate,
//! watch and delete unchanged.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use understudy_tests::cluster::loopback::eventually;
use understudy_tests::emulator::{Emulator, EmulatorOptions, FaultScope};

/// kubectl v1.37.2, built from the pinned module by tests/k8s/build.
fn kubectl_bin() -> PathBuf {
    understudy_tests::cluster::control_plane::k8s_bin()
        .unwrap_or_else(|e| panic!("{e}"))
        .join("kubectl")
}

/// An emulator, a kubeconfig for it, and a private HOME so kubectl's cache is per test.
struct World {
    emu: Emulator,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl World {
    async fn new() -> Self {
        let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = home.path().join("kubeconfig");
        emu.write_kubeconfig("kubectl", &kubeconfig).unwrap();
        Self {
            emu,
            kubeconfig,
            home,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl_bin());
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Run kubectl to completion; its stdout, or a panic with stderr.
    async fn kubectl(&self, args: &[&str]) -> String {
        let run = self.command(args).output();
        let out = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("kubectl finished")
            .expect("kubectl ran");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {stderr}\n{stdout}"
        );
        stdout.into_owned()
    }

    fn put_lease(&self, name: &str, holder: &str) {
        let lease = json!({ "metadata": { "name": name }, "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15 } });
        self.emu.store().put("leases", lease).unwrap();
    }
}

#[tokio::test]
async fn get_describe_annotate_delete() {
    let w = World::new().await;
    w.put_lease("demo", "pod-a");
    // A manifest applied the ordinary way (validation is left to the server, as kubectl
    // decides from the server's OpenAPI index).
    let manifest = w.home.path().join("other.yaml");
    let yaml = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: other\nspec:\n  holderIdentity: pod-b\n";
    std::fs::write(&manifest, yaml).unwrap();
    let out = w
        .kubectl(&["apply", "-f", manifest.to_str().unwrap()])
        .await;
    assert!(
        out.contains("lease.coordination.k8s.io/other created"),
        "{out}"
    );

    let table = w.kubectl(&["get", "lease"]).await;
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "HOLDER", "AGE"], "{table}");
    assert_eq!(&lines[1][..2], ["demo", "pod-a"], "{table}");
    assert_eq!(&lines[2][..2], ["other", "pod-b"], "{table}");

    let json: Value =
        serde_json::from_str(&w.kubectl(&["get", "lease", "demo", "-o", "json"]).await).unwrap();
    assert_eq!(
        (&json["kind"], &json["spec"]["holderIdentity"]),
        (&json!("Lease"), &json!("pod-a"))
    );

    // An event about the lease, written the way a controller would, shows up in describe.
    let client = w.emu.kube_client("elector").await;
    let event: Event = serde_json::from_value(json!({
        "metadata": { "name": "demo.1" },
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "action": "Acquire", "reason": "BecameLeader", "type": "Normal",
        "reportingController": "understudy.io/elector", "reportingInstance": "pod-a",
        "note": "pod-a is the leader",
        "regarding": { "kind": "Lease", "name": "demo", "namespace": "default", "apiVersion": "coordination.k8s.io/v1",
                       "uid": w.emu.store().get("leases", "default", "demo").unwrap()["metadata"]["uid"] },
    }))
    .unwrap();
    Api::<Event>::default_namespaced(client.clone())
        .create(&Default::default(), &event)
        .await
        .unwrap();
    let described = w.kubectl(&["describe", "lease", "demo"]).await;
    assert!(
        described.contains("Holder Identity:") && described.contains("pod-a"),
        "{described}"
    );
    assert!(
        described.contains("BecameLeader") && described.contains("pod-a is the leader"),
        "{described}"
    );

    let out = w
        .kubectl(&["annotate", "lease", "demo", "understudy.io/note=hello"])
        .await;
    assert!(
        out.contains("lease.coordination.k8s.io/demo annotated"),
        "{out}"
    );
    let stored = w.emu.store().get("leases", "default", "demo").unwrap();
    assert_eq!(
        stored["metadata"]["annotations"]["understudy.io/note"],
        "hello"
    );

    let out = w.kubectl(&["delete", "lease", "demo"]).await;
    assert!(
        out.contains(r#"lease.coordination.k8s.io "demo" deleted"#),
        "{out}"
    );
    assert!(w.emu.store().get("leases", "default", "demo").is_none());
    assert_eq!(w.emu.stats().count("kubectl", "delete", "leases"), 1);
}

#[tokio::test]
async fn get_watch_prints_changes_made_through_the_api() {
    let w = World::new().await;
    w.put_lease("demo", "pod-a");
    let mut child = w
        .command(&["get", "lease", "demo", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("a line from kubectl");
        line.unwrap().expect("kubectl still running")
    };
    let header = next().await;
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "HOLDER", "AGE"],
        "{header}"
    );
    let first = next().await;
    assert_eq!(
        first.split_whitespace().take(2).collect::<Vec<_>>(),
        ["demo", "pod-a"],
        "{first}"
    );

    // kubectl prints what it got, then opens its watch from "now" and does not print the
    // watch's first (synthetic ADDED) event: a change made before the watch opens is never
    // printed. So the change waits for the watch.
    let kubectl = FaultScope::Client("kubectl".into());
    eventually(Duration::from_secs(20), || async {
        w.emu.faults().open_watches(kubectl.clone()) == 1
    })
    .await;
    let api: Api<Lease> = Api::default_namespaced(w.emu.kube_client("elector").await);
    let patch = Patch::Merge(json!({ "spec": { "holderIdentity": "pod-b" } }));
    api.patch("demo", &PatchParams::default(), &patch)
        .await
        .unwrap();
    let changed = next().await;
    let cells: Vec<&str> = changed.split_whitespace().collect();
    assert_eq!(&cells[..2], ["demo", "pod-b"], "{changed}");
    child.kill().await.unwrap();
}
