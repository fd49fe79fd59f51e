//! Fault injection: latency, error responses, blackholes, outages, partitions, cut watches.
//!
//! Dice are rolled from one generator seeded by `EmulatorOptions::seed`, so a schedule of
//! requests sees the same faults on every run.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::rng::SplitMix64;
use super::status::ApiError;

/// Who a fault applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FaultScope {
    /// Every client.
    All,
    /// One client identity, by the name given to `Emulator::add_client`.
    Client(String),
    /// Every connection from one source address.
    SourceIp(IpAddr),
}

impl FaultScope {
    fn covers(&self, client: &str, ip: IpAddr) -> bool {
        match self {
            Self::All => true,
            Self::Client(c) => c == client,
            Self::SourceIp(i) => *i == ip,
        }
    }

    /// Client rules beat source-address rules beat global ones.
    fn specificity(&self) -> u8 {
        match self {
            Self::Client(_) => 2,
            Self::SourceIp(_) => 1,
            Self::All => 0,
        }
    }
}

/// A misbehaviour for API requests. `Fault::default()` has no effect.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// Extra delay before answering, uniform in `min..=max`.
    pub latency: Option<(Duration, Duration)>,
    /// Probability in `0.0..=1.0` that a request is answered with `error_code`.
    pub error_rate: f64,
    /// 500, 429 or 503 (429 and 503 carry `Retry-After`); other codes are answered as 500.
    pub error_code: u16,
    /// The `Retry-After` seconds of 429/503 answers.
    pub retry_after_secs: u32,
    /// Read the request, never answer.
    pub blackhole: bool,
    /// Only requests with these audit verbs (`get`, `list`, `watch`, `create`, `update`,
    /// `patch`, `delete`); `None` means all.
    pub verbs: Option<Vec<String>>,
}

impl Default for Fault {
    fn default() -> Self {
        Self {
            latency: None,
            error_rate: 0.0,
            error_code: 500,
            retry_after_secs: 1,
            blackhole: false,
            verbs: None,
        }
    }
}

// === impl Fault ===

impl Fault {
    /// Delay every answer by a uniform draw from `min..=max`.
    pub fn latency(min: Duration, max: Duration) -> Self {
        Self {
            latency: Some((min, max)),
            ..Self::default()
        }
    }

    /// Answer a fraction `rate` of requests with `code`.
    pub fn errors(rate: f64, code: u16) -> Self {
        Self {
            error_rate: rate,
            error_code: code,
            ..Self::default()
        }
    }

    /// Accept requests and never answer them.
    pub fn blackhole() -> Self {
        Self {
            blackhole: true,
            ..Self::default()
        }
    }

    /// Set the `Retry-After` seconds.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = secs;
        self
    }

    /// Limit the fault to these verbs.
    pub fn for_verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = Some(verbs.iter().map(ToString::to_string).collect());
        self
    }

    fn applies_to(&self, verb: &str) -> bool {
        self.verbs
            .as_ref()
            .is_none_or(|vs| vs.iter().any(|v| v == verb))
    }
}

/// What to do with one API request.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Close the connection without an answer (outage).
    Reset,
    /// Never answer.
    Blackhole,
    /// Answer, maybe late, maybe with an error.
    Proceed {
        delay: Option<Duration>,
        error: Option<ApiError>,
    },
}

/// How an open watch should behave right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WatchState {
    Live,
    /// Partitioned: hold events back, keep the stream open.
    Silent,
    /// Close the stream abruptly.
    Cut,
}

struct WatchReg {
    client: String,
    ip: IpAddr,
    cut: Arc<AtomicBool>,
}

struct State {
    rules: HashMap<FaultScope, Fault>,
    partitions: HashSet<FaultScope>,
    outage: bool,
    rng: SplitMix64,
    watches: HashMap<u64, WatchReg>,
    next_watch: u64,
}

struct Inner {
    state: Mutex<State>,
    /// Bumped on every change so open watches re-check their state.
    changed: watch::Sender<u64>,
}

/// Handle to the fault configuration; clones share it.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<Inner>,
}

// === impl Faults ===

