//! [`Cluster`]: one run of the local cluster — slot, bridge, API server, VIP, deployment —
//! and what scenarios ask of it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::admin;
use super::deployment::{Deployment, DeploymentOptions, Node};
use super::endpoints::{self, Endpoints};
use super::kubelet::{Probe, ProbeOptions};
use super::overlap::{self, OverlapReport};
use super::sidecar::{self, SidecarOptions};
use super::vip::Vip;
use super::{Bridge, HarnessError, PodTable, Slot, cleanup, require_root};
use crate::emulator::{Emulator, EmulatorOptions, FaultScope};

/// How to build the cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Deployment name (pod names start with it).
    pub deployment: String,
    /// How many pods.
    pub replicas: usize,
    /// The sidecar in every pod; `None`: nginx alone, the Service pointing at it.
    pub sidecar: Option<SidecarOptions>,
    /// The readiness probe; `None`: the sidecar's `/readyz` (or nginx's `/` without one).
    pub probe: Option<ProbeOptions>,
    /// kube-proxy lag: how long after a readiness change the VIP's rules follow.
    pub service_lag: Duration,
    /// How long after a crash the replacement pod is created.
    pub replace_delay: Duration,
    /// Run `cargo build -p understudy-proxy` before using the sidecar binary (tests).
    pub build_sidecar: bool,
}

impl Default for ClusterOptions {
    /// Three pods with the sidecar at test timings, 200ms kube-proxy lag, replacements after
    /// 1s.
    fn default() -> Self {
        ClusterOptions {
            deployment: "nginx".into(),
            replicas: 3,
            sidecar: Some(SidecarOptions::default()),
            probe: None,
            service_lag: Duration::from_millis(200),
            replace_delay: Duration::from_secs(1),
            build_sidecar: true,
        }
    }
}

/// A running local cluster. Everything it made is removed by [`Cluster::shutdown`], by
/// `Drop` (e.g. when a test panics; the run directory with all logs is then kept and its
/// path printed, unless `UNDERSTUDY_KEEP_RUN=0`), or — if the process dies first — by the
/// slot's reaper.
pub struct Cluster {
    slot: Option<Slot>,
    dir: Option<tempfile::TempDir>,
    emulator: Arc<Emulator>,
    bridge: Bridge,
    vip: Arc<Vip>,
    table: PodTable,
    endpoints: watch::Receiver<Endpoints>,
    endpoints_task: JoinHandle<()>,
    deployment: Deployment,
    opts: ClusterOptions,
}

// === impl Cluster ===

impl Cluster {
    /// Builds the cluster and returns once every pod is Ready and in the Service.
    pub async fn start(opts: ClusterOptions) -> Result<Cluster, HarnessError> {
        require_root()?;
        for (program, package) in [
            ("ip", "iproute2"),
            ("iptables", "iptables"),
            ("iptables-restore", "iptables"),
            ("nginx", "nginx-light"),
            ("kill", "procps"),
        ] {
            super::command::require(program, package)?;
        }
        let binary = match &opts.sidecar {
            Some(_) => {
                let build = opts.build_sidecar;
                Some(
                    tokio::task::spawn_blocking(move || sidecar::binary(build))
                        .await
                        .expect("binary lookup does not panic")?,
                )
            }
            None => None,
        };
        let slot = tokio::task::spawn_blocking(Slot::claim)
            .await
            .expect("slot claim does not panic")?;
        let n = slot.number();
        let built = Self::build(&slot, binary, opts).await;
        if let Ok(cluster) = &built
            && let Err(e) = slot.record_dir(cluster.dir())
        {
            // Only the directory would be left behind by a killed run; not worth failing.
            tracing::warn!(error = %e, "recording the run directory");
        }
        match built {
            Ok(mut cluster) => {
                cluster.slot = Some(slot);
                Ok(cluster)
            }
            Err(e) => {
                // Nothing of this run is in use any more: clean up now, not at exit.
                let released = tokio::task::spawn_blocking(move || slot.release()).await;
                if let Ok(Err(r)) = released {
                    tracing::warn!(slot = n, error = %r, "clean-up after a failed start");
                }
                Err(e)
            }
        }
    }

    async fn build(
        slot: &Slot,
        binary: Option<PathBuf>,
        opts: ClusterOptions,
    ) -> Result<Cluster, HarnessError> {
        let n = slot.number();
        let dir = tempfile::Builder::new()
            .prefix(&format!("understudy-cluster-{n}-"))
            .tempdir()
            .map_err(|e| HarnessError::io("create run directory in", std::env::temp_dir(), e))?;
        let bridge = Bridge::create(slot).await?;
        let emulator = Arc::new(
            Emulator::start(EmulatorOptions {
                listen: SocketAddr::from((bridge.ip, 0)),
                seed: u64::from(n),
                ..EmulatorOptions::default()
            })
            .await?,
        );
        let vip = Arc::new(
            Vip::install(
                slot.prefix(),
                slot.vip(),
                Ipv4Addr::new(198, 18, n, 0),
                match &opts.sidecar {
                    Some(_) => sidecar::PROXY_PORT,
                    None => 80,
                },
            )
            .await?,
        );
        let table = PodTable::default();
        let (endpoints, endpoints_task) =
            endpoints::spawn(table.clone(), vip.clone(), opts.service_lag);
        let probe = opts.probe.clone().unwrap_or_else(|| match &opts.sidecar {
            Some(_) => ProbeOptions::sidecar_readyz(),
            None => ProbeOptions {
                probe: Probe::Http {
                    port: 80,
                    path: "/".into(),
                },
                ..ProbeOptions::sidecar_readyz()
            },
        });
        let node = Node {
            prefix: slot.prefix(),
            slot: n,
            bridge: bridge.clone(),
            dir: dir.path().to_path_buf(),
            emulator: emulator.clone(),
            binary,
            table: table.clone(),
        };
        let deployment = Deployment::start(
            node,
            DeploymentOptions {
                name: opts.deployment.clone(),
                replicas: opts.replicas,
                replace_delay: opts.replace_delay,
                sidecar: opts.sidecar.clone(),
                probe,
            },
        )
        .await;
        let deployment = match deployment {
            Ok(d) => d,
            Err(e) => {
                endpoints_task.abort();
                return Err(e);
            }
        };
        Ok(Cluster {
            slot: None,
            dir: Some(dir),
            emulator,
            bridge,
            vip,
            table,
            endpoints,
            endpoints_task,
            deployment,
            opts,
        })
    }

