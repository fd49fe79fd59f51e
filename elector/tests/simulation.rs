//! Deterministic simulation of the election core.
//!
//! Several candidates, each with its own drifting monotonic clock, talk to a simulated Lease
//! store over a network with latency (and a tail beyond the call timeout), loss, partitions,
//! crashes, restarts and graceful releases. The checker asserts, at every event:
//! - safety: never two candidates acting as leader at the same real instant;
//! - fencing: a new leader's epoch is higher than every earlier leader's;
//! - liveness: after all faults heal, a leader appears within
//!   `(leaseDuration + retryPeriod) / slowest clock rate + 1s`.
//!
//! `SIM_SEEDS=N` sets how many seeds to run (default 2000); a failure prints the command that
//! replays its seed with a trace.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use understudy_elector::Config;
use understudy_elector::Role;
use understudy_elector::core::{Action, Elector, WriteError};
use understudy_elector::record::{Draft, LeaseRecord, Observed};

mod common;
use common::{MS, Micros, Rng, SEC};

#[derive(Clone, Copy, Debug)]
enum Fault {
    Partition(usize, bool),
    Crash(usize),
    Restart(usize),
    Release(usize),
    StepDown(usize),
    Loss(f64),
    Slow(bool),
    HealAll,
}

#[derive(Debug)]
enum Ev {
    Wake {
        node: usize,
        token: u64,
    },
    Arrive {
        node: usize,
        call: u64,
        req: Req,
    },
    Respond {
        node: usize,
        call: u64,
        resp: Resp,
    },
    Timeout {
        node: usize,
        call: u64,
    },
    Watch {
        node: usize,
        inc: u32,
        obs: Option<Observed>,
    },
    Resync {
        node: usize,
        inc: u32,
    },
    ForceExit {
        node: usize,
        inc: u32,
    },
    Fault(Fault),
}

#[derive(Debug, Clone)]
enum Req {
    Read,
    Create(Draft),
    Replace(Draft, String),
}

#[derive(Debug)]
enum Resp {
    Read(Option<Observed>),
    Write(Result<Observed, WriteError>),
}

struct Node {
    id: String,
    core: Option<Elector>,
    /// Local clock rate relative to real time.
    rate: f64,
    incarnation: u32,
    call: Option<(u64, bool)>, // (call id, is_read)
    wake_token: u64,
    partitioned: bool,
    watch_live: bool,
    was_leader: bool,
}

struct Sim {
    rng: Rng,
    cfg: Config,
    base: Instant,
    now: Micros,
    seq: u64,
    queue: BinaryHeap<Reverse<(Micros, u64, usize)>>,
    events: Vec<Option<Ev>>,
    nodes: Vec<Node>,
    lease: Option<(LeaseRecord, u64)>,
    next_rv: u64,
    next_call: u64,
    loss: f64,
    slow: bool,
    trace: bool,
    max_epoch: Option<(u64, String)>,
    healed_at: Option<Micros>,
    first_leader_after_heal: Option<Micros>,
    kinds: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug)]
struct Violation(String);

impl Sim {
    fn new(seed: u64, cfg: Config, nodes: usize, drift: f64, trace: bool) -> Sim {
        let mut rng = Rng(seed);
        let nodes = (0..nodes)
            .map(|i| Node {
                id: format!("node-{i}"),
                core: None,
                rate: 1.0 - drift + 2.0 * drift * (rng.below(1001) as f64 / 1000.0),
                incarnation: 0,
                call: None,
                wake_token: 0,
                partitioned: false,
                watch_live: false,
                was_leader: false,
            })
            .collect();
        Sim {
            rng,
            cfg,
            base: Instant::now(),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            nodes,
            lease: None,
            next_rv: 1,
            next_call: 1,
            loss: 0.0,
            slow: false,
            trace,
            max_epoch: None,
            healed_at: None,
            first_leader_after_heal: None,
            kinds: Default::default(),
        }
    }

    fn local(&self, node: usize, t: Micros) -> Instant {
        common::local(self.base, self.nodes[node].rate, t)
    }

    fn real(&self, node: usize, local: Instant) -> Micros {
        common::real(self.base, self.nodes[node].rate, local)
    }

