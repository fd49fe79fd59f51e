//! N active slots: N Leases, each with its own [`Elector`](crate::core::Elector), gated so
//! that a pod holds at most one.
//!
//! The [`Gate`] is the sans-IO part: fed the latest [`View`] of every slot, it says which slot
//! (at most one) this pod may contend for. A pod that holds no slot picks the lowest free one
//! it has read (unheld, released or expired) and sticks to it until someone else validly holds
//! it; every other slot's core is ineligible, so it only watches. When a slot frees up, each
//! standby makes at most one write for it: one wins the compare-and-swap, the others read the
//! winner and move on. An unhealthy or stepped-down pod is eligible for none, so a leader
//! releases its slot (see [`Elector::set_eligible`](crate::core::Elector::set_eligible)).
//!
//! [`spawn_slots`] runs one driver per slot plus the gate, and publishes [`Slots`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::config::Config;
use crate::driver::{self, Candidate, Handle, ReleaseError};
use crate::failback::{self, Failback};
use crate::failsafe::{PeerReply, PeerRequest};
use crate::handover::{HandoverDone, HandoverError, Prepare};
use crate::members::{FailsafeOptions, Members, Membership, SelfReport, spawn_membership};
use crate::observe::Observer;
use crate::view::{Leader, Role, View};
pub use understudy_core::gate::Gate;

/// The Lease name of slot `slot` of `slots` in election `name`: `name` itself when there is
/// one slot (so single-active Leases stay valid), `name-<slot>` otherwise.
pub fn lease_name(name: &str, slots: usize, slot: usize) -> String {
    if slots <= 1 {
        name.to_string()
    } else {
        format!("{name}-{slot}")
    }
}

// === impl Slots ===

/// The combined view of all slots, published on a `tokio::sync::watch` channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slots {
    /// The view of each slot's Lease, in slot order.
    pub views: Vec<View>,
    /// The slot this pod holds as leader (by the [`Gate`]'s reckoning), if any. Check
    /// [`Slots::acting`] with the current time before acting.
    pub held: Option<usize>,
    /// Whether this pod may lead (healthy and not stepped down).
    pub eligible: bool,
}

impl Slots {
    /// The slot this pod may act in at `now`, with its fencing token: at most one.
    pub fn acting(&self, now: std::time::Instant) -> Option<(usize, &Leader)> {
        let slot = self.held?;
        let view = &self.views[slot];
        if !view.is_acting(now) {
            return None;
        }
        view.leader.as_ref().map(|l| (slot, l))
    }

    /// Each slot's holder by identity, in slot order, this pod included.
    pub fn holders(&self) -> Vec<Option<String>> {
        self.views
            .iter()
            .map(|v| v.leader.as_ref().map(|l| l.identity.clone()))
            .collect()
    }

    /// The pods holding a slot other than `slot`: a handover of `slot` avoids them.
    pub fn holders_except(&self, slot: usize) -> BTreeSet<String> {
        crate::handover::busy(&self.holders(), Some(slot))
    }

    /// Every slot's current holder, as `(slot, leader)`, this pod included.
    pub fn actives(&self) -> impl Iterator<Item = (usize, &Leader)> {
        self.views
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.leader.as_ref().map(|l| (i, l)))
    }

    /// The one view the proxy routes by: the held slot's view when this pod leads one;
    /// otherwise the first slot someone else validly holds (or slot 0), never as leader. In
    /// both, [`View::peers`] lists the other slots' holders, so a standby spreads over all
    /// actives. With one slot this is that slot's view unchanged.
    pub fn routing_view(&self) -> View {
        let mut view = match self.held {
            Some(slot) => self.views[slot].clone(),
            None => {
                let mut v = self
                    .views
                    .iter()
                    .find(|v| v.role == Role::Follower)
                    .unwrap_or(&self.views[0])
                    .clone();
                if v.role == Role::Leader {
                    // Led by a core the gate did not designate: never acted on.
                    v.role = Role::Candidate;
                    v.leader = None;
                    v.acting_until = None;
                }
                v
            }
        };
        let primary = view.leader.as_ref().map(|l| l.identity.clone());
        view.peers = self
            .actives()
            .map(|(_, l)| l)
            .filter(|l| l.identity != view.identity && Some(&l.identity) != primary.as_ref())
            .cloned()
            .collect();
        view
    }

    /// Whether every slot has been read at least once.
    pub fn synced(&self) -> bool {
        self.views.iter().all(|v| v.synced)
    }
}

