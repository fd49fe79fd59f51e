//! The sans-IO election core: a pure state machine for one Lease.
//!
//! Inputs are observations of the Lease (or its absence), results of the API calls the core
//! asked for, and the current monotonic time. Outputs are the next API call to make
//! ([`Elector::poll_action`]), when to wake the core up ([`Elector::next_wakeup`]), what
//! happened ([`Elector::poll_event`]) and the [`View`] to publish. No sockets, no clocks: the driver and the simulation supply both.
//!
//! Safety rests on three rules (DESIGN.md):
//! - every write is a compare-and-swap on the last observed resourceVersion;
//! - a Lease held by someone else is expired only once `leaseDurationSeconds` (the record's
//!   own) has passed on *this* node's monotonic clock since it last saw the Lease change;
//! - a leader acts only until the send time of its last successful renew + renewDeadline.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::event::{Event, Events, LossReason};
use crate::failsafe::{
    FailsafeRecord, PeerReply, PeerRequest, Refusal, RequestKind, Rule, dead_lease_secs,
};
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
    /// Hand the Lease to another member in the planned way ([`Elector::hand_over`]).
    Handover,
}

impl Intent {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Acquire => "acquire",
            Intent::Renew => "renew",
            Intent::Release => "release",
            Intent::Handover => "handover",
        }
    }
}

/// An API call the driver should make now, then report back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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

/// The member a holder hands its Lease to ([`Elector::hand_over`]), with the addresses its
/// peers reach it at (written into the Lease so that standbys forward to it at once).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Successor {
    /// Its identity.
    pub identity: String,
    /// Its proxy address.
    pub address: Option<String>,
    /// Its mTLS peer address.
    pub peer_address: Option<String>,
}

/// How a write failed, as far as the core cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteError {
    /// 409: the resourceVersion precondition failed, or the Lease already exists.
    Conflict,
    /// 404: the Lease is gone.
    NotFound,
    /// Anything else: timeout, transport, 5xx, 429. The outcome is unknown: the write may have
    /// been applied.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Known {
    /// Not read yet.
    Unknown,
    /// The Lease does not exist; it may be created from `may_create_at`.
    Absent { may_create_at: Instant },
    /// The latest observed Lease and when this node saw it change (the expiry base).
    Present { obs: Observed, changed_at: Instant },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pending {
    Read,
    Write { intent: Intent, sent_at: Instant },
}

/// Counters of the failsafe, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FailsafeStats {
    /// Rounds this pod sent as leader.
    pub rounds: u64,
    /// Rounds every member confirmed (each let this pod act longer).
    pub rounds_confirmed: u64,
    /// Confirmations received.
    pub confirmations: u64,
    /// Refusals received (each stops the failsafe).
    pub refusals: u64,
    /// Promises this pod gave as a member.
    pub promises: u64,
    /// Requests this pod refused as a member.
    pub refused: u64,
}

/// One round of confirmations: sent at `sent_at` to every member in `waiting`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Round {
    id: u64,
    sent_at: Instant,
    waiting: BTreeSet<String>,
}

/// The failsafe's state in one core.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Failsafe {
    /// `--failsafe-max`: the longest this pod acts past its last successful renew.
    max: Duration,
    /// The other members, as the driver knows them (written into the next renewal).
    members: BTreeSet<String>,
    /// `members` changed since the last write that carried them: a holder renews at once
    /// rather than a retryPeriod later, so that a pod that joined is named (and may take
    /// over on the member expiry) as soon as possible.
    members_changed: bool,
    /// Send time of the last successful acquire or renew: the base of `max`.
    renewed_at: Option<Instant>,
    /// `renewed_at + renewDeadline`: until when the Lease alone lets this pod act.
    lease_until: Option<Instant>,
    /// `lease_until` until it has passed: when the view turns to the failsafe.
    lease_wake: Option<Instant>,
    /// Whom a round must reach: the member set of the last successful write, plus the sets of
    /// writes sent since, whose outcome is unknown (the API may have applied them).
    asked: BTreeSet<String>,
    /// A record this pod wrote since its last successful write (that one included) names no
    /// other member: it carries the plain leaseDuration, so a pod outside it may take over at
    /// the plain expiry, and no round may let this pod act past its Lease. There is nobody to
    /// ask: a pod alone in its set stops at its renew deadline as without the failsafe.
    lone: bool,
    /// The last API call failed with an unknown outcome (timeout, transport, 5xx).
    engaged: bool,
    /// Stopped acting on confirmations: no round counts until a write succeeds again.
    fenced: bool,
    next_round: u64,
    next_round_at: Instant,
    rounds: VecDeque<Round>,
    outbox: VecDeque<PeerRequest>,
    /// Promises given as a member: holder -> until (this pod's clock).
    promises: BTreeMap<String, Instant>,
    /// The last read that showed the holder's record unchanged for renewDeadline.
    stale_read_at: Option<Instant>,
    /// The last failed read: "unchanged for renewDeadline" counts only reads since then, so
    /// that the first read after an outage does not take the outage for a partition.
    read_failed_at: Option<Instant>,
    next_probe_at: Instant,
    /// A holder named by a peer, newer than the Lease this pod last read, and until when it
    /// is believed (routing only; never grounds for acting).
    hint: Option<(Leader, Instant)>,
    next_status_at: Instant,
    stats: FailsafeStats,
    /// Rules switched off to show that the checkers catch it (tests only).
    without: BTreeSet<Rule>,
}

