//! Property test: reading a Lease never panics, whatever JSON the API (or something posing
//! as it) sends. A short run is part of the test command; a longer one:
//! `PROPTEST_CASES=100000 cargo nextest run -p understudy-elector --test lease_parsing`.

use k8s_openapi::api::coordination::v1::Lease;
use proptest::prelude::*;
use serde_json::{Value, json};
use understudy_elector::record::LeaseExt;

/// Any JSON scalar, or a shallow array/object of them.
fn junk() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
        Just(Value::from("2026-11-24T03:52:27.123456Z")),
        Just(Value::from("not a time")),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z.:/]{0,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A Lease-shaped object: each field absent, of its right type, or junk.
fn lease() -> impl Strategy<Value = Value> {
    let field = |good: BoxedStrategy<Value>| {
        prop_oneof![Just(None), good.prop_map(Some), junk().prop_map(Some)]
    };
    (
        field("\\PC{0,30}".prop_map(Value::from).boxed()),
        field(any::<i32>().prop_map(Value::from).boxed()),
        field(any::<i32>().prop_map(Value::from).boxed()),
        field(Just(Value::from("2026-11-24T03:52:27.123456Z")).boxed()),
        field(Just(Value::from("1970-01-01T00:00:00Z")).boxed()),
        field("[0-9]{0,20}".prop_map(Value::from).boxed()),
        field("\\PC{0,30}".prop_map(Value::from).boxed()),
        junk(),
    )
        .prop_map(
            |(holder, duration, transitions, acquire, renew, rv, address, extra)| {
                let mut spec = serde_json::Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        spec.insert(k.to_string(), v);
                    }
                };
                put("holderIdentity", holder);
                put("leaseDurationSeconds", duration);
                put("leaseTransitions", transitions);
                put("acquireTime", acquire);
                put("renewTime", renew);
                put("x-extra", Some(extra));
                let mut meta = json!({ "name": "example" });
                if let Some(rv) = rv {
                    meta["resourceVersion"] = rv;
                }
                if let Some(address) = address {
                    meta["annotations"] = json!({ "understudy.io/address": address });
                }
                json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": meta,
                    "spec": spec,
                })
            },
        )
}

proptest! {
    #[test]
    fn reading_any_lease_never_panics(value in lease()) {
        if let Ok(lease) = serde_json::from_value::<Lease>(value) {
            let record = lease.record();
            let observed = lease.observed();
            prop_assert_eq!(observed.is_some(), lease.metadata.resource_version.is_some());
            if let Some(o) = observed {
                prop_assert_eq!(o.record, record);
            }
        }
    }

    #[test]
    fn reading_arbitrary_json_as_a_lease_never_panics(value in junk()) {
        if let Ok(lease) = serde_json::from_value::<Lease>(value) {
            let _ = lease.record();
            let _ = lease.observed();
        }
    }
}
