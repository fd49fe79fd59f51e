use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use tokio::net::{TcpSocket, TcpStream};

use super::*;
use crate::retry::REPLAY_LIMIT;

/// A loopback listener whose accept queue is full, so that a further connect hangs (the
/// kernel drops the SYN) instead of being refused. Keep the returned streams open.
async fn unanswered() -> (
    std::net::SocketAddr,
    tokio::net::TcpListener,
    Vec<TcpStream>,
) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("connect: {e}"),
            Err(_) => return (addr, listener, fillers),
        }
    }
    panic!("accept queue never filled");
}

#[tokio::test]
async fn a_connect_that_hangs_fails_after_the_connect_timeout_with_nothing_sent() {
    let (addr, _listener, _fillers) = unanswered().await;
    let forwarder = Forwarder::new(Duration::from_millis(200), Duration::from_secs(30));
    let req = Request::get(format!("http://{addr}/"))
        .body(ReplayBody::new(Empty::<Bytes>::new(), REPLAY_LIMIT))
        .unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), forwarder.send(req))
        .await
        .expect("the connect timeout ends the attempt")
        .expect_err("nothing answers");
    assert_eq!(err.sent, Sent::Nothing, "{err}");
    assert_eq!(err.peer, addr.to_string());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(900),
        "{took:?}"
    );
}
