use std::collections::BTreeMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use understudy_elector::Member;

use super::*;
use crate::limits::ConnectionLimit;
use crate::testing::{eventually, following, leaderless, leading};

/// An app that greets with `name` and echoes.
async fn echo_app(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if s.write_all(name.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

struct Running {
    addr: SocketAddr,
    views: watch::Sender<View>,
    metrics: Metrics,
    proxy: TcpProxy,
    holder: Holder,
    _stop: tokio_util::sync::DropGuard,
}

/// A TCP-mode proxy for pod `me` in front of `app`, routing by `view`, with `members`.
async fn start(app: SocketAddr, view: View, members: Members, hold: Duration) -> Running {
    start_with(vec![app], view, members, hold, Duration::from_secs(60)).await
}

/// [`start`], relaying with splice(2) (`--splice`) or not.
async fn start_relay(app: SocketAddr, view: View, members: Members, splice: bool) -> Running {
    let idle = Duration::from_secs(60);
    start_relaying(
        vec![app],
        view,
        members,
        Duration::from_secs(1),
        idle,
        splice,
    )
    .await
}

/// [`start`] with listeners whose upstreams are `apps` (only the first accepts here), and
/// `idle` as the idle timeout.
async fn start_with(
    apps: Vec<SocketAddr>,
    view: View,
    members: Members,
    hold: Duration,
    idle: Duration,
) -> Running {
    start_relaying(apps, view, members, hold, idle, false).await
}

/// [`start_with`], relaying with splice(2) or not.
async fn start_relaying(
    apps: Vec<SocketAddr>,
    view: View,
    members: Members,
    hold: Duration,
    idle: Duration,
    splice: bool,
) -> Running {
    let (views, rx) = watch::channel(view);
    let (_, members) = watch::channel(members);
    let metrics = Metrics::default();
    let stop = CancellationToken::new();
    let holder = Holder::new(2, hold);
    let proxy = TcpProxy::new(Parts {
        views: rx,
        members,
        upstreams: apps.iter().map(ToString::to_string).collect(),
        dialer: Dialer::new(Duration::from_secs(1), None),
        peer_tls: false,
        holder: holder.clone(),
        metrics: metrics.clone(),
        proxy_protocol: false,
        idle_timeout: idle,
        splice,
        failsafe: None,
        limits: Limits::default(),
        stop: stop.clone(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::conn::accept_refusing(
        listener,
        ConnectionLimit::unmetered(16),
        None,
        Duration::from_secs(1),
        b"",
        stop.clone(),
        tokio_util::task::TaskTracker::new(),
        {
            let proxy = proxy.clone();
            move |accepted| proxy.clone().serve(accepted, 0)
        },
    ));
    Running {
        addr,
        views,
        metrics,
        proxy,
        holder,
        _stop: stop.drop_guard(),
    }
}

/// One member sidecar, advertised on 127.0.0.1 (where the tests' connections come from).
fn a_member_at_127_0_0_1() -> Members {
    let peer = Member {
        identity: "peer".into(),
        address: Some("127.0.0.1:9".into()),
        peer_address: None,
        ready: Some(true),
        priority: 0,
    };
    BTreeMap::from([("peer".to_string(), peer)])
}

/// A proxy for the acting leader `me` in front of `app` (an [`echo_app`] named "app"), and a
/// client connected through it that has had the app's greeting.
async fn leading_and_connected(app: SocketAddr) -> (Running, TcpStream) {
    leading_and_connected_relaying(app, false).await
}

/// [`leading_and_connected`], relaying with splice(2) or not.
async fn leading_and_connected_relaying(app: SocketAddr, splice: bool) -> (Running, TcpStream) {
    let view = leading("me", "127.0.0.1:1", 1);
    let running = start_relay(app, view, Members::new(), splice).await;
    let mut client = TcpStream::connect(running.addr).await.unwrap();
    assert_eq!(read_some(&mut client).await, "app");
    (running, client)
}

async fn read_some(s: &mut TcpStream) -> String {
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer or a close in time")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn closes(m: &Metrics, reason: &str) -> bool {
    let text = m.render(&leaderless("me"), crate::now(), 0);
    let series = format!("understudy_tcp_closes_total{{reason=\"{reason}\"}} ");
    text.lines().any(|l| {
        l.strip_prefix(&series)
            .and_then(|n| n.trim().parse::<f64>().ok())
            .is_some_and(|n| n > 0.0)
    })
}

#[tokio::test]
async fn a_connection_with_no_leader_is_held_and_goes_to_the_first_one() {
    let app = echo_app("app").await;
    let running = start(
        app,
        leaderless("me"),
        Members::new(),
        Duration::from_secs(10),
    )
    .await;
    let mut client = TcpStream::connect(running.addr).await.unwrap();
    client.write_all(b"early").await.unwrap();
    // Held: nothing reaches an app, nothing comes back.
    let nothing =
        tokio::time::timeout(Duration::from_millis(200), client.read(&mut [0u8; 8])).await;
    assert!(nothing.is_err(), "held connections get no bytes");
    running.views.send(leading("me", "127.0.0.1:1", 3)).unwrap();
    // The greeting, then the bytes sent while held, unread until now.
    let mut got = String::new();
    while got.len() < "appearly".len() {
        let more = read_some(&mut client).await;
        assert!(!more.is_empty(), "closed after {got:?}");
        got.push_str(&more);
    }
    assert_eq!(got, "appearly");
}

#[tokio::test]
async fn a_held_connection_is_closed_at_the_hold_deadline_and_counted() {
    let app = echo_app("app").await;
    let running = start(
        app,
        leaderless("me"),
        Members::new(),
        Duration::from_millis(300),
    )
    .await;
    let mut client = TcpStream::connect(running.addr).await.unwrap();
    assert_eq!(read_some(&mut client).await, "", "closed, no bytes");
    assert!(closes(&running.metrics, "hold_timeout"));
}

/// The relay tests run with the buffered relay and with splice(2) (`--splice`).
macro_rules! both_relays {
    ($test:ident) => {
        mod $test {
            #[tokio::test]
            async fn buffered() {
                super::$test(false).await
            }

            #[tokio::test]
            async fn spliced() {
                super::$test(true).await
            }
        }
    };
}

both_relays!(the_local_connection_closes_when_this_pod_stops_leading);
async fn the_local_connection_closes_when_this_pod_stops_leading(splice: bool) {
    let app = echo_app("app").await;
    let (running, mut client) = leading_and_connected_relaying(app, splice).await;
    running
        .views
        .send(following("me", "other", "127.0.0.1:1", 2))
        .unwrap();
    assert_eq!(read_some(&mut client).await, "", "closed by the sidecar");
    assert!(closes(&running.metrics, "leadership"));
}

#[tokio::test]
async fn a_members_hand_off_is_read_and_its_listener_must_exist() {
    let app = echo_app("app").await;
    let members = a_member_at_127_0_0_1();
    let running = start(
        app,
        leading("me", "127.0.0.1:1", 1),
        members,
        Duration::from_secs(1),
    )
    .await;
    let hand_off = |listener| HandOff {
        for_pod: "me".into(),
        hops: 1,
        listener,
        hold: Duration::from_secs(1),
        epoch: 1,
    };
    let client: SocketAddr = "198.18.0.5:4000".parse().unwrap();
    // From a member's address (127.0.0.1): the header is taken off, the rest reaches the app.
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    let mut bytes = proxy_header::encode(client, running.addr, Some(&hand_off(0)));
    bytes.extend_from_slice(b"ping");
    s.write_all(&bytes).await.unwrap();
    let mut got = String::new();
    while got.len() < "appping".len() {
        let more = read_some(&mut s).await;
        assert!(!more.is_empty(), "closed after {got:?}");
        got.push_str(&more);
    }
    assert_eq!(got, "appping");
    // A listener this pod does not have: refused, never sent to another app.
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(&proxy_header::encode(
        client,
        running.addr,
        Some(&hand_off(3)),
    ))
    .await
    .unwrap();
    assert_eq!(read_some(&mut s).await, "");
    assert!(closes(&running.metrics, "misdirected"));
    // Meant for another pod that leads: refused (421's TCP form).
    let mut other = hand_off(0);
    other.for_pod = "someone-else".into();
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(&proxy_header::encode(client, running.addr, Some(&other)))
        .await
        .unwrap();
    assert_eq!(read_some(&mut s).await, "");
}

both_relays!(a_hand_off_read_together_with_the_clients_first_kilobytes_is_still_taken_off);
/// A client that sends at once: the sidecar's header and kilobytes of the client's data
/// arrive in one read. The header is still taken off (it was passed on as data when the first
/// read was longer than a header can be).
async fn a_hand_off_read_together_with_the_clients_first_kilobytes_is_still_taken_off(
    splice: bool,
) {
    let app = echo_app("app").await;
    let view = leading("me", "127.0.0.1:1", 1);
    let running = start_relay(app, view, a_member_at_127_0_0_1(), splice).await;
    let facts = HandOff {
        for_pod: "me".into(),
        hops: 1,
        listener: 0,
        hold: Duration::from_secs(1),
        epoch: 1,
    };
    let client: SocketAddr = "198.18.0.5:4000".parse().unwrap();
    let data = vec![b'x'; 8 * 1024];
    let mut bytes = proxy_header::encode(client, running.addr, Some(&facts));
    bytes.extend_from_slice(&data);
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut back))
        .await
        .expect("the echo and the close in time")
        .unwrap();
    assert_eq!(&back[..3], b"app");
    assert!(
        back[3..] == data[..],
        "the app got {} bytes, starting {:?}",
        back.len() - 3,
        &back[3..back.len().min(20)]
    );
}

/// A hand-off meant for this pod from a sender that saw it lead at a later epoch than this
/// pod knows (a successor named by a planned handover that has not yet seen the Lease) waits
/// for this pod to lead instead of going back to the old leader; one from a sender that is
/// behind (an older epoch) goes on to the leader this pod knows.
#[tokio::test]
async fn a_hand_off_from_a_sender_ahead_waits_and_one_from_a_sender_behind_goes_on() {
    let (app, old) = (echo_app("app").await, echo_app("old").await);
    let running = start(
        app,
        following("me", "other", &old.to_string(), 1),
        a_member_at_127_0_0_1(),
        Duration::from_secs(5),
    )
    .await;
    let client: SocketAddr = "198.18.0.5:4000".parse().unwrap();
    let facts = |epoch| HandOff {
        for_pod: "me".into(),
        hops: 1,
        listener: 0,
        hold: Duration::from_secs(5),
        epoch,
    };
    // Ahead (epoch 2, this pod knows 1): held until this pod leads at 2.
    let mut ahead = TcpStream::connect(running.addr).await.unwrap();
    ahead
        .write_all(&proxy_header::encode(client, running.addr, Some(&facts(2))))
        .await
        .unwrap();
    eventually(Duration::from_secs(5), || running.holder.held() == 1).await;
    running.views.send(leading("me", "127.0.0.1:1", 2)).unwrap();
    assert_eq!(read_some(&mut ahead).await, "app");

    // Behind (epoch 2, this pod now follows "other" at 3): on to the leader it knows.
    running
        .views
        .send(following("me", "other", &old.to_string(), 3))
        .unwrap();
    let mut behind = TcpStream::connect(running.addr).await.unwrap();
    behind
        .write_all(&proxy_header::encode(client, running.addr, Some(&facts(2))))
        .await
        .unwrap();
    assert!(read_some(&mut behind).await.starts_with("old"));
}

#[tokio::test]
async fn a_hand_off_goes_to_the_upstream_of_the_listener_it_names() {
    let (first, second) = (echo_app("one").await, echo_app("two").await);
    let members = a_member_at_127_0_0_1();
    let view = leading("me", "127.0.0.1:1", 1);
    let running = start_with(
        vec![first, second],
        view,
        members,
        Duration::from_secs(1),
        Duration::from_secs(60),
    )
    .await;
    let facts = HandOff {
        for_pod: "me".into(),
        hops: 1,
        listener: 1,
        hold: Duration::from_secs(1),
        epoch: 1,
    };
    let client: SocketAddr = "198.18.0.5:4000".parse().unwrap();
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(&proxy_header::encode(client, running.addr, Some(&facts)))
        .await
        .unwrap();
    assert_eq!(read_some(&mut s).await, "two");
}

both_relays!(a_half_close_reaches_the_app_and_its_answer_still_comes_back);
async fn a_half_close_reaches_the_app_and_its_answer_still_comes_back(splice: bool) {
    // An app that answers once the client has finished sending.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(format!("got {}", String::from_utf8_lossy(&got)).as_bytes())
            .await
            .unwrap();
    });
    let view = leading("me", "127.0.0.1:1", 1);
    let running = start_relay(app, view, Members::new(), splice).await;
    let mut client = TcpStream::connect(running.addr).await.unwrap();
    client.write_all(b"all of it").await.unwrap();
    client.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut answer))
        .await
        .expect("the answer and the close in time")
        .unwrap();
    assert_eq!(answer, "got all of it");
    // Counted once both ends have closed.
    eventually(Duration::from_secs(5), || closes(&running.metrics, "done")).await;
}

