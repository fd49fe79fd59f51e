//! The kube-backed driver: runs the [`Elector`] core against `kube::Api<Lease>`.
//!
//! One task owns the core. It makes at most one API call at a time (each with a timeout shorter
//! than renewDeadline), feeds the results and the Lease watch into the core, sleeps until the
//! core's next wake-up, and publishes the [`View`] on a `tokio::sync::watch` channel. The core
//! sees only the election's fields of the Lease; the driver keeps the object itself, so that a
//! replace writes back every field the election does not own.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event as KubeEvent;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio::time::error::Elapsed;

use crate::config::Config;
use crate::core::{Action, Elector, Intent, Successor, WriteError};
use crate::event::Event;
use crate::failsafe::{PeerReply, PeerRequest, RequestKind};
use crate::handover::{self, HandoverDone, HandoverError, Prepare};
use crate::members::{FailsafeOptions, Members};
use crate::observe::{
    ApiCall, CallResult, FailsafeEvent, Leadership, NoObserver, Observer, RenewFailure, Transition,
    Verb,
};
use crate::record::HANDOVER_ANNOTATION;
use crate::record::{DraftExt, LeaseExt, Observed};
use crate::view::Role;
use crate::view::View;
use crate::watcher::{self, WatchMsg};

/// Who contends: identity and the address peers should forward to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Written to `spec.holderIdentity` (the pod name, by convention).
    pub identity: String,
    /// Advertised proxy address (`host:port`), stored in the Lease's annotation.
    pub address: Option<String>,
    /// Advertised peer (mTLS) address (`host:port`), stored in a second annotation.
    pub peer_address: Option<String>,
}

/// Errors from [`Handle::release`].
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The release did not finish in time; the Lease will expire on its own.
    #[error("release of lease {lease} did not finish within {waited:?}; it will expire by itself")]
    Timeout {
        /// The Lease.
        lease: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The election task had already ended.
    #[error("election task for lease {lease} is not running")]
    NotRunning {
        /// The Lease.
        lease: String,
    },
}

pub(crate) enum Command {
    Release(oneshot::Sender<()>),
    StepDown(oneshot::Sender<()>),
    SetEligible(bool),
    /// A planned handover to this member (`None`: any) but none of the busy ones (active in
    /// other slots), answered once done or failed.
    HandOver(Option<String>, BTreeSet<String>, HandoverReply),
    Answer(PeerRequest, oneshot::Sender<PeerReply>),
}

/// Controls a running election. Dropping it ends the election without releasing.
#[derive(Debug)]
pub struct Handle {
    lease: String,
    commands: mpsc::UnboundedSender<Command>,
    pub(crate) timeout: Duration,
}

impl Handle {
    /// Hands leadership over: stops acting at once, writes holder "" with
    /// `leaseDurationSeconds: 1` (transitions kept) if this candidate holds the Lease, and ends
    /// the election. Waits at most renewDeadline.
    pub async fn release(self) -> Result<(), ReleaseError> {
        self.ask(Command::Release).await
    }

    /// Steps down for a shutdown drain: stops acting at once, releases the Lease if held, and
    /// keeps watching so the view names the successor; never acquires again. Returns once the
    /// release is acknowledged by the API server (or there was nothing to release), waiting at
    /// most renewDeadline. End the election afterwards with [`Handle::release`] (or drop).
    pub async fn step_down(&self) -> Result<(), ReleaseError> {
        self.ask(Command::StepDown).await
    }

