//! Request counts per (client, audit verb, resource).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

type Key = (String, String, String);

/// A snapshot of request counts, taken by `Emulator::stats`.
///
/// Requests are counted when they arrive, before faults apply, so a blackholed or
/// error-injected request counts too. Verbs are the audit verbs (`get`, `list`, `watch`,
/// `create`, `update`, `patch`, `delete`); resources are plural names (`leases`, `pods`,
/// `events`), and `""` for non-resource paths such as discovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    counts: BTreeMap<Key, u64>,
}

// === impl Stats ===

impl Stats {
    /// Requests by `client` with `verb` on `resource`.
    pub fn count(&self, client: &str, verb: &str, resource: &str) -> u64 {
        let key = (client.to_string(), verb.to_string(), resource.to_string());
        self.counts.get(&key).copied().unwrap_or(0)
    }

    /// All requests by `client`.
    pub fn total(&self, client: &str) -> u64 {
        self.counts
            .iter()
            .filter(|((c, _, _), _)| c == client)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every (client, verb, resource, count), sorted.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, &str, u64)> {
        self.counts
            .iter()
            .map(|((c, v, r), n)| (c.as_str(), v.as_str(), r.as_str(), *n))
    }

    /// The JSON the admin endpoint serves.
    pub(crate) fn to_json(&self) -> Value {
        let counts: Vec<Value> = self
            .entries()
            .map(|(c, v, r, n)| json!({ "client": c, "verb": v, "resource": r, "count": n }))
            .collect();
        let mut totals = BTreeMap::new();
        for (c, _, _, n) in self.entries() {
            *totals.entry(c).or_insert(0u64) += n;
        }
        json!({ "counts": counts, "totals": totals })
    }
}

/// The live counters behind [`Stats`] snapshots.
#[derive(Default)]
pub(crate) struct Counter(Mutex<BTreeMap<Key, u64>>);

impl Counter {
    /// Count one request.
    pub fn record(&self, client: &str, verb: &str, resource: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((client.to_string(), verb.to_string(), resource.to_string()))
            .or_insert(0) += 1;
    }

    /// A copy of the counts now.
    pub fn snapshot(&self) -> Stats {
        Stats {
            counts: self.0.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}