// === spawn_slots ===

enum Command {
    Healthy(bool),
    Retire(oneshot::Sender<()>),
}

/// Controls a running N-slot election. Dropping it ends the gate (slots keep their last
/// eligibility until their handles drop with it).
#[derive(Debug)]
pub struct SlotsHandle {
    handles: Vec<Handle>,
    slots_view: watch::Receiver<Slots>,
    commands: mpsc::UnboundedSender<Command>,
    membership: Option<Membership>,
    members: watch::Receiver<Members>,
    answerer: Answerer,
}

/// Why a failsafe request could not be answered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    /// The request names a Lease this pod does not contend for.
    #[error("no election here for lease {0:?}")]
    UnknownLease(String),
    /// The election has ended (shutting down).
    #[error("the election for lease {0:?} has ended")]
    Ended(String),
}

/// Answers failsafe requests from peers, from any task: routes each to its slot's core.
#[derive(Clone, Debug, Default)]
pub struct Answerer {
    by_lease: Arc<BTreeMap<String, mpsc::UnboundedSender<driver::Command>>>,
}

impl Answerer {
    /// The core's answer to `request`.
    pub async fn answer(&self, request: PeerRequest) -> Result<PeerReply, AnswerError> {
        let lease = request.lease.clone();
        let commands = self
            .by_lease
            .get(&lease)
            .ok_or_else(|| AnswerError::UnknownLease(lease.clone()))?;
        let (tx, rx) = oneshot::channel();
        commands
            .send(driver::Command::Answer(request, tx))
            .map_err(|_| AnswerError::Ended(lease.clone()))?;
        rx.await.map_err(|_| AnswerError::Ended(lease))
    }
}

/// Reports the app's health to a running N-slot election, from any task.
#[derive(Clone, Debug)]
pub struct HealthReporter {
    commands: mpsc::UnboundedSender<Command>,
}

impl HealthReporter {
    /// See [`SlotsHandle::set_healthy`].
    pub fn set_healthy(&self, healthy: bool) {
        let _ = self.commands.send(Command::Healthy(healthy));
    }
}

/// Asks the slot drivers for planned handovers and step-downs; cheap to clone.
#[derive(Clone, Debug)]
pub struct Switcher {
    slots: Vec<(String, mpsc::UnboundedSender<driver::Command>)>,
    /// Weak: a switcher (the failback task holds one) must not keep the gate running once
    /// the [`SlotsHandle`] is gone.
    gate: mpsc::WeakUnboundedSender<Command>,
    timeout: Duration,
    /// Who holds which slot: a handover avoids the pods active in the other slots.
    slots_view: watch::Receiver<Slots>,
}

