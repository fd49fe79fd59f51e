//! [`Cluster`]: one run of the local cluster — slot, node, control plane, kubelet — and what
//! tests and the demo ask of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;

use super::control_plane::{Components, ControlPlane, client_from};
use super::kubectl::Kubectl;
use super::kubelet::{Images, Kubelet, KubeletOptions, NodeSpec};
use super::node::NodeNet;
use super::{HarnessError, Slot, cleanup, require_root};
use crate::kubeconfig::{Credentials, Kubeconfig};

/// How to build the cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The Nodes the test kubelet registers; none: no kubelet, controllers, scheduler or
    /// kube-proxy — an API server for processes the test starts itself.
    pub nodes: Vec<NodeSpec>,
    /// More kube-apiserver flags, after the harness's own.
    pub apiserver_args: Vec<String>,
}

impl ClusterOptions {
    /// etcd and the API server only.
    pub fn api_only() -> ClusterOptions {
        ClusterOptions {
            nodes: Vec::new(),
            apiserver_args: Vec::new(),
        }
    }

    /// The whole control plane and `n` Nodes, `node-1`… each in a zone of its own
    /// (`zone-a`, `zone-b`, …).
    pub fn nodes(n: usize) -> ClusterOptions {
        ClusterOptions {
            nodes: (0..n)
                .map(|i| NodeSpec {
                    name: format!("node-{}", i + 1),
                    zone: format!("zone-{}", (b'a' + i as u8) as char),
                })
                .collect(),
            apiserver_args: Vec::new(),
        }
    }
}

impl Default for ClusterOptions {
    /// Two Nodes: enough for a topology spread and a drain.
    fn default() -> Self {
        ClusterOptions::nodes(2)
    }
}

/// A running local cluster. Everything it made is removed by [`Cluster::shutdown`], by
/// `Drop` (e.g. when a test panics; the run directory with all logs is then kept and its
/// path printed, unless `UNDERSTUDY_KEEP_RUN=0`), or — if the process dies first — by the
/// slot's reaper.
pub struct Cluster {
    slot: Option<Slot>,
    dir: Option<tempfile::TempDir>,
    node: NodeNet,
    plane: Option<ControlPlane>,
    kubelet: Option<Kubelet>,
    kubectl: Kubectl,
}

// === impl Cluster ===

impl Cluster {
    /// Builds the cluster; returns once the control plane is ready (and kube-proxy has
    /// synced, when there are Nodes).
    pub async fn start(opts: ClusterOptions) -> Result<Cluster, HarnessError> {
        require_root()?;
        for (program, package) in [
            ("ip", "iproute2"),
            ("iptables", "iptables"),
            ("iptables-restore", "iptables"),
            ("nginx", "nginx-light"),
            ("kill", "procps"),
            ("unshare", "util-linux"),
            ("nsenter", "util-linux"),
            ("setpriv", "util-linux"),
            ("hostname", "hostname"),
        ] {
            super::command::require(program, package)?;
        }
        let slot = tokio::task::spawn_blocking(Slot::claim)
            .await
            .expect("slot claim does not panic")?;
        let n = slot.number();
        let dir = tempfile::Builder::new()
            .prefix(&format!("understudy-cluster-{n}-"))
            .tempdir()
            .map_err(|e| HarnessError::io("create run directory in", std::env::temp_dir(), e))?;
        if let Err(e) = slot.record_dir(dir.path()) {
            // Only the directory would be left behind by a killed run; not worth failing.
            tracing::warn!(error = %e, "recording the run directory");
        }
        match Self::build(&slot, dir.path(), opts).await {
            Ok((node, plane, kubelet, kubectl)) => Ok(Cluster {
                slot: Some(slot),
                dir: Some(dir),
                node,
                plane: Some(plane),
                kubelet,
                kubectl,
            }),
            Err(e) => {
                // Keep the logs of a failed start; clean up everything else now.
                slot.forget_dir();
                let kept = dir.keep();
                let released = tokio::task::spawn_blocking(move || slot.release()).await;
                if let Ok(Err(r)) = released {
                    tracing::warn!(slot = n, error = %r, "clean-up after a failed start");
                }
                Err(HarnessError::Setup(format!(
                    "{e} (logs kept in {})",
                    kept.display()
                )))
            }
        }
    }

    async fn build(
        slot: &Slot,
        dir: &Path,
        opts: ClusterOptions,
    ) -> Result<(NodeNet, ControlPlane, Option<Kubelet>, Kubectl), HarnessError> {
        let node = NodeNet::create(slot).await?;
        let full = !opts.nodes.is_empty();
        let first = opts.nodes.first().map_or("node-1", |n| n.name.as_str());
        let plane = ControlPlane::start(
            &node,
            &dir.join("control-plane"),
            first,
            Components {
                controllers: full,
                scheduler: full,
                proxy: full,
                apiserver_args: opts.apiserver_args.clone(),
            },
        )
        .await?;
        let kubectl = Kubectl::new(plane.admin_kubeconfig())?;
        let kubelet = if full {
            let images = Images {
                understudy: super::sidecar::binary(false)
                    .map_err(|e| HarnessError::Setup(e.to_string()))?,
                client_go: super::control_plane::k8s_bin()?.join("client-go-candidate"),
            };
            let kubelet = Kubelet::start(
                plane.admin(),
                node.clone(),
                dir.join("pods"),
                KubeletOptions {
                    nodes: opts.nodes.clone(),
                    images,
                },
            )
            .await?;
            plane
                .wait_proxy_ready(&node, Duration::from_secs(30))
                .await?;
            Some(kubelet)
        } else {
            None
        };
        Ok((node, plane, kubelet, kubectl))
    }

