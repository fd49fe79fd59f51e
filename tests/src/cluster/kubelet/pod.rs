//! One pod's life on the test kubelet: sandbox (network namespace and address), volumes,
//! init containers in order (native sidecars — init containers with `restartPolicy: Always`
//! — started and kept running), then the containers; status written as the kubelet writes
//! it; and on deletion the kubelet's order: the containers' `preStop` hooks and SIGTERM at
//! once, SIGKILL at the end of the grace period, then the sidecars in reverse order, then the
//! pod object removed (grace 0) and its namespace deleted.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::container::{ContainerRt, Images, Launch, Mount, State};
use super::{env, volumes};
use crate::cluster::HarnessError;
use crate::cluster::node::PodNet;

/// What every part of a pod's setup needs to know.
pub struct PodCtx {
    /// A cluster-admin client (the kubelet's).
    pub client: kube::Client,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's uid.
    pub uid: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The node's address.
    pub host_ip: Ipv4Addr,
    /// The `kubernetes` Service's ClusterIP.
    pub kubernetes_service_ip: Ipv4Addr,
    /// The pod's directory.
    pub dir: PathBuf,
}

impl PodCtx {
    /// A ConfigMap of the pod's namespace.
    pub async fn config_map(&self, name: &str) -> Result<ConfigMap, HarnessError> {
        kube::Api::<ConfigMap>::namespaced(self.client.clone(), &self.namespace)
            .get(name)
            .await
            .map_err(|e| HarnessError::api(format!("get configmap {}/{name}", self.namespace), e))
    }

    /// A Secret of the pod's namespace.
    pub async fn secret(&self, name: &str) -> Result<Secret, HarnessError> {
        kube::Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .get(name)
            .await
            .map_err(|e| HarnessError::api(format!("get secret {}/{name}", self.namespace), e))
    }
}

/// A pod the kubelet ran, for tests (logs, checks) while and after it runs.
#[derive(Clone, Debug)]
pub struct PodRecord {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
    /// The Node it ran on.
    pub node: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its network namespace.
    pub netns: String,
    /// Its directory (one subdirectory per container with its log).
    pub dir: PathBuf,
    /// Container name -> log file.
    pub logs: BTreeMap<String, PathBuf>,
    /// The access logs of its nginx containers.
    pub access_logs: Vec<PathBuf>,
}

/// A running pod.
pub struct PodRt {
    /// Its context.
    pub ctx: PodCtx,
    /// Its network.
    pub net: PodNet,
    /// The record tests read.
    pub record: PodRecord,
    /// Init containers (native sidecars among them), in spec order.
    pub init: Vec<(Arc<ContainerRt>, bool)>,
    /// Containers.
    pub containers: Vec<Arc<ContainerRt>>,
    changed: Arc<Notify>,
    started: jiff::Timestamp,
    transitions: Mutex<BTreeMap<&'static str, (bool, jiff::Timestamp)>>,
    initialized: Mutex<bool>,
    /// Set when every container has stopped: the status writer's next write is its last.
    stopped: AtomicBool,
    image_of: BTreeMap<String, String>,
}

/// How long a stopped pod's final status write may take before the pod is removed anyway.
const FINAL_STATUS: Duration = Duration::from_secs(5);

