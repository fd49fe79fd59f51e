use super::*;

fn member(name: &str, ready: Option<bool>, priority: i64) -> (String, Member) {
    let m = Member {
        identity: name.into(),
        address: Some(format!("{name}:8080")),
        peer_address: None,
        ready,
        priority,
    };
    (name.into(), m)
}

fn live() -> Members {
    [
        member("me", Some(true), 0),
        member("pod-b", Some(true), 0),
        member("pod-c", Some(true), 5),
        member("pod-d", Some(false), 9),
    ]
    .into_iter()
    .collect()
}

#[test]
fn a_named_target_must_be_a_live_ready_member_other_than_the_holder() {
    let live = live();
    let to = choose("web", "me", &live, Some("pod-b"), &none()).unwrap();
    assert_eq!(to.identity, "pod-b");
    assert_eq!(to.address.as_deref(), Some("pod-b:8080"));
    let err = choose("web", "me", &live, Some("pod-x"), &none()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pod-x is not a live member of the election (live members: pod-b, pod-c, pod-d)"
    );
    assert_eq!(
        choose("web", "me", &live, Some("pod-d"), &none()).unwrap_err(),
        HandoverError::NotReady {
            target: "pod-d".into()
        }
    );
    assert!(matches!(
        choose("web", "me", &live, Some("me"), &none()),
        Err(HandoverError::AlreadyLeader { .. })
    ));
}

#[test]
fn any_picks_the_ready_member_with_the_highest_priority_then_by_name() {
    let mut live = live();
    assert_eq!(
        choose("web", "me", &live, None, &none()).unwrap().identity,
        "pod-c"
    );
    live.remove("pod-c");
    assert_eq!(
        choose("web", "me", &live, None, &none()).unwrap().identity,
        "pod-b"
    );
    live.remove("pod-b");
    assert_eq!(
        choose("web", "me", &live, None, &none())
            .unwrap_err()
            .to_string(),
        "no other live, ready member to hand web to"
    );
}

fn none() -> std::collections::BTreeSet<String> {
    std::collections::BTreeSet::new()
}

#[test]
fn a_member_active_in_another_slot_is_never_chosen() {
    let live: Members = [
        member("pod-b", Some(true), 9),
        member("pod-c", Some(true), 1),
    ]
    .into_iter()
    .collect();
    let busy = std::collections::BTreeSet::from(["pod-b".to_string()]);
    assert_eq!(
        choose("web-0", "me", &live, None, &busy).unwrap().identity,
        "pod-c"
    );
    assert_eq!(
        choose("web-0", "me", &live, Some("pod-b"), &busy).unwrap_err(),
        HandoverError::ActiveElsewhere {
            target: "pod-b".into()
        }
    );
}
