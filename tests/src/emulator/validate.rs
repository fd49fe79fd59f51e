//! Field errors and the object-metadata rules of `k8s.io/apimachinery/pkg/api/validation`.
//!
//! Only the rules a Lease, Pod or Event write can trip are here; each error renders exactly
//! like `field.Error` so a 422's `message` and `details.causes` read as the real ones do.

use std::fmt;

use serde_json::Value;

/// What kind of rule a field broke (`field.ErrorType`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ErrorType {
    Invalid,
    Required,
    Forbidden,
    NotSupported(Vec<&'static str>),
}

/// One broken rule on one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub kind: ErrorType,
    pub field: String,
    /// The offending value, already rendered the way Go's `field.Error` prints it.
    pub value: String,
    pub detail: String,
}

// === impl FieldError ===

impl FieldError {
    /// `Invalid value: <value>: <detail>`.
    pub fn invalid(field: &str, value: &Value, detail: impl Into<String>) -> Self {
        Self {
            kind: ErrorType::Invalid,
            field: field.into(),
            value: render(value),
            detail: detail.into(),
        }
    }

    /// `Required value[: <detail>]`.
    pub fn required(field: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: ErrorType::Required,
            field: field.into(),
            value: String::new(),
            detail: detail.into(),
        }
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(field: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: ErrorType::Forbidden,
            field: field.into(),
            value: String::new(),
            detail: detail.into(),
        }
    }

    /// `Unsupported value: <value>: supported values: ...`.
    pub fn not_supported(field: &str, value: &Value, supported: Vec<&'static str>) -> Self {
        let kind = ErrorType::NotSupported(supported);
        Self {
            kind,
            field: field.into(),
            value: render(value),
            detail: String::new(),
        }
    }

    /// The `StatusCause.reason` for this error.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::NotSupported(_) => "FieldValueNotSupported",
        }
    }

    /// The message without the field path (`field.Error.ErrorBody`).
    pub fn body(&self) -> String {
        let head = match &self.kind {
            ErrorType::Invalid => format!("Invalid value: {}", self.value),
            ErrorType::Required => "Required value".to_string(),
            ErrorType::Forbidden => "Forbidden".to_string(),
            ErrorType::NotSupported(values) => {
                let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
                return format!(
                    "Unsupported value: {}: supported values: {}",
                    self.value,
                    quoted.join(", ")
                );
            }
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Go prints strings quoted and numbers bare; absent values are `null`.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `IsDNS1123Subdomain`: the rule for Lease and Pod names.
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// `IsQualifiedName`: label and annotation keys (`[prefix/]name`).
pub(crate) fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_qualified_name_part(name),
        None => is_qualified_name_part(s),
    }
}

/// `IsDNS1123Label` with its message, for container names.
pub(crate) fn dns_label(field: &str, value: &str) -> Option<FieldError> {
    (!is_dns1123_label(value))
        .then(|| FieldError::invalid(field, &Value::from(value), DNS1123_LABEL_MSG))
}

/// How an object's name is checked (`ValidateNameFunc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// DNS-1123 subdomain (Lease, Pod, events.k8s.io Event).
    Subdomain,
    /// Only what a URL path segment forbids (core/v1 Event, whose legacy rules are loose).
    PathSegment,
}

/// `ValidateObjectMeta` for a namespaced object: name, labels, annotations.
pub(crate) fn object_meta(meta: &Value, rule: NameRule) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    let generate = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() && generate.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if !name.is_empty() {
        let bad = match rule {
            NameRule::Subdomain => (!is_dns1123_subdomain(name)).then_some(DNS1123_SUBDOMAIN_MSG),
            NameRule::PathSegment => (name == "." || name == ".." || name.contains(['/', '%']))
                .then_some("may not contain '/' or '%' and may not be '.' or '..'"),
        };
        if let Some(msg) = bad {
            errs.push(FieldError::invalid(
                "metadata.name",
                &Value::from(name),
                msg,
            ));
        }
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if !is_qualified_name(k) {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    &Value::from(k.as_str()),
                    QUALIFIED_NAME_MSG,
                ));
            }
            let v = v.as_str().unwrap_or("");
            if !v.is_empty() && !is_qualified_name_part(v) {
                errs.push(FieldError::invalid(
                    &format!("metadata.labels[{k}]"),
                    &Value::from(v),
                    LABEL_VALUE_MSG,
                ));
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in annotations {
            total += k.len() + v.as_str().map_or(0, str::len);
            if !is_qualified_name(&k.to_ascii_lowercase()) {
                errs.push(FieldError::invalid(
                    "metadata.annotations",
                    &Value::from(k.as_str()),
                    QUALIFIED_NAME_MSG,
                ));
            }
        }
        if total > 256 * 1024 {
            errs.push(FieldError::invalid(
                "metadata.annotations",
                &Value::from(""),
                "Too long: must have at most 262144 bytes",
            ));
        }
    }
    errs
}

/// `ValidateObjectMetaUpdate`: the identity fields cannot change.
pub(crate) fn object_meta_update(new: &Value, old: &Value, rule: NameRule) -> Vec<FieldError> {
    let mut errs = object_meta(new, rule);
    for field in ["name", "namespace", "uid"] {
        let (n, o) = (new.get(field), old.get(field));
        if n.is_some() && n != o {
            let value = n.cloned().unwrap_or(Value::Null);
            errs.push(FieldError::invalid(
                &format!("metadata.{field}"),
                &value,
                "field is immutable",
            ));
        }
    }
    errs
}
