//! A `deploy/examples/…` app on the cluster, applied as a user applies it: `kubectl apply -k`
//! of an overlay that names the example as its resource and patches what the test changes
//! (election timings, the access log, replicas), the way a user layers their own settings.
//! The Deployment and ReplicaSet controllers make the pods, the scheduler binds them, the
//! test kubelet runs them, the endpointslice controller and kube-proxy make the Service
//! reach them.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use serde_json::{Value, json};

use super::harness::Cluster;
use super::kubectl::Kubectl;
use super::kubelet::Kubelet;
use super::leadership::Reigns;
use super::overlap::{self, OverlapReport};
use super::process::Signal;
use super::sidecar::{ADMIN_PORT, TEST_TIMINGS};
use super::wait::poll;
use super::{HarnessError, admin};
use crate::manifest;

/// What to apply.
#[derive(Clone, Debug)]
pub struct ExampleOptions {
    /// The example, `deploy/examples/<name>`.
    pub example: String,
    /// `spec.replicas`; `None` keeps the example's.
    pub replicas: Option<i32>,
    /// Flags appended to the sidecar's arguments.
    pub sidecar_args: Vec<String>,
    /// `periodSeconds` of every readiness probe; `None` keeps the example's.
    pub readiness_period: Option<i32>,
    /// `deploy/components/<name>` added to the overlay (`pod-labels`, `events`, …).
    pub components: Vec<String>,
}

impl ExampleOptions {
    /// The example as shipped.
    pub fn new(example: &str) -> ExampleOptions {
        ExampleOptions {
            example: example.into(),
            replicas: None,
            sidecar_args: Vec::new(),
            readiness_period: None,
            components: Vec::new(),
        }
    }

    /// At test speed: the election timings of [`TEST_TIMINGS`], a 2s drain, the access log,
    /// readiness probed every second; `replicas` pods.
    pub fn test(example: &str, replicas: i32) -> ExampleOptions {
        let mut args: Vec<String> = TEST_TIMINGS.args();
        args.extend(["--drain", "2s", "--access-log"].map(String::from));
        ExampleOptions {
            example: example.into(),
            replicas: Some(replicas),
            sidecar_args: args,
            readiness_period: Some(1),
            components: Vec::new(),
        }
    }

    /// Adds `deploy/components/<name>` to the overlay.
    pub fn component(mut self, name: &str) -> ExampleOptions {
        self.components.push(name.into());
        self
    }

    /// Appends sidecar flags.
    pub fn args(mut self, extra: &[&str]) -> ExampleOptions {
        self.sidecar_args
            .extend(extra.iter().map(|s| s.to_string()));
        self
    }
}

/// The applied example.
pub struct Example {
    client: kube::Client,
    kubectl: Kubectl,
    kubelet: Kubelet,
    api: SocketAddr,
    slot: u8,
    node_netns: String,
    /// Its namespace.
    pub namespace: String,
    /// Its Deployment.
    pub deployment: String,
    /// Its Service.
    pub service: String,
    /// The election (`--election`).
    pub election: String,
    /// The label selector of its pods (`app=nginx`).
    pub selector: String,
    /// The overlay directory that was applied.
    pub overlay: PathBuf,
    service_addr: SocketAddr,
    opts: ExampleOptions,
}

fn setup(what: impl Into<String>) -> HarnessError {
    HarnessError::Setup(what.into())
}

