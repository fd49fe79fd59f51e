use serde_json::json;

use super::*;
use crate::emulator::resources::{LEASES, PODS};

fn obj(labels: serde_json::Value) -> Value {
    json!({ "metadata": { "name": "a", "namespace": "default", "labels": labels }, "status": { "phase": "Running" } })
}

#[test]
fn label_operators() {
    let o = obj(json!({ "app": "web", "tier": "front", "n": "5" }));
    let yes = [
        "app=web",
        "app==web",
        "app!=db",
        "app in (web, db)",
        "app notin (db)",
        "tier",
        "!missing",
        "missing!=x",
        "missing notin (x)",
        "app=web,tier=front",
        "n>4",
        "n<6",
        "",
    ];
    for s in yes {
        assert!(
            LabelSelector::parse(s).unwrap().matches(&o),
            "{s} should match"
        );
    }
    let no = [
        "app=db",
        "app!=web",
        "app in (db)",
        "app notin (web)",
        "missing",
        "!app",
        "app=web,tier=back",
        "n>5",
    ];
    for s in no {
        assert!(
            !LabelSelector::parse(s).unwrap().matches(&o),
            "{s} should not match"
        );
    }
}

#[test]
fn label_parse_errors_are_400() {
    for bad in ["app in (a", "app foo (a)", "bad key=x", "a=b c", "n>x"] {
        let err = LabelSelector::parse(bad).unwrap_err();
        assert_eq!(err.code, 400, "{bad}");
    }
}

#[test]
fn field_selectors() {
    let o = obj(json!({}));
    let sel = |s| FieldSelector::parse(s, &PODS).unwrap();
    assert!(sel("metadata.name=a").matches(&o));
    assert!(sel("metadata.name==a,metadata.namespace=default").matches(&o));
    assert!(!sel("metadata.name!=a").matches(&o));
    assert!(sel("status.phase=Running").matches(&o));
    assert!(sel("spec.nodeName=").matches(&o));
    assert!(sel("spec.hostNetwork=false").matches(&o));
    let err = FieldSelector::parse("spec.holderIdentity=x", &LEASES).unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "field label not supported: spec.holderIdentity")
    );
}

#[test]
fn field_selector_escapes() {
    let o = json!({ "metadata": { "name": "a,b=c" } });
    assert!(
        FieldSelector::parse(r"metadata.name=a\,b\=c", &LEASES)
            .unwrap()
            .matches(&o)
    );
}
