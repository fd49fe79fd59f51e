//! What the sidecar's log says when the cluster or the app is the problem: an API refusal
//! with its status, reason and message; a leader whose own app is down, once per interval;
//! `--log-format json` lines a pipeline can parse; no colour codes off a terminal.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use understudy_tests::cluster::loopback::{Loopback, free_port, get};
use understudy_tests::cluster::sidecar::{TEST_TIMINGS, binary};

/// A sidecar started by hand, its stderr piped to the test.
struct Logged {
    child: Child,
    lines: tokio::io::Lines<BufReader<ChildStderr>>,
    seen: Vec<String>,
}

impl Logged {
    async fn start(world: &Loopback, args: &[&str]) -> Logged {
        let kubeconfig = world.kubeconfig("logged").await;
        let admin = free_port(Ipv4Addr::LOCALHOST).await;
        let mut child = Command::new(binary(true).unwrap())
            .env_clear()
            .env("RUST_LOG", "info")
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(["--id", "pod-a", "--http", &admin.to_string()])
            .args(TEST_TIMINGS.args())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start understudy");
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        Logged {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stderr until a line matches, within `within`; returns it.
    async fn until(&mut self, within: Duration, what: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(within, async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.seen.push(line.clone());
                if what(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!(
                "no such line within {within:?}; the log:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Everything logged until now (after a SIGKILL: the whole log).
    async fn rest(mut self) -> Vec<String> {
        self.child.kill().await.unwrap();
        while let Ok(Some(line)) = self.lines.next_line().await {
            self.seen.push(line);
        }
        self.seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_refusal_is_logged_with_status_reason_and_message() {
    let world = Loopback::start("refused").await;
    // deploy/base's Role is in `default`; the same ServiceAccount has no rights here.
    let mut pod = Logged::start(
        &world,
        &[
            "--election",
            "refused",
            "--election-namespace",
            "kube-public",
        ],
    )
    .await;
    let line = pod
        .until(Duration::from_secs(20), |l| {
            l.contains("reading lease failed")
        })
        .await;
    assert!(line.contains("403 Forbidden: "), "{line}");
    assert!(
        line.contains(
            "cannot get resource \\\"leases\\\" in API group \\\"coordination.k8s.io\\\""
        ) || line.contains("cannot get resource \"leases\" in API group \"coordination.k8s.io\""),
        "names the verb and the resource: {line}"
    );
    assert!(
        line.contains("system:serviceaccount:default:understudy"),
        "{line}"
    );
    assert!(
        !line.contains('\u{1b}'),
        "no colour off a terminal: {line:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_app_is_down_says_so_in_its_answers_and_once_in_its_log() {
    let world = Loopback::start("app-down").await;
    let listen = free_port(Ipv4Addr::LOCALHOST).await;
    let app: SocketAddr = free_port(Ipv4Addr::LOCALHOST).await; // nothing listens there
    let mut pod = Logged::start(
        &world,
        &[
            "--election",
            "app-down",
            "--listen",
            &listen.to_string(),
            "--upstream",
            &app.to_string(),
            "--hold-timeout",
            "1s",
            "--log-format",
            "json",
        ],
    )
    .await;
    pod.until(Duration::from_secs(20), |l| {
        l.contains("\"role\":\"leader\"")
    })
    .await;
    for _ in 0..3 {
        let (status, body) = get(listen, "/", Duration::from_secs(5)).await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            body.contains(&format!(
                "this pod leads, but its app at {app} did not accept"
            )),
            "{body}"
        );
        assert!(!body.contains("no leader"), "{body}");
    }
    let log = pod.rest().await;
    let mut warnings = 0;
    for line in &log {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("--log-format json: not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        let msg = v["fields"]["message"].as_str().unwrap_or_default();
        if msg.starts_with("this pod leads, but its app does not accept connections") {
            warnings += 1;
            assert_eq!(v["level"], "WARN", "{line}");
            assert_eq!(v["fields"]["app"], app.to_string(), "{line}");
            assert!(
                v["fields"]["error"]
                    .as_str()
                    .is_some_and(|e| e.to_lowercase().contains("refused")),
                "{line}"
            );
        }
    }
    // Three requests, each retrying for a second: dozens of refused connects, one warning.
    assert_eq!(
        warnings,
        1,
        "rate-limited to one per 10s:\n{}",
        log.join("\n")
    );
}
