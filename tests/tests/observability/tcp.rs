//! TCP mode as the dashboard and the alerts show it: a real Prometheus scrapes two real
//! sidecars in `--mode tcp` (the rules loaded). First no pod can lead (their apps are down and
//! `--upstream-health tcp` gates them), so a client's connection is held, then closed at the
//! hold timeout: UnderstudyTcpConnectionsDropped fires. Then the apps come up, a leader is
//! elected, and connections through both pods (one served locally, one forwarded) move bytes
//! each way: every panel of the *TCP mode* row shows them.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use understudy_tests::cluster::loopback::{
    Loopback, Sidecar, agreed_leader, eventually, free_port,
};
use understudy_tests::cluster::sidecar::TEST_TIMINGS;

use super::prometheus::{Prometheus, sample};
use super::{dashboard, scrape_config};

/// An echo server on `addr`: every byte it reads comes back.
async fn echo(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
}

/// One connection through `to`: `n` bytes sent, the same read back, then closed both ways.
async fn round_trip(to: SocketAddr, n: usize) {
    let mut stream = TcpStream::connect(to).await.unwrap();
    let sent = vec![b'x'; n];
    stream.write_all(&sent).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut back))
        .await
        .expect("the echo within 10s")
        .unwrap();
    assert_eq!(back.len(), n, "echoed through {to}");
}

/// The value of the `label`=`value` series of `expr`, if present.
fn value_of(result: &[serde_json::Value], label: &str, value: &str) -> Option<f64> {
    result
        .iter()
        .find(|s| s["metric"][label] == value)
        .and_then(sample)
}

/// The TCP mode row's queries: (panel title, expression as Grafana sends it).
fn tcp_queries(election: &str) -> Vec<(String, String)> {
    let dash = dashboard::load();
    let out: Vec<(String, String)> = dashboard::panels(&dash)
        .into_iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap().to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap().to_string()))
        })
        .filter(|(_, expr)| expr.contains("understudy_tcp_"))
        .map(|(title, expr)| (title, dashboard::expand(&expr, "default", election)))
        .collect();
    assert_eq!(out.len(), 3, "the TCP mode row's queries: {out:?}");
    out
}

/// Waits until the panel reading `metric` shows a positive value for `label`=`value`.
async fn shows(
    prom: &Prometheus,
    queries: &[(String, String)],
    metric: &str,
    label: &str,
    value: &str,
) {
    let (title, expr) = queries
        .iter()
        .find(|(_, e)| e.contains(metric))
        .unwrap_or_else(|| panic!("no panel reads {metric}"));
    eventually(Duration::from_secs(20), || async {
        let result = prom.query(expr).await.unwrap_or_default();
        value_of(&result, label, value).is_some_and(|v| v > 0.0)
    })
    .await;
    println!("{title}: {label}={value} shown");
}

#[tokio::test]
async fn prometheus_shows_tcp_mode_on_its_panels_and_alerts_on_dropped_connections() {
    let cluster = Loopback::start("obs-tcp").await;
    let apps = [
        free_port(Ipv4Addr::LOCALHOST).await,
        free_port(Ipv4Addr::LOCALHOST).await,
    ];
    let mut pods = Vec::new();
    for (name, app) in ["pod-a", "pod-b"].into_iter().zip(apps) {
        let pod = cluster
            .sidecar(name)
            .upstream(app)
            .args(&["--mode", "tcp", "--upstream-health", "tcp"])
            .start()
            .await;
        pods.push(pod);
    }
    let election = cluster.election.clone();
    let prom = Prometheus::start(&scrape_config(&pods)).await;
    eventually(Duration::from_secs(20), || async {
        prom.value("sum(up)").await == Some(2.0)
            && prom.value("min(count_over_time(up[1m]))").await >= Some(2.0)
    })
    .await;

    // No app is up, so nobody may lead: the connection is held, then closed unserved.
    let mut held = TcpStream::connect(pods[0].listen.unwrap()).await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(TEST_TIMINGS.hold() + Duration::from_secs(5), async {
        held.read(&mut buf).await
    })
    .await
    .expect("closed at the hold timeout");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed with nothing sent: {read:?}"
    );
    assert!(start.elapsed() >= TEST_TIMINGS.hold() - Duration::from_millis(500));
    let firing = r#"ALERTS{alertname="UnderstudyTcpConnectionsDropped", alertstate="firing"}"#;
    eventually(Duration::from_secs(20), || async {
        prom.query(firing).await.is_ok_and(|r| r.len() == 1)
    })
    .await;
    let alert = &prom.query(firing).await.unwrap()[0];
    assert_eq!(alert["metric"]["election"], election.as_str(), "{alert}");
    let queries = tcp_queries(&election);
    shows(
        &prom,
        &queries,
        "understudy_tcp_closes_total",
        "reason",
        "hold_timeout",
    )
    .await;

    // The apps come up: a leader, and connections through both pods.
    for app in apps {
        echo(app).await;
    }
    let refs: Vec<&Sidecar> = pods.iter().collect();
    agreed_leader(&refs, Duration::from_secs(20)).await;
    for _ in 0..5 {
        for pod in &pods {
            round_trip(pod.listen.unwrap(), 64 * 1024).await;
        }
    }

    // Every TCP panel shows it: connections local and forwarded, closes `done`, bytes
    // both ways.
    for (metric, label, value) in [
        ("understudy_tcp_connections_total", "route", "local"),
        ("understudy_tcp_connections_total", "route", "forward"),
        ("understudy_tcp_closes_total", "reason", "done"),
        ("understudy_tcp_bytes_total", "direction", "upstream"),
        ("understudy_tcp_bytes_total", "direction", "downstream"),
    ] {
        shows(&prom, &queries, metric, label, value).await;
    }
}
