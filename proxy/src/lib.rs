//! The understudy sidecar: Lease election plus an election-aware reverse proxy.
//!
//! Every pod runs one `understudy` next to its app. All of them take part in one Lease
//! election ([`understudy_elector`]); all of them accept traffic. The leader hands requests
//! to its local app, standbys forward them to the leader's advertised address, and while
//! there is no leader requests are held (bodies unread) until one appears. So a plain
//! ClusterIP Service that picks any pod always reaches the active one.
//!
//! The pieces, in the order a request meets them:
//! - [`conn`]: accepts connections: the bound on them, activity, the peer port's TLS;
//! - [`server`]: serves HTTP/1 (understudy's own engine, [`h1`]: every framing ambiguity
//!   refused before it is a request) and h2c (hyper) on them, with timeouts and limits;
//! - [`edge`]: the failsafe's messages answered, everything else to the [`proxy`];
//! - [`limits`]: the bounds on connections, requests, held requests and replay buffers;
//!   [`body`]: the body wrappers that cut a body or keep a value alive with it;
//! - [`headers`]: internal headers (and who may set them), hop-by-hop, `X-Forwarded-*`;
//! - [`route`]: local, forward, hold or refuse, from the latest
//!   [`understudy_elector::View`]; [`balance`]: which active, with N slots;
//! - [`hold`]: the bounded wait for a leader; [`retry`]: when an attempt may go again;
//! - [`forward`]: the pooled clients (the engine's for HTTP/1.1, [`h1::client`]);
//!   [`upgrade`]: WebSocket/`CONNECT` tunnels;
//!   [`dial`]: the one way connections to the app and to peers are opened;
//! - [`peer_tls`]: the optional mTLS channel between sidecars (`--peer-listen`);
//! - [`failsafe`]: the failsafe's requests to members and the endpoint answering theirs;
//! - [`tenure`]: closing tunnels and streams when the leadership they ran under ends;
//! - [`health`]: the app's health check, which gates leadership (`--upstream-health`);
//! - [`announce`]: pod role labels and Events (`--label-pods`, `--events`);
//! - [`admin`], [`metrics`]: the `--http` server; [`shutdown`]: SIGTERM handover and drain;
//! - [`cli`], [`settings`]: the command line; [`sidecar`]: all of it wired together.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod announce;
pub mod balance;
pub mod body;
pub mod cli;
pub mod conn;
pub mod dial;
pub mod edge;
pub mod failsafe;
pub mod forward;
pub mod h1;
pub mod headers;
pub mod health;
pub mod hold;
pub mod limits;
pub mod metrics;
pub mod peer_tls;
pub mod proxy;
pub mod retry;
pub mod route;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod sidecar;
pub mod tcp;
pub mod tenure;
pub mod tls_or_plain;
pub mod upgrade;

/// The error type of bodies passed through the proxy.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the sidecar sends.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;

#[cfg(test)]
mod testing;

/// The monotonic time to compare with a [`understudy_elector::View`]'s deadlines: tokio's
/// clock (as the elector's driver uses), so that tests with paused time stay consistent.
pub fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The innermost cause of `err`, as the operating system or the TLS layer gave it
/// ("Connection refused (os error 111)"), which the outer messages of hyper's clients
/// ("client error (Connect)") hide.
pub fn innermost_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut err = err;
    while let Some(next) = err.source() {
        err = next;
    }
    err.to_string()
}
