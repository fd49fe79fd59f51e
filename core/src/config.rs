//! Election timings: parsing, the seed's `--ttl`, and validation.

use std::time::Duration;

/// Errors in election configuration. Each names the offending setting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A duration string could not be parsed.
    #[error("invalid duration {input:?}: {reason} (write it like 10s, 1500ms, 2m)")]
    Duration {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The timings break `leaseDuration > renewDeadline > 1.2 × retryPeriod`.
    #[error(
        "invalid timings: need leaseDuration > renewDeadline > 1.2 × retryPeriod, \
         got leaseDuration={lease:?} renewDeadline={renew:?} retryPeriod={retry:?}: {reason}"
    )]
    Timings {
        /// leaseDuration as given.
        lease: Duration,
        /// renewDeadline as given.
        renew: Duration,
        /// retryPeriod as given.
        retry: Duration,
        /// Which of the inequalities fails.
        reason: &'static str,
    },
    /// A timing is outside what a Lease can express.
    #[error("invalid {name}: {reason}")]
    Range {
        /// The setting's name.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Timings of one election, as in client-go's `LeaderElectionConfig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// How long a Lease is valid after a candidate last saw it change
    /// (written as `spec.leaseDurationSeconds`, so whole seconds).
    pub lease_duration: Duration,
    /// How long a leader keeps acting after sending its last successful renew.
    pub renew_deadline: Duration,
    /// Interval between renewals and between acquisition attempts.
    pub retry_period: Duration,
    /// How often the watch is re-opened with a full re-read, as a safety net.
    pub resync_period: Duration,
}

impl Default for Config {
    /// 10s / 6s / 2s, resync 60s.
    fn default() -> Self {
        Config {
            lease_duration: Duration::from_secs(10),
            renew_deadline: Duration::from_secs(6),
            retry_period: Duration::from_secs(2),
            resync_period: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// The seed's `--ttl T`: lease T, renew T/2, retry T/4.
    pub fn from_ttl(ttl: Duration) -> Result<Config, ConfigError> {
        Config {
            lease_duration: ttl,
            renew_deadline: ttl / 2,
            retry_period: ttl / 4,
            ..Config::default()
        }
        .validated()
    }

    /// Checks `leaseDuration > renewDeadline > 1.2 × retryPeriod` and ranges; returns self.
    pub fn validated(self) -> Result<Config, ConfigError> {
        let Config {
            lease_duration: lease,
            renew_deadline: renew,
            retry_period: retry,
            resync_period,
        } = self;
        let timings = |reason| ConfigError::Timings {
            lease,
            renew,
            retry,
            reason,
        };
        if retry.is_zero() {
            return Err(timings("retryPeriod must be positive"));
        }
        if lease <= renew {
            return Err(timings("leaseDuration must exceed renewDeadline"));
        }
        if renew.as_secs_f64() <= 1.2 * retry.as_secs_f64() {
            return Err(timings("renewDeadline must exceed 1.2 × retryPeriod"));
        }
        if lease.subsec_nanos() != 0 || lease.as_secs() == 0 {
            return Err(ConfigError::Range {
                name: "leaseDuration",
                reason: "must be a whole number of seconds, at least 1s (Lease stores seconds)",
            });
        }
        if lease.as_secs() > i32::MAX as u64 {
            return Err(ConfigError::Range {
                name: "leaseDuration",
                reason: "too long for spec.leaseDurationSeconds",
            });
        }
        if resync_period < retry {
            return Err(ConfigError::Range {
                name: "resyncPeriod",
                reason: "must be at least retryPeriod",
            });
        }
        Ok(self)
    }

    /// Timeout for one API call: shorter than renewDeadline so that a hung call cannot keep
    /// a leader from noticing it must stop.
    pub fn call_timeout(&self) -> Duration {
        self.retry_period.min(self.renew_deadline / 2)
    }

    /// `spec.leaseDurationSeconds` for this config.
    pub fn lease_duration_secs(&self) -> i32 {
        // validated() guarantees the range.
        self.lease_duration.as_secs().min(i32::MAX as u64) as i32
    }
}

/// Parses a duration written like `10s`, `1500ms`, `2m`, `1h`, `0.5s`.
pub fn parse_duration(input: &str) -> Result<Duration, ConfigError> {
    let err = |reason| ConfigError::Duration {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err("missing unit (ms, s, m or h)"))?;
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(err("missing number"));
    }
    let value: f64 = number.parse().map_err(|_| err("not a number"))?;
    let scale = match unit {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(err("unknown unit (use ms, s, m or h)")),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(err("too large"));
    }
    // Round to whole milliseconds so that "0.1s" is exactly 100ms.
    Ok(Duration::from_millis((secs * 1000.0).round() as u64))
}

#[cfg(test)]
mod tests;
