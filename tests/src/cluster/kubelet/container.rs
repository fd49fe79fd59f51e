//! Running one container: which local program an image stands for, its command line, its
//! namespaces, and its life — started, probed, restarted with the kubelet's back-off when it
//! exits, stopped with `preStop`, SIGTERM and SIGKILL after the grace period.
//!
//! A container is a process group: `ip netns exec <pod> unshare --uts sh -c …` gives it the
//! pod's network, its own UTS namespace (hostname = pod name) and its own mount namespace,
//! where a private tmpfs covers `/run` (and the image's own directory, for `postgres:*`) and
//! the pod's volumes are bind-mounted at their `volumeMounts` (which must lie under `/run`,
//! `/var/run`, `/tmp` or that directory); `setpriv` applies
//! `runAsUser`/`runAsGroup`; then the program is exec'd, so the container's main process is
//! the one the harness started. Its stdout and stderr go to `<container>.log` in the pod's
//! directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;
use tokio::sync::{Notify, watch};

use super::env::{Env, expand};
use super::probe::{self, Action, Hook, Target, Timing};
use crate::cluster::HarnessError;
use crate::cluster::app::{self, App};
use crate::cluster::process::{Proc, Signal};

/// The programs images stand for.
#[derive(Clone, Debug)]
pub struct Images {
    /// `understudy:*`: the sidecar binary.
    pub understudy: PathBuf,
    /// `client-go-candidate:*`: the client-go leader-election candidate.
    pub client_go: PathBuf,
}

/// What the harness runs for an image.
#[derive(Clone, Debug)]
enum Program {
    /// A binary, with the container's command and args.
    Binary { path: PathBuf, argv: Vec<String> },
    /// nginx (`nginx:*`): Debian's nginx with the harness's configuration, serving a page
    /// that names the pod on port 80 and logging the fencing headers (see
    /// [`crate::cluster::app`]). The container's command and args are ignored.
    Nginx,
    /// PostgreSQL (`postgres:*`): Debian's server behind [`POSTGRES_ENTRYPOINT`], which does
    /// what the official image's entrypoint does. `argv` starts with `postgres`.
    Postgres { argv: Vec<String> },
}

/// What `redis:*` runs: Debian's redis-server (package redis-server).
const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// The `postgres:*` image's own directory: a private tmpfs in the container (the image's
/// layer), so that `PGDATA` and volumes may lie under it without touching the host's.
const POSTGRES_HOME: &str = "/var/lib/postgresql";

/// The official postgres image's entrypoint, in short, for Debian's PostgreSQL (package
/// postgresql): as root, makes `PGDATA` and the socket directory the `postgres` user's; on an
/// empty `PGDATA` runs `initdb` (superuser `postgres` with password `POSTGRES_PASSWORD`, which
/// must be set; local connections trusted, TCP ones by scram-sha-256, as the image's
/// default); then runs `postgres` with the container's arguments as user `postgres`.
const POSTGRES_ENTRYPOINT: &str = r#"set -eu
shift
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 0700 "$PGDATA"
chmod 2777 /var/run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "postgres: POSTGRES_PASSWORD is not set (the database is uninitialized)" >&2
        exit 1
    fi
    umask 077
    printf '%s
' "$POSTGRES_PASSWORD" > /run/postgres-password
    chown postgres /run/postgres-password
    as_postgres "$bin/initdb" --username=postgres --pwfile=/run/postgres-password         --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >&2
    rm -f /run/postgres-password
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$bin/postgres" "$@"
"#;

impl Program {
    /// A directory the image owns: a private tmpfs in the container, which volumes may be
    /// mounted under.
    fn image_dir(&self) -> Option<&'static str> {
        match self {
            Program::Postgres { .. } => Some(POSTGRES_HOME),
            Program::Binary { .. } | Program::Nginx => None,
        }
    }
}

/// The image's repository name: `registry:5000/org/nginx:1.27@sha256:…` -> `nginx`.
fn repository(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(['@', ':']).next().unwrap_or(last)
}

