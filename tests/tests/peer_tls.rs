//! The mTLS peer channel end to end (`--peer-listen`, `--peer-tls-dir`): real `understudy`
//! processes on 127.0.0.x, the Kubernetes API emulator, certificates made here with rcgen
//! and laid out as the kubelet mounts a cert-manager Secret. A standby forwards to the
//! leader's peer port over mTLS; the peer port refuses clients without a certificate from the
//! CA; the data port treats forged routing headers as a client's; new files are picked up
//! without a restart, and a broken set leaves the last good one in use.

#[allow(dead_code)]
#[path = "sidecar/harness.rs"]
mod harness;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use harness::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::coordination::v1::Lease;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The DNS name every sidecar certificate carries (the `--peer-server-name` default).
const NAME: &str = "understudy-peer";

// === certificates, as cert-manager would issue them ===

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
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

    /// A sidecar certificate: `usages: [server auth, client auth]`, `dnsNames: [NAME]`.
    fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![NAME.to_string()]).unwrap();
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

/// A Secret volume as the kubelet keeps it: the files in a versioned directory, `..data`
/// pointing there, `tls.crt`, `tls.key`, `ca.crt` pointing through `..data`; an update
/// swaps `..data` in one rename.
struct SecretDir {
    dir: tempfile::TempDir,
    version: usize,
}

impl SecretDir {
    fn new(files: &[(&str, &str)]) -> SecretDir {
        let mut s = SecretDir {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
        };
        for f in ["tls.crt", "tls.key", "ca.crt"] {
            std::os::unix::fs::symlink(format!("..data/{f}"), s.path().join(f)).unwrap();
        }
        s.write(files);
        s
    }

    fn issued(ca: &Ca) -> SecretDir {
        let leaf = ca.leaf();
        SecretDir::new(&[
            ("tls.crt", &leaf.cert),
            ("tls.key", &leaf.key),
            ("ca.crt", &ca.pem),
        ])
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let version = format!("..{}", self.version);
        std::fs::create_dir(self.path().join(&version)).unwrap();
        for (name, text) in files {
            std::fs::write(self.path().join(&version).join(name), text).unwrap();
        }
        let tmp = self.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.path().join("..data")).unwrap();
    }

    /// cert-manager renewed the certificate, from `ca`.
    fn reissue(&mut self, ca: &Ca) {
        let leaf = ca.leaf();
        self.write(&[
            ("tls.crt", &leaf.cert),
            ("tls.key", &leaf.key),
            ("ca.crt", &ca.pem),
        ]);
    }
}

// === clients ===

