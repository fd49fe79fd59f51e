//! The command line. Every flag can also be given as an `UNDERSTUDY_*` environment variable.
//!
//! The seed-compatible flags (`--election`, `--election-namespace`, `--id`, `--http`, `--ttl`)
//! keep the retired leader-elector image's meaning, so `understudy --election example --http
//! 0.0.0.0:4040` is a drop-in replacement. `--listen` turns the proxy on.
//!
//! The structs here only parse; [`crate::settings::Settings::from_cli`] checks the values
//! together and fills in the defaults that depend on the environment.

use std::error::Error as _;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, ValueEnum};

/// `understudy`: active/standby redundancy for a pod, by Lease election and reverse proxy.
#[derive(Debug, Clone, Parser)]
#[command(name = "understudy", version, about, long_about = None)]
pub struct Cli {
    /// Which election this pod takes part in, and its timings.
    #[command(flatten)]
    pub election: ElectionArgs,
    /// The admin server.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// The reverse proxy (off unless `--listen` is given).
    #[command(flatten)]
    pub proxy: ProxyArgs,
    /// The mTLS channel between sidecars (off unless `--peer-listen` is given).
    #[command(flatten)]
    pub peer: PeerArgs,
    /// HTTP limits and timeouts of the proxy.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Health-gated leadership.
    #[command(flatten)]
    pub health: HealthArgs,
    /// Pod role labels and Events.
    #[command(flatten)]
    pub announce: AnnounceArgs,
    /// Threads serving traffic. 1 (the default) runs everything on one thread, which is what a
    /// sidecar's CPU request usually buys; raise it with the CPU limit.
    #[arg(
        long,
        env = "UNDERSTUDY_WORKER_THREADS",
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub worker_threads: u16,
    /// Log lines as text (coloured only when stderr is a terminal) or as one JSON object per
    /// line, for log pipelines.
    #[arg(long, env = "UNDERSTUDY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A kubeconfig file to reach the API server with [default: $KUBECONFIG, else
    /// ~/.kube/config, else the pod's service account (in-cluster)].
    #[arg(long, env = "UNDERSTUDY_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Accepted for compatibility with the leader-elector image, where it chose in-cluster
    /// credentials; understudy finds them by itself, so it has no effect.
    #[arg(
        long,
        env = "UNDERSTUDY_USE_CLUSTER_CREDENTIALS",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub use_cluster_credentials: Option<bool>,
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Election flags (seed-compatible names first).
#[derive(Debug, Clone, Args)]
pub struct ElectionArgs {
    /// Name of the election: the Lease object that is contended for.
    #[arg(long, env = "UNDERSTUDY_ELECTION", value_name = "NAME")]
    pub election: String,
    /// Namespace of the Lease [default: the pod's namespace from its service account, else
    /// `default`].
    #[arg(long, env = "UNDERSTUDY_ELECTION_NAMESPACE", value_name = "NS")]
    pub election_namespace: Option<String>,
    /// This candidate's identity, written as the Lease holder [default: the hostname, which is
    /// the pod name].
    #[arg(long, env = "UNDERSTUDY_ID", value_name = "ID")]
    pub id: Option<String>,
    /// Seed-compatible shorthand: leaseDuration TTL, renewDeadline TTL/2, retryPeriod TTL/4.
    #[arg(long, env = "UNDERSTUDY_TTL", value_name = "DURATION", value_parser = duration)]
    pub ttl: Option<Duration>,
    /// How long a Lease is valid after it was last seen to change [default: 10s, or --ttl].
    #[arg(long, env = "UNDERSTUDY_LEASE_DURATION", value_name = "DURATION", value_parser = duration)]
    pub lease_duration: Option<Duration>,
    /// How long the leader keeps acting after its last successful renew was sent
    /// [default: 6s, or --ttl/2].
    #[arg(long, env = "UNDERSTUDY_RENEW_DEADLINE", value_name = "DURATION", value_parser = duration)]
    pub renew_deadline: Option<Duration>,
    /// Interval between renewals and acquisition attempts [default: 2s, or --ttl/4].
    #[arg(long, env = "UNDERSTUDY_RETRY_PERIOD", value_name = "DURATION", value_parser = duration)]
    pub retry_period: Option<Duration>,
    /// How many pods are active at once: N slots, each its own Lease (NAME when N is 1,
    /// NAME-0 .. NAME-{N-1} otherwise). A pod holds at most one slot.
    #[arg(
        long,
        env = "UNDERSTUDY_ACTIVES",
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub actives: u16,
    /// Serve through a control-plane outage: when the leader cannot renew, it keeps acting
    /// for as long as every member confirms, over the peer channel, that it will not take
    /// over (docs/election.md). `off` is the plain Lease election. Needs --listen (the peer
    /// channel); elector-only mode runs without it.
    #[arg(long, env = "UNDERSTUDY_FAILSAFE", value_enum, default_value_t = OnOff::On)]
    pub failsafe: OnOff,
    /// The longest a leader acts on its members' promises past its last successful renew.
    /// The Lease's leaseDurationSeconds becomes this × leaseDuration/renewDeadline: how long
    /// a candidate outside the member set (or a client-go candidate) waits for a holder that
    /// vanished.
    #[arg(long, env = "UNDERSTUDY_FAILSAFE_MAX", value_name = "DURATION", value_parser = duration, default_value = "1h")]
    pub failsafe_max: Duration,
    /// Leadership priority, announced in this pod's member Lease: a holder hands its slot over
    /// in the planned way to a live, ready member with a higher priority once that member has
    /// been ready for --failback-delay. Equal priorities never move the leader.
    #[arg(
        long,
        env = "UNDERSTUDY_PRIORITY",
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub priority: i64,
    /// How long a member with a higher priority must have been live and ready, and the holder
    /// must have held its slot, before the holder hands over to it (no flapping).
    #[arg(long, env = "UNDERSTUDY_FAILBACK_DELAY", value_name = "DURATION", value_parser = duration, default_value = "60s")]
    pub failback_delay: Duration,
}

/// A feature switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// Admin server flags.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Admin address, read-only (GET): `/` -> {"name":"<leader>"} as the old image
    /// answered; `/healthz` (liveness); `/readyz` (readiness, see --ready-when); `/status`
    /// (this pod's view: role, leader, epoch, timings, held requests, as JSON); `/actives`
    /// (every slot's holder and address, as JSON); `/metrics` (Prometheus).
    #[arg(
        long,
        env = "UNDERSTUDY_HTTP",
        value_name = "ADDR",
        default_value = "0.0.0.0:4040"
    )]
    pub http: SocketAddr,
    /// When /readyz answers 200: once the Lease has been read (`synced`), or only on the
    /// acting leader (`leader`, the old image's behaviour).
    #[arg(long, env = "UNDERSTUDY_READY_WHEN", value_enum, default_value_t = ReadyWhen::Synced)]
    pub ready_when: ReadyWhen,
    /// How long to keep serving after SIGTERM, so that endpoint removal can propagate.
    #[arg(long, env = "UNDERSTUDY_DRAIN", value_name = "DURATION", value_parser = duration, default_value = "5s")]
    pub drain: Duration,
}

