//! Watching an election from outside: the [`Observer`] hook for metrics, logs and tests.
//!
//! The driver reports what it does and sees: every API call (verb, outcome, latency), every
//! renew, every (re)opening of the Lease watch, this candidate's own leadership starting and
//! ending, and each change of hands of the Lease. Every method has a no-op default, so an
//! observer implements only what it needs; the crate itself depends on no metrics library.
//! Observers are called from the election task: they must return quickly and never block.
//!
//! The sans-IO [`crate::core`] knows nothing of this; the hook lives in the driver. What the
//! core decides (leadership, changes of hands) it says as [`crate::event::Event`]s, which the
//! driver passes on here.

use std::time::Duration;

use tokio::time::error::Elapsed;

pub use crate::event::LossReason;

/// Receives what one or more elections do. Pass it to [`crate::spawn_observed`].
///
/// Every method is given the name of the Lease, so one observer can serve several elections.
pub trait Observer: Send + Sync {
    /// An API call finished (or timed out).
    fn api_call(&self, lease: &str, call: &ApiCall) {
        let _ = (lease, call);
    }

    /// A renew of a Lease this candidate holds finished: `Ok` once the API server stored it.
    /// `latency` is the call's duration, success or not.
    fn renew(&self, lease: &str, latency: Duration, result: Result<(), RenewFailure>) {
        let _ = (lease, latency, result);
    }

    /// The Lease watch was opened, for the first time or again.
    fn watch_opened(&self, lease: &str, why: WatchOpened) {
        let _ = (lease, why);
    }

    /// This candidate started or stopped acting as leader.
    fn leadership(&self, lease: &str, change: Leadership) {
        let _ = (lease, change);
    }

    /// The Lease changed hands: a new holder (or the same one at a new epoch) was seen.
    fn transition(&self, lease: &str, transition: &Transition) {
        let _ = (lease, transition);
    }

    /// A failsafe exchange on `lease`: a reply this pod received as leader, or an answer it
    /// gave as member.
    fn failsafe(&self, lease: &str, event: FailsafeEvent) {
        let _ = (lease, event);
    }
}

/// The observer [`crate::spawn`] uses: ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// A failsafe exchange, as counted in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailsafeEvent {
    /// As leader, a member's reply to a round: `"confirm"`, `"refuse"`, or `"failed"` (no
    /// answer in time).
    Reply(&'static str),
    /// As member, this pod's answer to a round: `"confirm"` or `"refuse"`.
    Answer(&'static str),
}

/// The Kubernetes verb of an API call (as the API server's audit log and metrics name it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `GET` of the Lease.
    Get,
    /// `POST`: the Lease is created.
    Create,
    /// `PUT` with a resourceVersion precondition: acquire, renew or release.
    Update,
    /// Opening the Lease watch.
    Watch,
}

impl Verb {
    /// Every verb, e.g. to pre-create metric series.
    pub const ALL: [Verb; 4] = [Verb::Get, Verb::Create, Verb::Update, Verb::Watch];

    /// Lower-case name, as used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Watch => "watch",
        }
    }
}

/// How an API call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallResult {
    /// The API server answered with this HTTP status.
    Status(u16),
    /// No answer within the call timeout (shorter than renewDeadline).
    Timeout,
    /// No HTTP answer: connection refused or reset, TLS, or an unreadable body.
    Transport,
}

impl CallResult {
    /// The outcome of a call that answered `result`; `ok` is the status of a success
    /// (200 for reads, updates and watches, 201 for a create).
    pub(crate) fn of<T>(result: &Result<T, kube::Error>, ok: u16) -> Self {
        match result {
            Ok(_) => CallResult::Status(ok),
            Err(kube::Error::Api(status)) => CallResult::Status(status.code),
            Err(_) => CallResult::Transport,
        }
    }

    /// [`CallResult::of`] for a call run under a timeout.
    pub(crate) fn timed<T>(result: &Result<Result<T, kube::Error>, Elapsed>, ok: u16) -> Self {
        result
            .as_ref()
            .map_or(CallResult::Timeout, |answered| CallResult::of(answered, ok))
    }

