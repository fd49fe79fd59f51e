//! Fault injection, each kind observed through a real client.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures::StreamExt;
use http::Method;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use understudy_tests::emulator::{Fault, FaultScope};

use super::*;

const SHORT: Duration = Duration::from_millis(300);

fn client(name: &str) -> FaultScope {
    FaultScope::Client(name.into())
}

#[tokio::test]
async fn latency_delays_answers_of_the_faulted_client() {
    let emu = start().await;
    emu.store()
        .put("leases", json!({ "metadata": { "name": "l" } }))
        .unwrap();
    emu.faults().set(
        client("slow"),
        Fault::latency(Duration::from_millis(300), Duration::from_millis(350)),
    );
    let slow = leases(&emu, "slow").await;
    let t = Instant::now();
    slow.get("l").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn errors_carry_code_reason_and_retry_after() {
    let emu = start().await;
    let flaky = client_without_retry(&emu, "flaky").await;
    let path = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    for (code, reason, retry) in [
        (429, "TooManyRequests", Some("7")),
        (503, "ServiceUnavailable", Some("7")),
        (500, "InternalError", None),
    ] {
        emu.faults()
            .set(client("flaky"), Fault::errors(1.0, code).retry_after(7));
        let (got, retry_after, s) = raw(&flaky, Method::GET, path, "application/json", "").await;
        assert_eq!(
            (got, s["reason"].as_str(), retry_after.as_deref()),
            (code, Some(reason), retry),
            "{s}"
        );
        assert_eq!(s["kind"], "Status");
        if retry.is_some() {
            assert_eq!(s["details"]["retryAfterSeconds"], 7);
        }
    }
    let api: Api<Lease> = Api::default_namespaced(flaky);
    assert_eq!(status(api.list(&ListParams::default()).await).code, 500);
    emu.faults().clear(client("flaky"));
    api.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn error_rate_follows_the_seed() {
    async fn pattern(seed: u64) -> Vec<bool> {
        let emu = start_with(|o| o.seed = seed).await;
        emu.faults().set(FaultScope::All, Fault::errors(0.5, 500));
        let api: Api<Lease> = Api::default_namespaced(client_without_retry(&emu, "c").await);
        let mut failed = Vec::new();
        for _ in 0..24 {
            failed.push(api.list(&ListParams::default()).await.is_err());
        }
        failed
    }
    let a = pattern(11).await;
    assert_eq!(a, pattern(11).await, "same seed, same faults");
    assert!(a.contains(&true) && a.contains(&false), "{a:?}");
}

#[tokio::test]
async fn verbs_limit_a_fault() {
    let emu = start().await;
    let api = leases(&emu, "c").await;
    let l = api
        .create(&PostParams::default(), &lease("l", "c"))
        .await
        .unwrap();
    emu.faults().set(
        FaultScope::All,
        Fault::errors(1.0, 500).for_verbs(&["update"]),
    );
    api.get("l").await.unwrap();
    assert_eq!(
        status(api.replace("l", &PostParams::default(), &l).await).code,
        500
    );
}

#[tokio::test]
async fn source_ip_scope() {
    let emu = start().await;
    let api: Api<Lease> = Api::default_namespaced(client_without_retry(&emu, "c").await);
    emu.faults().set(
        FaultScope::SourceIp(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
        Fault::errors(1.0, 500),
    );
    api.list(&ListParams::default()).await.unwrap();
    emu.faults().set(
        FaultScope::SourceIp(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Fault::errors(1.0, 500),
    );
    assert_eq!(status(api.list(&ListParams::default()).await).code, 500);
}

#[tokio::test]
async fn blackhole_reads_and_never_answers() {
    let emu = start().await;
    emu.store()
        .put("leases", json!({ "metadata": { "name": "l" } }))
        .unwrap();
    emu.faults().set(client("bh"), Fault::blackhole());
    let api = leases(&emu, "bh").await;
    assert!(
        tokio::time::timeout(SHORT, api.get("l")).await.is_err(),
        "no answer"
    );
    assert_eq!(
        emu.stats().count("bh", "get", "leases"),
        1,
        "the request arrived"
    );
    leases(&emu, "other").await.get("l").await.unwrap();
    emu.faults().clear(client("bh"));
    api.get("l").await.unwrap();
}

#[tokio::test]
async fn outage_drops_connections_and_cuts_watches_but_not_admin() {
    let emu = start().await;
    emu.store()
        .put("leases", json!({ "metadata": { "name": "l" } }))
        .unwrap();
    let api = leases(&emu, "c").await;
    let mut w = api
        .watch(&WatchParams::default().disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(w.next().await, Some(Ok(WatchEvent::Added(_)))));
    emu.faults().outage(true);
    let end = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("the watch ends");
    assert!(!matches!(end, Some(Ok(_))), "no more events: {end:?}");
    let t = Instant::now();
    let err = api.get("l").await.expect_err("refused during the outage");
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "a dropped connection, not an HTTP answer: {err:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "refused quickly: {:?}",
        t.elapsed()
    );
    let admin = emu.kube_client("admin").await;
    let (code, _) = get_stats(&admin).await;
    assert_eq!(code, 200, "the admin endpoint is exempt");
    emu.faults().outage(false);
    api.get("l").await.unwrap();
}

#[tokio::test]
async fn partition_silences_one_client_until_healed() {
    let emu = start().await;
    let (a, b) = (leases(&emu, "a").await, leases(&emu, "b").await);
    let created = a
        .create(&PostParams::default(), &lease("l", "a"))
        .await
        .unwrap();
    let from = created.metadata.resource_version.clone().unwrap();
    let mut watch_a = a
        .watch(&WatchParams::default().disable_bookmarks(), &from)
        .await
        .unwrap()
        .boxed();
    let mut watch_b = b
        .watch(&WatchParams::default().disable_bookmarks(), &from)
        .await
        .unwrap()
        .boxed();

    emu.faults().partition(client("a"));
    let merge = Patch::Merge(json!({ "spec": { "holderIdentity": "b" } }));
    b.patch("l", &PatchParams::default(), &merge).await.unwrap();
    assert!(
        matches!(watch_b.next().await, Some(Ok(WatchEvent::Modified(_)))),
        "b is not partitioned"
    );
    assert!(
        tokio::time::timeout(SHORT, a.get("l")).await.is_err(),
        "a's requests are blackholed"
    );
    assert!(
        tokio::time::timeout(SHORT, watch_a.next()).await.is_err(),
        "a's watch is silent, not closed"
    );

    emu.faults().heal(client("a"));
    let held = tokio::time::timeout(Duration::from_secs(5), watch_a.next())
        .await
        .expect("delivered after heal");
    let Some(Ok(WatchEvent::Modified(l))) = held else {
        panic!("{held:?}")
    };
    assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("b"));
    assert_eq!(
        a.get("l")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("b")
    );
}

#[tokio::test]
async fn cut_watches_closes_only_the_scoped_streams() {
    let emu = start().await;
    emu.store()
        .put("leases", json!({ "metadata": { "name": "l" } }))
        .unwrap();
    let (a, b) = (leases(&emu, "a").await, leases(&emu, "b").await);
    let wp = WatchParams::default().disable_bookmarks();
    let mut wa = a.watch(&wp, "0").await.unwrap().boxed();
    let mut wb = b.watch(&wp, "0").await.unwrap().boxed();
    assert!(matches!(wa.next().await, Some(Ok(WatchEvent::Added(_)))));
    assert!(matches!(wb.next().await, Some(Ok(WatchEvent::Added(_)))));
    emu.faults().cut_watches(client("a"));
    let end = tokio::time::timeout(Duration::from_secs(5), wa.next())
        .await
        .expect("a's watch ends");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
    emu.store()
        .put(
            "leases",
            json!({ "metadata": { "name": "l", "labels": { "x": "y" } } }),
        )
        .unwrap();
    assert!(matches!(wb.next().await, Some(Ok(WatchEvent::Modified(_)))));
    // New watches of the cut client work again.
    let mut again = a.watch(&wp, "0").await.unwrap().boxed();
    assert!(matches!(again.next().await, Some(Ok(WatchEvent::Added(_)))));
}
