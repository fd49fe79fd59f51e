use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::server::RequestBody as Incoming;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::dial::Reach;
use crate::testing::*;

/// A leader proxy in front of app `a`, and a standby proxy that forwards to it.
async fn pair() -> (TestProxy, App, TestProxy, App) {
    let (a_addr, app_a) = app("a").await;
    let (b_addr, app_b) = app("b").await;
    let (pa, pb) = leader_and_standby_with(a_addr, b_addr).await;
    (pa, app_a, pb, app_b)
}

/// A leader proxy in front of `app_addr`, and a standby proxy (in front of app `b`) that
/// forwards to it.
async fn leader_and_standby(app_addr: SocketAddr) -> (TestProxy, TestProxy) {
    let (b_addr, _) = app("b").await;
    leader_and_standby_with(app_addr, b_addr).await
}

async fn leader_and_standby_with(a_addr: SocketAddr, b_addr: SocketAddr) -> (TestProxy, TestProxy) {
    let pa = start_proxy(proxy_settings(a_addr), leaderless("a")).await;
    pa.views
        .send(leading("a", &pa.addr.to_string(), 4))
        .unwrap();
    let pb = start_proxy(
        proxy_settings(b_addr),
        following("b", "a", &pa.addr.to_string(), 4),
    )
    .await;
    (pa, pb)
}

/// A port on 127.0.0.1 where nothing listens (connect refused).
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn the_leader_serves_locally_with_the_fencing_token() {
    let (a_addr, app_a) = app("a").await;
    let p = start_proxy(proxy_settings(a_addr), leading("a", "127.0.0.1:1", 4)).await;
    let (status, headers, body) = get(p.addr, "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "a"));
    assert_eq!(headers["x-seen-x-understudy-leader"], "a");
    assert_eq!(headers["x-seen-x-understudy-epoch"], "4");
    assert_eq!(headers["x-seen-x-understudy-lease"], "test");
    assert_eq!(headers["x-seen-x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-seen-via"], "1.1 understudy");
    assert_eq!(app_a.hits(), 1);
}

#[tokio::test]
async fn a_standby_forwards_to_the_leader() {
    let (_pa, app_a, pb, app_b) = pair().await;
    for _ in 0..5 {
        let (status, headers, body) = get(pb.addr, "/x?y=1").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "a"));
        assert_eq!(headers["x-seen-x-understudy-leader"], "a");
        assert!(
            !headers.contains_key("x-seen-x-understudy-for"),
            "routing headers never reach an app"
        );
        assert!(!headers.contains_key("x-seen-x-understudy-hops"));
        assert!(!headers.contains_key("x-seen-x-understudy-hold-ms"));
        let via: Vec<_> = headers.get_all("x-seen-via").iter().collect();
        assert_eq!(via.len(), 2, "one Via per sidecar: {via:?}");
        assert_eq!(headers["x-seen-x-forwarded-for"], "127.0.0.1, 127.0.0.1");
        let via: Vec<_> = headers.get_all("via").iter().collect();
        assert_eq!(
            via,
            ["1.1 understudy", "1.1 understudy"],
            "on the way back too"
        );
    }
    assert_eq!((app_a.hits(), app_b.hits()), (5, 0));
    // POST bodies go through too.
    let req = Request::post(format!("http://{}/", pb.addr))
        .body(Full::from("hello"))
        .unwrap();
    assert_eq!(send(pb.addr, req).await.2, "a:hello");
}

#[tokio::test]
async fn a_standby_sends_to_the_active_with_fewer_requests_outstanding() {
    let (a_addr, _app_a) = app("a").await;
    let (c_addr, _app_c) = app("c").await;
    let pa = start_proxy(proxy_settings(a_addr), leading("a", "127.0.0.1:1", 4)).await;
    let pc = start_proxy(proxy_settings(c_addr), leading("c", "127.0.0.1:1", 2)).await;
    let (b_addr, _app_b) = app("b").await;
    let mut view = following("b", "a", &pa.addr.to_string(), 4);
    view.peers = vec![leader("c", Some(&pc.addr.to_string()), 2)];
    let pb = start_proxy(proxy_settings(b_addr), view).await;
    let balancer = &pb.proxy.inner.balancer;

    // A response that never ends keeps its active busy...
    let stream = client()
        .request(
            Request::get(format!("http://{}/stream", pb.addr))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let busy = stream.headers()["x-seen-x-understudy-leader"]
        .to_str()
        .unwrap()
        .to_string();
    let idle = if busy == "a" { "c" } else { "a" };
    assert_eq!(
        (balancer.outstanding(&busy), balancer.outstanding(idle)),
        (1, 0)
    );
    // ... so every other request goes to the other one.
    for _ in 0..20 {
        let (status, _, body) = get(pb.addr, "/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, idle));
    }
    // Once it ends, both take requests again.
    drop(stream);
    eventually(Duration::from_secs(5), || balancer.outstanding(&busy) == 0).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(get(pb.addr, "/").await.2);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn client_supplied_internal_headers_are_not_trusted() {
    let (_pa, _app_a, pb, _app_b) = pair().await;
    let req = Request::get(format!("http://{}/", pb.addr))
        .header("x-understudy-leader", "mallory")
        .header("x-understudy-epoch", "999")
        .header("x-understudy-for", "b")
        .body(Full::default())
        .unwrap();
    let (status, headers, body) = send(pb.addr, req).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "a"),
        "a lone marker is ignored: forwarded as usual"
    );
    assert_eq!(headers["x-seen-x-understudy-leader"], "a");
    assert_eq!(headers["x-seen-x-understudy-epoch"], "4");
}

#[tokio::test]
async fn a_request_marked_for_another_pod_is_refused_not_served() {
    let (pa, app_a, _pb, _app_b) = pair().await;
    let req = Request::get(format!("http://{}/", pa.addr))
        .header("x-understudy-for", "c")
        .header("x-understudy-hops", "1")
        .body(Full::default())
        .unwrap();
    let (status, headers, _) = send(pa.addr, req).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(headers["x-understudy-refused"], "a");
    assert_eq!(app_a.hits(), 0);
}

#[tokio::test]
async fn inconsistent_views_cannot_make_a_loop() {
    // a thinks b leads, b thinks a leads: each forwards to the other, the hop limit ends it.
    let (a_addr, app_a) = app("a").await;
    let (b_addr, app_b) = app("b").await;
    let mut s = proxy_settings(a_addr);
    s.hold_timeout = Duration::from_millis(600);
    let pa = start_proxy(s.clone(), leaderless("a")).await;
    let mut s = proxy_settings(b_addr);
    s.hold_timeout = Duration::from_millis(600);
    let pb = start_proxy(s, leaderless("b")).await;
    pa.views
        .send(following("a", "b", &pb.addr.to_string(), 2))
        .unwrap();
    pb.views
        .send(following("b", "a", &pa.addr.to_string(), 2))
        .unwrap();
    let started = Instant::now();
    let (status, headers, _) = get(pa.addr, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!((app_a.hits(), app_b.hits()), (0, 0));
}

#[tokio::test]
async fn a_request_is_held_until_a_leader_appears() {
    let (a_addr, app_a) = app("a").await;
    let (b_addr, _app_b) = app("b").await;
    let pa = start_proxy(proxy_settings(a_addr), leading("a", "127.0.0.1:1", 1)).await;
    let mut s = proxy_settings(b_addr);
    s.hold_timeout = Duration::from_secs(20);
    let pb = start_proxy(s, leaderless("b")).await;
    let req = Request::post(format!("http://{}/", pb.addr))
        .body(Full::from("held"))
        .unwrap();
    let pending = tokio::spawn(send(pb.addr, req));
    let holder = pb.proxy.holder().clone();
    eventually(Duration::from_secs(5), || holder.held() == 1).await;
    assert!(!pending.is_finished());
    pb.views
        .send(following("b", "a", &pa.addr.to_string(), 1))
        .unwrap();
    let (status, _, body) = pending.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "a:held"));
    assert_eq!(holder.held(), 0);
    assert_eq!(app_a.hits(), 1);
}

