//! The test kubelet: the part of the world that is not the real thing. It registers the
//! Node objects, watches the pods the scheduler binds to them, and runs each as a kubelet
//! would — a network namespace with its own address, containers as processes from local
//! programs standing in for their images, the pod spec's environment (downward API
//! included), volumes (the bound ServiceAccount token among them), probes and lifecycle
//! hooks, restart back-off, termination grace and container order — and writes pod status
//! as a kubelet writes it (podIP, phase, `Ready` and `ContainersReady`, container statuses).
//! `docs/local-cluster.md` lists what it reproduces and what it does not.
//!
//! All Node objects share the node namespace ([`super::node`]): they are scheduling
//! domains (hostname and zone labels for topology spread and drains), not machines.

mod container;
mod env;
mod pod;
mod probe;
mod volumes;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use container::{ContainerRt, Images, State as ContainerState};
pub use pod::{PodCtx, PodRecord, PodRt};

use super::node::{NodeNet, PodNet};
use crate::cluster::HarnessError;
use crate::cluster::process::Signal;

/// A Node the kubelet registers.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Its name (also its `kubernetes.io/hostname` label).
    pub name: String,
    /// Its `topology.kubernetes.io/zone` label.
    pub zone: String,
}

/// The kubelet's settings.
#[derive(Clone, Debug)]
pub struct KubeletOptions {
    /// The Nodes it registers and runs pods for.
    pub nodes: Vec<NodeSpec>,
    /// The programs images stand for.
    pub images: Images,
}

/// The running kubelet. Clones share it.
#[derive(Clone)]
pub struct Kubelet {
    inner: Arc<Inner>,
    watch: Arc<JoinHandle<()>>,
    cordon: Arc<JoinHandle<()>>,
}

struct Inner {
    client: kube::Client,
    node: NodeNet,
    dir: PathBuf,
    opts: KubeletOptions,
    kubernetes_service_ip: Ipv4Addr,
    state: Mutex<Pods>,
}

#[derive(Default)]
struct Pods {
    /// By uid.
    running: BTreeMap<String, Running>,
    /// Pod address numbers in use.
    hosts: BTreeSet<u8>,
    next_host: u8,
    /// Every pod ever run, in order.
    history: Vec<PodRecord>,
}

struct Running {
    namespace: String,
    name: String,
    updates: watch::Sender<Option<Pod>>,
    rt: Option<Arc<PodRt>>,
    task: JoinHandle<()>,
}

// === impl Kubelet ===

impl Kubelet {
    /// Registers the Nodes and starts watching for their pods.
    pub async fn start(
        client: kube::Client,
        node: NodeNet,
        dir: PathBuf,
        opts: KubeletOptions,
    ) -> Result<Kubelet, HarnessError> {
        register_nodes(&client, &node, &opts.nodes).await?;
        let inner = Arc::new(Inner {
            client,
            kubernetes_service_ip: Ipv4Addr::new(198, 19, node.slot, 1),
            node,
            dir,
            opts,
            state: Mutex::new(Pods {
                next_host: 2,
                ..Pods::default()
            }),
        });
        let watch = Arc::new(tokio::spawn(watch_pods(inner.clone())));
        let names = inner.opts.nodes.iter().map(|n| n.name.clone()).collect();
        let cordon = Arc::new(tokio::spawn(taint_cordoned(inner.client.clone(), names)));
        Ok(Kubelet {
            inner,
            watch,
            cordon,
        })
    }

