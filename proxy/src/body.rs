//! The two body wrappers the request path needs, each in one place:
//!
//! - [`Cut`] ends a body with an error once a future resolves: the request body's deadline
//!   (`--body-timeout`, [`crate::limits::body_deadline`]) and a streaming response from the
//!   local app once its leadership is over ([`crate::tenure::fenced`]);
//! - [`Keep`] keeps a value alive for as long as its body: the request's place within
//!   `--max-requests`, the token of a request on the local app, a standby's count of what
//!   is outstanding at an active.
//!
//! Both pass the inner body's frames, end and size hint through unchanged, and give errors
//! as [`BoxError`], the error of every body the proxy sends.
//!
//! [`EngineOrHyper`] is a body read by understudy's HTTP/1 engine or by hyper (HTTP/2, and
//! upgrades): a request's as the server hands it on, a response's from the app or a peer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::BoxError;

/// A body that ends with the error its `cut` future gives, if that resolves first. Frames
/// already there are passed on first, so a body that has arrived is read whole even after
/// the cut. Once cut, it never ends cleanly: every later poll that finds no frame gives the
/// error again, so that nobody (a resend, say) takes a cut body for a whole one.
///
/// The cut is polled only while the body waits, and boxed (to be pinned) only then: a small
/// response, which arrives with its head, never waits, and costs no allocation for it.
pub struct Cut<B, F> {
    inner: B,
    state: CutState<F>,
}

enum CutState<F> {
    /// Not polled yet, so not pinned either.
    Unarmed(F),
    Armed(Pin<Box<F>>),
    /// The cut's message, for the polls after the first error.
    Cut(String),
}

// The cut is pinned only in its box, never in place.
impl<B: Unpin, F> Unpin for Cut<B, F> {}

impl<B, F: Future<Output = BoxError>> Cut<B, F> {
    /// `inner`, cut with the error `cut` resolves to.
    pub fn new(inner: B, cut: F) -> Cut<B, F> {
        Cut {
            inner,
            state: CutState::Unarmed(cut),
        }
    }

    /// The cut, polled while the body waits; boxed the first time.
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.state {
            CutState::Cut(message) => Poll::Ready(Some(Err(message.clone().into()))),
            CutState::Armed(cut) => match cut.as_mut().poll(cx) {
                Poll::Ready(error) => {
                    self.state = CutState::Cut(error.to_string());
                    Poll::Ready(Some(Err(error)))
                }
                Poll::Pending => Poll::Pending,
            },
            CutState::Unarmed(_) => {
                let placeholder = CutState::Cut(String::new());
                if let CutState::Unarmed(cut) = std::mem::replace(&mut self.state, placeholder) {
                    self.state = CutState::Armed(Box::pin(cut));
                }
                self.poll_cut(cx)
            }
        }
    }
}

impl<B, F> Body for Cut<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    F: Future<Output = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        this.poll_cut(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that keeps `kept` alive until it is dropped.
pub struct Keep<B, T> {
    inner: B,
    _kept: T,
}

impl<B, T> Keep<B, T> {
    /// `inner`, keeping `kept` for as long as it lives.
    pub fn new(inner: B, kept: T) -> Keep<B, T> {
        Keep { inner, _kept: kept }
    }
}

impl<B, T> Body for Keep<B, T>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    T: Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body read by understudy's HTTP/1 engine ([`crate::h1`]), or by hyper.
#[derive(Debug)]
pub enum EngineOrHyper<E> {
    /// Read by the engine (HTTP/1).
    Engine(E),
    /// Read by hyper (HTTP/2, and the upgrades of [`crate::upgrade`]).
    Hyper(hyper::body::Incoming),
}

impl<E> Body for EngineOrHyper<E>
where
    E: Body<Data = Bytes> + Unpin,
    E::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            EngineOrHyper::Engine(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            EngineOrHyper::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EngineOrHyper::Engine(b) => b.is_end_stream(),
            EngineOrHyper::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EngineOrHyper::Engine(b) => b.size_hint(),
            EngineOrHyper::Hyper(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests;
