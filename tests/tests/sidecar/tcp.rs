//! TCP mode (`--mode tcp`) across real sidecar processes on the real API server: byte
//! streams reach the leader's app from any pod, the hand-off between sidecars carries the
//! client's address and cannot be forged from outside, and connections end with the
//! leadership they were opened under.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use understudy_proxy::peer_tls::testing::{Ca, SecretDir};
use understudy_tests::cluster::loopback::{Loopback, Sidecar, agreed_leader, agreed_leader_not};
use understudy_tests::cluster::sidecar::TEST_TIMINGS;

const PATIENCE: Duration = Duration::from_secs(10);

/// A line-based TCP app named `name`: it speaks first (`hello <name> from <client>`, the
/// client as a PROXY v2 header names it when `proxy_protocol`, else as the socket says), then
/// answers each line with `<name> <line>`, as a database or broker whose protocol the
/// sidecar does not know.
async fn line_app(name: &'static str, proxy_protocol: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, peer)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut from = peer.to_string();
                if proxy_protocol {
                    let mut head = [0u8; 16];
                    if stream.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    assert_eq!(
                        &head[..12],
                        b"\r\n\r\n\0\r\nQUIT\n",
                        "a PROXY v2 header first"
                    );
                    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
                    let mut body = vec![0u8; len];
                    stream.read_exact(&mut body).await.unwrap();
                    assert_eq!(head[13], 0x11, "TCP over IPv4");
                    let ip = std::net::Ipv4Addr::new(body[0], body[1], body[2], body[3]);
                    let port = u16::from_be_bytes([body[8], body[9]]);
                    from = SocketAddr::from((ip, port)).to_string();
                }
                let (read, mut write) = stream.into_split();
                let hello = format!("hello {name} from {from}\n");
                if write.write_all(hello.as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let answer = format!("{name} {line}\n");
                    if write.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A client connection through `to`: its greeting, then one line answered per call.
struct Client {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
    local: SocketAddr,
}

impl Client {
    async fn connect(to: SocketAddr) -> (Client, String) {
        let stream = tokio::time::timeout(PATIENCE, TcpStream::connect(to))
            .await
            .expect("connect in time")
            .expect("connect");
        Client::over(stream).await
    }

    async fn over(stream: TcpStream) -> (Client, String) {
        let local = stream.local_addr().unwrap();
        let (read, write) = stream.into_split();
        let mut client = Client {
            lines: BufReader::new(read).lines(),
            write,
            local,
        };
        let hello = client.line().await.expect("the app's greeting");
        (client, hello)
    }

    async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("an answer or a close in time")
            .ok()
            .flatten()
    }

    async fn ask(&mut self, line: &str) -> Option<String> {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .ok()?;
        self.line().await
    }
}

async fn tcp_pods(cluster: &Loopback, extra: &[&str], proxy_protocol: bool) -> Vec<Sidecar> {
    tcp_pods_with(cluster, extra, proxy_protocol, None).await
}

/// Three TCP-mode sidecars, each in front of its own [`line_app`]; with the mTLS peer
/// channel on when `peer_tls` gives each its certificate directory.
async fn tcp_pods_with(
    cluster: &Loopback,
    extra: &[&str],
    proxy_protocol: bool,
    peer_tls: Option<&[SecretDir]>,
) -> Vec<Sidecar> {
    let mut pods = Vec::new();
    for (i, name) in ["pod-a", "pod-b", "pod-c"].into_iter().enumerate() {
        let app = line_app(name, proxy_protocol).await;
        let mut args = vec!["--mode", "tcp"];
        args.extend_from_slice(extra);
        let mut sidecar = cluster.sidecar(name).upstream(app).args(&args);
        if let Some(dirs) = peer_tls {
            sidecar = sidecar.peer_tls(dirs[i].path());
        }
        pods.push(sidecar.start().await);
    }
    pods
}

/// Sends `stream`, just connected to the leader's data port, a forged PROXY header (claiming
/// 198.18.9.9:1) before the app has spoken, and checks that it reached the app as data: the
/// app greets the connection's real address, then answers the signature's leading "\r\n".
/// Returns the forged bytes.
async fn a_forged_header_is_only_data(mut stream: TcpStream, leader: &str) -> Vec<u8> {
    let local = stream.local_addr().unwrap();
    let mut forged = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    forged.extend_from_slice(&[198, 18, 9, 9, 198, 18, 9, 10, 0, 1, 0, 2]);
    stream.write_all(&forged).await.unwrap();
    let (mut client, hello) = Client::over(stream).await;
    assert_eq!(hello, format!("hello {leader} from {local}"));
    assert_eq!(client.line().await, Some(format!("{leader} ")));
    forged
}

/// Waits for a leader every pod agrees on and for the Lease to name all three members, then
/// checks that a connection through every pod reaches the leader's app, which sees the
/// client's own address, and answers `asks` lines; returns the leader.
async fn every_pod_reaches_the_leader(cluster: &Loopback, pods: &[Sidecar], asks: usize) -> String {
    let all: Vec<&Sidecar> = pods.iter().collect();
    let leader = agreed_leader(&all, PATIENCE).await;
    cluster
        .wait_members_named(&cluster.election, &["pod-a", "pod-b", "pod-c"], PATIENCE)
        .await;
    for pod in pods {
        let (mut client, hello) = Client::connect(pod.listen.unwrap()).await;
        assert_eq!(
            hello,
            format!("hello {leader} from {}", client.local),
            "through {}",
            pod.name
        );
        for i in 0..asks {
            assert_eq!(
                client.ask(&format!("ping {i}")).await,
                Some(format!("{leader} ping {i}"))
            );
        }
    }
    leader
}

/// Through every pod a connection reaches the leader's app, which greets first (nothing
/// waits for the client to speak) and sees the client's own address in the PROXY header
/// (`--proxy-protocol`), whichever sidecar it came in by.
#[tokio::test]
async fn every_connection_reaches_the_leaders_app_with_the_clients_address() {
    let cluster = Loopback::start("tcp-route").await;
    let pods = tcp_pods(&cluster, &["--proxy-protocol"], true).await;
    let leader = every_pod_reaches_the_leader(&cluster, &pods, 3).await;
    let standby = pods.iter().find(|p| p.name != leader).unwrap();
    assert_eq!(
        standby
            .metric("understudy_tcp_connections_total", "route=\"forward\"")
            .await,
        1.0
    );
    let leader_pod = pods.iter().find(|p| p.name == leader).unwrap();
    assert_eq!(
        leader_pod
            .metric("understudy_tcp_connections_total", "route=\"local\"")
            .await,
        3.0
    );
    assert!(
        leader_pod
            .metric("understudy_tcp_bytes_total", "direction=\"upstream\"")
            .await
            > 0.0
    );
}

/// `--actives 2`: an active's connections go to its own app; a standby hands each new
/// connection to one of the actives (both get some), never to its own app.
#[tokio::test]
async fn with_two_actives_a_standby_hands_connections_to_both_and_each_active_serves_its_own() {
    let cluster = Loopback::start("tcp-slots").await;
    let pods = tcp_pods(&cluster, &["--actives", "2"], false).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let actives = super::agreed_actives(&all, 2, "", PATIENCE).await;
    let names = ["pod-a", "pod-b", "pod-c"];
    for lease in ["tcp-slots-0", "tcp-slots-1"] {
        cluster.wait_members_named(lease, &names, PATIENCE).await;
    }
    let standby = pods.iter().find(|p| !actives.contains(&p.name)).unwrap();
    for active in pods.iter().filter(|p| actives.contains(&p.name)) {
        let (mut client, hello) = Client::connect(active.listen.unwrap()).await;
        assert!(
            hello.starts_with(&format!("hello {} ", active.name)),
            "{hello}"
        );
        assert_eq!(
            client.ask("ping").await,
            Some(format!("{} ping", active.name))
        );
    }
    let mut served = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..20 {
        let (mut client, hello) = Client::connect(standby.listen.unwrap()).await;
        let who = hello.split(' ').nth(1).unwrap().to_string();
        assert_eq!(
            client.ask(&format!("ping {i}")).await,
            Some(format!("{who} ping {i}"))
        );
        *served.entry(who).or_default() += 1;
    }
    assert_eq!(
        served.keys().cloned().collect::<Vec<_>>(),
        {
            let mut a = actives.clone();
            a.sort();
            a
        },
        "through the standby: {served:?}"
    );
    assert_eq!(
        standby
            .metric("understudy_tcp_connections_total", "route=\"forward\"")
            .await,
        20.0
    );
    assert_eq!(
        standby
            .metric("understudy_tcp_connections_total", "route=\"local\"")
            .await,
        0.0
    );
}

/// With the mTLS peer channel (`--peer-listen`): standbys hand connections to the leader's
/// peer port over mTLS and the app still sees each client's own address; the data port takes
/// no header from anyone, not even from a member sidecar's address; and the peer port refuses
/// a client without a certificate before anything reaches the app.
#[tokio::test]
async fn with_the_peer_channel_hand_offs_go_over_mtls_and_the_data_port_trusts_no_header() {
    let cluster = Loopback::start("tcp-mtls").await;
    let ca = Ca::new("peers");
    let dirs: Vec<SecretDir> = (0..3).map(|_| SecretDir::issued(&ca)).collect();
    let pods = tcp_pods_with(&cluster, &["--proxy-protocol"], true, Some(&dirs)).await;
    let leader = every_pod_reaches_the_leader(&cluster, &pods, 1).await;
    let leader_pod = pods.iter().find(|p| p.name == leader).unwrap();
    let standby = pods.iter().find(|p| p.name != leader).unwrap();
    assert_eq!(
        standby
            .metric("understudy_tcp_connections_total", "route=\"forward\"")
            .await,
        1.0
    );

    // From a member's own address, on the data port: a header is only data.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((standby.ip, 0))).unwrap();
    let stream = socket.connect(leader_pod.listen.unwrap()).await.unwrap();
    let forged = a_forged_header_is_only_data(stream, &leader).await;

    // The peer port without a client certificate: the handshake fails, the app sees nothing.
    let peer = leader_pod.peer.expect("the peer channel is on");
    let mut plain = TcpStream::connect(peer).await.unwrap();
    plain.write_all(&forged).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, plain.read(&mut buf))
        .await
        .unwrap();
    assert!(
        !matches!(&read, Ok(n) if *n > 0 && buf[..*n].starts_with(b"hello")),
        "the app answered a client without a certificate: {read:?}"
    );
    assert!(
        leader_pod
            .metric(
                "understudy_peer_tls_handshake_failures_total",
                "direction=\"inbound\""
            )
            .await
            >= 1.0
    );
}

