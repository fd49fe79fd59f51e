use super::*;

fn entry(t: f64, leader: &str, epoch: u64) -> AccessEntry {
    AccessEntry {
        logged: t,
        request_time: 0.0,
        status: 200,
        leader: Some(leader.into()),
        epoch: Some(epoch),
        lease: None,
        request: "GET /".into(),
    }
}

fn in_slot(lease: &str, mut e: AccessEntry) -> AccessEntry {
    e.lease = Some(lease.into());
    e
}

#[test]
fn a_clean_handover_passes() {
    let logs = vec![
        (
            "a".to_string(),
            vec![entry(1.0, "a", 1), entry(2.0, "a", 1)],
        ),
        (
            "b".to_string(),
            vec![entry(3.5, "b", 2), entry(4.0, "b", 2)],
        ),
    ];
    let r = check(&logs);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.tenures.len(), 2);
    assert!((r.handover_gaps()[0] - 1.5).abs() < 1e-9);
}

#[test]
fn two_leaders_at_once_are_found() {
    let logs = vec![
        (
            "a".to_string(),
            vec![entry(1.0, "a", 1), entry(3.0, "a", 1)],
        ),
        ("b".to_string(), vec![entry(2.0, "b", 2)]),
    ];
    let r = check(&logs);
    assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
    assert!(
        r.violations[0].starts_with("overlap in the Lease: a (epoch 1)"),
        "{:?}",
        r.violations
    );
}

#[test]
fn a_stale_epoch_and_a_foreign_token_are_found() {
    let logs = vec![
        (
            "a".to_string(),
            vec![entry(1.0, "a", 2), entry(5.0, "b", 2)],
        ),
        ("b".to_string(), vec![entry(3.0, "b", 2)]),
    ];
    let r = check(&logs);
    assert!(r.violations.iter().any(|v| v.contains("fenced for b")));
    assert!(
        r.violations
            .iter()
            .any(|v| v.starts_with("epoch did not rise"))
    );
}

#[test]
fn within_log_resolution_is_no_overlap() {
    let logs = vec![
        (
            "a".to_string(),
            vec![entry(1.0, "a", 1), entry(2.0, "a", 1)],
        ),
        ("b".to_string(), vec![entry(1.999, "b", 2)]),
    ];
    assert!(check(&logs).violations.is_empty());
}

#[test]
fn two_slots_served_at_once_by_two_pods_pass() {
    let logs = vec![
        (
            "a".to_string(),
            vec![
                in_slot("web-0", entry(1.0, "a", 1)),
                in_slot("web-0", entry(3.0, "a", 1)),
            ],
        ),
        (
            "b".to_string(),
            vec![
                in_slot("web-1", entry(2.0, "b", 1)),
                in_slot("web-1", entry(4.0, "b", 1)),
            ],
        ),
        // c takes over slot 1 after b, with a higher epoch of that Lease.
        ("c".to_string(), vec![in_slot("web-1", entry(5.0, "c", 2))]),
    ];
    let r = check(&logs);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.tenures.len(), 3);
    assert_eq!(r.handover_gaps(), vec![1.0]);
}

#[test]
fn two_holders_of_one_slot_are_found() {
    let logs = vec![
        (
            "a".to_string(),
            vec![
                in_slot("web-1", entry(1.0, "a", 1)),
                in_slot("web-1", entry(3.0, "a", 1)),
            ],
        ),
        ("b".to_string(), vec![in_slot("web-1", entry(2.0, "b", 2))]),
    ];
    let r = check(&logs);
    assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
    assert!(
        r.violations[0].contains("overlap in web-1"),
        "{:?}",
        r.violations
    );
}

#[test]
fn one_pod_serving_two_slots_at_once_is_found() {
    let logs = vec![(
        "a".to_string(),
        vec![
            in_slot("web-0", entry(1.0, "a", 1)),
            in_slot("web-1", entry(2.0, "a", 4)),
            in_slot("web-0", entry(3.0, "a", 1)),
        ],
    )];
    let r = check(&logs);
    assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
    assert!(
        r.violations[0].contains("two slots at once"),
        "{:?}",
        r.violations
    );
}
