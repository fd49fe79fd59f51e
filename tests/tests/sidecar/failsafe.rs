//! The failsafe across real sidecar processes: the API server is real, each sidecar reaches it
//! through a fault proxy of its own (cut one, or all for a full outage), and the peer channel
//! is the sidecars' own proxy ports. (The local-cluster scenarios in the `cluster` binary do
//! the same with pods in network namespaces and a stopped API server.)

use std::time::{Duration, Instant};

use serde_json::Value;
use understudy_tests::cluster::loopback::{Loopback, Sidecar, agreed_leader, agreed_leader_not};
use understudy_tests::cluster::sidecar::TEST_TIMINGS;

use super::{Load, listens};

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
    // Every member is in the holder's written set once it has renewed with them.
    tokio::time::sleep(2 * TEST_TIMINGS.retry).await;
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
    tokio::time::sleep(2 * TEST_TIMINGS.retry).await;
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
