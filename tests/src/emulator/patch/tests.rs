use serde_json::json;

use super::*;

fn lease() -> Value {
    json!({
        "metadata": { "name": "l", "labels": { "a": "1", "b": "2" }, "finalizers": ["x"] },
        "spec": { "holderIdentity": "pod-a", "leaseDurationSeconds": 15 }
    })
}

#[test]
fn merge_patch_sets_and_deletes() {
    let p = Patch::parse(
        "application/merge-patch+json",
        br#"{"metadata":{"labels":{"a":null,"c":"3"}},"spec":{"holderIdentity":"pod-b"}}"#,
    )
    .unwrap();
    let out = p.apply_to(&lease()).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({ "b": "2", "c": "3" }));
    assert_eq!(
        out["spec"],
        json!({ "holderIdentity": "pod-b", "leaseDurationSeconds": 15 })
    );
}

#[test]
fn strategic_merges_lists_by_key() {
    let pod = json!({ "spec": { "containers": [{ "name": "app", "image": "nginx" }, { "name": "side", "image": "x" }] } });
    let body = br#"{"spec":{"containers":[{"name":"app","image":"nginx:2"},{"name":"side","$patch":"delete"}]},"metadata":{"finalizers":["y"]}}"#;
    let out = Patch::parse("application/strategic-merge-patch+json", body)
        .unwrap()
        .apply_to(&pod)
        .unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([{ "name": "app", "image": "nginx:2" }])
    );
    let out = Patch::parse(
        "application/strategic-merge-patch+json",
        br#"{"metadata":{"finalizers":["y"]}}"#,
    )
    .unwrap()
    .apply_to(&lease())
    .unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
}

#[test]
fn json_patch_operations() {
    let body = br#"[
        {"op":"test","path":"/spec/holderIdentity","value":"pod-a"},
        {"op":"replace","path":"/spec/holderIdentity","value":"pod-b"},
        {"op":"add","path":"/metadata/labels/c","value":"3"},
        {"op":"remove","path":"/metadata/labels/a"},
        {"op":"copy","from":"/spec/holderIdentity","path":"/metadata/labels/h"},
        {"op":"move","from":"/metadata/labels/b","path":"/metadata/labels/m"},
        {"op":"add","path":"/metadata/finalizers/-","value":"z"}
    ]"#;
    let out = Patch::parse("application/json-patch+json", body)
        .unwrap()
        .apply_to(&lease())
        .unwrap();
    assert_eq!(out["spec"]["holderIdentity"], "pod-b");
    assert_eq!(
        out["metadata"]["labels"],
        json!({ "c": "3", "h": "pod-b", "m": "2" })
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["x", "z"]));
    let failing = br#"[{"op":"test","path":"/spec/holderIdentity","value":"nobody"}]"#;
    let err = Patch::parse("application/json-patch+json", failing)
        .unwrap()
        .apply_to(&lease())
        .unwrap_err();
    assert_eq!(err.code, 422);
}

#[test]
fn apply_reads_yaml_and_unknown_types_are_415() {
    let p = Patch::parse(
        "application/apply-patch+yaml",
        b"spec:\n  holderIdentity: pod-c\n",
    )
    .unwrap();
    assert_eq!(
        p.apply_to(&lease()).unwrap()["spec"]["holderIdentity"],
        "pod-c"
    );
    assert_eq!(Patch::parse("text/plain", b"{}").unwrap_err().code, 415);
    assert_eq!(
        Patch::parse("application/merge-patch+json", b"{nope")
            .unwrap_err()
            .code,
        400
    );
}
