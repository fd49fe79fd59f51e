//! The failsafe: a leader serves through a control-plane outage on its members' promises.
//!
//! This module holds the protocol's data: what a holder writes into the Lease (its member set
//! and the expiry members use), the messages members exchange over the peer channel, and their
//! JSON form. The rules live in the election core ([`crate::core::Elector`]), which sends and
//! answers these messages; `docs/election.md` states the protocol and why it is safe.
//!
//! In short:
//! - A holder with the failsafe on writes `leaseDurationSeconds` = [`dead_lease_secs`] (long
//!   enough to cover its longest possible failsafe, so a candidate outside the member set, or a
//!   client-go candidate, can never take over early) and, in annotations, its member set and
//!   its own leaseDuration, which members use as the expiry instead.
//! - A leader whose renewals fail asks every member of the set it last wrote (and of any write
//!   whose outcome it does not know) for a promise, every retryPeriod. A member that promises
//!   does not take the Lease before `receive time + promise` by its own clock. A round every
//!   member confirmed lets the leader act until `send time of the round + renewDeadline`, and
//!   never past `send time of its last successful renew + --failsafe-max`.
//! - A member refuses when it acts or acquires itself, knows a newer holder, or has itself read
//!   the Lease unchanged for renewDeadline (the API works for it, so this is a partition, not an
//!   outage). Any refusal stops the leader at once, and it stays stopped until a write through
//!   the API succeeds.
//! - A member held back only by its own promise asks the holder for its status; "not acting"
//!   releases the promise (the holder has committed to stay stopped). A stopped holder asks the
//!   members for their status to learn whom to forward to.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::view::Leader;

/// Annotation on the Lease: the holder's member set (identities, comma-separated, the holder
/// included), written with every renewal when the failsafe is on.
pub const MEMBERS_ANNOTATION: &str = "understudy.io/members";

/// Annotation on the Lease: the holder's own leaseDuration in seconds. Members of the set treat
/// the Lease as expired after this long (instead of `leaseDurationSeconds`, which the failsafe
/// lengthens for everyone else).
pub const MEMBER_EXPIRY_ANNOTATION: &str = "understudy.io/member-expiry-seconds";

/// The path on the peer channel (the proxy port, or the mTLS peer port) that takes
/// [`PeerRequest`]s as JSON and answers [`PeerReply`]s.
pub const PEER_PATH: &str = "/.understudy/v1/failsafe";

/// The failsafe fields of a Lease record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FailsafeRecord {
    /// The holder's member set, the holder included.
    pub members: BTreeSet<String>,
    /// The holder's own leaseDuration in whole seconds: the expiry for members.
    pub member_expiry_secs: i32,
}

impl FailsafeRecord {
    /// The annotations' values: `(members, member expiry)`.
    pub fn to_annotations(&self) -> (String, String) {
        let members: Vec<&str> = self.members.iter().map(String::as_str).collect();
        (members.join(","), self.member_expiry_secs.to_string())
    }

    /// Reads the two annotations; `None` unless both are present and the expiry is a positive
    /// number (a record without them is an ordinary Lease).
    pub fn from_annotations(members: Option<&str>, expiry: Option<&str>) -> Option<Self> {
        let member_expiry_secs: i32 = expiry?.trim().parse().ok().filter(|s| *s > 0)?;
        let members = members?
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect();
        Some(FailsafeRecord {
            members,
            member_expiry_secs,
        })
    }
}

/// `leaseDurationSeconds` a failsafe holder writes: its longest failsafe (`max`, on its own
/// clock) stretched by the drift the timings allow (`leaseDuration / renewDeadline`), rounded
/// up, and never shorter than `lease`. A candidate outside the member set waits this long after
/// it last saw the Lease change, so the holder has stopped by then.
pub fn dead_lease_secs(lease: Duration, renew: Duration, max: Duration) -> i32 {
    let stretched = max.as_secs_f64() * lease.as_secs_f64() / renew.as_secs_f64().max(1e-3);
    let secs = stretched.ceil().max(lease.as_secs_f64().ceil());
    secs.min(i32::MAX as f64) as i32
}

