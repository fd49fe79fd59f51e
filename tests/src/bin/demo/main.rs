//! `./run-demo`: active/standby failover you can watch, on one machine, on a real Kubernetes
//! control plane.
//!
//! Starts etcd, kube-apiserver, the controller manager, the scheduler and kube-proxy (built
//! from pinned sources by `tests/k8s/build`), the test kubelet for two Nodes, and applies
//! `deploy/examples/nginx-ha` (three pods: nginx behind the `understudy` sidecar, each in its
//! own network namespace) with `kubectl apply -k`. A steady client sends requests to the
//! Service's ClusterIP. A live line shows who leads, requests per second, errors, latency
//! and every pod's role while the demo crashes the leader, runs `kubectl rollout restart`
//! and cuts the leader off from the API server, narrating each step with the failover it
//! measured. Ends by itself (or on Ctrl-C) and removes everything it made. Needs root.

#![forbid(unsafe_code)]

mod screen;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use understudy_tests::cluster::{
    Cluster, ClusterOptions, Example, ExampleOptions, HarnessError, Load, LoadOptions, LoadReport,
    Pacing, admin, require_root,
};

use screen::{Screen, Tone};

/// Watch understudy fail over: crash, rolling update, partition.
#[derive(Debug, Parser)]
#[command(name = "demo")]
struct Args {
    /// No colour, no live line (also when stdout is not a terminal or NO_COLOR is set).
    #[arg(long)]
    plain: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let tty =
        !args.plain && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let screen = Screen::new(tty);
    if let Err(e) = require_root() {
        eprintln!("demo: {e}");
        return ExitCode::FAILURE;
    }
    screen.say(&screen.paint(
        Tone::Step,
        "understudy demo: a real control plane, three pods, one Service, one leader at a time",
    ));
    let started = Instant::now();
    let cluster = match Cluster::start(ClusterOptions::default()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo: could not start the cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    screen.say(&format!(
        "control plane up in {}: etcd, kube-apiserver (RBAC) on {}, controller manager, scheduler, kube-proxy; Nodes {}",
        secs(Some(started.elapsed())),
        cluster.api(),
        cluster
            .kubelet()
            .nodes()
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let result = tokio::select! {
        r = story(&cluster, &screen) => r,
        _ = tokio::signal::ctrl_c() => {
            screen.say("interrupted");
            Ok(true)
        }
    };
    screen.done();
    screen.say("cleaning up");
    let cleaned = cluster.shutdown().await;
    match (result, cleaned) {
        (Ok(true), Ok(())) => {
            screen.say("done");
            ExitCode::SUCCESS
        }
        (Ok(false), Ok(())) => {
            eprintln!("demo failed: a step did not turn out as narrated (see above)");
            ExitCode::FAILURE
        }
        (Err(e), _) | (Ok(_), Err(e)) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The story, with the live status line running beside it; whether every step turned out
/// as narrated (nothing lost in the partition, never two leaders).
async fn story(cluster: &Cluster, screen: &Screen) -> Result<bool, HarnessError> {
    screen.say(
        "kubectl apply -k deploy/examples/nginx-ha (3 replicas, election timings 3s/2s/500ms)",
    );
    let app = Example::apply(cluster, ExampleOptions::test("nginx-ha", 3)).await?;
    app.wait_serving(3, Duration::from_secs(90)).await?;
    let leader = app.wait_leader(None, Duration::from_secs(30)).await?;
    let pods: Vec<String> = app
        .admin_addrs()
        .into_iter()
        .map(|(name, addr)| format!("{name} ({})", addr.ip()))
        .collect();
    screen.say(&format!("pods Ready: {}", pods.join(", ")));
    // Open loop: independent requests at a steady rate, so a held request holds only
    // itself, as with many clients.
    let load = Load::start(LoadOptions {
        max_duration: Duration::from_secs(240),
        max_requests: 100_000,
        pacing: Pacing::Open {
            per_second: 200,
            max_in_flight: 2000,
        },
        ..LoadOptions::new(app.service_addr())
    });
    screen.say(&format!(
        "leader: {}; steady clients send 200 req/s to the Service {} (a new connection per request)",
        screen.paint(Tone::Name, &leader),
        app.service_addr()
    ));
    screen.say("live line: lease holder and epoch, load, errors, latency, pods (* leader, ? candidate, ! down)");
    let lost_nothing = tokio::select! {
        r = steps(&app, screen, &load, leader) => r?,
        _ = live(&app, screen, &load) => true,
    };
    let report = load.finish().await;
    screen.done();
    let overlap = app.overlap()?;
    if overlap.violations.is_empty() {
        screen.say(&screen.paint(
            Tone::Good,
            &format!(
                "overlap check: {} leader tenures in the apps' logs (fencing epochs {}), never two pods serving as leader at once",
                overlap.tenures.len(),
                overlap.tenures.iter().map(|t| t.epoch.to_string()).collect::<Vec<_>>().join(", ")
            ),
        ));
    } else {
        screen.say(&screen.paint(
            Tone::Bad,
            &format!("overlap check FAILED: {:?}", overlap.violations),
        ));
    }
    screen.say(&report.summary("demo"));
    Ok(lost_nothing && overlap.violations.is_empty())
}

/// The steps, narrated; whether the partition step lost no request.
async fn steps(
    app: &Example,
    screen: &Screen,
    load: &Load,
    first: String,
) -> Result<bool, HarnessError> {
    // --- steady state
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let w = window(load, t);
    screen.say(&format!(
        "steady state: {} requests, {} served by the leader's app, {} failed",
        w.requests(),
        w.served_by().get(&first).copied().unwrap_or(0),
        fails(screen, &w)
    ));

    // --- crash the leader
    screen.say(&screen.paint(
        Tone::Step,
        &format!(
            "step 1: SIGKILL the leader {first}'s containers (no goodbye: its Lease must expire)"
        ),
    ));
    let t = Instant::now();
    app.crash(&first).await?;
    let second = app
        .wait_leader(Some(first.as_str()), Duration::from_secs(20))
        .await?;
    let first_served = first_served_by(load, &second, t, Duration::from_secs(10)).await;
    let w = window(load, t);
    screen.say(&format!(
        "new leader {} serving {} after the crash; requests meanwhile were held, then served: {} failed, longest wait {}",
        screen.paint(Tone::Name, &second),
        secs(first_served),
        fails(screen, &w),
        secs(Some(w.max_latency()))
    ));
    let lost = window(load, t - Duration::from_secs(1))
        .reset_retried()
        .len();
    if lost > 0 {
        screen.say(&format!(
            "  ({lost} requests were in flight on the killed pod itself; the client sent them again, as HTTP allows for GET)"
        ));
    }
    app.wait_serving(3, Duration::from_secs(60)).await?;
    screen.say(&format!(
        "the kubelet restarted {first}'s containers after its back-off; it is Ready again, now a standby"
    ));

    // --- rolling update
    screen.say(&screen.paint(
        Tone::Step,
        "step 2: kubectl rollout restart deployment/nginx (maxSurge 1, maxUnavailable 0)",
    ));
    let t = Instant::now();
    let deployment = format!("deployment/{}", app.deployment);
    app.kubectl(&["rollout", "restart", &deployment]).await?;
    app.kubectl(&["rollout", "status", &deployment, "--timeout=120s"])
        .await?;
    let leader = app.wait_leader(None, Duration::from_secs(20)).await?;
    let w = window(load, t);
    screen.say(&format!(
        "rolling update done in {}: every pod replaced, {} leads; {} requests, {} failed, longest wait {}",
        secs(Some(t.elapsed())),
        screen.paint(Tone::Name, &leader),
        w.requests(),
        fails(screen, &w),
        secs(Some(w.max_latency()))
    ));

    // --- partition the leader from the API server
    app.wait_serving(3, Duration::from_secs(30)).await?;
    screen.say(&screen.paint(
        Tone::Step,
        &format!(
            "step 3: cut the leader {leader} off from the API server (iptables in its pod; it still reaches its peers)"
        ),
    ));
    let t = Instant::now();
    app.cut_from_api(&leader, true).await?;
    let takeover = loop {
        if let Some((holder, epoch)) = app.lease(None).await?
            && !holder.is_empty()
            && holder != leader
        {
            break (holder, epoch);
        }
        if t.elapsed() > Duration::from_secs(20) {
            return Err(HarnessError::timeout(
                "a takeover from the partitioned leader",
                Duration::from_secs(20),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = t.elapsed();
    screen.say(&format!(
        "{} took the Lease (epoch {}) {} after the cut: {leader}'s members, still reading the Lease, refused to confirm it, so it stopped serving",
        screen.paint(Tone::Name, &takeover.0),
        takeover.1,
        secs(Some(took)),
    ));
    // Still cut off, the ex-leader learns the new holder from its peers.
    let mut named = None;
    while t.elapsed() < took + Duration::from_secs(3) {
        if let Some(s) = app.sidecar_status(&leader).await
            && s["leader"] == takeover.0.as_str()
        {
            named = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    screen.say(&format!(
        "{leader}, still cut off, named {} as leader {} after the cut (its peers told it) and forwards what reaches it there",
        takeover.0,
        secs(named)
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.cut_from_api(&leader, false).await?;
    let agreed = app.wait_leader(None, Duration::from_secs(20)).await?;
    let w = window(load, t);
    let failed = w.failures().len();
    screen.say(&format!(
        "healed: all pods follow {}; during the partition {} requests, {} failed, longest wait {}",
        screen.paint(Tone::Name, &agreed),
        w.requests(),
        fails(screen, &w),
        secs(Some(w.max_latency()))
    ));
    if failed > 0 {
        screen.say(&screen.paint(
            Tone::Bad,
            &format!(
                "partition step FAILED: {failed} requests failed; with the failsafe none should"
            ),
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // From the apps' logs: the cut-off leader's app got its last request under its epoch
    // before the new leader's app got its first.
    let overlap = app.overlap()?;
    let stopped = overlap
        .tenures
        .iter()
        .filter(|x| x.pod == leader && x.epoch < takeover.1)
        .map(|x| x.last)
        .reduce(f64::max);
    let began = overlap
        .tenures
        .iter()
        .find(|x| x.pod == takeover.0 && x.epoch == takeover.1)
        .map(|x| x.first);
    if let (Some(a), Some(b)) = (stopped, began) {
        screen.say(&format!(
            "apps' logs: {leader} served its last request as leader {:.0}ms before {} served its first",
            (b - a) * 1000.0,
            takeover.0
        ));
    }
    Ok(failed == 0)
}

/// Redraws the status line until cancelled.
async fn live(app: &Example, screen: &Screen, load: &Load) {
    let mut roles = BTreeMap::new();
    let mut tick = 0u32;
    let mut lease = (String::new(), 0);
    loop {
        if tick.is_multiple_of(4) {
            roles.clear();
            for (name, addr) in app.admin_addrs() {
                roles.insert(name, admin::role(addr).await);
            }
            if let Ok(Some(l)) = app.lease(None).await {
                lease = l;
            }
        }
        tick += 1;
        let now = Instant::now();
        let recent = load.snapshot().between(now - Duration::from_secs(1), now);
        let all = load.snapshot();
        let mut lat: Vec<Duration> = recent.samples.iter().map(|s| s.latency).collect();
        lat.sort();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .copied()
        };
        let (holder, epoch) = &lease;
        let errors = all.failures().len();
        // Short enough for an 80-column terminal: pods by their random suffix, the role
        // as a mark and a colour.
        let pods: Vec<String> = roles
            .iter()
            .map(|(name, role)| {
                let (mark, tone) = match role.as_str() {
                    "leader" => ("*", Tone::Name),
                    "candidate" => ("?", Tone::Dim),
                    "down" => ("!", Tone::Bad),
                    _ => ("", Tone::Dim),
                };
                screen.paint(tone, &format!("{}{mark}", short(name)))
            })
            .collect();
        screen.status(&format!(
            "leader {} e{epoch} | {:>3} req/s | errors {} | p50 {} p99 {} | pods {}",
            screen.paint(
                Tone::Name,
                if holder.is_empty() {
                    "-"
                } else {
                    short(holder)
                }
            ),
            recent.requests(),
            if errors == 0 {
                screen.paint(Tone::Good, "0")
            } else {
                screen.paint(Tone::Bad, &errors.to_string())
            },
            ms(pct(0.5)),
            ms(pct(0.99)),
            pods.join(" ")
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Requests started since `from`.
fn window(load: &Load, from: Instant) -> LoadReport {
    load.snapshot().between(from, Instant::now())
}

/// Waits for the first request served by `pod` that started after `since`; the time from
/// `since` to its answer.
async fn first_served_by(
    load: &Load,
    pod: &str,
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    let deadline = Instant::now() + within;
    loop {
        let report = load.snapshot();
        if let Some(end) = report
            .samples
            .iter()
            .filter(|s| s.start >= since && s.pod() == Some(pod))
            .map(|s| s.end())
            .min()
        {
            return Some(end - since);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fails(screen: &Screen, w: &LoadReport) -> String {
    match w.failures().len() {
        0 => screen.paint(Tone::Good, "0"),
        n => screen.paint(Tone::Bad, &n.to_string()),
    }
}

/// A pod's random suffix (`nginx-7fnw9bt4d4-g2qs4` -> `g2qs4`).
fn short(name: &str) -> &str {
    name.rsplit('-').next().unwrap_or(name)
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("?".into(), |d| format!("{:.2}s", d.as_secs_f64()))
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{}ms", d.as_millis()))
}
