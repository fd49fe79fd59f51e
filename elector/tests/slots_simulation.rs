//! Deterministic simulation of N active slots: pods, each with one election core per slot and
//! a [`Gate`], against N simulated Leases with compare-and-swap, latency, watches, crashes,
//! restarts, releases, app health flapping and planned handovers (a holder hands its slot to
//! an idle pod, as `POST /handover`, failback and the pre-stop hook do). The checker asserts,
//! at every event:
//! - never two pods acting in one slot at the same real instant;
//! - never one pod acting in two slots: what a pod acts on is the slot [`Gate::held`] names,
//!   as the proxy does (`Slots::acting`). The gate's eligibility changes reach each slot's
//!   core over its own channel, as in `spawn_slots`, so a close and an open can land in
//!   either order and two cores can briefly lead; a checker that looks at the cores instead
//!   of `Gate::held` finds a pod in two slots (`safety_rests_on_gate_held_...`);
//! - liveness: after all faults heal, every slot has an acting leader within a bound
//!   (there are always more pods than slots);
//! - bounded herd: a freed slot draws at most one acquire write per standby;
//! - with no other fault, every handover to an idle pod completes: the pod it names acts in
//!   that slot (`a_handover_to_an_idle_pod_completes_...`).
//!
//! `SLOT_SEEDS=N` sets how many seeds to run (default 150 per N); a failure prints the seed.

use std::time::{Duration, Instant};

use understudy_elector::core::{Action, Elector, Intent, Successor, WriteError};
use understudy_elector::record::Observed;
use understudy_elector::{Config, Gate, View, lease_name};

// Shared with the core's simulation and model checker (understudy-core); this one stays here
// because it drives the slot gate (`Gate`), which lives in the driver crate.
#[path = "../../core/tests/common/mod.rs"]
mod common;
use common::world::{Net, Scheduler, Store, Write};
use common::{MS, Micros, Rng, SEC};

#[derive(Debug)]
enum Ev {
    Wake {
        pod: usize,
        token: u64,
    },
    Arrive {
        pod: usize,
        slot: usize,
        call: u64,
        req: Req,
    },
    Respond {
        pod: usize,
        slot: usize,
        call: u64,
        resp: Resp,
    },
    Watch {
        pod: usize,
        inc: u32,
        slot: usize,
        obs: Option<Observed>,
    },
    Crash(usize),
    Restart(usize),
    Release(usize),
    Health(usize, bool),
    /// The pod hands the slot it holds, if any, to an idle pod in the planned way.
    HandOver(usize),
    HealAll,
    /// A gate decision reaching one slot's core (its own channel).
    Eligible {
        pod: usize,
        inc: u32,
        slot: usize,
        want: bool,
    },
}

#[derive(Debug, Clone)]
enum Req {
    Read,
    /// A write, and whether it is an acquisition (counted for the herd check).
    Write(Write, bool),
}

#[derive(Debug)]
enum Resp {
    Read(Option<Observed>),
    Write(Result<Observed, WriteError>),
}

struct Pod {
    id: String,
    rate: f64,
    inc: u32,
    wake_token: u64,
    cores: Vec<Elector>,
    calls: Vec<Option<u64>>,
    gate: Gate,
    eligible: Vec<bool>,
    /// Per slot: when the last gate decision sent to its core arrives (each channel is FIFO).
    delivered: Vec<Micros>,
    alive: bool,
    healthy: bool,
}

struct Sim {
    rng: Rng,
    cfg: Config,
    base: Instant,
    now: Micros,
    events: Scheduler<Ev>,
    pods: Vec<Pod>,
    slots: usize,
    /// One Lease per slot.
    store: Store,
    /// Calls take 1–30ms; nothing is lost.
    net: Net,
    next_call: u64,
    /// Per slot: the epoch the current acquire race is for, and acquire writes seen for it.
    herd: Vec<(i32, usize)>,
    healed_at: Option<Micros>,
    all_filled_at: Option<Micros>,
    /// False: every slot eligible, to show the checker catches a pod in two slots.
    gated: bool,
    /// False: the checker takes what a pod acts on from its cores, not from `Gate::held`.
    by_held: bool,
    /// Longest delay of a gate decision on its way to a slot's core.
    gate_delay: Micros,
    /// Handovers started: (slot, target, completed).
    handovers: Vec<(usize, String, bool)>,
}

#[derive(Debug)]
struct Violation(String);

