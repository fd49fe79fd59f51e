//! Preferred leaders: a holder hands its slot to a member with a higher priority
//! (`--priority`) once that member has been live and ready for the failback delay
//! (`--failback-delay`), and once the holder itself has held the slot that long.
//!
//! [`Failback`] is the decision, fed the time, the slot this pod acts for and the live member
//! table; [`run`] feeds it from the election and carries a decision out as a planned handover
//! ([`crate::Switcher::hand_over`]). Both delays guard against flapping: a member whose
//! readiness or priority changes starts its delay anew, and a pod that has just taken over
//! (say, failed over to from the preferred pod) keeps its slot for at least the delay. Equal
//! priorities never trigger a handover; a member that does not say it is ready (an older
//! sidecar) is never chosen; a member already active in another slot is not either. With N
//! actives, holders that would hand over to the same idle member take turns: a holder waits
//! while a lower slot is held by a pod with a priority below the member's (that one goes
//! first; once the member is active there, it is no longer a candidate here), so failback
//! never hands two slots to one pod at once, which would leave one of them without an active.
//! Only holders that say they are ready (sidecars that fail back at all) are waited for, and
//! for at most [`STAGGER_LIMIT`] (or the delay, if longer): a lower holder with a longer
//! delay of its own, or one that cannot hand over, does not hold this pod up for good.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::members::Members;
use crate::slots::{Slots, Switcher};

/// The failback decision of one pod.
#[derive(Clone, Debug)]
pub struct Failback {
    me: String,
    priority: i64,
    delay: Duration,
    /// The slot this pod acts for, and since when.
    held: Option<(usize, Instant)>,
    /// Members with a higher priority, live and ready: their priority and since when.
    ready_since: BTreeMap<String, (i64, Instant)>,
    /// No attempt before this (after a failed one).
    retry_at: Option<Instant>,
    /// The priorities of the live members holding the slots below the one this pod holds
    /// (those that announce their readiness: older sidecars never fail back).
    below: Vec<i64>,
}

/// The longest this pod waits, past the moment it would hand over, for a lower slot's holder
/// to fail back first (or the delay, if that is longer).
pub const STAGGER_LIMIT: Duration = Duration::from_secs(10);

/// The least wait between failback attempts, whatever the delay (`--failback-delay 0s` must
/// not retry a failing handover in a tight loop).
pub const RETRY_FLOOR: Duration = Duration::from_secs(1);

impl Failback {
    /// The decision for pod `me` with priority `priority`, both delays `delay`.
    pub fn new(me: &str, priority: i64, delay: Duration) -> Failback {
        Failback {
            me: me.to_string(),
            priority,
            delay,
            held: None,
            ready_since: BTreeMap::new(),
            retry_at: None,
            below: Vec::new(),
        }
    }

    /// Takes in the slot this pod acts for (if any), the live members and each slot's holder
    /// ([`Slots::holders`]).
    pub fn update(
        &mut self,
        now: Instant,
        held: Option<usize>,
        live: &Members,
        holders: &[Option<String>],
    ) {
        self.held = match (self.held, held) {
            (Some((was, since)), Some(slot)) if was == slot => Some((slot, since)),
            (_, slot) => slot.map(|s| (s, now)),
        };
        let others = crate::handover::busy(holders, held);
        self.below = holders
            .iter()
            .take(held.unwrap_or(0))
            .flatten()
            .filter_map(|h| live.get(h))
            .filter(|m| m.ready.is_some())
            .map(|m| m.priority)
            .collect();
        let mut next = BTreeMap::new();
        for m in live.values() {
            let preferred = m.identity != self.me
                && m.ready == Some(true)
                && m.priority > self.priority
                && !others.contains(&m.identity);
            if preferred {
                let since = match self.ready_since.get(&m.identity) {
                    Some(&(priority, since)) if priority == m.priority => since,
                    _ => now,
                };
                next.insert(m.identity.clone(), (m.priority, since));
            }
        }
        self.ready_since = next;
    }

    /// Whether a lower slot's holder would hand over to one of this pod's candidates too:
    /// then it goes first, and this pod waits for the change that follows.
    fn lower_slot_first(&self) -> bool {
        let best = self.ready_since.values().map(|(p, _)| *p).max();
        self.held.is_some() && best.is_some_and(|best| self.below.iter().any(|&p| p < best))
    }

    /// When a handover would be due but for a lower slot's holder: this pod has held its slot
    /// for the delay, some candidate has been ready for it, and no failed attempt is waited
    /// out.
    fn due_at(&self) -> Option<Instant> {
        let (_, since) = self.held?;
        let first_ready = self.ready_since.values().map(|(_, r)| *r).min()?;
        let at = (since + self.delay).max(first_ready + self.delay);
        Some(self.retry_at.map_or(at, |r| at.max(r)))
    }

    /// [`Failback::due_at`], pushed back by the wait for a lower slot's holder, if any.
    fn next_at(&self) -> Option<Instant> {
        let at = self.due_at()?;
        Some(if self.lower_slot_first() {
            at + self.delay.max(STAGGER_LIMIT)
        } else {
            at
        })
    }

    /// The slot to hand over and to whom, when it is time: the member with the highest
    /// priority (then the first by name) among those ready for the delay.
    pub fn due(&self, now: Instant) -> Option<(usize, String)> {
        let (slot, _) = self.held?;
        if self.next_at().is_none_or(|at| now < at) {
            return None;
        }
        self.ready_since
            .iter()
            .filter(|(_, (_, ready))| now >= *ready + self.delay)
            .max_by(|(a, (pa, _)), (b, (pb, _))| pa.cmp(pb).then_with(|| b.cmp(a)))
            .map(|(identity, _)| (slot, identity.clone()))
    }

    /// When [`Failback::due`] may next change its answer with no other input.
    /// (While it waits for a lower slot's holder: the end of that wait, or a change.)
    pub fn next_check(&self) -> Option<Instant> {
        self.next_at()
    }

    /// A handover failed: the next attempt waits the delay (at least [`RETRY_FLOOR`]).
    pub fn failed(&mut self, now: Instant) {
        self.retry_at = Some(now + self.delay.max(RETRY_FLOOR));
    }
}

/// Follows the election and the member table, and hands over when [`Failback`] says so;
/// each handover waits at most `within`. Ends when either channel closes.
pub async fn run(
    mut slots: watch::Receiver<Slots>,
    mut members: watch::Receiver<Members>,
    switcher: Switcher,
    mut failback: Failback,
    within: Duration,
) {
    loop {
        let now = tokio::time::Instant::now().into_std();
        let (held, holders) = {
            let s = slots.borrow_and_update();
            (s.held, s.holders())
        };
        let live = members.borrow_and_update().clone();
        failback.update(now, held, &live, &holders);
        if let Some((slot, target)) = failback.due(now) {
            tracing::info!(slot, to = %target, "failback: handing over to a member with a higher priority");
            match switcher.hand_over(slot, Some(target.clone()), within).await {
                Ok(done) => {
                    tracing::info!(lease = %done.lease, to = %done.to, epoch = done.epoch, "failback done")
                }
                Err(error) => {
                    tracing::warn!(slot, to = %target, error = %error, "failback failed; trying again after the failback delay");
                    failback.failed(tokio::time::Instant::now().into_std());
                }
            }
            continue;
        }
        let wake = failback.next_check();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = slots.changed() => if changed.is_err() { return },
            changed = members.changed() => if changed.is_err() { return },
            _ = sleep => {}
        }
    }
}

#[cfg(test)]
mod tests;
