//! The `understudy` sidecar as tests start it: which binary, which ports, which timings.

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

/// Election timings (the sidecar's `--lease-duration`, `--renew-deadline`,
/// `--retry-period`): the one place tests, the client-go candidate and the elector tests take
/// them from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// `--lease-duration`.
    pub lease: Duration,
    /// `--renew-deadline`.
    pub renew_deadline: Duration,
    /// `--retry-period`.
    pub retry: Duration,
}

/// Timings for tests: a crashed leader is replaced within about 3.5s.
pub const TEST_TIMINGS: Timings = Timings {
    lease: Duration::from_secs(3),
    renew_deadline: Duration::from_secs(2),
    retry: Duration::from_millis(500),
};

/// Slow timings: a Lease that is not released takes 8s or more to change hands.
pub const SLOW_TIMINGS: Timings = Timings {
    lease: Duration::from_secs(10),
    renew_deadline: Duration::from_secs(6),
    retry: Duration::from_secs(2),
};

impl Timings {
    /// The three flags with their values, as the sidecar and the client-go candidate take
    /// them (`--lease-duration=3s`).
    pub fn args(&self) -> Vec<String> {
        [
            ("--lease-duration", self.lease),
            ("--renew-deadline", self.renew_deadline),
            ("--retry-period", self.retry),
        ]
        .iter()
        .map(|(flag, d)| format!("{flag}={}ms", d.as_millis()))
        .collect()
    }

    /// The sidecar's default hold timeout at these timings: lease + 2 × retry.
    pub const fn hold(&self) -> Duration {
        self.lease.saturating_add(self.retry.saturating_mul(2))
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
