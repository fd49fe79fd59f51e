//! The local cluster itself, without the sidecar: a real control plane whose Deployment,
//! ReplicaSet and endpointslice controllers, scheduler and kube-proxy serve a plain nginx
//! Deployment through its Service; the test kubelet does what a kubelet does for a pod;
//! two runs do not collide; nothing is left behind after a panic or a SIGKILL. Needs root.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, WatchEvent, WatchParams};
use understudy_tests::cluster::{
    Cluster, ClusterOptions, Load, LoadOptions, Signal, cleanup, require_root, slot,
};

fn root() {
    if let Err(e) = require_root() {
        panic!("{e}");
    }
}

/// A Deployment of `replicas` nginx pods and its Service, in namespace `web`.
fn web(replicas: usize) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: web
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: nginx
          image: nginx:1.27
          ports: [{{name: http, containerPort: 80}}]
          readinessProbe:
            httpGet: {{path: /, port: http}}
            periodSeconds: 1
            failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: web
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: http}}]
"#
    )
}

/// Applies [`web`] and waits until `replicas` pods are ready endpoints; the Service address.
async fn apply_web(cluster: &Cluster, replicas: usize) -> std::net::SocketAddr {
    cluster
        .kubectl()
        .run_with_input(&["apply", "-f", "-"], Some(&web(replicas)))
        .await
        .unwrap();
    wait_ready_endpoints(cluster, replicas, Duration::from_secs(60)).await;
    let svc: Service = kube::Api::namespaced(cluster.client(), "web")
        .get("web")
        .await
        .unwrap();
    let ip = svc.spec.unwrap().cluster_ip.unwrap();
    format!("{ip}:80").parse().unwrap()
}

async fn ready_endpoints(cluster: &Cluster) -> BTreeSet<String> {
    let slices: Vec<EndpointSlice> = kube::Api::namespaced(cluster.client(), "web")
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap()
        .items;
    slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .filter_map(|e| e.target_ref.as_ref()?.name.clone())
        .collect()
}

async fn wait_ready_endpoints(cluster: &Cluster, n: usize, within: Duration) -> BTreeSet<String> {
    let deadline = Instant::now() + within;
    loop {
        let ready = ready_endpoints(cluster).await;
        if ready.len() == n {
            return ready;
        }
        assert!(
            Instant::now() < deadline,
            "{n} ready endpoints within {within:?}; have {ready:?}; pods:\n{}",
            cluster
                .kubectl()
                .run(&["-n", "web", "get", "pods", "-o", "wide"])
                .await
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What slot `n` has on this machine: namespaces, links, host iptables chains.
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
        }
    }
    found.retain(|name| name.starts_with(&prefix));
    found
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

/// Every process in the run's namespaces.
fn netns_pids(n: u8) -> Vec<u32> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| ns.starts_with(&format!("us-{n}-")))
        .flat_map(|ns| {
            let out = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// kube-proxy balances the Service over the ready pods; a deleted pod's last status (the one
/// its object is removed with) says it is not Ready, its container terminated; it is replaced
/// by the ReplicaSet controller and the endpoints follow; the host gets no iptables rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_is_served_through_its_service_and_a_deleted_pod_is_replaced() {
    root();
    let cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    let n = cluster.slot();
    let addr = apply_web(&cluster, 3).await;
    let before = ready_endpoints(&cluster).await;

    let load = Load::start(LoadOptions {
        max_requests: 300,
        ..LoadOptions::new(addr)
    });
    assert!(load.pass(300, Duration::from_secs(30)).await);
    let report = load.finish().await;
    assert!(
        report.failures().is_empty(),
        "{:?}",
        report.failures().first()
    );
    let served: BTreeSet<String> = report.served_by().into_keys().collect();
    assert_eq!(
        served,
        before,
        "every ready pod serves: {:?}",
        report.served_by()
    );
    // The scheduler spread them over both Nodes.
    let pods: Vec<Pod> = kube::Api::namespaced(cluster.client(), "web")
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let nodes: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert_eq!(nodes.len(), 2, "{nodes:?}");

    let victim = before.iter().next().unwrap().clone();
    let pods: kube::Api<Pod> = kube::Api::namespaced(cluster.client(), "web");
    let rv = pods
        .get(&victim)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let params = WatchParams::default()
        .fields(&format!("metadata.name={victim}"))
        .timeout(60);
    let mut events = pods.watch(&params, &rv).await.unwrap().boxed();
    cluster
        .kubectl()
        .run(&["-n", "web", "delete", "pod", &victim])
        .await
        .unwrap();
    // As a kubelet does, the test kubelet writes the stopped pod's status (not Ready, its
    // container terminated) before it removes the object: the object deleted is that.
    let last = loop {
        match events.try_next().await.unwrap() {
            Some(WatchEvent::Deleted(p)) => break p,
            Some(WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Bookmark(_)) => {}
            other => panic!("watching {victim} until it is deleted: {other:?}"),
        }
    };
    let status = last.status.unwrap_or_default();
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status);
    assert_eq!(ready.as_deref(), Some("False"), "{victim}'s last status");
    let states = status.container_statuses.unwrap_or_default();
    assert!(
        !states.is_empty()
            && states
                .iter()
                .all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some())),
        "{victim}'s containers in its last status: {states:?}"
    );
    let after = wait_ready_endpoints(&cluster, 3, Duration::from_secs(30)).await;
    assert!(!after.contains(&victim), "{after:?}");
    assert_eq!(after.intersection(&before).count(), 2);
    let gone = pods.get_opt(&victim).await.unwrap();
    assert!(gone.is_none(), "the kubelet finished the deletion");
    assert!(
        leftovers(n)
            .iter()
            .all(|l| l.starts_with(&format!("us-{n}-"))),
        "{:?}",
        leftovers(n)
    );
    let host_chains = Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&host_chains.stdout).contains(&format!("198.19.{n}.")),
        "kube-proxy's rules stay in the node namespace"
    );
    cluster.shutdown().await.unwrap();
    assert!(leftovers(n).is_empty(), "left behind: {:?}", leftovers(n));
}