/// Health-gated leadership flags.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Check the app's health and lead only while it is healthy: an HTTP path on --upstream
    /// (`/healthz`; any 2xx or 3xx passes) or `tcp` (a connect). Off by default. An
    /// unhealthy leader releases its slot to a healthy standby.
    #[arg(long, env = "UNDERSTUDY_UPSTREAM_HEALTH", value_name = "PATH|tcp")]
    pub upstream_health: Option<String>,
    /// Time between health checks; also each check's timeout.
    #[arg(long, env = "UNDERSTUDY_HEALTH_INTERVAL", value_name = "DURATION", value_parser = duration, default_value = "1s")]
    pub health_interval: Duration,
    /// Failed checks in a row that make the app unhealthy.
    #[arg(
        long,
        env = "UNDERSTUDY_HEALTH_FAILURES",
        value_name = "N",
        default_value_t = 3
    )]
    pub health_failures: u32,
    /// Passed checks in a row that make it healthy again.
    #[arg(
        long,
        env = "UNDERSTUDY_HEALTH_SUCCESSES",
        value_name = "N",
        default_value_t = 2
    )]
    pub health_successes: u32,
    /// Least time an app that turned unhealthy stays so, however soon it passes again
    /// (damps flapping).
    #[arg(long, env = "UNDERSTUDY_HEALTH_HOLD_DOWN", value_name = "DURATION", value_parser = duration, default_value = "10s")]
    pub health_hold_down: Duration,
}