    /// Sends a command and waits, at most renewDeadline, for the driver to say it is done.
    async fn ask(&self, command: fn(oneshot::Sender<()>) -> Command) -> Result<(), ReleaseError> {
        let (tx, rx) = oneshot::channel();
        let not_running = || ReleaseError::NotRunning {
            lease: self.lease.clone(),
        };
        self.commands.send(command(tx)).map_err(|_| not_running())?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(not_running()),
            Err(_) => Err(ReleaseError::Timeout {
                lease: self.lease.clone(),
                waited: self.timeout,
            }),
        }
    }

    /// Whether this candidate may hold the Lease (e.g. its app is healthy). A leader made
    /// ineligible releases the Lease; it contends again once eligible.
    pub fn set_eligible(&self, eligible: bool) {
        let _ = self.commands.send(Command::SetEligible(eligible));
    }

    /// The Lease this election contends for.
    pub fn lease(&self) -> &str {
        &self.lease
    }

    /// The sender of this election's commands, for answering peers.
    pub(crate) fn commands(&self) -> mpsc::UnboundedSender<Command> {
        self.commands.clone()
    }

    /// [`Handle::set_eligible`] as a function that outlives a borrow of the handle.
    pub(crate) fn eligibility(&self) -> Box<dyn Fn(bool) + Send> {
        let commands = self.commands.clone();
        Box::new(move |eligible| {
            let _ = commands.send(Command::SetEligible(eligible));
        })
    }
}

/// Starts contending for the Lease `name` through `api` (namespaced). Returns the view channel
/// and the handle. Never gives up: API errors and lost leases lead back to contending.
pub fn spawn(
    api: Api<Lease>,
    name: &str,
    candidate: Candidate,
    config: Config,
) -> (watch::Receiver<View>, Handle) {
    spawn_observed(api, name, candidate, config, Arc::new(NoObserver))
}

/// [`spawn`], reporting API calls, renews, watch restarts, leadership and transitions to
/// `observer` (e.g. metrics).
pub fn spawn_observed(
    api: Api<Lease>,
    name: &str,
    candidate: Candidate,
    config: Config,
    observer: Arc<dyn Observer>,
) -> (watch::Receiver<View>, Handle) {
    spawn_gated(
        api,
        name,
        candidate,
        config,
        observer,
        true,
        Peers::default(),
    )
}

/// What a slot's driver shares with the other pods: the live members (when this pod keeps a
/// member Lease), the failsafe's options (when it is on) and, with N slots, every slot's
/// holder and this slot's index (a handover asked for by annotation avoids the pods active
/// in the other slots, as [`crate::Switcher::hand_over`] does), and what prepares a planned
/// handover ([`Prepare`]).
#[derive(Clone, Default)]
pub(crate) struct Peers {
    pub(crate) failsafe: Option<FailsafeOptions>,
    pub(crate) members: Option<watch::Receiver<Members>>,
    pub(crate) holders: Option<(watch::Receiver<Vec<Option<String>>>, usize)>,
    pub(crate) prepare: Option<Arc<dyn Prepare>>,
}

/// [`spawn_observed`], starting eligible or not (a slot waits for its gate).
pub(crate) fn spawn_gated(
    api: Api<Lease>,
    name: &str,
    candidate: Candidate,
    config: Config,
    observer: Arc<dyn Observer>,
    eligible: bool,
    peers: Peers,
) -> (watch::Receiver<View>, Handle) {
    let Peers {
        failsafe,
        members,
        holders,
        prepare,
    } = peers;
    let now = Instant::now().into_std();
    let mut core = Elector::new(name, &candidate.identity, candidate.address, config, now)
        .with_peer_address(candidate.peer_address);
    if let Some(options) = &failsafe {
        core = core.with_failsafe(options.max, now);
    }
    core.set_eligible(now, eligible);
    let (view_tx, view_rx) = watch::channel(core.view(now));
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        api,
        name: name.to_string(),
        core,
        view: view_tx,
        commands: cmd_rx,
        observer,
        object: None,
        failsafe,
        members,
        holders,
        live: Members::new(),
        prepare,
        preparing: None,
        handover: None,
        answered_rv: None,
        inflight: FuturesUnordered::new(),
        addresses: Members::new(),
        reads_failing: false,
    };
    tokio::spawn(driver.run());
    let handle = Handle {
        lease: name.to_string(),
        commands: cmd_tx,
        timeout: config.renew_deadline,
    };
    (view_rx, handle)
}

type Call = Pin<Box<dyn Future<Output = (Outcome, ApiCall)> + Send>>;

enum Outcome {
    Read(Result<Option<Lease>, kube::Error>),
    Write {
        intent: Intent,
        result: Result<Lease, WriteError>,
        /// What the API server (or the transport) said when the write failed.
        why: Option<String>,
    },
}