fn program(c: &Container, images: &Images, vars: &Env) -> Result<Program, HarnessError> {
    let image = c.image.as_deref().unwrap_or_default();
    let known: std::collections::BTreeMap<String, String> = vars.iter().cloned().collect();
    let args: Vec<String> = c.args.iter().flatten().map(|a| expand(a, &known)).collect();
    let command: Vec<String> = c
        .command
        .iter()
        .flatten()
        .map(|a| expand(a, &known))
        .collect();
    let binary = |path: &Path, name: &str| -> Result<Program, HarnessError> {
        // The image's entrypoint is the binary; a command must name it too.
        let argv = match command.split_first() {
            None => args.clone(),
            Some((first, rest)) if repository(first) == name => {
                rest.iter().chain(&args).cloned().collect()
            }
            Some((first, _)) => {
                return Err(HarnessError::Setup(format!(
                    "container {}: command {first} is not in image {image}",
                    c.name
                )));
            }
        };
        Ok(Program::Binary {
            path: path.to_path_buf(),
            argv,
        })
    };
    match repository(image) {
        "understudy" => binary(&images.understudy, "understudy"),
        "client-go-candidate" => binary(&images.client_go, "client-go-candidate"),
        "nginx" => Ok(Program::Nginx),
        // Debian's redis-server; the container's command and args as written.
        "redis" => binary(Path::new(REDIS_SERVER), "redis-server"),
        // The image's entrypoint with its default command `postgres`; arguments alone (`-c
        // …`) are the server's, as the image's entrypoint takes them.
        "postgres" => {
            let mut argv: Vec<String> = command.iter().chain(&args).cloned().collect();
            if argv.first().is_none_or(|a| a.starts_with('-')) {
                argv.insert(0, "postgres".into());
            }
            if argv[0] != "postgres" {
                return Err(HarnessError::Setup(format!(
                    "container {}: command {} is not one the test kubelet runs from image \
                     {image} (only postgres)",
                    c.name, argv[0]
                )));
            }
            Ok(Program::Postgres { argv })
        }
        other => Err(HarnessError::Setup(format!(
            "container {}: image {image} ({other}) is not one the test kubelet can run \
             (understudy, nginx, redis, postgres, client-go-candidate)",
            c.name
        ))),
    }
}

/// A volume mount: the volume's directory at `path`.
#[derive(Clone, Debug)]
pub struct Mount {
    /// The volume's directory.
    pub source: PathBuf,
    /// `mountPath`.
    pub path: String,
    /// `readOnly`.
    pub read_only: bool,
}

/// Everything needed to start a container.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Pod name (the hostname).
    pub pod: String,
    /// The pod's network namespace.
    pub netns: String,
    /// The container's directory (logs, nginx's files).
    pub dir: PathBuf,
    /// The environment.
    pub env: Env,
    /// `runAsUser`/`runAsGroup` when not root.
    pub user: Option<(i64, i64)>,
    /// Volume mounts.
    pub mounts: Vec<Mount>,
    /// `workingDir`.
    pub workdir: Option<String>,
    /// The pod's termination grace period (for a restart after a failed liveness probe).
    pub grace: Duration,
}

/// The container as the pod's status shows it.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// Running since (wall clock, for `startedAt`), with its pid.
    pub running: Option<(jiff::Timestamp, u32)>,
    /// Why it is not running (`ContainerCreating`, `CrashLoopBackOff`, …).
    pub waiting: Option<String>,
    /// How its last run ended: (exit code, reason, started, finished).
    pub last: Option<(i32, String, jiff::Timestamp, jiff::Timestamp)>,
    /// Restarts so far.
    pub restarts: i32,
    /// The startup probe passed (or there is none) in the current run.
    pub started: bool,
    /// The readiness probe's verdict in the current run.
    pub ready: bool,
    /// Terminated for good (the pod is going away, or restartPolicy says so).
    pub done: bool,
}

