//! A client load generator sending `GET /` to the VIP, with keep-alive on or off, bounded in
//! count and in time, recording every request's outcome, latency and the pod that served it
//! (the page names it). Paced as a few clients that each wait for their answer (closed loop)
//! or as a steady arrival rate of independent requests (open loop).
//!
//! Two retries, as well-behaved HTTP clients do them, each counted and reported:
//! - A connect that fails (refused, unreachable) sent nothing, so it may be retried — and
//!   must be, against a Service: kube-proxy keeps a dead pod's endpoint until the kubelet
//!   has reported it, and a connection to a dead pod is refused. `connect_retry` bounds
//!   how long.
//! - A `GET` whose connection broke before an answer (the pod it was on was killed) may be
//!   sent again (RFC 9110 §9.2.2: idempotent methods; RFC 9112 §9.3.1), with
//!   `retry_reset`: up to three times, 20ms apart. Scenarios check that such retries happen
//!   only when a pod was killed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::app::pod_of_page;
use super::http::{self, GetError};

/// What load to generate.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Where to send it (the VIP).
    pub target: SocketAddr,
    /// Reuse connections (HTTP/1.1 keep-alive), or one connection per request.
    pub keep_alive: bool,
    /// How requests are paced.
    pub pacing: Pacing,
    /// At most this many requests in all.
    pub max_requests: usize,
    /// At most this long.
    pub max_duration: Duration,
    /// A request not answered in this time fails.
    pub request_timeout: Duration,
    /// How long one connect may take (the kernel resends a SYN that got no answer after
    /// 1s, then 3s); past it the connect fails.
    pub connect_timeout: Duration,
    /// How long a failed connect is retried; zero: never.
    pub connect_retry: Duration,
    /// Send a request again (up to three times) when its connection broke before an answer.
    pub retry_reset: bool,
}

impl LoadOptions {
    /// Four closed-loop clients, one request each per 20ms (about 200 req/s when answers
    /// are quick), keep-alive off, at most
    /// 60s or 20,000 requests, 10s per request, 1s per connect, failed connects retried for
    /// up to 2s, a broken connection retried up to three times.
    pub fn new(target: SocketAddr) -> LoadOptions {
        LoadOptions {
            target,
            keep_alive: false,
            pacing: Pacing::Closed {
                workers: 4,
                interval: Duration::from_millis(20),
            },
            max_requests: 20_000,
            max_duration: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            connect_retry: Duration::from_secs(2),
            retry_reset: true,
        }
    }
}

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// `workers` clients, each sending its next request `interval` after the previous
    /// answer: a request held for seconds holds its client for as long.
    Closed {
        /// Concurrent clients.
        workers: usize,
        /// Each client's pause after an answer.
        interval: Duration,
    },
    /// `per_second` requests started at a steady rate whether or not earlier ones were
    /// answered, as from many independent clients; at most `max_in_flight` at once.
    Open {
        /// Arrival rate.
        per_second: u32,
        /// Bound on requests in flight (the rate drops when it is reached).
        max_in_flight: usize,
    },
}

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer; `pod` is the pod the page names, if it was our page.
    Answered {
        /// The status.
        status: u16,
        /// The pod the page names.
        pod: Option<String>,
    },
    /// No answer.
    Failed(GetError),
}

/// One request.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it was started.
    pub start: Instant,
    /// From start to the end of the answer (or failure), retries included.
    pub latency: Duration,
    /// Connects retried because they failed.
    pub connect_retries: u32,
    /// Times it was sent again because its connection broke before an answer.
    pub reset_retries: u32,
    /// The result.
    pub outcome: Outcome,
}

impl Sample {
    /// A 200 with a page naming a pod.
    pub fn ok(&self) -> bool {
        matches!(
            &self.outcome,
            Outcome::Answered {
                status: 200,
                pod: Some(_)
            }
        )
    }

    /// The pod that served it, if it succeeded.
    pub fn pod(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Answered { status: 200, pod } => pod.as_deref(),
            _ => None,
        }
    }

    /// When it ended.
    pub fn end(&self) -> Instant {
        self.start + self.latency
    }
}

/// A running load.
pub struct Load {
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the clients.
    pub fn start(opts: LoadOptions) -> Load {
        let started = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let workers = match opts.pacing {
            Pacing::Closed { workers, interval } => (0..workers)
                .map(|_| {
                    tokio::spawn(closed(
                        opts.clone(),
                        interval,
                        started,
                        samples.clone(),
                        stop.clone(),
                        issued.clone(),
                    ))
                })
                .collect(),
            Pacing::Open {
                per_second,
                max_in_flight,
            } => vec![tokio::spawn(open(
                opts.clone(),
                per_second,
                max_in_flight,
                started,
                samples.clone(),
                stop.clone(),
            ))],
        };
        Load {
            started,
            samples,
            stop,
            workers,
        }
    }

