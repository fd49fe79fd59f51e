//! Pod statuses, as the API server would hold them: written by the deployment controller
//! (phase) and the kubelet (readiness), read by the endpoints controller and by tests.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use tokio::sync::watch;

/// A pod's lifecycle phase, as far as the Service cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Started; containers running.
    Running,
    /// Being deleted: SIGTERM sent. Endpoints drop it at once, whatever its probe says.
    Terminating,
    /// A container exited without being asked to (crash, SIGKILL).
    Failed,
}

/// One pod's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodStatus {
    /// The pod's name (also its sidecar's identity).
    pub name: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// Lifecycle phase.
    pub phase: Phase,
    /// The readiness probe's verdict.
    pub ready: bool,
    /// When `ready` last changed.
    pub ready_since: Instant,
}

impl PodStatus {
    /// Whether the Service sends it traffic: Ready and neither terminating nor failed.
    pub fn serving(&self) -> bool {
        self.ready && self.phase == Phase::Running
    }
}

/// The table of pod statuses. Clones share it; subscribers see every change.
#[derive(Clone)]
pub struct PodTable {
    tx: watch::Sender<BTreeMap<String, PodStatus>>,
}

impl Default for PodTable {
    fn default() -> Self {
        PodTable {
            tx: watch::channel(BTreeMap::new()).0,
        }
    }
}

impl PodTable {
    /// Adds a new, not yet Ready, running pod.
    pub fn add(&self, name: &str, ip: Ipv4Addr) {
        let status = PodStatus {
            name: name.to_string(),
            ip,
            phase: Phase::Running,
            ready: false,
            ready_since: Instant::now(),
        };
        self.tx.send_modify(|m| {
            m.insert(name.to_string(), status);
        });
    }

    /// Removes a deleted pod.
    pub fn remove(&self, name: &str) {
        self.tx.send_modify(|m| {
            m.remove(name);
        });
    }

    /// Sets the phase (no-op for unknown pods).
    pub fn set_phase(&self, name: &str, phase: Phase) {
        self.tx.send_if_modified(|m| match m.get_mut(name) {
            Some(s) if s.phase != phase => {
                s.phase = phase;
                true
            }
            _ => false,
        });
    }

    /// Sets readiness (no-op for unknown pods or no change).
    pub fn set_ready(&self, name: &str, ready: bool) {
        self.tx.send_if_modified(|m| match m.get_mut(name) {
            Some(s) if s.ready != ready => {
                s.ready = ready;
                s.ready_since = Instant::now();
                true
            }
            _ => false,
        });
    }

    /// A snapshot of every pod, by name.
    pub fn snapshot(&self) -> BTreeMap<String, PodStatus> {
        self.tx.borrow().clone()
    }

    /// One pod's status.
    pub fn get(&self, name: &str) -> Option<PodStatus> {
        self.tx.borrow().get(name).cloned()
    }

    /// Wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<String, PodStatus>> {
        self.tx.subscribe()
    }
}
