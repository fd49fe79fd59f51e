//! The endpoints controller and kube-proxy in one loop: every change of the pod table is
//! written to the VIP's rules `lag` later, as a real cluster's endpoint propagation delay.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{PodTable, Vip};

/// What the VIP currently sends traffic to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// The pods, by name, with their addresses.
    pub pods: Vec<(String, Ipv4Addr)>,
    /// How many times the rules were rewritten.
    pub generation: u64,
}

/// Starts the controller. The returned receiver always holds the endpoints in force.
pub fn spawn(
    table: PodTable,
    vip: Arc<Vip>,
    lag: Duration,
) -> (watch::Receiver<Endpoints>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Endpoints::default());
    let task = tokio::spawn(async move {
        let mut pods = table.subscribe();
        let mut queue: VecDeque<(Instant, Vec<(String, Ipv4Addr)>)> = VecDeque::new();
        let mut applied: Option<Vec<(String, Ipv4Addr)>> = None;
        loop {
            let next = queue.front().map(|(at, _)| *at);
            tokio::select! {
                changed = pods.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let serving: Vec<(String, Ipv4Addr)> = pods
                        .borrow_and_update()
                        .values()
                        .filter(|s| s.serving())
                        .map(|s| (s.name.clone(), s.ip))
                        .collect();
                    queue.push_back((Instant::now() + lag, serving));
                }
                _ = sleep_until(next) => {
                    let Some((_, serving)) = queue.pop_front() else { continue };
                    if applied.as_ref() == Some(&serving) {
                        continue;
                    }
                    let ips: Vec<Ipv4Addr> = serving.iter().map(|(_, ip)| *ip).collect();
                    match vip.apply(&ips).await {
                        Ok(()) => {
                            tx.send_modify(|e| {
                                e.pods = serving.clone();
                                e.generation += 1;
                            });
                            applied = Some(serving);
                        }
                        // A failed sync is retried with the next change, as kube-proxy does;
                        // a test sees it as endpoints that do not follow.
                        Err(e) => tracing::warn!(error = %e, "endpoints sync failed"),
                    }
                }
            }
        }
    });
    (rx, task)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
