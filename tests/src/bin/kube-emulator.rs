//! `kube-emulator`: the Kubernetes API emulator as a process, for scripts and kubectl.
//!
//! ```text
//! kube-emulator --listen 127.0.0.1:6443 --kubeconfig-out admin.kubeconfig \
//!     --client pod-a --client pod-b --kubeconfig-dir kubeconfigs/
//! ```
//!
//! Prints `kube-emulator listening on https://...` once ready and serves until SIGTERM/SIGINT.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use understudy_tests::emulator::{Emulator, EmulatorOptions};

/// Serve the Kubernetes API emulator.
#[derive(Debug, Parser)]
#[command(name = "kube-emulator", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "KUBE_EMULATOR_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Where to write the kubeconfig of the "admin" client.
    #[arg(long, env = "KUBE_EMULATOR_KUBECONFIG_OUT")]
    kubeconfig_out: PathBuf,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long, env = "KUBE_EMULATOR_PLAIN_HTTP")]
    plain_http: bool,
    /// Seed for fault injection dice and uids.
    #[arg(long, env = "KUBE_EMULATOR_SEED", default_value_t = 0)]
    seed: u64,
    /// A client identity to register; repeatable. Each gets DIR/NAME.kubeconfig.
    #[arg(long = "client")]
    clients: Vec<String>,
    /// Directory for the per-client kubeconfigs (default: beside --kubeconfig-out).
    #[arg(long, env = "KUBE_EMULATOR_KUBECONFIG_DIR")]
    kubeconfig_dir: Option<PathBuf>,
    /// Events kept for watches resuming from a resourceVersion.
    #[arg(long, default_value_t = 1000)]
    history_window: usize,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Start(#[from] understudy_tests::emulator::EmulatorError),
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("install signal handler: {0}")]
    Signal(std::io::Error),
}

fn write(emu: &Emulator, client: &str, path: PathBuf) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    emu.write_kubeconfig(client, &path)
        .map_err(|source| Error::Write { path, source })
}

async fn run(args: Args) -> Result<(), Error> {
    let opts = EmulatorOptions {
        listen: args.listen,
        tls: !args.plain_http,
        seed: args.seed,
        history_window: args.history_window,
        ..EmulatorOptions::default()
    };
    let emu = Emulator::start(opts).await?;
    write(&emu, "admin", args.kubeconfig_out.clone())?;
    let dir = args.kubeconfig_dir.clone().unwrap_or_else(|| {
        args.kubeconfig_out
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default()
    });
    for client in &args.clients {
        write(&emu, client, dir.join(format!("{client}.kubeconfig")))?;
    }
    // Scripts wait for this exact line; print it only once everything is in place.
    println!("kube-emulator listening on {}", emu.server_url());
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.map_err(Error::Signal)?,
    }
    emu.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
