//! Sidecars on loopback against the real API server: for end-to-end tests of what passes
//! between `understudy` processes (forwards, upgrades, streams, hostile input, peer TLS,
//! metrics), where pods and a Service would only add time. The control plane is the real
//! one ([`Cluster`] with no Nodes: etcd and kube-apiserver, RBAC on); the sidecars
//! authenticate as the ServiceAccount of `deploy/base`, authorized only by its Role, each
//! through its own [`FaultProxy`] so a test can cut one off.
//!
//! ```no_run
//! # async fn demo() {
//! use understudy_tests::cluster::loopback::Loopback;
//! use understudy_tests::cluster::test_app;
//! let world = Loopback::start("my-election").await;
//! let a = world.sidecar("pod-a").upstream(test_app::app("pod-a").await).start().await;
//! let b = world.sidecar("pod-b").upstream(test_app::app("pod-b").await).start().await;
//! let leader = understudy_tests::cluster::loopback::agreed_leader(&[&a, &b], std::time::Duration::from_secs(15)).await;
//! # }
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use ::http::StatusCode;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use super::fault::FaultProxy;
use super::harness::{Cluster, ClusterOptions};
use super::http;
use super::sidecar::{TEST_TIMINGS, Timings, binary};
use crate::manifest;

/// The namespace the sidecars elect in and authenticate from.
pub const NAMESPACE: &str = "default";

/// The API server and the RBAC of `deploy/base` (plus chosen components) for sidecars on
/// loopback.
pub struct Loopback {
    cluster: Cluster,
    dir: tempfile::TempDir,
    /// The election every sidecar of this world joins (`--election`).
    pub election: String,
    /// The election timings every sidecar gets (before its own flags).
    pub timings: Vec<String>,
}

/// A fresh loopback address for each sidecar of this process (`127.0.0.10..=250`), so that
/// sidecars of one test differ in address as pods do.
fn next_ip() -> Ipv4Addr {
    static NEXT: AtomicU8 = AtomicU8::new(10);
    let n = NEXT
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(if n >= 250 { 10 } else { n + 1 })
        })
        .expect("the closure always returns Some");
    Ipv4Addr::new(127, 0, 0, n)
}

impl Loopback {
    /// The API server with `deploy/base` applied in [`NAMESPACE`].
    pub async fn start(election: &str) -> Loopback {
        Loopback::with_components(election, &[]).await
    }

