//! Failure scenarios on the local cluster (`understudy_tests::cluster`): a real control plane
//! (etcd, kube-apiserver with RBAC, the controller manager, the scheduler, kube-proxy),
//! `deploy/examples/nginx-ha` applied with `kubectl apply -k` at test timings, its pods run by
//! the test kubelet in network namespaces, load sent to the Service's ClusterIP. Each
//! scenario is bounded in time, asserts its outcome and prints one line for benchmarks:
//! `scenario=<name> requests=N failures=N max_gap_ms=N …` (also appended to
//! `$UNDERSTUDY_SUMMARY_FILE` when set).
//!
//! Needs root (namespaces, iptables); fails with a clear message otherwise. Scenarios run
//! one at a time (a lock file), because their timings (lease 3s, renew deadline 2s, retry
//! 500ms) should not compete with each other for the CPU.

mod failsafe;
mod harness;
mod postgres;
mod tcp;

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

use understudy_tests::cluster::sidecar::{FAST_HEALTH_FLAGS, TEST_TIMINGS};
use understudy_tests::cluster::{
    Cluster, ClusterOptions, Example, ExampleOptions, Load, LoadOptions, LoadReport, Outcome,
    OverlapReport, Pacing, require_root,
};

/// Upper bound for one scenario, cluster start-up and clean-up included.
const SCENARIO_LIMIT: Duration = Duration::from_secs(150);
/// The election timings the scenarios run with (`ExampleOptions::test`).
const LEASE: Duration = TEST_TIMINGS.lease;
const RENEW_DEADLINE: Duration = TEST_TIMINGS.renew_deadline;
const RETRY: Duration = TEST_TIMINGS.retry;
/// The sidecar's default hold timeout at those timings.
const HOLD: Duration = TEST_TIMINGS.hold();

/// Builds (or finds) the sidecar, then takes the scenario lock: one scenario at a time, and
/// neither the build nor the wait counts against a scenario's time limit.
async fn exclusive(name: &str) -> std::fs::File {
    if let Err(e) = require_root() {
        panic!("scenario {name}: {e}");
    }
    tokio::task::spawn_blocking(|| {
        if let Err(e) = understudy_tests::cluster::sidecar::binary(true) {
            panic!("{e}");
        }
        let dir = std::path::Path::new(understudy_tests::cluster::slot::STATE_DIR);
        std::fs::create_dir_all(dir).unwrap();
        let f = std::fs::File::create(dir.join("scenarios.lock")).unwrap();
        f.lock().unwrap();
        f
    })
    .await
    .unwrap()
}

/// A scenario's cluster and app.
struct Scenario {
    name: &'static str,
    cluster: Cluster,
}

