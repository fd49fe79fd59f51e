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

/// No slot held by anyone else.
fn none() -> Vec<Option<String>> {
    Vec::new()
}

fn holders(ids: &[Option<&str>]) -> Vec<Option<String>> {
    ids.iter().map(|h| h.map(str::to_string)).collect()
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
    let others = holders(&[Some("d"), Some("b")]);
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

#[test]
fn with_no_delay_a_failure_still_waits_the_retry_floor() {
    let t0 = Instant::now();
    let mut f = Failback::new("b", 0, Duration::ZERO);
    f.update(t0, Some(0), &live(&[("a", 10, Some(true))]), &none());
    assert!(f.due(t0).is_some());
    f.failed(t0);
    assert_eq!(f.due(t0), None);
    assert_eq!(f.next_check(), Some(t0 + RETRY_FLOOR));
    assert!(f.due(t0 + RETRY_FLOOR).is_some());
}

#[test]
fn two_holders_never_hand_over_to_the_same_pod_at_once() {
    // Slots 0 and 1 held by "a" and "b" (priority 0); "p" (priority 10) is idle. Only the
    // lower slot's holder hands over; the other waits for the change, then finds "p" busy.
    let t0 = Instant::now();
    let members = live(&[
        ("a", 0, Some(true)),
        ("b", 0, Some(true)),
        ("p", 10, Some(true)),
    ]);
    let before = holders(&[Some("a"), Some("b")]);
    let mut a = Failback::new("a", 0, DELAY);
    let mut b = Failback::new("b", 0, DELAY);
    a.update(t0, Some(0), &members, &before);
    b.update(t0, Some(1), &members, &before);
    let later = t0 + DELAY;
    a.update(later, Some(0), &members, &before);
    b.update(later, Some(1), &members, &before);
    assert_eq!(a.due(later), Some((0, "p".to_string())));
    assert_eq!(b.due(later), None, "slot 1 waits for slot 0");
    // For a change, or at most the stagger limit (here the delay, which is longer).
    assert_eq!(b.next_check(), Some(later + DELAY));
    assert_eq!(b.due(later + DELAY - Duration::from_millis(1)), None);
    // "p" took slot 0: "b" keeps slot 1, "p" being busy.
    let after = holders(&[Some("p"), Some("b")]);
    b.update(later, Some(1), &members, &after);
    assert_eq!(b.due(later + DELAY), None);
    // With a second preferred pod "q", "b" hands over to it once slot 0 is settled, but not
    // before: "a" (priority 0) would have wanted the better "p" first.
    let members = live(&[
        ("a", 0, Some(true)),
        ("b", 0, Some(true)),
        ("p", 10, Some(true)),
        ("q", 5, Some(true)),
    ]);
    let mut b = Failback::new("b", 0, DELAY);
    b.update(t0, Some(1), &members, &before);
    assert_eq!(b.due(t0 + DELAY), None);
    b.update(t0 + DELAY, Some(1), &members, &after);
    assert_eq!(b.due(t0 + DELAY), Some((1, "q".to_string())));
    // A lower holder that never fails back (it announces no readiness: an older sidecar) is
    // not waited for; one that does but never gets to it, only for the delay.
    let members = live(&[("a", 0, None), ("b", 0, Some(true)), ("p", 10, Some(true))]);
    let mut b = Failback::new("b", 0, DELAY);
    b.update(t0, Some(1), &members, &before);
    assert_eq!(b.due(t0 + DELAY), Some((1, "p".to_string())));
    let members = live(&[
        ("a", 0, Some(true)),
        ("b", 0, Some(true)),
        ("p", 10, Some(true)),
    ]);
    let mut b = Failback::new("b", 0, DELAY);
    b.update(t0, Some(1), &members, &before);
    b.update(t0 + DELAY, Some(1), &members, &before);
    assert_eq!(b.due(t0 + DELAY), None, "waits for slot 0");
    assert_eq!(b.next_check(), Some(t0 + DELAY + DELAY));
    b.update(t0 + 2 * DELAY, Some(1), &members, &before);
    assert_eq!(
        b.due(t0 + 2 * DELAY),
        Some((1, "p".to_string())),
        "no longer than the delay"
    );
    // A lower slot held by a pod of higher priority than the candidates never holds us up.
    let mut c = Failback::new("c", 0, DELAY);
    let members = live(&[("h", 20, Some(true)), ("q", 5, Some(true))]);
    c.update(t0, Some(1), &members, &holders(&[Some("h"), Some("c")]));
    assert_eq!(c.due(t0 + DELAY), Some((1, "q".to_string())));
}
