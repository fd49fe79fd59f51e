//! The slot gate of N active slots: which of N Leases (at most one) a pod may contend for.
//!
//! Fed the latest [`View`] of every slot, [`Gate::decide`] says which slot this pod may contend
//! for: a pod that holds no slot picks the lowest free one it has read (unheld, released or
//! expired) and sticks to it until someone else validly holds it; every other slot's core is
//! ineligible ([`Elector::set_eligible`](crate::core::Elector::set_eligible)), so it only
//! watches. [`Gate::held`] is the slot the pod acts on: the designated slot alone, so a pod
//! whose eligibility changes reach its slots' cores in either order never acts for two slots.
//! The driver (`understudy-elector`'s `slots` module) runs one core per slot and this gate.

use crate::view::{Role, View};

/// Decides, from the latest views, which slot this pod may contend for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Gate {
    slots: usize,
    designated: Option<usize>,
    healthy: bool,
    retired: bool,
}

impl Gate {
    /// A gate over `slots` slots, healthy and contending.
    pub fn new(slots: usize) -> Gate {
        Gate {
            slots: slots.max(1),
            designated: None,
            healthy: true,
            retired: false,
        }
    }

    /// The app's health: an unhealthy pod is eligible for no slot.
    pub fn set_healthy(&mut self, healthy: bool) {
        self.healthy = healthy;
    }

    /// Stepped down for good (shutdown): eligible for no slot from now on.
    pub fn retire(&mut self) {
        self.retired = true;
    }

    /// Whether this pod may lead at all.
    pub fn eligible(&self) -> bool {
        self.healthy && !self.retired
    }

    /// The eligibility of each slot given `views` (one per slot, in order): at most one true.
    pub fn decide(&mut self, views: &[View]) -> Vec<bool> {
        debug_assert_eq!(views.len(), self.slots);
        if !self.eligible() {
            self.designated = None;
            return vec![false; self.slots];
        }
        if self.slots == 1 {
            // A single election needs no gate: the core itself never contends for a held Lease.
            self.designated = Some(0);
            return vec![true];
        }
        if let Some(i) = self.designated {
            // Someone else validly holds it: this pod lost the race (or its tenure); move on.
            if views[i].role == Role::Follower {
                self.designated = None;
            }
        }
        if self.designated.is_none() {
            self.designated = views
                .iter()
                .position(|v| v.synced && v.role != Role::Follower);
        }
        (0..self.slots)
            .map(|i| self.designated == Some(i))
            .collect()
    }

    /// The slot this pod leads, if any: only the designated slot counts, so a core that
    /// briefly led elsewhere (before its ineligibility arrived) is never acted on.
    pub fn held(&self, views: &[View]) -> Option<usize> {
        self.designated
            .filter(|&i| views.get(i).is_some_and(|v| v.role == Role::Leader))
    }
}
