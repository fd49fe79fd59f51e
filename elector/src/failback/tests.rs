use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;
use crate::members::Member;

const DELAY: Duration = Duration::from_secs(60);

fn member(identity: &str, priority: i64, ready: Option<bool>) -> (String, Member) {
    let m = Member {
        identity: identity.to_string(),
        address: Some(format!("{identity}:8080")),
        peer_address: None,
        ready,
        priority,
    };
    (identity.to_string(), m)
}

fn live(members: &[(&str, i64, Option<bool>)]) -> Members {
    members.iter().map(|&(id, p, r)| member(id, p, r)).collect()
}

fn none() -> BTreeSet<String> {
    BTreeSet::new()
}

#[test]
fn hands_over_once_a_higher_priority_member_has_been_ready_for_the_delay() {
    let t0 = Instant::now();
    let mut f = Failback::new("b", 0, DELAY);
    let members = live(&[("a", 10, Some(true)), ("b", 0, Some(true))]);
    f.update(t0, Some(0), &members, &none());
    assert_eq!(f.due(t0), None);
    assert_eq!(f.next_check(), Some(t0 + DELAY));
    f.update(
        t0 + DELAY - Duration::from_millis(1),
        Some(0),
        &members,
        &none(),
    );
    assert_eq!(f.due(t0 + DELAY - Duration::from_millis(1)), None);
    f.update(t0 + DELAY, Some(0), &members, &none());
    assert_eq!(f.due(t0 + DELAY), Some((0, "a".to_string())));
}

#[test]
fn equal_or_lower_priorities_never_move_the_leader() {
    let t0 = Instant::now();
    let mut f = Failback::new("b", 5, DELAY);
    let members = live(&[("a", 5, Some(true)), ("c", 1, Some(true))]);
    f.update(t0, Some(0), &members, &none());
    let later = t0 + 10 * DELAY;
    f.update(later, Some(0), &members, &none());
    assert_eq!(f.due(later), None);
    assert_eq!(f.next_check(), None);
}

#[test]
fn a_freshly_failed_over_to_leader_keeps_its_slot_for_the_delay() {
    let t0 = Instant::now();
    let mut f = Failback::new("b", 0, DELAY);
    let members = live(&[("a", 10, Some(true))]);
    // "a" has been ready for long, but "b" only just took over.
    f.update(t0, None, &members, &none());
    let took = t0 + 5 * DELAY;
    f.update(took, Some(0), &members, &none());
    assert_eq!(f.due(took), None);
    assert_eq!(f.next_check(), Some(took + DELAY));
    f.update(took + DELAY, Some(0), &members, &none());
    assert_eq!(f.due(took + DELAY), Some((0, "a".to_string())));
}

#[test]
fn a_member_that_flaps_starts_its_delay_anew() {
    let t0 = Instant::now();
    let mut f = Failback::new("b", 0, DELAY);
    f.update(t0, Some(0), &live(&[("a", 10, Some(true))]), &none());
    let flap = t0 + DELAY / 2;
    f.update(flap, Some(0), &live(&[("a", 10, Some(false))]), &none());
    assert_eq!(f.next_check(), None);
    let back = flap + Duration::from_secs(1);
    f.update(back, Some(0), &live(&[("a", 10, Some(true))]), &none());
    f.update(
        t0 + DELAY,
        Some(0),
        &live(&[("a", 10, Some(true))]),
        &none(),
    );
    assert_eq!(
        f.due(t0 + DELAY),
        None,
        "the delay restarted when it came back"
    );
    assert_eq!(f.due(back + DELAY), Some((0, "a".to_string())));
    // A member that vanishes (its member Lease expired) starts over too, and so does one
    // whose priority changed.
    f.update(back + DELAY, Some(0), &live(&[]), &none());
    let again = back + 2 * DELAY;
    f.update(again, Some(0), &live(&[("a", 11, Some(true))]), &none());
    assert_eq!(f.due(again), None);
}

#[test]
fn unready_unknown_readiness_and_actives_of_other_slots_are_never_chosen() {
    let t0 = Instant::now();
    let mut f = Failback::new("b", 0, DELAY);
    let members = live(&[
        ("a", 10, Some(false)),
        ("c", 10, None),
        ("d", 10, Some(true)),
        ("e", 3, Some(true)),
    ]);
    let others = BTreeSet::from(["d".to_string()]);
    f.update(t0, Some(1), &members, &others);
    f.update(t0 + DELAY, Some(1), &members, &others);
    assert_eq!(f.due(t0 + DELAY), Some((1, "e".to_string())));
}

#[test]
fn the_highest_priority_wins_then_the_first_by_name() {
    let t0 = Instant::now();
    let mut f = Failback::new("z", 0, DELAY);
    let members = live(&[
        ("c", 7, Some(true)),
        ("b", 9, Some(true)),
        ("a", 9, Some(true)),
    ]);
    f.update(t0, Some(0), &members, &none());
    assert_eq!(f.due(t0 + DELAY), Some((0, "a".to_string())));
}

#[test]
fn a_standby_never_hands_over_and_a_failure_waits_the_delay() {
    let t0 = Instant::now();
    let mut f = Failback::new("b", 0, DELAY);
    let members = live(&[("a", 10, Some(true))]);
    f.update(t0, None, &members, &none());
    assert_eq!(f.due(t0 + 2 * DELAY), None);
    assert_eq!(f.next_check(), None);
    f.update(t0, Some(0), &members, &none());
    let at = t0 + DELAY;
    assert!(f.due(at).is_some());
    f.failed(at);
    assert_eq!(f.due(at + DELAY / 2), None);
    assert_eq!(f.next_check(), Some(at + DELAY));
    assert!(f.due(at + DELAY).is_some());
}
