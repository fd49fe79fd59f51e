//! Property tests on what a hostile client controls: the request headers, and through them
//! the routing facts. A short run is part of the test command; a longer one:
//! `PROPTEST_CASES=100000 cargo nextest run -p understudy-proxy --test properties`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Version;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use understudy_elector::{Leader, Role, View};
use understudy_proxy::balance::Balancer;
use understudy_proxy::headers::{self, Inbound, MAX_HOPS};
use understudy_proxy::route::{self, Route};

/// Header names a client might send: ours, hop-by-hop ones, and arbitrary tokens.
fn name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        Just(HeaderName::from_static("x-understudy-for")),
        Just(HeaderName::from_static("x-understudy-hops")),
        Just(HeaderName::from_static("x-understudy-hold-ms")),
        Just(HeaderName::from_static("x-understudy-leader")),
        Just(HeaderName::from_static("x-understudy-epoch")),
        Just(HeaderName::from_static("x-understudy-refused")),
        Just(HeaderName::from_static("x-understudy-anything")),
        Just(http::header::CONNECTION),
        Just(http::header::UPGRADE),
        Just(http::header::TE),
        Just(http::header::TRANSFER_ENCODING),
        Just(http::header::HOST),
        Just(HeaderName::from_static("x-forwarded-for")),
        "[a-z][a-z0-9-]{0,20}".prop_map(|s| HeaderName::from_bytes(s.as_bytes()).unwrap()),
    ]
}

/// Values: numbers (in and out of range), names, lists, and arbitrary visible bytes.
fn value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        (0u64..1000).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just("-1".to_string()),
        Just("pod-a".to_string()),
        Just("pod-b".to_string()),
        Just("".to_string()),
        Just("close, x-understudy-leader, upgrade".to_string()),
        "[ -~]{0,40}",
    ]
    .prop_map(|s| HeaderValue::from_str(&s).unwrap())
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec((name(), value()), 0..24).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(n, v);
        }
        map
    })
}

fn leader(id: &str, address: bool, epoch: u64) -> Leader {
    Leader {
        identity: id.to_string(),
        address: address.then(|| format!("10.0.0.{}:8080", id.len())),
        peer_address: None,
        epoch,
    }
}

/// Any view `pod-a`'s elector may publish: leading (the Lease its own, acting or past its
/// fencing deadline, or not acting at all), or following another pod's Lease, or knowing
/// no leader (a candidate or a follower); with or without the holders of other slots. (As
/// the elector's views are: `role` is `Leader` exactly when `leader` names this pod, and
/// only a leader has a fencing deadline.)
fn view() -> impl Strategy<Value = (View, Instant)> {
    let others = prop_oneof![Just("pod-b"), Just("pod-c")];
    (
        prop_oneof![
            (any::<bool>(), any::<u64>(), prop::option::of(-5i64..5)).prop_map(
                |(addr, epoch, acting)| (Some(("pod-a", addr, epoch)), Role::Leader, acting)
            ),
            (others.clone(), any::<bool>(), any::<u64>()).prop_map(|(id, addr, epoch)| (
                Some((id, addr, epoch)),
                Role::Follower,
                None
            )),
            prop_oneof![Just(Role::Follower), Just(Role::Candidate)]
                .prop_map(|role| (None, role, None)),
        ],
        prop::collection::vec((others, any::<bool>()), 0..3),
    )
        .prop_map(|((l, role, acting), peers)| {
            let now = Instant::now();
            let mut v = View::initial("test", "pod-a", now);
            v.synced = true;
            v.leader = l.map(|(id, addr, epoch)| leader(id, addr, epoch));
            v.role = role;
            v.acting_until = acting.map(|s| {
                if s >= 0 {
                    now + Duration::from_secs(s as u64)
                } else {
                    now - Duration::from_secs((-s) as u64)
                }
            });
            v.peers = peers.into_iter().map(|(id, a)| leader(id, a, 0)).collect();
            (v, now)
        })
}

