//! Hostile and malformed input, sent for real over TCP to a running `understudy`: request
//! smuggling attempts, oversized heads, slow clients, connection floods, forged internal
//! headers, and an app that answers garbage. After each case the sidecar must still serve
//! ordinary traffic, the app must have seen nothing it should not have, and the process's
//! memory must come back near its baseline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use understudy_tests::cluster::loopback::{Loopback, Sidecar, eventually};

/// One complete request the app received (its body read to the end).
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
}

/// How the app answers the next connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// Ordinary HTTP (hyper); `/slow` answers after 1.5s.
    Normal = 0,
    /// Not HTTP at all.
    Garbage = 1,
    /// A status line and then an unparsable `Content-Length`.
    BadLength = 2,
    /// A response head of 1 MiB.
    HugeHead = 3,
    /// 500 response headers.
    ManyHeaders = 4,
    /// Closes the connection without a word.
    Hangup = 5,
}

/// The app behind the sidecar: records every complete request it gets.
#[derive(Clone)]
struct App {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    mode: Arc<AtomicU8>,
}

impl App {
    async fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = App {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            mode: Arc::new(AtomicU8::new(Mode::Normal as u8)),
        };
        let me = app.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move { me.connection(stream).await });
            }
        });
        app
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// What the app saw besides the ordinary `/ok` probes.
    fn hostile(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path != "/ok")
            .collect()
    }

    async fn connection(self, mut stream: TcpStream) {
        let mode = self.mode.load(Ordering::SeqCst);
        if mode != Mode::Normal as u8 {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let answer: Vec<u8> = match mode {
                1 => b"\x00\x01garbage, not http\r\n\r\n".to_vec(),
                2 => b"HTTP/1.1 200 OK\r\ncontent-length: lots\r\n\r\nhello".to_vec(),
                3 => {
                    let mut v = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
                    v.extend(std::iter::repeat_n(b'a', 1 << 20));
                    v.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
                    v
                }
                4 => {
                    let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
                    for i in 0..500 {
                        v.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
                    }
                    v.extend_from_slice(b"content-length: 0\r\n\r\n");
                    v
                }
                _ => Vec::new(),
            };
            let _ = stream.write_all(&answer).await;
            return;
        }
        let seen = self.seen.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let seen = seen.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await?.to_bytes();
                if parts.uri.path() == "/slow" {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                seen.lock().unwrap().push(Seen {
                    path: parts.uri.path().to_string(),
                    headers: parts.headers.clone(),
                });
                Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(format!(
                    "app saw {} {} ({} body bytes)",
                    parts.method,
                    parts.uri.path(),
                    body.len()
                )))))
            }
        });
        // One request per connection, so that a mode change takes effect at once (the
        // sidecar's pool would otherwise reuse a well-behaved connection).
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http1().keep_alive(false);
        let _ = builder
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }
}

/// One sidecar, alone in its election (so it leads), in front of a recording app.
struct World {
    _cluster: Loopback,
    pod: Sidecar,
    app: App,
    listen: SocketAddr,
}

impl World {
    async fn start(election: &str, extra: &[&str]) -> World {
        let cluster = Loopback::start(election).await;
        let app = App::start().await;
        let pod = cluster
            .sidecar("pod-a")
            .upstream(app.addr)
            .args(extra)
            .start()
            .await;
        eventually(Duration::from_secs(15), || async {
            pod.leader_name().await.as_deref() == Some("pod-a")
        })
        .await;
        let listen = pod.listen.unwrap();
        let world = World {
            _cluster: cluster,
            pod,
            app,
            listen,
        };
        world.assert_serves().await;
        world
    }

