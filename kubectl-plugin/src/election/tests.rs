use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;

use super::*;

pub(crate) fn now() -> Timestamp {
    "2026-11-30T12:00:00Z".parse().unwrap()
}

/// A Lease from JSON.
pub(crate) fn lease(value: serde_json::Value) -> Lease {
    serde_json::from_value(value).unwrap()
}

/// The election Lease `web` held by pod-a since 12:00:00 − 300 s, renewed 2 s ago.
pub(crate) fn election_lease() -> Lease {
    lease(json!({
        "metadata": {"name": "web", "annotations": {
            "understudy.io/address": "10.0.0.1:8080",
            "understudy.io/members": "pod-a,pod-b, pod-c",
            "understudy.io/member-expiry-seconds": "10",
        }},
        "spec": {
            "holderIdentity": "pod-a", "leaseTransitions": 3, "leaseDurationSeconds": 15,
            "acquireTime": "2026-11-30T11:55:00.000000Z", "renewTime": "2026-11-30T11:59:58.000000Z",
        },
    }))
}

/// A member Lease of `web` for `pod`, renewed `ago` seconds before [`now`].
pub(crate) fn member_lease(pod: &str, ago: i64, extra: serde_json::Value) -> Lease {
    let renewed = now() - jiff::SignedDuration::from_secs(ago);
    let mut annotations = json!({"understudy.io/address": format!("{pod}:8080")});
    if let serde_json::Value::Object(m) = extra {
        annotations.as_object_mut().unwrap().extend(m);
    }
    lease(json!({
        "metadata": {"name": format!("web-member-{pod}"),
                     "labels": {"understudy.io/election": "web"},
                     "annotations": annotations},
        "spec": {"holderIdentity": pod, "leaseDurationSeconds": 60,
                 "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()},
    }))
}

/// The election `web`: pod-a leads; pod-b is not ready; pod-c is stale.
pub(crate) fn web() -> Election {
    let members = group_members(&[
        member_lease(
            "pod-a",
            5,
            json!({"understudy.io/ready": "true", "understudy.io/priority": "5"}),
        ),
        member_lease("pod-b", 3, json!({"understudy.io/ready": "false"})),
        member_lease("pod-c", 120, json!({})),
    ])
    .remove("web")
    .unwrap();
    Election {
        name: "web".into(),
        slots: vec![Slot::from_lease(0, "web", Some(&election_lease()))],
        members,
    }
}

#[test]
fn slot_fields() {
    let s = Slot::from_lease(0, "web", Some(&election_lease()));
    assert!(s.exists);
    assert_eq!(s.holder.as_deref(), Some("pod-a"));
    assert_eq!(s.epoch, Some(3));
    assert_eq!(s.held(now()), Some(Duration::from_secs(300)));
    assert_eq!(s.address.as_deref(), Some("10.0.0.1:8080"));
    assert_eq!(
        s.failsafe_members,
        Some(vec!["pod-a".into(), "pod-b".into(), "pod-c".into()])
    );
    assert_eq!(s.member_expiry_seconds, Some(10));
    assert!(s.failsafe_on());
    assert!(!s.possibly_on_confirmations(now()));
    let later = now() + jiff::SignedDuration::from_secs(20);
    assert!(s.possibly_on_confirmations(later));
    assert_eq!(s.handover_to, None);
}

#[test]
fn empty_holder_is_nobody() {
    let l = lease(json!({"metadata": {"name": "web"}, "spec": {"holderIdentity": ""}}));
    let s = Slot::from_lease(0, "web", Some(&l));
    assert_eq!(s.holder, None);
    assert_eq!(s.held(now()), None);
    assert!(!s.failsafe_on());
    // No holder: never "acting on confirmations", however old.
    assert!(!s.possibly_on_confirmations(now()));
    let missing = Slot::from_lease(1, "web-1", None);
    assert!(!missing.exists);
}

#[test]
fn handover_request_read() {
    let mut l = election_lease();
    l.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("understudy.io/handover-to".into(), String::new());
    assert_eq!(
        Slot::from_lease(0, "web", Some(&l)).handover_to.as_deref(),
        Some("")
    );
}

#[test]
fn members_health() {
    let e = web();
    let names: Vec<_> = e.members.iter().map(|m| m.pod.as_str()).collect();
    assert_eq!(names, ["pod-a", "pod-b", "pod-c"]);
    let [a, b, c] = &e.members[..] else { panic!() };
    assert_eq!(a.health(now()), Health::Live);
    assert_eq!(a.ready, Some(true));
    assert_eq!(a.priority, Some(5));
    assert_eq!(b.health(now()), Health::NotReady);
    assert_eq!(b.priority, None);
    assert_eq!(c.health(now()), Health::Stale);
    assert_eq!(c.ready, None);
    assert_eq!(c.renewed_ago(now()), Some(Duration::from_secs(120)));
    assert_eq!(e.slots_held_by("pod-a"), [0]);
    assert!(e.slots_held_by("pod-b").is_empty());
}

#[test]
fn garbage_annotations_are_unknown() {
    let m = Member::from_lease(
        "web",
        &member_lease(
            "pod-x",
            1,
            json!({"understudy.io/ready": "yes", "understudy.io/priority": "high",
                   "understudy.io/actives": "0"}),
        ),
    );
    assert_eq!((m.ready, m.priority, m.actives), (None, None, None));
}

#[test]
fn member_without_renew_time_is_stale() {
    let l = lease(json!({"metadata": {"name": "web-member-pod-z",
                                      "labels": {"understudy.io/election": "web"}},
                         "spec": {}}));
    let m = Member::from_lease("web", &l);
    assert_eq!(m.pod, "pod-z");
    assert!(m.stale(now()));
}

#[test]
fn actives_prefer_fresh_members() {
    let fresh = Member::from_lease(
        "web",
        &member_lease("a", 1, json!({"understudy.io/actives": "2"})),
    );
    let stale = Member::from_lease(
        "web",
        &member_lease("b", 500, json!({"understudy.io/actives": "3"})),
    );
    assert_eq!(
        announced_actives(&[fresh.clone(), stale.clone()], now()),
        Some(2)
    );
    assert_eq!(announced_actives(&[stale], now()), Some(3));
    let silent = Member::from_lease("web", &member_lease("c", 1, json!({})));
    assert_eq!(announced_actives(&[silent], now()), None);
}

#[test]
fn grouping_ignores_unlabelled() {
    let other = lease(
        json!({"metadata": {"name": "x", "labels": {"understudy.io/election": "db"}},
                             "spec": {"holderIdentity": "db-0"}}),
    );
    let plain = lease(json!({"metadata": {"name": "y"}}));
    let groups = group_members(&[member_lease("pod-a", 1, json!({})), other, plain]);
    assert_eq!(groups.keys().collect::<Vec<_>>(), ["db", "web"]);
}
