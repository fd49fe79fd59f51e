//! Warnings, at most one per [`EVERY`], while the local app refuses the leader's
//! connections: the one failure an operator must see in the logs, and the one that would
//! otherwise flood them at the request rate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The least time between two warnings.
pub(crate) const EVERY: Duration = Duration::from_secs(10);

/// When the last warning was logged, and how many failures were not logged since.
#[derive(Debug, Default)]
pub(crate) struct AppDown {
    last: Mutex<Option<Instant>>,
    unlogged: AtomicU64,
}

impl AppDown {
    /// A connection to the app at `app` failed with `why`: logs it, unless a warning was
    /// logged less than [`EVERY`] ago (then only counts it). Returns whether it logged.
    pub(crate) fn note(&self, app: &str, why: &str) -> bool {
        self.note_at(Instant::now(), app, why)
    }

    fn note_at(&self, now: Instant, app: &str, why: &str) -> bool {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| now.saturating_duration_since(t) < EVERY) {
                self.unlogged.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            *last = Some(now);
        }
        let unlogged = self.unlogged.swap(0, Ordering::Relaxed);
        tracing::warn!(
            app,
            error = why,
            unlogged,
            "this pod leads, but its app does not accept connections: requests are held \
             until it does, leadership moves (see --upstream-health) or the hold timeout \
             passes, then answered 503"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_and_the_rest_counted() {
        let d = AppDown::default();
        let t0 = Instant::now();
        assert!(d.note_at(t0, "127.0.0.1:80", "refused"));
        for i in 1..=5 {
            assert!(!d.note_at(t0 + Duration::from_secs(i), "127.0.0.1:80", "refused"));
        }
        assert_eq!(d.unlogged.load(Ordering::Relaxed), 5);
        assert!(d.note_at(t0 + EVERY, "127.0.0.1:80", "refused"));
        assert_eq!(d.unlogged.load(Ordering::Relaxed), 0);
    }
}
