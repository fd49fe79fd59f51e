//! The world's certificates, made fresh for every run: a CA, the API server's serving
//! certificate, client certificates for the components and the harness, and the key pair
//! that signs ServiceAccount tokens. Nothing is reused between runs. The emulator's TLS comes
//! from the same [`Ca`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::cluster::HarnessError;
use crate::kubeconfig::Credentials;

/// A certificate authority made for one run, issuing server and client certificates.
pub struct Ca {
    pem: String,
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its key, PEM (PKCS#8).
    pub key_pem: String,
    /// Its key, DER (PKCS#8).
    pub key_der: Vec<u8>,
}

impl From<Issued> for Credentials {
    fn from(c: Issued) -> Credentials {
        Credentials::Certificate {
            cert_pem: c.cert_pem,
            key_pem: c.key_pem,
        }
    }
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<Ca, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// A certificate for `params` (its key usages and the authority key identifier added).
    fn issue(&self, mut params: CertificateParams, server: bool) -> Result<Issued, rcgen::Error> {
        // Python's ssl (X509 strict mode) insists on the authority key identifier.
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        })
    }

    /// A serving certificate with common name `cn`, valid for DNS `names` and `ips`.
    pub fn server(&self, cn: &str, names: &[&str], ips: &[IpAddr]) -> Result<Issued, rcgen::Error> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params
            .subject_alt_names
            .extend(ips.iter().copied().map(SanType::IpAddress));
        params.distinguished_name.push(DnType::CommonName, cn);
        self.issue(params, true)
    }

    /// A client certificate for user `user`, in `group` if given (one: rcgen writes one
    /// value per attribute type).
    pub fn client(&self, user: &str, group: Option<&str>) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(g) = group {
            params.distinguished_name.push(DnType::OrganizationName, g);
        }
        self.issue(params, false)
    }
}

/// The run's certificate authority and the files the API server reads.
pub struct Pki {
    dir: PathBuf,
    ca: Ca,
}

fn rcgen_error(what: &str, e: rcgen::Error) -> HarnessError {
    HarnessError::Setup(format!("{what}: {e}"))
}

impl Pki {
    /// Makes the CA, a serving certificate for the API server valid for `ips` and the
    /// in-cluster names of the `kubernetes` Service, and the ServiceAccount signing key;
    /// writes them under `dir` (`ca.crt`, `apiserver.crt`, `apiserver.key`, `sa.key`,
    /// `sa.pub`).
    pub fn generate(dir: &Path, ips: &[IpAddr]) -> Result<Pki, HarnessError> {
        std::fs::create_dir_all(dir).map_err(|e| HarnessError::io("create", dir, e))?;
        let ca = Ca::new("understudy-test-world-ca").map_err(|e| rcgen_error("CA", e))?;
        let names = [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
        ];
        let server = ca
            .server("kube-apiserver", &names, ips)
            .map_err(|e| rcgen_error("server certificate", e))?;
        let sa = KeyPair::generate().map_err(|e| rcgen_error("ServiceAccount key", e))?;
        for (name, text) in [
            ("ca.crt", ca.pem().to_string()),
            ("apiserver.crt", server.cert_pem),
            ("apiserver.key", server.key_pem),
            ("sa.key", sa.serialize_pem()),
            ("sa.pub", sa.public_key_pem()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| HarnessError::io("write", &path, e))?;
        }
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca,
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.pem()
    }

    /// A file this module wrote (`ca.crt`, `apiserver.crt`, …).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A client certificate for user `user`, in `group` if given.
    pub fn client(&self, user: &str, group: Option<&str>) -> Result<Issued, HarnessError> {
        self.ca
            .client(user, group)
            .map_err(|e| rcgen_error("client certificate", e))
    }
}