impl Switcher {
    /// [`SlotsHandle::step_down`] from anywhere (the pre-stop hook): this pod takes no slot
    /// from now on, and releases the one it holds, if any; returns once every slot's driver
    /// has acknowledged, waiting at most renewDeadline for each.
    pub async fn step_down(&self) -> Result<(), ReleaseError> {
        let (tx, rx) = oneshot::channel();
        if let Some(gate) = self.gate.upgrade()
            && gate.send(Command::Retire(tx)).is_ok()
        {
            drop(gate);
            // The gate answers at once; bounded all the same, the drivers are told below.
            let _ = tokio::time::timeout(self.timeout, rx).await;
        }
        let mut result = Ok(());
        for (lease, commands) in &self.slots {
            let not_running = || ReleaseError::NotRunning {
                lease: lease.clone(),
            };
            let (tx, rx) = oneshot::channel();
            let acknowledged = match commands.send(driver::Command::StepDown(tx)) {
                Err(_) => Err(not_running()),
                Ok(()) => match tokio::time::timeout(self.timeout, rx).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(not_running()),
                    Err(_) => Err(ReleaseError::Timeout {
                        lease: lease.clone(),
                        waited: self.timeout,
                    }),
                },
            };
            if let Err(e) = acknowledged {
                result = Err(e);
            }
        }
        result
    }

    /// Hands slot `slot`'s Lease over in the planned way to `to` (`None`: the best ready
    /// member), if this pod leads it ([`crate::handover`]); returns once the successor has
    /// renewed it, or why not. Waits at most `within` in all.
    pub async fn hand_over(
        &self,
        slot: usize,
        to: Option<String>,
        within: Duration,
    ) -> Result<HandoverDone, HandoverError> {
        let Some((lease, commands)) = self.slots.get(slot) else {
            return Err(HandoverError::NotLeader {
                lease: format!("slot {slot}"),
                leader: None,
            });
        };
        let lease = lease.clone();
        let (tx, rx) = oneshot::channel();
        let target = to.clone();
        let busy = self.slots_view.borrow().holders_except(slot);
        if commands
            .send(driver::Command::HandOver(to, busy, tx))
            .is_err()
        {
            return Err(HandoverError::NotRunning { lease });
        }
        match tokio::time::timeout(within, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(HandoverError::NotRunning { lease }),
            Err(_) => Err(HandoverError::Timeout {
                lease,
                target: target.unwrap_or_else(|| "a ready member".into()),
                waited: within,
            }),
        }
    }
}

impl SlotsHandle {
    /// Reports the app's health: an unhealthy pod releases its slot and takes none.
    pub fn set_healthy(&self, healthy: bool) {
        let _ = self.commands.send(Command::Healthy(healthy));
    }

    /// A cloneable [`SlotsHandle::set_healthy`], for a health checker.
    pub fn health_reporter(&self) -> HealthReporter {
        HealthReporter {
            commands: self.commands.clone(),
        }
    }

    /// What carries out planned handovers ([`Switcher::hand_over`]), for the admin port.
    pub fn switcher(&self) -> Switcher {
        Switcher {
            slots: self
                .handles
                .iter()
                .map(|h| (h.lease().to_string(), h.commands()))
                .collect(),
            gate: self.commands.downgrade(),
            slots_view: self.slots_view.clone(),
            timeout: self.handles.first().map_or(Duration::ZERO, |h| h.timeout),
        }
    }

    /// Steps down in every slot for a shutdown drain: releases the slot held, keeps watching
    /// all of them, never acquires again. See [`Handle::step_down`].
    pub async fn step_down(&self) -> Result<(), ReleaseError> {
        self.switcher().step_down().await
    }

    /// Releases every slot and ends the election. See [`Handle::release`]. This pod's member
    /// Lease is deleted too.
    pub async fn release(self) -> Result<(), ReleaseError> {
        let (tx, rx) = oneshot::channel();
        let timeout = self.handles.first().map(|h| h.timeout);
        if self.commands.send(Command::Retire(tx)).is_ok() {
            // The gate answers at once; bounded all the same.
            let _ = tokio::time::timeout(timeout.unwrap_or_default(), rx).await;
        }
        let mut result = Ok(());
        for handle in self.handles {
            if let Err(e) = handle.release().await {
                result = Err(e);
            }
        }
        if let (Some(membership), Some(timeout)) = (self.membership, timeout) {
            membership.leave(timeout).await;
        }
        result
    }

    /// Answers failsafe requests from peers (the proxy's peer endpoint).
    pub fn answerer(&self) -> Answerer {
        self.answerer.clone()
    }

    /// The election's members as their member Leases announce them (this pod included):
    /// who the other sidecars are and where they are reached.
    pub fn members(&self) -> watch::Receiver<Members> {
        self.members.clone()
    }
}

