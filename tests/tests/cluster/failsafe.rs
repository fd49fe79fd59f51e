//! The failsafe (issue 16) on the local cluster: a leader that cannot reach the API server
//! keeps acting while every member it last wrote into its Lease confirms over the peer
//! channel that it will not take over; a member that still reads the Lease refuses, so a
//! leader cut off from the API alone stops and hands over.
//!
//! Every client here is strict: no retry of its own (a refused connect or a broken
//! connection is a failed request), so each count is what users would see. Outages are
//! made two ways: the API server SIGSTOPped (nothing reaches it, the test kubelet and the
//! controllers included) or iptables dropping what pods send to it (the pods' view of an
//! outage, in which the kubelet can still start a pod).

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::Value;
use understudy_elector::failsafe::MEMBERS_ANNOTATION;
use understudy_tests::cluster::http::{GetError, client, get};
use understudy_tests::cluster::sidecar::ADMIN_PORT;
use understudy_tests::cluster::wait::poll;
use understudy_tests::cluster::{
    Example, ExampleOptions, Load, LoadOptions, LoadReport, Outcome, OverlapReport, Pacing, Sample,
    Tenure,
};

use super::{HOLD, LEASE, RENEW_DEADLINE, RETRY, Scenario, exclusive, pods_of};

/// Scenario 1's outage: two minutes, twenty times the test leaseDuration.
const LONG_OUTAGE: Duration = Duration::from_secs(120);
/// Bound of the scenarios other than 1, cluster start-up and clean-up included.
const LIMIT: Duration = Duration::from_secs(150);
/// Time for the sidecars to see a change through the API once it works again: a retry
/// period, the watch or a re-read, and a loaded machine.
const SLACK: Duration = Duration::from_millis(1500);

// === helpers ===

/// Runs a scenario body within `limit`.
async fn within(name: &str, limit: Duration, body: impl Future<Output = ()>) {
    if tokio::time::timeout(limit, body).await.is_err() {
        panic!("scenario {name} did not finish within {limit:?}");
    }
}

/// A strict client: 200 requests a second whether or not earlier ones were answered (as
/// from many independent clients), a new connection each, no retry of its own. A connect
/// may take 3s, which leaves room for the kernel's own SYN resend (after 1s): on this busy
/// two-core machine about one connect in twenty thousand through the Service takes over 1s,
/// which the harness's usual 1s connect timeout would count as a failed request.
fn strict_load(app: &Example, max_duration: Duration) -> Load {
    Load::start(LoadOptions {
        max_duration,
        max_requests: 100_000,
        pacing: Pacing::Open {
            per_second: 200,
            max_in_flight: 1000,
        },
        connect_timeout: Duration::from_secs(3),
        connect_retry: Duration::ZERO,
        retry_reset: false,
        ..LoadOptions::new(app.service_addr())
    })
}

/// `GET /status` of `pod`'s sidecar, polled until `pred` holds; the status that did.
async fn wait_status(
    app: &Example,
    pod: &str,
    what: &str,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let last = std::sync::Mutex::new(None);
    poll(
        || format!("{pod}'s /status: {what} (last: {:?})", last.lock().unwrap()),
        within,
        Duration::from_millis(50),
        || async {
            let status = app.sidecar_status(pod).await;
            *last.lock().unwrap() = status.clone();
            Ok(status.filter(|s| pred(s)))
        },
    )
    .await
    .unwrap()
}

/// Whether a `/status` shows the pod acting on its members' confirmations.
fn on_failsafe(status: &Value) -> bool {
    status["acting"] == true && status["failsafe"]["active"] == true
}