proptest! {
    /// Nothing a client sends survives `Inbound::of` with our prefix, and a client's own
    /// routing claims are honoured only in the trusted shape.
    #[test]
    fn internal_headers_never_survive_the_edge(mut map in headers()) {
        let inbound = Inbound::of(&mut map, None, true);
        prop_assert!(map.keys().all(|k| !k.as_str().starts_with("x-understudy-")));
        prop_assert!(inbound.hops <= MAX_HOPS);
        prop_assert_eq!(inbound.for_pod.is_some(), inbound.hops >= 1);
        if inbound.for_pod.is_none() {
            prop_assert_eq!(inbound, Inbound::default());
        }
    }

    /// Hop-by-hop headers and whatever `Connection` names are gone after stripping, except
    /// `te: trailers` and an upgrade that is kept on purpose; stripping twice changes nothing.
    #[test]
    fn hop_by_hop_headers_are_stripped(mut map in headers(), keep_upgrade in any::<bool>()) {
        let named: Vec<HeaderName> = map
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|t| t.trim().to_string()).collect::<Vec<_>>())
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        headers::strip_hop_by_hop(&mut map, keep_upgrade);
        prop_assert!(!map.contains_key(http::header::TRANSFER_ENCODING));
        prop_assert!(!map.contains_key("keep-alive"));
        for te in map.get_all(http::header::TE) {
            prop_assert_eq!(te, "trailers");
        }
        for n in named {
            if n == http::header::UPGRADE || n == http::header::TE || n == http::header::CONNECTION {
                continue;
            }
            prop_assert!(!map.contains_key(&n), "{} named in Connection survived", n);
        }
        let once = map.clone();
        headers::strip_hop_by_hop(&mut map, keep_upgrade);
        prop_assert_eq!(once, map);
    }

    /// `X-Forwarded-For` always ends with the client; `Via` gains exactly one entry.
    #[test]
    fn forwarding_headers_name_the_client(mut map in headers(), ip in any::<[u8; 4]>(), port in any::<u16>()) {
        let client = SocketAddr::from((ip, port));
        let via_before = map.get_all(http::header::VIA).iter().count();
        headers::add_forwarded(&mut map, client, Version::HTTP_11, Some(http::HeaderValue::from_static("svc")));
        let xff = map.get("x-forwarded-for").unwrap().to_str().unwrap().to_string();
        let expected = client.ip().to_string();
        prop_assert!(xff.ends_with(&expected), "{} does not end in {}", xff, expected);
        prop_assert_eq!(map.get_all(http::header::VIA).iter().count(), via_before + 1);
    }

    /// Routing: never local unless acting now; a forward always goes to another pod with
    /// an address, within the hop bound; a request meant for another pod never runs here.
    #[test]
    fn routing_respects_fencing_and_hop_bounds((view, now) in view(), mut map in headers()) {
        let inbound = Inbound::of(&mut map, None, true);
        let route = route::decide(&view, now, &inbound, &Balancer::default());
        match &route {
            Route::Local { epoch } => {
                prop_assert!(view.is_acting(now), "local while not acting: {:?}", view);
                prop_assert!(inbound.for_pod.as_deref().is_none_or(|p| p == "pod-a"));
                // This pod's own Lease, in the epoch it holds it in (the fencing headers
                // name the view's identity and this epoch).
                let holder = view.leader.as_ref().map(|l| (l.identity.as_str(), l.epoch));
                prop_assert_eq!(holder, Some(("pod-a", *epoch)));
            }
            Route::Forward { identity, epoch, address, hops } => {
                prop_assert!(*identity != "pod-a");
                // One of the holders the view names, with its address and epoch.
                let named = view.leader.iter().chain(&view.peers).any(|l| {
                    l.identity == *identity
                        && l.epoch == *epoch
                        && l.address.as_deref() == Some(*address)
                });
                prop_assert!(named, "{:?} is not in {:?}", route, view);
                prop_assert!(*hops >= 1 && *hops <= MAX_HOPS);
                prop_assert!(*hops > inbound.hops);
            }
            Route::Hold | Route::Reject(_) => {}
        }
    }
}
