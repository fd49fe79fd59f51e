//! The Kubernetes API emulator, exercised through the real kube-rs client the product uses.
//!
//! One test binary (linking is the slow part of a test build); one module per area.

mod admin;
mod crud;
mod differential;
mod events_pods;
mod faults;
mod kubectl;
mod patch;
mod python;
mod reads;
mod watch;

use std::time::Duration;

use http::{Method, Request};
use http_body_util::BodyExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::ObjectMeta;
use kube::{Api, Client};
use serde_json::Value;
use understudy_tests::emulator::{Emulator, EmulatorOptions};

/// A fresh emulator with default options.
pub async fn start() -> Emulator {
    start_with(|_| {}).await
}

/// A fresh emulator with tweaked options.
pub async fn start_with(tweak: impl FnOnce(&mut EmulatorOptions)) -> Emulator {
    let mut opts = EmulatorOptions::default();
    tweak(&mut opts);
    Emulator::start(opts).await.expect("emulator starts")
}

/// Leases in "default" as `client` sees them.
pub async fn leases(emu: &Emulator, client: &str) -> Api<Lease> {
    Api::default_namespaced(emu.kube_client(client).await)
}

/// A client whose requests kube-rs does not retry on 429/503, so tests see each answer.
pub async fn client_without_retry(emu: &Emulator, client: &str) -> Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&emu.kubeconfig_yaml(client)).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    Client::try_from(config).unwrap()
}

/// A lease held by `holder`.
pub fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    }
}

/// The `Status` of a failed call; panics on success or a transport error.
pub fn status<T: std::fmt::Debug>(r: kube::Result<T>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The resourceVersion of an object, as a number.
pub fn rv(meta: &ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .expect("resourceVersion set")
        .parse()
        .expect("decimal resourceVersion")
}

/// `GET /emulator/v1/stats` as `client`: (status code, body as JSON).
pub async fn get_stats(client: &Client) -> (u16, Value) {
    let (code, _, json) = raw(
        client,
        Method::GET,
        "/emulator/v1/stats",
        "application/json",
        "",
    )
    .await;
    (code, json)
}

/// A raw request: (status code, Retry-After header, body as JSON).
pub async fn raw(
    client: &Client,
    method: Method,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, Option<String>, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(kube::client::Body::from(body.as_bytes().to_vec()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.send(req))
        .await
        .expect("answered")
        .expect("sent");
    let code = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (code, retry_after, json)
}

/// The path of a lease.
pub fn lease_path(name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/default/leases/{name}")
}