    fn at(&mut self, t: Micros, ev: Ev) {
        self.seq += 1;
        self.events.push(Some(ev));
        self.queue
            .push(Reverse((t, self.seq, self.events.len() - 1)));
    }

    fn latency(&mut self) -> Micros {
        let base = self.rng.between(MS, 30 * MS);
        // A tail past the call timeout: the request is applied, the caller has given up.
        if self.rng.chance(if self.slow { 0.2 } else { 0.01 }) {
            base + self.rng.between(SEC, 4 * SEC)
        } else {
            base
        }
    }

    fn lost(&mut self) -> bool {
        self.loss > 0.0 && self.rng.chance(self.loss)
    }

    fn observed(&self) -> Option<Observed> {
        self.lease.as_ref().map(|(record, rv)| Observed {
            record: record.clone(),
            resource_version: rv.to_string(),
            object: None,
        })
    }

    fn start_node(&mut self, n: usize) {
        let now = self.local(n, self.now);
        let node = &mut self.nodes[n];
        node.incarnation += 1;
        node.call = None;
        node.watch_live = !node.partitioned;
        node.was_leader = false;
        let address = Some(format!("{}:8080", node.id));
        node.core = Some(Elector::new("sim", &node.id, address, self.cfg, now));
        let inc = node.incarnation;
        let resync = (self.cfg.resync_period.as_micros() as f64 / self.nodes[n].rate) as Micros;
        self.at(self.now + resync, Ev::Resync { node: n, inc });
        if self.nodes[n].watch_live {
            // The watch opens with a synthetic ADDED of the current state.
            let obs = self.observed();
            let t = self.now + self.latency();
            self.at(t, Ev::Watch { node: n, inc, obs });
        }
        self.step(n);
    }

    /// Runs one node's driver loop after an input: tick, maybe send a call, re-arm its timer.
    fn step(&mut self, n: usize) {
        let now_local = self.local(n, self.now);
        let Some(core) = self.nodes[n].core.as_mut() else {
            return;
        };
        core.tick(now_local);
        if core.is_stopped() {
            self.nodes[n].core = None;
            return;
        }
        if self.nodes[n].call.is_none() {
            let action = self.nodes[n].core.as_mut().unwrap().poll_action(now_local);
            if let Some(action) = action {
                let call = self.next_call;
                self.next_call += 1;
                let (req, is_read) = match action {
                    Action::Read => (Req::Read, true),
                    Action::Create { draft, .. } => (Req::Create(draft), false),
                    Action::Replace { draft, base, .. } => {
                        (Req::Replace(draft, base.resource_version), false)
                    }
                };
                if self.trace {
                    eprintln!(
                        "{:>10} {} sends #{call} {req:?}",
                        self.now, self.nodes[n].id
                    );
                }
                self.nodes[n].call = Some((call, is_read));
                if !self.nodes[n].partitioned && !self.lost() {
                    let t = self.now + self.latency();
                    self.at(t, Ev::Arrive { node: n, call, req });
                }
                let timeout = self.local(n, self.now) + self.cfg.call_timeout();
                let t = self.real(n, timeout);
                self.at(t, Ev::Timeout { node: n, call });
            }
        }
        let core = self.nodes[n].core.as_ref().unwrap();
        if let Some(wake) = core.next_wakeup() {
            let t = self.real(n, wake).max(self.now + 1);
            self.nodes[n].wake_token += 1;
            let token = self.nodes[n].wake_token;
            self.at(t, Ev::Wake { node: n, token });
        }
    }