#[tokio::test]
async fn holding_ends_with_503_and_retry_after() {
    let (b_addr, _) = app("b").await;
    let mut s = proxy_settings(b_addr);
    s.hold_timeout = Duration::from_millis(300);
    let pb = start_proxy(s, leaderless("b")).await;
    let started = Instant::now();
    let (status, headers, _) = get(pb.addr, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_request_held_at_two_sidecars_waits_one_hold_timeout_in_all() {
    // b holds (no leader), then learns that a leads; but a has no leader either, so it holds
    // the forwarded request too. The client waits one hold timeout, not two.
    const HOLD: Duration = Duration::from_millis(1500);
    let (a_addr, _) = app("a").await;
    let (b_addr, _) = app("b").await;
    let mut s = proxy_settings(a_addr);
    s.hold_timeout = HOLD;
    let pa = start_proxy(s.clone(), leaderless("a")).await;
    s.upstream = b_addr.to_string().parse().unwrap();
    let pb = start_proxy(s, leaderless("b")).await;
    let started = Instant::now();
    let pending = tokio::spawn(get(pb.addr, "/"));
    let (held_a, held_b) = (pa.proxy.holder().clone(), pb.proxy.holder().clone());
    eventually(Duration::from_secs(5), || held_b.held() == 1).await;
    // The scenario: b spends most of the budget before it learns of a leader.
    tokio::time::sleep(HOLD * 3 / 5).await;
    pb.views
        .send(following("b", "a", &pa.addr.to_string(), 1))
        .unwrap();
    eventually(Duration::from_secs(5), || held_a.held() == 1).await;
    let (status, _, body) = pending.await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        took >= HOLD && took < HOLD * 13 / 10,
        "held {took:?} in all; the limit is {HOLD:?}"
    );
}

#[tokio::test]
async fn a_hold_budget_is_honoured_only_from_peers_and_never_raises_the_limit() {
    let (a_addr, _) = app("a").await;
    let mut s = proxy_settings(a_addr);
    s.hold_timeout = Duration::from_millis(400);
    let pa = start_proxy(s, leaderless("a")).await;
    let held_for = |headers: &'static [(&'static str, &'static str)]| async move {
        let mut req = Request::get(format!("http://{}/", pa.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let started = Instant::now();
        let (status, _, _) = send(pa.addr, req.body(Full::default()).unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        started.elapsed()
    };
    // A client cannot cut its own hold short (nor anyone else's): no routing pair, no budget.
    let took = held_for(&[("x-understudy-hold-ms", "0")]).await;
    assert!(took >= Duration::from_millis(400), "{took:?}");
    // From a peer, a smaller budget counts...
    let took = held_for(&[
        ("x-understudy-for", "a"),
        ("x-understudy-hops", "1"),
        ("x-understudy-hold-ms", "50"),
    ])
    .await;
    assert!(took < Duration::from_millis(350), "{took:?}");
    // ...and a larger one is capped by the local setting.
    let took = held_for(&[
        ("x-understudy-for", "a"),
        ("x-understudy-hops", "1"),
        ("x-understudy-hold-ms", "3600000"),
    ])
    .await;
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_forward_passes_on_what_is_left_of_the_hold_deadline() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s2 = seen.clone();
    // A stand-in for the leader's sidecar that records the budget it was sent.
    let peer = serve(move |req: Request<Incoming>, _| {
        let seen = s2.clone();
        async move {
            // (The engine reads the routing headers off the head, into the extensions.)
            let claims = req.extensions().get::<crate::headers::Claims>();
            let hold = claims.and_then(|c| c.lines().find(|(n, _)| n == headers::HOLD_MS));
            *seen.lock().unwrap() = hold.map(|(_, v)| v.clone());
            Response::new(full("a"))
        }
    })
    .await;
    let (b_addr, _) = app("b").await;
    let mut s = proxy_settings(b_addr);
    s.hold_timeout = Duration::from_secs(3);
    let pb = start_proxy(s, following("b", "a", &peer.to_string(), 1)).await;
    assert_eq!(get(pb.addr, "/").await.2, "a");
    let ms: u64 = seen
        .lock()
        .unwrap()
        .take()
        .expect("sent")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2000..=3000).contains(&ms), "{ms}");
}

#[tokio::test]
async fn a_full_hold_queue_answers_503_at_once() {
    let (b_addr, _) = app("b").await;
    let mut s = proxy_settings(b_addr);
    s.max_held = 1;
    s.hold_timeout = Duration::from_secs(20);
    let pb = start_proxy(s, leaderless("b")).await;
    let first = tokio::spawn(get(pb.addr, "/"));
    let holder = pb.proxy.holder().clone();
    eventually(Duration::from_secs(5), || holder.held() == 1).await;
    let (status, headers, body) = get(pb.addr, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(body.contains("hold queue full"), "{body}");
    first.abort();
}

#[tokio::test]
async fn an_unreachable_leader_holds_requests_until_the_next_one() {
    // The leader was SIGKILLed: its port refuses. Requests (any method: nothing was sent)
    // wait until this pod takes over.
    let (b_addr, app_b) = app("b").await;
    let dead = closed_port().await;
    let mut s = proxy_settings(b_addr);
    s.hold_timeout = Duration::from_secs(20);
    let pb = start_proxy(s, following("b", "a", &dead.to_string(), 1)).await;
    let req = Request::post(format!("http://{}/", pb.addr))
        .body(Full::from("x"))
        .unwrap();
    let pending = tokio::spawn(send(pb.addr, req));
    let holder = pb.proxy.holder().clone();
    eventually(Duration::from_secs(5), || holder.held() == 1).await;
    pb.views
        .send(leading("b", &pb.addr.to_string(), 2))
        .unwrap();
    let (status, headers, body) = pending.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "b:x"));
    assert_eq!(headers["x-seen-x-understudy-epoch"], "2");
    assert_eq!(app_b.hits(), 1);
}