/// The sum of `pod`'s samples of metric `name` whose labels contain `labels`.
async fn metric(app: &Example, pod: &str, name: &str, labels: &str) -> f64 {
    let (_, addr) = app
        .admin_addrs()
        .into_iter()
        .find(|(p, _)| p == pod)
        .unwrap_or_else(|| panic!("{pod} is not running"));
    let admin = std::net::SocketAddr::new(addr.ip(), ADMIN_PORT);
    let (_, text) = get(
        &client(false, Duration::from_secs(1)),
        admin,
        "/metrics",
        false,
        Duration::from_secs(2),
    )
    .await
    .unwrap_or_else(|e| panic!("{pod}'s /metrics: {e}"));
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// 503s `pod`'s sidecar gave itself (no leader within the hold deadline, or none reachable).
async fn answered_503(app: &Example, pod: &str) -> f64 {
    let name = "understudy_proxy_sidecar_answers_total";
    metric(app, pod, name, r#"code="503""#).await
}

/// Requests `pod`'s sidecar forwarded to another pod and got a 2xx for.
async fn forwarded_ok(app: &Example, pod: &str) -> f64 {
    let labels = r#"route="forward",status_class="2xx""#;
    metric(app, pod, "understudy_proxy_requests_total", labels).await
}

/// Polls the Lease (from outside, where the API works) until a pod other than `old` holds
/// it; (holder, epoch).
async fn takeover(app: &Example, old: &str, within: Duration) -> (String, u64) {
    poll(
        || format!("a takeover from {old}"),
        within,
        Duration::from_millis(50),
        || async {
            Ok(app
                .lease(None)
                .await?
                .filter(|(holder, _)| !holder.is_empty() && holder != old))
        },
    )
    .await
    .unwrap()
}

/// The member set the holder last wrote into the Lease.
async fn members(app: &Example, client: kube::Client) -> BTreeSet<String> {
    let lease = kube::Api::<Lease>::namespaced(client, &app.namespace)
        .get(&app.election)
        .await
        .unwrap();
    lease
        .metadata
        .annotations
        .unwrap_or_default()
        .get(MEMBERS_ANNOTATION)
        .map(|m| m.split(',').map(String::from).collect())
        .unwrap_or_default()
}

/// The pods whose sidecars say they act as leader now (those that answer).
async fn acting(app: &Example) -> Vec<String> {
    let mut acting = Vec::new();
    for (pod, _) in app.admin_addrs() {
        if app
            .sidecar_status(&pod)
            .await
            .is_some_and(|s| s["acting"] == true)
        {
            acting.push(pod);
        }
    }
    acting
}

/// Fails unless every failed request of `report` is `expected`; the message lists them all,
/// each with its start counted from `t0` (the fault), its latency and its outcome.
fn assert_failures(
    name: &str,
    report: &LoadReport,
    t0: Instant,
    expected: impl Fn(&Sample) -> bool,
) {
    let failures = report.failures();
    let describe = |f: &&Sample| {
        format!(
            "{:+.3}s +{:?}: {:?}",
            signed_secs(f.start, t0),
            f.latency,
            f.outcome
        )
    };
    assert!(
        failures.iter().all(|f| expected(f)),
        "{name}: of {} requests these failed (start from the fault, latency, outcome), some unexpectedly:\n{}",
        report.requests(),
        failures.iter().map(describe).collect::<Vec<_>>().join("\n")
    );
}

/// Fails if any request of `report` failed (listing them all, as [`assert_failures`]).
fn assert_none_failed(name: &str, report: &LoadReport, t0: Instant) {
    assert_failures(name, report, t0, |_| false);
}

/// `t - t0` in seconds, negative when `t` is earlier.
fn signed_secs(t: Instant, t0: Instant) -> f64 {
    match t.checked_duration_since(t0) {
        Some(d) => d.as_secs_f64(),
        None => -(t0 - t).as_secs_f64(),
    }
}

/// From the apps' logs: `old` served its last request (as leader) before `new` its first.
fn assert_handed_over(name: &str, overlap: &OverlapReport, old: &str, new: &str) {
    let of =
        |pod: &str| -> Vec<&Tenure> { overlap.tenures.iter().filter(|t| t.pod == pod).collect() };
    let old_last = of(old).iter().map(|t| t.last).reduce(f64::max);
    let new_first = of(new).iter().map(|t| t.first).reduce(f64::min);
    let (Some(a), Some(b)) = (old_last, new_first) else {
        panic!(
            "{name}: no tenure of {old} or of {new}: {:?}",
            overlap.tenures
        );
    };
    assert!(
        a < b,
        "{name}: {old} served until {a:.3}, {new} from {b:.3}"
    );
    println!(
        "{name}: apps' logs: {old} served its last request {:.0}ms before {new} its first",
        (b - a) * 1000.0
    );
}

fn is_503(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Answered { status: 503, .. })
}

// === scenarios ===

/// 1. The API server SIGSTOPped for two minutes under load: the leader acts on its
/// members' confirmations the whole time (`/status` says so), nothing fails, and when the
/// API returns it renews the same Lease: same holder, same epoch, one tenure in the apps'
/// logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_stopped_for_two_minutes_costs_nothing() {
    const NAME: &str = "failsafe-api-outage";
    let _serial = exclusive(NAME).await;
    within(NAME, LONG_OUTAGE + Duration::from_secs(90), async {
        let s = Scenario::start(NAME).await;
        let (app, leader) = s.app(ExampleOptions::test("nginx-ha", 3), 3).await;
        let plane = s.cluster.control_plane();
        let before = app.lease(None).await.unwrap();
        let load = strict_load(&app, LONG_OUTAGE + Duration::from_secs(60));
        assert!(load.pass(200, Duration::from_secs(20)).await);

        let stopped = Instant::now();
        plane.pause_apiserver().await.unwrap();
        // The leader's /status every second of the outage.
        let mut polls = Vec::new();
        while stopped.elapsed() < LONG_OUTAGE {
            let status = app.sidecar_status(&leader).await;
            polls.push((stopped.elapsed(), status));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let acting_at_end = acting(&app).await;
        plane.resume_apiserver().await.unwrap();
        let resumed = Instant::now();

        // Past the renew deadline, the Lease alone would have stopped it.
        let past_deadline: Vec<_> = polls
            .iter()
            .filter(|(t, _)| *t > RENEW_DEADLINE + RETRY)
            .collect();
        let answered: Vec<&Value> = past_deadline.iter().filter_map(|(_, s)| s.as_ref()).collect();
        let not_failsafe: Vec<_> = past_deadline
            .iter()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| !on_failsafe(s)))
            .collect();
        assert!(
            not_failsafe.is_empty(),
            "{NAME}: {leader} did not act on its members' confirmations at {:?}",
            not_failsafe
        );
        assert!(
            answered.len() >= past_deadline.len() / 2,
            "{NAME}: {leader}'s /status answered {} of {} polls",
            answered.len(),
            past_deadline.len()
        );
        assert_eq!(acting_at_end, vec![leader.clone()], "{NAME}: acting at the end");
        // It renews the same Lease: its failsafe ends. (The API server takes a few seconds to
        // answer within the sidecars' call timeout, 500ms here, after two minutes stopped.)
        wait_status(&app, &leader, "renewed", Duration::from_secs(30), |s| {
            s["acting"] == true && s["failsafe"]["active"] == false
        })
        .await;
        let renewed = resumed.elapsed();
        assert!(load.pass(200, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_none_failed(NAME, &report, stopped);
        assert_eq!(pods_of(&report), BTreeSet::from([leader.clone()]));
        let after = app.lease(None).await.unwrap();
        assert_eq!(after, before, "{NAME}: same holder, same epoch");
        let outage = report.between(stopped, resumed);
        println!(
            "{NAME}: {LONG_OUTAGE:?} outage: {} requests during it, {} failed, max gap {:?}; {leader} on failsafe in {} of {} /status polls past the renew deadline; renewed {renewed:?} after SIGCONT; Lease {after:?} before and after",
            outage.requests(),
            outage.failures().len(),
            outage.max_gap(),
            answered.len(),
            past_deadline.len()
        );
        let overlap = s.finish(app, &report).await;
        assert_eq!(overlap.tenures.len(), 1, "{:?}", overlap.tenures);
        assert_eq!(overlap.tenures[0].pod, leader);
    })
    .await;
}

/// 2. The leader's pod cut off from the API server only: its members still read the
/// Lease, so they refuse to confirm and it stops; a standby takes over on the member expiry;
/// the ex-leader learns the new holder from its peers and forwards to it. Nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_cut_from_the_api_hands_over_losing_nothing() {
    const NAME: &str = "failsafe-partition-leader";
    let _serial = exclusive(NAME).await;
    within(NAME, LIMIT, async {
        let s = Scenario::start(NAME).await;
        let (app, old) = s.app(ExampleOptions::test("nginx-ha", 3), 3).await;
        let load = strict_load(&app, Duration::from_secs(90));
        assert!(load.pass(200, Duration::from_secs(20)).await);
        let forwarded_before = forwarded_ok(&app, &old).await;

        let cut = Instant::now();
        app.cut_from_api(&old, true).await.unwrap();
        let (new, epoch) = takeover(&app, &old, Duration::from_secs(15)).await;
        let took = cut.elapsed();
        let status = wait_status(&app, &old, "forwarding to the new holder", SLACK * 2, |s| {
            s["acting"] == false && s["leader"] == new.as_str()
        })
        .await;
        let learned = cut.elapsed();
        // Anything it held without forwarding would have had its 503 by now.
        tokio::time::sleep(HOLD + Duration::from_millis(500)).await;
        let forwarded = forwarded_ok(&app, &old).await - forwarded_before;
        app.cut_from_api(&old, false).await.unwrap();
        let healed = Instant::now();
        let agreed = app.wait_leader(None, Duration::from_secs(15)).await.unwrap();
        assert_eq!(agreed, new);
        assert!(load.pass(200, Duration::from_secs(20)).await);
        let report = load.finish().await;
        assert_none_failed(NAME, &report, cut);
        assert!(
            took < LEASE + RETRY + SLACK,
            "{NAME}: takeover {took:?} after the cut"
        );
        assert!(
            forwarded > 0.0,
            "{NAME}: {old} forwarded nothing to {new} while cut off: {status}"
        );
        assert!(
            pods_of(&report).is_subset(&BTreeSet::from([old.clone(), new.clone()])),
            "{:?}",
            report.served_by()
        );
        let partition = report.between(cut, healed);
        println!(
            "{NAME}: {old} cut from the API; {new} took the Lease (epoch {epoch}) {took:?} after the cut; {old} named it {learned:?} after and forwarded {forwarded} requests to it; during the partition {} requests, {} failed, max gap {:?}, max latency {:?}",
            partition.requests(),
            partition.failures().len(),
            partition.max_gap(),
            partition.max_latency()
        );
        let overlap = s.finish(app, &report).await;
        assert_handed_over(NAME, &overlap, &old, &new);
    })
    .await;
}

