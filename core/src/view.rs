//! What the rest of the program reads: the latest view of one election.

use std::time::Instant;

/// This candidate's part in the election, as of the latest [`View`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// This pod holds the Lease and may act as leader until [`View::acting_until`].
    Leader,
    /// Another candidate holds a Lease this pod considers valid.
    Follower,
    /// Nobody is known to hold the Lease (unheld, expired, released, or not yet read);
    /// this pod is contending.
    Candidate,
}

impl Role {
    /// Lower-case name, as used in logs, `/status` and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The holder of a Lease as this pod currently believes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Leader {
    /// `spec.holderIdentity` of the Lease.
    pub identity: String,
    /// The holder's advertised proxy address (the `understudy.io/address` annotation), if it
    /// published one. A foreign (e.g. client-go) holder has none.
    pub address: Option<String>,
    /// The holder's peer (mTLS) address (the `understudy.io/peer-address` annotation), when it
    /// serves one (`--peer-listen`).
    pub peer_address: Option<String>,
    /// The fencing epoch: the Lease's `spec.leaseTransitions` when this holder took it.
    pub epoch: u64,
}

/// The latest view of one election (one Lease), published on a `tokio::sync::watch` channel.
///
/// A leader must check [`View::is_acting`] with the current time before acting: the
/// self-fencing deadline can pass without a new view being published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// Name of the Lease this view is about.
    pub lease: String,
    /// This pod's identity.
    pub identity: String,
    /// This pod's role.
    pub role: Role,
    /// Who holds the Lease, when someone validly does (this pod included).
    pub leader: Option<Leader>,
    /// Self-fencing deadline (monotonic): the send time of the last successful renew plus
    /// `renewDeadline`. `Some` only when `role` is [`Role::Leader`].
    pub acting_until: Option<Instant>,
    /// Whether the Lease has been read (or found absent) at least once since start.
    pub synced: bool,
    /// When this pod last changed role (monotonic).
    pub role_since: Instant,
    /// In an election of N slots: the holders of the other slots, which a standby may also
    /// forward to (see `understudy_elector::Slots::routing_view`). Empty for a single Lease.
    pub peers: Vec<Leader>,
    /// True while this pod acts as leader on its members' promises (the failsafe) rather
    /// than on its Lease: its renew deadline has passed and the API could not be reached.
    pub failsafe: bool,
}

impl View {
    /// A view before anything is known.
    pub fn initial(lease: &str, identity: &str, now: Instant) -> View {
        View {
            lease: lease.to_string(),
            identity: identity.to_string(),
            role: Role::Candidate,
            leader: None,
            acting_until: None,
            synced: false,
            role_since: now,
            peers: Vec::new(),
            failsafe: false,
        }
    }

    /// True when this pod is leader and still inside its self-fencing window at `now`.
    pub fn is_acting(&self, now: Instant) -> bool {
        self.role == Role::Leader && self.acting_until.is_some_and(|until| now < until)
    }

    /// Identity of the current leader, or "" when there is none (the old image's `{"name":""}`).
    pub fn leader_name(&self) -> &str {
        self.leader.as_ref().map_or("", |l| l.identity.as_str())
    }
}