#[tokio::test]
async fn a_leader_whose_own_app_is_down_says_so_not_that_there_is_no_leader() {
    let app = closed_port().await;
    let mut s = proxy_settings(app);
    s.hold_timeout = Duration::from_millis(300);
    let p = start_proxy(s, leading("a", "127.0.0.1:1", 4)).await;
    let (status, headers, body) = get(p.addr, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        body.contains(&format!("this pod leads, but its app at {app}")),
        "{body}"
    );
    assert!(body.to_lowercase().contains("refused"), "{body}");
    assert!(!body.contains("no leader"), "{body}");
}

#[tokio::test]
async fn a_standby_whose_leader_is_unreachable_names_it() {
    let (b_addr, _) = app("b").await;
    let dead = closed_port().await;
    let mut s = proxy_settings(b_addr);
    s.hold_timeout = Duration::from_millis(300);
    let pb = start_proxy(s, following("b", "a", &dead.to_string(), 1)).await;
    let (status, _, body) = get(pb.addr, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains(&format!("the leader a at {dead} could not be reached")),
        "{body}"
    );
}

/// A complete answer of a scripted server.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

/// A server (an app, or a peer sidecar) that reads each request head, then writes `first` on
/// its first connection and [`OK`] on later ones. The first connection is then closed, or
/// kept open with its answer unfinished when `hang`.
async fn scripted(first: &'static [u8], hang: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let _ = s.write_all(if n == 1 { first } else { OK }).await;
                if n == 1 && hang {
                    std::future::pending::<()>().await;
                }
            });
        }
    });
    (addr, conns)
}

/// An app that reads each request head and drops the first connection unanswered.
async fn flaky() -> (SocketAddr, Arc<AtomicUsize>) {
    scripted(b"", false).await
}

/// A standby proxy (in front of app `b`) that forwards to a leader at `peer`.
async fn standby_of(peer: SocketAddr) -> TestProxy {
    let (b_addr, _) = app("b").await;
    start_proxy(
        proxy_settings(b_addr),
        following("b", "a", &peer.to_string(), 1),
    )
    .await
}

/// A response whose body ends before its `Content-Length` does.
const CUT_SHORT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf";

#[tokio::test]
async fn a_standby_holds_back_a_response_and_resends_when_the_leader_dies_mid_body() {
    let (peer, conns) = scripted(CUT_SHORT, false).await;
    let pb = standby_of(peer).await;
    let (status, _, body) = get(pb.addr, "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(conns.load(Ordering::SeqCst), 2, "sent again once");
}

#[tokio::test]
async fn a_held_back_response_from_a_leader_that_stops_sending_ends_with_its_leadership() {
    // The leader sends the head and half the body, then nothing (it is frozen, not dead).
    let (peer, conns) = scripted(CUT_SHORT, true).await;
    let pb = standby_of(peer).await;
    let request = tokio::spawn(get(pb.addr, "/"));
    eventually(Duration::from_secs(5), || conns.load(Ordering::SeqCst) == 1).await;
    // b takes over: the held read ends a stream grace later and the GET goes to b's app.
    pb.views
        .send(leading("b", &pb.addr.to_string(), 2))
        .unwrap();
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("not held for good")
        .unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "b"));
}

#[tokio::test]
async fn a_held_back_response_that_is_late_is_passed_on_as_it_comes() {
    // The leader keeps its leadership, but its answer stops half way: past the request's
    // hold deadline the standby passes on what came, as it did before holding back.
    let (peer, _) = scripted(CUT_SHORT, true).await;
    let (b_addr, _) = app("b").await;
    let mut settings = proxy_settings(b_addr);
    settings.hold_timeout = Duration::from_millis(300);
    let pb = start_proxy(settings, following("b", "a", &peer.to_string(), 1)).await;
    let req = Request::get(format!("http://{}/", pb.addr))
        .body(Full::default())
        .unwrap();
    let first = async {
        let resp = client().request(req).await.expect("request");
        let length = resp.headers()[header::CONTENT_LENGTH].clone();
        let mut body = resp.into_body();
        let first = body.frame().await.expect("a frame").expect("data");
        (length, first.into_data().unwrap())
    };
    let (length, first) = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .expect("not held for good");
    assert_eq!(length, "10", "the length the leader announced");
    assert_eq!(first, "half");
}

/// `req` through `addr`: the status, and the body or the error that cut it.
async fn status_and_body(req: Request<Full<Bytes>>) -> (StatusCode, Result<Bytes, String>) {
    let resp = client().request(req).await.expect("request");
    let status = resp.status();
    let body = resp.into_body().collect().await;
    (
        status,
        body.map(|b| b.to_bytes()).map_err(|e| e.to_string()),
    )
}

#[tokio::test]
async fn a_post_whose_response_is_cut_short_is_passed_on_and_never_resent() {
    let (peer, conns) = scripted(CUT_SHORT, false).await;
    let pb = standby_of(peer).await;
    let req = Request::post(format!("http://{}/", pb.addr))
        .body(Full::from("pay"))
        .unwrap();
    let (status, body) = status_and_body(req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_err(), "the client sees the cut: {body:?}");
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "a POST is never sent twice"
    );
}

