//! `GET /watch` on the admin port of real sidecars: a standby's stream names the leader at
//! once and the new one, at a higher epoch, soon after the old one is stopped; many watchers
//! at once do not slow the admin server down.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use understudy_tests::cluster::loopback::{Loopback, Sidecar, agreed_leader};

/// One `/watch` stream read by a plain TCP client: the JSON of each `view` event, in order.
struct Watcher {
    events: mpsc::UnboundedReceiver<Value>,
    reader: tokio::task::JoinHandle<()>,
}

impl Watcher {
    async fn open(admin: SocketAddr) -> Watcher {
        let mut conn = TcpStream::connect(admin)
            .await
            .expect("connect to the admin port");
        conn.write_all(
            b"GET /watch HTTP/1.1\r\nhost: understudy\r\naccept: text/event-stream\r\n\r\n",
        )
        .await
        .expect("send the request");
        let (tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut text = String::new();
            let mut head = true;
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                if head {
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let lower = text[..end].to_ascii_lowercase();
                    assert!(lower.starts_with("http/1.1 200"), "{lower}");
                    assert!(lower.contains("content-type: text/event-stream"), "{lower}");
                    text.drain(..end + 4);
                    head = false;
                }
                // Each event is one chunk, so its data line is never cut by chunk framing.
                while let Some(start) = text.find("data: ") {
                    let Some(len) = text[start..].find('\n') else {
                        break;
                    };
                    let json = &text[start + "data: ".len()..start + len];
                    let v: Value = serde_json::from_str(json)
                        .unwrap_or_else(|e| panic!("event data {json:?}: {e}"));
                    if tx.send(v).is_err() {
                        return;
                    }
                    text.drain(..start + len + 1);
                }
            }
        });
        Watcher { events, reader }
    }

    /// The next event within `within`.
    async fn next(&mut self, within: Duration) -> Value {
        tokio::time::timeout(within, self.events.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {within:?}"))
            .expect("the stream is open")
    }

    /// Events until one of slot 0 names a holder other than `old` at an epoch above `epoch`;
    /// returns it. Panics after `within`.
    async fn until_new_holder(&mut self, old: &str, epoch: u64, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.next(left).await;
            let slot = &v["slots"][0];
            let holder = slot["holder"].as_str().unwrap_or_default();
            if !holder.is_empty() && holder != old && slot["epoch"].as_u64() > Some(epoch) {
                return v;
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[tokio::test]
async fn a_standby_watching_sees_the_new_leader_at_a_higher_epoch_and_many_watchers_cost_little() {
    let cluster = Loopback::start("watch").await;
    let mut pods = cluster.three(&[]).await;
    let all: Vec<&Sidecar> = pods.iter().collect();
    let leader = agreed_leader(&all, Duration::from_secs(15)).await;
    let li = pods.iter().position(|p| p.name == leader).unwrap();
    let si = pods.iter().position(|p| p.name != leader).unwrap();
    let standby = &pods[si];

    let mut watcher = Watcher::open(standby.admin).await;
    let first = watcher.next(Duration::from_secs(2)).await;
    assert_eq!(first["identity"], standby.name.as_str(), "{first}");
    assert_eq!(first["role"], "follower", "{first}");
    assert_eq!(first["slot"], Value::Null, "{first}");
    assert_eq!(first["slots"][0]["holder"], leader.as_str(), "{first}");
    let epoch = first["slots"][0]["epoch"].as_u64().expect("an epoch");

    // Twenty more at once: each gets the current view at once, and the admin server still
    // answers promptly.
    let mut many = Vec::new();
    for _ in 0..20 {
        many.push(Watcher::open(standby.admin).await);
    }
    for w in &mut many {
        let v = w.next(Duration::from_secs(2)).await;
        assert_eq!(v["slots"][0]["holder"], leader.as_str(), "{v}");
    }
    let asked = Instant::now();
    let (status, body) = standby.admin_get("/status").await.expect("/status answers");
    let took = asked.elapsed();
    assert_eq!(status, http::StatusCode::OK, "{body}");
    assert!(took < Duration::from_secs(1), "/status took {took:?}");

    // The leader's own stream: it says so, and ends when the leader exits.
    let mut on_leader = Watcher::open(pods[li].admin).await;
    let v = on_leader.next(Duration::from_secs(2)).await;
    assert_eq!(v["role"], "leader", "{v}");
    assert_eq!(v["acting"], true, "{v}");
    assert_eq!(v["slot"], 0, "{v}");

    pods[li].sigterm();
    let stopped = Instant::now();
    let v = watcher
        .until_new_holder(&leader, epoch, Duration::from_secs(10))
        .await;
    let new = v["slots"][0]["holder"].as_str().unwrap().to_string();
    eprintln!(
        "new leader {new} seen on /watch {:?} after the SIGTERM",
        stopped.elapsed()
    );
    assert!(pods.iter().any(|p| p.name == new), "{v}");
    // Every other watcher saw it too.
    for w in &mut many {
        let v = w
            .until_new_holder(&leader, epoch, Duration::from_secs(10))
            .await;
        assert_eq!(v["slots"][0]["holder"], new.as_str(), "{v}");
    }
    // A watcher does not keep the old leader from exiting after its drain, and its stream
    // ends then.
    assert_eq!(pods[li].exit_code(Duration::from_secs(10)).await, Some(0));
    tokio::time::timeout(Duration::from_secs(2), async {
        while on_leader.events.recv().await.is_some() {}
    })
    .await
    .expect("the leader's stream ended");
    // The standby's admin server still answers.
    let (status, _) = pods[si]
        .admin_get("/status")
        .await
        .expect("/status answers");
    assert_eq!(status, http::StatusCode::OK);
}
