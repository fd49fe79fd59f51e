//! The control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
//! kube-proxy, the real binaries `tests/k8s/build` makes from pinned Go modules, each a
//! process on the node (`ip netns exec us-N-node …`) with its log in the run directory.
//!
//! | component | how it runs here |
//! |---|---|
//! | etcd | `--unsafe-no-fsync`, its own data directory, client URL on the node's loopback |
//! | kube-apiserver | TLS on `198.18.N.1:6443`, `--authorization-mode=RBAC`, client-certificate authentication, ServiceAccount token signing (TokenRequest), an audit log of every request |
//! | kube-controller-manager | the deployment, replicaset, statefulset, endpointslice, serviceaccount, disruption, garbage-collector and root-CA publisher controllers, each with its own ServiceAccount credentials |
//! | kube-scheduler | as is, no leader election |
//! | kube-proxy | iptables mode, `hostnameOverride` the first Node, its rules in the node namespace |
//!
//! Start-up waits on `/readyz` (API server), the ServiceAccount and root CA objects the
//! controller manager makes (so pods can be admitted and get their token volume) and
//! kube-proxy's `/healthz` (rules synced), never on sleeps.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};

use super::node::{NodeNet, pod_cidr, service_cidr};
use super::pki::Pki;
use crate::cluster::HarnessError;
use crate::cluster::process::{Proc, Signal};
use crate::cluster::wait::poll;
use crate::kubeconfig::{Credentials, Kubeconfig};

/// The API server's secure port.
pub const API_PORT: u16 = 6443;
/// kube-proxy's health port (on the node address).
const PROXY_HEALTH_PORT: u16 = 10256;

/// Which components run besides etcd and the API server, and how the API server runs.
#[derive(Clone, Debug)]
pub struct Components {
    /// kube-controller-manager.
    pub controllers: bool,
    /// kube-scheduler.
    pub scheduler: bool,
    /// kube-proxy.
    pub proxy: bool,
    /// More kube-apiserver flags.
    pub apiserver_args: Vec<String>,
}

/// The running control plane.
pub struct ControlPlane {
    etcd: Proc,
    apiserver: Proc,
    others: Vec<Proc>,
    api: SocketAddr,
    admin_kubeconfig: PathBuf,
    admin: kube::Client,
    dir: PathBuf,
}

/// Where the built Kubernetes binaries are: `$UNDERSTUDY_K8S_BIN`, else `target/k8s/bin` of
/// this workspace. Runs `tests/k8s/build` once per process when binaries were built before
/// (it does nothing in under a second when they are current), so a test never runs stale
/// ones; when none were built, says how to build them.
pub fn k8s_bin() -> Result<PathBuf, HarnessError> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(dir) = std::env::var_os("UNDERSTUDY_K8S_BIN").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        let top = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ has a parent")
            .to_path_buf();
        let dir = top.join("target/k8s/bin");
        if !dir.join("kube-apiserver").is_file() {
            return Err(format!(
                "{} has no kube-apiserver: run tests/k8s/build (about 15 minutes the first time)",
                dir.display()
            ));
        }
        let status = std::process::Command::new(top.join("tests/k8s/build"))
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("run tests/k8s/build: {e}"))?;
        if !status.success() {
            return Err(format!("tests/k8s/build failed ({status})"));
        }
        Ok(dir)
    })
    .clone()
    .map_err(HarnessError::Setup)
}

// === impl ControlPlane ===

