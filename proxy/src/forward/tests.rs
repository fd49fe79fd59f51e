use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;

use super::*;
use crate::retry::REPLAY_LIMIT;
use crate::testing::unanswered;

#[tokio::test]
async fn a_connect_that_hangs_fails_after_the_connect_timeout_with_nothing_sent() {
    let (addr, _listener, _fillers) = unanswered().await;
    let forwarder = Forwarder::new(
        Dialer::new(Duration::from_millis(200), None),
        Duration::from_secs(30),
        16,
    );
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

#[test]
fn an_http2_attempt_keeps_the_path_as_sent_even_an_asterisk() {
    let uri = |s: &str| s.parse::<Uri>().unwrap();
    let to = attempt_uri("10.0.0.2:8080", Reach::Plain, &uri("/a?b=1")).unwrap();
    assert_eq!(to, "http://10.0.0.2:8080/a?b=1");
    let to = attempt_uri("10.0.0.2:8443", Reach::Mtls, &uri("*")).unwrap();
    assert_eq!(to.authority().unwrap(), "10.0.0.2:8443");
    assert_eq!(to.port_u16(), Some(8443));
    assert_eq!(to.path_and_query().unwrap(), "*");
    assert_eq!(to.scheme_str(), Some("https"));
}
