//! The election core of understudy: a pure state machine for one `coordination.k8s.io/v1`
//! Lease, after the sans-IO style of quinn-proto and rustls.
//!
//! It is fed observations of the Lease (its election fields and resourceVersion, as
//! [`record::Observed`]), the results of the API calls it asked for, its members' replies and
//! the monotonic time, and answers with the next API call ([`core::Elector::poll_action`]),
//! the next wake-up ([`core::Elector::next_wakeup`]), the requests to send to its members
//! ([`core::Elector::poll_peer`]), what happened ([`core::Elector::poll_event`]: leadership
//! acquired or lost, the Lease changing hands) and the [`View`] to publish. It holds every safety rule, so it
//! is tested exhaustively: unit tests beside the code, a deterministic simulation of
//! candidates, a store and faults (`tests/simulation.rs`), and a model checker over every
//! interleaving of small scopes (`tests/model_check.rs`).
//!
//! The Kubernetes object itself never enters the core: the driver (`understudy-elector`)
//! reads the record out of a Lease, keeps the object, and writes a [`record::Draft`] back into
//! it. The core's dependencies, none of which does IO:
//! - `jiff`: the record's timestamps, as plain values (the core never reads a clock);
//! - `serde_json`: the failsafe's peer messages and annotations, encoded and decoded in memory;
//! - `thiserror`: the error types;
//! - `tracing`: a logging facade for three warnings about leadership; it writes nothing unless
//!   the program installs a subscriber.
//!
//! ```
//! use std::time::Instant;
//! use understudy_core::config::Config;
//! use understudy_core::core::{Action, Elector};
//!
//! let now = Instant::now();
//! let mut elector = Elector::new("example", "pod-a", None, Config::default(), now);
//! // First it reads the Lease; the driver makes the call and reports: not found.
//! assert_eq!(elector.poll_action(now), Some(Action::Read));
//! elector.read_done(now, None);
//! // Then it creates it.
//! assert!(matches!(elector.poll_action(now), Some(Action::Create { .. })));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod core;
pub mod event;
pub mod failsafe;
pub mod gate;
pub mod record;
pub mod view;

pub use crate::core::{Action, Elector, Intent, Successor, WriteError};
pub use config::{Config, ConfigError, parse_duration};
pub use event::{Event, LossReason};
pub use gate::Gate;
pub use record::{LeaseRecord, Observed};
pub use view::{Leader, Role, View};
