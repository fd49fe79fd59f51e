//! The failsafe across real sidecar processes: the API server is real, each sidecar reaches it
//! through a fault proxy of its own (cut one, or all for a full outage), and the peer channel
//! is the sidecars' own proxy ports. (The local-cluster scenarios in the `cluster` binary do
//! the same with pods in network namespaces and a stopped API server.)

use std::time::{Duration, Instant};

use serde_json::Value;
use understudy_tests::cluster::loopback::{Loopback, Sidecar, agreed_leader, agreed_leader_not};
use understudy_tests::cluster::sidecar::TEST_TIMINGS;

use super::{Load, agreed_actives, listens};

/// The pods of [`Loopback::three`].
const NAMES: [&str; 3] = ["pod-a", "pod-b", "pod-c"];

async fn status(pod: &Sidecar) -> Value {
    let (_, body) = pod.admin_get("/status").await.expect("/status answers");
    serde_json::from_str(&body).expect("/status is JSON")
}

/// Every request ok, and all answered by `leader`.
fn all_served_by(results: &[Vec<Result<String, String>>], leader: &str) -> usize {
    let mut total = 0;
    for (w, answers) in results.iter().enumerate() {
        for r in answers {
            assert_eq!(r.as_deref(), Ok(leader), "worker {w}");
        }
        total += answers.len();
    }
    total
}

