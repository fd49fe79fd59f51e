//! The engine's client: HTTP/1.1 requests to the local app and to peer sidecars, sent and
//! read by the task that serves the request, with no connection task or dispatch channel in
//! between (hyper-util's pooled client has both).
//!
//! - A request's head goes out in one write; its body follows with `Content-Length` when its
//!   length is known, else chunked (with its trailers). The body is sent while the response
//!   is read: an app may answer before it has read all of it, or answer each piece as it
//!   comes (full duplex), and the response body keeps sending what is left.
//! - The response head is framed by [`codec::parse_response`]; informational responses (100,
//!   102, 103) are skipped, as hyper's client skips them; a 101 to a request that asked for
//!   no upgrade is an error. Its body is read as the caller polls it ([`ResponseBody`]),
//!   and a read buffer grows only as a message needs.
//! - A connection goes back to the pool only when both messages ended cleanly, nothing
//!   stray follows, and neither side asked to close. One taken from the pool is first
//!   checked for a close (or bytes) that came while it was idle. Should its first write fail
//!   all the same (a reset that came just after the check; a close only fails the read), the
//!   request, of which nothing left, is written whole to a new one: over plain TCP only,
//!   where a failed write wrote nothing (a TLS write may be several, the first of which may
//!   have gone). Idle ones are closed after the idle timeout.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use fnv::FnvHashMap;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use prometheus::IntCounter;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

use super::codec::{self, Chunked, Limits, Piece, Present, Refusal, ResponseFraming};
use super::out::{COALESCE, Framing, Outgoing, Trailers, WriteError, header_line, length_line};
use super::read;
use crate::BoxError;
use crate::dial::{Conn, DialError, Dialer, Reach};
use crate::peer_tls::Alpn;
use crate::retry::ReplayBody;

/// Bounds on a response head from the app or a peer: hyper's client defaults (100 headers,
/// about 400 KiB), so that nothing that passed before is refused now.
const RESPONSE_LIMITS: Limits = Limits {
    max_head_bytes: 8192 + 4096 * 100,
    max_headers: 100,
    max_target_bytes: 0,
};

/// Read buffer room for a head, and for body bytes.
const HEAD_READ: usize = 4 * 1024;
const BODY_READ: usize = 16 * 1024;

/// How long an upload may go on after its response has ended (an app that answered early,
/// a `413` say, and may still be reading): nginx's `lingering_time`. Then it stops, with the
/// app's connection and, as the client's body is dropped, the client's.
#[cfg(not(test))]
const UPLOAD_AFTER_RESPONSE: Duration = Duration::from_secs(30);
#[cfg(test)]
const UPLOAD_AFTER_RESPONSE: Duration = Duration::from_millis(300);

/// Why an exchange failed. Only [`ClientError::Dial`] proves that nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be opened.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// Writing the request failed (and no response came).
    #[error("writing the request: {0}")]
    Write(#[source] io::Error),
    /// Reading the response failed.
    #[error("reading the response: {0}")]
    Read(#[source] io::Error),
    /// The connection closed before the response head was complete.
    #[error("connection closed before a response")]
    Closed,
    /// The response head (or a chunked body) is not valid HTTP/1.
    #[error("invalid response: {0}")]
    Response(#[source] Refusal),
    /// A `101 Switching Protocols` to a request that asked for no upgrade.
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    Switched,
    /// Reading the request body failed.
    #[error("request body: {0}")]
    Body(#[source] BoxError),
    /// The request body was longer or shorter than the length its head announced.
    #[error("request body does not match its Content-Length")]
    BodyLength,
}

impl From<WriteError> for ClientError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Io(e) => ClientError::Write(e),
            WriteError::Body(e) => ClientError::Body(e),
            WriteError::Length => ClientError::BodyLength,
        }
    }
}

