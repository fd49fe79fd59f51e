//! Telling Kubernetes about this pod's role (both off by default):
//! - `--label-pods`: the pod is labelled `understudy.io/role=active|standby` and, while
//!   active, `understudy.io/slot=<slot>` (a JSON merge patch on the pod named by `--id`), so a
//!   leader-only Service can select it and `kubectl get pods -L understudy.io/role` shows roles;
//! - `--events`: a core/v1 Event on the slot's Lease each time this pod starts or stops
//!   leading, with reason `LeaderElection` and a message like client-go's recorder writes.
//!
//! Both follow the published election view, which changes only after the Lease write has
//! succeeded: a label never claims a leadership the Lease does not record yet.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use understudy_elector::Slots;

/// Label with the role: `active` or `standby`.
pub const ROLE_LABEL: &str = "understudy.io/role";
/// Label with the slot held, on an active pod only.
pub const SLOT_LABEL: &str = "understudy.io/slot";

/// What to announce, and where.
#[derive(Clone, Debug)]
pub struct Announce {
    /// Label the pod (`--label-pods`).
    pub label_pods: bool,
    /// Record Events (`--events`).
    pub events: bool,
    /// The pod (and candidate) name.
    pub pod: String,
    /// Namespace of the pod, the Leases and the Events.
    pub namespace: String,
}

/// Follows `slots` until it closes, labelling and recording each change of the slot held.
/// A failed API call is retried after a second; a newer change replaces an older one.
pub async fn run(announce: Announce, client: kube::Client, mut slots: watch::Receiver<Slots>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &announce.namespace);
    let events: Api<Event> = Api::namespaced(client, &announce.namespace);
    let mut labelled: Option<Option<usize>> = None;
    let mut recorded: Option<usize> = None;
    loop {
        let (held, lease_of, synced) = {
            let s = slots.borrow_and_update();
            let leases: Vec<String> = s.views.iter().map(|v| v.lease.clone()).collect();
            (s.held, leases, s.synced())
        };
        let mut retry = false;
        if synced && announce.events && recorded != held {
            if let Some(old) = recorded {
                let message = format!("{} stopped leading", announce.pod);
                retry |= !record(&events, &announce, &lease_of[old], &message).await;
            }
            if let Some(new) = held {
                let message = format!("{} became leader", announce.pod);
                retry |= !record(&events, &announce, &lease_of[new], &message).await;
            }
            recorded = held;
        }
        if synced && announce.label_pods && labelled != Some(held) {
            if label(&pods, &announce.pod, held).await {
                labelled = Some(held);
            } else {
                retry = true;
            }
        }
        let changed = if retry {
            tokio::time::timeout(Duration::from_secs(1), slots.changed())
                .await
                .unwrap_or(Ok(()))
        } else {
            slots.changed().await
        };
        if changed.is_err() {
            return;
        }
    }
}

async fn label(pods: &Api<Pod>, pod: &str, held: Option<usize>) -> bool {
    let patch = json!({"metadata": {"labels": {
        ROLE_LABEL: if held.is_some() { "active" } else { "standby" },
        SLOT_LABEL: held.map(|s| s.to_string()),
    }}});
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    let call = pods.patch(pod, &params, &patch);
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%pod, error = %understudy_elector::describe(&error), "labelling the pod failed");
            false
        }
        Err(_) => {
            tracing::warn!(%pod, "labelling the pod timed out");
            false
        }
    }
}

/// One Event, as client-go's recorder writes it for leader election.
async fn record(events: &Api<Event>, a: &Announce, lease: &str, message: &str) -> bool {
    let event = understudy_elector::record::lease_event(
        &a.namespace,
        lease,
        &a.pod,
        "LeaderElection",
        "Normal",
        message,
    );
    let params = PostParams::default();
    let call = events.create(&params, &event);
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(%lease, error = %understudy_elector::describe(&error), "recording an event failed");
            false
        }
        Err(_) => false,
    }
}
