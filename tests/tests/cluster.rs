//! Failure scenarios on the local cluster (`understudy_tests::cluster`): three pods in
//! network namespaces, each nginx behind the real `understudy` sidecar, a kube-proxy-style
//! iptables VIP in front, the API emulator behind per-pod kubeconfigs. Each scenario is
//! bounded in time, asserts its outcome and prints one line for benchmarks:
//! `scenario=<name> requests=N failures=N max_gap_ms=N …` (also appended to
//! `$UNDERSTUDY_SUMMARY_FILE` when set).
//!
//! Needs root (namespaces, iptables); fails with a clear message otherwise. Scenarios run
//! one at a time (a lock file), because their timings (lease 3s, renew deadline 2s, retry
//! 500ms) should not compete with each other for the CPU.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

use understudy_tests::cluster::sidecar::FAST_HEALTH_FLAGS;
use understudy_tests::cluster::{
    Cluster, ClusterOptions, Load, LoadOptions, LoadReport, Outcome, Pacing, Probe, ProbeOptions,
    ReadyWhen, SidecarOptions, require_root,
};

/// Upper bound for one scenario, cluster start-up and clean-up included.
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);

/// A scenario's cluster.
struct Scenario {
    name: &'static str,
    cluster: Cluster,
}

fn options() -> ClusterOptions {
    ClusterOptions {
        sidecar: Some(SidecarOptions {
            access_log: true,
            ..SidecarOptions::default()
        }),
        ..ClusterOptions::default()
    }
}

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

/// Starts the cluster, waits until every pod serves and a leader is agreed.
async fn scenario(name: &'static str, opts: ClusterOptions) -> (Scenario, String) {
    let cluster = Cluster::start(opts)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected = cluster.options().replicas;
    let leader = async {
        let leader = cluster.wait_leader(None, Duration::from_secs(20)).await?;
        match cluster.options().sidecar.as_ref().map(|s| s.ready_when) {
            Some(ReadyWhen::Leader) => {
                cluster
                    .wait_endpoints("the leader", Duration::from_secs(10), |e| e.pods.len() == 1)
                    .await?
            }
            _ => {
                cluster
                    .wait_endpoints("every pod", Duration::from_secs(10), |e| {
                        e.pods.len() == expected
                    })
                    .await?
            }
        };
        Ok::<_, understudy_tests::cluster::HarnessError>(leader)
    }
    .await
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    (Scenario { name, cluster }, leader)
}

impl Scenario {
    /// The steady client: ~200 req/s over 4 connections-per-request clients.
    fn load(&self) -> Load {
        self.load_with(false)
    }

    fn load_with(&self, keep_alive: bool) -> Load {
        Load::start(LoadOptions {
            max_duration: Duration::from_secs(45),
            keep_alive,
            ..LoadOptions::new(self.cluster.vip())
        })
    }

    /// Prints (and records) the summary line, checks the access logs for two leaders at
    /// once, and cleans up.
    async fn finish(self, report: &LoadReport) -> understudy_tests::cluster::OverlapReport {
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
        let overlap = self.cluster.overlap().unwrap();
        assert!(
            overlap.violations.is_empty(),
            "{}: two leaders at once: {:#?}\ntenures: {:#?}",
            self.name,
            overlap.violations,
            overlap.tenures
        );
        self.cluster.shutdown().await.unwrap();
        overlap
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

/// 1. Steady state: every request through the VIP is served by the leader's app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_is_served_by_the_leader() {
    let _serial = exclusive("steady-state").await;
    bounded("steady-state", async {
        let (s, leader) = scenario("steady-state", options()).await;
        let load = s.load();
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
        assert_eq!(s.cluster.lease().map(|l| l.0), Some(leader.clone()));
        let overlap = s.finish(&report).await;
        assert_eq!(overlap.tenures.len(), 1, "{:?}", overlap.tenures);
        assert_eq!(overlap.tenures[0].pod, leader);
    })
    .await;
}

/// 2. SIGKILL of the leader: nothing fails; requests are held, then served by the new
/// leader; the gap is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_loses_no_request() {
    let _serial = exclusive("sigkill-leader").await;
    bounded("sigkill-leader", async {
        let (s, old) = scenario("sigkill-leader", options()).await;
        let sidecar = s.cluster.options().sidecar.clone().unwrap();
        let load = s.load();
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let killed = Instant::now();
        s.cluster.deployment().crash(&old).await.unwrap();
        let new = s
            .cluster
            .wait_leader(Some(&old), Duration::from_secs(15))
            .await
            .unwrap();
        let failover = killed.elapsed();
        s.cluster
            .wait_all_serving(Duration::from_secs(20))
            .await
            .unwrap();
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
        let bound = sidecar.lease_duration + sidecar.retry_period + Duration::from_secs(2);
        assert!(
            report.max_gap() < bound,
            "gap {:?} over {bound:?}",
            report.max_gap()
        );
        println!("sigkill-leader: {old} -> {new}, new leader agreed after {failover:?}");
        s.finish(&report).await;
    })
    .await;
}

