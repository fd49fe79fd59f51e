//! The checked configuration of one sidecar, built from the [`Cli`] and the pod's environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::uri::Authority;
use understudy_elector::{Config, ConfigError};

use crate::announce::Announce;
use crate::cli::{Cli, Mode, OnOff, ReadyWhen};
use crate::health::{HealthSettings, Probe};

/// Where the service account mounts the pod's namespace.
pub const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// A flag whose value is wrong together with the others. Each variant names the flag.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The election timings do not satisfy the elector's rules.
    #[error("--lease-duration/--renew-deadline/--retry-period (or --ttl): {source}")]
    Timings {
        /// The elector's complaint.
        source: ConfigError,
    },
    /// An address flag is not `host:port`.
    #[error("--{flag}: {value:?} is not a host:port address")]
    Address {
        /// The flag, without dashes.
        flag: &'static str,
        /// The value given.
        value: String,
    },
    /// No way to tell peers how to reach this pod.
    #[error(
        "--advertise: needed when --listen is a wildcard address ({listen}) and POD_IP is unset"
    )]
    NoAdvertise {
        /// The wildcard listen address.
        listen: SocketAddr,
    },
    /// No identity given and no hostname found.
    #[error("--id: not given and the hostname could not be read")]
    NoIdentity,
    /// An empty value where a name is needed.
    #[error("--{flag}: must not be empty")]
    Empty {
        /// The flag, without dashes.
        flag: &'static str,
    },
    /// A count that must be positive is zero.
    #[error("--{flag}: must be at least 1")]
    Zero {
        /// The flag, without dashes.
        flag: &'static str,
    },
    /// `--upstream-health` is neither a path nor `tcp`, or there is no upstream to check.
    #[error(
        "--upstream-health: {value:?} must be an absolute path such as /healthz, or tcp, and needs --listen"
    )]
    Health {
        /// The value given.
        value: String,
    },
    /// A timeout that must be positive is zero.
    #[error("--{flag}: must be longer than 0s")]
    ZeroDuration {
        /// The flag, without dashes.
        flag: &'static str,
    },
    /// `--failsafe-max` shorter than the renew deadline, or too long for a Lease.
    #[error("--failsafe-max: {value:?} {why}")]
    FailsafeMax {
        /// The value given.
        value: Duration,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A flag that does not go with `--mode` as given.
    #[error("--{flag}: {why}")]
    Mode {
        /// The flag, without dashes.
        flag: &'static str,
        /// What is wrong.
        why: String,
    },
    /// `--peer-listen` without the proxy it serves.
    #[error("--peer-listen: needs --listen (the peer port serves the proxy)")]
    PeerWithoutProxy,
    /// `--peer-server-name` is not a DNS name a certificate could carry.
    #[error("--peer-server-name: {value:?} is not a DNS name")]
    PeerServerName {
        /// The value given.
        value: String,
    },
    /// A value below the least the sidecar can work with.
    #[error("--{flag}: must be at least {min} ({why})")]
    TooSmall {
        /// The flag, without dashes.
        flag: &'static str,
        /// The least value accepted.
        min: usize,
        /// Why.
        why: &'static str,
    },
    /// A name that Kubernetes would refuse for the object it names.
    #[error("--{flag}: {value:?} is not a valid {what}: {rule}")]
    Name {
        /// The flag, without dashes.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What the name is used as.
        what: &'static str,
        /// The rule it breaks, in Kubernetes' words.
        rule: String,
    },
}

/// The least `--max-header-bytes`: hyper's HTTP/1 server refuses smaller read buffers.
pub const MIN_HEADER_BYTES: usize = 8192;

/// What the settings depend on besides the command line, read once at start.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$POD_IP` (downward API).
    pub pod_ip: Option<String>,
    /// Contents of the service account's namespace file.
    pub namespace: Option<String>,
    /// The hostname (a pod's hostname is its name).
    pub hostname: Option<String>,
}

