//! The kubectl plugin (`kubectl-understudy`) against the real API server (RBAC on): the test
//! writes the Leases an election would have (an election Lease with a holder, member Leases
//! fresh, not ready and stale), plays the holder's side of a switchover itself, and runs the
//! plugin binary as a user would, authenticated as a ServiceAccount bound to exactly the Role
//! docs/kubectl-plugin.md documents.
//!
//! The plugin binary: `$KUBECTL_UNDERSTUDY_BIN`, else `target/debug/kubectl-understudy`
//! beside the test (built first with `cargo build -p kubectl-understudy`).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use futures::TryStreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use understudy_tests::cluster::loopback::{Loopback, NAMESPACE};

/// The Role docs/kubectl-plugin.md documents, bound to ServiceAccount `kubectl-understudy`.
const PLUGIN_RBAC: &str = "\
apiVersion: v1
kind: ServiceAccount
metadata: {name: kubectl-understudy}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: kubectl-understudy}
rules:
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, list, watch, patch]
  - apiGroups: [\"\"]
    resources: [events]
    verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: kubectl-understudy}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: kubectl-understudy}
subjects: [{kind: ServiceAccount, name: kubectl-understudy}]
";

/// A ServiceAccount that may only get Leases (no list).
const GET_ONLY_RBAC: &str = "\
apiVersion: v1
kind: ServiceAccount
metadata: {name: lease-getter}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: lease-getter}
rules: [{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: lease-getter}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: lease-getter}
subjects: [{kind: ServiceAccount, name: lease-getter}]
";

/// A ServiceAccount that may do everything with Leases the plugin does, but not list Events.
const NO_EVENTS_RBAC: &str = "\
apiVersion: v1
kind: ServiceAccount
metadata: {name: no-events}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: no-events}
rules: [{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, list, watch, patch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: no-events}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: no-events}
subjects: [{kind: ServiceAccount, name: no-events}]
";

// === the plugin ===

/// The plugin binary (see the module docs).
fn plugin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(locate)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("KUBECTL_UNDERSTUDY_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    let dir = exe.parent().ok_or("executable has no directory")?;
    let dir = if dir.ends_with("deps") {
        dir.parent().ok_or("deps has no parent")?
    } else {
        dir
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(&cargo)
        .args(["build", "--quiet", "-p", "kubectl-understudy"])
        .status()
        .map_err(|e| format!("run {cargo} build: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build -p kubectl-understudy` failed ({status})"
        ));
    }
    let bin = dir.join("kubectl-understudy");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} missing: build it with `cargo build -p kubectl-understudy`, or set KUBECTL_UNDERSTUDY_BIN",
            bin.display()
        ))
    }
}

