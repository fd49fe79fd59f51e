//! Real Prometheus tools for the observability tests: `promtool`, and a `prometheus` server
//! on 127.0.0.1 with its own storage, queried over its HTTP API (Debian's `prometheus`
//! package provides both; `run-tests` installs it).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use tokio::process::Child;

use understudy_tests::cluster::loopback::{eventually, free_port, get};

/// The files under test, in the repository's `dashboards/`.
pub fn dashboards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// Runs `promtool args...` with `stdin`; panics if it cannot be started.
pub fn promtool(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (Debian package `prometheus`; ./run-tests installs it)");
    let mut input = child.stdin.take().expect("piped");
    input
        .write_all(stdin.as_bytes())
        .expect("write to promtool");
    drop(input);
    child.wait_with_output().expect("promtool runs")
}

/// Panics with promtool's own words unless it succeeded.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `prometheus` server, killed when dropped (also when a test panics).
pub struct Prometheus {
    pub addr: SocketAddr,
    _child: Child,
    _dir: tempfile::TempDir,
}

/// What the query API said: the result list, or Prometheus's error message.
pub type Answer = Result<Vec<Value>, String>;

impl Prometheus {
    /// Starts one with `config` (prometheus.yml text) and waits until it is ready.
    pub async fn start(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let addr = free_port(Ipv4Addr::LOCALHOST).await;
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus on PATH (Debian package `prometheus`; ./run-tests installs it)");
        let prometheus = Prometheus {
            addr,
            _child: child,
            _dir: dir,
        };
        eventually(Duration::from_secs(20), || async {
            matches!(
                get(addr, "/-/ready", Duration::from_secs(1)).await,
                Ok((StatusCode::OK, _))
            )
        })
        .await;
        prometheus
    }

    /// `GET path` on the API; the parsed JSON body.
    pub async fn api(&self, path: &str) -> Value {
        let (_, body) = get(self.addr, path, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e:?}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// An instant query of `expr` at the current time.
    pub async fn query(&self, expr: &str) -> Answer {
        let encoded: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let body = self.api(&format!("/api/v1/query?query={encoded}")).await;
        if body["status"] == "success" {
            Ok(body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default())
        } else {
            Err(format!("{}: {}", body["errorType"], body["error"]))
        }
    }

    /// The single value `expr` evaluates to now, if it gives exactly one sample.
    pub async fn value(&self, expr: &str) -> Option<f64> {
        match self.query(expr).await {
            Ok(result) if result.len() == 1 => sample(&result[0]),
            _ => None,
        }
    }
}

/// The value of one instant-vector sample (`NaN` and `±Inf` included).
pub fn sample(series: &Value) -> Option<f64> {
    series["value"][1].as_str()?.parse().ok()
}
