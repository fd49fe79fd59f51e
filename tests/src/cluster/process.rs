//! A process the harness started (nginx, a sidecar): its pid, real signals, and its exit as
//! soon as it happens.

use std::process::ExitStatus;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::HarnessError;
use super::command::run;

/// A signal the harness sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Graceful shutdown (what the kubelet sends first).
    Term,
    /// Crash: no handler, no clean-up.
    Kill,
    /// nginx's graceful shutdown.
    Quit,
    /// PostgreSQL's fast shutdown (the postgres image's `STOPSIGNAL`).
    Int,
    /// Freeze (an outage where connections hang).
    Stop,
    /// Carry on after [`Signal::Stop`].
    Cont,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
            Signal::Quit => "QUIT",
            Signal::Int => "INT",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
        }
    }
}

/// A running (or exited) child process. Dropping it kills the process.
pub struct Proc {
    what: String,
    pid: u32,
    exit: watch::Receiver<Option<ExitStatus>>,
    waiter: JoinHandle<()>,
}

impl Proc {
    /// Spawns `cmd`; `what` names it in errors.
    pub fn spawn(mut cmd: tokio::process::Command, what: String) -> Result<Proc, HarnessError> {
        let mut child = cmd
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                command: what.clone(),
                source,
            })?;
        let pid = child.id().expect("a just-spawned child has a pid");
        let (tx, exit) = watch::channel(None);
        // Owns the child: reaps it the moment it exits, and kills it if the task is dropped
        // with the runtime.
        let waiter = tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                tx.send_replace(Some(status));
            }
        });
        Ok(Proc {
            what,
            pid,
            exit,
            waiter,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What it is (the name given at spawn).
    pub fn what(&self) -> &str {
        &self.what
    }

    /// How it exited, once it has.
    pub fn exited(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Sends `signal` (through kill(1)); a no-op once the process has exited, so that a
    /// recycled pid is never signalled.
    pub async fn signal(&self, signal: Signal) -> Result<(), HarnessError> {
        if self.exited().is_some() {
            return Ok(());
        }
        match run("kill", &["-s", signal.name(), &self.pid.to_string()]).await {
            // It exited between the check and the kill.
            Err(_) if self.exited().is_some() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Sends `signal` to the process's whole process group (for a process spawned as the
    /// leader of its own group, `Command::process_group(0)`): what a container runtime does
    /// to a container's cgroup. A no-op once the leader has exited and been reaped, so
    /// that a recycled group id is never signalled; use [`Proc::kill_group_now`] for what
    /// outlives the leader.
    pub async fn signal_group(&self, signal: Signal) -> Result<(), HarnessError> {
        if self.exited().is_some() {
            return Ok(());
        }
        let group = format!("-{}", self.pid);
        match run("kill", &["-s", signal.name(), "--", &group]).await {
            Err(_) if self.exited().is_some() => Ok(()),
            other => other.map(drop),
        }
    }

    /// SIGKILL to the process group even after the leader has exited: its children (nginx
    /// workers) may outlive it. The group id cannot be reused while any member lives.
    pub async fn kill_group_now(&self) {
        let group = format!("-{}", self.pid);
        let _ = run("kill", &["-s", "KILL", "--", &group]).await;
    }

    /// Waits until the process has exited, at most `within`.
    pub async fn wait(&self, within: Duration) -> Result<ExitStatus, HarnessError> {
        let mut exit = self.exit.clone();
        let waited = tokio::time::timeout(within, exit.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(status)) => Ok(status.expect("waited for Some")),
            // The waiter is gone without a status: it could not wait (not expected).
            Ok(Err(_)) => Err(HarnessError::timeout(
                format!("exit of {}", self.what),
                within,
            )),
            Err(_) => Err(HarnessError::timeout(
                format!("exit of {}", self.what),
                within,
            )),
        }
    }

    /// SIGKILL and wait for the exit.
    pub async fn kill(&self) -> Result<ExitStatus, HarnessError> {
        self.signal(Signal::Kill).await?;
        self.wait(Duration::from_secs(10)).await
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Aborting drops the child handle, and kill_on_drop sends SIGKILL.
        self.waiter.abort();
    }
}
