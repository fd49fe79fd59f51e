//! A Kubernetes-shaped cluster on one machine, made of real parts, for scenario tests and
//! the demo.
//!
//! | part | what it is here |
//! |---|---|
//! | pod | a network namespace with its own address in `198.18.N.0/24` ([`net`]), running nginx ([`app`]) and the `understudy` sidecar ([`pod`]) with its own kubeconfig |
//! | API server | the [emulator](crate::emulator), listening on the bridge address, one client identity per pod so a pod can be partitioned alone |
//! | kubelet | readiness probes: HTTP on the pod address, or a command inside the pod ([`kubelet`]) |
//! | Service | a ClusterIP VIP `198.19.N.1:80` as kube-proxy makes it: iptables DNAT with random-probability rules over the Ready pods ([`vip`]), rewritten a configurable lag after a change ([`endpoints`]) |
//! | Deployment | replicas, crash replacement, rolling update ([`deployment`]) |
//! | clients | a bounded load generator recording every request ([`load`]) |
//! | checks | the overlap checker over the apps' access logs ([`overlap`]) |
//!
//! Everything runs for real: processes and signals, namespaces and veths, iptables. Traffic
//! only goes to the run's own addresses. Runs are isolated by [`Slot`]s and cleaned up
//! whatever happens ([`cleanup`]). Needs root and the Debian packages `iproute2`,
//! `iptables`, `nginx-light`, `procps`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), understudy_tests::cluster::HarnessError> {
//! use understudy_tests::cluster::{Cluster, ClusterOptions, Load, LoadOptions};
//! let cluster = Cluster::start(ClusterOptions::default()).await?;
//! cluster.wait_all_serving(std::time::Duration::from_secs(15)).await?;
//! let load = Load::start(LoadOptions::new(cluster.vip()));
//! load.pass(100, std::time::Duration::from_secs(10)).await;
//! println!("{}", load.finish().await.summary("example"));
//! cluster.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod app;
pub mod cleanup;
mod command;
pub mod deployment;
pub mod endpoints;
mod error;
mod harness;
pub mod http;
pub mod kubelet;
pub mod load;
pub mod net;
pub mod overlap;
pub mod pod;
pub mod process;
pub mod sidecar;
pub mod slot;
pub mod status;
pub mod vip;

pub use deployment::{Deployment, DeploymentOptions, PodRecord};
pub use endpoints::Endpoints;
pub use error::HarnessError;
pub use harness::{Cluster, ClusterOptions};
pub use kubelet::{Probe, ProbeOptions};
pub use load::{Load, LoadOptions, LoadReport, Outcome, Pacing, Sample};
pub use net::{Bridge, PodNet};
pub use overlap::{OverlapReport, Tenure};
pub use process::Signal;
pub use sidecar::{ReadyWhen, SidecarOptions};
pub use slot::Slot;
pub use status::{Phase, PodStatus, PodTable};
pub use vip::Vip;

/// Fails with [`HarnessError::NotRoot`] unless the effective user is root.
pub fn require_root() -> Result<(), HarnessError> {
    // /proc/self/status: "Uid:\treal\teffective\tsaved\tfs".
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| HarnessError::io("read", "/proc/self/status", e))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if euid == Some("0") {
        Ok(())
    } else {
        Err(HarnessError::NotRoot)
    }
}
