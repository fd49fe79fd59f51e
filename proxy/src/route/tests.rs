use std::time::{Duration, Instant};

use super::*;
use crate::testing::{following, leader, leaderless, leading};

fn decide<'v>(view: &'v View, now: Instant, inbound: &Inbound) -> Route<'v> {
    super::decide(view, now, inbound, &Balancer::default())
}

fn from_peer(pod: &str, hops: u8) -> Inbound {
    Inbound {
        for_pod: Some(pod.into()),
        hops,
        hold: None,
    }
}

#[test]
fn acting_leader_serves_locally_with_its_epoch() {
    let view = leading("a", "10.0.0.1:8080", 7);
    let route = decide(&view, Instant::now(), &Inbound::default());
    assert_eq!(route, Route::Local { epoch: 7 });
    // A request a peer meant for us is ours too.
    assert!(matches!(
        decide(&view, Instant::now(), &from_peer("a", 1)),
        Route::Local { .. }
    ));
}

#[test]
fn leader_past_its_fencing_deadline_holds() {
    let mut view = leading("a", "10.0.0.1:8080", 7);
    let now = Instant::now();
    view.acting_until = Some(now - Duration::from_millis(1));
    assert_eq!(decide(&view, now, &Inbound::default()), Route::Hold);
}

#[test]
fn standby_forwards_to_the_leader_with_one_more_hop() {
    let view = following("b", "a", "10.0.0.1:8080", 3);
    assert_eq!(
        decide(&view, Instant::now(), &Inbound::default()),
        Route::Forward {
            identity: "a",
            epoch: 3,
            address: "10.0.0.1:8080",
            hops: 1
        }
    );
}

#[test]
fn nobody_to_send_to_means_hold() {
    assert_eq!(
        decide(&leaderless("b"), Instant::now(), &Inbound::default()),
        Route::Hold
    );
    // A holder without an address (a client-go candidate) cannot take traffic.
    let mut view = following("b", "a", "x:1", 3);
    view.leader.as_mut().unwrap().address = None;
    assert_eq!(
        decide(&view, Instant::now(), &Inbound::default()),
        Route::Hold
    );
}

#[test]
fn request_for_another_pod_is_never_served_locally() {
    let view = leading("a", "10.0.0.1:8080", 7);
    let route = decide(&view, Instant::now(), &from_peer("c", 1));
    assert_eq!(
        route,
        Route::Reject(Misdirected::NotFor { meant: "c".into() })
    );
}

#[test]
fn request_for_another_pod_is_rerouted_once_to_the_leader_we_know() {
    // The sender thought c leads; we know a does: pass it on, hop 2.
    let view = following("b", "a", "10.0.0.1:8080", 4);
    let route = decide(&view, Instant::now(), &from_peer("c", 1));
    assert!(matches!(
        &route,
        Route::Forward { hops: 2, address, .. } if *address == "10.0.0.1:8080"
    ));
    // Out of hops: refused.
    let route = decide(&view, Instant::now(), &from_peer("c", MAX_HOPS));
    assert!(matches!(route, Route::Reject(_)));
}

#[test]
fn request_for_the_leader_that_reached_the_wrong_pod_is_refused() {
    // Our view agrees with the sender's (a leads), yet it reached us: the address is stale
    // or reused. Sending it to the same address again would loop.
    let view = following("b", "a", "10.0.0.1:8080", 4);
    let route = decide(&view, Instant::now(), &from_peer("a", 1));
    assert_eq!(
        route,
        Route::Reject(Misdirected::NotFor { meant: "a".into() })
    );
    // Nobody known: refused, not held (the sender holds instead).
    assert!(matches!(
        decide(&leaderless("b"), Instant::now(), &from_peer("a", 1)),
        Route::Reject(_)
    ));
}

#[test]
fn a_former_leader_passes_its_requests_on_to_the_new_one() {
    // Meant for us (we were leader), but we have handed over to c.
    let view = following("a", "c", "10.0.0.3:8080", 8);
    let route = decide(&view, Instant::now(), &from_peer("a", 1));
    assert!(matches!(route, Route::Forward { hops: 2, .. }));
    // ...but not past the hop limit.
    let route = decide(&view, Instant::now(), &from_peer("a", MAX_HOPS));
    assert_eq!(route, Route::Reject(Misdirected::TooManyHops));
}

