use super::*;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn routing_headers_are_honoured_only_as_a_valid_pair() {
    let mut h = map(&[
        ("x-understudy-for", "pod-a"),
        ("x-understudy-hops", "1"),
        ("x-understudy-hold-ms", "1500"),
        ("x-understudy-epoch", "9"),
    ]);
    assert_eq!(
        Inbound::of(&mut h, None, true),
        Inbound {
            for_pod: Some("pod-a".into()),
            hops: 1,
            hold: Some(std::time::Duration::from_millis(1500)),
        }
    );
    assert!(
        h.keys().all(|k| !k.as_str().starts_with("x-understudy-")),
        "all stripped: {h:?}"
    );
    for pairs in [
        &[("x-understudy-for", "pod-a")][..],
        &[("x-understudy-hops", "1")][..],
        &[("x-understudy-for", "pod-a"), ("x-understudy-hops", "0")][..],
        &[("x-understudy-for", "pod-a"), ("x-understudy-hops", "3")][..],
        &[("x-understudy-for", "pod-a"), ("x-understudy-hops", "one")][..],
        &[("x-understudy-for", ""), ("x-understudy-hops", "1")][..],
        &[("x-understudy-for", "pod-a"), ("x-understudy-hops", "257")][..],
        &[("x-understudy-hold-ms", "0")][..],
        &[("x-understudy-for", "pod-a"), ("x-understudy-hold-ms", "0")][..],
    ] {
        let mut h = map(pairs);
        assert_eq!(
            Inbound::of(&mut h, None, true),
            Inbound::default(),
            "{pairs:?}"
        );
        assert!(h.is_empty(), "{pairs:?} left {h:?}");
    }
}

#[test]
fn a_malformed_hold_budget_from_a_peer_is_ignored() {
    let mut h = map(&[
        ("x-understudy-for", "pod-a"),
        ("x-understudy-hops", "2"),
        ("x-understudy-hold-ms", "-5"),
    ]);
    let inbound = Inbound::of(&mut h, None, true);
    assert_eq!((inbound.hops, inbound.hold), (2, None));
}

#[test]
fn fencing_headers_from_a_client_are_removed() {
    let mut h = map(&[
        ("x-understudy-leader", "evil"),
        ("X-Understudy-Epoch", "99"),
        ("accept", "*/*"),
    ]);
    Inbound::of(&mut h, None, true);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("accept"));
}

#[test]
fn hop_by_hop_headers_go_including_those_named_in_connection() {
    let mut h = map(&[
        ("connection", "keep-alive, x-secret"),
        ("keep-alive", "timeout=5"),
        ("x-secret", "1"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("te", "gzip"),
        ("trailer", "grpc-status"),
        ("proxy-authorization", "Basic x"),
        ("expect", "100-continue"),
        ("accept", "*/*"),
    ]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
}

#[test]
fn names_in_every_connection_value_go_whatever_their_case() {
    // Two `Connection` lines; the first names `Connection` itself, which must not cut the
    // walk short before the second line's name is read.
    let mut h = map(&[
        ("connection", "Connection, X-One"),
        ("connection", " , x-TWO ,bad name"),
        ("x-one", "1"),
        ("x-two", "2"),
        ("accept", "*/*"),
    ]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
}

#[test]
fn each_hop_by_hop_header_goes_on_its_own_too() {
    for name in [
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "proxy-authenticate",
        "proxy-authorization",
        "expect",
    ] {
        let mut h = map(&[("accept", "*/*"), (name, "x")]);
        strip_hop_by_hop(&mut h, false);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"], "{name}");
    }
}

#[test]
fn a_requests_trailers_carry_no_framing_routing_or_fencing_fields() {
    let mut t = map(&[
        ("x-understudy-leader", "me"),
        ("x-understudy-epoch", "99"),
        ("content-length", "5"),
        ("transfer-encoding", "chunked"),
        ("host", "elsewhere"),
        ("connection", "close"),
        ("expect", "100-continue"),
        ("grpc-status", "0"),
        ("x-checksum", "abc"),
    ]);
    strip_request_trailers(&mut t);
    let mut left: Vec<_> = t.keys().map(|k| k.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, ["grpc-status", "x-checksum"]);
}

#[test]
fn an_upgrade_to_h2c_alone_is_no_upgrade() {
    for (upgrade, is) in [
        ("websocket", true),
        ("h2c, websocket", true),
        ("h2c", false),
        ("H2C", false),
        (" h2c , h2c", false),
    ] {
        let h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", upgrade),
        ]);
        assert_eq!(
            is_upgrade(&Method::GET, Version::HTTP_11, &h),
            is,
            "{upgrade:?}"
        );
    }
}

#[test]
fn te_trailers_survive_for_grpc() {
    let mut h = map(&[("te", "trailers"), ("content-type", "application/grpc")]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h["te"], "trailers");
}

#[test]
fn an_upgrade_keeps_its_upgrade_headers() {
    let mut h = map(&[
        ("connection", "Upgrade, x-drop"),
        ("upgrade", "websocket"),
        ("x-drop", "1"),
    ]);
    assert!(is_upgrade(&Method::GET, Version::HTTP_11, &h));
    strip_hop_by_hop(&mut h, true);
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "upgrade");
    assert!(!h.contains_key("x-drop"));
    assert!(!is_upgrade(&Method::GET, Version::HTTP_2, &h));
    assert!(is_upgrade(
        &Method::CONNECT,
        Version::HTTP_11,
        &HeaderMap::new()
    ));
    assert!(!is_upgrade(
        &Method::GET,
        Version::HTTP_11,
        &map(&[("upgrade", "websocket")])
    ));
}

