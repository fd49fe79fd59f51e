use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::testing::{Ca, NAME, SecretDir, client_config, get_tls};
use super::*;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::server::{self, Limits};
use crate::testing::{self, App};

// === helpers ===

fn load(dir: &SecretDir) -> Result<PeerTls, PeerTlsError> {
    PeerTls::load(dir.path(), NAME, Metrics::default().peer_tls())
}

/// The value of `series` (exact name and labels) in `metrics`.
fn counter(metrics: &Metrics, series: &str) -> u64 {
    let now = Instant::now();
    let text = metrics.render(&testing::leaderless("x"), now, 0);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in:\n{text}"))
}

/// A peer port serving `app`'s proxy (leading) over mTLS with `dir`'s files.
struct PeerPort {
    addr: SocketAddr,
    tls: PeerTls,
    metrics: Metrics,
    app: App,
    _views: watch::Sender<View>,
}

async fn peer_port(dir: &SecretDir) -> PeerPort {
    let (app_addr, app) = testing::app("a").await;
    let metrics = Metrics::default();
    let tls = PeerTls::load(dir.path(), NAME, metrics.peer_tls()).unwrap();
    let (tx, views) = watch::channel(testing::leading("a", "127.0.0.1:1", 1));
    let proxy = Proxy::with_peer_tls(
        testing::proxy_settings(app_addr),
        views,
        metrics.clone(),
        Some(tls.clone()),
    );
    let addr = serve_peer(proxy, tls.clone()).await;
    PeerPort {
        addr,
        tls,
        metrics,
        app,
        _views: tx,
    }
}

async fn serve_peer(proxy: Proxy, tls: PeerTls) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve_tls(
        listener,
        Limits::default(),
        tls,
        CancellationToken::new(),
        TaskTracker::new(),
        move |req, client| {
            let proxy = proxy.clone();
            async move { proxy.handle_peer(req, client).await }
        },
    ));
    addr
}

// === loading: errors name the file and the problem ===

fn load_error(files: &[(&str, &str)]) -> String {
    let dir = SecretDir::new(files);
    let err = load(&dir).expect_err("must not load").to_string();
    assert!(err.starts_with("--peer-tls-dir: "), "{err}");
    err
}

#[test]
fn a_good_set_loads() {
    let ca = Ca::new("ca");
    load(&SecretDir::issued(&ca)).unwrap();
}

#[test]
fn a_missing_file_is_named() {
    let ca = Ca::new("ca");
    let leaf = ca.leaf(&[NAME]);
    let err = load_error(&[(CERT_FILE, &leaf.cert), (CA_FILE, &ca.pem)]);
    assert!(err.contains("tls.key: No such file"), "{err}");
    let err = load_error(&[(CERT_FILE, &leaf.cert), (KEY_FILE, &leaf.key)]);
    assert!(err.contains("ca.crt: No such file"), "{err}");
}

#[test]
fn bad_pem_is_named() {
    let ca = Ca::new("ca");
    let leaf = ca.leaf(&[NAME]);
    let err = load_error(&[
        (CERT_FILE, "hello"),
        (KEY_FILE, &leaf.key),
        (CA_FILE, &ca.pem),
    ]);
    assert!(err.contains("tls.crt: no CERTIFICATE in it"), "{err}");
    let err = load_error(&[
        (CERT_FILE, &leaf.cert),
        (KEY_FILE, &leaf.cert),
        (CA_FILE, &ca.pem),
    ]);
    assert!(err.contains("tls.key: no PRIVATE KEY in it"), "{err}");
    let broken = leaf.cert.replace("-----END CERTIFICATE-----", "");
    let err = load_error(&[
        (CERT_FILE, &broken),
        (KEY_FILE, &leaf.key),
        (CA_FILE, &ca.pem),
    ]);
    assert!(err.contains("tls.crt: not PEM"), "{err}");
    let err = load_error(&[
        (CERT_FILE, &leaf.cert),
        (KEY_FILE, &leaf.key),
        (CA_FILE, ""),
    ]);
    assert!(err.contains("ca.crt: no CA CERTIFICATE in it"), "{err}");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let ca = Ca::new("ca");
    let (leaf, other) = (ca.leaf(&[NAME]), ca.leaf(&[NAME]));
    let err = load_error(&[
        (CERT_FILE, &leaf.cert),
        (KEY_FILE, &other.key),
        (CA_FILE, &ca.pem),
    ]);
    assert!(
        err.contains("tls.key: the private key does not match the certificate in"),
        "{err}"
    );
}

