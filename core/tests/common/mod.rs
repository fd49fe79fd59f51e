//! Shared by the simulations: a seeded RNG, time units, the conversion between real
//! (simulated) time and a node's drifting monotonic clock, and the [`world`] they run in.

#![allow(dead_code)] // each simulation uses a subset

use std::time::{Duration, Instant};

pub mod world;

/// splitmix64: tiny, deterministic across platforms and crate versions.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// Real (simulated) time in microseconds.
pub type Micros = u64;
pub const MS: Micros = 1_000;
pub const SEC: Micros = 1_000_000;

/// A node's monotonic clock at real time `t`, running at `rate` × real time from `base`.
pub fn local(base: Instant, rate: f64, t: Micros) -> Instant {
    base + Duration::from_micros((t as f64 * rate) as u64)
}

/// The first real time at which a clock running at `rate` has reached `local` (rounded up, so
/// a wake-up never fires early).
pub fn real(base: Instant, rate: f64, local: Instant) -> Micros {
    let l = local.saturating_duration_since(base).as_micros() as f64;
    (l / rate).ceil() as Micros + 1
}
