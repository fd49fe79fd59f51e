//! The Lease watch: a field-selected watch on the one Lease, re-opened every resync period.
//!
//! Each watch is opened without a resourceVersion, so the API server starts it with a synthetic
//! ADDED event for the current Lease: re-opening *is* the periodic re-read, and a follower makes
//! one request per resync period in steady state.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{WatchEvent, WatchParams};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::Config;
use crate::observe::{ApiCall, CallResult, Observer, Verb, WatchOpened};

/// What the watch tells the driver.
pub(crate) enum WatchMsg {
    /// The Lease as of an ADDED or MODIFIED event.
    Present(Box<Lease>),
    /// The Lease was deleted.
    Absent,
}

/// How far one watch got, so that a cut can be told apart from a call that never answered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Opening,
    Streaming,
}

/// Runs until the receiver is dropped, telling `observer` of every (re)opening and why.
pub(crate) async fn run(
    api: Api<Lease>,
    name: String,
    config: Config,
    tx: mpsc::Sender<WatchMsg>,
    observer: Arc<dyn Observer>,
) {
    let resync = config.resync_period.as_secs().clamp(1, 290) as u32;
    // The server ends the watch after `timeoutSeconds`; a silent stream (blackholed
    // connection) is cut by us shortly after that.
    let deadline = Duration::from_secs(resync as u64) + config.call_timeout();
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(resync);
    let mut why = WatchOpened::Start;
    loop {
        observer.watch_opened(&name, why);
        let opened = Instant::now();
        let mut stage = Stage::Opening;
        let open_timeout = config.call_timeout();
        let watch = follow(
            &api,
            &params,
            open_timeout,
            &tx,
            &*observer,
            &name,
            &mut stage,
        );
        let result = tokio::time::timeout(deadline, watch).await;
        if tx.is_closed() {
            return;
        }
        why = match result {
            Ok(Ok(())) => WatchOpened::Resync,
            Ok(Err(error)) => {
                // A refusal (403, 404 on the resource) is the operator's to fix: say it.
                // Connection errors during an API server restart are routine.
                match &error {
                    kube::Error::Api(_) => {
                        tracing::warn!(lease = %name, error = %crate::driver::describe(&error), "lease watch refused")
                    }
                    _ => {
                        tracing::debug!(lease = %name, error = %crate::driver::describe(&error), "lease watch ended with an error")
                    }
                }
                // Back off so that an API outage is not hammered, but never more than
                // retryPeriod after the watch was opened.
                tokio::time::sleep_until(opened + config.retry_period).await;
                WatchOpened::Error
            }
            Err(_) if stage == Stage::Opening => {
                let call = ApiCall {
                    verb: Verb::Watch,
                    result: CallResult::Timeout,
                    latency: opened.elapsed(),
                };
                observer.api_call(&name, &call);
                tracing::debug!(lease = %name, "lease watch did not open in time; re-opening");
                WatchOpened::Error
            }
            Err(_) => {
                tracing::debug!(lease = %name, "lease watch silent past its deadline; re-opening");
                WatchOpened::Stalled
            }
        };
    }
}

async fn follow(
    api: &Api<Lease>,
    params: &WatchParams,
    open_timeout: Duration,
    tx: &mpsc::Sender<WatchMsg>,
    observer: &dyn Observer,
    name: &str,
    stage: &mut Stage,
) -> Result<(), kube::Error> {
    let sent = Instant::now();
    // Opening the watch is an API call like any other: bounded by the call timeout (shorter
    // than renewDeadline). The stream itself is bounded by the caller's deadline.
    let Ok(opened) = tokio::time::timeout(open_timeout, api.watch(params, "")).await else {
        let call = ApiCall {
            verb: Verb::Watch,
            result: CallResult::Timeout,
            latency: sent.elapsed(),
        };
        observer.api_call(name, &call);
        return Err(kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "lease watch did not open within the call timeout",
        ))));
    };
    let call = ApiCall {
        verb: Verb::Watch,
        result: CallResult::of(&opened, 200),
        latency: sent.elapsed(),
    };
    observer.api_call(name, &call);
    let stream = opened?;
    *stage = Stage::Streaming;
    futures::pin_mut!(stream);
    while let Some(event) = stream.try_next().await? {
        let msg = match event {
            WatchEvent::Added(lease) | WatchEvent::Modified(lease) => {
                WatchMsg::Present(Box::new(lease))
            }
            WatchEvent::Deleted(_) => WatchMsg::Absent,
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(status) => return Err(kube::Error::Api(status)),
        };
        if tx.send(msg).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}
