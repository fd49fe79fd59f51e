//! The `understudy` binary: parse, check, run.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use understudy_proxy::cli::Cli;
use understudy_proxy::settings::{Environment, Settings};

fn main() -> ExitCode {
    // clap prints a message naming the flag and exits 2 on a bad flag or value.
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = match Settings::from_cli(&cli, &Environment::detect()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
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