impl Environment {
    /// Reads `$POD_IP`, [`NAMESPACE_FILE`] and the kernel hostname.
    pub fn detect() -> Environment {
        let read = |path: PathBuf| std::fs::read_to_string(path).ok();
        let hostname =
            read("/proc/sys/kernel/hostname".into()).or_else(|| std::env::var("HOSTNAME").ok());
        Environment {
            pod_ip: std::env::var("POD_IP").ok(),
            namespace: read(NAMESPACE_FILE.into()),
            hostname,
        }
    }
}

/// The sidecar's configuration, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lease name.
    pub election: String,
    /// Lease namespace.
    pub namespace: String,
    /// Active slots (`--actives`): one Lease each.
    pub actives: usize,
    /// This candidate's identity.
    pub identity: String,
    /// Election timings, validated.
    pub timings: Config,
    /// Admin server address.
    pub admin: SocketAddr,
    /// `/readyz` policy.
    pub ready_when: ReadyWhen,
    /// How long to keep serving after SIGTERM.
    pub drain: Duration,
    /// The proxy, when `--listen` was given.
    pub proxy: Option<ProxySettings>,
    /// The app's health check, when `--upstream-health` was given.
    pub health: Option<HealthSettings>,
    /// Pod labels and Events, when `--label-pods` or `--events` was given.
    pub announce: Option<Announce>,
    /// `--kubeconfig`, when given.
    pub kubeconfig: Option<PathBuf>,
    /// `--failsafe-max`, when the failsafe is on (`--failsafe on` with a proxy).
    pub failsafe: Option<Duration>,
    /// `--priority`.
    pub priority: i64,
    /// `--failback-delay`.
    pub failback_delay: Duration,
    /// Values that are allowed but probably not meant, said once at start-up.
    pub warnings: Vec<String>,
}

/// Settings of the reverse proxy.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// The local app.
    pub upstream: Authority,
    /// How peers reach this pod's proxy.
    pub advertise: Authority,
    /// Longest wait for a leader.
    pub hold_timeout: Duration,
    /// Bound of the hold queue.
    pub max_held: usize,
    /// One log line per request.
    pub access_log: bool,
    /// Connect timeout to the app and to peers.
    pub connect_timeout: Duration,
    /// HTTP/1 header read timeout.
    pub header_read_timeout: Duration,
    /// Idle timeout of client and pooled connections.
    pub idle_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// Most headers per request.
    pub max_headers: usize,
    /// Most client connections open at once.
    pub max_connections: usize,
    /// Most requests handled at once.
    pub max_requests: usize,
    /// Replay buffer per request, bytes.
    pub replay_buffer: usize,
    /// Longest time to receive a request body.
    pub body_timeout: Duration,
    /// The mTLS peer channel, when `--peer-listen` was given.
    pub peer: Option<PeerSettings>,
    /// TCP mode (`--mode tcp`); `None` in HTTP mode.
    pub tcp: Option<TcpSettings>,
    /// How long a streaming response from the local app may go on after leadership ended:
    /// long enough for an ordinary response to finish, shorter than the gap between the
    /// fencing deadline and the earliest takeover.
    pub stream_grace: Duration,
}

/// Settings of TCP mode (`--mode tcp`).
#[derive(Debug, Clone)]
pub struct TcpSettings {
    /// Every listener with the app address its connections go to: `--listen` with
    /// `--upstream` first, then each `--tcp-listen`.
    pub listeners: Vec<(SocketAddr, Authority)>,
    /// Send a PROXY v2 header to the app first (`--proxy-protocol`).
    pub proxy_protocol: bool,
    /// Before a planned handover, how long the leader waits for its connections to the local
    /// app to end by themselves (new ones wait for the next leader meanwhile).
    pub close_grace: Duration,
    /// Relay plain TCP connections with splice(2) (`--splice`).
    pub splice: bool,
}

/// Settings of the mTLS peer channel (`--peer-listen`).
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// Where the peer listener binds.
    pub listen: SocketAddr,
    /// How other sidecars reach it: the peer listen address, or, when that is a wildcard, the
    /// host of the proxy's advertised address with the peer port.
    pub advertise: Authority,
    /// The directory with `tls.crt`, `tls.key` and `ca.crt`.
    pub tls_dir: PathBuf,
    /// The DNS name every peer certificate carries (checked when connecting to a peer).
    pub server_name: String,
}

