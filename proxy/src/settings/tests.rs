use std::time::Duration;

use clap::Parser;

use super::*;

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("understudy").chain(args.iter().copied())).unwrap()
}

fn env() -> Environment {
    Environment {
        pod_ip: None,
        namespace: None,
        hostname: Some("pod-a\n".into()),
    }
}

fn settings(args: &[&str]) -> Result<Settings, SettingsError> {
    Settings::from_cli(&cli(args), &env())
}

#[test]
fn seed_mode_has_no_proxy_and_old_defaults() {
    let s = settings(&["--election", "example", "--http", "0.0.0.0:4040"]).unwrap();
    assert!(s.proxy.is_none());
    assert_eq!(s.namespace, "default");
    assert_eq!(s.identity, "pod-a", "hostname, trimmed");
    assert_eq!(s.timings, Config::default());
}

#[test]
fn namespace_comes_from_the_service_account_file() {
    let e = Environment {
        namespace: Some("shop\n".into()),
        ..env()
    };
    let s = Settings::from_cli(&cli(&["--election", "x"]), &e).unwrap();
    assert_eq!(s.namespace, "shop");
    let s = Settings::from_cli(
        &cli(&["--election", "x", "--election-namespace", "ops"]),
        &e,
    )
    .unwrap();
    assert_eq!(s.namespace, "ops", "the flag wins");
}

#[test]
fn ttl_sets_all_timings_and_flags_override() {
    let s = settings(&["--election", "x", "--ttl", "20s"]).unwrap();
    assert_eq!(s.timings.lease_duration, Duration::from_secs(20));
    assert_eq!(s.timings.renew_deadline, Duration::from_secs(10));
    assert_eq!(s.timings.retry_period, Duration::from_secs(5));
    let s = settings(&["--election", "x", "--ttl", "20s", "--renew-deadline", "15s"]).unwrap();
    assert_eq!(s.timings.renew_deadline, Duration::from_secs(15));
}

#[test]
fn bad_timings_name_the_flags() {
    let err = settings(&[
        "--election",
        "x",
        "--lease-duration",
        "5s",
        "--renew-deadline",
        "6s",
    ])
    .unwrap_err();
    assert!(matches!(err, SettingsError::Timings { .. }));
    assert!(err.to_string().contains("--lease-duration"), "{err}");
    let err = settings(&[
        "--election",
        "x",
        "--lease-duration",
        "1500ms",
        "--renew-deadline",
        "1s",
        "--retry-period",
        "100ms",
    ])
    .unwrap_err();
    assert!(err.to_string().contains("whole number of seconds"), "{err}");
}

#[test]
fn hold_timeout_defaults_to_lease_plus_two_retries() {
    let s = settings(&["--election", "x", "--listen", "127.0.0.2:8080"]).unwrap();
    let p = s.proxy.unwrap();
    assert_eq!(p.hold_timeout, Duration::from_secs(10 + 2 * 2));
    assert_eq!(p.upstream.as_str(), "127.0.0.1:80");
    assert_eq!(p.stream_grace, Duration::from_secs(2), "(10s - 6s) / 2");
}

#[test]
fn advertise_defaults() {
    // A concrete listen address is its own advertisement.
    let s = settings(&["--election", "x", "--listen", "127.0.0.2:8080"]).unwrap();
    assert_eq!(s.proxy.unwrap().advertise.as_str(), "127.0.0.2:8080");
    // A wildcard needs POD_IP...
    let e = Environment {
        pod_ip: Some("10.1.2.3".into()),
        ..env()
    };
    let s = Settings::from_cli(&cli(&["--election", "x", "--listen", "0.0.0.0:8080"]), &e).unwrap();
    assert_eq!(s.proxy.unwrap().advertise.as_str(), "10.1.2.3:8080");
    let e = Environment {
        pod_ip: Some("fd00::5".into()),
        ..env()
    };
    let s = Settings::from_cli(&cli(&["--election", "x", "--listen", "[::]:8080"]), &e).unwrap();
    assert_eq!(s.proxy.unwrap().advertise.as_str(), "[fd00::5]:8080");
    // ...or --advertise.
    let err = settings(&["--election", "x", "--listen", "0.0.0.0:8080"]).unwrap_err();
    assert!(err.to_string().starts_with("--advertise"), "{err}");
    let s = settings(&[
        "--election",
        "x",
        "--listen",
        "0.0.0.0:8080",
        "--advertise",
        "pod-a.svc:8080",
    ])
    .unwrap();
    assert_eq!(s.proxy.unwrap().advertise.as_str(), "pod-a.svc:8080");
}

