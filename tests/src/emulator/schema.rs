//! Per-type decoding, defaulting and validation: what the real server's codecs and registry
//! strategies do to a write before it reaches storage.
//!
//! Bodies are decoded through the k8s-openapi types, as the real server decodes into Go
//! structs: wrong JSON types are a 400, unknown fields are dropped, and MicroTime/Time are
//! re-rendered canonically (RFC 3339, UTC `Z`, 6 or 0 fractional digits).

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::events;
use super::resources::{ResourceType, Schema};
use super::status::ApiError;
use super::validate::{self, FieldError, NameRule};

fn round_trip<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_value(v)?;
    serde_json::to_value(typed)
}

/// Decode a request body into the storage form of `rt`, or the 400 the real decoder gives.
pub(crate) fn decode(rt: &ResourceType, mut body: Value) -> Result<Value, ApiError> {
    let Some(obj) = body.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: expected a JSON object",
            rt.kind, rt.version, rt.kind
        )));
    };
    let want = rt.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != want => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want})"
            )));
        }
        _ => obj.insert("apiVersion".into(), Value::from(want)),
    };
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k != rt.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        _ => obj.insert("kind".into(), Value::from(rt.kind)),
    };
    normalize(rt.schema, body).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            rt.kind, rt.version, rt.kind
        ))
    })
}

/// The typed round trip, plus the events.k8s.io -> core conversion.
pub(crate) fn normalize(schema: Schema, body: Value) -> Result<Value, serde_json::Error> {
    use k8s_openapi::api::{coordination::v1::Lease, core::v1, events::v1::Event as EventV1};
    match schema {
        Schema::Lease => round_trip::<Lease>(body),
        Schema::Pod => round_trip::<v1::Pod>(body),
        Schema::CoreEvent => round_trip::<v1::Event>(body),
        Schema::EventsV1 => round_trip::<EventV1>(body).map(|v| events::v1_to_core(&v)),
    }
}

/// The storage form rendered as `rt` shows it.
pub(crate) fn encode(rt: &ResourceType, stored: &Value) -> Value {
    match rt.schema {
        Schema::EventsV1 => events::core_to_v1(stored),
        _ => stored.clone(),
    }
}

/// `PrepareForCreate`: pods start Pending whatever the client sent as status.
pub(crate) fn prepare_create(rt: &ResourceType, obj: &mut Value) {
    if rt.schema == Schema::Pod {
        obj["status"] = json!({ "phase": "Pending" });
    }
}

/// `PrepareForUpdate`: the pod status is written through `/status` only, so keep the old one.
pub(crate) fn prepare_update(rt: &ResourceType, new: &mut Value, old: &Value) {
    if rt.schema == Schema::Pod {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => drop(new.as_object_mut().map(|o| o.remove("status"))),
        }
    }
}

fn name_rule(rt: &ResourceType) -> NameRule {
    if rt.schema == Schema::CoreEvent {
        NameRule::PathSegment
    } else {
        NameRule::Subdomain
    }
}

/// `strategy.Validate` for a create, on the storage form.
pub(crate) fn validate_create(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errs = validate::object_meta(&obj["metadata"], name_rule(rt));
    errs.extend(validate_body(rt, obj));
    errs
}

/// `strategy.ValidateUpdate`, on the storage forms.
pub(crate) fn validate_update(rt: &ResourceType, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate::object_meta_update(&new["metadata"], &old["metadata"], name_rule(rt));
    errs.extend(validate_body(rt, new));
    errs
}

fn validate_body(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    match rt.schema {
        Schema::Lease => lease_spec(obj.get("spec").unwrap_or(&Value::Null)),
        Schema::Pod => pod_spec(obj.get("spec").unwrap_or(&Value::Null)),
        Schema::CoreEvent => legacy_event(obj),
        Schema::EventsV1 => {
            let mut errs = legacy_event(obj);
            errs.extend(strict_event(obj));
            errs
        }
    }
}

