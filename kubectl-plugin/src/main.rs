//! `kubectl-understudy`: a kubectl plugin for understudy elections. Once on `PATH`,
//! `kubectl understudy status` shows each election's slots (holder, epoch, how long held,
//! failsafe) and members (freshness, readiness, priority), and `kubectl understudy
//! switchover ELECTION` asks the holder to hand over and waits for the outcome.
//!
//! It reads and patches `coordination.k8s.io/v1` Leases and lists Events, nothing else; the
//! Role it needs is in docs/kubectl-plugin.md. Exit status 0 on success, 1 on any error
//! (usage, not found, forbidden, refused, timeout), as kubectl.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cli;
mod discover;
mod election;
mod error;
mod names;
mod render;
mod switchover;

use std::process::ExitCode;

use clap::Parser;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use kube::Api;

use crate::cli::{Cli, Command, Output, StatusArgs, SwitchoverArgs};
use crate::discover::Leases;
use crate::error::Error;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version on stdout with 0; usage errors (`error: …`) on stderr with 1.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    let (client, namespace) = cli.connection.connect().await?;
    let leases = Leases::new(client.clone(), &namespace);
    match cli.command {
        Command::Status(args) => status(&leases, &args).await,
        Command::Switchover(args) => {
            let events: Api<Event> = Api::namespaced(client, &namespace);
            switchover(&leases, &events, args).await
        }
    }
}

async fn status(leases: &Leases, args: &StatusArgs) -> Result<(), Error> {
    let now = Timestamp::now();
    let elections = match &args.election {
        Some(name) => vec![leases.one(name, now).await?],
        None => leases.all(now).await?,
    };
    match args.output {
        Some(Output::Json) => {
            let doc = render::document(leases.namespace(), &elections, now);
            let text = serde_json::to_string_pretty(&doc)
                .map_err(|e| Error::Failed(format!("render JSON: {e}")))?;
            println!("{text}");
        }
        None if elections.is_empty() => {
            eprintln!("No elections found in {} namespace.", leases.namespace());
        }
        None => print!("{}", render::table(&elections, now)),
    }
    Ok(())
}

async fn switchover(
    leases: &Leases,
    events: &Api<Event>,
    args: SwitchoverArgs,
) -> Result<(), Error> {
    let request = switchover::Request {
        election: args.election,
        slot: args.slot,
        from: args.from,
        to: args.to,
        wait: args.wait.0,
    };
    for line in switchover::run(leases, events, &request).await? {
        println!("{line}");
    }
    Ok(())
}