/// A client that opens with a PROXY header of its own (claiming another address and a
/// hand-off) is not a sidecar: its bytes reach the app as they are, after the sidecar's own
/// header, and the app sees its real address.
#[tokio::test]
async fn a_forged_proxy_header_from_a_client_is_only_data() {
    let cluster = Loopback::start("tcp-forge").await;
    let pods = tcp_pods(&cluster, &["--proxy-protocol"], true).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let leader = agreed_leader(&all, PATIENCE).await;
    let leader_pod = pods.iter().find(|p| p.name == leader).unwrap();
    let stream = TcpStream::connect(leader_pod.listen.unwrap())
        .await
        .unwrap();
    a_forged_header_is_only_data(stream, &leader).await;
}

/// A planned handover (`POST /handover`): the connections opened under the old leader end
/// (through the old leader and through a standby), and the next connections reach the new
/// leader's app. No client goes on talking to the old leader's app.
#[tokio::test]
async fn connections_end_with_the_leadership_they_were_opened_under() {
    let cluster = Loopback::start("tcp-tenure").await;
    let pods = tcp_pods(&cluster, &[], false).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let old = agreed_leader(&all, PATIENCE).await;
    cluster
        .wait_members_named("tcp-tenure", &["pod-a", "pod-b", "pod-c"], PATIENCE)
        .await;
    let leader = pods.iter().find(|p| p.name == old).unwrap();
    let mut open = Vec::new();
    for pod in &pods {
        let (mut client, hello) = Client::connect(pod.listen.unwrap()).await;
        assert!(hello.starts_with(&format!("hello {old} ")), "{hello}");
        assert_eq!(client.ask("before").await, Some(format!("{old} before")));
        open.push(client);
    }
    let req = http::Request::post(format!("http://{}/handover", leader.admin))
        .body(http_body_util::Full::default())
        .unwrap();
    let (status, body) = understudy_tests::cluster::loopback::send(req, Duration::from_secs(30))
        .await
        .expect("the admin answers");
    assert!(status.is_success(), "{status}: {body}");
    let new = agreed_leader_not(&all, &old, PATIENCE).await;
    for (i, client) in open.iter_mut().enumerate() {
        // Closed by its sidecar: end of stream, never an answer from the old app.
        let mut seen = Vec::new();
        while let Some(line) = client.line().await {
            seen.push(line);
        }
        assert!(
            seen.is_empty(),
            "connection {i} got {seen:?} after the handover"
        );
        assert_eq!(client.ask("after").await, None, "connection {i} still open");
    }
    for pod in &pods {
        let (mut client, hello) = Client::connect(pod.listen.unwrap()).await;
        assert!(hello.starts_with(&format!("hello {new} ")), "{hello}");
        assert_eq!(client.ask("after").await, Some(format!("{new} after")));
    }
    assert!(
        leader
            .metric("understudy_tcp_closes_total", "reason=\"leadership\"")
            .await
            >= 1.0
    );
}

