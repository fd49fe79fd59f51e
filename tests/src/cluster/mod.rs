//! The local cluster: a real Kubernetes control plane on one machine, with understudy's
//! test kubelet running the pods, for scenario tests, end-to-end tests and the demo.
//!
//! | part | what it is here |
//! |---|---|
//! | control plane | etcd, kube-apiserver (RBAC, TLS), kube-controller-manager, kube-scheduler and kube-proxy (iptables), built from pinned Go modules by `tests/k8s/build` ([`control_plane`]) |
//! | node | one network namespace holding the bridge, the control plane and kube-proxy's rules; Node objects for scheduling ([`node`]) |
//! | kubelet | understudy's stand-in: pods as network namespaces, containers as processes, probes, hooks, volumes, status ([`kubelet`]) |
//! | apps | `deploy/examples/…` applied with `kubectl apply -k` ([`example`]); nginx from Debian's `nginx-light` for the nginx image ([`app`]), the `understudy` binary for its image |
//! | clients | a bounded load generator recording every request ([`load`]) |
//! | checks | the overlap checker over the apps' access logs ([`overlap`]), or over what apps without fencing tokens logged, fenced by the sidecars' own account of their leadership ([`leadership`]) |
//!
//! Everything runs for real: processes and signals, namespaces and veths, iptables. Traffic
//! only goes to the run's own addresses. Runs are isolated by [`Slot`]s and cleaned up
//! whatever happens ([`cleanup`]). Needs root and the Debian packages `iproute2`,
//! `iptables`, `nginx-light`, `procps`, `util-linux`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), understudy_tests::cluster::HarnessError> {
//! use std::time::Duration;
//! use understudy_tests::cluster::{Cluster, ClusterOptions, Example, ExampleOptions, Load, LoadOptions};
//! let cluster = Cluster::start(ClusterOptions::default()).await?;
//! let app = Example::apply(&cluster, ExampleOptions::test("nginx-ha", 3)).await?;
//! app.wait_serving(3, Duration::from_secs(60)).await?;
//! let load = Load::start(LoadOptions::new(app.service_addr()));
//! load.pass(100, Duration::from_secs(10)).await;
//! println!("{}", load.finish().await.summary("example"));
//! cluster.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod app;
pub mod cleanup;
pub(crate) mod command;
pub mod control_plane;
mod error;
pub mod example;
pub mod fault;
mod harness;
pub mod http;
pub mod kubectl;
pub mod kubelet;
pub mod leadership;
pub mod load;
pub mod loopback;
pub mod node;
pub mod overlap;
pub mod pki;
pub mod process;
pub mod sidecar;
pub mod slot;
pub mod test_app;
pub mod wait;

pub use error::HarnessError;
pub use example::{Example, ExampleOptions};
pub use harness::{Cluster, ClusterOptions};
pub use kubectl::Kubectl;
pub use load::{Load, LoadOptions, LoadReport, Outcome, Pacing, Sample};
pub use node::{NodeNet, PodNet};
pub use overlap::{OverlapReport, Tenure};
pub use process::Signal;
pub use slot::Slot;

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