both_relays!(a_connection_with_nothing_moving_is_closed_at_the_idle_timeout);
async fn a_connection_with_nothing_moving_is_closed_at_the_idle_timeout(splice: bool) {
    let app = echo_app("app").await;
    let view = leading("me", "127.0.0.1:1", 1);
    let running = start_relaying(
        vec![app],
        view,
        Members::new(),
        Duration::from_secs(1),
        Duration::from_millis(300),
        splice,
    )
    .await;
    let mut client = TcpStream::connect(running.addr).await.unwrap();
    assert_eq!(read_some(&mut client).await, "app");
    assert_eq!(read_some(&mut client).await, "", "closed once idle");
    assert!(closes(&running.metrics, "idle"));
}

/// Before a planned handover the leader quiesces: its open connections go on while it still
/// leads, and it waits for them to end (up to the grace); a new connection is held meanwhile
/// and goes to the next leader once the Lease has moved, never to this pod's app.
#[tokio::test]
async fn a_quiesced_leader_holds_new_connections_for_the_next_one_and_waits_for_its_own() {
    let (app, next) = (echo_app("app").await, echo_app("next").await);
    let (running, mut old) = leading_and_connected(app).await;
    let mut other = TcpStream::connect(running.addr).await.unwrap();
    assert_eq!(read_some(&mut other).await, "app");
    let proxy = running.proxy.clone();
    let quiesce = tokio::spawn(async move { proxy.quiesce(Duration::from_secs(30)).await });
    eventually(Duration::from_secs(5), || running.proxy.is_quiesced()).await;

    // Open connections go on while the pod leads.
    old.write_all(b"still").await.unwrap();
    assert_eq!(read_some(&mut old).await, "still");
    // A new one waits (held), although this pod still leads.
    let mut new = TcpStream::connect(running.addr).await.unwrap();
    eventually(Duration::from_secs(5), || running.holder.held() == 1).await;
    // One connection ends by itself: the quiesce waits for the other.
    drop(other);
    eventually(Duration::from_secs(5), || running.proxy.local_open() == 1).await;
    assert!(!quiesce.is_finished());
    drop(old);
    let open = tokio::time::timeout(Duration::from_secs(5), quiesce)
        .await
        .expect("the quiesce ends when the last connection does")
        .unwrap();
    assert_eq!(open, 0);

    // The Lease moves: the held connection goes to the next leader.
    running
        .views
        .send(following("me", "other", &next.to_string(), 2))
        .unwrap();
    assert!(read_some(&mut new).await.starts_with("next"));
    assert!(!closes(&running.metrics, "hold_timeout"));
}

