//! Membership for the failsafe and for planned handovers: one small Lease per pod, renewed
//! slowly and watched.
//!
//! Each pod keeps a Lease named [`member_lease_name`] (`<election>-member-<pod>`), labelled
//! [`ELECTION_LABEL`]` = <election>`, holding its identity and the addresses its peers reach
//! it at, and what it says about itself ([`SelfReport`]: its priority, whether it is ready to
//! lead, how many active slots it runs with). It is renewed every [`MEMBER_RENEW`] (and at once
//! when its readiness changes) with `leaseDurationSeconds` [`MEMBER_TTL`] and
//! deleted on shutdown. Every pod list-watches the election's member Leases; a member is live
//! while its Lease has changed within its duration by this pod's clock (the same expiry rule as
//! the election's). A holder writes the live members into its slot Lease with each renewal
//! ([`crate::failsafe::MEMBERS_ANNOTATION`]); that written set, not this table, is what the
//! failsafe asks and what lets a member take over on the short expiry. A pod that joins during
//! an outage is therefore in no written set: it is never asked and cannot take over early.
//!
//! Expiry is only counted while this pod's own list-watch works: when it fails (an outage),
//! the table is frozen, and after a failure every member listed again counts as seen anew.
//! Keeping a member too long only costs availability (a dead member stops the failsafe);
//! dropping live members during an outage would stop the failsafe for nothing.
//!
//! At rest this costs each pod, per minute, 3 reads and 3 writes of its own Lease, and one
//! list and one watch of the member Leases per resync period; the election's own calls are
//! unchanged.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Config;
use crate::driver::{Candidate, describe};
use crate::failsafe::{PeerReply, PeerRequest};
use crate::record::{ADDRESS_ANNOTATION, LeaseExt, PEER_ADDRESS_ANNOTATION};

/// Label on member Leases: the election they belong to.
pub const ELECTION_LABEL: &str = "understudy.io/election";

/// `leaseDurationSeconds` of a member Lease.
pub const MEMBER_TTL: Duration = Duration::from_secs(60);

/// How often a pod renews its member Lease.
pub const MEMBER_RENEW: Duration = Duration::from_secs(20);

/// The member Lease of pod `identity` in election `election`.
pub fn member_lease_name(election: &str, identity: &str) -> String {
    format!("{election}-member-{identity}")
}

/// A member as its Lease describes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// The pod's identity.
    pub identity: String,
    /// Its proxy address (plain HTTP peer channel).
    pub address: Option<String>,
    /// Its mTLS peer address, when it serves one.
    pub peer_address: Option<String>,
    /// Whether it may lead (annotation [`READY_ANNOTATION`]); `None` when it does not say.
    pub ready: Option<bool>,
    /// Its leadership priority (annotation [`PRIORITY_ANNOTATION`]); 0 when it does not say.
    pub priority: i64,
}

/// Annotation on a member Lease: `"true"` or `"false"`, whether the pod may lead now.
pub const READY_ANNOTATION: &str = "understudy.io/ready";

/// Annotation on a member Lease: the pod's leadership priority, an integer.
pub const PRIORITY_ANNOTATION: &str = "understudy.io/priority";

/// Annotation on a member Lease: how many active slots the pod runs with (`--actives`).
pub const ACTIVES_ANNOTATION: &str = "understudy.io/actives";

/// What a pod says about itself in its member Lease besides its addresses: written with every
/// renewal, and at once when `ready` changes.
#[derive(Clone, Debug)]
pub struct SelfReport {
    /// [`PRIORITY_ANNOTATION`]: `--priority`.
    pub priority: i64,
    /// [`ACTIVES_ANNOTATION`]: `--actives`.
    pub actives: usize,
    /// [`READY_ANNOTATION`]: whether the pod may lead now (healthy, not stepping down).
    pub ready: watch::Receiver<bool>,
}

/// The live members of an election, by identity.
pub type Members = BTreeMap<String, Member>;

/// Carries failsafe requests to a member and brings back its answer; the proxy implements it
/// over HTTP (or mTLS). `None` when the member could not be reached or answered nonsense; the
/// caller bounds the call with its timeout.
pub trait PeerChannel: Send + Sync {
    /// Sends `request` to `member`.
    fn send(
        &self,
        member: &Member,
        request: PeerRequest,
    ) -> Pin<Box<dyn Future<Output = Option<PeerReply>> + Send>>;
}

/// The failsafe's settings for [`crate::spawn_slots_with`].
#[derive(Clone)]
pub struct FailsafeOptions {
    /// `--failsafe-max`.
    pub max: Duration,
    /// How requests reach members.
    pub channel: Arc<dyn PeerChannel>,
}

