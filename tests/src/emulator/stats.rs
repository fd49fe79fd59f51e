//! Request counts per (client, audit verb, resource, object name).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

/// (client, verb, resource, name): the name is `""` for a collection or a non-resource path.
type Key = (String, String, String, String);

/// A snapshot of request counts, taken by `Emulator::stats`.
///
/// Requests are counted when they arrive, before faults apply, so a blackholed or
/// error-injected request counts too. Verbs are the audit verbs (`get`, `list`, `watch`,
/// `create`, `update`, `patch`, `delete`); resources are plural names (`leases`, `pods`,
/// `events`), and `""` for non-resource paths such as discovery; names are the object's
/// (the audit log's `objectRef.name`), `""` for a collection (`list`, a `watch` of many,
/// `create`) or a non-resource path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    counts: BTreeMap<Key, u64>,
}

// === impl Stats ===

impl Stats {
    /// Requests by `client` with `verb` on `resource`, whatever the object.
    pub fn count(&self, client: &str, verb: &str, resource: &str) -> u64 {
        self.entries()
            .filter(|&(c, v, r, _, _)| (c, v, r) == (client, verb, resource))
            .map(|(.., n)| n)
            .sum()
    }

    /// Requests by `client` with `verb` on the object of `resource` named `name` (`""`: on
    /// the collection).
    pub fn count_named(&self, client: &str, verb: &str, resource: &str, name: &str) -> u64 {
        let key = (
            client.to_string(),
            verb.to_string(),
            resource.to_string(),
            name.to_string(),
        );
        self.counts.get(&key).copied().unwrap_or(0)
    }

    /// All requests by `client`.
    pub fn total(&self, client: &str) -> u64 {
        self.entries()
            .filter(|&(c, ..)| c == client)
            .map(|(.., n)| n)
            .sum()
    }

    /// Every (client, verb, resource, name, count), sorted.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, &str, &str, u64)> {
        self.counts
            .iter()
            .map(|((c, v, r, o), n)| (c.as_str(), v.as_str(), r.as_str(), o.as_str(), *n))
    }

    /// The JSON the admin endpoint serves: an entry names its object only when it has one.
    pub(crate) fn to_json(&self) -> Value {
        let counts: Vec<Value> = self
            .entries()
            .map(|(c, v, r, o, n)| {
                let mut entry = json!({ "client": c, "verb": v, "resource": r, "count": n });
                if !o.is_empty() {
                    entry["name"] = json!(o);
                }
                entry
            })
            .collect();
        let mut totals = BTreeMap::new();
        for (c, .., n) in self.entries() {
            *totals.entry(c).or_insert(0u64) += n;
        }
        json!({ "counts": counts, "totals": totals })
    }
}

/// The live counters behind [`Stats`] snapshots.
#[derive(Default)]
pub(crate) struct Counter(Mutex<BTreeMap<Key, u64>>);

impl Counter {
    /// Count one request (`name`: the object's, `""` for none).
    pub fn record(&self, client: &str, verb: &str, resource: &str, name: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (
            client.to_string(),
            verb.to_string(),
            resource.to_string(),
            name.to_string(),
        );
        *m.entry(key).or_insert(0) += 1;
    }

    /// A copy of the counts now.
    pub fn snapshot(&self) -> Stats {
        Stats {
            counts: self.0.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}
