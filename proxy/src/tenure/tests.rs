use std::time::Instant;

use super::*;
use crate::testing::{following, leaderless, leading};

#[test]
fn a_local_tenure_holds_while_acting_with_the_same_epoch() {
    let t = Tenure::Local { epoch: 3 };
    assert!(t.holds(&leading("a", "x:1", 3), Instant::now()));
    assert!(
        !t.holds(&leading("a", "x:1", 4), Instant::now()),
        "a new term is a new tenure"
    );
    assert!(!t.holds(&following("a", "b", "x:2", 4), Instant::now()));
    let mut fenced = leading("a", "x:1", 3);
    fenced.acting_until = Some(Instant::now());
    assert!(
        !t.holds(&fenced, Instant::now()),
        "the fencing deadline ends it"
    );
}

#[test]
fn a_peer_tenure_holds_while_the_same_leader_leads() {
    let t = Tenure::Peer {
        identity: "a".into(),
        epoch: 3,
    };
    assert!(t.holds(&following("b", "a", "x:1", 3), Instant::now()));
    assert!(!t.holds(&following("b", "a", "x:1", 4), Instant::now()));
    assert!(!t.holds(&following("b", "c", "x:3", 4), Instant::now()));
    assert!(!t.holds(&leaderless("b"), Instant::now()));
    assert!(!t.holds(&leading("b", "x:2", 4), Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn ended_wakes_at_the_fencing_deadline_without_a_new_view() {
    let mut view = leading("a", "x:1", 3);
    let started = tokio::time::Instant::now();
    view.acting_until = Some(started.into_std() + std::time::Duration::from_secs(6));
    let (_tx, rx) = watch::channel(view);
    Tenure::Local { epoch: 3 }.ended(rx).await;
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(6)
            && waited < std::time::Duration::from_millis(6010),
        "{waited:?}"
    );
}

#[tokio::test]
async fn ended_resolves_on_a_new_leader() {
    let (tx, rx) = watch::channel(following("b", "a", "x:1", 3));
    let ended = tokio::spawn(
        Tenure::Peer {
            identity: "a".into(),
            epoch: 3,
        }
        .ended(rx),
    );
    tx.send(following("b", "c", "x:3", 4)).unwrap();
    ended.await.unwrap();
}