/// The election state machine for one Lease and one candidate. `Clone`, `Eq` and `Hash`
/// so that a model checker can explore its states.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
    /// A planned handover asked for and not yet written ([`Elector::hand_over`]).
    handover: Option<Successor>,
    stopped: bool,
    synced: bool,
    last_role: Role,
    role_since: Instant,
    /// The failsafe, when on ([`Elector::with_failsafe`]).
    failsafe: Option<Failsafe>,
    /// What happened, for [`Elector::poll_event`] (output only: equal in every two cores).
    events: Events,
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
            handover: None,
            stopped: false,
            synced: false,
            last_role: Role::Candidate,
            role_since: now,
            failsafe: None,
            events: Events::default(),
        }
    }

    /// Turns the failsafe on: as leader, act past the renew deadline on every member's
    /// promise, at most `max` past the last successful renew ([`crate::failsafe`]).
    pub fn with_failsafe(mut self, max: Duration, now: Instant) -> Elector {
        self.failsafe = Some(Failsafe {
            max,
            members: BTreeSet::new(),
            members_changed: false,
            renewed_at: None,
            lease_until: None,
            lease_wake: None,
            asked: BTreeSet::new(),
            lone: true,
            engaged: false,
            fenced: true,
            next_round: 1,
            next_round_at: now,
            rounds: VecDeque::new(),
            outbox: VecDeque::new(),
            promises: BTreeMap::new(),
            stale_read_at: None,
            read_failed_at: None,
            next_probe_at: now,
            hint: None,
            next_status_at: now,
            stats: FailsafeStats::default(),
            without: BTreeSet::new(),
        });
        self
    }

    /// Switches one rule of the failsafe off. Only for tests that show the simulation and the
    /// model checker catch the removal; it makes the election unsafe.
    #[doc(hidden)]
    pub fn without_rule(mut self, rule: Rule) -> Elector {
        if let Some(f) = self.failsafe.as_mut() {
            f.without.insert(rule);
        }
        self
    }

    fn rule(&self, rule: Rule) -> bool {
        self.failsafe
            .as_ref()
            .is_none_or(|f| !f.without.contains(&rule))
    }

    /// Whether the failsafe is on.
    pub fn failsafe_on(&self) -> bool {
        self.failsafe.is_some()
    }

    /// The failsafe's counters (all zero when it is off).
    pub fn failsafe_stats(&self) -> FailsafeStats {
        self.failsafe.as_ref().map(|f| f.stats).unwrap_or_default()
    }

    /// The other members this pod knows (from their membership Leases); written into the
    /// Lease with the next renewal (at once, when they changed and this pod holds the
    /// Lease), and asked in a failsafe round once written.
    pub fn set_members<I: IntoIterator<Item = String>>(&mut self, members: I) {
        let me = self.identity.clone();
        if let Some(f) = self.failsafe.as_mut() {
            let members: BTreeSet<String> = members.into_iter().filter(|m| *m != me).collect();
            if members != f.members {
                f.members = members;
                f.members_changed = true;
            }
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
        // A read that finds another holder's record unchanged for renewDeadline: the API works
        // for this pod while the holder is not renewing. Its failsafe rounds are refused.
        let renew_deadline = self.config.renew_deadline;
        if let (
            Some(f),
            Some(obs),
            Known::Present {
                obs: known,
                changed_at,
            },
        ) = (self.failsafe.as_mut(), observed.as_ref(), &self.known)
        {
            let holder = &known.record.holder;
            let since = f.read_failed_at.map_or(*changed_at, |t| t.max(*changed_at));
            if obs.resource_version == known.resource_version
                && !holder.is_empty()
                && *holder != self.identity
                && now >= since + renew_deadline
            {
                f.stale_read_at = Some(now);
            }
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
        self.events.see(now, &obs);
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
        if let Some(f) = self.failsafe.as_mut() {
            // The API speaks: a peer's hint is superseded.
            f.hint = None;
            if obs.record.holder != self.identity {
                f.fenced = true;
            }
        }
        self.last_transitions = Some(obs.record.transitions);
        // Named holder without acting (a handover to this pod, or its own Lease after a
        // restart): renew at once, not a retryPeriod later, to start acting. Named while
        // merely ineligible (with N slots the gate opens a slot to this pod only once it sees
        // this pod named in it), wait a retryPeriod for the gate before releasing: releasing at
        // once would turn every handover to an idle pod into a release.
        let named = obs.record.holder == self.identity && self.acting_until.is_none();
        let was_named = matches!(&self.known, Known::Present { obs: known, .. } if known.record.holder == self.identity);
        let wait_for_gate =
            named && !was_named && !self.eligible && !self.releasing && !self.retired;
        // Any new resourceVersion restarts the expiry clock: record timestamps are only a
        // change signal, and a change we cannot interpret is treated as a renewal (safe side).
        self.known = Known::Present {
            obs,
            changed_at: now,
        };
        if wait_for_gate {
            self.next_attempt = now + self.config.retry_period;
        } else if named && self.pending.is_none() {
            self.next_attempt = self.next_attempt.min(now);
        }
    }

    fn observe_absent(&mut self, now: Instant) {
        let may_create_at = match &self.known {
            // Deleted under a live holder: it may still act until its lease would expire.
            Known::Present { obs, .. }
                if !obs.record.holder.is_empty() && obs.record.holder != self.identity =>
            {
                now + self.valid_for(&obs.record)
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
        if let Some(f) = self.failsafe.as_mut() {
            f.engaged = true;
            f.read_failed_at = Some(now);
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
                    // Not after a step-down, release or handover asked for meanwhile: it
                    // stopped acting when asked, and a write sent before must not undo that.
                    Intent::Acquire | Intent::Renew
                        if still_ours
                            && self.eligible
                            && !self.releasing
                            && !self.retired
                            && self.handover.is_none() =>
                    {
                        self.acting_until = Some(sent_at + self.config.renew_deadline);
                        self.next_attempt = sent_at + self.config.retry_period;
                        let me = self.identity.clone();
                        let written = self
                            .observed()
                            .and_then(|o| o.record.failsafe.as_ref())
                            .map(|r| r.members.clone())
                            .unwrap_or_default();
                        if let Some(f) = self.failsafe.as_mut() {
                            f.renewed_at = Some(sent_at);
                            f.lease_until = self.acting_until;
                            f.lease_wake = self.acting_until;
                            f.engaged = false;
                            f.fenced = false;
                            f.rounds.clear();
                            f.asked = written.into_iter().filter(|m| *m != me).collect();
                            f.lone = f.asked.is_empty();
                        }
                    }
                    Intent::Release if self.releasing => self.stopped = true,
                    Intent::Handover => self.handover = None,
                    _ => {}
                }
            }
            Err(WriteError::Conflict | WriteError::NotFound) => {
                // Our view is stale: read, then decide again at once. A definite "no" from
                // the store: no failsafe until a write succeeds again.
                self.handover = None;
                self.read_wanted = true;
                self.next_attempt = now;
                self.fence();
            }
            Err(WriteError::Other) => {
                // A handover that may not have been written is given up: this pod renews
                // (and a renewal over a handover that did land is refused by the CAS).
                self.handover = None;
                self.next_attempt = now + self.config.retry_period;
                if let Some(f) = self.failsafe.as_mut() {
                    f.engaged = true;
                }
            }
        }
        self.update_role(now);
    }

    /// Give the Lease up (shutdown): stop acting at once, then write holder "" if this
    /// candidate holds it. [`Elector::is_stopped`] turns true when nothing is left to do.
    pub fn release(&mut self, now: Instant) {
        self.releasing = true;
        self.acting_until = None;
        self.fence();
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
            self.fence();
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
        self.fence();
        self.next_attempt = now;
        self.update_role(now);
    }

    /// A planned handover to `to`: stop acting at once, then write the Lease with `to` as
    /// holder at the next epoch (`leaseTransitions` + 1, `acquireTime` now). `to` acts only
    /// once its own renewal of that record has succeeded (it renews at once when it sees
    /// itself named), and nobody else may take the Lease before it expires for them, so at
    /// most one pod acts and the gap is one write. Once written, this pod follows `to`; if
    /// the write fails, it stays the holder and acts again after its next successful renew.
    /// False (and nothing changes) unless this pod holds the Lease and is not leaving.
    pub fn hand_over(&mut self, now: Instant, to: Successor) -> bool {
        if !self.holds_lease() || self.releasing || self.retired || to.identity == self.identity {
            return false;
        }
        self.handover = Some(to);
        self.acting_until = None;
        self.fence();
        self.next_attempt = now;
        self.update_role(now);
        true
    }

    /// Renews at once, if this pod holds the Lease (and no call is outstanding; then right
    /// after it): to answer a handover request by declining it, since every write removes the
    /// request's annotation.
    pub fn renew_now(&mut self, now: Instant) {
        if self.holds_lease() {
            self.next_attempt = self.next_attempt.min(now);
        }
    }

    /// The member a handover asked for is being written to, until the write's result.
    pub fn handing_over_to(&self) -> Option<&str> {
        self.handover.as_ref().map(|s| s.identity.as_str())
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
            if let Some(f) = self.failsafe.as_mut() {
                // It serves as a probe too.
                f.next_probe_at = now + self.config.retry_period;
            }
            return Some(Action::Read);
        }
        if self.probe_due(now) {
            // The holder has not renewed for renewDeadline: find out whether the API works
            // for this pod (a partition) or not (an outage) before answering its rounds.
            if let Some(f) = self.failsafe.as_mut() {
                f.next_probe_at = now + self.config.retry_period;
            }
            self.pending = Some(Pending::Read);
            return Some(Action::Read);
        }
        let action = self.decide(now)?;
        if let (Some(f), Action::Create { draft, .. } | Action::Replace { draft, .. }) =
            (self.failsafe.as_mut(), &action)
        {
            // The API may apply this write even if its reply is lost: until a write succeeds,
            // rounds ask the members it names too.
            if let Some(r) = &draft.failsafe {
                f.members_changed = false;
                let me = &self.identity;
                let others: Vec<String> = r.members.iter().filter(|m| *m != me).cloned().collect();
                f.lone |= others.is_empty();
                f.asked.extend(others);
            }
        }
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
                if giving_up
                    || now < *may_create_at
                    || now < self.next_attempt
                    || self.promised(now)
                {
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
                    if let Some(to) = self.handover.clone()
                        && !giving_up
                    {
                        let mine = self.draft(record.transitions + 1, Stamp::Now);
                        let draft = Draft {
                            holder: to.identity,
                            address: to.address,
                            peer_address: to.peer_address,
                            ..mine
                        };
                        return Some(self.replace(Intent::Handover, draft, obs));
                    }
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
                            failsafe: None,
                        };
                        return Some(self.replace(Intent::Release, draft, obs));
                    }
                    let members_changed = self.failsafe.as_ref().is_some_and(|f| f.members_changed);
                    if now < self.next_attempt && !members_changed {
                        return None;
                    }
                    let draft = self.draft(record.transitions, Stamp::Keep(record.acquire_time));
                    return Some(self.replace(Intent::Renew, draft, obs));
                }
                if self.releasing {
                    self.stopped = true;
                    return None;
                }
                let takeable = record.holder.is_empty() || now > self.expiry(record, *changed_at);
                if giving_up || !takeable || now < self.next_attempt || self.promised(now) {
                    return None;
                }
                let draft = self.draft(record.transitions + 1, Stamp::Now);
                Some(self.replace(Intent::Acquire, draft, obs))
            }
        }
    }

    fn draft(&self, transitions: i32, acquire_time: Stamp) -> Draft {
        let c = &self.config;
        let (lease_duration_secs, failsafe) = match &self.failsafe {
            None => (c.lease_duration_secs(), None),
            Some(f) => {
                let mut members = f.members.clone();
                members.insert(self.identity.clone());
                let record = FailsafeRecord {
                    members,
                    member_expiry_secs: c.lease_duration_secs(),
                };
                // Alone in its set, this pod never acts past its Lease (nobody could confirm
                // it), so a pod that joins later need not wait out a failsafe.
                let dead = if f.without.contains(&Rule::DeadLease) || f.members.is_empty() {
                    c.lease_duration_secs()
                } else {
                    dead_lease_secs(c.lease_duration, c.renew_deadline, f.max)
                };
                (dead, Some(record))
            }
        };
        Draft {
            holder: self.identity.clone(),
            lease_duration_secs,
            acquire_time,
            transitions,
            address: self.address.clone(),
            peer_address: self.peer_address.clone(),
            failsafe,
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
        if let Some(f) = &self.failsafe {
            for t in self.failsafe_wakeups(f) {
                at(t);
            }
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
        // No acquisition before every promise this pod gave has run out (or been released).
        let not_before = self
            .failsafe
            .as_ref()
            .and_then(|f| f.promises.values().max().copied())
            .map_or(self.next_attempt, |p| p.max(self.next_attempt));
        match &self.known {
            Known::Unknown => {}
            Known::Absent { may_create_at } => {
                if contending {
                    at((*may_create_at).max(not_before));
                }
            }
            Known::Present { obs, changed_at } => {
                let record = &obs.record;
                if record.holder == self.identity {
                    at(self.next_attempt);
                } else if record.holder.is_empty() {
                    if contending {
                        at(not_before);
                    }
                } else {
                    // Strictly after expiry: `now > changed_at + duration`.
                    let after = self.expiry(record, *changed_at) + Duration::from_millis(1);
                    if self.failsafe.is_some() && self.is_member(record) {
                        // Probe reads once the holder has not renewed for renewDeadline.
                        at((*changed_at + self.config.renew_deadline).max(
                            self.failsafe
                                .as_ref()
                                .map_or(*changed_at, |f| f.next_probe_at),
                        ));
                    }
                    if contending {
                        at(after.max(not_before));
                    } else if self.last_role == Role::Follower
                        && !self
                            .failsafe
                            .as_ref()
                            .is_some_and(|f| f.promises.contains_key(&record.holder))
                    {
                        // (While promised, the role changes when the promise runs out.)
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
            (Known::Present { obs, .. }, Role::Leader) => Some(record_leader(&obs.record)),
            (_, Role::Follower) => match self.valid_holder(now) {
                Some(obs) => Some(record_leader(&obs.record)),
                None => self.hint(now).cloned(),
            },
            _ => None,
        };
        let failsafe = role == Role::Leader
            && self
                .failsafe
                .as_ref()
                .is_some_and(|f| f.lease_until.is_none_or(|u| now >= u));
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
            failsafe,
        }
    }

    /// This candidate's role at `now`.
    pub fn role(&self, now: Instant) -> Role {
        let otherwise = if self.hint(now).is_some() {
            Role::Follower
        } else {
            Role::Candidate
        };
        let Known::Present { obs, .. } = &self.known else {
            return otherwise;
        };
        if obs.record.holder == self.identity {
            let acting = self.acting_until.is_some_and(|until| now < until);
            return if acting && !self.releasing && !self.retired {
                Role::Leader
            } else {
                otherwise
            };
        }
        if self.valid_holder(now).is_some() {
            Role::Follower
        } else {
            otherwise
        }
    }

    /// The observed record when another candidate validly holds it at `now`: not expired for
    /// this pod, or promised to (a promise means the holder may be acting on it).
    fn valid_holder(&self, now: Instant) -> Option<&Observed> {
        let Known::Present { obs, changed_at } = &self.known else {
            return None;
        };
        let holder = &obs.record.holder;
        if holder.is_empty() || *holder == self.identity {
            return None;
        }
        let live = now <= self.expiry(&obs.record, *changed_at) || self.promised_to(holder, now);
        live.then_some(obs)
    }

    /// How long `record` stays valid after this pod saw it change: the member expiry when the
    /// holder runs the failsafe and counts this pod a member, else `leaseDurationSeconds`.
    fn valid_for(&self, record: &LeaseRecord) -> Duration {
        match &record.failsafe {
            Some(r) if self.is_member(record) => secs(r.member_expiry_secs),
            _ => secs(record.lease_duration_secs),
        }
    }

    /// Local expiry of a record first seen changed at `changed_at`.
    fn expiry(&self, record: &LeaseRecord, changed_at: Instant) -> Instant {
        changed_at + self.valid_for(record)
    }

    /// Whether this pod, with its failsafe on, is in `record`'s member set.
    fn is_member(&self, record: &LeaseRecord) -> bool {
        self.failsafe.is_some()
            && record
                .failsafe
                .as_ref()
                .is_some_and(|r| r.members.contains(&self.identity))
    }

    /// Records a role change so that `View::role_since` is right. Called after every input;
    /// the driver also calls it on wake-ups via [`Elector::tick`].
    /// Queues [`Event::Acquired`] or [`Event::Lost`] when the role moves to or from leader.
    fn update_role(&mut self, now: Instant) {
        let role = self.role(now);
        if role == self.last_role {
            return;
        }
        let was = std::mem::replace(&mut self.last_role, role);
        self.role_since = now;
        if role == Role::Leader {
            let epoch = self.view(now).leader.map_or(0, |l| l.epoch);
            self.events.push(Event::Acquired { epoch });
        } else if was == Role::Leader {
            let taken = self
                .view(now)
                .leader
                .is_some_and(|l| l.identity != self.identity);
            let reason = if taken {
                LossReason::Taken
            } else if self.releasing || self.retired || !self.eligible || self.handover.is_some() {
                LossReason::Released
            } else {
                LossReason::Deadline
            };
            self.events.push(Event::Lost { reason });
        }
    }

    /// The next thing that happened, oldest first: this candidate's leadership starting or
    /// ending, or the Lease changing hands. Call until `None` after every input (as with
    /// [`Elector::poll_action`]); events are queued by [`Elector::observe`],
    /// [`Elector::read_done`], [`Elector::write_done`], [`Elector::tick`], [`Elector::release`],
    /// [`Elector::step_down`], [`Elector::set_eligible`] and [`Elector::hand_over`] (a role change that follows from a
    /// peer's reply comes out at the next [`Elector::tick`]). A driver that calls
    /// [`Elector::tick`] before it publishes the view sees a role change in the events as soon
    /// as in the view.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// Time passed (a wake-up fired). Updates the role; the next actions come from
    /// [`Elector::poll_action`].
    pub fn tick(&mut self, now: Instant) {
        if self.acting_until.is_some_and(|until| now >= until) {
            tracing::warn!(lease = %self.lease, "renew deadline passed: stopped acting as leader");
            self.acting_until = None;
            self.fence();
        }
        if let Some(f) = self.failsafe.as_mut() {
            f.promises.retain(|_, until| now < *until);
            if f.lease_wake.is_some_and(|u| now >= u) {
                f.lease_wake = None;
            }
            if f.hint.as_ref().is_some_and(|(_, until)| now >= *until) {
                f.hint = None;
            }
        }
        self.update_role(now);
    }

    // === the failsafe ===

    /// Whether this pod acts as leader on its members' promises rather than on its Lease (its
    /// renew deadline has passed).
    pub fn failsafe_active(&self, now: Instant) -> bool {
        self.view(now).failsafe
    }

    /// The next request to send over the peer channel, if any; send it to the member named
    /// `to` and report the answer (or its failure) with [`Elector::peer_reply`]. Call until
    /// `None` after every input, as with [`Elector::poll_action`]; requests are independent of
    /// the one API call in flight.
    pub fn poll_peer(&mut self, now: Instant) -> Option<PeerRequest> {
        self.plan_peer(now);
        self.failsafe.as_mut()?.outbox.pop_front()
    }

    fn plan_peer(&mut self, now: Instant) {
        let role = self.role(now);
        let epoch = self.last_transitions.unwrap_or(0).max(0) as u64;
        let holds = self.holds_lease();
        let blocked_by = self.blocked_by_promise(now);
        let (retry, lease_ms) = (
            self.config.retry_period,
            self.config.lease_duration.as_millis() as u64,
        );
        let (lease, me, releasing) = (&self.lease, &self.identity, self.releasing);
        let Some(f) = self.failsafe.as_mut() else {
            return;
        };
        let request = |to: &String, kind| PeerRequest {
            lease: lease.clone(),
            epoch,
            from: me.clone(),
            to: to.clone(),
            kind,
        };
        let round_due = now >= f.next_round_at;
        if round_due {
            f.next_round_at = now + retry;
        }
        // A pod alone in its set has nobody to ask: it acts on its Lease only.
        if role == Role::Leader && f.engaged && !f.fenced && !f.lone && round_due {
            let round = f.next_round;
            f.next_round += 1;
            f.stats.rounds += 1;
            for to in &f.asked {
                let kind = RequestKind::Confirm { round, lease_ms };
                f.outbox.push_back(request(to, kind));
            }
            f.rounds.push_back(Round {
                id: round,
                sent_at: now,
                waiting: f.asked.clone(),
            });
            while f.rounds.len() > 4 {
                f.rounds.pop_front();
            }
        }
        if now >= f.next_status_at {
            f.next_status_at = now + retry;
            let mut targets = BTreeSet::new();
            if holds && role != Role::Leader && f.engaged && !releasing {
                // Stopped, cut off from the API: learn from the members whom to forward to.
                targets.extend(f.asked.iter().cloned());
            }
            targets.extend(blocked_by);
            if !targets.is_empty() {
                for to in &targets {
                    f.outbox.push_back(request(to, RequestKind::Status));
                }
            }
        }
    }

    /// A round sent at `sent_at` was confirmed by every member it asked.
    fn confirmed(&mut self, now: Instant, sent_at: Instant) {
        let acting = self.role(now) == Role::Leader;
        let renew_deadline = self.config.renew_deadline;
        let Some(f) = self.failsafe.as_mut() else {
            return;
        };
        f.stats.rounds_confirmed += 1;
        let (Some(renewed_at), false, true) = (f.renewed_at, f.fenced, acting) else {
            return;
        };
        let until = (sent_at + renew_deadline).min(renewed_at + f.max);
        if self.acting_until.is_some_and(|a| a < until) {
            self.acting_until = Some(until);
        }
    }

    /// The answer to the request `request` this core sent ([`Elector::poll_peer`]): `None`
    /// when it failed (timeout, refused connection, unreadable answer). Only an answer from
    /// the member the request was sent to may be reported here.
    pub fn peer_reply(&mut self, now: Instant, request: &PeerRequest, reply: Option<PeerReply>) {
        let known_epoch = self.last_transitions.map(|t| t.max(0) as u64);
        let hint_for = self.config.lease_duration;
        let me = self.identity.clone();
        let Some(f) = self.failsafe.as_mut() else {
            return;
        };
        let newer = |l: &Option<Leader>| {
            l.as_ref()
                .filter(|l| l.identity != me && known_epoch.is_none_or(|e| l.epoch > e))
                .cloned()
        };
        match (&request.kind, reply) {
            (RequestKind::Confirm { round, .. }, Some(PeerReply::Confirm { round: r, .. }))
                if r == *round || f.without.contains(&Rule::EchoRound) =>
            {
                f.stats.confirmations += 1;
                let r = if f.without.contains(&Rule::EchoRound) {
                    f.rounds.back().map_or(r, |x| x.id)
                } else {
                    r
                };
                let Some(i) = f.rounds.iter().position(|x| x.id == r) else {
                    return;
                };
                f.rounds[i].waiting.remove(&request.to);
                if f.without.contains(&Rule::Unanimity) {
                    f.rounds[i].waiting.clear();
                }
                if f.rounds[i].waiting.is_empty() {
                    let sent_at = f.rounds[i].sent_at;
                    f.rounds.remove(i);
                    self.confirmed(now, sent_at);
                }
            }
            (RequestKind::Confirm { .. }, Some(PeerReply::Refuse { reason, holder, .. })) => {
                f.stats.refusals += 1;
                if let Some(l) = newer(&holder) {
                    f.hint = Some((l, now + hint_for));
                }
                let lease_until = f.lease_until;
                tracing::warn!(lease = %self.lease, member = %request.to, reason = reason.as_str(), "failsafe refused: acting on the lease alone");
                self.fence();
                // Back to what the Lease alone allows.
                self.acting_until = self.acting_until.zip(lease_until).map(|(a, l)| a.min(l));
            }
            (RequestKind::Status, Some(PeerReply::Status { acting, holder })) => {
                if !acting {
                    f.promises.remove(&request.to);
                }
                if let Some(l) = newer(&holder) {
                    f.hint = Some((l, now + hint_for));
                }
            }
            _ => {}
        }
        self.update_role(now);
    }

    /// Answers a request from a peer (as member, or as holder asked for its status).
    pub fn answer(&mut self, now: Instant, request: &PeerRequest) -> PeerReply {
        let role = self.role(now);
        let holder = self.view(now).leader;
        let RequestKind::Confirm { round, lease_ms } = request.kind else {
            let acting = role == Role::Leader;
            if !acting && self.rule(Rule::StatusCommits) {
                // "Not acting" is a commitment: no round counts until a write succeeds.
                self.fence();
            }
            return PeerReply::Status { acting, holder };
        };
        let refusal = self.refusal(now, request, role);
        let own_lease = self.config.lease_duration;
        // The sender's leaseDuration as the Lease records it, when known: a request cannot
        // ask for a longer promise than that (nor than this pod's own, when nothing is known).
        let recorded = self
            .observed()
            .and_then(|o| o.record.failsafe.as_ref())
            .map(|r| secs(r.member_expiry_secs))
            .unwrap_or(own_lease);
        let Some(f) = self.failsafe.as_mut() else {
            return PeerReply::Refuse {
                round,
                reason: Refusal::Off,
                holder,
            };
        };
        if let Some(reason) = refusal {
            f.stats.refused += 1;
            return PeerReply::Refuse {
                round,
                reason,
                holder,
            };
        }
        let promise = own_lease.max(Duration::from_millis(lease_ms).min(recorded));
        if !f.promises.contains_key(&request.from) && f.promises.len() >= MAX_PROMISES {
            f.stats.refused += 1;
            return PeerReply::Refuse {
                round,
                reason: Refusal::Unavailable,
                holder,
            };
        }
        let until = f.promises.entry(request.from.clone()).or_insert(now);
        *until = (*until).max(now + promise);
        f.stats.promises += 1;
        self.update_role(now);
        PeerReply::Confirm {
            round,
            promise_ms: promise.as_millis() as u64,
        }
    }

    /// Why this pod cannot promise `request`'s sender, if it cannot.
    fn refusal(&self, now: Instant, request: &PeerRequest, role: Role) -> Option<Refusal> {
        if self.failsafe.is_none() {
            return Some(Refusal::Off);
        }
        if request.to != self.identity {
            return Some(Refusal::NotMe);
        }
        if !self.rule(Rule::RefuseRivals) {
            return None;
        }
        if role == Role::Leader || self.holds_lease() {
            return Some(Refusal::Acting);
        }
        if matches!(
            self.pending,
            Some(Pending::Write {
                intent: Intent::Acquire,
                ..
            })
        ) {
            return Some(Refusal::Acquiring);
        }
        match &self.known {
            Known::Unknown => {}
            Known::Absent { .. } => return Some(Refusal::NewerHolder),
            Known::Present { obs, .. } => {
                // Only the holder this pod knows may ask, at its epoch or a later one.
                let epoch = obs.record.transitions.max(0) as u64;
                if epoch > request.epoch || obs.record.holder != request.from {
                    return Some(Refusal::NewerHolder);
                }
            }
        }
        let recent = 2 * self.config.retry_period;
        let stale = self.failsafe.as_ref().and_then(|f| f.stale_read_at);
        if stale.is_some_and(|t| now < t + recent) {
            return Some(Refusal::ApiReachable);
        }
        None
    }

    /// Stops acting on confirmations until a write succeeds again.
    fn fence(&mut self) {
        if let Some(f) = self.failsafe.as_mut() {
            f.fenced = true;
            f.rounds.clear();
        }
    }

    /// Whether a promise this pod gave is still running: it may not take the Lease.
    fn promised(&self, now: Instant) -> bool {
        self.rule(Rule::PromiseBlocksAcquire)
            && self
                .failsafe
                .as_ref()
                .is_some_and(|f| f.promises.values().any(|until| now < *until))
    }

    fn promised_to(&self, holder: &str, now: Instant) -> bool {
        self.failsafe
            .as_ref()
            .and_then(|f| f.promises.get(holder))
            .is_some_and(|until| now < *until)
    }

    /// The holder this pod would take the Lease from now but for its own promise to it.
    fn blocked_by_promise(&self, now: Instant) -> Option<String> {
        let Known::Present { obs, changed_at } = &self.known else {
            return None;
        };
        let holder = &obs.record.holder;
        let contending = !(self.releasing || self.retired || !self.eligible);
        let expired = now > self.expiry(&obs.record, *changed_at);
        let mine = holder.is_empty() || *holder == self.identity;
        (contending && expired && !mine && self.promised_to(holder, now)).then(|| holder.clone())
    }

    /// A holder a peer named, while it is believed.
    fn hint(&self, now: Instant) -> Option<&Leader> {
        let (leader, until) = self.failsafe.as_ref()?.hint.as_ref()?;
        (now < *until).then_some(leader)
    }

    /// Whether a probe read is due: a member sees the holder's record unchanged for
    /// renewDeadline.
    fn probe_due(&self, now: Instant) -> bool {
        let (Some(f), Known::Present { obs, changed_at }) = (&self.failsafe, &self.known) else {
            return false;
        };
        let holder = &obs.record.holder;
        !holder.is_empty()
            && *holder != self.identity
            && self.is_member(&obs.record)
            && now >= *changed_at + self.config.renew_deadline
            && now >= f.next_probe_at
    }

    /// The failsafe's own wake-ups: rounds, status requests, promises and hints running out,
    /// the renew deadline (when the failsafe takes over), probes.
    ///
    /// Each is included only while its condition holds (the core keeps no clock of its own:
    /// [`Elector::tick`] drops promises, hints and the lease deadline once past, and
    /// [`Elector::poll_peer`] moves a due timer on whether or not it sends).
    fn failsafe_wakeups(&self, f: &Failsafe) -> Vec<Instant> {
        let mut times: Vec<Instant> = f.promises.values().copied().collect();
        times.extend(f.hint.as_ref().map(|(_, until)| *until));
        if self.acting_until.is_some() {
            times.extend(f.lease_wake);
            if f.engaged && !f.fenced {
                times.push(f.next_round_at);
            }
        }
        if self.holds_lease() && self.acting_until.is_none() && f.engaged && !self.releasing {
            times.push(f.next_status_at);
        }
        if let Known::Present { obs, changed_at } = &self.known {
            let contending = !(self.releasing || self.retired || !self.eligible);
            if contending && f.promises.contains_key(&obs.record.holder) {
                let expired = self.expiry(&obs.record, *changed_at) + Duration::from_millis(1);
                times.push(f.next_status_at.max(expired));
            }
        }
        times
    }
}

/// Holders a member keeps promises to at once: only the holder it knows may ask, except
/// before it has read the Lease at all.
const MAX_PROMISES: usize = 16;

fn record_leader(record: &LeaseRecord) -> Leader {
    Leader {
        identity: record.holder.clone(),
        address: record.address.clone(),
        peer_address: record.peer_address.clone(),
        epoch: record.transitions.max(0) as u64,
    }
}

fn secs(s: i32) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

#[cfg(test)]
mod tests;
