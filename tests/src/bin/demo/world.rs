//! The cluster the demo runs on: the real one (network namespaces, iptables VIP, nginx;
//! needs root) or the loopback fallback. The story does not care which.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use understudy_tests::cluster::{
    Cluster, ClusterOptions, HarnessError, OverlapReport, PodTable, SidecarOptions, admin, sidecar,
};

use super::loopback::Loopback;

/// One of the two worlds.
pub enum World {
    /// Pods in network namespaces behind an iptables VIP (boxed: the larger one).
    Netns(Box<Cluster>),
    /// Pods on 127.0.0.x behind a userspace proxy.
    Loopback(Loopback),
}

impl World {
    /// Starts three pods with `sidecar` in the world this user can have.
    pub async fn start(loopback: bool, sidecar: SidecarOptions) -> Result<World, HarnessError> {
        if loopback {
            let binary = sidecar::binary(false)?;
            return Ok(World::Loopback(Loopback::start(binary, sidecar, 3).await?));
        }
        let cluster = Cluster::start(ClusterOptions {
            sidecar: Some(sidecar.clone()),
            // run-demo builds the sidecar first.
            build_sidecar: false,
            ..ClusterOptions::default()
        })
        .await;
        match cluster {
            Ok(c) => Ok(World::Netns(Box::new(c))),
            // Root, but nginx or iptables are not installed: the story still runs.
            Err(e @ HarnessError::Missing { .. }) => {
                eprintln!("{e}; using the loopback fallback");
                let binary = sidecar::binary(false)?;
                Ok(World::Loopback(Loopback::start(binary, sidecar, 3).await?))
            }
            Err(e) => Err(e),
        }
    }

    /// What it is made of, for the opening lines.
    pub fn describe(&self) -> Vec<String> {
        match self {
            World::Netns(c) => vec![
                format!(
                    "pods: network namespaces on bridge {} ({}/24), each nginx behind the understudy sidecar",
                    c.bridge().name,
                    c.bridge().ip
                ),
                format!(
                    "Service: ClusterIP {} = iptables DNAT over the Ready pods, as kube-proxy does it",
                    c.vip()
                ),
                format!("API server: the Kubernetes API emulator at {}", c.emulator().server_url()),
            ],
            World::Loopback(l) => vec![
                "not root: loopback fallback — pods are processes on 127.0.0.x, the app an in-process page server".into(),
                format!(
                    "Service: {} = a userspace proxy over the Ready pods (kube-proxy's old userspace mode)",
                    l.service()
                ),
                format!("API server: the Kubernetes API emulator at {}", l.api_url()),
            ],
        }
    }

    /// How many requests the client may have in flight. The loopback world holds three
    /// sockets per request in this process (client, userspace proxy both ways), and a user
    /// without root usually has 1024 file descriptors.
    pub fn max_in_flight(&self) -> usize {
        match self {
            World::Netns(_) => 2000,
            World::Loopback(_) => 250,
        }
    }

    /// Where clients send requests.
    pub fn target(&self) -> SocketAddr {
        match self {
            World::Netns(c) => c.vip(),
            World::Loopback(l) => l.service(),
        }
    }

    /// Pod statuses.
    pub fn table(&self) -> &PodTable {
        match self {
            World::Netns(c) => c.pods(),
            World::Loopback(l) => l.table(),
        }
    }

    fn admin_addrs(&self) -> Vec<(String, SocketAddr)> {
        match self {
            World::Netns(c) => c.admin_addrs(),
            World::Loopback(l) => l.admin_addrs(),
        }
    }

    /// Each pod's role, by its sidecar.
    pub async fn roles(&self) -> BTreeMap<String, String> {
        let mut roles = BTreeMap::new();
        for (name, addr) in self.admin_addrs() {
            roles.insert(name, admin::role(addr).await);
        }
        roles
    }

    /// Waits for an agreed acting leader (other than `not`).
    pub async fn wait_leader(
        &self,
        not: Option<&str>,
        within: Duration,
    ) -> Result<String, HarnessError> {
        admin::wait_leader(|| self.admin_addrs(), not, within).await
    }

    /// Waits until `n` pods are Ready and running.
    pub async fn wait_serving(&self, n: usize, within: Duration) -> Result<(), HarnessError> {
        let mut rx = self.table().subscribe();
        let ok = rx.wait_for(|m| m.values().filter(|s| s.serving()).count() == n);
        match tokio::time::timeout(within, ok).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(HarnessError::timeout(format!("{n} Ready pods"), within)),
        }
    }

    /// The Lease: (holder, epoch).
    pub fn lease(&self) -> Option<(String, u64)> {
        match self {
            World::Netns(c) => c.lease(),
            World::Loopback(l) => l.lease(),
        }
    }

    /// SIGKILL a pod.
    pub async fn crash(&self, pod: &str) -> Result<(), HarnessError> {
        match self {
            World::Netns(c) => c.deployment().crash(pod).await,
            World::Loopback(l) => l.crash(pod).await,
        }
    }

    /// Starts a new revision for a rolling update.
    pub fn new_revision(&self) {
        match self {
            World::Netns(c) => drop(c.deployment().new_revision()),
            World::Loopback(l) => l.new_revision(),
        }
    }

    /// Replaces one pod gracefully; the new pod's name.
    pub async fn replace(&self, pod: &str, within: Duration) -> Result<String, HarnessError> {
        match self {
            World::Netns(c) => c.deployment().replace(pod, within).await,
            World::Loopback(l) => l.replace(pod, within).await,
        }
    }

    /// Cuts a pod off from the API server.
    pub fn partition(&self, pod: &str) {
        match self {
            World::Netns(c) => c.partition(pod),
            World::Loopback(l) => l.partition(pod),
        }
    }

    /// Ends a partition.
    pub fn heal(&self, pod: &str) {
        match self {
            World::Netns(c) => c.heal(pod),
            World::Loopback(l) => l.heal(pod),
        }
    }

    /// The overlap check over everything the apps served.
    pub fn overlap(&self) -> Result<OverlapReport, HarnessError> {
        match self {
            World::Netns(c) => c.overlap(),
            World::Loopback(l) => Ok(l.overlap()),
        }
    }

    /// Stops and removes everything.
    pub async fn shutdown(self) -> Result<(), HarnessError> {
        match self {
            World::Netns(c) => c.shutdown().await,
            World::Loopback(l) => {
                l.shutdown().await;
                Ok(())
            }
        }
    }
}
