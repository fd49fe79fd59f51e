//! The Lease record: what the election reads from and writes to a
//! `coordination.k8s.io/v1` Lease, in the layout client-go uses.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

use crate::failsafe::{FailsafeRecord, MEMBER_EXPIRY_ANNOTATION, MEMBERS_ANNOTATION};

/// Annotation on the Lease carrying the holder's advertised proxy address.
pub const ADDRESS_ANNOTATION: &str = "understudy.io/address";

/// Annotation on the Lease carrying the holder's peer (mTLS) address, when it serves one
/// (`--peer-listen`): where a standby with mTLS on sends forwarded requests.
pub const PEER_ADDRESS_ANNOTATION: &str = "understudy.io/peer-address";

/// The election-relevant fields of a Lease (client-go's `LeaderElectionRecord`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseRecord {
    /// `spec.holderIdentity`; empty when nobody holds it (released).
    pub holder: String,
    /// `spec.leaseDurationSeconds`.
    pub lease_duration_secs: i32,
    /// `spec.acquireTime`.
    pub acquire_time: Option<Timestamp>,
    /// `spec.renewTime`. Only a change signal: never compared with a local clock.
    pub renew_time: Option<Timestamp>,
    /// `spec.leaseTransitions`: the fencing epoch.
    pub transitions: i32,
    /// The holder's advertised address (annotation [`ADDRESS_ANNOTATION`]).
    pub address: Option<String>,
    /// The holder's advertised peer (mTLS) address (annotation [`PEER_ADDRESS_ANNOTATION`]).
    pub peer_address: Option<String>,
    /// The holder's member set and member expiry, when it runs the failsafe (annotations
    /// [`MEMBERS_ANNOTATION`] and [`MEMBER_EXPIRY_ANNOTATION`]).
    pub failsafe: Option<FailsafeRecord>,
}

impl LeaseRecord {
    /// Reads the record out of a Lease. Missing fields read as client-go reads them
    /// (empty holder, zero duration and transitions).
    pub fn from_lease(lease: &Lease) -> LeaseRecord {
        let spec = lease.spec.clone().unwrap_or_default();
        LeaseRecord {
            holder: spec.holder_identity.unwrap_or_default(),
            lease_duration_secs: spec.lease_duration_seconds.unwrap_or(0),
            acquire_time: spec.acquire_time.map(|t| t.0),
            renew_time: spec.renew_time.map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
            address: annotation(lease, ADDRESS_ANNOTATION),
            peer_address: annotation(lease, PEER_ADDRESS_ANNOTATION),
            failsafe: FailsafeRecord::from_annotations(
                annotation(lease, MEMBERS_ANNOTATION).as_deref(),
                annotation(lease, MEMBER_EXPIRY_ANNOTATION).as_deref(),
            ),
        }
    }
}

/// A non-empty annotation of `lease`.
pub(crate) fn annotation(lease: &Lease, name: &str) -> Option<String> {
    lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(name))
        .filter(|a| !a.is_empty())
        .cloned()
}

/// A Lease as observed at one resourceVersion.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The election fields.
    pub record: LeaseRecord,
    /// `metadata.resourceVersion`; the precondition for the next write.
    pub resource_version: String,
    /// The whole object, so that a replace keeps fields the election does not own
    /// (labels, other annotations, `spec.strategy`, ...). `None` in simulations.
    pub object: Option<Arc<Lease>>,
}

/// Two observations are the same when their version and record are: the whole object is
/// only carried along for the next write.
impl PartialEq for Observed {
    fn eq(&self, other: &Self) -> bool {
        self.resource_version == other.resource_version && self.record == other.record
    }
}

impl Eq for Observed {}

impl std::hash::Hash for Observed {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.resource_version.hash(state);
        self.record.hash(state);
    }
}

impl Observed {
    /// Observation of a Lease object as returned by the API. `None` if it has no
    /// resourceVersion (the API server always sets one).
    pub fn from_lease(lease: Lease) -> Option<Observed> {
        let resource_version = lease.metadata.resource_version.clone()?;
        Some(Observed {
            record: LeaseRecord::from_lease(&lease),
            resource_version,
            object: Some(Arc::new(lease)),
        })
    }
}

