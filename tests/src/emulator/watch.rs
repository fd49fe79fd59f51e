//! Watch streams: newline-delimited JSON events over a chunked response.
//!
//! A watch is a cursor over the store's history. It wakes on commits, on fault changes and
//! on its bookmark and timeout timers; each event goes out as its own chunk.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::watch as signal;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::faults::{WatchState, WatchTicket};
use super::resources::ResourceType;
use super::routes::{Caller, Query, ResourceRoute};
use super::schema;
use super::selectors::{FieldSelector, LabelSelector};
use super::server::Shared;
use super::status::{ApiError, Body};
use super::store::{EventType, StoredEvent, TooOld};
use super::table::{self, Include};

/// The real server's default when a client sets no `timeoutSeconds` (`--min-request-timeout`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Filter {
    rt: &'static ResourceType,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    table: Option<Include>,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        let ns_ok = self.namespace.as_deref().is_none_or(|ns| {
            obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
        });
        ns_ok && self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// One event line; the object as the endpoint shows it.
    fn line(&self, ty: &str, stored: &Value) -> Bytes {
        let shown = schema::encode(self.rt, stored);
        let object = match self.table {
            Some(include) => table::render(self.rt, &[(stored, shown)], json!({}), include),
            None => shown,
        };
        let mut line = serde_json::to_vec(&json!({ "type": ty, "object": object }))
            .expect("JSON values serialise");
        line.push(b'\n');
        Bytes::from(line)
    }

    /// The line a committed change produces for this watcher, if any. A change that moves an
    /// object into or out of the selection is an ADDED or DELETED, as the watch cache sends.
    fn render(&self, ev: &StoredEvent) -> Option<Bytes> {
        if ev.storage != self.rt.storage {
            return None;
        }
        let now = self.matches(&ev.object);
        let before = ev.prev.as_deref().is_some_and(|p| self.matches(p));
        match (ev.kind, before, now) {
            (EventType::Added, _, true) => Some(self.line("ADDED", &ev.object)),
            (EventType::Modified, true, true) => Some(self.line("MODIFIED", &ev.object)),
            (EventType::Modified, false, true) => Some(self.line("ADDED", &ev.object)),
            (EventType::Modified, true, false) => {
                let mut gone = ev.prev.as_deref().cloned().unwrap_or(Value::Null);
                gone["metadata"]["resourceVersion"] = json!(ev.rv.to_string());
                Some(self.line("DELETED", &gone))
            }
            (EventType::Deleted, _, true) => Some(self.line("DELETED", &ev.object)),
            _ => None,
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let object =
            json!({ "kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta });
        let mut line = serde_json::to_vec(&json!({ "type": "BOOKMARK", "object": object }))
            .expect("JSON values serialise");
        line.push(b'\n');
        Bytes::from(line)
    }
}

struct Session {
    sh: Arc<Shared>,
    filter: Filter,
    cursor: u64,
    pending: VecDeque<Bytes>,
    commits: signal::Receiver<u64>,
    fault_changes: signal::Receiver<u64>,
    ticket: WatchTicket,
    deadline: Instant,
    bookmarks: Option<Interval>,
    /// The history ran out (410 sent) or the timeout passed: end after `pending`.
    finished: bool,
}

type Item = Result<Frame<Bytes>, std::io::Error>;

impl Session {
    async fn next(&mut self) -> Option<Item> {
        loop {
            match self.ticket.state() {
                WatchState::Cut => {
                    return Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "watch cut by fault injection",
                    )));
                }
                // A partitioned client hears nothing, not even the timeout; wait for a heal.
                WatchState::Silent => {
                    if self.fault_changes.changed().await.is_err() {
                        return None;
                    }
                    continue;
                }
                WatchState::Live => {}
            }
            if let Some(chunk) = self.pending.pop_front() {
                return Some(Ok(Frame::data(chunk)));
            }
            if self.finished || Instant::now() >= self.deadline {
                return None;
            }
            self.commits.borrow_and_update();
            match self.sh.store.events_after(self.cursor) {
                Ok(events) => {
                    for ev in &events {
                        self.cursor = ev.rv;
                        self.pending.extend(self.filter.render(ev));
                    }
                }
                Err(TooOld(oldest)) => {
                    let status = ApiError::expired(self.cursor, oldest).to_status();
                    let mut line =
                        serde_json::to_vec(&json!({ "type": "ERROR", "object": status }))
                            .expect("JSON values serialise");
                    line.push(b'\n');
                    self.pending.push_back(Bytes::from(line));
                    self.finished = true;
                }
            }
            if !self.pending.is_empty() {
                continue;
            }
            let bookmarks = &mut self.bookmarks;
            let bookmark = async {
                match bookmarks {
                    Some(t) => drop(t.tick().await),
                    None => std::future::pending().await,
                }
            };
            let woke = tokio::select! {
                r = self.commits.changed() => r.map(|()| Wake::Changed),
                r = self.fault_changes.changed() => r.map(|()| Wake::Changed),
                () = tokio::time::sleep_until(self.deadline) => Ok(Wake::Changed),
                () = bookmark => Ok(Wake::Bookmark),
            };
            match woke {
                // The store or the fault table is gone: the emulator is shutting down.
                Err(_) => return None,
                Ok(Wake::Changed) => {}
                Ok(Wake::Bookmark) => {
                    let line = self.filter.bookmark(self.cursor, false);
                    self.pending.push_back(line);
                }
            }
        }
    }
}

