//! Prometheus metrics, served as text on the admin server's `/metrics`.
//!
//! A first set; the full metric set is its own issue. Gauges that mirror state (leadership,
//! held requests) are set when scraped, so they cannot drift from the truth.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The sidecar's metrics and their registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// `understudy_requests_total{route,code}`: proxied requests by route and status class.
    pub requests: IntCounterVec,
    /// `understudy_request_duration_seconds`: time to the response head.
    pub duration: Histogram,
    /// `understudy_resends_total{reason}`: attempts sent again (`not_sent`, `reset`).
    pub resends: IntCounterVec,
    /// `understudy_is_leader`: 1 while this pod is the acting leader.
    pub is_leader: IntGauge,
    /// `understudy_leader_epoch`: the current leader's epoch (leaseTransitions).
    pub epoch: IntGauge,
    /// `understudy_held_requests`: requests waiting for a leader.
    pub held: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "understudy_requests_total",
                "Proxied requests by route and status class.",
            ),
            &["route", "code"],
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(HistogramOpts::new(
            "understudy_request_duration_seconds",
            "Time from request arrival to response head, including time held.",
        ))
        .expect("valid metric");
        let resends = IntCounterVec::new(
            Opts::new(
                "understudy_resends_total",
                "Request attempts sent again, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let is_leader = IntGauge::new(
            "understudy_is_leader",
            "1 while this pod is the acting leader.",
        )
        .expect("valid metric");
        let epoch = IntGauge::new(
            "understudy_leader_epoch",
            "Epoch (leaseTransitions) of the current leader.",
        )
        .expect("valid metric");
        let held = IntGauge::new("understudy_held_requests", "Requests waiting for a leader.")
            .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(resends.clone()),
            Box::new(is_leader.clone()),
            Box::new(epoch.clone()),
            Box::new(held.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            duration,
            resends,
            is_leader,
            epoch,
            held,
        }
    }

    /// Records one finished request.
    pub fn request(&self, route: &str, status: http::StatusCode, seconds: f64) {
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.with_label_values(&[route, class]).inc();
        self.duration.observe(seconds);
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