impl Scenario {
    async fn start(name: &'static str) -> Scenario {
        let cluster = Cluster::start(ClusterOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        Scenario { name, cluster }
    }

    /// Applies `opts`, waits until `serving` pods are ready endpoints and a leader is agreed.
    async fn app(&self, opts: ExampleOptions, serving: usize) -> (Example, String) {
        let name = self.name;
        let app = Example::apply(&self.cluster, opts)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let leader = async {
            app.wait_serving(serving, Duration::from_secs(60)).await?;
            app.wait_leader(None, Duration::from_secs(20)).await
        }
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        (app, leader)
    }

    /// Prints (and records) the summary line, checks the access logs for two leaders at
    /// once, and cleans up.
    async fn finish(self, app: Example, report: &LoadReport) -> OverlapReport {
        let line = report.summary(self.name);
        println!("{line}");
        if let Some(path) = std::env::var_os("UNDERSTUDY_SUMMARY_FILE")
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
        let overlap = app.overlap().unwrap();
        assert!(
            overlap.violations.is_empty(),
            "{}: two leaders at once: {:#?}\ntenures: {:#?}",
            self.name,
            overlap.violations,
            overlap.tenures
        );
        drop(app);
        self.cluster.shutdown().await.unwrap();
        overlap
    }
}

/// The steady client: ~200 req/s over 4 connection-per-request clients.
fn load(app: &Example, keep_alive: bool) -> Load {
    Load::start(LoadOptions {
        keep_alive,
        ..load_options(app)
    })
}

/// [`load`]'s options (keep-alive off), for a scenario that changes more of them.
fn load_options(app: &Example) -> LoadOptions {
    LoadOptions {
        max_duration: Duration::from_secs(90),
        ..LoadOptions::new(app.service_addr())
    }
}

/// Runs a scenario body with the time limit.
async fn bounded(name: &str, body: impl Future<Output = ()>) {
    if tokio::time::timeout(SCENARIO_LIMIT, body).await.is_err() {
        panic!("scenario {name} did not finish within {SCENARIO_LIMIT:?}");
    }
}

fn pods_of(report: &LoadReport) -> BTreeSet<String> {
    report.served_by().into_keys().collect()
}

/// No request had to be sent twice: nothing broke a connection.
fn assert_no_resets(name: &str, report: &LoadReport) {
    let resets = report.reset_retried();
    assert!(
        resets.is_empty(),
        "{name}: {} requests had their connection broken, first: {:?}",
        resets.len(),
        resets.first()
    );
}

/// Connections broke only for requests that were in flight on a pod when it was killed.
fn assert_resets_only_at(name: &str, report: &LoadReport, killed: Instant) {
    for s in report.reset_retried() {
        assert!(
            s.start < killed + Duration::from_millis(200),
            "{name}: a request started {:?} after the kill had its connection broken: {s:?}",
            s.start.saturating_duration_since(killed)
        );
    }
}

fn assert_no_failures(name: &str, report: &LoadReport) {
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "{name}: {} of {} requests failed, first: {:?}",
        failures.len(),
        report.requests(),
        failures.first()
    );
}

/// 1. Steady state: every request through the Service is served by the leader's app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_is_served_by_the_leader() {
    let _serial = exclusive("steady-state").await;
    bounded("steady-state", async {
        let s = Scenario::start("steady-state").await;
        let (app, leader) = s.app(ExampleOptions::test("nginx-ha", 3), 3).await;
        let load = load(&app, false);
        assert!(load.pass(400, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        assert_no_resets(s.name, &report);
        assert_eq!(
            pods_of(&report),
            BTreeSet::from([leader.clone()]),
            "{:?}",
            report.served_by()
        );
        assert_eq!(
            app.lease(None).await.unwrap().map(|l| l.0),
            Some(leader.clone())
        );
        // The real API server's ServiceAccount admission mounted a token into no container;
        // the sidecar has its own projected one (and elected with it).
        for pod in app.pods().await.unwrap() {
            let spec = pod.spec.unwrap();
            // The sidecar is a native one: among the init containers.
            assert!(
                spec.init_containers.iter().flatten().any(
                    |c| c.name == "understudy" && c.restart_policy.as_deref() == Some("Always")
                )
            );
            let all: Vec<_> = spec
                .init_containers
                .into_iter()
                .flatten()
                .chain(spec.containers)
                .collect();
            for c in all {
                let token = c
                    .volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount");
                assert_eq!(token, c.name == "understudy", "{}: token mount", c.name);
            }
        }
        let overlap = s.finish(app, &report).await;
        assert_eq!(overlap.tenures.len(), 1, "{:?}", overlap.tenures);
        assert_eq!(overlap.tenures[0].pod, leader);
    })
    .await;
}

/// 2. The leader's containers are SIGKILLed (as by the OOM killer): nothing fails; requests
/// are held, then served by the new leader; the gap is recorded. The kubelet restarts the
/// killed containers after its back-off and the pod rejoins as a standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_loses_no_request() {
    let _serial = exclusive("sigkill-leader").await;
    bounded("sigkill-leader", async {
        let s = Scenario::start("sigkill-leader").await;
        let (app, old) = s.app(ExampleOptions::test("nginx-ha", 3), 3).await;
        let load = load(&app, false);
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let killed = Instant::now();
        app.crash(&old).await.unwrap();
        let new = app
            .wait_leader(Some(&old), Duration::from_secs(15))
            .await
            .unwrap();
        let failover = killed.elapsed();
        // Back after the kubelet's 10s restart back-off.
        app.wait_serving(3, Duration::from_secs(40)).await.unwrap();
        assert!(load.pass(200, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        assert_resets_only_at(s.name, &report, killed);
        let served = pods_of(&report);
        assert!(
            served.iter().all(|p| *p == old || *p == new),
            "{:?}",
            report.served_by()
        );
        // Takeover comes leaseDuration (+ up to a retry period) after the last renew seen.
        let bound = LEASE + RETRY + Duration::from_secs(2);
        assert!(
            report.max_gap() < bound,
            "gap {:?} over {bound:?}",
            report.max_gap()
        );
        println!("sigkill-leader: {old} -> {new}, new leader agreed after {failover:?}");
        s.finish(app, &report).await;
    })
    .await;
}

/// 3. `kubectl rollout restart` under load: every pod replaced (maxSurge 1, maxUnavailable
/// 0), nothing fails. understudy runs as a native sidecar (the example's layout): the test
/// kubelet keeps the kubelet's order, nginx's preStop hook (`GET /prestop` on the sidecar,
/// which hands over and waits for nginx's requests to finish), nginx's SIGTERM, and only once
/// nginx has exited the sidecar's SIGTERM. Every old pod's sidecar stepped down through the
/// hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_loses_no_request() {
    rolling_update("rolling-update", false).await;
}

/// 3b. The same with keep-alive clients: their connections are pinned (by conntrack) to
/// pods that go away, and closed by the draining sidecars.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_with_keep_alive_loses_no_request() {
    rolling_update("rolling-update-keepalive", true).await;
}

