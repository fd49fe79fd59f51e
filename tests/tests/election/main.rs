//! The elector against the real API server (RBAC on; each candidate a ServiceAccount bound
//! to the Role of `deploy/base`), through ordinary kubeconfigs and the real kube client: one
//! leader, expiry takeover, watch-driven handover, outage and partition self-fencing (a
//! fault proxy in front of the API server cuts one candidate or all), contention, a foreign
//! holder, and the idle API load (counted in the API server's audit log). One fault only
//! the emulator can make — watches that hang while every other call works — keeps its test
//! on the emulator.

mod client_go;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::sync::watch;
use understudy_elector::{
    Candidate, Config, Handle, Role, Slots, SlotsHandle, View, spawn, spawn_slots,
};
use understudy_tests::cluster::fault::FaultProxy;
use understudy_tests::cluster::loopback::{Loopback, NAMESPACE};
use understudy_tests::cluster::sidecar::TEST_TIMINGS;
use understudy_tests::emulator::{Emulator, EmulatorOptions, FaultScope};

const NS: &str = NAMESPACE;
const LEASE: &str = "example";

fn fast() -> Config {
    Config {
        lease_duration: TEST_TIMINGS.lease,
        renew_deadline: TEST_TIMINGS.renew_deadline,
        retry_period: TEST_TIMINGS.retry,
        resync_period: Duration::from_secs(30),
    }
    .validated()
    .unwrap()
}

/// One candidate: its own API identity (a ServiceAccount), view channel, and its way to the
/// API server.
struct Pod {
    name: String,
    view: watch::Receiver<View>,
    handle: Option<Handle>,
    /// Its way to the API server.
    api: FaultProxy,
}

async fn pod(world: &Loopback, name: &str, config: Config) -> Pod {
    let (client, proxy) = world.client(name).await;
    let api: Api<Lease> = Api::namespaced(client, NS);
    let me = Candidate {
        identity: name.to_string(),
        address: Some(format!("{name}.test:8080")),
        peer_address: None,
    };
    let (view, handle) = spawn(api, LEASE, me, config);
    Pod {
        name: name.to_string(),
        view,
        handle: Some(handle),
        api: proxy,
    }
}

async fn pods(world: &Loopback, n: usize, config: Config) -> Vec<Pod> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(pod(world, &format!("pod-{i}"), config).await);
    }
    out
}

async fn world() -> Loopback {
    Loopback::start(LEASE).await
}

/// Waits until `pred` holds for some pod's view; returns that pod's index.
async fn until_any(pods: &mut [Pod], within: Duration, pred: impl Fn(&View) -> bool) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        for (i, p) in pods.iter().enumerate() {
            if pred(&p.view.borrow()) {
                return i;
            }
        }
        let changes = futures::future::select_all(
            pods.iter_mut()
                // A view whose election has ended never changes again.
                .filter(|p| p.view.has_changed().is_ok())
                .map(|p| Box::pin(p.view.changed())),
        );
        if tokio::time::timeout_at(deadline, changes).await.is_err() {
            let views: Vec<_> = pods.iter().map(|p| p.view.borrow().clone()).collect();
            panic!("condition not reached within {within:?}; views: {views:#?}");
        }
    }
}

fn acting(v: &View) -> bool {
    v.is_acting(Instant::now())
}

fn leaders(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter(|p| acting(&p.view.borrow()))
        .map(|p| p.name.clone())
        .collect()
}

async fn lease(world: &Loopback) -> Lease {
    let api: Api<Lease> = Api::namespaced(world.cluster().client(), NS);
    api.get(LEASE).await.expect("lease exists")
}

fn spec_of(l: &Lease) -> k8s_openapi::api::coordination::v1::LeaseSpec {
    l.spec.clone().unwrap_or_default()
}

#[tokio::test]
async fn exactly_one_leader_among_three_and_others_follow_it() {
    let emu = world().await;
    let mut pods = pods(&emu, 3, fast()).await;
    let leader = until_any(&mut pods, Duration::from_secs(10), acting).await;
    let name = pods[leader].name.clone();
    for p in pods.iter_mut() {
        let mut v = p.view.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            v.wait_for(|v| v.leader.as_ref().is_some_and(|l| l.identity == name)),
        )
        .await
        .expect("every pod learns the leader")
        .unwrap();
    }
    assert_eq!(leaders(&pods), vec![name.clone()]);
    for p in &pods {
        let v = p.view.borrow();
        let l = v.leader.as_ref().unwrap();
        assert_eq!(
            l.address.as_deref(),
            Some(format!("{name}.test:8080").as_str())
        );
        if p.name != name {
            assert_eq!(v.role, Role::Follower);
        }
    }
    // The record is what client-go and kubectl expect.
    let spec = spec_of(&lease(&emu).await);
    assert_eq!(spec.holder_identity.as_deref(), Some(name.as_str()));
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
}

