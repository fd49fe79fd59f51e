use std::time::{Duration, Instant};

use http::{Response, StatusCode};
use understudy_elector::observe::{
    ApiCall, CallResult, Leadership, LossReason, RenewFailure, Transition, Verb, WatchOpened,
};
use understudy_elector::{Config, Leader, Role, View};

use super::*;

fn view(role: Role, leader: Option<&str>, now: Instant) -> View {
    View {
        lease: "web".into(),
        identity: "pod-a".into(),
        role,
        leader: leader.map(|l| Leader {
            identity: l.into(),
            address: Some("127.0.0.1:1".into()),
            peer_address: None,
            epoch: 7,
        }),
        acting_until: (role == Role::Leader).then(|| now + Duration::from_secs(5)),
        synced: true,
        role_since: now - Duration::from_secs(4),
        peers: Vec::new(),
        failsafe: false,
    }
}

fn metrics() -> Metrics {
    Metrics::new("web", &Config::default())
}

/// The value of the one sample of `series` (`name{a="b",...}`, labels in any order).
fn sample(text: &str, series: &str) -> f64 {
    let key = |s: &str| {
        let (name, labels) = s.split_once('{').unwrap_or((s, "}"));
        let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
        labels.retain(|l| !l.is_empty());
        labels.sort_unstable();
        (name.to_string(), labels.join(","))
    };
    let wanted = key(series);
    let found: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(s, _)| key(s) == wanted)
        .map(|(_, v)| v.parse().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{series} in:\n{text}");
    found[0]
}

#[test]
fn a_leader_is_seen_as_one_by_every_leadership_gauge() {
    let now = Instant::now();
    let text = metrics().render(&view(Role::Leader, Some("pod-a"), now), now, 0);
    let e = r#"election="web""#;
    assert_eq!(
        sample(&text, &format!("understudy_election_is_leader{{{e}}}")),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"leader_election_master_status{{{e},name="web"}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"understudy_election_role{{{e},role="leader"}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"understudy_election_role{{{e},role="follower"}}"#)
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"understudy_election_leader_info{{{e},leader="pod-a"}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(&text, &format!("understudy_election_leader_epoch{{{e}}}")),
        7.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("understudy_election_leaderless_seconds{{{e}}}")
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("understudy_election_lease_duration_seconds{{{e}}}")
        ),
        10.0
    );
}

#[test]
fn the_leader_info_follows_the_leader_and_leaderless_time_counts() {
    let m = metrics();
    let now = Instant::now();
    m.render(&view(Role::Follower, Some("pod-b"), now), now, 0);
    let text = m.render(&view(Role::Candidate, None, now), now, 0);
    assert!(!text.contains("understudy_election_leader_info{"), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"understudy_election_leaderless_seconds{election="web"}"#
        ),
        4.0
    );
    assert_eq!(
        sample(
            &text,
            r#"understudy_election_role{election="web",role="candidate"}"#
        ),
        1.0
    );
    let text = m.render(&view(Role::Follower, Some("pod-c"), now), now, 0);
    assert!(
        text.contains(r#"leader="pod-c""#) && !text.contains(r#"leader="pod-b""#),
        "{text}"
    );
}

#[test]
fn a_leader_past_its_fencing_deadline_is_not_counted_as_leading() {
    let now = Instant::now();
    let mut stale = view(Role::Leader, Some("pod-a"), now);
    stale.acting_until = Some(now - Duration::from_millis(1));
    let text = metrics().render(&stale, now, 0);
    assert_eq!(
        sample(&text, r#"understudy_election_is_leader{election="web"}"#),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            r#"understudy_election_role{election="web",role="candidate"}"#
        ),
        1.0
    );
}