/// All three sidecars lose the API for 5 renew deadlines: the leader keeps acting on its
/// members' confirmations (its `/status` says so), every request is served by it, and when
/// the API returns it is still the leader at the same epoch.
#[tokio::test]
async fn a_full_api_outage_keeps_the_leader_and_loses_no_request() {
    let cluster = Loopback::start("failsafe-outage").await;
    let pods = cluster.three(&[]).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let leader = agreed_leader(&all, Duration::from_secs(15)).await;
    let li = pods.iter().position(|p| p.name == leader).unwrap();
    let epoch = status(&pods[li]).await["epoch"].clone();
    // From now on every member is asked, and may take over on the member expiry.
    cluster
        .wait_members_named("failsafe-outage", &NAMES, Duration::from_secs(5))
        .await;
    let load = Load::start(listens(&pods), 3);
    load.pass(20).await;
    for p in &pods {
        p.api.cut();
    }
    let outage = Instant::now();
    let mut failsafe_seen = false;
    while outage.elapsed() < 5 * TEST_TIMINGS.renew_deadline {
        let s = status(&pods[li]).await;
        assert_eq!(s["role"], "leader", "{s}");
        assert_eq!(s["acting"], true, "{s}");
        failsafe_seen |= s["failsafe"]["active"] == true;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(failsafe_seen, "the leader never acted on confirmations");
    for p in &pods {
        p.api.heal();
    }
    load.pass(20).await;
    // Renewed through the API again: no longer on confirmations, same leader and epoch.
    tokio::time::timeout(Duration::from_secs(10), async {
        while status(&pods[li]).await["failsafe"]["active"] != false {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the failsafe ends once the leader renews");
    let after = status(&pods[li]).await;
    assert_eq!(after["leader"], leader.as_str());
    assert_eq!(after["epoch"], epoch);
    let served = all_served_by(&load.finish().await, &leader);
    assert!(served > 40, "{served} requests");
}

/// Only the leader loses the API: a standby takes over on the member expiry, and the old
/// leader, told the new holder by its peers, forwards what it receives to it; no request
/// fails.
#[tokio::test]
async fn a_leader_cut_from_the_api_only_hands_over_and_forwards_losing_no_request() {
    let cluster = Loopback::start("failsafe-partition").await;
    let pods = cluster.three(&[]).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let old = agreed_leader(&all, Duration::from_secs(15)).await;
    let li = pods.iter().position(|p| p.name == old).unwrap();
    cluster
        .wait_members_named("failsafe-partition", &NAMES, Duration::from_secs(5))
        .await;
    let load = Load::start(listens(&pods), 3);
    load.pass(20).await;
    pods[li].api.cut();
    let cut = Instant::now();
    let others: Vec<&Sidecar> = pods.iter().filter(|p| p.name != old).collect();
    let new = agreed_leader_not(&others, &old, Duration::from_secs(15)).await;
    let took = cut.elapsed();
    // The old leader names its successor although it cannot read the Lease.
    agreed_leader_not(&[&pods[li]], &old, Duration::from_secs(5)).await;
    let named = cut.elapsed();
    load.pass(40).await;
    let results = load.finish().await;
    let failed: Vec<&String> = results
        .iter()
        .flatten()
        .filter_map(|r| r.as_ref().err())
        .collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    // Within a member expiry and a retry of the cut, as without the failsafe.
    let bound = TEST_TIMINGS.lease + 2 * TEST_TIMINGS.retry + Duration::from_secs(1);
    assert!(took <= bound, "took over after {took:?}, bound {bound:?}");
    eprintln!(
        "failsafe partition: {new} took over {took:?} after the cut; {old} named it after {named:?}"
    );
}

/// With two actives (`--actives 2`), each slot's holder runs its own failsafe over the shared
/// member set: a full outage of 5 renew deadlines keeps both acting on confirmations (each
/// slot says so in `/status`), every request is served by one of the two, and when the API
/// returns both still hold their slots at the same epochs.
#[tokio::test]
async fn a_full_api_outage_keeps_both_actives_of_two_slots() {
    let cluster = Loopback::start("failsafe-slots").await;
    let pods = cluster.three(&["--actives", "2"]).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let actives = agreed_actives(&all, 2, "", Duration::from_secs(15)).await;
    for lease in ["failsafe-slots-0", "failsafe-slots-1"] {
        cluster
            .wait_members_named(lease, &NAMES, Duration::from_secs(5))
            .await;
    }
    let holders: Vec<&Sidecar> = pods.iter().filter(|p| actives.contains(&p.name)).collect();
    // Each holder's own slot: (lease, epoch), as its `/status` shows it.
    let own_slot = |s: &Value| -> Value {
        s["slots"]
            .as_array()
            .expect("slots in /status")
            .iter()
            .find(|slot| slot["mine"] == true)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut before = Vec::new();
    for h in &holders {
        let slot = own_slot(&status(h).await);
        before.push((slot["lease"].clone(), slot["epoch"].clone()));
    }
    assert_ne!(before[0].0, before[1].0, "one slot each: {before:?}");
    let load = Load::start(listens(&pods), 3);
    load.pass(20).await;
    for p in &pods {
        p.api.cut();
    }
    let outage = Instant::now();
    let mut failsafe_seen = [false, false];
    while outage.elapsed() < 5 * TEST_TIMINGS.renew_deadline {
        for (i, h) in holders.iter().enumerate() {
            let slot = own_slot(&status(h).await);
            assert_eq!(slot["role"], "leader", "{}: {slot}", h.name);
            failsafe_seen[i] |= slot["failsafe"] == true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(failsafe_seen, [true, true], "both slots on confirmations");
    for p in &pods {
        p.api.heal();
    }
    load.pass(20).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        for h in &holders {
            while own_slot(&status(h).await)["failsafe"] != false {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
    .await
    .expect("both failsafes end once the holders renew");
    for (h, (lease, epoch)) in holders.iter().zip(&before) {
        let slot = own_slot(&status(h).await);
        assert_eq!(
            (&slot["lease"], &slot["epoch"]),
            (lease, epoch),
            "{}",
            h.name
        );
    }
    assert_eq!(
        agreed_actives(&all, 2, "", Duration::from_secs(5)).await,
        actives
    );
    let mut served = std::collections::BTreeMap::<String, usize>::new();
    for (w, answers) in load.finish().await.iter().enumerate() {
        for r in answers {
            let name = r.as_ref().unwrap_or_else(|e| panic!("worker {w}: {e}"));
            assert!(actives.contains(name), "served by {name}, not an active");
            *served.entry(name.clone()).or_default() += 1;
        }
    }
    assert_eq!(served.len(), 2, "both actives served: {served:?}");
}
