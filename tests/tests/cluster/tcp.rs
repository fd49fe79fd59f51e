//! TCP mode on the local cluster: `deploy/examples/redis-ha` (Debian's redis-server in each
//! pod, understudy with `--mode tcp` in front), clients speaking RESP to the Service's
//! ClusterIP. Each client appends `<client>:<n>` to the list `log` one at a time, with a script
//! that stamps it with the Redis's own clock (`TIME`), and opens a new connection only when
//! its connection was closed (or refused); it never sends a command again. Afterwards every
//! pod's Redis is read (`redis-cli` in the pod's network namespace) and checked with the
//! overlap checker against the leadership each sidecar logged ([`Reigns`]): every command ran
//! while its pod led, and no two pods' Redis served at once. Clients saw closed connections
//! only at the handover, never a command left unanswered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use understudy_tests::cluster::app::AccessEntry;
use understudy_tests::cluster::leadership::Reigns;
use understudy_tests::cluster::{Example, ExampleOptions, OverlapReport, Signal, overlap};

use super::{LEASE, RETRY, Scenario, bounded, exclusive};

/// Longer than any hold (a connection waits at most the hold timeout for a leader): a
/// command unanswered this long is a hang.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
const CLIENTS: usize = 3;
/// The example's Lease (`--election redis-ha`, one active).
const REDIS_LEASE: &str = "redis-ha";
/// What a command may run outside its pod's reign as the sidecar logged it (seconds): the
/// log line is written as the view changes, a few microseconds to milliseconds from when
/// the proxy acts on it, and a command already on its way to Redis when the connection is
/// closed still runs.
const REIGN_SLACK: f64 = 0.05;
/// Appends `ARGV[1]@<Redis's clock>` to `log` (`TIME`: seconds and microseconds).
const STAMPED_RPUSH: &str = "local t = redis.call('TIME') \
    return redis.call('RPUSH', KEYS[1], ARGV[1] .. '@' .. t[1] .. '.' .. string.format('%06d', t[2]))";

/// A RESP array of bulk strings.
fn resp(args: &[&str]) -> String {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    out
}

/// What became of one command.
#[derive(Clone, Debug)]
struct Command {
    item: String,
    sent: Instant,
    outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// Answered `:<n>` at this moment.
    Acked(Instant),
    /// The connection closed or broke with the command unanswered.
    Closed(Instant, String),
    /// No answer within [`COMMAND_TIMEOUT`].
    Hung,
}

/// A connect that failed (refused: a pod whose sidecar had just died).
#[derive(Clone, Debug)]
struct Refused {
    at: Instant,
    why: String,
}

struct RedisLoad {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<(Vec<Command>, Vec<Refused>)>>,
}

