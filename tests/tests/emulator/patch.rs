//! The four patch content types, as kube-rs sends them.

use http::Method;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use super::*;

#[tokio::test]
async fn merge_strategic_and_json_patches() {
    let emu = start().await;
    let api = leases(&emu, "pod-a").await;
    let created = api
        .create(&PostParams::default(), &lease("l", "pod-a"))
        .await
        .unwrap();
    let pp = PatchParams::default();

    let merged = api
        .patch(
            "l",
            &pp,
            &Patch::Merge(json!({ "spec": { "holderIdentity": "pod-b" } })),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("pod-b")
    );
    assert_eq!(
        merged.spec.as_ref().unwrap().lease_duration_seconds,
        Some(15),
        "merge keeps other fields"
    );

    let smp = json!({ "metadata": { "annotations": { "k": "v" } } });
    let strategic = api.patch("l", &pp, &Patch::Strategic(smp)).await.unwrap();
    assert_eq!(strategic.metadata.annotations.unwrap()["k"], "v");

    // kube is built without its jsonpatch feature, so JSON patch goes out as a raw request.
    let client = emu.kube_client("pod-a").await;
    let ops = r#"[{"op":"test","path":"/spec/holderIdentity","value":"pod-b"},{"op":"replace","path":"/spec/leaseTransitions","value":3}]"#;
    let (code, _, jp) = raw(
        &client,
        Method::PATCH,
        &lease_path("l"),
        "application/json-patch+json",
        ops,
    )
    .await;
    assert_eq!(
        (code, &jp["spec"]["leaseTransitions"]),
        (200, &json!(3)),
        "{jp}"
    );
    assert!(
        jp["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > rv(&created.metadata)
    );

    let failing = r#"[{"op":"test","path":"/spec/holderIdentity","value":"nobody"}]"#;
    let (code, _, s) = raw(
        &client,
        Method::PATCH,
        &lease_path("l"),
        "application/json-patch+json",
        failing,
    )
    .await;
    assert_eq!((code, s["kind"].as_str()), (422, Some("Status")));
}

#[tokio::test]
async fn a_resource_version_in_a_patch_is_a_precondition() {
    let emu = start().await;
    let api = leases(&emu, "pod-a").await;
    let created = api
        .create(&PostParams::default(), &lease("l", "pod-a"))
        .await
        .unwrap();
    let stale = created.metadata.resource_version.clone().unwrap();
    let pp = PatchParams::default();
    let patch = |holder: &str, rv: &str| {
        Patch::Merge(
            json!({ "metadata": { "resourceVersion": rv }, "spec": { "holderIdentity": holder } }),
        )
    };
    api.patch("l", &pp, &patch("pod-b", &stale)).await.unwrap();
    let s = status(api.patch("l", &pp, &patch("pod-c", &stale)).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status(api.patch("missing", &pp, &Patch::Merge(json!({}))).await).code,
        404
    );
}

#[tokio::test]
async fn server_side_apply_creates_and_updates() {
    let emu = start().await;
    let api = leases(&emu, "pod-a").await;
    let applied = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": "ssa" },
        "spec": { "holderIdentity": "pod-a", "leaseDurationSeconds": 10 },
    });
    let s = status(
        api.patch("ssa", &PatchParams::default(), &Patch::Apply(&applied))
            .await,
    );
    assert_eq!(s.code, 422, "apply without a field manager: {s:?}");
    assert!(
        s.message.contains("fieldManager: Required value"),
        "{}",
        s.message
    );

    let pp = PatchParams::apply("understudy").force();
    let created = api
        .patch("ssa", &pp, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(
        created.spec.as_ref().unwrap().lease_duration_seconds,
        Some(10)
    );
    let mut changed = applied.clone();
    changed["spec"]["holderIdentity"] = json!("pod-b");
    let updated = api
        .patch("ssa", &pp, &Patch::Apply(&changed))
        .await
        .unwrap();
    assert_eq!(
        updated.spec.unwrap().holder_identity.as_deref(),
        Some("pod-b")
    );
    assert_eq!(updated.metadata.uid, created.metadata.uid);
}

#[tokio::test]
async fn invalid_patch_results_are_rejected() {
    let emu = start().await;
    let api = leases(&emu, "pod-a").await;
    api.create(&PostParams::default(), &lease("l", "pod-a"))
        .await
        .unwrap();
    let s = status(
        api.patch(
            "l",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "leaseDurationSeconds": -5 } })),
        )
        .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let s = status(
        api.patch(
            "l",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "uid": "other" } })),
        )
        .await,
    );
    assert!(s.message.contains("metadata.uid"), "{}", s.message);
}
