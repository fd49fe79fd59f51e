use super::*;

fn leader() -> Leader {
    Leader {
        identity: "pod-b".into(),
        address: Some("198.18.0.3:8080".into()),
        peer_address: None,
        epoch: 4,
    }
}

#[test]
fn requests_and_replies_survive_json() {
    for kind in [
        RequestKind::Confirm {
            round: 7,
            lease_ms: 10_000,
        },
        RequestKind::Status,
    ] {
        let request = PeerRequest {
            lease: "web-1".into(),
            epoch: 3,
            from: "pod-a".into(),
            to: "pod-b".into(),
            kind,
        };
        assert_eq!(PeerRequest::from_json(&request.to_json()), Ok(request));
    }
    for reply in [
        PeerReply::Confirm {
            round: 7,
            promise_ms: 10_000,
        },
        PeerReply::Refuse {
            round: 7,
            reason: Refusal::ApiReachable,
            holder: Some(leader()),
        },
        PeerReply::Refuse {
            round: 1,
            reason: Refusal::Off,
            holder: None,
        },
        PeerReply::Status {
            acting: false,
            holder: Some(leader()),
        },
    ] {
        assert_eq!(PeerReply::from_json(&reply.to_json()), Ok(reply));
    }
}

#[test]
fn bad_messages_name_the_problem() {
    let err = |body: &str| PeerRequest::from_json(body.as_bytes()).unwrap_err().0;
    assert!(err("{").starts_with("not JSON"));
    assert_eq!(err(r#"{"kind":"confirm"}"#), "missing field \"round\"");
    assert_eq!(err(r#"{"kind":"vote"}"#), "unknown kind \"vote\"");
    let body = r#"{"kind":"status","lease":"l","epoch":-1,"from":"a","to":"b"}"#;
    assert_eq!(err(body), "field \"epoch\" is not a non-negative integer");
    let reply = PeerReply::from_json(br#"{"answer":"refuse","round":1,"reason":"maybe"}"#);
    assert_eq!(reply.unwrap_err().0, "unknown reason \"maybe\"");
}

#[test]
fn the_record_reads_back_and_ignores_half_a_record() {
    let record = FailsafeRecord {
        members: ["pod-a", "pod-b"].map(String::from).into(),
        member_expiry_secs: 10,
    };
    let (members, expiry) = record.to_annotations();
    assert_eq!(members, "pod-a,pod-b");
    assert_eq!(
        FailsafeRecord::from_annotations(Some(&members), Some(&expiry)),
        Some(record)
    );
    assert_eq!(FailsafeRecord::from_annotations(Some("a"), None), None);
    assert_eq!(FailsafeRecord::from_annotations(Some("a"), Some("0")), None);
    assert_eq!(FailsafeRecord::from_annotations(Some("a"), Some("x")), None);
}

#[test]
fn the_dead_lease_covers_the_longest_failsafe_under_drift() {
    let s = Duration::from_secs;
    // 10 min on the holder's clock, stretched by 10/6.
    assert_eq!(dead_lease_secs(s(10), s(6), s(600)), 1000);
    // Never shorter than the lease itself.
    assert_eq!(dead_lease_secs(s(10), s(6), s(1)), 10);
}
