use std::collections::BTreeMap;

use super::*;
use crate::testing::leader;

fn actives(names: &[&str]) -> Vec<Leader> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| leader(n, Some(&format!("10.0.0.{}:8080", i + 1)), 1))
        .collect()
}

fn picks(b: &Balancer, actives: &[Leader], rounds: usize) -> BTreeMap<String, usize> {
    let refs: Vec<&Leader> = actives.iter().collect();
    let mut seen = BTreeMap::new();
    for _ in 0..rounds {
        *seen.entry(b.pick(&refs).identity.clone()).or_default() += 1;
    }
    seen
}

#[test]
fn one_active_is_always_the_pick() {
    let b = Balancer::with_seed(7);
    let one = actives(&["a"]);
    assert_eq!(picks(&b, &one, 10), BTreeMap::from([("a".to_string(), 10)]));
}

#[test]
fn equal_load_spreads_over_every_active() {
    let b = Balancer::with_seed(42);
    let three = actives(&["a", "b", "c"]);
    let seen = picks(&b, &three, 3000);
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (name, n) in &seen {
        // Fair within a wide margin: 1000 expected each.
        assert!(
            (800..=1200).contains(n),
            "{name} picked {n} times: {seen:?}"
        );
    }
}

#[test]
fn the_less_loaded_of_two_always_wins() {
    let b = Balancer::with_seed(1);
    let two = actives(&["a", "b"]);
    let _busy: Vec<_> = (0..3).map(|_| b.start("a")).collect();
    assert_eq!(picks(&b, &two, 50), BTreeMap::from([("b".to_string(), 50)]));
}

#[test]
fn the_most_loaded_of_three_is_never_picked() {
    // Of any two drawn, the busiest loses: it is never the pick.
    let b = Balancer::with_seed(3);
    let three = actives(&["a", "b", "c"]);
    let _busy: Vec<_> = (0..5).map(|_| b.start("c")).collect();
    let _one = b.start("b");
    let seen = picks(&b, &three, 500);
    assert_eq!(seen.get("c"), None, "{seen:?}");
    // And the idle one wins every draw it is in (two of three draws).
    assert!(seen["a"] > seen["b"], "{seen:?}");
}

#[test]
fn outstanding_requests_are_counted_until_their_guard_drops() {
    let b = Balancer::with_seed(5);
    let first = b.start("a");
    let second = b.start("a");
    let other = b.start("b");
    assert_eq!((b.outstanding("a"), b.outstanding("b")), (2, 1));
    drop(first);
    assert_eq!(b.outstanding("a"), 1);
    drop((second, other));
    assert_eq!((b.outstanding("a"), b.outstanding("b")), (0, 0));
    // Finished actives leave no entry behind.
    assert!(b.lock().outstanding.is_empty());
}

#[test]
fn load_moves_traffic_as_requests_finish() {
    // Requests that never finish at "a" push every later one to "b"; once they finish,
    // both are picked again.
    let b = Balancer::with_seed(11);
    let two = actives(&["a", "b"]);
    let refs: Vec<&Leader> = two.iter().collect();
    let mut held = Vec::new();
    for _ in 0..100 {
        let pick = b.pick(&refs);
        if pick.identity == "a" {
            held.push(b.start("a"));
        }
    }
    assert_eq!(
        held.len(),
        1,
        "only the first pick of a, while it is outstanding"
    );
    held.clear();
    let seen = picks(&b, &two, 200);
    assert_eq!(seen.len(), 2, "{seen:?}");
}