struct Driver {
    api: Api<Lease>,
    name: String,
    core: Elector,
    view: watch::Sender<View>,
    commands: mpsc::UnboundedReceiver<Command>,
    observer: Arc<dyn Observer>,
    /// The Lease object of the core's latest observation (labels, other annotations,
    /// `spec.strategy`, ...): the base of a replace conditioned on it.
    object: Option<Lease>,
    failsafe: Option<FailsafeOptions>,
    /// The live members (their member Leases), when this pod keeps one.
    members: Option<watch::Receiver<Members>>,
    /// Every slot's holder and this slot's index, with N slots ([`Peers::holders`]).
    holders: Option<(watch::Receiver<Vec<Option<String>>>, usize)>,
    /// The latest of `members`: whom a handover may go to.
    live: Members,
    /// What prepares a planned handover before it is written, if anything.
    prepare: Option<Arc<dyn Prepare>>,
    /// A handover accepted and being prepared for, and (until the run loop takes it) the
    /// preparation's future.
    preparing: Option<(Preparing, Option<BoxFuture<'static, ()>>)>,
    /// A handover under way.
    handover: Option<PendingHandover>,
    /// The resourceVersion whose handover annotation was last answered (not answered twice).
    answered_rv: Option<String>,
    /// Failsafe requests on their way: each yields the request and the answer (if any).
    inflight: FuturesUnordered<PeerCall>,
    /// Every member ever seen, with its latest addresses: a member whose Lease expired (it
    /// cannot be renewed during an outage) is still asked where it was last seen.
    addresses: Members,
    /// The last read failed (its warning is not repeated until a read succeeds).
    reads_failing: bool,
}

type PeerCall = Pin<Box<dyn Future<Output = (PeerRequest, Option<PeerReply>)> + Send>>;

impl Driver {
    async fn run(mut self) {
        let config = *self.core.config();
        let (watch_tx, mut watch_rx) = mpsc::channel(16);
        let watch_task = tokio::spawn(watcher::run(
            self.api.clone(),
            self.name.clone(),
            config,
            watch_tx,
            self.observer.clone(),
        ));
        let mut call: Option<Call> = None;
        let mut preparation: Option<BoxFuture<'static, ()>> = None;
        let mut release_waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let mut step_down_waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let mut members = self.members.clone();
        if let Some(m) = &mut members {
            let live = m.borrow_and_update().clone();
            self.core.set_members(live.keys().cloned());
            self.addresses.extend(live.clone());
            self.live = live;
        }
        loop {
            let now = Instant::now().into_std();
            self.core.tick(now);
            self.follow_handover(now);
            if let Some((_, started)) = &mut self.preparing
                && let Some(future) = started.take()
            {
                preparation = Some(future);
            }
            if call.is_none() {
                call = self.core.poll_action(now).map(|a| self.start(a));
            }
            self.send_peers(now);
            self.publish(now);
            if !step_down_waiters.is_empty() && !self.core.holds_lease() {
                for done in step_down_waiters.drain(..) {
                    let _ = done.send(());
                }
            }
            if self.core.is_stopped() {
                break;
            }
            let wake = self
                .core
                .next_wakeup()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                () = async { preparation.as_mut().expect("guarded").await }, if preparation.is_some() => {
                    preparation = None;
                    self.prepared(Instant::now().into_std());
                }
                done = async { call.as_mut().expect("guarded").await }, if call.is_some() => {
                    call = None;
                    let (outcome, api_call) = done;
                    self.observer.api_call(&self.name, &api_call);
                    self.finish(outcome, api_call);
                }
                Some(msg) = watch_rx.recv() => {
                    let now = Instant::now().into_std();
                    match msg {
                        WatchMsg::Present(lease) => {
                            self.core.observe(now, lease.observed());
                            self.keep(*lease);
                        }
                        WatchMsg::Absent => self.core.observe(now, None),
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Release(done)) => {
                        tracing::info!(lease = %self.name, "releasing");
                        release_waiters.push(done);
                        self.core.release(Instant::now().into_std());
                    }
                    Some(Command::StepDown(done)) => {
                        tracing::info!(lease = %self.name, "stepping down");
                        step_down_waiters.push(done);
                        self.core.step_down(Instant::now().into_std());
                    }
                    Some(Command::SetEligible(eligible)) => {
                        self.core.set_eligible(Instant::now().into_std(), eligible);
                    }
                    Some(Command::HandOver(to, busy, done)) => {
                        self.start_handover(Instant::now().into_std(), to, busy, Some(done));
                    }
                    Some(Command::Answer(request, reply)) => {
                        let answer = self.core.answer(Instant::now().into_std(), &request);
                        if matches!(request.kind, RequestKind::Confirm { .. }) {
                            let kind = match answer {
                                PeerReply::Confirm { .. } => "confirm",
                                _ => "refuse",
                            };
                            self.observer.failsafe(&self.name, FailsafeEvent::Answer(kind));
                        }
                        let _ = reply.send(answer);
                    }
                    None => break,
                },
                Some((request, reply)) = self.inflight.next(), if !self.inflight.is_empty() => {
                    if matches!(request.kind, RequestKind::Confirm { .. }) {
                        let kind = match &reply {
                            Some(PeerReply::Confirm { .. }) => "confirm",
                            Some(PeerReply::Refuse { .. }) => "refuse",
                            _ => "failed",
                        };
                        self.observer.failsafe(&self.name, FailsafeEvent::Reply(kind));
                    }
                    self.core.peer_reply(Instant::now().into_std(), &request, reply);
                }
                Ok(()) = async { members.as_mut().expect("guarded").changed().await }, if members.is_some() => {
                    let live = members.as_mut().expect("guarded").borrow_and_update().clone();
                    self.core.set_members(live.keys().cloned());
                    self.addresses.extend(live.clone());
                    self.live = live;
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        watch_task.abort();
        for done in release_waiters {
            let _ = done.send(());
        }
    }

    /// Sends what the core wants sent over the peer channel, each bounded by the call
    /// timeout. A member whose address is unknown counts as unreachable.
    fn send_peers(&mut self, now: std::time::Instant) {
        let Some(options) = &self.failsafe else {
            return;
        };
        let timeout = self.core.config().call_timeout();
        while let Some(request) = self.core.poll_peer(now) {
            let member = self.addresses.get(&request.to).cloned();
            let channel = options.channel.clone();
            self.inflight.push(Box::pin(async move {
                let reply = match member {
                    Some(member) => {
                        let send = channel.send(&member, request.clone());
                        tokio::time::timeout(timeout, send).await.ok().flatten()
                    }
                    None => None,
                };
                (request, reply)
            }));
        }
    }

    /// Publishes the view, and reports what the core says happened.
    fn publish(&mut self, now: std::time::Instant) {
        let view = self.core.view(now);
        self.view.send_if_modified(|current| {
            if *current == view {
                return false;
            }
            if current.role != view.role || current.leader != view.leader {
                tracing::info!(
                    lease = %view.lease,
                    role = %view.role,
                    leader = view.leader_name(),
                    epoch = view.leader.as_ref().map(|l| l.epoch),
                    "election view changed"
                );
            }
            *current = view.clone();
            true
        });
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Acquired { epoch } => {
                    let change = Leadership::Acquired { epoch };
                    self.observer.leadership(&self.name, change);
                }
                Event::Lost { reason } => {
                    self.observer
                        .leadership(&self.name, Leadership::Lost(reason));
                }
                Event::HandsChanged {
                    from,
                    to,
                    epoch,
                    gap,
                } => {
                    tracing::info!(
                        lease = %self.name,
                        from = %from,
                        to = %to,
                        epoch,
                        gap_ms = gap.as_millis() as u64,
                        "lease changed hands"
                    );
                    let transition = Transition {
                        from,
                        to,
                        epoch,
                        gap,
                    };
                    self.observer.transition(&self.name, &transition);
                }
            }
        }
    }