impl Sim {
    fn new(seed: u64, slots: usize, pods: usize) -> Sim {
        let mut rng = Rng(seed);
        let pods = (0..pods)
            .map(|i| Pod {
                id: format!("pod-{i}"),
                rate: 0.98 + 0.04 * (rng.below(1001) as f64 / 1000.0),
                inc: 0,
                wake_token: 0,
                cores: Vec::new(),
                calls: vec![None; slots],
                gate: Gate::new(slots),
                eligible: vec![false; slots],
                delivered: vec![0; slots],
                alive: false,
                healthy: true,
            })
            .collect();
        let cfg = Config {
            lease_duration: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(2),
            retry_period: Duration::from_millis(500),
            resync_period: Duration::from_secs(5),
        };
        Sim {
            rng,
            cfg: cfg.validated().unwrap(),
            base: Instant::now(),
            now: 0,
            events: Scheduler::new(),
            pods,
            slots,
            store: Store::new(slots),
            net: Net::new(None),
            next_call: 1,
            herd: vec![(-1, 0); slots],
            healed_at: None,
            all_filled_at: None,
            gated: true,
            by_held: true,
            gate_delay: 50 * MS,
            handovers: Vec::new(),
        }
    }

    fn local(&self, pod: usize, t: Micros) -> Instant {
        common::local(self.base, self.pods[pod].rate, t)
    }

    fn real(&self, pod: usize, local: Instant) -> Micros {
        common::real(self.base, self.pods[pod].rate, local)
    }

    fn at(&mut self, t: Micros, ev: Ev) {
        self.events.at(t, ev);
    }

    fn latency(&mut self) -> Micros {
        self.net.latency(&mut self.rng)
    }

    fn observed(&self, slot: usize) -> Option<Observed> {
        self.store.read(slot)
    }

    fn start(&mut self, p: usize) {
        let now = self.local(p, self.now);
        let slots = self.slots;
        let cfg = self.cfg;
        let pod = &mut self.pods[p];
        pod.inc += 1;
        pod.alive = true;
        pod.calls = vec![None; slots];
        pod.gate = Gate::new(slots);
        pod.gate.set_healthy(pod.healthy);
        pod.eligible = vec![slots == 1; slots];
        pod.cores = (0..slots)
            .map(|s| {
                let mut core = Elector::new(
                    &lease_name("sim", slots, s),
                    &pod.id,
                    Some(format!("{}:8080", pod.id)),
                    cfg,
                    now,
                );
                core.set_eligible(now, slots == 1);
                core
            })
            .collect();
        let inc = pod.inc;
        for slot in 0..slots {
            let obs = self.observed(slot);
            let t = self.now + self.latency();
            self.at(
                t,
                Ev::Watch {
                    pod: p,
                    inc,
                    slot,
                    obs,
                },
            );
        }
        self.step(p);
    }

    /// One pod's loop after an input: gate (close before open), tick, send calls, re-arm.
    fn step(&mut self, p: usize) {
        if !self.pods[p].alive {
            return;
        }
        let now = self.local(p, self.now);
        for core in &mut self.pods[p].cores {
            core.tick(now);
        }
        let views: Vec<View> = self.pods[p].cores.iter().map(|c| c.view(now)).collect();
        let mut eligible = self.pods[p].gate.decide(&views);
        if !self.gated {
            eligible = vec![true; self.slots];
        }
        // Close before open, each on its slot's own channel: delivered after its own delay.
        for pass in [false, true] {
            for (s, &want) in eligible.iter().enumerate() {
                if want == pass && want != self.pods[p].eligible[s] {
                    self.pods[p].eligible[s] = pass;
                    let t =
                        (self.now + self.rng.below(self.gate_delay)).max(self.pods[p].delivered[s]);
                    self.pods[p].delivered[s] = t;
                    let inc = self.pods[p].inc;
                    self.at(
                        t,
                        Ev::Eligible {
                            pod: p,
                            inc,
                            slot: s,
                            want,
                        },
                    );
                }
            }
        }
        let mut wake: Option<Instant> = None;
        for s in 0..self.slots {
            if self.pods[p].calls[s].is_none()
                && let Some(action) = self.pods[p].cores[s].poll_action(now)
            {
                let call = self.next_call;
                self.next_call += 1;
                let req = match action {
                    Action::Read => Req::Read,
                    Action::Create { draft, intent } => {
                        Req::Write(Write::Create(draft), intent == Intent::Acquire)
                    }
                    Action::Replace {
                        draft,
                        base,
                        intent,
                    } => Req::Write(
                        Write::Replace(draft, base.resource_version),
                        intent == Intent::Acquire,
                    ),
                };
                self.pods[p].calls[s] = Some(call);
                let t = self.now + self.latency();
                self.at(
                    t,
                    Ev::Arrive {
                        pod: p,
                        slot: s,
                        call,
                        req,
                    },
                );
            }
            if let Some(w) = self.pods[p].cores[s].next_wakeup() {
                wake = Some(wake.map_or(w, |x: Instant| x.min(w)));
            }
        }
        // The gate re-decides on every input; wake at least every retry period so that a
        // role change by time alone is seen.
        let floor = now + self.cfg.retry_period;
        let w = wake.map_or(floor, |w| w.min(floor));
        let t = self.real(p, w).max(self.now + 1);
        self.pods[p].wake_token += 1;
        let token = self.pods[p].wake_token;
        self.at(t, Ev::Wake { pod: p, token });
    }

