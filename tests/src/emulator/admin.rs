//! The admin endpoint, `/emulator/v1/...`: clients, faults and stats for scripts that run the
//! `kube-emulator` binary. Exempt from faults; only the admin token may use it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::clients::ADMIN;
use super::faults::{Fault, FaultScope};
use super::server::Shared;
use super::status::{ApiError, Body, bytes_response, json_response};

/// `scope` in a fault request: `"all"`, `{"client": "name"}` or `{"source_ip": "127.0.0.2"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ScopeSpec {
    #[default]
    All,
    Client(String),
    SourceIp(IpAddr),
}

impl From<ScopeSpec> for FaultScope {
    fn from(s: ScopeSpec) -> Self {
        match s {
            ScopeSpec::All => Self::All,
            ScopeSpec::Client(c) => Self::Client(c),
            ScopeSpec::SourceIp(ip) => Self::SourceIp(ip),
        }
    }
}

/// `fault` in a fault request; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FaultSpec {
    latency_ms: Option<(u64, u64)>,
    error_rate: f64,
    error_code: Option<u16>,
    retry_after_secs: Option<u32>,
    blackhole: bool,
    verbs: Option<Vec<String>>,
}

impl From<FaultSpec> for Fault {
    fn from(s: FaultSpec) -> Self {
        let d = Fault::default();
        Fault {
            latency: s
                .latency_ms
                .map(|(a, b)| (Duration::from_millis(a), Duration::from_millis(b))),
            error_rate: s.error_rate,
            error_code: s.error_code.unwrap_or(d.error_code),
            retry_after_secs: s.retry_after_secs.unwrap_or(d.retry_after_secs),
            blackhole: s.blackhole,
            verbs: s.verbs,
        }
    }
}

/// `POST /emulator/v1/faults`: a scope and exactly one action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    #[serde(default)]
    scope: ScopeSpec,
    fault: Option<FaultSpec>,
    outage: Option<bool>,
    partition: Option<bool>,
    heal: Option<bool>,
    cut_watches: Option<bool>,
    clear: Option<bool>,
    clear_all: Option<bool>,
}

fn apply_faults(sh: &Shared, body: &[u8]) -> Result<(), ApiError> {
    let req: FaultRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("fault request: {e}")))?;
    let actions = [
        req.fault.is_some(),
        req.outage.is_some(),
        req.partition == Some(true),
        req.heal == Some(true),
        req.cut_watches == Some(true),
        req.clear == Some(true),
        req.clear_all == Some(true),
    ];
    if actions.iter().filter(|a| **a).count() != 1 {
        return Err(ApiError::bad_request(
            "fault request needs exactly one of: fault, outage, partition, heal, cut_watches, clear, clear_all",
        ));
    }
    let (f, scope) = (&sh.faults, FaultScope::from(req.scope));
    if let Some(spec) = req.fault {
        f.set(scope, spec.into());
    } else if let Some(on) = req.outage {
        f.outage(on);
    } else if req.partition == Some(true) {
        f.partition(scope);
    } else if req.heal == Some(true) {
        f.heal(scope);
    } else if req.cut_watches == Some(true) {
        f.cut_watches(scope);
    } else if req.clear == Some(true) {
        f.clear(scope);
    } else {
        f.clear_all();
    }
    Ok(())
}

/// Answer one admin request. `client` is the caller's identity, if its token is known.
pub(crate) async fn handle(
    sh: &Arc<Shared>,
    client: Option<&str>,
    req: Request<Incoming>,
) -> Response<Body> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    if method == Method::GET && path == "/emulator/v1/healthz" {
        return bytes_response(200, "text/plain; charset=utf-8", "ok");
    }
    match client {
        None => return ApiError::unauthorized().into_response(),
        Some(c) if c != ADMIN => {
            return ApiError::forbidden(format!("client {c:?} may not use the admin endpoint"))
                .into_response();
        }
        Some(_) => {}
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return ApiError::bad_request(format!("read body: {e}")).into_response(),
    };
    let answer = match (method, path.as_str()) {
        (Method::POST, "/emulator/v1/clients") => {
            #[derive(Deserialize)]
            struct NewClient {
                name: String,
            }
            serde_json::from_slice::<NewClient>(&body)
                .map_err(|e| ApiError::bad_request(format!("client request: {e}")))
                .map(|c| {
                    let token = sh.clients.add(&c.name);
                    let yaml = super::render_kubeconfig(
                        &sh.server_url,
                        sh.ca_pem.as_deref(),
                        &c.name,
                        &token,
                    );
                    bytes_response(200, "application/yaml", yaml)
                })
        }
        (Method::POST, "/emulator/v1/faults") => {
            apply_faults(sh, &body).map(|()| json_response(200, &json!({ "ok": true })))
        }
        (Method::GET, "/emulator/v1/stats") => {
            Ok(json_response(200, &sh.stats.snapshot().to_json()))
        }
        _ => Err(ApiError::path_not_found()),
    };
    answer.unwrap_or_else(ApiError::into_response)
}