    /// Starts a handover to `to` (`None`: any member), if this pod leads and the target is
    /// valid: prepares for it first if something does ([`Prepare`]), else writes it at once;
    /// otherwise answers `done` (if any) with why not, and declines an annotation.
    fn start_handover(
        &mut self,
        now: std::time::Instant,
        to: Option<String>,
        busy: BTreeSet<String>,
        done: Option<HandoverReply>,
    ) {
        let request = Preparing {
            to,
            busy,
            done,
            started: now,
        };
        let Some(prepare) = self.prepare.clone() else {
            self.hand_over(now, request);
            return;
        };
        let Some((request, _)) = self.check_handover(now, request) else {
            return;
        };
        tracing::info!(lease = %self.name, to = request.to.as_deref().unwrap_or("any"), "preparing a handover");
        self.preparing = Some((request, Some(prepare.prepare())));
    }

    /// The preparation has ended: checks the request again (the members, the other slots'
    /// holders or this pod's leadership may have changed meanwhile) and writes it, or undoes
    /// the preparation.
    fn prepared(&mut self, now: std::time::Instant) {
        let Some((mut request, _)) = self.preparing.take() else {
            return;
        };
        if let Some((holders, slot)) = &self.holders {
            request.busy = handover::busy(&holders.borrow(), Some(*slot));
        }
        // The annotation the renewals kept is answered by the next write (the handover, or
        // the renewal that declines it): not once more before that.
        if request.done.is_none() {
            self.answered_rv = self.core.observed().map(|o| o.resource_version.clone());
        }
        if !self.hand_over(now, request) {
            self.prepared_over();
        }
    }

