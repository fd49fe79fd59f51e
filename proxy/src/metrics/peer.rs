//! Metrics of the mTLS peer channel: file reloads and refused handshakes.

use prometheus::IntCounterVec;

use super::Register;

/// Which way a TLS handshake went, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A peer connecting to this sidecar's peer port.
    Inbound,
    /// This sidecar connecting to a peer.
    Outbound,
}

impl Direction {
    /// Lower-case name, as used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Counters of the peer channel; cheap to clone. Registered whether the channel is on or
/// not (then they stay at 0).
#[derive(Clone, Debug)]
pub struct PeerTlsMetrics {
    reloads: IntCounterVec,
    handshake_failures: IntCounterVec,
}

impl PeerTlsMetrics {
    pub(super) fn new(r: &Register<'_>) -> PeerTlsMetrics {
        let m = PeerTlsMetrics {
            reloads: r.counter_vec(
                "understudy_peer_tls_reloads_total",
                "Changes of the --peer-tls-dir files seen, by result: ok (in use for new \
                 connections) or error (not loadable; the previous files stay in use).",
                &["result"],
            ),
            handshake_failures: r.counter_vec(
                "understudy_peer_tls_handshake_failures_total",
                "Failed TLS handshakes on the peer channel, by direction: inbound (refused \
                 on the peer port: no, or an untrusted, client certificate) or outbound.",
                &["direction"],
            ),
        };
        for result in ["ok", "error"] {
            m.reloads.with_label_values(&[result]);
        }
        for d in [Direction::Inbound, Direction::Outbound] {
            m.handshake_failures.with_label_values(&[d.as_str()]);
        }
        m
    }

    /// Counts a change of the files, loaded (`ok`) or not.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.with_label_values(&[result]).inc();
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&self, direction: Direction) {
        self.handshake_failures
            .with_label_values(&[direction.as_str()])
            .inc();
    }
}
