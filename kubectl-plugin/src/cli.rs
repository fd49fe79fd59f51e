//! The command line, as kubectl passes it to a plugin: everything after `kubectl understudy`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::Error;

/// How long a switchover is waited for by default.
const DEFAULT_WAIT: &str = "30s";

/// Inspect understudy elections and switch their leaders over.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-understudy",
    bin_name = "kubectl understudy",
    version,
    after_help = "Needs get/list/watch/patch on leases (coordination.k8s.io) and list on events \
                  in the namespace; see docs/kubectl-plugin.md."
)]
pub struct Cli {
    /// Where the API server is and which namespace to use.
    #[command(flatten)]
    pub connection: Connection,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The kubeconfig flags kubectl users expect.
#[derive(Debug, Args)]
pub struct Connection {
    /// The namespace (default: the kubeconfig context's namespace, else "default").
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show each election's slots (holder, epoch, how long held, failsafe) and members
    /// (status, readiness, priority).
    ///
    /// FAILSAFE is "on" when the slot's Lease carries the member set its holder last wrote
    /// (understudy.io/members). "possibly acting on confirmations" is added when the slot is
    /// held and its renewTime is older than understudy.io/member-expiry-seconds: the holder
    /// may be leading on its members' confirmations during an API outage, or it may be dead.
    /// The Lease alone cannot tell which.
    Status(StatusArgs),
    /// Ask a slot's holder to hand over (to POD, or to any healthy standby) and wait for the
    /// outcome.
    Switchover(SwitchoverArgs),
}

/// `status [ELECTION] [-o json]`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The election (default: every election with member Leases in the namespace).
    pub election: Option<String>,
    /// Output format: a table by default, or json.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
}

/// Output formats besides the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A JSON document (shape in docs/kubectl-plugin.md).
    Json,
}

/// `switchover ELECTION [--to POD] [--slot K | --from POD] [--wait DURATION]`.
#[derive(Debug, Args)]
pub struct SwitchoverArgs {
    /// The election.
    pub election: String,
    /// Hand over to this pod (default: any healthy standby).
    #[arg(long, value_name = "POD")]
    pub to: Option<String>,
    /// With several active slots: the slot to switch over.
    #[arg(long, value_name = "K")]
    pub slot: Option<usize>,
    /// With several active slots: the slot this pod holds.
    #[arg(long, value_name = "POD")]
    pub from: Option<String>,
    /// How long to wait for the outcome (ms, s, m, h); 0: write the request and return.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_WAIT)]
    pub wait: Wait,
}

/// A `--wait` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait(pub Duration);

impl std::str::FromStr for Wait {
    type Err = String;

    fn from_str(s: &str) -> Result<Wait, String> {
        if s.trim() == "0" {
            return Ok(Wait(Duration::ZERO));
        }
        understudy_core::parse_duration(s)
            .map(Wait)
            .map_err(|e| e.to_string())
    }
}

// === impl Connection ===

impl Connection {
    /// A client from `--kubeconfig`/`--context`, else kube's inference ($KUBECONFIG,
    /// ~/.kube/config, in-cluster), and the namespace to use.
    pub async fn connect(&self) -> Result<(kube::Client, String), Error> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let file = Kubeconfig::read_from(path)
                    .map_err(|e| Error::Config(format!("kubeconfig {}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| Error::Config(format!("kubeconfig {}: {e}", path.display())))?
            }
            (None, Some(_)) => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| Error::Config(format!("kubeconfig: {e}")))?,
            (None, None) => kube::Config::infer()
                .await
                .map_err(|e| Error::Config(format!("no Kubernetes configuration: {e}")))?,
        };
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config)
            .map_err(|e| Error::Config(format!("a client for the API server: {e}")))?;
        Ok((client, namespace))
    }
}

#[cfg(test)]
mod tests;
