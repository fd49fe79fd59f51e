//! The engine's server on raw bytes: what a client sees on the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use futures::StreamExt;
use http::HeaderValue;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use super::*;
use crate::BoxError;
use crate::server::{Limits, RequestBody as Any, serve as serve_any};
use crate::testing::{UNREAD_BODY, full, send_unread_body, until_closed, until_ends_with};

/// The length of `/big`'s answer: more than the sockets' buffers hold.
const BIG: usize = 64 << 20;

/// What the test handler saw.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    /// Set when a `/hang` request's handler was dropped before it answered.
    cancelled: AtomicBool,
}

struct Hang(Arc<Seen>);

impl Drop for Hang {
    fn drop(&mut self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
    }
}

/// Serves the test handler with `limits` until `stop` is cancelled:
/// `/echo` streams the body back, `/ignore` answers without reading it, `/keep-body`
/// answers and keeps the body unread for a minute, `/big` answers
/// [`BIG`] bytes, `/slow-stream` pauses 0.9 s in its body, `/hang` never
/// answers, `/no-switch` refuses (403), `/stream` answers a body of unknown length, `/trailers` one with trailers,
/// `/fail` one that fails after its first piece, `/upgrade` switches to an echo; anything
/// else answers `<method> <path>`.
async fn start_with(limits: Limits, stop: CancellationToken) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counted = seen.clone();
    tokio::spawn(serve_any(
        listener,
        limits,
        stop,
        TaskTracker::new(),
        move |mut req: Request<Any>, _| {
            let seen = counted.clone();
            async move {
                seen.requests.fetch_add(1, Ordering::SeqCst);
                match req.uri().path() {
                    "/echo" => Response::new(req.into_body().boxed_unsync()),
                    "/ignore" => Response::new(full("ignored")),
                    "/keep-body" => {
                        // Held, unread, for a minute: an upload stuck behind an app that
                        // answered and stopped reading.
                        let body = req.into_body();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            drop(body);
                        });
                        Response::new(full("kept"))
                    }
                    "/slow-stream" => {
                        // A piece, then another after a pause longer than the tests' idle
                        // timeout: an app slow to produce its body.
                        let pieces = futures::stream::iter(["a", "b"]).then(|p| async move {
                            if p == "b" {
                                tokio::time::sleep(Duration::from_millis(900)).await;
                            }
                            Ok::<_, BoxError>(Frame::data(Bytes::from(p)))
                        });
                        let body = http_body_util::StreamBody::new(pieces);
                        Response::new(body.boxed_unsync())
                    }
                    "/big" => Response::new(
                        http_body_util::Full::new(Bytes::from(vec![b'b'; BIG]))
                            .map_err(BoxError::from)
                            .boxed_unsync(),
                    ),
                    "/hang" => {
                        let _hang = Hang(seen);
                        std::future::pending().await
                    }
                    "/stream" => {
                        let pieces =
                            ["a", "b"].map(|p| Ok::<_, BoxError>(Frame::data(Bytes::from(p))));
                        let body = http_body_util::StreamBody::new(futures::stream::iter(pieces));
                        Response::new(body.boxed_unsync())
                    }
                    "/trailers" => {
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", HeaderValue::from_static("0"));
                        trailers.insert("x-secret", HeaderValue::from_static("1"));
                        let frames = [
                            Ok::<_, BoxError>(Frame::data(Bytes::from("t"))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
                        let mut resp = Response::new(body.boxed_unsync());
                        resp.headers_mut()
                            .insert("trailer", HeaderValue::from_static("grpc-status"));
                        resp
                    }
                    "/fail" => {
                        let frames = [
                            Ok::<_, BoxError>(Frame::data(Bytes::from("part"))),
                            Err(BoxError::from("the app died")),
                        ];
                        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
                        Response::new(body.boxed_unsync())
                    }
                    "/no-switch" => {
                        let mut resp = Response::new(full("no"));
                        *resp.status_mut() = StatusCode::FORBIDDEN;
                        resp
                    }
                    "/upgrade" => {
                        let on = ClientUpgrade::take(req.extensions_mut()).expect("an upgrade");
                        tokio::spawn(async move {
                            let mut io = on.upgraded().await.unwrap();
                            let mut buf = [0u8; 64];
                            while let Ok(n @ 1..) = io.read(&mut buf).await {
                                if io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        });
                        let mut resp = Response::new(full(""));
                        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                        resp.headers_mut()
                            .insert("upgrade", HeaderValue::from_static("echo"));
                        resp.headers_mut()
                            .insert("connection", HeaderValue::from_static("upgrade"));
                        resp
                    }
                    path => Response::new(full(format!("{} {path}", req.method()))),
                }
            }
        },
    ));
    (addr, seen)
}

