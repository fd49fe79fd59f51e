//! Lists (selectors, namespaces, pages), unknown paths and discovery.

use http::Method;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::ListParams;
use serde_json::json;

use super::*;

#[tokio::test]
async fn lists_filter_by_label_field_and_namespace_and_paginate() {
    let emu = start().await;
    let store = emu.store();
    for (ns, name, app) in [
        ("default", "a", "web"),
        ("default", "b", "db"),
        ("other", "c", "web"),
        ("default", "d", ""),
    ] {
        let labels = if app.is_empty() {
            json!({})
        } else {
            json!({ "app": app })
        };
        store
            .put(
                "leases",
                json!({ "metadata": { "name": name, "namespace": ns, "labels": labels } }),
            )
            .unwrap();
    }
    let api = leases(&emu, "pod-a").await;
    let names = |l: kube::core::ObjectList<Lease>| {
        l.items
            .into_iter()
            .map(|i| i.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app=web"))
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app notin (web)"))
                .await
                .unwrap()
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app,app!=db"))
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("!app"))
                .await
                .unwrap()
        ),
        ["d"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name!=a"))
                .await
                .unwrap()
        ),
        ["b", "d"]
    );
    let all: Api<Lease> = Api::all(emu.kube_client("pod-a").await);
    assert_eq!(
        names(
            all.list(&ListParams::default().labels("app in (web)"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().fields("metadata.namespace=other"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    let s = status(
        api.list(&ListParams::default().fields("spec.holderIdentity=x"))
            .await,
    );
    assert_eq!(
        (s.code, s.message.as_str()),
        (400, "field label not supported: spec.holderIdentity")
    );

    let page = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = page.metadata.continue_.clone().expect("a continue token");
    assert_eq!(names(page), ["a", "b"]);
    assert_eq!(
        names(
            api.list(&ListParams::default().limit(2).continue_token(&token))
                .await
                .unwrap()
        ),
        ["d"]
    );
}

#[tokio::test]
async fn unknown_paths_are_404_status_and_wrong_verbs_405() {
    let emu = start().await;
    let client = emu.kube_client("pod-a").await;
    let (code, _, s) = raw(
        &client,
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        "",
    )
    .await;
    assert_eq!(
        (code, s["kind"].as_str(), s["reason"].as_str()),
        (404, Some("Status"), Some("NotFound"))
    );
    let (code, _, s) = raw(
        &client,
        Method::POST,
        &lease_path("x"),
        "application/json",
        "{}",
    )
    .await;
    assert_eq!(
        (code, s["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
}

#[tokio::test]
async fn discovery_resolves_the_served_resources() {
    let emu = start().await;
    let discovery = kube::Discovery::new(emu.kube_client("pod-a").await)
        .run()
        .await
        .unwrap();
    let gvk = kube::api::GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease");
    let (ar, caps) = discovery.resolve_gvk(&gvk).expect("leases discovered");
    assert_eq!(ar.plural, "leases");
    assert!(caps.supports_operation(kube::discovery::verbs::WATCH));
    assert!(discovery.has_group("events.k8s.io"));
    let version = emu
        .kube_client("pod-a")
        .await
        .apiserver_version()
        .await
        .unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );
}
