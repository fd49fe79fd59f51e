//! Server-side printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), which is
//! what `kubectl get` asks for and prints verbatim.

use serde_json::{Value, json};

use super::resources::{ResourceType, Schema};

/// Whether the client asked for a Table.
pub(crate) fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// What each row embeds (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    /// Parse `includeObject` (default `Metadata`, as in the real server).
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

fn column(name: &str, ty: &str, format: &str, description: &str) -> Value {
    json!({ "name": name, "type": ty, "format": format, "description": description, "priority": 0 })
}

fn columns(schema: Schema) -> Vec<Value> {
    let name = column(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
    );
    let age = column(
        "Age",
        "string",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    match schema {
        Schema::Lease => vec![
            name,
            column(
                "Holder",
                "string",
                "",
                "holderIdentity contains the identity of the holder of a current lease.",
            ),
            age,
        ],
        Schema::Pod => vec![
            name,
            column(
                "Ready",
                "string",
                "",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            column(
                "Status",
                "string",
                "",
                "The aggregate status of the containers in this pod.",
            ),
            column(
                "Restarts",
                "string",
                "",
                "The number of times the containers in this pod have been restarted.",
            ),
            age,
        ],
        Schema::CoreEvent | Schema::EventsV1 => vec![
            column(
                "Last Seen",
                "string",
                "",
                "Time when this Event was last observed.",
            ),
            column(
                "Type",
                "string",
                "",
                "Type of this event (Normal, Warning).",
            ),
            column(
                "Reason",
                "string",
                "",
                "This should be a short, machine understandable string.",
            ),
            column(
                "Object",
                "string",
                "",
                "The object that this event is about.",
            ),
            column(
                "Message",
                "string",
                "",
                "A human-readable description of the status of this operation.",
            ),
        ],
    }
}

/// Age the way kubectl prints it (`duration.HumanDuration`).
pub(crate) fn human_duration(secs: i64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < -1 => "<invalid>".into(),
        s if s < 0 => "0s".into(),
        s if s < 120 => format!("{s}s"),
        _ if m < 10 && secs % 60 == 0 => format!("{m}m"),
        _ if m < 10 => format!("{m}m{}s", secs % 60),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 && m % 60 == 0 => format!("{h}h"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if h < 192 && h % 24 == 0 => format!("{d}d"),
        _ if h < 192 => format!("{d}d{}h", h % 24),
        _ if d < 730 => format!("{d}d"),
        _ if d < 2920 && d % 365 == 0 => format!("{}y", d / 365),
        _ if d < 2920 => format!("{}y{}d", d / 365, d % 365),
        _ => format!("{}y", d / 365),
    }
}

fn age(ts: Option<&Value>) -> String {
    let parsed = ts
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok());
    match parsed {
        Some(t) => human_duration(jiff::Timestamp::now().duration_since(t).as_secs()),
        None => "<unknown>".into(),
    }
}

fn cells(schema: Schema, obj: &Value) -> Vec<Value> {
    let s = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let created = age(obj.pointer("/metadata/creationTimestamp"));
    match schema {
        Schema::Lease => vec![
            json!(s("/metadata/name")),
            json!(s("/spec/holderIdentity")),
            json!(created),
        ],
        Schema::Pod => {
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|c| c["ready"] == json!(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .filter_map(|c| c["restartCount"].as_i64())
                .sum();
            let phase = s("/status/phase");
            vec![
                json!(s("/metadata/name")),
                json!(format!("{ready}/{total}")),
                json!(phase),
                json!(restarts.to_string()),
                json!(created),
            ]
        }
        Schema::CoreEvent | Schema::EventsV1 => {
            // Cells come from the core form, whichever Event API was asked.
            let last = [
                "/lastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .find_map(|p| obj.pointer(p).filter(|v| !v.is_null()));
            let object = format!(
                "{}/{}",
                s("/involvedObject/kind").to_lowercase(),
                s("/involvedObject/name")
            );
            vec![
                json!(age(last)),
                json!(s("/type")),
                json!(s("/reason")),
                json!(object),
                json!(s("/message")),
            ]
        }
    }
}

/// A Table with one row per `(stored, shown)` pair: cells are computed from the storage form,
/// and the form the endpoint returns is what `includeObject` embeds.
pub(crate) fn render(
    rt: &ResourceType,
    rows: &[(&Value, Value)],
    list_meta: Value,
    include: Include,
) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|(stored, shown)| {
            let object = match include {
                Include::None => Value::Null,
                Include::Metadata => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": shown["metadata"],
                }),
                Include::Object => shown.clone(),
            };
            json!({ "cells": cells(rt.schema, stored), "object": object })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns(rt.schema),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_kubectl() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (3 * 86400, "3d"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn accept_header_detection() {
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
    }
}
