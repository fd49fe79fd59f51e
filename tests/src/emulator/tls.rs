//! A throwaway CA and server certificate, so clients verify the emulator like a real cluster
//! (no `insecure-skip-tls-verify` anywhere).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::cluster::pki::Ca;

/// Why the TLS material could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("generate certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused the key or certificate.
    #[error("configure TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The emulator's TLS material.
pub(crate) struct TlsMaterial {
    /// PEM of the CA that signed the server certificate (for kubeconfigs).
    pub ca_pem: String,
    /// The acceptor configuration.
    pub server_config: Arc<ServerConfig>,
}

/// Make a CA and a server certificate valid for `listen_ip`, 127.0.0.1, ::1 and localhost.
pub(crate) fn generate(listen_ip: IpAddr) -> Result<TlsMaterial, TlsError> {
    let ca = Ca::new("understudy-kube-emulator-ca")?;
    let mut ips = vec![
        listen_ip,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    ips.dedup();
    ips.retain(|ip| !ip.is_unspecified());
    let server = ca.server("kube-apiserver", &["localhost"], &ips)?;
    let chain = vec![
        CertificateDer::from(server.cert_der),
        CertificateDer::from(ca.der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // Offer HTTP/2 as a real apiserver does; Go clients (kubectl) then use it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem: ca.pem().to_string(),
        server_config: Arc::new(config),
    })
}
