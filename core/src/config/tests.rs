use super::*;

#[test]
fn parses_durations() {
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
}

#[test]
fn rejects_bad_durations_naming_the_input() {
    for bad in ["10", "s", "ten s", "10x", "-1s", "", "1.2.3s"] {
        let e = parse_duration(bad).unwrap_err().to_string();
        assert!(e.contains(&format!("{bad:?}")), "{e}");
    }
}

#[test]
fn default_is_10_6_2_and_valid() {
    let c = Config::default().validated().unwrap();
    assert_eq!(c.lease_duration, Duration::from_secs(10));
    assert_eq!(c.renew_deadline, Duration::from_secs(6));
    assert_eq!(c.retry_period, Duration::from_secs(2));
    assert!(c.call_timeout() < c.renew_deadline);
}

#[test]
fn ttl_means_lease_half_quarter() {
    let c = Config::from_ttl(Duration::from_secs(8)).unwrap();
    assert_eq!(c.lease_duration, Duration::from_secs(8));
    assert_eq!(c.renew_deadline, Duration::from_secs(4));
    assert_eq!(c.retry_period, Duration::from_secs(2));
}

#[test]
fn rejects_timings_that_allow_two_leaders() {
    let base = Config::default();
    let lease_not_longer = Config {
        lease_duration: Duration::from_secs(6),
        ..base
    };
    let e = lease_not_longer.validated().unwrap_err().to_string();
    assert!(e.contains("leaseDuration must exceed renewDeadline"), "{e}");

    let retry_too_long = Config {
        retry_period: Duration::from_secs(5),
        ..base
    };
    let e = retry_too_long.validated().unwrap_err().to_string();
    assert!(e.contains("1.2 × retryPeriod"), "{e}");

    // Exactly 1.2 × is still rejected: the inequality is strict.
    let exactly = Config {
        renew_deadline: Duration::from_millis(2400),
        ..base
    };
    assert!(exactly.validated().is_err());
}

#[test]
fn rejects_fractional_lease_seconds() {
    let c = Config {
        lease_duration: Duration::from_millis(10_500),
        ..Config::default()
    };
    assert!(
        c.validated()
            .unwrap_err()
            .to_string()
            .contains("whole number of seconds")
    );
}