/// What a request asks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// "Promise not to take the Lease": round `round` of the sender's failsafe, which acts on
    /// a leaseDuration of `lease_ms`.
    Confirm {
        /// The round; the reply echoes it.
        round: u64,
        /// The sender's leaseDuration in milliseconds (the least promise it needs).
        lease_ms: u64,
    },
    /// "Are you acting, and whom do you know as holder?" Asked of a holder, an answer of "not
    /// acting" commits it to stay stopped until it writes the Lease again.
    Status,
}

/// A request over the peer channel, about one Lease (one slot).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerRequest {
    /// The Lease (slot) it is about.
    pub lease: String,
    /// The epoch (`leaseTransitions`) the sender knows.
    pub epoch: u64,
    /// The sender's identity.
    pub from: String,
    /// The identity the sender means to reach; anyone else refuses.
    pub to: String,
    /// What it asks.
    pub kind: RequestKind,
}

/// Why a member will not promise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Its failsafe is off.
    Off,
    /// The request was meant for another identity.
    NotMe,
    /// It acts as leader of this Lease itself (or holds it).
    Acting,
    /// It has a write taking the Lease in flight.
    Acquiring,
    /// It knows a different holder or a newer epoch.
    NewerHolder,
    /// It read the Lease unchanged for renewDeadline: the API works for it, the sender is
    /// partitioned, and a member should take over.
    ApiReachable,
    /// It is not in a state to promise (e.g. shutting down).
    Unavailable,
}

impl Refusal {
    /// Lower-case name, as in metrics labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Off => "off",
            Refusal::NotMe => "not_me",
            Refusal::Acting => "acting",
            Refusal::Acquiring => "acquiring",
            Refusal::NewerHolder => "newer_holder",
            Refusal::ApiReachable => "api_reachable",
            Refusal::Unavailable => "unavailable",
        }
    }

    fn parse(s: &str) -> Option<Refusal> {
        [
            Refusal::Off,
            Refusal::NotMe,
            Refusal::Acting,
            Refusal::Acquiring,
            Refusal::NewerHolder,
            Refusal::ApiReachable,
            Refusal::Unavailable,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// An answer over the peer channel.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerReply {
    /// The promise: no acquisition for `promise_ms` after receipt, by the member's clock.
    Confirm {
        /// The round confirmed.
        round: u64,
        /// How long the promise lasts.
        promise_ms: u64,
    },
    /// No promise.
    Refuse {
        /// The round refused.
        round: u64,
        /// Why.
        reason: Refusal,
        /// The holder the member knows, when it knows one.
        holder: Option<Leader>,
    },
    /// The answer to [`RequestKind::Status`].
    Status {
        /// Whether the answering pod acts as leader of this Lease.
        acting: bool,
        /// The holder it knows (itself when acting).
        holder: Option<Leader>,
    },
}

/// A peer message that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid failsafe message: {0}")]
pub struct DecodeError(pub String);

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, DecodeError> {
    v.get(name)
        .ok_or_else(|| DecodeError(format!("missing field {name:?}")))
}

fn string(v: &Value, name: &str) -> Result<String, DecodeError> {
    field(v, name)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| DecodeError(format!("field {name:?} is not a string")))
}

fn number(v: &Value, name: &str) -> Result<u64, DecodeError> {
    field(v, name)?
        .as_u64()
        .ok_or_else(|| DecodeError(format!("field {name:?} is not a non-negative integer")))
}

fn leader_json(l: &Option<Leader>) -> Value {
    match l {
        None => Value::Null,
        Some(l) => json!({
            "identity": l.identity,
            "address": l.address,
            "peer_address": l.peer_address,
            "epoch": l.epoch,
        }),
    }
}

