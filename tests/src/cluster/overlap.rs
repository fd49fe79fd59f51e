//! The overlap checker: from the apps' access logs, with the fencing token the sidecar adds
//! to every request it hands its app, no two pods served as leader at the same instant.
//!
//! A *tenure* is what one pod served under one epoch of one Lease (slot): from the first to
//! the last request its app received with that token. The checks:
//! - a pod's app only gets requests fenced with that pod's own identity;
//! - tenures of different pods in the same slot do not overlap in time;
//! - a later tenure of another pod in the same slot carries a higher epoch (epochs only
//!   rise);
//! - one pod's tenures in different slots do not overlap (a pod holds at most one slot).
//!
//! With one slot (`--actives 1`) every tenure is in the same slot, so the rules are "never
//! two leaders at once". Requests logged without a Lease name count as one slot.
//!
//! All pods log on one host clock. `$msec` and `$request_time` have millisecond
//! resolution, so times are compared with [`TOLERANCE`].

use std::path::Path;

use super::HarnessError;
use super::app::{AccessEntry, read_access_log};

/// Slack for two millisecond-resolution log fields (seconds).
pub const TOLERANCE: f64 = 0.002;

/// What one pod served under one epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct Tenure {
    /// The serving pod.
    pub pod: String,
    /// The epoch (`leaseTransitions`) it served with.
    pub epoch: u64,
    /// The Lease (slot) the epoch counts in, if the sidecar named it.
    pub lease: Option<String>,
    /// When its app received the first request of this tenure (Unix seconds).
    pub first: f64,
    /// When its app received the last one.
    pub last: f64,
    /// How many requests.
    pub requests: usize,
}

/// The checker's findings.
#[derive(Clone, Debug, Default)]
pub struct OverlapReport {
    /// Tenures in order of their first request.
    pub tenures: Vec<Tenure>,
    /// Requests an app received without the fencing headers (not through a leading sidecar).
    pub unfenced: usize,
    /// Every broken rule, explained.
    pub violations: Vec<String>,
}

impl OverlapReport {
    /// The pauses between successive tenures of the same slot (seconds; negative would be
    /// an overlap).
    pub fn handover_gaps(&self) -> Vec<f64> {
        let mut gaps = Vec::new();
        for (i, a) in self.tenures.iter().enumerate() {
            if let Some(b) = self.tenures[i + 1..].iter().find(|b| b.lease == a.lease) {
                gaps.push(b.first - a.last);
            }
        }
        gaps
    }
}

/// Reads every pod's access log and checks them together. `logs`: (pod name, log path);
/// a log that was never written counts as empty.
pub fn check_logs<'a>(
    logs: impl IntoIterator<Item = (&'a str, &'a Path)>,
) -> Result<OverlapReport, HarnessError> {
    let mut all = Vec::new();
    for (pod, path) in logs {
        let entries = if path.exists() {
            read_access_log(path)?
        } else {
            Vec::new()
        };
        all.push((pod.to_string(), entries));
    }
    Ok(check(&all))
}

/// Checks parsed logs: (pod name, its app's entries).
pub fn check(logs: &[(String, Vec<AccessEntry>)]) -> OverlapReport {
    let mut report = OverlapReport::default();
    for (pod, entries) in logs {
        for e in entries {
            let (Some(leader), Some(epoch)) = (&e.leader, e.epoch) else {
                report.unfenced += 1;
                continue;
            };
            if leader != pod {
                report.violations.push(format!(
                    "{pod}'s app received a request fenced for {leader} (epoch {epoch}) at {:.3}",
                    e.received()
                ));
                continue;
            }
            let t = e.received();
            match report
                .tenures
                .iter_mut()
                .find(|x| &x.pod == pod && x.epoch == epoch && x.lease == e.lease)
            {
                Some(x) => {
                    x.first = x.first.min(t);
                    x.last = x.last.max(t);
                    x.requests += 1;
                }
                None => report.tenures.push(Tenure {
                    pod: pod.clone(),
                    epoch,
                    lease: e.lease.clone(),
                    first: t,
                    last: t,
                    requests: 1,
                }),
            }
        }
    }
    report.tenures.sort_by(|a, b| a.first.total_cmp(&b.first));
    let tenures = report.tenures.clone();
    for (i, a) in tenures.iter().enumerate() {
        for b in tenures.iter().skip(i + 1) {
            // b starts at or after a (sorted).
            let overlaps = b.first < a.last - TOLERANCE;
            if b.pod == a.pod {
                if b.lease != a.lease && overlaps {
                    report.violations.push(format!(
                        "two slots at once: {} served {} (epoch {}) {:.3}..{:.3} and {} (epoch {}) from {:.3}",
                        a.pod, slot(a), a.epoch, a.first, a.last, slot(b), b.epoch, b.first
                    ));
                }
                continue;
            }
            if b.lease != a.lease {
                continue;
            }
            if overlaps {
                report.violations.push(format!(
                    "overlap in {}: {} (epoch {}) served {:.3}..{:.3} while {} (epoch {}) served from {:.3}",
                    slot(a), a.pod, a.epoch, a.first, a.last, b.pod, b.epoch, b.first
                ));
            }
            if b.epoch <= a.epoch {
                report.violations.push(format!(
                    "epoch did not rise in {}: {} served epoch {} after {} served epoch {}",
                    slot(a),
                    b.pod,
                    b.epoch,
                    a.pod,
                    a.epoch
                ));
            }
        }
    }
    report
}

fn slot(t: &Tenure) -> &str {
    t.lease.as_deref().unwrap_or("the Lease")
}

#[cfg(test)]
mod tests;