#[test]
fn observer_events_become_counters_and_histograms() {
    let m = metrics();
    let o = m.observer();
    let call = |verb, result| ApiCall {
        verb,
        result,
        latency: Duration::from_millis(20),
    };
    o.api_call("web", &call(Verb::Update, CallResult::Status(200)));
    o.api_call("web", &call(Verb::Update, CallResult::Status(409)));
    o.api_call("web", &call(Verb::Get, CallResult::Timeout));
    o.renew("web", Duration::from_millis(20), Ok(()));
    o.renew(
        "web",
        Duration::from_millis(20),
        Err(RenewFailure::Conflict),
    );
    o.watch_opened("web", WatchOpened::Start);
    o.watch_opened("web", WatchOpened::Stalled);
    o.leadership("web", Leadership::Acquired { epoch: 3 });
    o.leadership("web", Leadership::Lost(LossReason::Deadline));
    o.transition(
        "web",
        &Transition {
            from: "pod-a".into(),
            to: "pod-b".into(),
            epoch: 4,
            gap: Duration::from_millis(3200),
        },
    );
    let now = Instant::now();
    let text = m.render(&view(Role::Follower, Some("pod-b"), now), now, 0);
    let api = |verb: &str, code: &str| {
        format!(
            r#"understudy_kube_api_requests_total{{code="{code}",election="web",verb="{verb}"}}"#
        )
    };
    assert_eq!(sample(&text, &api("update", "200")), 1.0);
    assert_eq!(sample(&text, &api("update", "409")), 1.0);
    assert_eq!(sample(&text, &api("get", "timeout")), 1.0);
    assert_eq!(
        sample(
            &text,
            r#"understudy_election_renew_duration_seconds_count{election="web"}"#
        ),
        2.0
    );
    let failures = r#"understudy_election_renew_failures_total{election="web",reason="#;
    assert_eq!(sample(&text, &format!(r#"{failures}"conflict"}}"#)), 1.0);
    assert_eq!(
        sample(&text, &format!(r#"{failures}"timeout"}}"#)),
        0.0,
        "pre-created"
    );
    let restarts = r#"understudy_election_watch_restarts_total{election="web",reason="#;
    assert_eq!(sample(&text, &format!(r#"{restarts}"stalled"}}"#)), 1.0);
    assert!(
        !text.contains(r#"reason="start""#),
        "the first opening is no restart"
    );
    assert_eq!(
        sample(
            &text,
            r#"understudy_election_leadership_acquired_total{election="web"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"understudy_election_leadership_lost_total{election="web",reason="deadline"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"understudy_election_leader_transitions_total{election="web"}"#
        ),
        1.0
    );
    let failover = "understudy_election_failover_duration_seconds";
    assert_eq!(
        sample(&text, &format!(r#"{failover}_sum{{election="web"}}"#)),
        3.2
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"{failover}_bucket{{election="web",le="3"}}"#)
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"{failover}_bucket{{election="web",le="5"}}"#)
        ),
        1.0
    );
}

#[test]
fn requests_count_by_route_and_class_and_own_answers_by_reason() {
    let m = metrics();
    let ok = Response::new(());
    m.request(Kind::Local, &ok, 0.01);
    let mut held = Response::new(());
    *held.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    held.extensions_mut().insert(Answer::HoldTimeout);
    m.request(Kind::Hold, &held, 30.0);
    // An app's own 503 is not the sidecar's answer.
    let mut app = Response::new(());
    *app.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    m.request(Kind::Forward, &app, 0.02);
    let now = Instant::now();
    let text = m.render(&view(Role::Follower, Some("pod-b"), now), now, 2);
    let req = |route: &str, class: &str| {
        format!(
            r#"understudy_proxy_requests_total{{election="web",route="{route}",status_class="{class}"}}"#
        )
    };
    assert_eq!(sample(&text, &req("local", "2xx")), 1.0);
    assert_eq!(sample(&text, &req("hold", "5xx")), 1.0);
    assert_eq!(sample(&text, &req("forward", "5xx")), 1.0);
    let answers = r#"understudy_proxy_sidecar_answers_total{code="503",election="web",reason="#;
    assert_eq!(sample(&text, &format!(r#"{answers}"hold_timeout"}}"#)), 1.0);
    assert_eq!(sample(&text, &format!(r#"{answers}"unavailable"}}"#)), 0.0);
    assert_eq!(
        sample(&text, r#"understudy_proxy_held_requests{election="web"}"#),
        2.0
    );
}

#[test]
fn guards_count_in_flight_requests_and_hold_waits() {
    let m = metrics();
    let first = m.in_flight();
    let second = m.in_flight();
    drop(first);
    m.hold_timer().finish(true);
    m.hold_timer().finish(false);
    drop(m.hold_timer());
    m.retry(Retry::Reset);
    let stale = m.retries(Retry::StaleConnection);
    stale.inc();
    stale.inc();
    m.connect_error(Kind::Local);
    m.connect_error(Kind::Forward);
    let now = Instant::now();
    let text = m.render(&view(Role::Follower, Some("pod-b"), now), now, 0);
    assert_eq!(
        sample(
            &text,
            r#"understudy_proxy_requests_in_flight{election="web"}"#
        ),
        1.0
    );
    drop(second);
    let hold = r#"understudy_proxy_hold_duration_seconds_count{election="web",outcome="#;
    for outcome in ["leader", "timeout", "cancelled"] {
        assert_eq!(
            sample(&text, &format!(r#"{hold}"{outcome}"}}"#)),
            1.0,
            "{outcome}"
        );
    }
    assert_eq!(
        sample(
            &text,
            r#"understudy_proxy_retries_total{election="web",reason="reset"}"#
        ),
        1.0
    );
    let retries = r#"understudy_proxy_retries_total{election="web",reason="#;
    assert_eq!(
        sample(&text, &format!(r#"{retries}"stale_connection"}}"#)),
        2.0
    );
    assert_eq!(sample(&text, &format!(r#"{retries}"not_sent"}}"#)), 0.0);
    let errors = r#"understudy_proxy_connect_errors_total{election="web",target="#;
    assert_eq!(sample(&text, &format!(r#"{errors}"upstream"}}"#)), 1.0);
    assert_eq!(sample(&text, &format!(r#"{errors}"peer"}}"#)), 1.0);
}

#[test]
fn build_and_process_metrics_are_there() {
    let now = Instant::now();
    let text = metrics().render(&view(Role::Candidate, None, now), now, 0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            &text,
            &format!(r#"understudy_build_info{{election="web",version="{version}"}}"#)
        ),
        1.0
    );
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
    }
}

#[test]
fn without_an_election_name_there_is_no_election_label() {
    let now = Instant::now();
    let text = Metrics::default().render(&view(Role::Leader, Some("pod-a"), now), now, 0);
    assert_eq!(sample(&text, "understudy_election_is_leader"), 1.0);
}

#[test]
fn n_slots_label_every_election_series_with_its_slot() {
    let now = Instant::now();
    let metrics = Metrics::with_slots("web", &Config::default(), 2);
    let slots = understudy_elector::Slots {
        views: vec![
            view(Role::Follower, Some("pod-b"), now),
            view(Role::Leader, Some("pod-a"), now),
        ],
        held: Some(1),
        eligible: true,
    };
    let (_tx, rx) = tokio::sync::watch::channel(slots.clone());
    metrics.follow_slots(rx);
    // Label order is not fixed: look for a line with the name, the labels and the value.
    let has = |text: &str, name: &str, slot: Option<&str>, value: &str| {
        text.lines().any(|l| {
            l.starts_with(&format!("{name}{{"))
                && l.contains("election=\"web\"")
                && slot.map_or(!l.contains("slot="), |s| {
                    l.contains(&format!("slot=\"{s}\""))
                })
                && l.ends_with(&format!(" {value}"))
        })
    };
    let text = metrics.render(&slots.routing_view(), now, 0);
    assert!(
        has(&text, "understudy_election_is_leader", Some("1"), "1"),
        "{text}"
    );
    assert!(
        has(&text, "understudy_election_is_leader", Some("0"), "0"),
        "{text}"
    );
    assert!(
        !has(&text, "understudy_election_is_leader", None, "1"),
        "{text}"
    );
    assert!(
        !has(&text, "understudy_election_is_leader", None, "0"),
        "{text}"
    );
    assert!(
        has(
            &text,
            "understudy_election_lease_duration_seconds",
            Some("0"),
            "10"
        ),
        "{text}"
    );
    // One HELP line per family, however many slots.
    assert_eq!(
        text.matches("# HELP understudy_election_is_leader ")
            .count(),
        1
    );
    // Hook calls land in their slot's series.
    let observer = metrics.observer();
    let acquired = understudy_elector::observe::Leadership::Acquired { epoch: 1 };
    observer.leadership("web-1", acquired);
    let text = metrics.render(&slots.routing_view(), now, 0);
    let name = "understudy_election_leadership_acquired_total";
    assert!(has(&text, name, Some("1"), "1"), "{text}");
    assert!(has(&text, name, Some("0"), "0"), "{text}");
}
