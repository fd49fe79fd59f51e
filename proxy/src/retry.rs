//! When a failed attempt may be sent again, and the body that makes a resend possible.
//!
//! The rules:
//! - nothing was sent (connect refused or timed out, or a sidecar refused it with 421):
//!   any method may go again, provided the body can be replayed;
//! - the connection failed after sending began: only idempotent methods, and only when the
//!   whole body so far fits in the replay buffer ([`REPLAY_LIMIT`]);
//! - a non-idempotent request that may have reached an app is never sent again;
//! - nor is one the app answered with something that is not a valid response.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;

use crate::BoxError;

/// Bodies up to this size are kept so that an attempt can be replayed.
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// How an attempt failed, as far as resending is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Nothing reached an app.
    Nothing,
    /// The request may have reached an app.
    Maybe,
    /// It reached an app (or a peer), which answered with something that is not a response
    /// to pass on (not HTTP, framed in a way the engine refuses, a `101` to no upgrade):
    /// sent again, it would be answered the same way. Not sent again, as nginx and HAProxy
    /// by default do not.
    Answered,
}

/// Whether an attempt that failed like `sent` may be made again.
pub fn may_retry(method: &Method, sent: Sent, body: &ReplayBody) -> bool {
    body.replayable()
        && match sent {
            Sent::Nothing => true,
            Sent::Maybe => is_idempotent(method),
            Sent::Answered => false,
        }
}

/// RFC 9110 §9.2.2 idempotent methods.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

enum Piece {
    Data(Bytes),
    Trailers(HeaderMap),
}

struct Shared {
    /// Frames read so far, while they fit in the limit.
    kept: Vec<Piece>,
    kept_len: usize,
    /// The kept frames no longer cover what was read, or reading it failed: no replay
    /// possible.
    overflowed: bool,
    /// The original body, read by whichever attempt is current.
    source: Option<UnsyncBoxBody<Bytes, BoxError>>,
    source_done: bool,
    /// Only the newest attempt may read; an older one (still held by a dying connection)
    /// gets an error instead of stealing frames.
    current: u64,
    /// What the original body failed with, if it did ([`ReplayBody::failure`]).
    failure: Option<Arc<dyn std::error::Error + Send + Sync>>,
    limit: usize,
    hint: SizeHint,
}

/// A request body that can be sent again while what was read of it fits in a buffer.
///
/// [`ReplayBody::new`] gives a handle that is never sent itself; each attempt sends
/// [`ReplayBody::attempt`], which first replays what earlier attempts read, then continues
/// with the original.
pub struct ReplayBody {
    kept: Kept,
    id: u64,
    pos: usize,
}

/// What the attempts share.
#[derive(Clone)]
enum Kept {
    /// The body had ended when it was wrapped (a GET's, most often): nothing is left to
    /// read or keep, so nothing is shared or locked either (and nothing allocated). (Small:
    /// a request's whole future must stay under 1 KiB, `proxy`.)
    Ended { limit: usize },
    /// Read by the current attempt, kept for the next.
    Read(Arc<Mutex<Shared>>),
}

impl Kept {
    /// What the attempts share, locked; `None` for a body that had ended.
    fn lock(&self) -> Option<MutexGuard<'_, Shared>> {
        match self {
            Kept::Ended { .. } => None,
            Kept::Read(shared) => Some(locked(shared)),
        }
    }
}