#[tokio::test]
async fn a_vanished_leader_is_replaced_only_after_its_lease_expires() {
    let emu = world().await;
    let config = fast();
    let mut pods = pods(&emu, 3, config).await;
    let first = until_any(&mut pods, Duration::from_secs(10), acting).await;
    let epoch = pods[first].view.borrow().leader.as_ref().unwrap().epoch;
    // Vanish without releasing: the process dies, its Lease stays.
    let gone = pods.remove(first);
    drop(gone.handle);
    let vanished = Instant::now();
    let next = until_any(&mut pods, Duration::from_secs(15), acting).await;
    let waited = vanished.elapsed();
    // It cannot have been taken before the lease ran out on the followers' clocks (they last
    // saw a renewal at most retryPeriod before the leader vanished).
    assert!(
        waited >= config.lease_duration - config.retry_period,
        "taken over after {waited:?}, before expiry"
    );
    let v = pods[next].view.borrow().clone();
    assert_eq!(
        v.leader.unwrap().epoch,
        epoch + 1,
        "leaseTransitions + 1 on takeover"
    );
    assert_eq!(
        spec_of(&lease(&emu).await).lease_transitions,
        Some(epoch as i32 + 1)
    );
}

#[tokio::test]
async fn a_released_lease_is_taken_through_the_watch_not_a_timer() {
    let emu = world().await;
    // Timers are slow on purpose: retry 10s, lease 30s. A takeover in well under a second
    // can only come from the watch event of the release.
    let slow = Config {
        lease_duration: Duration::from_secs(30),
        renew_deadline: Duration::from_secs(20),
        retry_period: Duration::from_secs(10),
        resync_period: Duration::from_secs(60),
    }
    .validated()
    .unwrap();
    let mut pods = pods(&emu, 2, slow).await;
    let first = until_any(&mut pods, Duration::from_secs(10), acting).await;
    let other = 1 - first;
    let mut other_view = pods[other].view.clone();
    other_view
        .wait_for(|v| v.role == Role::Follower)
        .await
        .unwrap();
    let epoch = pods[first].view.borrow().leader.as_ref().unwrap().epoch;
    let released = Instant::now();
    pods[first]
        .handle
        .take()
        .unwrap()
        .release()
        .await
        .expect("release");
    // The released record, as client-go writes it.
    let spec = spec_of(&lease(&emu).await);
    if spec.holder_identity.as_deref() == Some("") {
        assert_eq!(spec.lease_duration_seconds, Some(1));
        assert_eq!(spec.lease_transitions, Some(epoch as i32));
    }
    tokio::time::timeout(Duration::from_secs(5), other_view.wait_for(acting))
        .await
        .expect("the other pod takes over")
        .unwrap();
    let took = released.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "takeover took {took:?}: not watch-driven"
    );
    assert_eq!(
        pods[other].view.borrow().leader.as_ref().unwrap().epoch,
        epoch + 1
    );
}

#[tokio::test]
async fn api_outage_makes_the_leader_stop_before_anyone_may_acquire_then_recovers() {
    let emu = world().await;
    let config = fast();
    let mut pods = pods(&emu, 3, config).await;
    let first = until_any(&mut pods, Duration::from_secs(10), acting).await;
    let mut leader_view = pods[first].view.clone();
    let outage = Instant::now();
    for p in &pods {
        p.api.cut();
    }
    // The leader stops acting by itself within renewDeadline of its last renew...
    tokio::time::timeout(
        config.renew_deadline + Duration::from_secs(1),
        leader_view.wait_for(|v| v.role != Role::Leader),
    )
    .await
    .expect("leader self-fences")
    .unwrap();
    let stopped = outage.elapsed();
    assert!(
        stopped <= config.renew_deadline + Duration::from_millis(500),
        "{stopped:?}"
    );
    // ...and nobody else can lead while the API is down.
    assert!(leaders(&pods).is_empty(), "{:?}", leaders(&pods));
    for p in &pods {
        p.api.heal();
    }
    let healed = Instant::now();
    until_any(&mut pods, Duration::from_secs(15), acting).await;
    let back = healed.elapsed();
    assert!(
        back <= config.lease_duration + config.retry_period + Duration::from_secs(2),
        "leader back after {back:?}"
    );
    assert_eq!(leaders(&pods).len(), 1);
}

