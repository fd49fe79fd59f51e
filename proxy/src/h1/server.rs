//! The engine's server: HTTP/1.1 (and 1.0) on a connection [`crate::conn`] accepted, read and
//! written by the connection's own task, with no dispatch channel between the connection and
//! the handler.
//!
//! - Heads are taken off the connection by [`codec::parse_request`] within the head limits
//!   and the header read timeout (which also bounds how long a keep-alive connection waits
//!   for its next request). A refused head is answered with its status (400, 414, 431) and
//!   a line naming the problem, and the connection is closed: nothing of it is handed on.
//! - A request's body is read from the connection as the handler polls it
//!   ([`RequestBody`]), which holds the connection's read side meanwhile and gives it back
//!   at its end; `Expect: 100-continue` is answered when the body is first polled, as
//!   hyper's server does. A body not read to its end closes the connection after the
//!   response (its rest cannot be told from the next request).
//! - Requests are answered one at a time, in order; pipelined ones wait in the read buffer.
//!   While a request is handled with its body read, the connection is watched for a close:
//!   a client that went away cancels its request (hyper's default, without half-close).
//! - A response goes out framed by its body's length when known, else chunked (HTTP/1.1) or
//!   ended by a close (HTTP/1.0); trailers only to a client that sent `TE: trailers` and
//!   only those the response's `Trailer` header names (hyper's rule). `Date` is added when
//!   missing. The connection closes after a response when either side asked (`Connection:
//!   close`, HTTP/1.0 without keep-alive), after a close-framed one, and once the server
//!   stops (requests in flight finish first).
//! - An `Upgrade` or `CONNECT` request carries a [`ClientUpgrade`]: once its response
//!   switched protocols and is written, the connection (with any bytes read past the head)
//!   goes to whoever awaits it, and this server is done with it.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use futures::task::AtomicWaker;
use http::header::{self, HeaderName};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use prometheus::IntCounter;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::client::{asks_to_close, head_asks_to_close};
use super::codec::{self, Chunked, Limits, Piece, Refusal, RequestHead};
use super::out::{Framing, Outgoing, Trailers, WriteError, header_line, length_line};
use super::read;
use crate::ProxyBody;
use crate::conn::{Activity, Prefixed, Stream};
use crate::headers;
use crate::upgrade::{ClientUpgrade, Io};

/// Read buffer room for a head.
const HEAD_READ: usize = 4 * 1024;
/// Body bytes read at once, at most.
const BODY_READ: usize = 16 * 1024;
/// The go-ahead for a body sent with `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// How long closing a connection may wait for its last bytes to go.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How long a connection closed with the client's bytes unread (a body left unread after
/// an early answer, the rest of a refused request) goes on reading and dropping what comes,
/// at most, and how long it waits for each read: nginx's `lingering_time` and
/// `lingering_timeout`. A socket closed with bytes unread answers with a reset, and a client
/// still sending its body gets a failed write instead of the answer waiting for it.
#[cfg(not(test))]
const LINGER: Duration = Duration::from_secs(30);
#[cfg(test)]
const LINGER: Duration = Duration::from_secs(5);
/// How long a connection whose answer went out before its request body ended (an app that
/// answered early) waits for the body with no byte moving: a client still sending it keeps
/// its connection, but a body held up by an app that stopped reading does not hold up the
/// client's next request for long.
const ANSWERED_BODY_PAUSE: Duration = Duration::from_secs(1);
const LINGER_READ: Duration = Duration::from_secs(5);

/// What the engine's server needs to know about its listener.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Bounds on request heads (and chunk-size lines and trailers).
    pub limits: Limits,
    /// How long a request head may take, from the end of the previous response (or the
    /// connection's start).
    pub header_read_timeout: Duration,
    /// A keep-alive connection waits at most this long for its next request (when shorter
    /// than the header read timeout).
    pub idle_timeout: Duration,
    /// Counts heads refused as request smuggling attempts (both `Content-Length` and
    /// `Transfer-Encoding`, or a bare LF).
    pub smuggling: IntCounter,
    /// Cancelled when the server stops: no new request is read.
    pub stop: CancellationToken,
}

