//! A deployment controller in miniature: keeps `replicas` pods; a pod whose container dies
//! is marked Failed (unready at once), then replaced by a new pod — new name, new address —
//! after `replace_delay`; a rolling update replaces the pods one by one (SIGTERM, wait for
//! the exit, start the new pod, wait until it is Ready).
//!
//! Pod names look like Kubernetes': `<deployment>-<template hash>-<5 random>`, the hash
//! changing with each revision.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use super::kubelet::{self, ProbeOptions, ProbeTarget};
use super::pod::{Pod, PodSpec, SidecarLaunch};
use super::sidecar::SidecarOptions;
use super::status::Phase;
use super::{Bridge, HarnessError, PodTable};
use crate::emulator::Emulator;

/// The deployment's spec.
#[derive(Clone, Debug)]
pub struct DeploymentOptions {
    /// Deployment name, the first part of pod names.
    pub name: String,
    /// How many pods.
    pub replicas: usize,
    /// How long after a crash the replacement pod is created.
    pub replace_delay: Duration,
    /// The sidecar; `None` runs nginx alone (harness self-tests).
    pub sidecar: Option<SidecarOptions>,
    /// The readiness probe.
    pub probe: ProbeOptions,
}

/// The node the pods run on: what the deployment needs from the run.
pub struct Node {
    /// The run's `us-N-` prefix.
    pub prefix: String,
    /// The run's slot number.
    pub slot: u8,
    /// The bridge pods attach to.
    pub bridge: Bridge,
    /// Where pod directories go.
    pub dir: PathBuf,
    /// The API server, to write each pod's kubeconfig.
    pub emulator: Arc<Emulator>,
    /// The `understudy` binary (when pods have a sidecar).
    pub binary: Option<PathBuf>,
    /// Pod statuses.
    pub table: PodTable,
}

/// A pod the deployment made, for logs and checks after it is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRecord {
    /// Pod name.
    pub name: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The template revision it was made from.
    pub revision: u32,
    /// nginx's access log.
    pub access_log: PathBuf,
    /// The sidecar's log.
    pub sidecar_log: PathBuf,
}

/// The controller. Clones share it.
#[derive(Clone)]
pub struct Deployment {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    opts: DeploymentOptions,
    state: Mutex<State>,
    /// One pod operation (create, replace) at a time, as a ReplicaSet controller syncs.
    ops: tokio::sync::Mutex<()>,
}

struct State {
    pods: BTreeMap<String, Member>,
    history: Vec<PodRecord>,
    revision: u32,
    next_host: u8,
    rng: u64,
    closed: bool,
}

struct Member {
    pod: Arc<Pod>,
    revision: u32,
    terminating: Arc<AtomicBool>,
    prober: JoinHandle<()>,
    /// `None` once detached: a monitor that is replacing its own pod must not be aborted.
    monitor: Option<JoinHandle<()>>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.prober.abort();
        if let Some(m) = &self.monitor {
            m.abort();
        }
    }
}

// === impl Deployment ===

impl Deployment {
    /// Creates the pods (one after another) and starts watching them.
    pub async fn start(node: Node, opts: DeploymentOptions) -> Result<Deployment, HarnessError> {
        let seed = u64::from(node.slot) << 32 ^ u64::from(std::process::id());
        let inner = Arc::new(Inner {
            node,
            opts,
            state: Mutex::new(State {
                pods: BTreeMap::new(),
                history: Vec::new(),
                revision: 1,
                next_host: 2,
                rng: seed,
                closed: false,
            }),
            ops: tokio::sync::Mutex::new(()),
        });
        let deployment = Deployment { inner };
        for _ in 0..deployment.inner.opts.replicas {
            let _op = deployment.inner.ops.lock().await;
            deployment.inner.create(1).await?;
        }
        Ok(deployment)
    }

    /// The spec.
    pub fn options(&self) -> &DeploymentOptions {
        &self.inner.opts
    }

    /// The current pods (terminating ones included), by name.
    pub fn pods(&self) -> Vec<PodRecord> {
        let state = self.inner.state();
        state
            .pods
            .keys()
            .filter_map(|name| state.history.iter().find(|r| &r.name == name).cloned())
            .collect()
    }

    /// Every pod this deployment ever made, in order of creation.
    pub fn history(&self) -> Vec<PodRecord> {
        self.inner.state().history.clone()
    }