    fn apply(&mut self, slot: usize, req: Req) -> Resp {
        let Req::Write(write, acquire) = req else {
            return Resp::Read(self.observed(slot));
        };
        if acquire {
            let epoch = write.draft().transitions;
            let (e, count) = &mut self.herd[slot];
            if *e != epoch {
                *e = epoch;
                *count = 0;
            }
            *count += 1;
        }
        let result = self.store.write(slot, write);
        if result.is_err() {
            return Resp::Write(result);
        }
        for p in 0..self.pods.len() {
            if self.pods[p].alive {
                let obs = self.observed(slot);
                let inc = self.pods[p].inc;
                let t = self.now + self.latency();
                self.at(
                    t,
                    Ev::Watch {
                        pod: p,
                        inc,
                        slot,
                        obs,
                    },
                );
            }
        }
        Resp::Write(result)
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Wake { pod, token } => {
                if self.pods[pod].alive && self.pods[pod].wake_token == token {
                    self.step(pod);
                }
            }
            Ev::Arrive {
                pod,
                slot,
                call,
                req,
            } => {
                let resp = self.apply(slot, req);
                let t = self.now + self.latency();
                self.at(
                    t,
                    Ev::Respond {
                        pod,
                        slot,
                        call,
                        resp,
                    },
                );
            }
            Ev::Respond {
                pod,
                slot,
                call,
                resp,
            } => {
                if !self.pods[pod].alive || self.pods[pod].calls[slot] != Some(call) {
                    return;
                }
                self.pods[pod].calls[slot] = None;
                let now = self.local(pod, self.now);
                let core = &mut self.pods[pod].cores[slot];
                match resp {
                    Resp::Read(obs) => core.read_done(now, obs),
                    Resp::Write(result) => core.write_done(now, result),
                }
                self.step(pod);
            }
            Ev::Watch {
                pod,
                inc,
                slot,
                obs,
            } => {
                if self.pods[pod].alive && self.pods[pod].inc == inc {
                    let now = self.local(pod, self.now);
                    self.pods[pod].cores[slot].observe(now, obs);
                    self.step(pod);
                }
            }
            Ev::Crash(p) => {
                self.pods[p].alive = false;
                self.pods[p].cores.clear();
            }
            Ev::Restart(p) => {
                if !self.pods[p].alive {
                    self.start(p);
                }
            }
            Ev::Release(p) => {
                if self.pods[p].alive {
                    let now = self.local(p, self.now);
                    for core in &mut self.pods[p].cores {
                        core.release(now);
                    }
                    self.step(p);
                }
            }
            Ev::HandOver(p) => {
                if !self.pods[p].alive {
                    return;
                }
                let now = self.local(p, self.now);
                let views: Vec<View> = self.pods[p].cores.iter().map(|c| c.view(now)).collect();
                let Some(slot) = self.pods[p].gate.held(&views) else {
                    return;
                };
                // Idle: alive, healthy, and named in no Lease (the member table's "ready"
                // and the handover's "not active in another slot").
                let holders: Vec<String> = (0..self.slots)
                    .filter_map(|s| self.observed(s).map(|o| o.record.holder))
                    .collect();
                let idle: Vec<String> = self
                    .pods
                    .iter()
                    .filter(|q| q.alive && q.healthy && !holders.contains(&q.id))
                    .map(|q| q.id.clone())
                    .collect();
                if idle.is_empty() {
                    return;
                }
                let to = idle[self.rng.below(idle.len() as u64) as usize].clone();
                let successor = Successor {
                    identity: to.clone(),
                    address: None,
                    peer_address: None,
                };
                if self.pods[p].cores[slot].hand_over(now, successor) {
                    self.handovers.push((slot, to, false));
                }
                self.step(p);
            }
            Ev::Health(p, healthy) => {
                self.pods[p].healthy = healthy;
                self.pods[p].gate.set_healthy(healthy);
                self.step(p);
            }
            Ev::Eligible {
                pod,
                inc,
                slot,
                want,
            } => {
                if self.pods[pod].alive && self.pods[pod].inc == inc {
                    let now = self.local(pod, self.now);
                    self.pods[pod].cores[slot].set_eligible(now, want);
                    self.step(pod);
                }
            }
            Ev::HealAll => {
                self.healed_at = Some(self.now);
                for p in 0..self.pods.len() {
                    self.pods[p].healthy = true;
                    self.pods[p].gate.set_healthy(true);
                    if !self.pods[p].alive || self.pods[p].cores.iter().any(|c| c.is_stopped()) {
                        self.pods[p].alive = false;
                        self.start(p);
                    } else {
                        self.step(p);
                    }
                }
            }
        }
    }

    fn check(&mut self) -> Result<(), Violation> {
        let mut holders: Vec<Vec<&str>> = vec![Vec::new(); self.slots];
        for (p, pod) in self.pods.iter().enumerate() {
            if !pod.alive {
                continue;
            }
            let now = self.local(p, self.now);
            let views: Vec<View> = pod.cores.iter().map(|c| c.view(now)).collect();
            let acting: Vec<usize> = if self.by_held {
                // What the proxy acts on: the held slot, while its core acts.
                let held = pod.gate.held(&views);
                held.into_iter()
                    .filter(|&s| views[s].is_acting(now))
                    .collect()
            } else {
                (0..self.slots)
                    .filter(|&s| views[s].is_acting(now))
                    .collect()
            };
            if acting.len() > 1 {
                return Err(Violation(format!(
                    "{} acts in slots {acting:?} at {}",
                    pod.id, self.now
                )));
            }
            for s in acting {
                holders[s].push(&pod.id);
            }
        }
        for (slot, to, done) in &mut self.handovers {
            *done |= holders[*slot] == [to.as_str()];
        }
        for (s, h) in holders.iter().enumerate() {
            if h.len() > 1 {
                return Err(Violation(format!(
                    "slot {s} has leaders {h:?} at {}",
                    self.now
                )));
            }
        }
        let standbys = self.pods.len() - self.slots;
        for (s, (epoch, count)) in self.herd.iter().enumerate() {
            // Each standby (and a restarted or returning pod) may try once per freed slot.
            if *count > self.pods.len() + 1 {
                return Err(Violation(format!(
                    "slot {s} epoch {epoch}: {count} acquire writes with {standbys} standbys"
                )));
            }
        }
        if self.healed_at.is_some()
            && self.all_filled_at.is_none()
            && holders.iter().all(|h| h.len() == 1)
        {
            self.all_filled_at = Some(self.now);
        }
        Ok(())
    }

    fn run(&mut self, until: Micros) -> Result<(), Violation> {
        while let Some((t, ev)) = self.events.next(until) {
            self.now = t;
            self.handle(ev);
            self.check()?;
        }
        Ok(())
    }
}

