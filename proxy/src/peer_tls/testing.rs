//! Certificates and TLS directories for tests of the peer channel: a throwaway CA that issues
//! sidecar certificates as cert-manager does, a directory laid out as the kubelet mounts a
//! Secret, and a TLS client. Used by this crate's unit tests and, with the `testing` feature,
//! by the end-to-end tests in `understudy-tests`; not in the `understudy` binary.
//!
//! Test code: every function panics on what a test could not go on without.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{CA_FILE, CERT_FILE, KEY_FILE};

/// The DNS name every sidecar certificate carries: the `--peer-server-name` default.
pub const NAME: &str = "understudy-peer";

// === certificates ===

/// A throwaway CA.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM (a Secret's `ca.crt`).
    pub pem: String,
}

/// A certificate and its key, PEM (a Secret's `tls.crt` and `tls.key`).
pub struct Leaf {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl Ca {
    /// A new CA (its own key) with common name `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A sidecar certificate for the DNS names `dns` (a new key each time), usable as server
    /// and client, as cert-manager issues it with `usages: [server auth, client auth]`.
    pub fn leaf(&self, dns: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "sidecar");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

// === a Secret volume ===

/// A Secret volume as the kubelet keeps it: the files in a versioned directory, `..data`
/// pointing there, and `tls.crt`, `tls.key`, `ca.crt` pointing through `..data`. Each
/// [`SecretDir::write`] swaps `..data` in one rename, as an update of the Secret does.
/// Removed when dropped.
pub struct SecretDir {
    dir: tempfile::TempDir,
    version: usize,
}

impl SecretDir {
    /// A new directory holding `files` (name, content); the three links are there whether
    /// or not `files` has their targets.
    pub fn new(files: &[(&str, &str)]) -> SecretDir {
        let mut s = SecretDir {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
        };
        for f in [CERT_FILE, KEY_FILE, CA_FILE] {
            std::os::unix::fs::symlink(format!("..data/{f}"), s.path().join(f)).unwrap();
        }
        s.write(files);
        s
    }

    /// A directory with a sidecar certificate for [`NAME`] from `ca`, and `ca`.
    pub fn issued(ca: &Ca) -> SecretDir {
        SecretDir::new(&files(&ca.leaf(&[NAME]), ca))
    }

    /// The directory (what `--peer-tls-dir` names).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the files with `files`, all at once.
    pub fn write(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        std::fs::create_dir(self.path().join(&version)).unwrap();
        for (name, text) in files {
            std::fs::write(self.path().join(&version).join(name), text).unwrap();
        }
        let tmp = self.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.path().join("..data")).unwrap();
    }

    /// cert-manager renewed the certificate, from `ca` (a new one for [`NAME`], and `ca`).
    pub fn reissue(&mut self, ca: &Ca) {
        self.write(&files(&ca.leaf(&[NAME]), ca));
    }
}

/// The three files of a Secret holding `leaf`, issued by `ca`.
fn files<'a>(leaf: &'a Leaf, ca: &'a Ca) -> [(&'static str, &'a str); 3] {
    [
        (CERT_FILE, &leaf.cert),
        (KEY_FILE, &leaf.key),
        (CA_FILE, &ca.pem),
    ]
}

// === a client ===

/// A TLS client configuration trusting `ca`, presenting `leaf` if given.
pub fn client_config(ca: &Ca, leaf: Option<&Leaf>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match leaf {
        Some(l) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(l.cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(l.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// `GET /` (HTTP/1.1) over a new TLS connection to `addr`, checking the server's
/// certificate for [`NAME`]: the body of a 200, or why there was none (within 5 s).
pub async fn get_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<String, String> {
    let call = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let tls = TlsConnector::from(config)
            .connect(ServerName::try_from(NAME).unwrap(), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get("/")
            .header("host", "peer")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let body = String::from_utf8_lossy(&body.to_bytes()).into_owned();
        match status {
            StatusCode::OK => Ok(body),
            s => Err(format!("{s}: {body}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}
