use std::time::{Duration, Instant};

use super::*;

const S: Duration = Duration::from_secs(1);

fn config() -> Config {
    Config::default() // 10s / 6s / 2s
}

fn elector(now: Instant) -> Elector {
    Elector::new(
        "example",
        "me",
        Some("198.18.0.2:8080".into()),
        config(),
        now,
    )
}

fn obs(rv: u64, holder: &str, transitions: i32) -> Observed {
    Observed::sample(rv, holder, transitions)
}

/// What the store would return for a successful write of `action` at version `rv`.
fn stored(action: &Action, rv: u64) -> Observed {
    let draft = match action {
        Action::Create { draft, .. } | Action::Replace { draft, .. } => draft,
        Action::Read => panic!("not a write"),
    };
    Observed {
        record: draft.to_record(),
        resource_version: rv.to_string(),
    }
}

/// Starts an elector that has read the Lease as `initial`.
fn synced(t0: Instant, initial: Option<Observed>) -> Elector {
    let mut e = elector(t0);
    assert!(matches!(e.poll_action(t0), Some(Action::Read)));
    e.read_done(t0, initial);
    e
}

fn acquire_as_leader(t0: Instant) -> (Elector, Action) {
    let mut e = synced(t0, None);
    let create = e.poll_action(t0).expect("create");
    assert!(matches!(
        &create,
        Action::Create { intent: Intent::Acquire, draft } if draft.holder == "me" && draft.transitions == 0
    ));
    e.write_done(t0 + Duration::from_millis(5), Ok(stored(&create, 1)));
    (e, create)
}

#[test]
fn reads_first_then_creates_an_absent_lease_and_leads() {
    let t0 = Instant::now();
    let (e, _) = acquire_as_leader(t0);
    let view = e.view(t0 + S);
    assert_eq!(view.role, Role::Leader);
    assert_eq!(view.acting_until, Some(t0 + config().renew_deadline));
    assert_eq!(view.leader.unwrap().epoch, 0);
    assert!(view.synced);
}

#[test]
fn self_fences_from_the_send_time_of_the_last_successful_renew() {
    let t0 = Instant::now();
    let (mut e, _) = acquire_as_leader(t0);
    // Renew is due after retryPeriod, measured from the *send* time.
    assert!(e.poll_action(t0 + Duration::from_millis(1999)).is_none());
    let renew_at = t0 + 2 * S;
    let renew = e.poll_action(renew_at).expect("renew");
    assert!(
        matches!(renew, Action::Replace { intent: Intent::Renew, ref base, .. } if base.resource_version == "1")
    );
    // The response arrives late; the window still counts from when the renew was sent.
    e.write_done(
        renew_at + Duration::from_millis(1500),
        Ok(stored(&renew, 2)),
    );
    assert_eq!(
        e.view(renew_at + 2 * S).acting_until,
        Some(renew_at + 6 * S)
    );
    // Renewals now fail; the leader stops exactly at renew_at + renewDeadline.
    let next = e.poll_action(renew_at + 2 * S).expect("renew");
    assert!(matches!(
        next,
        Action::Replace {
            intent: Intent::Renew,
            ..
        }
    ));
    e.write_done(renew_at + 4 * S, Err(WriteError::Other));
    assert_eq!(
        e.role(renew_at + 6 * S - Duration::from_millis(1)),
        Role::Leader
    );
    assert_eq!(e.role(renew_at + 6 * S), Role::Candidate);
    assert!(!e.view(renew_at + 6 * S).is_acting(renew_at + 6 * S));
    // ...and never gives up: it keeps trying to renew its own record.
    e.tick(renew_at + 6 * S);
    assert!(matches!(
        e.poll_action(renew_at + 6 * S),
        Some(Action::Replace {
            intent: Intent::Renew,
            ..
        })
    ));
}

