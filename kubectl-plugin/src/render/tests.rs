use std::time::Duration;

use crate::election::tests::{now, web};

use super::*;

#[test]
fn human_durations_like_kubectl() {
    let cases = [
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (302, "5m2s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (50 * 3600, "2d2h"),
        (10 * 86400, "10d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}s");
    }
}

#[test]
fn aligned_columns() {
    let rows = vec![
        vec!["NAME".to_string(), "X".into(), "LAST".into()],
        vec!["a-long-name".to_string(), "1".into(), "z".into()],
    ];
    assert_eq!(
        align(&rows),
        "NAME          X   LAST\na-long-name   1   z\n"
    );
}

#[test]
fn status_table() {
    let text = table(&[web()], now());
    let lines: Vec<&str> = text.lines().collect();
    let want = [
        "ELECTION   SLOT   LEASE   HOLDER   EPOCH   HELD   RENEWED   FAILSAFE   SWITCHOVER",
        "web        0      web     pod-a    3       5m     2s        on         -",
        "",
        "ELECTION   MEMBER   STATUS      READY   PRIORITY   RENEWED   ROLE      ADDRESS",
        "web        pod-a    live        true    5          5s        leader    pod-a:8080",
        "web        pod-b    not-ready   false   -          3s        standby   pod-b:8080",
        "web        pod-c    stale       -       -          2m        standby   pod-c:8080",
    ];
    assert_eq!(lines, want, "\n{text}");
}

#[test]
fn table_says_possibly_acting() {
    let later = now() + jiff::SignedDuration::from_secs(30);
    let text = table(&[web()], later);
    assert!(
        text.contains("on, possibly acting on confirmations"),
        "{text}"
    );
}

#[test]
fn json_document() {
    let doc = serde_json::to_value(document("default", &[web()], now())).unwrap();
    assert_eq!(doc["namespace"], "default");
    assert_eq!(doc["time"], "2026-11-30T12:00:00Z");
    let e = &doc["elections"][0];
    assert_eq!(e["name"], "web");
    assert_eq!(e["actives"], 1);
    let s = &e["slots"][0];
    assert_eq!(s["slot"], 0);
    assert_eq!(s["lease"], "web");
    assert_eq!(s["exists"], true);
    assert_eq!(s["holder"], "pod-a");
    assert_eq!(s["epoch"], 3);
    assert_eq!(s["heldSeconds"], 300);
    assert_eq!(s["leaseDurationSeconds"], 15);
    assert_eq!(s["acquireTime"], "2026-11-30T11:55:00Z");
    assert_eq!(s["handoverTo"], serde_json::Value::Null);
    assert_eq!(
        s["failsafe"],
        serde_json::json!({"on": true, "members": ["pod-a", "pod-b", "pod-c"],
                           "memberExpirySeconds": 10, "possiblyActingOnConfirmations": false})
    );
    let m = &e["members"];
    assert_eq!(m[0]["pod"], "pod-a");
    assert_eq!(m[0]["holds"], serde_json::json!([0]));
    assert_eq!(m[0]["priority"], 5);
    assert_eq!(m[1]["health"], "not-ready");
    assert_eq!(m[1]["ready"], false);
    assert_eq!(m[2]["health"], "stale");
    assert_eq!(m[2]["stale"], true);
    assert_eq!(m[2]["ready"], serde_json::Value::Null);
    assert_eq!(m[2]["renewedSecondsAgo"], 120);
}