/// The HTTP/1.1 client; cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    dialer: Dialer,
    pool: Arc<Pool>,
    /// Counts requests sent whole on a new connection after a pooled one failed their first
    /// write ([`Client::counting_redials`]).
    redials: Option<IntCounter>,
    /// Tests only: done to each connection dialed to send a request anew, before it is
    /// written to (a connection whose first write fails, every time, needs this: a peer's
    /// reset races the write).
    #[cfg(test)]
    redialed: Option<fn(&mut Conn)>,
}

/// Where pooled connections go: the address (shared, not copied per request) and how it is
/// reached.
type Key = (Arc<str>, Reach);

/// Idle connections by address, one map for each way of reaching one; in each list the
/// oldest first (closed first when the list is full), the newest last (taken first).
///
/// (FNV, not SipHash: the addresses are this sidecar's app and its peers' advertised ones,
/// not a client's choosing, so there is no flooding to resist.)
type Idles = [FnvHashMap<Arc<str>, VecDeque<Idle>>; 2];

#[derive(Debug)]
struct Pool {
    idle: Mutex<Idles>,
    idle_timeout: Duration,
    /// Idle connections kept per address, at most.
    max_idle: usize,
    /// Whether the task that closes expired idle connections runs.
    reaping: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    /// Its read buffer, empty, kept for the next response (no allocation per request).
    read: BytesMut,
    since: Instant,
}

/// The request head an exchange sends, borrowed: the proxy keeps one head across the
/// attempts of a request, and each is written from it without a copy.
#[derive(Clone, Copy, Debug)]
pub struct Head<'a> {
    /// The method.
    pub method: &'a Method,
    /// The target: its path and query are sent (its authority, for `CONNECT`).
    pub uri: &'a http::Uri,
    /// The headers, sent as they are but for `Content-Length` and `Transfer-Encoding`,
    /// which the body's framing replaces.
    pub headers: &'a HeaderMap,
    /// Sent after `headers`: names `headers` does not carry (an attempt's own, written
    /// from where they are kept rather than inserted into the map, which hashes each).
    pub extra: &'a [(HeaderName, HeaderValue)],
}

impl<'a> From<&'a http::request::Parts> for Head<'a> {
    fn from(parts: &'a http::request::Parts) -> Self {
        Head {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            extra: &[],
        }
    }
}

impl Client {
    /// A client dialing with `dialer`, keeping at most `max_idle` idle connections per
    /// address and closing those idle for `idle_timeout`.
    pub fn new(dialer: Dialer, idle_timeout: Duration, max_idle: usize) -> Client {
        Client {
            dialer,
            pool: Arc::new(Pool {
                idle: Mutex::new(Default::default()),
                idle_timeout,
                max_idle,
                reaping: std::sync::atomic::AtomicBool::new(false),
            }),
            redials: None,
            #[cfg(test)]
            redialed: None,
        }
    }

    /// This client, counting in `counter` each request it sends anew because a pooled
    /// connection failed its first write (nothing of the request had left).
    pub fn counting_redials(self, counter: IntCounter) -> Client {
        Client {
            redials: Some(counter),
            ..self
        }
    }

    /// Sends `req` to `address` (`host:port`, reached as `reach`) and reads the response
    /// head; the body is read as it is polled. The request's URI is sent in origin form.
    pub async fn send(
        &self,
        address: &str,
        reach: Reach,
        req: Request<ReplayBody>,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let (parts, body) = req.into_parts();
        self.send_head(Cow::Borrowed(address), reach, Head::from(&parts), body)
            .await
    }