#[test]
fn follower_respects_a_held_lease_until_local_expiry() {
    let t0 = Instant::now();
    let mut e = synced(t0, Some(obs(5, "other", 3)));
    assert_eq!(e.role(t0), Role::Follower);
    assert_eq!(
        e.view(t0).leader.unwrap().address.as_deref(),
        Some("other:8080")
    );
    assert!(e.poll_action(t0 + 9 * S).is_none());
    // A renewal seen at t0+9s restarts the local expiry clock.
    e.observe(t0 + 9 * S, Some(obs(6, "other", 3)));
    assert!(e.poll_action(t0 + 18 * S).is_none());
    assert_eq!(
        e.next_wakeup(),
        Some(t0 + 19 * S + Duration::from_millis(1))
    );
    // Exactly at expiry it is not yet expired; strictly after, it is.
    assert!(e.poll_action(t0 + 19 * S).is_none());
    let take = e
        .poll_action(t0 + 19 * S + Duration::from_millis(1))
        .expect("takeover");
    match take {
        Action::Replace {
            intent: Intent::Acquire,
            draft,
            base,
        } => {
            assert_eq!(draft.transitions, 4, "leaseTransitions + 1 on takeover");
            assert_eq!(draft.acquire_time, Stamp::Now);
            assert_eq!(
                base.resource_version, "6",
                "CAS on the last observed version"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn record_timestamps_do_not_decide_expiry() {
    let t0 = Instant::now();
    let mut ancient = obs(5, "other", 0);
    ancient.record.renew_time = Some("1999-01-01T00:00:00Z".parse().unwrap());
    let mut e = synced(t0, Some(ancient));
    // Seen just now, so valid for leaseDurationSeconds from now, whatever renewTime says.
    assert_eq!(e.role(t0 + 9 * S), Role::Follower);
    assert!(e.poll_action(t0 + 9 * S).is_none());
}

#[test]
fn expiry_uses_the_records_own_duration() {
    let t0 = Instant::now();
    let mut short = obs(5, "other", 0);
    short.record.lease_duration_secs = 3;
    let mut e = synced(t0, Some(short));
    assert_eq!(e.role(t0 + 3 * S), Role::Follower);
    assert_eq!(
        e.role(t0 + 3 * S + Duration::from_millis(1)),
        Role::Candidate
    );
    assert!(e.poll_action(t0 + 4 * S).is_some());
}

#[test]
fn released_lease_is_taken_at_once() {
    let t0 = Instant::now();
    let mut e = synced(t0, Some(obs(5, "other", 3)));
    e.observe(t0 + S, Some(obs(6, "", 3)));
    assert_eq!(e.role(t0 + S), Role::Candidate);
    let take = e.poll_action(t0 + S).expect("takeover without waiting");
    assert!(
        matches!(take, Action::Replace { intent: Intent::Acquire, ref draft, .. } if draft.transitions == 4)
    );
}

#[test]
fn conflict_leads_to_a_read_then_a_fresh_decision() {
    let t0 = Instant::now();
    let mut e = synced(t0, Some(obs(6, "", 3)));
    let take = e.poll_action(t0).unwrap();
    assert!(e.poll_action(t0).is_none(), "one call at a time");
    e.write_done(t0, Err(WriteError::Conflict));
    drop(take);
    assert!(matches!(e.poll_action(t0), Some(Action::Read)));
    e.read_done(t0, Some(obs(7, "winner", 4)));
    assert_eq!(e.role(t0), Role::Follower);
    assert!(e.poll_action(t0).is_none());
}

#[test]
fn stale_observations_are_ignored() {
    let t0 = Instant::now();
    let (mut e, _) = acquire_as_leader(t0);
    e.observe(t0 + S, Some(obs(0, "someone-old", 0)));
    assert_eq!(e.role(t0 + S), Role::Leader);
    // The same version again is not a change either.
    e.observe(t0 + S, Some(e.observed().unwrap().clone()));
    assert_eq!(e.role(t0 + S), Role::Leader);
}

#[test]
fn a_newer_record_naming_someone_else_stops_the_leader_at_once() {
    let t0 = Instant::now();
    let (mut e, _) = acquire_as_leader(t0);
    e.observe(t0 + S, Some(obs(9, "usurper", 1)));
    assert_eq!(e.role(t0 + S), Role::Follower);
    assert_eq!(e.view(t0 + S).acting_until, None);
}

#[test]
fn a_write_response_superseded_by_a_newer_event_does_not_make_a_leader() {
    let t0 = Instant::now();
    let mut e = synced(t0, Some(obs(6, "", 3)));
    let take = e.poll_action(t0).unwrap();
    // The watch shows a later write by someone else before our response arrives.
    e.observe(t0 + S, Some(obs(8, "winner", 5)));
    e.write_done(t0 + S, Ok(stored(&take, 7)));
    assert_eq!(e.role(t0 + S), Role::Follower);
}

#[test]
fn release_stops_acting_first_then_writes_an_empty_holder() {
    let t0 = Instant::now();
    let (mut e, _) = acquire_as_leader(t0);
    e.observe(t0, Some(obs(2, "me", 7)));
    e.release(t0 + S);
    assert_eq!(
        e.role(t0 + S),
        Role::Candidate,
        "stops before the write is sent"
    );
    let release = e.poll_action(t0 + S).expect("release write");
    match &release {
        Action::Replace {
            intent: Intent::Release,
            draft,
            base,
        } => {
            assert_eq!(draft.holder, "");
            assert_eq!(draft.lease_duration_secs, 1);
            assert_eq!(draft.transitions, 7, "transitions kept");
            assert_eq!(draft.address, None);
            assert_eq!(base.resource_version, "2");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!e.is_stopped());
    e.write_done(t0 + S, Ok(stored(&release, 3)));
    assert!(e.is_stopped());
    assert!(e.poll_action(t0 + 10 * S).is_none());
}

#[test]
fn release_retries_after_a_failure_but_not_in_a_hot_loop() {
    let t0 = Instant::now();
    let (mut e, _) = acquire_as_leader(t0);
    e.release(t0);
    let _ = e.poll_action(t0).expect("release write");
    e.write_done(t0, Err(WriteError::Other));
    assert!(e.poll_action(t0).is_none());
    assert!(e.poll_action(t0 + 2 * S).is_some());
}

#[test]
fn follower_release_has_nothing_to_write() {
    let t0 = Instant::now();
    let mut e = synced(t0, Some(obs(5, "other", 3)));
    e.release(t0);
    assert!(e.poll_action(t0).is_none());
    assert!(e.is_stopped());
}

#[test]
fn deletion_under_a_live_holder_waits_for_its_lease_and_keeps_epochs_rising() {
    let t0 = Instant::now();
    let mut e = synced(t0, Some(obs(5, "other", 3)));
    e.observe(t0 + S, None);
    assert!(e.poll_action(t0 + 10 * S).is_none(), "other may still act");
    let create = e
        .poll_action(t0 + 11 * S)
        .expect("create after its lease ran out");
    assert!(matches!(create, Action::Create { ref draft, .. } if draft.transitions == 4));
}

#[test]
fn ineligible_leader_releases_and_contends_again_when_eligible() {
    let t0 = Instant::now();
    let (mut e, _) = acquire_as_leader(t0);
    e.set_eligible(t0 + S, false);
    assert_eq!(e.role(t0 + S), Role::Candidate);
    let release = e.poll_action(t0 + S).expect("release");
    assert!(matches!(
        release,
        Action::Replace {
            intent: Intent::Release,
            ..
        }
    ));
    e.write_done(t0 + S, Ok(stored(&release, 2)));
    assert!(!e.is_stopped(), "ineligible is not shut down");
    assert!(
        e.poll_action(t0 + 2 * S).is_none(),
        "does not take a free lease while ineligible"
    );
    e.set_eligible(t0 + 3 * S, true);
    assert!(matches!(
        e.poll_action(t0 + 3 * S),
        Some(Action::Replace {
            intent: Intent::Acquire,
            ..
        })
    ));
}

#[test]
fn a_failed_read_is_retried_after_retry_period() {
    let t0 = Instant::now();
    let mut e = elector(t0);
    assert!(matches!(e.poll_action(t0), Some(Action::Read)));
    e.read_failed(t0);
    assert!(e.poll_action(t0 + S).is_none());
    assert_eq!(e.next_wakeup(), Some(t0 + 2 * S));
    assert!(matches!(e.poll_action(t0 + 2 * S), Some(Action::Read)));
}

#[test]
fn restarted_holder_renews_its_own_record_without_a_transition() {
    let t0 = Instant::now();
    let mut e = synced(t0, Some(obs(5, "me", 3)));
    assert_eq!(
        e.role(t0),
        Role::Candidate,
        "not acting before a successful renew"
    );
    let renew = e.poll_action(t0).expect("renew");
    assert!(
        matches!(renew, Action::Replace { intent: Intent::Renew, ref draft, .. } if draft.transitions == 3)
    );
    e.write_done(t0, Ok(stored(&renew, 6)));
    assert_eq!(e.role(t0), Role::Leader);
}

#[test]
fn a_watch_event_does_not_complete_an_outstanding_read() {
    let t0 = Instant::now();
    let mut e = elector(t0);
    assert!(matches!(e.poll_action(t0), Some(Action::Read)));
    e.observe(t0, Some(obs(5, "", 0)));
    // The read is still in flight: no second call, and no wake-up that would spin.
    assert!(e.poll_action(t0).is_none());
    assert_eq!(e.next_wakeup(), None);
    e.read_done(t0, Some(obs(5, "", 0)));
    assert!(matches!(
        e.poll_action(t0),
        Some(Action::Replace {
            intent: Intent::Acquire,
            ..
        })
    ));
}

#[test]
fn step_down_releases_keeps_following_and_never_reacquires() {
    let t0 = Instant::now();
    let (mut e, _) = acquire_as_leader(t0);
    assert!(e.holds_lease());
    e.step_down(t0 + S);
    assert_eq!(e.role(t0 + S), Role::Candidate);
    let release = e.poll_action(t0 + S).expect("release write");
    assert!(matches!(
        release,
        Action::Replace {
            intent: Intent::Release,
            ..
        }
    ));
    e.write_done(t0 + S, Ok(stored(&release, 2)));
    assert!(!e.holds_lease());
    assert!(!e.is_stopped(), "still watching");
    // A free lease is not taken...
    assert!(e.poll_action(t0 + 2 * S).is_none());
    // ...and the successor is followed.
    e.observe(t0 + 2 * S, Some(obs(3, "successor", 1)));
    assert_eq!(e.role(t0 + 2 * S), Role::Follower);
    assert_eq!(e.view(t0 + 2 * S).leader_name(), "successor");
    assert!(
        e.poll_action(t0 + 30 * S).is_none(),
        "not even after expiry"
    );
    e.set_eligible(t0 + 30 * S, true);
    assert!(
        e.poll_action(t0 + 30 * S).is_none(),
        "eligibility does not undo a step-down"
    );
    e.release(t0 + 31 * S);
    assert!(e.poll_action(t0 + 31 * S).is_none());
    assert!(e.is_stopped());
}

#[test]
fn a_stepped_down_candidate_does_not_spin_on_an_expired_lease() {
    let t0 = Instant::now();
    let mut e = synced(t0, Some(obs(5, "other", 3)));
    e.step_down(t0);
    assert!(e.poll_action(t0).is_none());
    // One wake-up at expiry, to publish that the leader is gone...
    let wake = e
        .next_wakeup()
        .expect("wakes once to publish the role change");
    assert_eq!(wake, t0 + 10 * S + Duration::from_millis(1));
    e.tick(wake);
    assert!(e.poll_action(wake).is_none());
    assert_eq!(e.view(wake).role, Role::Candidate);
    // ...and then nothing until something is observed.
    assert_eq!(e.next_wakeup(), None);
    e.set_eligible(wake, false);
    assert_eq!(e.next_wakeup(), None);
}

#[test]
fn a_planned_handover_names_the_successor_at_the_next_epoch_and_it_acts_after_its_renewal() {
    let t0 = Instant::now();
    let (mut e, _) = acquire_as_leader(t0);
    let to = Successor {
        identity: "next".into(),
        address: Some("198.18.0.3:8080".into()),
        peer_address: None,
    };
    let t1 = t0 + S;
    assert!(e.hand_over(t1, to.clone()));
    // Stops acting at once, before anything is written.
    assert_eq!(e.role(t1), Role::Candidate);
    assert_eq!(e.handing_over_to(), Some("next"));
    let write = e.poll_action(t1).expect("the handover write");
    let Action::Replace { intent, draft, .. } = &write else {
        panic!("{write:?}")
    };
    assert_eq!(*intent, Intent::Handover);
    assert_eq!(draft.holder, "next");
    assert_eq!(draft.transitions, 1, "the next epoch");
    assert_eq!(draft.address.as_deref(), Some("198.18.0.3:8080"));
    e.write_done(t1, Ok(stored(&write, 2)));
    assert_eq!(e.handing_over_to(), None);
    assert_eq!(e.role(t1), Role::Follower);
    assert_eq!(e.view(t1).leader_name(), "next");
    assert!(!e.hand_over(t1, to), "only the holder hands over");

    // The successor sees itself named: it renews at once (not a retryPeriod later) and acts
    // only once that renewal has succeeded.
    let mut next = Elector::new(
        "example",
        "next",
        Some("198.18.0.3:8080".into()),
        config(),
        t0,
    );
    assert!(matches!(next.poll_action(t0), Some(Action::Read)));
    next.read_done(t0, Some(obs(1, "me", 0)));
    next.observe(t1, Some(stored(&write, 2)));
    assert_eq!(next.role(t1), Role::Candidate, "named, not yet acting");
    let renew = next.poll_action(t1).expect("renews at once");
    assert!(matches!(
        &renew,
        Action::Replace { intent: Intent::Renew, draft, .. } if draft.transitions == 1
    ));
    next.write_done(t1, Ok(stored(&renew, 3)));
    assert_eq!(next.role(t1), Role::Leader);
}

/// With N slots an idle pod's core for a slot is ineligible until its gate sees the pod
/// named there: named by a handover while ineligible, it waits a retryPeriod for the gate
/// instead of releasing at once, renews as soon as it is made eligible, and releases if it
/// is not within that retryPeriod.
#[test]
fn a_pod_named_while_its_gate_has_not_opened_the_slot_waits_a_retry_period() {
    let t0 = Instant::now();
    let start = |eligible: bool| {
        let mut e = elector(t0);
        e.set_eligible(t0, eligible);
        assert!(matches!(e.poll_action(t0), Some(Action::Read)));
        e.read_done(t0, Some(obs(1, "old", 0)));
        e
    };
    let named = |e: &mut Elector, at: Instant| e.observe(at, Some(obs(2, "me", 1)));
    let t1 = t0 + S;
    // The gate opens the slot: it renews at once and leads.
    let mut e = start(false);
    named(&mut e, t1);
    assert!(e.poll_action(t1).is_none(), "no release at once");
    e.set_eligible(t1 + Duration::from_millis(1), true);
    let renew = e
        .poll_action(t1 + Duration::from_millis(1))
        .expect("renews");
    assert!(
        matches!(
            &renew,
            Action::Replace {
                intent: Intent::Renew,
                ..
            }
        ),
        "{renew:?}"
    );
    e.write_done(t1, Ok(stored(&renew, 3)));
    assert_eq!(e.role(t1), Role::Leader);
    // It does not: a retryPeriod later it releases, so that others may take the slot.
    let mut e = start(false);
    named(&mut e, t1);
    assert!(e.poll_action(t1 + S).is_none());
    let release = e.poll_action(t1 + config().retry_period).expect("releases");
    assert!(
        matches!(
            &release,
            Action::Replace {
                intent: Intent::Release,
                ..
            }
        ),
        "{release:?}"
    );
    // An eligible pod named renews at once, as before.
    let mut e = start(true);
    named(&mut e, t1);
    assert!(matches!(
        e.poll_action(t1),
        Some(Action::Replace {
            intent: Intent::Renew,
            ..
        })
    ));
}

#[test]
fn a_handover_whose_write_fails_leaves_the_holder_to_renew() {
    let t0 = Instant::now();
    let (mut e, _) = acquire_as_leader(t0);
    let to = Successor {
        identity: "next".into(),
        address: None,
        peer_address: None,
    };
    assert!(e.hand_over(t0 + S, to));
    let write = e.poll_action(t0 + S).expect("the handover write");
    e.write_done(t0 + S, Err(WriteError::Other));
    assert_eq!(e.handing_over_to(), None);
    assert_eq!(
        e.role(t0 + S),
        Role::Candidate,
        "not acting until a renewal succeeds"
    );
    // A retryPeriod later it renews; had the handover landed after all, the store would
    // refuse this renewal (its base is the version before the handover).
    let renew = e.poll_action(t0 + 3 * S).expect("renew");
    let (
        Action::Replace {
            intent: Intent::Renew,
            base,
            ..
        },
        Action::Replace { base: b, .. },
    ) = (&renew, &write)
    else {
        panic!("{renew:?}")
    };
    assert_eq!(base.resource_version, b.resource_version);
    e.write_done(t0 + 3 * S, Ok(stored(&renew, 2)));
    assert_eq!(e.role(t0 + 3 * S), Role::Leader);
}

// === events ===

/// Every event queued so far, oldest first.
fn events(e: &mut Elector) -> Vec<Event> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

#[test]
fn acquiring_is_an_event_and_a_first_holder_is_no_change_of_hands() {
    let t0 = Instant::now();
    let (mut e, _) = acquire_as_leader(t0);
    assert_eq!(events(&mut e), [Event::Acquired { epoch: 0 }]);
    assert_eq!(e.poll_event(), None, "each event comes out once");
}

#[test]
fn a_leader_past_its_renew_deadline_loses_by_deadline() {
    let t0 = Instant::now();
    let (mut e, _) = acquire_as_leader(t0);
    events(&mut e);
    e.tick(t0 + config().renew_deadline - Duration::from_millis(1));
    assert_eq!(events(&mut e), []);
    e.tick(t0 + config().renew_deadline);
    assert_eq!(
        events(&mut e),
        [Event::Lost {
            reason: LossReason::Deadline
        }]
    );
}

#[test]
fn a_leader_that_sees_another_holder_loses_it_taken_and_the_lease_changed_hands() {
    let t0 = Instant::now();
    let (mut e, _) = acquire_as_leader(t0);
    events(&mut e);
    // The write's response was seen at t0 + 5ms; the takeover 995ms later.
    e.observe(t0 + S, Some(obs(2, "other", 1)));
    assert_eq!(
        events(&mut e),
        [
            Event::HandsChanged {
                from: "me".into(),
                to: "other".into(),
                epoch: 1,
                gap: S - Duration::from_millis(5),
            },
            Event::Lost {
                reason: LossReason::Taken
            },
        ]
    );
    // The same record again (the read that follows) is no news.
    e.read_done(t0 + 2 * S, Some(obs(2, "other", 1)));
    assert_eq!(events(&mut e), []);
}

#[test]
fn giving_up_is_a_loss_by_release() {
    type GiveUp = fn(&mut Elector, Instant);
    let ways: [(&str, GiveUp); 3] = [
        ("release", |e, now| e.release(now)),
        ("step down", |e, now| e.step_down(now)),
        ("ineligible", |e, now| e.set_eligible(now, false)),
    ];
    for (name, give_up) in ways {
        let t0 = Instant::now();
        let (mut e, _) = acquire_as_leader(t0);
        events(&mut e);
        give_up(&mut e, t0 + S);
        let lost = [Event::Lost {
            reason: LossReason::Released,
        }];
        assert_eq!(events(&mut e), lost, "{name}");
    }
}

#[test]
fn a_follower_reports_a_change_of_hands_with_the_gap_it_saw() {
    let t0 = Instant::now();
    let mut e = synced(t0, Some(obs(1, "a", 4)));
    e.observe(t0 + S, Some(obs(2, "a", 4)));
    // a stops renewing; b takes over after the expiry.
    e.observe(t0 + 12 * S, Some(obs(3, "b", 5)));
    assert_eq!(
        events(&mut e),
        [Event::HandsChanged {
            from: "a".into(),
            to: "b".into(),
            epoch: 5,
            gap: 11 * S,
        }]
    );
    // Deleted and created again by b at a new epoch: a change of hands too (from b).
    e.observe(t0 + 13 * S, None);
    e.observe(t0 + 14 * S, Some(obs(9, "b", 6)));
    assert!(matches!(
        &events(&mut e)[..],
        [Event::HandsChanged { from, to, epoch: 6, .. }] if from == "b" && to == "b"
    ));
}

#[test]
fn queued_events_are_output_not_state() {
    // The model checker deduplicates cores by Eq and Hash: two cores that differ only in
    // what they have to report are the same state.
    let t0 = Instant::now();
    let (mut polled, _) = acquire_as_leader(t0);
    let (unpolled, _) = acquire_as_leader(t0);
    events(&mut polled);
    assert_eq!(polled, unpolled);
    let hash = |e: &Elector| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        e.hash(&mut h);
        h.finish()
    };
    assert_eq!(hash(&polled), hash(&unpolled));
}

// === the failsafe ===

mod failsafe {
    use super::*;
    use crate::failsafe::{FailsafeRecord, PeerReply, PeerRequest, Refusal, RequestKind};

    const MAX: Duration = Duration::from_secs(600);

    fn failsafe(name: &str, now: Instant) -> Elector {
        Elector::new("example", name, Some(format!("{name}:8080")), config(), now)
            .with_failsafe(MAX, now)
    }

    /// `holder`'s record with the failsafe fields: members `members`, at version `rv`.
    fn record(rv: u64, holder: &str, members: &[&str]) -> Observed {
        let mut o = obs(rv, holder, 1);
        o.record.lease_duration_secs = 1000;
        o.record.failsafe = Some(FailsafeRecord {
            members: members.iter().map(|m| m.to_string()).collect(),
            member_expiry_secs: 10,
        });
        o
    }

    /// "me" leads with members b and c in its written set; returns it and the renew's send
    /// time.
    fn leading(t0: Instant) -> Elector {
        let mut e = failsafe("me", t0);
        e.set_members(["b".to_string(), "c".to_string()]);
        assert!(matches!(e.poll_action(t0), Some(Action::Read)));
        e.read_done(t0, None);
        let create = e.poll_action(t0).expect("create");
        let Action::Create { draft, .. } = &create else {
            panic!("{create:?}")
        };
        // The long lease for non-members, the member set and the member expiry.
        assert_eq!(draft.lease_duration_secs, 1000);
        let written = draft.failsafe.clone().expect("failsafe fields");
        assert_eq!(written.members.len(), 3);
        assert_eq!(written.member_expiry_secs, 10);
        e.write_done(t0, Ok(stored(&create, 1)));
        assert_eq!(e.role(t0), Role::Leader);
        e
    }

    fn confirm(round: u64) -> PeerReply {
        PeerReply::Confirm {
            round,
            promise_ms: 10_000,
        }
    }

    #[test]
    fn a_leader_that_cannot_renew_acts_on_every_members_confirmation_and_no_less() {
        let t0 = Instant::now();
        let mut e = leading(t0);
        // Nothing to ask while renewals work.
        assert_eq!(e.poll_peer(t0), None);
        let renew = e.poll_action(t0 + 2 * S).expect("renew");
        assert!(matches!(renew, Action::Replace { .. }));
        e.write_done(t0 + 4 * S, Err(WriteError::Other));
        // A round to each member of the written set.
        let asked: Vec<PeerRequest> = std::iter::from_fn(|| e.poll_peer(t0 + 4 * S)).collect();
        assert_eq!(asked.len(), 2);
        let RequestKind::Confirm { round, .. } = asked[0].kind else {
            panic!("{asked:?}")
        };
        // One confirmation is not enough.
        e.peer_reply(t0 + 4 * S, &asked[0], Some(confirm(round)));
        assert_eq!(e.role(t0 + 6 * S), Role::Candidate);
        // Both are: acting until the round's send time + renewDeadline, on confirmations.
        e.peer_reply(t0 + 4 * S, &asked[1], Some(confirm(round)));
        assert_eq!(e.role(t0 + 6 * S), Role::Leader);
        assert!(e.failsafe_active(t0 + 6 * S));
        assert_eq!(e.role(t0 + 10 * S), Role::Candidate);
        // A confirmation of another round counts for nothing.
        e.peer_reply(t0 + 5 * S, &asked[0], Some(confirm(round + 7)));
        assert_eq!(e.failsafe_stats().rounds_confirmed, 1);
    }

    #[test]
    fn any_refusal_leaves_the_leader_only_what_its_lease_allows() {
        let t0 = Instant::now();
        let mut e = leading(t0);
        e.poll_action(t0 + 2 * S).expect("renew");
        e.write_done(t0 + 3 * S, Err(WriteError::Other));
        let asked: Vec<PeerRequest> = std::iter::from_fn(|| e.poll_peer(t0 + 3 * S)).collect();
        let refusal = PeerReply::Refuse {
            round: 1,
            reason: Refusal::ApiReachable,
            holder: None,
        };
        e.peer_reply(t0 + 3 * S, &asked[0], Some(refusal));
        e.peer_reply(t0 + 3 * S, &asked[1], Some(confirm(1)));
        // The lease's own deadline (acquired at t0) still holds; nothing beyond it.
        assert_eq!(e.role(t0 + 6 * S - Duration::from_millis(1)), Role::Leader);
        assert_eq!(e.role(t0 + 6 * S), Role::Candidate);
        // Fenced: later rounds are not even sent.
        e.tick(t0 + 6 * S);
        assert!(
            std::iter::from_fn(|| e.poll_peer(t0 + 7 * S)).all(|r| r.kind == RequestKind::Status)
        );
    }

    fn member_of(holder: &str, t0: Instant) -> Elector {
        let mut e = failsafe("b", t0);
        assert!(matches!(e.poll_action(t0), Some(Action::Read)));
        e.read_done(t0, Some(record(5, holder, &["a", "b", "c"])));
        e
    }

    fn ask(from: &str, epoch: u64) -> PeerRequest {
        PeerRequest {
            lease: "example".into(),
            epoch,
            from: from.into(),
            to: "b".into(),
            kind: RequestKind::Confirm {
                round: 1,
                lease_ms: 3_600_000,
            },
        }
    }

    #[test]
    fn a_member_that_promised_takes_an_expired_lease_only_once_the_promise_ends() {
        let t0 = Instant::now();
        let mut e = member_of("a", t0);
        // A member expires the record after the member expiry (10s), not 1000s.
        let reply = e.answer(t0 + 9 * S, &ask("a", 1));
        // The promise is capped at the recorded member expiry, whatever the request asks.
        assert_eq!(
            reply,
            PeerReply::Confirm {
                round: 1,
                promise_ms: 10_000
            }
        );
        let after_expiry = t0 + 11 * S;
        e.tick(after_expiry);
        // (A probe: the holder has not renewed for renewDeadline.)
        assert!(matches!(e.poll_action(after_expiry), Some(Action::Read)));
        e.read_failed(after_expiry);
        assert_eq!(e.poll_action(after_expiry), None, "promised until t0+19s");
        // Still forwarding to the holder it promised.
        assert_eq!(e.view(after_expiry).leader_name(), "a");
        // Held back only by its promise, it asks the holder for its status...
        let status: Vec<PeerRequest> = std::iter::from_fn(|| e.poll_peer(after_expiry)).collect();
        assert_eq!(status.len(), 1);
        assert_eq!(
            (status[0].to.as_str(), &status[0].kind),
            ("a", &RequestKind::Status)
        );
        // ...and "not acting" releases it at once.
        let stopped = PeerReply::Status {
            acting: false,
            holder: None,
        };
        e.peer_reply(after_expiry, &status[0], Some(stopped));
        // (After the failed probe, the next call waits a retryPeriod; it reads first.)
        let later = after_expiry + 2 * S;
        assert!(matches!(e.poll_action(later), Some(Action::Read)));
        e.read_done(later, Some(record(5, "a", &["a", "b", "c"])));
        assert!(matches!(
            e.poll_action(later),
            Some(Action::Replace {
                intent: Intent::Acquire,
                ..
            })
        ));
    }

    #[test]
    fn a_member_refuses_rivals_strangers_and_a_partitioned_holder() {
        let t0 = Instant::now();
        let mut e = member_of("a", t0);
        let refused = |reply: PeerReply| match reply {
            PeerReply::Refuse { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        // Someone other than the holder it knows, at any epoch.
        assert_eq!(refused(e.answer(t0, &ask("x", 9))), Refusal::NewerHolder);
        // An older epoch.
        assert_eq!(refused(e.answer(t0, &ask("a", 0))), Refusal::NewerHolder);
        // Meant for another pod.
        let mut other = ask("a", 1);
        other.to = "c".into();
        assert_eq!(refused(e.answer(t0, &other)), Refusal::NotMe);
        // It read the Lease unchanged for renewDeadline: the API works, the holder is cut off.
        let probe = t0 + 7 * S;
        assert!(matches!(e.poll_action(probe), Some(Action::Read)));
        e.read_done(probe, Some(record(5, "a", &["a", "b", "c"])));
        assert_eq!(
            refused(e.answer(probe, &ask("a", 1))),
            Refusal::ApiReachable
        );
        // With its failsafe off, a pod never promises.
        let mut off = elector(t0);
        assert_eq!(refused(off.answer(t0, &ask("a", 1))), Refusal::Off);
    }

    #[test]
    fn the_first_reads_after_an_outage_do_not_make_a_member_refuse() {
        let t0 = Instant::now();
        let mut e = member_of("a", t0);
        // The outage: the probe fails.
        assert!(matches!(e.poll_action(t0 + 7 * S), Some(Action::Read)));
        e.read_failed(t0 + 7 * S);
        // The API is back: the Lease is unchanged since before the outage, but this pod has
        // read it only just now; the holder may be renewing at this very moment.
        let back = t0 + 9 * S;
        assert!(matches!(e.poll_action(back), Some(Action::Read)));
        e.read_done(back, Some(record(5, "a", &["a", "b", "c"])));
        assert!(matches!(
            e.answer(back, &ask("a", 1)),
            PeerReply::Confirm { .. }
        ));
        // Unchanged for renewDeadline of working reads: now the holder is cut off.
        let later = back + 6 * S;
        assert!(matches!(e.poll_action(later), Some(Action::Read)));
        e.read_done(later, Some(record(5, "a", &["a", "b", "c"])));
        assert!(matches!(
            e.answer(later, &ask("a", 1)),
            PeerReply::Refuse {
                reason: Refusal::ApiReachable,
                ..
            }
        ));
    }

    #[test]
    fn a_leader_alone_in_its_set_writes_the_plain_lease_and_stops_at_its_deadline() {
        let t0 = Instant::now();
        let mut e = failsafe("me", t0);
        assert!(matches!(e.poll_action(t0), Some(Action::Read)));
        e.read_done(t0, None);
        let create = e.poll_action(t0).expect("create");
        let Action::Create { draft, .. } = &create else {
            panic!("{create:?}")
        };
        // Nobody could confirm it: a pod that joins later waits only the plain lease.
        assert_eq!(draft.lease_duration_secs, 10);
        e.write_done(t0, Ok(stored(&create, 1)));
        // A member appears; the renew that would name it has an unknown outcome, and the
        // Lease that landed may still be the one naming this pod alone.
        e.set_members(["b".to_string()]);
        let renew = e.poll_action(t0 + 2 * S).expect("renew");
        let Action::Replace { draft, .. } = &renew else {
            panic!("{renew:?}")
        };
        assert_eq!(draft.lease_duration_secs, 1000, "names b: the dead lease");
        e.write_done(t0 + 3 * S, Err(WriteError::Other));
        // No round: b's promise would not hold back a pod that saw the plain lease.
        assert!(
            std::iter::from_fn(|| e.poll_peer(t0 + 3 * S)).all(|r| r.kind == RequestKind::Status)
        );
        assert_eq!(e.role(t0 + 6 * S - Duration::from_millis(1)), Role::Leader);
        assert_eq!(e.role(t0 + 6 * S), Role::Candidate);
        assert!(!e.failsafe_active(t0 + 6 * S));
        // Once a write naming b has landed, the failsafe asks b.
        let retry = e.poll_action(t0 + 7 * S).expect("retry");
        e.write_done(t0 + 7 * S, Ok(stored(&retry, 2)));
        e.poll_action(t0 + 9 * S).expect("renew");
        e.write_done(t0 + 10 * S, Err(WriteError::Other));
        let asked: Vec<PeerRequest> = std::iter::from_fn(|| e.poll_peer(t0 + 10 * S)).collect();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].to, "b");
    }

    #[test]
    fn a_holder_names_a_new_member_at_once_not_a_retry_period_later() {
        let t0 = Instant::now();
        let mut e = leading(t0);
        assert_eq!(
            e.poll_action(t0 + S),
            None,
            "the next renew is due at t0+2s"
        );
        e.set_members(["b".to_string(), "c".to_string()]);
        assert_eq!(
            e.poll_action(t0 + S),
            None,
            "the same set: nothing to write"
        );
        e.set_members(["b".to_string(), "c".to_string(), "d".to_string()]);
        let renew = e.poll_action(t0 + S).expect("renews at once");
        let Action::Replace { intent, draft, .. } = &renew else {
            panic!("{renew:?}")
        };
        assert_eq!(*intent, Intent::Renew);
        assert!(draft.failsafe.as_ref().unwrap().members.contains("d"));
        e.write_done(t0 + S, Ok(stored(&renew, 2)));
        assert_eq!(
            e.poll_action(t0 + 2 * S),
            None,
            "then every retryPeriod again"
        );
        assert!(e.poll_action(t0 + 3 * S).is_some());
    }

    #[test]
    fn a_pod_outside_the_member_set_waits_the_dead_lease() {
        let t0 = Instant::now();
        let mut e = failsafe("newcomer", t0);
        assert!(matches!(e.poll_action(t0), Some(Action::Read)));
        e.read_done(t0, Some(record(5, "a", &["a", "b", "c"])));
        assert_eq!(e.role(t0 + 11 * S), Role::Follower);
        assert_eq!(e.poll_action(t0 + 11 * S), None);
        assert_eq!(e.role(t0 + 1001 * S), Role::Candidate);
    }
}
