//! The sans-IO election core: a pure state machine for one Lease.
//!
//! Inputs are observations of the Lease (or its absence), results of the API calls the core
//! asked for, and the current monotonic time. Outputs are the next API call to make
//! ([`Elector::poll_action`]), when to wake the core up ([`Elector::next_wakeup`]) and the
//! [`View`] to publish. No sockets, no clocks: the driver and the simulation supply both.
//!
//! Safety rests on three rules (DESIGN.md):
//! - every write is a compare-and-swap on the last observed resourceVersion;
//! - a Lease held by someone else is expired only once `leaseDurationSeconds` (the record's
//!   own) has passed on *this* node's monotonic clock since it last saw the Lease change;
//! - a leader acts only until the send time of its last successful renew + renewDeadline.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::record::{Draft, LeaseRecord, Observed, Stamp, rv_newer};
use crate::view::{Leader, Role, View};

/// Why a write was made; for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Take the Lease (create, or take over an unheld or expired one).
    Acquire,
    /// Renew a Lease this candidate holds.
    Renew,
    /// Give the Lease up: holder "", duration 1s.
    Release,
}

impl Intent {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Acquire => "acquire",
            Intent::Renew => "renew",
            Intent::Release => "release",
        }
    }
}

/// An API call the driver should make now, then report back.
#[derive(Clone, Debug)]
pub enum Action {
    /// Read the Lease; report with [`Elector::read_done`] (or [`Elector::read_failed`]).
    Read,
    /// Create the Lease; report with [`Elector::write_done`].
    Create {
        /// Why.
        intent: Intent,
        /// The record to write.
        draft: Draft,
    },
    /// Replace the Lease with resourceVersion precondition `base.resource_version`;
    /// report with [`Elector::write_done`].
    Replace {
        /// Why.
        intent: Intent,
        /// The record to write.
        draft: Draft,
        /// The observation the write is conditioned on.
        base: Observed,
    },
}

/// How a write failed, as far as the core cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// 409: the resourceVersion precondition failed, or the Lease already exists.
    Conflict,
    /// 404: the Lease is gone.
    NotFound,
    /// Anything else: timeout, transport, 5xx, 429. The outcome is unknown: the write may have
    /// been applied.
    Other,
}

#[derive(Clone, Debug)]
enum Known {
    /// Not read yet.
    Unknown,
    /// The Lease does not exist; it may be created from `may_create_at`.
    Absent { may_create_at: Instant },
    /// The latest observed Lease and when this node saw it change (the expiry base).
    Present { obs: Observed, changed_at: Instant },
}

#[derive(Clone, Copy, Debug)]
enum Pending {
    Read,
    Write { intent: Intent, sent_at: Instant },
}

/// The election state machine for one Lease and one candidate.
#[derive(Debug)]
pub struct Elector {
    lease: String,
    identity: String,
    address: Option<String>,
    peer_address: Option<String>,
    config: Config,
    known: Known,
    /// Transitions of the last record seen, kept across a deletion so epochs never go back.
    last_transitions: Option<i32>,
    /// Self-fencing deadline: send time of the last successful acquire/renew + renewDeadline.
    acting_until: Option<Instant>,
    pending: Option<Pending>,
    read_wanted: bool,
    /// Earliest time for the next acquire/renew attempt.
    next_attempt: Instant,
    eligible: bool,
    /// Stepped down for good (shutdown drain): release, keep observing, never re-acquire.
    retired: bool,
    releasing: bool,
    stopped: bool,
    synced: bool,
    last_role: Role,
    role_since: Instant,
}

impl Elector {
    /// A candidate `identity` advertising `address`, for the Lease named `lease`.
    pub fn new(
        lease: &str,
        identity: &str,
        address: Option<String>,
        config: Config,
        now: Instant,
    ) -> Elector {
        Elector {
            lease: lease.to_string(),
            identity: identity.to_string(),
            address,
            peer_address: None,
            config,
            known: Known::Unknown,
            last_transitions: None,
            acting_until: None,
            pending: None,
            read_wanted: true,
            next_attempt: now,
            eligible: true,
            retired: false,
            releasing: false,
            stopped: false,
            synced: false,
            last_role: Role::Candidate,
            role_since: now,
        }
    }

