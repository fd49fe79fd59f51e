//! Prometheus metrics, served as text on the admin server's `/metrics`.
//!
//! Every series carries the `election` label (the Lease name), so one dashboard can show many
//! elections. The families:
//! - election: counters and histograms fed by the elector's [`Observer`] hook
//!   ([`Metrics::observer`]), and gauges that mirror the latest [`View`], set when scraped
//!   so they cannot drift from the truth;
//! - proxy: recorded per request by the proxy ([`Metrics::request`] and the like);
//! - TCP mode: connections, bytes and closes by reason ([`Metrics::tcp`]);
//! - peer TLS: reloads of the `--peer-tls-dir` files and failed handshakes
//!   ([`Metrics::peer_tls`]);
//! - `understudy_build_info`, and the standard `process_*` metrics (CPU, memory, fds).
//!
//! `docs/observability.md` lists every metric with its labels and meaning.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::Response;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::sync::watch;
use understudy_elector::observe::{
    ApiCall, FailsafeEvent, Leadership, RenewFailure, Transition, WatchOpened,
};
use understudy_elector::{Config, Observer, Role, Slots, View};

mod election;
mod peer;
mod tcp;
mod traffic;

use crate::route::Kind;
use election::ElectionMetrics;
pub use peer::{Direction, PeerTlsMetrics};
pub use tcp::{Close, TcpMetrics};
use traffic::TrafficMetrics;
pub use traffic::{Answer, HoldTimer, InFlight, Retry};

/// The sidecar's metrics and their registry; cheap to clone (the collectors are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    election: ElectionMetrics,
    traffic: TrafficMetrics,
    peer_tls: PeerTlsMetrics,
    tcp: TcpMetrics,
    /// With N > 1 slots: each slot's election metrics, in a registry labelled `slot`, with
    /// its Lease name (and `election` is not registered in `registry`).
    slots: Arc<Vec<(Registry, ElectionMetrics, String)>>,
    /// The per-slot view the slot gauges mirror, once the election runs.
    slot_views: Arc<OnceLock<watch::Receiver<Slots>>>,
    /// Open `GET /watch` streams on the admin server.
    watchers: IntGauge,
}

