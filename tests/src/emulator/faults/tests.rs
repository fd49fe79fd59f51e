use std::net::{IpAddr, Ipv4Addr};

use super::*;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn error_code(d: Decision) -> Option<u16> {
    match d {
        Decision::Proceed { error, .. } => error.map(|e| e.code),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn most_specific_matching_rule_wins() {
    let f = Faults::new(1);
    f.set(FaultScope::All, Fault::errors(1.0, 500));
    f.set(FaultScope::Client("a".into()), Fault::errors(1.0, 503));
    f.set(
        FaultScope::SourceIp(OTHER),
        Fault::errors(1.0, 429).for_verbs(&["update"]),
    );
    assert_eq!(error_code(f.decide("a", OTHER, "update")), Some(503));
    assert_eq!(error_code(f.decide("b", OTHER, "update")), Some(429));
    // The address rule does not cover "get", so the global rule does.
    assert_eq!(error_code(f.decide("b", OTHER, "get")), Some(500));
    f.clear(FaultScope::All);
    assert_eq!(error_code(f.decide("b", LOCAL, "get")), None);
}

#[test]
fn error_rate_is_reproducible_from_the_seed() {
    let run = |seed| {
        let f = Faults::new(seed);
        f.set(FaultScope::All, Fault::errors(0.5, 500));
        (0..64)
            .map(|_| error_code(f.decide("c", LOCAL, "get")).is_some())
            .collect::<Vec<_>>()
    };
    let a = run(42);
    assert_eq!(a, run(42));
    let hits = a.iter().filter(|h| **h).count();
    assert!((16..=48).contains(&hits), "{hits} of 64 failed at rate 0.5");
}

#[test]
fn latency_is_within_bounds() {
    let f = Faults::new(3);
    let (min, max) = (Duration::from_millis(10), Duration::from_millis(20));
    f.set(FaultScope::All, Fault::latency(min, max));
    for _ in 0..32 {
        let Decision::Proceed {
            delay: Some(d),
            error: None,
        } = f.decide("c", LOCAL, "get")
        else {
            panic!()
        };
        assert!(d >= min && d <= max, "{d:?}");
    }
}

#[test]
fn partitions_outages_and_cuts() {
    let f = Faults::new(0);
    let a = f.register_watch("a", LOCAL);
    let b = f.register_watch("b", LOCAL);
    f.partition(FaultScope::Client("a".into()));
    assert!(matches!(f.decide("a", LOCAL, "get"), Decision::Blackhole));
    assert_eq!(
        (a.state(), b.state()),
        (WatchState::Silent, WatchState::Live)
    );
    f.heal(FaultScope::All);
    assert_eq!(a.state(), WatchState::Live);
    f.cut_watches(FaultScope::Client("b".into()));
    assert_eq!((a.state(), b.state()), (WatchState::Live, WatchState::Cut));
    f.outage(true);
    assert!(matches!(f.decide("a", LOCAL, "get"), Decision::Reset));
    assert_eq!(a.state(), WatchState::Cut);
    f.clear_all();
    assert!(matches!(
        f.decide("a", LOCAL, "get"),
        Decision::Proceed {
            delay: None,
            error: None
        }
    ));
    drop((a, b));
    assert!(f.lock().watches.is_empty());
}

#[test]
fn open_watches_are_counted_by_scope_until_they_close() {
    let f = Faults::new(0);
    let a = f.register_watch("a", LOCAL);
    let b = f.register_watch("b", OTHER);
    assert_eq!(f.open_watches(FaultScope::All), 2);
    assert_eq!(f.open_watches(FaultScope::Client("a".into())), 1);
    assert_eq!(f.open_watches(FaultScope::SourceIp(OTHER)), 1);
    assert_eq!(f.open_watches(FaultScope::Client("c".into())), 0);
    drop(a);
    assert_eq!(f.open_watches(FaultScope::Client("a".into())), 0);
    assert_eq!(f.open_watches(FaultScope::All), 1);
    drop(b);
}