    /// Undoes the preparation of a handover that is over ([`Prepare::over`]).
    fn prepared_over(&self) {
        if let Some(prepare) = &self.prepare {
            prepare.over();
        }
    }

    /// `request` and its successor if this pod leads, no other handover is under way and the
    /// target is valid; otherwise answers it with why not (declining an annotation).
    fn check_handover(
        &mut self,
        now: std::time::Instant,
        request: Preparing,
    ) -> Option<(Preparing, Successor)> {
        let me = self.core.identity().to_string();
        let view = self.core.view(now);
        let chosen =
            if view.role != Role::Leader || self.handover.is_some() || self.preparing.is_some() {
                Err(self.not_leader(&view))
            } else {
                handover::choose(
                    &self.name,
                    &me,
                    &self.live,
                    request.to.as_deref(),
                    &request.busy,
                )
            };
        match chosen {
            Ok(successor) => Some((request, successor)),
            Err(error) => {
                self.refuse(now, request, error);
                None
            }
        }
    }

    /// Writes the handover `request` asks for, if it is (still) valid; whether it did.
    fn hand_over(&mut self, now: std::time::Instant, request: Preparing) -> bool {
        let Some((request, successor)) = self.check_handover(now, request) else {
            return false;
        };
        let target = successor.identity.clone();
        if !self.core.hand_over(now, successor) {
            let error = self.not_leader(&self.core.view(now));
            self.refuse(now, request, error);
            return false;
        }
        tracing::info!(lease = %self.name, to = %target, "handing over");
        self.handover = Some(PendingHandover {
            to: target,
            started: request.started,
            written: None,
            done: request.done,
        });
        true
    }

    fn not_leader(&self, view: &View) -> HandoverError {
        HandoverError::NotLeader {
            lease: self.name.clone(),
            leader: view.leader.as_ref().map(|l| l.identity.clone()),
        }
    }

    /// Answers `request` with `error`; an annotation's is declined on the Lease.
    fn refuse(&mut self, now: std::time::Instant, request: Preparing, error: HandoverError) {
        tracing::warn!(lease = %self.name, error = %error, "handover refused");
        match request.done {
            Some(done) => {
                let _ = done.send(Err(error));
            }
            None => self.refuse_annotation(now, &error),
        }
    }

