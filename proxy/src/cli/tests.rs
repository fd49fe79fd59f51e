use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("understudy").chain(args.iter().copied()))
}

fn error_text(args: &[&str]) -> String {
    parse(args).expect_err("should be refused").to_string()
}

#[test]
fn seed_invocation_parses_with_defaults() {
    let cli = parse(&["--election", "example", "--http", "0.0.0.0:4040"]).unwrap();
    assert_eq!(cli.election.election, "example");
    assert_eq!(cli.admin.http, "0.0.0.0:4040".parse().unwrap());
    assert_eq!(cli.admin.ready_when, ReadyWhen::Synced);
    assert_eq!(cli.admin.drain, Duration::from_secs(5));
    assert!(cli.proxy.listen.is_none(), "no proxy unless --listen");
    assert_eq!(cli.proxy.upstream, "127.0.0.1:80");
    assert_eq!(cli.proxy.max_held, 1024);
    assert!(!cli.proxy.access_log);
}

#[test]
fn every_flag_parses() {
    let cli = parse(&[
        "--election",
        "e",
        "--election-namespace",
        "ns",
        "--id",
        "pod-a",
        "--http",
        "127.0.0.1:1",
        "--ttl",
        "20s",
        "--lease-duration",
        "15s",
        "--renew-deadline",
        "9s",
        "--retry-period",
        "1500ms",
        "--listen",
        "127.0.0.2:8080",
        "--upstream",
        "localhost:9000",
        "--advertise",
        "10.0.0.1:8080",
        "--hold-timeout",
        "3s",
        "--max-held",
        "7",
        "--drain",
        "0s",
        "--ready-when",
        "leader",
        "--access-log",
        "--connect-timeout",
        "250ms",
        "--header-read-timeout",
        "2s",
        "--idle-timeout",
        "1m",
        "--max-header-bytes",
        "16384",
        "--max-headers",
        "50",
    ])
    .unwrap();
    assert_eq!(cli.election.election_namespace.as_deref(), Some("ns"));
    assert_eq!(cli.election.id.as_deref(), Some("pod-a"));
    assert_eq!(cli.election.ttl, Some(Duration::from_secs(20)));
    assert_eq!(cli.election.retry_period, Some(Duration::from_millis(1500)));
    assert_eq!(cli.proxy.listen, Some("127.0.0.2:8080".parse().unwrap()));
    assert_eq!(cli.proxy.hold_timeout, Some(Duration::from_secs(3)));
    assert_eq!(cli.admin.ready_when, ReadyWhen::Leader);
    assert!(cli.proxy.access_log);
    assert_eq!(cli.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(cli.limits.max_headers, 50);
}

#[test]
fn bad_values_name_their_flag() {
    for (args, flag) in [
        (&["--election", "e", "--ttl", "10x"][..], "--ttl"),
        (&["--election", "e", "--http", "nowhere"][..], "--http"),
        (&["--election", "e", "--listen", "8080"][..], "--listen"),
        (
            &["--election", "e", "--ready-when", "always"][..],
            "--ready-when",
        ),
        (&["--election", "e", "--max-held", "many"][..], "--max-held"),
        (&["--election", "e", "--drain", "soon"][..], "--drain"),
        (
            &["--election", "e", "--retry-period", "2"][..],
            "--retry-period",
        ),
    ] {
        let text = error_text(args);
        assert!(text.contains(flag), "{args:?}: {text}");
    }
}

#[test]
fn election_is_required() {
    let text = error_text(&["--http", "0.0.0.0:4040"]);
    assert!(text.contains("--election"), "{text}");
}

#[test]
fn unknown_flag_is_named() {
    let text = error_text(&["--election", "e", "--lisen", "1"]);
    assert!(text.contains("--lisen"), "{text}");
}

/// Env vars are process-global: this one test sets and clears them all, alone.
#[test]
fn flags_come_from_env_too() {
    let vars = [
        ("UNDERSTUDY_ELECTION", "from-env"),
        ("UNDERSTUDY_LISTEN", "127.0.0.3:8080"),
        ("UNDERSTUDY_READY_WHEN", "leader"),
        ("UNDERSTUDY_ACCESS_LOG", "yes"),
        ("UNDERSTUDY_HOLD_TIMEOUT", "4s"),
    ];
    // std::env::set_var is unsafe in edition 2024 (and racy across threads): set the
    // variables on a child run of this very test instead.
    let exe = std::env::current_exe().unwrap();
    if std::env::var("UNDERSTUDY_ENV_CHILD").is_ok() {
        let cli = parse(&["--upstream", "127.0.0.1:81"]).unwrap();
        assert_eq!(cli.election.election, "from-env");
        assert_eq!(cli.proxy.listen, Some("127.0.0.3:8080".parse().unwrap()));
        assert_eq!(cli.admin.ready_when, ReadyWhen::Leader);
        assert!(cli.proxy.access_log);
        assert_eq!(cli.proxy.hold_timeout, Some(Duration::from_secs(4)));
        assert_eq!(
            cli.proxy.upstream, "127.0.0.1:81",
            "a flag wins over the env"
        );
        return;
    }
    let status = std::process::Command::new(exe)
        .args([
            "--exact",
            "cli::tests::flags_come_from_env_too",
            "--nocapture",
        ])
        .env("UNDERSTUDY_ENV_CHILD", "1")
        .env("UNDERSTUDY_UPSTREAM", "127.0.0.1:99")
        .envs(vars)
        .status()
        .unwrap();
    assert!(status.success());
}

fn normalized(args: &[&str]) -> Vec<String> {
    normalize_args(std::iter::once("understudy").chain(args.iter().copied()))
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect()
}

#[test]
fn the_old_images_go_style_single_dash_flags_are_accepted() {
    let args = normalized(&[
        "-election=example",
        "-http",
        "0.0.0.0:4040",
        "-use-cluster-credentials",
        "-id=pod-a",
        "-ttl=20s",
    ]);
    let cli = Cli::try_parse_from(&args).unwrap();
    assert_eq!(cli.election.election, "example");
    assert_eq!(cli.admin.http, "0.0.0.0:4040".parse().unwrap());
    assert_eq!(cli.use_cluster_credentials, Some(true));
    assert_eq!(cli.election.id.as_deref(), Some("pod-a"));
    assert_eq!(cli.election.ttl, Some(Duration::from_secs(20)));
}

#[test]
fn normalizing_leaves_values_short_flags_and_unknown_names_alone() {
    assert_eq!(
        normalized(&["--id", "-election", "-h", "-x", "--", "-http"]),
        ["understudy", "--id", "-election", "-h", "-x", "--", "-http"]
    );
    // An unknown single-dash word stays as it is: clap refuses it.
    assert!(parse(&["--election", "e", "-nope"]).is_err());
}

#[test]
fn use_cluster_credentials_takes_the_old_forms_and_nothing_else() {
    for (arg, want) in [
        ("--use-cluster-credentials", true),
        ("--use-cluster-credentials=true", true),
        ("--use-cluster-credentials=false", false),
    ] {
        let cli = parse(&["--election", "e", arg]).unwrap();
        assert_eq!(cli.use_cluster_credentials, Some(want), "{arg}");
    }
    assert!(
        parse(&["--election", "e"])
            .unwrap()
            .use_cluster_credentials
            .is_none()
    );
    // A bool flag never swallows the next word (as in Go's flag package).
    assert!(parse(&["--election", "e", "--use-cluster-credentials", "yes"]).is_err());
}

#[test]
fn log_format_is_text_or_json() {
    assert_eq!(
        parse(&["--election", "e"]).unwrap().log_format,
        LogFormat::Text
    );
    let cli = parse(&["--election", "e", "--log-format", "json"]).unwrap();
    assert_eq!(cli.log_format, LogFormat::Json);
    assert!(error_text(&["--election", "e", "--log-format", "xml"]).contains("text, json"));
}
