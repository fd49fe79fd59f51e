//! The Lease record and its Kubernetes form. The record types are the core's
//! ([`understudy_core::record`], re-exported here); this module reads them out of a
//! `coordination.k8s.io/v1` Lease ([`LeaseExt`]) and writes a [`Draft`] back into one
//! ([`DraftExt`]), keeping every field the election does not own.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

pub use understudy_core::record::*;

use crate::failsafe::{FailsafeRecord, MEMBER_EXPIRY_ANNOTATION, MEMBERS_ANNOTATION};

/// Reads the election out of a Lease object.
pub trait LeaseExt {
    /// The election fields. Missing fields read as client-go reads them (empty holder, zero
    /// duration and transitions).
    fn record(&self) -> LeaseRecord;

    /// The observation the core is fed: the record at this resourceVersion. `None` if the
    /// object has no resourceVersion (the API server always sets one).
    fn observed(&self) -> Option<Observed>;

    /// A non-empty annotation.
    fn annotation(&self, name: &str) -> Option<String>;
}

impl LeaseExt for Lease {
    fn record(&self) -> LeaseRecord {
        let spec = self.spec.clone().unwrap_or_default();
        LeaseRecord {
            holder: spec.holder_identity.unwrap_or_default(),
            lease_duration_secs: spec.lease_duration_seconds.unwrap_or(0),
            acquire_time: spec.acquire_time.map(|t| t.0),
            renew_time: spec.renew_time.map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
            address: self.annotation(ADDRESS_ANNOTATION),
            peer_address: self.annotation(PEER_ADDRESS_ANNOTATION),
            failsafe: FailsafeRecord::from_annotations(
                self.annotation(MEMBERS_ANNOTATION).as_deref(),
                self.annotation(MEMBER_EXPIRY_ANNOTATION).as_deref(),
            ),
        }
    }

    fn observed(&self) -> Option<Observed> {
        Some(Observed {
            resource_version: self.metadata.resource_version.clone()?,
            record: self.record(),
        })
    }

    fn annotation(&self, name: &str) -> Option<String> {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(name))
            .filter(|a| !a.is_empty())
            .cloned()
    }
}

/// Writes a [`Draft`] into a Lease object.
pub trait DraftExt {
    /// Builds the Lease to send: `base` (the observed object, if the driver still has it) with
    /// the election fields replaced. `renewTime` is always `now`. The resourceVersion
    /// precondition is set by the caller for a replace.
    fn to_lease(&self, name: &str, base: Option<&Lease>, now: Timestamp) -> Lease;
}

impl DraftExt for Draft {
    fn to_lease(&self, name: &str, base: Option<&Lease>, now: Timestamp) -> Lease {
        let mut lease = base.cloned().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.holder.clone());
        spec.lease_duration_seconds = Some(self.lease_duration_secs);
        spec.acquire_time = self.acquire_time.resolve(now).map(MicroTime);
        spec.renew_time = Some(MicroTime(now));
        spec.lease_transitions = Some(self.transitions);
        let annotations = lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        let (members, expiry) = match &self.failsafe {
            Some(f) => {
                let (m, e) = f.to_annotations();
                (Some(m), Some(e))
            }
            None => (None, None),
        };
        for (name, value) in [
            (ADDRESS_ANNOTATION, &self.address),
            (PEER_ADDRESS_ANNOTATION, &self.peer_address),
            (MEMBERS_ANNOTATION, &members),
            (MEMBER_EXPIRY_ANNOTATION, &expiry),
        ] {
            match value {
                Some(v) => {
                    annotations.insert(name.to_string(), v.clone());
                }
                None => {
                    annotations.remove(name);
                }
            }
        }
        // A handover request is answered by this write (handed over, or declined).
        annotations.remove(HANDOVER_ANNOTATION);
        if annotations.is_empty() {
            lease.metadata.annotations = None;
        }
        // The API server owns these; sending stale copies would only confuse a diff.
        lease.metadata.managed_fields = None;
        lease
    }
}

/// A core/v1 Event about Lease `lease` in `namespace`, reported by understudy on pod `pod`
/// (source `understudy/<pod>`, counted once, timestamped now): `kind` is `"Normal"` or
/// `"Warning"`. Named `<lease>.<nanoseconds>`, as client-go's recorder names them.
pub fn lease_event(
    namespace: &str,
    lease: &str,
    pod: &str,
    reason: &str,
    kind: &str,
    message: &str,
) -> k8s_openapi::api::core::v1::Event {
    use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let now = Timestamp::now();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{lease}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("coordination.k8s.io/v1".into()),
            kind: Some("Lease".into()),
            name: Some(lease.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectReference::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(kind.to_string()),
        source: Some(EventSource {
            component: Some(format!("understudy/{pod}")),
            host: None,
        }),
        reporting_component: Some("understudy".into()),
        reporting_instance: Some(pod.to_string()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests;
