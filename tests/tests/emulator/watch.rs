//! Watch: start points, history replay, 410 Gone, bookmarks, timeouts, selectors.

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{PostParams, WatchEvent, WatchParams};
use serde_json::json;

use super::*;

/// The next event, failing the test if none comes within 5 s.
async fn next<S: Stream<Item = kube::Result<WatchEvent<Lease>>> + Unpin>(
    s: &mut S,
) -> WatchEvent<Lease> {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("an event within 5s")
        .expect("the stream is open")
        .expect("a decodable event")
}

fn describe(e: &WatchEvent<Lease>) -> (String, String, String) {
    let (ty, l) = match e {
        WatchEvent::Added(l) => ("ADDED", l),
        WatchEvent::Modified(l) => ("MODIFIED", l),
        WatchEvent::Deleted(l) => ("DELETED", l),
        other => panic!("unexpected {other:?}"),
    };
    let holder = l
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    (ty.to_string(), l.metadata.name.clone().unwrap(), holder)
}

fn ev(ty: &str, name: &str, holder: &str) -> (String, String, String) {
    (ty.into(), name.into(), holder.into())
}

/// Set the holder through the store (no preconditions needed in tests).
fn set_holder(emu: &Emulator, name: &str, holder: &str) -> u64 {
    let obj = emu
        .store()
        .put(
            "leases",
            json!({ "metadata": { "name": name }, "spec": { "holderIdentity": holder } }),
        )
        .unwrap();
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn unset_or_zero_rv_sends_current_state_then_changes() {
    let emu = start().await;
    set_holder(&emu, "a", "pod-a");
    set_holder(&emu, "b", "pod-b");
    let api = leases(&emu, "w").await;
    for (start_rv, holder) in [("0", "pod-a"), ("", "next-0")] {
        let mut s = api
            .watch(&WatchParams::default().disable_bookmarks(), start_rv)
            .await
            .unwrap()
            .boxed();
        assert_eq!(
            describe(&next(&mut s).await),
            ev("ADDED", "a", holder),
            "rv {start_rv:?}"
        );
        assert_eq!(describe(&next(&mut s).await), ev("ADDED", "b", "pod-b"));
        set_holder(&emu, "a", &format!("next-{start_rv}"));
        assert_eq!(
            describe(&next(&mut s).await),
            ev("MODIFIED", "a", &format!("next-{start_rv}"))
        );
    }
}

#[tokio::test]
async fn a_resource_version_replays_history_in_order() {
    let emu = start().await;
    let from = set_holder(&emu, "l", "h0");
    emu.store()
        .put("pods", json!({ "metadata": { "name": "p" } }))
        .unwrap();
    for i in 1..=3 {
        set_holder(&emu, "l", &format!("h{i}"));
    }
    emu.store().delete("leases", "default", "l").unwrap();
    let api = leases(&emu, "w").await;
    let mut s = api
        .watch(
            &WatchParams::default().disable_bookmarks(),
            &from.to_string(),
        )
        .await
        .unwrap()
        .boxed();
    let mut last = from;
    for want in [
        ev("MODIFIED", "l", "h1"),
        ev("MODIFIED", "l", "h2"),
        ev("MODIFIED", "l", "h3"),
        ev("DELETED", "l", "h3"),
    ] {
        let e = next(&mut s).await;
        assert_eq!(describe(&e), want);
        let (WatchEvent::Modified(l) | WatchEvent::Deleted(l)) = &e else {
            unreachable!()
        };
        assert!(rv(&l.metadata) > last, "resourceVersions increase");
        last = rv(&l.metadata);
    }
    assert_eq!(
        last,
        emu.store().resource_version(),
        "a delete event carries the delete's rv"
    );
}

#[tokio::test]
async fn a_too_old_resource_version_is_410_expired() {
    let emu = start_with(|o| o.history_window = 2).await;
    let first = set_holder(&emu, "l", "h0");
    for i in 1..=5 {
        set_holder(&emu, "l", &format!("h{i}"));
    }
    let api = leases(&emu, "w").await;
    let mut s = api
        .watch(&WatchParams::default(), &first.to_string())
        .await
        .unwrap()
        .boxed();
    let WatchEvent::Error(status) = next(&mut s).await else {
        panic!("expected an ERROR event")
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert!(
        status
            .message
            .starts_with(&format!("too old resource version: {first} (")),
        "{}",
        status.message
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .unwrap()
            .is_none(),
        "stream closes after the error"
    );
}

#[tokio::test]
async fn bookmarks_carry_the_current_resource_version() {
    let emu = start_with(|o| o.bookmark_interval = Duration::from_millis(50)).await;
    set_holder(&emu, "l", "h");
    let current = set_holder(&emu, "other", "h");
    let api = leases(&emu, "w").await;
    let mut s = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let mut added = 0;
    loop {
        match next(&mut s).await {
            WatchEvent::Added(_) => added += 1,
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.metadata.resource_version, current.to_string());
                assert_eq!(
                    (b.types.kind.as_str(), b.types.api_version.as_str()),
                    ("Lease", "coordination.k8s.io/v1")
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 2);
}

#[tokio::test]
async fn timeout_seconds_closes_the_stream_cleanly() {
    let emu = start().await;
    let api = leases(&emu, "w").await;
    let started = Instant::now();
    let mut s = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    let end = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("closed within 5s");
    assert!(end.is_none(), "a clean end, not an error: {end:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn label_selector_transitions_are_added_and_deleted() {
    let emu = start().await;
    let put = |app: &str| {
        emu.store()
            .put(
                "leases",
                json!({ "metadata": { "name": "l", "labels": { "app": app } } }),
            )
            .unwrap()
    };
    put("b");
    let api = leases(&emu, "w").await;
    let wp = WatchParams::default().labels("app=a").disable_bookmarks();
    let mut s = api.watch(&wp, "0").await.unwrap().boxed();
    put("a");
    assert!(
        matches!(next(&mut s).await, WatchEvent::Added(_)),
        "moved into the selection"
    );
    put("b");
    assert!(
        matches!(next(&mut s).await, WatchEvent::Deleted(_)),
        "moved out of the selection"
    );
    let named = WatchParams::default()
        .fields("metadata.name=other")
        .disable_bookmarks();
    let mut only_other = api
        .watch(&named, &emu.store().resource_version().to_string())
        .await
        .unwrap()
        .boxed();
    put("a");
    set_holder(&emu, "other", "x");
    assert_eq!(
        describe(&next(&mut only_other).await),
        ev("ADDED", "other", "x")
    );
    assert!(matches!(next(&mut s).await, WatchEvent::Added(_)));
}

#[tokio::test]
async fn send_initial_events_ends_with_an_annotated_bookmark() {
    let emu = start().await;
    let rv_now = set_holder(&emu, "l", "h");
    let api = leases(&emu, "w").await;
    let mut s = api
        .watch(&WatchParams::streaming_lists(), "")
        .await
        .unwrap()
        .boxed();
    assert_eq!(describe(&next(&mut s).await), ev("ADDED", "l", "h"));
    let WatchEvent::Bookmark(b) = next(&mut s).await else {
        panic!("expected the initial-events-end bookmark")
    };
    assert_eq!(b.metadata.resource_version, rv_now.to_string());
    assert_eq!(
        b.metadata
            .annotations
            .get("k8s.io/initial-events-end")
            .map(String::as_str),
        Some("true")
    );
    set_holder(&emu, "l", "h2");
    assert_eq!(describe(&next(&mut s).await), ev("MODIFIED", "l", "h2"));
}

#[tokio::test]
async fn api_writes_reach_watches_of_every_client() {
    let emu = start().await;
    let (a, b) = (leases(&emu, "a").await, leases(&emu, "b").await);
    let mut s = b
        .watch(&WatchParams::default().disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    let created = a
        .create(&PostParams::default(), &lease("l", "a"))
        .await
        .unwrap();
    let WatchEvent::Added(seen) = next(&mut s).await else {
        panic!()
    };
    assert_eq!(seen, created);
}