#[test]
fn a_certificate_the_ca_did_not_sign_or_without_the_name_is_refused() {
    let (ca, other) = (Ca::new("ca"), Ca::new("other"));
    let err = load_error(&[
        (CERT_FILE, &other.leaf(&[NAME]).cert),
        (KEY_FILE, &other.leaf(&[NAME]).key),
        (CA_FILE, &ca.pem),
    ]);
    // (The key check comes after; an untrusted certificate is reported first.)
    assert!(
        err.contains("tls.crt: not valid as a client certificate under"),
        "{err}"
    );
    let leaf = ca.leaf(&["something-else"]);
    let err = load_error(&[
        (CERT_FILE, &leaf.cert),
        (KEY_FILE, &leaf.key),
        (CA_FILE, &ca.pem),
    ]);
    assert!(
        err.contains("as a server certificate for --peer-server-name understudy-peer"),
        "{err}"
    );
}

// === the peer port ===

#[tokio::test]
async fn the_peer_port_serves_a_client_with_a_certificate_from_the_ca() {
    let ca = Ca::new("ca");
    let port = peer_port(&SecretDir::issued(&ca)).await;
    let body = get_tls(port.addr, client_config(&ca, Some(&ca.leaf(&[NAME]))))
        .await
        .unwrap();
    assert_eq!(body, "a");
    assert_eq!(port.app.hits(), 1);
}

#[tokio::test]
async fn the_peer_port_refuses_no_certificate_and_one_from_another_ca() {
    let (ca, other) = (Ca::new("ca"), Ca::new("other"));
    let port = peer_port(&SecretDir::issued(&ca)).await;
    let inbound = r#"understudy_peer_tls_handshake_failures_total{direction="inbound"}"#;
    let refused = get_tls(port.addr, client_config(&ca, None)).await;
    assert!(refused.is_err(), "{refused:?}");
    let refused = get_tls(port.addr, client_config(&ca, Some(&other.leaf(&[NAME])))).await;
    assert!(refused.is_err(), "{refused:?}");
    // Plain HTTP is no handshake either.
    let plain = testing::client()
        .request(
            Request::get(format!("http://{}/", port.addr))
                .body(http_body_util::Full::default())
                .unwrap(),
        )
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    testing::eventually(Duration::from_secs(5), || {
        counter(&port.metrics, inbound) == 3
    })
    .await;
    assert_eq!(port.app.hits(), 0, "nothing reached the app");
}

