//! The Lease record: what the election reads from and writes to a
//! `coordination.k8s.io/v1` Lease, in the layout client-go uses, as plain data. Reading it
//! out of a Kubernetes object and writing it back is the driver's business
//! (`understudy_elector::record`): the core never sees the object itself.

use jiff::Timestamp;

use crate::failsafe::FailsafeRecord;

/// Annotation on the Lease carrying the holder's advertised proxy address.
pub const ADDRESS_ANNOTATION: &str = "understudy.io/address";

/// Annotation on the Lease carrying the holder's peer (mTLS) address, when it serves one
/// (`--peer-listen`): where a standby with mTLS on sends forwarded requests.
pub const PEER_ADDRESS_ANNOTATION: &str = "understudy.io/peer-address";

/// Annotation an operator puts on the Lease to ask its holder for a planned handover
/// (`kubectl annotate lease <election> understudy.io/handover-to=<pod>`; empty: any healthy
/// member). Every write by understudy removes it: the holder hands over or declines.
pub const HANDOVER_ANNOTATION: &str = "understudy.io/handover-to";

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
    /// [`MEMBERS_ANNOTATION`](crate::failsafe::MEMBERS_ANNOTATION) and
    /// [`MEMBER_EXPIRY_ANNOTATION`](crate::failsafe::MEMBER_EXPIRY_ANNOTATION)).
    pub failsafe: Option<FailsafeRecord>,
}

/// A Lease as observed at one resourceVersion: its election fields and its version, nothing
/// else. The driver keeps the whole object (labels, other annotations, `spec.strategy`, ...)
/// and finds it again by `resource_version` when it turns an [`Action::Replace`] into a write.
/// Two observations are the same when their version and record are.
///
/// [`Action::Replace`]: crate::core::Action::Replace
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Observed {
    /// The election fields.
    pub record: LeaseRecord,
    /// `metadata.resourceVersion`; the precondition for the next write.
    pub resource_version: String,
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
    /// `transitions`, with a 10s lease.
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
        }
    }
}

#[cfg(test)]
mod tests;
