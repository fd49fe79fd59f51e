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

#[test]
fn an_attempt_that_hyper_sends_is_built_in_one_place_connect_kept_and_a_bad_authority_refused() {
    let mut headers = http::HeaderMap::new();
    headers.insert("accept", http::HeaderValue::from_static("*/*"));
    let extra = [(crate::headers::FOR, http::HeaderValue::from_static("pod-b"))];
    let (get, connect) = (Method::GET, Method::CONNECT);
    let (path, target): (Uri, Uri) = (
        "/a?b=1".parse().unwrap(),
        "db.example:5432".parse().unwrap(),
    );
    let head = |method, uri| client::Head {
        method,
        uri,
        headers: &headers,
        extra: &extra,
    };

    let to_peer = head(&get, &path);
    let req = attempt_request("10.0.0.2:8443", Reach::Mtls, Version::HTTP_2, to_peer, ()).unwrap();
    assert_eq!(req.uri(), "https://10.0.0.2:8443/a?b=1");
    assert_eq!(req.version(), Version::HTTP_2);
    assert_eq!(req.headers()["accept"], "*/*");
    assert_eq!(
        req.headers()[crate::headers::FOR],
        "pod-b",
        "the attempt's own header"
    );

    // A CONNECT keeps the client's target, in authority form, wherever it is sent.
    let tunnel = head(&connect, &target);
    let req = attempt_request("10.0.0.2:8080", Reach::Plain, Version::HTTP_11, tunnel, ()).unwrap();
    assert_eq!(req.uri(), "db.example:5432");
    assert_eq!(req.method(), Method::CONNECT);

    // An authority that makes no URI is an error, not a request sent to some other path.
    let bad = head(&get, &path);
    attempt_request("not an authority", Reach::Plain, Version::HTTP_11, bad, ())
        .expect_err("a space in the authority");
}