#[tokio::test]
async fn a_partitioned_leader_stops_before_another_takes_over() {
    let emu = world().await;
    let config = fast();
    let mut pods = pods(&emu, 3, config).await;
    let first = until_any(&mut pods, Duration::from_secs(10), acting).await;
    let old = pods[first].name.clone();
    let mut old_view = pods[first].view.clone();
    pods[first].api.cut();
    // Record when the old leader stops acting, and when someone else starts.
    let stop = tokio::spawn(async move {
        old_view.wait_for(|v| v.role != Role::Leader).await.unwrap();
        Instant::now()
    });
    let next = until_any(&mut pods, Duration::from_secs(15), |v| {
        acting(v) && v.identity != old
    })
    .await;
    let started = Instant::now();
    let stopped = stop.await.unwrap();
    assert!(
        stopped < started,
        "old leader still acting when {} took over",
        pods[next].name
    );
    pods[first].api.heal();
    let mut old_view = pods[first].view.clone();
    let new = pods[next].name.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        old_view.wait_for(|v| v.role == Role::Follower && v.leader_name() == new),
    )
    .await
    .expect("healed pod follows the new leader")
    .unwrap();
}

#[tokio::test]
async fn five_simultaneous_candidates_elect_one_and_count_transitions() {
    let emu = world().await;
    let mut pods = pods(&emu, 5, fast()).await;
    for expected_transitions in 0..3 {
        let i = until_any(&mut pods, Duration::from_secs(10), acting).await;
        assert_eq!(leaders(&pods).len(), 1, "{:?}", leaders(&pods));
        let spec = spec_of(&lease(&emu).await);
        assert_eq!(spec.lease_transitions, Some(expected_transitions));
        let p = pods.remove(i);
        p.handle.unwrap().release().await.expect("release");
    }
}

#[tokio::test]
async fn a_lease_held_by_a_foreign_client_go_writer_is_respected_until_it_expires() {
    let emu = world().await;
    let api: Api<Lease> = Api::namespaced(emu.cluster().client(), NS);
    let now = jiff::Timestamp::now();
    let foreign: Lease = serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": NS},
        "spec": {"holderIdentity": "client-go-controller", "leaseDurationSeconds": 3,
                 "acquireTime": now.to_string(), "renewTime": now.to_string(), "leaseTransitions": 4}
    }))
    .unwrap();
    api.create(&Default::default(), &foreign).await.unwrap();
    let mut pods = pods(&emu, 2, fast()).await;
    // The foreign holder renews every second for 4s, longer than its lease: nobody may take it.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(1)).await; // the foreign writer's own renew cadence
        let mut l = api.get(LEASE).await.unwrap();
        l.spec.as_mut().unwrap().renew_time = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now()),
        );
        api.replace(LEASE, &Default::default(), &l).await.unwrap();
        for p in &pods {
            let v = p.view.borrow();
            assert_eq!(v.leader_name(), "client-go-controller");
            assert_eq!(v.role, Role::Follower);
            assert_eq!(v.leader.as_ref().unwrap().address, None);
        }
    }
    // It stops renewing: one of ours takes over after expiry, transitions + 1.
    let i = until_any(&mut pods, Duration::from_secs(10), acting).await;
    assert_eq!(pods[i].view.borrow().leader.as_ref().unwrap().epoch, 5);
}

#[tokio::test]
async fn a_followers_api_load_is_bounded_per_resync_period() {
    let emu = world().await;
    let resync = Duration::from_secs(2);
    let config = Config {
        resync_period: resync,
        ..fast()
    };
    let mut pods = pods(&emu, 3, config).await;
    let leader = until_any(&mut pods, Duration::from_secs(10), acting).await;
    let follower = pods[(leader + 1) % 3].name.clone();
    let mut fv = pods[(leader + 1) % 3].view.clone();
    fv.wait_for(|v| v.role == Role::Follower).await.unwrap();
    let user = format!("system:serviceaccount:{NS}:{follower}");
    let plane = emu.cluster().control_plane();
    let count = |from: jiff::Timestamp, to: jiff::Timestamp| {
        plane
            .audit_events()
            .unwrap()
            .iter()
            .filter(|e| e.user == user && e.time >= from && e.time < to)
            .count() as u64
    };
    let periods = 4;
    let window = resync * periods;
    let from = jiff::Timestamp::now();
    tokio::time::sleep(window).await; // the observation window itself, not synchronisation
    let to = jiff::Timestamp::now();
    let made = count(from, to);
    // One watch re-open (which is also the re-read) per resync period, plus one at an edge.
    assert!(
        made <= periods as u64 + 1,
        "follower made {made} requests in {periods} resync periods"
    );
    // And it did keep its watch fresh (a follower that never re-reads would make 0).
    assert!(
        made >= periods as u64 - 1,
        "follower made only {made} requests"
    );
    assert_eq!(leaders(&pods).len(), 1);
}