    /// Also advertises `peer_address` (the mTLS peer port), next to the address.
    pub fn with_peer_address(mut self, peer_address: Option<String>) -> Elector {
        self.peer_address = peer_address;
        self
    }

    /// The candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The election timings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The latest observed Lease, if any.
    pub fn observed(&self) -> Option<&Observed> {
        match &self.known {
            Known::Present { obs, .. } => Some(obs),
            _ => None,
        }
    }

    /// The result of the [`Action::Read`] last returned by [`Elector::poll_action`]: the Lease,
    /// or `None` for 404.
    pub fn read_done(&mut self, now: Instant, observed: Option<Observed>) {
        if matches!(self.pending, Some(Pending::Read)) {
            self.pending = None;
        }
        self.observe(now, observed);
    }

    /// An observation of the Lease from the watch. `None` means it was deleted. (A watch
    /// event never completes an outstanding read: the driver still waits for that call.)
    pub fn observe(&mut self, now: Instant, observed: Option<Observed>) {
        self.synced = true;
        match observed {
            Some(obs) => self.observe_present(now, obs),
            None => self.observe_absent(now),
        }
        self.update_role(now);
    }

    fn observe_present(&mut self, now: Instant, obs: Observed) {
        if let Known::Present { obs: known, .. } = &self.known {
            let same = obs.resource_version == known.resource_version;
            let older = rv_newer(&known.resource_version, &obs.resource_version) == Some(true);
            if same || older {
                return;
            }
        }
        if obs.record.holder != self.identity && self.acting_until.take().is_some() {
            tracing::warn!(lease = %self.lease, holder = %obs.record.holder, "lost the lease to another holder");
        }
        self.last_transitions = Some(obs.record.transitions);
        // Any new resourceVersion restarts the expiry clock: record timestamps are only a
        // change signal, and a change we cannot interpret is treated as a renewal (safe side).
        self.known = Known::Present {
            obs,
            changed_at: now,
        };
    }

    fn observe_absent(&mut self, now: Instant) {
        let may_create_at = match &self.known {
            // Deleted under a live holder: it may still act until its lease would expire.
            Known::Present { obs, .. }
                if !obs.record.holder.is_empty() && obs.record.holder != self.identity =>
            {
                now + secs(obs.record.lease_duration_secs)
            }
            Known::Absent { may_create_at } => *may_create_at,
            _ => now,
        };
        self.known = Known::Absent { may_create_at };
    }

    /// A read failed (timeout, transport, 5xx). The core retries after `retryPeriod`.
    pub fn read_failed(&mut self, now: Instant) {
        if matches!(self.pending, Some(Pending::Read)) {
            self.pending = None;
        }
        self.read_wanted = true;
        self.next_attempt = self.next_attempt.max(now + self.config.retry_period);
    }

    /// The result of the write last returned by [`Elector::poll_action`]: the Lease as the
    /// API server stored it, or the error.
    pub fn write_done(&mut self, now: Instant, result: Result<Observed, WriteError>) {
        let Some(Pending::Write { intent, sent_at }) = self.pending.take() else {
            return;
        };
        match result {
            Ok(obs) => {
                let written = obs.resource_version.clone();
                self.observe_present(now, obs);
                // Act only if what we wrote is still the newest known record: a watch event
                // newer than our write's response means someone else wrote after us.
                let still_ours = self.observed().is_some_and(|o| {
                    o.resource_version == written && o.record.holder == self.identity
                });
                match intent {
                    Intent::Acquire | Intent::Renew
                        if still_ours && self.eligible && !self.releasing =>
                    {
                        self.acting_until = Some(sent_at + self.config.renew_deadline);
                        self.next_attempt = sent_at + self.config.retry_period;
                    }
                    Intent::Release if self.releasing => self.stopped = true,
                    _ => {}
                }
            }
            Err(WriteError::Conflict | WriteError::NotFound) => {
                // Our view is stale: read, then decide again at once.
                self.read_wanted = true;
                self.next_attempt = now;
            }
            Err(WriteError::Other) => {
                self.next_attempt = now + self.config.retry_period;
            }
        }
        self.update_role(now);
    }