/// 3. Rolling update of every pod under load: nothing fails.
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

async fn rolling_update(name: &'static str, keep_alive: bool) {
    let _serial = exclusive(name).await;
    bounded(name, async {
        let (s, _) = scenario(name, options()).await;
        let before: BTreeSet<String> = s
            .cluster
            .deployment()
            .pods()
            .into_iter()
            .map(|p| p.name)
            .collect();
        let load = s.load_with(keep_alive);
        assert!(load.pass(100, Duration::from_secs(20)).await);
        let new = s
            .cluster
            .deployment()
            .rolling_update(Duration::from_secs(20))
            .await
            .unwrap();
        let leader = s
            .cluster
            .wait_leader(None, Duration::from_secs(15))
            .await
            .unwrap();
        assert!(
            new.contains(&leader),
            "leader {leader} is one of the new pods {new:?}"
        );
        assert!(new.iter().all(|p| !before.contains(p)));
        s.cluster
            .wait_all_serving(Duration::from_secs(10))
            .await
            .unwrap();
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
            pods_of(&report).iter().filter(|p| new.contains(p)).count(),
            1
        );
        let overlap = s.finish(&report).await;
        // Each SIGTERMed leader handed over: at least one new tenure per old leader.
        assert!(overlap.tenures.len() >= 2, "{:?}", overlap.tenures);
    })
    .await;
}

/// 4. SIGKILL of a standby: nothing fails, the leader stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_standby_costs_nothing() {
    let _serial = exclusive("sigkill-standby").await;
    bounded("sigkill-standby", async {
        let (s, leader) = scenario("sigkill-standby", options()).await;
        let lease = s.cluster.lease().unwrap();
        let standby = s
            .cluster
            .deployment()
            .pods()
            .into_iter()
            .map(|p| p.name)
            .find(|p| *p != leader)
            .unwrap();
        let load = s.load();
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let killed = Instant::now();
        s.cluster.deployment().crash(&standby).await.unwrap();
        s.cluster
            .wait_endpoints("the standby's replacement", Duration::from_secs(20), |e| {
                e.pods.len() == 3 && e.pods.iter().all(|(p, _)| *p != standby)
            })
            .await
            .unwrap();
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        assert_resets_only_at(s.name, &report, killed);
        assert_eq!(pods_of(&report), BTreeSet::from([leader.clone()]));
        assert_eq!(s.cluster.lease(), Some(lease), "same holder, same epoch");
        s.finish(&report).await;
    })
    .await;
}

