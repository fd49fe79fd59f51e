use super::*;

#[test]
fn renew_failures_follow_the_status() {
    let of = |r| RenewFailure::of(r).map(RenewFailure::as_str);
    assert_eq!(of(CallResult::Status(200)), None);
    assert_eq!(of(CallResult::Status(409)), Some("conflict"));
    assert_eq!(of(CallResult::Status(404)), Some("not_found"));
    assert_eq!(of(CallResult::Status(429)), Some("throttled"));
    assert_eq!(of(CallResult::Status(403)), Some("rejected"));
    assert_eq!(of(CallResult::Status(503)), Some("server_error"));
    assert_eq!(of(CallResult::Timeout), Some("timeout"));
    assert_eq!(of(CallResult::Transport), Some("transport"));
}
