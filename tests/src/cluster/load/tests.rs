use super::*;

fn sample(started: Instant, at_ms: u64, ok: bool) -> Sample {
    Sample {
        start: started + Duration::from_millis(at_ms),
        latency: Duration::from_millis(1),
        connect_retries: 0,
        reset_retries: 0,
        outcome: if ok {
            Outcome::Answered {
                status: 200,
                pod: Some("p".into()),
            }
        } else {
            Outcome::Failed(GetError::Timeout)
        },
    }
}

#[test]
fn gap_spans_failures_and_the_edges() {
    let t0 = Instant::now();
    let report = LoadReport {
        started: t0,
        ended: t0 + Duration::from_millis(1000),
        samples: vec![
            sample(t0, 10, true),
            sample(t0, 100, false),
            sample(t0, 600, true),
            sample(t0, 900, true),
        ],
    };
    assert_eq!(report.failures().len(), 1);
    assert_eq!(report.max_gap(), Duration::from_millis(590));
    assert_eq!(report.served_by()["p"], 3);
    assert!(
        report
            .summary("x")
            .starts_with("scenario=x requests=4 failures=1 max_gap_ms=590")
    );
}
