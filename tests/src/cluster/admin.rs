//! Asking sidecars about the election through their admin servers (`/status`), as an
//! operator would with `curl`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::HarnessError;
use super::http;

/// `GET /status` of the sidecar whose admin server is `addr`, as JSON.
pub async fn status(addr: SocketAddr) -> Option<Value> {
    let client = http::client(false, Duration::from_secs(1));
    let (code, body) = http::get(&client, addr, "/status", false, Duration::from_secs(2))
        .await
        .ok()?;
    if !code.is_success() {
        return None;
    }
    serde_json::from_str(&body).ok()
}

/// The role a sidecar reports (`leader`, `follower`, `candidate`), or `down`.
pub async fn role(addr: SocketAddr) -> String {
    status(addr)
        .await
        .and_then(|s| s["role"].as_str().map(String::from))
        .unwrap_or_else(|| "down".into())
}

/// Waits until the sidecars agree on an acting leader: exactly one of them acts as leader
/// and every answering one names it. `not`: a leader other than this one. `pods` is asked
/// again on every round (pods come and go).
pub async fn wait_leader(
    pods: impl Fn() -> Vec<(String, SocketAddr)>,
    not: Option<&str>,
    within: Duration,
) -> Result<String, HarnessError> {
    let deadline = Instant::now() + within;
    loop {
        let mut acting = Vec::new();
        let mut named = Vec::new();
        for (name, addr) in pods() {
            if let Some(s) = status(addr).await {
                if s["acting"].as_bool() == Some(true) {
                    acting.push(name);
                }
                named.push(s["leader"].as_str().unwrap_or_default().to_string());
            }
        }
        if let [leader] = acting.as_slice()
            && Some(leader.as_str()) != not
            && named.iter().all(|n| n == leader)
        {
            return Ok(leader.clone());
        }
        if Instant::now() > deadline {
            return Err(HarnessError::timeout(
                format!("an agreed leader (acting {acting:?}, named {named:?})"),
                within,
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The holders of every slot a sidecar lists on `/actives` (sorted), or `None` when it does
/// not answer.
pub async fn actives(addr: SocketAddr) -> Option<Vec<String>> {
    let client = http::client(false, Duration::from_secs(1));
    let (code, body) = http::get(&client, addr, "/actives", false, Duration::from_secs(2))
        .await
        .ok()?;
    if !code.is_success() {
        return None;
    }
    let list: Value = serde_json::from_str(&body).ok()?;
    let mut names: Vec<String> = list
        .as_array()?
        .iter()
        .filter_map(|a| a["name"].as_str().map(String::from))
        .collect();
    names.sort();
    Some(names)
}

/// Waits until every answering sidecar lists the same `n` actives on `/actives`, none of
/// them in `not`, and returns them (sorted). `pods` is asked again on every round.
pub async fn wait_actives(
    pods: impl Fn() -> Vec<(String, SocketAddr)>,
    n: usize,
    not: &[&str],
    within: Duration,
) -> Result<Vec<String>, HarnessError> {
    let deadline = Instant::now() + within;
    loop {
        let mut lists = Vec::new();
        for (_, addr) in pods() {
            if let Some(list) = actives(addr).await {
                lists.push(list);
            }
        }
        if let Some(first) = lists.first()
            && first.len() == n
            && !first.iter().any(|a| not.contains(&a.as_str()))
            && lists.iter().all(|l| l == first)
        {
            return Ok(first.clone());
        }
        if Instant::now() > deadline {
            return Err(HarnessError::timeout(
                format!("{n} agreed actives, none of {not:?} (lists: {lists:?})"),
                within,
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
