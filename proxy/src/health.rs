//! Health-gated leadership (`--upstream-health`): the app's health decides whether this pod
//! may lead.
//!
//! A probe (an HTTP `GET` of a path on the app, or a TCP connect) runs every interval. The
//! [`Damper`] turns its results into a health state: unhealthy after `failures` failed probes
//! in a row, healthy again after `successes` passed ones in a row and no sooner than
//! `hold_down` after it last turned unhealthy, so a flapping app does not bounce leadership.
//! An unhealthy pod takes no slot; a leader that turns unhealthy releases its slot, so a
//! healthy standby takes over within one API round trip.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use understudy_elector::HealthReporter;

use crate::dial::{Dialer, Reach};
use crate::peer_tls::Alpn;

/// What is probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connect to the app.
    Tcp,
    /// `GET <path>` on the app; any 2xx or 3xx passes.
    Http(String),
}

impl Probe {
    /// `tcp`, or an absolute path such as `/healthz`.
    pub fn parse(s: &str) -> Option<Probe> {
        match s {
            "tcp" => Some(Probe::Tcp),
            p if p.starts_with('/') && !p.contains(char::is_whitespace) => {
                Some(Probe::Http(p.to_string()))
            }
            _ => None,
        }
    }
}

/// Health check settings.
#[derive(Clone, Debug)]
pub struct HealthSettings {
    /// What is probed.
    pub probe: Probe,
    /// Time between probes; also each probe's timeout.
    pub interval: Duration,
    /// Failed probes in a row that make the pod unhealthy.
    pub failures: u32,
    /// Passed probes in a row that make it healthy again.
    pub successes: u32,
    /// Least time unhealthy before turning healthy again.
    pub hold_down: Duration,
}

// === impl Damper ===

/// Turns probe results into a damped health state. Starts unhealthy: a pod leads only once
/// its app has passed `successes` probes.
#[derive(Clone, Debug)]
pub struct Damper {
    failures: u32,
    successes: u32,
    hold_down: Duration,
    healthy: bool,
    streak: u32,
    unhealthy_since: Option<Instant>,
}

impl Damper {
    /// A damper for `settings`.
    pub fn new(settings: &HealthSettings) -> Damper {
        Damper {
            failures: settings.failures.max(1),
            successes: settings.successes.max(1),
            hold_down: settings.hold_down,
            healthy: false,
            streak: 0,
            unhealthy_since: None,
        }
    }

    /// The current state.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// One probe result at `now`; returns the new state when it changed.
    pub fn record(&mut self, passed: bool, now: Instant) -> Option<bool> {
        if passed == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let flip = if passed {
            let held_down = self
                .unhealthy_since
                .is_some_and(|since| now.saturating_duration_since(since) < self.hold_down);
            self.streak >= self.successes && !held_down
        } else {
            self.streak >= self.failures
        };
        if !flip {
            return None;
        }
        self.healthy = passed;
        self.streak = 0;
        if !passed {
            self.unhealthy_since = Some(now);
        }
        Some(passed)
    }
}

// === run ===

/// Probes `upstream` forever, reporting each change of health to the election.
pub async fn run(settings: HealthSettings, upstream: String, reporter: HealthReporter) {
    let mut damper = Damper::new(&settings);
    // The whole probe is bounded by the interval; so is its connect.
    let dialer = Dialer::new(settings.interval, None);
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let passed = tokio::time::timeout(
            settings.interval,
            probe(&dialer, &settings.probe, &upstream),
        )
        .await
        .unwrap_or_else(|_| Err("timed out".to_string()));
        if let Err(why) = &passed {
            tracing::debug!(%upstream, why, "health probe failed");
        }
        if let Some(healthy) = damper.record(passed.is_ok(), Instant::now()) {
            tracing::info!(%upstream, healthy, "app health changed");
            reporter.set_healthy(healthy);
        }
    }
}

async fn probe(dialer: &Dialer, probe: &Probe, upstream: &str) -> Result<(), String> {
    let mut stream = dialer
        .dial(upstream, Reach::Plain, Alpn::Http1)
        .await
        .map_err(|e| e.to_string())?;
    let Probe::Http(path) = probe else {
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {upstream}\r\nUser-Agent: understudy-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    // The status line is all we need: "HTTP/1.1 200 ...".
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < 12 {
        let n = stream
            .read(&mut head[read..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let line = String::from_utf8_lossy(&head[..read]);
    match line.get(9..10) {
        Some("2" | "3") if line.starts_with("HTTP/1.") => Ok(()),
        _ => Err(format!("answered {line:?}")),
    }
}

#[cfg(test)]
mod tests;