/// A TLS client trusting `ca`, presenting `leaf` if given.
fn tls_client(ca: &Ca, leaf: Option<&Leaf>) -> Arc<ClientConfig> {
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

/// `GET /` over a new TLS connection to `addr`: the app's answer, or why there was none.
async fn get_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<String, String> {
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

/// The sum of every sample of `name` whose labels contain `labels` (e.g. `result="ok"`).
async fn metric(pod: &Sidecar, name: &str, labels: &str) -> f64 {
    let (_, text) = pod.admin_get("/metrics").await.expect("metrics");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Sidecar `name` on 127.0.0.`host` with the peer channel on, its files in `dir`.
async fn peer_sidecar(
    cluster: &Cluster,
    name: &'static str,
    host: u8,
    dir: &SecretDir,
) -> (Sidecar, SocketAddr) {
    let peer = free_port(Ipv4Addr::new(127, 0, 0, host)).await;
    let upstream = app(name).await;
    let flags = [
        "--peer-listen",
        &peer.to_string(),
        "--peer-tls-dir",
        dir.path().to_str().unwrap(),
    ];
    (
        cluster.sidecar(name, host, Some(upstream), &flags).await,
        peer,
    )
}

#[tokio::test]
async fn standbys_forward_over_mtls_and_new_certificates_need_no_restart() {
    let cluster = Cluster::new("peer-tls").await;
    let (ca, other) = (Ca::new("peers"), Ca::new("someone-else"));
    let (mut dir_a, mut dir_b) = (SecretDir::issued(&ca), SecretDir::issued(&ca));
    let (a, peer_a) = peer_sidecar(&cluster, "pod-a", 81, &dir_a).await;
    let (b, peer_b) = peer_sidecar(&cluster, "pod-b", 82, &dir_b).await;
    let leader = agreed_leader(&[&a, &b], Duration::from_secs(15)).await;
    let (leading, standby, leader_peer) = if leader == "pod-a" {
        (&a, &b, peer_a)
    } else {
        (&b, &a, peer_b)
    };

    // The Lease advertises the peer port next to the data port.
    cluster.emu.add_client("reader");
    let api = kube::Api::<Lease>::namespaced(cluster.emu.kube_client("reader").await, "default");
    let lease = api.get("peer-tls").await.unwrap();
    let annotations = lease.metadata.annotations.unwrap();
    assert_eq!(
        annotations["understudy.io/peer-address"],
        leader_peer.to_string()
    );
    assert_eq!(
        annotations["understudy.io/address"],
        leading.listen.unwrap().to_string()
    );

    // Through the standby: every request reaches the leader's app, over the peer channel.
    let via = standby.listen.unwrap();
    for _ in 0..10 {
        let (status, body) = get(via, "/", Duration::from_secs(5)).await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, leader.as_str()));
    }
    let local = r#"route="local""#;
    let served = metric(leading, "understudy_proxy_requests_total", local).await;
    assert_eq!(served, 10.0, "the leader served every forward locally");

    // The peer port refuses a client without a certificate, and one from another CA;
    // nothing reaches the proxy (let alone the app).
    let inbound = r#"direction="inbound""#;
    let failures = "understudy_peer_tls_handshake_failures_total";
    assert_eq!(metric(leading, failures, inbound).await, 0.0);
    let refused = get_tls(leader_peer, tls_client(&ca, None)).await;
    assert!(refused.is_err(), "{refused:?}");
    let refused = get_tls(leader_peer, tls_client(&ca, Some(&other.leaf()))).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(metric(leading, failures, inbound).await, 2.0);
    assert_eq!(
        metric(leading, "understudy_proxy_requests_total", "").await,
        10.0
    );
    // A certificate from the CA is let in.
    let peer_client = tls_client(&ca, Some(&ca.leaf()));
    assert_eq!(
        get_tls(leader_peer, peer_client.clone()).await,
        Ok(leader.clone())
    );

    // On the data port, forged routing headers are a client's: served, not refused with 421.
    let forged = Request::get(format!("http://{}/", leading.listen.unwrap()))
        .header("x-understudy-for", "pod-z")
        .header("x-understudy-hops", "2")
        .body(Full::default())
        .unwrap();
    let (status, body) = send(forged, Duration::from_secs(5)).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, leader.as_str()));

    // Rotation to a new CA on both pods, as a Secret update writes it.
    let new = Ca::new("peers-2");
    dir_a.reissue(&new);
    dir_b.reissue(&new);
    let reloads = "understudy_peer_tls_reloads_total";
    for pod in [&a, &b] {
        eventually(Duration::from_secs(10), || async {
            metric(pod, reloads, r#"result="ok""#).await == 1.0
        })
        .await;
    }
    let old_client = tls_client(&new, Some(&ca.leaf()));
    let refused = get_tls(leader_peer, old_client).await;
    assert!(refused.is_err(), "the old CA's certificate: {refused:?}");
    let new_client = tls_client(&new, Some(&new.leaf()));
    assert_eq!(
        get_tls(leader_peer, new_client.clone()).await,
        Ok(leader.clone())
    );
    for _ in 0..5 {
        let (status, body) = get(via, "/", Duration::from_secs(5)).await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, leader.as_str()));
    }

    // A broken set is not taken: the leader serves on with the last good one.
    let leader_dir = if leader == "pod-a" {
        &mut dir_a
    } else {
        &mut dir_b
    };
    leader_dir.write(&[("tls.crt", "junk"), ("tls.key", "junk"), ("ca.crt", "junk")]);
    eventually(Duration::from_secs(10), || async {
        metric(leading, reloads, r#"result="error""#).await == 1.0
    })
    .await;
    assert_eq!(get_tls(leader_peer, new_client).await, Ok(leader.clone()));
    let (status, body) = get(via, "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, leader.as_str()));
    assert_eq!(metric(leading, reloads, r#"result="ok""#).await, 1.0);
}

/// Runs `understudy` with the peer channel on and `files` in its TLS directory; it must exit
/// before contending. Returns its exit code and stderr.
fn start_with(files: &[(&str, &str)], extra: &[&str]) -> (Option<i32>, String) {
    let dir = SecretDir::new(files);
    let out = std::process::Command::new(binary())
        .env_clear()
        .args(["--election", "bad-tls", "--http", "127.0.0.1:0"])
        .args(["--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0"])
        .args(["--peer-tls-dir", dir.path().to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_peer_tls_files_stop_the_sidecar_at_start_naming_the_file() {
    let (ca, other) = (Ca::new("peers"), Ca::new("other"));
    let (leaf, stranger) = (ca.leaf(), other.leaf());
    for (files, expect) in [
        (
            vec![("tls.crt", leaf.cert.as_str()), ("ca.crt", ca.pem.as_str())],
            "tls.key: No such file",
        ),
        (
            vec![
                ("tls.crt", "nope"),
                ("tls.key", &leaf.key),
                ("ca.crt", &ca.pem),
            ],
            "tls.crt: no CERTIFICATE in it",
        ),
        (
            vec![
                ("tls.crt", &leaf.cert),
                ("tls.key", &ca.leaf().key),
                ("ca.crt", &ca.pem),
            ],
            "tls.key: the private key does not match the certificate",
        ),
        (
            vec![
                ("tls.crt", &leaf.cert),
                ("tls.key", &leaf.key),
                ("ca.crt", ""),
            ],
            "ca.crt: no CA CERTIFICATE in it",
        ),
        (
            vec![
                ("tls.crt", &stranger.cert),
                ("tls.key", &stranger.key),
                ("ca.crt", &ca.pem),
            ],
            "tls.crt: not valid as a client certificate under",
        ),
    ] {
        let (code, stderr) = start_with(&files, &[]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(expect), "want {expect:?}:\n{stderr}");
        assert!(stderr.contains("--peer-tls-dir"), "{stderr}");
    }
    // A certificate without the name peers check.
    let files = [
        ("tls.crt", leaf.cert.as_str()),
        ("tls.key", &leaf.key),
        ("ca.crt", &ca.pem),
    ];
    let (code, stderr) = start_with(&files, &["--peer-server-name", "web.peers"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--peer-server-name web.peers"), "{stderr}");
    // Half the flags: clap says which one is missing.
    let out = std::process::Command::new(binary())
        .env_clear()
        .args([
            "--election",
            "x",
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--peer-tls-dir"), "{stderr}");
}
