//! The `understudy` binary: parse, check, run.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use understudy_proxy::cli::{self, Cli, LogFormat};
use understudy_proxy::settings::{Environment, Settings};

fn main() -> ExitCode {
    let args = cli::normalize_args(std::env::args_os());
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // clap names the flag; a bad UNDERSTUDY_* variable is named as such.
            if let Some(msg) = cli::explain_env_error(&e, &args) {
                eprintln!("error: {msg}");
                return ExitCode::from(2);
            }
            e.exit();
        }
    };
    init_logs(cli.log_format);
    if cli.use_cluster_credentials.is_some() {
        tracing::info!(
            "--use-cluster-credentials has no effect: understudy uses the pod's service \
             account in a cluster, or --kubeconfig / $KUBECONFIG when given"
        );
    }
    let settings = match Settings::from_cli(&cli, &Environment::detect()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    // One thread by default: a sidecar should not start a worker per node CPU.
    let runtime = match cli.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(n))
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(understudy_proxy::sidecar::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at `$RUST_LOG` (default `info`): text, coloured only on a terminal, or JSON.
fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}
