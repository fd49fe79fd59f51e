use http_body_util::{BodyExt, Full, StreamBody};

use super::*;

fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = BoxError> + Send + 'static {
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
        .iter()
        .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
        .collect();
    StreamBody::new(futures::stream::iter(frames))
}

async fn read(body: ReplayBody) -> Result<String, BoxError> {
    let bytes = body.collect().await?.to_bytes();
    Ok(String::from_utf8(bytes.to_vec()).unwrap())
}

#[test]
fn only_idempotent_methods_are_resent_after_they_may_have_arrived() {
    let body = ReplayBody::new(Full::new(Bytes::from_static(b"x")), REPLAY_LIMIT);
    for m in [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        assert!(may_retry(&m, Sent::Maybe, &body), "{m}");
    }
    for m in [
        Method::POST,
        Method::PATCH,
        Method::from_bytes(b"LOCK").unwrap(),
    ] {
        assert!(!may_retry(&m, Sent::Maybe, &body), "{m}");
        assert!(
            may_retry(&m, Sent::Nothing, &body),
            "{m}: nothing sent, so it may go again"
        );
    }
    for m in [Method::GET, Method::POST] {
        assert!(!may_retry(&m, Sent::Answered, &body), "{m}");
    }
}

#[tokio::test]
async fn a_second_attempt_replays_what_the_first_read_then_continues() {
    let body = ReplayBody::new(chunks(&["ab", "cd", "ef"]), REPLAY_LIMIT);
    let mut first = body.attempt().unwrap();
    let frame = first.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "ab");
    // The first attempt failed after one chunk: the second sends all of it.
    let second = body.attempt().unwrap();
    assert_eq!(read(second).await.unwrap(), "abcdef");
    // The first attempt may not steal frames any more.
    assert!(first.frame().await.unwrap().is_err());
    // And a third still replays everything.
    assert_eq!(read(body.attempt().unwrap()).await.unwrap(), "abcdef");
}

#[tokio::test]
async fn a_body_over_the_limit_cannot_be_replayed() {
    let body = ReplayBody::new(chunks(&["0123456789", "0123456789"]), 15);
    assert_eq!(
        read(body.attempt().unwrap()).await.unwrap(),
        "01234567890123456789"
    );
    assert!(!body.replayable());
    assert!(body.attempt().is_none());
    assert!(!may_retry(&Method::GET, Sent::Nothing, &body));
}

#[tokio::test]
async fn size_hint_and_end_of_stream_pass_through() {
    let body = ReplayBody::new(Full::new(Bytes::from_static(b"hello")), REPLAY_LIMIT);
    let attempt = body.attempt().unwrap();
    assert_eq!(attempt.size_hint().exact(), Some(5));
    let empty = ReplayBody::new(http_body_util::Empty::<Bytes>::new(), REPLAY_LIMIT);
    assert!(empty.attempt().unwrap().is_end_stream());
}

#[tokio::test]
async fn a_body_that_had_ended_is_empty_on_every_attempt() {
    let body = ReplayBody::new(http_body_util::Empty::<Bytes>::new(), REPLAY_LIMIT);
    for _ in 0..3 {
        let attempt = body.attempt().expect("always another");
        assert!(attempt.is_end_stream());
        assert_eq!(attempt.size_hint().exact(), Some(0));
        assert_eq!(read(attempt).await.unwrap(), "");
        assert!(may_retry(&Method::GET, Sent::Maybe, &body));
        assert!(body.failure().is_none());
    }
}

#[tokio::test]
async fn what_the_body_leaves_of_the_budget_is_known_once_it_is_read() {
    let body = ReplayBody::new(chunks(&["0123", "4567"]), 10);
    assert_eq!(body.spare(), None, "not read yet");
    read(body.attempt().unwrap()).await.unwrap();
    assert_eq!(body.spare(), Some(2));
    let empty = ReplayBody::new(http_body_util::Empty::<Bytes>::new(), 10);
    assert_eq!(empty.spare(), Some(10), "a GET leaves all of it");
    let over = ReplayBody::new(chunks(&["0123456789", "x"]), 10);
    read(over.attempt().unwrap()).await.unwrap();
    assert_eq!(over.spare(), None, "nothing left once it overflowed");
}

#[tokio::test]
async fn a_body_whose_reading_failed_is_never_replayed() {
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"0123"))),
        Err("client stalled".into()),
    ];
    let body = ReplayBody::new(StreamBody::new(futures::stream::iter(frames)), REPLAY_LIMIT);
    assert!(body.failure().is_none());
    let error = read(body.attempt().unwrap()).await.unwrap_err();
    assert_eq!(error.to_string(), "client stalled");
    assert_eq!(
        body.failure().map(|e| e.to_string()).as_deref(),
        Some("client stalled"),
        "kept for whoever asks why the attempt failed"
    );
    assert!(!body.replayable());
    assert!(
        body.attempt().is_none(),
        "a resend would send a cut body as a whole one"
    );
    assert_eq!(body.spare(), None);
}
