//! The failsafe's peer channel ([`understudy_elector::failsafe`]): this sidecar's requests to
//! members, over plain HTTP/1 to their proxy address or over mTLS to their peer address, and
//! the endpoint that answers theirs.
//!
//! A reply is attributed to the member whose address this sidecar connected to (and, with
//! mTLS, whose certificate the peer CA signed); the elector counts nothing else. With the
//! failsafe on, requests to [`PEER_PATH`] are answered here and never proxied to the app
//! (with `--failsafe off` the path is an ordinary one); with mTLS on, they are taken on the
//! peer port only (the data port answers 403).

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use understudy_elector::failsafe::{PEER_PATH, PeerReply, PeerRequest};
use understudy_elector::{AnswerError, Answerer, Member, PeerChannel};

use crate::dial::{Dialer, Reach};
use crate::peer_tls::Alpn;
use crate::proxy::text;
use crate::{BoxError, ProxyBody};

/// The largest failsafe message read, request or reply.
const MAX_MESSAGE: usize = 16 * 1024;

/// Sends failsafe requests to members: to their proxy address in plain HTTP/1, or to their
/// peer address over mTLS when the dialer has the peer channel.
#[derive(Clone)]
pub struct HttpPeerChannel {
    dialer: Dialer,
    reach: Reach,
}

impl HttpPeerChannel {
    /// A channel dialing with `dialer`: over mTLS when it has the peer channel, plain HTTP
    /// otherwise.
    pub fn new(dialer: Dialer) -> HttpPeerChannel {
        let reach = if dialer.has_peer_tls() {
            Reach::Mtls
        } else {
            Reach::Plain
        };
        HttpPeerChannel { dialer, reach }
    }
}

impl PeerChannel for HttpPeerChannel {
    fn send(
        &self,
        member: &Member,
        request: PeerRequest,
    ) -> Pin<Box<dyn Future<Output = Option<PeerReply>> + Send>> {
        let address = match self.reach {
            Reach::Mtls => member.peer_address.clone(),
            Reach::Plain => member.address.clone(),
        };
        let (dialer, reach) = (self.dialer.clone(), self.reach);
        Box::pin(async move {
            let address = address?;
            let stream = dialer.dial_peer(&address, reach, Alpn::Http1).await.ok()?;
            let body = Full::new(Bytes::from(request.to_json()));
            let req = Request::post(PEER_PATH)
                .header(header::HOST, &address)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body)
                .ok()?;
            let response = exchange(TokioIo::new(stream), req).await?;
            if response.status() != StatusCode::OK {
                return None;
            }
            let body = Limited::new(response.into_body(), MAX_MESSAGE)
                .collect()
                .await
                .ok()?
                .to_bytes();
            PeerReply::from_json(&body).ok()
        })
    }
}

/// One request on a fresh HTTP/1 connection.
async fn exchange<I>(io: I, req: Request<Full<Bytes>>) -> Option<Response<hyper::body::Incoming>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
    tokio::spawn(conn);
    sender.send_request(req).await.ok()
}

/// Whether `req` is for the failsafe endpoint.
pub(crate) fn is_failsafe<B>(req: &Request<B>) -> bool {
    req.uri().path() == PEER_PATH
}

/// Answers one request to the failsafe endpoint: 405 unless POST, 413 when too large, 400
/// naming what is wrong with the message, 404 for a Lease this pod does not contend for, 503
/// while shutting down, else 200 with the elector's answer.
pub(crate) async fn respond<B>(answerer: &Answerer, req: Request<B>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if req.method() != Method::POST {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("understudy: {PEER_PATH} takes POST only"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let body = match Limited::new(req.into_body(), MAX_MESSAGE).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("understudy: failsafe messages are at most {MAX_MESSAGE} bytes"),
            );
        }
    };
    let request = match PeerRequest::from_json(&body) {
        Ok(request) => request,
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("understudy: {e}")),
    };
    match answerer.answer(request).await {
        Ok(reply) => {
            let mut response = Response::new(
                Full::new(Bytes::from(reply.to_json()))
                    .map_err(BoxError::from)
                    .boxed_unsync(),
            );
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e @ AnswerError::UnknownLease(_)) => {
            text(StatusCode::NOT_FOUND, &format!("understudy: {e}"))
        }
        Err(e @ AnswerError::Ended(_)) => {
            text(StatusCode::SERVICE_UNAVAILABLE, &format!("understudy: {e}"))
        }
    }
}

#[cfg(test)]
mod tests;
