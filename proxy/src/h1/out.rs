//! Writing one HTTP/1 message after its head: the engine's client sends requests with it,
//! its server responses.
//!
//! An [`Outgoing`] holds the bytes ready to go (the head first) and the body still to be
//! polled; [`Outgoing::poll`] writes what it can, frames each data frame as the head
//! announced ([`Framing`]), and is ready once the whole message is written and flushed.
//! The first data frame, when it is already there and small, goes out in the same write
//! as the head.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName};
use http_body::Body;
use tokio::io::AsyncWrite;

use crate::BoxError;

/// A first data frame at most this large is copied behind the head, to go in one write.
pub(crate) const COALESCE: usize = 16 * 1024;

/// How the body after a head is framed on the way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all (nor a length): a `GET`, a response to `HEAD`, a 204 or 304.
    Empty,
    /// `Content-Length` bytes; what is left to send.
    Length(u64),
    /// The chunked coding.
    Chunked,
    /// Bytes as they come, ended by closing the connection (a response to HTTP/1.0).
    Close,
}

/// Which trailers a chunked body may end with.
#[derive(Clone, Debug, Default)]
pub(crate) enum Trailers {
    /// None: a body's trailers are dropped.
    #[default]
    None,
    /// All of them (requests: the app decides).
    All,
    /// Those named (a response's `Trailer` header, to a client that sent `TE: trailers`).
    Named(Vec<HeaderName>),
}

/// Why a message could not be written whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// Writing to the connection failed.
    #[error("writing: {0}")]
    Io(#[source] io::Error),
    /// The body failed.
    #[error("body: {0}")]
    Body(#[source] BoxError),
    /// The body was longer or shorter than the length its head announced.
    #[error("body does not match its Content-Length")]
    Length,
}

/// A message still being written: bytes ready to go, then the rest of the body.
pub(crate) struct Outgoing<B> {
    /// The head, until written: a small first frame is added behind it.
    head: Option<BytesMut>,
    /// Some of the head was written.
    begun: bool,
    pending: Bytes,
    /// A large first frame, after the head.
    queued: Option<Bytes>,
    /// The body was polled once before the head went.
    primed: bool,
    body: Option<B>,
    framing: Framing,
    trailers: Trailers,
}

impl<B> Outgoing<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// `head` (ended by its empty line), then `body` framed as `framing` says (with
    /// [`Framing::Empty`] the body is not polled at all).
    pub(crate) fn new(head: BytesMut, body: B, framing: Framing, trailers: Trailers) -> Self {
        Outgoing {
            head: Some(head),
            begun: false,
            pending: Bytes::new(),
            queued: None,
            primed: false,
            body: (framing != Framing::Empty).then_some(body),
            framing,
            trailers,
        }
    }

    /// Polls the body once before anything is written: a first frame that is already there
    /// goes with the head when it is small. (Done by the first [`Outgoing::poll`] if not
    /// before; a server calls it first to learn whether that poll asked for `100 Continue`.)
    pub(crate) fn prime(&mut self, cx: &mut Context<'_>) -> Result<(), WriteError> {
        if self.primed {
            return Ok(());
        }
        self.primed = true;
        if let Some(body) = self.body.as_mut()
            && let Poll::Ready(frame) = Pin::new(body).poll_frame(cx)
        {
            match self.frame(frame)? {
                Some(next) if next.len() <= COALESCE => {
                    if let Some(head) = self.head.as_mut() {
                        head.put_slice(&next);
                    }
                }
                next => self.queued = next,
            }
        }
        Ok(())
    }

    /// Whether any of the message was written yet: until then, it can be written whole to
    /// another connection.
    pub(crate) fn begun(&self) -> bool {
        self.begun
    }

    /// Whether bytes wait to be written (else, when not done, it waits for the body).
    pub(crate) fn writing(&self) -> bool {
        self.head.is_some() || !self.pending.is_empty() || self.queued.is_some()
    }

    /// Puts `bytes` before the head (before anything is written; after, it does nothing).
    pub(crate) fn prepend(&mut self, bytes: &[u8]) {
        if let Some(head) = self.head.as_mut().filter(|_| !self.begun) {
            let mut both = BytesMut::with_capacity(bytes.len() + head.len());
            both.put_slice(bytes);
            both.put_slice(head);
            *head = both;
        }
    }

    /// Writes what it can to `io`; ready once the whole message is written and flushed.
    pub(crate) fn poll<W>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), WriteError>>
    where
        W: AsyncWrite + Unpin,
    {
        if self.head.is_some() {
            self.prime(cx)?;
        }
        // The head is written from its own buffer (freezing it would allocate).
        while let Some(head) = self.head.as_mut() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, head)).map_err(WriteError::Io)?;
            if n == 0 {
                return Poll::Ready(Err(WriteError::Io(io::ErrorKind::WriteZero.into())));
            }
            head.advance(n);
            self.begun = true;
            if head.is_empty() {
                if let Some(written) = self.head.take() {
                    super::spare::give_back_buffer(written);
                }
                self.pending = self.queued.take().unwrap_or_default();
            }
        }
        loop {
            while !self.pending.is_empty() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.pending))
                    .map_err(WriteError::Io)?;
                if n == 0 {
                    return Poll::Ready(Err(WriteError::Io(io::ErrorKind::WriteZero.into())));
                }
                self.pending.advance(n);
                if self.pending.is_empty()
                    && let Some(queued) = self.queued.take()
                {
                    self.pending = queued;
                }
            }
            // Before waiting for more of the body (or being done): out of any TLS buffer.
            ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(WriteError::Io)?;
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let frame = ready!(Pin::new(body).poll_frame(cx));
            if let Some(next) = self.frame(frame)? {
                self.pending = next;
            }
        }
    }

    /// The bytes that carry one polled frame (`None`: nothing to write for it).
    fn frame(
        &mut self,
        frame: Option<Result<http_body::Frame<Bytes>, B::Error>>,
    ) -> Result<Option<Bytes>, WriteError> {
        let frame = match frame {
            None => {
                self.body = None;
                return match self.framing {
                    Framing::Length(0) | Framing::Empty | Framing::Close => Ok(None),
                    Framing::Length(_) => Err(WriteError::Length),
                    Framing::Chunked => Ok(Some(Bytes::from_static(b"0\r\n\r\n"))),
                };
            }
            Some(Err(e)) => return Err(WriteError::Body(e.into())),
            Some(Ok(frame)) => frame,
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                // Trailers end the body; with a length they have no place to go.
                self.body = None;
                return match (self.framing, frame.into_trailers()) {
                    (Framing::Chunked, Ok(trailers)) => Ok(Some(self.last_chunk(&trailers))),
                    (Framing::Chunked, Err(_)) => Ok(Some(Bytes::from_static(b"0\r\n\r\n"))),
                    // The body ends here: short of its length, the message is cut.
                    (Framing::Length(left), _) if left != 0 => Err(WriteError::Length),
                    _ => Ok(None),
                };
            }
        };
        if data.is_empty() {
            return Ok(None);
        }
        match &mut self.framing {
            Framing::Length(left) => {
                *left = left
                    .checked_sub(data.len() as u64)
                    .ok_or(WriteError::Length)?;
                Ok(Some(data))
            }
            Framing::Close => Ok(Some(data)),
            Framing::Chunked => {
                let mut buf = BytesMut::with_capacity(data.len() + 20);
                buf.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
                buf.put_slice(&data);
                buf.put_slice(b"\r\n");
                Ok(Some(buf.freeze()))
            }
            Framing::Empty => Err(WriteError::Length),
        }
    }

    /// The last chunk with those of `trailers` that may be sent.
    fn last_chunk(&self, trailers: &HeaderMap) -> Bytes {
        let mut buf = BytesMut::from(&b"0\r\n"[..]);
        for (name, value) in trailers {
            let allowed = match &self.trailers {
                Trailers::None => false,
                Trailers::All => true,
                Trailers::Named(names) => names.contains(name),
            };
            if allowed {
                header_line(&mut buf, name.as_str(), value.as_bytes());
            }
        }
        buf.put_slice(b"\r\n");
        buf.freeze()
    }
}

