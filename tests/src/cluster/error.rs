//! The harness's one error type. Every variant says what was being done, so a failed
//! scenario's message explains itself without a backtrace.

use std::path::PathBuf;
use std::time::Duration;

use crate::emulator::EmulatorError;

/// Why the local cluster could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The harness needs root for namespaces, veths and iptables.
    #[error(
        "the local cluster needs root (network namespaces, veth pairs, iptables); \
         run as root, e.g. `sudo ./run-tests` (CI runs as root)"
    )]
    NotRoot,
    /// A program the harness runs is not installed.
    #[error("`{program}` not found; install the Debian package `{package}`")]
    Missing {
        /// The program looked for.
        program: &'static str,
        /// The Debian package that ships it.
        package: &'static str,
    },
    /// A command could not be started.
    #[error("start `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// File-system work failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done, e.g. "write".
        what: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Every run slot (subnet) is taken by live runs.
    #[error("all {0} run slots are taken by live runs (see /run/understudy-harness)")]
    NoSlot(u8),
    /// The API emulator would not start.
    #[error("emulator: {0}")]
    Emulator(#[from] EmulatorError),
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: Duration,
    },
    /// The `understudy` binary could not be found or built.
    #[error("the understudy binary: {0}")]
    Binary(String),
    /// A pod name that the deployment does not know.
    #[error("no pod named {0}")]
    NoSuchPod(String),
    /// The world could not be set up as asked (a component, a certificate, a manifest).
    #[error("{0}")]
    Setup(String),
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done, e.g. "create pod nginx-ha/nginx-0".
        what: String,
        /// The client's error (with the API's status, reason and message).
        #[source]
        source: kube::Error,
    },
}

impl HarnessError {
    /// An [`HarnessError::Io`].
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HarnessError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// A [`HarnessError::Api`].
    pub fn api(what: impl Into<String>, source: kube::Error) -> Self {
        HarnessError::Api {
            what: what.into(),
            source,
        }
    }

    /// A [`HarnessError::Timeout`].
    pub fn timeout(what: impl Into<String>, after: Duration) -> Self {
        HarnessError::Timeout {
            what: what.into(),
            after,
        }
    }
}
