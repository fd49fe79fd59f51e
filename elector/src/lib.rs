//! Lease-based leader election for understudy.
//!
//! Two layers, after the sans-IO style of quinn-proto and rustls:
//! - [`core`]: a pure state machine for one `coordination.k8s.io/v1` Lease, in a crate of its
//!   own ([`understudy_core`], with no Kubernetes client and no runtime; its modules are
//!   re-exported here). It is fed observations, API results and the monotonic time, and
//!   answers with the next API call, the next wake-up and the [`View`] to publish. It holds
//!   every safety rule, so it is tested exhaustively by simulation and model checking.
//! - [`spawn`]: a driver on `kube::Api<Lease>` that runs the core, watches the Lease, and
//!   publishes the view on a `tokio::sync::watch` channel; its [`Handle`] releases on shutdown.
//!   The driver owns the Lease objects: it reads the record out of each ([`record::LeaseExt`])
//!   and writes the core's drafts back into the object the write is conditioned on.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use understudy_elector::{Candidate, Config, spawn};
//! let client = kube::Client::try_default().await?;
//! let api = kube::Api::namespaced(client, "default");
//! let me = Candidate {
//!     identity: "pod-a".into(),
//!     address: Some("198.18.0.2:8080".into()),
//!     peer_address: None,
//! };
//! let (mut view, handle) = spawn(api, "example", me, Config::default());
//! view.changed().await?;
//! println!("leader: {:?}", view.borrow().leader);
//! handle.release().await?;
//! # Ok(()) }
//! ```
//!
//! [`spawn_observed`] also reports API calls, renews, watch restarts, leadership changes and
//! failovers to an [`Observer`] ([`observe`]); the sidecar turns them into metrics.
//!
//! An election of N active slots is N Leases, each with its own core; [`spawn_slots`] gates
//! each with [`Handle::set_eligible`] so that a pod holds at most one slot ([`slots`]), and
//! publishes the combined [`Slots`] view.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
pub mod failback;
pub mod handover;
pub mod members;
pub mod observe;
pub mod record;
pub mod slots;
mod watcher;

pub use understudy_core::{config, core, event, failsafe, view};

pub use config::{Config, ConfigError, parse_duration};
pub use driver::{Candidate, Handle, ReleaseError, describe, spawn, spawn_observed};
pub use handover::{HandoverDone, HandoverError, Prepare};
pub use members::{FailsafeOptions, Member, Members, PeerChannel, SelfReport};
pub use observe::Observer;
pub use record::{ADDRESS_ANNOTATION, LeaseRecord, PEER_ADDRESS_ANNOTATION};
pub use slots::{
    AnswerError, Answerer, Gate, HealthReporter, Slots, SlotsHandle, SlotsOptions, Switcher,
    lease_name, routing_views, spawn_slots, spawn_slots_with,
};
pub use view::{Leader, Role, View};