    fn apply(&mut self, req: Req) -> Resp {
        let write = |lease: &mut Option<(LeaseRecord, u64)>, draft: Draft, next_rv: &mut u64| {
            let record = LeaseRecord {
                holder: draft.holder,
                lease_duration_secs: draft.lease_duration_secs,
                acquire_time: None,
                renew_time: None,
                transitions: draft.transitions,
                address: draft.address,
                peer_address: draft.peer_address,
            };
            *lease = Some((record, *next_rv));
            *next_rv += 1;
        };
        let result = match req {
            Req::Read => return Resp::Read(self.observed()),
            Req::Create(draft) => {
                if self.lease.is_some() {
                    Err(WriteError::Conflict)
                } else {
                    write(&mut self.lease, draft, &mut self.next_rv);
                    Ok(())
                }
            }
            Req::Replace(draft, rv) => match &self.lease {
                None => Err(WriteError::NotFound),
                Some((_, current)) if current.to_string() != rv => Err(WriteError::Conflict),
                Some(_) => {
                    write(&mut self.lease, draft, &mut self.next_rv);
                    Ok(())
                }
            },
        };
        if result.is_ok() {
            // Fan the change out to every live watch.
            for n in 0..self.nodes.len() {
                if self.nodes[n].core.is_some() && self.nodes[n].watch_live {
                    let obs = self.observed();
                    let inc = self.nodes[n].incarnation;
                    let t = self.now + self.latency();
                    self.at(t, Ev::Watch { node: n, inc, obs });
                }
            }
        }
        Resp::Write(result.map(|()| self.observed().unwrap()))
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Wake { node, token } => {
                if self.nodes[node].wake_token == token {
                    self.step(node);
                }
            }
            Ev::Arrive { node, call, req } => {
                let resp = self.apply(req);
                if self.trace {
                    eprintln!("{:>10} store applies #{call}: {resp:?}", self.now);
                }
                if !self.nodes[node].partitioned && !self.lost() {
                    let t = self.now + self.latency();
                    self.at(t, Ev::Respond { node, call, resp });
                }
            }
            Ev::Respond { node, call, resp } => {
                if self.nodes[node].call.map(|c| c.0) != Some(call) {
                    return; // timed out already, or the process restarted
                }
                self.nodes[node].call = None;
                let now = self.local(node, self.now);
                if let Some(core) = self.nodes[node].core.as_mut() {
                    match resp {
                        Resp::Read(obs) => core.read_done(now, obs),
                        Resp::Write(result) => core.write_done(now, result),
                    }
                }
                self.step(node);
            }
            Ev::Timeout { node, call } => {
                let Some((current, is_read)) = self.nodes[node].call else {
                    return;
                };
                if current != call {
                    return;
                }
                self.nodes[node].call = None;
                let now = self.local(node, self.now);
                if let Some(core) = self.nodes[node].core.as_mut() {
                    if is_read {
                        core.read_failed(now);
                    } else {
                        core.write_done(now, Err(WriteError::Other));
                    }
                }
                self.step(node);
            }
            Ev::Watch { node, inc, obs } => {
                let n = &self.nodes[node];
                if n.incarnation != inc || !n.watch_live || n.partitioned {
                    return;
                }
                let now = self.local(node, self.now);
                if let Some(core) = self.nodes[node].core.as_mut() {
                    core.observe(now, obs);
                }
                self.step(node);
            }
            Ev::Resync { node, inc } => {
                if self.nodes[node].incarnation != inc || self.nodes[node].core.is_none() {
                    return;
                }
                if !self.nodes[node].partitioned {
                    // The watch is re-opened: synthetic ADDED of the current state.
                    self.nodes[node].watch_live = true;
                    let obs = self.observed();
                    let t = self.now + self.latency();
                    self.at(t, Ev::Watch { node, inc, obs });
                }
                let resync =
                    (self.cfg.resync_period.as_micros() as f64 / self.nodes[node].rate) as Micros;
                self.at(self.now + resync, Ev::Resync { node, inc });
            }
            Ev::ForceExit { node, inc } => {
                if self.nodes[node].incarnation == inc {
                    self.nodes[node].core = None;
                }
            }
            Ev::Fault(fault) => self.fault(fault),
        }
    }

    fn fault(&mut self, fault: Fault) {
        if self.trace {
            eprintln!("{:>10} FAULT {fault:?}", self.now);
        }
        match fault {
            Fault::Partition(n, on) => {
                self.nodes[n].partitioned = on;
                if on {
                    self.nodes[n].watch_live = false;
                }
            }
            Fault::Crash(n) => {
                self.nodes[n].core = None;
                self.nodes[n].incarnation += 1;
            }
            Fault::Restart(n) => {
                if self.nodes[n].core.is_none() {
                    self.start_node(n);
                }
            }
            Fault::Release(n) => {
                let now = self.local(n, self.now);
                if let Some(core) = self.nodes[n].core.as_mut() {
                    core.release(now);
                    let inc = self.nodes[n].incarnation;
                    let exit =
                        (self.cfg.renew_deadline.as_micros() as f64 / self.nodes[n].rate) as Micros;
                    self.at(self.now + exit, Ev::ForceExit { node: n, inc });
                    self.step(n);
                }
            }
            Fault::StepDown(n) => {
                let now = self.local(n, self.now);
                if let Some(core) = self.nodes[n].core.as_mut() {
                    core.step_down(now);
                    self.step(n);
                }
            }
            Fault::Loss(p) => self.loss = p,
            Fault::Slow(on) => self.slow = on,
            Fault::HealAll => {
                self.loss = 0.0;
                self.slow = false;
                for n in 0..self.nodes.len() {
                    self.nodes[n].partitioned = false;
                    if self.nodes[n].core.is_none() {
                        self.start_node(n);
                    }
                }
                self.healed_at = Some(self.now);
            }
        }
    }

    /// Safety and fencing, checked after every event.
    fn check(&mut self) -> Result<(), Violation> {
        let mut leaders = Vec::new();
        for n in 0..self.nodes.len() {
            let local = self.local(n, self.now);
            let Some(core) = self.nodes[n].core.as_ref() else {
                self.nodes[n].was_leader = false;
                continue;
            };
            let leading = core.role(local) == Role::Leader;
            if leading {
                let epoch = core.view(local).leader.expect("leader has a record").epoch;
                leaders.push((self.nodes[n].id.clone(), epoch));
                if !self.nodes[n].was_leader {
                    if let Some((max, who)) = &self.max_epoch {
                        let ok = epoch > *max || (epoch == *max && *who == self.nodes[n].id);
                        if !ok {
                            return Err(Violation(format!(
                                "{} leads with epoch {epoch} after {who} led with epoch {max}",
                                self.nodes[n].id
                            )));
                        }
                    }
                    self.max_epoch = Some((epoch, self.nodes[n].id.clone()));
                }
            }
            self.nodes[n].was_leader = leading;
        }
        if leaders.len() > 1 {
            return Err(Violation(format!(
                "two leaders at t={}us: {leaders:?}",
                self.now
            )));
        }
        let healed = self.healed_at.is_some_and(|h| self.now >= h);
        if !leaders.is_empty() && healed && self.first_leader_after_heal.is_none() {
            self.first_leader_after_heal = Some(self.now);
        }
        Ok(())
    }

    fn run(&mut self, until: Micros) -> Result<(), Violation> {
        while let Some(Reverse((t, _, idx))) = self.queue.pop() {
            if t > until {
                break;
            }
            self.now = t;
            if self.seq > 200_000 {
                return Err(Violation(format!(
                    "busy loop: over 200000 events by t={t}us"
                )));
            }
            let ev = self.events[idx].take().expect("event once");
            if std::env::var("SIM_KINDS").is_ok() {
                let kind = format!("{ev:?}");
                let kind = kind.split([' ', '(']).next().unwrap_or("").to_string();
                *self.kinds.entry(kind).or_insert(0u64) += 1;
            }
            self.handle(ev);
            self.check()?;
        }
        Ok(())
    }
}

