//! get, list, create, update (PUT), patch and delete, with the generic registry's rules:
//! optimistic concurrency, create-on-update, no-op detection, delete preconditions.

use std::sync::Arc;

use base64::Engine as _;
use http::Response;
use serde_json::{Value, json};

use super::patch::Patch;
use super::resources::ResourceType;
use super::routes::{Query, ResourceRoute, read_json};
use super::schema;
use super::selectors::{FieldSelector, LabelSelector};
use super::server::Shared;
use super::status::{ApiError, Body, json_response, success_status};
use super::store::{Change, Outcome};
use super::table::{self, Include};
use super::validate::{ErrorType, FieldError};

type Answer = Result<Response<Body>, ApiError>;

fn rv_of(v: &Value) -> &str {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn namespace(rr: &ResourceRoute) -> Result<&str, ApiError> {
    rr.namespace
        .as_deref()
        .ok_or_else(ApiError::method_not_allowed)
}

/// One object as the endpoint shows it, or as a one-row Table.
fn show(rt: &ResourceType, stored: &Value, accept: &str, query: &Query) -> Value {
    let shown = schema::encode(rt, stored);
    if table::wanted(accept) {
        let meta = json!({ "resourceVersion": rv_of(stored) });
        return table::render(
            rt,
            &[(stored, shown)],
            meta,
            Include::parse(query.get("includeObject")),
        );
    }
    shown
}

pub(crate) fn get(sh: &Arc<Shared>, rr: &ResourceRoute, accept: &str, query: &Query) -> Answer {
    let (ns, name) = (namespace(rr)?, rr.name.as_deref().unwrap_or(""));
    let obj = sh
        .store
        .get(rr.rt.storage, ns, name)
        .ok_or_else(|| ApiError::not_found(rr.rt, name))?;
    Ok(json_response(200, &show(rr.rt, &obj, accept, query)))
}

/// Where a page starts: the `namespace/name` after which to continue.
fn decode_continue(token: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    v.get("start")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(bad)
}

pub(crate) fn list(sh: &Arc<Shared>, rr: &ResourceRoute, accept: &str, query: &Query) -> Answer {
    let rt = rr.rt;
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""), rt)?;
    let (rv, items) = sh.store.list(rt.storage, rr.namespace.as_deref());
    let key = |o: &Value| {
        format!(
            "{}/{}",
            o["metadata"]["namespace"].as_str().unwrap_or(""),
            o["metadata"]["name"].as_str().unwrap_or("")
        )
    };
    let start = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(decode_continue)
        .transpose()?;
    let mut matching: Vec<Arc<Value>> = items
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
        .filter(|o| start.as_ref().is_none_or(|s| key(o) > *s))
        .collect();
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if let Some(limit) = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        && matching.len() > limit
    {
        let remaining = matching.len() - limit;
        matching.truncate(limit);
        let token = json!({ "rv": rv, "start": key(&matching[limit - 1]) }).to_string();
        meta["continue"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token));
        meta["remainingItemCount"] = json!(remaining);
    }
    if table::wanted(accept) {
        let rows: Vec<(&Value, Value)> = matching
            .iter()
            .map(|o| (&**o, schema::encode(rt, o)))
            .collect();
        return Ok(json_response(
            200,
            &table::render(rt, &rows, meta, Include::parse(query.get("includeObject"))),
        ));
    }
    let items: Vec<Value> = matching
        .iter()
        .map(|o| {
            // Items of a typed list carry no kind/apiVersion on a real server either.
            let mut item = schema::encode(rt, o);
            if let Some(m) = item.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            item
        })
        .collect();
    let list = json!({ "kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": meta, "items": items });
    Ok(json_response(200, &list))
}

/// Reject dry runs rather than silently persisting them.
fn no_dry_run(query: &Query) -> Result<(), ApiError> {
    match query.get("dryRun") {
        Some(d) if !d.is_empty() => Err(ApiError::bad_request(
            "dryRun is not supported by the kube emulator",
        )),
        _ => Ok(()),
    }
}

/// The body's namespace must be absent or the path's; then it is the path's.
fn adopt_namespace(obj: &mut Value, ns: &str) -> Result<(), ApiError> {
    match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            obj["metadata"]["namespace"] = json!(ns);
            Ok(())
        }
    }
}

fn check_invalid(rt: &ResourceType, name: &str, errs: Vec<FieldError>) -> Result<(), ApiError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt.group, rt.kind, name, &errs))
    }
}

/// Validate and default a brand-new object for storage.
fn for_create(rt: &ResourceType, mut obj: Value, name: &str) -> Result<Change, ApiError> {
    schema::prepare_create(rt, &mut obj);
    check_invalid(rt, name, schema::validate_create(rt, &obj))?;
    Ok(Change::Put(obj))
}

/// Validate and default an update of `old`.
fn for_update(
    rt: &ResourceType,
    mut new: Value,
    old: &Value,
    name: &str,
) -> Result<Change, ApiError> {
    schema::prepare_update(rt, &mut new, old);
    check_invalid(rt, name, schema::validate_update(rt, &new, old))?;
    Ok(Change::Put(new))
}

fn written(rt: &ResourceType, outcome: Outcome) -> Response<Body> {
    match outcome {
        Outcome::Created(o) => json_response(201, &schema::encode(rt, &o)),
        Outcome::Updated(o) | Outcome::Unchanged(o) | Outcome::Deleted(o) => {
            json_response(200, &schema::encode(rt, &o))
        }
    }
}