    /// The Nodes.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.inner.opts.nodes
    }

    /// Every pod this kubelet ever ran (running or gone), in the order it started them.
    pub fn history(&self) -> Vec<PodRecord> {
        self.inner.state().history.clone()
    }

    /// The pods of `namespace` it runs now: (name, address).
    pub fn running(&self, namespace: &str) -> Vec<(String, Ipv4Addr)> {
        let mut pods: Vec<(String, Ipv4Addr)> = self
            .inner
            .state()
            .running
            .values()
            .filter(|r| r.namespace == namespace)
            .filter_map(|r| r.rt.as_ref().map(|rt| (r.name.clone(), rt.ctx.ip)))
            .collect();
        pods.sort();
        pods
    }

    /// The running pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Result<Arc<PodRt>, HarnessError> {
        self.inner
            .state()
            .running
            .values()
            .find(|r| r.namespace == namespace && r.name == name)
            .and_then(|r| r.rt.clone())
            .ok_or_else(|| HarnessError::NoSuchPod(format!("{namespace}/{name}")))
    }

    /// Sends `signal` to container `container` of a running pod (SIGKILL: a crash the
    /// kubelet answers with a restart after its back-off).
    pub async fn signal(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        signal: Signal,
    ) -> Result<(), HarnessError> {
        let rt = self.pod(namespace, pod)?;
        let c = rt.container(container).ok_or_else(|| {
            HarnessError::NoSuchPod(format!("{namespace}/{pod} container {container}"))
        })?;
        c.signal(signal).await
    }

    /// Stops watching and kills every pod at once (no grace: the world is going away).
    pub async fn shutdown(&self) {
        self.watch.abort();
        self.cordon.abort();
        let running: Vec<Running> = std::mem::take(&mut self.inner.state().running)
            .into_values()
            .collect();
        for r in running {
            r.task.abort();
            if let Some(rt) = &r.rt {
                for c in rt.init.iter().map(|(c, _)| c).chain(&rt.containers) {
                    c.kill_now().await;
                }
                let _ = rt.net.delete().await;
            }
        }
    }
}

// === impl Inner ===

impl Inner {
    fn state(&self) -> MutexGuard<'_, Pods> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ours(&self, pod: &Pod) -> Option<String> {
        let node = pod.spec.as_ref()?.node_name.clone()?;
        self.opts
            .nodes
            .iter()
            .any(|n| n.name == node)
            .then_some(node)
    }

    /// A pod seen in a list or watch event.
    fn seen(self: &Arc<Self>, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut state = self.state();
        if let Some(r) = state.running.get(&uid) {
            r.updates.send_replace(Some(pod));
            return;
        }
        let Some(node) = self.ours(&pod) else { return };
        let (updates, rx) = watch::channel(Some(pod.clone()));
        let me = self.clone();
        let task_uid = uid.clone();
        let task = tokio::spawn(async move {
            me.run_pod(pod, node, rx).await;
            let mut state = me.state();
            if let Some(r) = state.running.remove(&task_uid)
                && let Some(rt) = r.rt
            {
                state.hosts.remove(&rt.ctx.ip.octets()[3]);
            }
        });
        state.running.insert(
            uid,
            Running {
                namespace: String::new(),
                name: String::new(),
                updates,
                rt: None,
                task,
            },
        );
    }

    /// A pod gone from the API.
    fn gone(&self, uid: &str) {
        if let Some(r) = self.state().running.get(uid) {
            r.updates.send_replace(None);
        }
    }

    fn allocate_host(&self) -> Option<u8> {
        let mut state = self.state();
        let start = state.next_host;
        let host = (0..253u16)
            .map(|i| 2 + ((u16::from(start) - 2 + i) % 253) as u8)
            .find(|h| !state.hosts.contains(h))?;
        state.hosts.insert(host);
        state.next_host = if host == 254 { 2 } else { host + 1 };
        Some(host)
    }

    async fn run_pod(
        self: &Arc<Self>,
        pod: Pod,
        node: String,
        updates: watch::Receiver<Option<Pod>>,
    ) {
        let meta = &pod.metadata;
        let (namespace, name, uid) = (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
            meta.uid.clone().unwrap_or_default(),
        );
        if meta.deletion_timestamp.is_some() {
            // Deleted before it ever ran here.
            let api = kube::Api::<Pod>::namespaced(self.client.clone(), &namespace);
            let _ = api
                .delete(&name, &kube::api::DeleteParams::default().grace_period(0))
                .await;
            return;
        }
        let Some(host) = self.allocate_host() else {
            tracing::warn!(pod = %name, "no pod address left");
            return;
        };
        let prepared = async {
            let net = PodNet::create(&self.node, host).await?;
            let ctx = PodCtx {
                client: self.client.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                uid: uid.clone(),
                ip: net.ip,
                host_ip: self.node.ip,
                kubernetes_service_ip: self.kubernetes_service_ip,
                dir: self
                    .dir
                    .join(&namespace)
                    .join(format!("{name}-{}", &uid[..8.min(uid.len())])),
            };
            match PodRt::prepare(&pod, ctx, net.clone(), node.clone(), &self.opts.images).await {
                Ok(rt) => Ok(rt),
                Err(e) => {
                    let _ = net.delete().await;
                    Err(e)
                }
            }
        }
        .await;
        let rt = match prepared {
            Ok(rt) => Arc::new(rt),
            Err(e) => {
                tracing::warn!(pod = %name, error = %e, "pod setup failed");
                self.state().hosts.remove(&host);
                report_setup_error(&self.client, &namespace, &name, &e).await;
                return;
            }
        };
        {
            let mut state = self.state();
            if let Some(r) = state.running.get_mut(&uid) {
                r.namespace = namespace.clone();
                r.name = name.clone();
                r.rt = Some(rt.clone());
            }
            state.history.push(rt.record.clone());
        }
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        rt.run(policy, updates).await;
    }
}

