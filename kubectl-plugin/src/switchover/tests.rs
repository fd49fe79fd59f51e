use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use serde_json::json;

use crate::election::tests::{election_lease, now, web};
use crate::election::{Election, Slot};

use super::*;

fn request(to: Option<&str>) -> Request {
    Request {
        election: "web".into(),
        slot: None,
        from: None,
        to: to.map(String::from),
        wait: Duration::from_secs(30),
    }
}

fn message(e: Error) -> String {
    e.to_string()
}

fn two_slots() -> Election {
    let mut e = web();
    let mut second = Slot::from_lease(1, "web-1", Some(&election_lease()));
    second.holder = Some("pod-b".into());
    e.slots[0].lease = "web-0".into();
    e.slots.push(second);
    e
}

#[test]
fn one_slot_is_picked() {
    let e = web();
    assert_eq!(pick_slot(&e, &request(None)).unwrap().index, 0);
}

#[test]
fn several_slots_need_a_choice() {
    let e = two_slots();
    let err = message(pick_slot(&e, &request(None)).unwrap_err());
    assert!(err.contains("--slot"), "{err}");
    let by_slot = Request {
        slot: Some(1),
        ..request(None)
    };
    assert_eq!(pick_slot(&e, &by_slot).unwrap().lease, "web-1");
    let by_from = Request {
        from: Some("pod-b".into()),
        ..request(None)
    };
    assert_eq!(pick_slot(&e, &by_from).unwrap().index, 1);
    let nobody = Request {
        from: Some("pod-z".into()),
        ..request(None)
    };
    assert_eq!(
        message(pick_slot(&e, &nobody).unwrap_err()),
        "error: pod-z holds no slot of web"
    );
    let out_of_range = Request {
        slot: Some(2),
        ..request(None)
    };
    assert!(message(pick_slot(&e, &out_of_range).unwrap_err()).contains("no slot 2"));
}

#[test]
fn targets_checked() {
    let e = web();
    let s = &e.slots[0];
    assert!(check(&e, s, None, now()).is_ok());
    assert!(
        check(&e, s, Some("pod-a"), now())
            .unwrap_err()
            .to_string()
            .contains("already holds")
    );
    assert_eq!(
        message(check(&e, s, Some("pod-x"), now()).unwrap_err()),
        "error: pod-x is not a healthy member of web (no member Lease web-member-pod-x)"
    );
    assert_eq!(
        message(check(&e, s, Some("pod-b"), now()).unwrap_err()),
        "error: pod-b is not a healthy member of web (it reports ready=false)"
    );
    assert_eq!(
        message(check(&e, s, Some("pod-c"), now()).unwrap_err()),
        "error: pod-c is not a healthy member of web (its member Lease is stale: last renewed 2m ago, duration 60s)"
    );
}

#[test]
fn no_leader_no_switchover() {
    let mut e = web();
    e.slots[0].holder = None;
    assert_eq!(
        message(check(&e, &e.slots[0], None, now()).unwrap_err()),
        "error: web has no leader to switch over from"
    );
}

#[test]
fn judging_progress() {
    let base = Baseline {
        lease: "web".into(),
        holder: "pod-a".into(),
        epoch: 3,
        to: Some("pod-b".into()),
    };
    let mut s = Slot::from_lease(0, "web", Some(&election_lease()));
    s.handover_to = Some("pod-b".into());
    assert_eq!(base.judge(&s), Progress::Pending);
    // Released on the way: still pending.
    s.holder = None;
    assert_eq!(base.judge(&s), Progress::Pending);
    s.holder = Some("pod-b".into());
    s.epoch = Some(4);
    s.handover_to = None;
    assert_eq!(
        base.judge(&s),
        Progress::Done {
            holder: "pod-b".into(),
            epoch: 4
        }
    );
    s.holder = Some("pod-c".into());
    assert_eq!(
        base.judge(&s),
        Progress::Elsewhere {
            holder: "pod-c".into(),
            epoch: 4
        }
    );
    let any = Baseline {
        to: None,
        ..base.clone()
    };
    assert_eq!(
        any.judge(&s),
        Progress::Done {
            holder: "pod-c".into(),
            epoch: 4
        }
    );
    s.holder = Some("pod-a".into());
    s.epoch = Some(3);
    assert_eq!(base.judge(&s), Progress::Refused);
}

#[test]
fn newest_fresh_refusal() {
    let event = |reason: &str, at: &str, message: &str| -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("e-{at}")},
            "involvedObject": {"kind": "Lease", "name": "web"},
            "reason": reason, "message": message, "lastTimestamp": at,
        }))
        .unwrap()
    };
    let events = [
        event("HandoverRefused", "2026-11-30T11:00:00Z", "old refusal"),
        event(
            "HandoverRefused",
            "2026-11-30T12:00:02Z",
            "pod-b is not ready",
        ),
        event("HandoverRefused", "2026-11-30T12:00:01Z", "earlier"),
        event("Other", "2026-11-30T12:00:05Z", "unrelated"),
    ];
    assert_eq!(
        refusal_message(&events, now()).as_deref(),
        Some("pod-b is not ready")
    );
    let later = now() + jiff::SignedDuration::from_secs(60);
    assert_eq!(refusal_message(&events, later), None);
}
