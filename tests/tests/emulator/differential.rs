//! The emulator held to the real API server: the sequence of requests understudy makes —
//! Lease get, create, update (with a current, a stale and no resourceVersion), watch (from
//! a resourceVersion, with bookmarks allowed, resumed, and from one too old), a Pod label
//! patch, an Event — sent as raw HTTP through the same kube client to the emulator and to a
//! real kube-apiserver v1.37.2, and the answers compared field by field: status code, body
//! (a `Status` for errors), watch events in order. Fields that name a server rather than
//! the state (uid, resourceVersion, creation time, managed fields) are compared by presence.
//! The emulator stays for faults the real server cannot be made to show (docs/emulator.md);
//! this keeps it honest for everything else.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use understudy_tests::cluster::{Cluster, ClusterOptions};
use understudy_tests::emulator::{Emulator, EmulatorOptions};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
const PODS: &str = "/api/v1/namespaces/default/pods";
const EVENTS: &str = "/api/v1/namespaces/default/events";

/// One server under test.
struct Server {
    name: &'static str,
    client: kube::Client,
}

/// One answer: HTTP status and body (JSON; a watch's events as an array).
type Answer = (u16, Value);

impl Server {
    async fn call(&self, method: Method, path: &str, body: Option<(&str, Value)>) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        let bytes = match body {
            Some((content_type, v)) => {
                req = req.header(http::header::CONTENT_TYPE, content_type);
                serde_json::to_vec(&v).unwrap()
            }
            None => Vec::new(),
        };
        let resp = tokio::time::timeout(
            Duration::from_secs(20),
            self.client
                .send(req.body(kube::client::Body::from(bytes)).unwrap()),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: {path} timed out", self.name))
        .unwrap_or_else(|e| panic!("{}: {path}: {e}", self.name));
        let status = resp.status().as_u16();
        let body: Bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        // A watch answers with one JSON event per line.
        let value = if path.contains("watch=1") {
            Value::Array(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect(),
            )
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.into_owned()))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(("application/json", body)))
            .await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(("application/json", body)))
            .await
    }
}

/// A Lease as the elector writes it, renewed at second `renewed` past 06:00.
fn lease_at(name: &str, holder: &str, rv: Option<&str>, transitions: i64, renewed: u32) -> Value {
    let mut meta = json!({ "name": name, "namespace": "default" });
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 3,
            "acquireTime": "2026-11-30T06:00:00.123456Z",
            "renewTime": format!("2026-11-30T06:00:{renewed:02}.654321Z"),
            "leaseTransitions": transitions,
        },
    })
}

/// A Lease as the elector writes it first.
fn lease(name: &str, holder: &str, rv: Option<&str>, transitions: i64) -> Value {
    lease_at(name, holder, rv, transitions, 1)
}

fn rv_of(a: &Answer) -> String {
    a.1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {}", a.1))
        .to_string()
}

/// What is compared of an answer: server-specific metadata replaced by whether it was
/// there; bookmarks dropped from watches (when a server sends one is its own business); a
/// null field counts as absent (as it does for every client). Not compared: managed
/// fields (server-side apply bookkeeping, which understudy neither sends nor reads), and of
/// a Pod only its metadata (the API server fills in defaults of the pod spec and status;
/// the sidecar only patches labels and reads them back).
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut out = serde_json::Map::new();
            let pod = o.get("kind") == Some(&json!("Pod"));
            for (k, x) in o {
                if x.is_null() || k == "managedFields" || (pod && (k == "spec" || k == "status")) {
                    continue;
                }
                let x = match k.as_str() {
                    "uid" | "resourceVersion" | "creationTimestamp" | "selfLink" => {
                        json!(format!("<{}>", x.is_string()))
                    }
                    "metadata" if pod => {
                        // 1.37 counts pod spec changes; the emulator serves no pod spec.
                        let mut m = x.clone();
                        m.as_object_mut().map(|m| m.remove("generation"));
                        normalize(&m)
                    }
                    _ => normalize(x),
                };
                out.insert(k.clone(), x);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|e| e["type"] != "BOOKMARK")
                .map(normalize)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Runs understudy's sequence of requests against `s`; every answer, named by its step.
