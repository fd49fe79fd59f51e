//! What happened in an election, as the core says it: this candidate's leadership starting and
//! ending, and the Lease changing hands. The driver takes them from
//! [`Elector::poll_event`](crate::core::Elector::poll_event) after every input, as
//! quinn-proto's `Connection::poll` hands out its events, and reports them (logs, metrics);
//! it never has to infer them by comparing views.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::record::{Observed, rv_newer};

/// Something the driver should know happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// This candidate started acting as leader.
    Acquired {
        /// The fencing epoch (`leaseTransitions`) it leads at.
        epoch: u64,
    },
    /// This candidate stopped acting as leader.
    Lost {
        /// Why.
        reason: LossReason,
    },
    /// The Lease changed hands: a new holder (or the same one at a new epoch) was seen.
    HandsChanged {
        /// The previous holder.
        from: String,
        /// The new holder.
        to: String,
        /// The new epoch (`leaseTransitions`).
        epoch: u64,
        /// The failover time: from the last change of the Lease seen before (the old
        /// holder's last renew, or its release) to the first sight of the new holder. Nobody
        /// was renewing in between, so this is how long the election went without a live
        /// leader.
        gap: Duration,
    },
}

/// Why a leader stopped acting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossReason {
    /// It gave the Lease up: release, step-down, a planned handover, or made ineligible.
    Released,
    /// Another candidate holds the Lease now.
    Taken,
    /// No renew succeeded within renewDeadline: it fenced itself off.
    Deadline,
}

impl LossReason {
    /// Every reason, e.g. to pre-create metric series.
    pub const ALL: [LossReason; 3] = [
        LossReason::Released,
        LossReason::Taken,
        LossReason::Deadline,
    ];

    /// Lower-case name, as used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::Released => "released",
            LossReason::Taken => "taken",
            LossReason::Deadline => "deadline",
        }
    }
}

/// The events not yet polled, and what the core remembers only to report changes of hands.
///
/// Output, not state: no decision of the core reads it, so two cores that differ only here
/// behave alike and compare equal. The model checker's state space is the same with or without
/// events, and a simulation that never polls them explores nothing new.
#[derive(Clone, Debug, Default)]
pub(crate) struct Events {
    queue: VecDeque<Event>,
    hands: Hands,
}

impl Events {
    pub(crate) fn push(&mut self, event: Event) {
        self.queue.push_back(event);
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.queue.pop_front()
    }

    /// Feeds one observation made at `now` (before the core decides whether it is news),
    /// queueing the change of hands it shows, if any.
    pub(crate) fn see(&mut self, now: Instant, obs: &Observed) {
        if let Some(event) = self.hands.see(now, obs) {
            self.push(event);
        }
    }
}

impl PartialEq for Events {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Events {}

impl std::hash::Hash for Events {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// Finds changes of hands in the stream of observations.
///
/// A change of hands is a record with a holder whose epoch is above every epoch seen before,
/// after some holder was seen: the first holder seen after start is where we came in, not a
/// change. Observations older than one already seen (a read overtaken by the watch) are
/// skipped, so a stale record cannot count twice. A deletion does not reset it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hands {
    /// The last non-empty holder seen.
    holder: Option<String>,
    /// The highest epoch seen, of any record (a release keeps the epoch).
    epoch: Option<i32>,
    /// The resourceVersion of the latest record seen, and when it was first seen.
    latest: Option<(String, Instant)>,
}

impl Hands {
    /// Feeds one observation made at `now`; returns the change of hands it shows, if any.
    pub(crate) fn see(&mut self, now: Instant, obs: &Observed) -> Option<Event> {
        let previous_change = match &self.latest {
            Some((rv, _)) if *rv == obs.resource_version => return None,
            Some((rv, _)) if rv_newer(rv, &obs.resource_version) == Some(true) => return None,
            Some((_, at)) => Some(*at),
            None => None,
        };
        self.latest = Some((obs.resource_version.clone(), now));
        let record = &obs.record;
        let newer = self.epoch.is_none_or(|e| record.transitions > e);
        self.epoch = Some(
            self.epoch
                .map_or(record.transitions, |e| e.max(record.transitions)),
        );
        if record.holder.is_empty() || !newer {
            return None;
        }
        let from = self.holder.replace(record.holder.clone())?;
        Some(Event::HandsChanged {
            from,
            to: record.holder.clone(),
            epoch: record.transitions.max(0) as u64,
            gap: previous_change.map_or(Duration::ZERO, |at| now.saturating_duration_since(at)),
        })
    }
}

#[cfg(test)]
mod tests;
