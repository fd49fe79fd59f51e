//! The Lease watch: a field-selected watch on the one Lease, re-opened every resync period.
//!
//! Each watch is opened without a resourceVersion, so the API server starts it with a synthetic
//! ADDED event for the current Lease: re-opening *is* the periodic re-read, and a follower makes
//! one request per resync period in steady state.

use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{WatchEvent, WatchParams};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::Config;

/// What the watch tells the driver.
pub(crate) enum WatchMsg {
    /// The Lease as of an ADDED or MODIFIED event.
    Present(Box<Lease>),
    /// The Lease was deleted.
    Absent,
}

/// Runs until the receiver is dropped.
pub(crate) async fn run(api: Api<Lease>, name: String, config: Config, tx: mpsc::Sender<WatchMsg>) {
    let resync = config.resync_period.as_secs().clamp(1, 290) as u32;
    // The server ends the watch after `timeoutSeconds`; a silent stream (blackholed
    // connection) is cut by us shortly after that.
    let deadline = Duration::from_secs(resync as u64) + config.call_timeout();
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(resync);
    loop {
        let opened = Instant::now();
        let result = tokio::time::timeout(deadline, follow(&api, &params, &tx)).await;
        if tx.is_closed() {
            return;
        }
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(lease = %name, %error, "lease watch ended with an error");
                // Back off so that an API outage is not hammered, but never more than
                // retryPeriod after the watch was opened.
                tokio::time::sleep_until(opened + config.retry_period).await;
            }
            Err(_) => {
                tracing::debug!(lease = %name, "lease watch silent past its deadline; re-opening")
            }
        }
    }
}

async fn follow(
    api: &Api<Lease>,
    params: &WatchParams,
    tx: &mpsc::Sender<WatchMsg>,
) -> Result<(), kube::Error> {
    let stream = api.watch(params, "").await?;
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