/// 3. The leader cut off from the API server and from its peers: no member can confirm, so
/// it stops at its renew deadline as without the failsafe, and a standby takes over on the
/// member expiry. Requests reaching the isolated pod after it stopped are held and get 503
/// at the hold timeout (it can learn the new holder from no one); the others are served,
/// but for the few a standby had just forwarded to the leader over a connection it already
/// had: the cut ate their answers, and they hang until the client gives up or the cut ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_stops_at_its_renew_deadline() {
    const NAME: &str = "failsafe-isolated-leader";
    let _serial = exclusive(NAME).await;
    within(NAME, LIMIT, async {
        let s = Scenario::start(NAME).await;
        let (app, old) = s.app(ExampleOptions::test("nginx-ha", 3), 3).await;
        let pods = app.live_pods().await.unwrap();
        let load = strict_load(&app, Duration::from_secs(90));
        assert!(load.pass(200, Duration::from_secs(20)).await);
        let mut answers = Vec::new();
        for p in &pods {
            answers.push((p.clone(), answered_503(&app, p).await));
        }

        let cut = Instant::now();
        app.cut_from_peers(&old, true).await.unwrap();
        let isolated = Instant::now();
        app.cut_from_api(&old, true).await.unwrap();
        let (new, epoch) = takeover(&app, &old, Duration::from_secs(15)).await;
        let took = cut.elapsed();
        let stopped = wait_status(&app, &old, "stopped", Duration::from_secs(5), |s| {
            s["acting"] == false
        })
        .await;
        assert_eq!(stopped["failsafe"]["active"], false, "{stopped}");
        // Long enough for requests it holds to reach the hold timeout.
        tokio::time::sleep(HOLD + Duration::from_secs(1)).await;
        app.cut_from_api(&old, false).await.unwrap();
        app.cut_from_peers(&old, false).await.unwrap();
        let healed = Instant::now();
        let agreed = app.wait_leader(None, Duration::from_secs(15)).await.unwrap();
        assert_eq!(agreed, new);
        // Requests held when the cut ended are answered by now.
        tokio::time::sleep(HOLD).await;
        let recovered = Instant::now();
        assert!(load.pass(200, Duration::from_secs(20)).await);
        let report = load.finish().await;
        for (p, before) in &mut answers {
            *before = answered_503(&app, p).await - *before;
        }

        let at_hold_timeout = |f: &Sample| {
            is_503(&f.outcome)
                && f.latency >= HOLD - Duration::from_millis(100)
                && f.latency < HOLD + Duration::from_secs(1)
        };
        // Forwarded by a standby over a connection it already had to the leader, as the
        // cut came: the request went out, its answer never came back; the standby waits
        // for it until the cut ends (then 503, the hold deadline long past) or the client
        // gives up (10s). Only the connections open at the cut carry such requests.
        let hung = |f: &Sample| {
            f.start < isolated + Duration::from_millis(500)
                && (f.outcome == Outcome::Failed(GetError::Timeout)
                    || (is_503(&f.outcome) && f.latency > HOLD + Duration::from_secs(1)))
        };
        assert_failures(NAME, &report, cut, |f| at_hold_timeout(f) || hung(f));
        let failures = report.failures();
        let held = failures.iter().filter(|f| at_hold_timeout(f)).count();
        let in_flight: Vec<_> = failures.iter().filter(|f| hung(f)).collect();
        assert!(
            in_flight.len() <= 10,
            "{NAME}: {} requests hung: {in_flight:?}",
            in_flight.len()
        );
        let late_503 = in_flight.iter().filter(|f| is_503(&f.outcome)).count();
        // The 503s at the hold timeout are the isolated pod's; the others' are answers to
        // requests in flight at the cut.
        let by = |isolated: bool| -> usize {
            answers
                .iter()
                .filter(|(p, _)| (*p == old) == isolated)
                .map(|(_, n)| *n as usize)
                .sum()
        };
        assert_eq!(
            (by(true), by(false)),
            (held, late_503),
            "{NAME}: 503s the sidecars gave, by pod: {answers:?}, failures: {held} at the hold timeout, {} in flight at the cut: {in_flight:?}",
            in_flight.len()
        );
        assert_none_failed(NAME, &report.between(recovered, report.ended), cut);
        assert!(took < LEASE + SLACK, "{NAME}: takeover {took:?} after the cut");
        let partition = report.between(cut, healed);
        println!(
            "{NAME}: {old} cut from the API and its peers; {new} took the Lease (epoch {epoch}) {took:?} after the cut; during the cut (+{HOLD:?} after) {} requests, {held} got 503 at the hold timeout from {old}, {} forwarded to it just before the cut never got their answer ({late_503} got 503 after the heal, the rest timed out at the client), max gap {:?}; none failed after",
            report.between(cut, recovered).requests(),
            in_flight.len(),
            partition.max_gap()
        );
        let overlap = s.finish(app, &report).await;
        assert_handed_over(NAME, &overlap, &old, &new);
    })
    .await;
}

