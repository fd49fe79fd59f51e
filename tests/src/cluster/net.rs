//! Pods as network namespaces: one bridge per run in the root namespace, one namespace and
//! veth pair per pod.
//!
//! Addresses come only from the run's slot: pods get `198.18.N.2..=254/24` and reach each
//! other and the bridge (`198.18.N.1`, where the emulator listens) on-link. A pod has no
//! default route, only a route to the run's VIP, so nothing it does can leave the test
//! network. The root namespace gets a route for the VIP onto the bridge for the same reason:
//! without endpoints, a packet to it is rejected (see [`super::vip`]), never sent on the
//! host's default route.

use std::net::Ipv4Addr;

use super::{HarnessError, Slot, command::run};

/// The run's bridge in the root namespace.
#[derive(Clone, Debug)]
pub struct Bridge {
    /// Link name, `us-N-br`.
    pub name: String,
    /// Its address, the pods' gateway: `198.18.N.1`.
    pub ip: Ipv4Addr,
    /// The run's VIP, routed onto the bridge.
    pub vip: Ipv4Addr,
}

impl Bridge {
    /// Creates the bridge, gives it the gateway address, and routes the VIP onto it.
    pub async fn create(slot: &Slot) -> Result<Bridge, HarnessError> {
        let bridge = Bridge {
            name: format!("{}br", slot.prefix()),
            ip: slot.gateway(),
            vip: slot.vip(),
        };
        let name = bridge.name.as_str();
        run("ip", &["link", "add", name, "type", "bridge"]).await?;
        run(
            "ip",
            &["addr", "add", &format!("{}/24", bridge.ip), "dev", name],
        )
        .await?;
        run("ip", &["link", "set", name, "up"]).await?;
        run(
            "ip",
            &["route", "add", &format!("{}/32", bridge.vip), "dev", name],
        )
        .await?;
        Ok(bridge)
    }
}

/// One pod's network: a namespace with `lo` and `eth0`, its peer enslaved to the bridge.
#[derive(Clone, Debug)]
pub struct PodNet {
    /// Namespace name, `us-N-<pod>`.
    pub netns: String,
    /// The host end of the veth pair, `us-N-vK`.
    pub veth: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
}

impl PodNet {
    /// Creates namespace `netns` with address `ip` behind `bridge` (veth host end `veth`).
    pub async fn create(
        bridge: &Bridge,
        netns: String,
        veth: String,
        ip: Ipv4Addr,
    ) -> Result<PodNet, HarnessError> {
        run("ip", &["netns", "add", &netns]).await?;
        let net = PodNet { netns, veth, ip };
        let result = async {
            let (ns, v) = (net.netns.as_str(), net.veth.as_str());
            run(
                "ip",
                &[
                    "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns,
                ],
            )
            .await?;
            run("ip", &["link", "set", v, "master", &bridge.name, "up"]).await?;
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            )
            .await?;
            run("ip", &["-n", ns, "link", "set", "eth0", "up"]).await?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"]).await?;
            let vip = format!("{}/32", bridge.vip);
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "route",
                    "add",
                    &vip,
                    "via",
                    &bridge.ip.to_string(),
                ],
            )
            .await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(net),
            Err(e) => {
                let _ = net.delete().await;
                Err(e)
            }
        }
    }

    /// Kills every process in the namespace (as a container runtime kills a cgroup: nginx's
    /// workers outlive a SIGKILLed master otherwise) and waits until they are gone.
    pub async fn kill_all(&self) -> Result<(), HarnessError> {
        for _ in 0..250 {
            let pids = run("ip", &["netns", "pids", &self.netns]).await?;
            let pids: Vec<&str> = pids.split_whitespace().collect();
            if pids.is_empty() {
                return Ok(());
            }
            // Some may exit on their own meanwhile; a failed kill is not an error.
            let _ = run("kill", &[&["-KILL"], pids.as_slice()].concat()).await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(HarnessError::timeout(
            format!("the processes in {} to exit", self.netns),
            std::time::Duration::from_secs(5),
        ))
    }

    /// Kills what still runs inside, then removes the namespace (its `eth0` and so the veth
    /// pair go with it).
    pub async fn delete(&self) -> Result<(), HarnessError> {
        self.kill_all().await?;
        let ns = run("ip", &["netns", "del", &self.netns]).await;
        // Normally gone with the namespace; explicit for a half-created pod.
        let _ = run("ip", &["link", "del", &self.veth]).await;
        ns.map(drop)
    }

    /// `ip netns exec <netns>`: the prefix that starts a command inside the pod.
    pub fn exec_prefix(&self) -> [&str; 3] {
        ["netns", "exec", &self.netns]
    }
}
