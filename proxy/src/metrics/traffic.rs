//! Proxy metrics: what the sidecar does with each request.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::{Response, StatusCode};
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge};

use super::Register;
use crate::route::Kind;

/// Request durations include time held, bounded by the hold timeout (by default
/// leaseDuration + 2 x retryPeriod: 14s); streaming responses count until their head.
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Holds last from a moment (a release) to a lease duration or the hold timeout (a crash).
const HOLD_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Why the sidecar answered a request itself instead of an app. The proxy marks such a
/// response by putting this in its extensions; [`super::Metrics::request`] counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// 503: no leader to send to within the hold deadline.
    HoldTimeout,
    /// 503: the hold queue was full.
    HoldFull,
    /// 503: the leader could not be reached, or the request could not be sent again.
    Unavailable,
    /// 502: the request was sent, then the connection failed, and it may not be resent.
    BadGateway,
    /// 421: the request was meant for another pod.
    Misdirected,
    /// 421: passing the request on would exceed the hop limit.
    HopLimit,
    /// 503: too many requests were being handled already (`--max-requests`).
    RequestLimit,
    /// 400: an HTTP/1 request carried both `Content-Length` and `Transfer-Encoding`. Counted
    /// by the server, which refuses it before it is a request ([`crate::h1::server`]).
    Smuggling,
}

impl Answer {
    /// Every answer, e.g. to pre-create metric series.
    pub const ALL: [Answer; 8] = [
        Answer::HoldTimeout,
        Answer::HoldFull,
        Answer::Unavailable,
        Answer::BadGateway,
        Answer::Misdirected,
        Answer::HopLimit,
        Answer::RequestLimit,
        Answer::Smuggling,
    ];

    /// The status the sidecar answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Answer::HoldTimeout | Answer::HoldFull | Answer::Unavailable | Answer::RequestLimit => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Answer::BadGateway => StatusCode::BAD_GATEWAY,
            Answer::Misdirected | Answer::HopLimit => StatusCode::MISDIRECTED_REQUEST,
            Answer::Smuggling => StatusCode::BAD_REQUEST,
        }
    }

    /// Snake-case name, as used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::HoldTimeout => "hold_timeout",
            Answer::HoldFull => "hold_full",
            Answer::Unavailable => "unavailable",
            Answer::BadGateway => "bad_gateway",
            Answer::Misdirected => "misdirected",
            Answer::HopLimit => "hop_limit",
            Answer::RequestLimit => "request_limit",
            Answer::Smuggling => "smuggling",
        }
    }
}

/// Why an attempt was sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Retry {
    /// Nothing had reached an app: the connection failed, or a peer sidecar refused it.
    NotSent,
    /// The connection failed after sending began; an idempotent request went again.
    Reset,
    /// A pooled HTTP/1.1 connection the other end had closed failed the request's first
    /// write: nothing of it had left, and it went whole on a new connection, whatever its
    /// method.
    StaleConnection,
}

impl Retry {
    /// Snake-case name, as used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Retry::NotSent => "not_sent",
            Retry::Reset => "reset",
            Retry::StaleConnection => "stale_connection",
        }
    }
}

/// Status classes, by `status / 100 - 1`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The request counter and duration histogram of one (route, status class), resolved on
/// first use: the per-request path then skips the label hashing and lookup.
type Children = [[OnceLock<(IntCounter, Histogram)>; CLASSES.len()]; Kind::ALL.len()];

#[derive(Clone)]
pub(crate) struct TrafficMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    children: Arc<Children>,
    pub(super) in_flight: IntGauge,
    pub(super) held: IntGauge,
    pub(super) hold: HistogramVec,
    pub(super) connect_errors: IntCounterVec,
    pub(super) retries: IntCounterVec,
    answers: IntCounterVec,
    pub(super) connections_open: IntGauge,
    pub(super) connections_rejected: IntCounter,
}

