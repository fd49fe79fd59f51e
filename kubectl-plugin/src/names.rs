//! The names the sidecars write into their Leases, as the plugin reads them.
//!
//! The ones the election core defines come from `understudy-core`; the member Lease's label
//! and health annotations live in the elector, which the plugin does not depend on (it stays
//! a small client), so they are spelled here.

pub use understudy_core::failsafe::{MEMBER_EXPIRY_ANNOTATION, MEMBERS_ANNOTATION};
pub use understudy_core::record::ADDRESS_ANNOTATION;

/// Label on member Leases: the election they belong to.
pub const ELECTION_LABEL: &str = "understudy.io/election";

/// Member Lease annotation: `"true"` when the pod is healthy and eligible to lead.
pub const READY_ANNOTATION: &str = "understudy.io/ready";

/// Member Lease annotation: the pod's priority (an integer; 0 when absent).
pub const PRIORITY_ANNOTATION: &str = "understudy.io/priority";

/// Member Lease annotation: the number of active slots of the election.
pub const ACTIVES_ANNOTATION: &str = "understudy.io/actives";

/// Election Lease annotation: a switchover request, naming the pod to hand over to (empty:
/// any healthy standby).
pub use understudy_core::record::HANDOVER_ANNOTATION;

/// The Event reason a holder records when it declines a switchover request.
pub const HANDOVER_REFUSED_REASON: &str = "HandoverRefused";

/// The member Lease of pod `pod` in election `election`.
pub fn member_lease_name(election: &str, pod: &str) -> String {
    format!("{election}-member-{pod}")
}

/// The Lease of slot `slot` of an election with `actives` active slots: the election's own
/// name with one slot, `<election>-<slot>` with more.
pub fn slot_lease_name(election: &str, actives: usize, slot: usize) -> String {
    if actives <= 1 {
        election.to_string()
    } else {
        format!("{election}-{slot}")
    }
}
