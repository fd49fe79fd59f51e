use super::*;
use std::collections::BTreeMap;

fn lease_json(v: serde_json::Value) -> Lease {
    serde_json::from_value(v).unwrap()
}

#[test]
fn reads_a_client_go_record() {
    let lease = lease_json(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "example", "resourceVersion": "42",
                     "annotations": {"understudy.io/address": "198.18.0.2:8080"}},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 10,
                 "acquireTime": "2026-11-24T02:00:00.000000Z",
                 "renewTime": "2026-11-24T02:00:05.123456Z", "leaseTransitions": 3}
    }));
    let obs = lease.observed().unwrap();
    assert_eq!(obs.resource_version, "42");
    assert_eq!(obs.record.holder, "pod-a");
    assert_eq!(obs.record.lease_duration_secs, 10);
    assert_eq!(obs.record.transitions, 3);
    assert_eq!(obs.record.address.as_deref(), Some("198.18.0.2:8080"));
    assert_eq!(
        obs.record.renew_time.unwrap().to_string(),
        "2026-11-24T02:00:05.123456Z"
    );
}

#[test]
fn empty_spec_reads_as_unheld() {
    let lease = lease_json(serde_json::json!({"metadata": {"name": "x", "resourceVersion": "1"}}));
    let r = lease.record();
    assert_eq!(r.holder, "");
    assert_eq!(r.transitions, 0);
    assert_eq!(r.address, None);
    assert_eq!(r.peer_address, None);
}

#[test]
fn draft_keeps_foreign_fields_and_sets_micro_times() {
    let base = lease_json(serde_json::json!({
        "metadata": {"name": "example", "resourceVersion": "7", "labels": {"app": "web"},
                     "annotations": {"other": "kept", "understudy.io/address": "old:1",
                                     "understudy.io/peer-address": "old:2"}},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 10, "strategy": "OldestEmulationVersion",
                 "acquireTime": "2026-11-24T01:00:00.000000Z", "leaseTransitions": 1}
    }));
    let now: Timestamp = "2026-11-24T02:00:00.5Z".parse().unwrap();
    let release = Draft {
        holder: String::new(),
        lease_duration_secs: 1,
        acquire_time: Stamp::Now,
        transitions: 1,
        address: None,
        peer_address: None,
        failsafe: None,
    };
    let out = release.to_lease("example", Some(&base), now);
    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(
        json["metadata"]["labels"],
        serde_json::json!({"app": "web"})
    );
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(json["metadata"]["annotations"].clone()).unwrap();
    assert_eq!(annotations.get("other").map(String::as_str), Some("kept"));
    assert!(!annotations.contains_key(ADDRESS_ANNOTATION));
    assert!(!annotations.contains_key(PEER_ADDRESS_ANNOTATION));
    assert_eq!(json["metadata"]["resourceVersion"], "7");
    assert_eq!(json["spec"]["holderIdentity"], "");
    assert_eq!(json["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(json["spec"]["leaseTransitions"], 1);
    assert_eq!(json["spec"]["strategy"], "OldestEmulationVersion");
    // MicroTime: microsecond precision, as client-go writes it.
    assert_eq!(json["spec"]["renewTime"], "2026-11-24T02:00:00.500000Z");

    let renew = Draft {
        holder: "pod-b".into(),
        lease_duration_secs: 10,
        acquire_time: Stamp::Keep(base.record().acquire_time),
        transitions: 2,
        address: Some("198.18.0.3:8080".into()),
        peer_address: Some("198.18.0.3:8443".into()),
        failsafe: None,
    };
    let lease = renew.to_lease("example", None, now);
    let read = lease.record();
    assert_eq!(read.peer_address.as_deref(), Some("198.18.0.3:8443"));
    assert_eq!(read.address.as_deref(), Some("198.18.0.3:8080"));
    let json = serde_json::to_value(lease).unwrap();
    assert_eq!(json["metadata"]["name"], "example");
    assert_eq!(json["spec"]["acquireTime"], "2026-11-24T01:00:00.000000Z");
    assert_eq!(
        json["metadata"]["annotations"][ADDRESS_ANNOTATION],
        "198.18.0.3:8080"
    );
}
