//! The world both simulations run in: an event scheduler over real (simulated) time, the
//! Lease store with its compare-and-swap, and the network's latency and loss. Each simulation
//! brings its own events, nodes, faults and checker.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use understudy_core::core::WriteError;
use understudy_core::record::{Draft, LeaseRecord, Observed};

use super::{MS, Micros, Rng, SEC};

/// Events of type `E` in real-time order; events at the same instant run in the order they
/// were scheduled, so a seed replays exactly.
pub struct Scheduler<E> {
    scheduled: u64,
    queue: BinaryHeap<Reverse<(Micros, u64, usize)>>,
    events: Vec<Option<E>>,
}

impl<E> Scheduler<E> {
    pub fn new() -> Scheduler<E> {
        Scheduler {
            scheduled: 0,
            queue: BinaryHeap::new(),
            events: Vec::new(),
        }
    }

    /// Runs `ev` at real time `t`.
    pub fn at(&mut self, t: Micros, ev: E) {
        self.scheduled += 1;
        self.events.push(Some(ev));
        self.queue
            .push(Reverse((t, self.scheduled, self.events.len() - 1)));
    }

    /// The next event and its time, unless none is due by `until`.
    pub fn next(&mut self, until: Micros) -> Option<(Micros, E)> {
        let Reverse((t, _, i)) = self.queue.pop()?;
        if t > until {
            return None;
        }
        Some((t, self.events[i].take().expect("each event runs once")))
    }

    /// How many events were scheduled so far (a busy loop shows here first).
    pub fn scheduled(&self) -> u64 {
        self.scheduled
    }
}

/// A write to the store.
#[derive(Clone, Debug)]
pub enum Write {
    /// Create the Lease; conflicts when it exists.
    Create(Draft),
    /// Replace the Lease at this resourceVersion; conflicts unless it is still current.
    Replace(Draft, String),
}

impl Write {
    /// What is written.
    pub fn draft(&self) -> &Draft {
        match self {
            Write::Create(d) | Write::Replace(d, _) => d,
        }
    }
}

/// The API server's Leases, numbered, with one resourceVersion counter for all of them (as
/// etcd's revision).
pub struct Store {
    leases: Vec<Option<(LeaseRecord, u64)>>,
    next_rv: u64,
}

impl Store {
    /// `leases` Leases, none created yet.
    pub fn new(leases: usize) -> Store {
        Store {
            leases: vec![None; leases],
            next_rv: 1,
        }
    }

    /// Lease `lease` as a read (or a watch event) returns it.
    pub fn read(&self, lease: usize) -> Option<Observed> {
        self.leases[lease].as_ref().map(|(record, rv)| Observed {
            record: record.clone(),
            resource_version: rv.to_string(),
        })
    }

    /// Applies `write` to Lease `lease` with the API server's compare-and-swap; the stored
    /// Lease on success.
    pub fn write(&mut self, lease: usize, write: Write) -> Result<Observed, WriteError> {
        let current = &self.leases[lease];
        let draft = match write {
            Write::Create(_) if current.is_some() => return Err(WriteError::Conflict),
            Write::Replace(..) if current.is_none() => return Err(WriteError::NotFound),
            Write::Replace(_, rv) if current.as_ref().is_some_and(|(_, c)| c.to_string() != rv) => {
                return Err(WriteError::Conflict);
            }
            Write::Create(d) | Write::Replace(d, _) => d,
        };
        self.leases[lease] = Some((draft.to_record(), self.next_rv));
        self.next_rv += 1;
        Ok(self.read(lease).expect("just written"))
    }
}

/// The network between pods and the API server, and between pods: latency with an optional
/// tail past the call timeout (the request is applied, the caller has given up), and loss.
pub struct Net {
    /// Chance that an API message is lost.
    pub loss: f64,
    /// Chance that an API call takes 1–4s (`None`: never, and no draw for it).
    pub tail: Option<f64>,
    /// Chance that a peer message is lost.
    pub peer_loss: f64,
}

impl Net {
    /// A network that loses nothing; API calls take 1–30ms.
    pub fn new(tail: Option<f64>) -> Net {
        Net {
            loss: 0.0,
            tail,
            peer_loss: 0.0,
        }
    }

    /// One API message's latency.
    pub fn latency(&self, rng: &mut Rng) -> Micros {
        let base = rng.between(MS, 30 * MS);
        match self.tail {
            Some(p) if rng.chance(p) => base + rng.between(SEC, 4 * SEC),
            _ => base,
        }
    }

    /// Whether one API message is lost.
    pub fn lost(&self, rng: &mut Rng) -> bool {
        self.loss > 0.0 && rng.chance(self.loss)
    }

    /// One peer message's latency: 0.2–20ms, and 2% of them 1–3s more (so messages overtake
    /// each other).
    pub fn peer_latency(&self, rng: &mut Rng) -> Micros {
        let base = rng.between(200, 20 * MS);
        if rng.chance(0.02) {
            base + rng.between(SEC, 3 * SEC)
        } else {
            base
        }
    }

    /// Whether one peer message is lost.
    pub fn peer_lost(&self, rng: &mut Rng) -> bool {
        self.peer_loss > 0.0 && rng.chance(self.peer_loss)
    }
}
