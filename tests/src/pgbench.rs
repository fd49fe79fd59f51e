//! `pgbench -C` (a new connection per transaction) as the client of a PostgreSQL failover
//! test: one-second runs back to back, each a separate process, so that a client pgbench
//! aborts when its connection closes costs only the rest of that second. What a test checks:
//! runs away from the handover all succeed and do work ([`check_runs`]), and every
//! transaction the old leader's server committed comes before every one the new leader's did
//! ([`History`], read from `pgbench_history` on each server).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::process::Command;

/// The database and user the tests use (the postgres image's defaults).
pub const USER: &str = "postgres";

/// One `pgbench -C` run of a second.
#[derive(Debug)]
pub struct Run {
    /// When it was started.
    pub start: Instant,
    /// When it ended.
    pub end: Instant,
    /// Transactions it reports processed.
    pub processed: u64,
    /// Its error lines (aborted clients, FATALs), or its exit status if it failed silently.
    pub failed: Vec<String>,
}

/// Runs `pgbench -C -n -c 4 -j 2 -T 1` against `to` (database and user `postgres`, with
/// `password` if given). A run that has not ended within 20 s is a hang and panics.
pub async fn run(to: SocketAddr, password: Option<&str>) -> Run {
    let start = Instant::now();
    let mut cmd = Command::new("pgbench");
    cmd.args(["-C", "-n", "-c", "4", "-j", "2", "-T", "1"])
        .args(["-h", &to.ip().to_string(), "-p", &to.port().to_string()])
        .args(["-U", USER, USER])
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("a one-second pgbench run ends (a hang fails here)")
        .expect("pgbench runs (package postgresql-client)");
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

/// Asserts that every run that does not overlap the handover (from `asked` until a second
/// after `settled`) succeeded and processed transactions; returns the transactions of the
/// runs wholly before and wholly after it, both of which must be some.
pub fn check_runs(runs: &[Run], asked: Instant, settled: Instant) -> (u64, u64) {
    let until = settled + Duration::from_secs(1);
    for run in runs {
        let overlaps = run.start <= until && run.end >= asked;
        assert!(
            run.failed.is_empty() || overlaps,
            "a run away from the handover failed: {run:?}"
        );
        assert!(run.processed > 0 || overlaps, "a run did nothing: {run:?}");
    }
    let sum = |keep: &dyn Fn(&Run) -> bool| -> u64 {
        runs.iter().filter(|r| keep(r)).map(|r| r.processed).sum()
    };
    let before = sum(&|r| r.end < asked);
    let after = sum(&|r| r.start > until);
    assert!(
        before > 0 && after > 0,
        "transactions before the handover {before}, after it {after}"
    );
    (before, after)
}

/// What one server's `pgbench_history` holds: the number of transactions and the first and
/// last commit times (`mtime`, seconds since the epoch, one host clock for all pods).
#[derive(Clone, Copy, Debug)]
pub struct History {
    /// Transactions recorded.
    pub count: u64,
    /// The earliest `mtime` (0 when none).
    pub first: f64,
    /// The latest `mtime` (0 when none).
    pub last: f64,
}

impl History {
    /// The query whose `psql -At` output [`History::parse`] reads.
    pub const SQL: &str = "select count(*), coalesce(extract(epoch from min(mtime)), 0), \
                           coalesce(extract(epoch from max(mtime)), 0) from pgbench_history";

    /// Parses `count|first|last`.
    pub fn parse(text: &str) -> History {
        let f: Vec<&str> = text.trim().split('|').collect();
        let num = |i: usize| -> f64 {
            f.get(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("pgbench_history summary {text:?}"))
        };
        History {
            count: num(0) as u64,
            first: num(1),
            last: num(2),
        }
    }

    /// Asserts that both servers committed transactions and that the old one's last came
    /// before the new one's first.
    pub fn assert_before(old: History, new: History) {
        assert!(
            old.count > 0 && new.count > 0,
            "old server {} transactions, new server {}",
            old.count,
            new.count
        );
        assert!(
            old.last < new.first,
            "the old leader's server committed at {} after the new one's first at {}",
            old.last,
            new.first
        );
    }
}