impl Settings {
    /// Checks the command line against itself and `env`.
    pub fn from_cli(cli: &Cli, env: &Environment) -> Result<Settings, SettingsError> {
        let e = &cli.election;
        if e.election.trim().is_empty() {
            return Err(SettingsError::Empty { flag: "election" });
        }
        names::lease_names("election", &e.election, e.actives)?;
        let namespace = e
            .election_namespace
            .clone()
            .or_else(|| {
                env.namespace
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
            })
            .unwrap_or_else(|| "default".to_string());
        if namespace.is_empty() {
            return Err(SettingsError::Empty {
                flag: "election-namespace",
            });
        }
        names::namespace("election-namespace", &namespace)?;
        let identity = match &e.id {
            Some(id) if id.is_empty() => return Err(SettingsError::Empty { flag: "id" }),
            Some(id) => id.clone(),
            None => env
                .hostname
                .as_deref()
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .ok_or(SettingsError::NoIdentity)?
                .to_string(),
        };
        let timings = timings(cli).map_err(|source| SettingsError::Timings { source })?;
        let proxy = match cli.proxy.listen {
            Some(listen) => Some(proxy_settings(cli, listen, &timings, env)?),
            None if cli.peer.peer_listen.is_some() => return Err(SettingsError::PeerWithoutProxy),
            None => None,
        };
        let health = match &cli.health.upstream_health {
            None => None,
            Some(value) => {
                let probe = Probe::parse(value)
                    .filter(|_| proxy.is_some())
                    .ok_or_else(|| SettingsError::Health {
                        value: value.clone(),
                    })?;
                let h = &cli.health;
                if h.health_interval.is_zero() {
                    return Err(SettingsError::ZeroDuration {
                        flag: "health-interval",
                    });
                }
                if h.health_failures == 0 {
                    return Err(SettingsError::Zero {
                        flag: "health-failures",
                    });
                }
                if h.health_successes == 0 {
                    return Err(SettingsError::Zero {
                        flag: "health-successes",
                    });
                }
                Some(HealthSettings {
                    probe,
                    interval: h.health_interval,
                    failures: h.health_failures,
                    successes: h.health_successes,
                    hold_down: h.health_hold_down,
                })
            }
        };
        let a = &cli.announce;
        let announce = (a.label_pods || a.events).then(|| Announce {
            label_pods: a.label_pods,
            events: a.events,
            pod: identity.clone(),
            namespace: namespace.clone(),
        });
        let mut warnings = Vec::new();
        let failsafe = match (e.failsafe, &proxy) {
            (OnOff::Off, _) => None,
            (OnOff::On, None) => {
                warnings.push(
                    "--failsafe on needs the peer channel of --listen: in elector-only mode \
                     the leader stops at its renew deadline when the API is unreachable"
                        .to_string(),
                );
                None
            }
            (OnOff::On, Some(_)) => {
                let max = e.failsafe_max;
                if max < timings.renew_deadline {
                    return Err(SettingsError::FailsafeMax {
                        value: max,
                        why: "must be at least --renew-deadline",
                    });
                }
                let dead = understudy_elector::failsafe::dead_lease_secs(
                    timings.lease_duration,
                    timings.renew_deadline,
                    max,
                );
                if dead == i32::MAX {
                    return Err(SettingsError::FailsafeMax {
                        value: max,
                        why: "is too long for a Lease's leaseDurationSeconds",
                    });
                }
                Some(max)
            }
        };
        if let Some(p) = &proxy {
            // A leader that dies unannounced is replaced within leaseDuration + retryPeriod.
            let failover = timings.lease_duration + timings.retry_period;
            if p.hold_timeout < failover {
                warnings.push(format!(
                    "--hold-timeout {:?} is shorter than a failover after a crash (up to \
                     leaseDuration + retryPeriod = {failover:?}): requests that arrive while \
                     a leader is replaced get 503 before the next one can serve them",
                    p.hold_timeout
                ));
            }
        }
        Ok(Settings {
            warnings,
            failsafe,
            priority: e.priority,
            failback_delay: e.failback_delay,
            kubeconfig: cli.kubeconfig.clone(),
            health,
            announce,
            election: e.election.clone(),
            namespace,
            actives: usize::from(e.actives),
            identity,
            timings,
            admin: cli.admin.http,
            ready_when: cli.admin.ready_when,
            drain: cli.admin.drain,
            proxy,
        })
    }
}