    /// [`Loopback::start`] with `deploy/components/<name>` of `components` applied too
    /// (`pod-labels`, `events`).
    pub async fn with_components(election: &str, components: &[&str]) -> Loopback {
        let cluster = Cluster::start(ClusterOptions::api_only())
            .await
            .unwrap_or_else(|e| panic!("the API server: {e}"));
        let dir = tempfile::tempdir().expect("a temporary directory");
        let deploy = manifest::repo_root().join("deploy");
        let kustomization = serde_json::json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": NAMESPACE,
            "resources": [manifest::relative(dir.path(), &deploy.join("base"))],
            "components": components
                .iter()
                .map(|c| manifest::relative(dir.path(), &deploy.join("components").join(c)))
                .collect::<Vec<_>>(),
        });
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            serde_yaml::to_string(&kustomization).expect("YAML"),
        )
        .expect("write the kustomization");
        let d = dir.path().display().to_string();
        cluster
            .kubectl()
            .run(&["apply", "-k", &d])
            .await
            .unwrap_or_else(|e| panic!("apply deploy/base: {e}"));
        Loopback {
            cluster,
            dir,
            election: election.to_string(),
            timings: TEST_TIMINGS.args(),
        }
    }

    /// The cluster (API server, kubectl, an admin client).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Writes `<file>.kubeconfig` in [`Loopback::dir`]: the ServiceAccount of `deploy/base`
    /// with a fresh token, reaching the API server directly; returns its path.
    pub async fn kubeconfig(&self, file: &str) -> std::path::PathBuf {
        let path = self.dir().join(format!("{file}.kubeconfig"));
        self.cluster
            .write_service_account_kubeconfig(NAMESPACE, "understudy", self.cluster.api(), &path)
            .await
            .unwrap_or_else(|e| panic!("a kubeconfig for {file}: {e}"))
    }

    /// A directory for the test's files, removed with the world.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client for an in-process candidate `name`: it authenticates as a ServiceAccount of
    /// its own (`name`, bound to the Role of `deploy/base`, so the audit log tells the
    /// candidates apart) through a fault proxy of its own.
    pub async fn client(&self, name: &str) -> (kube::Client, FaultProxy) {
        let binding = format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
             metadata: {{name: understudy-{name}, namespace: {NAMESPACE}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: understudy}}\n\
             subjects: [{{kind: ServiceAccount, name: {name}, namespace: {NAMESPACE}}}]\n"
        );
        self.cluster
            .kubectl()
            .run_with_input(&["apply", "-f", "-"], Some(&binding))
            .await
            .unwrap_or_else(|e| panic!("ServiceAccount {name}: {e}"));
        let proxy = FaultProxy::start(self.cluster.api())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let path = self.dir().join(format!("{name}.kubeconfig"));
        self.cluster
            .write_service_account_kubeconfig(NAMESPACE, name, proxy.addr(), &path)
            .await
            .unwrap_or_else(|e| panic!("kubeconfig for {name}: {e}"));
        let client = super::control_plane::client_from(&path)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (client, proxy)
    }

    /// Waits until the Lease `lease` names every pod of `members` in its failsafe member set
    /// (`understudy.io/members`): from then on any of them may take over on the member
    /// expiry. A pod that joined after the holder's last write is not named; killing every
    /// named pod that could take over before then leaves the Lease to the dead lease
    /// (docs/election.md, "Limits").
    pub async fn wait_members_named(&self, lease: &str, members: &[&str], within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let path = r"jsonpath={.metadata.annotations.understudy\.io/members}";
        loop {
            let named = self
                .cluster
                .kubectl()
                .run(&["get", "lease", lease, "-n", NAMESPACE, "-o", path])
                .await
                .unwrap_or_default();
            let named: Vec<&str> = named.trim().split(',').collect();
            if members.iter().all(|m| named.contains(m)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Lease {lease} names {named:?}, not all of {members:?}, after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A sidecar to start.
    pub fn sidecar(&self, name: &str) -> SidecarBuilder<'_> {
        SidecarBuilder {
            world: self,
            name: name.to_string(),
            upstream: None,
            args: Vec::new(),
            peer_tls_dir: None,
            binary: None,
            api_host: None,
            log: "info,understudy::access=info".into(),
        }
    }

    /// Uses `timings` (election flags) for sidecars started from now on.
    pub fn set_timings(&mut self, timings: &Timings) {
        self.timings = timings.args();
    }

    /// Sidecars `names` in proxy mode, each in front of a test app named after it, with
    /// `extra` flags.
    pub async fn sidecars(&self, names: &[&'static str], extra: &[&str]) -> Vec<Sidecar> {
        let mut out = Vec::new();
        for name in names {
            let up = super::test_app::app(name).await;
            out.push(self.sidecar(name).upstream(up).args(extra).start().await);
        }
        out
    }

    /// Three proxying sidecars `pod-a`, `pod-b`, `pod-c`, each with an app named after it.
    pub async fn three(&self, extra: &[&str]) -> Vec<Sidecar> {
        self.sidecars(&["pod-a", "pod-b", "pod-c"], extra).await
    }

    /// Two proxying sidecars that agree on a leader, for what must pass a forward between
    /// processes.
    pub async fn pair(&self) -> Pair {
        let pods = self.sidecars(&["pod-a", "pod-b"], &[]).await;
        let leader = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
        let via = pods
            .iter()
            .find(|p| p.name != leader)
            .and_then(|p| p.listen)
            .expect("a standby");
        Pair {
            _pods: pods,
            leader,
            via,
        }
    }

    /// An nginx on a fresh loopback address (the pods' app: a page naming `name`, an access
    /// log of the fencing headers for the overlap checker); returns once it listens.
    pub async fn nginx(&self, name: &str) -> Nginx {
        let ip = next_ip();
        let listen = free_port(ip).await;
        let SocketAddr::V4(v4) = listen else {
            unreachable!("an IPv4 loopback address")
        };
        let dir = self.dir().join(format!("nginx-{name}"));
        let app = super::app::App::configure(name, &dir, v4).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new("nginx");
        cmd.args(app.argv())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: the workers go with the master (see Drop).
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("nginx (Debian's nginx-light) on PATH");
        eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(listen).await.is_ok()
        })
        .await;
        Nginx {
            addr: listen,
            access_log: app.access_log.clone(),
            _child: child,
        }
    }

    /// Ends the world (also done on drop).
    pub async fn shutdown(self) {
        let _ = self.cluster.shutdown().await;
    }
}