    /// Sends the request `head` with `body` to `address`, as [`Client::send`] does.
    ///
    /// The head is written out before this returns, so the future borrows neither it nor
    /// what it borrows: the proxy keeps a request's head across its attempts, but not an
    /// attempt's own headers, which would otherwise take room in every request's future
    /// while it waits for the answer.
    pub fn send_head<'a>(
        &'a self,
        address: Cow<'a, str>,
        reach: Reach,
        head: Head<'_>,
        body: ReplayBody,
    ) -> impl Future<Output = Result<Response<ResponseBody>, ClientError>> + Send + use<'a> {
        let method = head.method.clone();
        let mut out = super::spare::buffer(head_size(head, &body, &address));
        let framing = encode_head(head, &body, &address, &mut out);
        async move {
            let address = &*address;
            let method = &method;
            let (key, pooled) = self.pool.take(address, reach);
            let (conn, read, mut fresh) = match pooled {
                Some((conn, read)) => (conn, read, false),
                None => {
                    // (Boxed: most requests find a pooled connection, and every connection's
                    // task would otherwise carry the dial's room.)
                    let conn = Box::pin(self.dialer.dial(address, reach, Alpn::Http1)).await?;
                    (conn, BytesMut::new(), true)
                }
            };
            let bodied = matches!(framing, Framing::Chunked)
                || matches!(framing, Framing::Length(n) if n > 0);
            let mut exchange = Exchange {
                conn,
                read,
                out: Some(Outgoing::new(out, body, framing, Trailers::All)),
                write_failed: None,
                reused: !fresh && reach == Reach::Plain,
                grown: false,
            };
            let head = loop {
                match std::future::poll_fn(|cx| exchange.poll_head(cx, method)).await {
                    // A pooled connection the other end (the app, a peer) reset after the pool
                    // checked it, before any of the request left: the request goes whole on a new
                    // one, whatever its method, as nothing of it arrived. (Once: a new
                    // connection's failure is the other end's.)
                    Err(ClientError::Write(e)) if exchange.out.is_some() => {
                        tracing::debug!(%address, error = %e, "a pooled connection failed before the request left; dialing anew");
                        exchange.conn =
                            Box::pin(self.dialer.dial(address, reach, Alpn::Http1)).await?;
                        #[cfg(test)]
                        if let Some(redialed) = self.redialed {
                            redialed(&mut exchange.conn);
                        }
                        exchange.reused = false;
                        fresh = true;
                        if let Some(redials) = &self.redials {
                            redials.inc();
                        }
                    }
                    other => break other,
                }
            };
            let head = match head {
                Ok(head) => head,
                // A peer that refuses this sidecar's certificate says so (TLS 1.3) after the
                // handshake seemed done, at the first read: the handshake failed, and nothing
                // reached an app.
                Err(ClientError::Read(e) | ClientError::Write(e))
                    if fresh && exchange.read.is_empty() && refused_by_tls(&e) =>
                {
                    self.dialer.handshake_refused();
                    return Err(ClientError::Dial(DialError::Handshake {
                        address: address.to_string(),
                        source: e,
                    }));
                }
                Err(e) => return Err(e),
            };
            // A body on a method that has none by custom (a GET with one, say) is framed
            // right on the way out, but an app that ignores it may read a request smuggled in it
            // and answer twice: such a connection serves no other request.
            // (Nor does a tunnel: the proxy sends `CONNECT` with hyper's client, but the
            // engine's would not pool one either.)
            let keep_alive = !(bodied && bodiless_by_custom(method))
                && *method != Method::CONNECT
                && exchange.write_failed.is_none()
                && head.framing != ResponseFraming::Close
                && !head_asks_to_close(head.version, &head.headers, head.present);
            let framing = match head.framing {
                ResponseFraming::Length(n) => In::Length(n),
                ResponseFraming::Chunked => In::Chunked(Chunked::new(RESPONSE_LIMITS)),
                ResponseFraming::Close => In::Close,
            };
            // An upload still going when the answer came goes on in a task of its own, so that
            // it does not wait for the response to be read: a client may send all of its body
            // before it reads any of the answer. (Rare; the halves are joined again after.)
            let (conn, upload) = match exchange.out {
                None => (Reading::Whole(exchange.conn), None),
                Some(out) => {
                    let (read, write) = tokio::io::split(exchange.conn);
                    (Reading::Half(read), Some(Upload::spawn(out, write)))
                }
            };
            let mut body = ResponseBody {
                keep_alive,
                conn: Some(conn),
                read: exchange.read,
                upload,
                written: None,
                framing,
                home: Some((Arc::downgrade(&self.pool), key)),
                failed: None,
                grown: exchange.grown,
            };
            if matches!(body.framing, In::Length(0)) {
                // Nothing to read: a server does not poll a body that has ended.
                body.finish();
            }
            let mut resp = Response::new(body);
            *resp.status_mut() = head.status;
            *resp.version_mut() = head.version;
            *resp.headers_mut() = head.headers;
            Ok(resp)
        }
    }

    /// Idle connections in the pool (for tests).
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        let idle = self.pool.lock();
        idle.iter()
            .flat_map(|m| m.values())
            .map(VecDeque::len)
            .sum()
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Idles> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool's key for `address` reached as `reach`, and the newest idle connection
    /// there that is still open and quiet, with its read buffer.
    fn take(&self, address: &str, reach: Reach) -> (Key, Option<(Conn, BytesMut)>) {
        let key = match self.lock()[reach as usize].get_key_value(address) {
            Some((name, _)) => (Arc::clone(name), reach),
            None => return ((Arc::from(address), reach), None),
        };
        loop {
            // (The lock is not held while a connection is checked.)
            let popped = self.lock()[reach as usize]
                .get_mut(address)
                .and_then(VecDeque::pop_back);
            let Some(Idle {
                mut conn,
                read,
                since,
            }) = popped
            else {
                return (key, None);
            };
            if since.elapsed() < self.idle_timeout && quiet(&mut conn) {
                return (key, Some((conn, read)));
            }
        }
    }

    /// Keeps `conn` (and its empty read buffer) for the next request to `key`.
    fn put(self: &Arc<Pool>, key: Key, conn: Conn, read: BytesMut) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.lock();
        let (name, reach) = key;
        let conns = idle[reach as usize].entry(name).or_default();
        if conns.len() >= self.max_idle {
            conns.pop_front();
        }
        conns.push_back(Idle {
            conn,
            read,
            since: Instant::now(),
        });
        drop(idle);
        if !self
            .reaping
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }
}