impl RedisLoad {
    fn start(app: &Example) -> RedisLoad {
        let to = app.service_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let clients = (0..CLIENTS)
            .map(|c| {
                let (stop, acked) = (stop.clone(), acked.clone());
                tokio::spawn(async move {
                    let mut commands = Vec::new();
                    let mut refused = Vec::new();
                    // Bounded in count and time, whatever the test does.
                    let until = Instant::now() + Duration::from_secs(90);
                    let mut n = 0u32;
                    'connections: while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                        let connect =
                            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(to));
                        let stream = match connect.await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                refused.push(Refused {
                                    at: Instant::now(),
                                    why: e.to_string(),
                                });
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                            Err(_) => {
                                refused.push(Refused {
                                    at: Instant::now(),
                                    why: "connect timed out".into(),
                                });
                                continue;
                            }
                        };
                        let (read, mut write) = stream.into_split();
                        let mut read = BufReader::new(read);
                        while !stop.load(Ordering::SeqCst) && Instant::now() < until && n < 20_000 {
                            n += 1;
                            let item = format!("{c}:{n}");
                            let cmd = resp(&["EVAL", STAMPED_RPUSH, "1", "log", &item]);
                            let sent = Instant::now();
                            let answer = async {
                                write.write_all(cmd.as_bytes()).await?;
                                let mut line = String::new();
                                read.read_line(&mut line).await?;
                                Ok::<String, std::io::Error>(line)
                            };
                            let outcome = match tokio::time::timeout(COMMAND_TIMEOUT, answer).await
                            {
                                Ok(Ok(line)) if line.starts_with(':') => {
                                    Outcome::Acked(Instant::now())
                                }
                                Ok(Ok(line)) if line.is_empty() => {
                                    Outcome::Closed(Instant::now(), "closed".into())
                                }
                                Ok(Ok(line)) => {
                                    Outcome::Closed(Instant::now(), format!("answer {line:?}"))
                                }
                                Ok(Err(e)) => Outcome::Closed(Instant::now(), e.to_string()),
                                Err(_) => Outcome::Hung,
                            };
                            let go_on = matches!(outcome, Outcome::Acked(_));
                            if go_on {
                                acked.fetch_add(1, Ordering::SeqCst);
                            }
                            commands.push(Command {
                                item,
                                sent,
                                outcome,
                            });
                            if !go_on {
                                continue 'connections;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        break;
                    }
                    (commands, refused)
                })
            })
            .collect();
        RedisLoad {
            stop,
            acked,
            clients,
        }
    }

    /// Waits until `n` more commands have been answered (false if not within `within`).
    async fn pass(&self, n: usize, within: Duration) -> bool {
        let goal = self.acked.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + within;
        while self.acked.load(Ordering::SeqCst) < goal {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    async fn finish(self) -> (Vec<Command>, Vec<Refused>) {
        self.stop.store(true, Ordering::SeqCst);
        let (mut commands, mut refused) = (Vec::new(), Vec::new());
        for c in self.clients {
            let (c, r) = c.await.unwrap();
            commands.extend(c);
            refused.extend(r);
        }
        (commands, refused)
    }
}

/// What each pod's Redis holds (`LRANGE log 0 -1`, read in the pod): each command's item and
/// when that Redis ran it (Unix seconds, its own clock).
async fn logs(app: &Example, pods: &[String]) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let text = app
            .run_in_pod(
                pod,
                "redis-cli",
                &["-p", "6379", "--raw", "LRANGE", "log", "0", "-1"],
            )
            .await
            .unwrap_or_else(|e| panic!("reading {pod}'s Redis: {e}"));
        // (An empty list prints one empty line.)
        let items = text.lines().filter(|l| !l.is_empty()).map(|l| {
            let (item, at) = l
                .split_once('@')
                .unwrap_or_else(|| panic!("{pod}'s Redis holds {l:?}, not item@time"));
            let at = at.parse().unwrap_or_else(|e| panic!("{pod}: {l:?}: {e}"));
            (item.to_string(), at)
        });
        out.insert(pod.clone(), items.collect());
    }
    out
}

/// When leadership moved from `old` to `new`: from the signal to the end of the moment
/// clients may see their connections closed (the new leader agreed, plus what the old pod
/// takes to go away).
struct Move<'a> {
    old: &'a str,
    new: &'a str,
    from: Instant,
    until: Instant,
}