/// Creates the Node objects with a Ready condition and capacity, and removes the
/// `not-ready` taint the API server's TaintNodesByCondition admission puts on new Nodes
/// (the node lifecycle controller, which would lift it, does not run here).
async fn register_nodes(
    client: &kube::Client,
    node: &NodeNet,
    nodes: &[NodeSpec],
) -> Result<(), HarnessError> {
    let api = kube::Api::<Node>::all(client.clone());
    for n in nodes {
        let object: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": n.name,
                "labels": {
                    "kubernetes.io/hostname": n.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "topology.kubernetes.io/zone": n.zone,
                },
            },
            "status": {
                "addresses": [
                    { "type": "InternalIP", "address": node.ip.to_string() },
                    { "type": "Hostname", "address": n.name },
                ],
                "capacity": { "cpu": "2", "memory": "8Gi", "pods": "110" },
                "allocatable": { "cpu": "2", "memory": "8Gi", "pods": "110" },
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "understudy's test kubelet",
                }],
                "nodeInfo": {
                    "kubeletVersion": "v1.37.2-understudy-test-kubelet",
                    "containerRuntimeVersion": "understudy-test-kubelet://1",
                    "operatingSystem": "linux", "architecture": "amd64",
                    "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                    "osImage": "", "kubeProxyVersion": "",
                },
            },
        }))
        .expect("a valid Node");
        api.create(&PostParams::default(), &object)
            .await
            .map_err(|e| HarnessError::api(format!("create node {}", n.name), e))?;
        api.patch(
            &n.name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "taints": null } })),
        )
        .await
        .map_err(|e| HarnessError::api(format!("untaint node {}", n.name), e))?;
    }
    Ok(())
}

/// The taint the node lifecycle controller puts on a cordoned Node.
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// What the node lifecycle controller (which does not run here) does for `kubectl cordon`
/// and `drain`: keeps the `node.kubernetes.io/unschedulable:NoSchedule` taint on our Nodes
/// exactly while `spec.unschedulable` is set, so that topology spread constraints with
/// `nodeTaintsPolicy: Honor` stop counting a cordoned Node, as in a cluster.
async fn taint_cordoned(client: kube::Client, names: BTreeSet<String>) {
    let api = kube::Api::<Node>::all(client);
    loop {
        let Ok(list) = api.list(&ListParams::default()).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut rv = list.metadata.resource_version.unwrap_or_default();
        for n in &list.items {
            reconcile_cordon(&api, &names, n).await;
        }
        'watch: loop {
            let params = WatchParams::default().timeout(290);
            let Ok(stream) = api.watch(&params, &rv).await else {
                break 'watch;
            };
            let mut stream = stream.boxed();
            loop {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Added(n))) | Ok(Some(WatchEvent::Modified(n))) => {
                        rv = n.metadata.resource_version.clone().unwrap_or(rv);
                        reconcile_cordon(&api, &names, &n).await;
                    }
                    Ok(Some(WatchEvent::Deleted(n))) => {
                        rv = n.metadata.resource_version.clone().unwrap_or(rv);
                    }
                    Ok(Some(WatchEvent::Bookmark(b))) => rv = b.metadata.resource_version,
                    Ok(None) => continue 'watch,
                    Ok(Some(WatchEvent::Error(_))) | Err(_) => break 'watch,
                }
            }
        }
    }
}