/// One seeded schedule: random faults for 80s, then everything heals.
fn simulate(seed: u64, cfg: Config, drift: f64, trace: bool) -> Result<(), Violation> {
    let mut sim = Sim::new(seed, cfg, 3 + (seed % 3) as usize, drift, trace);
    let nodes = sim.nodes.len();
    for n in 0..nodes {
        let t = sim.rng.below(2 * SEC);
        sim.at(t, Ev::Fault(Fault::Restart(n)));
    }
    let fault_phase = 80 * SEC;
    let faults = sim.rng.between(2, 10);
    for _ in 0..faults {
        let t = sim.rng.between(3 * SEC, fault_phase);
        let n = sim.rng.below(nodes as u64) as usize;
        let len = sim.rng.between(100 * MS, 25 * SEC);
        let (start, end) = match sim.rng.below(6) {
            5 => (Fault::StepDown(n), Fault::Crash(n)),
            0 => (Fault::Partition(n, true), Fault::Partition(n, false)),
            1 => (Fault::Crash(n), Fault::Restart(n)),
            2 => (Fault::Release(n), Fault::Restart(n)),
            3 => (
                Fault::Loss(sim.rng.between(1, 60) as f64 / 100.0),
                Fault::Loss(0.0),
            ),
            _ => (Fault::Slow(true), Fault::Slow(false)),
        };
        sim.at(t, Ev::Fault(start));
        sim.at((t + len).min(fault_phase), Ev::Fault(end));
    }
    sim.at(fault_phase + 1, Ev::Fault(Fault::HealAll));
    let slowest = sim.nodes.iter().map(|n| n.rate).fold(f64::MAX, f64::min);
    let bound =
        ((cfg.lease_duration + cfg.retry_period).as_micros() as f64 / slowest) as Micros + SEC;
    sim.run(fault_phase + 1 + bound + 5 * SEC)?;
    if std::env::var("SIM_STATS").is_ok() {
        eprintln!(
            "seed {seed}: {} events, max epoch {:?} {:?}",
            sim.seq, sim.max_epoch, sim.kinds
        );
    }
    let healed = sim.healed_at.expect("healed");
    match sim.first_leader_after_heal {
        Some(t) if t - healed <= bound => Ok(()),
        Some(t) => Err(Violation(format!(
            "liveness: first leader {}ms after heal, bound {}ms",
            (t - healed) / MS,
            bound / MS
        ))),
        None => Err(Violation("liveness: no leader after heal".into())),
    }
}