    /// After every input: answers a handover annotation on the Lease this pod leads, and
    /// completes a handover once its successor has renewed.
    fn follow_handover(&mut self, now: std::time::Instant) {
        let observed = self.core.observed().cloned();
        if self.handover.as_ref().is_some_and(|p| p.written.is_none())
            && self.core.handing_over_to().is_none()
        {
            // The core gave the handover up before writing it: a write already on its way (a
            // renewal) was refused or failed, so the Lease's state was unknown and it renews
            // instead (this pod leads on), or the pod stepped down meanwhile.
            let pending = self.handover.take().expect("checked");
            let why = "given up before it was written: a renewal on its way was refused or \
                       failed, or this pod stepped down";
            tracing::warn!(lease = %self.name, to = %pending.to, "handover {why}");
            self.prepared_over();
            if let Some(reply) = pending.done {
                let _ = reply.send(Err(HandoverError::WriteFailed {
                    lease: self.name.clone(),
                    why: why.into(),
                }));
            }
        }
        if let Some(pending) = &self.handover {
            let Some(obs) = &observed else { return };
            let holder = obs.record.holder.as_str();
            let Some(written) = &pending.written else {
                return;
            };
            if holder == pending.to && obs.resource_version != *written {
                let pending = self.handover.take().expect("checked");
                let done = HandoverDone {
                    lease: self.name.clone(),
                    from: self.core.identity().to_string(),
                    to: pending.to,
                    epoch: obs.record.transitions.max(0) as u64,
                    took: now.saturating_duration_since(pending.started),
                };
                tracing::info!(lease = %self.name, to = %done.to, epoch = done.epoch, took_ms = done.took.as_millis() as u64, "handover done");
                self.prepared_over();
                if let Some(reply) = pending.done {
                    let _ = reply.send(Ok(done));
                }
            } else if holder != pending.to {
                let pending = self.handover.take().expect("checked");
                self.prepared_over();
                if let Some(reply) = pending.done {
                    let _ = reply.send(Err(HandoverError::Superseded {
                        lease: self.name.clone(),
                        target: pending.to,
                        holder: holder.to_string(),
                    }));
                }
            }
            return;
        }
        // (An annotation seen while preparing waits: the handover under way answers it.)
        let Some(obs) = observed.filter(|_| self.preparing.is_none()) else {
            return;
        };
        if obs.record.holder != self.core.identity()
            || self.answered_rv.as_deref() == Some(obs.resource_version.as_str())
        {
            return;
        }
        let Some(object) = self.object_at(&obs) else {
            return;
        };
        let Some(to) = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(HANDOVER_ANNOTATION))
            .cloned()
        else {
            return;
        };
        self.answered_rv = Some(obs.resource_version.clone());
        let to = to.trim().to_string();
        tracing::info!(lease = %self.name, to = %to, "handover asked for by annotation");
        // With N actives, never to a pod active in another slot: it would not renew this
        // Lease (its core for it is ineligible), which would then expire as after a crash.
        let busy = match &self.holders {
            Some((holders, slot)) => handover::busy(&holders.borrow(), Some(*slot)),
            None => BTreeSet::new(),
        };
        self.start_handover(now, (!to.is_empty()).then_some(to), busy, None);
    }

    /// The handover write's result: on success the handover waits for the successor's
    /// renewal; on failure it is over.
    fn handover_written(&mut self, result: &Result<Lease, WriteError>, why: Option<String>) {
        match result {
            Ok(lease) => {
                if let Some(p) = self.handover.as_mut() {
                    p.written = lease.metadata.resource_version.clone();
                }
            }
            Err(_) => {
                // This pod leads on: undo the preparation.
                if self.handover.is_some() {
                    self.prepared_over();
                }
                if let Some(p) = self.handover.take()
                    && let Some(reply) = p.done
                {
                    let _ = reply.send(Err(HandoverError::WriteFailed {
                        lease: self.name.clone(),
                        why: why.unwrap_or_else(|| "unknown".into()),
                    }));
                }
            }
        }
    }

    /// Declines a handover asked for by annotation: renews at once (which removes it) and
    /// records why on the Lease as a Warning Event (reason `HandoverRefused`).
    fn refuse_annotation(&mut self, now: std::time::Instant, error: &HandoverError) {
        self.core.renew_now(now);
        let events: Api<KubeEvent> = match self.api.namespace() {
            Some(ns) => Api::namespaced(self.api.clone().into_client(), ns),
            None => return,
        };
        let lease = self.name.clone();
        let pod = self.core.identity().to_string();
        let message = format!("handover refused: {error}");
        tokio::spawn(async move {
            record_refusal(&events, &lease, &pod, &message).await;
        });
    }