/// One run of the plugin: its exit code, stdout and stderr.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `kubectl-understudy args…` with `kubeconfig` as `$KUBECONFIG`.
async fn run(kubeconfig: &Path, args: &[&str]) -> Run {
    let out: Output = tokio::process::Command::new(plugin())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run kubectl-understudy {args:?}: {e}"));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// === the world ===

/// The API server, the plugin's kubeconfig, and an admin client for the Leases.
struct World {
    loopback: Loopback,
    kubeconfig: PathBuf,
    leases: Api<Lease>,
}

impl World {
    async fn start(name: &str) -> World {
        // Built (or found) first: the Leases' ages are measured from their creation.
        tokio::task::spawn_blocking(plugin)
            .await
            .expect("the plugin binary");
        let loopback = Loopback::start(name).await;
        let cluster = loopback.cluster();
        cluster
            .kubectl()
            .run_with_input(&["apply", "-n", NAMESPACE, "-f", "-"], Some(PLUGIN_RBAC))
            .await
            .unwrap_or_else(|e| panic!("the plugin's Role: {e}"));
        let kubeconfig = loopback.dir().join("kubectl-understudy.kubeconfig");
        cluster
            .write_service_account_kubeconfig(
                NAMESPACE,
                "kubectl-understudy",
                cluster.api(),
                &kubeconfig,
            )
            .await
            .unwrap_or_else(|e| panic!("the plugin's kubeconfig: {e}"));
        let leases = Api::namespaced(cluster.client(), NAMESPACE);
        World {
            loopback,
            kubeconfig,
            leases,
        }
    }

    async fn plugin(&self, args: &[&str]) -> Run {
        run(&self.kubeconfig, args).await
    }

    /// Election `name`: Lease `name` held by pod-a (epoch 3, acquired 5 minutes ago, failsafe
    /// member set written), member pod-a fresh and ready with priority 5, pod-b fresh but
    /// ready=false, pod-c stale.
    async fn election(&self, name: &str) {
        let now = Timestamp::now();
        self.create(json!({
            "metadata": {"name": name, "annotations": {
                "understudy.io/address": "10.0.0.1:8080",
                "understudy.io/members": "pod-a,pod-b,pod-c",
                "understudy.io/member-expiry-seconds": "600",
            }},
            "spec": {"holderIdentity": "pod-a", "leaseTransitions": 3, "leaseDurationSeconds": 15,
                     "acquireTime": micro(now - SignedDuration::from_mins(5)),
                     "renewTime": micro(now)},
        }))
        .await;
        self.member(
            name,
            "pod-a",
            0,
            json!({"understudy.io/ready": "true", "understudy.io/priority": "5"}),
        )
        .await;
        self.member(name, "pod-b", 0, json!({"understudy.io/ready": "false"}))
            .await;
        self.member(name, "pod-c", 300, json!({})).await;
    }

    /// Member Lease of `pod` in `election`, renewed `ago` seconds ago.
    async fn member(&self, election: &str, pod: &str, ago: i64, annotations: Value) {
        let mut all = json!({"understudy.io/address": format!("{pod}.example:8080")});
        all.as_object_mut()
            .unwrap()
            .extend(annotations.as_object().unwrap().clone());
        let renewed = Timestamp::now() - SignedDuration::from_secs(ago);
        self.create(json!({
            "metadata": {"name": format!("{election}-member-{pod}"),
                         "labels": {"understudy.io/election": election},
                         "annotations": all},
            "spec": {"holderIdentity": pod, "leaseDurationSeconds": 60,
                     "acquireTime": micro(renewed), "renewTime": micro(renewed)},
        }))
        .await;
    }

    async fn create(&self, lease: Value) {
        let lease: Lease = serde_json::from_value(lease).expect("a Lease");
        self.leases
            .create(&PostParams::default(), &lease)
            .await
            .unwrap_or_else(|e| panic!("create {:?}: {e}", lease.metadata.name));
    }

    async fn get(&self, name: &str) -> Lease {
        self.leases
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"))
    }

    /// Waits (up to 20 s) until Lease `name` carries a handover request; returns it.
    async fn requested(&self, name: &str) -> (Lease, String) {
        let find = |l: &Lease| {
            l.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("understudy.io/handover-to").cloned())
        };
        let current = self.get(name).await;
        if let Some(to) = find(&current) {
            return (current, to);
        }
        let rv = current.metadata.resource_version.clone().unwrap();
        let params = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(20);
        let stream = self.leases.watch(&params, &rv).await.expect("watch");
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.try_next().await.expect("a watch event") {
            if let WatchEvent::Modified(l) = event
                && let Some(to) = find(&l)
            {
                return (l, to);
            }
        }
        panic!("no handover request on {name} within 20s");
    }
}

