use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn settings() -> HealthSettings {
    HealthSettings {
        probe: Probe::Tcp,
        interval: Duration::from_secs(1),
        failures: 3,
        successes: 2,
        hold_down: Duration::from_secs(10),
    }
}

#[test]
fn parses_tcp_or_a_path() {
    assert_eq!(Probe::parse("tcp"), Some(Probe::Tcp));
    assert_eq!(
        Probe::parse("/healthz"),
        Some(Probe::Http("/healthz".into()))
    );
    assert_eq!(Probe::parse("healthz"), None);
    assert_eq!(Probe::parse("/a b"), None);
}

#[test]
fn thresholds_and_hold_down_damp_flapping() {
    let mut d = Damper::new(&settings());
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Starts unhealthy; healthy after two passes in a row.
    assert_eq!(d.record(true, at(0)), None);
    assert_eq!(d.record(true, at(1)), Some(true));
    // Two failures, a pass: the streak starts over.
    assert_eq!(d.record(false, at(2)), None);
    assert_eq!(d.record(false, at(3)), None);
    assert_eq!(d.record(true, at(4)), None);
    assert_eq!(d.record(false, at(5)), None);
    assert_eq!(d.record(false, at(6)), None);
    assert_eq!(d.record(false, at(7)), Some(false));
    // Passing again at once does not count until the hold-down is over.
    assert_eq!(d.record(true, at(8)), None);
    assert_eq!(d.record(true, at(9)), None);
    assert_eq!(d.record(true, at(16)), None);
    assert_eq!(d.record(true, at(17)), Some(true));
    assert!(d.healthy());
}

#[tokio::test]
async fn probes_http_status_and_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let status = if req.starts_with("GET /ok ") {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let _ = s
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                .await;
        }
    });
    let dialer = Dialer::new(Duration::from_secs(1), None);
    assert!(
        probe(&dialer, &Probe::Http("/ok".into()), &addr)
            .await
            .is_ok()
    );
    assert!(
        probe(&dialer, &Probe::Http("/bad".into()), &addr)
            .await
            .is_err()
    );
    assert!(probe(&dialer, &Probe::Tcp, &addr).await.is_ok());
    assert!(probe(&dialer, &Probe::Tcp, "127.0.0.1:1").await.is_err());
}
