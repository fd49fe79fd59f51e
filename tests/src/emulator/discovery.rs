//! Discovery documents (`/version`, `/api`, `/apis`, group and resource lists), so kubectl
//! resolves `lease` to coordination.k8s.io/v1 leases without any emulator-specific setup.
//!
//! Only the legacy (unaggregated) format is served. kubectl asks for aggregated discovery
//! first and, seeing a plain `application/json` answer, falls back to walking group versions.

use serde_json::{Value, json};

use super::resources::{ALL, ResourceType};

const VERBS: [&str; 7] = [
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// `/version`: a 1.33 server, matching the k8s-openapi feature the product builds with.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-understudy-emulator",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub(crate) fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn groups() -> Vec<&'static str> {
    let mut gs: Vec<&str> = ALL
        .iter()
        .map(|r| r.group)
        .filter(|g| !g.is_empty())
        .collect();
    gs.dedup();
    gs
}

fn group(name: &str) -> Value {
    let gv = json!({ "groupVersion": format!("{name}/v1"), "version": "v1" });
    json!({ "name": name, "versions": [gv], "preferredVersion": gv })
}

/// `/apis`.
pub(crate) fn group_list() -> Value {
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups().into_iter().map(group).collect::<Vec<_>>() })
}

/// `/apis/{group}`, if served.
pub(crate) fn api_group(name: &str) -> Option<Value> {
    groups().contains(&name).then(|| {
        let mut g = group(name);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

fn resource_entry(rt: &ResourceType) -> Value {
    let mut r = json!({
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": true,
        "kind": rt.kind,
        "verbs": VERBS,
    });
    if !rt.short_names.is_empty() {
        r["shortNames"] = json!(rt.short_names);
    }
    if rt.plural == "pods" {
        r["categories"] = json!(["all"]);
    }
    r
}

/// `/api/v1` or `/apis/{group}/{version}`, if served.
pub(crate) fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = ALL
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| resource_entry(r))
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }),
    )
}

/// A group version as an OpenAPI v3 path: `api/v1` or `apis/{group}/{version}`.
fn gv_path(r: &ResourceType) -> String {
    if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    }
}

/// The group versions the emulator serves, as OpenAPI v3 paths.
fn openapi_paths() -> Vec<String> {
    let mut paths: Vec<String> = ALL.iter().map(|r| gv_path(r)).collect();
    paths.dedup();
    paths
}

/// `/openapi/v3`: the index of per-group-version documents.
///
/// kubectl reads it to learn whether the server validates fields itself; finding each kind
/// there, `kubectl create`/`apply` leave validation to the server instead of downloading a
/// full schema (which the emulator does not have).
pub(crate) fn openapi_root() -> Value {
    let paths: serde_json::Map<String, Value> = openapi_paths()
        .into_iter()
        .map(|p| {
            let url = format!("/openapi/v3/{p}?hash=0");
            (p, json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// `/openapi/v3/{path}`: a stub document with, per served kind, the PATCH operation and its
/// `fieldValidation` parameter (what kubectl's query-parameter check looks for) and a schema
/// entry carrying the kind's group/version/kind. No field schemas.
pub(crate) fn openapi_group_version(path: &str) -> Option<Value> {
    let served: Vec<&ResourceType> = ALL.iter().copied().filter(|r| gv_path(r) == path).collect();
    if served.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for r in served {
        let gvk = json!({ "group": r.group, "version": r.version, "kind": r.kind });
        let param =
            json!({ "name": "fieldValidation", "in": "query", "schema": { "type": "string" } });
        let op = json!({ "x-kubernetes-group-version-kind": gvk, "parameters": [param] });
        let object_path = format!("/{path}/namespaces/{{namespace}}/{}/{{name}}", r.plural);
        paths.insert(object_path, json!({ "patch": op }));
        let package = if r.group.is_empty() {
            "core"
        } else {
            r.group.split('.').next().unwrap_or(r.group)
        };
        let name = format!("io.k8s.api.{package}.{}.{}", r.version, r.kind);
        schemas.insert(
            name,
            json!({ "type": "object", "x-kubernetes-group-version-kind": [gvk] }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes (understudy kube emulator stub)", "version": "v1.33.0" },
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}
