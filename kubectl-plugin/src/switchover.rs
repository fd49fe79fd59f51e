//! `switchover`: asks the holder of a slot to hand it over, by writing
//! `understudy.io/handover-to` on the slot's Lease, then watches that Lease for the outcome.
//!
//! The sidecar answers by handing over (a new holder, a higher epoch), or by removing the
//! annotation and recording a `HandoverRefused` Event on the Lease.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, WatchEvent, WatchParams};

use crate::discover::Leases;
use crate::election::{Election, Health, Slot};
use crate::error::{Error, LEASE_PERMISSIONS, call};
use crate::names::{HANDOVER_ANNOTATION, HANDOVER_REFUSED_REASON, member_lease_name};
use crate::render::human_duration;

/// The permission the refusal reason needs.
const EVENT_PERMISSIONS: &str =
    "the plugin needs list on events to show why a switchover was refused";

/// How often the Events are polled after a refusal, until the reason shows up.
const EVENT_POLL: Duration = Duration::from_millis(500);

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The election.
    pub election: String,
    /// `--slot`.
    pub slot: Option<usize>,
    /// `--from`: the slot this pod holds.
    pub from: Option<String>,
    /// `--to`: the pod to hand over to; `None` for any healthy standby.
    pub to: Option<String>,
    /// `--wait`; zero: write the request and return.
    pub wait: Duration,
}

/// The state a switchover starts from: the slot's holder and epoch once the request is on
/// the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Baseline {
    /// The slot's Lease.
    pub lease: String,
    /// The holder asked to hand over.
    pub holder: String,
    /// Its epoch.
    pub epoch: i32,
    /// The pod asked for, `None` for any.
    pub to: Option<String>,
}

/// Where a switchover stands after one observation of the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing decided yet.
    Pending,
    /// Handed over as asked.
    Done {
        /// The new holder.
        holder: String,
        /// Its epoch.
        epoch: i32,
    },
    /// Another pod than the one asked for took the slot.
    Elsewhere {
        /// The new holder.
        holder: String,
        /// Its epoch.
        epoch: i32,
    },
    /// The holder removed the request and kept the slot.
    Refused,
}

// === the checks before writing ===

/// The slot the request is about: `--slot`, else the slot `--from` holds, else the only one.
pub fn pick_slot<'e>(election: &'e Election, request: &Request) -> Result<&'e Slot, Error> {
    let name = &election.name;
    let n = election.actives();
    if let Some(k) = request.slot {
        let slot = election.slots.get(k).ok_or_else(|| {
            Error::Failed(format!(
                "{name} has {n} active slot{} (0..{}): no slot {k}",
                if n == 1 { "" } else { "s" },
                n.saturating_sub(1)
            ))
        })?;
        if let Some(from) = &request.from
            && slot.holder.as_deref() != Some(from)
        {
            return Err(Error::Failed(format!(
                "{from} does not hold slot {k} of {name} (holder: {})",
                slot.holder.as_deref().unwrap_or("none")
            )));
        }
        return Ok(slot);
    }
    if let Some(from) = &request.from {
        return election
            .slots
            .iter()
            .find(|s| s.holder.as_deref() == Some(from))
            .ok_or_else(|| Error::Failed(format!("{from} holds no slot of {name}")));
    }
    match election.slots.as_slice() {
        [only] => Ok(only),
        _ => Err(Error::Failed(format!(
            "{name} has {n} active slots: name one with --slot K (0..{}) or --from POD",
            n - 1
        ))),
    }
}

/// Refuses a request the holder could not carry out: no holder, a target that already
/// holds the slot or is not a healthy member.
pub fn check(
    election: &Election,
    slot: &Slot,
    to: Option<&str>,
    now: Timestamp,
) -> Result<(), Error> {
    let name = &election.name;
    let Some(holder) = &slot.holder else {
        let which = if election.actives() > 1 {
            format!(" (slot {})", slot.index)
        } else {
            String::new()
        };
        return Err(Error::Failed(format!(
            "{name} has no leader to switch over from{which}"
        )));
    };
    let Some(to) = to else { return Ok(()) };
    if to == holder {
        return Err(Error::Failed(format!("{to} already holds {}", slot.lease)));
    }
    let why = match election.member(to) {
        None => format!("no member Lease {}", member_lease_name(name, to)),
        Some(m) => match m.health(now) {
            Health::Live => return Ok(()),
            Health::NotReady => "it reports ready=false".to_string(),
            Health::Stale => format!(
                "its member Lease is stale: last renewed {} ago, duration {}s",
                m.renewed_ago(now).map_or("never".into(), human_duration),
                m.duration_seconds.unwrap_or(0)
            ),
        },
    };
    Err(Error::Failed(format!(
        "{to} is not a healthy member of {name} ({why})"
    )))
}

