//! `./run-demo`: the election on one machine, narrated.
//!
//! Starts the Kubernetes API emulator and three candidates (each with its own kubeconfig, as
//! pods would have), shows who leads, crashes the leader (no release: its Lease must expire),
//! then shuts the next leader down gracefully (release: taken over through the watch), and
//! prints the measured gaps. Ends by itself; Ctrl-C ends it early.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::sync::watch;
use understudy_elector::{Candidate, Config, Handle, View, spawn};
use understudy_tests::emulator::{Emulator, EmulatorOptions};

struct Pod {
    name: String,
    view: watch::Receiver<View>,
    handle: Option<Handle>,
}

struct Out {
    colour: bool,
    start: Instant,
}

impl Out {
    fn say(&self, what: &str) {
        let t = self.start.elapsed().as_secs_f64();
        if self.colour {
            println!("\x1b[2m{t:7.3}s\x1b[0m  {what}");
        } else {
            println!("{t:7.3}s  {what}");
        }
    }
    fn bold(&self, s: &str) -> String {
        if self.colour {
            format!("\x1b[1;32m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

fn leader_of(pods: &[Pod]) -> Option<usize> {
    let now = Instant::now();
    pods.iter().position(|p| p.view.borrow().is_acting(now))
}

async fn wait_leader(pods: &mut [Pod], within: Duration) -> Option<usize> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(i) = leader_of(pods) {
            return Some(i);
        }
        let changes = futures::future::select_all(
            pods.iter_mut()
                // A view whose election has ended never changes again.
                .filter(|p| p.view.has_changed().is_ok())
                .map(|p| Box::pin(p.view.changed())),
        );
        let _ = tokio::time::timeout_at(deadline, changes).await.ok()?;
    }
}

fn roles(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| format!("{}={}", p.name, p.view.borrow().role))
        .collect::<Vec<_>>()
        .join("  ")
}

async fn run(out: &Out) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config {
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(3),
        retry_period: Duration::from_secs(1),
        resync_period: Duration::from_secs(30),
    }
    .validated()?;
    let emu = Emulator::start(EmulatorOptions::default()).await?;
    out.say(&format!("kube-emulator serving {}", emu.server_url()));
    let mut pods = Vec::new();
    for i in 0..3 {
        let name = format!("nginx-{i}");
        emu.add_client(&name);
        let api: Api<Lease> = Api::namespaced(emu.kube_client(&name).await, "default");
        let me = Candidate {
            identity: name.clone(),
            address: Some(format!("198.18.0.{}:8080", i + 2)),
        };
        let (view, handle) = spawn(api, "example", me, config);
        pods.push(Pod {
            name,
            view,
            handle: Some(handle),
        });
    }
    out.say(&format!(
        "3 candidates contend for Lease default/example (lease {:?}, renew deadline {:?}, retry {:?})",
        config.lease_duration, config.renew_deadline, config.retry_period
    ));
    let first = wait_leader(&mut pods, Duration::from_secs(10))
        .await
        .ok_or("no leader")?;
    out.say(&format!(
        "leader: {}   [{}]",
        out.bold(&pods[first].name),
        roles(&pods)
    ));

    out.say(&format!(
        "crash {} (no release; its Lease must expire)",
        pods[first].name
    ));
    let crashed = pods.remove(first);
    drop(crashed.handle);
    let t = Instant::now();
    let second = wait_leader(&mut pods, Duration::from_secs(15))
        .await
        .ok_or("no leader")?;
    let epoch = pods[second]
        .view
        .borrow()
        .leader
        .as_ref()
        .map_or(0, |l| l.epoch);
    out.say(&format!(
        "leader: {} after {:.2}s without a leader (epoch {epoch})   [{}]",
        out.bold(&pods[second].name),
        t.elapsed().as_secs_f64(),
        roles(&pods)
    ));

    out.say(&format!(
        "SIGTERM-style shutdown of {} (releases the Lease)",
        pods[second].name
    ));
    let t = Instant::now();
    let handle = pods[second].handle.take().ok_or("handle")?;
    handle.release().await?;
    pods.remove(second);
    let third = wait_leader(&mut pods, Duration::from_secs(10))
        .await
        .ok_or("no leader")?;
    let epoch = pods[third]
        .view
        .borrow()
        .leader
        .as_ref()
        .map_or(0, |l| l.epoch);
    out.say(&format!(
        "leader: {} after {:.0}ms, taken through the watch (epoch {epoch})",
        out.bold(&pods[third].name),
        t.elapsed().as_secs_f64() * 1000.0
    ));
    let api: Api<Lease> = Api::namespaced(emu.kube_client("nginx-2").await, "default");
    let spec = api.get("example").await?.spec.unwrap_or_default();
    out.say(&format!(
        "kubectl would show: holder={} leaseTransitions={} leaseDurationSeconds={}",
        spec.holder_identity.unwrap_or_default(),
        spec.lease_transitions.unwrap_or(0),
        spec.lease_duration_seconds.unwrap_or(0)
    ));
    for p in pods {
        if let Some(h) = p.handle {
            h.release().await?;
        }
    }
    emu.shutdown().await;
    out.say("done");
    Ok(())
}

#[tokio::main]
async fn main() {
    let out = Out {
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        start: Instant::now(),
    };
    tokio::select! {
        result = run(&out) => if let Err(e) = result {
            eprintln!("demo failed: {e}");
            std::process::exit(1);
        },
        _ = tokio::signal::ctrl_c() => out.say("interrupted; cleaning up"),
    }
}
