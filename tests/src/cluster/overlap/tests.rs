use super::*;

fn entry(t: f64, leader: &str, epoch: u64) -> AccessEntry {
    AccessEntry {
        logged: t,
        request_time: 0.0,
        status: 200,
        leader: Some(leader.into()),
        epoch: Some(epoch),
        request: "GET /".into(),
    }
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
    assert!(r.violations[0].starts_with("overlap: a (epoch 1)"));
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