impl Faults {
    pub(crate) fn new(seed: u64) -> Self {
        let state = State {
            rules: HashMap::new(),
            partitions: HashSet::new(),
            outage: false,
            rng: SplitMix64::new(seed ^ 0x00fa_0175),
            watches: HashMap::new(),
            next_watch: 0,
        };
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                changed: watch::channel(0).0,
            }),
        }
    }

    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.inner.changed.send_modify(|n| *n += 1);
        r
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Install `f` for `scope`, replacing that scope's previous fault.
    pub fn set(&self, scope: FaultScope, f: Fault) {
        self.update(|s| s.rules.insert(scope, f));
    }

    /// Remove the fault of exactly `scope` (partitions stay; see [`Faults::heal`]).
    pub fn clear(&self, scope: FaultScope) {
        self.update(|s| s.rules.remove(&scope));
    }

    /// Remove every fault and partition and end an outage.
    pub fn clear_all(&self) {
        self.update(|s| {
            s.rules.clear();
            s.partitions.clear();
            s.outage = false;
        });
    }

    /// Start or end an outage. While on, every API request (not `/emulator/v1/...`) has its
    /// connection closed without an answer — what clients see when the apiserver process is
    /// gone — and starting one cuts every open watch.
    pub fn outage(&self, on: bool) {
        self.update(|s| {
            s.outage = on;
            if on {
                s.watches
                    .values()
                    .for_each(|w| w.cut.store(true, Ordering::SeqCst));
            }
        });
    }

    /// Partition `scope` from the server: its new requests are blackholed and its open
    /// watches go silent (no events, no close) until healed.
    pub fn partition(&self, scope: FaultScope) {
        self.update(|s| s.partitions.insert(scope));
    }

    /// End the partition of exactly `scope`; `FaultScope::All` ends every partition. Held
    /// watch events are then delivered, as TCP would after a short partition.
    pub fn heal(&self, scope: FaultScope) {
        self.update(|s| match scope {
            FaultScope::All => s.partitions.clear(),
            scope => drop(s.partitions.remove(&scope)),
        });
    }

    /// How many watches of `scope` are open now. A watch counts from the moment its starting
    /// point is fixed: a change committed after it is counted is one it delivers, so a test
    /// awaits the count before making a change a watching client should see.
    pub fn open_watches(&self, scope: FaultScope) -> usize {
        let s = self.lock();
        s.watches
            .values()
            .filter(|w| scope.covers(&w.client, w.ip))
            .count()
    }

    /// Close the open watch streams of `scope` abruptly (no final chunk).
    pub fn cut_watches(&self, scope: FaultScope) {
        self.update(|s| {
            for w in s.watches.values().filter(|w| scope.covers(&w.client, w.ip)) {
                w.cut.store(true, Ordering::SeqCst);
            }
        });
    }

    /// Decide the fate of one API request.
    pub(crate) fn decide(&self, client: &str, ip: IpAddr, verb: &str) -> Decision {
        let mut s = self.lock();
        if s.outage {
            return Decision::Reset;
        }
        if s.partitions.iter().any(|p| p.covers(client, ip)) {
            return Decision::Blackhole;
        }
        let Some(rule) = s
            .rules
            .iter()
            .filter(|(scope, f)| scope.covers(client, ip) && f.applies_to(verb))
            .max_by_key(|(scope, _)| scope.specificity())
            .map(|(_, f)| f.clone())
        else {
            return Decision::Proceed {
                delay: None,
                error: None,
            };
        };
        if rule.blackhole {
            return Decision::Blackhole;
        }
        let delay = rule.latency.map(|(min, max)| {
            let span = max.saturating_sub(min).as_secs_f64();
            min + Duration::from_secs_f64(span * s.rng.next_f64())
        });
        let error = (rule.error_rate > 0.0 && s.rng.next_f64() < rule.error_rate)
            .then(|| ApiError::injected(rule.error_code, rule.retry_after_secs));
        Decision::Proceed { delay, error }
    }

    /// Register an open watch so it can be cut or silenced.
    pub(crate) fn register_watch(&self, client: &str, ip: IpAddr) -> WatchTicket {
        let cut = Arc::new(AtomicBool::new(false));
        let mut s = self.lock();
        let id = s.next_watch;
        s.next_watch += 1;
        s.watches.insert(
            id,
            WatchReg {
                client: client.to_string(),
                ip,
                cut: cut.clone(),
            },
        );
        WatchTicket {
            id,
            faults: self.clone(),
            cut,
            client: client.to_string(),
            ip,
        }
    }

    /// Wakes whenever the fault configuration changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }
}

/// An open watch's registration; unregisters on drop.
pub(crate) struct WatchTicket {
    id: u64,
    faults: Faults,
    cut: Arc<AtomicBool>,
    client: String,
    ip: IpAddr,
}

impl WatchTicket {
    /// What the watch should do now.
    pub fn state(&self) -> WatchState {
        if self.cut.load(Ordering::SeqCst) {
            return WatchState::Cut;
        }
        let s = self.faults.lock();
        if s.partitions.iter().any(|p| p.covers(&self.client, self.ip)) {
            WatchState::Silent
        } else {
            WatchState::Live
        }
    }
}

impl Drop for WatchTicket {
    fn drop(&mut self) {
        self.faults.lock().watches.remove(&self.id);
    }
}

#[cfg(test)]
mod tests;
