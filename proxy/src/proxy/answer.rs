//! The answers the sidecar gives itself: 503 (no leader in time), 502 (sent, then failed),
//! 421 (misdirected).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::h1::server::BodyError;
use crate::headers;
use crate::hold::HoldError;
use crate::limits::BodyTimeout;
use crate::metrics::Answer;
use crate::retry::ReplayBody;
use crate::route::{Kind, Misdirected};
use crate::{BoxError, ProxyBody};

/// What happened to one request, for the access log and metrics.
pub(crate) struct Outcome {
    pub(crate) route: Kind,
    pub(crate) peer: Option<Arc<str>>,
    pub(crate) response: Response<ProxyBody>,
}

pub(crate) fn text(status: StatusCode, msg: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(format!("{msg}\n")))
            .map_err(BoxError::from)
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The body of an answer of the sidecar's own, marked for [`crate::metrics`] with why.
fn own(answer: Answer, msg: &str) -> Response<ProxyBody> {
    let mut response = text(answer.status(), msg);
    response.extensions_mut().insert(answer);
    response
}

pub(crate) fn held(e: HoldError) -> Outcome {
    let answer = match e {
        HoldError::Full { .. } => Answer::HoldFull,
        HoldError::Timeout { .. } => Answer::HoldTimeout,
    };
    retry_later(Kind::Hold, answer, &e.to_string())
}

/// 414, and the connection closed: like the parser's own 400/431, a client that sends
/// such a request gets no second one on the same connection.
pub(crate) fn uri_too_long() -> Outcome {
    let why = format!(
        "understudy: request target longer than {} bytes",
        crate::limits::MAX_URI_BYTES
    );
    refused_and_closed(StatusCode::URI_TOO_LONG, &why)
}

/// 400 for a request whose `Host` is missing (HTTP/1.1) or given twice (RFC 9112 section
/// 3.2: which host it is for cannot be told), and the connection closed, as for
/// [`uri_too_long`].
pub(crate) fn bad_host(why: &str) -> Outcome {
    refused_and_closed(StatusCode::BAD_REQUEST, &format!("understudy: {why}"))
}

/// The answer to a request whose attempt failed through the client's own fault, if it did:
/// its body broke the chunked coding (the status the engine gives a head that does, 400)
/// or came too slowly (`--body-timeout`: 408), over either protocol. Such a request is no
/// one else's failure to answer 502 for, nor one to send again.
pub(crate) fn clients_fault(body: &ReplayBody) -> Option<Outcome> {
    let failure = body.failure()?;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&*failure);
    while let Some(err) = next {
        let status = match err.downcast_ref::<BodyError>() {
            Some(BodyError::Malformed(refusal)) => Some(refusal.status()),
            _ => err
                .is::<BodyTimeout>()
                .then_some(StatusCode::REQUEST_TIMEOUT),
        };
        if let Some(status) = status {
            return Some(refused_and_closed(status, &format!("understudy: {err}")));
        }
        next = err.source();
    }
    None
}

/// `status` saying `why`, with `Connection: close`.
fn refused_and_closed(status: StatusCode, why: &str) -> Outcome {
    let mut response = text(status, why);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Outcome {
        route: Kind::Reject,
        peer: None,
        response,
    }
}

pub(crate) fn over_request_limit(max: usize) -> Outcome {
    retry_later(
        Kind::Reject,
        Answer::RequestLimit,
        &format!("too many requests in progress (limit {max})"),
    )
}

/// The hold deadline passed while the last attempt could not even connect to what `what`
/// names ([`super::Target::unreachable`]): the 503 says where it failed and why, instead of
/// blaming a missing leader. A leader whose own app is down reads "this pod leads, but its
/// app at 127.0.0.1:80 …".
pub(crate) fn unreachable(held: Outcome, route: Kind, what: &str, why: &str) -> Outcome {
    if held.response.extensions().get::<Answer>() != Some(&Answer::HoldTimeout) {
        return held;
    }
    retry_later(
        route,
        Answer::Unavailable,
        &format!("{what} until the hold deadline: {why}"),
    )
}

pub(crate) fn unavailable(route: Kind, why: &str) -> Outcome {
    retry_later(route, Answer::Unavailable, why)
}

/// 503 with `Retry-After`.
fn retry_later(route: Kind, answer: Answer, why: &str) -> Outcome {
    let mut response = own(answer, &format!("understudy: {why}"));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Outcome {
        route,
        peer: None,
        response,
    }
}

/// 502: sent to `peer`, then failed.
pub(crate) fn bad_gateway(route: Kind, peer: Arc<str>, why: &str) -> Outcome {
    Outcome {
        route,
        peer: Some(peer),
        response: own(Answer::BadGateway, &format!("understudy: {why}")),
    }
}

pub(crate) fn misdirected(me: &str, why: &Misdirected) -> Outcome {
    let answer = match why {
        Misdirected::NotFor { .. } => Answer::Misdirected,
        Misdirected::TooManyHops => Answer::HopLimit,
    };
    let mut response = own(answer, &format!("understudy {me}: {why}"));
    response
        .headers_mut()
        .insert(headers::REFUSED, headers::value(me));
    Outcome {
        route: Kind::Reject,
        peer: None,
        response,
    }
}