impl Example {
    /// Writes the overlay and applies it (`kubectl apply --server-side -k`); returns once
    /// the Service has a ClusterIP (pods may still be starting).
    pub async fn apply(cluster: &Cluster, opts: ExampleOptions) -> Result<Example, HarnessError> {
        let dir = manifest::example_dir(&opts.example);
        let objects = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || manifest::build(&dir))
                .await
                .expect("kustomize does not panic")
                .map_err(|e| setup(e.to_string()))?
        };
        let deployment = objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .ok_or_else(|| setup(format!("{} has no Deployment", dir.display())))?;
        let service = objects
            .iter()
            .find(|o| o["kind"] == "Service")
            .ok_or_else(|| setup(format!("{} has no Service", dir.display())))?;
        let name = |o: &Value| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let list = |key: &str| {
            deployment["spec"]["template"]["spec"][key]
                .as_array()
                .cloned()
                .unwrap_or_default()
        };
        // The sidecar is a container, or a native sidecar (an init container).
        let (containers, init_containers) = (list("containers"), list("initContainers"));
        let sidecar = containers
            .iter()
            .chain(&init_containers)
            .find(|c| c["name"] == manifest::SIDECAR)
            .ok_or_else(|| setup("the Deployment has no understudy container"))?;
        let args: Vec<String> = sidecar["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(String::from))
            .collect();
        let election = args
            .iter()
            .position(|a| a == "--election")
            .and_then(|i| args.get(i + 1))
            .cloned()
            .ok_or_else(|| setup("the sidecar has no --election"))?;
        let selector = deployment["spec"]["selector"]["matchLabels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();

        // The overlay: the example as its resource, a strategic-merge patch of the
        // Deployment (containers merge by name).
        let overlay = cluster.dir().join(format!("overlay-{}", opts.example));
        std::fs::create_dir_all(&overlay).map_err(|e| HarnessError::io("create", &overlay, e))?;
        let patch_list = |list: &[Value]| -> Vec<Value> {
            list.iter()
                .map(|c| {
                    let cname = c["name"].as_str().unwrap_or_default();
                    let mut p = json!({ "name": cname });
                    if cname == manifest::SIDECAR && !opts.sidecar_args.is_empty() {
                        let all: Vec<String> =
                            args.iter().chain(&opts.sidecar_args).cloned().collect();
                        p["args"] = json!(all);
                    }
                    if let Some(period) = opts.readiness_period
                        && c.get("readinessProbe").is_some()
                    {
                        p["readinessProbe"] = json!({ "periodSeconds": period });
                    }
                    p
                })
                .collect()
        };
        let mut pod_patch = json!({ "containers": patch_list(&containers) });
        if !init_containers.is_empty() {
            pod_patch["initContainers"] = json!(patch_list(&init_containers));
        }
        let mut patch = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": name(deployment) },
            "spec": { "template": { "spec": pod_patch } },
        });
        if let Some(r) = opts.replicas {
            patch["spec"]["replicas"] = json!(r);
        }
        let components: Vec<String> = opts
            .components
            .iter()
            .map(|c| {
                manifest::relative(
                    &overlay,
                    &manifest::repo_root().join("deploy/components").join(c),
                )
            })
            .collect();
        let kustomization = json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            // The components' objects go where the example's go.
            "namespace": namespace,
            // kustomize takes no absolute roots: the path from the overlay up and back down.
            "resources": [manifest::relative(&overlay, &dir)],
            "components": components,
            "patches": [{ "path": "test-settings.yaml" }],
        });
        for (file, doc) in [
            ("kustomization.yaml", &kustomization),
            ("test-settings.yaml", &patch),
        ] {
            let path = overlay.join(file);
            let yaml = serde_yaml::to_string(doc).expect("JSON renders as YAML");
            std::fs::write(&path, yaml).map_err(|e| HarnessError::io("write", &path, e))?;
        }
        let overlay_arg = overlay.display().to_string();
        cluster
            .kubectl()
            .run(&[
                "apply",
                "--server-side",
                "--field-manager=understudy-tests",
                "-k",
                &overlay_arg,
            ])
            .await?;

        let svc_name = name(service);
        let svc: Service = kube::Api::namespaced(cluster.client(), &namespace)
            .get(&svc_name)
            .await
            .map_err(|e| HarnessError::api(format!("get service {namespace}/{svc_name}"), e))?;
        let spec = svc.spec.unwrap_or_default();
        let ip: Ipv4Addr = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| setup(format!("service {svc_name} has no IPv4 ClusterIP")))?;
        let port = spec
            .ports
            .unwrap_or_default()
            .first()
            .map_or(80, |p| p.port) as u16;
        Ok(Example {
            client: cluster.client(),
            kubectl: cluster.kubectl().clone(),
            kubelet: cluster.kubelet().clone(),
            api: cluster.api(),
            slot: cluster.slot(),
            node_netns: cluster.node().netns.clone(),
            namespace,
            deployment: name(deployment),
            service: svc_name,
            election,
            selector,
            overlay,
            service_addr: SocketAddr::from((ip, port)),
            opts,
        })
    }

    /// The options it was applied with.
    pub fn options(&self) -> &ExampleOptions {
        &self.opts
    }

    /// The Service: ClusterIP and port, programmed by kube-proxy.
    pub fn service_addr(&self) -> SocketAddr {
        self.service_addr
    }

    /// The example's pods as the API lists them (terminating ones included).
    pub async fn pods(&self) -> Result<Vec<Pod>, HarnessError> {
        kube::Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default().labels(&self.selector))
            .await
            .map(|l| l.items)
            .map_err(|e| HarnessError::api(format!("list pods {}", self.selector), e))
    }

    /// Names of its pods that are not being deleted.
    pub async fn live_pods(&self) -> Result<Vec<String>, HarnessError> {
        Ok(self
            .pods()
            .await?
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name)
            .collect())
    }

    /// Names of its pods whose `Ready` condition is true.
    pub async fn ready_pods(&self) -> Result<BTreeSet<String>, HarnessError> {
        Ok(self
            .pods()
            .await?
            .into_iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| p.metadata.name)
            .collect())
    }

    /// The pods behind the Service as its EndpointSlices list them: (pod, ready).
    pub async fn endpoints(&self) -> Result<Vec<(String, bool)>, HarnessError> {
        let slices = kube::Api::<EndpointSlice>::namespaced(self.client.clone(), &self.namespace)
            .list(
                &ListParams::default()
                    .labels(&format!("kubernetes.io/service-name={}", self.service)),
            )
            .await
            .map_err(|e| HarnessError::api("list endpointslices", e))?;
        let mut out: Vec<(String, bool)> = slices
            .items
            .iter()
            .flat_map(|s| &s.endpoints)
            .map(|e| {
                let pod = e
                    .target_ref
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_default();
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
                (pod, ready)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The pods the Service's EndpointSlices list as ready.
    pub async fn ready_endpoints(&self) -> Result<Vec<String>, HarnessError> {
        Ok(self
            .endpoints()
            .await?
            .into_iter()
            .filter(|(_, r)| *r)
            .map(|(p, _)| p)
            .collect())
    }

    /// Waits until the Service's ready endpoints satisfy `pred`; returns them.
    pub async fn wait_endpoints(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&[String]) -> bool,
    ) -> Result<Vec<String>, HarnessError> {
        let last = std::sync::Mutex::new(Vec::new());
        poll(
            || {
                format!(
                    "endpoints of {}: {what} (ready: {:?})",
                    self.service,
                    last.lock().unwrap()
                )
            },
            within,
            Duration::from_millis(50),
            || async {
                let ready = self.ready_endpoints().await?;
                let ok = pred(&ready);
                *last.lock().unwrap() = ready.clone();
                Ok(ok.then_some(ready))
            },
        )
        .await
    }

    /// Waits until `n` pods are ready endpoints of the Service and kube-proxy has
    /// programmed exactly those (its rules on the node list `n` endpoints for the Service).
    pub async fn wait_serving(
        &self,
        n: usize,
        within: Duration,
    ) -> Result<Vec<String>, HarnessError> {
        let ready = self
            .wait_endpoints(&format!("{n} ready"), within, |e| e.len() == n)
            .await?;
        poll(
            || format!("kube-proxy to program {n} endpoints of {}", self.service),
            within,
            Duration::from_millis(50),
            || async { Ok((self.proxied_endpoints().await? == n).then_some(())) },
        )
        .await?;
        Ok(ready)
    }

    /// How many endpoints kube-proxy's iptables rules send the Service's traffic to.
    pub async fn proxied_endpoints(&self) -> Result<usize, HarnessError> {
        let rules = super::command::run(
            "ip",
            &[
                "netns",
                "exec",
                &self.node_netns,
                "iptables-save",
                "-t",
                "nat",
            ],
        )
        .await?;
        let comment = format!("--comment \"{}/{}:", self.namespace, self.service);
        Ok(rules
            .lines()
            .filter(|l| {
                l.starts_with("-A KUBE-SVC-") && l.contains(&comment) && l.contains("-j KUBE-SEP-")
            })
            .count())
    }

    /// The admin addresses of the pods the kubelet runs now.
    pub fn admin_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.kubelet
            .running(&self.namespace)
            .into_iter()
            .map(|(name, ip)| (name, SocketAddr::from((ip, ADMIN_PORT))))
            .collect()
    }

    /// The acting leader, once the sidecars agree on it; `not`: another than this one.
    pub async fn wait_leader(
        &self,
        not: Option<&str>,
        within: Duration,
    ) -> Result<String, HarnessError> {
        admin::wait_leader(|| self.admin_addrs(), not, within).await
    }

    /// The `n` actives of an `--actives n` election, once the sidecars agree on them.
    pub async fn wait_actives(
        &self,
        n: usize,
        not: &[&str],
        within: Duration,
    ) -> Result<Vec<String>, HarnessError> {
        admin::wait_actives(|| self.admin_addrs(), n, not, within).await
    }

    /// `GET /status` of a pod's sidecar.
    pub async fn sidecar_status(&self, pod: &str) -> Option<Value> {
        let (_, addr) = self.admin_addrs().into_iter().find(|(p, _)| p == pod)?;
        admin::status(addr).await
    }

    /// The Lease as the API server holds it: (holder, epoch); `lease` defaults to the
    /// election's name.
    pub async fn lease(&self, lease: Option<&str>) -> Result<Option<(String, u64)>, HarnessError> {
        let name = lease.unwrap_or(&self.election);
        let l = kube::Api::<Lease>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(name)
            .await
            .map_err(|e| HarnessError::api(format!("get lease {name}"), e))?;
        Ok(l.and_then(|l| l.spec).map(|s| {
            (
                s.holder_identity.unwrap_or_default(),
                s.lease_transitions.unwrap_or(0) as u64,
            )
        }))
    }

    /// A crash: SIGKILL to every container of `pod` (the kubelet restarts them after its
    /// back-off, as after an OOM kill).
    pub async fn crash(&self, pod: &str) -> Result<(), HarnessError> {
        let rt = self.kubelet.pod(&self.namespace, pod)?;
        for c in rt.init.iter().map(|(c, _)| c).chain(&rt.containers) {
            c.signal(Signal::Kill).await?;
        }
        Ok(())
    }

    /// Cuts `pod` off from the API server (`cut`), or ends the cut: iptables in the pod's
    /// network namespace drops what it sends to the `kubernetes` Service and to the API
    /// server's own address, so its requests and watches hang as in a network partition.
    /// The pods still reach each other.
    pub async fn cut_from_api(&self, pod: &str, cut: bool) -> Result<(), HarnessError> {
        let netns = self.kubelet.pod(&self.namespace, pod)?.net.netns.clone();
        let (api, port) = (self.api.ip().to_string(), self.api.port().to_string());
        let service = format!("198.19.{}.1", self.slot);
        for (dst, port) in [(service.as_str(), "443"), (api.as_str(), port.as_str())] {
            let rule = ["-d", dst, "-p", "tcp", "--dport", port, "-j", "DROP"];
            iptables(&netns, cut, "OUTPUT", &rule).await?;
        }
        Ok(())
    }

    /// Cuts every pod of the node, running or yet to start, off from the API server, or ends
    /// the cut: iptables on the node drops what arrives from the pods' bridge for the API
    /// server (the `kubernetes` Service included, which kube-proxy has translated to it by
    /// then). The control plane, kube-proxy and the test kubelet keep the API, so pods still
    /// start: an outage as the pods see it, which a stopped API server cannot give a pod that
    /// starts during it (the kubelet needs the API to start one).
    pub async fn cut_all_from_api(&self, cut: bool) -> Result<(), HarnessError> {
        let (api, port) = (self.api.ip().to_string(), self.api.port().to_string());
        let rule = [
            "-i", "br0", "-d", &api, "-p", "tcp", "--dport", &port, "-j", "DROP",
        ];
        iptables(&self.node_netns, cut, "INPUT", &rule).await
    }

    /// Cuts `pod` off from every other pod (`cut`), or ends the cut: iptables in the pod's
    /// network namespace drops what it sends to and receives from the other pod addresses.
    /// The node still reaches it (the kubelet's probes, and Service traffic, which kube-proxy
    /// masquerades to the node's address), so clients of the Service still do.
    pub async fn cut_from_peers(&self, pod: &str, cut: bool) -> Result<(), HarnessError> {
        let netns = self.kubelet.pod(&self.namespace, pod)?.net.netns.clone();
        let others = format!("198.18.{0}.2-198.18.{0}.254", self.slot);
        for (chain, direction) in [("OUTPUT", "--dst-range"), ("INPUT", "--src-range")] {
            let rule = ["-m", "iprange", direction, &others, "-j", "DROP"];
            iptables(&netns, cut, chain, &rule).await?;
        }
        Ok(())
    }

    /// Makes the app (nginx) of `pod` pass or fail its health check (`GET /healthz`); it
    /// keeps serving everything else.
    pub fn set_app_healthy(&self, pod: &str, healthy: bool) -> Result<(), HarnessError> {
        let rt = self.kubelet.pod(&self.namespace, pod)?;
        let app = rt
            .containers
            .iter()
            .find(|c| c.access_log().is_some())
            .ok_or_else(|| setup(format!("{pod} has no nginx container")))?;
        app.set_app_healthy(healthy)
    }

    /// Runs `program args…` in `pod`'s network namespace (as `kubectl exec` would reach
    /// what listens on the pod's loopback); its stdout.
    pub async fn run_in_pod(
        &self,
        pod: &str,
        program: &str,
        args: &[&str],
    ) -> Result<String, HarnessError> {
        let netns = self.kubelet.pod(&self.namespace, pod)?.net.netns.clone();
        let mut all = vec!["netns", "exec", netns.as_str(), program];
        all.extend_from_slice(args);
        super::command::run("ip", &all).await
    }

    /// Sends `signal` to container `container` of `pod` alone (the kubelet restarts it after
    /// its back-off, as it would any container that exits).
    pub async fn signal_container(
        &self,
        pod: &str,
        container: &str,
        signal: Signal,
    ) -> Result<(), HarnessError> {
        self.kubelet
            .signal(&self.namespace, pod, container, signal)
            .await
    }

    /// `kubectl delete pod <pod> --wait=false`: graceful, as a user deletes it.
    pub async fn delete_pod(&self, pod: &str) -> Result<(), HarnessError> {
        self.kubectl(&["delete", "pod", pod, "--wait=false"])
            .await
            .map(drop)
    }

    /// kubectl in the example's namespace.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String, HarnessError> {
        let mut all = vec!["-n", self.namespace.as_str()];
        all.extend_from_slice(args);
        self.kubectl.run(&all).await
    }

    /// The pods of this namespace the kubelet ever ran whose container `container` logged a
    /// line containing `needle`.
    pub fn pods_that_logged(&self, container: &str, needle: &str) -> Vec<String> {
        self.kubelet
            .history()
            .into_iter()
            .filter(|p| p.namespace == self.namespace)
            .filter(|p| {
                p.logs
                    .get(container)
                    .and_then(|l| std::fs::read_to_string(l).ok())
                    .is_some_and(|log| log.contains(needle))
            })
            .map(|p| p.name)
            .collect()
    }

    /// The leadership every sidecar of this namespace the kubelet ever ran logged (its
    /// container named `understudy`).
    pub fn reigns(&self) -> Reigns {
        let mut reigns = Reigns::default();
        for pod in self.kubelet.history() {
            if pod.namespace != self.namespace {
                continue;
            }
            if let Some(log) = pod
                .logs
                .get("understudy")
                .and_then(|l| std::fs::read_to_string(l).ok())
            {
                reigns.read(&pod.name, &log);
            }
        }
        reigns
    }

    /// The overlap checker over the access logs of every pod of this namespace the kubelet
    /// ever ran.
    pub fn overlap(&self) -> Result<OverlapReport, HarnessError> {
        let pods: Vec<(String, PathBuf)> = self
            .kubelet
            .history()
            .into_iter()
            .filter(|p| p.namespace == self.namespace)
            .flat_map(|p| p.access_logs.into_iter().map(move |l| (p.name.clone(), l)))
            .collect();
        overlap::check_logs(pods.iter().map(|(n, l)| (n.as_str(), l.as_path())))
    }
}

/// Inserts (`add`) or deletes `rule` in `chain` of network namespace `netns`'s filter table.
async fn iptables(netns: &str, add: bool, chain: &str, rule: &[&str]) -> Result<(), HarnessError> {
    let op = if add { "-I" } else { "-D" };
    let mut args = vec!["netns", "exec", netns, "iptables", "-w", op, chain];
    args.extend_from_slice(rule);
    super::command::run("ip", &args).await.map(drop)
}

#[cfg(test)]
mod tests {
    #[test]
    fn relative_paths_climb_to_the_common_ancestor() {
        let p = |s: &str| std::path::PathBuf::from(s);
        assert_eq!(
            crate::manifest::relative(&p("/tmp/run/overlay"), &p("/work/deploy/x")),
            "../../../work/deploy/x"
        );
        assert_eq!(crate::manifest::relative(&p("/a/b"), &p("/a/c")), "../c");
    }
}
