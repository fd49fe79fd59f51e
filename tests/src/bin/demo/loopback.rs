//! The demo without root: pods are `understudy` processes on their own loopback addresses
//! (127.0.0.x), each in front of an in-process app serving the page nginx would serve; the
//! Service is a userspace proxy on 127.0.0.1 that sends each connection to a random Ready
//! pod (kube-proxy's old userspace mode). No namespaces, no iptables, no nginx.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use understudy_tests::cluster::app::{AccessEntry, page_html};
use understudy_tests::cluster::kubelet::{self, ProbeOptions, ProbeTarget};
use understudy_tests::cluster::process::{Proc, Signal};
use understudy_tests::cluster::sidecar::{ADMIN_PORT, PROXY_PORT};
use understudy_tests::cluster::{
    HarnessError, OverlapReport, Phase, PodTable, SidecarOptions, overlap,
};
use understudy_tests::emulator::{Emulator, EmulatorOptions, FaultScope};

/// The loopback cluster.
pub struct Loopback {
    inner: Arc<Inner>,
    service: SocketAddr,
    service_task: JoinHandle<()>,
}

struct Inner {
    emulator: Emulator,
    dir: tempfile::TempDir,
    binary: PathBuf,
    sidecar: SidecarOptions,
    replace_delay: Duration,
    table: PodTable,
    served: Arc<Mutex<BTreeMap<String, Vec<AccessEntry>>>>,
    state: Mutex<State>,
}

struct State {
    pods: BTreeMap<String, Pod>,
    next_host: u8,
    revision: u32,
    serial: u32,
}

struct Pod {
    ip: Ipv4Addr,
    sidecar: Arc<Proc>,
    terminating: bool,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Loopback {
    /// Starts the API server, the Service and `replicas` pods.
    pub async fn start(
        binary: PathBuf,
        sidecar: SidecarOptions,
        replicas: usize,
    ) -> Result<Loopback, HarnessError> {
        let emulator = Emulator::start(EmulatorOptions::default()).await?;
        let dir = tempfile::tempdir().map_err(|e| HarnessError::io("create", "a temp dir", e))?;
        let table = PodTable::default();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| HarnessError::io("bind", "127.0.0.1:0", e))?;
        let service = listener
            .local_addr()
            .map_err(|e| HarnessError::io("bind", "127.0.0.1:0", e))?;
        let service_task = tokio::spawn(userspace_proxy(listener, table.clone()));
        let inner = Arc::new(Inner {
            emulator,
            dir,
            binary,
            sidecar,
            replace_delay: Duration::from_secs(1),
            table,
            served: Arc::default(),
            state: Mutex::new(State {
                pods: BTreeMap::new(),
                // Away from the 127.0.0.x the sidecar tests use.
                next_host: 100 + (std::process::id() % 50) as u8,
                revision: 1,
                serial: 0,
            }),
        });
        for _ in 0..replicas {
            inner.create().await?;
        }
        Ok(Loopback {
            inner,
            service,
            service_task,
        })
    }

    /// The Service address.
    pub fn service(&self) -> SocketAddr {
        self.service
    }

    /// The API server's URL.
    pub fn api_url(&self) -> String {
        self.inner.emulator.server_url()
    }

    /// Pod statuses.
    pub fn table(&self) -> &PodTable {
        &self.inner.table
    }

