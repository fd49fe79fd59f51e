//! The binary's answers to bad input, before it reaches any API server: exit status 2 and a
//! message that names the flag (or the `UNDERSTUDY_*` variable) and the rule.

use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_understudy"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run understudy")
}

/// Exit status 2; stderr, which must carry no colour codes when it is not a terminal.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(args, env);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes: {stderr:?}");
    stderr
}

#[test]
fn an_invalid_election_name_is_refused_with_the_rule() {
    let e = refused(&["--election", "Bad_Name!"], &[]);
    assert!(
        e.starts_with("error: --election: \"Bad_Name!\" is not a valid Lease name: a lowercase RFC 1123 subdomain"),
        "{e}"
    );
    let e = refused(&["--election", "ok", "--election-namespace", "Team_A"], &[]);
    assert!(e.contains("\"Team_A\" is not a valid namespace"), "{e}");
}

#[test]
fn a_bad_environment_variable_is_named() {
    let e = refused(&["--election", "x"], &[("UNDERSTUDY_MAX_HELD", "lots")]);
    assert!(
        e.starts_with(
            "error: environment variable UNDERSTUDY_MAX_HELD=\"lots\" (for --max-held): "
        ),
        "{e}"
    );
    let e = refused(
        &[],
        &[
            ("UNDERSTUDY_ELECTION", "x"),
            ("UNDERSTUDY_READY_WHEN", "sometimes"),
        ],
    );
    assert!(e.contains("UNDERSTUDY_READY_WHEN=\"sometimes\""), "{e}");
    assert!(e.contains("[possible values: synced, leader]"), "{e}");
    let e = refused(
        &["--election", "x"],
        &[("UNDERSTUDY_LEASE_DURATION", "ten")],
    );
    assert!(e.contains("UNDERSTUDY_LEASE_DURATION=\"ten\""), "{e}");
    // The same bad value on the command line: clap's own message, naming the flag.
    let e = refused(&["--election", "x", "--max-held", "lots"], &[]);
    assert!(e.contains("'--max-held <N>'"), "{e}");
    assert!(!e.contains("environment variable"), "{e}");
}

#[test]
fn a_header_limit_below_the_floor_is_refused() {
    let e = refused(
        &[
            "--election",
            "x",
            "--listen",
            "127.0.0.1:0",
            "--max-header-bytes",
            "1024",
        ],
        &[],
    );
    assert!(
        e.contains("--max-header-bytes: must be at least 8192"),
        "{e}"
    );
}

#[test]
fn help_lists_every_admin_path_and_the_log_format() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for path in [
        "/healthz", "/readyz", "/status", "/actives", "/metrics", "`/`",
    ] {
        assert!(help.contains(path), "--help lacks {path}:\n{help}");
    }
    assert!(help.contains("--log-format"), "{help}");
    assert!(help.contains("--use-cluster-credentials"), "{help}");
}
