//! A leader that dies in the middle of a response: a request that reached it through a
//! standby is answered in full by the next leader, and the client (which retries nothing
//! itself) never sees half a body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use understudy_tests::cluster::loopback::{
    Loopback, Sidecar, agreed_leader, agreed_leader_not, eventually, get,
};

/// An app that answers every request with `name|name` (one request per connection). Once
/// `stall` is set it sends the head and `name|` only, reports `name` on `started`, and keeps
/// the connection open with the answer unfinished.
async fn midway_app(
    name: &'static str,
    stall: Arc<AtomicBool>,
    started: mpsc::UnboundedSender<&'static str>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (stall, started) = (stall.clone(), started.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&chunk[..k]),
                    }
                }
                let body = format!("{name}|{name}");
                let first = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}|",
                    body.len()
                );
                if s.write_all(first.as_bytes()).await.is_err() {
                    return;
                }
                if stall.load(Ordering::SeqCst) {
                    let _ = started.send(name);
                    std::future::pending::<()>().await;
                }
                let _ = s.write_all(name.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn sigkill_of_the_leader_mid_response_fails_no_request_through_a_standby() {
    let cluster = Loopback::start("e2e-midway").await;
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let mut pods: Vec<Sidecar> = Vec::new();
    let mut stalls = Vec::new();
    for name in ["pod-a", "pod-b", "pod-c"] {
        let stall = Arc::new(AtomicBool::new(false));
        let app = midway_app(name, stall.clone(), started_tx.clone()).await;
        pods.push(cluster.sidecar(name).upstream(app).start().await);
        stalls.push(stall);
    }
    let old = agreed_leader(&pods.iter().collect::<Vec<_>>(), Duration::from_secs(15)).await;
    let li = pods.iter().position(|p| p.name == old).unwrap();
    stalls[li].store(true, Ordering::SeqCst);
    let standby = pods[(li + 1) % pods.len()].listen.unwrap();

    // One GET through a standby, from a client that retries nothing; the leader's app has
    // begun its answer when the leader dies.
    let request = tokio::spawn(get(standby, "/", Duration::from_secs(30)));
    let midway = tokio::time::timeout(Duration::from_secs(10), started.recv())
        .await
        .expect("the leader's app begins its answer");
    assert_eq!(midway, Some(old.as_str()));
    // The leader counts a request once its response head is on its way (to the standby).
    eventually(Duration::from_secs(5), || async {
        pods[li]
            .metric("understudy_proxy_requests_total", r#"route="local""#)
            .await
            >= 1.0
    })
    .await;
    pods[li].sigkill().await;

    let others: Vec<&Sidecar> = pods.iter().filter(|p| p.name != old).collect();
    let new = agreed_leader_not(&others, &old, Duration::from_secs(15)).await;
    let (status, body) = request
        .await
        .unwrap()
        .expect("a complete answer, not a cut one");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        format!("{new}|{new}"),
        "answered whole by the new leader"
    );
}