/// `ValidateLeaseSpec` (pkg/apis/coordination/validation).
fn lease_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(d) = spec
        .get("leaseDurationSeconds")
        .filter(|d| d.as_i64().is_some_and(|d| d <= 0))
    {
        errs.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec
        .get("leaseTransitions")
        .filter(|t| t.as_i64().is_some_and(|t| t < 0))
    {
        errs.push(FieldError::invalid(
            "spec.leaseTransitions",
            t,
            "must be greater than or equal to 0",
        ));
    }
    let strategy = spec.get("strategy").and_then(Value::as_str);
    if let Some(s) = strategy {
        // The real validator appends "strategy" twice; the doubled path is what clients see.
        let field = "spec.strategy.strategy";
        if !s.contains('/') && s != "OldestEmulationVersion" {
            errs.push(FieldError::not_supported(
                field,
                &Value::from(s),
                vec!["OldestEmulationVersion"],
            ));
        } else if s.contains('/') && !validate::is_qualified_name(s) {
            errs.push(FieldError::invalid(
                field,
                &Value::from(s),
                "must be a qualified name",
            ));
        }
    }
    let preferred = spec
        .get("preferredHolder")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !preferred.is_empty() && strategy.unwrap_or("").is_empty() {
        errs.push(FieldError::forbidden(
            "spec.preferredHolder",
            "may only be specified if `strategy` is defined",
        ));
    }
    errs
}

/// The parts of `ValidatePodSpec` a hand-written pod is likely to trip.
fn pod_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if containers.is_empty() {
        errs.push(FieldError::required("spec.containers", ""));
    }
    for (i, c) in containers.iter().enumerate() {
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required(
                &format!("spec.containers[{i}].name"),
                "",
            )),
            Some(n) => errs.extend(validate::dns_label(
                &format!("spec.containers[{i}].name"),
                n,
            )),
        }
        if c.get("image")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            errs.push(FieldError::required(
                &format!("spec.containers[{i}].image"),
                "",
            ));
        }
    }
    errs
}

fn str_field<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `legacyValidateEvent` (pkg/apis/core/validation/events.go), on the core form.
fn legacy_event(ev: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = str_field(ev, "/metadata/namespace");
    let io_ns = str_field(ev, "/involvedObject/namespace");
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            &Value::from(io_ns),
            "does not match event.namespace",
        )
    };
    if ev.get("eventTime").is_none_or(Value::is_null) {
        if (io_ns.is_empty() && !ns.is_empty() && ns != "default")
            || (!io_ns.is_empty() && ns != io_ns)
        {
            errs.push(mismatch());
        }
    } else {
        if io_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let controller = str_field(ev, "/reportingComponent");
        if controller.is_empty() {
            errs.push(FieldError::required("reportingController", ""));
        } else if !validate::is_qualified_name(controller) {
            errs.push(FieldError::invalid(
                "reportingController",
                &Value::from(controller),
                "must be a qualified name",
            ));
        }
        for (field, pointer, limit) in [
            ("reportingInstance", "/reportingInstance", 128),
            ("action", "/action", 128),
            ("reason", "/reason", 128),
        ] {
            let v = str_field(ev, pointer);
            if v.is_empty() {
                errs.push(FieldError::required(field, ""));
            } else if v.len() > limit {
                errs.push(FieldError::invalid(
                    field,
                    &Value::from(""),
                    format!("can have at most {limit} characters"),
                ));
            }
        }
        if str_field(ev, "/message").len() > 1024 {
            errs.push(FieldError::invalid(
                "message",
                &Value::from(""),
                "can have at most 1024 characters",
            ));
        }
    }
    if !ns.is_empty() && !validate::is_dns1123_subdomain(ns) {
        errs.push(FieldError::invalid(
            "namespace",
            &Value::from(ns),
            "a lowercase RFC 1123 subdomain",
        ));
    }
    errs
}

/// The extra rules for writes through events.k8s.io/v1 (`ValidateEventCreate`).
fn strict_event(ev: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(series) = ev.get("series").filter(|s| !s.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errs.push(FieldError::invalid(
                "series.count",
                &Value::from(""),
                "should be at least 2",
            ));
        }
        if series.get("lastObservedTime").is_none() {
            errs.push(FieldError::required("series.lastObservedTime", ""));
        }
    }
    if ev.get("eventTime").is_none_or(Value::is_null) {
        errs.push(FieldError::required("eventTime", ""));
    }
    let ty = str_field(ev, "/type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            &Value::from(""),
            format!("has invalid value: {ty}"),
        ));
    }
    for field in ["firstTimestamp", "lastTimestamp", "count"] {
        if ev
            .get(field)
            .is_some_and(|v| !v.is_null() && *v != json!(0))
        {
            errs.push(FieldError::invalid(
                field,
                &Value::from(""),
                "needs to be unset",
            ));
        }
    }
    if !str_field(ev, "/source/component").is_empty() || !str_field(ev, "/source/host").is_empty() {
        errs.push(FieldError::invalid(
            "source",
            &Value::from(""),
            "needs to be unset",
        ));
    }
    errs
}
