//! Label and field selectors for list and watch (`k8s.io/apimachinery/pkg/labels`, `.../fields`).

use serde_json::Value;

use super::resources::ResourceType;
use super::status::ApiError;
use super::validate;

/// One label requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelReq {
    Exists(String),
    NotExists(String),
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed `labelSelector`: all requirements must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector(Vec<LabelReq>);

/// A parsed `fieldSelector`: (JSON pointer, wanted value, negated).
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldSelector(Vec<(&'static str, String, bool)>);

fn parse_error(detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {detail}"))
}

/// Split on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn check_key(key: &str) -> Result<String, ApiError> {
    if validate::is_qualified_name(key) {
        Ok(key.to_string())
    } else {
        Err(parse_error(format!(
            "key: Invalid value: {key:?}: a qualified name is required"
        )))
    }
}

fn check_value(v: &str) -> Result<String, ApiError> {
    let v = v.trim();
    let ok = v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(parse_error(format!("values: Invalid value: {v:?}")))
    }
}

// === impl LabelSelector ===

impl LabelSelector {
    /// Parse the `labelSelector` query parameter.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            reqs.push(Self::parse_term(term)?);
        }
        Ok(Self(reqs))
    }

    fn parse_term(term: &str) -> Result<LabelReq, ApiError> {
        if let Some(key) = term.strip_prefix('!') {
            return Ok(LabelReq::NotExists(check_key(key.trim())?));
        }
        if let Some(open) = term.find('(') {
            let close = term
                .rfind(')')
                .filter(|c| *c == term.len() - 1)
                .ok_or_else(|| parse_error("expected ')'"))?;
            let mut head = term[..open].split_whitespace();
            let (key, op) = (head.next().unwrap_or(""), head.next().unwrap_or(""));
            let values: Vec<String> = term[open + 1..close]
                .split(',')
                .map(check_value)
                .collect::<Result<_, _>>()?;
            let key = check_key(key)?;
            return match op {
                "in" => Ok(LabelReq::In(key, values)),
                "notin" => Ok(LabelReq::NotIn(key, values)),
                other => Err(parse_error(format!("found '{other}', expected: in, notin"))),
            };
        }
        for (op, build) in [
            (
                "!=",
                (|k, v| LabelReq::NotEq(k, v)) as fn(String, String) -> LabelReq,
            ),
            ("==", |k, v| LabelReq::Eq(k, v)),
            ("=", |k, v| LabelReq::Eq(k, v)),
        ] {
            if let Some((k, v)) = term.split_once(op) {
                return Ok(build(check_key(k.trim())?, check_value(v)?));
            }
        }
        for (op, gt) in [('>', true), ('<', false)] {
            if let Some((k, v)) = term.split_once(op) {
                let n = v.trim().parse().map_err(|_| {
                    parse_error(format!(
                        "for 'gt', 'lt' operators, the value must be an integer: {v}"
                    ))
                })?;
                let k = check_key(k.trim())?;
                return Ok(if gt {
                    LabelReq::Gt(k, n)
                } else {
                    LabelReq::Lt(k, n)
                });
            }
        }
        Ok(LabelReq::Exists(check_key(term)?))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|req| match req {
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            LabelReq::Gt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            LabelReq::Lt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }
}

/// Undo the selector escaping of `\\`, `\,` and `\=`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Split on `sep` where it is not escaped with a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start, mut escaped) = (Vec::new(), 0, false);
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            c if c == sep && !escaped => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    out.push(&s[start..]);
    out
}

// === impl FieldSelector ===

impl FieldSelector {
    /// Parse `fieldSelector` against the fields `rt` supports.
    pub fn parse(s: &str, rt: &ResourceType) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in split_unescaped(s, ',')
            .into_iter()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let (key, value, negated) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, v, false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            let key = key.trim();
            let pointer = rt
                .fields
                .iter()
                .find(|(label, _)| *label == key)
                .map(|(_, p)| *p)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("field label not supported: {key}"))
                })?;
            terms.push((pointer, unescape(value.trim()), negated));
        }
        Ok(Self(terms))
    }

    /// The value a term requires the field at JSON `pointer` to equal, if one does.
    pub fn required(&self, pointer: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(p, _, negated)| *p == pointer && !negated)
            .map(|(_, want, _)| want.as_str())
    }

    /// Whether the stored object satisfies every term (absent fields compare as "").
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(pointer, want, negated)| {
            let have = match obj.pointer(pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ if pointer.ends_with("hostNetwork") => "false".into(),
                _ => String::new(),
            };
            (have == *want) != *negated
        })
    }
}

#[cfg(test)]
mod tests;