fn simulate(seed: u64, slots: usize, gated: bool) -> Result<(), Violation> {
    simulate_checked(seed, slots, gated, true, 50 * MS)
}

/// [`simulate`], checking what a pod acts on `by_held` (or by its cores), with gate decisions
/// taking up to `gate_delay` to reach a core.
fn simulate_checked(
    seed: u64,
    slots: usize,
    gated: bool,
    by_held: bool,
    gate_delay: Micros,
) -> Result<(), Violation> {
    let standbys = 1 + (seed % 3) as usize;
    let mut sim = Sim::new(seed * 7919 + slots as u64, slots, slots + standbys);
    sim.gated = gated;
    sim.by_held = by_held;
    sim.gate_delay = gate_delay;
    let pods = sim.pods.len();
    for p in 0..pods {
        let t = sim.rng.below(SEC);
        sim.at(t, Ev::Restart(p));
    }
    let fault_phase = 30 * SEC;
    for _ in 0..sim.rng.between(2, 8) {
        let t = sim.rng.between(2 * SEC, fault_phase);
        let p = sim.rng.below(pods as u64) as usize;
        let len = sim.rng.between(100 * MS, 8 * SEC);
        let end = (t + len).min(fault_phase);
        match sim.rng.below(4) {
            0 => {
                sim.at(t, Ev::Crash(p));
                sim.at(end, Ev::Restart(p));
            }
            1 => {
                sim.at(t, Ev::Release(p));
            }
            2 => {
                sim.at(t, Ev::HandOver(p));
            }
            _ => {
                sim.at(t, Ev::Health(p, false));
                sim.at(end, Ev::Health(p, true));
            }
        }
    }
    sim.at(fault_phase + 1, Ev::HealAll);
    // A crashed holder's Lease expires after leaseDuration; then each free slot is taken
    // within a few retry periods, one slot after another in the worst case.
    let bound = (3 + slots as u64) * SEC + SEC;
    sim.run(fault_phase + 1 + bound + 2 * SEC)?;
    let healed = sim.healed_at.expect("healed");
    match sim.all_filled_at {
        Some(t) if t - healed <= bound => Ok(()),
        Some(t) => Err(Violation(format!(
            "liveness: all slots filled {}ms after heal, bound {}ms",
            (t - healed) / MS,
            bound / MS
        ))),
        None => Err(Violation(
            "liveness: not all slots filled after heal".into(),
        )),
    }
}