// === the outcome ===

impl Baseline {
    /// Where the switchover stands given the Lease as now observed.
    pub fn judge(&self, now: &Slot) -> Progress {
        match &now.holder {
            Some(h) if *h != self.holder && now.epoch.unwrap_or(0) > self.epoch => {
                let epoch = now.epoch.unwrap_or(0);
                match &self.to {
                    Some(to) if to != h => Progress::Elsewhere {
                        holder: h.clone(),
                        epoch,
                    },
                    _ => Progress::Done {
                        holder: h.clone(),
                        epoch,
                    },
                }
            }
            Some(h) if *h == self.holder && now.handover_to.is_none() => Progress::Refused,
            _ => Progress::Pending,
        }
    }
}

/// The newest `HandoverRefused` message among `events` no older than `since`.
pub fn refusal_message(events: &[Event], since: Timestamp) -> Option<String> {
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some(HANDOVER_REFUSED_REASON))
        .filter_map(|e| Some((event_time(e)?, e)))
        .filter(|(t, _)| *t >= since)
        .max_by_key(|(t, _)| *t)
        .map(|(_, e)| e.message.clone().unwrap_or_default())
}

/// When an Event last happened: the latest of its timestamps.
fn event_time(e: &Event) -> Option<Timestamp> {
    [
        e.series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref())
            .map(|t| t.0),
        e.event_time.as_ref().map(|t| t.0),
        e.last_timestamp.as_ref().map(|t| t.0),
        e.first_timestamp.as_ref().map(|t| t.0),
        e.metadata.creation_timestamp.as_ref().map(|t| t.0),
    ]
    .into_iter()
    .flatten()
    .max()
}

// === the driver ===

