//! From a request line to a handler: path parsing, the audit verb, and dispatch.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::{Method, Response, header, request::Parts};

use super::crud;
use super::discovery;
use super::resources::{self, ResourceType};
use super::selectors::FieldSelector;
use super::server::Shared;
use super::status::{ApiError, Body, json_response};
use super::watch;

/// Decoded query parameters; a repeated parameter keeps its first value, as Go's
/// `url.Values.Get` does.
#[derive(Debug, Default)]
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    /// Parse a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        let mut params = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned() {
            params.entry(k).or_insert(v);
        }
        Self(params)
    }

    /// One parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter as the apiserver reads it (`true` or `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// A request for objects of one resource.
#[derive(Debug)]
pub(crate) struct ResourceRoute {
    pub rt: &'static ResourceType,
    /// `None` for the all-namespaces collection.
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// What a path addresses.
#[derive(Debug)]
pub(crate) enum Route {
    /// Discovery and health endpoints.
    NonResource(Vec<String>),
    Resource(ResourceRoute),
    /// Subresources and unknown resources.
    NotFound,
}

/// A classified request: its route plus what the audit log would call it.
#[derive(Debug)]
pub(crate) struct RequestInfo {
    pub route: Route,
    pub verb: &'static str,
    pub resource: String,
    /// The object's name as the audit log gives it (`objectRef.name`): the path's, or for a
    /// list or watch the one a `metadata.name` field selector requires; `""` for none.
    pub name: String,
}

/// Classify a request the way the apiserver's `RequestInfoFactory` does.
pub(crate) fn classify(method: &Method, path: &str, query: &Query) -> RequestInfo {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        [api, v, rest @ ..] if api == "api" && !rest.is_empty() => ("", v.as_str(), rest),
        [apis, g, v, rest @ ..] if apis == "apis" && !rest.is_empty() => {
            (g.as_str(), v.as_str(), rest)
        }
        _ => {
            let verb = if method == Method::GET {
                "get"
            } else {
                "unknown"
            };
            return RequestInfo {
                route: Route::NonResource(segs.clone()),
                verb,
                resource: String::new(),
                name: String::new(),
            };
        }
    };
    let (namespace, resource, name, sub) = match rest {
        [ns_kw, ns, res, more @ ..] if ns_kw == "namespaces" => {
            (Some(ns.clone()), res.clone(), more.first(), more.len() > 1)
        }
        [res, more @ ..] => (None, res.clone(), more.first(), more.len() > 1),
        [] => unreachable!("rest is non-empty"),
    };
    let verb = match (method.clone(), name.is_some()) {
        (Method::GET, _) if query.flag("watch") => "watch",
        (Method::GET, true) => "get",
        (Method::GET, false) => "list",
        (Method::POST, _) => "create",
        (Method::PUT, _) => "update",
        (Method::PATCH, _) => "patch",
        (Method::DELETE, true) => "delete",
        (Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    };
    let rt = resources::find(group, version, &resource);
    // As the apiserver's `RequestInfoFactory`: a collection read for one name is about it.
    // (A selector that does not parse names none; the request is refused anyway.)
    let object = match (name, rt) {
        (Some(n), _) => n.clone(),
        (None, Some(rt)) if matches!(verb, "list" | "watch") => query
            .get("fieldSelector")
            .and_then(|s| FieldSelector::parse(s, rt).ok())
            .and_then(|s| s.required("/metadata/name").map(str::to_string))
            .unwrap_or_default(),
        (None, _) => String::new(),
    };
    let route = match rt {
        Some(rt) if !sub => Route::Resource(ResourceRoute {
            rt,
            namespace,
            name: name.cloned(),
        }),
        _ => Route::NotFound,
    };
    RequestInfo {
        route,
        verb,
        resource,
        name: object,
    }
}

/// Who is asking, for watch registration.
pub(crate) struct Caller {
    pub client: String,
    pub ip: IpAddr,
}

/// Answer an authenticated, fault-free API request.
pub(crate) async fn dispatch(
    sh: &Arc<Shared>,
    parts: &Parts,
    body: &[u8],
    info: RequestInfo,
    caller: Caller,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(parts.uri.query());
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let accept = header(header::ACCEPT);
    match info.route {
        Route::NonResource(segs) => non_resource(sh, &parts.method, &segs),
        Route::NotFound => Err(ApiError::path_not_found()),
        Route::Resource(rr) => match (info.verb, rr.name.is_some()) {
            ("get", _) => crud::get(sh, &rr, accept, &query),
            ("list", _) => crud::list(sh, &rr, accept, &query),
            ("watch", _) => watch::start(sh, rr, accept, &query, caller),
            ("create", false) => crud::create(sh, &rr, &query, body),
            ("update", true) => crud::update(sh, &rr, &query, body),
            ("patch", true) => crud::patch(sh, &rr, &query, header(header::CONTENT_TYPE), body),
            ("delete", true) => crud::delete(sh, &rr, &query, body),
            _ => Err(ApiError::method_not_allowed()),
        },
    }
}

fn non_resource(sh: &Shared, method: &Method, segs: &[String]) -> Result<Response<Body>, ApiError> {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let doc = match segs.as_slice() {
        ["version"] => Some(discovery::version()),
        ["api"] => Some(discovery::core_versions(
            sh.server_url.split("://").nth(1).unwrap_or(""),
        )),
        ["api", v] => discovery::resource_list("", v),
        ["apis"] => Some(discovery::group_list()),
        ["apis", g] => discovery::api_group(g),
        ["apis", g, v] => discovery::resource_list(g, v),
        ["openapi", "v3"] => Some(discovery::openapi_root()),
        ["openapi", "v3", rest @ ..] => discovery::openapi_group_version(&rest.join("/")),
        ["healthz" | "livez" | "readyz"] => {
            return Ok(super::status::bytes_response(
                200,
                "text/plain; charset=utf-8",
                "ok",
            ));
        }
        _ => None,
    };
    doc.map(|d| json_response(200, &d))
        .ok_or_else(ApiError::path_not_found)
}

/// The error for a body that is not JSON at all.
pub(crate) fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
}

/// Parse a JSON request body.
pub(crate) fn read_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| malformed(&e))
}
