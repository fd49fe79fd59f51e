use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt, Empty, Full, StreamBody};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;
use crate::retry::REPLAY_LIMIT;

/// A server that hands each accepted connection to `serve`; counts the accepts.
async fn raw<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = accepts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (addr, accepts)
}

/// What a server of [`answering`] does after its answer.
#[derive(Clone, Copy)]
enum Then {
    /// Closes the connection.
    Close,
    /// Holds the connection open, reading nothing more.
    Hold,
}

/// A server that answers each connection's first request head with `resp` as it is, then
/// does as `then` says.
async fn answering(resp: &'static str, then: Then) -> (SocketAddr, Arc<AtomicUsize>) {
    raw(move |s| async move {
        let mut r = BufReader::new(s);
        read_head(&mut r).await;
        let written = r.get_mut().write_all(resp.as_bytes()).await;
        if let Then::Hold = then {
            written.unwrap();
            std::future::pending::<()>().await;
        }
    })
    .await
}

/// Reads one request head (up to its empty line) as text; `None` at EOF.
async fn read_head(r: &mut (impl AsyncBufRead + Unpin)) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

fn client() -> Client {
    Client::new(
        Dialer::new(Duration::from_secs(2), None),
        Duration::from_secs(30),
        16,
    )
}

fn get(path: &str) -> Request<ReplayBody> {
    Request::get(path)
        .header("host", "app")
        .body(ReplayBody::new(Empty::<Bytes>::new(), REPLAY_LIMIT))
        .unwrap()
}