/// RFC 3339 with microseconds, as Lease times are written.
fn micro(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

fn annotations(l: &Lease) -> std::collections::BTreeMap<String, String> {
    l.metadata.annotations.clone().unwrap_or_default()
}

// === status ===

#[tokio::test]
async fn status_tables_json_and_errors() {
    let w = World::start("plugin-status").await;
    w.election("web").await;

    // The table: one slot, three members.
    let r = w.plugin(&["status", "web"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let rows: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        rows[0],
        [
            "ELECTION",
            "SLOT",
            "LEASE",
            "HOLDER",
            "EPOCH",
            "HELD",
            "RENEWED",
            "FAILSAFE",
            "SWITCHOVER"
        ],
        "{r:?}"
    );
    assert_eq!(rows[1][..5], ["web", "0", "web", "pod-a", "3"], "{r:?}");
    assert!(rows[1][5].starts_with('5'), "held about 5m: {r:?}");
    assert_eq!(rows[1][7], "on", "{r:?}");
    let members: Vec<&Vec<&str>> = rows
        .iter()
        .filter(|r| r.len() == 8 && r[0] == "web")
        .collect();
    assert_eq!(members[0][1..5], ["pod-a", "live", "true", "5"], "{r:?}");
    assert_eq!(members[0][6], "leader", "{r:?}");
    assert_eq!(
        members[1][1..5],
        ["pod-b", "not-ready", "false", "-"],
        "{r:?}"
    );
    assert_eq!(members[2][1..5], ["pod-c", "stale", "-", "-"], "{r:?}");

    // The JSON document.
    let r = w.plugin(&["status", "web", "-o", "json"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let doc: Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(doc["namespace"], NAMESPACE);
    let e = &doc["elections"][0];
    assert_eq!(
        (e["name"].as_str(), e["actives"].as_u64()),
        (Some("web"), Some(1))
    );
    let slot = &e["slots"][0];
    assert_eq!(slot["holder"], "pod-a");
    assert_eq!(slot["epoch"], 3);
    assert_eq!(slot["leaseDurationSeconds"], 15);
    let held = slot["heldSeconds"].as_u64().unwrap();
    assert!((295..=330).contains(&held), "held {held}s");
    assert_eq!(slot["failsafe"]["on"], true);
    assert_eq!(
        slot["failsafe"]["members"],
        json!(["pod-a", "pod-b", "pod-c"])
    );
    assert_eq!(slot["failsafe"]["possiblyActingOnConfirmations"], false);
    let health: Vec<(&str, &str)> = e["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["pod"].as_str().unwrap(), m["health"].as_str().unwrap()))
        .collect();
    assert_eq!(
        health,
        [
            ("pod-a", "live"),
            ("pod-b", "not-ready"),
            ("pod-c", "stale")
        ]
    );
    assert_eq!(e["members"][0]["holds"], json!([0]));
    assert_eq!(e["members"][0]["priority"], 5);

    // Without an election: every election with members, here `web` and a two-slot `db`.
    let now = Timestamp::now();
    for (slot, holder) in [(0, "db-x"), (1, "db-y")] {
        w.create(json!({
            "metadata": {"name": format!("db-{slot}")},
            "spec": {"holderIdentity": holder, "leaseTransitions": 1, "leaseDurationSeconds": 15,
                     "acquireTime": micro(now), "renewTime": micro(now)},
        }))
        .await;
    }
    w.member("db", "db-x", 0, json!({"understudy.io/actives": "2"}))
        .await;
    let r = w.plugin(&["status", "-o", "json"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let doc: Value = serde_json::from_str(&r.stdout).expect("JSON");
    let names: Vec<&str> = doc["elections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db", "web"]);
    let db = &doc["elections"][0];
    assert_eq!(db["actives"], 2);
    assert_eq!(db["slots"][1]["lease"], "db-1");
    assert_eq!(db["slots"][1]["holder"], "db-y");
    let r = w.plugin(&["status"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.contains("web ") && r.stdout.contains("db-1"),
        "{r:?}"
    );

    // --kubeconfig instead of $KUBECONFIG, and -n.
    let r = run(
        Path::new("/nonexistent"),
        &[
            "status",
            "web",
            "--kubeconfig",
            w.kubeconfig.to_str().unwrap(),
            "-n",
            NAMESPACE,
        ],
    )
    .await;
    assert_eq!(r.code, Some(0), "{r:?}");

    // No such election.
    let r = w.plugin(&["status", "nope"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        r.stderr.trim(),
        format!(
            "Error from server (NotFound): election \"nope\" not found in namespace \"{NAMESPACE}\""
        ),
    );

    // A ServiceAccount that may not list Leases.
    let cluster = w.loopback.cluster();
    cluster
        .kubectl()
        .run_with_input(&["apply", "-n", NAMESPACE, "-f", "-"], Some(GET_ONLY_RBAC))
        .await
        .unwrap_or_else(|e| panic!("the get-only Role: {e}"));
    let getter = w.loopback.dir().join("lease-getter.kubeconfig");
    cluster
        .write_service_account_kubeconfig(NAMESPACE, "lease-getter", cluster.api(), &getter)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for args in [&["status"][..], &["status", "web"]] {
        let r = run(&getter, args).await;
        assert_eq!(r.code, Some(1), "{r:?}");
        assert!(
            r.stderr.starts_with("Error from server (Forbidden): "),
            "{r:?}"
        );
        assert!(
            r.stderr.contains("cannot list resource \"leases\""),
            "{r:?}"
        );
        assert!(
            r.stderr
                .contains("(the plugin needs get/list/watch/patch on leases)"),
            "{r:?}"
        );
    }

    // Usage errors: exit 1, kubectl style.
    let r = w.plugin(&["status", "-o", "yaml"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.starts_with("error: "), "{r:?}");
}

// === switchover ===

#[tokio::test]
async fn switchover_refused_before_writing() {
    let w = World::start("plugin-refusals").await;
    w.election("web").await;
    let before = w.get("web").await;

    for (to, why) in [
        ("pod-x", "(no member Lease web-member-pod-x)"),
        ("pod-b", "(it reports ready=false)"),
        ("pod-c", "(its member Lease is stale: last renewed"),
    ] {
        let r = w.plugin(&["switchover", "web", "--to", to]).await;
        assert_eq!(r.code, Some(1), "{r:?}");
        assert!(
            r.stderr
                .contains(&format!("{to} is not a healthy member of web {why}")),
            "{r:?}"
        );
    }
    let r = w.plugin(&["switchover", "web", "--to", "pod-a"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("pod-a already holds web"), "{r:?}");
    let r = w.plugin(&["switchover", "nope"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr
            .contains("Error from server (NotFound): election \"nope\" not found"),
        "{r:?}"
    );
    // Nothing was written.
    let after = w.get("web").await;
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );

    // No leader.
    w.create(json!({"metadata": {"name": "idle"}, "spec": {"holderIdentity": ""}}))
        .await;
    let r = w.plugin(&["switchover", "idle"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("idle has no leader to switch over from"),
        "{r:?}"
    );
}

#[tokio::test]
async fn switchover_outcomes() {
    let w = World::start("plugin-switchover").await;
    w.election("web").await;

    // Handed over: the test plays the holder and gives the slot to pod-d.
    let member = w.member("web", "pod-d", 0, json!({"understudy.io/ready": "true"}));
    member.await;
    let holder = async {
        let (mut lease, to) = w.requested("web").await;
        assert_eq!(to, "pod-d");
        let spec = lease.spec.as_mut().unwrap();
        spec.holder_identity = Some(to);
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.acquire_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            Timestamp::now(),
        ));
        lease
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove("understudy.io/handover-to");
        w.leases
            .replace("web", &PostParams::default(), &lease)
            .await
            .expect("replace the Lease");
    };
    let (r, ()) = tokio::join!(
        w.plugin(&["switchover", "web", "--to", "pod-d", "--wait", "10s"]),
        holder
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout
            .contains("switched over: pod-a -> pod-d (epoch 4, took "),
        "{r:?}"
    );

    // Refused: the holder (now pod-d) removes the request and says why in an Event.
    let holder = async {
        let (_, to) = w.requested("web").await;
        assert_eq!(to, "", "any healthy standby");
        w.leases
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"understudy.io/handover-to": null}}}),
                ),
            )
            .await
            .expect("remove the request");
        let now = Timestamp::now();
        let event: Event = serde_json::from_value(json!({
            "metadata": {"generateName": "web.", "namespace": NAMESPACE},
            "involvedObject": {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                               "name": "web", "namespace": NAMESPACE},
            "reason": "HandoverRefused", "type": "Warning", "count": 1,
            "message": "no healthy standby to hand over to",
            "source": {"component": "understudy"},
            "firstTimestamp": now.to_string(), "lastTimestamp": now.to_string(),
        }))
        .unwrap();
        Api::<Event>::namespaced(w.loopback.cluster().client(), NAMESPACE)
            .create(&PostParams::default(), &event)
            .await
            .expect("create the Event");
    };
    let (r, ()) = tokio::join!(w.plugin(&["switchover", "web", "--wait", "10s"]), holder);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr
            .contains("switchover refused by pod-d: no healthy standby to hand over to"),
        "{r:?}"
    );

    // Refused, as seen by a user who may not list Events: refused all the same.
    let cluster = w.loopback.cluster();
    cluster
        .kubectl()
        .run_with_input(&["apply", "-n", NAMESPACE, "-f", "-"], Some(NO_EVENTS_RBAC))
        .await
        .unwrap_or_else(|e| panic!("the Role without events: {e}"));
    let no_events = w.loopback.dir().join("no-events.kubeconfig");
    cluster
        .write_service_account_kubeconfig(NAMESPACE, "no-events", cluster.api(), &no_events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let holder = async {
        w.requested("web").await;
        w.leases
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"understudy.io/handover-to": null}}}),
                ),
            )
            .await
            .expect("remove the request");
    };
    let (r, ()) = tokio::join!(
        run(&no_events, &["switchover", "web", "--wait", "10s"]),
        holder
    );
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains(
            "switchover refused by pod-d; its reason could not be read: Error from server (Forbidden): "
        ),
        "{r:?}"
    );

    // Nobody answers.
    let r = w.plugin(&["switchover", "web", "--wait", "1s"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr
            .contains("no switchover within 1s: holder still pod-d (annotation still set)"),
        "{r:?}"
    );
    assert_eq!(
        annotations(&w.get("web").await)
            .get("understudy.io/handover-to")
            .map(String::as_str),
        Some("")
    );

    // --wait 0: the request is written, nothing waited for.
    w.leases
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"understudy.io/handover-to": null}}}),
            ),
        )
        .await
        .expect("clear the request");
    let r = w
        .plugin(&["switchover", "web", "--to", "pod-a", "--wait", "0"])
        .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout
            .contains("switchover requested: web (lease web): pod-d -> pod-a"),
        "{r:?}"
    );
    assert_eq!(
        annotations(&w.get("web").await)
            .get("understudy.io/handover-to")
            .map(String::as_str),
        Some("pod-a")
    );
}