#[test]
fn bad_values_name_their_flag() {
    let listen = ["--election", "x", "--listen", "127.0.0.2:8080"];
    for (extra, flag) in [
        (&["--upstream", "localhost"][..], "--upstream"),
        (&["--upstream", "user@host:80"][..], "--upstream"),
        (&["--advertise", "10.0.0.1"][..], "--advertise"),
        (&["--max-held", "0"][..], "--max-held"),
        (&["--max-headers", "0"][..], "--max-headers"),
        (&["--hold-timeout", "0s"][..], "--hold-timeout"),
        (&["--connect-timeout", "0ms"][..], "--connect-timeout"),
        (&["--id", ""][..], "--id"),
    ] {
        let args: Vec<&str> = listen.iter().chain(extra).copied().collect();
        let err = settings(&args).unwrap_err();
        assert!(err.to_string().starts_with(flag), "{extra:?}: {err}");
    }
}

#[test]
fn identity_needs_a_hostname_or_id() {
    let e = Environment::default();
    let err = Settings::from_cli(&cli(&["--election", "x"]), &e).unwrap_err();
    assert!(err.to_string().contains("--id"), "{err}");
    let s = Settings::from_cli(&cli(&["--election", "x", "--id", "me"]), &e).unwrap();
    assert_eq!(s.identity, "me");
}

#[test]
fn resource_limits_have_bounded_defaults_and_flags() {
    let base = ["--election", "x", "--listen", "127.0.0.1:8080"];
    let p = settings(&base).unwrap().proxy.unwrap();
    assert_eq!(
        (
            p.max_connections,
            p.max_requests,
            p.max_held,
            p.replay_buffer
        ),
        (4096, 2048, 1024, 64 * 1024)
    );
    assert_eq!(p.body_timeout, Duration::from_secs(300));
    let mut args = base.to_vec();
    args.extend([
        "--max-connections",
        "10",
        "--max-requests",
        "5",
        "--replay-buffer",
        "0",
        "--body-timeout",
        "2s",
    ]);
    let p = settings(&args).unwrap().proxy.unwrap();
    assert_eq!(
        (p.max_connections, p.max_requests, p.replay_buffer),
        (10, 5, 0)
    );
    assert_eq!(p.body_timeout, Duration::from_secs(2));
    for (flag, value) in [
        ("--max-connections", "0"),
        ("--max-requests", "0"),
        ("--body-timeout", "0s"),
    ] {
        let mut args = base.to_vec();
        args.extend([flag, value]);
        let e = settings(&args).unwrap_err().to_string();
        assert!(e.contains(flag), "{flag}: {e}");
    }
}

