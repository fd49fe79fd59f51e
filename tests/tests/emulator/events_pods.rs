//! Pods (labels patched by the product, created by the harness) and both Event APIs.

use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::*;

#[tokio::test]
async fn pods_from_the_harness_are_patched_through_the_api() {
    let emu = start().await;
    emu.store()
        .put(
            "pods",
            json!({
                "metadata": { "name": "app-0", "labels": { "app": "demo" } },
                "spec": { "containers": [{ "name": "app", "image": "nginx" }] },
                "status": { "phase": "Running", "podIP": "10.0.0.1" },
            }),
        )
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(emu.kube_client("pod-a").await);
    let patch =
        Patch::Merge(json!({ "metadata": { "labels": { "understudy.io/role": "leader" } } }));
    let patched = pods
        .patch("app-0", &PatchParams::default(), &patch)
        .await
        .unwrap();
    let labels = patched.metadata.labels.unwrap();
    assert_eq!(
        (
            labels["app"].as_str(),
            labels["understudy.io/role"].as_str()
        ),
        ("demo", "leader")
    );
    assert_eq!(
        patched.status.unwrap().phase.as_deref(),
        Some("Running"),
        "status survives a main-resource write"
    );

    let leaders = pods
        .list(
            &ListParams::default()
                .labels("understudy.io/role=leader")
                .fields("status.phase=Running"),
        )
        .await
        .unwrap();
    assert_eq!(leaders.items.len(), 1);
    // The pod registry returns the deleted object.
    let deleted = pods
        .delete("app-0", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        deleted.left().unwrap().metadata.name.as_deref(),
        Some("app-0")
    );
}

#[tokio::test]
async fn pods_created_through_the_api_are_validated_and_start_pending() {
    let emu = start().await;
    let pods: Api<Pod> = Api::default_namespaced(emu.kube_client("pod-a").await);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "p" },
        "spec": { "containers": [{ "name": "c", "image": "nginx" }] },
        "status": { "phase": "Running" },
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));
    let empty: Pod = serde_json::from_value(
        json!({ "metadata": { "name": "q" }, "spec": { "containers": [] } }),
    )
    .unwrap();
    let s = status(pods.create(&PostParams::default(), &empty).await);
    assert_eq!(
        (s.code, s.message.as_str()),
        (
            422,
            r#"Pod "q" is invalid: spec.containers: Required value"#
        )
    );
    // Pods allow unconditional updates (no resourceVersion needed).
    let mut update = pod.clone();
    update.metadata.labels = Some([("k".to_string(), "v".to_string())].into());
    pods.replace("p", &PostParams::default(), &update)
        .await
        .unwrap();
    let mut missing = pod.clone();
    missing.metadata.name = Some("missing".into());
    assert_eq!(
        status(
            pods.replace("missing", &PostParams::default(), &missing)
                .await
        )
        .code,
        404,
        "no create-on-update"
    );
}

fn event(name: &str) -> Event {
    Event {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        event_time: Some(MicroTime(jiff::Timestamp::now())),
        action: Some("Acquire".into()),
        reason: Some("LeaderElection".into()),
        reporting_controller: Some("understudy.io/elector".into()),
        reporting_instance: Some("pod-a".into()),
        type_: Some("Normal".into()),
        note: Some("pod-a became leader".into()),
        regarding: Some(ObjectReference {
            kind: Some("Lease".into()),
            name: Some("demo".into()),
            namespace: Some("default".into()),
            api_version: Some("coordination.k8s.io/v1".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn events_written_via_events_k8s_io_are_read_via_core_v1() {
    let emu = start().await;
    let client = emu.kube_client("pod-a").await;
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let created = events
        .create(&PostParams::default(), &event("e1"))
        .await
        .unwrap();
    assert_eq!(created.note.as_deref(), Some("pod-a became leader"));

    let core: Api<CoreEvent> = Api::default_namespaced(client);
    // What `kubectl describe lease demo` asks for.
    let selector =
        "involvedObject.name=demo,involvedObject.namespace=default,involvedObject.kind=Lease";
    let seen = core
        .list(&ListParams::default().fields(selector))
        .await
        .unwrap();
    let e = &seen.items[0];
    assert_eq!(e.message.as_deref(), Some("pod-a became leader"));
    assert_eq!(
        e.reporting_component.as_deref(),
        Some("understudy.io/elector")
    );
    assert_eq!(e.involved_object.kind.as_deref(), Some("Lease"));
    assert_eq!(
        events
            .list(&ListParams::default().fields("regarding.name=demo"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    let mut bad = event("e2");
    bad.reporting_controller = None;
    bad.type_ = Some("Weird".into());
    let s = status(events.create(&PostParams::default(), &bad).await);
    assert_eq!(s.code, 422);
    let fields: Vec<String> = s
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert_eq!(fields, ["reportingController", "type"]);
}