    /// A current pod.
    pub fn pod(&self, name: &str) -> Result<Arc<Pod>, HarnessError> {
        self.inner
            .state()
            .pods
            .get(name)
            .map(|m| m.pod.clone())
            .ok_or_else(|| HarnessError::NoSuchPod(name.to_string()))
    }

    /// SIGKILL the pod's containers; it is replaced after `replace_delay`.
    pub async fn crash(&self, name: &str) -> Result<(), HarnessError> {
        self.pod(name)?.crash().await
    }

    /// Replaces pod `name` gracefully: SIGTERM, wait for its exit, start a new pod of the
    /// current revision, wait until that is Ready (at most `within`). Returns the new name.
    pub async fn replace(&self, name: &str, within: Duration) -> Result<String, HarnessError> {
        let revision = self.inner.state().revision;
        let new = {
            let _op = self.inner.ops.lock().await;
            self.inner.terminate(name).await?;
            self.inner.create(revision).await?
        };
        self.wait_ready(&new, within).await?;
        Ok(new)
    }

    /// A rolling update to a new revision: every pod replaced as by [`Deployment::replace`],
    /// one by one. Returns the new pods' names.
    pub async fn rolling_update(&self, per_pod: Duration) -> Result<Vec<String>, HarnessError> {
        self.new_revision();
        let old: Vec<String> = self.inner.state().pods.keys().cloned().collect();
        let mut new = Vec::new();
        for name in old {
            new.push(self.replace(&name, per_pod).await?);
        }
        Ok(new)
    }

    /// Starts a new template revision: pods made from now on carry its hash. For a rolling
    /// update driven step by step with [`Deployment::replace`].
    pub fn new_revision(&self) -> u32 {
        let mut state = self.inner.state();
        state.revision += 1;
        state.revision
    }

    /// Waits until pod `name` is Ready.
    pub async fn wait_ready(&self, name: &str, within: Duration) -> Result<(), HarnessError> {
        let mut pods = self.inner.node.table.subscribe();
        let ready = pods.wait_for(|m| m.get(name).is_some_and(|s| s.ready));
        match tokio::time::timeout(within, ready).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(HarnessError::timeout(
                format!("pod {name} to be Ready"),
                within,
            )),
        }
    }

    /// Stops every pod (SIGKILL) and removes them; no replacements from now on.
    pub async fn shutdown(&self) {
        let _op = self.inner.ops.lock().await;
        let members: Vec<Member> = {
            let mut state = self.inner.state();
            state.closed = true;
            std::mem::take(&mut state.pods).into_values().collect()
        };
        for m in members {
            m.terminating.store(true, Ordering::SeqCst);
            m.prober.abort();
            if let Err(e) = m.pod.delete().await {
                tracing::warn!(pod = %m.pod.name, error = %e, "deleting pod");
            }
            self.inner.node.table.remove(&m.pod.name);
        }
    }
}