#[test]
fn the_peer_channel_needs_both_flags_and_the_proxy() {
    let s = settings(&["--election", "x", "--listen", "127.0.0.2:8080"]).unwrap();
    assert!(s.proxy.unwrap().peer.is_none(), "off by default");
    let base = ["--election", "x", "--listen", "127.0.0.2:8080"];
    let with = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        Cli::try_parse_from(std::iter::once("understudy").chain(args))
    };
    for alone in [
        &["--peer-listen", "127.0.0.2:8443"][..],
        &["--peer-tls-dir", "/tls"][..],
    ] {
        let err = with(alone).unwrap_err().to_string();
        assert!(
            err.contains("required arguments were not provided"),
            "{err}"
        );
    }
    let s = settings(&[
        "--election",
        "x",
        "--listen",
        "127.0.0.2:8080",
        "--peer-listen",
        "127.0.0.2:8443",
        "--peer-tls-dir",
        "/tls",
    ])
    .unwrap();
    let peer = s.proxy.unwrap().peer.unwrap();
    assert_eq!(peer.advertise.as_str(), "127.0.0.2:8443");
    assert_eq!(peer.tls_dir, PathBuf::from("/tls"));
    assert_eq!(peer.server_name, "understudy-peer");
    // A wildcard peer address is advertised with the proxy's host.
    let e = Environment {
        pod_ip: Some("10.1.2.3".into()),
        ..env()
    };
    let args = [
        "--election",
        "x",
        "--listen",
        "0.0.0.0:8080",
        "--peer-listen",
        "0.0.0.0:8443",
        "--peer-tls-dir",
        "/tls",
        "--peer-server-name",
        "web.peers",
    ];
    let peer = Settings::from_cli(&cli(&args), &e)
        .unwrap()
        .proxy
        .unwrap()
        .peer
        .unwrap();
    assert_eq!(peer.advertise.as_str(), "10.1.2.3:8443");
    assert_eq!(peer.server_name, "web.peers");
    // Not without the proxy; not with a name no certificate could carry.
    let err = settings(&[
        "--election",
        "x",
        "--peer-listen",
        "127.0.0.2:8443",
        "--peer-tls-dir",
        "/tls",
    ])
    .unwrap_err();
    assert!(err.to_string().starts_with("--peer-listen"), "{err}");
    for bad in ["", "10.0.0.1", "not a name"] {
        let mut args = args.to_vec();
        args[9] = bad;
        let err = Settings::from_cli(&cli(&args), &e).unwrap_err();
        assert!(
            err.to_string().starts_with("--peer-server-name"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn election_and_namespace_names_follow_kubernetes_rules() {
    for bad in ["Bad_Name!", "-lead", "lead-", "UPPER", "a..b", "has space"] {
        let e = settings(&[&format!("--election={bad}")]).expect_err(bad);
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("--election: {bad:?} is not a valid Lease name")),
            "{text}"
        );
        assert!(text.contains("lowercase RFC 1123 subdomain"), "{text}");
    }
    for good in ["example", "nginx-ha", "a.b-c.0", &"x".repeat(253)] {
        settings(&["--election", good]).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    // With N actives the longest Lease name, NAME-{N-1}, must fit too.
    let e = settings(&["--election", &"x".repeat(252), "--actives", "2"]).unwrap_err();
    assert!(e.to_string().contains("no more than 253 characters"), "{e}");
    for bad in ["Prod", "a.b", &"n".repeat(64)] {
        let e = settings(&["--election", "x", "--election-namespace", bad]).expect_err(bad);
        assert!(
            e.to_string().starts_with(&format!(
                "--election-namespace: {bad:?} is not a valid namespace"
            )),
            "{e}"
        );
    }
}

#[test]
fn max_header_bytes_below_the_floor_is_refused_not_raised() {
    let args = ["--election", "x", "--listen", "127.0.0.1:8080"];
    let e = settings(&[&args[..], &["--max-header-bytes", "4096"]].concat()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--max-header-bytes: must be at least 8192 (the HTTP/1 server reads request heads in \
         buffers of at least this size)"
    );
    let s = settings(&[&args[..], &["--max-header-bytes", "8192"]].concat()).unwrap();
    assert_eq!(s.proxy.unwrap().max_header_bytes, 8192);
}

#[test]
fn a_hold_timeout_shorter_than_a_failover_is_warned_about() {
    let args = ["--election", "x", "--listen", "127.0.0.1:8080"];
    assert!(
        settings(&args).unwrap().warnings.is_empty(),
        "the default covers it"
    );
    let s = settings(&[&args[..], &["--hold-timeout", "5s"]].concat()).unwrap();
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(
        s.warnings[0].starts_with("--hold-timeout 5s is shorter than a failover after a crash"),
        "{}",
        s.warnings[0]
    );
    assert!(s.warnings[0].contains("12s"), "{}", s.warnings[0]);
}

#[test]
fn tcp_mode_takes_its_listeners_in_order_and_refuses_what_does_not_fit() {
    let base = [
        "--election",
        "x",
        "--listen",
        "127.0.0.1:6380",
        "--upstream",
        "127.0.0.1:6379",
    ];
    let with = |more: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(more);
        settings(&args)
    };
    let s = with(&[
        "--mode",
        "tcp",
        "--tcp-listen",
        "127.0.0.1:9122=127.0.0.1:9121",
        "--proxy-protocol",
        "--close-grace",
        "500ms",
        "--splice",
    ])
    .unwrap();
    let tcp = s.proxy.unwrap().tcp.expect("TCP mode");
    let listeners: Vec<String> = tcp
        .listeners
        .iter()
        .map(|(l, u)| format!("{l}={u}"))
        .collect();
    assert_eq!(
        listeners,
        [
            "127.0.0.1:6380=127.0.0.1:6379",
            "127.0.0.1:9122=127.0.0.1:9121"
        ]
    );
    assert!(tcp.proxy_protocol);
    assert_eq!(tcp.close_grace, Duration::from_millis(500));
    assert!(tcp.splice);
    assert!(
        with(&[]).unwrap().proxy.unwrap().tcp.is_none(),
        "HTTP by default"
    );

    let refused = |more: &[&str], flag: &str| {
        let err = with(more).unwrap_err().to_string();
        assert!(err.starts_with(&format!("--{flag}:")), "{more:?}: {err}");
    };
    refused(
        &["--tcp-listen", "127.0.0.1:9122=127.0.0.1:9121"],
        "tcp-listen",
    );
    refused(&["--proxy-protocol"], "proxy-protocol");
    refused(&["--close-grace", "1s"], "close-grace");
    refused(&["--splice"], "splice");
    refused(
        &["--mode", "tcp", "--tcp-listen", "127.0.0.1:9122"],
        "tcp-listen",
    );
    refused(
        &[
            "--mode",
            "tcp",
            "--tcp-listen",
            "127.0.0.1:6380=127.0.0.1:1",
        ],
        "tcp-listen",
    );
    refused(
        &["--mode", "tcp", "--upstream-health", "/healthz"],
        "upstream-health",
    );
    refused(
        &["--mode", "tcp", "--advertise", "redis-0.redis:6380"],
        "advertise",
    );
    // With the mTLS peer channel sidecars are not told apart by address: a name will do.
    let peer = ["--peer-listen", "0.0.0.0:8443", "--peer-tls-dir", "/tls"];
    let named = [
        &["--mode", "tcp", "--advertise", "redis-0.redis:6380"][..],
        &peer,
    ]
    .concat();
    let tcp_peer = with(&named)
        .expect("TCP mode with the peer channel")
        .proxy
        .unwrap();
    assert!(tcp_peer.tcp.is_some());
    assert_eq!(
        tcp_peer.peer.unwrap().advertise.as_str(),
        "redis-0.redis:8443"
    );
    // The default hold timeout is 10s + 2 x 2s: connections held while the leader drains
    // must still find the next leader within it.
    refused(&["--mode", "tcp", "--close-grace", "14s"], "close-grace");
    assert!(with(&["--mode", "tcp", "--close-grace", "13s"]).is_ok());
    assert!(
        with(&[
            "--mode",
            "tcp",
            "--close-grace",
            "20s",
            "--hold-timeout",
            "30s"
        ])
        .is_ok()
    );
    assert!(with(&["--mode", "tcp", "--upstream-health", "tcp"]).is_ok());
}