/// The election's preparation of a planned handover is the quiesce, undone once the handover
/// is over; before the proxy is given to it there is nothing to drain. A shutdown's quiesce is
/// never undone by a handover that ends meanwhile.
#[tokio::test]
async fn the_drain_before_a_handover_quiesces_and_is_undone_when_it_is_over() {
    let unset = Drain::default();
    unset.prepare().await;
    unset.over();
    assert_eq!(unset.longest(), Duration::ZERO);

    let app = echo_app("app").await;
    let (running, old) = leading_and_connected(app).await;
    let drain = Drain::default();
    drain.set(running.proxy.clone(), Duration::from_millis(100));
    assert_eq!(drain.longest(), Duration::from_millis(100));
    let prepared = drain.prepare();
    assert!(
        !running.proxy.is_quiesced(),
        "nothing happens before it is awaited"
    );
    prepared.await;
    assert!(running.proxy.is_quiesced());
    assert_eq!(
        running.proxy.local_open(),
        1,
        "the grace ended with one open"
    );
    drain.over();
    assert!(!running.proxy.is_quiesced());

    // SIGTERM: quiesced for good.
    running
        .proxy
        .quiesce_for_good(Duration::from_millis(10))
        .await;
    drain.over();
    assert!(running.proxy.is_quiesced(), "a shutdown's drain stays");
    drop(old);
}