/// `--ttl` sets all three; explicit timing flags override it one by one.
fn timings(cli: &Cli) -> Result<Config, ConfigError> {
    let e = &cli.election;
    let mut config = match e.ttl {
        Some(ttl) => Config {
            lease_duration: ttl,
            renew_deadline: ttl / 2,
            retry_period: ttl / 4,
            ..Config::default()
        },
        None => Config::default(),
    };
    if let Some(d) = e.lease_duration {
        config.lease_duration = d;
    }
    if let Some(d) = e.renew_deadline {
        config.renew_deadline = d;
    }
    if let Some(d) = e.retry_period {
        config.retry_period = d;
    }
    // The safety-net resync must not be shorter than the retry period.
    config.resync_period = config.resync_period.max(config.retry_period);
    config.validated()
}

fn proxy_settings(
    cli: &Cli,
    listen: SocketAddr,
    timings: &Config,
    env: &Environment,
) -> Result<ProxySettings, SettingsError> {
    let p = &cli.proxy;
    let l = &cli.limits;
    let upstream = authority("upstream", &p.upstream)?;
    let advertise = match (&p.advertise, &env.pod_ip) {
        (Some(a), _) => authority("advertise", a)?,
        (None, _) if !listen.ip().is_unspecified() => authority("advertise", &listen.to_string())?,
        (None, Some(ip)) if !ip.trim().is_empty() => {
            let ip = ip.trim();
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            authority("advertise", &format!("{host}:{}", listen.port()))?
        }
        (None, _) => return Err(SettingsError::NoAdvertise { listen }),
    };
    let peer = match (&cli.peer.peer_listen, &cli.peer.peer_tls_dir) {
        (Some(peer_listen), Some(dir)) => Some(peer_settings(cli, *peer_listen, dir, &advertise)?),
        // clap insists on both or neither.
        _ => None,
    };
    let hold_timeout = p
        .hold_timeout
        .unwrap_or(timings.lease_duration + 2 * timings.retry_period);
    if l.max_header_bytes < MIN_HEADER_BYTES {
        return Err(SettingsError::TooSmall {
            flag: "max-header-bytes",
            min: MIN_HEADER_BYTES,
            why: "the HTTP/1 server reads request heads in buffers of at least this size",
        });
    }
    for (flag, n) in [
        ("max-held", p.max_held),
        ("max-headers", l.max_headers),
        ("max-header-bytes", l.max_header_bytes),
        ("max-connections", l.max_connections),
        ("max-requests", l.max_requests),
    ] {
        if n == 0 {
            return Err(SettingsError::Zero { flag });
        }
    }
    for (flag, d) in [
        ("hold-timeout", hold_timeout),
        ("connect-timeout", l.connect_timeout),
        ("header-read-timeout", l.header_read_timeout),
        ("idle-timeout", l.idle_timeout),
        ("body-timeout", l.body_timeout),
    ] {
        if d.is_zero() {
            return Err(SettingsError::ZeroDuration { flag });
        }
    }
    let tcp = tcp_settings(cli, listen, &upstream, &advertise, hold_timeout)?;
    Ok(ProxySettings {
        tcp,
        listen,
        upstream,
        advertise,
        hold_timeout,
        max_held: p.max_held,
        access_log: p.access_log,
        connect_timeout: l.connect_timeout,
        header_read_timeout: l.header_read_timeout,
        idle_timeout: l.idle_timeout,
        max_header_bytes: l.max_header_bytes,
        max_headers: l.max_headers,
        max_connections: l.max_connections,
        max_requests: l.max_requests,
        replay_buffer: l.replay_buffer,
        body_timeout: l.body_timeout,
        peer,
        stream_grace: (timings
            .lease_duration
            .saturating_sub(timings.renew_deadline))
            / 2,
    })
}