impl TrafficMetrics {
    pub(crate) fn new(r: &Register<'_>) -> TrafficMetrics {
        let m = TrafficMetrics {
            requests: r.counter_vec(
                "understudy_proxy_requests_total",
                "Proxied requests, by route (local, forward, hold, reject) and status class.",
                &["route", "status_class"],
            ),
            duration: r.histogram_vec(
                "understudy_proxy_request_duration_seconds",
                "From request arrival to response head, time held included.",
                &["route", "status_class"],
                REQUEST_BUCKETS,
            ),
            children: Arc::new(Default::default()),
            in_flight: r.gauge(
                "understudy_proxy_requests_in_flight",
                "Requests being handled (held ones included), up to their response head.",
            ),
            held: r.gauge(
                "understudy_proxy_held_requests",
                "Requests holding a place in the hold queue.",
            ),
            hold: r.histogram_vec(
                "understudy_proxy_hold_duration_seconds",
                "Waits for a leader, by outcome (leader, timeout, cancelled).",
                &["outcome"],
                HOLD_BUCKETS,
            ),
            connect_errors: r.counter_vec(
                "understudy_proxy_connect_errors_total",
                "Failed connections, by target: upstream (the local app) or peer (the leader).",
                &["target"],
            ),
            retries: r.counter_vec(
                "understudy_proxy_retries_total",
                "Attempts sent again, by reason (not_sent, reset, stale_connection).",
                &["reason"],
            ),
            answers: r.counter_vec(
                "understudy_proxy_sidecar_answers_total",
                "Responses the sidecar gave itself instead of an app (400, 421, 502, 503), by reason.",
                &["code", "reason"],
            ),
            connections_open: r.gauge(
                "understudy_proxy_connections_open",
                "Client connections open on the proxy port.",
            ),
            connections_rejected: r.counter(
                "understudy_proxy_connections_rejected_total",
                "Client connections refused (503, closed) because --max-connections were open.",
            ),
        };
        for outcome in [HoldTimer::LEADER, HoldTimer::TIMEOUT, HoldTimer::CANCELLED] {
            m.hold.with_label_values(&[outcome]);
        }
        for target in ["upstream", "peer"] {
            m.connect_errors.with_label_values(&[target]);
        }
        for why in [Retry::NotSent, Retry::Reset, Retry::StaleConnection] {
            m.retries.with_label_values(&[why.as_str()]);
        }
        for answer in Answer::ALL {
            m.answers
                .with_label_values(&[answer.status().as_str(), answer.as_str()]);
        }
        m
    }

    /// The counter of one answer, for those counted where no response is at hand.
    pub(crate) fn answer(&self, answer: Answer) -> IntCounter {
        self.answers
            .with_label_values(&[answer.status().as_str(), answer.as_str()])
    }

    pub(crate) fn request<B>(&self, route: Kind, response: &Response<B>, seconds: f64) {
        let class = match response.status().as_u16() {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        let (count, duration) = self.children[route.index()][class].get_or_init(|| {
            let labels = [route.as_str(), CLASSES[class]];
            (
                self.requests.with_label_values(&labels),
                self.duration.with_label_values(&labels),
            )
        });
        count.inc();
        duration.observe(seconds);
        if let Some(answer) = response.extensions().get::<Answer>() {
            self.answers
                .with_label_values(&[answer.status().as_str(), answer.as_str()])
                .inc();
        }
    }
}

/// A request in flight; counted until dropped (so also when the client goes away).
pub struct InFlight(IntGauge);

impl InFlight {
    pub(super) fn new(gauge: &IntGauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Times one wait for a leader. [`HoldTimer::finish`] records it as ended by a leader or by
/// the deadline; dropped unfinished (the client went away), it records `cancelled`.
pub struct HoldTimer {
    started: Instant,
    histogram: HistogramVec,
    done: bool,
}

impl HoldTimer {
    const LEADER: &str = "leader";
    const TIMEOUT: &str = "timeout";
    const CANCELLED: &str = "cancelled";

    pub(super) fn new(histogram: &HistogramVec) -> HoldTimer {
        HoldTimer {
            started: Instant::now(),
            histogram: histogram.clone(),
            done: false,
        }
    }

    /// The wait ended: with a leader to send to (`true`) or at the deadline (`false`).
    pub fn finish(mut self, got_leader: bool) {
        self.record(if got_leader {
            Self::LEADER
        } else {
            Self::TIMEOUT
        });
    }

    fn record(&mut self, outcome: &str) {
        self.done = true;
        self.histogram
            .with_label_values(&[outcome])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for HoldTimer {
    fn drop(&mut self) {
        if !self.done {
            self.record(Self::CANCELLED);
        }
    }
}
