//! The kubelet's readiness probing, per pod: an HTTP GET on the pod's address (like
//! `httpGet` on the sidecar's `/readyz`) or a command run inside the pod's namespace (like
//! `exec`), every `period`, with the kubelet's success and failure thresholds. A container
//! that exits makes the pod unready at once, as the kubelet reports a dead container without
//! waiting for probes.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::PodTable;
use super::http::{self, HttpClient};

/// How readiness is probed.
#[derive(Clone, Debug)]
pub enum Probe {
    /// `httpGet`: 200..=399 on `http://<pod ip>:port/path` is success.
    Http {
        /// The port on the pod.
        port: u16,
        /// The path.
        path: String,
    },
    /// `exec`: exit 0 is success. Runs `sh -c command` inside the pod with `POD_NAME` set,
    /// e.g. `curl -s localhost:4040 | grep -q "$POD_NAME"` (the old tutorial's probe).
    Exec {
        /// The shell command.
        command: String,
    },
}

/// The probe and its timing (the kubelet's `readinessProbe` fields).
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// What to probe.
    pub probe: Probe,
    /// `periodSeconds`.
    pub period: Duration,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// `successThreshold`: consecutive successes to become Ready.
    pub success_threshold: u32,
    /// `failureThreshold`: consecutive failures to become unready.
    pub failure_threshold: u32,
}

impl ProbeOptions {
    /// `httpGet` on the sidecar's `/readyz` (admin port 4040), at test speed: every 200ms,
    /// unready after 2 failures.
    pub fn sidecar_readyz() -> ProbeOptions {
        ProbeOptions {
            probe: Probe::Http {
                port: super::sidecar::ADMIN_PORT,
                path: "/readyz".into(),
            },
            period: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 2,
        }
    }
}

/// What a prober needs to know about its pod.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    /// Pod name.
    pub pod: String,
    /// Pod address.
    pub ip: Ipv4Addr,
    /// Pod namespace (for `exec`).
    pub netns: String,
}

/// Starts probing `target`; `alive` tells whether all its containers still run.
pub fn spawn(
    target: ProbeTarget,
    opts: ProbeOptions,
    table: PodTable,
    alive: impl Fn() -> bool + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = http::client(false, opts.timeout);
        let (mut successes, mut failures) = (0u32, 0u32);
        let mut tick = tokio::time::interval(opts.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !alive() {
                table.set_ready(&target.pod, false);
                continue;
            }
            if probe_once(&client, &target, &opts).await {
                successes += 1;
                failures = 0;
                if successes >= opts.success_threshold {
                    table.set_ready(&target.pod, true);
                }
            } else {
                failures += 1;
                successes = 0;
                if failures >= opts.failure_threshold {
                    table.set_ready(&target.pod, false);
                }
            }
        }
    })
}

async fn probe_once(client: &HttpClient, target: &ProbeTarget, opts: &ProbeOptions) -> bool {
    match &opts.probe {
        Probe::Http { port, path } => {
            let addr = SocketAddr::from((target.ip, *port));
            matches!(
                http::get(client, addr, path, false, opts.timeout).await,
                Ok((status, _)) if status.is_success() || status.is_redirection()
            )
        }
        Probe::Exec { command } => {
            let child = tokio::process::Command::new("ip")
                .args(["netns", "exec", &target.netns, "sh", "-c", command])
                .env("POD_NAME", &target.pod)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status();
            matches!(
                tokio::time::timeout(opts.timeout, child).await,
                Ok(Ok(status)) if status.success()
            )
        }
    }
}