#[tokio::test]
async fn a_response_larger_than_the_replay_budget_streams_at_once() {
    // Headed for 100 kB (over the 64 KiB budget) and never finished: the head and the first
    // bytes must still reach the client.
    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\nfirst";
    let (peer, _) = scripted(head, true).await;
    let pb = standby_of(peer).await;
    let req = Request::get(format!("http://{}/", pb.addr))
        .body(Full::default())
        .unwrap();
    let first = async {
        let mut body = client().request(req).await.expect("request").into_body();
        body.frame()
            .await
            .expect("a frame")
            .expect("data")
            .into_data()
            .unwrap()
    };
    let first = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("the first bytes arrive before the response is complete");
    assert_eq!(first, "first");
}

#[tokio::test]
async fn the_leader_passes_its_apps_response_on_as_it_comes() {
    // Holding back is for the hop between sidecars only: the leader streams what its app
    // sends, so a short response cut by the app reaches the client cut.
    let (app_addr, conns) = scripted(CUT_SHORT, false).await;
    let p = start_proxy(proxy_settings(app_addr), leading("a", "127.0.0.1:1", 1)).await;
    let req = Request::get(format!("http://{}/", p.addr))
        .body(Full::default())
        .unwrap();
    let (status, body) = status_and_body(req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_err(), "{body:?}");
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_idempotent_request_is_resent_after_a_reset() {
    let (flaky_addr, conns) = flaky().await;
    let p = start_proxy(proxy_settings(flaky_addr), leading("a", "127.0.0.1:1", 1)).await;
    let (status, _, body) = get(p.addr, "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_post_that_may_have_arrived_is_never_resent() {
    let (flaky_addr, conns) = flaky().await;
    let p = start_proxy(proxy_settings(flaky_addr), leading("a", "127.0.0.1:1", 1)).await;
    let req = Request::post(format!("http://{}/", p.addr))
        .body(Full::from("pay"))
        .unwrap();
    let (status, _, _) = send(p.addr, req).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "the app saw it once, and only once"
    );
}

/// An app that answers with something that is not a valid response would answer a resend the
/// same way: even a GET gets the 502 at once (nginx and HAProxy do not resend either).
#[tokio::test]
async fn an_invalid_answer_is_not_asked_for_again() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"[..],
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    ] {
        let (app_addr, conns) = scripted(answer, false).await;
        let p = start_proxy(proxy_settings(app_addr), leading("a", "127.0.0.1:1", 1)).await;
        let (status, _, body) = get(p.addr, "/").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(conns.load(Ordering::SeqCst), 1, "sent again: {body}");
    }
}

#[tokio::test]
async fn a_421_from_the_app_is_passed_on_not_taken_for_a_sidecar_refusal() {
    // Only a peer sidecar's 421 proves nothing reached an app; the app's own proves nothing.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app_addr = serve(move |_req: Request<Incoming>, _| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let mut resp = Response::new(full("not here"));
            *resp.status_mut() = StatusCode::MISDIRECTED_REQUEST;
            resp.headers_mut()
                .insert("x-understudy-refused", http::HeaderValue::from_static("a"));
            resp
        }
    })
    .await;
    let p = start_proxy(proxy_settings(app_addr), leading("a", "127.0.0.1:1", 1)).await;
    let req = Request::post(format!("http://{}/", p.addr))
        .body(Full::from("pay"))
        .unwrap();
    let (status, headers, _) = send(p.addr, req).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert!(!headers.contains_key("x-understudy-refused"));
    assert_eq!(hits.load(Ordering::SeqCst), 1, "sent once, and only once");
}

/// Log output, for reading the access log back.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn access_lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains("understudy::access"))
            .map(String::from)
            .collect()
    }
}

#[tokio::test]
async fn the_access_log_has_one_line_per_request_when_asked_for() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    // A current-thread runtime: every task of this test logs through it.
    let _guard = tracing::subscriber::set_default(subscriber);
    let (a_addr, _) = app("a").await;
    let (b_addr, _) = app("b").await;
    let mut quiet = proxy_settings(a_addr);
    quiet.access_log = false;
    let pa = start_proxy(quiet, leading("a", "127.0.0.1:1", 4)).await;
    let pb = start_proxy(
        proxy_settings(b_addr),
        following("b", "a", &pa.addr.to_string(), 4),
    )
    .await;
    let (status, _, _) = get(pb.addr, "/x?y=1").await;
    assert_eq!(status, StatusCode::OK);
    let lines = logs.access_lines();
    assert_eq!(lines.len(), 1, "only b logs: {lines:?}");
    let line = &lines[0];
    for field in [
        "route=\"forward\"".to_string(),
        format!("peer=\"{}\"", pa.addr),
        "status=200".to_string(),
        "method=GET".to_string(),
        "uri=/x?y=1".to_string(),
        "client=127.0.0.1:".to_string(),
    ] {
        assert!(line.contains(&field), "{field} missing in {line}");
    }
    assert!(line.contains("duration_ms="), "{line}");
}

/// Opens an `Upgrade: echo` tunnel through `addr`; returns the stream after the 101 and
/// the app's greeting.
async fn open_tunnel(addr: SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
            1,
            "closed before the response head"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut greeting = [0u8; 2];
    s.read_exact(&mut greeting).await.unwrap();
    (s, String::from_utf8(greeting.to_vec()).unwrap())
}

