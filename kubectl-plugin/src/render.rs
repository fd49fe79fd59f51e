//! `status` output: kubectl-style tables (upper-case headers, columns three spaces apart) and
//! a stable JSON document (its shape is in docs/kubectl-plugin.md).

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::election::{Election, Member, Slot};

// === tables ===

/// The slots table and the members table of `elections`, as kubectl would print them.
pub fn table(elections: &[Election], now: Timestamp) -> String {
    let mut slots = vec![row(&[
        "ELECTION",
        "SLOT",
        "LEASE",
        "HOLDER",
        "EPOCH",
        "HELD",
        "RENEWED",
        "FAILSAFE",
        "SWITCHOVER",
    ])];
    let mut members = vec![row(&[
        "ELECTION", "MEMBER", "STATUS", "READY", "PRIORITY", "RENEWED", "ROLE", "ADDRESS",
    ])];
    for e in elections {
        for s in &e.slots {
            slots.push(vec![
                e.name.clone(),
                s.index.to_string(),
                s.lease.clone(),
                holder_cell(s),
                s.epoch.map_or("-".into(), |n| n.to_string()),
                s.held(now).map_or("-".into(), human_duration),
                age(s.renewed, now),
                failsafe_cell(s, now),
                match s.handover_to.as_deref() {
                    None => "-".into(),
                    Some("") => "requested (any)".into(),
                    Some(to) => format!("requested ({to})"),
                },
            ]);
        }
        for m in &e.members {
            members.push(vec![
                e.name.clone(),
                m.pod.clone(),
                m.health(now).as_str().into(),
                m.ready.map_or("-".into(), |r| r.to_string()),
                m.priority.map_or("-".into(), |p| p.to_string()),
                m.renewed_ago(now).map_or("-".into(), human_duration),
                role(e, m),
                m.address.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    let mut out = align(&slots);
    if members.len() > 1 {
        out.push('\n');
        out.push_str(&align(&members));
    }
    out
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

fn holder_cell(s: &Slot) -> String {
    match (&s.holder, s.exists) {
        (Some(h), _) => h.clone(),
        (None, true) => "<none>".into(),
        (None, false) => "<no lease>".into(),
    }
}

/// `off`, `on`, or either with `, possibly acting on confirmations`.
fn failsafe_cell(s: &Slot, now: Timestamp) -> String {
    let on = if s.failsafe_on() { "on" } else { "off" };
    if s.possibly_on_confirmations(now) {
        format!("{on}, possibly acting on confirmations")
    } else {
        on.into()
    }
}

fn role(e: &Election, m: &Member) -> String {
    match e.slots_held_by(&m.pod).as_slice() {
        [] => "standby".into(),
        [_] if e.actives() == 1 => "leader".into(),
        held => format!(
            "leader (slot {})",
            held.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

fn age(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map_or("-".into(), |t| human_duration(duration_between(t, now)))
}

/// Rows as columns three spaces apart (kubectl's tabwriter padding), the last one unpadded.
pub fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < r.len() {
                let pad = widths[c] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A duration as kubectl prints ages (`HumanDuration`): `45s`, `3m20s`, `15m`, `4h5m`, `2d3h`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    let (years, days) = (hours / 24 / 365, (hours / 24) % 365);
    if hours < 24 * 365 * 8 && days != 0 {
        format!("{years}y{days}d")
    } else {
        format!("{years}y")
    }
}

fn duration_between(then: Timestamp, now: Timestamp) -> Duration {
    let nanos = (now.as_nanosecond() - then.as_nanosecond()).max(0);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

// === JSON ===

/// The `-o json` document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// The namespace read.
    pub namespace: String,
    /// When it was read (the plugin's clock), RFC 3339.
    pub time: String,
    /// The elections, by name.
    pub elections: Vec<ElectionJson>,
}

/// One election in the JSON document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ElectionJson {
    /// The election's name.
    pub name: String,
    /// The number of active slots.
    pub actives: usize,
    /// The slots, by index.
    pub slots: Vec<SlotJson>,
    /// The members, by pod.
    pub members: Vec<MemberJson>,
}

/// One slot in the JSON document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotJson {
    /// The slot's index.
    pub slot: usize,
    /// The slot's Lease.
    pub lease: String,
    /// Whether the Lease exists.
    pub exists: bool,
    /// The holder, `null` when nobody holds it.
    pub holder: Option<String>,
    /// `leaseTransitions`.
    pub epoch: Option<i32>,
    /// `acquireTime`, RFC 3339.
    pub acquire_time: Option<String>,
    /// `renewTime`, RFC 3339.
    pub renew_time: Option<String>,
    /// now − acquireTime in whole seconds, when held.
    pub held_seconds: Option<u64>,
    /// `leaseDurationSeconds`.
    pub lease_duration_seconds: Option<i32>,
    /// The holder's advertised address.
    pub address: Option<String>,
    /// The failsafe as far as the Lease tells.
    pub failsafe: FailsafeJson,
    /// A pending switchover request: the pod named, `""` for any healthy standby, `null` for
    /// none.
    pub handover_to: Option<String>,
}

/// What the Lease says about the failsafe.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailsafeJson {
    /// The Lease carries a member set (`understudy.io/members`).
    pub on: bool,
    /// That member set.
    pub members: Option<Vec<String>>,
    /// `understudy.io/member-expiry-seconds`.
    pub member_expiry_seconds: Option<u64>,
    /// Held, and renewTime older than the member expiry: the holder may be acting on its
    /// members' confirmations, or may be dead.
    pub possibly_acting_on_confirmations: bool,
}

/// One member in the JSON document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberJson {
    /// The pod.
    pub pod: String,
    /// Its member Lease.
    pub lease: String,
    /// `live`, `not-ready` or `stale`.
    pub health: &'static str,
    /// Not renewed within its duration.
    pub stale: bool,
    /// `understudy.io/ready`, `null` when not written.
    pub ready: Option<bool>,
    /// `understudy.io/priority`, `null` when not written.
    pub priority: Option<i64>,
    /// `renewTime`, RFC 3339.
    pub renew_time: Option<String>,
    /// now − renewTime in whole seconds.
    pub renewed_seconds_ago: Option<u64>,
    /// `leaseDurationSeconds`.
    pub lease_duration_seconds: Option<i32>,
    /// Its advertised address.
    pub address: Option<String>,
    /// The slots it holds.
    pub holds: Vec<usize>,
}

/// The JSON document for `elections` in `namespace`.
pub fn document(namespace: &str, elections: &[Election], now: Timestamp) -> Document {
    Document {
        namespace: namespace.to_string(),
        time: now.to_string(),
        elections: elections
            .iter()
            .map(|e| ElectionJson {
                name: e.name.clone(),
                actives: e.actives(),
                slots: e.slots.iter().map(|s| slot_json(s, now)).collect(),
                members: e.members.iter().map(|m| member_json(e, m, now)).collect(),
            })
            .collect(),
    }
}

fn slot_json(s: &Slot, now: Timestamp) -> SlotJson {
    SlotJson {
        slot: s.index,
        lease: s.lease.clone(),
        exists: s.exists,
        holder: s.holder.clone(),
        epoch: s.epoch,
        acquire_time: s.acquired.map(|t| t.to_string()),
        renew_time: s.renewed.map(|t| t.to_string()),
        held_seconds: s.held(now).map(|d| d.as_secs()),
        lease_duration_seconds: s.duration_seconds,
        address: s.address.clone(),
        failsafe: FailsafeJson {
            on: s.failsafe_on(),
            members: s.failsafe_members.clone(),
            member_expiry_seconds: s.member_expiry_seconds,
            possibly_acting_on_confirmations: s.possibly_on_confirmations(now),
        },
        handover_to: s.handover_to.clone(),
    }
}

fn member_json(e: &Election, m: &Member, now: Timestamp) -> MemberJson {
    MemberJson {
        pod: m.pod.clone(),
        lease: m.lease.clone(),
        health: m.health(now).as_str(),
        stale: m.stale(now),
        ready: m.ready,
        priority: m.priority,
        renew_time: m.renewed.map(|t| t.to_string()),
        renewed_seconds_ago: m.renewed_ago(now).map(|d| d.as_secs()),
        lease_duration_seconds: m.duration_seconds,
        address: m.address.clone(),
        holds: e.slots_held_by(&m.pod),
    }
}

#[cfg(test)]
mod tests;