async fn reconcile_cordon(api: &kube::Api<Node>, names: &BTreeSet<String>, node: &Node) {
    let Some(name) = node.metadata.name.as_deref().filter(|n| names.contains(*n)) else {
        return;
    };
    let spec = node.spec.clone().unwrap_or_default();
    let cordoned = spec.unschedulable.unwrap_or(false);
    let taints = spec.taints.unwrap_or_default();
    if cordoned == taints.iter().any(|t| t.key == UNSCHEDULABLE) {
        return;
    }
    let mut wanted: Vec<_> = taints
        .into_iter()
        .filter(|t| t.key != UNSCHEDULABLE)
        .map(|t| json!(t))
        .collect();
    if cordoned {
        wanted.push(json!({ "key": UNSCHEDULABLE, "effect": "NoSchedule" }));
    }
    let patch = Patch::Merge(json!({ "spec": { "taints": wanted } }));
    if let Err(e) = api.patch(name, &PatchParams::default(), &patch).await {
        tracing::warn!(error = %e, node = name, "kubelet: tainting a cordoned node");
    }
}

/// A pod that cannot be set up stays Pending with the reason in its first container's
/// waiting state, as `CreateContainerConfigError` shows in `kubectl get pods`.
async fn report_setup_error(client: &kube::Client, namespace: &str, name: &str, e: &HarnessError) {
    let api = kube::Api::<Pod>::namespaced(client.clone(), namespace);
    let Ok(pod) = api.get(name).await else { return };
    let statuses: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            json!({
                "name": c.name, "image": c.image, "imageID": "", "ready": false, "restartCount": 0,
                "state": { "waiting": { "reason": "CreateContainerConfigError", "message": e.to_string() } },
            })
        })
        .collect();
    let patch =
        Patch::Merge(json!({ "status": { "phase": "Pending", "containerStatuses": statuses } }));
    let _ = api
        .patch_status(name, &PatchParams::default(), &patch)
        .await;
}

/// Lists and watches every pod (all namespaces), feeding the pods of our Nodes to their
/// workers; re-lists after a watch ends badly (410 Gone included).
async fn watch_pods(inner: Arc<Inner>) {
    let api = kube::Api::<Pod>::all(inner.client.clone());
    loop {
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "kubelet: listing pods");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let listed: BTreeSet<String> = list
            .items
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let known: Vec<String> = inner.state().running.keys().cloned().collect();
        for uid in known.iter().filter(|u| !listed.contains(*u)) {
            inner.gone(uid);
        }
        let mut rv = list.metadata.resource_version.unwrap_or_default();
        for pod in list.items {
            inner.seen(pod);
        }
        'watch: loop {
            let params = WatchParams::default().timeout(290);
            let stream = match api.watch(&params, &rv).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet: opening the pod watch");
                    break 'watch;
                }
            };
            let mut stream = stream.boxed();
            loop {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Added(p))) | Ok(Some(WatchEvent::Modified(p))) => {
                        rv = p.metadata.resource_version.clone().unwrap_or(rv);
                        inner.seen(p);
                    }
                    Ok(Some(WatchEvent::Deleted(p))) => {
                        rv = p.metadata.resource_version.clone().unwrap_or(rv);
                        if let Some(uid) = &p.metadata.uid {
                            inner.gone(uid);
                        }
                    }
                    Ok(Some(WatchEvent::Bookmark(b))) => rv = b.metadata.resource_version,
                    Ok(Some(WatchEvent::Error(e))) => {
                        tracing::debug!(error = ?e, "kubelet: pod watch error; re-listing");
                        break 'watch;
                    }
                    // The server ended the watch (its timeout): resume from `rv`.
                    Ok(None) => continue 'watch,
                    Err(e) => {
                        tracing::debug!(error = %e, "kubelet: pod watch broke; re-listing");
                        break 'watch;
                    }
                }
            }
        }
    }
}
