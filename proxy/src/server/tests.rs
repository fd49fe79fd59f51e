use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::io::AsyncWriteExt;

use tokio::net::TcpStream;

use super::*;
use crate::testing::{full, until_closed};

/// Serves with `limits`; `/slow` answers after 600ms of silence, anything else at once.
async fn start(limits: Limits) -> SocketAddr {
    start_with(limits, |req: Request<RequestBody>, _| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        Response::new(full("ok"))
    })
    .await
}

/// Serves `handler` with `limits` on a fresh port.
async fn start_with<F, Fut>(limits: Limits, handler: F) -> SocketAddr
where
    F: Fn(Request<RequestBody>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    tokio::spawn(serve(listener, limits, stop, tracker, handler));
    addr
}

/// The one limit a test is about.
const SHORT: Duration = Duration::from_millis(200);

fn limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        max_header_bytes: 8192,
        max_headers: 10,
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let addr = start(Limits {
        header_read_timeout: SHORT,
        ..limits()
    })
    .await;
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(until_closed(&mut s).await, "");
    assert!(started.elapsed() >= SHORT);
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_closed_after_the_header_read_timeout() {
    let addr = start(Limits {
        header_read_timeout: SHORT,
        ..limits()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let answer = until_closed(&mut s).await;
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_refused_with_431() {
    let addr = start(limits()).await;
    let many: String = (0..20).map(|i| format!("x-h{i}: v\r\n")).collect();
    let large = format!("x-big: {}\r\n", "v".repeat(16 * 1024));
    for extra in [many, large] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = format!("GET / HTTP/1.1\r\nhost: x\r\n{extra}\r\n");
        // The server may close before it has read everything; the answer is what counts.
        let _ = s.write_all(head.as_bytes()).await;
        let answer = until_closed(&mut s).await;
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{}",
            &answer[..answer.len().min(80)]
        );
    }
    // Within the limits, the same request is fine.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(until_closed(&mut s).await.starts_with("HTTP/1.1 200"));
}

/// A keep-alive HTTP/1.1 connection; the task ends when the server closes it.
async fn connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let closed = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, closed)
}

