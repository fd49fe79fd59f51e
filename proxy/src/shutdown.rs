//! SIGTERM: hand leadership over, drain, finish what is in flight, exit 0.
//!
//! With the proxy on:
//! 1. `/readyz` starts failing, so the endpoints controller drops the pod. In TCP mode the
//!    leader then quiesces ([`TcpProxy::quiesce`]): new connections wait for the next leader,
//!    and the open ones get `--close-grace` to end by themselves while it still leads.
//! 2. The election steps down ([`SlotsHandle::step_down`]): a leader stops acting and writes the
//!    release (holder "") at once, so a standby takes over within one API round trip; a
//!    standby will not take over while it is going away. The election keeps watching, so
//!    requests that still arrive are forwarded to the new leader.
//! 3. For `--drain`, the proxy keeps accepting (endpoint removal takes a while to reach
//!    every node) and forwards; HTTP/1 responses carry `Connection: close`, so keep-alive
//!    clients reconnect through the Service rather than keep using this pod.
//! 4. Then it stops accepting, lets in-flight requests finish (bounded by the hold timeout),
//!    closes the remaining tunnels, and ends the election.
//!
//! Elector-only mode releases at once and exits, as the old leader-elector image did.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use understudy_elector::SlotsHandle;

use crate::admin::Admin;
use crate::proxy::Proxy;
use crate::tcp::TcpProxy;

/// SIGTERM and SIGINT handlers, installed early: until they are, either signal kills the
/// process without a handover.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either signal; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// What a shutdown stops, in order.
pub struct Shutdown {
    /// The election.
    pub handle: SlotsHandle,
    /// The admin server's state.
    pub admin: Admin,
    /// The proxy, with the token that stops its listener and the tracker of its connections.
    pub proxy: Option<(Proxy, CancellationToken, TaskTracker)>,
    /// TCP mode, with `--close-grace`.
    pub tcp: Option<(TcpProxy, Duration)>,
    /// `--drain`.
    pub drain: Duration,
    /// Longest wait for in-flight requests after the drain.
    pub finish: Duration,
}

impl Shutdown {
    /// Runs the sequence in the module docs.
    pub async fn run(self) {
        self.admin.set_draining();
        let Some((proxy, stop, connections)) = self.proxy else {
            release(self.handle).await;
            return;
        };
        proxy.start_draining();
        if let Some((tcp, grace)) = &self.tcp {
            tcp.quiesce_for_good(*grace).await;
        }
        // After the quiesce: connections held meanwhile need the drain to reach the next
        // leader.
        let handed_over = tokio::time::Instant::now();
        match self.handle.step_down().await {
            Ok(()) => tracing::info!(drain = ?self.drain, "lease released; draining"),
            Err(e) => tracing::warn!(error = %e, drain = ?self.drain, "step-down; draining anyway"),
        }
        // The drain counts from the step-down's start, not from its acknowledgement.
        let drain_end = handed_over + self.drain;
        tokio::time::sleep_until(drain_end).await;
        stop.cancel();
        connections.close();
        if tokio::time::timeout(self.finish, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(waited = ?self.finish, "in-flight requests still running; exiting anyway");
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), proxy.close_tunnels()).await;
        release(self.handle).await;
    }
}

async fn release(handle: SlotsHandle) {
    match handle.release().await {
        Ok(()) => tracing::info!("election ended"),
        Err(e) => tracing::warn!(error = %e, "release"),
    }
}