/// What the test kubelet gives a container: the downward API and Service variables, its
/// hostname, the bound ServiceAccount token and CA, its user; a container that is killed
/// is restarted and counted; a pod's deletion runs `preStop` before SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_runs_a_pod_as_a_kubelet_does() {
    root();
    let cluster = Cluster::start(ClusterOptions::nodes(1)).await.unwrap();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata:
  name: probe-me
  namespace: default
  labels: {app: probe}
spec:
  terminationGracePeriodSeconds: 10
  containers:
    - name: sidecar
      image: understudy:test
      args: ["--election", "kubelet-test", "--id", "$(POD_NAME)", "--http", "0.0.0.0:4040"]
      env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - name: MEM
          valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
      resources:
        limits: {memory: 64Mi}
      securityContext: {runAsUser: 65532, runAsGroup: 65532}
      readinessProbe:
        exec:
          command: ["/bin/sh", "-c", "test \"$(hostname)\" = probe-me && test -r /var/run/secrets/kubernetes.io/serviceaccount/token && test \"$(id -u)\" = 65532"]
        periodSeconds: 1
    - name: web
      image: nginx:1.27
      lifecycle:
        preStop:
          exec:
            command: ["/bin/sh", "-c", "echo prestop > /tmp/understudy-prestop-$(hostname)"]