impl Default for Metrics {
    /// Metrics without an `election` label, with default timings (for tests).
    fn default() -> Self {
        Metrics::new("", &Config::default())
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry, labelled with `election` (left out when
    /// empty); `timings` are exported so alert rules can compare with the lease duration.
    pub fn new(election: &str, timings: &Config) -> Metrics {
        Metrics::with_slots(election, timings, 1)
    }

    /// [`Metrics::new`] for an election of `slots` slots: with more than one, every election
    /// series carries a `slot` label (`0` .. `N-1`), one set per slot.
    pub fn with_slots(election_name: &str, timings: &Config, slots: usize) -> Metrics {
        let labels = |slot: Option<usize>| {
            let mut l = HashMap::new();
            if !election_name.is_empty() {
                l.insert("election".to_string(), election_name.to_string());
            }
            if let Some(s) = slot {
                l.insert("slot".to_string(), s.to_string());
            }
            (!l.is_empty()).then_some(l)
        };
        let registry = Registry::new_custom(None, labels(None)).expect("valid election label");
        let register = Register(&registry);
        let per_slot: Vec<(Registry, ElectionMetrics, String)> = if slots > 1 {
            (0..slots)
                .map(|i| {
                    let r = Registry::new_custom(None, labels(Some(i))).expect("valid labels");
                    let m = ElectionMetrics::new(&Register(&r), timings);
                    (
                        r,
                        m,
                        understudy_elector::lease_name(election_name, slots, i),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let election = if per_slot.is_empty() {
            ElectionMetrics::new(&register, timings)
        } else {
            // Not registered: the per-slot sets stand in for it.
            ElectionMetrics::new(&Register(&Registry::new()), timings)
        };
        let traffic = TrafficMetrics::new(&register);
        let peer_tls = PeerTlsMetrics::new(&register);
        let tcp = TcpMetrics::new(&register);
        let build = register.gauge_vec(
            "understudy_build_info",
            "Always 1; the labels name the running build.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let watchers = register.gauge(
            "understudy_watchers",
            "Open GET /watch streams on the admin server (at most 64).",
        );
        let process = prometheus::process_collector::ProcessCollector::for_self();
        registry
            .register(Box::new(process))
            .expect("process metric names are unique");
        Metrics {
            registry,
            election,
            traffic,
            peer_tls,
            tcp,
            slots: Arc::new(per_slot),
            slot_views: Arc::new(OnceLock::new()),
            watchers,
        }
    }

    /// The gauge of open `GET /watch` streams (`understudy_watchers`).
    pub fn watchers(&self) -> IntGauge {
        self.watchers.clone()
    }

    /// The bound on the proxy port's connections, counted in the proxy's metrics.
    pub fn connection_limit(&self, max: usize) -> crate::limits::ConnectionLimit {
        crate::limits::ConnectionLimit::new(
            max,
            self.traffic.connections_open.clone(),
            self.traffic.connections_rejected.clone(),
        )
    }

    /// The counter of requests the server refuses for carrying both `Content-Length` and
    /// `Transfer-Encoding` (`understudy_proxy_sidecar_answers_total{reason="smuggling"}`).
    pub fn smuggling_refused(&self) -> prometheus::IntCounter {
        self.traffic.answer(Answer::Smuggling)
    }

    /// The counters of TCP mode (`--mode tcp`).
    pub fn tcp(&self) -> TcpMetrics {
        self.tcp.clone()
    }

    /// The counters of the mTLS peer channel.
    pub fn peer_tls(&self) -> PeerTlsMetrics {
        self.peer_tls.clone()
    }

    /// The hook to hand to [`understudy_elector::spawn_observed`].
    pub fn observer(&self) -> Arc<dyn Observer> {
        if self.slots.is_empty() {
            return Arc::new(self.election.clone());
        }
        Arc::new(SlotObserver(
            self.slots
                .iter()
                .map(|(_, m, lease)| (lease.clone(), m.clone()))
                .collect(),
        ))
    }

    /// The per-slot views for the `slot`-labelled gauges (N > 1 slots).
    pub fn follow_slots(&self, slots: watch::Receiver<Slots>) {
        let _ = self.slot_views.set(slots);
    }

    /// Records one finished request: its route, status class and duration, and, when the
    /// sidecar answered it itself (421/502/503, marked with an [`Answer`]), why.
    pub fn request<B>(&self, route: Kind, response: &Response<B>, seconds: f64) {
        self.traffic.request(route, response, seconds);
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        InFlight::new(&self.traffic.in_flight)
    }

    /// Counts an attempt sent again.
    pub fn retry(&self, why: Retry) {
        self.retries(why).inc();
    }

    /// The counter of attempts sent again for `why`, for a part that counts on its own.
    pub fn retries(&self, why: Retry) -> IntCounter {
        self.traffic.retries.with_label_values(&[why.as_str()])
    }

    /// Counts a failed connection for an attempt on `route`: to the local app for `local`,
    /// to the leader's sidecar otherwise.
    pub fn connect_error(&self, route: Kind) {
        let target = if route == Kind::Local {
            "upstream"
        } else {
            "peer"
        };
        self.traffic
            .connect_errors
            .with_label_values(&[target])
            .inc();
    }

    /// Starts timing a wait for a leader; see [`HoldTimer`].
    pub fn hold_timer(&self) -> HoldTimer {
        HoldTimer::new(&self.traffic.hold)
    }

    /// Everything in Prometheus text format, after setting the gauges that mirror `view` at
    /// `now` and the `held` requests.
    pub fn render(&self, view: &View, now: Instant, held: usize) -> String {
        self.election.mirror(view, now);
        if let Some(slots) = self.slot_views.get() {
            let slots = slots.borrow().clone();
            for (i, (_, m, _)) in self.slots.iter().enumerate() {
                let Some(mut v) = slots.views.get(i).cloned() else {
                    continue;
                };
                // Only the slot the gate gave this pod counts as led.
                if v.role == Role::Leader && slots.held != Some(i) {
                    v.role = Role::Candidate;
                    v.acting_until = None;
                    v.leader = None;
                }
                m.mirror(&v, now);
            }
        }
        self.traffic
            .held
            .set(i64::try_from(held).unwrap_or(i64::MAX));
        let mut families = self.registry.gather();
        for (registry, _, _) in self.slots.iter() {
            for mut family in registry.gather() {
                match families.iter_mut().find(|f| f.name() == family.name()) {
                    Some(f) => f.mut_metric().extend(family.take_metric()),
                    None => families.push(family),
                }
            }
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Hands each elector hook call to the metrics of the slot whose Lease it is about.
struct SlotObserver(HashMap<String, ElectionMetrics>);

impl Observer for SlotObserver {
    fn api_call(&self, lease: &str, call: &ApiCall) {
        if let Some(m) = self.0.get(lease) {
            m.api_call(lease, call);
        }
    }

    fn renew(&self, lease: &str, latency: std::time::Duration, result: Result<(), RenewFailure>) {
        if let Some(m) = self.0.get(lease) {
            m.renew(lease, latency, result);
        }
    }

    fn watch_opened(&self, lease: &str, why: WatchOpened) {
        if let Some(m) = self.0.get(lease) {
            m.watch_opened(lease, why);
        }
    }

    fn leadership(&self, lease: &str, change: Leadership) {
        if let Some(m) = self.0.get(lease) {
            m.leadership(lease, change);
        }
    }

    fn transition(&self, lease: &str, transition: &Transition) {
        if let Some(m) = self.0.get(lease) {
            m.transition(lease, transition);
        }
    }

    fn failsafe(&self, lease: &str, event: FailsafeEvent) {
        if let Some(m) = self.0.get(lease) {
            m.failsafe(lease, event);
        }
    }
}

/// Creates collectors and registers them. Names and labels are constants of this module, so
/// a failure is a programming error caught by the first test that builds [`Metrics`].
struct Register<'a>(&'a Registry);

impl Register<'_> {
    fn add<C: Collector + Clone + 'static>(&self, collector: C) -> C {
        self.0
            .register(Box::new(collector.clone()))
            .expect("metric names are unique");
        collector
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::with_opts(Opts::new(name, help)).expect("valid metric"))
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::with_opts(Opts::new(name, help)).expect("valid metric"))
    }

    fn seconds(&self, name: &str, help: &str) -> Gauge {
        self.add(Gauge::with_opts(Opts::new(name, help)).expect("valid metric"))
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(Histogram::with_opts(opts).expect("valid metric"))
    }

    fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, labels).expect("valid metric"))
    }
}

/// Buckets for API calls and renews: a healthy API server answers in milliseconds, and a
/// call is cut at its timeout (a few seconds).
const API_BUCKETS: &[f64] = &[
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[cfg(test)]
mod tests;