impl std::fmt::Debug for FailsafeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailsafeOptions")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// Keeps this pod's member Lease and follows everyone's; stops (deleting this pod's Lease)
/// when [`Membership::leave`] is called or the handle is dropped.
#[derive(Debug)]
pub struct Membership {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    api: Api<Lease>,
    name: String,
}

impl Membership {
    /// Deletes this pod's member Lease (best effort, within `timeout`) and stops.
    pub async fn leave(self, timeout: Duration) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
        let params = DeleteParams::default();
        let delete = self.api.delete(&self.name, &params);
        match tokio::time::timeout(timeout, delete).await {
            Ok(Ok(_)) => tracing::debug!(lease = %self.name, "member lease deleted"),
            Ok(Err(error)) => {
                tracing::debug!(lease = %self.name, error = %describe(&error), "member lease not deleted")
            }
            Err(_) => tracing::debug!(lease = %self.name, "member lease delete timed out"),
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts keeping `me`'s member Lease of `election` and following the election's members.
pub fn spawn_membership(
    api: Api<Lease>,
    election: &str,
    me: &Candidate,
    report: SelfReport,
    config: Config,
) -> (watch::Receiver<Members>, Membership) {
    let (tx, rx) = watch::channel(Members::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let name = member_lease_name(election, &me.identity);
    let keep = tokio::spawn(keep(
        api.clone(),
        name.clone(),
        election.to_string(),
        me.clone(),
        report,
        config,
        stop_rx,
    ));
    let follow = tokio::spawn(follow(api.clone(), election.to_string(), config, tx));
    (
        rx,
        Membership {
            stop: stop_tx,
            tasks: vec![keep, follow],
            api,
            name,
        },
    )
}

fn member_lease(
    name: &str,
    election: &str,
    me: &Candidate,
    report: &SelfReport,
    base: Option<Lease>,
) -> Lease {
    let mut lease = base.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    lease
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(ELECTION_LABEL.to_string(), election.to_string());
    let annotations = lease
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    for (key, value) in [
        (ADDRESS_ANNOTATION, &me.address),
        (PEER_ADDRESS_ANNOTATION, &me.peer_address),
    ] {
        match value {
            Some(v) => annotations.insert(key.to_string(), v.clone()),
            None => annotations.remove(key),
        };
    }
    let ready = *report.ready.borrow();
    for (key, value) in [
        (READY_ANNOTATION, ready.to_string()),
        (PRIORITY_ANNOTATION, report.priority.to_string()),
        (ACTIVES_ANNOTATION, report.actives.to_string()),
    ] {
        annotations.insert(key.to_string(), value);
    }
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(me.identity.clone());
    spec.lease_duration_seconds = Some(MEMBER_TTL.as_secs() as i32);
    spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
    lease.metadata.managed_fields = None;
    lease
}

/// Creates or renews this pod's member Lease every [`MEMBER_RENEW`] (every retryPeriod after a
/// failure, at once when its readiness changes), until stopped.
async fn keep(
    api: Api<Lease>,
    name: String,
    election: String,
    me: Candidate,
    mut report: SelfReport,
    config: Config,
    mut stop: watch::Receiver<bool>,
) {
    let timeout = config.call_timeout();
    // Whether the election still reports readiness (its sender lives).
    let mut open = true;
    loop {
        report.ready.borrow_and_update();
        let write = async {
            let current = api.get_opt(&name).await?;
            let exists = current.is_some();
            let lease = member_lease(&name, &election, &me, &report, current);
            if exists {
                api.replace(&name, &PostParams::default(), &lease).await
            } else {
                api.create(&PostParams::default(), &lease).await
            }
        };
        let wait = match tokio::time::timeout(2 * timeout, write).await {
            Ok(Ok(_)) => MEMBER_RENEW,
            Ok(Err(error)) => {
                tracing::debug!(lease = %name, error = %describe(&error), "member lease not written");
                config.retry_period
            }
            Err(_) => config.retry_period,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = report.ready.changed(), if open => open = changed.is_ok(),
            _ = stop.changed() => return,
        }
    }
}

/// A member Lease as followed: the member, when this pod saw it change, and its duration.
struct Seen {
    member: Member,
    resource_version: String,
    changed_at: Instant,
    duration: Duration,
}

fn member_of(lease: &Lease) -> Option<(String, Member, String, Duration)> {
    let name = lease.metadata.name.clone()?;
    let rv = lease.metadata.resource_version.clone()?;
    let spec = lease.spec.as_ref()?;
    let identity = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
    let member = Member {
        identity,
        address: lease.annotation(ADDRESS_ANNOTATION),
        peer_address: lease.annotation(PEER_ADDRESS_ANNOTATION),
        ready: lease
            .annotation(READY_ANNOTATION)
            .and_then(|r| r.parse().ok()),
        priority: lease
            .annotation(PRIORITY_ANNOTATION)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
    };
    Some((name, member, rv, duration))
}

/// List-watches the election's member Leases and publishes the live members, re-publishing
/// as members expire.
async fn follow(api: Api<Lease>, election: String, config: Config, tx: watch::Sender<Members>) {
    let selector = format!("{ELECTION_LABEL}={election}");
    let resync = config.resync_period.as_secs().clamp(1, 290) as u32;
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    // After a failed list or watch, members listed again count as seen anew.
    let mut failed = false;
    let publish = |seen: &BTreeMap<String, Seen>, tx: &watch::Sender<Members>| {
        let now = Instant::now();
        let live: Members = seen
            .values()
            .filter(|s| now.duration_since(s.changed_at) <= s.duration)
            .map(|s| (s.member.identity.clone(), s.member.clone()))
            .collect();
        tx.send_if_modified(|current| {
            let changed = *current != live;
            *current = live;
            changed
        });
    };
    let note = |seen: &mut BTreeMap<String, Seen>, lease: &Lease| {
        if let Some((name, member, rv, duration)) = member_of(lease) {
            let unchanged = seen.get(&name).is_some_and(|s| s.resource_version == rv);
            if !unchanged {
                let changed_at = Instant::now();
                let entry = Seen {
                    member,
                    resource_version: rv,
                    changed_at,
                    duration,
                };
                seen.insert(name, entry);
            }
        }
    };
    loop {
        if tx.is_closed() {
            return;
        }
        let list = tokio::time::timeout(
            config.call_timeout(),
            api.list(&ListParams::default().labels(&selector)),
        )
        .await;
        let rv = match list {
            Ok(Ok(list)) => {
                let names: Vec<String> = list
                    .items
                    .iter()
                    .filter_map(|l| l.metadata.name.clone())
                    .collect();
                seen.retain(|name, _| names.contains(name));
                if std::mem::take(&mut failed) {
                    let now = Instant::now();
                    for s in seen.values_mut() {
                        s.changed_at = now;
                    }
                }
                for lease in &list.items {
                    note(&mut seen, lease);
                }
                publish(&seen, &tx);
                list.metadata.resource_version.unwrap_or_default()
            }
            Ok(Err(error)) => {
                if let kube::Error::Api(_) = &error {
                    // A refusal (an old Role without `list`) is the operator's to fix.
                    tracing::warn!(election = %election, error = %describe(&error), "listing member leases failed: the failsafe knows no members");
                }
                failed = true;
                tokio::time::sleep(config.retry_period).await;
                continue;
            }
            Err(_) => {
                failed = true;
                tokio::time::sleep(config.retry_period).await;
                continue;
            }
        };
        let params = WatchParams::default().labels(&selector).timeout(resync);
        let deadline = Duration::from_secs(resync as u64) + config.call_timeout();
        let watch = async {
            let stream = api.watch(&params, &rv).await?;
            futures::pin_mut!(stream);
            let mut tick = tokio::time::interval(MEMBER_RENEW);
            // Every member renews every MEMBER_RENEW: a watch silent for two of those is cut.
            let mut last_event = Instant::now();
            loop {
                tokio::select! {
                    event = stream.try_next() => match event? {
                        Some(WatchEvent::Added(l) | WatchEvent::Modified(l)) => note(&mut seen, &l),
                        Some(WatchEvent::Deleted(l)) => {
                            if let Some(name) = l.metadata.name {
                                seen.remove(&name);
                            }
                        }
                        Some(WatchEvent::Bookmark(_)) => {}
                        Some(WatchEvent::Error(status)) => return Err(kube::Error::Api(status)),
                        None => return Ok::<(), kube::Error>(()),
                    },
                    _ = tick.tick() => {
                        if last_event.elapsed() > 2 * MEMBER_RENEW {
                            return Err(kube::Error::Service(Box::new(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "member watch silent",
                            ))));
                        }
                        publish(&seen, &tx);
                        continue;
                    }
                }
                last_event = Instant::now();
                publish(&seen, &tx);
            }
        };
        match tokio::time::timeout(deadline, watch).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(election = %election, error = %describe(&error), "member watch ended");
                failed = true;
                tokio::time::sleep(config.retry_period).await;
            }
            // Silent past its deadline: maybe cut.
            Err(_) => failed = true,
        }
        if !failed {
            publish(&seen, &tx);
        }
    }
}
