//! Conversion between core/v1 Event (the storage form) and events.k8s.io/v1 Event.
//!
//! The real server stores one Event type and converts at the endpoint
//! (`pkg/apis/events/v1/conversion.go`), so an Event written through one API is read through
//! the other — `kubectl describe` (core/v1) shows events a controller wrote via events.k8s.io.

use serde_json::{Map, Value};

/// Fields whose name differs: (core/v1, events.k8s.io/v1).
const RENAMED: [(&str, &str); 6] = [
    ("involvedObject", "regarding"),
    ("source", "deprecatedSource"),
    ("message", "note"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Fields named alike in both versions.
const SHARED: [&str; 8] = [
    "metadata",
    "eventTime",
    "series",
    "related",
    "action",
    "reason",
    "reportingInstance",
    "type",
];

/// The JSON name of the Go field `ReportingController` differs too.
const REPORTING: (&str, &str) = ("reportingComponent", "reportingController");

fn convert(
    from: &Value,
    pairs: impl Iterator<Item = (&'static str, &'static str)>,
    api_version: &str,
) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::from(api_version));
    out.insert("kind".into(), Value::from("Event"));
    for (src, dst) in pairs {
        if let Some(v) = from.get(src).filter(|v| !v.is_null()) {
            out.insert(dst.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// core/v1 Event -> events.k8s.io/v1 Event.
pub(crate) fn core_to_v1(core: &Value) -> Value {
    let pairs = RENAMED
        .into_iter()
        .chain([REPORTING])
        .chain(SHARED.into_iter().map(|f| (f, f)));
    convert(core, pairs, "events.k8s.io/v1")
}

/// events.k8s.io/v1 Event -> core/v1 Event.
pub(crate) fn v1_to_core(v1: &Value) -> Value {
    let pairs = RENAMED
        .into_iter()
        .chain([REPORTING])
        .map(|(c, e)| (e, c))
        .chain(SHARED.into_iter().map(|f| (f, f)));
    convert(v1, pairs, "v1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let v1 = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "regarding": {"kind": "Lease", "name": "l"}, "note": "hello",
            "reportingController": "understudy.io/elector", "reportingInstance": "pod-a",
            "action": "Acquire", "reason": "LeaderElection", "type": "Normal",
            "eventTime": "2024-01-01T00:00:00.000000Z",
        });
        let core = v1_to_core(&v1);
        assert_eq!(core["involvedObject"]["name"], "l");
        assert_eq!(core["message"], "hello");
        assert_eq!(core["reportingComponent"], "understudy.io/elector");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core_to_v1(&core), v1);
    }
}
