//! The four PATCH content types: JSON merge patch (RFC 7386), strategic merge patch, JSON
//! patch (RFC 6902) and server-side apply.
//!
//! Strategic merge and apply are approximations that are exact for Lease, labels and
//! annotations: maps merge recursively, lists of objects with a `name` (or, for
//! ownerReferences, `uid`) merge by that key, `finalizers` merge as a set, other lists are
//! replaced. Apply has no field ownership: it merges the applied configuration like a
//! strategic merge patch and never reports an apply conflict.

use serde_json::{Map, Value};

use super::status::ApiError;

/// A parsed PATCH body.
#[derive(Debug)]
pub(crate) enum Patch {
    Merge(Value),
    Strategic(Value),
    Json(Vec<Value>),
    Apply(Value),
}

// === impl Patch ===

impl Patch {
    /// Parse a body by its `Content-Type`; 415 for others, 400 for undecodable bodies.
    pub fn parse(content_type: &str, body: &[u8]) -> Result<Self, ApiError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        let json = || {
            serde_json::from_slice::<Value>(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
        };
        match media {
            "application/merge-patch+json" => Ok(Self::Merge(json()?)),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic(json()?)),
            "application/json-patch+json" => match json()? {
                Value::Array(ops) => Ok(Self::Json(ops)),
                _ => Err(ApiError::bad_request(
                    "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
                )),
            },
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                let v: Value = serde_yaml::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                Ok(Self::Apply(v))
            }
            other => Err(ApiError {
                code: 415,
                reason: "UnsupportedMediaType",
                message: format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
                ),
                details: None,
                retry_after: None,
            }),
        }
    }

    /// Apply to `target`; errors are 422 as in the real server's patcher.
    pub fn apply_to(&self, target: &Value) -> Result<Value, ApiError> {
        let mut out = target.clone();
        match self {
            Self::Merge(p) => merge(&mut out, p),
            Self::Strategic(p) | Self::Apply(p) => strategic(&mut out, p),
            Self::Json(ops) => {
                for op in ops {
                    json_op(&mut out, op).map_err(|m| ApiError {
                        code: 422,
                        reason: "Invalid",
                        message: m,
                        details: None,
                        retry_after: None,
                    })?;
                }
            }
        }
        Ok(out)
    }
}

/// RFC 7386: objects merge, `null` deletes, everything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object above");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The merge key of a list, by its field name.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "ownerReferences" => Some("uid"),
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "volumeMounts" => Some("name"),
        _ => None,
    }
}

fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch.clone();
        replaced
            .as_object_mut()
            .expect("patch is an object")
            .remove("$patch");
        *target = replaced;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object above");
    for (k, v) in p {
        if k.starts_with('$') {
            // Ordering and retain-keys directives change nothing the emulator keeps.
            continue;
        }
        match v {
            Value::Null => drop(t.remove(k)),
            Value::Object(o) if o.get("$patch").and_then(Value::as_str) == Some("delete") => {
                drop(t.remove(k))
            }
            Value::Array(items) => {
                let merged = match (t.get(k), merge_key(k)) {
                    (Some(Value::Array(cur)), Some(key)) => merge_list(cur, items, key),
                    (Some(Value::Array(cur)), None) if k == "finalizers" => {
                        let mut set = cur.clone();
                        set.extend(items.iter().filter(|i| !cur.contains(i)).cloned());
                        set
                    }
                    _ => items.clone(),
                };
                t.insert(k.clone(), Value::Array(merged));
            }
            _ => strategic(t.entry(k.clone()).or_insert(Value::Null), v),
        }
    }
}

fn merge_list(cur: &[Value], patch: &[Value], key: &str) -> Vec<Value> {
    let mut out = cur.to_vec();
    for item in patch {
        let id = item.get(key);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match out.iter().position(|o| id.is_some() && o.get(key) == id) {
            Some(i) if delete => drop(out.remove(i)),
            Some(i) => strategic(&mut out[i], item),
            None if !delete => out.push(item.clone()),
            None => {}
        }
    }
    out
}

/// Decode one RFC 6901 pointer token.
fn token(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

/// Split a pointer into (parent pointer, last token).
fn split_pointer(path: &str) -> Result<(&str, String), String> {
    match path.rfind('/') {
        Some(i) => Ok((&path[..i], token(&path[i + 1..]))),
        None => Err(format!("invalid JSON pointer {path:?}")),
    }
}

fn json_op(doc: &mut Value, op: &Value) -> Result<(), String> {
    let field = |name: &str| {
        op.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("missing {name:?} in json patch operation"))
    };
    let path = field("path")?;
    match field("op")? {
        "add" => add(doc, path, op.get("value").cloned().ok_or("missing value")?),
        "remove" => remove(doc, path).map(drop),
        "replace" => {
            remove(doc, path)?;
            add(doc, path, op.get("value").cloned().ok_or("missing value")?)
        }
        "move" => {
            let v = remove(doc, field("from")?)?;
            add(doc, path, v)
        }
        "copy" => {
            let v = doc
                .pointer(field("from")?)
                .cloned()
                .ok_or("copy: source path does not exist")?;
            add(doc, path, v)
        }
        "test" => match doc.pointer(path) {
            Some(v) if Some(v) == op.get("value") => Ok(()),
            _ => Err(format!("testing value {path} failed")),
        },
        other => Err(format!("Unexpected kind: {other}")),
    }
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        Some(Value::Array(a)) if last == "-" => {
            a.push(value);
            Ok(())
        }
        Some(Value::Array(a)) => match last.parse::<usize>() {
            Ok(i) if i <= a.len() => {
                a.insert(i, value);
                Ok(())
            }
            _ => Err(format!("add operation: index {last} out of bounds")),
        },
        _ => Err(format!(
            "add operation does not apply: doc is missing path: {path:?}"
        )),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let missing = || format!("remove operation does not apply: doc is missing path: {path:?}");
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(missing),
        Some(Value::Array(a)) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests;