#[test]
fn forwarded_headers_append_and_keep_earlier_proxies() {
    let client: SocketAddr = "127.0.0.9:5555".parse().unwrap();
    let mut h = HeaderMap::new();
    add_forwarded(
        &mut h,
        client,
        Version::HTTP_11,
        Some(HeaderValue::from_static("shop.example")),
    );
    assert_eq!(h["x-forwarded-for"], "127.0.0.9");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example");
    assert_eq!(h["via"], "1.1 understudy");
    // A second sidecar appends, and keeps what the edge set.
    let peer: SocketAddr = "[::ffff:127.0.0.2]:4000".parse().unwrap();
    let mut h2 = h.clone();
    h2.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    add_forwarded(
        &mut h2,
        peer,
        Version::HTTP_2,
        Some(HeaderValue::from_static("127.0.0.2:8080")),
    );
    assert_eq!(h2["x-forwarded-for"], "127.0.0.9, 127.0.0.2");
    assert_eq!(h2["x-forwarded-proto"], "https");
    assert_eq!(h2["x-forwarded-host"], "shop.example");
    let via: Vec<_> = h2
        .get_all("via")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(via, ["1.1 understudy", "2 understudy"]);
    // A long address appended to two, and an IPv4-mapped one written as IPv4 (the longest
    // text an address can take, 45 characters, is such a mapped form: never written).
    let long: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:1"
        .parse()
        .unwrap();
    add_forwarded(&mut h2, long, Version::HTTP_11, None);
    let mapped: SocketAddr = "[::ffff:255.255.255.255]:1".parse().unwrap();
    let mut h3 = HeaderMap::new();
    add_forwarded(&mut h3, mapped, Version::HTTP_11, None);
    assert_eq!(
        h2["x-forwarded-for"],
        "127.0.0.9, 127.0.0.2, ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"
    );
    assert_eq!(h3["x-forwarded-for"], "255.255.255.255");
}

#[test]
fn discard_honours_nothing_and_removes_every_internal_header() {
    let mut h = map(&[
        ("x-understudy-for", "pod-a"),
        ("x-understudy-hops", "1"),
        ("x-understudy-hold-ms", "5"),
        ("x-understudy-epoch", "9"),
        ("x-other", "kept"),
    ]);
    assert_eq!(Inbound::of(&mut h, None, false), Inbound::default());
    assert_eq!(h.len(), 1);
    assert_eq!(h["x-other"], "kept");
}

#[test]
fn known_names_match_in_any_case_and_only_whole() {
    for name in &KNOWN {
        let upper = name.as_str().to_ascii_uppercase();
        assert_eq!(known_name(upper.as_bytes()), Some(name.clone()));
        // What `http` would have built: the same name.
        assert_eq!(HeaderName::from_bytes(upper.as_bytes()).unwrap(), *name);
    }
    for other in [
        "x-understudy-fo",
        "x-forwarded-forx",
        "x-",
        "x",
        "",
        "accept",
        "x-other",
    ] {
        assert_eq!(known_name(other.as_bytes()), None, "{other}");
    }
}

#[test]
fn hop_counts_read_as_numbers() {
    for n in 0..=u8::MAX {
        assert_eq!(hops_value(n), HeaderValue::from(u16::from(n)), "{n}");
    }
}

proptest::proptest! {
    /// The client address in `X-Forwarded-For` reads as `Display` writes it, for any octets
    /// (one, two and three digits, and zeros between).
    #[test]
    fn an_ipv4_client_is_written_as_display_writes_it(octets: [u8; 4]) {
        let ip = std::net::Ipv4Addr::from(octets);
        let mut room = [0u8; 64];
        let display = ip.to_string();
        proptest::prop_assert_eq!(ipv4_text(ip, &mut room), display.as_bytes());
    }
}

#[test]
fn each_hop_by_hop_name_has_a_bit_of_its_own_in_its_place() {
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        assert_eq!(hop_by_hop_bit(name), Some(1 << i), "{name}");
    }
    assert_eq!(
        hop_by_hop_bit(&header::UPGRADE),
        Some(1 << HOP_BY_HOP.len())
    );
    assert_eq!(
        hop_by_hop_bit(&header::EXPECT),
        Some(1 << (HOP_BY_HOP.len() + 1))
    );
    for other in [
        header::HOST,
        header::VIA,
        HeaderName::from_static("keep-alive-x"),
    ] {
        assert_eq!(hop_by_hop_bit(&other), None, "{other}");
    }
}