    fn plane(&self) -> &ControlPlane {
        self.plane.as_ref().expect("running until shutdown")
    }

    /// The slot number of this run.
    pub fn slot(&self) -> u8 {
        self.node.slot
    }

    /// The node's network.
    pub fn node(&self) -> &NodeNet {
        &self.node
    }

    /// The control plane.
    pub fn control_plane(&self) -> &ControlPlane {
        self.plane()
    }

    /// The test kubelet (clusters with Nodes).
    pub fn kubelet(&self) -> &Kubelet {
        self.kubelet
            .as_ref()
            .expect("a cluster with Nodes (ClusterOptions::nodes) has a kubelet")
    }

    /// A cluster-admin client.
    pub fn client(&self) -> kube::Client {
        self.plane().admin()
    }

    /// The API server's address, `198.18.N.1:6443`.
    pub fn api(&self) -> SocketAddr {
        self.plane().api()
    }

    /// kubectl (the one `tests/k8s/build` made) as cluster admin.
    pub fn kubectl(&self) -> &Kubectl {
        &self.kubectl
    }

    /// The run directory (control-plane logs, pods' directories).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// A token of ServiceAccount `namespace/name` from the TokenRequest API (what
    /// `kubectl create token` gets), valid for an hour.
    pub async fn token(&self, namespace: &str, name: &str) -> Result<String, HarnessError> {
        let api = kube::Api::<ServiceAccount>::namespaced(self.client(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer: TokenRequest = api
            .create_subresource("token", name, &Default::default(), &request)
            .await
            .map_err(|e| HarnessError::api(format!("TokenRequest for {namespace}/{name}"), e))?;
        answer
            .status
            .map(|s| s.token)
            .ok_or_else(|| HarnessError::Setup(format!("no token for {namespace}/{name}")))
    }

    /// Writes a kubeconfig at `path` that authenticates as ServiceAccount
    /// `namespace/name` with a fresh token, reaching the API server at `server` (its own
    /// address, or a fault proxy in front of it), namespace `namespace`.
    pub async fn write_service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        server: SocketAddr,
        path: &Path,
    ) -> Result<PathBuf, HarnessError> {
        let token = self.token(namespace, name).await?;
        let ca = std::fs::read_to_string(self.plane().ca_path())
            .map_err(|e| HarnessError::io("read", self.plane().ca_path(), e))?;
        let yaml = Kubeconfig {
            cluster: "understudy-world",
            server: &format!("https://{server}"),
            ca_pem: Some(&ca),
            user: &format!("system:serviceaccount:{namespace}:{name}"),
            credentials: Credentials::Token(token),
            namespace,
        }
        .render();
        std::fs::write(path, yaml).map_err(|e| HarnessError::io("write", path, e))?;
        Ok(path.to_path_buf())
    }

    /// A client authenticating as ServiceAccount `namespace/name` (for checking what its
    /// Role allows).
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<kube::Client, HarnessError> {
        let path = self.dir().join(format!("sa-{namespace}-{name}.kubeconfig"));
        self.write_service_account_kubeconfig(namespace, name, self.api(), &path)
            .await?;
        client_from(&path).await
    }

    /// Stops everything and removes it: pods, control plane, namespaces, links. Keeps the
    /// run directory when `UNDERSTUDY_KEEP_RUN=1`.
    pub async fn shutdown(mut self) -> Result<(), HarnessError> {
        if let Some(k) = self.kubelet.take() {
            k.shutdown().await;
        }
        if let Some(p) = self.plane.take() {
            p.shutdown().await;
        }
        let slot = self.slot.take();
        if keep_run() == Some(true)
            && let Some(slot) = &slot
        {
            slot.forget_dir();
        }
        let released = match slot {
            Some(slot) => tokio::task::spawn_blocking(move || slot.release())
                .await
                .expect("slot release does not panic"),
            None => Ok(()),
        };
        if keep_run() == Some(true)
            && let Some(dir) = self.dir.take()
        {
            eprintln!("run directory kept: {}", dir.keep().display());
        }
        released
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let Some(slot) = &self.slot else { return };
        let keep = std::thread::panicking() && keep_run() != Some(false);
        if keep {
            slot.forget_dir();
        }
        // Synchronous: by the time a panicking test's runtime is gone, nothing must be left
        // running. The slot stays claimed (reaper armed) until the process exits, in case a
        // task still running creates something after this.
        if let Err(e) = cleanup::run_blocking(slot.number()) {
            eprintln!("cluster clean-up of slot {}: {e}", slot.number());
        }
        if keep && let Some(dir) = self.dir.take() {
            eprintln!("logs of the failed run kept in {}", dir.keep().display());
        }
    }
}

/// `UNDERSTUDY_KEEP_RUN`: `1` keeps every run directory, `0` none; unset keeps those of
/// failed runs.
fn keep_run() -> Option<bool> {
    match std::env::var("UNDERSTUDY_KEEP_RUN").ok()?.as_str() {
        "0" | "" => Some(false),
        _ => Some(true),
    }
}