// === impl Inner ===

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates one pod of `revision`; the caller holds `ops`. Boxed: its pods' monitors
    /// create replacements, and the cycle needs a named future type.
    fn create(self: &Arc<Self>, revision: u32) -> BoxFuture<'_, Result<String, HarnessError>> {
        Box::pin(self.create_inner(revision))
    }

    async fn create_inner(self: &Arc<Self>, revision: u32) -> Result<String, HarnessError> {
        let (name, host) = {
            let mut state = self.state();
            if state.closed {
                return Err(HarnessError::NoSuchPod("(deployment shut down)".into()));
            }
            let used: Vec<Ipv4Addr> = state.pods.values().map(|m| m.pod.ip).collect();
            let host = (0..253)
                .map(|i| 2 + ((state.next_host - 2 + i) % 253))
                .find(|h| !used.contains(&Ipv4Addr::new(198, 18, self.node.slot, *h)))
                .expect("fewer than 253 pods");
            state.next_host = if host == 254 { 2 } else { host + 1 };
            let name = format!(
                "{}-{}-{}",
                self.opts.name,
                template_hash(&self.opts.name, revision),
                suffix(&mut state.rng)
            );
            (name, host)
        };
        let ip = Ipv4Addr::new(198, 18, self.node.slot, host);
        let dir = self.node.dir.join("pods").join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| HarnessError::io("create", &dir, e))?;
        let kubeconfig = dir.join("kubeconfig");
        self.node
            .emulator
            .write_kubeconfig(&name, &kubeconfig)
            .map_err(|e| HarnessError::io("write", &kubeconfig, e))?;
        let launch = match (&self.opts.sidecar, &self.node.binary) {
            (Some(options), Some(binary)) => Some(SidecarLaunch {
                binary,
                options,
                kubeconfig,
            }),
            _ => None,
        };
        let pod = Pod::start(PodSpec {
            name: name.clone(),
            netns: format!("{}{name}", self.node.prefix),
            veth: format!("{}v{host}", self.node.prefix),
            ip,
            dir,
            bridge: &self.node.bridge,
            sidecar: launch,
        })
        .await?;
        let pod = Arc::new(pod);
        let record = PodRecord {
            name: name.clone(),
            ip,
            revision,
            access_log: pod.access_log().to_path_buf(),
            sidecar_log: pod.sidecar_log(),
        };
        self.node.table.add(&name, ip);
        let terminating = Arc::new(AtomicBool::new(false));
        let prober = {
            let pod = pod.clone();
            kubelet::spawn(
                ProbeTarget {
                    pod: name.clone(),
                    ip,
                    netns: pod.netns().to_string(),
                },
                self.opts.probe.clone(),
                self.node.table.clone(),
                move || pod.running(),
            )
        };
        let monitor = tokio::spawn(monitor(
            Arc::downgrade(self),
            pod.clone(),
            terminating.clone(),
        ));
        let mut state = self.state();
        state.history.push(record);
        state.pods.insert(
            name.clone(),
            Member {
                pod,
                revision,
                terminating,
                prober,
                monitor: Some(monitor),
            },
        );
        Ok(name)
    }

    /// Terminates and removes pod `name`; the caller holds `ops`.
    async fn terminate(&self, name: &str) -> Result<(), HarnessError> {
        let (pod, terminating) = {
            let state = self.state();
            let m = state
                .pods
                .get(name)
                .ok_or_else(|| HarnessError::NoSuchPod(name.to_string()))?;
            (m.pod.clone(), m.terminating.clone())
        };
        terminating.store(true, Ordering::SeqCst);
        // Deleting a pod takes it out of the endpoints at once, whatever its probe says.
        self.node.table.set_phase(name, Phase::Terminating);
        let grace = self
            .opts
            .sidecar
            .as_ref()
            .map_or(Duration::from_secs(5), |s| {
                s.drain + s.effective_hold_timeout() + Duration::from_secs(5)
            });
        pod.terminate(grace).await?;
        self.remove(name).await
    }

    /// Forgets pod `name`, kills what is left of it and deletes its namespace.
    async fn remove(&self, name: &str) -> Result<(), HarnessError> {
        let member = self.state().pods.remove(name);
        self.node.table.remove(name);
        match member {
            Some(mut m) => {
                // The monitor may be the caller; it ends by itself.
                drop(m.monitor.take());
                m.pod.delete().await
            }
            None => Ok(()),
        }
    }
}

/// Watches one pod: a container that exits unasked makes it Failed, and after the
/// replacement delay it is replaced.
async fn monitor(inner: Weak<Inner>, pod: Arc<Pod>, terminating: Arc<AtomicBool>) {
    pod.any_exit().await;
    if terminating.load(Ordering::SeqCst) {
        return;
    }
    let Some(delay) = inner.upgrade().map(|i| {
        i.node.table.set_ready(&pod.name, false);
        i.node.table.set_phase(&pod.name, Phase::Failed);
        i.opts.replace_delay
    }) else {
        return;
    };
    tokio::time::sleep(delay).await;
    let Some(inner) = inner.upgrade() else { return };
    let _op = inner.ops.lock().await;
    let revision = match inner.state().pods.get(&pod.name) {
        Some(m) if !m.terminating.load(Ordering::SeqCst) => m.revision,
        _ => return,
    };
    if let Err(e) = inner.remove(&pod.name).await {
        tracing::warn!(pod = %pod.name, error = %e, "removing failed pod");
    }
    if let Err(e) = inner.create(revision).await {
        tracing::warn!(pod = %pod.name, error = %e, "creating replacement pod");
    }
}

/// A stable 10-character hash of the pod template (here: deployment name and revision),
/// in the alphabet Kubernetes uses for generated names.
fn template_hash(name: &str, revision: u32) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain(revision.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    encode(h, 10)
}

/// Five random characters, as a ReplicaSet appends.
fn suffix(rng: &mut u64) -> String {
    *rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *rng;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    encode(z ^ (z >> 31), 5)
}

fn encode(mut v: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len)
        .map(|_| {
            let c = ALPHABET[(v % ALPHABET.len() as u64) as usize];
            v /= ALPHABET.len() as u64;
            c as char
        })
        .collect()
}

#[cfg(test)]
mod tests;