fn timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Whether a container with `restartPolicy` (pod's for containers, the container's own for
/// a sidecar) starts again after exiting with `code`.
fn restarts(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

impl PodRt {
    /// Sets the pod up: namespace (`net` is made by the caller), volumes, environments; the
    /// containers are prepared but not started.
    pub async fn prepare(
        pod: &Pod,
        ctx: PodCtx,
        net: PodNet,
        node: String,
        images: &Images,
    ) -> Result<PodRt, HarnessError> {
        let spec = pod
            .spec
            .as_ref()
            .ok_or_else(|| HarnessError::Setup("pod without spec".into()))?;
        std::fs::create_dir_all(&ctx.dir).map_err(|e| HarnessError::io("create", &ctx.dir, e))?;
        let volumes: BTreeMap<String, PathBuf> =
            volumes::make(pod, &ctx).await?.into_iter().collect();
        let changed = Arc::new(Notify::new());
        let grace =
            Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64);
        let pod_user = spec.security_context.as_ref().and_then(|s| s.run_as_user);
        let pod_group = spec.security_context.as_ref().and_then(|s| s.run_as_group);
        let make = |c: &Container, env: env::Env| -> Result<Arc<ContainerRt>, HarnessError> {
            let sc = c.security_context.as_ref();
            let uid = sc.and_then(|s| s.run_as_user).or(pod_user).unwrap_or(0);
            let gid = sc.and_then(|s| s.run_as_group).or(pod_group).unwrap_or(uid);
            let mut mounts = Vec::new();
            for m in c.volume_mounts.iter().flatten() {
                let source = volumes.get(&m.name).ok_or_else(|| {
                    HarnessError::Setup(format!("container {}: no volume {}", c.name, m.name))
                })?;
                mounts.push(Mount {
                    source: source.clone(),
                    path: m.mount_path.clone(),
                    read_only: m.read_only.unwrap_or(false),
                });
            }
            let mut env = env;
            env.insert(
                0,
                (
                    "PATH".into(),
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ),
            );
            env.insert(1, ("HOSTNAME".into(), ctx.name.clone()));
            env.insert(
                2,
                (
                    "HOME".into(),
                    if uid == 0 { "/root".into() } else { "/".into() },
                ),
            );
            let launch = Launch {
                pod: ctx.name.clone(),
                netns: net.netns.clone(),
                dir: ctx.dir.join(&c.name),
                env,
                user: (uid != 0).then_some((uid, gid)),
                mounts,
                workdir: c.working_dir.clone(),
                grace,
            };
            ContainerRt::new(c, images, launch, ctx.ip, changed.clone())
        };
        let mut init = Vec::new();
        for c in spec.init_containers.iter().flatten() {
            let env = env::resolve(pod, c, &ctx).await?;
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            init.push((make(c, env)?, sidecar));
        }
        let mut containers = Vec::new();
        for c in &spec.containers {
            let env = env::resolve(pod, c, &ctx).await?;
            containers.push(make(c, env)?);
        }
        let all = init.iter().map(|(c, _)| c).chain(&containers);
        let logs = all
            .clone()
            .map(|c| (c.name.clone(), c.log_path()))
            .collect();
        let access_logs = all.clone().filter_map(|c| c.access_log()).collect();
        let image_of = all
            .map(|c| (c.name.clone(), c.spec().image.clone().unwrap_or_default()))
            .collect();
        let record = PodRecord {
            namespace: ctx.namespace.clone(),
            name: ctx.name.clone(),
            uid: ctx.uid.clone(),
            node,
            ip: ctx.ip,
            netns: net.netns.clone(),
            dir: ctx.dir.clone(),
            logs,
            access_logs,
        };
        Ok(PodRt {
            ctx,
            net,
            record,
            init,
            containers,
            changed,
            started: jiff::Timestamp::now(),
            transitions: Mutex::new(BTreeMap::new()),
            initialized: Mutex::new(false),
            stopped: AtomicBool::new(false),
            image_of,
        })
    }

    /// A container (init or not) by name.
    pub fn container(&self, name: &str) -> Option<Arc<ContainerRt>> {
        self.init
            .iter()
            .map(|(c, _)| c)
            .chain(&self.containers)
            .find(|c| c.name == name)
            .cloned()
    }

    /// Runs the pod until `updates` shows it deleted (deletion timestamp set, or gone from
    /// the API), then terminates it and removes it from the API.
    pub async fn run(
        self: Arc<Self>,
        restart_policy: String,
        mut updates: watch::Receiver<Option<Pod>>,
    ) {
        let mut writer = tokio::spawn(self.clone().write_status());
        self.changed.notify_one();
        let mut supervisors = Vec::new();
        let startup = async {
            for (c, sidecar) in &self.init {
                if *sidecar {
                    supervisors.push(tokio::spawn(c.clone().supervise(|_| true)));
                    // The kubelet starts the next init container once a sidecar has started.
                    let s = c
                        .wait_state(|s| (s.started && s.running.is_some()) || s.done)
                        .await;
                    if s.done {
                        return false;
                    }
                } else {
                    c.clone().supervise(|code| code != 0).await;
                    if c.state().last.map(|l| l.0) != Some(0) {
                        return false;
                    }
                }
            }
            *self.initialized.lock().unwrap_or_else(|p| p.into_inner()) = true;
            self.changed.notify_one();
            for c in &self.containers {
                let policy = restart_policy.clone();
                supervisors.push(tokio::spawn(
                    c.clone().supervise(move |code| restarts(&policy, code)),
                ));
            }
            true
        };
        let deleted = |p: &Option<Pod>| {
            p.as_ref()
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
        };
        tokio::select! {
            _ = startup => {}
            _ = updates.wait_for(deleted) => {}
        }
        let _ = updates.wait_for(deleted).await;
        let latest = updates.borrow().clone();
        match &latest {
            Some(pod) => {
                let grace = pod
                    .metadata
                    .deletion_grace_period_seconds
                    .or_else(|| {
                        pod.spec
                            .as_ref()
                            .and_then(|s| s.termination_grace_period_seconds)
                    })
                    .unwrap_or(30)
                    .max(0) as u64;
                self.terminate(Duration::from_secs(grace)).await;
            }
            None => {
                for c in self.init.iter().map(|(c, _)| c).chain(&self.containers) {
                    c.kill_now().await;
                }
            }
        }
        for s in supervisors {
            let _ = s.await;
        }
        // The final status (no container running, so not Ready) reaches the API before the
        // pod object goes and its network with it, as the kubelet's does: until then its
        // endpoint would still be serving while nothing answers there.
        self.stopped.store(true, Ordering::SeqCst);
        self.changed.notify_one();
        if tokio::time::timeout(FINAL_STATUS, &mut writer)
            .await
            .is_err()
        {
            tracing::warn!(pod = %self.ctx.name, "the final status write did not finish in time");
            writer.abort();
        }
        if latest.is_some() {
            let api = kube::Api::<Pod>::namespaced(self.ctx.client.clone(), &self.ctx.namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.ctx.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = api.delete(&self.ctx.name, &params).await
                && !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
            {
                tracing::warn!(pod = %self.ctx.name, error = %e, "removing the pod object");
            }
        }
        if let Err(e) = self.net.delete().await {
            tracing::warn!(pod = %self.ctx.name, error = %e, "deleting the pod's namespace");
        }
    }

    /// The kubelet's termination: containers first (preStop, SIGTERM, SIGKILL at the end
    /// of the grace period, all at once), then the sidecars one by one in reverse order,
    /// each with what is left of the grace period but at least two seconds.
    async fn terminate(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        futures::future::join_all(self.containers.iter().map(|c| c.terminate(deadline))).await;
        for (c, _) in self.init.iter().rev() {
            let left = deadline.max(Instant::now() + Duration::from_secs(2));
            c.terminate(left).await;
        }
    }

    /// Writes the pod's status whenever a container's state changes; returns after the
    /// first write begun once [`PodRt::stopped`] is set (whatever its outcome), or when the
    /// pod is gone.
    async fn write_status(self: Arc<Self>) {
        let api = kube::Api::<Pod>::namespaced(self.ctx.client.clone(), &self.ctx.namespace);
        loop {
            self.changed.notified().await;
            // Read before the status, so that a write begun before the stop is not the last.
            let last = self.stopped.load(Ordering::SeqCst);
            let status = self.status();
            let patch = Patch::Merge(json!({ "status": status }));
            let written = api
                .patch_status(&self.ctx.name, &PatchParams::default(), &patch)
                .await;
            if last {
                // (Gone already: a pod deleted from the API, not through its grace period.)
                if let Err(e) = written
                    && !matches!(&e, kube::Error::Api(s) if s.code == 404)
                {
                    let pod = &self.ctx.name;
                    tracing::warn!(%pod, error = %e, "writing the final pod status");
                }
                return;
            }
            if let Err(e) = written {
                if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    return;
                }
                tracing::warn!(pod = %self.ctx.name, error = %e, "writing pod status");
                // Try again with the next change, or shortly.
                let changed = self.changed.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    changed.notify_one();
                });
            }
        }
    }

    fn condition(&self, kind: &'static str, on: bool) -> Value {
        let mut t = self.transitions.lock().unwrap_or_else(|p| p.into_inner());
        let entry = t.entry(kind).or_insert((on, self.started));
        if entry.0 != on {
            *entry = (on, jiff::Timestamp::now());
        }
        json!({
            "type": kind,
            "status": if on { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": timestamp(entry.1),
        })
    }

    fn container_status(&self, c: &ContainerRt, s: &State) -> Value {
        let terminated = |l: &(i32, String, jiff::Timestamp, jiff::Timestamp)| {
            json!({ "terminated": {
                "exitCode": l.0, "reason": l.1,
                "startedAt": timestamp(l.2), "finishedAt": timestamp(l.3),
            }})
        };
        let state = match (&s.running, &s.waiting, &s.last) {
            (Some((t, _)), _, _) => json!({ "running": { "startedAt": timestamp(*t) } }),
            (None, Some(reason), _) => json!({ "waiting": { "reason": reason } }),
            (None, None, Some(l)) => terminated(l),
            (None, None, None) => json!({ "waiting": { "reason": "ContainerCreating" } }),
        };
        let last = match (&s.running, &s.last) {
            (Some(_), Some(l)) => terminated(l),
            (None, Some(l)) if s.waiting.is_some() => terminated(l),
            _ => json!({}),
        };
        let image = self.image_of.get(&c.name).cloned().unwrap_or_default();
        let mut v = json!({
            "name": c.name,
            "image": image,
            "imageID": format!("understudy-test-kubelet://{image}"),
            "ready": s.ready && s.running.is_some(),
            "started": s.started && s.running.is_some(),
            "restartCount": s.restarts,
            "state": state,
            "lastState": last,
        });
        if let Some((_, pid)) = s.running {
            v["containerID"] = json!(format!("understudy://{pid}"));
        }
        v
    }

    /// The status as the kubelet would report it now.
    fn status(&self) -> Value {
        let init: Vec<(State, bool)> = self
            .init
            .iter()
            .map(|(c, side)| (c.state(), *side))
            .collect();
        let main: Vec<State> = self.containers.iter().map(|c| c.state()).collect();
        let initialized = *self.initialized.lock().unwrap_or_else(|p| p.into_inner());
        let ready = |s: &State| s.ready && s.running.is_some();
        let containers_ready = initialized
            && main.iter().all(ready)
            && init.iter().filter(|(_, side)| *side).all(|(s, _)| ready(s));
        let running = main.iter().any(|s| s.running.is_some());
        let phase = if initialized && (running || main.iter().any(|s| s.last.is_some())) {
            "Running"
        } else {
            "Pending"
        };
        let ip = self.ctx.ip.to_string();
        let host = self.ctx.host_ip.to_string();
        json!({
            "phase": phase,
            "hostIP": host,
            "hostIPs": [{ "ip": host }],
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "startTime": timestamp(self.started),
            "conditions": [
                self.condition("PodReadyToStartContainers", true),
                self.condition("Initialized", initialized),
                self.condition("Ready", containers_ready),
                self.condition("ContainersReady", containers_ready),
                self.condition("PodScheduled", true),
            ],
            "initContainerStatuses": self.init.iter().zip(&init)
                .map(|((c, _), (s, _))| self.container_status(c, s)).collect::<Vec<_>>(),
            "containerStatuses": self.containers.iter().zip(&main)
                .map(|(c, s)| self.container_status(c, s)).collect::<Vec<_>>(),
        })
    }
}