    /// The current pods: name and admin address.
    pub fn admin_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.inner
            .state()
            .pods
            .iter()
            .map(|(n, p)| (n.clone(), SocketAddr::from((p.ip, ADMIN_PORT))))
            .collect()
    }

    /// The Lease as stored: (holder, epoch).
    pub fn lease(&self) -> Option<(String, u64)> {
        let lease =
            self.inner
                .emulator
                .store()
                .get("leases", "default", &self.inner.sidecar.election)?;
        Some((
            lease["spec"]["holderIdentity"].as_str()?.to_string(),
            lease["spec"]["leaseTransitions"].as_u64().unwrap_or(0),
        ))
    }

    /// SIGKILL a pod's sidecar; it is replaced after a second.
    pub async fn crash(&self, pod: &str) -> Result<(), HarnessError> {
        let proc = self.inner.sidecar_of(pod)?;
        proc.signal(Signal::Kill).await
    }

    /// Starts a new revision.
    pub fn new_revision(&self) {
        self.inner.state().revision += 1;
    }

    /// SIGTERM, wait for the exit, start a new pod, wait until it is Ready.
    pub async fn replace(&self, pod: &str, within: Duration) -> Result<String, HarnessError> {
        let proc = self.inner.sidecar_of(pod)?;
        if let Some(p) = self.inner.state().pods.get_mut(pod) {
            p.terminating = true;
        }
        self.inner.table.set_phase(pod, Phase::Terminating);
        proc.signal(Signal::Term).await?;
        let grace = self.inner.sidecar.drain + self.inner.sidecar.effective_hold_timeout();
        if proc.wait(grace).await.is_err() {
            proc.kill().await?;
        }
        self.inner.remove(pod);
        let new = self.inner.create().await?;
        let mut rx = self.inner.table.subscribe();
        let ready = rx.wait_for(|m| m.get(&new).is_some_and(|s| s.ready));
        match tokio::time::timeout(within, ready).await {
            Ok(Ok(_)) => Ok(new),
            _ => Err(HarnessError::timeout(
                format!("pod {new} to be Ready"),
                within,
            )),
        }
    }

    /// Cuts a pod off from the API server.
    pub fn partition(&self, pod: &str) {
        self.inner
            .emulator
            .faults()
            .partition(FaultScope::Client(pod.to_string()));
    }

    /// Ends a partition.
    pub fn heal(&self, pod: &str) {
        self.inner
            .emulator
            .faults()
            .heal(FaultScope::Client(pod.to_string()));
    }

    /// The overlap check over what the apps served.
    pub fn overlap(&self) -> OverlapReport {
        let served = self
            .inner
            .served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        overlap::check(&served.into_iter().collect::<Vec<_>>())
    }

    /// Stops everything.
    pub async fn shutdown(self) {
        self.service_task.abort();
        let pods = std::mem::take(&mut self.inner.state().pods);
        for pod in pods.values() {
            let _ = pod.sidecar.kill().await;
        }
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sidecar_of(&self, pod: &str) -> Result<Arc<Proc>, HarnessError> {
        self.state()
            .pods
            .get(pod)
            .map(|p| p.sidecar.clone())
            .ok_or_else(|| HarnessError::NoSuchPod(pod.to_string()))
    }

    fn remove(&self, pod: &str) {
        self.state().pods.remove(pod);
        self.table.remove(pod);
    }

    /// A free loopback address: both sidecar ports bindable on it.
    fn next_ip(&self) -> Result<Ipv4Addr, HarnessError> {
        let mut state = self.state();
        for _ in 0..150 {
            let host = state.next_host;
            state.next_host = if host >= 250 { 100 } else { host + 1 };
            let ip = Ipv4Addr::new(127, 0, 0, host);
            let free = [ADMIN_PORT, PROXY_PORT]
                .iter()
                .all(|port| std::net::TcpListener::bind((ip, *port)).is_ok());
            if free && !state.pods.values().any(|p| p.ip == ip) {
                return Ok(ip);
            }
        }
        Err(HarnessError::timeout(
            "a free 127.0.0.x address",
            Duration::ZERO,
        ))
    }

    fn create(self: &Arc<Self>) -> futures::future::BoxFuture<'_, Result<String, HarnessError>> {
        Box::pin(async move {
            let ip = self.next_ip()?;
            let name = {
                let mut state = self.state();
                state.serial += 1;
                format!("nginx-r{}-{:03}", state.revision, state.serial)
            };
            let app = start_app(&name, self.served.clone()).await?;
            let kubeconfig = self.dir.path().join(format!("{name}.kubeconfig"));
            self.emulator
                .write_kubeconfig(&name, &kubeconfig)
                .map_err(|e| HarnessError::io("write", &kubeconfig, e))?;
            let log_path = self.dir.path().join(format!("{name}.log"));
            let log = std::fs::File::create(&log_path)
                .map_err(|e| HarnessError::io("create", &log_path, e))?;
            let mut args = self.sidecar.args(&name, ip, ip);
            let upstream = args
                .iter()
                .position(|a| a == "--upstream")
                .expect("--upstream");
            args[upstream + 1] = app.0.to_string();
            let mut cmd = tokio::process::Command::new(&self.binary);
            cmd.args(args)
                .env_clear()
                .env("KUBECONFIG", &kubeconfig)
                .env("RUST_LOG", &self.sidecar.log_filter)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            let sidecar = Arc::new(Proc::spawn(cmd, format!("understudy of {name}"))?);
            self.table.add(&name, ip);
            let prober = {
                let sidecar = sidecar.clone();
                kubelet::spawn(
                    ProbeTarget {
                        pod: name.clone(),
                        ip,
                        netns: String::new(),
                    },
                    ProbeOptions::sidecar_readyz(),
                    self.table.clone(),
                    move || sidecar.exited().is_none(),
                )
            };
            let monitor =
                tokio::spawn(monitor(Arc::downgrade(self), name.clone(), sidecar.clone()));
            self.state().pods.insert(
                name.clone(),
                Pod {
                    ip,
                    sidecar,
                    terminating: false,
                    tasks: vec![app.1, prober, monitor],
                },
            );
            Ok(name)
        })
    }
}

