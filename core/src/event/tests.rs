use std::time::{Duration, Instant};

use super::*;

const S: Duration = Duration::from_secs(1);

fn obs(rv: u64, holder: &str, transitions: i32) -> Observed {
    Observed::sample(rv, holder, transitions)
}

#[test]
fn the_first_holder_seen_is_not_a_transition() {
    let t0 = Instant::now();
    let mut t = Hands::default();
    assert_eq!(t.see(t0, &obs(1, "a", 0)), None);
    assert_eq!(t.see(t0 + S, &obs(2, "a", 0)), None, "a renew");
}

#[test]
fn a_takeover_after_expiry_measures_from_the_last_renew_seen() {
    let t0 = Instant::now();
    let mut t = Hands::default();
    t.see(t0, &obs(1, "a", 4));
    t.see(t0 + S, &obs(2, "a", 4));
    let moved = t.see(t0 + 12 * S, &obs(3, "b", 5)).expect("a transition");
    assert_eq!(
        moved,
        Event::HandsChanged {
            from: "a".into(),
            to: "b".into(),
            epoch: 5,
            gap: 11 * S,
        }
    );
}

#[test]
fn a_handover_after_release_measures_from_the_release() {
    let t0 = Instant::now();
    let mut t = Hands::default();
    t.see(t0, &obs(1, "a", 4));
    assert_eq!(t.see(t0 + 5 * S, &obs(2, "", 4)), None, "the release");
    let moved = t.see(t0 + 5 * S + S / 10, &obs(3, "b", 5)).unwrap();
    assert!(matches!(moved, Event::HandsChanged { from, gap, .. } if from == "a" && gap == S / 10));
}

#[test]
fn the_same_record_twice_or_a_stale_one_counts_once() {
    let t0 = Instant::now();
    let mut t = Hands::default();
    t.see(t0, &obs(1, "a", 0));
    assert!(t.see(t0 + S, &obs(5, "b", 1)).is_some());
    // The write's response and the watch event carry the same version.
    assert_eq!(t.see(t0 + 2 * S, &obs(5, "b", 1)), None);
    // A read answered before the takeover, arriving after it.
    assert_eq!(t.see(t0 + 3 * S, &obs(4, "a", 0)), None);
    assert_eq!(t.see(t0 + 4 * S, &obs(6, "b", 1)), None, "b renews");
}

#[test]
fn the_same_holder_at_a_new_epoch_is_a_transition() {
    // a lost the Lease by expiry and took it back: clients saw a failover all the same.
    let t0 = Instant::now();
    let mut t = Hands::default();
    t.see(t0, &obs(1, "a", 2));
    let moved = t.see(t0 + 11 * S, &obs(2, "a", 3)).unwrap();
    assert!(matches!(
        moved,
        Event::HandsChanged { from, to, epoch: 3, .. } if from == "a" && to == "a"
    ));
}

#[test]
fn a_first_sight_of_a_released_lease_is_not_a_transition() {
    let t0 = Instant::now();
    let mut t = Hands::default();
    t.see(t0, &obs(1, "", 7));
    assert_eq!(
        t.see(t0 + S, &obs(2, "b", 8)),
        None,
        "no earlier holder to move from"
    );
    assert!(t.see(t0 + 20 * S, &obs(3, "c", 9)).is_some());
}