/// TCP mode's settings, or `None` in HTTP mode (where its flags are refused).
fn tcp_settings(
    cli: &Cli,
    listen: SocketAddr,
    upstream: &Authority,
    advertise: &Authority,
    hold_timeout: Duration,
) -> Result<Option<TcpSettings>, SettingsError> {
    let p = &cli.proxy;
    if p.mode == Mode::Http {
        let given = [
            ("tcp-listen", !p.tcp_listen.is_empty()),
            ("proxy-protocol", p.proxy_protocol),
            ("close-grace", !p.close_grace.is_zero()),
            ("splice", p.splice),
        ];
        if let Some((flag, _)) = given.into_iter().find(|(_, given)| *given) {
            return Err(SettingsError::Mode {
                flag,
                why: "only in TCP mode (--mode tcp)".to_string(),
            });
        }
        return Ok(None);
    }
    // Without the mTLS peer channel, sidecars hand connections over on the data port and
    // recognise each other by source address: the advertised host must be that address.
    let host = advertise.host().trim_matches(['[', ']']);
    if cli.peer.peer_listen.is_none() && host.parse::<std::net::IpAddr>().is_err() {
        return Err(SettingsError::Mode {
            flag: "advertise",
            why: format!(
                "{host:?} is a name; in TCP mode without --peer-listen it must be this pod's IP \
                 address: sidecars recognise each other by the address their connections come \
                 from"
            ),
        });
    }
    if let Some(check) = cli
        .health
        .upstream_health
        .as_deref()
        .filter(|c| *c != "tcp")
    {
        return Err(SettingsError::Mode {
            flag: "upstream-health",
            why: format!("{check:?} is an HTTP check; in TCP mode the app is checked with `tcp`"),
        });
    }
    if p.close_grace >= hold_timeout && !p.close_grace.is_zero() {
        return Err(SettingsError::Mode {
            flag: "close-grace",
            why: format!(
                "{:?} must be shorter than the hold timeout ({hold_timeout:?}): connections \
                 that arrive while the leader drains wait for the next leader within it",
                p.close_grace
            ),
        });
    }
    let mut listeners = vec![(listen, upstream.clone())];
    for value in &p.tcp_listen {
        let bad = || SettingsError::Address {
            flag: "tcp-listen",
            value: value.clone(),
        };
        let (addr, to) = value.split_once('=').ok_or_else(bad)?;
        let addr: SocketAddr = addr.trim().parse().map_err(|_| bad())?;
        let to = authority("tcp-listen", to.trim())?;
        if listeners.iter().any(|(l, _)| *l == addr) {
            return Err(SettingsError::Mode {
                flag: "tcp-listen",
                why: format!("{addr} is given twice"),
            });
        }
        listeners.push((addr, to));
    }
    Ok(Some(TcpSettings {
        listeners,
        proxy_protocol: p.proxy_protocol,
        close_grace: p.close_grace,
        splice: p.splice,
    }))
}

fn peer_settings(
    cli: &Cli,
    listen: SocketAddr,
    dir: &std::path::Path,
    advertise: &Authority,
) -> Result<PeerSettings, SettingsError> {
    let name = cli.peer.peer_server_name.trim();
    let dns = !name.is_empty()
        && name.parse::<std::net::IpAddr>().is_err()
        && rustls::pki_types::ServerName::try_from(name).is_ok();
    if !dns {
        return Err(SettingsError::PeerServerName {
            value: cli.peer.peer_server_name.clone(),
        });
    }
    let advertise = if listen.ip().is_unspecified() {
        authority(
            "peer-listen",
            &format!("{}:{}", advertise.host(), listen.port()),
        )?
    } else {
        authority("peer-listen", &listen.to_string())?
    };
    Ok(PeerSettings {
        listen,
        advertise,
        tls_dir: dir.to_path_buf(),
        server_name: name.to_string(),
    })
}

/// `host:port` with an explicit port.
fn authority(flag: &'static str, value: &str) -> Result<Authority, SettingsError> {
    let err = || SettingsError::Address {
        flag,
        value: value.to_string(),
    };
    let a: Authority = value.parse().map_err(|_| err())?;
    if a.port_u16().is_none() || a.host().is_empty() || a.as_str().contains('@') {
        return Err(err());
    }
    Ok(a)
}

mod names;

#[cfg(test)]
mod tests;