/// A planned handover with `--close-grace`, asked for on the admin port: the leader first
/// quiesces. Its connections (one of its own, one handed over by a standby) go on being
/// answered while it still leads, a connection that arrives meanwhile waits, and once the open
/// ones have ended by themselves (before the grace is up) the Lease moves: the waiting
/// connection reaches the new leader's app, and nothing was closed for the handover.
#[tokio::test]
async fn a_planned_handover_waits_for_connections_to_end_and_holds_new_ones_for_the_next_leader() {
    drains_before_a_planned_handover("tcp-quiesce", Ask::Admin).await;
}

/// The same drain when the handover is asked for with the Lease annotation
/// (`kubectl understudy switchover`): the election prepares every planned handover alike, and
/// its renewals meanwhile keep the request on the Lease (a watcher would otherwise take its
/// removal for a refusal).
#[tokio::test]
async fn a_handover_asked_for_by_annotation_drains_first_too() {
    drains_before_a_planned_handover("tcp-quiesce-annotated", Ask::Annotation).await;
}

/// How a planned handover is asked for.
#[derive(Clone, Copy, Debug)]
enum Ask {
    /// `POST /handover` on the leader's admin port.
    Admin,
    /// `understudy.io/handover-to=<a standby>` on the Lease.
    Annotation,
}