async fn echo(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

async fn closed(s: &mut TcpStream) {
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("tunnel left open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn a_tunnel_through_a_standby_closes_when_leadership_moves() {
    let (pa, _app_a, pb, _app_b) = pair().await;
    let (mut tunnel, greeting) = open_tunnel(pb.addr).await;
    assert_eq!(greeting, "a>");
    echo(&mut tunnel, b"ping").await;
    // b takes over (a was lost): the tunnel to a must close, a new one reaches b.
    pa.views.send(leaderless("a")).unwrap();
    pb.views
        .send(leading("b", &pb.addr.to_string(), 5))
        .unwrap();
    closed(&mut tunnel).await;
    let (mut tunnel, greeting) = open_tunnel(pb.addr).await;
    assert_eq!(greeting, "b>");
    echo(&mut tunnel, b"pong").await;
}

#[tokio::test]
async fn a_leaders_local_tunnel_closes_when_it_stops_leading() {
    let (a_addr, _) = app("a").await;
    let pa = start_proxy(proxy_settings(a_addr), leading("a", "127.0.0.1:1", 3)).await;
    let (mut tunnel, greeting) = open_tunnel(pa.addr).await;
    assert_eq!(greeting, "a>");
    echo(&mut tunnel, b"ping").await;
    // The fencing deadline passes without a new view: that alone must close it.
    let mut view = leading("a", "127.0.0.1:1", 3);
    view.acting_until = Some(std::time::Instant::now() + Duration::from_millis(200));
    pa.views.send(view).unwrap();
    closed(&mut tunnel).await;
}

#[tokio::test]
async fn a_streaming_response_from_the_local_app_is_cut_when_leadership_ends() {
    use http_body_util::BodyExt;
    let (a_addr, _) = app("a").await;
    let pa = start_proxy(proxy_settings(a_addr), leading("a", "127.0.0.1:1", 3)).await;
    let resp = client()
        .request(
            Request::get(format!("http://{}/stream", pa.addr))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "a");
    pa.views
        .send(following("a", "b", "127.0.0.1:1", 4))
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("stream left open");
    assert!(
        !matches!(next, Some(Ok(_))),
        "stream must end with an error: {next:?}"
    );
}

#[tokio::test]
async fn h2c_with_trailers_passes_a_forward() {
    use http_body_util::BodyExt;
    let (_pa, _app_a, pb, _app_b) = pair().await;
    let h2: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let req = Request::get(format!("http://{}/trailers", pb.addr))
        .header("te", "trailers")
        .body(Full::default())
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.headers()["x-seen-via"], "2 understudy");
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), "a");
}

#[tokio::test]
async fn a_large_streamed_upload_and_download_pass_a_forward() {
    use http_body_util::{BodyExt, StreamBody};
    let (_pa, _app_a, pb, _app_b) = pair().await;
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 128; // 8 MiB, far past the replay buffer
    let frames = (0..CHUNKS).map(|i| {
        Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(vec![
            (i % 251) as u8;
            CHUNK
        ])))
    });
    let body = StreamBody::new(futures::stream::iter(frames));
    let client: hyper_util::client::legacy::Client<_, StreamBody<_>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = Request::post(format!("http://{}/echo", pb.addr))
        .body(body)
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            for (k, byte) in data.iter().enumerate() {
                assert_eq!(*byte, (((received + k) / CHUNK) % 251) as u8);
            }
            received += data.len();
        }
    }
    assert_eq!(received, CHUNK * CHUNKS);
}

/// A GET of `target` with one header (`accept: */*`), kept for its attempts.
fn get_head(target: &'static str) -> Head {
    let mut headers = HeaderMap::new();
    headers.insert("accept", http::HeaderValue::from_static("*/*"));
    Head {
        method: Method::GET,
        uri: Uri::from_static(target),
        version: Version::HTTP_11,
        headers,
    }
}

#[test]
fn a_request_heads_map_is_kept_for_the_next_head_once_the_head_is_dropped() {
    crate::h1::spare::forget();
    let head = get_head("/");
    assert_eq!(crate::h1::spare::kept(), 0);
    drop(head);
    assert_eq!(crate::h1::spare::kept(), 1);
    assert!(crate::h1::spare::map(6).is_empty(), "given back cleared");
}

#[test]
fn each_attempt_carries_only_its_own_added_headers() {
    let head = get_head("/x?y=1");
    let value = http::HeaderValue::from_static;
    let fencing = || {
        [
            (headers::LEADER, value("a")),
            (headers::EPOCH, value("3")),
            (headers::LEASE, value("web")),
        ]
    };
    let local = Target {
        authority: "127.0.0.1:8081".into(),
        tenure: Tenure::Local { epoch: 3 },
        route: Kind::Local,
        reach: Reach::Plain,
        load: None,
    };
    let first = head.request(&local, fencing(), ()).unwrap();
    assert_eq!(first.uri(), "http://127.0.0.1:8081/x?y=1");
    assert_eq!(first.headers()[headers::LEADER], "a");
    assert_eq!(first.headers()[headers::LEASE], "web");
    let forward = Target {
        authority: "10.0.0.2:8080".into(),
        tenure: Tenure::Peer {
            identity: "b".into(),
            epoch: 4,
        },
        route: Kind::Forward,
        reach: Reach::Mtls,
        load: None,
    };
    // A resend elsewhere: the first attempt's fencing token must not go along.
    let routing = [
        (headers::FOR, value("b")),
        (headers::HOPS, value("1")),
        (headers::HOLD_MS, value("900")),
    ];
    let second = head.request(&forward, routing, ()).unwrap();
    assert_eq!(
        second.uri(),
        "https://10.0.0.2:8080/x?y=1",
        "mTLS: to the peer port"
    );
    assert_eq!(second.headers()[headers::FOR], "b");
    assert_eq!(second.headers()["accept"], "*/*");
    for gone in [headers::LEADER, headers::EPOCH, headers::LEASE] {
        assert!(!second.headers().contains_key(&gone), "{gone} still set");
    }
    // And back: the routing headers go.
    let third = head.request(&local, fencing(), ()).unwrap();
    assert!(!third.headers().contains_key(headers::FOR));
    assert_eq!(third.headers()[headers::EPOCH], "3");
}

#[tokio::test]
async fn while_draining_http1_responses_ask_the_client_to_close() {
    let (a_addr, _app) = app("a").await;
    let p = start_proxy(proxy_settings(a_addr), leading("a", "127.0.0.1:1", 4)).await;
    let (_, headers, _) = get(p.addr, "/").await;
    assert!(
        !headers.contains_key(http::header::CONNECTION),
        "{headers:?}"
    );
    p.proxy.start_draining();
    // On one kept-alive connection: answered, told to close, and closed.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .expect("the connection closes after the response")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}

#[tokio::test]
async fn head_204_and_304_answers_carry_no_body_and_leave_the_connection_usable() {
    // Through a standby and the leader: if either hop sent a body after one of these, the
    // next response on the same connection would be garbled.
    let app_addr = serve(|req: Request<Incoming>, _| async move {
        let status = match req.uri().path() {
            "/204" => StatusCode::NO_CONTENT,
            "/304" => StatusCode::NOT_MODIFIED,
            _ => StatusCode::OK,
        };
        let body = if status == StatusCode::OK {
            "hello"
        } else {
            ""
        };
        let mut resp = Response::new(full(body));
        *resp.status_mut() = status;
        resp
    })
    .await;
    let (pa, pb) = leader_and_standby(app_addr).await;
    for addr in [pa.addr, pb.addr] {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        for (method, path, status, length) in [
            (Method::HEAD, "/", StatusCode::OK, Some("5")),
            (Method::GET, "/204", StatusCode::NO_CONTENT, None),
            (Method::GET, "/304", StatusCode::NOT_MODIFIED, None),
            (Method::GET, "/", StatusCode::OK, Some("5")),
        ] {
            let req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(header::HOST, "app")
                .body(Full::<Bytes>::default())
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), status, "{method} {path} via {addr}");
            let len = resp.headers().get(header::CONTENT_LENGTH);
            assert_eq!(len.map(|v| v.to_str().unwrap()), length, "{method} {path}");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let want = if method == Method::GET && length.is_some() {
                "hello"
            } else {
                ""
            };
            assert_eq!(body, want, "{method} {path} via {addr}");
        }
    }
}