/// Starts contending for `slots` slots of election `name` (Leases named by [`lease_name`]):
/// one driver per slot, gated so that this pod holds at most one. With one slot this is
/// [`crate::spawn_observed`] on the Lease `name`.
pub fn spawn_slots(
    api: Api<Lease>,
    name: &str,
    slots: usize,
    candidate: Candidate,
    config: Config,
    observer: Arc<dyn Observer>,
) -> (watch::Receiver<Slots>, SlotsHandle) {
    let options = SlotsOptions::default();
    spawn_slots_with(api, name, slots, candidate, config, observer, options)
}

/// The options of [`spawn_slots_with`].
#[derive(Clone)]
pub struct SlotsOptions {
    /// The failsafe, when on ([`crate::failsafe`]).
    pub failsafe: Option<FailsafeOptions>,
    /// This pod's leadership priority (`--priority`), announced in its member Lease.
    pub priority: i64,
    /// How long a member with a higher priority must have been live and ready, and this pod
    /// must have held its slot, before this pod hands the slot to it (`--failback-delay`;
    /// [`crate::failback`]).
    pub failback_delay: Duration,
    /// What every planned handover of a slot this pod holds waits for before it is written
    /// (the sidecar's TCP mode drains there; [`crate::handover::Prepare`]).
    pub prepare: Option<Arc<dyn Prepare>>,
}

impl std::fmt::Debug for SlotsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotsOptions")
            .field("failsafe", &self.failsafe)
            .field("priority", &self.priority)
            .field("failback_delay", &self.failback_delay)
            .field("prepare", &self.prepare.is_some())
            .finish()
    }
}

impl Default for SlotsOptions {
    /// No failsafe, priority 0, failback delay 60s, nothing to prepare a handover.
    fn default() -> SlotsOptions {
        SlotsOptions {
            failsafe: None,
            priority: 0,
            failback_delay: Duration::from_secs(60),
            prepare: None,
        }
    }
}

