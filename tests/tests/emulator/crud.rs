//! create/get/list/update/delete, their error answers, and resourceVersion rules.

use http::Method;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use serde_json::json;

use super::*;

#[tokio::test]
async fn create_get_replace_delete_round_trip() {
    let emu = start().await;
    let api = leases(&emu, "pod-a").await;
    let created = api
        .create(&PostParams::default(), &lease("l1", "pod-a"))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert!(meta.uid.as_ref().is_some_and(|u| u.len() == 36), "{meta:?}");
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(api.get("l1").await.unwrap(), created);

    let mut next = created.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    let replaced = api
        .replace("l1", &PostParams::default(), &next)
        .await
        .unwrap();
    assert_eq!(
        replaced.spec.unwrap().holder_identity.as_deref(),
        Some("pod-b")
    );
    assert_eq!(rv(&replaced.metadata), rv(meta) + 1);
    assert_eq!(replaced.metadata.uid, meta.uid);

    // A Lease delete answers with a Status, as the real lease registry does.
    let deleted = api.delete("l1", &DeleteParams::default()).await.unwrap();
    let s = deleted.right().expect("a Status, not the object");
    let details = s.details.unwrap();
    assert_eq!(
        (
            details.name.as_str(),
            details.group.as_str(),
            details.kind.as_str()
        ),
        ("l1", "coordination.k8s.io", "leases")
    );
    assert_eq!(details.uid, meta.uid.clone().unwrap());

    let s = status(api.get("l1").await);
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, r#"leases.coordination.k8s.io "l1" not found"#);
}

#[tokio::test]
async fn resource_version_is_one_global_counter() {
    let emu = start().await;
    let api = leases(&emu, "pod-a").await;
    let a = api
        .create(&PostParams::default(), &lease("a", "x"))
        .await
        .unwrap();
    let pod = emu
        .store()
        .put(
            "pods",
            json!({ "metadata": { "name": "p" }, "spec": { "containers": [] } }),
        )
        .unwrap();
    let b = api
        .create(&PostParams::default(), &lease("b", "x"))
        .await
        .unwrap();
    let pod_rv: u64 = pod["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv(&a.metadata) < pod_rv && pod_rv < rv(&b.metadata));
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        list.metadata.resource_version.as_deref(),
        Some(emu.store().resource_version().to_string().as_str())
    );
    assert_eq!(list.items.len(), 2);
}

#[tokio::test]
async fn stale_update_is_409_conflict() {
    let emu = start().await;
    let api = leases(&emu, "pod-a").await;
    let v1 = api
        .create(&PostParams::default(), &lease("l", "pod-a"))
        .await
        .unwrap();
    let mut v2 = v1.clone();
    v2.spec.as_mut().unwrap().lease_transitions = Some(1);
    api.replace("l", &PostParams::default(), &v2).await.unwrap();
    let mut stale = v1;
    stale.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    let s = status(api.replace("l", &PostParams::default(), &stale).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        s.message,
        r#"Operation cannot be fulfilled on leases.coordination.k8s.io "l": the object has been modified; please apply your changes to the latest version and try again"#
    );
}

