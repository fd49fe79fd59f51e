//! understudy's own HTTP/1 engine, built the way Pingora builds its: `httparse` for the
//! heads, and one place that decides how each message is framed.
//!
//! [`codec`] is the sans-IO part: it turns the bytes a client sent into request heads and
//! body pieces, or refuses them with the status to answer (400, 414 or 431) before anything
//! is forwarded, and frames the responses of the app and of peers (a response it refuses is
//! a 502). Every ambiguity a request could be smuggled through is a refusal there
//! (see [`codec::Refusal`]). A property test feeds the same byte streams to the codec and to
//! hyper's HTTP/1 server, and responses to it and to hyper's client, and compares what each
//! makes of them (`differential`, public with the `fuzzing` feature); `proxy/fuzz` has the
//! same comparisons as `cargo fuzz` targets for longer runs.
//!
//! [`server`] serves HTTP/1 on the data and peer ports (and the admin port) with it;
//! [`client`] sends HTTP/1.1 requests to the app and to peer sidecars. Both write their
//! messages' bodies the same way (`out`). The header maps of heads read and written are
//! kept for the next heads (`spare`).

pub mod client;
pub mod codec;
mod out;
pub(crate) mod read;
pub mod server;
pub(crate) mod spare;

#[cfg(any(test, feature = "fuzzing"))]
pub mod differential;
