use std::time::{Duration, Instant};

use super::*;

fn view(me: &str, role: Role, holder: Option<&str>) -> View {
    let now = Instant::now();
    View {
        role,
        leader: holder.map(|h| Leader {
            identity: h.to_string(),
            address: None,
            peer_address: None,
            epoch: 1,
        }),
        acting_until: (role == Role::Leader).then(|| now + Duration::from_secs(5)),
        synced: true,
        ..View::initial("l", me, now)
    }
}

fn free() -> View {
    view("me", Role::Candidate, None)
}

fn other() -> View {
    view("me", Role::Follower, Some("other"))
}

fn mine() -> View {
    view("me", Role::Leader, Some("me"))
}

#[test]
fn lease_names_keep_the_single_election_name() {
    assert_eq!(lease_name("db", 1, 0), "db");
    assert_eq!(lease_name("db", 3, 0), "db-0");
    assert_eq!(lease_name("db", 3, 2), "db-2");
}

#[test]
fn contends_for_the_lowest_free_slot_only() {
    let mut gate = Gate::new(3);
    assert_eq!(
        gate.decide(&[other(), free(), free()]),
        [false, true, false]
    );
    // Sticks to it while it is free or its own, even when a lower one frees up.
    assert_eq!(gate.decide(&[free(), free(), free()]), [false, true, false]);
    assert_eq!(gate.decide(&[free(), mine(), free()]), [false, true, false]);
    assert_eq!(gate.held(&[free(), mine(), free()]), Some(1));
}

#[test]
fn moves_on_when_another_pod_wins_the_slot() {
    let mut gate = Gate::new(2);
    assert_eq!(gate.decide(&[free(), free()]), [true, false]);
    assert_eq!(gate.decide(&[other(), free()]), [false, true]);
    assert_eq!(gate.decide(&[other(), other()]), [false, false]);
    assert_eq!(gate.held(&[other(), other()]), None);
}

#[test]
fn waits_until_a_slot_has_been_read() {
    let mut gate = Gate::new(2);
    let unread = View::initial("l", "me", Instant::now());
    assert_eq!(gate.decide(&[unread.clone(), unread]), [false, false]);
}

#[test]
fn only_the_designated_slot_counts_as_held() {
    let mut gate = Gate::new(2);
    assert_eq!(gate.decide(&[free(), free()]), [true, false]);
    // Slot 1's core leads (say, before its ineligibility arrived): not acted on.
    assert_eq!(gate.held(&[free(), mine()]), None);
    let slots = Slots {
        views: vec![free(), mine()],
        held: gate.held(&[free(), mine()]),
        eligible: true,
    };
    assert_eq!(slots.acting(Instant::now()), None);
    assert_eq!(slots.actives().count(), 1);
}

#[test]
fn unhealthy_or_retired_is_eligible_nowhere() {
    for slots in [1, 3] {
        let mut gate = Gate::new(slots);
        gate.set_healthy(false);
        assert!(gate.decide(&vec![mine(); slots]).iter().all(|e| !e));
        gate.set_healthy(true);
        assert!(gate.decide(&vec![free(); slots])[0]);
        gate.retire();
        assert!(gate.decide(&vec![free(); slots]).iter().all(|e| !e));
    }
}

#[test]
fn the_routing_view_is_the_held_slot_or_a_standby_with_every_active() {
    let b = view("me", Role::Follower, Some("b"));
    // Active in slot 1: its own view, slot 0's holder as a peer.
    let active = Slots {
        views: vec![other(), mine()],
        held: Some(1),
        eligible: true,
    };
    let v = active.routing_view();
    assert_eq!(v.leader_name(), "me");
    assert!(v.is_acting(Instant::now()));
    assert_eq!(v.peers.len(), 1);
    assert_eq!(v.peers[0].identity, "other");
    // Standby: the first held slot's view, the other holders as peers.
    let standby = Slots {
        views: vec![free(), other(), b],
        held: None,
        eligible: true,
    };
    let v = standby.routing_view();
    assert_eq!((v.role, v.leader_name()), (Role::Follower, "other"));
    assert_eq!(
        v.peers
            .iter()
            .map(|p| p.identity.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    // A core leading a slot the gate did not give it is never acted on.
    let stray = Slots {
        views: vec![mine(), free()],
        held: None,
        eligible: true,
    };
    assert!(!stray.routing_view().is_acting(Instant::now()));
}