// === N active slots ===

/// One pod of an N-slot election.
struct SlotPod {
    name: String,
    slots: watch::Receiver<Slots>,
    handle: Option<SlotsHandle>,
    _api: FaultProxy,
}

async fn slot_pods(world: &Loopback, pods: usize, slots: usize) -> Vec<SlotPod> {
    let mut out = Vec::new();
    for i in 0..pods {
        let name = format!("pod-{i}");
        let (client, proxy) = world.client(&name).await;
        let api: Api<Lease> = Api::namespaced(client, NS);
        let me = Candidate {
            identity: name.clone(),
            address: Some(format!("{name}.test:8080")),
            peer_address: None,
        };
        let observer = std::sync::Arc::new(understudy_elector::observe::NoObserver);
        let (view, handle) = spawn_slots(api, LEASE, slots, me, fast(), observer);
        out.push(SlotPod {
            name,
            slots: view,
            handle: Some(handle),
            _api: proxy,
        });
    }
    out
}

/// Who acts in each slot right now; panics if a pod acts in two slots or a slot has two
/// acting pods.
fn slot_holders(pods: &[SlotPod], slots: usize) -> Vec<Option<String>> {
    let now = Instant::now();
    let mut holders = vec![None; slots];
    for p in pods.iter().filter(|p| p.handle.is_some()) {
        let s = p.slots.borrow();
        let acting: Vec<usize> = (0..slots).filter(|&i| s.views[i].is_acting(now)).collect();
        assert!(acting.len() <= 1, "{} acts in slots {acting:?}", p.name);
        if let Some((slot, leader)) = s.acting(now) {
            assert_eq!(leader.identity, p.name);
            let previous = holders[slot].replace(p.name.clone());
            assert!(
                previous.is_none(),
                "slot {slot}: {previous:?} and {}",
                p.name
            );
        }
    }
    holders
}

