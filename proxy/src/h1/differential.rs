//! The codec against hyper's HTTP/1 server ([`check`]), and against hyper's HTTP/1 client
//! for responses ([`check_response`]): the same byte stream (pipelined requests, most
//! of them valid, some with the ambiguities smuggling feeds on, some with a byte changed) to
//! both, comparing the requests each takes whole, in order: method, target, version, header
//! lines, body and trailers.
//!
//! The codec may refuse what hyper takes only by one of its stricter rules
//! ([`stricter_than_hyper`]); it must never take what hyper refuses, and never frame a
//! request differently. hyper stops after a request that does not keep the connection
//! (`Connection: close`, HTTP/1.0 without keep-alive), and so does the comparison. The
//! engine also reads no request after a `CONNECT` or an upgrade (`Upgrade` with
//! `Connection: upgrade`, to anything but `h2c` alone, which it serves over HTTP/1.1): what
//! follows its head is the tunnel's, or the connection closes
//! (`h1::server`). The codec's view stops there too, and whatever hyper makes of the
//! bytes after it is not compared.
//!
//! The property test (`differential/tests.rs`) runs it on generated streams in the test
//! suite; the `cargo fuzz` target in `proxy/fuzz` runs it on arbitrary bytes (built with
//! the `fuzzing` feature, which makes this module public).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::headers::{self, Claims};

use super::codec::{
    Chunked, Framing, Limits, Piece, Refusal, RequestHead, ResponseFraming, parse_request,
    parse_response,
};

const LIMITS: Limits = Limits {
    max_head_bytes: 16 * 1024,
    max_headers: 32,
    max_target_bytes: 8 * 1024,
};

/// One request as a side took it whole.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    method: String,
    target: String,
    version: http::Version,
    headers: Vec<(String, Bytes)>,
    /// The routing headers, apart: the engine reads them off the head
    /// ([`RequestHead::claims`]); hyper's are read off a copy of its map as the proxy
    /// does, and left out of `headers` without reordering them.
    claims: Claims,
    body: Bytes,
    trailers: Vec<(String, Bytes)>,
}

fn lines(headers: &HeaderMap) -> Vec<(String, Bytes)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), Bytes::copy_from_slice(v.as_bytes())))
        .collect()
}