/// Runs `request`; the lines to print on success.
pub async fn run(
    leases: &Leases,
    events: &Api<Event>,
    request: &Request,
) -> Result<Vec<String>, Error> {
    let now = Timestamp::now();
    let election = leases.one(&request.election, now).await?;
    let slot = pick_slot(&election, request)?;
    if !slot.exists {
        return Err(Error::NotFound {
            election: request.election.clone(),
            namespace: leases.namespace().to_string(),
        });
    }
    check(&election, slot, request.to.as_deref(), now)?;

    let lease = slot.lease.clone();
    let patch = serde_json::json!({
        "metadata": {"annotations": {HANDOVER_ANNOTATION: request.to.clone().unwrap_or_default()}}
    });
    let requested_at = Timestamp::now();
    let started = Instant::now();
    let written = call(
        &format!("patch lease {lease}"),
        LEASE_PERMISSIONS,
        leases
            .api()
            .patch(&lease, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await?;
    let observed = Slot::from_lease(slot.index, &lease, Some(&written));
    let Some(holder) = observed.holder.clone() else {
        return Err(Error::Failed(format!(
            "{} has no leader to switch over from",
            request.election
        )));
    };
    let base = Baseline {
        lease: lease.clone(),
        holder,
        epoch: observed.epoch.unwrap_or(0),
        to: request.to.clone(),
    };
    let target = request.to.as_deref().unwrap_or("any healthy standby");
    let asked = format!(
        "switchover requested: {} (lease {lease}): {} -> {target}",
        request.election, base.holder
    );
    if request.wait.is_zero() {
        return Ok(vec![asked]);
    }
    println!("{asked}; waiting up to {}", show_wait(request.wait));

    let deadline = tokio::time::Instant::now() + request.wait;
    let rv = written
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    let (progress, last) = watch(leases, &base, slot.index, rv, deadline).await?;
    let took = format!("{:.1}s", started.elapsed().as_secs_f64());
    match progress {
        Progress::Done { holder, epoch } => Ok(vec![format!(
            "switched over: {} -> {holder} (epoch {epoch}, took {took})",
            base.holder
        )]),
        Progress::Elsewhere { holder, epoch } => Err(Error::Failed(format!(
            "{} changed leader to {holder}, not {target}: {} -> {holder} (epoch {epoch}, took {took})",
            request.election, base.holder
        ))),
        Progress::Refused => {
            let since = requested_at - jiff::SignedDuration::from_secs(2);
            match refusal(events, &lease, since, deadline).await {
                Ok(Some(message)) => Err(Error::Failed(format!(
                    "switchover refused by {}: {message}",
                    base.holder
                ))),
                Ok(None) => Err(timeout(request, &base, &last)),
                // Refused all the same; only the reason is out of reach.
                Err(e) => Err(Error::Failed(format!(
                    "switchover refused by {}; its reason could not be read: {e}",
                    base.holder
                ))),
            }
        }
        Progress::Pending => Err(timeout(request, &base, &last)),
    }
}

fn timeout(request: &Request, base: &Baseline, last: &Slot) -> Error {
    let annotation = if last.handover_to.is_some() {
        "annotation still set"
    } else {
        "annotation removed"
    };
    let holder = match &last.holder {
        Some(h) if *h == base.holder => format!("holder still {h}"),
        Some(h) => format!("holder now {h}"),
        None => "no holder".to_string(),
    };
    Error::Failed(format!(
        "no switchover within {}: {holder} ({annotation})",
        show_wait(request.wait)
    ))
}

/// `--wait` as the user would write it.
fn show_wait(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Watches the slot's Lease from resourceVersion `rv` until the switchover is decided or
/// `deadline`; the progress and the Lease as last seen.
async fn watch(
    leases: &Leases,
    base: &Baseline,
    index: usize,
    mut rv: String,
    deadline: tokio::time::Instant,
) -> Result<(Progress, Slot), Error> {
    let api = leases.api();
    let mut last = Slot::from_lease(index, &base.lease, None);
    last.holder = Some(base.holder.clone());
    last.handover_to = Some(String::new());
    let fields = format!("metadata.name={}", base.lease);
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return Ok((Progress::Pending, last));
        }
        // The server ends the watch a little after the deadline at the latest.
        let secs = u32::try_from(remaining.as_secs() + 1)
            .unwrap_or(290)
            .min(290);
        let params = WatchParams::default().fields(&fields).timeout(secs);
        let stream = match tokio::time::timeout_at(deadline, api.watch(&params, &rv)).await {
            Err(_) => return Ok((Progress::Pending, last)),
            Ok(Err(e)) => {
                return Err(Error::from_kube(
                    format!("watch lease {}", base.lease),
                    LEASE_PERMISSIONS,
                    e,
                ));
            }
            Ok(Ok(s)) => s,
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let event = match tokio::time::timeout_at(deadline, stream.try_next()).await {
                Err(_) => return Ok((Progress::Pending, last)),
                Ok(Ok(Some(e))) => e,
                // The server closed the watch: watch again from `rv`.
                Ok(Ok(None)) => break,
                // It broke: the same, after a pause so a failing server is not hammered.
                Ok(Err(_)) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            };
            let lease: Lease = match event {
                WatchEvent::Added(l) | WatchEvent::Modified(l) => l,
                WatchEvent::Deleted(_) => {
                    return Err(Error::Failed(format!(
                        "lease {} was deleted during the switchover",
                        base.lease
                    )));
                }
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(status) if status.code == 410 => {
                    // Too old a resourceVersion: read the Lease afresh and watch from there.
                    let Some(l) = leases.get(&base.lease).await? else {
                        return Err(Error::Failed(format!(
                            "lease {} was deleted during the switchover",
                            base.lease
                        )));
                    };
                    l
                }
                WatchEvent::Error(status) => {
                    return Err(Error::from_kube(
                        format!("watch lease {}", base.lease),
                        LEASE_PERMISSIONS,
                        kube::Error::Api(status),
                    ));
                }
            };
            if let Some(v) = &lease.metadata.resource_version {
                rv = v.clone();
            }
            last = Slot::from_lease(index, &base.lease, Some(&lease));
            match base.judge(&last) {
                Progress::Pending => {}
                decided => return Ok((decided, last)),
            }
        }
    }
}

/// The holder's reason for refusing, polled until `deadline` (the Event may be written after
/// the annotation is removed).
async fn refusal(
    events: &Api<Event>,
    lease: &str,
    since: Timestamp,
    deadline: tokio::time::Instant,
) -> Result<Option<String>, Error> {
    let params = ListParams::default().fields(&format!(
        "involvedObject.name={lease},involvedObject.kind=Lease"
    ));
    loop {
        let list = call("list events", EVENT_PERMISSIONS, events.list(&params)).await?;
        if let Some(message) = refusal_message(&list.items, since) {
            return Ok(Some(message));
        }
        if tokio::time::Instant::now() + EVENT_POLL >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(EVENT_POLL).await;
    }
}

#[cfg(test)]
mod tests;