#[test]
fn slots_never_shared_never_doubled_and_always_filled() {
    let seeds: u64 = std::env::var("SLOT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let mut failures = Vec::new();
    for slots in [1, 2, 3] {
        for seed in 0..seeds {
            if let Err(Violation(why)) = simulate(seed, slots, true) {
                failures.push(format!("N={slots} seed {seed}: {why}"));
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

/// Planned handovers alone, one every few seconds from a random pod: each one that starts
/// (the pod held a slot and an idle pod existed) ends with the idle pod acting in that slot.
/// An idle pod's core for that slot is ineligible until its gate sees the pod named there;
/// were it to release at once on being named, every such handover would end in a release.
#[test]
fn a_handover_to_an_idle_pod_completes_and_never_doubles_a_slot() {
    let mut started = 0;
    for seed in 0..seeds_or(100) {
        for slots in [1, 2, 3] {
            let standbys = 1 + (seed % 2) as usize;
            let mut sim = Sim::new(seed * 104_729 + slots as u64, slots, slots + standbys);
            let pods = sim.pods.len();
            for p in 0..pods {
                let t = sim.rng.below(SEC);
                sim.at(t, Ev::Restart(p));
            }
            let mut t = 5 * SEC;
            for _ in 0..6 {
                let p = sim.rng.below(pods as u64) as usize;
                sim.at(t, Ev::HandOver(p));
                t += sim.rng.between(2 * SEC, 4 * SEC);
            }
            if let Err(Violation(why)) = sim.run(t + 3 * SEC) {
                panic!("N={slots} seed {seed}: {why}");
            }
            started += sim.handovers.len();
            let failed: Vec<_> = sim.handovers.iter().filter(|h| !h.2).collect();
            assert!(
                failed.is_empty(),
                "N={slots} seed {seed}: handovers that did not complete: {failed:?}"
            );
        }
    }
    assert!(started > 100, "only {started} handovers started");
}

#[test]
fn checker_catches_a_pod_in_two_slots_without_the_gate() {
    let caught = (0..20).any(|seed| {
        matches!(simulate_checked(seed, 2, false, false, 50 * MS), Err(Violation(why)) if why.contains("acts in slots"))
    });
    assert!(caught, "an ungated pod should end up acting in two slots");
}

/// The claim in `slots.rs`: each slot's core hears the gate on its own channel, so two cores
/// of one pod can briefly lead at once; only `Gate::held` keeps the pod acting in one slot.
/// With slow channels (a decision up to 3s on its way, as a stalled driver task would make
/// it), some schedule has two cores of one pod leading at once; checked by `Gate::held`, the
/// same schedules never have a pod acting in two slots.
#[test]
fn safety_rests_on_gate_held_not_on_the_order_the_cores_hear_the_gate() {
    let slow = 3 * SEC;
    let mut caught = 0;
    for seed in 0..seeds_or(40) {
        for slots in [2, 3] {
            if let Err(Violation(why)) = simulate_checked(seed, slots, true, true, slow) {
                panic!("N={slots} seed {seed}, slow channels, by Gate::held: {why}");
            }
            let by_cores = simulate_checked(seed, slots, true, false, slow);
            if matches!(by_cores, Err(Violation(why)) if why.contains("acts in slots")) {
                caught += 1;
            }
        }
    }
    assert!(
        caught > 0,
        "no schedule had two cores of one pod leading at once"
    );
}

fn seeds_or(default: u64) -> u64 {
    std::env::var("SLOT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