/// Whether hyper keeps the connection for another request after this head.
fn keeps_alive(head: &RequestHead) -> bool {
    let tokens = || {
        head.headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    if tokens().any(|t| t.eq_ignore_ascii_case("close")) {
        return false;
    }
    head.version == http::Version::HTTP_11 || tokens().any(|t| t.eq_ignore_ascii_case("keep-alive"))
}

/// The codec's view of a byte stream.
#[derive(Debug)]
pub struct CodecView {
    /// The requests taken whole, in order.
    pub seen: Vec<Seen>,
    /// The refusal that ended it, if any.
    pub refusal: Option<Refusal>,
    /// Whether it ended at a `CONNECT` or an upgrade, after which the engine reads no
    /// request (see the module docs).
    pub handed_over: bool,
}

/// The codec's view: the requests taken whole, as the engine's server reads them.
pub fn codec_view(bytes: &[u8]) -> CodecView {
    let mut buf = BytesMut::from(bytes);
    let mut seen = Vec::new();
    let end = |seen, refusal, handed_over| CodecView {
        seen,
        refusal,
        handed_over,
    };
    loop {
        let head = match parse_request(&mut buf, &LIMITS) {
            Ok(Some(head)) => head,
            Ok(None) => return end(seen, None, false),
            Err(r) => return end(seen, Some(r), false),
        };
        let (mut body, mut trailers) = (BytesMut::new(), Vec::new());
        match head.framing {
            Framing::Length(n) => {
                let Ok(n) = usize::try_from(n) else {
                    return end(seen, None, false);
                };
                if buf.len() < n {
                    return end(seen, None, false);
                }
                body = buf.split_to(n);
            }
            Framing::Chunked => {
                let mut chunked = Chunked::new(LIMITS);
                loop {
                    match chunked.decode(&mut buf) {
                        Ok(Some(Piece::Data(d))) => body.extend_from_slice(&d),
                        Ok(Some(Piece::End)) => break,
                        Ok(Some(Piece::Trailers(t))) => {
                            trailers = lines(&t);
                            break;
                        }
                        Ok(None) => return end(seen, None, false),
                        Err(r) => return end(seen, Some(r), false),
                    }
                }
            }
        }
        let keep = keeps_alive(&head);
        let handed_over = headers::is_upgrade(&head.method, head.version, &head.headers);
        seen.push(Seen {
            method: head.method.to_string(),
            target: head.uri.to_string(),
            version: head.version,
            headers: lines(&head.headers),
            claims: head.claims.map(|c| *c).unwrap_or_default(),
            body: body.freeze(),
            trailers,
        });
        if handed_over || !keep {
            return end(seen, None, handed_over);
        }
    }
}

/// hyper's view: the requests its server handed to the service with a complete body.
pub async fn hyper_view(bytes: Vec<u8>) -> Vec<Seen> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let record = record.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            let claims = Claims::take(&mut parts.headers.clone());
            let routing = |name: &HeaderName| Claims::routing(name.as_str().as_bytes()).is_some();
            parts.headers = parts
                .headers
                .iter()
                .filter(|(name, _)| !routing(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            if let Ok(collected) = body.collect().await {
                let trailers = collected.trailers().map(lines).unwrap_or_default();
                record.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    target: parts.uri.to_string(),
                    version: parts.version,
                    headers: lines(&parts.headers),
                    claims,
                    body: collected.to_bytes(),
                    trailers,
                });
            }
            Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .max_headers(LIMITS.max_headers)
        .max_buf_size(LIMITS.max_head_bytes)
        .serve_connection(TokioIo::new(server), service);
    let talk = async move {
        client.write_all(&bytes).await.unwrap();
        client.shutdown().await.unwrap();
        // Read the answers, so that hyper is never blocked writing them.
        let mut sink = Vec::new();
        let _ = client.read_to_end(&mut sink).await;
    };
    let both = async { tokio::join!(conn, talk) };
    // hyper's own verdict on the connection (an error for a stream it refused) is not
    // compared: the requests it handed over are.
    let (_served, ()) = tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("hyper finished with the stream");
    seen.lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// The codec's rules that refuse what hyper takes.
pub fn stricter_than_hyper(r: &Refusal) -> bool {
    if std::env::var("NOSTRICT").is_ok() {
        return false;
    }
    matches!(
        r,
        // hyper takes a bare LF as a line end;
        Refusal::BareLineEnd
        // frames by the chunked coding and drops the length;
        | Refusal::LengthAndEncoding
        // takes `chunked` applied twice;
        | Refusal::Encoding
        // takes a coding before `chunked` (and drops it);
        | Refusal::UnknownCoding
        // takes control characters in chunk extensions.
        | Refusal::Chunk("control character in a chunk extension")
    )
}

/// Runs both on `bytes` and compares (see the module docs): `Err` describes a difference.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let CodecView {
        seen: ours,
        refusal,
        handed_over,
    } = codec_view(bytes);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let theirs = runtime.block_on(hyper_view(bytes.to_vec()));
    let text = String::from_utf8_lossy(bytes);
    if theirs.len() < ours.len() {
        return Err(format!(
            "the codec took a request hyper did not: {text:?}\nours: {ours:#?}\nhyper: {theirs:#?}"
        ));
    }
    if theirs[..ours.len()] != ours[..] {
        return Err(format!(
            "the codec and hyper differ: {text:?}\nours: {ours:#?}\nhyper: {:#?}",
            &theirs[..ours.len()]
        ));
    }
    if theirs.len() > ours.len()
        && !handed_over
        && !refusal.as_ref().is_some_and(stricter_than_hyper)
    {
        return Err(format!(
            "hyper took a request the codec did not ({refusal:?}): {text:?}\nhyper: {:#?}",
            theirs[ours.len()]
        ));
    }
    Ok(())
}

/// One response as a side took it whole.
#[derive(Debug, PartialEq, Eq)]
pub struct SeenResponse {
    status: StatusCode,
    version: http::Version,
    headers: Vec<(String, Bytes)>,
    body: Bytes,
    trailers: Vec<(String, Bytes)>,
}

