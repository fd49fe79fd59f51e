//! Spreading a standby's requests over the actives of N slots: the power of two choices on
//! outstanding requests.
//!
//! For each request two different actives are drawn at random and the one with fewer
//! requests outstanding (sent, response not finished) gets it. That follows load as well as
//! "least outstanding" does, without every standby herding onto the same momentarily idle
//! active, and costs two lookups instead of a scan. Outstanding requests are counted per
//! sidecar process: each standby balances its own traffic, as every client-side balancer does.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use understudy_elector::Leader;

/// Picks an active for each request and counts what is outstanding at each. Cheap to clone
/// (one shared state).
#[derive(Clone, Debug)]
pub struct Balancer {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// Outstanding requests per active identity; entries at zero are removed, so the list
    /// holds only actives with requests in flight.
    outstanding: Vec<(String, usize)>,
    /// xorshift64* state; never zero.
    rng: u64,
}

/// One request counted as outstanding at an active until this is dropped.
#[derive(Debug)]
pub struct Outstanding {
    state: Arc<Mutex<State>>,
    identity: String,
}

impl Default for Balancer {
    fn default() -> Self {
        // A per-process random seed: two standbys started together draw differently.
        Balancer::with_seed(RandomState::new().hash_one(std::process::id()))
    }
}

impl Balancer {
    /// A balancer drawing from a generator seeded with `seed` (tests pin it).
    pub fn with_seed(seed: u64) -> Balancer {
        Balancer {
            state: Arc::new(Mutex::new(State {
                outstanding: Vec::new(),
                rng: seed | 1,
            })),
        }
    }

    /// The active to send the next request to, from `actives` (at least one): of two
    /// drawn at random, the one with fewer outstanding requests; on a tie the first drawn.
    ///
    /// # Panics
    /// If `actives` is empty.
    pub fn pick<'a>(&self, actives: &[&'a Leader]) -> &'a Leader {
        match actives {
            [] => panic!("Balancer::pick needs at least one active"),
            [only] => only,
            _ => {
                let mut state = self.lock();
                let n = actives.len() as u64;
                let first = (state.next() % n) as usize;
                // A second, different one: an offset of 1..n from the first.
                let second = (first + 1 + (state.next() % (n - 1)) as usize) % actives.len();
                let (a, b) = (actives[first], actives[second]);
                if state.count(&b.identity) < state.count(&a.identity) {
                    b
                } else {
                    a
                }
            }
        }
    }

    /// Counts one request to `identity` as outstanding until the returned guard drops.
    pub fn start(&self, identity: &str) -> Outstanding {
        let mut state = self.lock();
        match state.outstanding.iter_mut().find(|(id, _)| id == identity) {
            Some((_, n)) => *n += 1,
            None => state.outstanding.push((identity.to_string(), 1)),
        }
        Outstanding {
            state: self.state.clone(),
            identity: identity.to_string(),
        }
    }

    /// Requests outstanding at `identity` now.
    pub fn outstanding(&self, identity: &str) -> usize {
        self.lock().count(identity)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two counters' worth of plain data: a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn next(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32
    }

    fn count(&self, identity: &str) -> usize {
        self.outstanding
            .iter()
            .find(|(id, _)| id == identity)
            .map_or(0, |(_, n)| *n)
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = state
            .outstanding
            .iter()
            .position(|(id, _)| *id == self.identity)
        {
            state.outstanding[i].1 -= 1;
            if state.outstanding[i].1 == 0 {
                state.outstanding.swap_remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests;
