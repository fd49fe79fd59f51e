//! Leadership as each sidecar saw it, read from its log: when a pod started and stopped
//! leading which Lease, under which epoch. Apps that get no fencing token with their traffic
//! (TCP mode: Redis, PostgreSQL) log what they served with their own clock instead; each
//! entry is given the token of the reign it falls in ([`Reigns::fence`]), and the overlap
//! checker ([`super::overlap`]) then checks those entries as it checks nginx's.
//!
//! The sidecar logs `election view changed lease=… role=… epoch=…` (text format) when its
//! role or its leader changes, and `understudy started` when it starts. A reign begins at a
//! `role=leader` line and ends at the next line for that Lease with another role or epoch, or
//! when the sidecar starts again (it was killed: it led at most until then), or never
//! (`until` is `None`: it was still leading when the log was read, or was killed for good).
//! All pods log on one host clock.

use jiff::Timestamp;

/// One pod's leadership of one Lease under one epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct Reign {
    /// The leading pod.
    pub pod: String,
    /// The Lease.
    pub lease: String,
    /// `leaseTransitions` when it began.
    pub epoch: u64,
    /// When the sidecar logged that it leads (Unix seconds).
    pub from: f64,
    /// When it logged that it no longer does, or started again; `None`: not seen to end.
    pub until: Option<f64>,
}

/// Every pod's reigns.
#[derive(Clone, Debug, Default)]
pub struct Reigns(pub Vec<Reign>);

impl Reigns {
    /// Adds the reigns in `pod`'s sidecar log `log`.
    pub fn read(&mut self, pod: &str, log: &str) {
        let mut open: Vec<Reign> = Vec::new();
        for line in log.lines() {
            let Some(at) = line
                .split_whitespace()
                .next()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map(|t| t.as_microsecond() as f64 / 1e6)
            else {
                continue;
            };
            if line.contains("understudy started") {
                self.close_all(&mut open, at);
                continue;
            }
            if !line.contains("election view changed") {
                continue;
            }
            let (Some(lease), Some(role)) = (field(line, "lease"), field(line, "role")) else {
                continue;
            };
            let epoch = field(line, "epoch").and_then(|e| e.parse::<u64>().ok());
            let leads = role == "leader";
            if let Some(i) = open.iter().position(|r| r.lease == lease) {
                if leads && Some(open[i].epoch) == epoch {
                    continue;
                }
                let mut ended = open.remove(i);
                ended.until = Some(at);
                self.0.push(ended);
            }
            if let (true, Some(epoch)) = (leads, epoch) {
                open.push(Reign {
                    pod: pod.to_string(),
                    lease: lease.to_string(),
                    epoch,
                    from: at,
                    until: None,
                });
            }
        }
        self.0.append(&mut open);
    }

    fn close_all(&mut self, open: &mut Vec<Reign>, at: f64) {
        for mut r in open.drain(..) {
            r.until = Some(at);
            self.0.push(r);
        }
    }

    /// The epoch under which `pod` led `lease` at `at` (Unix seconds), give or take `slack`
    /// seconds at either end of a reign; `None` if it did not lead then.
    pub fn fence(&self, pod: &str, lease: &str, at: f64, slack: f64) -> Option<u64> {
        self.0
            .iter()
            .find(|r| {
                r.pod == pod
                    && r.lease == lease
                    && at >= r.from - slack
                    && r.until.is_none_or(|u| at <= u + slack)
            })
            .map(|r| r.epoch)
    }

    /// `pod`'s reigns, for a message.
    pub fn of(&self, pod: &str) -> Vec<&Reign> {
        self.0.iter().filter(|r| r.pod == pod).collect()
    }
}

/// The value of `name=` in a text-format log line (quotes removed).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-12-02T00:00:00.000000Z  INFO understudy_proxy::sidecar: understudy started election=r identity=a
2026-12-02T00:00:00.100000Z  INFO understudy_elector::driver: election view changed lease=r role=follower leader=\"b\" epoch=3
2026-12-02T00:00:01.000000Z  INFO understudy_elector::driver: election view changed lease=r role=leader leader=\"a\" epoch=4
2026-12-02T00:00:05.000000Z  INFO understudy_elector::driver: election view changed lease=r role=follower leader=\"b\" epoch=5
2026-12-02T00:00:06.000000Z  INFO understudy_elector::driver: election view changed lease=r role=leader leader=\"a\" epoch=6
2026-12-02T00:00:09.000000Z  INFO understudy_proxy::sidecar: understudy started election=r identity=a
2026-12-02T00:00:10.000000Z  INFO understudy_elector::driver: election view changed lease=r role=leader leader=\"a\" epoch=8
";

    fn secs(t: &str) -> f64 {
        t.parse::<Timestamp>().unwrap().as_microsecond() as f64 / 1e6
    }

    #[test]
    fn reigns_end_at_another_role_a_restart_or_never() {
        let mut reigns = Reigns::default();
        reigns.read("a", LOG);
        let spans: Vec<(u64, f64, Option<f64>)> = reigns
            .0
            .iter()
            .map(|r| (r.epoch, r.from, r.until))
            .collect();
        let at = |s: &str| secs(&format!("2026-12-02T00:00:{s}Z"));
        assert_eq!(
            spans,
            vec![
                (4, at("01"), Some(at("05"))),
                (6, at("06"), Some(at("09"))),
                (8, at("10"), None),
            ]
        );
        assert_eq!(reigns.fence("a", "r", at("03"), 0.0), Some(4));
        assert_eq!(
            reigns.fence("a", "r", at("05.5"), 0.0),
            None,
            "between reigns"
        );
        assert_eq!(
            reigns.fence("a", "r", at("05.01"), 0.05),
            Some(4),
            "within the slack"
        );
        assert_eq!(reigns.fence("a", "r", at("00.5"), 0.0), None, "a follower");
        assert_eq!(
            reigns.fence("a", "r", at("59"), 0.0),
            Some(8),
            "still leading"
        );
        assert_eq!(reigns.fence("b", "r", at("03"), 0.0), None, "another pod");
        assert_eq!(
            reigns.fence("a", "other", at("03"), 0.0),
            None,
            "another Lease"
        );
    }
}
