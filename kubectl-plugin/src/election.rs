//! An election as its Leases describe it at one instant: the slots (holder, epoch, times,
//! failsafe annotations) and the members (freshness, readiness, priority). Pure: built from
//! Lease objects and the current time, so parsing is tested without an API server.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;

use crate::names::{
    ACTIVES_ANNOTATION, ADDRESS_ANNOTATION, ELECTION_LABEL, HANDOVER_ANNOTATION,
    MEMBER_EXPIRY_ANNOTATION, MEMBERS_ANNOTATION, PRIORITY_ANNOTATION, READY_ANNOTATION,
};

/// One election: its active slots and its members.
#[derive(Clone, Debug, PartialEq)]
pub struct Election {
    /// The election's name (`--election` of its sidecars).
    pub name: String,
    /// Its slots in order (one per active).
    pub slots: Vec<Slot>,
    /// Its members, by pod name.
    pub members: Vec<Member>,
}

/// One slot: an election Lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    /// The slot's index (0 with one active).
    pub index: usize,
    /// The Lease's name.
    pub lease: String,
    /// Whether the Lease exists.
    pub exists: bool,
    /// `spec.holderIdentity`, `None` when empty or absent.
    pub holder: Option<String>,
    /// `spec.leaseTransitions`: the epoch.
    pub epoch: Option<i32>,
    /// `spec.acquireTime`.
    pub acquired: Option<Timestamp>,
    /// `spec.renewTime`.
    pub renewed: Option<Timestamp>,
    /// `spec.leaseDurationSeconds`.
    pub duration_seconds: Option<i32>,
    /// The holder's advertised address.
    pub address: Option<String>,
    /// The member set the holder last wrote (`understudy.io/members`), when its failsafe is on.
    pub failsafe_members: Option<Vec<String>>,
    /// `understudy.io/member-expiry-seconds`.
    pub member_expiry_seconds: Option<u64>,
    /// A pending switchover request (`understudy.io/handover-to`; empty: any standby).
    pub handover_to: Option<String>,
}

/// One member: a pod's member Lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// The pod (the Lease's holder, else the name after `-member-`).
    pub pod: String,
    /// The member Lease's name.
    pub lease: String,
    /// Its advertised address.
    pub address: Option<String>,
    /// `understudy.io/ready`, when the sidecar writes it.
    pub ready: Option<bool>,
    /// `understudy.io/priority`, when the sidecar writes it.
    pub priority: Option<i64>,
    /// `understudy.io/actives`, when the sidecar writes it.
    pub actives: Option<usize>,
    /// `spec.renewTime`.
    pub renewed: Option<Timestamp>,
    /// `spec.leaseDurationSeconds`.
    pub duration_seconds: Option<i32>,
}

/// How a member stands, as shown in the STATUS column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Renewed within its duration, and not `ready=false`.
    Live,
    /// Renewed within its duration, but reports `ready=false`: not eligible to lead.
    NotReady,
    /// Not renewed within its duration (or never): the pod is likely gone.
    Stale,
}

// === impl Election ===

impl Election {
    /// The number of active slots.
    pub fn actives(&self) -> usize {
        self.slots.len()
    }

    /// The slots `pod` holds.
    pub fn slots_held_by(&self, pod: &str) -> Vec<usize> {
        self.slots
            .iter()
            .filter(|s| s.holder.as_deref() == Some(pod))
            .map(|s| s.index)
            .collect()
    }

    /// The member `pod`, if it has a member Lease.
    pub fn member(&self, pod: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.pod == pod)
    }
}

/// The number of active slots the members announce (`understudy.io/actives`): the largest
/// any fresh member writes, else the largest any member writes.
pub fn announced_actives(members: &[Member], now: Timestamp) -> Option<usize> {
    let fresh = members
        .iter()
        .filter(|m| !m.stale(now))
        .filter_map(|m| m.actives)
        .max();
    fresh.or_else(|| members.iter().filter_map(|m| m.actives).max())
}

/// Groups member Leases by their [`ELECTION_LABEL`] value.
pub fn group_members(leases: &[Lease]) -> BTreeMap<String, Vec<Member>> {
    let mut out: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    for lease in leases {
        let Some(election) = lease
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ELECTION_LABEL))
        else {
            continue;
        };
        out.entry(election.clone())
            .or_default()
            .push(Member::from_lease(election, lease));
    }
    for members in out.values_mut() {
        members.sort_by(|a, b| a.pod.cmp(&b.pod));
    }
    out
}

// === impl Slot ===