/// Closes idle connections past the idle timeout, while the pool is in use.
async fn reap(pool: Weak<Pool>) {
    let every = match pool.upgrade() {
        Some(pool) => (pool.idle_timeout / 2).max(Duration::from_millis(100)),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        let timeout = pool.idle_timeout;
        for conns in pool.lock().iter_mut() {
            conns.retain(|_, conns| {
                conns.retain(|idle| idle.since.elapsed() < timeout);
                !conns.is_empty()
            });
        }
    }
}

/// Whether an idle connection is still open and has sent nothing: a read would block.
/// (Outside tokio's cooperative budget: a task that has spent it would see every read as
/// blocking, and a closed connection as quiet.)
fn quiet(conn: &mut Conn) -> bool {
    let mut byte = [0u8; 1];
    let probe = std::future::poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut byte);
        Poll::Ready(Pin::new(&mut *conn).poll_read(cx, &mut buf).is_pending())
    });
    futures::FutureExt::now_or_never(tokio::task::unconstrained(probe)).unwrap_or(false)
}

/// Whether `e` is the peer's TLS layer refusing the connection (an alert, not a close).
fn refused_by_tls(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::AlertReceived(_)))
}

/// Methods whose requests carry no body by custom, which apps may not read one of.
fn bodiless_by_custom(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::TRACE
    )
}

/// Whether a response's head asks for its connection to close: `Connection: close`, or an
/// HTTP/1.0 response without `Connection: keep-alive`.
pub(crate) fn asks_to_close(version: Version, headers: &HeaderMap) -> bool {
    says_close(version, crate::headers::connection_tokens(headers))
}