async fn drains_before_a_planned_handover(election: &str, ask: Ask) {
    const GRACE: Duration = Duration::from_secs(3);
    let cluster = Loopback::start(election).await;
    let pods = tcp_pods(&cluster, &["--close-grace", "3s"], false).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let old = agreed_leader(&all, PATIENCE).await;
    cluster
        .wait_members_named(election, &["pod-a", "pod-b", "pod-c"], PATIENCE)
        .await;
    let leader = pods.iter().find(|p| p.name == old).unwrap();
    let standby = pods.iter().find(|p| p.name != old).unwrap();
    let (mut own, _) = Client::connect(leader.listen.unwrap()).await;
    let (mut handed, _) = Client::connect(standby.listen.unwrap()).await;
    for client in [&mut own, &mut handed] {
        assert_eq!(client.ask("before").await, Some(format!("{old} before")));
    }

    let asked = std::time::Instant::now();
    let handover = match ask {
        Ask::Admin => {
            let admin = leader.admin;
            Some(tokio::spawn(async move {
                let req = http::Request::post(format!("http://{admin}/handover"))
                    .body(http_body_util::Full::default())
                    .unwrap();
                understudy_tests::cluster::loopback::send(req, Duration::from_secs(30)).await
            }))
        }
        Ask::Annotation => {
            crate::switchover::annotate_handover(&cluster, election, &standby.name).await;
            None
        }
    };
    let quiesced = |status: &str| status.contains("\"quiesced\":true");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, status) = leader.admin_get("/status").await.unwrap();
        if quiesced(&status) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never quiesced: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still the leader: its connections are answered by its app.
    for client in [&mut own, &mut handed] {
        assert_eq!(client.ask("during").await, Some(format!("{old} during")));
    }
    // A new connection waits for the next leader.
    let waiting = tokio::spawn(Client::connect(leader.listen.unwrap()));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while leader.metric("understudy_proxy_held_requests", "").await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new connection was not held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Ask::Annotation = ask {
        // A renewal while it drains keeps the request.
        let renewed = || crate::switchover::lease_field(&cluster, election, ".spec.renewTime");
        let before = renewed().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while renewed().await == before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no renewal while draining"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            crate::switchover::handover_annotation(&cluster, election).await,
            standby.name,
            "the renewal kept the request"
        );
    }
    // The open connections end by themselves: the handover goes ahead before the grace.
    drop(own);
    drop(handed);
    if let Some(handover) = handover {
        let (status, body) = handover.await.unwrap().expect("the admin answers");
        assert!(status.is_success(), "{status}: {body}");
    }
    let new = agreed_leader_not(&all, &old, PATIENCE).await;
    if let Ask::Annotation = ask {
        assert_eq!(new, standby.name, "the member asked for");
    }
    assert!(
        asked.elapsed() < GRACE,
        "the handover ({ask:?}) waited {:?}, the whole grace",
        asked.elapsed()
    );
    let (mut late, hello) = waiting.await.unwrap();
    assert!(hello.starts_with(&format!("hello {new} ")), "{hello}");
    assert_eq!(late.ask("after").await, Some(format!("{new} after")));
    assert_eq!(
        leader
            .metric("understudy_tcp_closes_total", "reason=\"leadership\"")
            .await,
        0.0,
        "nothing was closed for the handover"
    );
}

