use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, StreamBody};

use super::*;

#[tokio::test(start_paused = true)]
async fn a_cut_ends_a_body_that_has_not_arrived_with_its_error_for_good() {
    let never = StreamBody::new(futures::stream::pending::<Result<Frame<Bytes>, BoxError>>());
    let mut body = Cut::new(never, async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        BoxError::from("cut")
    });
    let started = tokio::time::Instant::now();
    let err = body.frame().await.expect("a frame").unwrap_err();
    assert_eq!(err.to_string(), "cut");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let again = body.frame().await.expect("never a clean end").unwrap_err();
    assert_eq!(again.to_string(), "cut", "the same error again");
}

#[tokio::test]
async fn a_body_that_is_there_is_read_whole_even_after_the_cut() {
    let body = Cut::new(Full::new(Bytes::from_static(b"hi")), async {
        BoxError::from("cut")
    });
    assert_eq!(body.collect().await.unwrap().to_bytes(), "hi");
}

#[tokio::test]
async fn keep_holds_its_value_until_the_body_is_dropped() {
    let kept = Arc::new(());
    let body = Keep::new(Full::new(Bytes::from_static(b"hi")), kept.clone());
    assert_eq!(body.size_hint().exact(), Some(2));
    assert_eq!(Arc::strong_count(&kept), 2);
    assert_eq!(body.collect().await.unwrap().to_bytes(), "hi");
    assert_eq!(Arc::strong_count(&kept), 1, "dropped with the body");
}