/// A timestamp in a record to be written: filled in with the wall clock when sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stamp {
    /// The wall-clock time of sending.
    Now,
    /// Keep this value (e.g. `acquireTime` on a renew).
    Keep(Option<Timestamp>),
}

impl Stamp {
    /// The value to write, given the wall-clock time of sending.
    pub fn resolve(self, now: Timestamp) -> Option<Timestamp> {
        match self {
            Stamp::Now => Some(now),
            Stamp::Keep(t) => t,
        }
    }
}

/// The record a write should produce.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Draft {
    /// New `spec.holderIdentity` ("" to release).
    pub holder: String,
    /// New `spec.leaseDurationSeconds`.
    pub lease_duration_secs: i32,
    /// New `spec.acquireTime`.
    pub acquire_time: Stamp,
    /// New `spec.leaseTransitions`.
    pub transitions: i32,
    /// New address annotation (`None` removes it).
    pub address: Option<String>,
    /// New peer address annotation (`None` removes it).
    pub peer_address: Option<String>,
    /// New failsafe annotations (`None` removes them).
    pub failsafe: Option<FailsafeRecord>,
}

impl Draft {
    /// The record a store keeps for this draft, without timestamps (for simulations and
    /// tests, where no wall clock is involved).
    pub fn to_record(&self) -> LeaseRecord {
        LeaseRecord {
            holder: self.holder.clone(),
            lease_duration_secs: self.lease_duration_secs,
            acquire_time: None,
            renew_time: None,
            transitions: self.transitions,
            address: self.address.clone(),
            peer_address: self.peer_address.clone(),
            failsafe: self.failsafe.clone(),
        }
    }

    /// Builds the Lease to send: `base` (the observed object, if any) with the election fields
    /// replaced. `renewTime` is always `now`. The resourceVersion precondition is set by the
    /// caller for a replace.
    pub fn to_lease(&self, name: &str, base: Option<&Lease>, now: Timestamp) -> Lease {
        let mut lease = base.cloned().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.holder.clone());
        spec.lease_duration_seconds = Some(self.lease_duration_secs);
        spec.acquire_time = self.acquire_time.resolve(now).map(MicroTime);
        spec.renew_time = Some(MicroTime(now));
        spec.lease_transitions = Some(self.transitions);
        let annotations = lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        let (members, expiry) = match &self.failsafe {
            Some(f) => {
                let (m, e) = f.to_annotations();
                (Some(m), Some(e))
            }
            None => (None, None),
        };
        for (name, value) in [
            (ADDRESS_ANNOTATION, &self.address),
            (PEER_ADDRESS_ANNOTATION, &self.peer_address),
            (MEMBERS_ANNOTATION, &members),
            (MEMBER_EXPIRY_ANNOTATION, &expiry),
        ] {
            match value {
                Some(v) => {
                    annotations.insert(name.to_string(), v.clone());
                }
                None => {
                    annotations.remove(name);
                }
            }
        }
        if annotations.is_empty() {
            lease.metadata.annotations = None;
        }
        // The API server owns these; sending stale copies would only confuse a diff.
        lease.metadata.managed_fields = None;
        lease
    }
}

/// Orders two resourceVersions when both are decimal (as etcd's are): `Some(true)` when `a` is
/// newer than `b`. `None` when they cannot be compared; callers then take the later arrival.
pub fn rv_newer(a: &str, b: &str) -> Option<bool> {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => Some(a > b),
        _ => None,
    }
}

#[cfg(test)]
impl Observed {
    /// For unit tests: `holder` (advertising `holder:8080`) at version `rv`, epoch
    /// `transitions`, with a 10s lease and no object.
    pub(crate) fn sample(rv: u64, holder: &str, transitions: i32) -> Observed {
        Observed {
            record: LeaseRecord {
                holder: holder.into(),
                lease_duration_secs: 10,
                acquire_time: None,
                renew_time: None,
                transitions,
                address: (!holder.is_empty()).then(|| format!("{holder}:8080")),
                peer_address: None,
                failsafe: None,
            },
            resource_version: rv.to_string(),
            object: None,
        }
    }
}

#[cfg(test)]
mod tests;
