//! Waiting for another process to get somewhere: poll a check until it holds, bounded in
//! time, with an error that says what was awaited. For what only shows from outside (an
//! API object, a listening port, a component's health endpoint); events the harness gets
//! itself are awaited directly.

use std::future::Future;
use std::time::{Duration, Instant};

use super::HarnessError;

/// Runs `check` every `every` until it returns `Some`, at most `within`; an error from
/// `check` ends the wait at once. On timeout the error names `what()` (called then, so it
/// can say how things stood).
pub async fn poll<T, F, Fut>(
    what: impl FnOnce() -> String,
    within: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, HarnessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, HarnessError>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(HarnessError::timeout(what(), within));
        }
        tokio::time::sleep(every).await;
    }
}
