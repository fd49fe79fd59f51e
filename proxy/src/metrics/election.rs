//! Election metrics: the elector's [`Observer`] hook, and gauges mirroring the latest view.
//!
//! The sidecar runs one election, named by the registry's `election` label, so the `lease`
//! argument of each hook is not repeated as a label. (An election of N slots will add a
//! `slot` label here.)

use std::time::{Duration, Instant};

use prometheus::{
    Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};
use understudy_elector::observe::{
    ApiCall, FailsafeEvent, Leadership, LossReason, RenewFailure, Transition, Verb, WatchOpened,
};
use understudy_elector::{Config, Observer, Role, View};

use super::{API_BUCKETS, Register};

/// Failovers take about a lease duration (10-15s by default) after a crash, about one API
/// round trip after a release.
const FAILOVER_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
];

const ROLES: [Role; 3] = [Role::Leader, Role::Follower, Role::Candidate];

#[derive(Clone)]
pub(crate) struct ElectionMetrics {
    is_leader: IntGauge,
    master_status: IntGaugeVec,
    role: IntGaugeVec,
    leader_info: IntGaugeVec,
    epoch: IntGauge,
    leaderless: Gauge,
    transitions: IntCounter,
    failover: Histogram,
    acquired: IntCounter,
    lost: IntCounterVec,
    renew: Histogram,
    renew_failures: IntCounterVec,
    watch_restarts: IntCounterVec,
    api_requests: IntCounterVec,
    api_duration: HistogramVec,
    failsafe_active: IntGauge,
    failsafe_replies: IntCounterVec,
    failsafe_answers: IntCounterVec,
}

impl ElectionMetrics {
    pub(crate) fn new(r: &Register<'_>, timings: &Config) -> ElectionMetrics {
        let m = ElectionMetrics {
            is_leader: r.gauge(
                "understudy_election_is_leader",
                "1 while this pod is the acting leader (inside its self-fencing window), else 0.",
            ),
            master_status: r.gauge_vec(
                "leader_election_master_status",
                "client-go compatible: 1 while this pod is the acting leader of the lease `name`.",
                &["name"],
            ),
            role: r.gauge_vec(
                "understudy_election_role",
                "This pod's role: 1 for the current one of leader, follower, candidate.",
                &["role"],
            ),
            leader_info: r.gauge_vec(
                "understudy_election_leader_info",
                "Always 1, labelled with the leader this pod sees; absent while it sees none.",
                &["leader"],
            ),
            epoch: r.gauge(
                "understudy_election_leader_epoch",
                "Fencing epoch (leaseTransitions) of the current leader; 0 while none.",
            ),
            leaderless: r.seconds(
                "understudy_election_leaderless_seconds",
                "How long this pod has seen no valid leader; 0 while it sees one.",
            ),
            transitions: r.counter(
                "understudy_election_leader_transitions_total",
                "Changes of hands of the Lease (new holder or new epoch) seen by this pod.",
            ),
            failover: r.histogram(
                "understudy_election_failover_duration_seconds",
                "Per leader transition: from the last Lease change before it (the old \
                 leader's last renew, or its release) to the first sight of the new leader.",
                FAILOVER_BUCKETS,
            ),
            acquired: r.counter(
                "understudy_election_leadership_acquired_total",
                "Times this pod started acting as leader.",
            ),
            lost: r.counter_vec(
                "understudy_election_leadership_lost_total",
                "Times this pod stopped acting as leader, by reason (released, taken, deadline).",
                &["reason"],
            ),
            renew: r.histogram(
                "understudy_election_renew_duration_seconds",
                "Duration of each Lease renew call, successful or not.",
                API_BUCKETS,
            ),
            renew_failures: r.counter_vec(
                "understudy_election_renew_failures_total",
                "Lease renews that failed, by reason.",
                &["reason"],
            ),
            watch_restarts: r.counter_vec(
                "understudy_election_watch_restarts_total",
                "Re-openings of the Lease watch, by reason (resync, error, stalled).",
                &["reason"],
            ),
            api_requests: r.counter_vec(
                "understudy_kube_api_requests_total",
                "Kubernetes API calls, by verb and code (HTTP status, timeout or transport).",
                &["verb", "code"],
            ),
            api_duration: r.histogram_vec(
                "understudy_kube_api_request_duration_seconds",
                "Duration of Kubernetes API calls (a watch: until it opened), by verb.",
                &["verb"],
                API_BUCKETS,
            ),
            failsafe_active: r.gauge(
                "understudy_failsafe_active",
                "1 while this pod acts as leader on its members' confirmations (the failsafe) \
                 rather than on its Lease, else 0.",
            ),
            failsafe_replies: r.counter_vec(
                "understudy_failsafe_replies_total",
                "As leader: members' replies to failsafe rounds, by reply (confirm, refuse, \
                 failed: no answer in time).",
                &["reply"],
            ),
            failsafe_answers: r.counter_vec(
                "understudy_failsafe_answers_total",
                "As member: this pod's answers to a leader's failsafe rounds, by answer \
                 (confirm, refuse).",
                &["answer"],
            ),
        };
        r.seconds(
            "understudy_election_lease_duration_seconds",
            "The configured lease duration (leaseDurationSeconds written by this pod).",
        )
        .set(timings.lease_duration.as_secs_f64());
        // Series for every known reason from the start, so that rates read 0, not nothing.
        for reason in LossReason::ALL {
            m.lost.with_label_values(&[reason.as_str()]);
        }
        for reason in RenewFailure::ALL {
            m.renew_failures.with_label_values(&[reason.as_str()]);
        }
        for reason in WatchOpened::RESTARTS {
            m.watch_restarts.with_label_values(&[reason.as_str()]);
        }
        for verb in Verb::ALL {
            m.api_duration.with_label_values(&[verb.as_str()]);
        }
        for reply in ["confirm", "refuse", "failed"] {
            m.failsafe_replies.with_label_values(&[reply]);
        }
        for answer in ["confirm", "refuse"] {
            m.failsafe_answers.with_label_values(&[answer]);
        }
        m
    }