/// Why a waiting watch woke up.
enum Wake {
    /// A commit, a fault change or the deadline: look again.
    Changed,
    Bookmark,
}

/// Where a watch starts.
enum Start {
    /// Synthetic ADDED events for the current state first; optionally the end bookmark.
    Current {
        initial: bool,
        end_bookmark: bool,
    },
    After(u64),
}

fn start_point(query: &Query) -> Result<Start, ApiError> {
    let rv = query.get("resourceVersion").unwrap_or("");
    let send_initial = query.get("sendInitialEvents");
    if send_initial == Some("true") {
        if query.get("resourceVersionMatch") != Some("NotOlderThan")
            || !query.flag("allowWatchBookmarks")
        {
            let err = super::validate::FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled and allowWatchBookmarks is true and resourceVersionMatch is NotOlderThan",
            );
            return Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", &[err]));
        }
        return Ok(Start::Current {
            initial: true,
            end_bookmark: true,
        });
    }
    match rv {
        "" | "0" => Ok(Start::Current {
            initial: send_initial != Some("false"),
            end_bookmark: false,
        }),
        rv => rv
            .parse()
            .map(Start::After)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}"))),
    }
}

/// Open a watch: validate its parameters, then stream.
pub(crate) fn start(
    sh: &Arc<Shared>,
    rr: ResourceRoute,
    accept: &str,
    query: &Query,
    caller: Caller,
) -> Result<Response<Body>, ApiError> {
    let rt = rr.rt;
    let mut field_sel = query.get("fieldSelector").unwrap_or("").to_string();
    if let Some(name) = &rr.name {
        // The deprecated watch-one-object path is a name selector in disguise.
        field_sel = format!(
            "metadata.name={name}{}{field_sel}",
            if field_sel.is_empty() { "" } else { "," }
        );
    }
    let table = table::wanted(accept).then(|| Include::parse(query.get("includeObject")));
    let filter = Filter {
        rt,
        namespace: rr.namespace,
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(&field_sel, rt)?,
        table,
    };
    let start = start_point(query)?;
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let bookmarks = query.flag("allowWatchBookmarks").then(|| {
        let mut t =
            tokio::time::interval_at(Instant::now() + sh.bookmark_interval, sh.bookmark_interval);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    let mut pending = VecDeque::new();
    let cursor = match start {
        Start::After(rv) => rv,
        Start::Current {
            initial,
            end_bookmark,
        } => {
            let (rv, objects) = sh.store.list(rt.storage, filter.namespace.as_deref());
            if initial {
                pending.extend(
                    objects
                        .iter()
                        .filter(|o| filter.matches(o))
                        .map(|o| filter.line("ADDED", o)),
                );
            }
            if end_bookmark {
                pending.push_back(filter.bookmark(rv, true));
            }
            rv
        }
    };
    let session = Session {
        sh: sh.clone(),
        filter,
        cursor,
        pending,
        commits: sh.store.subscribe(),
        fault_changes: sh.faults.subscribe(),
        ticket: sh.faults.register_watch(&caller.client, caller.ip),
        deadline: Instant::now() + timeout,
        bookmarks,
        finished: false,
    };
    let chunks = stream::unfold(session, |mut s| async move {
        s.next().await.map(|item| (item, s))
    });
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(chunks)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