/// Pod role labels and Events (both off by default; each needs its RBAC component).
#[derive(Debug, Clone, Args)]
pub struct AnnounceArgs {
    /// Keep this pod labelled understudy.io/role=active|standby (and understudy.io/slot while
    /// active), updated after the Lease; patches the pod named by --id. Needs `patch` on pods.
    #[arg(long, env = "UNDERSTUDY_LABEL_PODS", value_parser = clap::builder::BoolishValueParser::new())]
    pub label_pods: bool,
    /// Record a Kubernetes Event (reason LeaderElection) when this pod starts or stops
    /// leading a slot. Needs `create` on events.
    #[arg(long, env = "UNDERSTUDY_EVENTS", value_parser = clap::builder::BoolishValueParser::new())]
    pub events: bool,
}

/// Proxy flags.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Address the proxy listens on (the Service's targetPort). Without it, no proxy runs.
    #[arg(long, env = "UNDERSTUDY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The local app, `host:port`.
    #[arg(
        long,
        env = "UNDERSTUDY_UPSTREAM",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:80"
    )]
    pub upstream: String,
    /// How peers reach this pod's proxy, `host:port` [default: $POD_IP and the --listen port;
    /// the --listen address itself when it is not a wildcard].
    #[arg(long, env = "UNDERSTUDY_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// How long a request may wait for a leader before 503, counted from its arrival at the
    /// first sidecar it reached [default: leaseDuration + 2 × retryPeriod].
    #[arg(long, env = "UNDERSTUDY_HOLD_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub hold_timeout: Option<Duration>,
    /// How many requests may wait for a leader at once; beyond that, 503 at once.
    #[arg(
        long,
        env = "UNDERSTUDY_MAX_HELD",
        value_name = "N",
        default_value_t = 1024
    )]
    pub max_held: usize,
    /// Log one line per proxied request (route, peer, status, duration).
    #[arg(long, env = "UNDERSTUDY_ACCESS_LOG", value_parser = clap::builder::BoolishValueParser::new())]
    pub access_log: bool,
    /// What the proxy carries: HTTP requests (`http`), or byte streams for apps that do not
    /// speak HTTP (`tcp`: Redis, PostgreSQL, brokers; docs/tcp-mode.md). In TCP mode a
    /// connection is routed when it arrives and closed when the leadership it was routed
    /// under ends.
    #[arg(long, env = "UNDERSTUDY_MODE", value_enum, default_value_t = Mode::Http)]
    pub mode: Mode,
    /// TCP mode: one more listener and the app address it hands connections to,
    /// `LISTEN=HOST:PORT` (e.g. an app's metrics port beside its main one). May be repeated;
    /// `--listen` with `--upstream` is always the first. A connection handed to the leader
    /// goes to the leader's listener of the same position, so every pod lists them alike.
    #[arg(
        long,
        env = "UNDERSTUDY_TCP_LISTEN",
        value_name = "ADDR=HOST:PORT",
        value_delimiter = ','
    )]
    pub tcp_listen: Vec<String>,
    /// TCP mode: open every connection to the app with a PROXY protocol v2 header naming
    /// the client (for apps that read it, e.g. with HAProxy's `accept-proxy`).
    #[arg(long, env = "UNDERSTUDY_PROXY_PROTOCOL", value_parser = clap::builder::BoolishValueParser::new())]
    pub proxy_protocol: bool,
    /// TCP mode: before a planned handover (SIGTERM, the handover annotation that `kubectl
    /// understudy switchover` writes, POST /handover, GET /prestop, a failback), how long
    /// the leader waits for its connections to the app to end by themselves, still leading;
    /// new connections wait for the next leader meanwhile. Then the Lease moves and the rest
    /// are closed. 0, the default, closes them at once. Must be shorter than --hold-timeout.
    #[arg(long, env = "UNDERSTUDY_CLOSE_GRACE", value_name = "DURATION", value_parser = duration, default_value = "0s")]
    pub close_grace: Duration,
    /// TCP mode: relay plain TCP connections with splice(2), kernel to kernel, instead of
    /// through the sidecar's buffers (the mTLS peer channel is always buffered).
    #[arg(long, env = "UNDERSTUDY_SPLICE", value_parser = clap::builder::BoolishValueParser::new())]
    pub splice: bool,
}