/// The checks both scenarios share: nothing hung; commands failed (closed or refused) only
/// while leadership moved; no command ran on the old leader's Redis after one ran on the new
/// one's (the last one sent to the old was sent before the first answer from the new); every
/// command answered after the move is in the new leader's Redis; other pods' Redis got
/// nothing.
fn check(
    name: &str,
    commands: &[Command],
    refused: &[Refused],
    logs: &BTreeMap<String, Vec<(String, f64)>>,
    moved: &Move<'_>,
) {
    let (old, new) = (moved.old, moved.new);
    let hung: Vec<&Command> = commands
        .iter()
        .filter(|c| c.outcome == Outcome::Hung)
        .collect();
    assert!(
        hung.is_empty(),
        "{name}: {} commands never answered: {:?}",
        hung.len(),
        hung.first()
    );
    let window = |at: Instant| at >= moved.from && at <= moved.until;
    for c in commands {
        if let Outcome::Closed(at, why) = &c.outcome {
            assert!(
                window(*at),
                "{name}: {} failed {:?} after the move ({why}), outside the handover",
                c.item,
                at.saturating_duration_since(moved.from)
            );
        }
    }
    for r in refused {
        assert!(
            window(r.at),
            "{name}: a connect failed ({}) {:?} after the move, outside the handover",
            r.why,
            r.at.saturating_duration_since(moved.from)
        );
    }
    let by_item: BTreeMap<&str, &Command> = commands.iter().map(|c| (c.item.as_str(), c)).collect();
    let of = |pod: &str| -> Vec<&Command> {
        logs.get(pod)
            .into_iter()
            .flatten()
            .map(|(item, _)| {
                *by_item
                    .get(item.as_str())
                    .unwrap_or_else(|| panic!("{name}: {pod}'s Redis holds {item}, never sent"))
            })
            .collect()
    };
    let (on_old, on_new) = (of(old), of(new));
    let last_sent_old = on_old.iter().map(|c| c.sent).max();
    let first_acked_new = on_new
        .iter()
        .filter_map(|c| match c.outcome {
            Outcome::Acked(at) => Some(at),
            _ => None,
        })
        .min();
    if let (Some(sent), Some(acked)) = (last_sent_old, first_acked_new) {
        assert!(
            sent < acked,
            "{name}: {old}'s Redis ran a command sent {:?} after {new}'s answered one",
            sent - acked
        );
    }
    let in_new: std::collections::BTreeSet<&str> =
        logs[new].iter().map(|(item, _)| item.as_str()).collect();
    for c in commands {
        if let Outcome::Acked(at) = c.outcome
            && at > moved.until
        {
            assert!(
                in_new.contains(c.item.as_str()),
                "{name}: {} answered, not in {new}'s Redis",
                c.item
            );
        }
    }
    for (pod, items) in logs {
        if pod != old && pod != new {
            assert!(
                items.is_empty(),
                "{name}: {pod} never led, yet its Redis holds {items:?}"
            );
        }
    }
    let acked = commands
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Acked(_)))
        .count();
    let failed = commands.len() - acked;
    println!(
        "scenario={name} commands={} answered={acked} closed_at_handover={failed} refused_connects={} \
         on_old={} on_new={}",
        commands.len(),
        refused.len(),
        on_old.len(),
        on_new.len()
    );
}

/// The overlap checker over every Redis's commands, each fenced with the epoch under which
/// its pod's sidecar led at the moment that Redis ran it ([`Reigns::fence`]): every command
/// ran while its pod led, tenures of different pods never overlap and epochs only rise.
fn fenced(
    name: &str,
    logs: &BTreeMap<String, Vec<(String, f64)>>,
    reigns: &Reigns,
) -> OverlapReport {
    let entries: Vec<(String, Vec<AccessEntry>)> = logs
        .iter()
        .map(|(pod, items)| {
            let entries = items.iter().map(|(item, at)| {
                let epoch = reigns.fence(pod, REDIS_LEASE, *at, REIGN_SLACK);
                AccessEntry {
                    logged: *at,
                    request_time: 0.0,
                    status: 200,
                    leader: epoch.map(|_| pod.clone()),
                    epoch,
                    lease: None,
                    request: item.clone(),
                }
            });
            (pod.clone(), entries.collect())
        })
        .collect();
    let report = overlap::check(&entries);
    if report.unfenced > 0 {
        let (pod, first) = entries
            .iter()
            .find_map(|(pod, e)| e.iter().find(|e| e.epoch.is_none()).map(|e| (pod, e)))
            .expect("counted");
        panic!(
            "{name}: {} commands ran on a Redis whose pod was not leading, the first {} on {pod} \
             at {:.6}; {pod} led: {:?}",
            report.unfenced,
            first.request,
            first.logged,
            reigns.of(pod)
        );
    }
    assert!(
        report.violations.is_empty(),
        "{name}: {:#?}",
        report.violations
    );
    // How close to the end of its reign a command ran (negative: after it, within the slack).
    let closest = entries
        .iter()
        .flat_map(|(pod, e)| e.iter().map(move |e| (pod, e)))
        .filter_map(|(pod, e)| {
            let reign = reigns
                .0
                .iter()
                .find(|r| &r.pod == pod && Some(r.epoch) == e.epoch && r.lease == REDIS_LEASE)?;
            Some(reign.until? - e.logged)
        })
        .min_by(f64::total_cmp);
    println!(
        "scenario={name} fenced: tenures={:?} closest_to_a_reigns_end_ms={:?}",
        report
            .tenures
            .iter()
            .map(|t| (&t.pod, t.epoch, t.requests))
            .collect::<Vec<_>>(),
        closest.map(|c| (c * 1000.0).round())
    );
    report
}