fn configs() -> [(&'static str, Config); 2] {
    let fast = Config {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
        resync_period: Duration::from_secs(5),
    };
    [
        ("default", Config::default()),
        ("fast", fast.validated().unwrap()),
    ]
}

const DRIFT: f64 = 0.05;

#[test]
fn thousands_of_seeds_never_two_leaders_and_always_recover() {
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let mut failures = Vec::new();
    for seed in 0..seeds {
        for (name, cfg) in configs() {
            if let Err(Violation(why)) = simulate(seed, cfg, DRIFT, false) {
                failures.push(format!(
                    "seed {seed} ({name}): {why}\n  replay: SIM_SEED={seed} SIM_CONFIG={name} cargo test -p understudy-elector --test simulation replay -- --nocapture"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing schedules:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Replays one seed with a trace (`SIM_SEED`, `SIM_CONFIG`); by default seed 1, so it always
/// exercises the simulator.
#[test]
fn replay() {
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let name = std::env::var("SIM_CONFIG").unwrap_or_else(|_| "default".into());
    let cfg = configs()
        .into_iter()
        .find(|(n, _)| *n == name)
        .expect("config name")
        .1;
    let trace = std::env::var("SIM_SEED").is_ok();
    if let Err(Violation(why)) = simulate(seed, cfg, DRIFT, trace) {
        panic!("seed {seed}: {why}");
    }
}

/// The checker must be able to fail: with a renewDeadline longer than the lease (which
/// `Config::validated` rejects), a partitioned leader keeps acting after others take over.
#[test]
fn checker_catches_split_brain_under_an_unsafe_config() {
    let unsafe_cfg = Config {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(8),
        retry_period: Duration::from_millis(500),
        resync_period: Duration::from_secs(5),
    };
    assert!(unsafe_cfg.validated().is_err());
    let caught = (0..200).any(|seed| {
        matches!(simulate(seed, unsafe_cfg, DRIFT, false), Err(Violation(why)) if why.contains("two leaders"))
    });
    assert!(
        caught,
        "no seed produced two leaders under an unsafe config"
    );
}

/// Clock drift beyond what the timings allow also breaks safety; the checker sees it.
#[test]
fn checker_catches_split_brain_under_excessive_drift() {
    let tight = Config {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_millis(2900),
        retry_period: Duration::from_millis(500),
        resync_period: Duration::from_secs(5),
    };
    let caught = (0..300).any(|seed| {
        matches!(simulate(seed, tight, 0.4, false), Err(Violation(why)) if why.contains("two leaders"))
    });
    assert!(
        caught,
        "no seed produced two leaders with 40% drift and a tight margin"
    );
}