    /// When it started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Every request finished so far.
    pub fn snapshot(&self) -> LoadReport {
        LoadReport {
            started: self.started,
            ended: Instant::now(),
            samples: self
                .samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// How many requests have finished.
    pub fn done(&self) -> usize {
        self.samples.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Waits until `n` more requests have finished, at most `within`; false on timeout or
    /// when the load ended first.
    pub async fn pass(&self, n: usize, within: Duration) -> bool {
        let goal = self.done() + n;
        let deadline = Instant::now() + within;
        while self.done() < goal {
            if Instant::now() > deadline || self.workers.iter().all(JoinHandle::is_finished) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stops the clients (requests in flight finish) and returns the record.
    pub async fn finish(mut self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        for w in std::mem::take(&mut self.workers) {
            let _ = w.await;
        }
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()));
        LoadReport {
            started: self.started,
            ended: Instant::now(),
            samples,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.workers.iter().for_each(JoinHandle::abort);
    }
}

/// One closed-loop client.
async fn closed(
    opts: LoadOptions,
    interval: Duration,
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    issued: Arc<AtomicUsize>,
) {
    let client = http::client(opts.keep_alive, opts.connect_timeout);
    let deadline = started + opts.max_duration;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        if issued.fetch_add(1, Ordering::SeqCst) >= opts.max_requests {
            return;
        }
        let sample = request(&client, &opts).await;
        samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sample);
        tokio::time::sleep(interval).await;
    }
}

/// The open-loop dispatcher: starts requests at the rate, waits for the last ones at the end.
async fn open(
    opts: LoadOptions,
    per_second: u32,
    max_in_flight: usize,
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
) {
    let client = http::client(opts.keep_alive, opts.connect_timeout);
    let deadline = started + opts.max_duration;
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let mut in_flight = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..opts.max_requests {
        tick.tick().await;
        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
            break;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (client, opts, samples) = (client.clone(), opts.clone(), samples.clone());
        in_flight.spawn(async move {
            let sample = request(&client, &opts).await;
            samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sample);
            drop(permit);
        });
        // Reap finished ones as we go, so the set stays small.
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

/// One request, with the retries the module docs describe.
async fn request(client: &http::HttpClient, opts: &LoadOptions) -> Sample {
    let start = Instant::now();
    let (mut connect_retries, mut reset_retries) = (0, 0);
    let outcome = loop {
        let left = opts.request_timeout.saturating_sub(start.elapsed());
        match http::get(client, opts.target, "/", opts.keep_alive, left).await {
            Ok((status, body)) => {
                break Outcome::Answered {
                    status: status.as_u16(),
                    pod: pod_of_page(&body).map(String::from),
                };
            }
            Err(GetError::Connect(_)) if start.elapsed() < opts.connect_retry => {
                connect_retries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Spaced, so that the next attempt does not meet the same dying pod.
            Err(GetError::Io(_)) if opts.retry_reset && reset_retries < 3 => {
                reset_retries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => break Outcome::Failed(e),
        }
    };
    Sample {
        start,
        latency: start.elapsed(),
        connect_retries,
        reset_retries,
        outcome,
    }
}

/// The record of a load run.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// When the load started.
    pub started: Instant,
    /// When the record was taken.
    pub ended: Instant,
    /// Every finished request, in order of completion.
    pub samples: Vec<Sample>,
}

impl LoadReport {
    /// Requests sent.
    pub fn requests(&self) -> usize {
        self.samples.len()
    }

    /// Requests that did not get a 200 page from a pod.
    pub fn failures(&self) -> Vec<&Sample> {
        self.samples.iter().filter(|s| !s.ok()).collect()
    }

    /// Connect retries, over all requests.
    pub fn connect_retries(&self) -> u32 {
        self.samples.iter().map(|s| s.connect_retries).sum()
    }

    /// Requests sent again after their connection broke.
    pub fn reset_retried(&self) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.reset_retries > 0)
            .collect()
    }

    /// Successful requests per serving pod.
    pub fn served_by(&self) -> BTreeMap<String, usize> {
        let mut by = BTreeMap::new();
        for pod in self.samples.iter().filter_map(Sample::pod) {
            *by.entry(pod.to_string()).or_insert(0) += 1;
        }
        by
    }

    /// The longest time without a successful answer: between successive successful
    /// completions, from the start to the first, and from the last to the end.
    pub fn max_gap(&self) -> Duration {
        let mut ends: Vec<Instant> = self
            .samples
            .iter()
            .filter(|s| s.ok())
            .map(Sample::end)
            .collect();
        ends.sort();
        let mut prev = self.started;
        let mut gap = Duration::ZERO;
        for end in ends.iter().copied().chain([self.ended]) {
            gap = gap.max(end.saturating_duration_since(prev));
            prev = prev.max(end);
        }
        gap
    }

    /// The slowest request.
    pub fn max_latency(&self) -> Duration {
        self.samples
            .iter()
            .map(|s| s.latency)
            .max()
            .unwrap_or_default()
    }

    /// Only the requests started in `from..to`.
    pub fn between(&self, from: Instant, to: Instant) -> LoadReport {
        LoadReport {
            started: from,
            ended: to,
            samples: self
                .samples
                .iter()
                .filter(|s| s.start >= from && s.start < to)
                .cloned()
                .collect(),
        }
    }

    /// The one-line summary scenarios print, for benchmarks to pick up:
    /// `scenario=<name> requests=N failures=N max_gap_ms=N max_latency_ms=N
    /// connect_retries=N reset_retries=N`.
    pub fn summary(&self, scenario: &str) -> String {
        format!(
            "scenario={scenario} requests={} failures={} max_gap_ms={} max_latency_ms={} connect_retries={} reset_retries={}",
            self.requests(),
            self.failures().len(),
            self.max_gap().as_millis(),
            self.max_latency().as_millis(),
            self.connect_retries(),
            self.reset_retried().len()
        )
    }
}

#[cfg(test)]
mod tests;