#[test]
fn claims_read_off_a_head_are_judged_as_those_taken_off_a_map() {
    let pairs = [
        ("x-understudy-for", "pod-a"),
        ("x-understudy-hops", "1"),
        ("x-understudy-hold-ms", "250"),
    ];
    let mut noted = Claims::default();
    // (A later line of one is dropped.)
    for (name, value) in pairs.into_iter().chain([("X-Understudy-For", "later")]) {
        let which = Claims::routing(name.to_uppercase().as_bytes()).expect("a routing name");
        noted.keep(which, HeaderValue::from_static(value));
    }
    let taken = Claims::take(&mut map(&pairs));
    assert_eq!(noted, taken);
    assert_eq!(
        noted.inbound(),
        Inbound {
            for_pod: Some("pod-a".into()),
            hops: 1,
            hold: Some(Duration::from_millis(250)),
        }
    );
    // Only the three routing names have a slot, whole and in any case.
    for other in [
        "x-understudy-leader",
        "x-understudy-",
        "x-understudy-fo",
        "x-understudy-hold-msx",
        "x-understudy-forr",
        "x-forwarded-for",
        "host",
        "",
    ] {
        assert!(Claims::routing(other.as_bytes()).is_none(), "{other}");
    }
}

#[test]
fn the_forwarding_room_is_what_add_forwarded_would_add() {
    let client: SocketAddr = "198.18.0.2:1000".parse().unwrap();
    for pairs in [
        &[("host", "a")][..],
        &[("host", "a"), ("x-forwarded-for", "198.18.0.9")],
        &[
            ("host", "a"),
            ("X-Forwarded-Proto", "https"),
            ("via", "1.0 p"),
        ],
        &[
            ("host", "a"),
            ("x-forwarded-for", "198.18.0.9"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "a"),
            ("via", "1.1 b"),
        ],
    ] {
        let mut headers = map(pairs);
        let room = forwarding_room(&headers);
        let before = headers.keys_len();
        add_forwarded(
            &mut headers,
            client,
            Version::HTTP_11,
            Some(HeaderValue::from_static("a")),
        );
        assert_eq!(headers.keys_len() - before, room, "{pairs:?}");
    }
}

#[test]
fn token_comparison_matches_eq_ignore_ascii_case_for_every_token_byte() {
    let token: Vec<u8> = (0u8..=255)
        .filter(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
        .collect();
    let lowers = [
        "x-understudy-for",
        "x-understudy-hold-ms",
        "x-forwarded-proto",
        "via",
    ];
    for lower in lowers {
        // Every byte of every position replaced by every token byte (and the name in
        // upper case), against the byte-by-byte comparison.
        let mut names = vec![lower.to_uppercase().into_bytes()];
        for i in 0..lower.len() {
            for &b in &token {
                let mut name = lower.as_bytes().to_vec();
                name[i] = b;
                names.push(name);
            }
        }
        names.push(lower.as_bytes()[1..].to_vec());
        for name in names {
            assert_eq!(
                token_is(&name, lower.as_bytes()),
                name.eq_ignore_ascii_case(lower.as_bytes()),
                "{:?} against {lower}",
                String::from_utf8_lossy(&name)
            );
        }
    }
}

#[test]
fn inbound_of_takes_the_claims_read_off_the_head_or_those_in_the_map() {
    let pair = [("x-understudy-for", "pod-a"), ("x-understudy-hops", "1")];
    let peer = Inbound {
        for_pod: Some("pod-a".into()),
        hops: 1,
        hold: None,
    };
    let expected = |trusted: bool| {
        if trusted {
            peer.clone()
        } else {
            Inbound::default()
        }
    };
    // In the map (hyper's HTTP/2), trusted or not: removed either way.
    for trusted in [true, false] {
        let mut headers = map(&pair);
        let inbound = Inbound::of(&mut headers, None, trusted);
        assert_eq!(inbound, expected(trusted));
        assert!(headers.is_empty());
    }
    // Read off the head by the engine: a fencing header a client made up, left in the map,
    // is removed all the same.
    let read = Claims::take(&mut map(&pair));
    for trusted in [true, false] {
        let mut headers = map(&[("host", "a"), ("x-understudy-leader", "forged")]);
        let inbound = Inbound::of(&mut headers, Some(read.clone()), trusted);
        assert_eq!(inbound, expected(trusted));
        assert_eq!(headers.keys().collect::<Vec<_>>(), ["host"]);
    }
    // A client's request: nothing.
    let mut headers = map(&[("host", "a")]);
    assert_eq!(Inbound::of(&mut headers, None, true), Inbound::default());
    assert_eq!(headers.len(), 1);
}