/// A quiesce ends at the grace with connections still open; they close as the leadership
/// ends. A handover that did not happen resumes: new connections reach the app again.
#[tokio::test]
async fn a_quiesce_ends_at_the_grace_and_a_resume_gives_new_connections_to_the_app_again() {
    let app = echo_app("app").await;
    let (running, mut old) = leading_and_connected(app).await;
    let open = running.proxy.quiesce(Duration::from_millis(200)).await;
    assert_eq!(open, 1);
    running.proxy.resume();
    let mut again = TcpStream::connect(running.addr).await.unwrap();
    assert_eq!(read_some(&mut again).await, "app");
    running
        .views
        .send(following("me", "other", "127.0.0.1:1", 2))
        .unwrap();
    assert_eq!(
        read_some(&mut old).await,
        "",
        "closed as the leadership ended"
    );
    eventually(Duration::from_secs(5), || {
        closes(&running.metrics, "leadership")
    })
    .await;

    // Quiesced at epoch 3, handed over, then leading again at epoch 5 (a failover back): new
    // connections reach the app; a quiesce is for the leadership it was made for.
    running.views.send(leading("me", "127.0.0.1:1", 3)).unwrap();
    assert_eq!(running.proxy.quiesce(Duration::from_secs(1)).await, 0);
    assert!(running.proxy.is_quiesced());
    running
        .views
        .send(following("me", "other", "127.0.0.1:1", 4))
        .unwrap();
    running.views.send(leading("me", "127.0.0.1:1", 5)).unwrap();
    assert!(!running.proxy.is_quiesced());
    let mut later = TcpStream::connect(running.addr).await.unwrap();
    assert_eq!(read_some(&mut later).await, "app");
}