/// The codec's view of `bytes` as the answer to a `method` request that ends with the
/// connection: the final response (interim 1xx skipped, as hyper's client does), `None`
/// when it is not complete, or the refusal.
pub fn codec_response(bytes: &[u8], method: &Method) -> Result<Option<SeenResponse>, Refusal> {
    let mut buf = BytesMut::from(bytes);
    let head = loop {
        let Some(head) = parse_response(&mut buf, &LIMITS, method)? else {
            return Ok(None);
        };
        if !head.status.is_informational() || head.status == StatusCode::SWITCHING_PROTOCOLS {
            break head;
        }
    };
    let (mut body, mut trailers) = (BytesMut::new(), Vec::new());
    match head.framing {
        ResponseFraming::Length(n) => {
            let Ok(n) = usize::try_from(n) else {
                return Ok(None);
            };
            if buf.len() < n {
                return Ok(None);
            }
            body = buf.split_to(n);
        }
        ResponseFraming::Close => body = buf,
        ResponseFraming::Chunked => {
            let mut chunked = Chunked::new(LIMITS);
            loop {
                match chunked.decode(&mut buf)? {
                    Some(Piece::Data(d)) => body.extend_from_slice(&d),
                    Some(Piece::End) => break,
                    Some(Piece::Trailers(t)) => {
                        trailers = lines(&t);
                        break;
                    }
                    None => return Ok(None),
                }
            }
        }
    }
    Ok(Some(SeenResponse {
        status: head.status,
        version: head.version,
        headers: lines(&head.headers),
        body: body.freeze(),
        trailers,
    }))
}

/// hyper's client's view of the same: the response with its whole body, or `None` when it
/// failed.
pub async fn hyper_response(bytes: Vec<u8>, method: Method) -> Option<SeenResponse> {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let answer = async move {
        // Answer once the request is all there: hyper's client refuses bytes it did not ask
        // for.
        let mut request = Vec::new();
        let mut chunk = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match server.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = server.write_all(&bytes).await;
        let _ = server.shutdown().await;
        // Keep the server side open (and read the request) until hyper is done.
        let mut sink = Vec::new();
        let _ = server.read_to_end(&mut sink).await;
    };
    let ask = async move {
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_headers(LIMITS.max_headers)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(client))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri("/")
            .header(http::header::HOST, "test")
            .body(Empty::new())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.ok()?;
        let trailers = collected.trailers().map(lines).unwrap_or_default();
        Some(SeenResponse {
            status: parts.status,
            version: parts.version,
            headers: lines(&parts.headers),
            body: collected.to_bytes(),
            trailers,
        })
    };
    let both = async { tokio::join!(ask, answer) };
    tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .expect("hyper finished with the response")
        .0
}

/// The codec's rules for responses that refuse what hyper's client takes.
pub fn stricter_for_responses(r: &Refusal) -> bool {
    // And a `Content-Length` list of one value, which hyper's client takes (or an invalid
    // one on a response to `HEAD` or a `304`, which it does not read); `Encoding` here also
    // covers a coding without `chunked` (`gzip` alone), which it reads to the close.
    stricter_than_hyper(r) || *r == Refusal::Length
}

/// What the response target takes (its fuzz target's input, and its seeds in
/// `proxy/fuzz/seeds`): the first byte picks the request's method (GET, HEAD or POST), the
/// rest is the answer to it. `None` for no bytes.
pub fn response_input(bytes: &[u8]) -> Option<(Method, &[u8])> {
    let (&pick, response) = bytes.split_first()?;
    let method = match pick % 3 {
        0 => Method::GET,
        1 => Method::HEAD,
        _ => Method::POST,
    };
    Some((method, response))
}

/// Runs both on `bytes` as the answer to `method` and compares: `Err` describes a
/// difference.
pub fn check_response(bytes: &[u8], method: &Method) -> Result<(), String> {
    let ours = codec_response(bytes, method);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let theirs = runtime.block_on(hyper_response(bytes.to_vec(), method.clone()));
    let text = String::from_utf8_lossy(bytes);
    match (ours, theirs) {
        (Ok(Some(a)), Some(b)) if a == b => Ok(()),
        (Ok(None) | Err(_), None) => Ok(()),
        (Err(r), Some(_)) if stricter_for_responses(&r) => Ok(()),
        (ours, theirs) => Err(format!(
            "{method} answered {text:?}:\nours: {ours:#?}\nhyper: {theirs:#?}"
        )),
    }
}

#[cfg(test)]
mod tests;
