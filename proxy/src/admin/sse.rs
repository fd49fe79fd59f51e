//! `GET /watch`: leadership changes as a server-sent event stream (`text/event-stream`).
//!
//! Each event is
//!
//! ```text
//! event: view
//! data: {"identity":"pod-b","role":"follower","acting":false,"slot":null,"slots":[...],"failsafe":false}
//!
//! ```
//!
//! `identity` is this pod; `role` its role (`leader`, `follower`, `candidate`); `acting`
//! whether it acts as leader now; `slot` the slot it holds (or null); `slots` one entry per
//! slot as in `/status` (`slot`, `lease`, `role`, `holder`, `address`, `epoch`, `mine`,
//! `failsafe`); `failsafe` whether it acts on its members' confirmations now. One event is
//! sent at once, then one each time that JSON changes (a republished view that changes
//! nothing sends nothing; an acting deadline that passes does). After
//! [`KEEP_ALIVE`] without an event a comment line `: keep-alive` is sent.
//!
//! Cheap and never in the way: each stream reads its own clone of the watch channel (a watch
//! channel's sender never waits for its readers), keeps only the last JSON it sent, and sends
//! only the latest state when its client reads again, so a slow reader holds nothing back and
//! nothing queues. At most [`MAX_WATCHERS`] streams are open at once; one more is answered 503.
//! A stream ends when its client leaves or the election ends (its channel closes at shutdown).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use prometheus::IntGauge;
use serde::Serialize;
use tokio::sync::watch;
use understudy_elector::{Role, Slots, View};

use super::{SlotStatus, slot_status, text};
use crate::{BoxError, ProxyBody};

/// Most `/watch` streams open at once per sidecar.
pub const MAX_WATCHERS: usize = 64;

/// Longest silence on a stream before a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

const KEEP_ALIVE_LINE: &[u8] = b": keep-alive\n\n";

/// The open streams, shared by every clone of the admin server.
#[derive(Clone)]
pub(super) struct Watchers {
    open: Arc<AtomicUsize>,
    gauge: IntGauge,
}

impl Watchers {
    pub(super) fn new(gauge: IntGauge) -> Watchers {
        Watchers {
            open: Arc::new(AtomicUsize::new(0)),
            gauge,
        }
    }

    /// Streams open now.
    #[cfg(test)]
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// A place for one more stream, unless [`MAX_WATCHERS`] are open.
    fn admit(&self) -> Option<Place> {
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_WATCHERS).then_some(n + 1)
            })
            .ok()?;
        self.gauge.inc();
        Some(Place(self.clone()))
    }
}

/// One stream's place; given back when the stream is dropped.
struct Place(Watchers);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.gauge.dec();
    }
}

/// What a stream reads: the per-slot view when the election has slots, else the one view.
pub(super) enum Source {
    View(watch::Receiver<View>),
    Slots(watch::Receiver<Slots>),
}

impl Source {
    async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        match self {
            Source::View(rx) => rx.changed().await,
            Source::Slots(rx) => rx.changed().await,
        }
    }

    /// The event's JSON now, and when it changes by itself (the acting deadline).
    fn render(&mut self, now: Instant) -> (String, Option<Instant>) {
        match self {
            Source::View(rx) => {
                let view = rx.borrow_and_update().clone();
                let held = (view.role == Role::Leader).then_some(0);
                render(
                    &Slots {
                        views: vec![view],
                        held,
                        eligible: true,
                    },
                    now,
                )
            }
            Source::Slots(rx) => render(&rx.borrow_and_update(), now),
        }
    }
}

/// One event's data.
#[derive(Serialize)]
struct Event<'a> {
    identity: &'a str,
    #[serde(serialize_with = "super::role")]
    role: Role,
    acting: bool,
    slot: Option<usize>,
    slots: Vec<SlotStatus>,
    failsafe: bool,
}

fn render(slots: &Slots, now: Instant) -> (String, Option<Instant>) {
    let me = slots.routing_view();
    let acting = me.is_acting(now);
    let event = Event {
        identity: &me.identity,
        role: me.role,
        acting,
        slot: slots.held,
        slots: slot_status(slots),
        failsafe: acting && me.failsafe,
    };
    let json = serde_json::to_string(&event).unwrap_or_default();
    (json, me.acting_until.filter(|_| acting))
}

/// One open stream.
struct Stream {
    source: Source,
    /// The JSON of the last event sent; none before the first.
    last: Option<String>,
    /// When the acting deadline passes (the event changes without a new view).
    wake: Option<Instant>,
    /// When the last line was sent.
    sent: tokio::time::Instant,
    _place: Place,
}

impl Stream {
    /// The next bytes to send; none once the channel has closed.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.last.is_some() {
                let wake = self.wake.map(tokio::time::Instant::from_std);
                tokio::select! {
                    changed = self.source.changed() => changed.ok()?,
                    _ = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)),
                        if wake.is_some() => {}
                    _ = tokio::time::sleep_until(self.sent + KEEP_ALIVE) => {
                        self.sent = tokio::time::Instant::now();
                        return Some(Bytes::from_static(KEEP_ALIVE_LINE));
                    }
                }
            }
            let (json, wake) = self.source.render(crate::now());
            self.wake = wake;
            if self.last.as_ref() != Some(&json) {
                let event = format!("event: view\ndata: {json}\n\n");
                self.last = Some(json);
                self.sent = tokio::time::Instant::now();
                return Some(Bytes::from(event));
            }
        }
    }
}

/// Answers `GET /watch`: the stream, or 503 when [`MAX_WATCHERS`] are open.
pub(super) fn respond(watchers: &Watchers, source: Source) -> Response<ProxyBody> {
    let Some(place) = watchers.admit() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("too many watchers: at most {MAX_WATCHERS} /watch streams at once\n"),
        );
    };
    let stream = Stream {
        source,
        last: None,
        wake: None,
        sent: tokio::time::Instant::now(),
        _place: place,
    };
    let frames = futures::stream::unfold(stream, |mut stream| async move {
        let bytes = stream.next().await?;
        Some((Ok::<_, BoxError>(Frame::data(bytes)), stream))
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