/// 4 and 5, as two phases on one cluster.
///
/// 4. A pod that starts while every pod is cut off from the API server: it is in no member
/// set, cannot read the Lease (so it is not Ready and gets no traffic) and takes nothing;
/// when the API returns it follows the same leader, same epoch, and joins the member set.
///
/// 5. The leader SIGKILLed while the API server is stopped: no one can know it is gone
/// without the API, so no one takes over and the service waits: requests reaching a standby
/// are held and get 503 at the hold timeout, those reaching the dead pod's endpoint (which
/// kube-proxy keeps until the kubelet can report it) are refused. Once the API is back a
/// standby takes over within leaseDuration + retryPeriod (and a little).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_a_new_pod_joins_then_the_leader_is_killed() {
    const NAME: &str = "failsafe-outage-join-kill";
    let _serial = exclusive(NAME).await;
    within(NAME, LIMIT, async {
        let s = Scenario::start(NAME).await;
        let (app, leader) = s.app(ExampleOptions::test("nginx-ha", 3), 3).await;
        let before = app.lease(None).await.unwrap();
        let first: BTreeSet<String> = app.live_pods().await.unwrap().into_iter().collect();
        let load = strict_load(&app, Duration::from_secs(110));
        assert!(load.pass(200, Duration::from_secs(20)).await);

        // --- 4: a pod starting during an outage.
        let cut = Instant::now();
        app.cut_all_from_api(true).await.unwrap();
        wait_status(&app, &leader, "on failsafe", RENEW_DEADLINE + SLACK, on_failsafe).await;
        let deployment = format!("deployment/{}", app.deployment);
        app.kubectl(&["scale", &deployment, "--replicas=4"])
            .await
            .unwrap();
        let joined = poll(
            || "the fourth pod's sidecar to answer".to_string(),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                for (pod, _) in app.admin_addrs() {
                    if !first.contains(&pod) && app.sidecar_status(&pod).await.is_some() {
                        return Ok(Some(pod));
                    }
                }
                Ok(None)
            },
        )
        .await
        .unwrap();
        let started = Instant::now();
        // Long enough for an expiry by anyone's reckoning of the Lease it last saw.
        tokio::time::sleep(LEASE + RENEW_DEADLINE).await;
        let joined_status = app.sidecar_status(&joined).await.unwrap();
        let acting_then = acting(&app).await;
        let leader_status = app.sidecar_status(&leader).await.unwrap();
        let ready_then = app.ready_endpoints().await.unwrap();
        app.cut_all_from_api(false).await.unwrap();
        let healed = Instant::now();
        assert_eq!(joined_status["synced"], false, "{joined_status}");
        assert_eq!(joined_status["acting"], false, "{joined_status}");
        assert!(on_failsafe(&leader_status), "{leader_status}");
        assert_eq!(acting_then, vec![leader.clone()], "{NAME}: acting in the outage");
        assert!(!ready_then.contains(&joined), "{NAME}: {joined} Ready: {ready_then:?}");

        let agreed = app.wait_leader(None, LEASE + SLACK).await.unwrap();
        assert_eq!(agreed, leader);
        let client = s.cluster.client();
        poll(
            || format!("{joined} in the Lease's member set"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async { Ok(members(&app, client.clone()).await.contains(&joined).then_some(())) },
        )
        .await
        .unwrap();
        let member_after = healed.elapsed();
        app.wait_serving(4, Duration::from_secs(30)).await.unwrap();
        assert_eq!(app.lease(None).await.unwrap(), before, "{NAME}: the join moved nothing");
        let phase4 = load.snapshot().between(cut, Instant::now());
        assert_none_failed(&format!("{NAME} (join)"), &phase4, cut);
        assert_eq!(pods_of(&phase4), BTreeSet::from([leader.clone()]));
        println!(
            "{NAME}: join: {joined} ran {:?} with every pod cut off from the API (not Ready, acting only {acting_then:?}); API back: still {leader} {before:?}, {joined} in the member set {member_after:?} after; {} requests, {} failed",
            healed - started,
            phase4.requests(),
            phase4.failures().len()
        );

        // --- 5: SIGKILL of the leader during an outage.
        let plane = s.cluster.control_plane();
        plane.pause_apiserver().await.unwrap();
        let stopped = Instant::now();
        wait_status(&app, &leader, "on failsafe", RENEW_DEADLINE + SLACK, on_failsafe).await;
        let killed = Instant::now();
        app.crash(&leader).await.unwrap();
        // Long enough for requests held at the standbys to reach the hold timeout; shorter
        // than the kubelet's restart back-off (10s), so the dead leader stays dead.
        tokio::time::sleep(HOLD + Duration::from_secs(2)).await;
        let acting_dead = acting(&app).await;
        plane.resume_apiserver().await.unwrap();
        let resumed = Instant::now();
        assert!(acting_dead.is_empty(), "{NAME}: acting without the API: {acting_dead:?}");
        let new = app
            .wait_leader(Some(&leader), Duration::from_secs(15))
            .await
            .unwrap();
        let took = resumed.elapsed();
        // The kubelet restarts the killed containers after its back-off.
        app.wait_serving(4, Duration::from_secs(40)).await.unwrap();
        let recovered = Instant::now();
        assert!(load.pass(200, Duration::from_secs(20)).await);
        let report = load.finish().await;

        let (mut refused, mut held, mut in_flight) = (0, 0, 0);
        for f in report.between(killed, recovered).failures() {
            match &f.outcome {
                Outcome::Failed(GetError::Connect(_)) => refused += 1,
                o if is_503(o) && f.latency >= HOLD - Duration::from_millis(100) => held += 1,
                Outcome::Failed(GetError::Io(_))
                    if f.start < killed + Duration::from_millis(200) =>
                {
                    in_flight += 1
                }
                _ => panic!("{NAME}: a request failed other than as the outage explains: {f:?}"),
            }
        }
        // Nothing was served between the kill and the API's return (but what the leader
        // answered as it died).
        let waited = report.between(killed + Duration::from_millis(200), resumed);
        let served_late: Vec<_> = waited
            .samples
            .iter()
            .filter(|s| s.ok() && s.end() < resumed)
            .collect();
        assert!(served_late.is_empty(), "{NAME}: served with no leader: {served_late:?}");
        assert!(held > 0, "{NAME}: no request was held to the hold timeout");
        // leaseDuration + retryPeriod, and a little for the API server to get going again.
        let bound = LEASE + RETRY + Duration::from_secs(2);
        assert!(
            took < bound,
            "{NAME}: {new} took over {took:?} after SIGCONT (bound {bound:?})"
        );
        assert_none_failed(
            &format!("{NAME} (recovered)"),
            &report.between(recovered, report.ended),
            killed,
        );
        let phase5 = report.between(killed, recovered);
        let last_failure = phase5
            .failures()
            .iter()
            .map(|f| f.end())
            .max()
            .map(|t| t.saturating_duration_since(resumed));
        println!(
            "{NAME}: kill: {leader} on failsafe {:?} after SIGSTOP, SIGKILLed, SIGCONT {:?} later; {new} took over {took:?} after SIGCONT; from the kill to recovery {} requests: {refused} refused at the dead pod's endpoint, {held} held then 503, {in_flight} broken in flight; last failure ended {last_failure:?} after SIGCONT",
            killed - stopped,
            resumed - killed,
            phase5.requests()
        );
        let overlap = s.finish(app, &report).await;
        assert_handed_over(NAME, &overlap, &leader, &new);
    })
    .await;
}