/// How one sidecar is started.
pub struct SidecarBuilder<'w> {
    world: &'w Loopback,
    name: String,
    upstream: Option<SocketAddr>,
    args: Vec<String>,
    peer_tls_dir: Option<std::path::PathBuf>,
    binary: Option<std::path::PathBuf>,
    api_host: Option<String>,
    log: String,
}

impl SidecarBuilder<'_> {
    /// Proxy mode in front of `app` (`--listen` on a free port, `--upstream`,
    /// `--access-log`); without it the sidecar only elects.
    pub fn upstream(mut self, app: SocketAddr) -> Self {
        self.upstream = Some(app);
        self
    }

    /// More flags, after the world's timings (a later flag wins).
    pub fn args(mut self, extra: &[&str]) -> Self {
        self.args.extend(extra.iter().map(|s| s.to_string()));
        self
    }

    /// The mTLS peer channel: `--peer-listen` on a free port of the sidecar's address,
    /// `--peer-tls-dir dir`.
    pub fn peer_tls(mut self, dir: &Path) -> Self {
        self.peer_tls_dir = Some(dir.to_path_buf());
        self
    }

    /// Another `understudy` binary than the dev build (the shipping build, say).
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_path_buf());
        self
    }

    /// The API server's host as the kubeconfig names it (default: its fault proxy's
    /// address; `localhost` makes the sidecar look the name up).
    pub fn api_host(mut self, host: &str) -> Self {
        self.api_host = Some(host.to_string());
        self
    }

    /// `RUST_LOG` for the sidecar.
    pub fn log(mut self, filter: &str) -> Self {
        self.log = filter.to_string();
        self
    }

    /// Starts the sidecar; returns once its admin server answers and it has read the
    /// Lease (`/status` says `synced`).
    pub async fn start(self) -> Sidecar {
        let sidecar = self.spawn().await;
        let ok = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Some((StatusCode::OK, body)) = sidecar.admin_get("/status").await
                    && body.contains("\"synced\":true")
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            ok.is_ok(),
            "sidecar {} did not sync within 20s",
            sidecar.name
        );
        sidecar
    }

    /// Starts the sidecar and returns at once (for tests of start-up itself).
    pub async fn spawn(self) -> Sidecar {
        let world = self.world;
        let ip = next_ip();
        let api = FaultProxy::start(world.cluster.api())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let kubeconfig = world.dir().join(format!("{}.kubeconfig", self.name));
        world
            .cluster
            .write_service_account_kubeconfig(NAMESPACE, "understudy", api.addr(), &kubeconfig)
            .await
            .unwrap_or_else(|e| panic!("kubeconfig for {}: {e}", self.name));
        if let Some(host) = &self.api_host {
            let text = std::fs::read_to_string(&kubeconfig).expect("read the kubeconfig");
            let by_name = text.replace(
                &format!("://{}", api.addr()),
                &format!("://{host}:{}", api.addr().port()),
            );
            std::fs::write(&kubeconfig, by_name).expect("write the kubeconfig");
        }
        // Both ports are chosen while both are held, so they cannot come out the same.
        let admin_port = TcpListener::bind((ip, 0)).await.expect("bind loopback");
        let admin = admin_port.local_addr().expect("a bound address");
        let listen_port = TcpListener::bind((ip, 0)).await.expect("bind loopback");
        let peer_port = TcpListener::bind((ip, 0)).await.expect("bind loopback");
        let program = match &self.binary {
            Some(path) => path.clone(),
            None => binary(true).unwrap_or_else(|e| panic!("{e}")),
        };
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", &self.log)
            .args([
                "--election",
                &world.election,
                "--election-namespace",
                NAMESPACE,
                "--id",
                &self.name,
                "--http",
                &admin.to_string(),
            ])
            .args(&world.timings)
            .args(["--drain", "1s"]);
        let mut listen = None;
        if let Some(up) = self.upstream {
            let addr = listen_port.local_addr().expect("a bound address");
            cmd.args([
                "--listen",
                &addr.to_string(),
                "--upstream",
                &up.to_string(),
                "--access-log",
            ]);
            listen = Some(addr);
        }
        let mut peer = None;
        if let Some(dir) = &self.peer_tls_dir {
            let addr = peer_port.local_addr().expect("a bound address");
            cmd.arg("--peer-listen")
                .arg(addr.to_string())
                .arg("--peer-tls-dir")
                .arg(dir);
            peer = Some(addr);
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        drop((admin_port, listen_port, peer_port));
        let child = cmd.spawn().expect("start understudy");
        Sidecar {
            name: self.name,
            ip,
            admin,
            listen,
            peer,
            child: Some(child),
            api,
        }
    }
}