/// 3c. The same with understudy as a classic sidecar (deploy/examples/nginx-ha-classic):
/// nginx and the sidecar get SIGTERM at once; the sidecar releases the Lease and forwards
/// what still arrives to the new leader while it drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_sidecar_rolling_update_loses_no_request() {
    rolling_update_of("classic-rolling-update", "nginx-ha-classic", false).await;
}

async fn rolling_update(name: &'static str, keep_alive: bool) {
    rolling_update_of(name, "nginx-ha", keep_alive).await;
}

async fn rolling_update_of(name: &'static str, example: &str, keep_alive: bool) {
    let _serial = exclusive(name).await;
    bounded(name, async {
        let s = Scenario::start(name).await;
        let (app, _) = s.app(ExampleOptions::test(example, 3), 3).await;
        let before: BTreeSet<String> = app.live_pods().await.unwrap().into_iter().collect();
        let load = load(&app, keep_alive);
        assert!(load.pass(100, Duration::from_secs(20)).await);
        app.kubectl(&[
            "rollout",
            "restart",
            &format!("deployment/{}", app.deployment),
        ])
        .await
        .unwrap();
        app.kubectl(&[
            "rollout",
            "status",
            &format!("deployment/{}", app.deployment),
            "--timeout=100s",
        ])
        .await
        .unwrap();
        let new: BTreeSet<String> = app
            .wait_serving(3, Duration::from_secs(30))
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert!(
            new.is_disjoint(&before),
            "every pod replaced: {before:?} -> {new:?}"
        );
        let leader = app
            .wait_leader(None, Duration::from_secs(15))
            .await
            .unwrap();
        assert!(
            new.contains(&leader),
            "leader {leader} is one of the new pods {new:?}"
        );
        assert!(load.pass(100, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        if keep_alive {
            // HTTP/1.1's keep-alive race: a draining sidecar closes an idle connection just
            // as the client sends on it. Clients retry such a GET (RFC 9112 §9.3.1); it can
            // happen at most once per client connection per replaced pod.
            let workers = 4;
            assert!(
                report.reset_retried().len() <= workers * 3,
                "{}",
                report.summary(s.name)
            );
        } else {
            assert_no_resets(s.name, &report);
        }
        assert_eq!(
            pods_of(&report).iter().filter(|p| new.contains(*p)).count(),
            1
        );
        if example == "nginx-ha" {
            let hooked: BTreeSet<String> = app
                .pods_that_logged(
                    understudy_tests::manifest::SIDECAR,
                    "pre-stop: stepped down",
                )
                .into_iter()
                .collect();
            assert_eq!(
                hooked, before,
                "every old pod stepped down through its preStop hook"
            );
        }
        let overlap = s.finish(app, &report).await;
        // Each SIGTERMed leader handed over: at least one new tenure per old leader.
        assert!(overlap.tenures.len() >= 2, "{:?}", overlap.tenures);
    })
    .await;
}

/// 4. SIGKILL of a standby's containers: nothing fails, the leader stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_standby_costs_nothing() {
    let _serial = exclusive("sigkill-standby").await;
    bounded("sigkill-standby", async {
        let s = Scenario::start("sigkill-standby").await;
        let (app, leader) = s.app(ExampleOptions::test("nginx-ha", 3), 3).await;
        let lease = app.lease(None).await.unwrap();
        let standby = app
            .live_pods()
            .await
            .unwrap()
            .into_iter()
            .find(|p| *p != leader)
            .unwrap();
        let load = load(&app, false);
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let killed = Instant::now();
        app.crash(&standby).await.unwrap();
        app.wait_endpoints("the standby gone", Duration::from_secs(10), |e| {
            !e.contains(&standby)
        })
        .await
        .unwrap();
        app.wait_serving(3, Duration::from_secs(40)).await.unwrap();
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        assert_resets_only_at(s.name, &report, killed);
        assert_eq!(pods_of(&report), BTreeSet::from([leader.clone()]));
        assert_eq!(
            app.lease(None).await.unwrap(),
            lease,
            "same holder, same epoch"
        );
        s.finish(app, &report).await;
    })
    .await;
}

/// 5. The leader's pod is cut off from the API server (iptables in its network
/// namespace): it fences itself before another pod takes over (overlap checker), the
/// service recovers, and no request fails later than the hold timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_stops_before_the_next_takes_over() {
    let _serial = exclusive("partition-leader").await;
    bounded("partition-leader", async {
        let s = Scenario::start("partition-leader").await;
        let (app, old) = s.app(ExampleOptions::test("nginx-ha", 3), 3).await;
        // Open loop: requests keep arriving at the cut-off pod while it holds earlier ones.
        let load = Load::start(LoadOptions {
            max_duration: Duration::from_secs(90),
            pacing: Pacing::Open {
                per_second: 200,
                max_in_flight: 1000,
            },
            ..LoadOptions::new(app.service_addr())
        });
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let cut = Instant::now();
        app.cut_from_api(&old, true).await.unwrap();
        // The others see the Lease expire and elect one of themselves.
        let deadline = Instant::now() + Duration::from_secs(15);
        let new = loop {
            let (holder, _) = app.lease(None).await.unwrap().unwrap();
            if !holder.is_empty() && holder != old {
                break holder;
            }
            assert!(Instant::now() < deadline, "no takeover from {old}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let takeover = cut.elapsed();
        // Long enough that requests the fenced pod holds reach the hold timeout.
        tokio::time::sleep(HOLD).await;
        let healed = Instant::now();
        app.cut_from_api(&old, false).await.unwrap();
        let agreed = app.wait_leader(None, Duration::from_secs(15)).await.unwrap();
        assert_eq!(agreed, new);
        // Requests held by the partitioned pod when it healed are answered by now.
        tokio::time::sleep(HOLD).await;
        let recovered = Instant::now();
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let report = load.finish().await;
        let late: Vec<_> = report
            .failures()
            .into_iter()
            .filter(|f| f.latency > HOLD + Duration::from_secs(1))
            .cloned()
            .collect();
        assert!(late.is_empty(), "failed later than the hold timeout {HOLD:?}: {late:?}");
        for f in report.failures() {
            assert!(
                matches!(&f.outcome, Outcome::Answered { status: 503, .. }),
                "a request failed other than by 503 after the hold: {f:?}"
            );
        }
        assert_no_resets(s.name, &report);
        let after = report.between(recovered, report.ended);
        assert_no_failures("partition-leader (after recovery)", &after);
        assert_eq!(pods_of(&after), BTreeSet::from([new.clone()]));
        println!(
            "partition-leader: {old} -> {new} took over {takeover:?} after the cut; {} requests held past the hold timeout before the heal ({:?} after the cut), none after",
            report.failures().len(),
            healed - cut
        );
        let overlap = s.finish(app, &report).await;
        let old_tenure = overlap.tenures.iter().find(|t| t.pod == old).unwrap();
        let new_tenure = overlap.tenures.iter().find(|t| t.pod == new).unwrap();
        assert!(
            old_tenure.last < new_tenure.first,
            "{old} served until {:.3}, {new} from {:.3}",
            old_tenure.last,
            new_tenure.first
        );
    })
    .await;
}

/// 6. API server outage (kube-apiserver SIGSTOPped) with `--failsafe off`, as
/// docs/failover.md describes it: a short one costs nothing; in a longer one the leader
/// fences itself at its renew deadline and requests are held, then served once the API is
/// back (or 503 past the hold timeout); service resumes after it. (With the failsafe on, the
/// default, the leader serves on: `failsafe::api_server_stopped_for_two_minutes_costs_nothing`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_outage_with_the_failsafe_off_holds_then_recovers() {
    let _serial = exclusive("api-outage").await;
    bounded("api-outage", async {
        let s = Scenario::start("api-outage").await;
        let options = ExampleOptions::test("nginx-ha", 3).args(&["--failsafe", "off"]);
        let (app, leader) = s.app(options, 3).await;
        let plane = s.cluster.control_plane();
        let lease = app.lease(None).await.unwrap();
        let load = load(&app, false);
        assert!(load.pass(100, Duration::from_secs(20)).await);

        // Shorter than renewDeadline - retryPeriod: the leader never stops acting.
        let blip = RENEW_DEADLINE - RETRY - Duration::from_millis(500);
        let t0 = Instant::now();
        plane.pause_apiserver().await.unwrap();
        tokio::time::sleep(blip).await;
        plane.resume_apiserver().await.unwrap();
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let short = load.snapshot().between(t0, Instant::now());
        assert_no_failures("api-outage (short)", &short);
        assert_eq!(pods_of(&short), BTreeSet::from([leader.clone()]));
        assert_eq!(app.lease(None).await.unwrap(), lease, "a short outage changes nothing");

        // Longer than renewDeadline: the leader fences itself; held requests wait.
        let long = RENEW_DEADLINE + Duration::from_secs(2);
        let t1 = Instant::now();
        plane.pause_apiserver().await.unwrap();
        tokio::time::sleep(long).await;
        let fenced = app.sidecar_status(&leader).await.unwrap();
        assert_eq!(fenced["acting"], false, "the leader fenced itself: {fenced}");
        plane.resume_apiserver().await.unwrap();
        let back = app.wait_leader(None, Duration::from_secs(15)).await.unwrap();
        let resumed = t1.elapsed();
        tokio::time::sleep(HOLD).await;
        let recovered = Instant::now();
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let report = load.finish().await;
        let during = report.between(t1, recovered);
        for f in during.failures() {
            assert!(
                matches!(&f.outcome, Outcome::Answered { status: 503, .. })
                    && f.latency >= HOLD - Duration::from_millis(100),
                "a request during the outage failed other than by 503 after the hold: {f:?}"
            );
        }
        assert_no_failures("api-outage (after)", &report.between(recovered, report.ended));
        assert_no_resets(s.name, &report);
        println!(
            "api-outage: {long:?} outage; leader {leader} -> {back}, serving again {resumed:?} after it began; {} requests held past the hold timeout",
            during.failures().len()
        );
        s.finish(app, &report).await;
    })
    .await;
}

/// 7. The old tutorial's setup, `deploy/examples/nginx-ha-tutorial`: the sidecar only elects
/// and nginx's readiness probe greps `GET localhost:4040` for the pod's hostname. Only the
/// leader is Ready, so the Service has one endpoint; when the leader dies, the endpoint
/// moves to the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_setup_makes_only_the_leader_ready() {
    let _serial = exclusive("tutorial").await;
    bounded("tutorial", async {
        let s = Scenario::start("tutorial").await;
        let (app, leader) = s.app(ExampleOptions::test("nginx-ha-tutorial", 3), 1).await;
        // `kubectl get pods`: 1/1... only the leader's pod is Ready.
        let ready = app.ready_pods().await.unwrap();
        assert_eq!(ready, BTreeSet::from([leader.clone()]));
        let load = load(&app, false);
        assert!(load.pass(200, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        assert_no_resets(s.name, &report);
        assert_eq!(pods_of(&report), BTreeSet::from([leader.clone()]));
        for p in app.live_pods().await.unwrap() {
            let status = app.sidecar_status(&p).await.unwrap();
            assert_eq!(status["acting"] == true, p == leader, "{status}");
        }
        app.crash(&leader).await.unwrap();
        let new = app
            .wait_leader(Some(&leader), Duration::from_secs(15))
            .await
            .unwrap();
        app.wait_endpoints("the new leader alone", Duration::from_secs(15), |e| {
            e.len() == 1 && e[0] == new
        })
        .await
        .unwrap();
        s.finish(app, &report).await;
    })
    .await;
}

/// Three pods with `--actives 2` (and `extra` flags): waits until the sidecars agree on
/// the two actives and every pod serves; returns them.
async fn two_actives(s: &Scenario, extra: &[&str]) -> (Example, Vec<String>) {
    let mut args = vec!["--actives", "2"];
    args.extend_from_slice(extra);
    let app = Example::apply(&s.cluster, ExampleOptions::test("nginx-ha", 3).args(&args))
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", s.name));
    let actives = async {
        app.wait_serving(3, Duration::from_secs(60)).await?;
        app.wait_actives(2, &[], Duration::from_secs(20)).await
    }
    .await
    .unwrap_or_else(|e| panic!("{}: {e}", s.name));
    (app, actives)
}

/// The pod that holds no slot.
async fn the_standby(app: &Example, actives: &[String]) -> String {
    app.live_pods()
        .await
        .unwrap()
        .into_iter()
        .find(|p| !actives.contains(p))
        .expect("a third pod")
}

/// Checks the overlap report of an N = 2 run: two slots were served, never one by two pods
/// at once nor two by one pod (`finish` has already failed on any such violation).
fn assert_two_slots(name: &str, overlap: &OverlapReport) {
    let leases: BTreeSet<_> = overlap.tenures.iter().map(|t| t.lease.clone()).collect();
    assert_eq!(
        leases,
        BTreeSet::from([
            Some("nginx-ha-0".to_string()),
            Some("nginx-ha-1".to_string())
        ]),
        "{name}: {:?}",
        overlap.tenures
    );
}

/// 8. N = 2: both actives serve what comes through the Service (standbys spread over
/// them); SIGKILL of one active -> the standby takes its slot, nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_actives_share_the_service_and_a_killed_one_is_replaced_losing_nothing() {
    let _serial = exclusive("two-actives-sigkill").await;
    bounded("two-actives-sigkill", async {
        let s = Scenario::start("two-actives-sigkill").await;
        let (app, actives) = two_actives(&s, &[]).await;
        let standby = the_standby(&app, &actives).await;
        let load = load(&app, false);
        assert!(load.pass(300, Duration::from_secs(20)).await);
        let before = load.snapshot();
        assert_eq!(
            pods_of(&before),
            actives.iter().cloned().collect::<BTreeSet<_>>(),
            "both actives serve, nobody else: {:?}",
            before.served_by()
        );

        let victim = actives[1].clone();
        let survivor = actives[0].clone();
        let killed = Instant::now();
        app.crash(&victim).await.unwrap();
        let after = app
            .wait_actives(2, &[&victim], Duration::from_secs(15))
            .await
            .unwrap();
        let taken = Instant::now();
        assert_eq!(after, {
            let mut v = vec![survivor.clone(), standby.clone()];
            v.sort();
            v
        });
        app.wait_serving(3, Duration::from_secs(40)).await.unwrap();
        assert!(load.pass(300, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        assert_resets_only_at(s.name, &report, killed);
        let since = report.between(taken, report.ended);
        assert_eq!(
            pods_of(&since),
            BTreeSet::from([survivor.clone(), standby.clone()]),
            "{:?}",
            since.served_by()
        );
        let bound = LEASE + RETRY + Duration::from_secs(2);
        assert!(
            report.max_gap() < bound,
            "gap {:?} over {bound:?}",
            report.max_gap()
        );
        println!(
            "two-actives-sigkill: {victim} killed, {standby} took its slot after {:?}",
            taken - killed
        );
        let overlap = s.finish(app, &report).await;
        assert_two_slots("two-actives-sigkill", &overlap);
    })
    .await;
}

/// 9. N = 2 with `--upstream-health`: the app of an active stops passing its health
/// check (it still serves) -> that active releases its slot, the standby takes it through
/// the watch, nothing fails and no connection breaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_whose_app_turns_unhealthy_hands_its_slot_over_losing_nothing() {
    let _serial = exclusive("two-actives-health").await;
    bounded("two-actives-health", async {
        let s = Scenario::start("two-actives-health").await;
        let (app, actives) = two_actives(&s, &FAST_HEALTH_FLAGS).await;
        let standby = the_standby(&app, &actives).await;
        let load = load(&app, false);
        assert!(load.pass(200, Duration::from_secs(20)).await);

        let sick = actives[0].clone();
        let well = actives[1].clone();
        let t0 = Instant::now();
        app.set_app_healthy(&sick, false).unwrap();
        let after = app
            .wait_actives(2, &[&sick], Duration::from_secs(10))
            .await
            .unwrap();
        let moved = t0.elapsed();
        let mut expected = vec![well.clone(), standby.clone()];
        expected.sort();
        assert_eq!(after, expected);
        // Released after two failed checks and taken through the watch: well within the
        // lease duration, which an expiry would have cost.
        assert!(moved < LEASE, "the slot moved after {moved:?}");
        let taken = Instant::now();
        assert!(load.pass(300, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        assert_no_resets(s.name, &report);
        assert_eq!(
            pods_of(&report.between(taken, report.ended)),
            BTreeSet::from([well, standby]),
        );
        println!(
            "two-actives-health: {sick}'s slot moved {moved:?} after its app turned unhealthy"
        );
        let overlap = s.finish(app, &report).await;
        assert_two_slots("two-actives-health", &overlap);
    })
    .await;
}

/// The node a pod was scheduled to.
async fn node_of(app: &Example, pod: &str) -> String {
    app.pods()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some(pod))
        .and_then(|p| p.spec.and_then(|s| s.node_name))
        .unwrap_or_else(|| panic!("{pod} is not bound to a node"))
}

/// 9. `kubectl delete pod` of the leader under load: the kubelet runs nginx's preStop hook,
/// which hands the Lease over, then SIGTERMs nginx and, once it has exited, the sidecar, which
/// drains; the ReplicaSet replaces it. Nothing fails, no connection breaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_of_the_leader_loses_no_request() {
    let _serial = exclusive("delete-leader").await;
    bounded("delete-leader", async {
        let s = Scenario::start("delete-leader").await;
        let (app, old) = s.app(ExampleOptions::test("nginx-ha", 3), 3).await;
        let load = load(&app, false);
        assert!(load.pass(150, Duration::from_secs(20)).await);
        app.delete_pod(&old).await.unwrap();
        let new = app
            .wait_leader(Some(&old), Duration::from_secs(15))
            .await
            .unwrap();
        let serving = app.wait_serving(3, Duration::from_secs(40)).await.unwrap();
        assert!(!serving.contains(&old), "{old} replaced: {serving:?}");
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        assert_no_resets(s.name, &report);
        // A release, not an expiry: the gap stays well under a lease duration.
        assert!(report.max_gap() < LEASE, "gap {:?}", report.max_gap());
        println!("delete-leader: {old} -> {new}");
        s.finish(app, &report).await;
    })
    .await;
}

/// 10. `kubectl scale` up to 5 and down to 1 under load: new pods join as standbys without
/// moving the leader; scaling down removes four pods (the leader among them if the
/// ReplicaSet picks it, which then hands over). Nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_up_and_down_loses_no_request() {
    let _serial = exclusive("scale").await;
    bounded("scale", async {
        let s = Scenario::start("scale").await;
        let (app, leader) = s.app(ExampleOptions::test("nginx-ha", 2), 2).await;
        let lease = app.lease(None).await.unwrap();
        let deployment = format!("deployment/{}", app.deployment);
        let load = load(&app, false);
        assert!(load.pass(100, Duration::from_secs(20)).await);
        app.kubectl(&["scale", &deployment, "--replicas=5"])
            .await
            .unwrap();
        app.wait_serving(5, Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            app.lease(None).await.unwrap(),
            lease,
            "joining moved nothing"
        );
        assert!(load.pass(100, Duration::from_secs(20)).await);
        app.kubectl(&["scale", &deployment, "--replicas=1"])
            .await
            .unwrap();
        let last = app.wait_serving(1, Duration::from_secs(60)).await.unwrap();
        let now = app
            .wait_leader(None, Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(last, vec![now.clone()], "the one pod left leads");
        assert!(load.pass(100, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        assert_no_resets(s.name, &report);
        println!("scale: leader {leader} -> {now}");
        s.finish(app, &report).await;
    })
    .await;
}

/// 11. `kubectl drain` of the leader's node under load, with the example's
/// PodDisruptionBudget (maxUnavailable 1): the node is cordoned, its pods evicted one at a
/// time, the leader hands over to a pod on the other node. Nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_of_the_leaders_node_loses_no_request() {
    let _serial = exclusive("drain").await;
    bounded("drain", async {
        let s = Scenario::start("drain").await;
        let (app, old) = s.app(ExampleOptions::test("nginx-ha", 3), 3).await;
        let node = node_of(&app, &old).await;
        let load = load(&app, false);
        assert!(load.pass(150, Duration::from_secs(20)).await);
        app.kubectl(&[
            "drain",
            &node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=90s",
        ])
        .await
        .unwrap();
        let serving = app.wait_serving(3, Duration::from_secs(40)).await.unwrap();
        let new = app
            .wait_leader(Some(&old), Duration::from_secs(15))
            .await
            .unwrap();
        for p in &serving {
            assert_ne!(node_of(&app, p).await, node, "{p} on the drained node");
        }
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        assert_no_resets(s.name, &report);
        println!("drain: {old} on {node} -> {new}");
        s.finish(app, &report).await;
    })
    .await;
}

/// 12. `kubectl rollout restart` of the tutorial setup (only the leader Ready) under load:
/// the rollout completes (its strategy allows the old pods to go while the new ones are
/// standbys), the old leader keeps serving until a new pod leads, and no request fails.
/// Requests are counted whose connection kube-proxy refused and the client retried (nothing
/// was sent): the moment the only Ready endpoint moves from the old pod to the new one is
/// Kubernetes' readiness propagation, which understudy's proxy (nginx-ha) avoids. (Refused at
/// once: the node routes the Service range, so kube-proxy's REJECT answers; see
/// `cluster::node`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_rollout_restart_completes_losing_no_request() {
    let _serial = exclusive("tutorial-rollout").await;
    bounded("tutorial-rollout", async {
        let s = Scenario::start("tutorial-rollout").await;
        let (app, old) = s.app(ExampleOptions::test("nginx-ha-tutorial", 2), 1).await;
        let before: BTreeSet<String> = app.live_pods().await.unwrap().into_iter().collect();
        let deployment = format!("deployment/{}", app.deployment);
        // The Service has no Ready endpoint from the old leader's exit until the new one's
        // readiness has reached kube-proxy: its probe period (1s), the status write, the
        // EndpointSlice and kube-proxy's sync. That has taken over 2s (the default budget):
        // refused connects are retried for up to 5s here, each counted.
        let load = Load::start(LoadOptions {
            connect_retry: Duration::from_secs(5),
            ..load_options(&app)
        });
        assert!(load.pass(100, Duration::from_secs(20)).await);
        app.kubectl(&["rollout", "restart", &deployment])
            .await
            .unwrap();
        // The rollout is done when every replica is of the new template and no old one is
        // left. (`kubectl rollout status` also waits for every replica to be available,
        // which in this setup only the leader ever is: it would never return.)
        for field in ["updatedReplicas", "replicas"] {
            app.kubectl(&[
                "wait",
                &deployment,
                &format!("--for=jsonpath={{.status.{field}}}=2"),
                "--timeout=100s",
            ])
            .await
            .unwrap();
        }
        let serving: BTreeSet<String> = app
            .wait_serving(1, Duration::from_secs(30))
            .await
            .unwrap()
            .into_iter()
            .collect();
        let new = app
            .wait_leader(Some(&old), Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(
            serving,
            BTreeSet::from([new.clone()]),
            "only the leader is Ready"
        );
        assert!(
            !before.contains(&new),
            "{new} is a new pod, not one of {before:?}"
        );
        assert!(load.pass(100, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        assert_no_resets(s.name, &report);
        println!("tutorial-rollout: {old} -> {new}");
        s.finish(app, &report).await;
    })
    .await;
}
