//! A throwaway CA and server certificate, so clients verify the emulator like a real cluster
//! (no `insecure-skip-tls-verify` anywhere).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

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
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(DnType::CommonName, "understudy-kube-emulator-ca");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut server = CertificateParams::new(vec!["localhost".to_string()])?;
    let mut ips = vec![
        listen_ip,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    ips.dedup();
    server.subject_alt_names.extend(
        ips.into_iter()
            .filter(|ip| !ip.is_unspecified())
            .map(SanType::IpAddress),
    );
    server
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    // Python's ssl (X509 strict mode) insists on the authority key identifier.
    server.use_authority_key_identifier_extension = true;
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let chain = vec![
        CertificateDer::from(server_cert.der().to_vec()),
        CertificateDer::from(ca_cert.der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // Offer HTTP/2 as a real apiserver does; Go clients (kubectl) then use it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(config),
    })
}