/// Exhaustive over small worlds: a request is served locally only by the acting leader it
/// was meant for (or by the acting leader, from a client), and never forwarded past MAX_HOPS.
#[test]
fn no_route_breaks_the_invariants() {
    let pods = ["a", "b", "c"];
    let now = Instant::now();
    for me in pods {
        let mut views = vec![leaderless(me), leading(me, "x:1", 1)];
        for l in pods.iter().filter(|l| **l != me) {
            views.push(following(me, l, "x:2", 2));
        }
        for view in &views {
            for hops in 0..=MAX_HOPS + 1 {
                let mut inbounds = vec![Inbound::default()];
                inbounds.extend(pods.iter().map(|p| from_peer(p, hops)));
                for inbound in &inbounds {
                    match decide(view, now, inbound) {
                        Route::Local { epoch } => {
                            assert!(view.is_acting(now));
                            let leader = view.leader.as_ref().unwrap();
                            assert_eq!((leader.identity.as_str(), leader.epoch), (me, epoch));
                            assert!(inbound.for_pod.as_deref().is_none_or(|p| p == me));
                        }
                        Route::Forward {
                            hops: h, identity, ..
                        } => {
                            assert!(h <= MAX_HOPS && h == inbound.hops + 1);
                            assert_ne!(identity, me);
                            assert_ne!(
                                Some(identity),
                                inbound.for_pod.as_deref().filter(|p| *p != me)
                            );
                        }
                        Route::Hold => assert!(inbound.for_pod.as_deref().is_none_or(|p| p == me)),
                        Route::Reject(_) => {}
                    }
                }
            }
        }
    }
}

#[test]
fn a_standby_spreads_over_every_active_of_n_slots() {
    let mut view = following("c", "a", "10.0.0.1:8080", 3);
    view.peers = vec![
        leader("b", Some("10.0.0.2:8080"), 5),
        // Without an address (a foreign holder): never picked.
        leader("x", None, 1),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..64 {
        match decide(&view, Instant::now(), &Inbound::default()) {
            Route::Forward { identity, .. } => seen.insert(identity),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    // An active serves locally, whatever the other slots.
    let mut active = leading("b", "10.0.0.2:8080", 5);
    active.peers = vec![leader("a", Some("10.0.0.1:8080"), 3)];
    assert!(matches!(
        decide(&active, Instant::now(), &Inbound::default()),
        Route::Local { .. }
    ));
    // A request meant for a known active that reached this pod is refused, not looped.
    assert!(matches!(
        decide(&view, Instant::now(), &from_peer("b", 1)),
        Route::Reject(_)
    ));
}

#[test]
fn a_standby_holds_only_when_no_active_is_reachable() {
    // Slot 0's holder advertises no address, another slot's does: forward there.
    let mut view = following("c", "x", "x:1", 3);
    view.leader.as_mut().unwrap().address = None;
    view.peers = vec![leader("b", Some("10.0.0.2:8080"), 5)];
    match decide(&view, Instant::now(), &Inbound::default()) {
        Route::Forward {
            identity,
            epoch,
            address,
            ..
        } => {
            assert_eq!((identity, epoch, address), ("b", 5, "10.0.0.2:8080"))
        }
        other => panic!("{other:?}"),
    }
    // No slot names a holder at all, but the view lists an active: forward there too.
    let mut view = leaderless("c");
    view.peers = vec![leader("b", Some("10.0.0.2:8080"), 5)];
    assert!(matches!(
        decide(&view, Instant::now(), &Inbound::default()),
        Route::Forward { .. }
    ));
    // Only address-less holders: hold.
    view.peers = vec![leader("x", None, 1)];
    assert_eq!(
        decide(&view, Instant::now(), &Inbound::default()),
        Route::Hold
    );
}

#[test]
fn a_standby_sends_each_request_to_the_less_loaded_active() {
    let mut view = following("c", "a", "10.0.0.1:8080", 3);
    view.peers = vec![leader("b", Some("10.0.0.2:8080"), 5)];
    let balancer = Balancer::with_seed(9);
    let _slow = balancer.start("a");
    for _ in 0..20 {
        match super::decide(&view, Instant::now(), &Inbound::default(), &balancer) {
            Route::Forward { identity, .. } => assert_eq!(identity, "b"),
            other => panic!("{other:?}"),
        }
    }
}