async fn script(s: &Server) -> Vec<(&'static str, Answer)> {
    let mut out = Vec::new();
    let one = format!("{LEASES}/diff");
    out.push(("get a Lease that does not exist", s.get(&one).await));
    let created = s.post(LEASES, lease("diff", "pod-a", None, 0)).await;
    let rv0 = rv_of(&created);
    out.push(("create it", created));
    out.push((
        "create it again",
        s.post(LEASES, lease("diff", "pod-b", None, 0)).await,
    ));
    out.push(("get it", s.get(&one).await));
    let renewed = s
        .put(&one, lease_at("diff", "pod-a", Some(&rv0), 0, 2))
        .await;
    let rv1 = rv_of(&renewed);
    out.push(("renew (update with the current resourceVersion)", renewed));
    out.push((
        "take over with a stale resourceVersion",
        s.put(&one, lease("diff", "pod-b", Some(&rv0), 1)).await,
    ));
    let released = s.put(&one, lease_at("diff", "", Some(&rv1), 0, 3)).await;
    out.push(("release (holder empty)", released));
    out.push((
        "update without a resourceVersion",
        s.put(&one, lease("diff", "pod-c", None, 1)).await,
    ));
    out.push((
        "update with a name that is not the URL's",
        s.put(&one, lease("other", "pod-c", None, 1)).await,
    ));
    out.push((
        "an invalid Lease (negative duration)",
        s.post(LEASES, {
            let mut l = lease("bad", "x", None, 0);
            l["spec"]["leaseDurationSeconds"] = json!(-1);
            l
        })
        .await,
    ));
    // The watch the elector opens: by name, from the resourceVersion it read, bookmarks
    // allowed; it replays what happened since.
    out.push((
        "watch by name from the first resourceVersion",
        s.get(&format!(
            "{LEASES}?watch=1&fieldSelector=metadata.name%3Ddiff&resourceVersion={rv0}&allowWatchBookmarks=true&timeoutSeconds=1"
        ))
        .await,
    ));
    out.push((
        "watch another name from the same resourceVersion",
        s.get(&format!(
            "{LEASES}?watch=1&fieldSelector=metadata.name%3Dnone&resourceVersion={rv0}&timeoutSeconds=1"
        ))
        .await,
    ));
    // A watch from a resourceVersion older than the server keeps: 410 Gone, and the
    // client must re-list. Enough writes that both servers' windows (the emulator's
    // 1000 events, the API server's watch cache) have moved past the first one.
    let mut rv = rv_of(&s.get(&one).await);
    for i in 0..1100u32 {
        let next = s
            .put(&one, lease_at("diff", "pod-c", Some(&rv), 1, i % 60))
            .await;
        assert_eq!(next.0, 200, "{}: write {i}: {}", s.name, next.1);
        rv = rv_of(&next);
    }
    // The API server forgets old revisions when etcd is compacted (every 2s here, without a
    // watch cache for Leases, so the watch goes to etcd): until then it replays them.
    let too_old = format!(
        "{LEASES}?watch=1&fieldSelector=metadata.name%3Ddiff&resourceVersion={rv0}&timeoutSeconds=1"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let gone = loop {
        let answer = s.get(&too_old).await;
        let expired = answer.1[0]["object"]["code"] == 410 || answer.0 == 410;
        if expired || tokio::time::Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // Its message depends on which layer noticed (the watch cache's names both versions,
    // etcd's does not; the emulator says what the watch cache says): compare the rest.
    let mut gone = gone;
    if let Some(m) = gone
        .1
        .get_mut(0)
        .and_then(|e| e["object"].get_mut("message"))
    {
        *m = json!("<too old>");
    }
    out.push(("watch from a resourceVersion too old", gone));
    // Pods: the sidecar labels its own.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "app-0", "namespace": "default", "labels": { "app": "demo" } },
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [{ "name": "app", "image": "nginx" }],
        },
    });
    let (code, _) = s.post(PODS, pod).await;
    assert_eq!(code, 201, "{}: create the pod", s.name);
    out.push((
        "label a pod (merge patch)",
        s.call(
            Method::PATCH,
            &format!("{PODS}/app-0"),
            Some((
                "application/merge-patch+json",
                json!({ "metadata": { "labels": { "understudy.io/role": "leader", "understudy.io/slot": "0" } } }),
            )),
        )
        .await,
    ));
    out.push((
        "unlabel it (merge patch with null)",
        s.call(
            Method::PATCH,
            &format!("{PODS}/app-0"),
            Some((
                "application/merge-patch+json",
                json!({ "metadata": { "labels": { "understudy.io/slot": null } } }),
            )),
        )
        .await,
    ));
    out.push((
        "label a pod that does not exist",
        s.call(
            Method::PATCH,
            &format!("{PODS}/none"),
            Some((
                "application/merge-patch+json",
                json!({ "metadata": { "labels": { "a": "b" } } }),
            )),
        )
        .await,
    ));
    // An Event as the sidecar records one.
    out.push((
        "record an Event",
        s.post(
            EVENTS,
            json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": { "name": "diff.1", "namespace": "default" },
                "involvedObject": {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "name": "diff", "namespace": "default",
                },
                "reason": "LeaderElection", "message": "pod-a became leader", "type": "Normal",
                "source": { "component": "understudy", "host": "pod-a" },
                "reportingComponent": "understudy", "reportingInstance": "pod-a",
                "count": 1,
            }),
        )
        .await,
    ));
    out
}