async fn text(resp: Response<ResponseBody>) -> String {
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn keep_alive_serves_the_next_request_on_the_same_connection() {
    let (addr, accepts) = raw(|s| async move {
        let mut r = BufReader::new(s);
        while let Some(head) = read_head(&mut r).await {
            assert!(head.starts_with("GET /"), "{head}");
            assert!(!head.contains("content-length"), "{head}");
            let body = "hello";
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            r.get_mut().write_all(resp.as_bytes()).await.unwrap();
        }
    })
    .await;
    let client = client();
    for _ in 0..3 {
        let resp = client
            .send(&addr.to_string(), Reach::Plain, get("/"))
            .await
            .unwrap();
        assert_eq!(resp.body().size_hint().exact(), Some(5));
        assert_eq!(text(resp).await, "hello");
        assert_eq!(client.idle(), 1);
    }
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_not_used_again() {
    let (addr, accepts) = answering(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        Then::Close,
    )
    .await;
    let client = client();
    let resp = client
        .send(&addr.to_string(), Reach::Plain, get("/"))
        .await
        .unwrap();
    assert_eq!(text(resp).await, "ok");
    assert_eq!(client.idle(), 1);
    // The close arrives while the connection is idle; the next request dials anew.
    crate::testing::eventually(Duration::from_secs(5), || {
        let mut idle = client.pool.lock();
        !quiet(&mut idle[Reach::Plain as usize].values_mut().next().unwrap()[0].conn)
    })
    .await;
    let resp = client
        .send(&addr.to_string(), Reach::Plain, get("/"))
        .await
        .unwrap();
    assert_eq!(text(resp).await, "ok");
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_close_and_bodies_framed_by_close_are_not_pooled() {
    for resp in [
        "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\n\r\nok",
    ] {
        let (addr, _) = answering(resp, Then::Close).await;
        let client = client();
        let got = client
            .send(&addr.to_string(), Reach::Plain, get("/"))
            .await
            .unwrap();
        assert_eq!(text(got).await, "ok");
        assert_eq!(client.idle(), 0, "{resp:?}");
    }
}

#[tokio::test]
async fn informational_responses_are_skipped_and_trailers_come_through() {
    let (addr, _) = raw(|s| async move {
        let mut r = BufReader::new(s);
        read_head(&mut r).await;
        let resp = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
                    HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                    2\r\nok\r\n0\r\ngrpc-status: 0\r\n\r\n";
        r.get_mut().write_all(resp.as_bytes()).await.unwrap();
        read_head(&mut r).await;
    })
    .await;
    let client = client();
    let resp = client
        .send(&addr.to_string(), Reach::Plain, get("/"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), "ok");
    assert_eq!(client.idle(), 1);
}

#[tokio::test]
async fn a_101_without_an_upgrade_and_an_invalid_head_are_errors() {
    for (resp, expected) in [
        ("HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
            "invalid",
        ),
        ("HTTP/1.1 200 OK\r\ncontent-le", "closed"),
    ] {
        let (addr, _) = answering(resp, Then::Close).await;
        let err = client()
            .send(&addr.to_string(), Reach::Plain, get("/"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
}

/// The body after `head`: 5 bytes with `content-length: 5`, else none.
async fn five_byte_body(r: &mut (impl AsyncRead + Unpin), head: &str) -> Vec<u8> {
    let mut body = vec![
        0;
        if head.contains("content-length: 5") {
            5
        } else {
            0
        }
    ];
    r.read_exact(&mut body).await.unwrap();
    body
}

/// A server that reads each request with its body (5 bytes with `content-length: 5`, or
/// chunked up to the end of its trailers), reports the bytes it read, and answers 204.
async fn recording() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let (seen_tx, seen) = mpsc::unbounded_channel::<String>();
    let (addr, _) = raw(move |s| {
        let seen_tx = seen_tx.clone();
        async move {
            let mut r = BufReader::new(s);
            while let Some(head) = read_head(&mut r).await {
                let mut body = five_byte_body(&mut r, &head).await;
                if head.contains("transfer-encoding: chunked") {
                    // Up to the end of the trailers.
                    while let Some(rest) = read_head(&mut r).await {
                        body.extend_from_slice(rest.as_bytes());
                        if rest.ends_with("\r\n\r\n") {
                            break;
                        }
                    }
                }
                seen_tx
                    .send(format!("{head}{}", String::from_utf8(body).unwrap()))
                    .unwrap();
                let resp = "HTTP/1.1 204 No Content\r\n\r\n";
                r.get_mut().write_all(resp.as_bytes()).await.unwrap();
            }
        }
    })
    .await;
    (addr, seen)
}

#[tokio::test]
async fn a_body_of_known_length_goes_with_content_length_and_others_chunked_with_trailers() {
    let (addr, mut seen) = recording().await;
    let client = client();
    let put = Request::put("/known")
        .header("content-length", "99")
        .header("transfer-encoding", "gzip")
        .body(ReplayBody::new(
            Full::new(Bytes::from("hello")),
            REPLAY_LIMIT,
        ))
        .unwrap();
    let resp = client
        .send(&addr.to_string(), Reach::Plain, put)
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let head = seen.recv().await.unwrap();
    assert!(head.starts_with("PUT /known HTTP/1.1\r\nhost: "), "{head}");
    assert!(head.contains("content-length: 5\r\n\r\nhello"), "{head}");
    assert!(
        !head.contains("content-length: 99") && !head.contains("gzip"),
        "{head}"
    );

    let mut trailers = HeaderMap::new();
    trailers.insert("checksum", "abc".parse().unwrap());
    let frames = vec![
        Ok::<_, BoxError>(Frame::data(Bytes::from("hel"))),
        Ok(Frame::data(Bytes::new())),
        Ok(Frame::data(Bytes::from("lo"))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = StreamBody::new(futures::stream::iter(frames));
    let post = Request::post("/streamed")
        .header("host", "app")
        .body(ReplayBody::new(body, REPLAY_LIMIT))
        .unwrap();
    let resp = client
        .send(&addr.to_string(), Reach::Plain, post)
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let head = seen.recv().await.unwrap();
    assert!(
        head.ends_with(
            "transfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\nchecksum: abc\r\n\r\n"
        ),
        "{head:?}"
    );
    assert_eq!(client.idle(), 1);
}

#[tokio::test]
async fn an_attempts_own_headers_follow_the_kept_ones_and_only_its_own_go() {
    let (addr, mut seen) = recording().await;
    let client = client();
    let (parts, ()) = Request::get("/kept")
        .header("host", "app")
        .header("accept", "*/*")
        .body(())
        .unwrap()
        .into_parts();
    let fencing = [
        (
            HeaderName::from_static("x-understudy-leader"),
            HeaderValue::from_static("a"),
        ),
        (
            HeaderName::from_static("x-understudy-epoch"),
            HeaderValue::from_static("3"),
        ),
    ];
    let routing = [(
        HeaderName::from_static("x-understudy-for"),
        HeaderValue::from_static("b"),
    )];
    for extra in [&fencing[..], &routing[..]] {
        let head = Head {
            extra,
            ..Head::from(&parts)
        };
        let body = ReplayBody::new(Empty::<Bytes>::new(), REPLAY_LIMIT);
        let resp = client
            .send_head(addr.to_string().into(), Reach::Plain, head, body)
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }
    let first = seen.recv().await.unwrap();
    assert_eq!(
        first,
        "GET /kept HTTP/1.1\r\nhost: app\r\naccept: */*\r\n\
         x-understudy-leader: a\r\nx-understudy-epoch: 3\r\n\r\n"
    );
    let second = seen.recv().await.unwrap();
    assert_eq!(
        second,
        "GET /kept HTTP/1.1\r\nhost: app\r\naccept: */*\r\nx-understudy-for: b\r\n\r\n"
    );
}

#[tokio::test]
async fn request_and_response_bodies_flow_at_once_in_lockstep() {
    // An echo that answers at once and sends back each piece as it comes: the client sends
    // its next piece only after the echo of the last, which works only if the request body
    // keeps going out while the response is read.
    let (addr, _) = raw(|s| async move {
        let mut r = BufReader::new(s);
        read_head(&mut r).await;
        r.get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await.unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut data = vec![0; n + 2];
            r.read_exact(&mut data).await.unwrap();
            if n == 0 {
                break;
            }
            let echo = format!("{n:x}\r\n{}\r\n", String::from_utf8_lossy(&data[..n]));
            r.get_mut().write_all(echo.as_bytes()).await.unwrap();
        }
        r.get_mut().write_all(b"0\r\n\r\n").await.unwrap();
    })
    .await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    let body = StreamBody::new(tokio_stream_of(rx));
    let req = Request::post("/echo")
        .header("host", "app")
        .body(ReplayBody::new(body, REPLAY_LIMIT))
        .unwrap();
    let client = client();
    tx.send(Ok(Frame::data(Bytes::from("one")))).await.unwrap();
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        client.send(&addr.to_string(), Reach::Plain, req),
    )
    .await
    .unwrap()
    .unwrap();
    let mut body = resp.into_body();
    for (sent, next) in [
        ("one", Some("two")),
        ("two", Some("three")),
        ("three", None),
    ] {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the echo of the last piece")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), sent);
        match next {
            Some(next) => tx.send(Ok(Frame::data(Bytes::from(next)))).await.unwrap(),
            None => break,
        }
    }
    drop(tx);
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap();
    assert!(rest.to_bytes().is_empty());
    assert_eq!(client.idle(), 1);
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn an_upload_goes_on_while_an_early_answer_waits_to_be_read() {
    // An app that answers at once with a large body while it reads the request body, and a
    // client that sends all of its body before it reads any of the answer (curl does, for
    // one): the rest of the upload must not wait for the answer to be read.
    const SIZE: usize = 8 << 20;
    const PIECE: usize = 64 << 10;
    let (addr, _) = raw(|s| async move {
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        read_head(&mut r).await;
        tokio::spawn(async move {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n");
            let _ = w.write_all(head.as_bytes()).await;
            let _ = w.write_all(&vec![b'r'; SIZE]).await;
        });
        // The chunked upload, to its last chunk.
        let mut seen = Vec::new();
        let mut buf = vec![0u8; PIECE];
        while !seen.ends_with(b"0\r\n\r\n") {
            match r.read(&mut buf).await {
                Ok(n @ 1..) => seen.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
    })
    .await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    let req = Request::post("/upload")
        .header("host", "app")
        .body(ReplayBody::new(
            StreamBody::new(tokio_stream_of(rx)),
            REPLAY_LIMIT,
        ))
        .unwrap();
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        client().send(&addr.to_string(), Reach::Plain, req),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        for _ in 0..SIZE / PIECE {
            let piece = Bytes::from(vec![b'q'; PIECE]);
            tx.send(Ok(Frame::data(piece))).await.unwrap();
        }
    })
    .await
    .expect("the whole upload went out before the answer was read");
    drop(tx);
    let answer = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.to_bytes().len(), SIZE);
}

#[tokio::test]
async fn a_response_cut_short_is_an_error_and_its_connection_is_dropped() {
    let (addr, _) = answering(
        "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf",
        Then::Close,
    )
    .await;
    let client = client();
    let resp = client
        .send(&addr.to_string(), Reach::Plain, get("/"))
        .await
        .unwrap();
    let err = resp.into_body().collect().await.unwrap_err();
    assert!(
        err.to_string().contains("before the response body ended"),
        "{err}"
    );
    assert_eq!(client.idle(), 0);
}

#[tokio::test]
async fn a_request_body_that_fails_ends_the_exchange_instead_of_waiting_for_an_answer() {
    // The app waits for the whole body before it answers, as most do.
    let (addr, _) = raw(|s| async move {
        let mut r = BufReader::new(s);
        read_head(&mut r).await;
        let mut body = [0u8; 10];
        if r.read_exact(&mut body).await.is_ok() {
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
        let _ = r.read(&mut body).await;
    })
    .await;
    let frames = vec![
        Ok::<_, BoxError>(Frame::data(Bytes::from("half"))),
        Err(BoxError::from("the client went away")),
    ];
    let body = StreamBody::new(futures::stream::iter(frames));
    let req = Request::post("/")
        .header("host", "app")
        .body(ReplayBody::new(body, REPLAY_LIMIT))
        .unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        client().send(&addr.to_string(), Reach::Plain, req),
    )
    .await
    .expect("not waiting for an answer that cannot come")
    .unwrap_err();
    assert!(err.to_string().contains("went away"), "{err}");
}

#[tokio::test]
async fn a_body_framed_by_close_and_cut_by_a_reset_is_an_error_not_an_end() {
    let (reset_tx, reset_rx) = tokio::sync::oneshot::channel::<()>();
    let reset_rx = Arc::new(Mutex::new(Some(reset_rx)));
    let (addr, _) = raw(move |s| {
        let reset_rx = reset_rx.lock().unwrap().take();
        async move {
            let mut r = BufReader::new(s);
            read_head(&mut r).await;
            let resp = b"HTTP/1.1 200 OK\r\n\r\npartial";
            r.get_mut().write_all(resp).await.unwrap();
            if let Some(reset) = reset_rx {
                let _ = reset.await;
            }
            // A close with unsent or unread data, or a linger of zero: a reset.
            let s = r.into_inner();
            s.set_zero_linger().unwrap();
            drop(s);
        }
    })
    .await;
    let client = client();
    let resp = client
        .send(&addr.to_string(), Reach::Plain, get("/"))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "partial");
    reset_tx.send(()).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap();
    let err = end.expect_err("a reset is no end of the body");
    assert!(err.to_string().contains("reset"), "{err}");
}

#[tokio::test]
async fn a_connection_that_carried_a_body_on_a_get_is_not_pooled() {
    let (addr, _seen) = recording().await;
    let client = client();
    let req = Request::get("/")
        .header("host", "app")
        .body(ReplayBody::new(
            Full::new(Bytes::from("GET /")),
            REPLAY_LIMIT,
        ))
        .unwrap();
    let resp = client
        .send(&addr.to_string(), Reach::Plain, req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(client.idle(), 0);
    let put = Request::put("/")
        .header("host", "app")
        .body(ReplayBody::new(
            Full::new(Bytes::from("hello")),
            REPLAY_LIMIT,
        ))
        .unwrap();
    let resp = client
        .send(&addr.to_string(), Reach::Plain, put)
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(client.idle(), 1, "a PUT's body is its own");
}

/// The text of a GET of `/` from `addr`.
async fn fetch(client: &Client, addr: SocketAddr) -> String {
    let resp = client
        .send(&addr.to_string(), Reach::Plain, get("/"))
        .await
        .unwrap();
    text(resp).await
}

#[tokio::test]
async fn a_pooled_connection_keeps_a_small_read_buffer_but_not_one_grown_for_a_body() {
    // Four answers on one connection: a small one, one whose body needs the buffer grown,
    // one whose head does, and a small one whose body comes apart from its head.
    let body_now = Arc::new(tokio::sync::Notify::new());
    let go = body_now.clone();
    let (addr, _) = raw(move |s| {
        let go = go.clone();
        async move {
            let mut r = BufReader::new(s);
            read_head(&mut r).await;
            let small = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            r.get_mut().write_all(small.as_bytes()).await.unwrap();
            read_head(&mut r).await;
            let big = 64 * 1024;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {big}\r\n\r\n");
            r.get_mut().write_all(head.as_bytes()).await.unwrap();
            r.get_mut().write_all(&vec![b'x'; big]).await.unwrap();
            // A small body after a large head, read in several reads.
            read_head(&mut r).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 2\r\n\r\nok",
                "a".repeat(64 * 1024)
            );
            r.get_mut().write_all(head.as_bytes()).await.unwrap();
            read_head(&mut r).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n";
            r.get_mut().write_all(head.as_bytes()).await.unwrap();
            go.notified().await;
            r.get_mut().write_all(b"ok").await.unwrap();
            let _ = read_head(&mut r).await;
        }
    })
    .await;
    let client = client();
    let kept = |client: &Client| {
        let idle = client.pool.lock();
        let conns = idle[Reach::Plain as usize].values().next().unwrap();
        conns[0].read.capacity()
    };
    assert_eq!(fetch(&client, addr).await, "ok");
    assert!(kept(&client) <= HEAD_READ, "{}", kept(&client));
    assert_eq!(fetch(&client, addr).await.len(), 64 * 1024);
    assert_eq!(client.idle(), 1);
    assert_eq!(kept(&client), 0, "a grown buffer was pooled");
    // What is left of a buffer a large head grew shares its allocation: not pooled either.
    assert_eq!(fetch(&client, addr).await, "ok");
    assert_eq!(client.idle(), 1);
    assert_eq!(kept(&client), 0, "a buffer grown for a head was pooled");
    // The body read after the head, in a read of its own: the buffer, not grown, is kept.
    let resp = client
        .send(&addr.to_string(), Reach::Plain, get("/"))
        .await
        .unwrap();
    body_now.notify_one();
    assert_eq!(text(resp).await, "ok");
    assert_eq!(client.idle(), 1);
    let kept = kept(&client);
    assert!(kept > 0 && kept <= 2 * HEAD_READ, "{kept}");
}

#[tokio::test]
async fn an_upload_that_outlives_its_response_is_stopped_in_time() {
    // The app answers 413 at once, then neither reads the body nor closes: the upload task
    // would wait to write for ever (the body, not polled, never reaches its own deadline),
    // holding the client's body and with it the client's connection.
    let (addr, _) = answering(
        "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n",
        Then::Hold,
    )
    .await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    let req = Request::post("/upload")
        .header("host", "app")
        .body(ReplayBody::new(
            StreamBody::new(tokio_stream_of(rx)),
            REPLAY_LIMIT,
        ))
        .unwrap();
    let body = tx.clone();
    let sending = tokio::spawn(async move {
        // Bounded: far more than the sockets' buffers hold.
        for _ in 0..4096 {
            let piece = Bytes::from(vec![b'q'; 64 << 10]);
            if tx.send(Ok(Frame::data(piece))).await.is_err() {
                return;
            }
        }
    });
    let resp = client()
        .send(&addr.to_string(), Reach::Plain, req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(text(resp).await, "");
    tokio::time::timeout(UPLOAD_AFTER_RESPONSE * 10, body.closed())
        .await
        .expect("the upload was stopped and the client's body dropped");
    sending.abort();
}

#[tokio::test]
async fn a_request_whose_first_write_fails_on_a_pooled_connection_goes_whole_on_a_new_one() {
    // Answers each request with what it read of it; keeps its end open after the client's
    // close, so that a connection the client stopped writing to still looks quiet.
    let (addr, accepts) = raw(|s| async move {
        let mut r = BufReader::new(s);
        while let Some(head) = read_head(&mut r).await {
            let body = five_byte_body(&mut r, &head).await;
            let seen = format!(
                "{}{}",
                head.lines().next().unwrap(),
                String::from_utf8(body).unwrap()
            );
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{seen}",
                seen.len()
            );
            r.get_mut().write_all(resp.as_bytes()).await.unwrap();
        }
        std::future::pending::<()>().await;
    })
    .await;
    let redials = prometheus::IntCounter::new("redials", "requests sent anew").unwrap();
    let client = client().counting_redials(redials.clone());
    let address = addr.to_string();
    let resp = client.send(&address, Reach::Plain, get("/")).await.unwrap();
    assert_eq!(text(resp).await, "GET / HTTP/1.1");
    assert_eq!(redials.get(), 0);
    // The pooled connection can no longer be written to (as after a reset that came just
    // after the pool's check), yet it reads as open and quiet.
    {
        let mut idle = client.pool.lock();
        let conn = &mut idle[Reach::Plain as usize].values_mut().next().unwrap()[0].conn;
        shut_for_writing(conn);
        assert!(quiet(conn));
    }
    // A POST, which the proxy would not resend itself: nothing of it left, so the client
    // writes it, body and all, to a new connection.
    let post = Request::post("/upload")
        .header("host", "app")
        .body(ReplayBody::new(
            Full::new(Bytes::from("hello")),
            REPLAY_LIMIT,
        ))
        .unwrap();
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        client.send(&address, Reach::Plain, post),
    )
    .await
    .expect("the request was not sent anew")
    .unwrap();
    assert_eq!(text(resp).await, "POST /upload HTTP/1.1hello");
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
    assert_eq!(client.idle(), 1);
    assert_eq!(redials.get(), 1, "the resend is counted");
}

/// Shuts `conn`'s sending side at once: its next write fails, every time.
fn shut_for_writing(conn: &mut Conn) {
    let shut =
        std::future::poll_fn(|cx| tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut *conn), cx));
    futures::FutureExt::now_or_never(shut).unwrap().unwrap();
}

#[tokio::test]
async fn a_request_is_sent_anew_only_once_a_new_connections_failure_is_the_answer() {
    // Answers each request; at the client's close it keeps the first connection open (so
    // that, pooled and shut for writing, it still reads as open and quiet) and closes any
    // other.
    let served = Arc::new(AtomicUsize::new(0));
    let (addr, accepts) = raw(move |s| {
        let first = served.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            let mut r = BufReader::new(s);
            while read_head(&mut r).await.is_some() {
                let resp = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                r.get_mut().write_all(resp.as_bytes()).await.unwrap();
            }
            if first {
                std::future::pending::<()>().await;
            }
        }
    })
    .await;
    let redials = prometheus::IntCounter::new("redials", "requests sent anew").unwrap();
    let mut client = client().counting_redials(redials.clone());
    let address = addr.to_string();
    let resp = client.send(&address, Reach::Plain, get("/")).await.unwrap();
    assert_eq!(text(resp).await, "ok");
    {
        let mut idle = client.pool.lock();
        let conn = &mut idle[Reach::Plain as usize].values_mut().next().unwrap()[0].conn;
        shut_for_writing(conn);
        assert!(quiet(conn));
    }
    // The new connection's first write fails too: that is the app's answer, not a reason
    // to dial again (each new connection would fail the same way, for ever).
    client.redialed = Some(shut_for_writing);
    let sent = tokio::time::timeout(
        Duration::from_secs(5),
        client.send(&address, Reach::Plain, get("/again")),
    )
    .await
    .expect("the request was sent anew more than once");
    assert!(matches!(sent, Err(ClientError::Write(_))), "{sent:?}");
    assert_eq!(accepts.load(Ordering::SeqCst), 2, "one new connection");
    assert_eq!(redials.get(), 1);
}

