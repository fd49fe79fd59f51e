//! The local cluster harness itself, without the sidecar: the VIP balances over nginx pods
//! as kube-proxy would, the deployment replaces a crashed pod, two runs do not collide, and
//! nothing is left behind after a panic or a SIGKILL. Needs root.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use understudy_tests::cluster::{
    Cluster, ClusterOptions, Load, LoadOptions, Phase, cleanup, require_root, slot,
};

fn nginx_only(replicas: usize) -> ClusterOptions {
    ClusterOptions {
        replicas,
        sidecar: None,
        ..ClusterOptions::default()
    }
}

fn root() {
    if let Err(e) = require_root() {
        panic!("{e}");
    }
}

/// What slot `n` has on this machine: namespaces, links, chains.
fn leftovers(n: u8) -> BTreeSet<String> {
    let prefix = format!("us-{n}-");
    let mut found = BTreeSet::new();
    let run = |args: &[&str]| {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("run tool");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for l in run(&["ip", "netns", "list"]).lines() {
        found.insert(l.split_whitespace().next().unwrap_or("").to_string());
    }
    for l in run(&["ip", "-o", "link", "show"]).lines() {
        if let Some(name) = l.split(": ").nth(1) {
            found.insert(name.split('@').next().unwrap_or("").to_string());
        }
    }
    for table in ["nat", "filter"] {
        for l in run(&["iptables", "-w", "-t", table, "-S"]).lines() {
            if let Some(chain) = l.strip_prefix("-N ") {
                found.insert(chain.to_string());
            }
            if l.contains(&format!("-j {prefix}")) {
                found.insert(l.to_string());
            }
        }
    }
    found.retain(|name| name.starts_with(&prefix) || name.contains(&format!(" {prefix}")));
    found
}

/// Every process in the namespaces of `pods` (of slot `n`).
fn netns_pids(pods: &[&str], n: u8) -> Vec<u32> {
    pods.iter()
        .flat_map(|pod| {
            let out = Command::new("ip")
                .args(["netns", "pids", &format!("us-{n}-{pod}")])
                .output()
                .expect("ip netns pids");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Running (a zombie waiting for its parent to reap it is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_balances_over_ready_pods_and_follows_a_crash() {
    root();
    let cluster = Cluster::start(ClusterOptions {
        replace_delay: Duration::from_millis(500),
        ..nginx_only(3)
    })
    .await
    .unwrap();
    cluster
        .wait_all_serving(Duration::from_secs(10))
        .await
        .unwrap();
    let pods: BTreeSet<String> = cluster
        .deployment()
        .pods()
        .into_iter()
        .map(|p| p.name)
        .collect();

    let load = Load::start(LoadOptions {
        max_requests: 300,
        ..LoadOptions::new(cluster.vip())
    });
    assert!(load.pass(300, Duration::from_secs(20)).await || load.done() == 300);
    let report = load.finish().await;
    println!("{}", report.summary("harness-balance"));
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    let by = report.served_by();
    assert_eq!(
        by.keys().cloned().collect::<BTreeSet<_>>(),
        pods,
        "every pod serves"
    );
    for (pod, n) in &by {
        // Uniform would be 100 each; 50 is far outside chance.
        assert!(*n > 50, "{pod} served only {n} of 300: {by:?}");
    }

    // A crash: out of the Service at once, replaced under a new name and address.
    let victim = cluster.deployment().pods()[0].clone();
    let victim_pids = netns_pids(&[victim.name.as_str()], cluster.slot());
    assert!(
        victim_pids.len() >= 2,
        "nginx master and worker: {victim_pids:?}"
    );
    cluster.deployment().crash(&victim.name).await.unwrap();
    cluster
        .wait_endpoints("the crashed pod removed", Duration::from_secs(5), |e| {
            e.pods.len() == 2 && e.pods.iter().all(|(n, _)| *n != victim.name)
        })
        .await
        .unwrap();
    assert_eq!(
        cluster.pods().get(&victim.name).map(|s| s.phase),
        Some(Phase::Failed)
    );
    let back = cluster
        .wait_all_serving(Duration::from_secs(10))
        .await
        .unwrap();
    let (new_name, new_ip) = back
        .pods
        .iter()
        .find(|(n, _)| !pods.contains(n))
        .cloned()
        .expect("a replacement pod");
    assert_ne!(new_ip, victim.ip, "a replacement gets a new address");
    assert!(
        cluster.pods().get(&victim.name).is_none(),
        "the crashed pod is deleted"
    );

    let load = Load::start(LoadOptions {
        max_requests: 150,
        ..LoadOptions::new(cluster.vip())
    });
    load.pass(150, Duration::from_secs(20)).await;
    let report = load.finish().await;
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    assert!(
        report.served_by().contains_key(&new_name),
        "{:?}",
        report.served_by()
    );
    let n = cluster.slot();
    assert!(
        victim_pids.iter().all(|p| !alive(*p)),
        "a crashed pod's processes all die"
    );
    let names: Vec<String> = cluster
        .deployment()
        .pods()
        .into_iter()
        .map(|p| p.name)
        .collect();
    let pids = netns_pids(
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
        cluster.slot(),
    );
    cluster.shutdown().await.unwrap();
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "no process outlives the run: {pids:?}"
    );
    assert!(leftovers(n).is_empty(), "left behind: {:?}", leftovers(n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_do_not_collide() {
    root();
    let (a, b) = tokio::join!(Cluster::start(nginx_only(2)), Cluster::start(nginx_only(2)));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.slot(), b.slot());
    assert_ne!(a.vip(), b.vip());
    for c in [&a, &b] {
        c.wait_all_serving(Duration::from_secs(10)).await.unwrap();
    }
    for (c, other) in [(&a, &b), (&b, &a)] {
        let load = Load::start(LoadOptions {
            max_requests: 60,
            ..LoadOptions::new(c.vip())
        });
        load.pass(60, Duration::from_secs(20)).await;
        let report = load.finish().await;
        assert!(report.failures().is_empty(), "{:?}", report.failures());
        let mine: BTreeSet<String> = c.deployment().pods().into_iter().map(|p| p.name).collect();
        let theirs: BTreeSet<String> = other
            .deployment()
            .pods()
            .into_iter()
            .map(|p| p.name)
            .collect();
        for pod in report.served_by().keys() {
            assert!(
                mine.contains(pod) && !theirs.contains(pod),
                "{pod} served the wrong VIP"
            );
        }
    }
    let (na, nb) = (a.slot(), b.slot());
    a.shutdown().await.unwrap();
    assert!(leftovers(na).is_empty(), "{:?}", leftovers(na));
    assert!(!leftovers(nb).is_empty(), "the other run is untouched");
    b.shutdown().await.unwrap();
    assert!(leftovers(nb).is_empty(), "{:?}", leftovers(nb));
}

/// Runs this test binary's `child` test in a new process; returns it and the slot it
/// claimed (the child prints `harness-child slot=N` once its cluster is up).
fn spawn_child(child: &str) -> (std::process::Child, u8) {
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            child,
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("UNDERSTUDY_HARNESS_CHILD", "1")
        // Its failure is on purpose: no logs to keep.
        .env("UNDERSTUDY_KEEP_RUN", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = proc.stdout.take().unwrap();
    let slot = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // libtest prints "test NAME ... " without a newline first.
        .find_map(|l| {
            let n = l.split("harness-child slot=").nth(1)?;
            Some(n.trim().parse::<u8>().unwrap())
        })
        .expect("the child reports its slot");
    (proc, slot)
}

fn wait_gone(n: u8, within: Duration) {
    let deadline = Instant::now() + within;
    let slot_file = std::path::Path::new(slot::STATE_DIR).join(format!("slot-{n}"));
    while !leftovers(n).is_empty() || slot_file.exists() {
        assert!(
            Instant::now() < deadline,
            "slot {n} not cleaned within {within:?}: {:?}, slot file {}",
            leftovers(n),
            slot_file.exists()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_panicking_run_leaves_nothing_behind() {
    root();
    let (mut child, n) = spawn_child("child_panics_with_a_cluster");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child test panics");
    wait_gone(n, Duration::from_secs(15));
}

#[test]
fn a_sigkilled_run_is_cleaned_up_by_its_reaper() {
    root();
    let (mut child, n) = spawn_child("child_holds_a_cluster");
    assert!(!leftovers(n).is_empty(), "the child's cluster exists");
    child.kill().unwrap(); // SIGKILL: no Drop, no handler
    child.wait().unwrap();
    wait_gone(n, Duration::from_secs(15));
    // The sweep on the next claim would also have caught it; a new run may take the slot.
    let stale = cleanup::leftover_slots().unwrap();
    assert!(!stale.contains(&n), "{stale:?}");
}

fn is_child() -> bool {
    std::env::var_os("UNDERSTUDY_HARNESS_CHILD").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_panicking_run_leaves_nothing_behind"]
async fn child_panics_with_a_cluster() {
    if !is_child() {
        return;
    }
    let cluster = Cluster::start(nginx_only(2)).await.unwrap();
    println!("harness-child slot={}", cluster.slot());
    cluster
        .wait_all_serving(Duration::from_secs(10))
        .await
        .unwrap();
    panic!("a failing scenario");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_sigkilled_run_is_cleaned_up_by_its_reaper"]
async fn child_holds_a_cluster() {
    if !is_child() {
        return;
    }
    let cluster = Cluster::start(nginx_only(2)).await.unwrap();
    cluster
        .wait_all_serving(Duration::from_secs(10))
        .await
        .unwrap();
    println!("harness-child slot={}", cluster.slot());
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(cluster);
}