/// Polls (checking the invariants at every sample) until every slot has an acting pod.
async fn all_slots_filled(pods: &[SlotPod], slots: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let holders = slot_holders(pods, slots);
        if holders.iter().all(Option::is_some) {
            return holders.into_iter().map(Option::unwrap).collect();
        }
        assert!(Instant::now() < deadline, "slots not filled: {holders:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn two_slots_three_pods_fill_both_and_a_killed_active_is_replaced() {
    let emu = world().await;
    let mut pods = slot_pods(&emu, 3, 2).await;
    let holders = all_slots_filled(&pods, 2, Duration::from_secs(10)).await;
    assert_ne!(holders[0], holders[1]);
    // One Lease per slot, named after the election; no Lease under the bare name.
    let api: Api<Lease> = Api::namespaced(emu.cluster().client(), NS);
    for (slot, holder) in holders.iter().enumerate() {
        let spec = spec_of(&api.get(&format!("{LEASE}-{slot}")).await.unwrap());
        assert_eq!(spec.holder_identity.as_ref(), Some(holder));
    }
    assert!(api.get_opt(LEASE).await.unwrap().is_none());
    // The standby follows both slots and lists both actives.
    let standby = pods
        .iter()
        .position(|p| !holders.contains(&p.name))
        .unwrap();
    let mut view = pods[standby].slots.clone();
    let listed = view.wait_for(|s| s.actives().count() == 2).await.unwrap();
    assert_eq!(listed.held, None);
    drop(listed);

    // Kill the active of slot 1 (no release): the standby takes that slot after expiry,
    // slot 0 is untouched.
    let victim = pods.iter().position(|p| p.name == holders[1]).unwrap();
    drop(pods[victim].handle.take());
    let killed = Instant::now();
    let after = all_slots_filled(&pods, 2, Duration::from_secs(10)).await;
    assert_eq!(after[0], holders[0]);
    assert_eq!(after[1], pods[standby].name);
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "taken before expiry"
    );
    // Keep checking for a while: nobody doubles up, nobody is displaced.
    for _ in 0..100 {
        assert_eq!(
            slot_holders(&pods, 2),
            after.iter().cloned().map(Some).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn three_slots_with_two_standbys_fill_every_slot_once() {
    let emu = world().await;
    let pods = slot_pods(&emu, 5, 3).await;
    let holders = all_slots_filled(&pods, 3, Duration::from_secs(15)).await;
    let mut distinct = holders.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{holders:?}");
    for _ in 0..100 {
        slot_holders(&pods, 3);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_unhealthy_active_releases_its_slot_to_a_healthy_standby() {
    let emu = world().await;
    let mut pods = slot_pods(&emu, 3, 2).await;
    let holders = all_slots_filled(&pods, 2, Duration::from_secs(10)).await;
    let standby = pods
        .iter()
        .position(|p| !holders.contains(&p.name))
        .unwrap();
    let sick = pods.iter().position(|p| p.name == holders[0]).unwrap();
    let started = Instant::now();
    pods[sick].handle.as_ref().unwrap().set_healthy(false);
    let after = loop {
        let h = slot_holders(&pods, 2);
        if h[0].as_deref() == Some(pods[standby].name.as_str()) {
            break h;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{h:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Released and taken through the watch, not by expiry.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(after[1].as_ref(), Some(&holders[1]));
    // The unhealthy pod takes no slot; healthy again, it is a standby.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pods[sick].slots.borrow().held, None);
    pods[sick].handle.as_ref().unwrap().set_healthy(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pods[sick].slots.borrow().held, None);
    assert!(pods[sick].slots.borrow().eligible);
    pods[standby]
        .handle
        .take()
        .unwrap()
        .release()
        .await
        .unwrap();
    let filled = all_slots_filled(&pods, 2, Duration::from_secs(3)).await;
    assert_eq!(filled[0], pods[sick].name);
}

/// Records the watch calls the elector reports.
#[derive(Default)]
struct WatchCalls(std::sync::Mutex<Vec<understudy_elector::observe::ApiCall>>);

impl understudy_elector::Observer for WatchCalls {
    fn api_call(&self, _lease: &str, call: &understudy_elector::observe::ApiCall) {
        if call.verb == understudy_elector::observe::Verb::Watch {
            self.0.lock().unwrap().push(*call);
        }
    }
}

#[tokio::test]
async fn opening_the_watch_is_bounded_by_the_call_timeout() {
    // An API-level fault (watches hang, every other call works) that no network cut can
    // make: the emulator's, which tests/tests/emulator holds to the real API server.
    let emu = Emulator::start(EmulatorOptions::default())
        .await
        .expect("emulator starts");
    emu.add_client("pod-0");
    // The API server accepts watch requests and never answers them; everything else works.
    emu.faults().set(
        FaultScope::Client("pod-0".into()),
        understudy_tests::emulator::Fault::blackhole().for_verbs(&["watch"]),
    );
    let config = fast();
    let calls = std::sync::Arc::new(WatchCalls::default());
    let api: Api<Lease> = Api::namespaced(emu.kube_client("pod-0").await, NS);
    let me = Candidate {
        identity: "pod-0".into(),
        address: None,
        peer_address: None,
    };
    let (mut view, _handle) =
        understudy_elector::spawn_observed(api, LEASE, me, config, calls.clone());
    // Election still works without the watch (reads and writes are not blackholed).
    tokio::time::timeout(Duration::from_secs(10), view.wait_for(acting))
        .await
        .expect("leads without a watch")
        .unwrap();
    // Wait (bounded) for the first watch attempt to be given up; it must be reported as a
    // timeout after about the call timeout, well before the resync deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    let call = loop {
        if let Some(c) = calls.0.lock().unwrap().first().copied() {
            break c;
        }
        assert!(Instant::now() < deadline, "no watch call reported");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling a recorder, bounded
    };
    assert_eq!(
        call.result,
        understudy_elector::observe::CallResult::Timeout
    );
    assert!(
        call.latency < config.renew_deadline,
        "watch open took {:?}, not bounded below renewDeadline",
        call.latency
    );
}

// === the failsafe's API load ===

/// A peer channel that reaches nobody: at rest the failsafe sends nothing.
struct Nowhere;

impl understudy_elector::PeerChannel for Nowhere {
    fn send(
        &self,
        _member: &understudy_elector::Member,
        _request: understudy_elector::failsafe::PeerRequest,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Option<understudy_elector::failsafe::PeerReply>>
                + Send,
        >,
    > {
        Box::pin(async { None })
    }
}

/// The API load of an idle election with the failsafe on, per pod, counted in the API
/// server's audit log: each pod's own calls (its ServiceAccount), split into the election
/// Lease and member Leases. By default with a 2s resync over 20s, checked against the
/// arithmetic in docs/election.md; with `API_LOAD_DEFAULTS=1` (bench/run) with the default
/// timings over 60s, printed per minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failsafe_api_load_at_rest_per_pod() {
    let defaults = std::env::var("API_LOAD_DEFAULTS").is_ok();
    let (config, window) = if defaults {
        (Config::default(), Duration::from_secs(60))
    } else {
        let resync = Duration::from_secs(2);
        (
            Config {
                resync_period: resync,
                ..fast()
            },
            Duration::from_secs(20),
        )
    };
    let world = world().await;
    let mut pods = Vec::new();
    for i in 0..3 {
        let name = format!("pod-{i}");
        let (client, proxy) = world.client(&name).await;
        let api: Api<Lease> = Api::namespaced(client, NS);
        let me = Candidate {
            identity: name.clone(),
            address: Some(format!("{name}.test:8080")),
            peer_address: None,
        };
        let failsafe = understudy_elector::FailsafeOptions {
            max: Duration::from_secs(3600),
            channel: std::sync::Arc::new(Nowhere),
        };
        let (slots, handle) = understudy_elector::spawn_slots_with(
            api,
            LEASE,
            1,
            me,
            config,
            std::sync::Arc::new(understudy_elector::observe::NoObserver),
            understudy_elector::SlotsOptions {
                failsafe: Some(failsafe),
                ..Default::default()
            },
        );
        pods.push((name, slots, handle, proxy));
    }
    // Settled: one leader, whose Lease names all three members.
    let lease_api: Api<Lease> = Api::namespaced(world.cluster().client(), NS);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let members = lease_api.get_opt(LEASE).await.unwrap().and_then(|l| {
            l.metadata
                .annotations
                .and_then(|a| a.get("understudy.io/members").cloned())
        });
        if members.as_deref() == Some("pod-0,pod-1,pod-2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "members never written: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let leader = pods
        .iter()
        .find(|(_, s, _, _)| s.borrow().acting(Instant::now()).is_some())
        .map(|(n, ..)| n.clone())
        .expect("a leader");
    let plane = world.cluster().control_plane();
    let from = jiff::Timestamp::now();
    tokio::time::sleep(window).await; // the observation window itself, not synchronisation
    let to = jiff::Timestamp::now();
    let events = plane.audit_events().unwrap();
    let per_minute = |n: usize| n as f64 * 60.0 / window.as_secs_f64();
    for (name, ..) in &pods {
        let user = format!("system:serviceaccount:{NS}:{name}");
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e.user == user && e.time >= from && e.time < to)
            .collect();
        let member = |e: &&&understudy_tests::cluster::control_plane::AuditEvent| {
            e.name.contains("-member-")
                || e.verb == "list"
                || (e.verb == "watch" && e.name.is_empty())
        };
        let member_calls = mine.iter().filter(member).count();
        let election_calls = mine.len() - member_calls;
        let role = if *name == leader { "leader" } else { "standby" };
        eprintln!(
            "api load at rest ({}): {name} ({role}): {:.1}/min election Lease, {:.1}/min member Leases, {:.1}/min in all",
            if defaults {
                "default timings"
            } else {
                "retry 500ms, resync 2s"
            },
            per_minute(election_calls),
            per_minute(member_calls),
            per_minute(mine.len())
        );
        // Member Leases: a GET and a PUT every 20s, a LIST and a WATCH per resync period.
        let resyncs = window.as_secs_f64() / config.resync_period.as_secs_f64();
        let renewals = window.as_secs_f64() / 20.0;
        let expected = 2.0 * resyncs + 2.0 * renewals;
        assert!(
            (member_calls as f64) <= expected + 4.0,
            "{name}: {member_calls} member-Lease calls in {window:?}, expected about {expected}"
        );
        assert!(
            (member_calls as f64) >= expected / 2.0,
            "{name}: only {member_calls} member-Lease calls in {window:?}"
        );
    }
    for (.., handle, _) in pods {
        drop(handle);
    }
}
