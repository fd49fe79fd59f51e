//! The node: one network namespace per run (`us-N-node`) that plays the machine every pod and
//! every control-plane component runs on, and the pods' own namespaces behind it.
//!
//! ```text
//!  host (the test process)             us-N-node                          us-N-<pod>
//!  us-N-h 198.19.N.249/30 ---- eth0 198.19.N.250/30
//!  routes: 198.18.N.0/24,               br0 198.18.N.1/24 ---- vK ======= eth0 198.18.N.K/24
//!          198.19.N.0/25 via .250       etcd, kube-apiserver,              default via 198.18.N.1
//!                                       controller manager, scheduler,
//!                                       kube-proxy (its iptables rules
//!                                       live here, not on the host)
//! ```
//!
//! Pods sit on a bridge with `br_netfilter` on (the kernel's per-namespace
//! `bridge-nf-call-iptables`), so a pod reaching a Service whose endpoint is another pod on
//! the same bridge gets its reply un-NATed, as on a kubenet node; hairpin mode is on for every
//! pod port, as the kubelet's `hairpin-veth` sets it, so a pod reaches itself through its own
//! Service. The node has no default route: nothing here can reach beyond the run's addresses.
//! It routes the Service range to its bridge instead, so that a connect to a Service with no
//! endpoints is refused by kube-proxy's REJECT, as on a node with a default route.
//! The host only gains one veth and two routes, which go with the namespace.

use std::net::Ipv4Addr;

use crate::cluster::command::run;
use crate::cluster::{HarnessError, Slot};

/// The node's network.
#[derive(Clone, Debug)]
pub struct NodeNet {
    /// The node's namespace, `us-N-node`.
    pub netns: String,
    /// The run's prefix, `us-N-`.
    pub prefix: String,
    /// The slot number `N`.
    pub slot: u8,
    /// The bridge's address: the pods' gateway, the API server's address and every Node
    /// object's InternalIP: `198.18.N.1`.
    pub ip: Ipv4Addr,
    /// The host's end of the link to the node, `198.19.N.249`.
    pub host_ip: Ipv4Addr,
}

/// The pod network: `198.18.N.0/24`.
pub fn pod_cidr(slot: u8) -> String {
    format!("198.18.{slot}.0/24")
}

/// The Service network: `198.19.N.0/25` (the `kubernetes` Service gets `198.19.N.1`).
pub fn service_cidr(slot: u8) -> String {
    format!("198.19.{slot}.0/25")
}

impl NodeNet {
    /// Creates the node namespace, its bridge and its link to the host.
    pub async fn create(slot: &Slot) -> Result<NodeNet, HarnessError> {
        let n = slot.number();
        let node = NodeNet {
            netns: format!("{}node", slot.prefix()),
            prefix: slot.prefix(),
            slot: n,
            ip: slot.gateway(),
            host_ip: Ipv4Addr::new(198, 19, n, 249),
        };
        let ns = node.netns.as_str();
        let host_link = format!("{}h", slot.prefix());
        let node_link_ip = Ipv4Addr::new(198, 19, n, 250);
        run("ip", &["netns", "add", ns]).await?;
        let steps: &[&[&str]] = &[
            &[
                "link", "add", &host_link, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
            &[
                "addr",
                "add",
                &format!("{}/30", node.host_ip),
                "dev",
                &host_link,
            ],
            &["link", "set", &host_link, "up"],
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{node_link_ip}/30"),
                "dev",
                "eth0",
            ],
            &["-n", ns, "link", "set", "eth0", "up"],
            &["-n", ns, "link", "set", "lo", "up"],
            &["-n", ns, "link", "add", "br0", "type", "bridge"],
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", node.ip),
                "dev",
                "br0",
            ],
            &["-n", ns, "link", "set", "br0", "up"],
            // The Service range, routed as a node's default route would: a connect to a
            // Service with no endpoints is not DNATed, and without a route it never reaches
            // kube-proxy's REJECT in FORWARD. The kernel then answers "network unreachable"
            // at most about once a second (five at once at first) and drops every other SYN
            // silently, so a client's connect times out where it should be refused.
            &["-n", ns, "route", "add", &service_cidr(n), "dev", "br0"],
            &[
                "route",
                "add",
                &pod_cidr(n),
                "via",
                &node_link_ip.to_string(),
                "dev",
                &host_link,
            ],
            &[
                "route",
                "add",
                &service_cidr(n),
                "via",
                &node_link_ip.to_string(),
                "dev",
                &host_link,
            ],
        ];
        run_steps(steps).await?;
        node.sysctl("net.ipv4.ip_forward", "1").await?;
        // A pod reaching another pod through a Service needs its reply un-NATed on the
        // bridge; without this, replies bypass conntrack and the client sees a reset.
        node.sysctl("net.bridge.bridge-nf-call-iptables", "1")
            .await
            .map_err(|e| {
                HarnessError::Setup(format!(
                    "br_netfilter is needed (pods reach Services across a bridge): {e}"
                ))
            })?;
        // kube-proxy answers a connect to a Service without endpoints with an ICMP
        // unreachable (REJECT). The kernel sends those to one address at most once a second
        // after a burst of six, and the test load is one address opening ~200 connections a
        // second: past the burst a refused connect would turn into a silent SYN timeout.
        // Many clients of a real Service each get their own budget; here every one is
        // answered, so a connect during an endpoint move is refused (and retried) at once.
        node.sysctl("net.ipv4.icmp_ratelimit", "0").await?;
        Ok(node)
    }

    async fn sysctl(&self, key: &str, value: &str) -> Result<(), HarnessError> {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.netns,
                "sysctl",
                "-qw",
                &format!("{key}={value}"),
            ],
        )
        .await
        .map(drop)
    }

    /// `ip netns exec us-N-node`: the prefix that runs a command on the node.
    pub fn exec_prefix(&self) -> [&str; 3] {
        ["netns", "exec", &self.netns]
    }

    /// Pod address number `host` (2..=254).
    pub fn pod_ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.slot, host)
    }
}