#[tokio::test]
async fn the_pool_keeps_at_most_its_cap_of_idle_connections_per_address() {
    // Three requests at once (the server answers none until all three have arrived), so
    // three connections; a pool capped at two keeps two, and the next requests use them.
    let all_in = Arc::new(tokio::sync::Barrier::new(3));
    let (addr, accepts) = raw(move |s| {
        let all_in = all_in.clone();
        async move {
            let mut r = BufReader::new(s);
            let mut first = true;
            while read_head(&mut r).await.is_some() {
                if std::mem::take(&mut first) {
                    all_in.wait().await;
                }
                let resp = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                r.get_mut().write_all(resp.as_bytes()).await.unwrap();
            }
        }
    })
    .await;
    let dialer = || Dialer::new(Duration::from_secs(2), None);
    for (cap, kept) in [(2, 2), (0, 0)] {
        let client = Client::new(dialer(), Duration::from_secs(30), cap);
        let before = accepts.load(Ordering::SeqCst);
        let one = || async {
            let resp = client.send(&addr.to_string(), Reach::Plain, get("/")).await;
            text(resp.unwrap()).await
        };
        let (a, b, c) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(one(), one(), one())
        })
        .await
        .expect("three requests at once are answered");
        assert_eq!([a, b, c], ["ok", "ok", "ok"]);
        assert_eq!(accepts.load(Ordering::SeqCst) - before, 3);
        assert_eq!(client.idle(), kept, "cap {cap}");
        if kept > 0 {
            // The kept ones serve the next requests: no new connection.
            for _ in 0..kept {
                assert_eq!(one().await, "ok");
            }
            assert_eq!(accepts.load(Ordering::SeqCst) - before, 3);
        }
    }
}

#[tokio::test]
async fn a_connection_that_answered_a_connect_is_never_pooled() {
    // A 2xx to CONNECT has no body: what follows is the tunnel's. (The proxy sends CONNECT
    // with hyper's client; the engine's keeps no such connection either.) A GET answered the
    // same way, for contrast, is pooled.
    for (method, pooled) in [(Method::CONNECT, 0), (Method::GET, 1)] {
        let (addr, _) = answering("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", Then::Hold).await;
        let req = Request::builder()
            .method(method.clone())
            .uri(if method == Method::CONNECT {
                "app:443"
            } else {
                "/"
            })
            .header("host", "app:443")
            .body(ReplayBody::new(Empty::<Bytes>::new(), REPLAY_LIMIT))
            .unwrap();
        let client = client();
        let resp = client
            .send(&addr.to_string(), Reach::Plain, req)
            .await
            .unwrap();
        assert_eq!(text(resp).await, "");
        assert_eq!(client.idle(), pooled, "{method}");
    }
}