#[tokio::test]
async fn lease_update_without_resource_version_is_422() {
    let emu = start().await;
    let api = leases(&emu, "pod-a").await;
    api.create(&PostParams::default(), &lease("l", "pod-a"))
        .await
        .unwrap();
    // Lease's strategy says AllowUnconditionalUpdate() == false.
    let s = status(
        api.replace("l", &PostParams::default(), &lease("l", "pod-b"))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(
        s.message.contains(
            "metadata.resourceVersion: Invalid value: 0: must be specified for an update"
        ),
        "{}",
        s.message
    );
}

#[tokio::test]
async fn create_of_an_existing_name_is_409_already_exists() {
    let emu = start().await;
    let api = leases(&emu, "pod-a").await;
    api.create(&PostParams::default(), &lease("l", "pod-a"))
        .await
        .unwrap();
    let s = status(
        api.create(&PostParams::default(), &lease("l", "pod-b"))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(
        s.message,
        r#"leases.coordination.k8s.io "l" already exists"#
    );
}

#[tokio::test]
async fn put_creates_a_missing_lease() {
    let emu = start().await;
    let api = leases(&emu, "pod-a").await;
    // AllowCreateOnUpdate() == true for Lease.
    let made = api
        .replace("fresh", &PostParams::default(), &lease("fresh", "pod-a"))
        .await
        .unwrap();
    assert!(made.metadata.uid.is_some());
    assert_eq!(api.get("fresh").await.unwrap(), made);
}

#[tokio::test]
async fn bad_bodies_are_400_and_invalid_objects_422() {
    let emu = start().await;
    let client = emu.kube_client("pod-a").await;
    let coll = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    let (code, _, s) = raw(&client, Method::POST, coll, "application/json", "{not json").await;
    assert_eq!(
        (code, s["reason"].as_str(), s["kind"].as_str()),
        (400, Some("BadRequest"), Some("Status"))
    );

    let wrong_type = r#"{"metadata":{"name":"x"},"spec":{"leaseDurationSeconds":"fifteen"}}"#;
    let (code, _, s) = raw(&client, Method::POST, coll, "application/json", wrong_type).await;
    assert_eq!(code, 400, "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .starts_with(r#"Lease in version "v1" cannot be handled as a Lease"#),
        "{s}"
    );

    let invalid =
        r#"{"metadata":{"name":"x"},"spec":{"leaseDurationSeconds":0,"leaseTransitions":-1}}"#;
    let (code, _, s) = raw(&client, Method::POST, coll, "application/json", invalid).await;
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")), "{s}");
    let causes = s["details"]["causes"].as_array().unwrap();
    let fields: Vec<&str> = causes
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["spec.leaseDurationSeconds", "spec.leaseTransitions"]
    );
    assert_eq!(
        causes[0]["message"],
        "Invalid value: 0: must be greater than 0"
    );
    assert_eq!(s["details"]["kind"], "Lease");
    assert_eq!(s["details"]["group"], "coordination.k8s.io");

    let (code, _, s) = raw(
        &client,
        Method::POST,
        coll,
        "application/json",
        r#"{"metadata":{"name":"Bad_Name"}}"#,
    )
    .await;
    assert_eq!(
        (code, s["details"]["causes"][0]["field"].as_str()),
        (422, Some("metadata.name")),
        "{s}"
    );

    // The name in the body must be the one in the URL (checkName: a 400, as on a real server).
    let (code, _, s) = raw(
        &client,
        Method::PUT,
        &lease_path("y"),
        "application/json",
        r#"{"metadata":{"name":"x"}}"#,
    )
    .await;
    assert_eq!(code, 400, "{s}");
    assert_eq!(
        s["message"],
        "the name of the object (x) does not match the name on the URL (y)"
    );
    assert!(emu.store().list("leases", None).is_empty());
}

#[tokio::test]
async fn no_op_update_keeps_the_resource_version() {
    let emu = start().await;
    let api = leases(&emu, "pod-a").await;
    let created = api
        .create(&PostParams::default(), &lease("l", "pod-a"))
        .await
        .unwrap();
    let again = api
        .replace("l", &PostParams::default(), &created)
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(emu.store().resource_version(), rv(&created.metadata));
}

#[tokio::test]
async fn micro_time_is_stored_canonically() {
    let emu = start().await;
    let client = emu.kube_client("pod-a").await;
    let body = r#"{"metadata":{"name":"t"},"spec":{"renewTime":"2024-05-01T12:00:00.123456789+02:00","unknownField":1}}"#;
    let (code, _, obj) = raw(
        &client,
        Method::POST,
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        "application/json",
        body,
    )
    .await;
    assert_eq!(code, 201, "{obj}");
    assert_eq!(
        obj["spec"],
        json!({ "renewTime": "2024-05-01T10:00:00.123456Z" })
    );
    let created = obj["metadata"]["creationTimestamp"].as_str().unwrap();
    assert!(created.len() == 20 && created.ends_with('Z'), "{created}");
}

#[tokio::test]
async fn delete_preconditions_and_missing_objects() {
    let emu = start().await;
    let api = leases(&emu, "pod-a").await;
    let l = api
        .create(&PostParams::default(), &lease("l", "pod-a"))
        .await
        .unwrap();
    let with = |uid: Option<&str>, rv: Option<&str>| DeleteParams {
        preconditions: Some(Preconditions {
            uid: uid.map(String::from),
            resource_version: rv.map(String::from),
        }),
        ..DeleteParams::default()
    };
    let s = status(api.delete("l", &with(Some("nope"), None)).await);
    assert_eq!(s.code, 409);
    assert!(
        s.message
            .contains("Precondition failed: UID in precondition: nope"),
        "{}",
        s.message
    );
    let s = status(api.delete("l", &with(None, Some("1"))).await);
    assert!(
        s.message
            .contains("Precondition failed: ResourceVersion in precondition: 1"),
        "{}",
        s.message
    );
    let right = with(
        l.metadata.uid.as_deref(),
        l.metadata.resource_version.as_deref(),
    );
    api.delete("l", &right).await.unwrap();
    assert_eq!(
        status(api.delete("l", &DeleteParams::default()).await).code,
        404
    );
}
