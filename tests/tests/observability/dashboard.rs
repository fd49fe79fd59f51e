//! Reading the Grafana dashboard and the alert rules: every PromQL expression in them, with
//! Grafana's variables filled in as Grafana would, and what each query measures. The tests
//! at the end hold the dashboard to what docs/observability.md promises: a data source to
//! pick on import, a `pod` variable, one unit per axis.

use std::collections::BTreeSet;

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
        let (selector, label) = label_values(q).unwrap_or_else(|| {
            panic!(
                "variable {}: not label_values(selector, label): {q}",
                var["name"]
            )
        });
        out.push(Query {
            source: format!("variable {}", var["name"]),
            expr: format!("count by ({label}) ({selector})"),
        });
    }
    out
}

/// The selector and the label of a variable's `label_values(selector, label)`.
pub fn label_values(query: &str) -> Option<(&str, &str)> {
    let (selector, label) = query
        .strip_prefix("label_values(")?
        .strip_suffix(')')?
        .rsplit_once(',')?;
    Some((selector.trim(), label.trim()))
}

/// The template variables.
pub fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .collect()
}

/// `expr` as Grafana sends it with `namespace` and `election` selected, every pod (`pod` at
/// "All", whose value is `.*`), a 1m rate interval and a 5m dashboard range.
pub fn expand(expr: &str, namespace: &str, election: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$__interval", "1s")
        .replace("$namespace", namespace)
        .replace("$election", election)
        .replace("$pod", ".*")
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

/// Where metric names start: the sidecar's own families, client-go's, the process collector's.
const METRIC_PREFIXES: &[&str] = &["understudy_", "leader_election_", "process_"];

/// The metrics `expr` reads, each with its label matchers (the text between the braces; empty
/// for a metric named without any).
pub fn selectors(expr: &str) -> Vec<(&str, &str)> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(c) = expr[i..].chars().next() {
        let rest = &expr[i..];
        let starts_word = !expr[..i].ends_with(name_char);
        if starts_word && METRIC_PREFIXES.iter().any(|p| rest.starts_with(p)) {
            let len = rest.find(|c| !name_char(c)).unwrap_or(rest.len());
            let matchers = rest[len..]
                .strip_prefix('{')
                .and_then(|m| m.split_once('}'))
                .map_or("", |(m, _)| m);
            out.push((&rest[..len], matchers));
            i += len;
        } else {
            i += c.len_utf8();
        }
    }
    out
}

/// What a query's values measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quantity {
    /// A duration: a gauge in seconds, a histogram's quantile or mean.
    Seconds,
    /// A size.
    Bytes,
    /// Events per second: the `rate()` of a counter.
    PerSecond,
    /// Throughput: the `rate()` of a counter of bytes.
    BytesPerSecond,
    /// A plain number: a count, a state, the ratio of two rates, CPU seconds per second.
    Number,
}

/// What `expr` measures, read off the names of the metrics it reads (their last word is their
/// unit, by Prometheus's naming rules: `_seconds`, `_bytes`; a count has none) and what it
/// does with them. Panics on a query that reads metrics of different units, other than a
/// histogram's mean.
pub fn quantity(expr: &str) -> Quantity {
    let metrics: Vec<&str> = selectors(expr).into_iter().map(|(m, _)| m).collect();
    assert!(!metrics.is_empty(), "no metric in {expr}");
    // A histogram's quantile, or its mean (`_sum` over `_count`), is in the histogram's unit.
    let mean = metrics.iter().any(|m| m.ends_with("_sum"))
        && metrics.iter().any(|m| m.ends_with("_count"));
    if expr.contains("histogram_quantile(") || mean {
        let histogram = metrics
            .iter()
            .find(|m| m.ends_with("_bucket") || m.ends_with("_sum"))
            .unwrap_or_else(|| panic!("no histogram in {expr}"));
        return unit_of(histogram);
    }
    let units: BTreeSet<Quantity> = metrics.iter().map(|m| unit_of(m)).collect();
    assert_eq!(units.len(), 1, "{expr} mixes {units:?}");
    let unit = *units.first().unwrap();
    if !expr.contains("rate(") {
        // A gauge, or a counter's increase(): in the metric's unit.
        return unit;
    }
    match unit {
        // A rate over a rate (5xx over all requests): a ratio.
        _ if expr.contains(" / ") => Quantity::Number,
        Quantity::Number => Quantity::PerSecond,
        // Seconds per second: a share of time (CPU).
        Quantity::Seconds => Quantity::Number,
        Quantity::Bytes => Quantity::BytesPerSecond,
        other => panic!("{expr}: the rate of {other:?}; say in `quantity` what it measures"),
    }
}

/// The unit of a series of `metric`: a histogram's `_count` counts observations; its `_sum`
/// and `_bucket` (by their `le` bounds) are in its unit, as is a counter's `_total`.
fn unit_of(metric: &str) -> Quantity {
    if metric.ends_with("_count") {
        return Quantity::Number;
    }
    let base = ["_total", "_bucket", "_sum"]
        .iter()
        .find_map(|suffix| metric.strip_suffix(suffix))
        .unwrap_or(metric);
    if base.ends_with("_seconds") {
        Quantity::Seconds
    } else if base.ends_with("_bytes") {
        Quantity::Bytes
    } else {
        Quantity::Number
    }
}