impl Slot {
    /// Slot `index` read from Lease `name`, which may not exist.
    pub fn from_lease(index: usize, name: &str, lease: Option<&Lease>) -> Slot {
        let spec = lease.and_then(|l| l.spec.as_ref());
        let annotation = |key: &str| annotation(lease, key);
        Slot {
            index,
            lease: name.to_string(),
            exists: lease.is_some(),
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            epoch: spec.and_then(|s| s.lease_transitions),
            acquired: spec.and_then(|s| s.acquire_time.as_ref()).map(|t| t.0),
            renewed: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            duration_seconds: spec.and_then(|s| s.lease_duration_seconds),
            address: annotation(ADDRESS_ANNOTATION).filter(|a| !a.is_empty()),
            failsafe_members: annotation(MEMBERS_ANNOTATION).map(|m| {
                m.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }),
            member_expiry_seconds: annotation(MEMBER_EXPIRY_ANNOTATION)
                .and_then(|s| s.trim().parse().ok()),
            handover_to: annotation(HANDOVER_ANNOTATION),
        }
    }

    /// How long the holder has held the slot: now − acquireTime.
    pub fn held(&self, now: Timestamp) -> Option<Duration> {
        self.holder.as_ref()?;
        since(self.acquired?, now)
    }

    /// Whether the holder's failsafe is on: the Lease carries the member set.
    pub fn failsafe_on(&self) -> bool {
        self.failsafe_members.is_some()
    }

    /// Whether the holder may be acting on its members' confirmations: the slot is held and
    /// its renewTime is older than the member expiry. The Lease cannot say more: the holder
    /// may be in its failsafe, or dead.
    pub fn possibly_on_confirmations(&self, now: Timestamp) -> bool {
        let (Some(_), Some(expiry), Some(renewed)) =
            (&self.holder, self.member_expiry_seconds, self.renewed)
        else {
            return false;
        };
        since(renewed, now).is_some_and(|age| age > Duration::from_secs(expiry))
    }
}

// === impl Member ===

impl Member {
    /// The member of `election` a member Lease describes.
    pub fn from_lease(election: &str, lease: &Lease) -> Member {
        let name = lease.metadata.name.clone().unwrap_or_default();
        let spec = lease.spec.as_ref();
        let prefix = format!("{election}-member-");
        let pod = spec
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty())
            .or_else(|| name.strip_prefix(&prefix).map(String::from))
            .unwrap_or_else(|| name.clone());
        let annotation = |key: &str| annotation(Some(lease), key);
        Member {
            pod,
            lease: name,
            address: annotation(ADDRESS_ANNOTATION).filter(|a| !a.is_empty()),
            ready: annotation(READY_ANNOTATION).and_then(|r| match r.trim() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            }),
            priority: annotation(PRIORITY_ANNOTATION).and_then(|p| p.trim().parse().ok()),
            actives: annotation(ACTIVES_ANNOTATION)
                .and_then(|a| a.trim().parse().ok())
                .filter(|&n| n > 0),
            renewed: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            duration_seconds: spec.and_then(|s| s.lease_duration_seconds),
        }
    }

    /// Whether the member Lease has gone unrenewed longer than its duration (or has no
    /// renewTime or duration at all).
    pub fn stale(&self, now: Timestamp) -> bool {
        match (self.renewed, self.duration_seconds) {
            (Some(renewed), Some(duration)) => {
                let age = since(renewed, now).unwrap_or_default();
                age > Duration::from_secs(u64::try_from(duration).unwrap_or(0))
            }
            _ => true,
        }
    }

    /// How long ago the member Lease was renewed.
    pub fn renewed_ago(&self, now: Timestamp) -> Option<Duration> {
        since(self.renewed?, now)
    }

    /// How the member stands.
    pub fn health(&self, now: Timestamp) -> Health {
        if self.stale(now) {
            Health::Stale
        } else if self.ready == Some(false) {
            Health::NotReady
        } else {
            Health::Live
        }
    }
}

impl Health {
    /// The word shown for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Live => "live",
            Health::NotReady => "not-ready",
            Health::Stale => "stale",
        }
    }
}

/// Annotation `key` of `lease`.
fn annotation(lease: Option<&Lease>, key: &str) -> Option<String> {
    lease?.metadata.annotations.as_ref()?.get(key).cloned()
}

/// now − `then`, zero when `then` is in the future (clock skew).
fn since(then: Timestamp, now: Timestamp) -> Option<Duration> {
    let nanos = now.as_nanosecond() - then.as_nanosecond();
    Some(Duration::from_nanos(u64::try_from(nanos.max(0)).ok()?))
}

/// Fixtures shared with the other modules' tests: the election `web` and its Leases.
#[cfg(test)]
pub(crate) mod tests;
