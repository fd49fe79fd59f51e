//! Running the system tools the harness is made of (`ip`, `iptables`, `kill`, `sh`), with
//! errors that carry the command line and its stderr.

use std::process::{Output, Stdio};

use tokio::io::AsyncWriteExt;

use super::HarnessError;

fn line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

fn check(command: String, out: Output) -> Result<String, HarnessError> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(HarnessError::Command {
        command,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Runs `program args…` to completion; its stdout on success.
pub(crate) async fn run(program: &str, args: &[&str]) -> Result<String, HarnessError> {
    run_with_input(program, args, None).await
}

/// Runs `program args…` with `input` on stdin (e.g. `iptables-restore`).
pub(crate) async fn run_with_input(
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, HarnessError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    let command = line(program, args);
    let out = output(cmd, &command, input).await?;
    check(command, out)
}

/// Runs `cmd` (described as `command` in errors) to completion with `input` on stdin; its
/// output, however it exited.
pub(crate) async fn output(
    mut cmd: tokio::process::Command,
    command: &str,
    input: Option<&str>,
) -> Result<Output, HarnessError> {
    let spawn_error = |source| HarnessError::Spawn {
        command: command.to_string(),
        source,
    };
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A cancelled caller (an aborted controller task) must not leave a tool running
        // that would change the network after clean-up.
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(spawn_error)?;
    }
    child.wait_with_output().await.map_err(spawn_error)
}

/// The blocking twin of [`run`], for `Drop` and for start-up work that happens before any
/// runtime exists.
pub(crate) fn run_blocking(program: &str, args: &[&str]) -> Result<String, HarnessError> {
    let command = line(program, args);
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HarnessError::Spawn {
            command: command.clone(),
            source,
        })?;
    check(command, out)
}

/// Fails with [`HarnessError::Missing`] unless `program` is on `PATH`.
pub(crate) fn require(program: &'static str, package: &'static str) -> Result<(), HarnessError> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if found {
        Ok(())
    } else {
        Err(HarnessError::Missing { program, package })
    }
}