    /// The metric label: the status code (`"200"`), `"timeout"` or `"transport"`.
    pub fn label(self) -> String {
        match self {
            CallResult::Status(code) => code.to_string(),
            CallResult::Timeout => "timeout".to_string(),
            CallResult::Transport => "transport".to_string(),
        }
    }
}

/// One finished API call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiCall {
    /// What was asked.
    pub verb: Verb,
    /// How it ended.
    pub result: CallResult,
    /// From sending to the answer (or to the timeout).
    pub latency: Duration,
}

/// Why a renew failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RenewFailure {
    /// 409: someone else wrote the Lease since this candidate last saw it.
    Conflict,
    /// 404: the Lease was deleted.
    NotFound,
    /// 429: the API server throttled the call.
    Throttled,
    /// Another 4xx (403 Forbidden, 422 Invalid, ...): usually RBAC or a bad record.
    Rejected,
    /// 5xx from the API server.
    ServerError,
    /// No answer within the call timeout.
    Timeout,
    /// No HTTP answer at all.
    Transport,
}

impl RenewFailure {
    /// Every reason, e.g. to pre-create metric series.
    pub const ALL: [RenewFailure; 7] = [
        RenewFailure::Conflict,
        RenewFailure::NotFound,
        RenewFailure::Throttled,
        RenewFailure::Rejected,
        RenewFailure::ServerError,
        RenewFailure::Timeout,
        RenewFailure::Transport,
    ];

    /// The failure a failed call with `result` stands for; `None` for a success.
    pub fn of(result: CallResult) -> Option<RenewFailure> {
        Some(match result {
            CallResult::Status(200..=299) => return None,
            CallResult::Status(409) => RenewFailure::Conflict,
            CallResult::Status(404) => RenewFailure::NotFound,
            CallResult::Status(429) => RenewFailure::Throttled,
            CallResult::Status(500..) => RenewFailure::ServerError,
            CallResult::Status(_) => RenewFailure::Rejected,
            CallResult::Timeout => RenewFailure::Timeout,
            CallResult::Transport => RenewFailure::Transport,
        })
    }

    /// Snake-case name, as used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RenewFailure::Conflict => "conflict",
            RenewFailure::NotFound => "not_found",
            RenewFailure::Throttled => "throttled",
            RenewFailure::Rejected => "rejected",
            RenewFailure::ServerError => "server_error",
            RenewFailure::Timeout => "timeout",
            RenewFailure::Transport => "transport",
        }
    }
}

/// Why the Lease watch was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchOpened {
    /// The election started.
    Start,
    /// The server ended the previous watch at its timeout: the periodic resync.
    Resync,
    /// The previous watch failed (could not be opened, broke, or the server sent an error).
    Error,
    /// The previous watch went silent past its deadline and was cut.
    Stalled,
}

impl WatchOpened {
    /// The reasons of a *re*-opening, e.g. to pre-create metric series.
    pub const RESTARTS: [WatchOpened; 3] = [
        WatchOpened::Resync,
        WatchOpened::Error,
        WatchOpened::Stalled,
    ];

    /// Lower-case name, as used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchOpened::Start => "start",
            WatchOpened::Resync => "resync",
            WatchOpened::Error => "error",
            WatchOpened::Stalled => "stalled",
        }
    }
}

/// This candidate's leadership starting or ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leadership {
    /// It started acting as leader, at this epoch (`leaseTransitions`).
    Acquired {
        /// The fencing epoch.
        epoch: u64,
    },
    /// It stopped acting as leader.
    Lost(LossReason),
}

/// The Lease changing hands, as this candidate saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The previous holder.
    pub from: String,
    /// The new holder.
    pub to: String,
    /// The new epoch (`leaseTransitions`).
    pub epoch: u64,
    /// The failover time: from the last change of the Lease seen before (the old holder's
    /// last renew, or its release) to the first sight of the new holder. Nobody was renewing
    /// in between, so this is how long the election went without a live leader.
    pub gap: Duration,
}

#[cfg(test)]
mod tests;
