//! Reading the Grafana dashboard and the alert rules: every PromQL expression in them, with
//! Grafana's variables filled in as Grafana would.

use serde_json::Value;

use crate::prometheus::dashboards;

/// One PromQL expression and where it comes from.
#[derive(Clone, Debug)]
pub struct Query {
    /// E.g. `panel "Current leader" A`.
    pub source: String,
    /// The expression as written (Grafana variables unexpanded).
    pub expr: String,
}

/// `dashboards/understudy.json`.
pub fn load() -> Value {
    let text = std::fs::read_to_string(dashboards().join("understudy.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// The dashboard's queries: panel targets, annotations, and the template variables'
/// `label_values(selector, label)`, turned into `count by (label) (selector)` so that
/// Prometheus parses the selector and the test can see that it finds series.
pub fn queries(dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                source: format!("panel {} {}", panel["title"], target["refId"]),
                expr: target["expr"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push(Query {
            source: format!("annotation {}", annotation["name"]),
            expr: annotation["expr"].as_str().unwrap_or_default().to_string(),
        });
    }
    for var in variables(dashboard) {
        let Some(q) = var["query"]["query"].as_str() else {
            continue;
        };
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
            .unwrap_or_else(|| {
                panic!(
                    "variable {}: not label_values(selector, label): {q}",
                    var["name"]
                )
            });
        out.push(Query {
            source: format!("variable {}", var["name"]),
            expr: format!("count by ({}) ({})", inner.1.trim(), inner.0.trim()),
        });
    }
    out
}

/// The template variables.
pub fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .collect()
}

/// `expr` as Grafana sends it with `namespace` and `election` selected, a 1m rate interval
/// and a 5m dashboard range.
pub fn expand(expr: &str, namespace: &str, election: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$__interval", "1s")
        .replace("$namespace", namespace)
        .replace("$election", election)
}

/// The alert rules' expressions, from a rules file's `groups`.
pub fn rule_queries(groups: &serde_yaml::Value) -> Vec<Query> {
    let mut out = Vec::new();
    for group in groups["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            out.push(Query {
                source: format!("alert {}", rule["alert"].as_str().unwrap_or("?")),
                expr: rule["expr"].as_str().expect("expr").to_string(),
            });
        }
    }
    out
}

/// `dashboards/<name>` parsed as YAML.
pub fn yaml(name: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(dashboards().join(name)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}