/// An app that answers a `CONNECT` with 200, sends the request line it saw, then echoes.
async fn connect_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let line = head.split(|&b| b == b'\r').next().unwrap().to_vec();
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                let _ = s.write_all(&[&line[..], b"\n"].concat()).await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_connect_tunnel_passes_a_forward_with_its_target_intact() {
    let app_addr = connect_app().await;
    let (_pa, pb) = leader_and_standby(app_addr).await;
    let mut s = TcpStream::connect(pb.addr).await.unwrap();
    s.write_all(b"CONNECT example.test:443 HTTP/1.1\r\nhost: example.test:443\r\n\r\n")
        .await
        .unwrap();
    // The 200's head, then the app's line.
    let head = read_until(&mut s, b"\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let line = read_until(&mut s, b"\n").await;
    assert_eq!(
        line.trim(),
        "CONNECT example.test:443 HTTP/1.1",
        "the app sees the client's target"
    );
    echo(&mut s, b"ping").await;
}

/// Reads `s` up to and including `end`.
async fn read_until(s: &mut TcpStream, end: &[u8]) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(end) {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "closed: {got:?}");
        got.push(byte[0]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_new_term_of_the_same_leader_carries_its_own_fencing_token() {
    let (a_addr, _app) = app("a").await;
    let p = start_proxy(proxy_settings(a_addr), leading("a", "127.0.0.1:1", 4)).await;
    let (_, headers, _) = get(p.addr, "/").await;
    assert_eq!(headers["x-seen-x-understudy-epoch"], "4");
    p.views.send(leading("a", "127.0.0.1:1", 5)).unwrap();
    let (_, headers, _) = get(p.addr, "/").await;
    assert_eq!(headers["x-seen-x-understudy-epoch"], "5");
}

#[test]
fn kept_fencing_headers_are_those_of_the_leadership_asked_for() {
    let kept = target::FencingCache::default();
    let seen = |extra: target::Extra| extra.map(|(_, v)| v.to_str().unwrap().to_string());
    assert_eq!(seen(kept.headers("a", 3, "web")), ["a", "3", "web"]);
    assert_eq!(seen(kept.headers("a", 3, "web")), ["a", "3", "web"]);
    assert_eq!(seen(kept.headers("a", 4, "web")), ["a", "4", "web"]);
    assert_eq!(seen(kept.headers("b", 4, "web")), ["b", "4", "web"]);
    assert_eq!(seen(kept.headers("b", 4, "db")), ["b", "4", "db"]);
}

#[test]
fn kept_routing_headers_are_those_of_the_leader_and_the_time_left_asked_for() {
    let kept = target::RoutingCache::default();
    let seen = |f: &target::Forwarding| {
        let values = f
            .extra
            .clone()
            .map(|(_, v)| v.to_str().unwrap().to_string());
        (f.identity.to_string(), f.address.to_string(), values)
    };
    let first = kept.forward("a", "10.0.0.1:80", 1, 9_999);
    assert_eq!(
        seen(&first),
        (
            "a".into(),
            "10.0.0.1:80".into(),
            ["a", "1", "9999"].map(String::from)
        )
    );
    let again = kept.forward("a", "10.0.0.1:80", 1, 9_999);
    assert_eq!(seen(&again), seen(&first));
    // Kept, not built again: the second request's names and values share the first's bytes.
    let value = |f: &target::Forwarding, i: usize| f.extra[i].1.as_bytes().as_ptr();
    assert!(
        Arc::ptr_eq(&first.identity, &again.identity)
            && Arc::ptr_eq(&first.address, &again.address)
            && value(&first, 0) == value(&again, 0)
            && value(&first, 2) == value(&again, 2),
        "the names or the values were built again"
    );
    let hops = kept.forward("a", "10.0.0.1:80", 2, 9_998);
    assert_eq!(seen(&hops).2, ["a", "2", "9998"]);
    // The same leader at a new address (its pod recreated): the new address.
    let moved = kept.forward("a", "10.0.0.9:80", 1, 9_998);
    assert_eq!(seen(&moved).1, "10.0.0.9:80");
    assert_eq!(
        seen(&kept.forward("b", "10.0.0.2:80", 1, 9_998)).2,
        ["b", "1", "9998"]
    );
    // More leaders than are kept (N slots): each still gets its own name.
    for i in 0..20 {
        let name = format!("pod-{i}");
        let f = kept.forward(&name, &format!("10.0.1.{i}:80"), 1, 5);
        assert_eq!(
            (&*f.identity, f.extra[0].1.to_str().unwrap()),
            (&*name, &*name)
        );
    }
    let last = kept.forward("a", "10.0.0.1:80", 1, u64::MAX);
    assert_eq!(seen(&last).2[2], u64::MAX.to_string());
}

/// The HTTP/1 engine boxes the future of every request in flight. Within 1 KiB it is an
/// allocation from the allocator's per-thread cache (glibc's holds blocks of up to 1,032
/// bytes; at 1.7 KiB each request's took the slow path). What only some requests wait for
/// (a hold, a back-off, the rest of a held-back response) and the send itself are boxed
/// apart, and an attempt's own headers are not kept while its answer is awaited.
#[tokio::test]
async fn a_requests_future_fits_in_a_kilobyte() {
    let (_views, rx) = watch::channel(leading("a", "127.0.0.1:1", 4));
    let proxy = Proxy::new(proxy_settings(closed_port().await), rx, Metrics::default());
    let req = Request::get("/").body(Full::new(Bytes::new())).unwrap();
    let answer = proxy.handle(req, "127.0.0.1:1".parse().unwrap());
    let size = std::mem::size_of_val(&answer);
    assert!(size <= 1024, "a request's future takes {size} bytes");
}

/// An app that answers a request with `Expect` at once, `417` without reading its body (as
/// servers that answer early do), and any other with its request line after reading its
/// `Content-Length` body; one connection at a time, kept open. Its second value is every
/// request line it read and whether that request carried `Expect`.
async fn answers_expect_early() -> (SocketAddr, Arc<std::sync::Mutex<Vec<(String, bool)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let line = head.lines().next().unwrap_or("").to_string();
                let expect = head.lines().any(|l| l.starts_with("expect:"));
                buf.drain(..end + 4);
                log.lock().unwrap().push((line.clone(), expect));
                if expect {
                    let early = b"HTTP/1.1 417 Expectation Failed\r\ncontent-length: 0\r\n\r\n";
                    let _ = s.write_all(early).await;
                    continue;
                }
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                while buf.len() < length {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                buf.drain(..length);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{line}",
                    line.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        }
    });
    (addr, seen)
}

