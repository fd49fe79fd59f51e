//! Probes and lifecycle hooks, as the kubelet runs them: `httpGet` from the node to the pod's
//! address (200–399 is success), `tcpSocket` (a connect), `exec` inside the container's own
//! namespaces (`nsenter` into its network, UTS and mount namespaces, with its environment, as
//! its user), each bounded by its timeout. `grpc` is refused with an error naming it.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::env::Env;
use crate::cluster::HarnessError;
use crate::cluster::http;

/// What a probe or hook does.
#[derive(Clone, Debug)]
pub enum Action {
    /// `httpGet`.
    Http {
        /// Address to connect to (the pod's, unless `host` is given).
        addr: SocketAddr,
        /// Path and query.
        path: String,
    },
    /// `tcpSocket`.
    Tcp {
        /// Address to connect to.
        addr: SocketAddr,
    },
    /// `exec`.
    Exec {
        /// The command, run without a shell unless it names one.
        command: Vec<String>,
    },
}

/// A probe's timing (the `Probe` fields, defaults as in Kubernetes).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// `initialDelaySeconds`.
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10).
    pub period: Duration,
    /// `timeoutSeconds` (default 1).
    pub timeout: Duration,
    /// `successThreshold` (default 1).
    pub success: u32,
    /// `failureThreshold` (default 3).
    pub failure: u32,
}

/// Where an `exec` action runs: the container's process, environment and user.
#[derive(Clone, Debug)]
pub struct Target {
    /// The container's main process (its namespaces are entered for `exec`).
    pub pid: u32,
    /// The container's environment.
    pub env: Env,
    /// `runAsUser`/`runAsGroup`, when not root.
    pub user: Option<(i64, i64)>,
}

fn port_of(port: &IntOrString, c: &Container) -> Result<u16, HarnessError> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p)
            .map_err(|_| HarnessError::Setup(format!("container {}: port {p}", c.name))),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| {
                HarnessError::Setup(format!("container {}: no port named {name}", c.name))
            }),
    }
}

fn host_of(host: Option<&str>, pod_ip: Ipv4Addr) -> Result<Ipv4Addr, HarnessError> {
    match host {
        None | Some("") => Ok(pod_ip),
        Some(h) => h
            .parse()
            .map_err(|_| HarnessError::Setup(format!("probe host {h}: only IPv4 addresses"))),
    }
}

fn from_parts(
    http_get: Option<&HTTPGetAction>,
    tcp: Option<&TCPSocketAction>,
    exec: Option<&ExecAction>,
    grpc: bool,
    c: &Container,
    pod_ip: Ipv4Addr,
) -> Result<Action, HarnessError> {
    if let Some(h) = http_get {
        if h.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            return Err(HarnessError::Setup(format!(
                "container {}: only HTTP probes are run by the test kubelet",
                c.name
            )));
        }
        let addr = SocketAddr::from((host_of(h.host.as_deref(), pod_ip)?, port_of(&h.port, c)?));
        return Ok(Action::Http {
            addr,
            path: h.path.clone().unwrap_or_else(|| "/".into()),
        });
    }
    if let Some(t) = tcp {
        let addr = SocketAddr::from((host_of(t.host.as_deref(), pod_ip)?, port_of(&t.port, c)?));
        return Ok(Action::Tcp { addr });
    }
    if let Some(e) = exec {
        return Ok(Action::Exec {
            command: e.command.clone().unwrap_or_default(),
        });
    }
    let what = if grpc {
        "grpc probes"
    } else {
        "an empty handler"
    };
    Err(HarnessError::Setup(format!(
        "container {}: {what} not supported by the test kubelet",
        c.name
    )))
}

/// A probe's action and timing.
pub fn probe(p: &Probe, c: &Container, pod_ip: Ipv4Addr) -> Result<(Action, Timing), HarnessError> {
    let action = from_parts(
        p.http_get.as_ref(),
        p.tcp_socket.as_ref(),
        p.exec.as_ref(),
        p.grpc.is_some(),
        c,
        pod_ip,
    )?;
    let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
    Ok((
        action,
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure: p.failure_threshold.unwrap_or(3).max(1) as u32,
        },
    ))
}

/// A lifecycle hook's action (`postStart`, `preStop`); `sleep` hooks come back as `Ok(None)`
/// with their duration handled by the caller.
pub fn hook(h: &LifecycleHandler, c: &Container, pod_ip: Ipv4Addr) -> Result<Hook, HarnessError> {
    if let Some(s) = &h.sleep {
        return Ok(Hook::Sleep(Duration::from_secs(s.seconds.max(0) as u64)));
    }
    from_parts(
        h.http_get.as_ref(),
        h.tcp_socket.as_ref(),
        h.exec.as_ref(),
        false,
        c,
        pod_ip,
    )
    .map(Hook::Run)
}

/// A lifecycle hook.
#[derive(Clone, Debug)]
pub enum Hook {
    /// `sleep`.
    Sleep(Duration),
    /// `httpGet`, `tcpSocket` or `exec`.
    Run(Action),
}

/// Runs `action` once against `target`, within `timeout`: true on success.
pub async fn run(action: &Action, target: &Target, timeout: Duration) -> bool {
    match action {
        Action::Http { addr, path } => {
            let client = http::client(false, timeout);
            matches!(
                http::get(&client, *addr, path, false, timeout).await,
                Ok((status, _)) if status.is_success() || status.is_redirection()
            )
        }
        Action::Tcp { addr } => matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        ),
        Action::Exec { command } => {
            let Some((program, args)) = command.split_first() else {
                return false;
            };
            let mut cmd = tokio::process::Command::new("nsenter");
            cmd.args(["-t", &target.pid.to_string(), "-n", "-u", "-m", "--"]);
            if let Some((uid, gid)) = target.user {
                cmd.args([
                    "setpriv",
                    &format!("--reuid={uid}"),
                    &format!("--regid={gid}"),
                    "--clear-groups",
                    "--",
                ]);
            }
            cmd.arg(program)
                .args(args)
                .env_clear()
                .envs(target.env.iter().cloned())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            matches!(
                tokio::time::timeout(timeout, cmd.status()).await,
                Ok(Ok(status)) if status.success()
            )
        }
    }
}