    /// Keeps `lease` if it is the object of the core's latest observation (the core has just
    /// been fed it): a replace conditioned on that observation starts from it.
    fn keep(&mut self, lease: Lease) {
        let latest = self.core.observed().map(|o| o.resource_version.as_str());
        if latest.is_some() && lease.metadata.resource_version.as_deref() == latest {
            self.object = Some(lease);
        }
    }

    /// The object behind the observation `base`, if the driver still has it.
    fn object_at(&self, base: &Observed) -> Option<Lease> {
        self.object
            .as_ref()
            .filter(|o| o.metadata.resource_version.as_deref() == Some(&base.resource_version))
            .cloned()
    }

    fn start(&self, action: Action) -> Call {
        let api = self.api.clone();
        let name = self.name.clone();
        let timeout = self.core.config().call_timeout();
        match action {
            Action::Read => Box::pin(async move {
                let (read, call) = timed(Verb::Get, timeout, api.get_opt(&name)).await;
                let call = match (&read, call.result) {
                    // get_opt turns the 404 into `None`; report what the server said.
                    (Ok(Ok(None)), CallResult::Status(200)) => ApiCall {
                        result: CallResult::Status(404),
                        ..call
                    },
                    _ => call,
                };
                (
                    Outcome::Read(read.unwrap_or_else(|_| Err(timeout_error()))),
                    call,
                )
            }),
            Action::Create { intent, draft } => Box::pin(async move {
                let lease = draft.to_lease(&name, None, jiff::Timestamp::now());
                let params = PostParams::default();
                let (write, call) = timed(Verb::Create, timeout, api.create(&params, &lease)).await;
                (classify(intent, write), call)
            }),
            Action::Replace {
                intent,
                draft,
                base,
            } => {
                // Every observation the core has came from an object kept here; were it
                // missing, the write would carry the election's fields only, as a create does.
                let object = self.object_at(&base);
                // While a handover is prepared for, an annotation's request stands (this one's,
                // or one that came meanwhile, answered after it): the renewals keep it (a
                // watcher such as `kubectl understudy switchover` would otherwise read its
                // removal as a refusal).
                let request = self
                    .preparing
                    .as_ref()
                    .and_then(|_| object.as_ref()?.metadata.annotations.as_ref())
                    .and_then(|a| a.get(HANDOVER_ANNOTATION).cloned());
                Box::pin(async move {
                    let mut lease = draft.to_lease(&name, object.as_ref(), jiff::Timestamp::now());
                    if let Some(to) = request {
                        lease
                            .metadata
                            .annotations
                            .get_or_insert_with(Default::default)
                            .insert(HANDOVER_ANNOTATION.to_string(), to);
                    }
                    // The compare-and-swap: the API server rejects the write with 409 unless the
                    // Lease is still at the version we decided on.
                    lease.metadata.resource_version = Some(base.resource_version);
                    let params = PostParams::default();
                    let write = api.replace(&name, &params, &lease);
                    let (write, call) = timed(Verb::Update, timeout, write).await;
                    (classify(intent, write), call)
                })
            }
        }
    }

    fn finish(&mut self, outcome: Outcome, call: ApiCall) {
        let now = Instant::now().into_std();
        match outcome {
            Outcome::Read(Ok(lease)) => {
                self.reads_failing = false;
                self.core
                    .read_done(now, lease.as_ref().and_then(LeaseExt::observed));
                if let Some(lease) = lease {
                    self.keep(lease);
                }
            }
            Outcome::Read(Err(error)) => {
                // Once per outage: the failsafe's probes read every retryPeriod while it lasts.
                if std::mem::replace(&mut self.reads_failing, true) {
                    tracing::debug!(lease = %self.name, error = %describe(&error), "reading lease failed");
                } else {
                    tracing::warn!(lease = %self.name, error = %describe(&error), "reading lease failed");
                }
                self.core.read_failed(now);
            }
            Outcome::Write {
                intent,
                result,
                why,
            } => {
                let why_text = why.clone();
                match (&result, why) {
                    // Contention, expected between candidates: the next read settles it.
                    (Err(WriteError::Conflict), why) => {
                        tracing::debug!(lease = %self.name, intent = intent.as_str(), error = why.as_deref().unwrap_or("409"), "lease write lost a race");
                    }
                    (Err(_), why) => {
                        tracing::warn!(lease = %self.name, intent = intent.as_str(), error = why.as_deref().unwrap_or("unknown"), "lease write failed");
                    }
                    (Ok(_), _) => {}
                }
                if intent == Intent::Renew {
                    let renewed = RenewFailure::of(call.result).map_or(Ok(()), Err);
                    self.observer.renew(&self.name, call.latency, renewed);
                }
                let observed = match &result {
                    Ok(lease) => lease.observed().ok_or(WriteError::Other),
                    Err(error) => Err(*error),
                };
                self.core.write_done(now, observed);
                if intent == Intent::Handover {
                    self.handover_written(&result, why_text);
                }
                if let Ok(lease) = result {
                    self.keep(lease);
                }
            }
        }
    }
}

