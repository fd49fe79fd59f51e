use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::testing::unanswered;

#[tokio::test]
async fn a_plain_dial_connects_and_a_refused_one_names_the_address_and_cause() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"hi").await.unwrap();
    });
    let dialer = Dialer::new(Duration::from_secs(1), None);
    let mut conn = dialer.dial(&addr, Reach::Plain, Alpn::Http1).await.unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "hi");

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = closed.local_addr().unwrap().to_string();
    drop(closed);
    let err = dialer
        .dial(&nowhere, Reach::Plain, Alpn::Http1)
        .await
        .unwrap_err();
    assert!(matches!(err, DialError::Connect { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&nowhere) && text.contains("refused"),
        "{text}"
    );
}

#[tokio::test]
async fn a_connect_that_hangs_ends_at_the_timeout() {
    let (addr, _listener, _fillers) = unanswered().await;
    let dialer = Dialer::new(Duration::from_millis(200), None);
    let started = Instant::now();
    let err = dialer
        .dial(&addr.to_string(), Reach::Plain, Alpn::Http1)
        .await
        .unwrap_err();
    assert!(matches!(err, DialError::TimedOut { .. }), "{err}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(900),
        "{took:?}"
    );
}

#[tokio::test]
async fn mtls_without_the_peer_channel_is_refused_before_any_connection() {
    // Never sent in the clear instead: the address is not even dialed.
    let dialer = Dialer::new(Duration::from_secs(1), None);
    let err = dialer
        .dial("127.0.0.1:1", Reach::Mtls, Alpn::Http1)
        .await
        .unwrap_err();
    assert!(matches!(err, DialError::NoPeerTls { .. }), "{err}");
    // The connector takes `https://` for mTLS.
    let mut connector = Connector::new(dialer, Alpn::Http1);
    let err = connector
        .call("https://127.0.0.1:1/".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--peer-listen is off"), "{err}");
}