fn leader_from(v: &Value) -> Result<Option<Leader>, DecodeError> {
    let Some(h) = v.get("holder").filter(|h| !h.is_null()) else {
        return Ok(None);
    };
    let opt = |name: &str| h.get(name).and_then(Value::as_str).map(str::to_string);
    Ok(Some(Leader {
        identity: string(h, "identity")?,
        address: opt("address"),
        peer_address: opt("peer_address"),
        epoch: number(h, "epoch")?,
    }))
}

impl PeerRequest {
    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = json!({
            "lease": self.lease,
            "epoch": self.epoch,
            "from": self.from,
            "to": self.to,
        });
        match &self.kind {
            RequestKind::Confirm { round, lease_ms } => {
                v["kind"] = json!("confirm");
                v["round"] = json!(round);
                v["lease_ms"] = json!(lease_ms);
            }
            RequestKind::Status => v["kind"] = json!("status"),
        }
        v.to_string().into_bytes()
    }

    /// Reads a JSON body, naming what is wrong.
    pub fn from_json(body: &[u8]) -> Result<PeerRequest, DecodeError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| DecodeError(format!("not JSON: {e}")))?;
        let kind = match string(&v, "kind")?.as_str() {
            "confirm" => RequestKind::Confirm {
                round: number(&v, "round")?,
                lease_ms: number(&v, "lease_ms")?,
            },
            "status" => RequestKind::Status,
            other => return Err(DecodeError(format!("unknown kind {other:?}"))),
        };
        Ok(PeerRequest {
            lease: string(&v, "lease")?,
            epoch: number(&v, "epoch")?,
            from: string(&v, "from")?,
            to: string(&v, "to")?,
            kind,
        })
    }
}

impl PeerReply {
    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        let v = match self {
            PeerReply::Confirm { round, promise_ms } => {
                json!({"answer": "confirm", "round": round, "promise_ms": promise_ms})
            }
            PeerReply::Refuse {
                round,
                reason,
                holder,
            } => json!({
                "answer": "refuse",
                "round": round,
                "reason": reason.as_str(),
                "holder": leader_json(holder),
            }),
            PeerReply::Status { acting, holder } => json!({
                "answer": "status",
                "acting": acting,
                "holder": leader_json(holder),
            }),
        };
        v.to_string().into_bytes()
    }

    /// Reads a JSON body, naming what is wrong.
    pub fn from_json(body: &[u8]) -> Result<PeerReply, DecodeError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| DecodeError(format!("not JSON: {e}")))?;
        match string(&v, "answer")?.as_str() {
            "confirm" => Ok(PeerReply::Confirm {
                round: number(&v, "round")?,
                promise_ms: number(&v, "promise_ms")?,
            }),
            "refuse" => {
                let reason = string(&v, "reason")?;
                Ok(PeerReply::Refuse {
                    round: number(&v, "round")?,
                    reason: Refusal::parse(&reason)
                        .ok_or_else(|| DecodeError(format!("unknown reason {reason:?}")))?,
                    holder: leader_from(&v)?,
                })
            }
            "status" => Ok(PeerReply::Status {
                acting: field(&v, "acting")?
                    .as_bool()
                    .ok_or_else(|| DecodeError("field \"acting\" is not a boolean".into()))?,
                holder: leader_from(&v)?,
            }),
            other => Err(DecodeError(format!("unknown answer {other:?}"))),
        }
    }
}

/// A rule of the protocol, for showing that the simulation and the model checker catch its
/// removal ([`crate::core::Elector::without_rule`]). Never used outside tests.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// A member with a running promise does not take the Lease.
    PromiseBlocksAcquire,
    /// A round counts only when every member confirmed it.
    Unanimity,
    /// A member refuses while it acts, acquires, or knows a newer holder.
    RefuseRivals,
    /// A holder's "not acting" keeps it from acting on later confirmations.
    StatusCommits,
    /// A failsafe holder writes the long `leaseDurationSeconds` for non-members.
    DeadLease,
    /// A confirmation counts only for the round it echoes.
    EchoRound,
}

#[cfg(test)]
mod tests;