    /// An ordinary request goes through to the app.
    async fn assert_serves(&self) {
        let before = self.app.seen().len();
        let answer = exchange(
            self.listen,
            b"GET /ok HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(answer.contains("app saw GET /ok"), "{answer}");
        assert_eq!(self.app.seen().len(), before + 1);
    }

    /// Resident memory of the sidecar process, KiB.
    fn rss_kib(&self) -> u64 {
        let pid = self
            .pod
            .child
            .as_ref()
            .and_then(|c| c.id())
            .expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// RSS came back near `baseline` (allocator caches may keep some: the bound is generous
    /// but far below what holding on to the hostile input would take).
    async fn assert_memory_near(&self, baseline: u64) {
        let bound = baseline + 24 * 1024;
        let mut rss = self.rss_kib();
        for _ in 0..50 {
            if rss <= bound {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            rss = self.rss_kib();
        }
        panic!("RSS {rss} KiB, baseline {baseline} KiB");
    }
}

/// Writes `request` on a fresh connection and reads until the sidecar closes it (panics if
/// it stays open for 10s); returns everything it sent.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The sidecar may answer and close before it has read everything: that is fine.
    let _ = s.write_all(request).await;
    until_closed(&mut s, Duration::from_secs(10)).await
}

async fn until_closed(s: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = s.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "connection still open after {within:?}; got {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(answer: &str) -> Option<u16> {
    answer.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test]
async fn malformed_and_smuggling_requests_are_refused_and_never_forwarded() {
    let w = World::start("hostile-parse", &[]).await;
    let baseline = w.rss_kib();
    let cases: &[(&str, &[u8])] = &[
        (
            "conflicting content-length",
            b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        ),
        (
            "content-length list",
            b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 5, 6\r\n\r\nhello!",
        ),
        (
            "non-numeric content-length",
            b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: +5\r\n\r\nhello",
        ),
        (
            "transfer-encoding not ending in chunked",
            b"POST /x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "transfer-encoding on HTTP/1.0",
            b"POST /x HTTP/1.0\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET /x HTTP/1.1\r\nhost: a\r\nx-folded: one\r\n two\r\n\r\n",
        ),
        (
            "space before colon",
            b"GET /x HTTP/1.1\r\nhost: a\r\ntransfer-encoding : chunked\r\n\r\n",
        ),
        (
            "bare CR in a header",
            b"GET /x HTTP/1.1\r\nhost: a\r\nx-a: b\rc\r\n\r\n",
        ),
        (
            "NUL in a header value",
            b"GET /x HTTP/1.1\r\nhost: a\r\nx-a: b\0c\r\n\r\n",
        ),
        ("request line with no version", b"GET /x\r\nhost: a\r\n\r\n"),
        ("not HTTP at all", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
        (
            "header without a name",
            b"GET /x HTTP/1.1\r\nhost: a\r\n: v\r\n\r\n",
        ),
    ];
    for (what, request) in cases {
        let answer = exchange(w.listen, request).await;
        assert_eq!(status_of(&answer), Some(400), "{what}: {answer:?}");
    }
    assert!(
        w.app.hostile().is_empty(),
        "forwarded: {:?}",
        w.app.hostile()
    );

    // Invalid chunk sizes: the head is fine, the body is not. The request must never reach
    // the app complete, and the connection ends.
    for (what, request) in [
        (
            "chunk size not hex",
            &b"POST /x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"[..],
        ),
        (
            "chunk size overflows",
            b"POST /x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk longer than its size",
            b"POST /x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
        ),
    ] {
        let answer = exchange(w.listen, request).await;
        assert!(
            !answer.contains("app saw"),
            "{what}: the app answered: {answer:?}"
        );
        // The client's fault, found after the head went on: 400, as for a bad head.
        assert_eq!(status_of(&answer), Some(400), "{what}: {answer:?}");
    }
    assert!(
        w.app.hostile().is_empty(),
        "forwarded: {:?}",
        w.app.hostile()
    );

    // Content-Length together with Transfer-Encoding, in either order and any case: 400 and
    // closed, nothing forwarded (not even re-framed), and the bytes a front end that trusted
    // Content-Length would have taken as a second request are never seen as one.
    let (answers, refused) = (
        "understudy_proxy_sidecar_answers_total",
        r#"code="400",reason="smuggling""#,
    );
    let refused_before = w.pod.metric(answers, refused).await;
    for (what, request) in [
        (
            "content-length, then transfer-encoding",
            &b"POST /cl-te HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n"[..],
        ),
        (
            "transfer-encoding, then content-length",
            b"POST /te-cl HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 30\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n",
        ),
        (
            "other case, bare LF",
            b"POST /te-cl HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nCONTENT-LENGTH: 3\n\n0\r\n\r\n",
        ),
    ] {
        let answer = exchange(w.listen, request).await;
        assert_eq!(status_of(&answer), Some(400), "{what}: {answer:?}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{what}: {answer:?}");
    }
    // After a valid request on the same connection: that one is answered first.
    let answer = exchange(
        w.listen,
        b"GET /ok HTTP/1.1\r\nhost: a\r\n\r\n\
          POST /cl-te HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await;
    let second = answer.find("HTTP/1.1 400 ").expect(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
    assert!(answer[..second].contains("app saw GET /ok"), "{answer:?}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer:?}");
    assert!(
        w.app.hostile().is_empty(),
        "forwarded: {:?}",
        w.app.hostile()
    );
    assert_eq!(w.pod.metric(answers, refused).await - refused_before, 4.0);

    // Bare LF line ends in a head (RFC 9112 §2.2 lets a recipient accept them; front ends
    // disagree on them): 400, closed, never forwarded. In the request line, a header line,
    // and as the empty line that ends the head.
    let refused_before = w.pod.metric(answers, refused).await;
    for request in [
        &b"GET /bare-lf HTTP/1.1\nhost: a\r\n\r\n"[..],
        b"GET /bare-lf HTTP/1.1\r\nhost: a\nx-b: c\r\n\r\n",
        b"GET /bare-lf HTTP/1.1\r\nhost: a\r\n\n",
        b"GET /bare-lf HTTP/1.1\nhost: a\nconnection: close\n\n",
    ] {
        let answer = exchange(w.listen, request).await;
        assert_eq!(
            status_of(&answer),
            Some(400),
            "{:?}: {answer:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert!(
        w.app.seen().iter().all(|s| s.path != "/bare-lf"),
        "forwarded: {:?}",
        w.app.seen()
    );
    assert_eq!(w.pod.metric(answers, refused).await - refused_before, 4.0);

    w.assert_serves().await;
    w.assert_memory_near(baseline).await;
}

#[tokio::test]
async fn oversized_heads_get_414_and_431() {
    let w = World::start("hostile-size", &["--max-header-bytes", "16384"]).await;
    let baseline = w.rss_kib();
    let long_target = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "a".repeat(9 * 1024));
    let answer = exchange(w.listen, long_target.as_bytes()).await;
    assert_eq!(status_of(&answer), Some(414), "{answer:?}");

    let huge_line = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "a".repeat(64 * 1024));
    let answer = exchange(w.listen, huge_line.as_bytes()).await;
    assert!(matches!(status_of(&answer), Some(414 | 431)), "{answer:?}");

    let big_header = format!(
        "GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "b".repeat(20 * 1024)
    );
    let answer = exchange(w.listen, big_header.as_bytes()).await;
    assert_eq!(status_of(&answer), Some(431), "{answer:?}");

    let mut many = String::from("GET / HTTP/1.1\r\nhost: a\r\n");
    for i in 0..150 {
        many.push_str(&format!("x-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let answer = exchange(w.listen, many.as_bytes()).await;
    assert_eq!(status_of(&answer), Some(431), "{answer:?}");

    // A head that never ends, streamed well past the limit.
    let mut s = TcpStream::connect(w.listen).await.unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n").await;
    let chunk = format!("x-pad: {}\r\n", "c".repeat(1000));
    for _ in 0..64 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let answer = until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(
        answer.is_empty() || status_of(&answer) == Some(431),
        "{answer:?}"
    );

    assert!(
        w.app.hostile().is_empty(),
        "forwarded: {:?}",
        w.app.hostile()
    );
    w.assert_serves().await;
    w.assert_memory_near(baseline).await;
}

#[tokio::test]
async fn slow_clients_are_cut_off_by_the_timeouts() {
    let w = World::start(
        "hostile-slow",
        &["--header-read-timeout", "1s", "--body-timeout", "2s"],
    )
    .await;
    let baseline = w.rss_kib();

    // Slowloris: a head trickled a byte every 100ms would take 6s; it is cut at ~1s.
    let started = tokio::time::Instant::now();
    let mut s = TcpStream::connect(w.listen).await.unwrap();
    let head = format!(
        "GET /trickle HTTP/1.1\r\nhost: a\r\nx-pad: {}\r\n\r\n",
        "p".repeat(30)
    );
    let mut cut = false;
    for b in head.as_bytes() {
        if s.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut probe = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(_)) => {
                // A 408 or the like, then the close.
                let _ = until_closed(&mut s, Duration::from_secs(3)).await;
                cut = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(cut, "the trickled head was read to the end");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut only after {:?}",
        started.elapsed()
    );

    // A slow body: a byte every 100ms of a 100-byte body would take 10s; the body timeout
    // ends the request at ~2s, and with it the connection.
    let started = tokio::time::Instant::now();
    let mut s = TcpStream::connect(w.listen).await.unwrap();
    s.write_all(b"POST /slow-body HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    let mut closed = false;
    let mut got = Vec::new();
    for _ in 0..100 {
        if s.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    if !closed {
        got.extend(until_closed(&mut s, Duration::from_secs(3)).await.bytes());
    }
    let answer = String::from_utf8_lossy(&got);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "slow body allowed for {:?}",
        started.elapsed()
    );
    assert!(!answer.contains("app saw"), "{answer:?}");
    assert_eq!(status_of(&answer), Some(408), "{answer:?}");
    assert!(
        w.app.seen().iter().all(|s| s.path != "/slow-body"),
        "the slow body reached the app complete"
    );

    w.assert_serves().await;
    w.assert_memory_near(baseline).await;
}

#[tokio::test]
async fn idle_connections_are_bounded_and_the_admin_port_stays_responsive() {
    let w = World::start("hostile-flood", &["--max-connections", "32"]).await;
    let baseline = w.rss_kib();
    let mut idle = Vec::new();
    for _ in 0..32 {
        idle.push(TcpStream::connect(w.listen).await.unwrap());
    }
    // Each of the next ones is told 503 with Retry-After and closed, at once.
    for _ in 0..64 {
        let mut s = TcpStream::connect(w.listen).await.unwrap();
        let answer = until_closed(&mut s, Duration::from_secs(5)).await;
        assert_eq!(status_of(&answer), Some(503), "{answer:?}");
        assert!(answer.contains("retry-after: 1"), "{answer:?}");
    }
    let started = tokio::time::Instant::now();
    let (status, _) = w.pod.admin_get("/status").await.expect("admin answers");
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        w.pod
            .metric("understudy_proxy_connections_rejected_total", "")
            .await
            >= 64.0
    );
    assert_eq!(
        w.pod.metric("understudy_proxy_connections_open", "").await,
        32.0
    );

    drop(idle);
    eventually(Duration::from_secs(5), || async {
        w.pod.metric("understudy_proxy_connections_open", "").await == 0.0
    })
    .await;
    w.assert_serves().await;
    w.assert_memory_near(baseline).await;
}

#[tokio::test]
async fn concurrent_requests_are_bounded_with_503() {
    let w = World::start("hostile-requests", &["--max-requests", "2"]).await;
    let slow = || async {
        exchange(
            w.listen,
            b"GET /slow HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .await
    };
    let over = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        exchange(
            w.listen,
            b"GET /third HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .await
    };
    let (a, b, c) = tokio::join!(slow(), slow(), over);
    assert_eq!(status_of(&a), Some(200), "{a:?}");
    assert_eq!(status_of(&b), Some(200), "{b:?}");
    assert_eq!(status_of(&c), Some(503), "{c:?}");
    assert!(c.to_ascii_lowercase().contains("retry-after: 1"), "{c:?}");
    assert!(w.app.seen().iter().all(|s| s.path != "/third"));
    assert_eq!(
        w.pod
            .metric(
                "understudy_proxy_sidecar_answers_total",
                r#"code="503",reason="request_limit""#,
            )
            .await,
        1.0
    );
    w.assert_serves().await;
}

#[tokio::test]
async fn bad_app_responses_become_502() {
    let w = World::start("hostile-app", &[]).await;
    let baseline = w.rss_kib();
    for mode in [
        Mode::Garbage,
        Mode::BadLength,
        Mode::HugeHead,
        Mode::ManyHeaders,
        Mode::Hangup,
    ] {
        w.app.set(mode);
        // POST: not idempotent, so it is not resent.
        let answer = exchange(
            w.listen,
            b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
        )
        .await;
        assert_eq!(status_of(&answer), Some(502), "{mode:?}: {answer:?}");
        // GET may be resent, then ends the same way.
        let answer = exchange(
            w.listen,
            b"GET /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status_of(&answer), Some(502), "{mode:?}: {answer:?}");
        w.app.set(Mode::Normal);
        w.assert_serves().await;
    }
    w.assert_memory_near(baseline).await;
}

#[tokio::test]
async fn forged_internal_headers_gain_nothing() {
    let w = World::start("hostile-forged", &[]).await;
    // Claims to be a forward meant for this pod, with a huge hold budget, and brings its
    // own fencing token.
    let answer = exchange(
        w.listen,
        b"GET /forged HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\
          x-understudy-for: pod-a\r\nx-understudy-hops: 1\r\nx-understudy-hold-ms: 999999999\r\n\
          x-understudy-leader: mallory\r\nx-understudy-epoch: 999999\r\n\
          X-Understudy-Leader: mallory\r\nx-understudy-refused: pod-a\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), Some(200), "{answer:?}");
    let seen = w.app.seen();
    let forged = seen.iter().find(|s| s.path == "/forged").expect("reached");
    let leader: Vec<_> = forged
        .headers
        .get_all("x-understudy-leader")
        .iter()
        .collect();
    assert_eq!(leader, ["pod-a"], "fencing identity injected");
    let epoch: Vec<_> = forged
        .headers
        .get_all("x-understudy-epoch")
        .iter()
        .collect();
    assert_eq!(epoch.len(), 1);
    assert_ne!(epoch[0], "999999", "fencing epoch injected");
    for name in [
        "x-understudy-for",
        "x-understudy-hops",
        "x-understudy-hold-ms",
        "x-understudy-refused",
    ] {
        assert!(!forged.headers.contains_key(name), "{name} reached the app");
    }

    // Hop count at and past the bound, garbage hop counts: internal headers are dropped
    // and the request is a client's, or refused with 421; never looped, never a crash.
    for hops in ["2", "3", "255", "-1", "99999999999999999999", "1, 1"] {
        let request = format!(
            "GET /hops HTTP/1.1\r\nhost: a\r\nconnection: close\r\nx-understudy-for: pod-a\r\nx-understudy-hops: {hops}\r\n\r\n"
        );
        let answer = exchange(w.listen, request.as_bytes()).await;
        assert!(
            matches!(status_of(&answer), Some(200 | 421)),
            "hops {hops}: {answer:?}"
        );
    }
    // Meant for another pod: refused with 421, nothing reaches the app.
    let before = w.app.seen().len();
    let answer = exchange(
        w.listen,
        b"GET /elsewhere HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\
          x-understudy-for: pod-z\r\nx-understudy-hops: 1\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), Some(421), "{answer:?}");
    assert_eq!(w.app.seen().len(), before);
    // Hop-by-hop headers named by the client do not take the fencing headers away.
    let answer = exchange(
        w.listen,
        b"GET /conn HTTP/1.1\r\nhost: a\r\nconnection: close, x-understudy-leader, x-understudy-epoch\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), Some(200), "{answer:?}");
    let seen = w.app.seen();
    let conn = seen.iter().find(|s| s.path == "/conn").expect("reached");
    assert!(conn.headers.contains_key("x-understudy-leader"));
    assert!(conn.headers.contains_key("x-understudy-epoch"));
    w.assert_serves().await;
}

#[tokio::test]
async fn the_admin_port_changes_nothing_whatever_is_sent() {
    let w = World::start("hostile-admin", &[]).await;
    let (_, before) = w.pod.admin_get("/status").await.unwrap();
    let epoch = |status: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(status).unwrap();
        serde_json::json!([v["leader"], v["epoch"], v["role"]])
    };
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in [
            "/",
            "/healthz",
            "/readyz",
            "/status",
            "/actives",
            "/metrics",
            "/release",
            "/step-down",
            "/shutdown",
            "/debug",
        ] {
            let request = format!(
                "{method} {path} HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
            );
            let answer = exchange(w.pod.admin, request.as_bytes()).await;
            assert!(status_of(&answer).is_some(), "{method} {path}: {answer:?}");
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, after) = w.pod.admin_get("/status").await.unwrap();
    assert_eq!(epoch(&before), epoch(&after));
    assert_eq!(w.pod.leader_name().await.as_deref(), Some("pod-a"));
    w.assert_serves().await;
}