#[tokio::test]
async fn new_files_are_used_for_new_connections_without_a_restart() {
    let (old, new) = (Ca::new("old"), Ca::new("new"));
    let mut dir = SecretDir::issued(&old);
    let port = peer_port(&dir).await;
    let (old_client, new_client) = (
        client_config(&old, Some(&old.leaf(&[NAME]))),
        client_config(&new, Some(&new.leaf(&[NAME]))),
    );
    assert_eq!(get_tls(port.addr, old_client.clone()).await.unwrap(), "a");
    assert!(get_tls(port.addr, new_client.clone()).await.is_err());
    assert!(matches!(port.tls.refresh(), Reload::Unchanged));

    // A new CA on both sides, as a Secret update writes it.
    dir.reissue(&new);
    assert!(matches!(port.tls.refresh(), Reload::Reloaded));
    let ok = r#"understudy_peer_tls_reloads_total{result="ok"}"#;
    let error = r#"understudy_peer_tls_reloads_total{result="error"}"#;
    assert_eq!(counter(&port.metrics, ok), 1);
    assert!(get_tls(port.addr, old_client).await.is_err(), "old CA");
    assert_eq!(get_tls(port.addr, new_client.clone()).await.unwrap(), "a");

    // A broken set is not taken: the last good one serves on; reported once.
    dir.write(&[(CERT_FILE, "junk"), (KEY_FILE, "junk"), (CA_FILE, "junk")]);
    match port.tls.refresh() {
        Reload::Failed(e) => assert!(e.to_string().contains("tls.crt"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(port.tls.refresh(), Reload::Unchanged));
    assert_eq!(counter(&port.metrics, error), 1);
    assert_eq!(counter(&port.metrics, ok), 1);
    assert_eq!(get_tls(port.addr, new_client).await.unwrap(), "a");
}

#[tokio::test]
async fn watch_looks_at_the_files_every_interval() {
    let ca = Ca::new("ca");
    let mut dir = SecretDir::issued(&ca);
    let metrics = Metrics::default();
    let tls = PeerTls::load(dir.path(), NAME, metrics.peer_tls()).unwrap();
    tokio::spawn(tls.clone().watch(Duration::from_millis(20)));
    dir.reissue(&ca);
    let ok = r#"understudy_peer_tls_reloads_total{result="ok"}"#;
    testing::eventually(Duration::from_secs(5), || counter(&metrics, ok) == 1).await;
    // And only once per change.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(counter(&metrics, ok), 1);
}

// === forwarding over the peer channel ===

#[tokio::test]
async fn a_standby_forwards_to_the_leaders_peer_port_over_mtls() {
    let ca = Ca::new("ca");
    let leader_dir = SecretDir::issued(&ca);
    let port = peer_port(&leader_dir).await;
    let standby_dir = SecretDir::issued(&ca);
    let standby_tls = load(&standby_dir).unwrap();
    let (b_addr, app_b) = testing::app("b").await;
    let mut view = testing::following("b", "a", "127.0.0.1:1", 1);
    view.leader.as_mut().unwrap().peer_address = Some(port.addr.to_string());
    let (tx, views) = watch::channel(view);
    let mut settings = testing::proxy_settings(b_addr);
    settings.hold_timeout = Duration::from_millis(300);
    let proxy = Proxy::with_peer_tls(
        settings,
        peer_views(views),
        Metrics::default(),
        Some(standby_tls),
    );
    let p = proxy.clone();
    let data = testing::serve(move |req, client| {
        let p = p.clone();
        async move { p.handle(req, client).await }
    })
    .await;
    for _ in 0..3 {
        let (status, headers, body) = testing::get(data, "/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "a"));
        assert_eq!(headers["x-seen-x-understudy-leader"], "a");
    }
    assert_eq!((port.app.hits(), app_b.hits()), (3, 0));
    // HTTP/2 stays HTTP/2 across the peer channel (ALPN h2), trailers included.
    let h2: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let req = Request::get(format!("http://{data}/trailers"))
        .header("te", "trailers")
        .body(http_body_util::Full::default())
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    // An upgrade is tunnelled over TLS as well.
    let mut tunnel = TcpStream::connect(data).await.unwrap();
    tunnel
        .write_all(b"GET /ws HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.ends_with(b"a>") {
        let n = tunnel.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 101"));
    tunnel.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tunnel.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    assert_eq!((port.app.hits(), app_b.hits()), (5, 0));

    // A leader that advertises no peer address is not sent anything in clear: held (here
    // until the hold timeout).
    let mut view = testing::following("b", "a", &port.addr.to_string(), 1);
    view.leader.as_mut().unwrap().peer_address = None;
    tx.send(view).unwrap();
    let (status, _, _) = testing::get(data, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!((port.app.hits(), app_b.hits()), (5, 0));
}

#[tokio::test]
async fn a_standby_the_leader_refuses_counts_a_failed_handshake_and_sends_nothing() {
    // The standby's certificate comes from another CA: TLS 1.3 lets its handshake seem done
    // and refuses it at the first read. That is a failed handshake (counted), not a request
    // that may have reached the app: a POST is held and answered 503 when no leader takes
    // it, never 502.
    let (ca, other) = (Ca::new("ca"), Ca::new("other"));
    let port = peer_port(&SecretDir::issued(&ca)).await;
    let foreign = other.leaf(&[NAME]);
    let standby_dir = SecretDir::new(&[
        (CERT_FILE, &foreign.cert),
        (KEY_FILE, &foreign.key),
        // It trusts the leader's CA (and its own), so its side of the handshake passes.
        (CA_FILE, &format!("{}{}", other.pem, ca.pem)),
    ]);
    let standby_metrics = Metrics::default();
    let standby_tls = PeerTls::load(standby_dir.path(), NAME, standby_metrics.peer_tls()).unwrap();
    let (b_addr, app_b) = testing::app("b").await;
    let mut view = testing::following("b", "a", "127.0.0.1:1", 1);
    view.leader.as_mut().unwrap().peer_address = Some(port.addr.to_string());
    let (_tx, views) = watch::channel(view);
    let mut settings = testing::proxy_settings(b_addr);
    settings.hold_timeout = Duration::from_millis(300);
    let proxy = Proxy::with_peer_tls(
        settings,
        peer_views(views),
        standby_metrics.clone(),
        Some(standby_tls),
    );
    let data = testing::serve(move |req, client| {
        let p = proxy.clone();
        async move { p.handle(req, client).await }
    })
    .await;
    let req = Request::post(format!("http://{data}/"))
        .body(http_body_util::Full::new(Bytes::from("once")))
        .unwrap();
    let (status, _, body) = testing::send(data, req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let outbound = r#"understudy_peer_tls_handshake_failures_total{direction="outbound"}"#;
    assert!(counter(&standby_metrics, outbound) >= 1);
    assert_eq!((port.app.hits(), app_b.hits()), (0, 0));
}

#[tokio::test]
async fn with_mtls_on_the_data_port_ignores_forged_routing_headers() {
    let ca = Ca::new("ca");
    let dir = SecretDir::issued(&ca);
    let (app_addr, app) = testing::app("a").await;
    let forged = |addr: SocketAddr| {
        Request::get(format!("http://{addr}/"))
            .header("x-understudy-for", "pod-z")
            .header("x-understudy-hops", "1")
            .header("x-understudy-hold-ms", "0")
            .body(http_body_util::Full::default())
            .unwrap()
    };
    // Without mTLS, the pair is honoured: meant for another pod, refused.
    let plain = testing::start_proxy(
        testing::proxy_settings(app_addr),
        testing::leading("a", "127.0.0.1:1", 1),
    )
    .await;
    let (status, _, _) = testing::send(plain.addr, forged(plain.addr)).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(app.hits(), 0);
    // With it, the data port takes it as a client's request: served, headers gone.
    let (_tx, views) = watch::channel(testing::leading("a", "127.0.0.1:1", 1));
    let proxy = Proxy::with_peer_tls(
        testing::proxy_settings(app_addr),
        views,
        Metrics::default(),
        Some(load(&dir).unwrap()),
    );
    let p = proxy.clone();
    let data = testing::serve(move |req, client| {
        let p = p.clone();
        async move { p.handle(req, client).await }
    })
    .await;
    let (status, headers, body) = testing::send(data, forged(data)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "a"));
    assert!(!headers.contains_key("x-seen-x-understudy-for"));
    assert!(!headers.contains_key("x-seen-x-understudy-hold-ms"));
    assert_eq!(app.hits(), 1);
    // The peer port honours them (from a certified sidecar): refused there.
    let peer = serve_peer(proxy, load(&dir).unwrap()).await;
    let leaf = ca.leaf(&[NAME]);
    let refused = forged_tls(peer, client_config(&ca, Some(&leaf))).await;
    assert_eq!(refused, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(app.hits(), 1);
}

/// The forged request of the test above, over TLS; its status.
async fn forged_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> StatusCode {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from(NAME).unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "peer")
        .header("x-understudy-for", "pod-z")
        .header("x-understudy-hops", "1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    sender.send_request(req).await.unwrap().status()
}

#[test]
fn peer_views_name_peers_by_their_peer_address() {
    let mut view = testing::following("b", "a", "10.0.0.1:8080", 3);
    view.leader.as_mut().unwrap().peer_address = Some("10.0.0.1:8443".into());
    view.peers = vec![testing::leader("c", Some("10.0.0.3:8080"), 2)];
    let mapped = to_peers(&view);
    assert_eq!(
        mapped.leader.as_ref().unwrap().address.as_deref(),
        Some("10.0.0.1:8443")
    );
    assert_eq!(
        mapped.peers[0].address, None,
        "no peer address: unreachable"
    );
    assert_eq!(mapped.leader.unwrap().epoch, 3);
}