/// Why a request body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client closed the connection before the body ended.
    #[error("the client closed the connection before the request body ended")]
    Closed,
    /// Reading from the client failed.
    #[error("reading the request body: {0}")]
    Read(#[source] io::Error),
    /// The chunked coding was not valid.
    #[error("request body: {0}")]
    Malformed(#[source] Refusal),
}

/// The connection's read side and what was read past the last message.
struct Reader {
    io: ReadHalf<Stream>,
    buf: BytesMut,
}

/// What a connection and the body of its current request share.
#[derive(Default)]
struct Shared {
    /// The read side, given back by the body: with `true` when the body was read to its end.
    back: Mutex<Option<(Reader, bool)>>,
    /// The body was polled and its request asked for `100 Continue`.
    want_continue: AtomicBool,
    /// The connection's task, to wake for either.
    waker: AtomicWaker,
}

impl Shared {
    fn take_back(&self) -> Option<(Reader, bool)> {
        self.back.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// How the rest of a request body is framed.
#[derive(Debug)]
enum In {
    Length(u64),
    Chunked(Chunked),
}

/// The body of a request the engine's server read: read from the client's connection as it
/// is polled. Its end (or its drop) gives the connection back to the server.
pub struct RequestBody {
    /// `None` for a request without a body, and once the body has ended.
    reader: Option<Reader>,
    framing: In,
    shared: Option<Arc<Shared>>,
    /// `Expect: 100-continue` still to be answered at the first poll.
    expect: bool,
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody")
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

impl RequestBody {
    fn empty() -> RequestBody {
        RequestBody {
            reader: None,
            framing: In::Length(0),
            shared: None,
            expect: false,
        }
    }

    /// Gives the read side back to the connection; `clean` when the body was read whole.
    fn give_back(&mut self, clean: bool) {
        if let (Some(reader), Some(shared)) = (self.reader.take(), self.shared.as_ref()) {
            *shared.back.lock().unwrap_or_else(|e| e.into_inner()) = Some((reader, clean));
            shared.waker.wake();
        }
    }

    fn fail(&mut self, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.give_back(false);
        Poll::Ready(Some(Err(e)))
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.give_back(false);
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.reader.is_none() {
            return Poll::Ready(None);
        }
        if std::mem::take(&mut this.expect)
            && let Some(shared) = this.shared.as_ref()
        {
            shared.want_continue.store(true, Ordering::Release);
            shared.waker.wake();
        }
        loop {
            let Some(reader) = this.reader.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.framing {
                In::Length(0) => {
                    this.give_back(true);
                    return Poll::Ready(None);
                }
                In::Length(left) if !reader.buf.is_empty() => {
                    let n = usize::try_from(*left)
                        .map_or(reader.buf.len(), |l| l.min(reader.buf.len()));
                    *left -= n as u64;
                    let data = reader.buf.split_to(n).freeze();
                    if *left == 0 {
                        this.give_back(true);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                In::Length(_) => {}
                In::Chunked(decoder) => match decoder.decode(&mut reader.buf) {
                    Ok(Some(Piece::Data(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Some(Piece::Trailers(trailers))) => {
                        this.give_back(true);
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Some(Piece::End)) => {
                        this.give_back(true);
                        return Poll::Ready(None);
                    }
                    Ok(None) => {}
                    Err(refusal) => return this.fail(BodyError::Malformed(refusal)),
                },
            }
            let want = match this.framing {
                In::Length(left) => usize::try_from(left).unwrap_or(BODY_READ).min(BODY_READ),
                In::Chunked(_) => BODY_READ,
            };
            if reader.buf.capacity() - reader.buf.len() < want.min(HEAD_READ) {
                reader.buf.reserve(want.max(HEAD_READ / 4));
            }
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut reader.io),
                cx,
                &mut reader.buf
            ));
            match read {
                Ok(0) => return this.fail(BodyError::Closed),
                Ok(_) => {}
                Err(e) => return this.fail(BodyError::Read(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reader.is_none() || matches!(self.framing, In::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.reader, &self.framing) {
            (None, _) => SizeHint::with_exact(0),
            (Some(_), In::Length(left)) => SizeHint::with_exact(*left),
            (Some(_), In::Chunked(_)) => SizeHint::default(),
        }
    }
}

/// Serves HTTP/1 on `stream` (`buf`: bytes already read from it) until it closes, a
/// request ends it, or `settings.stop` is cancelled; the first head must be complete by
/// `first_head`. `handler` answers each request.
///
/// (Not an `async fn`, which would keep its arguments beside the connection built from
/// them for the connection's whole life.)
pub fn serve<F, Fut>(
    stream: Stream,
    buf: BytesMut,
    first_head: Instant,
    client: SocketAddr,
    settings: &Settings,
    mut handler: F,
) -> impl Future<Output = ()>
where
    F: FnMut(Request<RequestBody>) -> Fut,
    Fut: Future<Output = Response<ProxyBody>>,
{
    let activity = crate::conn::activity(&stream).clone();
    let (read, write) = tokio::io::split(stream);
    let mut conn = Connection {
        activity,
        reader: Some(Reader { io: read, buf }),
        clean: true,
        linger_until: None,
        write,
        shared: Arc::new(Shared::default()),
        client,
        settings,
    };
    async move {
        let deadline = tokio::time::sleep_until(first_head);
        tokio::pin!(deadline);
        let wait = settings.header_read_timeout.min(settings.idle_timeout);
        loop {
            let head = match conn.head(deadline.as_mut()).await {
                Ok(head) => head,
                Err(Some(refusal)) => return conn.refuse(refusal).await,
                Err(None) => return conn.close(false).await,
            };
            match conn.exchange(head, &mut handler).await {
                After::KeepAlive => deadline.as_mut().reset(Instant::now() + wait),
                // (`clean`: the last request's body, if it had one, was read to its end; a
                // request pipelined behind it may have been read already.)
                After::Close => {
                    let pipelined = conn.reader.as_ref().is_some_and(|r| !r.buf.is_empty());
                    let unread = !conn.clean || pipelined;
                    return conn.close(unread).await;
                }
                After::Upgrade(tx) => return conn.hand_over(tx),
                After::Gone => return,
            }
        }
    }
}

/// Reads and drops what the client still sends, until it closes, a read waits longer than
/// [`LINGER_READ`], `until` has come, or the server stops.
async fn linger(mut reader: Reader, until: Instant, stop: CancellationToken) {
    let drain = async {
        loop {
            reader.buf.clear();
            reader.buf.reserve(BODY_READ);
            match tokio::time::timeout(LINGER_READ, reader.io.read_buf(&mut reader.buf)).await {
                Ok(Ok(1..)) => {}
                _ => return,
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout_at(until, drain) => {}
        () = stop.cancelled() => {}
    }
}

/// Why no head came: refused, or (`None`) the client closed or the wait ended (timeout,
/// stop), to be closed quietly.
type NoHead = Option<Refusal>;

/// What is left of a connection after an exchange.
enum After {
    KeepAlive,
    Close,
    /// The response switched protocols: the connection goes to the upgrade.
    Upgrade(oneshot::Sender<Box<dyn Io>>),
    /// The client went away, or the connection failed: nothing more to do.
    Gone,
}

struct Connection<'a> {
    /// When bytes last moved: a response the client reads none of is abandoned after the
    /// idle timeout.
    activity: Activity,
    /// `None` while a request body holds it.
    reader: Option<Reader>,
    /// The read side is at the start of a message (no body was left unread).
    clean: bool,
    /// When a linger ends, if one has begun: waiting for a body after its answer is part of
    /// the linger.
    linger_until: Option<Instant>,
    write: WriteHalf<Stream>,
    shared: Arc<Shared>,
    client: SocketAddr,
    settings: &'a Settings,
}

impl Connection<'_> {
    /// The next request head.
    async fn head(&mut self, mut deadline: Pin<&mut Sleep>) -> Result<RequestHead, NoHead> {
        let Some(reader) = self.reader.as_mut() else {
            return Err(None);
        };
        let stop = &self.settings.stop;
        loop {
            match codec::parse_request(&mut reader.buf, &self.settings.limits) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(refusal) => return Err(Some(refusal)),
            }
            // Stopping: a request begun is read and answered; none is waited for.
            if stop.is_cancelled() && reader.buf.is_empty() {
                return Err(None);
            }
            let read = tokio::select! {
                biased;
                _ = stop.cancelled(), if reader.buf.is_empty() => return Err(None),
                _ = deadline.as_mut() => {
                    tracing::debug!(client = %self.client, "no complete request head in time");
                    return Err(None);
                }
                read = std::future::poll_fn(|cx| {
                    read::poll_head(Pin::new(&mut reader.io), cx, &mut reader.buf, HEAD_READ)
                }) => read,
            };
            match read {
                Ok(0) | Err(_) => return Err(None),
                Ok(_) => {}
            }
        }
    }

    /// Answers a refused head and closes.
    async fn refuse(mut self, refusal: Refusal) {
        if matches!(refusal, Refusal::LengthAndEncoding | Refusal::BareLineEnd) {
            self.settings.smuggling.inc();
        }
        tracing::debug!(client = %self.client, error = %refusal, "request refused");
        let status = refusal.status();
        let text = format!("{refusal}\n");
        let mut head = BytesMut::with_capacity(256 + text.len());
        status_line(&mut head, status);
        header_line(&mut head, "content-type", b"text/plain; charset=utf-8");
        length_line(&mut head, text.len() as u64);
        header_line(&mut head, "connection", b"close");
        date_line(&mut head);
        head.put_slice(b"\r\n");
        head.put_slice(text.as_bytes());
        let _ = tokio::time::timeout(CLOSE_WAIT, self.write.write_all(&head)).await;
        // What followed the refused head (its body, say) is unread.
        self.close(true).await;
    }

    /// Closes the connection: a FIN (or TLS close_notify) after what was written, and with
    /// bytes of the client's `unread`, a linger ([`LINGER`]) while it sends the rest.
    async fn close(mut self, unread: bool) {
        let _ = tokio::time::timeout(CLOSE_WAIT, self.write.shutdown()).await;
        if unread && let Some(reader) = self.reader.take() {
            // (Boxed: rare, and every connection's future would otherwise hold its room.)
            let until = self.linger_until.unwrap_or_else(|| Instant::now() + LINGER);
            Box::pin(linger(reader, until, self.settings.stop.clone())).await;
        }
    }

    /// One request and its response. (Not an `async fn`: the request is built and handed to
    /// `handler` before the first await, so neither it nor `head` takes room in the
    /// connection's future, which every keep-alive connection holds.)
    fn exchange<F, Fut>(
        &mut self,
        head: RequestHead,
        handler: &mut F,
    ) -> impl Future<Output = After>
    where
        F: FnMut(Request<RequestBody>) -> Fut,
        Fut: Future<Output = Response<ProxyBody>>,
    {
        let RequestHead {
            method,
            uri,
            version,
            headers,
            present,
            framing,
            claims,
        } = head;
        // (Each name looked up only if the head has it: see `Present`.)
        let close_asked = head_asks_to_close(version, &headers, present);
        let upgrade = (method == Method::CONNECT || present.has(&header::UPGRADE))
            && headers::is_upgrade(&method, version, &headers);
        let te_trailers = present.has(&header::TE) && headers::accepts_trailers(&headers);
        let expect = version == Version::HTTP_11
            && present.has(&header::EXPECT)
            && headers
                .get(header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let body = match framing {
            codec::Framing::Length(0) => RequestBody::empty(),
            codec::Framing::Length(n) => self.body(In::Length(n), expect),
            codec::Framing::Chunked => {
                self.body(In::Chunked(Chunked::new(self.settings.limits)), expect)
            }
        };
        let mut req = Request::new(body);
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = version;
        *req.headers_mut() = headers;
        // The routing headers, read off the head (`headers::Claims`): only a forwarded
        // request has any, and only then are the extensions allocated.
        if let Some(claims) = claims {
            req.extensions_mut().insert(*claims);
        }
        let handoff = upgrade.then(|| {
            let (tx, rx) = oneshot::channel::<Box<dyn Io>>();
            req.extensions_mut().insert(ClientUpgrade::new(async move {
                rx.await
                    .map_err(|_| io::Error::other("the response did not switch protocols"))
            }));
            tx
        });

        // Boxed: a connection waiting for its next request then holds only its own small
        // state, not room for the handler's whole future (a few KiB, which a thousand
        // keep-alive connections would hold for nothing).
        let mut answer = Box::pin(handler(req));
        async move {
            let mut continued = Bytes::new();
            let resp =
                std::future::poll_fn(|cx| self.poll_answer(cx, answer.as_mut(), &mut continued));
            let Some(resp) = resp.await else {
                let client = self.client;
                tracing::debug!(%client, "client closed the connection; request cancelled");
                return After::Gone;
            };

            // In a block: the response's head is dropped before the first write, not kept
            // in the future while the body streams.
            let (mut out, switched, keep) = {
                let (parts, body) = resp.into_parts();
                let switched = handoff.is_some() && crate::upgrade::switched(&method, parts.status);
                // A body already given back unread: the close is known now, and said in the head.
                self.take_back();
                // (A switch ends HTTP on this connection without a close to announce.) An upgrade
                // or CONNECT that was not switched closes: what the client sent behind its head was
                // meant for a tunnel, and is never read as a request. Nor does a 1xx as a final
                // answer leave the connection usable.
                let keep = switched
                    || (!close_asked
                        && handoff.is_none()
                        && !parts.status.is_informational()
                        && (self.reader.is_none() || self.clean)
                        && !self.settings.stop.is_cancelled());
                let response = Response::from_parts(parts, ());
                let mut head = super::spare::buffer(HEAD_READ / 4 + continued.len());
                head.put_slice(&continued);
                let (framing, trailers, keep) = encode_response(
                    &method,
                    version,
                    &response,
                    &body,
                    keep,
                    te_trailers,
                    &mut head,
                );
                // Its head written, the response's map serves a later head.
                super::spare::give_back(response.into_parts().0.headers);
                (Outgoing::new(head, body, framing, trailers), switched, keep)
            };
            // Made only once a write has to wait (boxed: most responses never do).
            let mut stalled: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
            let written = std::future::poll_fn(|cx| {
                if let Err(e) = out.prime(cx) {
                    return Poll::Ready(Some(Err(e)));
                }
                // An answer that streams the request body back reads it only now: the client
                // waits for the go-ahead before it sends it.
                if self.shared.want_continue.swap(false, Ordering::Acquire) {
                    out.prepend(CONTINUE);
                }
                if let Poll::Ready(written) = out.poll(&mut self.write, cx) {
                    return Poll::Ready(Some(written));
                }
                // A client that reads none of the response holds the connection (and the
                // app's) no longer than the idle timeout: nginx's `send_timeout`. Counted
                // while bytes wait to be written, from when they began to (or last went); a
                // body slow to come from the app is not the client's doing.
                if out.writing() {
                    let stall = stalled.get_or_insert_with(|| {
                        self.activity.touch();
                        let (activity, idle) = (self.activity.clone(), self.settings.idle_timeout);
                        Box::pin(async move { activity.idle_for(idle).await })
                    });
                    if stall.as_mut().poll(cx).is_ready() {
                        let e = io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client read none of the response for the idle timeout",
                        );
                        return Poll::Ready(Some(Err(WriteError::Io(e))));
                    }
                } else {
                    stalled = None;
                }
                match self.watch(cx) {
                    Poll::Ready(()) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match written {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    let quiet = matches!(e, WriteError::Io(_));
                    let client = self.client;
                    if quiet {
                        tracing::debug!(%client, error = %e, "response not written whole");
                    } else {
                        tracing::info!(%client, error = %e, "response cut short");
                    }
                    return After::Close;
                }
                None => {
                    let client = self.client;
                    tracing::debug!(%client, "client closed the connection during the response");
                    return After::Gone;
                }
            }
            // An early answer (the app's, while the client still sends its body) said
            // keep-alive: as nginx does once it has read such a body, the connection goes on
            // when the body is in, if it comes while the client's bytes keep coming.
            if keep && !switched && !self.take_back() {
                Box::pin(self.body_back()).await;
            }
            let clean = self.reclaim();
            // A body left unread would go down the tunnel as if the client had sent it there.
            if switched
                && clean
                && let Some(tx) = handoff
            {
                return After::Upgrade(tx);
            }
            if keep && clean {
                self.linger_until = None;
                // Waiting for the next request, the connection holds no buffer (see
                // [`read`]).
                if let Some(reader) = self.reader.as_mut()
                    && reader.buf.is_empty()
                {
                    reader.buf = BytesMut::new();
                }
                After::KeepAlive
            } else {
                After::Close
            }
        }
    }

    /// A body that reads from the connection (which it holds until its end).
    fn body(&mut self, framing: In, expect: bool) -> RequestBody {
        self.clean = false;
        RequestBody {
            reader: self.reader.take(),
            framing,
            shared: Some(self.shared.clone()),
            expect,
        }
    }

    /// Waits for a body still out to give the read side back: while bytes move (no pause
    /// of [`ANSWERED_BODY_PAUSE`]), at most [`LINGER`] (which a linger after it shares), and
    /// not once the server stops. (The body's own reads fail when the client closes.)
    async fn body_back(&mut self) {
        let until = Instant::now() + LINGER;
        self.linger_until = Some(until);
        // (Apart from `self`, which the wait for the body borrows.)
        let settings = self.settings;
        let activity = self.activity.clone();
        let back = std::future::poll_fn(|cx| {
            self.shared.waker.register(cx.waker());
            if self.take_back() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        tokio::select! {
            () = back => {}
            () = tokio::time::sleep_until(until) => {}
            () = activity.idle_for(ANSWERED_BODY_PAUSE) => {}
            () = settings.stop.cancelled() => {}
        }
        // A body first polled after its answer asked for a `100 Continue` that no later
        // request wants.
        self.shared.want_continue.store(false, Ordering::Relaxed);
    }

    /// Takes the read side back from a body that ended (or was dropped): true when it is at
    /// the start of the next message.
    fn reclaim(&mut self) -> bool {
        // Still out (a body kept past its response): the connection cannot go on.
        self.take_back() && self.clean
    }

    /// Takes the read side back if a body has given it back; true when it is home.
    fn take_back(&mut self) -> bool {
        if self.reader.is_none()
            && let Some((reader, clean)) = self.shared.take_back()
        {
            self.reader = Some(reader);
            self.clean = clean;
        }
        self.reader.is_some()
    }

    /// Gives the connection, with what was read past the head, to the upgrade awaiting it.
    fn hand_over(mut self, tx: oneshot::Sender<Box<dyn Io>>) {
        let Some(reader) = self
            .reader
            .take()
            .or_else(|| self.shared.take_back().map(|b| b.0))
        else {
            return;
        };
        let stream = reader.io.unsplit(self.write);
        let _ = tx.send(Box::new(Prefixed::new(reader.buf.freeze(), stream)));
    }

    /// Polls the handler's answer, meanwhile sending `100 Continue` when the body asks for
    /// it and watching for the client to close. `None`: the client went away.
    fn poll_answer<Fut>(
        &mut self,
        cx: &mut Context<'_>,
        answer: Pin<&mut Fut>,
        continued: &mut Bytes,
    ) -> Poll<Option<Response<ProxyBody>>>
    where
        Fut: Future<Output = Response<ProxyBody>>,
    {
        if let Poll::Ready(resp) = answer.poll(cx) {
            return Poll::Ready(Some(resp));
        }
        self.shared.waker.register(cx.waker());
        if self.shared.want_continue.swap(false, Ordering::Acquire) {
            *continued = Bytes::from_static(CONTINUE);
        }
        while !continued.is_empty() {
            match std::pin::Pin::new(&mut self.write).poll_write(cx, continued) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    let _ = continued.split_to(n);
                }
                Poll::Ready(_) => return Poll::Ready(None),
                // What is left goes before the response head.
                Poll::Pending => break,
            }
        }
        if continued.is_empty()
            && let Poll::Ready(Err(_)) = std::pin::Pin::new(&mut self.write).poll_flush(cx)
        {
            return Poll::Ready(None);
        }
        match self.watch(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Ready when the client has closed (or the connection failed). Only while the read side
    /// is home (the body read to its end): what arrives meanwhile is kept for the next
    /// request, up to the head limit.
    fn watch(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.take_back();
        loop {
            let Some(reader) = self.reader.as_mut() else {
                return Poll::Pending;
            };
            if reader.buf.len() >= self.settings.limits.max_head_bytes {
                return Poll::Pending;
            }
            match read::poll_head(Pin::new(&mut reader.io), cx, &mut reader.buf, HEAD_READ) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Writes the head of `response` to a `method` request of `version` into `buf`, and says how
/// its body goes: framing, trailers, and whether the connection stays open after it (`keep`
/// unless the response or its framing ends it).
fn encode_response(
    method: &Method,
    version: Version,
    response: &Response<()>,
    body: &ProxyBody,
    mut keep: bool,
    te_trailers: bool,
    buf: &mut BytesMut,
) -> (Framing, Trailers, bool) {
    let status = response.status();
    let headers = response.headers();
    let tunnel = method == Method::CONNECT && status.is_success();
    // No length may be given for these; for HEAD and 304 the app's describes another body.
    let no_length = status.is_informational() || status == StatusCode::NO_CONTENT || tunnel;
    let bodiless = no_length || method == Method::HEAD || status == StatusCode::NOT_MODIFIED;
    let close_said = asks_to_close(Version::HTTP_11, headers);
    if close_said {
        keep = false;
    }
    let framing = if bodiless {
        Framing::Empty
    } else if let Some(n) = body.size_hint().exact() {
        Framing::Length(n)
    } else if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        Framing::Length(n)
    } else if version == Version::HTTP_10 {
        Framing::Close
    } else {
        Framing::Chunked
    };
    if framing == Framing::Close {
        keep = false;
    }
    status_line(buf, status);
    let mut date = false;
    for (name, value) in headers {
        match *name {
            header::CONTENT_LENGTH if no_length || !bodiless => continue,
            // The body is framed anew (the proxy passes no `Transfer-Encoding` on: an app's
            // response with a coding other than chunked is refused, `codec::parse_response`).
            header::TRANSFER_ENCODING => continue,
            header::TRAILER if framing != Framing::Chunked => continue,
            header::DATE => date = true,
            _ => {}
        }
        header_line(buf, name.as_str(), value.as_bytes());
    }
    match framing {
        Framing::Length(n) => length_line(buf, n),
        // The length a GET would have had, as hyper's server gives it.
        Framing::Empty
            if method == Method::HEAD
                && !no_length
                && !headers.contains_key(header::CONTENT_LENGTH)
                && let Some(n @ 1..) = body.size_hint().exact() =>
        {
            length_line(buf, n)
        }
        Framing::Chunked => header_line(buf, "transfer-encoding", b"chunked"),
        Framing::Empty | Framing::Close => {}
    }
    if !keep && !close_said {
        header_line(buf, "connection", b"close");
    } else if keep
        && version == Version::HTTP_10
        && !headers::connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("keep-alive"))
    {
        header_line(buf, "connection", b"keep-alive");
    }
    if !date {
        date_line(buf);
    }
    buf.put_slice(b"\r\n");
    let trailers = if framing == Framing::Chunked && te_trailers {
        let named: Vec<HeaderName> = headers
            .get_all(header::TRAILER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        if named.is_empty() {
            Trailers::None
        } else {
            Trailers::Named(named)
        }
    } else {
        Trailers::None
    };
    (framing, trailers, keep)
}

/// `HTTP/1.1 <code> <reason>` and its CRLF.
fn status_line(buf: &mut BytesMut, status: StatusCode) {
    buf.put_slice(b"HTTP/1.1 ");
    buf.put_slice(status.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    buf.put_slice(b"\r\n");
}

/// A `Date` header line for now (formatted once a second per thread).
fn date_line(buf: &mut BytesMut) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != secs || date.1.is_empty() {
            *date = (secs, httpdate::fmt_http_date(now));
        }
        header_line(buf, "date", date.1.as_bytes());
    });
}

#[cfg(test)]
mod tests;