    /// Give the Lease up (shutdown): stop acting at once, then write holder "" if this
    /// candidate holds it. [`Elector::is_stopped`] turns true when nothing is left to do.
    pub fn release(&mut self, now: Instant) {
        self.releasing = true;
        self.acting_until = None;
        self.next_attempt = now;
        self.update_role(now);
    }

    /// Whether this candidate may take a Lease (health gating, one slot per pod). A leader
    /// that becomes ineligible releases; it contends again when eligible.
    pub fn set_eligible(&mut self, now: Instant, eligible: bool) {
        if self.eligible == eligible {
            return;
        }
        self.eligible = eligible;
        if !eligible {
            self.acting_until = None;
        }
        self.next_attempt = now;
        self.update_role(now);
    }

    /// Step down for good while staying informed: stop acting at once, release the Lease if
    /// held, keep observing (the view keeps naming the new leader), never acquire again. Used
    /// for a shutdown drain, where the old leader forwards to its successor. A later
    /// [`Elector::release`] ends the election.
    pub fn step_down(&mut self, now: Instant) {
        self.retired = true;
        self.acting_until = None;
        self.next_attempt = now;
        self.update_role(now);
    }

    /// Whether the latest observed record names this candidate as holder (acting or not).
    /// After [`Elector::step_down`], false once the release has been written.
    pub fn holds_lease(&self) -> bool {
        matches!(&self.known, Known::Present { obs, .. } if obs.record.holder == self.identity)
    }