/// [`asks_to_close`] for a head just parsed: its `Connection` lines are looked up only if
/// it has any.
pub(crate) fn head_asks_to_close(version: Version, headers: &HeaderMap, present: Present) -> bool {
    if present.has(&header::CONNECTION) {
        asks_to_close(version, headers)
    } else {
        says_close(version, std::iter::empty())
    }
}

/// The rule of [`asks_to_close`], given the `Connection` tokens.
fn says_close<'a>(version: Version, mut tokens: impl Iterator<Item = &'a str>) -> bool {
    if version == Version::HTTP_11 {
        tokens.any(|t| t.eq_ignore_ascii_case("close"))
    } else {
        !tokens.any(|t| t.eq_ignore_ascii_case("keep-alive"))
    }
}

/// About the room [`encode_head`] needs: enough for a head (and a small first frame) in
/// one allocation that fits it, not a fixed size.
fn head_size(head: Head<'_>, body: &ReplayBody, address: &str) -> usize {
    let lines: usize = head
        .headers
        .iter()
        .chain(head.extra.iter().map(|(name, value)| (name, value)))
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let target = head.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let first = body
        .size_hint()
        .exact()
        .map_or(0, |n| usize::try_from(n).unwrap_or(COALESCE).min(COALESCE));
    head.method.as_str().len() + target + address.len() + lines + 64 + first
}

/// Writes `head` into `buf` in origin form, with the framing its body is sent with
/// (whatever `Content-Length` or `Transfer-Encoding` it carried is replaced); a missing
/// `Host` is taken from `address`, as hyper's client does.
fn encode_head(head: Head<'_>, body: &ReplayBody, address: &str, buf: &mut BytesMut) -> Framing {
    let framing = match body.size_hint().exact() {
        Some(0)
            if !head.headers.contains_key(header::CONTENT_LENGTH)
                && !matches!(*head.method, Method::POST | Method::PUT | Method::PATCH) =>
        {
            Framing::Empty
        }
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    };
    let target = if *head.method == Method::CONNECT {
        head.uri.authority().map_or("", |a| a.as_str())
    } else {
        head.uri.path_and_query().map_or("/", |p| p.as_str())
    };
    buf.put_slice(head.method.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(target.as_bytes());
    buf.put_slice(b" HTTP/1.1\r\n");
    if !head.headers.contains_key(header::HOST) {
        header_line(buf, "host", address.as_bytes());
    }
    for (name, value) in head.headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        header_line(buf, name.as_str(), value.as_bytes());
    }
    for (name, value) in head.extra {
        header_line(buf, name.as_str(), value.as_bytes());
    }
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => length_line(buf, n),
        Framing::Chunked => buf.put_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Close => {}
    }
    buf.put_slice(b"\r\n");
    framing
}

/// One request on one connection, until the response head is in.
struct Exchange {
    conn: Conn,
    read: BytesMut,
    out: Option<Outgoing<ReplayBody>>,
    /// Writing failed: the response (an early answer, say) may still be read, but the
    /// connection is not used again.
    write_failed: Option<ClientError>,
    /// The connection came from the pool, over plain TCP: if its first write fails, the
    /// request is kept (`out`) to be written whole to a new one.
    reused: bool,
    /// The read buffer held more than two heads' room when the response head was taken off
    /// it (a large head, read in several reads): what is left of it is not pooled.
    grown: bool,
}