/// The plugin against three real sidecars (the same API server): `status` shows what the
/// sidecars write (the holder, every member live and ready with its priority), and
/// `switchover --to` moves the leader, the holder itself carrying it out.
#[tokio::test]
async fn status_and_switchover_against_real_sidecars() {
    use understudy_tests::cluster::loopback::{Sidecar, agreed_leader};
    let w = World::start("plugin-real").await;
    let pods = w.loopback.three(&["--priority", "3"]).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let old = agreed_leader(&all, std::time::Duration::from_secs(15)).await;
    w.loopback
        .wait_members_named(
            "plugin-real",
            &["pod-a", "pod-b", "pod-c"],
            std::time::Duration::from_secs(5),
        )
        .await;

    let r = w.plugin(&["status", "plugin-real", "-o", "json"]).await;
    assert_eq!(r.code, Some(0), "{r:?}");
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    let e = &doc["elections"][0];
    assert_eq!(e["actives"], 1, "{doc}");
    assert_eq!(e["slots"][0]["holder"], old.as_str(), "{doc}");
    let members: Vec<(String, Value, Value, Value)> = e["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let pod = m["pod"].as_str().unwrap().to_string();
            (
                pod,
                m["health"].clone(),
                m["ready"].clone(),
                m["priority"].clone(),
            )
        })
        .collect();
    let expected: Vec<(String, Value, Value, Value)> = ["pod-a", "pod-b", "pod-c"]
        .iter()
        .map(|p| (p.to_string(), json!("live"), json!(true), json!(3)))
        .collect();
    assert_eq!(members, expected, "{doc}");

    let target = pods.iter().find(|p| p.name != old).unwrap().name.clone();
    let r = w
        .plugin(&[
            "switchover",
            "plugin-real",
            "--to",
            &target,
            "--wait",
            "30s",
        ])
        .await;
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("switched over: {old} -> {target} (epoch ")),
        "{r:?}"
    );
    assert_eq!(
        agreed_leader(&all, std::time::Duration::from_secs(5)).await,
        target
    );
}