/// What a Grafana unit (`fieldConfig.defaults.unit`) says the values are.
pub fn measures(unit: &str) -> Quantity {
    match unit {
        "s" | "dtdurations" => Quantity::Seconds,
        "bytes" | "decbytes" => Quantity::Bytes,
        "reqps" | "ops" | "cps" => Quantity::PerSecond,
        "Bps" | "binBps" => Quantity::BytesPerSecond,
        "short" | "none" | "percentunit" => Quantity::Number,
        other => panic!("unit {other:?}: say in `measures` what it measures"),
    }
}

/// What the dashboard promises a user: a data source to pick on import, a `pod` variable,
/// and units that say what each line is.
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    /// The input Grafana's "Import dashboard" form asks for.
    const INPUT: &str = "DS_PROMETHEUS";

    #[test]
    fn import_asks_for_the_prometheus_data_source_and_no_uid_is_hard_coded() {
        let dash = load();
        let inputs = dash["__inputs"].as_array().expect("__inputs");
        assert_eq!(inputs.len(), 1, "{inputs:?}");
        for (key, value) in [
            ("name", INPUT),
            ("label", "Prometheus"),
            ("type", "datasource"),
            ("pluginId", "prometheus"),
            ("pluginName", "Prometheus"),
        ] {
            assert_eq!(inputs[0][key], value, "__inputs[0].{key}");
        }
        let requires: Vec<(&str, &str)> = dash["__requires"]
            .as_array()
            .expect("__requires")
            .iter()
            .map(|r| (r["type"].as_str().unwrap(), r["id"].as_str().unwrap()))
            .collect();
        assert!(requires.contains(&("grafana", "grafana")), "{requires:?}");
        assert!(
            requires.contains(&("datasource", "prometheus")),
            "{requires:?}"
        );
        for panel in panels(&dash) {
            let kind = panel["type"].as_str().unwrap();
            assert!(
                kind == "row" || requires.contains(&("panel", kind)),
                "{}: __requires lacks the {kind} panel",
                panel["title"]
            );
        }

        // Import replaces `${DS_PROMETHEUS}` with the uid of the data source picked, here the
        // variable's default; a dashboard provisioned from a file keeps the text, which names
        // no data source, and the variable falls back to the first Prometheus. Either way the
        // panels follow the variable, so the picker at the top keeps working.
        let vars = variables(&dash);
        let ds: Vec<&&Value> = vars.iter().filter(|v| v["type"] == "datasource").collect();
        assert_eq!(ds.len(), 1, "one datasource variable");
        assert_eq!(ds[0]["query"], "prometheus");
        // Text too: Grafana matches the current option by its text or its value, and a
        // fixed text would pick a data source of that name over the one imported.
        for key in ["value", "text"] {
            assert_eq!(
                ds[0]["current"][key],
                format!("${{{INPUT}}}"),
                "current {key}"
            );
        }
        let variable = format!("${{{}}}", ds[0]["name"].as_str().unwrap());

        let mut refs = Vec::new();
        crate::datasources(&dash, "", &mut refs);
        for (path, r) in &refs {
            assert_eq!(r["type"], "prometheus", "{path}");
            assert_eq!(r["uid"], variable.as_str(), "{path}: a data source by uid");
        }
        // Everything that queries names it: nothing falls back to Grafana's default.
        for panel in panels(&dash).into_iter().filter(|p| p["type"] != "row") {
            assert!(panel["datasource"].is_object(), "{}", panel["title"]);
            for target in panel["targets"].as_array().into_iter().flatten() {
                let r = &target["datasource"];
                assert!(r.is_object(), "{} {}", panel["title"], target["refId"]);
            }
        }
        for var in vars.iter().filter(|v| v["type"] == "query") {
            assert!(var["datasource"].is_object(), "variable {}", var["name"]);
        }
        for annotation in dash["annotations"]["list"].as_array().into_iter().flatten() {
            let r = &annotation["datasource"];
            assert!(r.is_object(), "annotation {}", annotation["name"]);
        }
    }

    #[test]
    fn pod_variable_filters_every_panel_query() {
        let dash = load();
        let vars = variables(&dash);
        let pod = vars
            .iter()
            .find(|v| v["name"] == "pod")
            .expect("a pod variable");
        assert_eq!(pod["type"], "query");
        assert_eq!(
            (
                pod["includeAll"].as_bool(),
                pod["multi"].as_bool(),
                pod["allValue"].as_str()
            ),
            (Some(true), Some(true), Some(".*")),
            "pod: multi-select with All"
        );
        let query = pod["query"]["query"].as_str().expect("a query");
        let (selector, label) = label_values(query).expect("label_values(selector, label)");
        assert_eq!(label, "pod");
        let [(metric, matchers)] = selectors(selector)[..] else {
            panic!("pod: one metric in {selector}");
        };
        assert!(
            crate::FAMILIES.contains(&metric),
            "pod: {metric} is not a metric the sidecar exports"
        );
        // The pods of the namespaces and elections selected.
        for filter in [r#"namespace=~"$namespace""#, r#"election=~"$election""#] {
            assert!(matchers.contains(filter), "pod: {selector} lacks {filter}");
        }

        for panel in panels(&dash) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap();
                let found = selectors(expr);
                assert!(!found.is_empty(), "{}: no metric in {expr}", panel["title"]);
                for (metric, matchers) in found {
                    assert!(
                        matchers.split(',').any(|m| m.trim() == r#"pod=~"$pod""#),
                        "{} {}: {metric} not filtered by the pod variable: {expr}",
                        panel["title"],
                        target["refId"]
                    );
                }
            }
        }
    }

    /// One unit per axis: every panel declares a unit (`fieldConfig.defaults.unit`), and a
    /// target shown in another unit is moved by an override (matched by its refId) onto an
    /// axis of its own (`custom.axisPlacement`), which only a time series has. Each target's
    /// quantity, read off its query, must be what its unit says.
    #[test]
    fn every_panel_has_a_unit_and_each_axis_one() {
        let dash = load();
        fn side(placement: &Value) -> &str {
            match placement.as_str() {
                None | Some("auto") | Some("left") => "left",
                Some(other) => other,
            }
        }
        for panel in panels(&dash) {
            if panel["type"] == "row" {
                continue;
            }
            let title = panel["title"].as_str().unwrap();
            let config = &panel["fieldConfig"];
            let unit = config["defaults"]["unit"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: no unit"));
            let axis = side(&config["defaults"]["custom"]["axisPlacement"]);

            let mut moved: HashMap<&str, (&str, &str)> = HashMap::new();
            for o in config["overrides"].as_array().into_iter().flatten() {
                let property = |id: &str| {
                    o["properties"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| p["id"] == id)
                        .map(|p| &p["value"])
                };
                let Some(other) = property("unit") else {
                    continue;
                };
                assert_eq!(
                    panel["type"], "timeseries",
                    "{title}: no axes to put a second unit on; split the panel"
                );
                assert_eq!(o["matcher"]["id"], "byFrameRefID", "{title}: {o}");
                let placement = property("custom.axisPlacement")
                    .unwrap_or_else(|| panic!("{title}: {other} without an axis of its own"));
                let other_axis = side(placement);
                assert_ne!(other_axis, axis, "{title}: {other} on the axis of {unit}");
                let target = o["matcher"]["options"].as_str().unwrap();
                moved.insert(target, (other.as_str().unwrap(), other_axis));
            }

            let mut axes: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let ref_id = target["refId"].as_str().unwrap();
                let (unit, axis) = moved.get(ref_id).copied().unwrap_or((unit, axis));
                let expr = target["expr"].as_str().unwrap();
                assert_eq!(
                    quantity(expr),
                    measures(unit),
                    "{title} {ref_id}: shown in {unit}: {expr}"
                );
                axes.entry(axis).or_default().insert(unit);
            }
            for (axis, units) in axes {
                assert_eq!(units.len(), 1, "{title}: {units:?} on the {axis} axis");
            }
        }
    }

    #[test]
    fn quantity_reads_the_unit_off_the_metric_names() {
        use Quantity::*;
        for (expr, expected) in [
            (
                "sum(rate(understudy_proxy_requests_total{a=\"b\"}[1m]))",
                PerSecond,
            ),
            (
                "sum(rate(understudy_proxy_hold_duration_seconds_count[1m]))",
                PerSecond,
            ),
            (
                "histogram_quantile(0.99, sum by (le) (rate(understudy_proxy_hold_duration_seconds_bucket[1m])))",
                Seconds,
            ),
            (
                "rate(understudy_election_failover_duration_seconds_sum[1m]) / rate(understudy_election_failover_duration_seconds_count[1m])",
                Seconds,
            ),
            ("max(understudy_election_leaderless_seconds)", Seconds),
            (
                "increase(understudy_election_leader_transitions_total[5m])",
                Number,
            ),
            ("rate(process_cpu_seconds_total[1m])", Number),
            (
                "sum(rate(understudy_proxy_requests_total{c=\"5xx\"}[1m])) / sum(rate(understudy_proxy_requests_total[1m]))",
                Number,
            ),
            ("process_resident_memory_bytes", Bytes),
            (
                "sum by (direction) (rate(understudy_tcp_bytes_total[1m]))",
                BytesPerSecond,
            ),
            ("sum(understudy_proxy_requests_in_flight)", Number),
        ] {
            assert_eq!(quantity(expr), expected, "{expr}");
        }
        assert_eq!(
            selectors("sum by (pod) (understudy_a{x=\"1\"}) / understudy_b"),
            [("understudy_a", "x=\"1\""), ("understudy_b", "")]
        );
    }
}