    /// The slot number of this run.
    pub fn slot(&self) -> u8 {
        self.slot.as_ref().map_or(0, Slot::number)
    }

    /// The Service address: `198.19.N.1:80`.
    pub fn vip(&self) -> SocketAddr {
        SocketAddr::V4(self.vip.addr())
    }

    /// The bridge (the pods' gateway, where the emulator listens).
    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// The API server.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// The deployment controller.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// Pod statuses.
    pub fn pods(&self) -> &PodTable {
        &self.table
    }

    /// The options the cluster was built with.
    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// The run directory (pods' configs and logs).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// The endpoints the VIP sends to now.
    pub fn endpoints(&self) -> Endpoints {
        self.endpoints.borrow().clone()
    }

    /// Waits until the VIP's endpoints satisfy `pred`.
    pub async fn wait_endpoints(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Endpoints) -> bool,
    ) -> Result<Endpoints, HarnessError> {
        let mut rx = self.endpoints.clone();
        match tokio::time::timeout(within, rx.wait_for(|e| pred(e))).await {
            Ok(Ok(e)) => Ok(e.clone()),
            _ => Err(HarnessError::timeout(
                format!("endpoints: {what} (now {:?})", self.endpoints().pods),
                within,
            )),
        }
    }

    /// Waits until all `replicas` pods are in the Service.
    pub async fn wait_all_serving(&self, within: Duration) -> Result<Endpoints, HarnessError> {
        let n = self.opts.replicas;
        self.wait_endpoints(&format!("all {n} pods"), within, |e| e.pods.len() == n)
            .await
    }

    /// `GET /status` of a pod's sidecar, as JSON.
    pub async fn sidecar_status(&self, pod: &str) -> Option<Value> {
        admin::status(self.deployment.pod(pod).ok()?.admin_addr()).await
    }

    /// Each current pod's role as its sidecar reports it (`leader`, `follower`,
    /// `candidate`; `down` when it does not answer).
    pub async fn roles(&self) -> BTreeMap<String, String> {
        let mut roles = BTreeMap::new();
        for (name, addr) in self.admin_addrs() {
            roles.insert(name, admin::role(addr).await);
        }
        roles
    }

    /// The current pods' admin addresses.
    pub fn admin_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.deployment
            .pods()
            .into_iter()
            .map(|p| (p.name, SocketAddr::from((p.ip, sidecar::ADMIN_PORT))))
            .collect()
    }

    /// The acting leader, once the sidecars agree on it (see [`admin::wait_leader`]).
    /// `not`: wait for a leader other than this one.
    pub async fn wait_leader(
        &self,
        not: Option<&str>,
        within: Duration,
    ) -> Result<String, HarnessError> {
        admin::wait_leader(|| self.admin_addrs(), not, within).await
    }

    /// The `n` actives of an `--actives n` election, once the sidecars agree on them; none
    /// of them in `not` (see [`admin::wait_actives`]).
    pub async fn wait_actives(
        &self,
        n: usize,
        not: &[&str],
        within: Duration,
    ) -> Result<Vec<String>, HarnessError> {
        admin::wait_actives(|| self.admin_addrs(), n, not, within).await
    }

    /// The Lease as the API server holds it: (holder, epoch).
    pub fn lease(&self) -> Option<(String, u64)> {
        let election = self.opts.sidecar.as_ref()?.election.clone();
        let lease = self.emulator.store().get("leases", "default", &election)?;
        let spec = &lease["spec"];
        Some((
            spec["holderIdentity"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            spec["leaseTransitions"].as_u64().unwrap_or(0),
        ))
    }

    /// Cuts pod `pod` off from the API server (its requests go unanswered, its watches go
    /// silent); the pods still reach each other.
    pub fn partition(&self, pod: &str) {
        self.emulator
            .faults()
            .partition(FaultScope::Client(pod.to_string()));
    }

    /// Ends the partition of `pod`.
    pub fn heal(&self, pod: &str) {
        self.emulator
            .faults()
            .heal(FaultScope::Client(pod.to_string()));
    }

    /// Starts or ends an API server outage (every API connection closed unanswered).
    pub fn outage(&self, on: bool) {
        self.emulator.faults().outage(on);
    }

    /// Runs the overlap checker over the access logs of every pod ever made.
    pub fn overlap(&self) -> Result<OverlapReport, HarnessError> {
        let pods = self.deployment.history();
        overlap::check_logs(
            pods.iter()
                .map(|p| (p.name.as_str(), p.access_log.as_path())),
        )
    }

    /// Stops everything and removes it: pods, VIP rules, bridge, API server. Keeps the run
    /// directory when `UNDERSTUDY_KEEP_RUN=1`.
    pub async fn shutdown(mut self) -> Result<(), HarnessError> {
        self.endpoints_task.abort();
        self.deployment.shutdown().await;
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
        self.endpoints_task.abort();
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
