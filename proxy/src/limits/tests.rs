use super::*;

#[test]
fn connections_are_bounded_and_counted() {
    let open = IntGauge::new("o", "o").unwrap();
    let rejected = IntCounter::new("r", "r").unwrap();
    let limit = ConnectionLimit::new(2, open.clone(), rejected.clone());
    let a = limit.admit().expect("first");
    let b = limit.admit().expect("second");
    assert!(limit.admit().is_none());
    assert_eq!((open.get(), rejected.get()), (2, 1));
    drop(a);
    assert_eq!(open.get(), 1);
    let _c = limit.admit().expect("a place freed up");
    drop(b);
    assert_eq!(open.get(), 1);
}

#[test]
fn requests_are_bounded() {
    let limit = RequestLimit::new(1);
    let held = limit.admit().expect("first");
    assert!(limit.admit().is_none());
    drop(held);
    assert!(limit.admit().is_some());
}

#[test]
fn the_refusal_is_a_complete_http_response() {
    let text = std::str::from_utf8(CONNECTION_REFUSED).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 503 "));
    assert!(head.contains("retry-after: 1"));
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body.len(), len);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_does_not_arrive_in_time_ends_with_an_error() {
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, Full, StreamBody};
    let never = StreamBody::new(futures::stream::pending::<Result<Frame<Bytes>, BoxError>>());
    let started = Instant::now();
    let body = body_deadline(never, started, Duration::from_secs(2));
    let Err(err) = body.collect().await else {
        panic!("the body did not time out");
    };
    assert!(err.to_string().contains("--body-timeout"), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));

    // A body that is already there is read whole, even past the deadline.
    let full = body_deadline(
        Full::new(Bytes::from_static(b"hi")),
        started,
        Duration::ZERO,
    );
    assert_eq!(full.collect().await.unwrap().to_bytes(), "hi");
}
