//! The resource types the emulator serves, with the registry strategy flags that decide
//! behaviour (`AllowCreateOnUpdate`, `AllowUnconditionalUpdate`, `ReturnDeletedObject`).

/// Which schema (typed decoding, validation, printing) a resource uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Schema {
    Lease,
    Pod,
    /// core/v1 Event, the storage form of every Event.
    CoreEvent,
    /// events.k8s.io/v1 Event: converted to and from the core form at the endpoint.
    EventsV1,
}

/// One served group/version/resource.
#[derive(Debug)]
pub(crate) struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub short_names: &'static [&'static str],
    /// Store bucket; both Event APIs share "events", as they share etcd keys.
    pub storage: &'static str,
    pub schema: Schema,
    pub allow_create_on_update: bool,
    pub allow_unconditional_update: bool,
    pub return_deleted_object: bool,
    /// Field selector labels, each mapped to a JSON pointer into the stored object.
    pub fields: &'static [(&'static str, &'static str)],
}

// === impl ResourceType ===

impl ResourceType {
    /// `group/version`, or just `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `leases.coordination.k8s.io`, or `pods` for the core group (as error messages print it).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind of the list type.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

const META_FIELDS: [(&str, &str); 2] = [
    ("metadata.name", "/metadata/name"),
    ("metadata.namespace", "/metadata/namespace"),
];

/// coordination.k8s.io/v1 leases (`pkg/registry/coordination/lease`).
pub(crate) static LEASES: ResourceType = ResourceType {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    singular: "lease",
    kind: "Lease",
    short_names: &[],
    storage: "leases",
    schema: Schema::Lease,
    allow_create_on_update: true,
    allow_unconditional_update: false,
    return_deleted_object: false,
    fields: &META_FIELDS,
};

/// core/v1 pods (`pkg/registry/core/pod`).
pub(crate) static PODS: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "pods",
    singular: "pod",
    kind: "Pod",
    short_names: &["po"],
    storage: "pods",
    schema: Schema::Pod,
    allow_create_on_update: false,
    allow_unconditional_update: true,
    return_deleted_object: true,
    fields: &[
        META_FIELDS[0],
        META_FIELDS[1],
        ("spec.nodeName", "/spec/nodeName"),
        ("spec.restartPolicy", "/spec/restartPolicy"),
        ("spec.schedulerName", "/spec/schedulerName"),
        ("spec.serviceAccountName", "/spec/serviceAccountName"),
        ("spec.hostNetwork", "/spec/hostNetwork"),
        ("status.phase", "/status/phase"),
        ("status.podIP", "/status/podIP"),
        ("status.nominatedNodeName", "/status/nominatedNodeName"),
    ],
};

const EVENT_FIELDS: [(&str, &str); 13] = [
    META_FIELDS[0],
    META_FIELDS[1],
    ("involvedObject.kind", "/involvedObject/kind"),
    ("involvedObject.namespace", "/involvedObject/namespace"),
    ("involvedObject.name", "/involvedObject/name"),
    ("involvedObject.uid", "/involvedObject/uid"),
    ("involvedObject.apiVersion", "/involvedObject/apiVersion"),
    (
        "involvedObject.resourceVersion",
        "/involvedObject/resourceVersion",
    ),
    ("involvedObject.fieldPath", "/involvedObject/fieldPath"),
    ("reason", "/reason"),
    ("reportingComponent", "/reportingComponent"),
    ("source", "/source/component"),
    ("type", "/type"),
];

/// core/v1 events (`pkg/registry/core/event`).
pub(crate) static CORE_EVENTS: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "events",
    singular: "event",
    kind: "Event",
    short_names: &["ev"],
    storage: "events",
    schema: Schema::CoreEvent,
    allow_create_on_update: true,
    allow_unconditional_update: true,
    return_deleted_object: false,
    fields: &EVENT_FIELDS,
};

/// events.k8s.io/v1 events: the same objects as core/v1, another shape.
pub(crate) static EVENTS_V1: ResourceType = ResourceType {
    group: "events.k8s.io",
    version: "v1",
    plural: "events",
    singular: "event",
    kind: "Event",
    short_names: &["ev"],
    storage: "events",
    schema: Schema::EventsV1,
    allow_create_on_update: true,
    allow_unconditional_update: true,
    return_deleted_object: false,
    fields: &[
        META_FIELDS[0],
        META_FIELDS[1],
        ("regarding.kind", "/involvedObject/kind"),
        ("regarding.namespace", "/involvedObject/namespace"),
        ("regarding.name", "/involvedObject/name"),
        ("regarding.uid", "/involvedObject/uid"),
        ("regarding.apiVersion", "/involvedObject/apiVersion"),
        (
            "regarding.resourceVersion",
            "/involvedObject/resourceVersion",
        ),
        ("regarding.fieldPath", "/involvedObject/fieldPath"),
        ("reason", "/reason"),
        ("reportingController", "/reportingComponent"),
        ("type", "/type"),
    ],
};

/// Every served resource, in discovery order.
pub(crate) static ALL: [&ResourceType; 4] = [&LEASES, &PODS, &CORE_EVENTS, &EVENTS_V1];

/// The resource served at `group/version/plural`, if any.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource whose shape is the storage shape of `storage` (for `StoreHandle`).
pub(crate) fn by_storage(storage: &str) -> Option<&'static ResourceType> {
    ALL.iter()
        .copied()
        .find(|r| r.storage == storage && r.schema != Schema::EventsV1)
}
