//! A Kubernetes API server emulator for what understudy touches: Lease, Pod, Event and
//! discovery, with real resourceVersion semantics, watches, `Status` errors and fault
//! injection. Clients reach it only through an ordinary kubeconfig.
//!
//! ```no_run
//! # async fn demo() -> Result<(), understudy_tests::emulator::EmulatorError> {
//! use understudy_tests::emulator::{Emulator, EmulatorOptions};
//! let emu = Emulator::start(EmulatorOptions::default()).await?;
//! let client = emu.kube_client("pod-a").await;
//! # drop(client);
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
mod clients;
mod crud;
mod discovery;
mod events;
mod faults;
mod patch;
mod resources;
mod rng;
mod routes;
mod schema;
mod selectors;
mod server;
mod stats;
mod status;
mod store;
mod table;
mod tls;
mod validate;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use faults::{Fault, FaultScope, Faults};
pub use stats::Stats;
pub use store::{StoreError, StoreHandle};
pub use tls::TlsError;

use server::Shared;

/// How to run an emulator.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// Address to listen on; port 0 picks a free one. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Serve HTTPS with a generated CA (default) or plain HTTP.
    pub tls: bool,
    /// Seed for fault dice and uids.
    pub seed: u64,
    /// How many events are kept for watches resuming from a resourceVersion (default 1000).
    pub history_window: usize,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK (default 1s).
    pub bookmark_interval: Duration,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls: true,
            seed: 0,
            history_window: 1000,
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

/// Why an emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The listen address could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// The certificates could not be made.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A running emulator. Dropping it stops serving; [`Emulator::shutdown`] also waits for that.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// `None` once `shutdown` has taken it to wait on.
    accept: Option<JoinHandle<()>>,
}

// === impl Emulator ===

impl Emulator {
    /// Bind, generate certificates (if TLS) and start serving.
    pub async fn start(opts: EmulatorOptions) -> Result<Emulator, EmulatorError> {
        let listener =
            TcpListener::bind(opts.listen)
                .await
                .map_err(|source| EmulatorError::Bind {
                    addr: opts.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: opts.listen,
                source,
            })?;
        let (scheme, tls) = if opts.tls {
            let material = tls::generate(addr.ip())?;
            ("https", Some(material))
        } else {
            ("http", None)
        };
        let shared = Arc::new(Shared {
            store: Arc::new(store::Store::new(opts.history_window, opts.seed)),
            faults: Faults::new(opts.seed),
            stats: stats::Counter::default(),
            clients: clients::Clients::default(),
            bookmark_interval: opts.bookmark_interval,
            server_url: format!("{scheme}://{addr}"),
            ca_pem: tls.as_ref().map(|m| m.ca_pem.clone()),
            shutdown: tokio::sync::watch::channel(false).0,
        });
        shared.clients.add(clients::ADMIN);
        let acceptor = tls.map(|m| TlsAcceptor::from(m.server_config));
        let accept = tokio::spawn(server::serve(listener, acceptor, shared.clone()));
        Ok(Emulator {
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT` (or `http://` without TLS).
    pub fn server_url(&self) -> String {
        self.shared.server_url.clone()
    }

    /// The PEM of the CA that signed the server certificate (`None` for plain HTTP).
    pub fn ca_pem(&self) -> Option<String> {
        self.shared.ca_pem.clone()
    }

    /// Register a client identity with its own bearer token and return the token.
    /// Idempotent: the same name always gets the same token. `"admin"` exists from the start
    /// and is the only identity allowed on the admin endpoint.
    pub fn add_client(&self, name: &str) -> String {
        self.shared.clients.add(name)
    }

    /// A kubeconfig for `client` (registered if new): server, CA data, token, a current
    /// context, namespace "default".
    pub fn kubeconfig_yaml(&self, client: &str) -> String {
        let token = self.add_client(client);
        render_kubeconfig(
            &self.shared.server_url,
            self.shared.ca_pem.as_deref(),
            client,
            &token,
        )
    }

    /// Write [`Emulator::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, client: &str, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml(client))
    }

    /// A kube-rs client built from `client`'s kubeconfig through
    /// `kube::Config::from_custom_kubeconfig`, the path the product takes.
    ///
    /// # Panics
    /// If kube-rs rejects the kubeconfig, which would be a bug in the emulator.
    pub async fn kube_client(&self, client: &str) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml(client))
            .expect("kube-rs parses the emulator's kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("kube-rs accepts the emulator's kubeconfig");
        kube::Client::try_from(config).expect("kube-rs builds a client for the emulator")
    }

    /// The fault controls.
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// A snapshot of the request counts.
    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot()
    }

    /// Direct access to the stored objects.
    pub fn store(&self) -> StoreHandle {
        StoreHandle {
            store: self.shared.store.clone(),
        }
    }

    /// Stop accepting, drop every connection (open watches end abruptly), and wait for it.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }

    fn stop(&self) {
        self.shared.shutdown.send_replace(true);
        if let Some(accept) = &self.accept {
            accept.abort();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The kubeconfig of emulator client `client` with bearer `token`, namespace "default";
/// `ca_pem` is `None` for a plain-HTTP emulator.
pub(crate) fn render_kubeconfig(
    server: &str,
    ca_pem: Option<&str>,
    client: &str,
    token: &str,
) -> String {
    crate::kubeconfig::Kubeconfig {
        cluster: "kube-emulator",
        server,
        ca_pem,
        user: client,
        credentials: crate::kubeconfig::Credentials::Token(token.to_string()),
        namespace: "default",
    }
    .render()
}