/// A container of a pod, supervised.
pub struct ContainerRt {
    /// Its name.
    pub name: String,
    spec: Container,
    launch: Launch,
    program: Program,
    pod_ip: std::net::Ipv4Addr,
    state: watch::Sender<State>,
    proc: Mutex<Option<Arc<Proc>>>,
    /// Wakes the pod's status writer on every state change.
    changed: Arc<Notify>,
    stopping: watch::Sender<bool>,
    nginx: Mutex<Option<App>>,
}

/// Restart back-off: 10s, doubling to 5 minutes, as the kubelet's.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

impl ContainerRt {
    /// Prepares container `c`; fails with a clear message if its image, command, mounts or
    /// probes cannot be run here.
    pub fn new(
        c: &Container,
        images: &Images,
        launch: Launch,
        pod_ip: std::net::Ipv4Addr,
        changed: Arc<Notify>,
    ) -> Result<Arc<ContainerRt>, HarnessError> {
        let program = program(c, images, &launch.env)?;
        let image_dir = program.image_dir();
        for m in &launch.mounts {
            let ok = ["/run/", "/var/run/", "/tmp/"]
                .iter()
                .any(|p| m.path.starts_with(p))
                || image_dir.is_some_and(|d| m.path.starts_with(&format!("{d}/")));
            if !ok {
                let also = image_dir.map(|d| format!(", {d}")).unwrap_or_default();
                return Err(HarnessError::Setup(format!(
                    "container {}: volumeMount {} must lie under /run, /var/run{also} or /tmp \
                     here (the test kubelet does not change the host's other directories)",
                    c.name, m.path
                )));
            }
        }
        for p in [&c.readiness_probe, &c.liveness_probe, &c.startup_probe]
            .into_iter()
            .flatten()
        {
            probe::probe(p, c, pod_ip)?;
        }
        std::fs::create_dir_all(&launch.dir)
            .map_err(|e| HarnessError::io("create", &launch.dir, e))?;
        Ok(Arc::new(ContainerRt {
            name: c.name.clone(),
            spec: c.clone(),
            launch,
            program,
            pod_ip,
            state: watch::channel(State {
                waiting: Some("ContainerCreating".into()),
                ..State::default()
            })
            .0,
            proc: Mutex::new(None),
            changed,
            stopping: watch::channel(false).0,
            nginx: Mutex::new(None),
        }))
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        self.state.send_modify(f);
        self.changed.notify_one();
    }

    /// Its state now.
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Waits until its state satisfies `pred`; returns that state.
    pub async fn wait_state(&self, pred: impl Fn(&State) -> bool) -> State {
        let mut rx = self.state.subscribe();
        let s = rx
            .wait_for(|s| pred(s))
            .await
            .expect("the sender lives in self");
        s.clone()
    }

    /// The spec it runs.
    pub fn spec(&self) -> &Container {
        &self.spec
    }