impl ControlPlane {
    /// Starts etcd and the API server on `node`, then the chosen components; returns once
    /// all of them are ready. Writes certificates, kubeconfigs, data and logs under `dir`.
    pub async fn start(
        node: &NodeNet,
        dir: &Path,
        first_node: &str,
        components: Components,
    ) -> Result<ControlPlane, HarnessError> {
        let bin = tokio::task::spawn_blocking(k8s_bin)
            .await
            .expect("k8s_bin does not panic")?;
        let api = SocketAddr::from((node.ip, API_PORT));
        let kubernetes_svc = Ipv4Addr::new(198, 19, node.slot, 1);
        let pki = Pki::generate(
            &dir.join("pki"),
            &[
                IpAddr::V4(node.ip),
                IpAddr::V4(kubernetes_svc),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ],
        )?;
        let server = format!("https://{api}");
        let kubeconfig = |user: &str, group: Option<&str>| -> Result<PathBuf, HarnessError> {
            let cert = pki.client(user, group)?;
            let path = dir.join(format!("{}.kubeconfig", user.replace(':', "-")));
            let yaml = Kubeconfig {
                cluster: "understudy-world",
                server: &server,
                ca_pem: Some(pki.ca_pem()),
                user,
                credentials: Credentials::from(cert),
                namespace: "default",
            }
            .render();
            std::fs::write(&path, yaml).map_err(|e| HarnessError::io("write", &path, e))?;
            Ok(path)
        };
        let admin_kubeconfig = kubeconfig("kubernetes-admin", Some("system:masters"))?;
        let audit_policy = dir.join("audit-policy.yaml");
        write(
            &audit_policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n\
             rules:\n  - level: Metadata\n",
        )?;

        let spawn = |name: &str, program: &Path, args: Vec<String>| -> Result<Proc, HarnessError> {
            let log_path = dir.join(format!("{name}.log"));
            let log = std::fs::File::create(&log_path)
                .map_err(|e| HarnessError::io("create", &log_path, e))?;
            let mut cmd = tokio::process::Command::new("ip");
            cmd.args(node.exec_prefix())
                .arg(program)
                .args(args)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .stdin(Stdio::null())
                .stdout(
                    log.try_clone()
                        .map_err(|e| HarnessError::io("dup", &log_path, e))?,
                )
                .stderr(log);
            Proc::spawn(cmd, name.to_string())
        };
        let p = |name: &str| pki.path(name).display().to_string();
        let d = |name: &str| dir.join(name).display().to_string();

        let etcd = spawn(
            "etcd",
            &bin.join("etcd"),
            vec![
                "--name=world".into(),
                format!("--data-dir={}", d("etcd")),
                "--listen-client-urls=http://127.0.0.1:2379".into(),
                "--advertise-client-urls=http://127.0.0.1:2379".into(),
                "--listen-peer-urls=http://127.0.0.1:2380".into(),
                "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
                "--initial-cluster=world=http://127.0.0.1:2380".into(),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
        )?;
        let apiserver = spawn(
            "kube-apiserver",
            &bin.join("kube-apiserver"),
            vec![
                "--etcd-servers=http://127.0.0.1:2379".into(),
                format!("--bind-address={}", node.ip),
                format!("--advertise-address={}", node.ip),
                format!("--secure-port={API_PORT}"),
                format!("--tls-cert-file={}", p("apiserver.crt")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                format!("--client-ca-file={}", p("ca.crt")),
                format!("--cert-dir={}", d("apiserver-certs")),
                "--authorization-mode=RBAC".into(),
                format!("--service-cluster-ip-range={}", service_cidr(node.slot)),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                format!("--audit-policy-file={}", audit_policy.display()),
                format!("--audit-log-path={}", d("audit.log")),
                "--profiling=false".into(),
            ]
            .into_iter()
            .chain(components.apiserver_args.iter().cloned())
            .collect(),
        )?;
        let admin = client_from(&admin_kubeconfig).await?;
        let mut plane = ControlPlane {
            etcd,
            apiserver,
            others: Vec::new(),
            api,
            admin_kubeconfig,
            admin,
            dir: dir.to_path_buf(),
        };
        plane.wait_apiserver_ready(Duration::from_secs(60)).await?;

        if components.controllers {
            let kc = kubeconfig("system:kube-controller-manager", None)?;
            plane.others.push(spawn(
                "kube-controller-manager",
                &bin.join("kube-controller-manager"),
                vec![
                    format!("--kubeconfig={}", kc.display()),
                    "--leader-elect=false".into(),
                    "--secure-port=0".into(),
                    "--use-service-account-credentials=true".into(),
                    format!("--root-ca-file={}", p("ca.crt")),
                    format!(
                        "--controllers={}",
                        [
                            "deployment-controller",
                            "replicaset-controller",
                            "statefulset-controller",
                            "endpointslice-controller",
                            "serviceaccount-controller",
                            "disruption-controller",
                            "garbage-collector-controller",
                            "root-ca-certificate-publisher-controller",
                        ]
                        .join(",")
                    ),
                ],
            )?);
        }
        if components.scheduler {
            let kc = kubeconfig("system:kube-scheduler", None)?;
            plane.others.push(spawn(
                "kube-scheduler",
                &bin.join("kube-scheduler"),
                vec![
                    format!("--kubeconfig={}", kc.display()),
                    "--leader-elect=false".into(),
                    "--secure-port=0".into(),
                ],
            )?);
        }
        if components.proxy {
            let kc = kubeconfig("system:kube-proxy", None)?;
            let config = dir.join("kube-proxy.yaml");
            write(&config, &proxy_config(node, first_node, &kc))?;
            plane.others.push(spawn(
                "kube-proxy",
                &bin.join("kube-proxy"),
                vec![format!("--config={}", config.display())],
            )?);
        }
        if components.controllers {
            plane.wait_controllers(Duration::from_secs(60)).await?;
        }
        Ok(plane)
    }

    /// Waits until kube-proxy has synced its rules once (its `/healthz` answers 200). Call
    /// after the first Node exists: kube-proxy reads its address from it.
    pub async fn wait_proxy_ready(
        &self,
        node: &NodeNet,
        within: Duration,
    ) -> Result<(), HarnessError> {
        let addr = SocketAddr::from((node.ip, PROXY_HEALTH_PORT));
        let client = crate::cluster::http::client(false, Duration::from_secs(1));
        let log = self.log("kube-proxy");
        poll(
            || format!("kube-proxy's /healthz on {addr} (log: {})", log.display()),
            within,
            Duration::from_millis(100),
            || async {
                self.check_alive()?;
                let ok = crate::cluster::http::get(
                    &client,
                    addr,
                    "/healthz",
                    false,
                    Duration::from_secs(1),
                )
                .await
                .is_ok_and(|(status, _)| status.is_success());
                Ok(ok.then_some(()))
            },
        )
        .await
    }

    async fn wait_apiserver_ready(&self, within: Duration) -> Result<(), HarnessError> {
        let log = self.log("kube-apiserver");
        poll(
            || {
                format!(
                    "kube-apiserver /readyz on {} (log: {})",
                    self.api,
                    log.display()
                )
            },
            within,
            Duration::from_millis(100),
            || async {
                self.check_alive()?;
                let req = http::Request::get("/readyz")
                    .body(Vec::new())
                    .expect("static request");
                let ok = self
                    .admin
                    .request_text(req)
                    .await
                    .is_ok_and(|text| text.trim() == "ok");
                Ok(ok.then_some(()))
            },
        )
        .await
    }

    /// The serviceaccount controller has made `default/default` and the root CA publisher
    /// `default/kube-root-ca.crt`: pods can be admitted and get their token volume.
    async fn wait_controllers(&self, within: Duration) -> Result<(), HarnessError> {
        let sas: kube::Api<ServiceAccount> = kube::Api::namespaced(self.admin.clone(), "default");
        let cms: kube::Api<ConfigMap> = kube::Api::namespaced(self.admin.clone(), "default");
        let log = self.log("kube-controller-manager");
        poll(
            || {
                format!(
                    "the controller manager's default ServiceAccount and root CA (log: {})",
                    log.display()
                )
            },
            within,
            Duration::from_millis(100),
            || async {
                self.check_alive()?;
                let ok = matches!(sas.get_opt("default").await, Ok(Some(_)))
                    && matches!(cms.get_opt("kube-root-ca.crt").await, Ok(Some(_)));
                Ok(ok.then_some(()))
            },
        )
        .await
    }

    /// Fails if a component has exited, naming it and its log.
    pub fn check_alive(&self) -> Result<(), HarnessError> {
        for p in [&self.etcd, &self.apiserver]
            .into_iter()
            .chain(&self.others)
        {
            if let Some(status) = p.exited() {
                return Err(HarnessError::Setup(format!(
                    "{} exited ({status}); see {}",
                    p.what(),
                    self.log(p.what()).display()
                )));
            }
        }
        Ok(())
    }

    /// A component's log file.
    pub fn log(&self, component: &str) -> PathBuf {
        self.dir.join(format!("{component}.log"))
    }

    /// The CA certificate every component and kubeconfig trusts.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// The API server's audit log (one JSON event per request).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// Every request the API server has logged so far (audit level Metadata: who, what,
    /// which object, the answer's code, when).
    pub fn audit_events(&self) -> Result<Vec<AuditEvent>, HarnessError> {
        let path = self.audit_log();
        let text =
            std::fs::read_to_string(&path).map_err(|e| HarnessError::io("read", &path, e))?;
        Ok(text.lines().filter_map(AuditEvent::parse).collect())
    }

    /// `198.18.N.1:6443`.
    pub fn api(&self) -> SocketAddr {
        self.api
    }

    /// The cluster-admin kubeconfig (`system:masters`).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// A cluster-admin client.
    pub fn admin(&self) -> kube::Client {
        self.admin.clone()
    }

    /// SIGSTOP to the API server: every request hangs, as in an outage where the server
    /// is unreachable but connections are not refused.
    pub async fn pause_apiserver(&self) -> Result<(), HarnessError> {
        self.apiserver.signal(Signal::Stop).await
    }

    /// SIGCONT: the API server carries on where it stopped.
    pub async fn resume_apiserver(&self) -> Result<(), HarnessError> {
        self.apiserver.signal(Signal::Cont).await
    }

    /// Stops every component (kube-proxy and the controllers first, etcd last).
    pub async fn shutdown(self) {
        for p in self
            .others
            .iter()
            .rev()
            .chain([&self.apiserver, &self.etcd])
        {
            let _ = p.signal(Signal::Cont).await;
            let _ = p.signal(Signal::Term).await;
            if p.wait(Duration::from_secs(10)).await.is_err() {
                let _ = p.kill().await;
            }
        }
    }
}

/// A client from a kubeconfig file, the way the product builds one.
pub async fn client_from(path: &Path) -> Result<kube::Client, HarnessError> {
    let yaml = std::fs::read_to_string(path).map_err(|e| HarnessError::io("read", path, e))?;
    let kc = kube::config::Kubeconfig::from_yaml(&yaml)
        .map_err(|e| HarnessError::Setup(format!("kubeconfig {}: {e}", path.display())))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| HarnessError::Setup(format!("kubeconfig {}: {e}", path.display())))?;
    kube::Client::try_from(config)
        .map_err(|e| HarnessError::Setup(format!("client from {}: {e}", path.display())))
}

fn write(path: &Path, text: &str) -> Result<(), HarnessError> {
    std::fs::write(path, text).map_err(|e| HarnessError::io("write", path, e))
}

/// kube-proxy's configuration: iptables mode for the first Node. Conntrack limits of 0 keep
/// it from writing host-wide sysctls; its health endpoint is on the node address so the
/// harness can wait for the first sync.
fn proxy_config(node: &NodeNet, first_node: &str, kubeconfig: &Path) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: {cidr}
hostnameOverride: {first_node}
bindAddress: 0.0.0.0
healthzBindAddress: {ip}:{PROXY_HEALTH_PORT}
metricsBindAddress: 127.0.0.1:10249
clientConnection:
  kubeconfig: {kubeconfig}
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  syncPeriod: 30s
  minSyncPeriod: 0s
"#,
        cidr = pod_cidr(node.slot),
        ip = node.ip,
        kubeconfig = kubeconfig.display(),
    )
}