/// [`spawn_slots`], keeping a member Lease for this pod ([`crate::members`]) that announces its
/// priority and readiness, which planned handovers choose from ([`Switcher`]); handing its
/// slot to a member with a higher priority after the failback delay ([`crate::failback`]);
/// and with the failsafe on when `options.failsafe` is given: every slot's core serves
/// through API outages on its members' promises ([`crate::failsafe`]).
pub fn spawn_slots_with(
    api: Api<Lease>,
    name: &str,
    slots: usize,
    candidate: Candidate,
    config: Config,
    observer: Arc<dyn Observer>,
    options: SlotsOptions,
) -> (watch::Receiver<Slots>, SlotsHandle) {
    let slots = slots.max(1);
    let SlotsOptions {
        failsafe,
        priority,
        failback_delay,
        prepare,
    } = options;
    // Every pod keeps a member Lease: the failsafe asks the members, and a planned handover
    // goes to one of them.
    let (ready_tx, ready) = watch::channel(true);
    let report = SelfReport {
        priority,
        actives: slots,
        ready,
    };
    let (members, membership) = spawn_membership(api.clone(), name, &candidate, report, config);
    let failback_members = members.clone();
    let all_members = members.clone();
    let (members, membership) = (Some(members), Some(membership));
    let mut by_lease = BTreeMap::new();
    let changed = Arc::new(Notify::new());
    let mut views = Vec::with_capacity(slots);
    let mut handles = Vec::with_capacity(slots);
    let mut gates = Vec::with_capacity(slots);
    let (holders_tx, holders) = watch::channel(vec![None; slots]);
    for slot in 0..slots {
        let lease = lease_name(name, slots, slot);
        // Slots start ineligible: the gate opens one once it has read them.
        let (view, handle) = driver::spawn_gated(
            api.clone(),
            &lease,
            candidate.clone(),
            config,
            observer.clone(),
            slots == 1,
            driver::Peers {
                failsafe: failsafe.clone(),
                members: members.clone(),
                holders: (slots > 1).then(|| (holders.clone(), slot)),
                prepare: prepare.clone(),
            },
        );
        by_lease.insert(lease.clone(), handle.commands());
        let mut forward = view.clone();
        let changed = changed.clone();
        tokio::spawn(async move {
            while forward.changed().await.is_ok() {
                changed.notify_one();
            }
            changed.notify_one();
        });
        gates.push(handle.eligibility());
        views.push(view);
        handles.push(handle);
    }
    let mut gate = Gate::new(slots);
    let first = collect(&views);
    let (tx, rx) = watch::channel(Slots {
        held: None,
        eligible: gate.eligible(),
        views: first,
    });
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut sent: Vec<bool> = vec![slots == 1; slots];
        let mut retire_waiters: Vec<oneshot::Sender<()>> = Vec::new();
        loop {
            let current = collect(&views);
            let eligible = gate.decide(&current);
            // Close before opening. Each slot's driver reads its own channel, so a close
            // and an open may still take effect in either order: two cores can briefly both
            // be eligible, and both take their Lease. What this pod acts on is
            // `Gate::held`, the designated slot alone, so it never acts for two slots.
            // (tests/slots_simulation.rs delivers each decision over its own delayed FIFO
            // channel: checked by the cores it finds a pod in two slots, by `Gate::held`
            // never.)
            for pass in [false, true] {
                for (slot, (&want, had)) in eligible.iter().zip(sent.iter_mut()).enumerate() {
                    if want == pass && want != *had {
                        gates[slot](want);
                        *had = want;
                    }
                }
            }
            let held = gate.held(&current);
            let eligible = gate.eligible();
            ready_tx.send_if_modified(|r| std::mem::replace(r, eligible) != eligible);
            let new = Slots {
                views: current,
                held,
                eligible,
            };
            let now_holding = new.holders();
            holders_tx
                .send_if_modified(|h| std::mem::replace(h, now_holding.clone()) != now_holding);
            tx.send_if_modified(|s| {
                let modified = *s != new;
                *s = new;
                modified
            });
            for done in retire_waiters.drain(..) {
                let _ = done.send(());
            }
            tokio::select! {
                _ = changed.notified() => {}
                cmd = cmd_rx.recv() => match cmd {
                    Some(Command::Healthy(healthy)) => gate.set_healthy(healthy),
                    Some(Command::Retire(done)) => {
                        gate.retire();
                        retire_waiters.push(done);
                    }
                    None => break,
                },
            }
        }
    });
    let handle = SlotsHandle {
        handles,
        slots_view: rx.clone(),
        commands: cmd_tx,
        membership,
        members: all_members,
        answerer: Answerer {
            by_lease: Arc::new(by_lease),
        },
    };
    let failback = Failback::new(&candidate.identity, priority, failback_delay);
    // (A prepared handover takes up to its preparation longer.)
    let within = config.lease_duration
        + config.renew_deadline
        + prepare.as_ref().map_or(Duration::ZERO, |p| p.longest());
    let switcher = handle.switcher();
    tokio::spawn(failback::run(
        rx.clone(),
        failback_members,
        switcher,
        failback,
        within,
    ));
    (rx, handle)
}

/// Follows `slots` with their [`Slots::routing_view`]: the single view a proxy routes by.
/// The returned channel closes once `slots` does.
pub fn routing_views(mut slots: watch::Receiver<Slots>) -> watch::Receiver<View> {
    let (tx, rx) = watch::channel(slots.borrow_and_update().routing_view());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = slots.changed() => if changed.is_err() { break },
                _ = tx.closed() => break,
            }
            let view = slots.borrow_and_update().routing_view();
            tx.send_if_modified(|current| {
                let modified = *current != view;
                *current = view;
                modified
            });
        }
    });
    rx
}

fn collect(views: &[watch::Receiver<View>]) -> Vec<View> {
    views.iter().map(|v| v.borrow().clone()).collect()
}

#[cfg(test)]
mod tests;