/// What the proxy carries (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// HTTP/1.1 and HTTP/2 requests.
    Http,
    /// Byte streams (TCP).
    Tcp,
}

/// The mTLS peer channel: forwarded requests between sidecars go over TLS with client
/// certificates, and only there are understudy's internal routing headers honoured.
#[derive(Debug, Clone, Args)]
pub struct PeerArgs {
    /// Serve forwarded requests from other sidecars here, over mTLS; standbys then forward
    /// only to this port (advertised in the Lease), and the --listen port treats every
    /// request as a client's (TCP mode: connections are handed over only here, and the
    /// --listen port reads no PROXY header). Off by default. Needs --listen and
    /// --peer-tls-dir.
    #[arg(
        long,
        env = "UNDERSTUDY_PEER_LISTEN",
        value_name = "ADDR",
        requires = "peer_tls_dir"
    )]
    pub peer_listen: Option<SocketAddr>,
    /// Directory with tls.crt, tls.key and ca.crt (a cert-manager Secret, mounted): this
    /// sidecar's certificate, its key, and the CA a peer's certificate must chain to. Re-read
    /// when the files change.
    #[arg(
        long,
        env = "UNDERSTUDY_PEER_TLS_DIR",
        value_name = "DIR",
        requires = "peer_listen"
    )]
    pub peer_tls_dir: Option<PathBuf>,
    /// The DNS name (subjectAltName) every sidecar's certificate carries, checked when
    /// connecting to a peer.
    #[arg(
        long,
        env = "UNDERSTUDY_PEER_SERVER_NAME",
        value_name = "NAME",
        default_value = "understudy-peer"
    )]
    pub peer_server_name: String,
}

/// Proxy limits and timeouts.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Timeout for connecting to the local app or a peer.
    #[arg(long, env = "UNDERSTUDY_CONNECT_TIMEOUT", value_name = "DURATION", value_parser = duration, default_value = "1s")]
    pub connect_timeout: Duration,
    /// How long a client may take to send a request's headers (HTTP/1).
    #[arg(long, env = "UNDERSTUDY_HEADER_READ_TIMEOUT", value_name = "DURATION", value_parser = duration, default_value = "10s")]
    pub header_read_timeout: Duration,
    /// Close a client connection, or a pooled one, after this long without traffic (on
    /// HTTP/2, a stream's frames; PINGs do not count).
    #[arg(long, env = "UNDERSTUDY_IDLE_TIMEOUT", value_name = "DURATION", value_parser = duration, default_value = "60s")]
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers) accepted, in bytes.
    #[arg(long, env = "UNDERSTUDY_MAX_HEADER_BYTES", value_name = "BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Most headers accepted on one request.
    #[arg(
        long,
        env = "UNDERSTUDY_MAX_HEADERS",
        value_name = "N",
        default_value_t = 100
    )]
    pub max_headers: usize,
    /// Most client connections open at once; beyond that, 503 and close.
    #[arg(
        long,
        env = "UNDERSTUDY_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 4096
    )]
    pub max_connections: usize,
    /// Most requests handled at once (held ones included), up to their response head;
    /// beyond that, 503 at once. Also the most idle HTTP/1 connections kept open to the app,
    /// and to each peer.
    #[arg(
        long,
        env = "UNDERSTUDY_MAX_REQUESTS",
        value_name = "N",
        default_value_t = 2048
    )]
    pub max_requests: usize,
    /// Request bodies up to this size are kept so that a failed attempt can be sent again;
    /// a larger one is streamed and never resent. Bytes, per request.
    #[arg(long, env = "UNDERSTUDY_REPLAY_BUFFER", value_name = "BYTES", default_value_t = 64 * 1024)]
    pub replay_buffer: usize,
    /// How long a client may take to send a request body, counted from the request's
    /// arrival; a slower body ends the request (and its connection).
    #[arg(long, env = "UNDERSTUDY_BODY_TIMEOUT", value_name = "DURATION", value_parser = duration, default_value = "5m")]
    pub body_timeout: Duration,
}

