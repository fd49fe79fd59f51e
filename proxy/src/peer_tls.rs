//! The optional mTLS channel between sidecars (`--peer-listen`, `--peer-tls-dir`).
//!
//! With it on, a standby forwards to the leader's peer port (the Lease's
//! `understudy.io/peer-address`) over TLS, presenting its own certificate; the peer port
//! accepts only connections whose client certificate chains to `ca.crt`, and only there are
//! the internal routing headers honoured. The files are a cert-manager Secret's (`tls.crt`,
//! `tls.key`, `ca.crt`), mounted as a volume:
//!
//! - read and checked at start: a missing file, bad PEM, a key that does not match the
//!   certificate, or a certificate the CA does not vouch for (as a client, and as a server
//!   for `--peer-server-name`) stops the sidecar with an error naming the file;
//! - re-read when a file changes (checked once a second, [`PeerTls::watch`]): new
//!   connections, both ways, use the new set; open ones keep theirs. A new set that does not
//!   load is not used: the old one stays, a warning is logged and
//!   `understudy_peer_tls_reloads_total{result="error"}` counts it (once per change).
//!
//! Kubernetes updates a Secret volume by swapping a symlink (`..data`), so all three files
//! change at once; files are read through their symlinks.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use understudy_elector::View;

use crate::metrics::PeerTlsMetrics;

/// This sidecar's certificate (chain), in the Secret's layout.
pub const CERT_FILE: &str = "tls.crt";
/// Its private key.
pub const KEY_FILE: &str = "tls.key";
/// The CA every peer's certificate must chain to.
pub const CA_FILE: &str = "ca.crt";

/// How often the files are checked for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Why a set of TLS files cannot be used. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    /// A file could not be read.
    #[error("--peer-tls-dir: {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file was read but holds nothing usable.
    #[error("--peer-tls-dir: {}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The private key is not the certificate's.
    #[error("--peer-tls-dir: {}: the private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// The certificate would be refused by peers trusting the same CA.
    #[error("--peer-tls-dir: {}: not valid {role} under {}: {problem}", cert.display(), ca.display())]
    NotTrusted {
        /// The certificate file.
        cert: PathBuf,
        /// The CA file.
        ca: PathBuf,
        /// As what it was checked.
        role: String,
        /// What the check found.
        problem: String,
    },
}

/// Which way a TLS handshake went (kept with its metrics, which name it in their labels).
pub use crate::metrics::Direction;

/// The HTTP version a client connection is for, offered by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// `http/1.1`.
    Http1,
    /// `h2`.
    Http2,
}

/// The result of one look at the files.
#[derive(Debug)]
pub enum Reload {
    /// Nothing changed since the last look.
    Unchanged,
    /// The files changed and the new set is in use.
    Reloaded,
    /// The files changed but the new set does not load; the old one stays in use.
    Failed(PeerTlsError),
}

/// The peer channel's TLS configuration, reloaded when its files change; cheap to clone.
#[derive(Clone)]
pub struct PeerTls {
    inner: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    server_name: ServerName<'static>,
    current: RwLock<Arc<Loaded>>,
    /// The files' stamp of the last set that failed to load, so one bad change is reported
    /// once, not at every look.
    failed: Mutex<Option<Stamp>>,
    metrics: PeerTlsMetrics,
}

/// One loaded set of files.
struct Loaded {
    stamp: Stamp,
    server: Arc<ServerConfig>,
    http1: Arc<ClientConfig>,
    http2: Arc<ClientConfig>,
}

/// What identifies a version of the three files: device, inode, size and mtime of each
/// (after symlinks). A Secret update replaces the files, so at least the inode changes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp(Vec<Option<FileStamp>>);

/// Device, inode, size, mtime (seconds, nanoseconds) of one file.
type FileStamp = (u64, u64, u64, i64, i64);

impl Stamp {
    fn of(dir: &Path) -> Stamp {
        Stamp(
            [CERT_FILE, KEY_FILE, CA_FILE]
                .iter()
                .map(|f| {
                    let m = std::fs::metadata(dir.join(f)).ok()?;
                    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
                })
                .collect(),
        )
    }
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("dir", &self.inner.dir)
            .field("server_name", &self.inner.server_name)
            .finish_non_exhaustive()
    }
}

impl PeerTls {
    /// Loads and checks the files in `dir`; `server_name` is the DNS name every peer
    /// certificate carries. Reloads and handshake failures are counted in `metrics`.
    pub fn load(
        dir: &Path,
        server_name: &str,
        metrics: PeerTlsMetrics,
    ) -> Result<PeerTls, PeerTlsError> {
        let server_name =
            ServerName::try_from(server_name.to_string()).map_err(|e| PeerTlsError::Invalid {
                path: dir.to_path_buf(),
                problem: format!("--peer-server-name {server_name:?}: {e}"),
            })?;
        let loaded = load(dir, &server_name)?;
        Ok(PeerTls {
            inner: Arc::new(Shared {
                dir: dir.to_path_buf(),
                server_name,
                current: RwLock::new(Arc::new(loaded)),
                failed: Mutex::new(None),
                metrics,
            }),
        })
    }

