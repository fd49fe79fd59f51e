//! The object store: etcd's part in the real server.
//!
//! One global, strictly increasing resourceVersion; every write that changes an object bumps
//! it by one and appends one event to a bounded history, which is what watches resume from.
//! Writes are read-modify-write closures run under one lock, so compare-and-swap is exact.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::resources::{self, ResourceType};
use super::rng::SplitMix64;
use super::schema;
use super::status::ApiError;

/// The type of a change, as a watch reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One committed change.
#[derive(Clone, Debug)]
pub(crate) struct StoredEvent {
    pub rv: u64,
    pub kind: EventType,
    pub storage: &'static str,
    /// The object after the change; for a delete, the last state with the delete's rv.
    pub object: Arc<Value>,
    /// The object before the change (for selector transitions).
    pub prev: Option<Arc<Value>>,
}

/// What a write closure decided.
pub(crate) enum Change {
    /// Store this object (system metadata is filled in by the store).
    Put(Value),
    Delete,
}

/// What a write did.
#[derive(Debug)]
pub(crate) enum Outcome {
    Created(Arc<Value>),
    Updated(Arc<Value>),
    /// The new object equalled the stored one: nothing written, no rv bump, no event.
    Unchanged(Arc<Value>),
    /// The object as it was before the delete.
    Deleted(Arc<Value>),
}

