//! kubectl, the one `tests/k8s/build` makes (v1.37.2, the API server's own version), run as a
//! user runs it: a kubeconfig and a command line.

use std::path::{Path, PathBuf};

use super::HarnessError;
use super::control_plane::k8s_bin;

/// kubectl with a kubeconfig.
#[derive(Clone, Debug)]
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// kubectl with `kubeconfig`.
    pub fn new(kubeconfig: &Path) -> Result<Kubectl, HarnessError> {
        Ok(Kubectl {
            bin: k8s_bin()?.join("kubectl"),
            kubeconfig: kubeconfig.to_path_buf(),
        })
    }

    /// The same binary with another kubeconfig (another user).
    pub fn with_kubeconfig(&self, kubeconfig: &Path) -> Kubectl {
        Kubectl {
            bin: self.bin.clone(),
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    /// The binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `kubectl args…`, its stdout; an error with its stderr if it fails.
    pub async fn run(&self, args: &[&str]) -> Result<String, HarnessError> {
        self.run_with_input(args, None).await
    }

    /// `kubectl args…` with `input` on stdin (`apply -f -`).
    pub async fn run_with_input(
        &self,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, HarnessError> {
        let out = self.output(args, input).await?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(HarnessError::Command {
                command: format!("kubectl {}", args.join(" ")),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// `kubectl args…` however it exits (for tests of refusals).
    pub async fn output(
        &self,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<std::process::Output, HarnessError> {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig);
        super::command::output(cmd, &format!("kubectl {}", args.join(" ")), input).await
    }
}