    /// Looks at the files once; loads them if they changed.
    pub fn refresh(&self) -> Reload {
        let s = &self.inner;
        let stamp = Stamp::of(&s.dir);
        if stamp == self.current().stamp {
            return Reload::Unchanged;
        }
        let mut failed = s.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.as_ref() == Some(&stamp) {
            return Reload::Unchanged;
        }
        match load(&s.dir, &s.server_name) {
            Ok(loaded) => {
                *s.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
                *failed = None;
                s.metrics.reloaded(true);
                tracing::info!(dir = %s.dir.display(), "peer TLS files reloaded");
                Reload::Reloaded
            }
            Err(e) => {
                *failed = Some(stamp);
                s.metrics.reloaded(false);
                tracing::warn!(error = %e, "peer TLS files changed but do not load; keeping the previous ones");
                Reload::Failed(e)
            }
        }
    }

    /// Looks at the files every `every`, for as long as the task runs.
    pub async fn watch(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Reading a few small files: quick, yet blocking; keep it off the workers.
            let me = self.clone();
            if tokio::task::spawn_blocking(move || me.refresh())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// The acceptor for a new inbound connection (the current files).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current().server.clone())
    }

    /// Runs the client side of a handshake on `stream` with the current files, offering
    /// `alpn`. A failure is counted.
    pub async fn connect(
        &self,
        stream: TcpStream,
        alpn: Alpn,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let config = match alpn {
            Alpn::Http1 => self.current().http1.clone(),
            Alpn::Http2 => self.current().http2.clone(),
        };
        let result = TlsConnector::from(config)
            .connect(self.inner.server_name.clone(), stream)
            .await;
        if result.is_err() {
            self.handshake_failed(Direction::Outbound);
        }
        result
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&self, direction: Direction) {
        self.inner.metrics.handshake_failed(direction);
    }

    fn current(&self) -> Arc<Loaded> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// With mTLS on, standbys forward to a leader's peer port only: the view the proxy routes
/// by, with each leader's address replaced by its peer address. A leader that advertises no
/// peer address (an older sidecar, or one without mTLS) then has no address, and requests
/// are held rather than sent to it in clear.
pub fn peer_views(mut views: watch::Receiver<View>) -> watch::Receiver<View> {
    let (tx, rx) = watch::channel(to_peers(&views.borrow_and_update()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = views.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
            tx.send_replace(to_peers(&views.borrow_and_update()));
        }
    });
    rx
}

/// `view` with every leader's address replaced by its peer address.
pub fn to_peers(view: &View) -> View {
    let mut v = view.clone();
    for l in v.leader.iter_mut().chain(v.peers.iter_mut()) {
        l.address = l.peer_address.clone();
    }
    v
}

// === loading ===

fn load(dir: &Path, server_name: &ServerName<'static>) -> Result<Loaded, PeerTlsError> {
    // The stamp first: a change while reading shows as a new stamp at the next look.
    let stamp = Stamp::of(dir);
    let (cert_path, key_path, ca_path) =
        (dir.join(CERT_FILE), dir.join(KEY_FILE), dir.join(CA_FILE));
    let chain = certificates(&cert_path)?;
    if chain.is_empty() {
        return Err(invalid(&cert_path, "no CERTIFICATE in it"));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&key_path)?).map_err(|e| match e {
        pem::Error::NoItemsFound => invalid(&key_path, "no PRIVATE KEY in it"),
        e => invalid(&key_path, &format!("not PEM: {e}")),
    })?;
    let cas = certificates(&ca_path)?;
    if cas.is_empty() {
        return Err(invalid(&ca_path, "no CA CERTIFICATE in it"));
    }
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| invalid(&ca_path, &format!("not a CA certificate: {e}")))?;
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| invalid(&ca_path, &e.to_string()))?;
    let server_verifier =
        WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| invalid(&ca_path, &e.to_string()))?;
    // Would a peer trusting this CA take this certificate? Checked here, so that a wrong
    // set fails at start (or is not taken on reload) instead of in every handshake.
    let now = UnixTime::now();
    let not_trusted = |role: String, e: rustls::Error| PeerTlsError::NotTrusted {
        cert: cert_path.clone(),
        ca: ca_path.clone(),
        role,
        problem: e.to_string(),
    };
    client_verifier
        .verify_client_cert(&chain[0], &chain[1..], now)
        .map_err(|e| not_trusted("as a client certificate".into(), e))?;
    server_verifier
        .verify_server_cert(&chain[0], &chain[1..], server_name, &[], now)
        .map_err(|e| {
            let role = format!(
                "as a server certificate for --peer-server-name {}",
                server_name.to_str()
            );
            not_trusted(role, e)
        })?;

    let keys = |e: rustls::Error| match e {
        rustls::Error::InconsistentKeys(_) => PeerTlsError::KeyMismatch {
            key: key_path.clone(),
            cert: cert_path.clone(),
        },
        e => invalid(&key_path, &e.to_string()),
    };
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(keys)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(keys)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let client = client_config(provider, &roots, chain, key).map_err(keys)?;
    let mut http1 = client.clone();
    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut http2 = client;
    http2.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded {
        stamp,
        server: Arc::new(server),
        http1: Arc::new(http1),
        http2: Arc::new(http2),
    })
}

fn client_config(
    provider: Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, rustls::Error> {
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(chain, key)
}

fn read(path: &Path) -> Result<Vec<u8>, PeerTlsError> {
    std::fs::read(path).map_err(|source| PeerTlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PeerTlsError> {
    CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, &format!("not PEM: {e}")))
}

fn invalid(path: &Path, problem: &str) -> PeerTlsError {
    PeerTlsError::Invalid {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;