/// The real API server, with the two Roles' worth of objects the script needs.
async fn real() -> (Cluster, Server) {
    let cluster = Cluster::start(ClusterOptions {
        apiserver_args: vec![
            "--etcd-compaction-interval=2s".into(),
            "--watch-cache-sizes=leases.coordination.k8s.io#0".into(),
        ],
        ..ClusterOptions::api_only()
    })
    .await
    .unwrap();
    // The admission plugin wants the pod's ServiceAccount to exist (the serviceaccount
    // controller is not running: API only).
    cluster
        .kubectl()
        .run(&["create", "serviceaccount", "default", "-n", "default"])
        .await
        .unwrap();
    let client = cluster.client();
    (
        cluster,
        Server {
            name: "kube-apiserver",
            client,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_answers_understudys_requests_as_the_real_api_server_does() {
    let (cluster, real) = real().await;
    let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let emulated = Server {
        name: "emulator",
        client: emu.kube_client("admin").await,
    };
    let want = script(&real).await;
    // The script does what its steps say (on the real server).
    let code = |step: &str| want.iter().find(|(s, _)| *s == step).unwrap().1.0;
    for (step, expected) in [
        ("get a Lease that does not exist", 404),
        ("create it", 201),
        ("create it again", 409),
        ("renew (update with the current resourceVersion)", 200),
        ("take over with a stale resourceVersion", 409),
        ("update without a resourceVersion", 422),
        ("update with a name that is not the URL's", 400),
        ("an invalid Lease (negative duration)", 422),
        ("label a pod (merge patch)", 200),
        ("label a pod that does not exist", 404),
        ("record an Event", 201),
    ] {
        assert_eq!(code(step), expected, "{step}");
    }
    let events = |step: &str| want.iter().find(|(s, _)| *s == step).unwrap().1.1.clone();
    assert_eq!(
        events("watch by name from the first resourceVersion")
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "MODIFIED")
            .count(),
        2,
        "the renewal and the release are replayed"
    );
    assert_eq!(
        events("watch from a resourceVersion too old")[0]["object"]["code"],
        410
    );
    let got = script(&emulated).await;
    let mut differences = Vec::new();
    for ((step, a), (_, b)) in want.iter().zip(&got) {
        let (a, b) = ((a.0, normalize(&a.1)), (b.0, normalize(&b.1)));
        if a != b {
            let short = |v: &Value| {
                let t = v.to_string();
                if t.len() > 800 {
                    format!("{}… ({} bytes)", &t[..800], t.len())
                } else {
                    t
                }
            };
            differences.push(format!(
                "{step}:\n  kube-apiserver: {} {}\n  emulator:       {} {}",
                a.0,
                short(&a.1),
                b.0,
                short(&b.1)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} answers differ:\n{}",
        differences.len(),
        want.len(),
        differences.join("\n")
    );
    emu.shutdown().await;
    cluster.shutdown().await.unwrap();
}