impl Exchange {
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
    ) -> Poll<Result<codec::ResponseHead, ClientError>> {
        if let Some(out) = self.out.as_mut() {
            match out.poll(&mut self.conn, cx).map_err(ClientError::from) {
                Poll::Ready(Ok(())) => self.out = None,
                // Nothing written on a connection from the pool: the caller dials anew.
                Poll::Ready(Err(e @ ClientError::Write(_))) if self.reused && !out.begun() => {
                    return Poll::Ready(Err(e));
                }
                // The app may have answered already (and closed): read on.
                Poll::Ready(Err(e @ ClientError::Write(_))) => {
                    self.out = None;
                    self.write_failed = Some(e);
                }
                // The client's body failed (cut, too slow, not its announced length): the
                // app would wait for the rest for ever. The connection goes.
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        loop {
            // (A small head split over two reads has a head's room added: up to twice.)
            self.grown |= self.read.capacity() > 2 * HEAD_READ;
            match codec::parse_response(&mut self.read, &RESPONSE_LIMITS, method) {
                Ok(Some(head)) if head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                    return Poll::Ready(Err(ClientError::Switched));
                }
                // Informational: the final response follows.
                Ok(Some(head)) if head.status.is_informational() => continue,
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
                Err(refusal) => return Poll::Ready(Err(ClientError::Response(refusal))),
            }
            let read = ready!(read::poll_head(
                Pin::new(&mut self.conn),
                cx,
                &mut self.read,
                HEAD_READ
            ));
            match read {
                Ok(0) => {
                    return Poll::Ready(Err(self
                        .write_failed
                        .take()
                        .unwrap_or(ClientError::Closed)));
                }
                Ok(_) => {}
                // A TLS refusal says more than the failed write it caused.
                Err(e) if refused_by_tls(&e) => return Poll::Ready(Err(ClientError::Read(e))),
                Err(e) => {
                    return Poll::Ready(Err(self
                        .write_failed
                        .take()
                        .unwrap_or(ClientError::Read(e))));
                }
            }
        }
    }
}

/// How the rest of a response body is framed.
#[derive(Debug)]
enum In {
    Length(u64),
    Chunked(Chunked),
    Close,
}

/// The connection a response is read from: whole, or its read half while the rest of the
/// request is written by an [`Upload`].
enum Reading {
    Whole(Conn),
    Half(tokio::io::ReadHalf<Conn>),
}

impl AsyncRead for Reading {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reading::Whole(conn) => Pin::new(conn).poll_read(cx, buf),
            Reading::Half(half) => Pin::new(half).poll_read(cx, buf),
        }
    }
}

/// The rest of a request body, sent by a task of its own, which gives the write half back
/// at the end; stopped when dropped before the response ended. After it, the app may still
/// be reading: the task goes on for [`UPLOAD_AFTER_RESPONSE`] at most. (The request body's
/// own deadline does not bound it: an app that stops reading leaves the task waiting to
/// write, and the body is not polled.)
struct Upload {
    done: tokio::sync::oneshot::Receiver<Result<tokio::io::WriteHalf<Conn>, ClientError>>,
    task: Option<tokio::task::AbortHandle>,
}