both_relays!(megabytes_pass_both_ways_counted_and_a_busy_connection_is_never_idle);
/// Megabytes both ways, written while the echo comes back: every byte arrives in order, the
/// byte counters count them, and a connection that keeps moving bytes outlives the idle
/// timeout many times over.
async fn megabytes_pass_both_ways_counted_and_a_busy_connection_is_never_idle(splice: bool) {
    const SIZE: usize = 4 << 20;
    let app = echo_app("app").await;
    let view = leading("me", "127.0.0.1:1", 1);
    let idle = Duration::from_millis(200);
    let hold = Duration::from_secs(1);
    let running = start_relaying(vec![app], view, Members::new(), hold, idle, splice).await;
    let client = TcpStream::connect(running.addr).await.unwrap();
    let (mut read, mut write) = client.into_split();
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        // In slices with pauses shorter than the idle timeout: busy for several of them.
        for chunk in sent.chunks(SIZE / 16) {
            write.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        write.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), read.read_to_end(&mut back))
        .await
        .expect("the echo and the close in time")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(&back[..3], b"app");
    assert!(
        back[3..] == data[..],
        "{} bytes back of {SIZE}",
        back.len() - 3
    );
    assert!(
        !closes(&running.metrics, "idle"),
        "closed as idle while busy"
    );
    let text = running.metrics.render(&leaderless("me"), crate::now(), 0);
    let bytes = |direction: &str| -> f64 {
        let series = format!("understudy_tcp_bytes_total{{direction=\"{direction}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(bytes("upstream"), SIZE as f64);
    assert_eq!(bytes("downstream"), (SIZE + 3) as f64);
}
