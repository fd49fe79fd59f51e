//! The `understudy` sidecar as the harness starts it: which binary, which flags.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::HarnessError;

/// The sidecar's admin port (`--http 0.0.0.0:4040`, the old image's).
pub const ADMIN_PORT: u16 = 4040;
/// The sidecar's proxy port (`--listen`), the Service's targetPort.
pub const PROXY_PORT: u16 = 8080;

/// Health checking fast enough for a test: `/healthz` every 100ms, two failures make the app
/// unhealthy, one success healthy again.
pub const FAST_HEALTH_FLAGS: [&str; 8] = [
    "--upstream-health",
    "/healthz",
    "--health-interval",
    "100ms",
    "--health-failures",
    "2",
    "--health-successes",
    "1",
];

/// `--ready-when`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyWhen {
    /// Ready once the Lease was read: every pod takes traffic and the proxy routes.
    Synced,
    /// Only the leader is Ready (the old leader-elector behaviour).
    Leader,
}

/// The sidecar's flags that scenarios vary.
#[derive(Clone, Debug)]
pub struct SidecarOptions {
    /// `--election`.
    pub election: String,
    /// `--lease-duration`.
    pub lease_duration: Duration,
    /// `--renew-deadline`.
    pub renew_deadline: Duration,
    /// `--retry-period`.
    pub retry_period: Duration,
    /// `--hold-timeout`; `None` leaves the sidecar's default (lease + 2 × retry).
    pub hold_timeout: Option<Duration>,
    /// `--drain`: how long it keeps serving after SIGTERM.
    pub drain: Duration,
    /// `--ready-when`.
    pub ready_when: ReadyWhen,
    /// `--access-log`.
    pub access_log: bool,
    /// More flags, appended as given.
    pub extra_args: Vec<String>,
    /// `RUST_LOG` for the sidecar.
    pub log_filter: String,
}

impl Default for SidecarOptions {
    /// Test timings: a crashed leader is replaced within about 3.5s.
    fn default() -> Self {
        SidecarOptions {
            election: "nginx".into(),
            lease_duration: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(2),
            retry_period: Duration::from_millis(500),
            hold_timeout: None,
            drain: Duration::from_secs(2),
            ready_when: ReadyWhen::Synced,
            access_log: false,
            extra_args: Vec::new(),
            log_filter: "info".into(),
        }
    }
}

impl SidecarOptions {
    /// The hold timeout in force: the flag, or the sidecar's default.
    pub fn effective_hold_timeout(&self) -> Duration {
        self.hold_timeout
            .unwrap_or(self.lease_duration + 2 * self.retry_period)
    }

    /// The command line for pod `pod` at address `ip`, its admin server and proxy bound to
    /// `bind` (the wildcard in a pod's own namespace, so `localhost:4040` answers too).
    pub fn args(&self, pod: &str, ip: Ipv4Addr, bind: Ipv4Addr) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let mut args: Vec<String> = [
            "--election",
            &self.election,
            "--election-namespace",
            "default",
            "--id",
            pod,
            "--http",
            &format!("{bind}:{ADMIN_PORT}"),
            "--listen",
            &format!("{bind}:{PROXY_PORT}"),
            "--upstream",
            "127.0.0.1:80",
            "--advertise",
            &format!("{ip}:{PROXY_PORT}"),
            "--lease-duration",
            &ms(self.lease_duration),
            "--renew-deadline",
            &ms(self.renew_deadline),
            "--retry-period",
            &ms(self.retry_period),
            "--drain",
            &ms(self.drain),
            "--ready-when",
            match self.ready_when {
                ReadyWhen::Synced => "synced",
                ReadyWhen::Leader => "leader",
            },
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(hold) = self.hold_timeout {
            args.extend(["--hold-timeout".into(), ms(hold)]);
        }
        if self.access_log {
            args.push("--access-log".into());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// The `understudy` binary: `$UNDERSTUDY_BIN`, else `target/debug/understudy` beside the
/// running executable (a test in `target/debug/deps/`, the demo in `target/debug/`). With
/// `build`, `cargo build -p understudy-proxy` runs first (once per process), so a test
/// never runs a stale sidecar; a no-op when it is up to date.
pub fn binary(build: bool) -> Result<PathBuf, HarnessError> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| locate(build))
        .clone()
        .map_err(HarnessError::Binary)
}

fn locate(build: bool) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("UNDERSTUDY_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    let dir = exe.parent().ok_or("executable has no directory")?;
    let dir = if dir.ends_with("deps") {
        dir.parent().ok_or("deps has no parent")?
    } else {
        dir
    };
    if build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(&cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "understudy-proxy",
                "--bin",
                "understudy",
            ])
            .status()
            .map_err(|e| format!("run {cargo} build: {e}"))?;
        if !status.success() {
            return Err(format!(
                "`cargo build -p understudy-proxy` failed ({status})"
            ));
        }
    }
    let bin: &Path = &dir.join("understudy");
    if bin.is_file() {
        Ok(bin.to_path_buf())
    } else {
        Err(format!(
            "{} missing: build it with `cargo build -p understudy-proxy`, or set UNDERSTUDY_BIN",
            bin.display()
        ))
    }
}