    /// Sets the gauges that mirror `view` at `now`.
    pub(crate) fn mirror(&self, view: &View, now: Instant) {
        let acting = view.is_acting(now);
        // A leader past its fencing deadline is not acting, even before a new view says so.
        let role = match view.role {
            Role::Leader if !acting => Role::Candidate,
            role => role,
        };
        self.is_leader.set(i64::from(acting));
        self.failsafe_active.set(i64::from(acting && view.failsafe));
        self.master_status
            .with_label_values(&[view.lease.as_str()])
            .set(i64::from(acting));
        for r in ROLES {
            self.role
                .with_label_values(&[r.as_str()])
                .set(i64::from(r == role));
        }
        self.leader_info.reset();
        if let Some(leader) = &view.leader {
            self.leader_info
                .with_label_values(&[leader.identity.as_str()])
                .set(1);
        }
        let epoch = view.leader.as_ref().map_or(0, |l| l.epoch);
        self.epoch.set(i64::try_from(epoch).unwrap_or(i64::MAX));
        let leaderless = match view.leader {
            Some(_) => Duration::ZERO,
            None => now.saturating_duration_since(view.role_since),
        };
        self.leaderless.set(leaderless.as_secs_f64());
    }
}

impl Observer for ElectionMetrics {
    fn api_call(&self, _lease: &str, call: &ApiCall) {
        let verb = call.verb.as_str();
        self.api_requests
            .with_label_values(&[verb, call.result.label().as_str()])
            .inc();
        self.api_duration
            .with_label_values(&[verb])
            .observe(call.latency.as_secs_f64());
    }

    fn renew(&self, _lease: &str, latency: Duration, result: Result<(), RenewFailure>) {
        self.renew.observe(latency.as_secs_f64());
        if let Err(why) = result {
            self.renew_failures.with_label_values(&[why.as_str()]).inc();
        }
    }

    fn watch_opened(&self, _lease: &str, why: WatchOpened) {
        if why != WatchOpened::Start {
            self.watch_restarts.with_label_values(&[why.as_str()]).inc();
        }
    }

    fn leadership(&self, _lease: &str, change: Leadership) {
        match change {
            Leadership::Acquired { .. } => self.acquired.inc(),
            Leadership::Lost(why) => self.lost.with_label_values(&[why.as_str()]).inc(),
        }
    }

    fn transition(&self, _lease: &str, transition: &Transition) {
        self.transitions.inc();
        self.failover.observe(transition.gap.as_secs_f64());
    }

    fn failsafe(&self, _lease: &str, event: FailsafeEvent) {
        match event {
            FailsafeEvent::Reply(reply) => self.failsafe_replies.with_label_values(&[reply]).inc(),
            FailsafeEvent::Answer(answer) => {
                self.failsafe_answers.with_label_values(&[answer]).inc()
            }
        }
    }
}