/// 5. The leader is partitioned from the API server: it fences itself before another pod
/// takes over (overlap checker), the service recovers, and no request fails later than the
/// hold timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_stops_before_the_next_takes_over() {
    let _serial = exclusive("partition-leader").await;
    bounded("partition-leader", async {
        let (s, old) = scenario("partition-leader", options()).await;
        let sidecar = s.cluster.options().sidecar.clone().unwrap();
        let hold = sidecar.effective_hold_timeout();
        // Open loop: requests keep arriving at the cut-off pod while it holds earlier ones.
        let load = Load::start(LoadOptions {
            max_duration: Duration::from_secs(45),
            pacing: Pacing::Open {
                per_second: 200,
                max_in_flight: 1000,
            },
            ..LoadOptions::new(s.cluster.vip())
        });
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let cut = Instant::now();
        s.cluster.partition(&old);
        // The others see the Lease expire and elect one of themselves.
        let deadline = Instant::now() + Duration::from_secs(15);
        let new = loop {
            let (holder, _) = s.cluster.lease().unwrap();
            if !holder.is_empty() && holder != old {
                break holder;
            }
            assert!(Instant::now() < deadline, "no takeover from {old}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let takeover = cut.elapsed();
        // Long enough that requests the fenced pod holds reach the hold timeout.
        tokio::time::sleep(hold).await;
        let healed = Instant::now();
        s.cluster.heal(&old);
        let agreed = s.cluster.wait_leader(None, Duration::from_secs(15)).await.unwrap();
        assert_eq!(agreed, new);
        // Requests held by the partitioned pod when it healed are answered by now.
        tokio::time::sleep(hold).await;
        let recovered = Instant::now();
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let report = load.finish().await;
        let late: Vec<_> = report
            .failures()
            .into_iter()
            .filter(|f| f.latency > hold + Duration::from_secs(1))
            .cloned()
            .collect();
        assert!(late.is_empty(), "failed later than the hold timeout {hold:?}: {late:?}");
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
        let overlap = s.finish(&report).await;
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

/// 6. API server outage, as docs/failover.md describes it: a short one costs nothing; in a
/// longer one the leader fences itself at its renew deadline and requests are held, then
/// served once the API is back (or 503 past the hold timeout); service resumes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_outage_holds_then_recovers() {
    let _serial = exclusive("api-outage").await;
    bounded("api-outage", async {
        let (s, leader) = scenario("api-outage", options()).await;
        let sidecar = s.cluster.options().sidecar.clone().unwrap();
        let hold = sidecar.effective_hold_timeout();
        let lease = s.cluster.lease().unwrap();
        let load = s.load();
        assert!(load.pass(100, Duration::from_secs(20)).await);

        // Shorter than renewDeadline - retryPeriod: the leader never stops acting.
        let blip = sidecar.renew_deadline - sidecar.retry_period - Duration::from_millis(500);
        let t0 = Instant::now();
        s.cluster.outage(true);
        tokio::time::sleep(blip).await;
        s.cluster.outage(false);
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let short = load.snapshot().between(t0, Instant::now());
        assert_no_failures("api-outage (short)", &short);
        assert_eq!(pods_of(&short), BTreeSet::from([leader.clone()]));
        assert_eq!(s.cluster.lease(), Some(lease), "a short outage changes nothing");

        // Longer than renewDeadline: the leader fences itself; held requests wait.
        let long = sidecar.renew_deadline + Duration::from_secs(2);
        let t1 = Instant::now();
        s.cluster.outage(true);
        tokio::time::sleep(long).await;
        let fenced = s.cluster.sidecar_status(&leader).await.unwrap();
        assert_eq!(fenced["acting"], false, "the leader fenced itself: {fenced}");
        s.cluster.outage(false);
        let back = s.cluster.wait_leader(None, Duration::from_secs(15)).await.unwrap();
        let resumed = t1.elapsed();
        tokio::time::sleep(hold).await;
        let recovered = Instant::now();
        assert!(load.pass(150, Duration::from_secs(20)).await);
        let report = load.finish().await;
        let during = report.between(t1, recovered);
        for f in during.failures() {
            assert!(
                matches!(&f.outcome, Outcome::Answered { status: 503, .. })
                    && f.latency >= hold - Duration::from_millis(100),
                "a request during the outage failed other than by 503 after the hold: {f:?}"
            );
        }
        assert_no_failures("api-outage (after)", &report.between(recovered, report.ended));
        assert_no_resets(s.name, &report);
        println!(
            "api-outage: {:?} outage; leader {leader} -> {back}, serving again {resumed:?} after it began; {} requests held past the hold timeout",
            long,
            during.failures().len()
        );
        s.finish(&report).await;
    })
    .await;
}

/// 7. The old tutorial's setup: `--ready-when leader` and an exec readiness probe that
/// greps `GET localhost:4040` for the pod's name. Only the leader is Ready, so the Service
/// has one endpoint; when the leader dies, the endpoint moves to the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_setup_makes_only_the_leader_ready() {
    let _serial = exclusive("tutorial").await;
    bounded("tutorial", async {
        let mut opts = options();
        if let Some(s) = opts.sidecar.as_mut() {
            s.ready_when = ReadyWhen::Leader;
        }
        opts.probe = Some(ProbeOptions {
            probe: Probe::Exec {
                command: r#"curl -s --max-time 1 http://localhost:4040 | grep -q "$POD_NAME""#
                    .into(),
            },
            ..ProbeOptions::sidecar_readyz()
        });
        let (s, leader) = scenario("tutorial", opts).await;
        // `kubectl get pods`: 1/1 for the leader only.
        let ready: Vec<String> = s
            .cluster
            .pods()
            .snapshot()
            .into_values()
            .filter(|p| p.ready)
            .map(|p| p.name)
            .collect();
        assert_eq!(ready, vec![leader.clone()]);
        let load = s.load();
        assert!(load.pass(200, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_no_failures(s.name, &report);
        assert_no_resets(s.name, &report);
        assert_eq!(pods_of(&report), BTreeSet::from([leader.clone()]));
        // The sidecar's own /readyz agrees with the probe.
        for p in s.cluster.deployment().pods() {
            let status = s.cluster.sidecar_status(&p.name).await.unwrap();
            assert_eq!(status["acting"] == true, p.name == leader, "{status}");
        }
        s.cluster.deployment().crash(&leader).await.unwrap();
        let new = s
            .cluster
            .wait_leader(Some(&leader), Duration::from_secs(15))
            .await
            .unwrap();
        s.cluster
            .wait_endpoints("the new leader alone", Duration::from_secs(10), |e| {
                e.pods.len() == 1 && e.pods[0].0 == new
            })
            .await
            .unwrap();
        s.finish(&report).await;
    })
    .await;
}

/// A cluster of three pods with `--actives 2` (and `extra` flags): waits until the sidecars
/// agree on the two actives and every pod serves; returns them.
async fn two_actives(name: &'static str, extra: &[&str]) -> (Scenario, Vec<String>) {
    let mut opts = options();
    if let Some(s) = opts.sidecar.as_mut() {
        s.extra_args = ["--actives", "2"]
            .iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect();
    }
    let cluster = Cluster::start(opts)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let actives = async {
        let actives = cluster
            .wait_actives(2, &[], Duration::from_secs(20))
            .await?;
        cluster.wait_all_serving(Duration::from_secs(10)).await?;
        Ok::<_, understudy_tests::cluster::HarnessError>(actives)
    }
    .await
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    (Scenario { name, cluster }, actives)
}

/// The pod that holds no slot.
fn the_standby(s: &Scenario, actives: &[String]) -> String {
    s.cluster
        .deployment()
        .pods()
        .into_iter()
        .map(|p| p.name)
        .find(|p| !actives.contains(p))
        .expect("a third pod")
}

/// Checks the overlap report of an N = 2 run: two slots were served, never one by two pods
/// at once nor two by one pod (`finish` has already failed on any such violation).
fn assert_two_slots(name: &str, overlap: &understudy_tests::cluster::OverlapReport) {
    let leases: BTreeSet<_> = overlap.tenures.iter().map(|t| t.lease.clone()).collect();
    assert_eq!(
        leases,
        BTreeSet::from([Some("nginx-0".to_string()), Some("nginx-1".to_string())]),
        "{name}: {:?}",
        overlap.tenures
    );
}

/// 8. N = 2: both actives serve what comes through the VIP (standbys spread over them);
/// SIGKILL of one active -> the standby takes its slot, nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_actives_share_the_vip_and_a_killed_one_is_replaced_losing_nothing() {
    let _serial = exclusive("two-actives-sigkill").await;
    bounded("two-actives-sigkill", async {
        let (s, actives) = two_actives("two-actives-sigkill", &[]).await;
        let standby = the_standby(&s, &actives);
        let load = s.load();
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
        s.cluster.deployment().crash(&victim).await.unwrap();
        let after = s
            .cluster
            .wait_actives(2, &[&victim], Duration::from_secs(15))
            .await
            .unwrap();
        let taken = Instant::now();
        assert_eq!(after, {
            let mut v = vec![survivor.clone(), standby.clone()];
            v.sort();
            v
        });
        s.cluster
            .wait_all_serving(Duration::from_secs(20))
            .await
            .unwrap();
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
        let sidecar = s.cluster.options().sidecar.clone().unwrap();
        let bound = sidecar.lease_duration + sidecar.retry_period + Duration::from_secs(2);
        assert!(
            report.max_gap() < bound,
            "gap {:?} over {bound:?}",
            report.max_gap()
        );
        println!(
            "two-actives-sigkill: {victim} killed, {standby} took its slot after {:?}",
            taken - killed
        );
        let overlap = s.finish(&report).await;
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
        let (s, actives) = two_actives("two-actives-health", &FAST_HEALTH_FLAGS).await;
        let standby = the_standby(&s, &actives);
        let load = s.load();
        assert!(load.pass(200, Duration::from_secs(20)).await);

        let sick = actives[0].clone();
        let well = actives[1].clone();
        let t0 = Instant::now();
        s.cluster
            .deployment()
            .pod(&sick)
            .unwrap()
            .set_app_healthy(false)
            .unwrap();
        let after = s
            .cluster
            .wait_actives(2, &[&sick], Duration::from_secs(10))
            .await
            .unwrap();
        let moved = t0.elapsed();
        let mut expected = vec![well.clone(), standby.clone()];
        expected.sort();
        assert_eq!(after, expected);
        // Released after two failed checks and taken through the watch: well within the
        // lease duration, which an expiry would have cost.
        let sidecar = s.cluster.options().sidecar.clone().unwrap();
        assert!(
            moved < sidecar.lease_duration,
            "the slot moved after {moved:?}"
        );
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
        let overlap = s.finish(&report).await;
        assert_two_slots("two-actives-health", &overlap);
    })
    .await;
}
