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
use understudy_tests::pgbench::{self, History};

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
        runs.push(pgbench::run(via, None).await);
    }
    let bench = tokio::spawn(async move {
        let mut runs = Vec::new();
        for _ in 0..6 {
            runs.push(pgbench::run(via, None).await);
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
        runs.push(pgbench::run(via, None).await);
    }

    let (before, after) = pgbench::check_runs(&runs, asked, settled);
    let (pg_old, pg_new) = if old == "pod-a" {
        (&pg_a, &pg_b)
    } else {
        (&pg_b, &pg_a)
    };
    let h_old = History::parse(&pg_old.query(History::SQL).await);
    let h_new = History::parse(&pg_new.query(History::SQL).await);
    History::assert_before(h_old, h_new);
    let failed: usize = runs.iter().map(|r| r.failed.len()).sum();
    println!(
        "pgbench -C through {via}: {} runs, {} transactions ({before} before the handover, \
         {after} after), {failed} failures at the handover; {} on {old}, {} on {new}",
        runs.len(),
        runs.iter().map(|r| r.processed).sum::<u64>(),
        h_old.count,
        h_new.count
    );
}
