//! Planned handovers (switchover on demand): asked for by an operator with the Lease
//! annotation [`HANDOVER_ANNOTATION`] or through [`crate::SlotsHandle::hand_over`] (the admin
//! port's `POST /handover`), carried out by the holder's core ([`Elector::hand_over`]).
//!
//! The holder checks the target against the live member table ([`crate::members`]): a named
//! target must be a live member other than itself; "any" picks the live member with the
//! highest priority (then the first by name) among those not marked unready. A valid request
//! makes the holder stop acting at once and write the target as holder at the next epoch; the
//! target starts acting once its own renewal of that record has succeeded. A request that is
//! not valid is declined: the holder renews at once (every write removes the annotation), logs
//! why and records a Kubernetes Event on the Lease (reason `HandoverRefused`).
//!
//! With a [`Prepare`] given ([`crate::SlotsOptions::prepare`]), a valid request is first
//! prepared for while the holder still leads and renews (the sidecar's TCP mode drains
//! there), then checked again and written; a request that is no longer valid then is
//! declined as above. The preparation is [undone](Prepare::over) once the handover is over,
//! whichever way. While an annotation's request is prepared for, the holder's renewals keep
//! the annotation (the request stands until it is answered). Every planned handover goes this
//! way: the annotation, the admin port and the failback alike.
//!
//! [`Elector::hand_over`]: crate::core::Elector::hand_over
//! [`HANDOVER_ANNOTATION`]: crate::record::HANDOVER_ANNOTATION

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::core::Successor;
use crate::members::{Member, Members};

/// A completed handover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoverDone {
    /// The Lease.
    pub lease: String,
    /// Who held it (this pod).
    pub from: String,
    /// Who holds it now, and has renewed it.
    pub to: String,
    /// The new epoch (`leaseTransitions`).
    pub epoch: u64,
    /// From the request to the successor's renewal seen by this pod.
    pub took: Duration,
}

/// Why a handover did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandoverError {
    /// This pod does not hold (or does not act for) the Lease.
    #[error("this pod does not lead {lease}; the leader is {}", leader.as_deref().unwrap_or("unknown"))]
    NotLeader {
        /// The Lease.
        lease: String,
        /// Who does, as far as this pod knows.
        leader: Option<String>,
    },
    /// The named target is not a live member of the election.
    #[error(
        "{target} is not a live member of the election (live members: {})",
        list(live)
    )]
    NotAMember {
        /// The target asked for.
        target: String,
        /// The live members this pod knows, itself excluded.
        live: Vec<String>,
    },
    /// The named target says it cannot lead (unhealthy, or stepping down).
    #[error("{target} is a member but not ready to lead")]
    NotReady {
        /// The target asked for.
        target: String,
    },
    /// The named target is active in another slot of the election (N actives): a pod holds
    /// one slot at most, so it would not take this one.
    #[error("{target} is active in another slot")]
    ActiveElsewhere {
        /// The target asked for.
        target: String,
    },
    /// The target is this pod.
    #[error("{target} already leads {lease}")]
    AlreadyLeader {
        /// The Lease.
        lease: String,
        /// This pod.
        target: String,
    },
    /// "Any" was asked for and no other member is live and ready.
    #[error("no other live, ready member to hand {lease} to")]
    NoCandidate {
        /// The Lease.
        lease: String,
    },
    /// The write that hands over failed; this pod stays the holder.
    #[error("the handover write failed ({why}); {lease} stays with this pod")]
    WriteFailed {
        /// The Lease.
        lease: String,
        /// What the API server or the transport said.
        why: String,
    },
    /// Someone else took the Lease before the target renewed it.
    #[error("{holder} took {lease} before {target} renewed it")]
    Superseded {
        /// The Lease.
        lease: String,
        /// The target.
        target: String,
        /// Who holds it instead.
        holder: String,
    },
    /// The target was named but has not renewed the Lease in time.
    #[error("{target} has not renewed {lease} within {waited:?}")]
    Timeout {
        /// The Lease.
        lease: String,
        /// The target.
        target: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The election has ended (shutting down).
    #[error("the election for {lease} is not running")]
    NotRunning {
        /// The Lease.
        lease: String,
    },
}

/// What the holder does after it has accepted a planned handover and before it writes it,
/// while it still leads and renews: the sidecar's TCP mode drains there (new connections
/// wait for the successor, the open ones get `--close-grace` to end by themselves).
pub trait Prepare: Send + Sync {
    /// Gets ready to hand over the leadership this pod holds now. The handover is checked
    /// again and written when the future ends, which it must by itself (the implementer
    /// bounds it, well inside the lease duration).
    fn prepare(&self) -> BoxFuture<'static, ()>;

    /// The handover prepared for is over, whichever way: done, refused when checked again,
    /// its write failed or was overtaken, or someone else took the Lease. Undoes the
    /// preparation: a pod that still leads leads on as before, and a later leadership of this
    /// pod starts unprepared.
    fn over(&self);

    /// The longest [`Prepare::prepare`] takes: those who wait for a handover's outcome wait
    /// that much longer.
    fn longest(&self) -> Duration;
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The pods a handover of slot `slot` must avoid: the holders of the other slots, given each
/// slot's holder in slot order ([`crate::Slots::holders`]); every holder when `slot` is
/// `None`.
pub fn busy(holders: &[Option<String>], slot: Option<usize>) -> BTreeSet<String> {
    holders
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != slot)
        .filter_map(|(_, h)| h.clone())
        .collect()
}

/// The member to hand over to: `to` if it is a live, ready member other than `me` and not in
/// `busy` (the pods active in the election's other slots, which would not take this one);
/// with `to` `None` (any), the live member with the highest priority, then the first by name,
/// among those not marked unready and not busy.
pub fn choose(
    lease: &str,
    me: &str,
    live: &Members,
    to: Option<&str>,
    busy: &BTreeSet<String>,
) -> Result<Successor, HandoverError> {
    let successor = |m: &Member| Successor {
        identity: m.identity.clone(),
        address: m.address.clone(),
        peer_address: m.peer_address.clone(),
    };
    match to {
        Some(target) if target == me => Err(HandoverError::AlreadyLeader {
            lease: lease.into(),
            target: target.into(),
        }),
        Some(target) => match live.get(target) {
            None => Err(HandoverError::NotAMember {
                target: target.into(),
                live: live.keys().filter(|k| *k != me).cloned().collect(),
            }),
            Some(m) if m.ready == Some(false) => Err(HandoverError::NotReady {
                target: target.into(),
            }),
            Some(_) if busy.contains(target) => Err(HandoverError::ActiveElsewhere {
                target: target.into(),
            }),
            Some(m) => Ok(successor(m)),
        },
        None => live
            .values()
            .filter(|m| m.identity != me && m.ready != Some(false) && !busy.contains(&m.identity))
            .max_by(|a, b| {
                a.priority
                    .cmp(&b.priority)
                    .then_with(|| b.identity.cmp(&a.identity))
            })
            .map(successor)
            .ok_or_else(|| HandoverError::NoCandidate {
                lease: lease.into(),
            }),
    }
}

#[cfg(test)]
mod tests;
