//! Putting it together: the election, the admin server, the proxy, and the shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use kube::Api;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use understudy_elector::{
    Candidate, FailsafeOptions, Prepare, SlotsOptions, routing_views, spawn_slots_with,
};

use crate::admin::Admin;
use crate::dial::Dialer;
use crate::edge::Edge;
use crate::metrics::Metrics;
use crate::peer_tls::{self, PeerTls, PeerTlsError};
use crate::proxy::Proxy;
use crate::server::{self, Limits};
use crate::settings::Settings;
use crate::shutdown::{self, Shutdown};
use crate::tcp::{self, TcpProxy};

/// Why the sidecar could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A listen address could not be bound.
    #[error("--{flag} {addr}: {source}")]
    Bind {
        /// The flag naming the address.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No Kubernetes configuration (neither in-cluster nor KUBECONFIG) could be loaded.
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    /// `--kubeconfig` could not be read or used.
    #[error("--kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong with it.
        source: kube::config::KubeconfigError,
    },
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signal(std::io::Error),
    /// The mTLS peer channel's files cannot be used.
    #[error(transparent)]
    PeerTls(#[from] PeerTlsError),
}

/// The API client: from `--kubeconfig` when given, else as kubectl finds its configuration
/// ($KUBECONFIG, ~/.kube/config), else in-cluster (the pod's service account).
async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, RunError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                RunError::Kubeconfig {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|source| RunError::Kubeconfig {
                    path: path.to_path_buf(),
                    source,
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(kube::Error::InferConfig)?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// Runs the sidecar until SIGTERM/SIGINT and the shutdown sequence have finished.
pub async fn run(settings: Settings) -> Result<(), RunError> {
    let settings = Arc::new(settings);
    let metrics = Metrics::with_slots(&settings.election, &settings.timings, settings.actives);
    // Read the TLS files and bind before contending, so that a bad file or address fails
    // before this pod can lead.
    let peer = settings.proxy.as_ref().and_then(|p| p.peer.as_ref());
    let peer_tls = match peer {
        Some(peer) => Some(PeerTls::load(
            &peer.tls_dir,
            &peer.server_name,
            metrics.peer_tls(),
        )?),
        None => None,
    };
    let admin_listener = bind("http", settings.admin).await?;
    let proxy_listener = match &settings.proxy {
        Some(p) => Some(bind("listen", p.listen).await?),
        None => None,
    };
    // TCP mode's further listeners (`--tcp-listen`), bound with the others.
    let mut tcp_listeners = Vec::new();
    if let Some(tcp) = settings.proxy.as_ref().and_then(|p| p.tcp.as_ref()) {
        for (addr, _) in tcp.listeners.iter().skip(1) {
            tcp_listeners.push(bind("tcp-listen", *addr).await?);
        }
    }
    let peer_listener = match peer {
        Some(peer) => Some(bind("peer-listen", peer.listen).await?),
        None => None,
    };
    // Handlers first: a SIGTERM from now on leads to a handover, not a plain exit.
    let mut signals = shutdown::Signals::install().map_err(RunError::Signal)?;
    let client = client(settings.kubeconfig.as_deref()).await?;
    let api = Api::namespaced(client.clone(), &settings.namespace);
    let candidate = Candidate {
        identity: settings.identity.clone(),
        address: settings.proxy.as_ref().map(|p| p.advertise.to_string()),
        peer_address: peer.map(|p| p.advertise.to_string()),
    };
    // (Without a proxy there is no `--connect-timeout`; its default then.)
    let connect_timeout = settings
        .proxy
        .as_ref()
        .map_or(std::time::Duration::from_secs(1), |p| p.connect_timeout);
    // Connections to peers leave from this pod's advertised address (TCP mode tells sidecars
    // from clients by it).
    let source = settings
        .proxy
        .as_ref()
        .and_then(|p| p.advertise.host().trim_matches(['[', ']']).parse().ok());
    let failsafe = settings.failsafe.map(|max| FailsafeOptions {
        max,
        channel: Arc::new(crate::failsafe::HttpPeerChannel::new(
            Dialer::new(connect_timeout, peer_tls.clone()).from_source(source),
        )),
    });
    // TCP mode drains before every planned handover; the proxy it drains follows the
    // election, so it is given the proxy once there is one.
    let tcp_drain = settings
        .proxy
        .as_ref()
        .and_then(|p| p.tcp.as_ref())
        .map(|_| tcp::Drain::default());
    let (slots, handle) = spawn_slots_with(
        api,
        &settings.election,
        settings.actives,
        candidate,
        settings.timings,
        metrics.observer(),
        SlotsOptions {
            failsafe,
            priority: settings.priority,
            failback_delay: settings.failback_delay,
            prepare: tcp_drain.clone().map(|d| Arc::new(d) as Arc<dyn Prepare>),
        },
    );
    // The proxy routes by one view: the held slot's, or a standby's with every active.
    let views = routing_views(slots.clone());
    metrics.follow_slots(slots.clone());
    let announcer = settings
        .announce
        .clone()
        .map(|announce| tokio::spawn(crate::announce::run(announce, client, slots.clone())));
    if let (Some(health), Some(p)) = (&settings.health, &settings.proxy) {
        // Not healthy until the app has passed its checks: no slot before that.
        let reporter = handle.health_reporter();
        reporter.set_healthy(false);
        tokio::spawn(crate::health::run(
            health.clone(),
            p.upstream.to_string(),
            reporter,
        ));
    }
    tracing::info!(
        election = %settings.election,
        actives = settings.actives,
        namespace = %settings.namespace,
        identity = %settings.identity,
        admin = %settings.admin,
        proxy = ?settings.proxy.as_ref().map(|p| p.listen),
        peer = ?peer.map(|p| p.listen),
        failsafe_max = ?settings.failsafe,
        "understudy started"
    );

    if let Some(tls) = &peer_tls {
        tokio::spawn(tls.clone().watch(peer_tls::RELOAD_CHECK));
    }
    let proxy = settings.proxy.clone().map(|p| {
        // With mTLS on, peers are reached at their peer addresses only.
        let routing = match &peer_tls {
            Some(_) => peer_tls::peer_views(views.clone()),
            None => views.clone(),
        };
        Proxy::with_peer_tls(p, routing, metrics.clone(), peer_tls.clone())
    });
    // What the proxy's listeners need, and stop; made here because the admin server (planned
    // handovers) drains TCP mode's connections too.
    let stop = CancellationToken::new();
    let conns = TaskTracker::new();
    let limits = settings.proxy.as_ref().map(|p| Limits {
        header_read_timeout: p.header_read_timeout,
        idle_timeout: p.idle_timeout,
        max_header_bytes: p.max_header_bytes,
        max_headers: p.max_headers,
        connections: metrics.connection_limit(p.max_connections),
        smuggling: metrics.smuggling_refused(),
    });
    let tcp_proxy = match (&proxy, &settings.proxy, &limits) {
        (Some(proxy), Some(p), Some(limits)) => p.tcp.as_ref().map(|tcp| {
            let parts = tcp::Parts {
                // With mTLS on, peers are reached at their peer addresses only.
                views: match &peer_tls {
                    Some(_) => peer_tls::peer_views(views.clone()),
                    None => views.clone(),
                },
                members: handle.members(),
                upstreams: tcp.listeners.iter().map(|(_, u)| u.to_string()).collect(),
                dialer: Dialer::new(p.connect_timeout, peer_tls.clone()).from_source(source),
                peer_tls: peer_tls.is_some(),
                holder: proxy.holder().clone(),
                metrics: metrics.clone(),
                proxy_protocol: tcp.proxy_protocol,
                idle_timeout: p.idle_timeout,
                splice: tcp.splice,
                failsafe: settings.failsafe.map(|_| handle.answerer()),
                limits: limits.clone(),
                stop: stop.clone(),
            };
            let tcp_proxy = TcpProxy::new(parts);
            if let Some(drain) = &tcp_drain {
                drain.set(tcp_proxy.clone(), tcp.close_grace);
            }
            (tcp_proxy, tcp.close_grace)
        }),
        _ => None,
    };
    let admin = Admin::new(
        settings.clone(),
        views.clone(),
        proxy.as_ref().map(|p| p.holder().clone()),
        metrics.clone(),
    )
    .with_slots(slots)
    .with_switcher(handle.switcher());
    let admin = match &proxy {
        Some(proxy) => admin.with_proxy(proxy.clone()),
        None => admin,
    };
    let admin = match &tcp_proxy {
        Some((tcp, grace)) => admin.with_tcp(tcp.clone(), *grace),
        None => admin,
    };

    let admin_stop = CancellationToken::new();
    let admin_conns = TaskTracker::new();
    let admin_task = {
        let admin = admin.clone();
        tokio::spawn(server::serve(
            admin_listener,
            Limits::default(),
            admin_stop.clone(),
            admin_conns.clone(),
            move |req, _| {
                let admin = admin.clone();
                async move { admin.handle(req).await }
            },
        ))
    };
    let mut proxy_parts = None;
    if let (Some(proxy), Some(listener), Some(p), Some(limits)) =
        (&proxy, proxy_listener, &settings.proxy, limits)
    {
        let failsafe = settings.failsafe.map(|_| handle.answerer());
        let edge = Edge::new(proxy.clone(), failsafe);
        // TCP mode takes hand-offs and failsafe messages on the peer port, over mTLS; HTTP
        // mode serves it below. Either way with its own connection bound, so that clients
        // cannot crowd out the peers.
        let peer_listener = match (peer_listener, &peer_tls, &tcp_proxy) {
            (Some(listener), Some(tls), Some((tcp, _))) => {
                let tcp = tcp.clone();
                tokio::spawn(crate::conn::accept_refusing(
                    listener,
                    crate::limits::ConnectionLimit::unmetered(p.max_connections),
                    Some(tls.clone()),
                    p.header_read_timeout,
                    b"",
                    stop.clone(),
                    conns.clone(),
                    move |accepted| tcp.clone().serve_peer(accepted),
                ));
                None
            }
            (listener, _, _) => listener,
        };
        if let (Some(listener), Some(tls)) = (peer_listener, &peer_tls) {
            let limits = Limits {
                connections: crate::limits::ConnectionLimit::unmetered(p.max_connections),
                ..limits.clone()
            };
            let handler = edge.clone();
            tokio::spawn(server::serve_tls(
                listener,
                limits,
                tls.clone(),
                stop.clone(),
                conns.clone(),
                move |req, client| handler.peer(req, client),
            ));
        }
        match &tcp_proxy {
            None => {
                tokio::spawn(server::serve(
                    listener,
                    limits,
                    stop.clone(),
                    conns.clone(),
                    move |req, client| edge.data(req, client),
                ));
            }
            Some((tcp, _)) => {
                let listeners = std::iter::once(listener).chain(tcp_listeners);
                for (index, listener) in (0u16..).zip(listeners) {
                    let proxy = tcp.clone();
                    tokio::spawn(crate::conn::accept_refusing(
                        listener,
                        limits.connections.clone(),
                        None,
                        p.header_read_timeout,
                        b"",
                        stop.clone(),
                        conns.clone(),
                        move |accepted| proxy.clone().serve(accepted, index),
                    ));
                }
            }
        }
        proxy_parts = Some((proxy.clone(), stop, conns));
    }

    let signal = signals.recv().await;
    tracing::info!(signal, "shutting down");
    let finish = settings
        .proxy
        .as_ref()
        .map_or(std::time::Duration::ZERO, |p| {
            p.hold_timeout + p.connect_timeout
        });
    Shutdown {
        handle,
        admin,
        proxy: proxy_parts,
        tcp: tcp_proxy,
        drain: settings.drain,
        finish,
    }
    .run()
    .await;
    // The last label and Event ("stopped leading") go out once the election has ended.
    if let Some(announcer) = announcer {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), announcer).await;
    }
    admin_stop.cancel();
    let _ = admin_task.await;
    tracing::info!("bye");
    Ok(())
}

async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { flag, addr, source })
}