/// `Expect` is answered by the sidecar and not passed on: an app that answered it early
/// would otherwise take the body, sent at once, for a request of its own on the connection
/// kept for the next client (a request smuggled in the body of another).
#[tokio::test]
async fn expect_is_answered_by_the_sidecar_and_never_reaches_the_app() {
    let (app_addr, seen) = answers_expect_early().await;
    let p = start_proxy(proxy_settings(app_addr), leading("a", "127.0.0.1:1", 1)).await;
    let smuggled = "GET /admin HTTP/1.1\r\nhost: a\r\n\r\n";
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let post = format!(
        "POST /upload HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{smuggled}",
        smuggled.len()
    );
    c.write_all(post.as_bytes()).await.unwrap();
    let answer = until_closed(&mut c).await;
    assert!(
        answer.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"),
        "{answer}"
    );
    assert!(answer.ends_with("post /upload http/1.1"), "{answer}");
    // The next request goes out on the connection kept open to the app.
    let (status, _, body) = get(p.addr, "/next").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "get /next http/1.1")
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("post /upload http/1.1".to_string(), false),
            ("get /next http/1.1".to_string(), false)
        ]
    );
}

/// An app that reads one chunked request and answers `OK`; its second value is the request's
/// trailer section as it arrived (lower case).
async fn records_trailers() -> (SocketAddr, tokio::sync::oneshot::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // The head, then the last chunk, then the empty line that ends the trailers.
        let end = loop {
            let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
            let last = text
                .find("\r\n\r\n")
                .and_then(|h| text[h..].find("\r\n0\r\n").map(|l| h + l + 5));
            if let Some(end) = last.and_then(|l| text[l..].find("\r\n\r\n").map(|e| (l, l + e))) {
                break end;
            }
            if let Some(l) = last.filter(|&l| text[l..].starts_with("\r\n")) {
                break (l, l);
            }
            let k = s.read(&mut chunk).await.unwrap();
            assert!(k > 0, "the request ended early: {text}");
            buf.extend_from_slice(&chunk[..k]);
        };
        let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        let _ = tx.send(text[end.0..end.1].to_string());
        let _ = s.write_all(OK).await;
    });
    (addr, rx)
}

/// A client's trailers cannot hand the app a fencing fact, a length or a host: the app may
/// merge trailers into the head, and trusts `x-understudy-*` from its sidecar.
#[tokio::test]
async fn a_clients_trailers_reach_the_app_without_framing_routing_or_fencing_fields() {
    let (app_addr, trailers) = records_trailers().await;
    let p = start_proxy(proxy_settings(app_addr), leading("a", "127.0.0.1:1", 1)).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
          2\r\nhi\r\n0\r\nx-understudy-epoch: 99\r\nx-understudy-leader: me\r\n\
          content-length: 5\r\nhost: elsewhere\r\nx-checksum: abc\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = until_closed(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert_eq!(trailers.await.unwrap(), "x-checksum: abc");
}

/// Which host an HTTP/1 request is for must be plain (RFC 9112 section 3.2): an HTTP/1.1
/// request without `Host`, or any with two, is answered 400 and its connection closed;
/// HTTP/1.0 needs none; a target in absolute form names the host the app is told.
#[tokio::test]
async fn a_request_names_one_host_or_is_refused() {
    let (a_addr, app_a) = app("a").await;
    let p = start_proxy(proxy_settings(a_addr), leading("a", "127.0.0.1:1", 1)).await;
    for (request, status, says) in [
        (
            "GET / HTTP/1.1\r\n\r\n",
            "400",
            "an HTTP/1.1 request needs a Host header",
        ),
        (
            "GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
            "400",
            "more than one Host header",
        ),
        (
            "GET / HTTP/1.0\r\nhost: a\r\nhost: b\r\n\r\n",
            "400",
            "more than one Host header",
        ),
        (
            "GET http://b/ HTTP/1.1\r\n\r\n",
            "400",
            "an HTTP/1.1 request needs a Host header",
        ),
        ("GET / HTTP/1.0\r\n\r\n", "200", "x-seen-host: 127.0.0.1"),
        (
            "GET http://b.example/x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
            "200",
            "x-seen-host: b.example\r\n",
        ),
    ] {
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        c.write_all(request.as_bytes()).await.unwrap();
        let answer = until_closed(&mut c).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?}: {answer}"
        );
        assert!(answer.contains(says), "{request:?}: {answer}");
        if status == "400" {
            assert!(answer.contains("connection: close\r\n"), "{answer}");
        }
    }
    assert_eq!(app_a.hits(), 2, "only the last two reach the app");
}