type Key = (&'static str, String, String);

struct State {
    rv: u64,
    objects: BTreeMap<Key, Arc<Value>>,
    history: VecDeque<StoredEvent>,
    rng: SplitMix64,
}

/// The shared store behind the API routes and [`StoreHandle`].
pub(crate) struct Store {
    state: Mutex<State>,
    window: usize,
    latest: watch::Sender<u64>,
}

/// The requested resourceVersion is older than the history holds; carries the oldest rv a
/// watch can still start from, as the real "too old resource version: X (Y)" message shows.
#[derive(Debug)]
pub(crate) struct TooOld(pub u64);

// === impl Store ===

impl Store {
    /// An empty store. It starts at resourceVersion 1 so that no list ever reports "0", which
    /// means "any version" to a watch.
    pub fn new(window: usize, seed: u64) -> Self {
        let state = State {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            rng: SplitMix64::new(seed),
        };
        Self {
            state: Mutex::new(state),
            window,
            latest: watch::channel(1).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (writes are whole), so go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current global resourceVersion.
    pub fn rv(&self) -> u64 {
        self.lock().rv
    }

    /// Wakes on every commit with the new resourceVersion.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// A random suffix for `generateName`.
    pub fn name_suffix(&self) -> String {
        self.lock().rng.name_suffix(5)
    }

    /// One object.
    pub fn get(&self, storage: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        let key = (storage_key(storage)?, ns.to_string(), name.to_string());
        self.lock().objects.get(&key).cloned()
    }

    /// All objects of a bucket (optionally one namespace), with the rv they are consistent at.
    pub fn list(&self, storage: &str, ns: Option<&str>) -> (u64, Vec<Arc<Value>>) {
        let st = self.lock();
        let items = st
            .objects
            .iter()
            .filter(|((s, n, _), _)| *s == storage && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v.clone())
            .collect();
        (st.rv, items)
    }

    /// Every event after `cursor`, or [`TooOld`] if some of them left the history.
    pub fn events_after(&self, cursor: u64) -> Result<Vec<StoredEvent>, TooOld> {
        let st = self.lock();
        if cursor >= st.rv {
            return Ok(Vec::new());
        }
        // Event rvs are contiguous (each bump is one event), so index arithmetic finds the start.
        let oldest = st.history.front().map_or(st.rv + 1, |e| e.rv);
        if cursor + 1 < oldest {
            return Err(TooOld(oldest - 1));
        }
        Ok(st
            .history
            .iter()
            .skip((cursor + 1 - oldest) as usize)
            .cloned()
            .collect())
    }

    /// Read-modify-write one object atomically. `f` sees the current object and decides.
    pub fn mutate<F>(
        &self,
        storage: &'static str,
        ns: &str,
        name: &str,
        f: F,
    ) -> Result<Outcome, ApiError>
    where
        F: FnOnce(Option<&Arc<Value>>) -> Result<Change, ApiError>,
    {
        let mut st = self.lock();
        let key = (storage, ns.to_string(), name.to_string());
        let old = st.objects.get(&key).cloned();
        match f(old.as_ref())? {
            Change::Put(mut obj) => {
                let meta = obj["metadata"]
                    .as_object_mut()
                    .ok_or_else(|| ApiError::internal("object without metadata"))?;
                meta.insert("namespace".into(), json!(ns));
                meta.insert("name".into(), json!(name));
                match &old {
                    Some(old) => {
                        let om = &old["metadata"];
                        if meta.get("uid").is_none_or(|u| u.as_str() == Some("")) {
                            meta.insert("uid".into(), om["uid"].clone());
                        }
                        meta.insert("creationTimestamp".into(), om["creationTimestamp"].clone());
                        meta.insert("resourceVersion".into(), om["resourceVersion"].clone());
                        if obj == **old {
                            return Ok(Outcome::Unchanged(old.clone()));
                        }
                    }
                    None => {
                        let uid = st.rng.uuid();
                        meta.insert("uid".into(), json!(uid));
                        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
                    }
                }
                let rv = st.rv + 1;
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                let obj = Arc::new(obj);
                st.objects.insert(key, obj.clone());
                let kind = if old.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                self.commit(
                    &mut st,
                    StoredEvent {
                        rv,
                        kind,
                        storage,
                        object: obj.clone(),
                        prev: old.clone(),
                    },
                );
                Ok(if old.is_some() {
                    Outcome::Updated(obj)
                } else {
                    Outcome::Created(obj)
                })
            }
            Change::Delete => {
                let Some(old) = old else {
                    return Err(ApiError::internal("delete of a missing object"));
                };
                st.objects.remove(&key);
                let rv = st.rv + 1;
                let mut gone = (*old).clone();
                gone["metadata"]["resourceVersion"] = json!(rv.to_string());
                let event = StoredEvent {
                    rv,
                    kind: EventType::Deleted,
                    storage,
                    object: Arc::new(gone),
                    prev: Some(old.clone()),
                };
                self.commit(&mut st, event);
                Ok(Outcome::Deleted(old))
            }
        }
    }

    fn commit(&self, st: &mut State, event: StoredEvent) {
        st.rv = event.rv;
        st.history.push_back(event);
        while st.history.len() > self.window {
            st.history.pop_front();
        }
        self.latest.send_replace(st.rv);
    }
}

fn storage_key(storage: &str) -> Option<&'static str> {
    resources::by_storage(storage).map(|rt| rt.storage)
}

/// `metav1.Time` of now: RFC 3339, whole seconds, UTC.
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Why [`StoreHandle::put`] refused an object.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource is not one the emulator serves.
    #[error("unknown resource {0:?} (the store holds leases, pods and events)")]
    UnknownResource(String),
    /// The object has no `metadata.name`.
    #[error("{resource} object has no metadata.name")]
    MissingName {
        /// The resource the object was put to.
        resource: String,
    },
    /// The object does not decode as its type (e.g. a string where a number belongs).
    #[error("{resource} object does not decode: {source}")]
    Decode {
        /// The resource the object was put to.
        resource: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

/// Direct access to the emulator's objects, for tests and the harness.
///
/// `resource` is the plural name: `"leases"`, `"pods"` or `"events"` (core/v1 shape). Writes
/// skip validation and preconditions but otherwise behave like API writes: they bump the
/// resourceVersion, fill uid/creationTimestamp, and reach open watches.
#[derive(Clone)]
pub struct StoreHandle {
    pub(crate) store: Arc<Store>,
}

// === impl StoreHandle ===

impl StoreHandle {
    fn resource(resource: &str) -> Result<&'static ResourceType, StoreError> {
        resources::by_storage(resource)
            .ok_or_else(|| StoreError::UnknownResource(resource.to_string()))
    }

    /// One object, as the API would return it.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.store
            .get(resource, namespace, name)
            .map(|v| (*v).clone())
    }

    /// All objects of a resource, in one namespace or (with `None`) all.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        self.store
            .list(resource, namespace)
            .1
            .into_iter()
            .map(|v| (*v).clone())
            .collect()
    }

    /// Create or replace an object, unconditionally. A missing namespace means "default";
    /// apiVersion and kind may be omitted. Returns the stored object.
    pub fn put(&self, resource: &str, mut object: Value) -> Result<Value, StoreError> {
        let rt = Self::resource(resource)?;
        let missing_name = || StoreError::MissingName {
            resource: resource.to_string(),
        };
        let obj = object.as_object_mut().ok_or_else(missing_name)?;
        obj.entry("apiVersion")
            .or_insert_with(|| json!(rt.api_version()));
        obj.entry("kind").or_insert_with(|| json!(rt.kind));
        let decode = |source| StoreError::Decode {
            resource: resource.to_string(),
            source,
        };
        let mut object = schema::normalize(rt.schema, object).map_err(decode)?;
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(missing_name)?
            .to_string();
        let ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        let outcome = self
            .store
            .mutate(rt.storage, &ns, &name, |_| Ok(Change::Put(object)));
        match outcome {
            Ok(
                Outcome::Created(v)
                | Outcome::Updated(v)
                | Outcome::Unchanged(v)
                | Outcome::Deleted(v),
            ) => Ok((*v).clone()),
            // Only an object without metadata fails a put, and normalising always adds it.
            Err(_) => Err(missing_name()),
        }
    }

    /// Delete an object; returns it, or `None` if it did not exist.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = Self::resource(resource).ok()?;
        let outcome = self
            .store
            .mutate(rt.storage, namespace, name, |cur| match cur {
                Some(_) => Ok(Change::Delete),
                None => Err(ApiError::not_found(rt, name)),
            });
        match outcome {
            Ok(Outcome::Deleted(v)) => Some((*v).clone()),
            _ => None,
        }
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.store.rv()
    }
}