/// One request in the API server's audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// The authenticated user (`system:serviceaccount:<ns>:<name>` for a ServiceAccount).
    pub user: String,
    /// The API verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`).
    pub verb: String,
    /// The API group ("" for the core group).
    pub group: String,
    /// The resource (`leases`, `pods`, …), with `/subresource` when there is one.
    pub resource: String,
    /// The object's namespace, if any.
    pub namespace: String,
    /// The object's name, if any.
    pub name: String,
    /// The answer's HTTP status code.
    pub code: u16,
    /// When the answer was complete (`stageTimestamp`).
    pub time: jiff::Timestamp,
}

impl AuditEvent {
    /// One JSON line of the audit log, at stage `ResponseComplete` (or `Panic`); `None`
    /// for anything else.
    pub fn parse(line: &str) -> Option<AuditEvent> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v["stage"] != "ResponseComplete" && v["stage"] != "Panic" {
            return None;
        }
        let o = &v["objectRef"];
        let s = |x: &serde_json::Value| x.as_str().unwrap_or_default().to_string();
        let mut resource = s(&o["resource"]);
        if let Some(sub) = o["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        Some(AuditEvent {
            user: s(&v["user"]["username"]),
            verb: s(&v["verb"]),
            group: s(&o["apiGroup"]),
            resource,
            namespace: s(&o["namespace"]),
            name: s(&o["name"]),
            code: v["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
            time: v["stageTimestamp"].as_str()?.parse().ok()?,
        })
    }
}