/// One pod's network: a namespace with `lo` and `eth0`, the other end of its veth a port of
/// the node's bridge.
#[derive(Clone, Debug)]
pub struct PodNet {
    /// Namespace name, `us-N-p<K>`.
    pub netns: String,
    /// The node's end of the veth, `vK` (inside the node namespace).
    pub port: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The node namespace.
    pub node_netns: String,
}

impl PodNet {
    /// Creates the namespace of the pod with address `node.pod_ip(host)`.
    pub async fn create(node: &NodeNet, host: u8) -> Result<PodNet, HarnessError> {
        let net = PodNet {
            netns: format!("{}p{host}", node.prefix),
            port: format!("v{host}"),
            ip: node.pod_ip(host),
            node_netns: node.netns.clone(),
        };
        // A namespace left by a pod whose clean-up was cut short goes first.
        let _ = net.delete().await;
        run("ip", &["netns", "add", &net.netns]).await?;
        let (ns, port, nodens) = (
            net.netns.as_str(),
            net.port.as_str(),
            net.node_netns.as_str(),
        );
        let gateway = node.ip.to_string();
        let steps: &[&[&str]] = &[
            &[
                "-n", nodens, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
                ns,
            ],
            &["-n", nodens, "link", "set", port, "master", "br0"],
            &[
                "-n",
                nodens,
                "link",
                "set",
                port,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ],
            &["-n", nodens, "link", "set", port, "up"],
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", net.ip),
                "dev",
                "eth0",
            ],
            &["-n", ns, "link", "set", "eth0", "up"],
            &["-n", ns, "link", "set", "lo", "up"],
            &["-n", ns, "route", "add", "default", "via", &gateway],
        ];
        if let Err(e) = run_steps(steps).await {
            let _ = net.delete().await;
            return Err(e);
        }
        Ok(net)
    }

    /// `ip netns exec us-N-pK`: the prefix that runs a command inside the pod's network.
    pub fn exec_prefix(&self) -> [&str; 3] {
        ["netns", "exec", &self.netns]
    }

    /// Kills whatever still runs in the namespace and removes it (the veth goes with it).
    pub async fn delete(&self) -> Result<(), HarnessError> {
        if let Ok(pids) = run("ip", &["netns", "pids", &self.netns]).await {
            let pids: Vec<&str> = pids.split_whitespace().collect();
            if !pids.is_empty() {
                let _ = run("kill", &[&["-KILL"], pids.as_slice()].concat()).await;
            }
        }
        let deleted = run("ip", &["netns", "del", &self.netns]).await;
        let _ = run("ip", &["-n", &self.node_netns, "link", "del", &self.port]).await;
        deleted.map(drop)
    }
}

/// `ip <args>` for each of `steps`, in order; the first failure ends it.
async fn run_steps(steps: &[&[&str]]) -> Result<(), HarnessError> {
    for args in steps {
        run("ip", args).await?;
    }
    Ok(())
}