/// When the pod reports Ready on `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadyWhen {
    /// As soon as the Lease has been read once: every pod is Ready and the proxy routes.
    Synced,
    /// Only while this pod is the acting leader (the old leader-elector behaviour).
    Leader,
}

impl ReadyWhen {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadyWhen::Synced => "synced",
            ReadyWhen::Leader => "leader",
        }
    }
}

/// The command line as the old leader-elector image's users write it, turned into what
/// clap parses: Go's flag package accepts one dash before a long flag (`-election=example`,
/// `-http 0.0.0.0:4040`), so a single-dash argument that names one of understudy's long
/// flags gets its second dash. Everything after `--`, short flags (`-h`, `-V`) and values
/// are left alone.
pub fn normalize_args<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let command = Cli::command();
    let longs: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(String::from))
        .chain(["help".to_string(), "version".to_string()])
        .collect();
    let takes_value = |name: &str| {
        command
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .is_some_and(|a| {
                a.get_action().takes_values() && a.get_num_args().is_none_or(|n| n.min_values() > 0)
            })
    };
    let mut out = Vec::new();
    let mut rest = false;
    let mut value_next = false;
    for (i, arg) in args.into_iter().map(Into::into).enumerate() {
        if i == 0 || rest || std::mem::take(&mut value_next) {
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        let long = text
            .strip_prefix("--")
            .or_else(|| text.strip_prefix('-').filter(|t| !t.starts_with('-')));
        let Some(long) = long else {
            out.push(arg);
            continue;
        };
        let name = long.split_once('=').map_or(long, |(n, _)| n);
        if !longs.iter().any(|l| l == name) {
            out.push(arg);
            continue;
        }
        value_next = !long.contains('=') && takes_value(name);
        out.push(OsString::from(format!("--{long}")));
    }
    out
}

/// A parse error, said better when the bad value came from an `UNDERSTUDY_*` variable rather
/// than the command line: clap names only the flag, which the user never typed.
pub fn explain_env_error(err: &clap::Error, args: &[OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let name = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    let command = Cli::command();
    let flag = command
        .get_arguments()
        .find(|a| a.get_long() == Some(name))?;
    let on_command_line = args.iter().skip(1).any(|a| {
        a.to_str().is_some_and(|a| {
            a.strip_prefix("--")
                .is_some_and(|a| a == name || a.starts_with(&format!("{name}=")))
        })
    });
    if on_command_line {
        return None;
    }
    let var = flag.get_env()?.to_str()?;
    let value = std::env::var_os(var)?;
    // The value parser's own complaint; an enum has none, its valid values follow.
    let why = err
        .source()
        .map_or_else(|| "not a valid value".to_string(), |s| s.to_string());
    let mut msg = format!("environment variable {var}={value:?} (for --{name}): {why}");
    if let Some(ContextValue::Strings(valid)) = err.get(ContextKind::ValidValue) {
        msg.push_str(&format!(" [possible values: {}]", valid.join(", ")));
    }
    Some(msg)
}

/// clap value parser for durations (`10s`, `1500ms`, `2m`); clap names the flag on error.
fn duration(s: &str) -> Result<Duration, String> {
    understudy_elector::parse_duration(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