/// An nginx on loopback.
pub struct Nginx {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its access log (the overlap checker's input).
    pub access_log: std::path::PathBuf,
    _child: Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // nginx's workers outlive a killed master: the whole group goes.
        if let Some(pid) = self._child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

/// Two sidecars that agree on a leader.
pub struct Pair {
    /// Both sidecars, kept running until the pair is dropped.
    _pods: Vec<Sidecar>,
    /// The leader's name.
    pub leader: String,
    /// The standby's proxy address: what is sent there goes through both sidecars.
    pub via: SocketAddr,
}

/// A free port on `ip` (bound, then released for a process to take; another process could
/// take it in between, which is rare enough on a test machine).
pub async fn free_port(ip: Ipv4Addr) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).await.expect("bind loopback");
    l.local_addr().expect("a bound address")
}

/// `GET http://addr/path` (connection closed after), within `timeout`: status and body.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(StatusCode, String), http::GetError> {
    http::get(&http::client(false, timeout), addr, path, false, timeout).await
}

/// Sends `req` on a fresh connection, within `timeout`: status and body.
pub async fn send(
    req: ::http::Request<http_body_util::Full<bytes::Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, String), http::GetError> {
    http::send(&http::client(false, timeout), req, timeout).await
}

/// One `understudy` process.
pub struct Sidecar {
    /// Its identity (`--id`).
    pub name: String,
    /// Its loopback address.
    pub ip: Ipv4Addr,
    /// Its admin address.
    pub admin: SocketAddr,
    /// Its proxy address, in proxy mode.
    pub listen: Option<SocketAddr>,
    /// Its mTLS peer address, with the peer channel on.
    pub peer: Option<SocketAddr>,
    /// The process, until it is killed or waited for.
    pub child: Option<Child>,
    /// Its way to the API server: cut it to partition this sidecar.
    pub api: FaultProxy,
}

impl Sidecar {
    /// Sends SIGTERM (via kill(1); the product handles it).
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends signal `name` (`STOP`, `CONT`, ...) via kill(1).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success());
    }

    /// SIGKILL, and reap.
    pub async fn sigkill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("SIGKILL");
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let status = tokio::time::timeout(within, child.wait())
            .await
            .expect("exit in time")
            .expect("wait");
        status.code()
    }

    /// `GET path` on the admin server.
    pub async fn admin_get(&self, path: &str) -> Option<(StatusCode, String)> {
        let client = http::client(false, Duration::from_secs(1));
        http::get(&client, self.admin, path, false, Duration::from_secs(2))
            .await
            .ok()
    }

    /// The sum of every sample of metric `name` whose labels contain `labels` (for example
    /// `result="ok"`; `""` for all, and for a metric without labels), from `GET /metrics`.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics").await.expect("metrics");
        let (labelled, bare) = (format!("{name}{{"), format!("{name} "));
        text.lines()
            .filter(|l| {
                (l.starts_with(&labelled) && l.contains(labels))
                    || (labels.is_empty() && l.starts_with(&bare))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// The leader this sidecar names on `GET /`.
    pub async fn leader_name(&self) -> Option<String> {
        let (_, body) = self.admin_get("/").await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["name"].as_str().map(str::to_string)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Waits until every sidecar in `pods` names the same non-empty leader; returns it.
pub async fn agreed_leader(pods: &[&Sidecar], within: Duration) -> String {
    agreed_leader_not(pods, "", within).await
}

/// Waits until every sidecar in `pods` names the same leader, other than `old`.
pub async fn agreed_leader_not(pods: &[&Sidecar], old: &str, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut names = Vec::new();
        for p in pods {
            names.push(p.leader_name().await.unwrap_or_default());
        }
        if !names[0].is_empty() && names[0] != old && names.iter().all(|n| *n == names[0]) {
            return names.swap_remove(0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed new leader within {within:?}: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `cond` (a probe of another process) until it holds; panics after `within`.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
