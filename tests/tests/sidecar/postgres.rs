//! TCP mode in front of PostgreSQL (Debian's, one server per pod, run as `nobody`): `pgbench
//! -C` (a new connection per transaction) through a standby's sidecar, in one-second runs back
//! to back, across a planned handover. The only failures are transactions whose connection
//! was closed at the handover, and every transaction the old leader's server committed comes
//! before every one the new leader's did (their `pgbench_history.mtime`, one host clock).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use understudy_tests::cluster::loopback::{
    Loopback, Sidecar, agreed_leader, agreed_leader_not, send,
};

/// `nobody`: PostgreSQL refuses to run as root.
const NOBODY: &str = "65534";

fn bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Debian's postgresql (run-tests installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("postgres").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
}

fn as_nobody(program: PathBuf) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(program)
        .stdin(Stdio::null());
    cmd
}

/// One PostgreSQL server on 127.0.0.1 with pgbench's tables.
struct Postgres {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    _child: Child,
}

impl Postgres {
    async fn start() -> Postgres {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("understudy-pg-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        let out = as_nobody(bin.join("initdb"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .await
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let addr = understudy_tests::cluster::loopback::free_port([127, 0, 0, 1].into()).await;
        let child = as_nobody(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                &addr.port().to_string(),
            ])
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("postgres");
        let ready = async {
            loop {
                let ok = Command::new(bin.join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &addr.port().to_string()])
                    .status()
                    .await
                    .is_ok_and(|s| s.success());
                if ok {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .expect("postgres ready within 30s");
        let out = Command::new("pgbench")
            .args([
                "-i",
                "-q",
                "-s",
                "1",
                "-h",
                "127.0.0.1",
                "-p",
                &addr.port().to_string(),
            ])
            .args(["-U", "postgres", "postgres"])
            .output()
            .await
            .expect("pgbench -i");
        assert!(
            out.status.success(),
            "pgbench -i: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Postgres {
            addr,
            _dir: dir,
            _child: child,
        }
    }

    /// One value from `sql`.
    async fn query(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-Atc", sql])
            .output()
            .await
            .expect("psql");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// One `pgbench -C` run of a second.
#[derive(Debug)]
struct Run {
    start: Instant,
    end: Instant,
    processed: u64,
    failed: Vec<String>,
}

async fn pgbench(to: SocketAddr) -> Run {
    let start = Instant::now();
    let out = Command::new("pgbench")
        .args(["-C", "-n", "-c", "4", "-j", "2", "-T", "1"])
        .args(["-h", &to.ip().to_string(), "-p", &to.port().to_string()])
        .args(["-U", "postgres", "postgres"])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("a one-second pgbench run ends (a hang fails here)")
        .expect("pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let processed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next()?.trim().parse().ok())
        .unwrap_or(0);
    let mut failed: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("aborted") || l.contains("error") || l.contains("FATAL"))
        .map(str::to_string)
        .collect();
    if !out.status.success() && failed.is_empty() {
        failed.push(format!("exit {}", out.status));
    }
    Run {
        start,
        end: Instant::now(),
        processed,
        failed,
    }
}

#[tokio::test]
async fn pgbench_across_a_planned_handover_fails_only_at_the_handover() {
    let cluster = Loopback::start("tcp-pg").await;
    let (pg_a, pg_b) = (Postgres::start().await, Postgres::start().await);
    let mut pods = Vec::new();
    for (name, pg) in [("pod-a", &pg_a), ("pod-b", &pg_b)] {
        let sidecar = cluster
            .sidecar(name)
            .upstream(pg.addr)
            .args(&["--mode", "tcp", "--upstream-health", "tcp"])
            .start()
            .await;
        pods.push(sidecar);
    }
    let all: Vec<&Sidecar> = pods.iter().collect();
    let old = agreed_leader(&all, Duration::from_secs(20)).await;
    cluster
        .wait_members_named("tcp-pg", &["pod-a", "pod-b"], Duration::from_secs(10))
        .await;
    let leader = pods.iter().find(|p| p.name == old).unwrap();
    let standby = pods.iter().find(|p| p.name != old).unwrap();
    let via = standby.listen.unwrap();

    let mut runs = Vec::new();
    for _ in 0..4 {
        runs.push(pgbench(via).await);
    }
    let bench = tokio::spawn(async move {
        let mut runs = Vec::new();
        for _ in 0..6 {
            runs.push(pgbench(via).await);
        }
        runs
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let asked = Instant::now();
    let req = http::Request::post(format!("http://{}/handover", leader.admin))
        .body(http_body_util::Full::default())
        .unwrap();
    let (status, body) = send(req, Duration::from_secs(30))
        .await
        .expect("the admin answers");
    assert!(status.is_success(), "{status}: {body}");
    let new = agreed_leader_not(&all, &old, Duration::from_secs(10)).await;
    assert_eq!(new, standby.name);
    let settled = Instant::now();
    runs.extend(bench.await.unwrap());
    for _ in 0..3 {
        runs.push(pgbench(via).await);
    }

    for run in &runs {
        let overlaps = run.start <= settled + Duration::from_secs(1) && run.end >= asked;
        assert!(
            run.failed.is_empty() || overlaps,
            "a run away from the handover failed: {run:?}"
        );
        assert!(run.processed > 0 || overlaps, "a run did nothing: {run:?}");
    }
    let before: u64 = runs
        .iter()
        .filter(|r| r.end < asked)
        .map(|r| r.processed)
        .sum();
    let after: u64 = runs
        .iter()
        .filter(|r| r.start > settled + Duration::from_secs(1))
        .map(|r| r.processed)
        .sum();
    assert!(before > 0 && after > 0, "before {before}, after {after}");
    let (pg_old, pg_new) = if old == "pod-a" {
        (&pg_a, &pg_b)
    } else {
        (&pg_b, &pg_a)
    };
    let sql = "select count(*), coalesce(extract(epoch from min(mtime)), 0), \
               coalesce(extract(epoch from max(mtime)), 0) from pgbench_history";
    let parse = |s: String| -> (u64, f64, f64) {
        let f: Vec<&str> = s.split('|').collect();
        (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
        )
    };
    let (n_old, _, last_old) = parse(pg_old.query(sql).await);
    let (n_new, first_new, _) = parse(pg_new.query(sql).await);
    assert!(
        n_old > 0 && n_new > 0,
        "old {n_old}, new {n_new} transactions"
    );
    assert!(
        last_old < first_new,
        "the old leader's server committed at {last_old} after the new one's first at {first_new}"
    );
    let failed: usize = runs.iter().map(|r| r.failed.len()).sum();
    println!(
        "pgbench -C through {via}: {} runs, {} transactions ({before} before the handover, \
         {after} after), {failed} failures at the handover; {n_old} on {old}, {n_new} on {new}",
        runs.len(),
        runs.iter().map(|r| r.processed).sum::<u64>()
    );
}
