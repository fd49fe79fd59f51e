//! client-go interop: understudy sidecars and client-go leader-election candidates
//! (`tools/leaderelection` with a `LeaseLock` and `ReleaseOnCancel`, built from
//! `k8s.io/client-go v0.37.2` by tests/k8s/build) contend for one Lease on the real API
//! server. Leadership passes both ways, by release on SIGTERM and by expiry after SIGKILL;
//! the overlap checker, over the sidecars' nginx logs and the candidates' own logs, finds no
//! instant with two holders acting; `kubectl get lease` shows a record both sides wrote.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::Value;
use tokio::process::{Child, Command};
use understudy_tests::cluster::control_plane::k8s_bin;
use understudy_tests::cluster::loopback::{Loopback, NAMESPACE, Nginx, Sidecar, free_port, get};
use understudy_tests::cluster::overlap;
use understudy_tests::cluster::sidecar::TEST_TIMINGS;

const LEASE: &str = "interop";

/// A client-go candidate process.
struct Candidate {
    name: String,
    app: SocketAddr,
    access_log: PathBuf,
    child: Option<Child>,
}

impl Candidate {
    async fn start(world: &Loopback, name: &str) -> Candidate {
        let kubeconfig = world.kubeconfig(name).await;
        let app = free_port(std::net::Ipv4Addr::LOCALHOST).await;
        let access_log = world.dir().join(format!("{name}.access.log"));
        let child = Command::new(k8s_bin().unwrap().join("client-go-candidate"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--namespace={NAMESPACE}"))
            .arg(format!("--lease={LEASE}"))
            .arg(format!("--id={name}"))
            // The sidecars' timings.
            .args(TEST_TIMINGS.args())
            .arg(format!("--listen={app}"))
            .arg(format!("--access-log={}", access_log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("client-go-candidate (tests/k8s/build)");
        Candidate {
            name: name.to_string(),
            app,
            access_log,
            child: Some(child),
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    async fn wait_exit(&mut self) {
        let mut child = self.child.take().unwrap();
        tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("exits")
            .unwrap();
    }
}

/// The Lease's holder as the API server has it.
async fn holder(world: &Loopback) -> Option<String> {
    let api: kube::Api<Lease> = kube::Api::namespaced(world.cluster().client(), NAMESPACE);
    api.get_opt(LEASE)
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Waits until the Lease is held by `who`; returns how long that took.
async fn wait_holder(world: &Loopback, who: &str, within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        if holder(world).await.as_deref() == Some(who) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < within,
            "{who} did not take the Lease within {within:?} (holder {:?})",
            holder(world).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a GET every 10ms to each of `targets` until stopped (bounded in time and count):
/// whoever leads logs the requests its app serves; the others hold or refuse them.
fn traffic(
    targets: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(120);
        for _ in 0..20_000 {
            if flag.load(Ordering::SeqCst) || Instant::now() > until {
                return;
            }
            let now: Vec<SocketAddr> = targets.lock().unwrap().clone();
            let sends = now
                .into_iter()
                .map(|t| async move { get(t, "/", Duration::from_millis(300)).await });
            futures::future::join_all(sends).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    (stop, task)
}

/// A sidecar contending with client-go candidates: with the failsafe off, since a foreign
/// candidate gives no promises (docs/election.md: mixed elections).
async fn sidecar(world: &Loopback, name: &str, app: &Nginx) -> Sidecar {
    world
        .sidecar(name)
        .upstream(app.addr)
        .args(&["--failsafe", "off"])
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_passes_both_ways_between_understudy_and_client_go() {
    let world = Loopback::start(LEASE).await;
    let targets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop, load) = traffic(targets.clone());
    let mut logs: BTreeMap<String, PathBuf> = BTreeMap::new();

    // client-go leads first; a sidecar follows it.
    let mut a = Candidate::start(&world, "client-go-a").await;
    logs.insert(a.name.clone(), a.access_log.clone());
    wait_holder(&world, "client-go-a", Duration::from_secs(15)).await;
    let app1 = world.nginx("understudy-1").await;
    logs.insert("understudy-1".into(), app1.access_log.clone());
    let mut u1 = sidecar(&world, "understudy-1", &app1).await;
    targets.lock().unwrap().extend([a.app, u1.listen.unwrap()]);
    let status = u1.admin_get("/status").await.unwrap().1;
    assert!(status.contains("\"leader\":\"client-go-a\""), "{status}");

    // 1. client-go -> understudy, released on SIGTERM: taken through the watch, at once.
    a.signal("-TERM");
    let took = wait_holder(&world, "understudy-1", Duration::from_secs(5)).await;
    assert!(
        took < Duration::from_secs(2),
        "released, not expired: {took:?}"
    );
    a.wait_exit().await;

    // 2. understudy -> client-go, released on SIGTERM.
    let b = Candidate::start(&world, "client-go-b").await;
    logs.insert(b.name.clone(), b.access_log.clone());
    targets.lock().unwrap().push(b.app);
    // b is a follower once it has seen the Lease (it logs nothing until it leads).
    tokio::time::sleep(Duration::from_secs(1)).await;
    u1.sigterm();
    let took = wait_holder(&world, "client-go-b", Duration::from_secs(5)).await;
    assert!(
        took < Duration::from_secs(3),
        "released, not expired: {took:?}"
    );
    assert_eq!(u1.exit_code(Duration::from_secs(20)).await, Some(0));

    // 3. client-go -> understudy by expiry: SIGKILL, no release.
    let app2 = world.nginx("understudy-2").await;
    logs.insert("understudy-2".into(), app2.access_log.clone());
    let mut u2 = sidecar(&world, "understudy-2", &app2).await;
    targets.lock().unwrap().push(u2.listen.unwrap());
    b.signal("-KILL");
    let killed = Instant::now();
    wait_holder(&world, "understudy-2", Duration::from_secs(15)).await;
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "taken before the Lease expired: {:?}",
        killed.elapsed()
    );

    // 4. understudy -> client-go by expiry.
    let c = Candidate::start(&world, "client-go-c").await;
    logs.insert(c.name.clone(), c.access_log.clone());
    targets.lock().unwrap().push(c.app);
    tokio::time::sleep(Duration::from_secs(1)).await;
    u2.sigkill().await;
    let killed = Instant::now();
    wait_holder(&world, "client-go-c", Duration::from_secs(15)).await;
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "taken before the Lease expired: {:?}",
        killed.elapsed()
    );
    // Let c serve a little under its tenure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();

    // `kubectl get lease`: one record, written by both.
    let table = world
        .cluster()
        .kubectl()
        .run(&["get", "lease", LEASE])
        .await
        .unwrap();
    assert!(
        table.contains("HOLDER") && table.contains("client-go-c"),
        "{table}"
    );
    let json: Value = serde_json::from_str(
        &world
            .cluster()
            .kubectl()
            .run(&["get", "lease", LEASE, "-o", "json"])
            .await
            .unwrap(),
    )
    .unwrap();
    let spec = &json["spec"];
    assert_eq!(spec["holderIdentity"], "client-go-c");
    assert_eq!(spec["leaseDurationSeconds"], 3);
    assert_eq!(spec["leaseTransitions"], 4, "four hand-overs: {spec}");
    assert!(spec["acquireTime"].is_string() && spec["renewTime"].is_string());

    // Never two acting at once, and every party served under its own epoch.
    let report = overlap::check_logs(logs.iter().map(|(n, p)| (n.as_str(), p.as_path()))).unwrap();
    assert!(
        report.violations.is_empty(),
        "{:#?}\n{:#?}",
        report.violations,
        report.tenures
    );
    let served: Vec<(&str, u64)> = report
        .tenures
        .iter()
        .map(|t| (t.pod.as_str(), t.epoch))
        .collect();
    assert_eq!(
        served,
        [
            ("client-go-a", 0),
            ("understudy-1", 1),
            ("client-go-b", 2),
            ("understudy-2", 3),
            ("client-go-c", 4)
        ],
        "{:#?}",
        report.tenures
    );
    drop(c);
    world.shutdown().await;
}