/// The leader's pod is SIGKILLed (sidecar and Redis, as by the OOM killer): commands on its
/// connections fail with the connection, new connections are held until the new leader's
/// sidecar takes them, and from then on every command is answered by the new leader's Redis.
/// The killed pod's Redis, restarted by the kubelet, gets nothing while it stands by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigkill_of_the_leader_closes_connections_and_nothing_reaches_a_standby() {
    let name = "redis-sigkill";
    let _serial = exclusive(name).await;
    bounded(name, async {
        let s = Scenario::start(name).await;
        let (app, old) = s.app(ExampleOptions::test("redis-ha", 2), 2).await;
        let load = RedisLoad::start(&app);
        assert!(
            load.pass(200, Duration::from_secs(20)).await,
            "{name}: no steady load"
        );
        let killed = Instant::now();
        app.crash(&old).await.unwrap();
        let new = app
            .wait_leader(Some(&old), LEASE + RETRY + Duration::from_secs(10))
            .await
            .unwrap();
        let settled = Instant::now();
        assert!(
            load.pass(200, Duration::from_secs(20)).await,
            "{name}: no load after the failover"
        );
        // The killed pod back (the kubelet's 10s back-off) as a standby; load goes on.
        app.wait_serving(2, Duration::from_secs(40)).await.unwrap();
        assert!(load.pass(100, Duration::from_secs(20)).await);
        let (commands, refused) = load.finish().await;
        let pods = vec![old.clone(), new.clone()];
        let logs = logs(&app, &pods).await;
        // The old Redis died with its data; restarted, it must have been given nothing.
        assert!(
            logs[&old].is_empty(),
            "{name}: {old}'s restarted Redis got {:?}",
            logs[&old]
        );
        let moved = Move {
            old: &old,
            new: &new,
            from: killed,
            until: settled + Duration::from_secs(2),
        };
        check(name, &commands, &refused, &logs, &moved);
        // The old Redis died with its log: what is left are the new leader's commands.
        let report = fenced(name, &logs, &app.reigns());
        let served: Vec<&str> = report.tenures.iter().map(|t| t.pod.as_str()).collect();
        assert_eq!(served, [new.as_str()], "{name}");
        drop(app);
        s.cluster.shutdown().await.unwrap();
    })
    .await;
}

/// The leader's sidecar gets SIGTERM (its Redis keeps running): it hands over, closing its
/// connections to Redis as it stops leading, and the standby closes those it handed to it.
/// Every command ran on the old Redis before any ran on the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigterm_of_the_leaders_sidecar_hands_over_with_no_overlap() {
    let name = "redis-sigterm";
    let _serial = exclusive(name).await;
    bounded(name, async {
        let s = Scenario::start(name).await;
        let (app, old) = s.app(ExampleOptions::test("redis-ha", 2), 2).await;
        let load = RedisLoad::start(&app);
        assert!(
            load.pass(200, Duration::from_secs(20)).await,
            "{name}: no steady load"
        );
        let termed = Instant::now();
        app.signal_container(&old, "understudy", Signal::Term)
            .await
            .unwrap();
        let new = app
            .wait_leader(Some(&old), Duration::from_secs(15))
            .await
            .unwrap();
        let settled = Instant::now();
        assert!(
            load.pass(200, Duration::from_secs(20)).await,
            "{name}: no load after the handover"
        );
        let (commands, refused) = load.finish().await;
        let logs = logs(&app, &[old.clone(), new.clone()]).await;
        assert!(
            !logs[&old].is_empty(),
            "{name}: the old leader's Redis served nothing?"
        );
        assert!(
            !logs[&new].is_empty(),
            "{name}: the new leader's Redis served nothing?"
        );
        // The old sidecar drains (2s at test settings) before it exits: what still came
        // through it closes then.
        let moved = Move {
            old: &old,
            new: &new,
            from: termed,
            until: settled + Duration::from_secs(4),
        };
        check(name, &commands, &refused, &logs, &moved);
        let report = fenced(name, &logs, &app.reigns());
        let served: Vec<&str> = report.tenures.iter().map(|t| t.pod.as_str()).collect();
        assert_eq!(served, [old.as_str(), new.as_str()], "{name}");
        drop(app);
        s.cluster.shutdown().await.unwrap();
    })
    .await;
}