impl Upload {
    fn spawn(mut out: Outgoing<ReplayBody>, mut write: tokio::io::WriteHalf<Conn>) -> Upload {
        let (tx, done) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let sent = std::future::poll_fn(|cx| out.poll(&mut write, cx)).await;
            let _ = tx.send(sent.map(|()| write).map_err(ClientError::from));
        });
        Upload {
            done,
            task: Some(task.abort_handle()),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The body of a response the engine's client read. Dropped before its end, it closes its
/// connection.
pub struct ResponseBody {
    /// `None` once the body has ended.
    conn: Option<Reading>,
    read: BytesMut,
    upload: Option<Upload>,
    /// The write half an upload gave back.
    written: Option<tokio::io::WriteHalf<Conn>>,
    framing: In,
    /// Whether the connection may serve another request once both messages are through.
    keep_alive: bool,
    home: Option<(Weak<Pool>, Key)>,
    /// A read that failed, answered with one `Pending` first and given on the next poll.
    failed: Option<io::Error>,
    /// The read buffer was grown for the body, or for a large head.
    grown: bool,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("framing", &self.framing)
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    /// The body has ended: the connection goes back to the pool if it can serve again.
    fn finish(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            match upload.done.try_recv() {
                Ok(Ok(write)) => self.written = Some(write),
                // Still going: it finishes on its own, or is stopped, and the connection goes
                // with it.
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    if let Some(task) = upload.task.take() {
                        tokio::spawn(async move {
                            tokio::time::sleep(UPLOAD_AFTER_RESPONSE).await;
                            task.abort();
                        });
                    }
                }
                _ => {}
            }
        }
        let conn = match (self.conn.take(), self.written.take()) {
            (Some(Reading::Half(read)), Some(write)) => Some(read.unsplit(write)),
            (Some(Reading::Whole(conn)), None) => Some(conn),
            // An upload not through: the connection goes with it.
            _ => None,
        };
        let reusable =
            self.keep_alive && self.read.is_empty() && !matches!(self.framing, In::Close);
        let read = std::mem::take(&mut self.read);
        if let (true, Some(conn), Some((pool, key))) = (reusable, conn, self.home.take())
            && let Some(pool) = pool.upgrade()
        {
            // A buffer grown for a body or a large head is not kept (its allocation may be
            // large).
            let read = if self.grown { BytesMut::new() } else { read };
            pool.put(key, conn, read);
        }
    }

    fn read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if self.read.capacity() - self.read.len() < BODY_READ / 4 {
            let want = match self.framing {
                In::Length(left) => usize::try_from(left).unwrap_or(BODY_READ).min(BODY_READ),
                _ => BODY_READ,
            };
            self.read.reserve(want.max(HEAD_READ / 4));
            // Room a small body fits in (two heads' at most) is kept, as for a head.
            self.grown |= self.read.capacity() > 2 * HEAD_READ;
        }
        tokio_util::io::poll_read_buf(Pin::new(conn), cx, &mut self.read)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(e) = this.failed.take() {
            this.conn = None;
            return Poll::Ready(Some(Err(ClientError::Read(e).into())));
        }
        if this.conn.is_none() {
            return Poll::Ready(None);
        }
        if let Some(upload) = this.upload.as_mut() {
            match Pin::new(&mut upload.done).poll(cx) {
                Poll::Ready(Ok(Ok(write))) => {
                    this.upload = None;
                    this.written = Some(write);
                }
                // The app stopped reading after it answered: no more to send.
                Poll::Ready(Ok(Err(e @ ClientError::Write(_)))) => {
                    tracing::debug!(error = %e, "request body not sent whole");
                    this.upload = None;
                    this.keep_alive = false;
                }
                // The client's body failed: the app gets no more, and neither does the
                // client (as a request cut short).
                Poll::Ready(Ok(Err(e))) => {
                    this.upload = None;
                    this.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Err(_)) => {
                    this.upload = None;
                    this.keep_alive = false;
                }
                Poll::Pending => {}
            }
        }
        loop {
            match &mut this.framing {
                In::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                In::Length(left) if !this.read.is_empty() => {
                    let n =
                        usize::try_from(*left).map_or(this.read.len(), |l| l.min(this.read.len()));
                    *left -= n as u64;
                    let data = this.read.split_to(n).freeze();
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                In::Length(_) => {}
                In::Chunked(decoder) => match decoder.decode(&mut this.read) {
                    Ok(Some(Piece::Data(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Some(Piece::Trailers(trailers))) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Some(Piece::End)) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(None) => {}
                    Err(refusal) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(ClientError::Response(refusal).into())));
                    }
                },
                In::Close if !this.read.is_empty() => {
                    let data = this.read.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                In::Close => {}
            }
            let failed = match ready!(this.read_more(cx)) {
                Ok(0) if matches!(this.framing, In::Close) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the response body ended",
                ),
                Ok(_) => continue,
                Err(e) => e,
            };
            // Failed: given on the next poll, so that a server gets to send what came
            // before (hyper's drops what it has buffered when a body fails).
            this.failed = Some(failed);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || matches!(self.framing, In::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            In::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
