//! The Service's ClusterIP, implemented as kube-proxy's iptables mode does it.
//!
//! ```text
//! nat    PREROUTING, OUTPUT -> us-N-SERVICES: -d VIP -p tcp --dport 80 -> us-N-SVC
//!        us-N-SVC: one DNAT per endpoint, each taken with probability 1/(endpoints left)
//!        POSTROUTING -> us-N-POSTROUTING: masquerade hairpin traffic (pod -> VIP -> itself)
//! filter OUTPUT, FORWARD -> us-N-SERVICES: REJECT to the VIP while it has no endpoints
//! ```
//!
//! The service chains are rewritten in one `iptables-restore --noflush` transaction per
//! change, so a connection never meets a half-written chain. Clients in the root namespace
//! (the load generator) go through OUTPUT. PREROUTING is hooked as kube-proxy hooks it;
//! pod -> VIP traffic would also need `net.ipv4.ip_forward=1`, a host-wide setting the
//! harness leaves alone.

use std::fmt::Write;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::HarnessError;
use super::command::{run, run_with_input};

/// The Service port on the VIP (the original tutorial's Service port).
pub const SERVICE_PORT: u16 = 80;

/// A ClusterIP Service: `vip:80` -> the endpoints' `target_port`.
#[derive(Clone, Debug)]
pub struct Vip {
    prefix: String,
    /// The cluster IP.
    pub ip: Ipv4Addr,
    /// The pods' port the Service targets.
    pub target_port: u16,
    /// The pods' subnet (for the hairpin masquerade).
    pub subnet: Ipv4Addr,
}

impl Vip {
    /// Creates the chains (with no endpoints: connections are rejected) and hooks them in.
    pub async fn install(
        prefix: String,
        ip: Ipv4Addr,
        subnet: Ipv4Addr,
        target_port: u16,
    ) -> Result<Vip, HarnessError> {
        let vip = Vip {
            prefix,
            ip,
            target_port,
            subnet,
        };
        vip.apply(&[]).await?;
        let services = vip.chain("SERVICES");
        let postrouting = vip.chain("POSTROUTING");
        for (table, hook, chain) in [
            ("nat", "PREROUTING", &services),
            ("nat", "OUTPUT", &services),
            ("nat", "POSTROUTING", &postrouting),
            ("filter", "OUTPUT", &services),
            ("filter", "FORWARD", &services),
        ] {
            // First in the hook, as kube-proxy inserts its jumps.
            run("iptables", &["-w", "-t", table, "-I", hook, "-j", chain]).await?;
        }
        Ok(vip)
    }

    /// The Service address clients use.
    pub fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, SERVICE_PORT)
    }

    /// Points the VIP at `endpoints` (pod addresses), replacing the previous set atomically.
    pub async fn apply(&self, endpoints: &[Ipv4Addr]) -> Result<(), HarnessError> {
        let rules = self.render(endpoints);
        run_with_input("iptables-restore", &["-w", "--noflush"], Some(&rules))
            .await
            .map(drop)
    }

    fn chain(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The `iptables-restore` input for `endpoints`.
    pub fn render(&self, endpoints: &[Ipv4Addr]) -> String {
        let (services, svc, post) = (
            self.chain("SERVICES"),
            self.chain("SVC"),
            self.chain("POSTROUTING"),
        );
        let vip = self.ip;
        let port = SERVICE_PORT;
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line("*nat".into());
        for chain in [&services, &svc, &post] {
            line(format!(":{chain} - [0:0]"));
        }
        line(format!(
            "-A {services} -d {vip}/32 -p tcp -m tcp --dport {port} -j {svc}"
        ));
        let n = endpoints.len();
        for (i, ep) in endpoints.iter().enumerate() {
            let mut rule = format!("-A {svc} -p tcp");
            if i + 1 < n {
                // Uniform over the endpoints: the i-th is taken with 1/(endpoints left).
                let p = 1.0 / (n - i) as f64;
                let _ = write!(rule, " -m statistic --mode random --probability {p:.10}");
            }
            let _ = write!(rule, " -j DNAT --to-destination {ep}:{}", self.target_port);
            line(rule);
        }
        line(format!(
            "-A {post} -s {}/24 -m conntrack --ctstate DNAT -j MASQUERADE",
            self.subnet
        ));
        line("COMMIT".into());
        line("*filter".into());
        line(format!(":{services} - [0:0]"));
        if endpoints.is_empty() {
            // What kube-proxy does for a Service without endpoints: refuse at once rather
            // than let the SYN wander.
            line(format!(
                "-A {services} -d {vip}/32 -p tcp -m tcp --dport {port} -j REJECT --reject-with icmp-port-unreachable"
            ));
        }
        line("COMMIT".into());
        out
    }
}

#[cfg(test)]
mod tests;