    /// Its log file (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.launch.dir.join(format!("{}.log", self.name))
    }

    /// nginx's access log, for an nginx container.
    pub fn access_log(&self) -> Option<PathBuf> {
        matches!(self.program, Program::Nginx).then(|| self.launch.dir.join("access.log"))
    }

    /// For an nginx container: make `GET /healthz` pass or fail.
    pub fn set_app_healthy(&self, healthy: bool) -> Result<(), HarnessError> {
        match &*self.nginx.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(app) => app.set_healthy(healthy),
            None => Err(HarnessError::Setup(format!(
                "container {} is not a running nginx",
                self.name
            ))),
        }
    }

    /// The running process, if any.
    pub fn proc(&self) -> Option<Arc<Proc>> {
        self.proc.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends `signal` to the container's main process (a test's crash or stop).
    pub async fn signal(&self, signal: Signal) -> Result<(), HarnessError> {
        match self.proc() {
            Some(p) => p.signal(signal).await,
            None => Ok(()),
        }
    }

    fn target(&self, pid: u32) -> Target {
        Target {
            pid,
            env: self.launch.env.clone(),
            user: self.launch.user,
        }
    }

    fn spawn(&self) -> Result<Proc, HarnessError> {
        let (path, argv): (PathBuf, Vec<String>) = match &self.program {
            Program::Binary { path, argv } => (path.clone(), argv.clone()),
            Program::Nginx => {
                let app = App::configure(&self.launch.pod, &self.launch.dir, app::ALL_ADDRESSES)?;
                let argv = app.argv();
                *self.nginx.lock().unwrap_or_else(|p| p.into_inner()) = Some(app);
                (PathBuf::from("nginx"), argv)
            }
            Program::Postgres { argv } => {
                let mut all = vec![
                    "-c".to_string(),
                    POSTGRES_ENTRYPOINT.into(),
                    "docker-entrypoint.sh".into(),
                ];
                all.extend(argv.iter().cloned());
                (PathBuf::from("sh"), all)
            }
        };
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| HarnessError::io("open", &log_path, e))?;
        let mut script = String::from(
            "h=$1; shift\nhostname \"$h\" || exit 127\n\
             mount -t tmpfs -o mode=0755,size=16m container-run /run || exit 127\n",
        );
        if let Some(d) = self.program.image_dir() {
            script.push_str(&format!(
                "mount -t tmpfs -o mode=0755,size=16m container-image {} || exit 127\n",
                sh_quote(d)
            ));
        }
        for m in &self.launch.mounts {
            let (src, dst) = (sh_quote(&m.source.display().to_string()), sh_quote(&m.path));
            script.push_str(&format!(
                "mkdir -p {dst} && mount --bind {src} {dst} || exit 127\n"
            ));
            if m.read_only {
                script.push_str(&format!("mount -o remount,bind,ro {dst} || exit 127\n"));
            }
        }
        if let Some(w) = &self.launch.workdir {
            script.push_str(&format!("cd {} || exit 127\n", sh_quote(w)));
        }
        script.push_str("exec \"$@\"\n");
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.launch.netns,
            "unshare",
            "--uts",
            "--",
            "sh",
            "-c",
        ])
        .arg(script)
        .arg("container")
        .arg(&self.launch.pod);
        if let Some((uid, gid)) = self.launch.user {
            cmd.args([
                "setpriv".to_string(),
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".into(),
                "--".into(),
            ]);
        }
        cmd.arg(path)
            .args(argv)
            .env_clear()
            .envs(self.launch.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| HarnessError::io("dup", &log_path, e))?,
            )
            .stderr(log)
            .process_group(0);
        Proc::spawn(
            cmd,
            format!("container {} of {}", self.name, self.launch.pod),
        )
    }

    /// Runs the container until it is stopped: starts it, probes it, restarts it after the
    /// back-off when it exits (unless `restart` says not to), and returns when it has ended
    /// for good. `restart(exit code)`: whether to start it again.
    pub async fn supervise(self: Arc<Self>, restart: impl Fn(i32) -> bool) {
        let mut backoff = BACKOFF_START;
        let mut stopping = self.stopping.subscribe();
        loop {
            if *stopping.borrow() {
                break;
            }
            let started_at = jiff::Timestamp::now();
            let run_start = Instant::now();
            let proc = match self.spawn() {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    tracing::warn!(container = %self.name, error = %e, "container start failed");
                    self.update(|s| s.waiting = Some(format!("StartError: {e}")));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopping.wait_for(|s| *s) => break,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            let pid = proc.pid();
            *self.proc.lock().unwrap_or_else(|p| p.into_inner()) = Some(proc.clone());
            let has_startup = self.spec.startup_probe.is_some();
            self.update(|s| {
                s.running = Some((started_at, pid));
                s.waiting = None;
                s.started = !has_startup;
                s.ready = false;
            });
            let probes = tokio::spawn(self.clone().probe_loop(pid));
            let exit = proc.wait(Duration::from_secs(u64::MAX / 4)).await;
            probes.abort();
            proc.kill_group_now().await;
            let (code, reason) = match exit {
                Ok(status) => match status.code() {
                    Some(c) => (c, if c == 0 { "Completed" } else { "Error" }),
                    None => (
                        128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(9),
                        "Error",
                    ),
                },
                Err(_) => (137, "Error"),
            };
            let finished = jiff::Timestamp::now();
            let again = !*stopping.borrow() && restart(code);
            self.update(|s| {
                s.running = None;
                s.ready = false;
                s.started = false;
                s.last = Some((code, reason.into(), started_at, finished));
                if again {
                    s.restarts += 1;
                    s.waiting = Some("CrashLoopBackOff".into());
                } else {
                    s.done = true;
                }
            });
            if !again {
                break;
            }
            // A container that ran for ten minutes starts its back-off afresh.
            if run_start.elapsed() > Duration::from_secs(600) {
                backoff = BACKOFF_START;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopping.wait_for(|s| *s) => {
                    self.update(|s| { s.waiting = None; s.done = true; });
                    break;
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        self.update(|s| s.done = true);
    }

    /// Startup, then readiness and liveness probes, for the run with main process `pid`.
    async fn probe_loop(self: Arc<Self>, pid: u32) {
        let target = self.target(pid);
        let load = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref()
                .and_then(|p| probe::probe(p, &self.spec, self.pod_ip).ok())
        };
        if let Some(h) = self
            .spec
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
            && let Ok(hook) = probe::hook(h, &self.spec, self.pod_ip)
        {
            run_hook(&hook, &target, Duration::from_secs(30)).await;
        }
        if let Some((action, timing)) = load(&self.spec.startup_probe) {
            if !self
                .watch_probe(&action, timing, &target, |_, _| {}, true)
                .await
            {
                // Failed its startup probe: the kubelet kills and restarts it.
                let _ = self.signal(Signal::Kill).await;
                return;
            }
            self.update(|s| s.started = true);
        }
        let readiness = load(&self.spec.readiness_probe);
        let liveness = load(&self.spec.liveness_probe);
        if readiness.is_none() {
            self.update(|s| s.ready = true);
        }
        let ready = async {
            if let Some((action, timing)) = &readiness {
                let me = self.clone();
                self.watch_probe(
                    action,
                    *timing,
                    &target,
                    move |_, ok| me.update(|s| s.ready = ok),
                    false,
                )
                .await;
            } else {
                std::future::pending::<bool>().await;
            }
        };
        let live = async {
            if let Some((action, timing)) = &liveness {
                if !self
                    .watch_probe(action, *timing, &target, |_, _| {}, true)
                    .await
                {
                    tracing::info!(container = %self.name, "liveness probe failed: restarting");
                    self.stop_process(self.launch.grace).await;
                }
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::join!(ready, live);
    }

    /// Probes every period. With `until_verdict`, returns at the first verdict (success
    /// threshold met: true; failure threshold met: false); otherwise reports every verdict
    /// change through `on_verdict` and never returns.
    async fn watch_probe(
        &self,
        action: &Action,
        timing: Timing,
        target: &Target,
        on_verdict: impl Fn(u32, bool),
        until_verdict: bool,
    ) -> bool {
        tokio::time::sleep(timing.initial_delay).await;
        let (mut ok_run, mut bad_run) = (0u32, 0u32);
        let mut verdict: Option<bool> = None;
        let mut tick = tokio::time::interval(timing.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if probe::run(action, target, timing.timeout).await {
                ok_run += 1;
                bad_run = 0;
                if ok_run >= timing.success && verdict != Some(true) {
                    verdict = Some(true);
                    if until_verdict {
                        return true;
                    }
                    on_verdict(ok_run, true);
                }
            } else {
                bad_run += 1;
                ok_run = 0;
                if bad_run >= timing.failure && verdict != Some(false) {
                    verdict = Some(false);
                    if until_verdict {
                        return false;
                    }
                    on_verdict(bad_run, false);
                }
            }
        }
    }

    /// The image's stop signal: SIGQUIT for nginx (the nginx image's `STOPSIGNAL`, a
    /// graceful stop), SIGINT for PostgreSQL (the postgres image's, a fast shutdown), SIGTERM
    /// otherwise.
    fn stop_signal(&self) -> Signal {
        match self.program {
            Program::Nginx => Signal::Quit,
            Program::Postgres { .. } => Signal::Int,
            Program::Binary { .. } => Signal::Term,
        }
    }

    /// The stop signal, then SIGKILL to the whole container after `grace`; returns once it
    /// exited.
    async fn stop_process(&self, grace: Duration) {
        let Some(proc) = self.proc() else { return };
        let _ = proc.signal(self.stop_signal()).await;
        if proc.wait(grace).await.is_err() {
            let _ = proc.signal_group(Signal::Kill).await;
            let _ = proc.wait(Duration::from_secs(10)).await;
        }
        proc.kill_group_now().await;
    }

    /// Stops the container for good, as the kubelet does when its pod is deleted: the
    /// `preStop` hook, then the stop signal, then SIGKILL at `deadline`. Returns once it has exited.
    pub async fn terminate(&self, deadline: Instant) {
        self.stopping.send_replace(true);
        if let Some(proc) = self.proc()
            && proc.exited().is_none()
        {
            if let Some(h) = self
                .spec
                .lifecycle
                .as_ref()
                .and_then(|l| l.pre_stop.as_ref())
                && let Ok(hook) = probe::hook(h, &self.spec, self.pod_ip)
            {
                let left = deadline.saturating_duration_since(Instant::now());
                run_hook(&hook, &self.target(proc.pid()), left).await;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            self.stop_process(left).await;
        }
        self.update(|s| {
            s.done = true;
            s.ready = false;
        });
    }

    /// Kills the container at once (SIGKILL to its group) and keeps it from restarting.
    pub async fn kill_now(&self) {
        self.stopping.send_replace(true);
        if let Some(proc) = self.proc() {
            let _ = proc.signal_group(Signal::Kill).await;
            let _ = proc.wait(Duration::from_secs(10)).await;
            proc.kill_group_now().await;
        }
    }
}

/// Runs a lifecycle hook within `within` (a hook's failure does not stop what follows).
async fn run_hook(hook: &Hook, target: &Target, within: Duration) {
    match hook {
        Hook::Sleep(d) => tokio::time::sleep((*d).min(within)).await,
        Hook::Run(action) => {
            // Hooks have no timeout of their own: they get what is left of the grace period.
            let _ = probe::run(action, target, within).await;
        }
    }
}

/// `s` as one shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_ignore_registry_tag_and_digest() {
        assert_eq!(repository("nginx:1.27-alpine"), "nginx");
        assert_eq!(
            repository("registry.example:5000/org/understudy:0.1.0"),
            "understudy"
        );
        assert_eq!(repository("understudy@sha256:abc"), "understudy");
        assert_eq!(repository("busybox"), "busybox");
    }

    #[test]
    fn postgres_takes_server_arguments_and_no_other_command() {
        let images = Images {
            understudy: "/bin/understudy".into(),
            client_go: "/bin/candidate".into(),
        };
        let container = |command: &[&str], args: &[&str]| Container {
            name: "db".into(),
            image: Some("postgres:15".into()),
            command: (!command.is_empty()).then(|| command.iter().map(|a| a.to_string()).collect()),
            args: (!args.is_empty()).then(|| args.iter().map(|a| a.to_string()).collect()),
            ..Container::default()
        };
        let argv = |c: &Container| match program(c, &images, &Env::default()) {
            Ok(Program::Postgres { argv }) => argv,
            other => panic!("{other:?}"),
        };
        assert_eq!(argv(&container(&[], &[])), ["postgres"]);
        assert_eq!(
            argv(&container(&[], &["-c", "listen_addresses=127.0.0.1"])),
            ["postgres", "-c", "listen_addresses=127.0.0.1"]
        );
        assert_eq!(
            argv(&container(&[], &["postgres", "-c", "a=b"])),
            ["postgres", "-c", "a=b"]
        );
        let err = program(&container(&["bash"], &[]), &images, &Env::default()).unwrap_err();
        assert!(err.to_string().contains("command bash"), "{err}");
        assert_eq!(
            Program::Postgres { argv: vec![] }.image_dir(),
            Some("/var/lib/postgresql")
        );
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b c"), "'a'\\''b c'");
    }
}
