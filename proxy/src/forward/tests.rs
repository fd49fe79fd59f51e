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