"#;
    let _ = std::fs::remove_file("/tmp/understudy-prestop-probe-me");
    cluster
        .kubectl()
        .run_with_input(&["apply", "-f", "-"], Some(manifest))
        .await
        .unwrap();
    let api: kube::Api<Pod> = kube::Api::namespaced(cluster.client(), "default");
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let wait = |pred: Box<dyn Fn(&Pod) -> bool + Send>, what: &'static str| {
        let api = api.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(p) = api.get("probe-me").await
                    && pred(&p)
                {
                    return p;
                }
                assert!(Instant::now() < deadline, "pod never {what}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // Ready only if the exec probe saw the hostname, the token and the user.
    let pod = wait(Box::new(ready), "Ready").await;
    let status = pod.status.unwrap();
    let ip = status.pod_ip.clone().unwrap();
    assert!(
        ip.starts_with(&format!("198.18.{}.", cluster.slot())),
        "{ip}"
    );

    // The sidecar got its environment: it names itself and reads the Lease with the
    // pod's own token (the default ServiceAccount may not, so it reports the refusal).
    let rt = cluster.kubelet().pod("default", "probe-me").unwrap();
    let sidecar = rt.container("sidecar").unwrap();
    let pid = sidecar.state().running.unwrap().1;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let env: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    for want in [
        "POD_NAME=probe-me".to_string(),
        format!("POD_IP={ip}"),
        "MEM=64".into(),
        "HOSTNAME=probe-me".into(),
        format!("KUBERNETES_SERVICE_HOST=198.19.{}.1", cluster.slot()),
        "KUBERNETES_SERVICE_PORT=443".into(),
    ] {
        assert!(env.contains(&want), "{want} in {env:?}");
    }

    // A killed container is restarted after the back-off and counted.
    cluster
        .kubelet()
        .signal("default", "probe-me", "sidecar", Signal::Kill)
        .await
        .unwrap();
    let pod = wait(
        Box::new(|p: &Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.name == "sidecar"
                            && c.restart_count == 1
                            && c.state.as_ref().is_some_and(|s| s.running.is_some())
                    })
                })
        }),
        "restarted",
    )
    .await;
    let cs = pod.status.unwrap().container_statuses.unwrap();
    let side = cs.iter().find(|c| c.name == "sidecar").unwrap();
    let last = side
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_eq!(last.exit_code, 137, "killed by SIGKILL: {last:?}");

    // Deletion: preStop ran (it wrote its file), then the pod object went away.
    cluster
        .kubectl()
        .run(&["delete", "pod", "probe-me", "--timeout=30s"])
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string("/tmp/understudy-prestop-probe-me").unwrap(),
        "prestop\n"
    );
    let _ = std::fs::remove_file("/tmp/understudy-prestop-probe-me");
    assert!(api.get_opt("probe-me").await.unwrap().is_none());
    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_do_not_collide() {
    root();
    let (a, b) = tokio::join!(
        Cluster::start(ClusterOptions::nodes(1)),
        Cluster::start(ClusterOptions::nodes(1))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.slot(), b.slot());
    let (va, vb) = (apply_web(&a, 1).await, apply_web(&b, 1).await);
    assert_ne!(va, vb);
    for (c, addr) in [(&a, va), (&b, vb)] {
        let load = Load::start(LoadOptions {
            max_requests: 30,
            ..LoadOptions::new(addr)
        });
        load.pass(30, Duration::from_secs(20)).await;
        let report = load.finish().await;
        assert!(report.failures().is_empty(), "{:?}", report.failures());
        let mine = ready_endpoints(c).await;
        for pod in report.served_by().keys() {
            assert!(mine.contains(pod), "{pod} served the wrong Service");
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
    let (mut child, n) = spawn_child("harness::child_panics_with_a_cluster");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child test panics");
    wait_gone(n, Duration::from_secs(30));
}

#[test]
fn a_sigkilled_run_is_cleaned_up_by_its_reaper() {
    root();
    let (mut child, n) = spawn_child("harness::child_holds_a_cluster");
    assert!(!leftovers(n).is_empty(), "the child's cluster exists");
    let pids = netns_pids(n);
    assert!(
        !pids.is_empty(),
        "the control plane runs in the node namespace"
    );
    child.kill().unwrap(); // SIGKILL: no Drop, no handler
    child.wait().unwrap();
    wait_gone(n, Duration::from_secs(30));
    // SIGKILLed processes may take a moment to finish exiting (etcd unmapping its memory).
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) {
        let left: Vec<&u32> = pids.iter().filter(|p| alive(**p)).collect();
        assert!(
            Instant::now() < deadline,
            "no process outlives the run: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let cluster = Cluster::start(ClusterOptions::nodes(1)).await.unwrap();
    println!("harness-child slot={}", cluster.slot());
    apply_web(&cluster, 1).await;
    panic!("a failing scenario");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_sigkilled_run_is_cleaned_up_by_its_reaper"]
async fn child_holds_a_cluster() {
    if !is_child() {
        return;
    }
    let cluster = Cluster::start(ClusterOptions::nodes(1)).await.unwrap();
    apply_web(&cluster, 1).await;
    println!("harness-child slot={}", cluster.slot());
    tokio::time::sleep(Duration::from_secs(120)).await;
    drop(cluster);
}
