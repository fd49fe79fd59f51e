//! The mTLS peer channel end to end (`--peer-listen`, `--peer-tls-dir`): real `understudy`
//! processes on 127.0.0.x, the real API server, certificates from a throwaway CA laid
//! out as the kubelet mounts a cert-manager Secret (`understudy_proxy::peer_tls::testing`). A standby forwards to the
//! leader's peer port over mTLS; the peer port refuses clients without a certificate from the
//! CA; the data port treats forged routing headers as a client's; new files are picked up
//! without a restart, and a broken set leaves the last good one in use.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;
use k8s_openapi::api::coordination::v1::Lease;
use understudy_proxy::peer_tls::testing::{Ca, NAME, SecretDir, client_config, get_tls};
use understudy_tests::cluster::loopback::{
    Loopback, Sidecar, agreed_leader, eventually, get, send,
};
use understudy_tests::cluster::test_app::app;

// === helpers ===

/// Sidecar `name` with the peer channel on, its files in `dir`; and its peer address.
async fn peer_sidecar(
    cluster: &Loopback,
    name: &'static str,
    dir: &SecretDir,
) -> (Sidecar, SocketAddr) {
    let upstream = app(name).await;
    let pod = cluster
        .sidecar(name)
        .upstream(upstream)
        .peer_tls(dir.path())
        .start()
        .await;
    let peer = pod.peer.expect("the peer channel is on");
    (pod, peer)
}

#[tokio::test]
async fn standbys_forward_over_mtls_and_new_certificates_need_no_restart() {
    let cluster = Loopback::start("peer-tls").await;
    let (ca, other) = (Ca::new("peers"), Ca::new("someone-else"));
    let (mut dir_a, mut dir_b) = (SecretDir::issued(&ca), SecretDir::issued(&ca));
    let (a, peer_a) = peer_sidecar(&cluster, "pod-a", &dir_a).await;
    let (b, peer_b) = peer_sidecar(&cluster, "pod-b", &dir_b).await;
    let leader = agreed_leader(&[&a, &b], Duration::from_secs(15)).await;
    let (leading, standby, leader_peer) = if leader == "pod-a" {
        (&a, &b, peer_a)
    } else {
        (&b, &a, peer_b)
    };

    // The Lease advertises the peer port next to the data port.
    let api = kube::Api::<Lease>::namespaced(cluster.cluster().client(), "default");
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
    let served = leading
        .metric("understudy_proxy_requests_total", local)
        .await;
    assert_eq!(served, 10.0, "the leader served every forward locally");

    // The peer port refuses a client without a certificate, and one from another CA;
    // nothing reaches the proxy (let alone the app).
    let inbound = r#"direction="inbound""#;
    let failures = "understudy_peer_tls_handshake_failures_total";
    assert_eq!(leading.metric(failures, inbound).await, 0.0);
    let refused = get_tls(leader_peer, client_config(&ca, None)).await;
    assert!(refused.is_err(), "{refused:?}");
    let refused = get_tls(leader_peer, client_config(&ca, Some(&other.leaf(&[NAME])))).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(leading.metric(failures, inbound).await, 2.0);
    assert_eq!(
        leading.metric("understudy_proxy_requests_total", "").await,
        10.0
    );
    // A certificate from the CA is let in.
    let peer_client = client_config(&ca, Some(&ca.leaf(&[NAME])));
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
            pod.metric(reloads, r#"result="ok""#).await == 1.0
        })
        .await;
    }
    let old_client = client_config(&new, Some(&ca.leaf(&[NAME])));
    let refused = get_tls(leader_peer, old_client).await;
    assert!(refused.is_err(), "the old CA's certificate: {refused:?}");
    let new_client = client_config(&new, Some(&new.leaf(&[NAME])));
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
        leading.metric(reloads, r#"result="error""#).await == 1.0
    })
    .await;
    assert_eq!(get_tls(leader_peer, new_client).await, Ok(leader.clone()));
    let (status, body) = get(via, "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, leader.as_str()));
    assert_eq!(leading.metric(reloads, r#"result="ok""#).await, 1.0);
}

/// Runs `understudy` with the peer channel on and `files` in its TLS directory; it must exit
/// before contending. Returns its exit code and stderr.
fn start_with(files: &[(&str, &str)], extra: &[&str]) -> (Option<i32>, String) {
    let dir = SecretDir::new(files);
    let out = std::process::Command::new(understudy_tests::cluster::sidecar::binary(true).unwrap())
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
    let (leaf, stranger) = (ca.leaf(&[NAME]), other.leaf(&[NAME]));
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
                ("tls.key", &ca.leaf(&[NAME]).key),
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
    let out = std::process::Command::new(understudy_tests::cluster::sidecar::binary(true).unwrap())
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
