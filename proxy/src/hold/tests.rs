use std::time::Duration;

use super::*;
use crate::testing::{following, leaderless};

#[tokio::test]
async fn the_queue_is_bounded() {
    let holder = Holder::new(2, Duration::from_secs(1));
    let a = holder.enter().unwrap();
    let _b = holder.enter().unwrap();
    assert_eq!(holder.held(), 2);
    assert_eq!(holder.enter().unwrap_err(), HoldError::Full { max: 2 });
    drop(a);
    assert!(holder.enter().is_ok());
}

#[tokio::test]
async fn a_held_request_goes_as_soon_as_a_leader_appears() {
    let holder = Holder::new(4, Duration::from_secs(30));
    let (tx, mut rx) = watch::channel(leaderless("b"));
    let deadline = holder.deadline(Instant::now(), None);
    let wait = deadline.until(&mut rx, |v| v.leader.is_some());
    let send = async {
        tokio::task::yield_now().await;
        tx.send(following("b", "a", "x:1", 1)).unwrap();
    };
    let (result, ()) = tokio::join!(wait, send);
    assert_eq!(result, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_held_request_gives_up_at_its_deadline() {
    let holder = Holder::new(4, Duration::from_secs(3));
    let (_tx, mut rx) = watch::channel(leaderless("b"));
    let start = Instant::now();
    let result = holder
        .deadline(start, None)
        .until(&mut rx, |v| v.leader.is_some())
        .await;
    assert_eq!(
        result,
        Err(HoldError::Timeout {
            timeout: Duration::from_secs(3)
        })
    );
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_budget_from_an_earlier_sidecar_shortens_the_hold_but_never_extends_it() {
    let holder = Holder::new(4, Duration::from_secs(3));
    let (_tx, mut rx) = watch::channel(leaderless("b"));
    let start = Instant::now();
    let passed_on = holder.deadline(start, Some(Duration::from_millis(1200)));
    assert_eq!(passed_on.allowed, Duration::from_millis(1200));
    assert_eq!(
        passed_on.until(&mut rx, |v| v.leader.is_some()).await,
        Err(HoldError::Timeout {
            timeout: Duration::from_millis(1200)
        })
    );
    assert_eq!(start.elapsed(), Duration::from_millis(1200));
    let generous = holder.deadline(start, Some(Duration::from_secs(3600)));
    assert_eq!(generous.at, start + Duration::from_secs(3));
    assert_eq!(
        generous.remaining(start + Duration::from_secs(1)),
        Duration::from_secs(2)
    );
    assert_eq!(
        generous.remaining(start + Duration::from_secs(5)),
        Duration::ZERO
    );
}