/// A request body that breaks the chunked coding is the client's fault: 400 with the
/// engine's reason, as for a head that does, and not a 502 (nor a resend); one that comes
/// too slowly is a 408. Neither reaches the app whole.
#[tokio::test]
async fn a_body_that_breaks_the_chunked_coding_is_answered_400_and_a_late_one_408() {
    let (a_addr, _app) = app("a").await;
    let settings = ProxySettings {
        body_timeout: Duration::from_millis(300),
        ..proxy_settings(a_addr)
    };
    let p = start_proxy(settings, leading("a", "127.0.0.1:1", 1)).await;
    for (request, status, says) in [
        (
            &b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"[..],
            "400",
            "malformed chunked body",
        ),
        (
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc",
            "408",
            "--body-timeout",
        ),
    ] {
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        c.write_all(request).await.unwrap();
        let answer = until_closed(&mut c).await;
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{answer}");
        assert!(answer.contains(says), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(!answer.contains("a:"), "the app answered: {answer}");
    }
}

/// Over HTTP/2 too (where hyper's client reports only "stream error sent by user"), a body
/// that outlasts `--body-timeout` is a 408 naming it, not a 502.
#[tokio::test]
async fn an_http2_body_that_comes_too_late_is_answered_408() {
    use futures::StreamExt;
    use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
    use std::convert::Infallible;
    let (a_addr, _app) = app("a").await;
    let settings = ProxySettings {
        body_timeout: Duration::from_millis(300),
        ..proxy_settings(a_addr)
    };
    let p = start_proxy(settings, leading("a", "127.0.0.1:1", 1)).await;
    let h2: hyper_util::client::legacy::Client<_, UnsyncBoxBody<Bytes, Infallible>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    // Three bytes, then nothing, for ever.
    let first = futures::stream::iter([Ok(http_body::Frame::data(Bytes::from("abc")))]);
    let body = StreamBody::new(first.chain(futures::stream::pending()));
    let req = Request::post(format!("http://{}/", p.addr))
        .body(body.boxed_unsync())
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    let status = resp.status();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{text:?}");
    assert!(
        String::from_utf8_lossy(&text).contains("--body-timeout"),
        "{text:?}"
    );
}

/// An `Upgrade: h2c` is not passed on (an app that switched would carry HTTP/2 requests the
/// sidecar never sees): the request is served over HTTP/1.1, as RFC 9113 lets a server do.
#[tokio::test]
async fn an_h2c_upgrade_is_served_over_http1_and_never_reaches_the_app_as_one() {
    let (a_addr, _app) = app("a").await;
    let p = start_proxy(proxy_settings(a_addr), leading("a", "127.0.0.1:1", 1)).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: Upgrade, HTTP2-Settings, close\r\nupgrade: h2c\r\n\
          http2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = until_closed(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\na"), "{answer}");
    assert!(!answer.contains("x-seen-upgrade"), "{answer}");
    assert!(!answer.contains("x-seen-http2-settings"), "{answer}");
}

#[tokio::test]
async fn an_apps_response_in_a_transfer_coding_other_than_chunked_is_refused_not_mangled() {
    // The body is framed anew for the client, so a `gzip` coding would be lost and the
    // client left to read gzip as plain bytes: refused (nginx does so too). (A POST, which
    // is not sent again: the app answers the next attempt with `OK`.)
    for answer in [
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\nconnection: close\r\n\r\nz",
    ] {
        let (app_addr, _) = scripted(answer, false).await;
        let p = start_proxy(proxy_settings(app_addr), leading("a", "127.0.0.1:1", 1)).await;
        let req = Request::post(format!("http://{}/", p.addr))
            .body(Full::from("pay"))
            .unwrap();
        let (status, _, body) = send(p.addr, req).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert!(
            body.contains("Transfer-Encoding") || body.contains("transfer coding"),
            "{body}"
        );
    }
}

/// An app that answers early (a `413`) and then neither reads the rest of the body nor
/// closes: the client has its answer, and its connection is closed once the upload has had
/// its time and the client's bytes have been read and dropped for the linger's (five
/// seconds in tests), instead of being held open for as long as the app hangs.
#[tokio::test]
async fn an_early_answer_from_an_app_that_stops_reading_frees_the_clients_connection() {
    let (app, _) = scripted(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n",
        true,
    )
    .await;
    let p = start_proxy(proxy_settings(app), leading("a", "127.0.0.1:1", 1)).await;
    let (mut r, mut w) = TcpStream::connect(p.addr).await.unwrap().into_split();
    w.write_all(b"POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 1000000000000000\r\n\r\n")
        .await
        .unwrap();
    let sending = tokio::spawn(async move {
        // Paced, and bounded in time and count: far past the linger, far less than the
        // length.
        let piece = vec![b'q'; 64 << 10];
        let until = tokio::time::Instant::now() + Duration::from_secs(15);
        for _ in 0..4096 {
            if tokio::time::Instant::now() > until {
                break;
            }
            if w.write_all(&piece).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = r.read(&mut buf).await {
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // The answer's end (a FIN) says little: the socket is closed once the client's writes
    // fail, which they do only when nothing holds the sidecar's side any more.
    let failed = tokio::time::timeout(Duration::from_secs(20), sending)
        .await
        .expect("the client's connection is still held open");
    assert!(failed.unwrap(), "the whole body went through");
}

/// An app that answers each request as soon as its head is in (`early` to a POST, `again`
/// to anything else) and only then reads its `Content-Length` body.
async fn answers_before_the_body() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .split("content-length:")
                        .nth(1)
                        .and_then(|v| v.split("\r\n").next()?.trim().parse().ok())
                        .unwrap_or(0);
                    let text = if head.starts_with("post") {
                        "early"
                    } else {
                        "again"
                    };
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n{text}");
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    buf.drain(..end);
                    while buf.len() < length {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                    buf.drain(..length);
                }
            });
        }
    });
    addr
}

/// An app answers before the client has sent all its body, and the answer says keep-alive:
/// once the rest of the body is in, the connection serves the client's next request, as
/// the answer let it expect, instead of closing under it.
#[tokio::test]
async fn a_connection_answered_before_its_body_ended_serves_the_next_request() {
    let app = answers_before_the_body().await;
    let p = start_proxy(proxy_settings(app), leading("a", "127.0.0.1:1", 1)).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(b"POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nhello")
        .await
        .unwrap();
    let answer = until_ends_with(&mut c, "early").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");
    c.write_all(b"world").await.unwrap();
    c.write_all(b"GET /next HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let next = until_closed(&mut c).await;
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
    assert!(next.ends_with("again"), "{next}");
}

/// A request answered without its body read (held until the hold timeout; refused) closes
/// its connection; the client, still sending the body, can send all of it and then read the
/// answer, instead of a write failing on a reset (nginx's lingering close).
#[tokio::test]
async fn a_client_still_sending_an_unread_body_gets_its_answer_not_a_reset() {
    let (a_addr, _app) = app("a").await;
    let settings = ProxySettings {
        hold_timeout: Duration::from_millis(200),
        ..proxy_settings(a_addr)
    };
    let p = start_proxy(settings, leaderless("a")).await;
    for (framing, status) in [("", "503"), ("transfer-encoding: chunked\r\n", "400")] {
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        let head =
            format!("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: {UNREAD_BODY}\r\n{framing}\r\n");
        let answer = send_unread_body(&mut c, &head).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(answer.contains("connection: close\r\n"), "{answer}");
    }
}