async fn start() -> (SocketAddr, Arc<Seen>) {
    start_with(Limits::default(), CancellationToken::new()).await
}

/// Reads until `n` complete responses framed by `content-length` or chunked (a test's own,
/// simple framing) have come; panics after 3 s.
async fn responses(s: &mut TcpStream, n: usize) -> Vec<String> {
    responses_after(s, &mut Vec::new(), n).await
}

/// [`responses`], with `buf` holding what was read past them (and bytes read before).
async fn responses_after(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), async {
        while got.len() < n {
            if let Some(len) = complete(buf) {
                got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
                buf.drain(..len);
                continue;
            }
            let mut chunk = [0u8; 4096];
            let read = s.read(&mut chunk).await.unwrap();
            assert!(
                read > 0,
                "closed after {got:?} and {:?}",
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&chunk[..read]);
        }
    })
    .await
    .expect("responses in time");
    got
}

/// The length of the first complete response in `buf`, if there is one.
fn complete(buf: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(buf).ok()?;
    let end = text.find("\r\n\r\n")? + 4;
    let head = text[..end].to_ascii_lowercase();
    if head.starts_with("http/1.1 1") && !head.starts_with("http/1.1 101") {
        return Some(end);
    }
    if let Some(at) = head.find("content-length: ") {
        let len: usize = head[at + 16..].split("\r\n").next()?.parse().ok()?;
        return (buf.len() >= end + len).then_some(end + len);
    }
    if head.contains("transfer-encoding: chunked") {
        return text[end..].find("0\r\n\r\n").map(|at| end + at + 5);
    }
    Some(end)
}

fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test]
async fn pipelined_requests_with_bodies_are_answered_in_order_on_one_connection() {
    let (addr, seen) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello\
          POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
          GET /third HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let got = responses(&mut s, 3).await;
    assert_eq!(body_of(&got[0]), "hello");
    assert!(got[0].contains("content-length: 5\r\n"), "{}", got[0]);
    // A body of unknown length to HTTP/1.1: chunked, as it came.
    assert_eq!(body_of(&got[1]), "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    assert_eq!(body_of(&got[2]), "GET /third");
    assert!(
        got[2].to_ascii_lowercase().contains("\r\ndate: "),
        "{}",
        got[2]
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
    // Still open for a fourth.
    s.write_all(b"GET /4 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let last = until_closed(&mut s).await;
    assert!(last.contains("connection: close\r\n"), "{last}");
    assert_eq!(body_of(&last), "GET /4");
}

#[tokio::test]
async fn expect_100_continue_is_answered_when_the_body_is_read_and_not_before() {
    let (addr, _) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n",
    )
    .await
    .unwrap();
    // The client waits for the go-ahead before it sends the body.
    let mut buf = Vec::new();
    let cont = responses_after(&mut s, &mut buf, 1).await;
    assert_eq!(cont[0], "HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"ok").await.unwrap();
    let got = responses_after(&mut s, &mut buf, 1).await;
    assert!(got[0].starts_with("HTTP/1.1 200"), "{}", got[0]);
    assert_eq!(body_of(&got[0]), "ok");

    // Answered without reading the body: no 100, and the connection closes after the
    // answer (what the client would send next is the body, not a request).
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /ignore HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
}

#[tokio::test]
async fn a_request_smuggled_in_an_unread_body_is_never_served() {
    let (addr, seen) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let smuggled = "GET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n";
    let head = format!(
        "POST /ignore HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = until_closed(&mut s).await;
    assert_eq!(body_of(&answer), "ignored");
    assert!(!answer.contains("/smuggled"), "{answer}");
    // Known before the answer went: said in it.
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bytes_behind_an_upgrade_that_was_refused_are_never_a_request() {
    // A front end that took them for tunnel data would never have looked at them.
    let (addr, seen) = start().await;
    for head in [
        "GET /no-switch HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
        "CONNECT /no-switch HTTP/1.1\r\nhost: a\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let all = format!("{head}GET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n");
        s.write_all(all.as_bytes()).await.unwrap();
        let answer = until_closed(&mut s).await;
        assert!(!answer.contains("/smuggled"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refused_heads_are_answered_with_the_reason_counted_and_closed() {
    let smuggling = IntCounter::new("smuggling", "test").unwrap();
    let limits = Limits {
        smuggling: smuggling.clone(),
        ..Limits::default()
    };
    let (addr, seen) = start_with(limits, CancellationToken::new()).await;
    for (bytes, status, reason, counted) in [
        (
            &b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"[..],
            "400",
            "both Content-Length and Transfer-Encoding",
            1,
        ),
        (&b"GET / HTTP/1.1\nhost: a\r\n\r\n"[..], "400", "CRLF", 2),
        (&b"GET / HTTP/1.1\r\nhost : a\r\n\r\n"[..], "400", "malformed request head", 2),
        (
            &b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1, 2\r\n\r\n"[..],
            "400",
            "invalid Content-Length",
            2,
        ),
        (
            &b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n"[..],
            "501",
            "a transfer coding other than chunked is not supported",
            2,
        ),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // An answered request first: the refusal comes after it, on the same connection.
        let mut all = b"GET /first HTTP/1.1\r\nhost: a\r\n\r\n".to_vec();
        all.extend_from_slice(bytes);
        s.write_all(&all).await.unwrap();
        let answer = until_closed(&mut s).await;
        let at = answer.find(&format!("HTTP/1.1 {status}")).expect(&answer);
        let (first, refusal) = answer.split_at(at);
        assert!(first.ends_with("GET /first"), "{answer}");
        assert!(refusal.starts_with(&format!("HTTP/1.1 {status}")), "{refusal}");
        assert!(refusal.contains(reason), "{refusal}");
        assert!(refusal.contains("connection: close\r\n"), "{refusal}");
        assert_eq!(smuggling.get(), counted, "{reason}");
    }
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        5,
        "only the first ones"
    );
}

#[tokio::test]
async fn a_written_responses_header_map_is_kept_for_the_next_head() {
    // (The test's runtime, the server and the handler share this thread, and its keeping.)
    crate::h1::spare::forget();
    let (addr, _) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /trailers HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let got = responses(&mut s, 1).await;
    assert!(got[0].starts_with("HTTP/1.1 200"), "{}", got[0]);
    assert_eq!(crate::h1::spare::kept(), 1, "the response's map, kept");
}

#[tokio::test]
async fn http_10_clients_get_close_framed_bodies_and_keep_alive_only_when_asked() {
    let (addr, _) = start().await;
    // Unknown length: no chunked coding for 1.0; the close ends the body.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /stream HTTP/1.0\r\n\r\n").await.unwrap();
    let answer = until_closed(&mut s).await;
    assert!(!answer.contains("transfer-encoding"), "{answer}");
    assert_eq!(body_of(&answer), "ab");
    // Keep-alive when asked, and said so.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /one HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let got = responses(&mut s, 1).await;
    assert!(got[0].contains("connection: keep-alive\r\n"), "{}", got[0]);
    s.write_all(b"GET /two HTTP/1.0\r\n\r\n").await.unwrap();
    let last = until_closed(&mut s).await;
    assert_eq!(body_of(&last), "GET /two");
}

/// A connection whose `/hang` request the handler has begun, and what the server saw.
async fn a_hanging_request() -> (TcpStream, Arc<Seen>) {
    let (addr, seen) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /hang HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    while seen.requests.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    assert!(!seen.cancelled.load(Ordering::SeqCst));
    (s, seen)
}

/// Waits for the `/hang` handler to be dropped; panics after 3 s.
async fn until_cancelled(seen: &Seen) {
    tokio::time::timeout(Duration::from_secs(3), async {
        while !seen.cancelled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the handler was dropped");
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_request() {
    let (s, seen) = a_hanging_request().await;
    drop(s);
    until_cancelled(&seen).await;
}

/// A half-close (the client shuts down only its sending side after its request) counts as
/// going away, as with nginx, Envoy and Pingora by default (docs/operating.md).
#[tokio::test]
async fn a_client_that_half_closes_after_its_request_cancels_it_too() {
    let (mut s, seen) = a_hanging_request().await;
    s.shutdown().await.unwrap();
    until_cancelled(&seen).await;
    // And the connection was closed, not left open with nothing to come.
    assert_eq!(until_closed(&mut s).await, "");
}

#[tokio::test]
async fn trailers_go_only_to_clients_that_accept_them_and_only_those_declared() {
    let (addr, _) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /trailers HTTP/1.1\r\nhost: a\r\nte: trailers\r\n\r\nGET /trailers HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let got = responses(&mut s, 2).await;
    assert_eq!(body_of(&got[0]), "1\r\nt\r\n0\r\ngrpc-status: 0\r\n\r\n");
    assert_eq!(body_of(&got[1]), "1\r\nt\r\n0\r\n\r\n");
}

#[tokio::test]
async fn a_response_body_that_fails_ends_the_connection_without_a_last_chunk() {
    let (addr, _) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /fail HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut s).await;
    assert_eq!(body_of(&answer), "4\r\npart\r\n", "cut, not ended");
}

#[tokio::test]
async fn an_upgrade_gets_the_connection_with_the_bytes_sent_behind_the_head() {
    let (addr, _) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The first tunnel bytes come in the same write as the head.
    s.write_all(
        b"GET /upgrade HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\nearly",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let head = responses_after(&mut s, &mut buf, 1).await;
    assert!(head[0].starts_with("HTTP/1.1 101"), "{}", head[0]);
    assert!(!head[0].contains("connection: close"), "{}", head[0]);
    let mut echoed = [0u8; 5];
    let early = buf.len().min(5);
    echoed[..early].copy_from_slice(&buf[..early]);
    s.read_exact(&mut echoed[early..]).await.unwrap();
    assert_eq!(&echoed, b"early");
    s.write_all(b"later").await.unwrap();
    s.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"later");
}

#[tokio::test]
async fn once_stopped_a_request_in_flight_is_answered_with_close_and_none_is_waited_for() {
    let stop = CancellationToken::new();
    let (addr, _) = start_with(Limits::default(), stop.clone()).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut busy = TcpStream::connect(addr).await.unwrap();
    // The body is still to come when the server stops.
    busy.write_all(b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\n\r\nab")
        .await
        .unwrap();
    idle.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    responses(&mut idle, 1).await;
    stop.cancel();
    assert_eq!(until_closed(&mut idle).await, "", "closed between requests");
    busy.write_all(b"cd").await.unwrap();
    // Answered whole, then closed (not waited on for another request).
    let answer = until_closed(&mut busy).await;
    assert_eq!(body_of(&answer), "abcd");
}

#[tokio::test]
async fn a_request_body_the_client_cuts_fails_for_the_handler() {
    let (addr, _) = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    // The echo's body fails; the response (begun chunked) is cut, never ended.
    let answer = until_closed(&mut s).await;
    assert!(!answer.ends_with("0\r\n\r\n"), "{answer}");
}

#[test]
fn a_head_request_keeps_the_length_a_get_would_have_and_sends_no_body() {
    let mut buf = BytesMut::new();
    let resp = Response::new(());
    let body = full("hello");
    let (framing, _, keep) = encode_response(
        &Method::HEAD,
        Version::HTTP_11,
        &resp,
        &body,
        true,
        false,
        &mut buf,
    );
    assert_eq!(framing, Framing::Empty);
    assert!(keep);
    let head = String::from_utf8(buf.to_vec()).unwrap();
    assert!(head.contains("content-length: 5\r\n"), "{head}");
    // The body is framed anew: a `Transfer-Encoding` given is not passed on.
    let mut buf = BytesMut::new();
    let mut resp = Response::new(());
    resp.headers_mut().insert(
        "transfer-encoding",
        HeaderValue::from_static("gzip, chunked"),
    );
    let body = http_body_util::StreamBody::new(futures::stream::iter([Ok::<_, BoxError>(
        Frame::data(Bytes::from("z")),
    )]))
    .boxed_unsync();
    let (framing, _, _) = encode_response(
        &Method::GET,
        Version::HTTP_11,
        &resp,
        &body,
        true,
        false,
        &mut buf,
    );
    assert_eq!(framing, Framing::Chunked);
    let head = String::from_utf8(buf.to_vec()).unwrap();
    assert!(
        head.contains("transfer-encoding: chunked\r\n") && !head.contains("gzip"),
        "{head}"
    );
}

#[tokio::test]
async fn collected_bodies_match_what_was_sent() {
    // The handler's view: a chunked upload arrives whole, trailers included.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(serve_any(
        listener,
        Limits::default(),
        CancellationToken::new(),
        TaskTracker::new(),
        move |req: Request<Any>, _| {
            let tx = tx.clone();
            async move {
                let collected = req.into_body().collect().await.unwrap();
                let trailers = collected.trailers().cloned();
                let _ = tx.send((collected.to_bytes(), trailers));
                Response::new(full("done"))
            }
        },
    ));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 5\r\n\r\n")
        .await
        .unwrap();
    responses(&mut s, 1).await;
    let mut rx = rx;
    let (data, trailers) = rx.recv().await.unwrap();
    assert_eq!(data, "hello");
    assert_eq!(trailers.unwrap()["x-sum"], "5");
}

#[tokio::test]
async fn a_response_the_client_reads_none_of_is_abandoned_after_the_idle_timeout() {
    // nginx's `send_timeout`: a client that stops reading holds the connection (and, through
    // the proxy, the app's) no longer than the idle timeout.
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, _) = start_with(limits, CancellationToken::new()).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /big HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    // The client reads nothing, for ten idle timeouts: this is the behaviour under test.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(Ok(n @ 1..)) = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await
    {
        got += n;
    }
    assert!(
        got < BIG,
        "the whole response waited for the client: {got} bytes"
    );
    // A body slow to come from the app is not the client's doing: it is not cut.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /slow-stream HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut c).await;
    assert!(
        answer.ends_with("1\r\na\r\n1\r\nb\r\n0\r\n\r\n"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_close_with_a_pipelined_request_unread_lingers() {
    // A request that closes the connection, with another pipelined behind it whose body the
    // client goes on sending: closed with those bytes unread, the socket would answer with a
    // reset, which fails the client's writes and can throw away what of the response the
    // kernel has not delivered yet.
    let (addr, seen) = start().await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /a HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n\
         POST /next HTTP/1.1\r\nhost: a\r\ncontent-length: {UNREAD_BODY}\r\n\r\n"
    );
    let answer = send_unread_body(&mut c, &head).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("GET /a"), "{answer}");
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "the pipelined one is not served"
    );
}

#[tokio::test]
async fn a_body_held_up_after_its_answer_does_not_hold_up_the_next_request() {
    // The answer went out (keep-alive) with the body still held elsewhere, and no byte
    // comes: the connection closes after a short pause, so a request sent next on it fails
    // at once rather than after the linger. (A client still sending keeps its connection:
    // `proxy::tests::a_connection_answered_before_its_body_ended_serves_the_next_request`.)
    let (addr, _) = start().await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"POST /keep-body HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\n\r\nbody")
        .await
        .unwrap();
    until_ends_with(&mut c, "kept").await;
    c.write_all(b"GET /next HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let rest = tokio::time::timeout(LINGER / 2, until_closed(&mut c))
        .await
        .expect("the connection waited for the body for as long as a linger");
    assert!(!rest.contains("HTTP/1.1"), "{rest}");
}