/// Writes `name: value` and its CRLF.
pub(crate) fn header_line(buf: &mut BytesMut, name: &str, value: &[u8]) {
    buf.put_slice(name.as_bytes());
    buf.put_slice(b": ");
    buf.put_slice(value);
    buf.put_slice(b"\r\n");
}

/// Writes a `content-length: n` line, the digits from the stack: a length formatted into a
/// `String` costs an allocation on every message.
pub(crate) fn length_line(buf: &mut BytesMut, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut left = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (left % 10) as u8;
        left /= 10;
        if left == 0 {
            break;
        }
    }
    header_line(buf, "content-length", &digits[at..]);
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;

    /// Takes 5 bytes at most a write, and one write a poll.
    #[derive(Default)]
    struct Trickle {
        written: Vec<u8>,
        wrote: bool,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if std::mem::take(&mut self.wrote) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.wrote = true;
            let n = buf.len().min(5);
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_length_line_gives_every_digit() {
        for n in [0, 7, 10, 4_096, 1_000_000_007, u64::MAX] {
            let mut buf = BytesMut::new();
            length_line(&mut buf, n);
            assert_eq!(buf, format!("content-length: {n}\r\n").as_bytes(), "{n}");
        }
    }

    #[tokio::test]
    async fn a_written_head_leaves_its_buffer_for_the_next() {
        crate::h1::spare::forget();
        let mut head = crate::h1::spare::buffer(256);
        head.put_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        let body = Full::new(Bytes::new());
        let mut out = Outgoing::new(head, body, Framing::Empty, Trailers::None);
        let mut io = Vec::new();
        std::future::poll_fn(|cx| out.poll(&mut io, cx))
            .await
            .unwrap();
        assert_eq!(io, b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(crate::h1::spare::kept_buffers(), 1);
    }

    #[tokio::test]
    async fn a_head_written_in_pieces_goes_whole_with_its_body_and_nothing_before_it_once_begun() {
        let head = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"[..]);
        let body = Full::new(Bytes::from_static(b"hello"));
        let mut out = Outgoing::new(head, body, Framing::Length(5), Trailers::None);
        let mut io = Trickle::default();
        out.prepend(b"HTTP/1.1 100 Continue\r\n\r\n");
        let mut polls = 0;
        std::future::poll_fn(|cx| {
            polls += 1;
            if polls > 1 {
                // Too late once some of the head has gone: ignored.
                out.prepend(b"late");
            }
            out.poll(&mut io, cx)
        })
        .await
        .unwrap();
        assert!(polls > 10, "{polls}");
        assert_eq!(
            String::from_utf8(io.written).unwrap(),
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
        );
    }
}