    /// True once a requested release is done (or there was nothing to release).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The next API call to make, if any. At most one call is outstanding at a time: after an
    /// action, nothing more is returned until its result has been reported.
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        if self.pending.is_some() || self.stopped {
            return None;
        }
        if self.releasing && matches!(self.known, Known::Unknown) {
            // Never read, so never written: nothing to hand over.
            self.stopped = true;
            return None;
        }
        if self.read_wanted && now >= self.next_attempt {
            self.read_wanted = false;
            self.pending = Some(Pending::Read);
            return Some(Action::Read);
        }
        let action = self.decide(now)?;
        self.pending = Some(match &action {
            Action::Read => Pending::Read,
            Action::Create { intent, .. } | Action::Replace { intent, .. } => Pending::Write {
                intent: *intent,
                sent_at: now,
            },
        });
        Some(action)
    }

    fn decide(&mut self, now: Instant) -> Option<Action> {
        let giving_up = self.releasing || self.retired || !self.eligible;
        match &self.known {
            Known::Unknown => None,
            Known::Absent { may_create_at } => {
                if self.releasing {
                    self.stopped = true;
                    return None;
                }
                if giving_up || now < *may_create_at || now < self.next_attempt {
                    return None;
                }
                Some(Action::Create {
                    intent: Intent::Acquire,
                    draft: self.draft(self.last_transitions.map_or(0, |t| t + 1), Stamp::Now),
                })
            }
            Known::Present { obs, changed_at } => {
                let record = &obs.record;
                if record.holder == self.identity {
                    if giving_up {
                        if now < self.next_attempt {
                            return None;
                        }
                        let draft = Draft {
                            holder: String::new(),
                            lease_duration_secs: 1,
                            acquire_time: Stamp::Now,
                            transitions: record.transitions,
                            address: None,
                            peer_address: None,
                        };
                        return Some(self.replace(Intent::Release, draft, obs));
                    }
                    if now < self.next_attempt {
                        return None;
                    }
                    let draft = self.draft(record.transitions, Stamp::Keep(record.acquire_time));
                    return Some(self.replace(Intent::Renew, draft, obs));
                }
                if self.releasing {
                    self.stopped = true;
                    return None;
                }
                let takeable = record.holder.is_empty() || now > expiry(record, *changed_at);
                if giving_up || !takeable || now < self.next_attempt {
                    return None;
                }
                let draft = self.draft(record.transitions + 1, Stamp::Now);
                Some(self.replace(Intent::Acquire, draft, obs))
            }
        }
    }

    fn draft(&self, transitions: i32, acquire_time: Stamp) -> Draft {
        Draft {
            holder: self.identity.clone(),
            lease_duration_secs: self.config.lease_duration_secs(),
            acquire_time,
            transitions,
            address: self.address.clone(),
            peer_address: self.peer_address.clone(),
        }
    }

    fn replace(&self, intent: Intent, draft: Draft, base: &Observed) -> Action {
        Action::Replace {
            intent,
            draft,
            base: base.clone(),
        }
    }

    /// When the core next needs to run even if nothing is observed: a renew is due, a Lease
    /// expires, the self-fencing deadline passes, or a retry is due.
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        if let Some(until) = self.acting_until {
            at(until);
        }
        if self.pending.is_some() {
            return wake;
        }
        if self.read_wanted {
            at(self.next_attempt);
        }
        // A candidate that will not take the Lease (stepped down, ineligible, releasing) only
        // wakes to publish a role change; waking it for a takeover it will not attempt would
        // spin.
        let contending = !(self.releasing || self.retired || !self.eligible);
        match &self.known {
            Known::Unknown => {}
            Known::Absent { may_create_at } => {
                if contending {
                    at((*may_create_at).max(self.next_attempt));
                }
            }
            Known::Present { obs, changed_at } => {
                let record = &obs.record;
                if record.holder == self.identity {
                    at(self.next_attempt);
                } else if record.holder.is_empty() {
                    if contending {
                        at(self.next_attempt);
                    }
                } else {
                    // Strictly after expiry: `now > changed_at + duration`.
                    let after = expiry(record, *changed_at) + Duration::from_millis(1);
                    if contending {
                        at(after.max(self.next_attempt));
                    } else if self.last_role == Role::Follower {
                        at(after);
                    }
                }
            }
        }
        wake
    }

    /// The view to publish at `now`.
    pub fn view(&self, now: Instant) -> View {
        let role = self.role(now);
        let leader = match (&self.known, role) {
            (Known::Present { obs, .. }, Role::Leader | Role::Follower) => Some(Leader {
                identity: obs.record.holder.clone(),
                address: obs.record.address.clone(),
                peer_address: obs.record.peer_address.clone(),
                epoch: obs.record.transitions.max(0) as u64,
            }),
            _ => None,
        };
        View {
            lease: self.lease.clone(),
            identity: self.identity.clone(),
            role,
            leader,
            acting_until: self.acting_until.filter(|_| role == Role::Leader),
            synced: self.synced,
            role_since: if role == self.last_role {
                self.role_since
            } else {
                now
            },
            peers: Vec::new(),
        }
    }

    /// This candidate's role at `now`.
    pub fn role(&self, now: Instant) -> Role {
        let Known::Present { obs, changed_at } = &self.known else {
            return Role::Candidate;
        };
        let record = &obs.record;
        if record.holder == self.identity {
            let acting = self.acting_until.is_some_and(|until| now < until);
            return if acting && !self.releasing && !self.retired {
                Role::Leader
            } else {
                Role::Candidate
            };
        }
        if record.holder.is_empty() || now > expiry(record, *changed_at) {
            Role::Candidate
        } else {
            Role::Follower
        }
    }

    /// Records a role change so that `View::role_since` is right. Called after every input;
    /// the driver also calls it on wake-ups via [`Elector::tick`].
    fn update_role(&mut self, now: Instant) {
        let role = self.role(now);
        if role != self.last_role {
            self.last_role = role;
            self.role_since = now;
        }
    }

    /// Time passed (a wake-up fired). Updates the role; the next actions come from
    /// [`Elector::poll_action`].
    pub fn tick(&mut self, now: Instant) {
        if self.acting_until.is_some_and(|until| now >= until) {
            tracing::warn!(lease = %self.lease, "renew deadline passed: stopped acting as leader");
            self.acting_until = None;
        }
        self.update_role(now);
    }
}

/// Local expiry of a record first seen changed at `changed_at`, by its own duration.
fn expiry(record: &LeaseRecord, changed_at: Instant) -> Instant {
    changed_at + secs(record.lease_duration_secs)
}

fn secs(s: i32) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

#[cfg(test)]
mod tests;
