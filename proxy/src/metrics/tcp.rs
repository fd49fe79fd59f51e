//! TCP mode's metrics (`--mode tcp`): connections by route, bytes each way, and why
//! connections ended.

use prometheus::{IntCounter, IntCounterVec};

use super::Register;
use crate::route::Kind;

/// Why a TCP-mode connection ended, as `understudy_tcp_closes_total{reason}` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// Both sides finished (each end closed its half).
    Done,
    /// Reset or failed while bytes were moving.
    Error,
    /// Nothing moved either way for `--idle-timeout`.
    Idle,
    /// The leadership it was opened under ended (this pod stopped leading, or the leader it
    /// was handed to did).
    Leadership,
    /// No leader within the hold timeout.
    HoldTimeout,
    /// The hold queue was full.
    HoldFull,
    /// The local app or the leader's sidecar could not be connected to.
    Connect,
    /// Meant for another pod or out of hops; or for a port this leader does not serve.
    Misdirected,
    /// A sidecar's PROXY header was malformed or never arrived.
    BadHeader,
    /// The sidecar is shutting down.
    Shutdown,
}

impl Close {
    /// Every reason.
    pub const ALL: [Close; 10] = [
        Close::Done,
        Close::Error,
        Close::Idle,
        Close::Leadership,
        Close::HoldTimeout,
        Close::HoldFull,
        Close::Connect,
        Close::Misdirected,
        Close::BadHeader,
        Close::Shutdown,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Close::Done => "done",
            Close::Error => "error",
            Close::Idle => "idle",
            Close::Leadership => "leadership",
            Close::HoldTimeout => "hold_timeout",
            Close::HoldFull => "hold_full",
            Close::Connect => "connect",
            Close::Misdirected => "misdirected",
            Close::BadHeader => "bad_header",
            Close::Shutdown => "shutdown",
        }
    }
}

/// The TCP-mode counters; cheap to clone.
#[derive(Clone)]
pub struct TcpMetrics {
    connections: IntCounterVec,
    closes: IntCounterVec,
    bytes: IntCounterVec,
}

impl TcpMetrics {
    pub(super) fn new(r: &Register<'_>) -> TcpMetrics {
        let m = TcpMetrics {
            connections: r.counter_vec(
                "understudy_tcp_connections_total",
                "TCP-mode connections, by the route they took (local, forward, reject) once \
                 routed (held ones when the hold ended).",
                &["route"],
            ),
            closes: r.counter_vec(
                "understudy_tcp_closes_total",
                "TCP-mode connections ended, by reason (done, error, idle, leadership, \
                 hold_timeout, hold_full, connect, misdirected, bad_header, shutdown).",
                &["reason"],
            ),
            bytes: r.counter_vec(
                "understudy_tcp_bytes_total",
                "Bytes relayed in TCP mode: towards the app or leader (upstream), towards the \
                 client (downstream); counted as they pass.",
                &["direction"],
            ),
        };
        for kind in [Kind::Local, Kind::Forward, Kind::Reject] {
            m.connections.with_label_values(&[kind.as_str()]);
        }
        for close in Close::ALL {
            m.closes.with_label_values(&[close.as_str()]);
        }
        for direction in ["upstream", "downstream"] {
            m.bytes.with_label_values(&[direction]);
        }
        m
    }

    /// Counts a connection routed `route`.
    pub fn routed(&self, route: Kind) {
        self.connections.with_label_values(&[route.as_str()]).inc();
    }

    /// Counts a connection that ended for `why`.
    pub fn closed(&self, why: Close) {
        self.closes.with_label_values(&[why.as_str()]).inc();
    }

    /// The byte counter of one direction (`upstream` or `downstream`).
    pub fn bytes(&self, direction: &str) -> IntCounter {
        self.bytes.with_label_values(&[direction])
    }
}