async fn ask(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> String {
    let req = Request::get(path)
        .header("host", "x")
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.expect("answered");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_a_slow_answer_is_not_cut() {
    let addr = start(Limits {
        idle_timeout: SHORT,
        ..limits()
    })
    .await;
    // Quiet for longer than the idle timeout while the handler works: still answered, and
    // the connection closes once the answer is out. An idle keep-alive connection goes after
    // the idle timeout.
    for path in ["/slow", "/"] {
        let started = Instant::now();
        let (mut send, closed) = connection(addr).await;
        assert_eq!(ask(&mut send, path).await, "ok");
        tokio::time::timeout(Duration::from_secs(3), closed)
            .await
            .unwrap_or_else(|_| panic!("{path}: connection left open"))
            .unwrap();
        assert!(started.elapsed() >= SHORT);
    }
}

#[tokio::test]
async fn connections_over_the_limit_get_503_and_are_closed() {
    let addr = start(Limits {
        connections: crate::limits::ConnectionLimit::unmetered(2),
        ..limits()
    })
    .await;
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let answer = until_closed(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    // A place frees up when a connection closes.
    drop(_a);
    let mut d = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = until_closed(&mut s).await;
        if answer.starts_with("HTTP/1.1 200 ") {
            d = Some(answer);
            break;
        }
    }
    assert!(d.is_some(), "no place freed up");
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_after_earlier_requests() {
    let smuggling = IntCounter::new("smuggling", "test").unwrap();
    let addr = start(Limits {
        smuggling: smuggling.clone(),
        ..limits()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\n\
          POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /after HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = until_closed(&mut s).await;
    let (first, second) = answer.split_at(answer.find("HTTP/1.1 400").expect(&answer));
    assert!(
        first.starts_with("HTTP/1.1 200 OK\r\n") && first.ends_with("ok"),
        "{answer}"
    );
    assert!(second.contains("connection: close\r\n"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer}");
    assert_eq!(smuggling.get(), 1);
}

/// A connection's task lives as long as the connection, and holds the HTTP/1 engine's
/// future inline: one per connection, 1,000 connections a thousand of them. What only some
/// connections need is boxed apart (HTTP/2, a TLS handshake, each request's answer).
#[tokio::test]
async fn a_connections_future_fits_in_a_kilobyte_and_a_half() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, client) = listener.accept().await.unwrap();
    let limits = limits();
    let http = Http {
        h2: Arc::new(hyper::server::conn::http2::Builder::new(
            TokioExecutor::new(),
        )),
        h1: Arc::new(h1_settings(&limits, CancellationToken::new())),
    };
    let handler = |_: Request<RequestBody>, _| async move { Response::new(full("ok")) };
    let serving = http.serve(crate::conn::accepted(stream, client), handler);
    let size = std::mem::size_of_val(&serving);
    assert!(size <= 1536, "a connection's future takes {size} bytes");
}

/// The idle timeout of [`start_h2`]: longer than [`SHORT`], because an HTTP/2 connection's
/// handshake does not count as moving (only its streams' frames do), and a loaded machine
/// may take that long between a test client's handshake and its request.
const H2_IDLE: Duration = Duration::from_millis(500);

/// Serves HTTP/2 answers with idle timeout [`H2_IDLE`]: `/big` 32 MiB in 64 KiB pieces, more
/// than the client's windows and the sockets' buffers hold; `/quiet` `q` and then
/// nothing, never ending (a long poll); `/now` `ok` at once; anything else `ok` after three
/// idle timeouts.
async fn start_h2() -> SocketAddr {
    use http_body_util::StreamBody;
    let limits = Limits {
        idle_timeout: H2_IDLE,
        ..limits()
    };
    start_with(limits, |req: Request<RequestBody>, _| async move {
        let piece = || Ok(http_body::Frame::data(Bytes::from(vec![b'x'; 64 << 10])));
        match req.uri().path() {
            "/big" => {
                let pieces = futures::stream::iter((0..512).map(move |_| piece()));
                Response::new(StreamBody::new(pieces).boxed_unsync())
            }
            "/now" => Response::new(full("ok")),
            "/quiet" => {
                let once = futures::stream::iter([Ok(http_body::Frame::data(Bytes::from("q")))]);
                let never = futures::stream::pending();
                let frames = futures::StreamExt::chain(once, never);
                Response::new(StreamBody::new(frames).boxed_unsync())
            }
            _ => {
                tokio::time::sleep(H2_IDLE * 3).await;
                Response::new(full("ok"))
            }
        }
    })
    .await
}

/// Whether an HTTP/2 test client sends PINGs.
#[derive(Clone, Copy)]
enum Pings {
    None,
    /// Every quarter of the server's idle timeout, whatever it has received (gRPC's
    /// keep-alive, made frequent).
    Often,
}

/// An HTTP/2 connection and a request on it; the task ends when the server closes it.
async fn h2_request(
    addr: SocketAddr,
    path: &str,
    pings: Pings,
) -> (
    Response<hyper::body::Incoming>,
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    if let Pings::Often = pings {
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_IDLE / 4)
            .keep_alive_while_idle(true);
    }
    let (mut send, conn) = builder.handshake(TokioIo::new(stream)).await.unwrap();
    let closed = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(format!("http://x{path}"))
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.expect("answered");
    (resp, send, closed)
}

/// Waits for the connection of [`h2_request`] to close; panics with `open` after 5 s.
async fn held_at_most_5s(closed: tokio::task::JoinHandle<()>, open: &str) {
    tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect(open)
        .unwrap();
}

/// PINGs are not reading: a client that keeps sending them (as gRPC's keep-alive does, here
/// far more often) while it reads none of its response is closed all the same, and so is one
/// that pings on a connection whose streams are done.
#[tokio::test]
async fn an_http2_client_that_only_pings_is_closed_all_the_same() {
    let addr = start_h2().await;
    let (_unread, _send, closed) = h2_request(addr, "/big", Pings::Often).await;
    held_at_most_5s(closed, "the connection is still held open").await;

    let (resp, _send, closed) = h2_request(addr, "/now", Pings::Often).await;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
    held_at_most_5s(closed, "an idle connection that only pings is still open").await;
}

/// An HTTP/2 frame: `payload` of type `kind` with `flags`, on `stream`.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// A hostile client that reads none of its response, and once the shutdown's last `GOAWAY`
/// has come sends frames for a stream that does not exist (which the `h2` crate ignores),
/// is closed all the same: after the `GOAWAY` only the frames the server sends count.
#[tokio::test]
async fn frames_for_a_stream_that_does_not_exist_do_not_hold_a_connection_shutting_down() {
    use tokio::io::AsyncReadExt;
    let addr = start_h2().await;
    let (mut read, write) = TcpStream::connect(addr).await.unwrap().into_split();
    let write = Arc::new(tokio::sync::Mutex::new(write));
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
    // GET /big (HPACK, names from the static table), END_STREAM | END_HEADERS.
    let block = [&[0x82, 0x86, 0x04, 4][..], b"/big", &[0x01, 1], b"x"].concat();
    hello.extend(h2_frame(0x1, 0x5, 1, &block));
    write.lock().await.write_all(&hello).await.unwrap();
    // Reads all that comes, answers PINGs (the server waits for one's answer before its last
    // GOAWAY), and sends no window update: the response stops at the first window.
    let (last_goaway, mut goaway) = tokio::sync::watch::channel(false);
    let pong = write.clone();
    let reader = tokio::spawn(async move {
        let mut head = [0u8; 9];
        while read.read_exact(&mut head).await.is_ok() {
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0; len];
            if read.read_exact(&mut payload).await.is_err() {
                break;
            }
            match head[3] {
                0x6 if head[4] & 0x1 == 0 => {
                    let ack = h2_frame(0x6, 0x1, 0, &payload);
                    let _ = pong.lock().await.write_all(&ack).await;
                }
                0x7 if payload[..4] != [0x7f, 0xff, 0xff, 0xff] => {
                    let _ = last_goaway.send(true);
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), goaway.wait_for(|&last| last))
        .await
        .expect("the last GOAWAY")
        .unwrap();
    // An empty DATA frame for a stream never opened, every quarter of the idle timeout,
    // until the server closes the connection (which must come while they keep coming).
    let bogus = h2_frame(0x0, 0, 0x7fff_ffff, &[]);
    let started = Instant::now();
    while !reader.is_finished() {
        let held = started.elapsed();
        assert!(
            held < Duration::from_secs(5),
            "still held open after {held:?}"
        );
        if write.lock().await.write_all(&bogus).await.is_err() {
            break;
        }
        tokio::time::sleep(H2_IDLE / 4).await;
    }
    tokio::time::timeout(Duration::from_secs(1), reader)
        .await
        .expect("closed")
        .unwrap();
}

/// A client that reads none of its HTTP/2 response holds neither its connection nor (through
/// the response's body) the app's for ever: once shutting down it moves no stream's frame
/// for the idle timeout again, it is closed. A stream that waits on its app is not the
/// client's doing: its connection stays.
#[tokio::test]
async fn an_http2_client_that_reads_none_of_its_response_is_closed_but_a_quiet_app_is_not_cut() {
    let addr = start_h2().await;
    // Held, never read: the client sends no window update, and the server's writes stop.
    let (_unread, _send, closed) = h2_request(addr, "/big", Pings::None).await;
    held_at_most_5s(closed, "the connection is still held open").await;

    let (resp, _send, mut closed) = h2_request(addr, "/quiet", Pings::None).await;
    let mut body = resp.into_body();
    let first = body.frame().await.expect("a frame").unwrap();
    assert_eq!(first.into_data().unwrap(), "q");
    let quiet = tokio::time::timeout(H2_IDLE * 6, &mut closed).await;
    assert!(quiet.is_err(), "a stream waiting on its app was cut");

    // No response head for three idle timeouts: answered all the same.
    let (resp, _send, _closed) = h2_request(addr, "/slow", Pings::None).await;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
}