/// The failsafe in TCP mode: all three sidecars lose the API for five renew deadlines. The
/// leader keeps acting on its members' confirmations (their messages reach it on its TCP data
/// port, from their advertised addresses), a connection opened through a standby before the
/// outage goes on being answered by the leader's app, and new connections through every pod
/// reach it too.
#[tokio::test]
async fn the_failsafe_keeps_the_leader_through_an_api_outage() {
    let cluster = Loopback::start("tcp-failsafe").await;
    let pods = tcp_pods(&cluster, &[], false).await;
    failsafe_through_an_api_outage(&cluster, &pods).await;
}

/// The same with the mTLS peer channel: the failsafe's messages reach the leader on its peer
/// port, as do the standbys' hand-offs.
#[tokio::test]
async fn the_failsafe_keeps_the_leader_through_an_api_outage_over_mtls() {
    let cluster = Loopback::start("tcp-failsafe-mtls").await;
    let ca = Ca::new("peers");
    let dirs: Vec<SecretDir> = (0..3).map(|_| SecretDir::issued(&ca)).collect();
    let pods = tcp_pods_with(&cluster, &[], false, Some(&dirs)).await;
    // (Had the messages gone to the data port, which reads no header or failsafe message
    // with the peer channel on, the leader would have had no confirmations and stopped.)
    let leader = failsafe_through_an_api_outage(&cluster, &pods).await;
    for pod in &pods {
        let failed = pod
            .metric("understudy_peer_tls_handshake_failures_total", "")
            .await;
        assert_eq!(failed, 0.0, "{} (leader {leader})", pod.name);
    }
}

/// Cuts every pod from the API for five renew deadlines: the leader keeps acting, a
/// connection opened before through a standby and new ones through every pod reach its app.
/// Returns the leader.
async fn failsafe_through_an_api_outage(cluster: &Loopback, pods: &[Sidecar]) -> String {
    let all: Vec<&Sidecar> = pods.iter().collect();
    let leader = agreed_leader(&all, PATIENCE).await;
    cluster
        .wait_members_named(&cluster.election, &["pod-a", "pod-b", "pod-c"], PATIENCE)
        .await;
    let leader_pod = pods.iter().find(|p| p.name == leader).unwrap();
    let standby = pods.iter().find(|p| p.name != leader).unwrap();
    let (mut kept, hello) = Client::connect(standby.listen.unwrap()).await;
    assert!(hello.starts_with(&format!("hello {leader} ")), "{hello}");
    for p in pods {
        p.api.cut();
    }
    let outage = std::time::Instant::now();
    let (mut failsafe_seen, mut i) = (false, 0);
    while outage.elapsed() < 5 * TEST_TIMINGS.renew_deadline {
        let (_, body) = leader_pod.admin_get("/status").await.expect("/status");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status["role"], "leader", "{status}");
        assert_eq!(status["acting"], true, "{status}");
        failsafe_seen |= status["failsafe"]["active"] == true;
        let line = format!("during {i}");
        assert_eq!(kept.ask(&line).await, Some(format!("{leader} {line}")));
        let (mut fresh, hello) = Client::connect(pods[i % 3].listen.unwrap()).await;
        assert!(hello.starts_with(&format!("hello {leader} ")), "{hello}");
        assert_eq!(fresh.ask(&line).await, Some(format!("{leader} {line}")));
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        failsafe_seen,
        "the leader never acted on its members' confirmations"
    );
    for p in pods {
        p.api.heal();
    }
    leader
}
