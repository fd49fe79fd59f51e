//! A pod: a network namespace, nginx, and (normally) the `understudy` sidecar in front of
//! it, started with `ip netns exec` and its own kubeconfig, so the API server (the emulator)
//! can partition it alone.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::app::App;
use super::process::{Proc, Signal};
use super::sidecar::{ADMIN_PORT, PROXY_PORT, SidecarOptions};
use super::{Bridge, HarnessError, PodNet};

/// Everything needed to start one pod.
pub struct PodSpec<'a> {
    /// Pod name; also the sidecar's `--id` and its API client identity.
    pub name: String,
    /// Namespace name (`us-N-<name>`).
    pub netns: String,
    /// Host end of its veth (`us-N-vK`).
    pub veth: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Where its config, page and logs go.
    pub dir: PathBuf,
    /// The run's bridge.
    pub bridge: &'a Bridge,
    /// The sidecar to run (binary, flags, kubeconfig); `None`: nginx alone, on the pod's
    /// address, port 80.
    pub sidecar: Option<SidecarLaunch<'a>>,
}

/// How to start the sidecar of one pod.
pub struct SidecarLaunch<'a> {
    /// The `understudy` binary.
    pub binary: &'a Path,
    /// Its flags.
    pub options: &'a SidecarOptions,
    /// The kubeconfig written for this pod's identity.
    pub kubeconfig: PathBuf,
}

/// A started pod.
pub struct Pod {
    /// Pod name.
    pub name: String,
    /// Pod address.
    pub ip: Ipv4Addr,
    /// Its directory (nginx config and logs, `understudy.log`, kubeconfig).
    pub dir: PathBuf,
    net: PodNet,
    app: App,
    sidecar: Option<Proc>,
}

impl Pod {
    /// Creates the namespace, starts nginx, then the sidecar.
    pub async fn start(spec: PodSpec<'_>) -> Result<Pod, HarnessError> {
        std::fs::create_dir_all(&spec.dir).map_err(|e| HarnessError::io("create", &spec.dir, e))?;
        let net = PodNet::create(spec.bridge, spec.netns, spec.veth, spec.ip).await?;
        let started = async {
            // Behind a sidecar the app is reachable only from inside the pod, as in the
            // tutorial (the sidecar's --upstream is 127.0.0.1:80).
            let listen = if spec.sidecar.is_some() {
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80)
            } else {
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80)
            };
            let app = App::start(&spec.name, &net, listen, &spec.dir).await?;
            let sidecar = match &spec.sidecar {
                Some(launch) => Some(start_sidecar(&spec.name, spec.ip, &net, &spec.dir, launch)?),
                None => None,
            };
            Ok::<_, HarnessError>((app, sidecar))
        }
        .await;
        match started {
            Ok((app, sidecar)) => Ok(Pod {
                name: spec.name,
                ip: spec.ip,
                dir: spec.dir,
                net,
                app,
                sidecar,
            }),
            Err(e) => {
                // Processes die with their `Proc`s; the namespace must go explicitly.
                let _ = net.delete().await;
                Err(e)
            }
        }
    }

    /// The sidecar's admin address (`GET /`, `/readyz`, `/status`).
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, ADMIN_PORT))
    }

    /// The address the Service targets: the sidecar's proxy, or nginx without one.
    pub fn service_addr(&self) -> SocketAddr {
        let port = if self.sidecar.is_some() {
            PROXY_PORT
        } else {
            80
        };
        SocketAddr::from((self.ip, port))
    }

    /// The namespace.
    pub fn netns(&self) -> &str {
        &self.net.netns
    }

    /// nginx's access log.
    pub fn access_log(&self) -> &Path {
        &self.app.access_log
    }

    /// The sidecar's log (stderr).
    pub fn sidecar_log(&self) -> PathBuf {
        self.dir.join("understudy.log")
    }

    /// True while every container runs.
    pub fn running(&self) -> bool {
        self.app.proc.exited().is_none()
            && self.sidecar.as_ref().is_none_or(|s| s.exited().is_none())
    }

    /// Resolves when any container has exited.
    pub async fn any_exit(&self) {
        let far = Duration::from_secs(365 * 24 * 3600);
        let app = self.app.proc.wait(far);
        match &self.sidecar {
            Some(s) => {
                tokio::select! {
                    _ = app => {}
                    _ = s.wait(far) => {}
                }
            }
            None => drop(app.await),
        }
    }

    /// A crash: SIGKILL to the sidecar first (it is what the scenarios kill), then to every
    /// process left in the pod, nginx's workers included. No clean-up of any kind.
    pub async fn crash(&self) -> Result<(), HarnessError> {
        if let Some(s) = &self.sidecar {
            s.signal(Signal::Kill).await?;
        }
        self.net.kill_all().await
    }

    /// Makes the app's health check (`GET /healthz`) pass or fail; it keeps serving.
    pub fn set_app_healthy(&self, healthy: bool) -> Result<(), HarnessError> {
        self.app.set_healthy(healthy)
    }

    /// SIGKILL to the sidecar only; the app keeps running.
    pub async fn kill_sidecar(&self) -> Result<(), HarnessError> {
        match &self.sidecar {
            Some(s) => s.signal(Signal::Kill).await,
            None => Ok(()),
        }
    }

    /// Graceful termination: SIGTERM to the sidecar and wait for it to exit (SIGKILL after
    /// `grace`, as the kubelet does), then stop the app. The app goes last because the
    /// sidecar may still hand it in-flight requests while it drains.
    pub async fn terminate(&self, grace: Duration) -> Result<(), HarnessError> {
        if let Some(s) = &self.sidecar {
            s.signal(Signal::Term).await?;
            if s.wait(grace).await.is_err() {
                s.kill().await?;
            }
        }
        self.app.stop().await
    }

    /// The sidecar's exit status, once it has exited.
    pub fn sidecar_exit(&self) -> Option<std::process::ExitStatus> {
        self.sidecar.as_ref().and_then(Proc::exited)
    }

    /// Stops the app if it still runs (gracefully, so nginx reaps its own workers), kills
    /// whatever else still runs and removes the namespace.
    pub async fn delete(&self) -> Result<(), HarnessError> {
        if let Some(s) = &self.sidecar {
            s.signal(Signal::Kill).await?;
        }
        if self.app.proc.exited().is_none() {
            let _ = self.app.stop().await;
        }
        self.net.delete().await
    }
}

fn start_sidecar(
    pod: &str,
    ip: Ipv4Addr,
    net: &PodNet,
    dir: &Path,
    launch: &SidecarLaunch<'_>,
) -> Result<Proc, HarnessError> {
    let log_path = dir.join("understudy.log");
    let log =
        std::fs::File::create(&log_path).map_err(|e| HarnessError::io("create", &log_path, e))?;
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(net.exec_prefix())
        .arg(launch.binary)
        .args(launch.options.args(pod, ip, Ipv4Addr::UNSPECIFIED))
        // Only what a pod would have: its kubeconfig, its IP, a log filter.
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("KUBECONFIG", &launch.kubeconfig)
        .env("POD_IP", ip.to_string())
        .env("RUST_LOG", &launch.options.log_filter)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    Proc::spawn(cmd, format!("understudy of {pod}"))
}