/// A crashed sidecar: unready at once, replaced after the delay.
async fn monitor(inner: std::sync::Weak<Inner>, name: String, sidecar: Arc<Proc>) {
    let _ = sidecar.wait(Duration::from_secs(24 * 3600)).await;
    let Some(i) = inner.upgrade() else { return };
    if i.state().pods.get(&name).is_none_or(|p| p.terminating) {
        return;
    }
    i.table.set_ready(&name, false);
    i.table.set_phase(&name, Phase::Failed);
    let delay = i.replace_delay;
    drop(i);
    tokio::time::sleep(delay).await;
    let Some(i) = inner.upgrade() else { return };
    // Detach this task from the pod before removing it, so removing does not abort it.
    if let Some(p) = i.state().pods.get_mut(&name) {
        p.tasks.pop();
    }
    i.remove(&name);
    if let Err(e) = i.create().await {
        tracing::warn!(error = %e, "replacement pod");
    }
}

/// The app: the page naming its pod, and a record of every request with its fencing token.
async fn start_app(
    pod: &str,
    served: Arc<Mutex<BTreeMap<String, Vec<AccessEntry>>>>,
) -> Result<(SocketAddr, JoinHandle<()>), HarnessError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| HarnessError::io("bind", "127.0.0.1:0", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| HarnessError::io("bind", "127.0.0.1:0", e))?;
    let pod = pod.to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (pod, served) = (pod.clone(), served.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(String::from)
                    };
                    let entry = AccessEntry {
                        logged: SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_secs_f64(),
                        request_time: 0.0,
                        status: 200,
                        leader: header("x-understudy-leader"),
                        epoch: header("x-understudy-epoch").and_then(|e| e.parse().ok()),
                        lease: header("x-understudy-lease"),
                        request: format!("{} {}", req.method(), req.uri()),
                    };
                    served
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(pod.clone())
                        .or_default()
                        .push(entry);
                    let page = page_html(&pod);
                    async move {
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(page))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// kube-proxy's userspace mode: each connection goes to a random Ready pod; a pod that
/// refuses is skipped for the next.
async fn userspace_proxy(listener: TcpListener, table: PodTable) {
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id());
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        let mut endpoints: Vec<Ipv4Addr> = table
            .snapshot()
            .values()
            .filter(|s| s.serving())
            .map(|s| s.ip)
            .collect();
        // A random rotation: uniform first choice, the rest in order as fallbacks.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if !endpoints.is_empty() {
            let k = (rng % endpoints.len() as u64) as usize;
            endpoints.rotate_left(k);
        }
        tokio::spawn(async move {
            for ip in endpoints {
                if let Ok(mut upstream) = TcpStream::connect((ip, PROXY_PORT)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    return;
                }
            }
        });
    }
}
