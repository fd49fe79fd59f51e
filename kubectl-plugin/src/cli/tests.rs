use std::time::Duration;

use clap::Parser;

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("kubectl-understudy").chain(args.iter().copied()))
}

#[test]
fn status_flags() {
    let cli = parse(&["status", "web", "-n", "prod", "-o", "json"]).unwrap();
    assert_eq!(cli.connection.namespace.as_deref(), Some("prod"));
    let Command::Status(s) = cli.command else {
        panic!()
    };
    assert_eq!(s.election.as_deref(), Some("web"));
    assert_eq!(s.output, Some(Output::Json));
    // The namespace flag before the subcommand, as kubectl users write it.
    let cli = parse(&["-n", "prod", "status"]).unwrap();
    assert_eq!(cli.connection.namespace.as_deref(), Some("prod"));
}

#[test]
fn switchover_flags() {
    let cli = parse(&["switchover", "web", "--to", "pod-b", "--wait", "10s"]).unwrap();
    let Command::Switchover(s) = cli.command else {
        panic!()
    };
    assert_eq!(s.to.as_deref(), Some("pod-b"));
    assert_eq!(s.wait, Wait(Duration::from_secs(10)));
    let Command::Switchover(s) = parse(&["switchover", "web"]).unwrap().command else {
        panic!()
    };
    assert_eq!(s.wait, Wait(Duration::from_secs(30)));
    let Command::Switchover(s) = parse(&["switchover", "web", "--wait", "0"])
        .unwrap()
        .command
    else {
        panic!()
    };
    assert_eq!(s.wait, Wait(Duration::ZERO));
}

#[test]
fn usage_errors() {
    assert!(parse(&["switchover"]).is_err());
    assert!(parse(&["status", "-o", "yaml"]).is_err());
    assert!(parse(&["switchover", "web", "--wait", "soon"]).is_err());
    assert!(parse(&["switchover", "web", "--slot", "-1"]).is_err());
}