fn locked(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain data behind; keep going.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polled after a newer attempt took over.
#[derive(Debug, thiserror::Error)]
#[error("request body was taken over by a newer attempt")]
pub struct Superseded;

/// The error the client's body failed with, as the attempt reading it gets it: the same
/// text and causes, shared with [`ReplayBody::failure`].
#[derive(Clone, Debug)]
pub struct BodyFailed(Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl ReplayBody {
    /// Wraps `body`, keeping up to `limit` bytes for replay.
    pub fn new<B>(body: B, limit: usize) -> ReplayBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        if body.is_end_stream() {
            return ReplayBody {
                kept: Kept::Ended { limit },
                id: 0,
                pos: 0,
            };
        }
        let hint = body.size_hint();
        let shared = Shared {
            kept: Vec::new(),
            kept_len: 0,
            overflowed: false,
            source: Some(body.map_err(Into::into).boxed_unsync()),
            source_done: false,
            current: 0,
            failure: None,
            limit,
            hint,
        };
        ReplayBody {
            kept: Kept::Read(Arc::new(Mutex::new(shared))),
            id: 0,
            pos: 0,
        }
    }

    /// Whether another attempt could send the whole body.
    pub fn replayable(&self) -> bool {
        self.kept.lock().is_none_or(|shared| !shared.overflowed)
    }

    /// The replay budget the request body left unused, once all of it has been read and
    /// kept: what a standby may spend holding back a response ([`crate::proxy`]), so that
    /// a request never keeps more than `limit` bytes. `None` while the body is still being
    /// read, or when it did not fit.
    pub fn spare(&self) -> Option<usize> {
        match &self.kept {
            Kept::Ended { limit } => Some(*limit),
            Kept::Read(shared) => {
                let shared = locked(shared);
                (shared.source_done && !shared.overflowed).then(|| shared.limit - shared.kept_len)
            }
        }
    }

    /// What the client's body failed with, if it did (it broke its framing, or came too
    /// slowly): whichever client sent the attempt, and however it reported the failure (the
    /// HTTP/2 client's says only that the stream was reset), this is why the attempt failed.
    pub fn failure(&self) -> Option<Arc<dyn std::error::Error + Send + Sync>> {
        self.kept.lock()?.failure.clone()
    }

    /// A body for the next attempt, or `None` when the body can no longer be replayed.
    pub fn attempt(&self) -> Option<ReplayBody> {
        let mut id = 0;
        if let Some(mut shared) = self.kept.lock() {
            if shared.overflowed {
                return None;
            }
            shared.current += 1;
            id = shared.current;
        }
        Some(ReplayBody {
            kept: self.kept.clone(),
            id,
            pos: 0,
        })
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(mut shared) = this.kept.lock() else {
            return Poll::Ready(None);
        };
        if shared.current != this.id {
            return Poll::Ready(Some(Err(Superseded.into())));
        }
        if let Some(piece) = shared.kept.get(this.pos) {
            this.pos += 1;
            return Poll::Ready(Some(Ok(match piece {
                Piece::Data(d) => Frame::data(d.clone()),
                Piece::Trailers(t) => Frame::trailers(t.clone()),
            })));
        }
        if shared.source_done {
            return Poll::Ready(None);
        }
        let Some(source) = shared.source.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(source).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                shared.source_done = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => {
                // What follows an error (a clean end, say) is not the body the client sent:
                // no attempt may replay it as one.
                shared.overflowed = true;
                shared.kept = Vec::new();
                let failure: Arc<dyn std::error::Error + Send + Sync> = Arc::from(e);
                shared.failure = Some(failure.clone());
                return Poll::Ready(Some(Err(BodyFailed(failure).into())));
            }
            // Every attempt's body comes through here, whatever the protocols on either side:
            // the one place a request's trailers are cleaned.
            Poll::Ready(Some(Ok(frame))) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    crate::headers::strip_request_trailers(&mut trailers);
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            },
        };
        if !shared.overflowed {
            let piece = if let Some(d) = frame.data_ref() {
                Some(Piece::Data(d.clone()))
            } else {
                frame.trailers_ref().map(|t| Piece::Trailers(t.clone()))
            };
            let len = frame.data_ref().map_or(0, Bytes::len);
            if shared.kept_len + len > shared.limit {
                shared.overflowed = true;
                shared.kept = Vec::new();
            } else if let Some(piece) = piece {
                shared.kept_len += len;
                shared.kept.push(piece);
                this.pos = shared.kept.len();
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.kept
            .lock()
            .is_none_or(|shared| shared.source_done && self.pos >= shared.kept.len())
    }

    fn size_hint(&self) -> SizeHint {
        self.kept
            .lock()
            .map_or_else(|| SizeHint::with_exact(0), |shared| shared.hint)
    }
}

#[cfg(test)]
mod tests;
