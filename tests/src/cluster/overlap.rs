//! The overlap checker: from the apps' access logs, with the fencing token the sidecar adds
//! to every request it hands its app, no two pods served as leader at the same instant.
//!
//! A *tenure* is what one pod served under one epoch: from the first to the last request
//! its app received with that token. The checks:
//! - a pod's app only gets requests fenced with that pod's own identity;
//! - tenures of different pods do not overlap in time;
//! - a later tenure of another pod carries a higher epoch (epochs only rise).
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
    /// The pauses between successive tenures (seconds; negative would be an overlap).
    pub fn handover_gaps(&self) -> Vec<f64> {
        self.tenures
            .windows(2)
            .map(|w| w[1].first - w[0].last)
            .collect()
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
                .find(|x| &x.pod == pod && x.epoch == epoch)
            {
                Some(x) => {
                    x.first = x.first.min(t);
                    x.last = x.last.max(t);
                    x.requests += 1;
                }
                None => report.tenures.push(Tenure {
                    pod: pod.clone(),
                    epoch,
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
        for b in tenures.iter().skip(i + 1).filter(|b| b.pod != a.pod) {
            // b starts at or after a (sorted).
            if b.first < a.last - TOLERANCE {
                report.violations.push(format!(
                    "overlap: {} (epoch {}) served {:.3}..{:.3} while {} (epoch {}) served from {:.3}",
                    a.pod, a.epoch, a.first, a.last, b.pod, b.epoch, b.first
                ));
            }
            if b.epoch <= a.epoch {
                report.violations.push(format!(
                    "epoch did not rise: {} served epoch {} after {} served epoch {}",
                    b.pod, b.epoch, a.pod, a.epoch
                ));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests;