pub(crate) fn create(sh: &Arc<Shared>, rr: &ResourceRoute, query: &Query, body: &[u8]) -> Answer {
    no_dry_run(query)?;
    let (rt, ns) = (rr.rt, namespace(rr)?);
    let mut obj = schema::decode(rt, read_json(body)?)?;
    adopt_namespace(&mut obj, ns)?;
    if !rv_of(&obj).is_empty() {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let mut name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let generate = obj
        .pointer("/metadata/generateName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() && !generate.is_empty() {
        name = format!("{generate}{}", sh.store.name_suffix());
        obj["metadata"]["name"] = json!(name);
    }
    let change = for_create(rt, obj, &name)?;
    let outcome = sh.store.mutate(rt.storage, ns, &name, |cur| match cur {
        Some(_) => Err(ApiError::already_exists(rt, &name)),
        None => Ok(change),
    })?;
    Ok(written(rt, outcome))
}

pub(crate) fn update(sh: &Arc<Shared>, rr: &ResourceRoute, query: &Query, body: &[u8]) -> Answer {
    no_dry_run(query)?;
    let (rt, ns, name) = (rr.rt, namespace(rr)?, rr.name.as_deref().unwrap_or(""));
    let mut obj = schema::decode(rt, read_json(body)?)?;
    let body_name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    adopt_namespace(&mut obj, ns)?;
    let rv = rv_of(&obj).to_string();
    if !rv.is_empty() && rv.parse::<u64>().is_err() {
        return Err(ApiError::bad_request(format!(
            "invalid resource version: {rv:?}"
        )));
    }
    let outcome = sh.store.mutate(rt.storage, ns, name, |cur| match cur {
        None if !rt.allow_create_on_update => Err(ApiError::not_found(rt, name)),
        None => {
            obj["metadata"]
                .as_object_mut()
                .map(|m| m.remove("resourceVersion"));
            for_create(rt, obj, name)
        }
        Some(_) if rv.is_empty() && !rt.allow_unconditional_update => {
            // The real server names the resource, not the kind, in this one message.
            let err = FieldError {
                kind: ErrorType::Invalid,
                field: "metadata.resourceVersion".into(),
                value: "0".into(),
                detail: "must be specified for an update".into(),
            };
            Err(ApiError::invalid(rt.group, rt.plural, name, &[err]))
        }
        Some(old) if !rv.is_empty() && rv != rv_of(old) => Err(ApiError::stale(rt, name)),
        Some(old) => for_update(rt, obj, old, name),
    })?;
    Ok(written(rt, outcome))
}

pub(crate) fn patch(
    sh: &Arc<Shared>,
    rr: &ResourceRoute,
    query: &Query,
    content_type: &str,
    body: &[u8],
) -> Answer {
    no_dry_run(query)?;
    let (rt, ns, name) = (rr.rt, namespace(rr)?, rr.name.as_deref().unwrap_or(""));
    let patch = Patch::parse(content_type, body)?;
    if let Patch::Apply(_) = patch
        && query.get("fieldManager").unwrap_or("").is_empty()
    {
        let err = FieldError::required("fieldManager", "is required for apply patch");
        return Err(ApiError::invalid("meta.k8s.io", "PatchOptions", "", &[err]));
    }
    let outcome = sh
        .store
        .mutate(rt.storage, ns, name, |cur| match (cur, &patch) {
            (None, Patch::Apply(applied)) => {
                let mut obj = schema::decode(rt, applied.clone())?;
                obj["metadata"]["name"] = json!(name);
                adopt_namespace(&mut obj, ns)?;
                for_create(rt, obj, name)
            }
            (None, _) => Err(ApiError::not_found(rt, name)),
            (Some(old), _) => {
                let patched = patch.apply_to(&schema::encode(rt, old))?;
                let new = schema::decode(rt, patched)?;
                // A resourceVersion in the patch is a precondition, as on a real server.
                if rv_of(&new) != rv_of(old) && !rv_of(&new).is_empty() {
                    return Err(ApiError::stale(rt, name));
                }
                for_update(rt, new, old, name)
            }
        })?;
    Ok(written(rt, outcome))
}

pub(crate) fn delete(sh: &Arc<Shared>, rr: &ResourceRoute, query: &Query, body: &[u8]) -> Answer {
    no_dry_run(query)?;
    let (rt, ns, name) = (rr.rt, namespace(rr)?, rr.name.as_deref().unwrap_or(""));
    let opts = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        read_json(body)?
    };
    let want_uid = opts.pointer("/preconditions/uid").and_then(Value::as_str);
    let want_rv = opts
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str);
    let outcome = sh.store.mutate(rt.storage, ns, name, |cur| {
        let old = cur.ok_or_else(|| ApiError::not_found(rt, name))?;
        let uid = old.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
        if let Some(want) = want_uid.filter(|w| *w != uid) {
            let why = format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}");
            return Err(ApiError::conflict(rt, name, &why));
        }
        if let Some(want) = want_rv.filter(|w| *w != rv_of(old)) {
            let why = format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}", rv_of(old));
            return Err(ApiError::conflict(rt, name, &why));
        }
        Ok(Change::Delete)
    })?;
    let Outcome::Deleted(old) = outcome else {
        return Ok(written(rt, outcome));
    };
    if rt.return_deleted_object {
        return Ok(json_response(200, &schema::encode(rt, &old)));
    }
    let uid = old
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    Ok(json_response(200, &success_status(rt, name, uid)))
}