/// Where a handover's outcome goes.
pub(crate) type HandoverReply = oneshot::Sender<Result<HandoverDone, HandoverError>>;

/// A planned handover asked for: being checked, or prepared for.
struct Preparing {
    /// The member asked for (`None`: any).
    to: Option<String>,
    /// The pods active in the election's other slots.
    busy: BTreeSet<String>,
    /// Where the outcome goes (`None`: asked for by annotation).
    done: Option<HandoverReply>,
    started: std::time::Instant,
}

/// A handover under way.
struct PendingHandover {
    to: String,
    started: std::time::Instant,
    /// The resourceVersion the handover write produced, once it succeeded.
    written: Option<String>,
    done: Option<HandoverReply>,
}

/// Records a refused handover as a Warning Event on the Lease (best effort: without `create`
/// on events, which the `events` component grants, only the log says why).
async fn record_refusal(events: &Api<KubeEvent>, lease: &str, pod: &str, message: &str) {
    let namespace = events.namespace().unwrap_or_default().to_string();
    let event = crate::record::lease_event(
        &namespace,
        lease,
        pod,
        "HandoverRefused",
        "Warning",
        message,
    );
    let params = PostParams::default();
    let call = events.create(&params, &event);
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::warn!(%lease, error = %describe(&error), "recording the refused handover as an Event failed (the Role needs create on events: the events component)");
        }
        Err(_) => tracing::warn!(%lease, "recording the refused handover as an Event timed out"),
    }
}

/// Runs one API call under `timeout`, and describes it for the observer.
async fn timed<T>(
    verb: Verb,
    timeout: Duration,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> (Result<Result<T, kube::Error>, Elapsed>, ApiCall) {
    let sent = Instant::now();
    let result = tokio::time::timeout(timeout, call).await;
    let ok = if verb == Verb::Create { 201 } else { 200 };
    let call = ApiCall {
        verb,
        result: CallResult::timed(&result, ok),
        latency: sent.elapsed(),
    };
    (result, call)
}

/// A write of `intent` as the core sees it, with what the API server said when it failed.
fn classify(intent: Intent, result: Result<Result<Lease, kube::Error>, Elapsed>) -> Outcome {
    let (result, why) = match result {
        Ok(Ok(lease)) => (Ok(lease), None),
        Ok(Err(error)) => {
            let kind = match &error {
                kube::Error::Api(status) if status.code == 409 => WriteError::Conflict,
                kube::Error::Api(status) if status.code == 404 => WriteError::NotFound,
                _ => WriteError::Other,
            };
            (Err(kind), Some(describe(&error)))
        }
        Err(_) => (
            Err(WriteError::Other),
            Some("API call timed out".to_string()),
        ),
    };
    Outcome::Write {
        intent,
        result,
        why,
    }
}

/// An API error as an operator needs it: the status code, the reason and the server's
/// message (for a 403, the message names the user, the verb and the resource), or the
/// transport's error with its causes.
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause = cause.to_string();
                if !text.contains(&cause) {
                    text.push_str(": ");
                    text.push_str(&cause);
                }
                source = cause_of(source);
            }
            text
        }
    }
}

fn cause_of<'a>(
    e: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    e.and_then(std::error::Error::source)
}

fn timeout_error() -> kube::Error {
    kube::Error::Service(Box::new(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "API call timed out",
    )))
}
