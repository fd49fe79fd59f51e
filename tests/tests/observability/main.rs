//! Observability, tested with the real tools: `promtool` lints a live sidecar's `/metrics`,
//! checks and unit-tests the alert rules; a real Prometheus parses every PromQL expression of
//! the dashboard and the rules, then scrapes three real sidecars through a failover, after
//! which every dashboard panel must show data and the failover must show in the metrics.

mod dashboard;
mod prometheus;
mod tcp;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::Value;
use tokio::sync::mpsc;
use understudy_elector::observe::{
    ApiCall, Leadership, LossReason, Observer, RenewFailure, Transition, WatchOpened,
};
use understudy_elector::{Candidate, Config, Role, spawn_observed};
use understudy_tests::cluster::loopback::{
    Loopback, Sidecar, agreed_leader, agreed_leader_not, eventually, get, send,
};
use understudy_tests::cluster::test_app::app;
use understudy_tests::cluster::{Cluster, ClusterOptions};

use dashboard::Query;
use prometheus::{Prometheus, assert_success, dashboards, promtool, sample};

/// Every metric family a proxying sidecar exports once it has served a request.
const FAMILIES: &[&str] = &[
    "understudy_build_info",
    "understudy_election_is_leader",
    "leader_election_master_status",
    "understudy_election_role",
    "understudy_election_leader_info",
    "understudy_election_leader_epoch",
    "understudy_election_leaderless_seconds",
    "understudy_election_lease_duration_seconds",
    "understudy_election_leader_transitions_total",
    "understudy_election_failover_duration_seconds",
    "understudy_election_leadership_acquired_total",
    "understudy_election_leadership_lost_total",
    "understudy_election_renew_duration_seconds",
    "understudy_election_renew_failures_total",
    "understudy_election_watch_restarts_total",
    "understudy_kube_api_requests_total",
    "understudy_kube_api_request_duration_seconds",
    "understudy_proxy_requests_total",
    "understudy_proxy_request_duration_seconds",
    "understudy_proxy_requests_in_flight",
    "understudy_proxy_held_requests",
    "understudy_proxy_hold_duration_seconds",
    "understudy_proxy_connect_errors_total",
    "understudy_proxy_retries_total",
    "understudy_proxy_sidecar_answers_total",
    "understudy_peer_tls_reloads_total",
    "understudy_peer_tls_handshake_failures_total",
    "understudy_failsafe_active",
    "understudy_failsafe_replies_total",
    "understudy_failsafe_answers_total",
    "understudy_watchers",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
    "process_start_time_seconds",
];

/// `promtool check metrics` on the text: it must report nothing at all.
fn assert_lint_clean(who: &str, metrics: &str) {
    let out = promtool(&["check", "metrics"], metrics);
    assert_success(&format!("promtool check metrics of {who}"), &out);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.trim().is_empty(), "promtool on {who}:\n{said}");
}

#[tokio::test]
async fn promtool_finds_nothing_to_report_in_a_live_sidecars_metrics() {
    let cluster = Loopback::start("obs-lint").await;
    let pod = cluster
        .sidecar("pod-a")
        .upstream(app("pod-a").await)
        .start()
        .await;
    agreed_leader(&[&pod], Duration::from_secs(15)).await;
    let listen = pod.listen.unwrap();
    // Served locally, and refused (meant for another pod): both kinds of proxy series.
    let (status, _) = get(listen, "/", Duration::from_secs(5)).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let misdirected = Request::get(format!("http://{listen}/"))
        .header("x-understudy-for", "pod-z")
        .header("x-understudy-hops", "1")
        .body(Full::<Bytes>::default())
        .unwrap();
    let (status, _) = send(misdirected, Duration::from_secs(5)).await.unwrap();
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);

    let (status, text) = pod.admin_get("/metrics").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_lint_clean("pod-a", &text);
    for family in FAMILIES {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    assert!(
        text.contains(r#"reason="misdirected""#) && text.contains(r#"route="reject""#),
        "{text}"
    );
}

#[test]
fn the_alert_rules_pass_promtool_check() {
    let rules = dashboards().join("understudy-rules.yaml");
    let out = promtool(&["check", "rules", rules.to_str().unwrap()], "");
    assert_success("promtool check rules", &out);
}

#[test]
fn every_alert_has_rule_unit_tests_that_fire_and_stay_quiet_and_they_pass() {
    let mut files: Vec<String> = std::fs::read_dir(dashboards().join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    files.sort();
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    assert_success("promtool test rules", &promtool(&args, ""));

    // (fires, stays quiet) per alert, from the test files' expectations.
    let mut cases: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for file in &files {
        let tests: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for test in tests["tests"].as_sequence().expect("tests") {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap().to_string();
                let fires = case["exp_alerts"]
                    .as_sequence()
                    .is_some_and(|a| !a.is_empty());
                let seen = cases.entry(name).or_default();
                seen.0 |= fires;
                seen.1 |= !fires;
            }
        }
    }
    for alert in dashboard::rule_queries(&dashboard::yaml("understudy-rules.yaml")) {
        let name = alert.source.trim_start_matches("alert ");
        assert_eq!(
            cases.get(name),
            Some(&(true, true)),
            "{name}: needs a test where it fires and one where it stays quiet"
        );
    }
}

#[test]
fn the_prometheus_rule_manifest_carries_the_same_rules() {
    let rules = dashboard::yaml("understudy-rules.yaml");
    let manifest = dashboard::yaml("prometheus-rule.yaml");
    assert_eq!(manifest["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(manifest["kind"], "PrometheusRule");
    assert!(manifest["metadata"]["name"].is_string());
    assert_eq!(
        manifest["spec"], rules,
        "prometheus-rule.yaml's spec must equal understudy-rules.yaml"
    );
}

#[test]
fn the_dashboard_is_well_formed() {
    let dash = dashboard::load();
    assert!(
        dash["schemaVersion"].as_u64().unwrap() >= 39,
        "current schema"
    );
    assert!(dash["uid"].is_string() && dash["title"].is_string());

    let vars = dashboard::variables(&dash);
    let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["datasource", "namespace", "election", "pod"]);
    assert_eq!(vars[0]["type"], "datasource");
    assert_eq!(vars[0]["query"], "prometheus");

    // Every datasource reference, wherever it is, is the variable.
    let mut refs = Vec::new();
    datasources(&dash, "", &mut refs);
    assert!(refs.len() > 20, "{refs:?}");
    for (path, ds) in &refs {
        assert_eq!(
            (ds["type"].as_str(), ds["uid"].as_str()),
            (Some("prometheus"), Some("${datasource}")),
            "{path}"
        );
    }

    let mut ids = HashSet::new();
    let mut cells = HashSet::new();
    for panel in dashboard::panels(&dash) {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        let g = &panel["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64(),
            g["y"].as_u64(),
            g["w"].as_u64(),
            g["h"].as_u64(),
        );
        let (x, y, w, h) = (x.unwrap(), y.unwrap(), w.unwrap(), h.unwrap());
        assert!(x + w <= 24, "{title} is wider than the dashboard");
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            assert!(cells.insert(cell), "{title} overlaps another panel");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            panel["description"].is_string(),
            "{title}: say how to read it"
        );
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!targets.is_empty(), "{title}: no query");
        let mut ref_ids = HashSet::new();
        for t in targets {
            assert!(
                ref_ids.insert(t["refId"].as_str().unwrap()),
                "{title}: refIds"
            );
        }
    }
    for q in dashboard::queries(&dash) {
        assert!(!q.expr.trim().is_empty(), "{}: empty query", q.source);
        if q.source.starts_with("panel") || q.source.starts_with("annotation") {
            assert!(
                q.expr.contains(r#"namespace=~"$namespace""#)
                    && q.expr.contains(r#"election=~"$election""#),
                "{}: not filtered by the namespace and election variables: {}",
                q.source,
                q.expr
            );
        }
    }
}

/// Collects every `datasource` object under `v`, with its JSON path.
fn datasources<'a>(v: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = format!("{path}.{k}");
                if k == "datasource" {
                    out.push((here.clone(), child));
                }
                datasources(child, &here, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                datasources(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Every expression of the dashboard and the rules, as Prometheus sees it.
fn all_queries() -> Vec<Query> {
    let mut out = dashboard::queries(&dashboard::load());
    out.extend(dashboard::rule_queries(&dashboard::yaml(
        "understudy-rules.yaml",
    )));
    out
}

#[tokio::test]
async fn prometheus_parses_every_dashboard_and_rule_expression() {
    // No targets: only the parser is under test here (an unparsable query is a 400).
    let prom = Prometheus::start("global:\n  scrape_interval: 1m\n").await;
    let bad = prom.query("sum by (election) (rate(x[1m])").await;
    assert!(
        bad.as_ref().is_err_and(|e| e.contains("bad_data")),
        "{bad:?}"
    );
    let mut failed = Vec::new();
    for q in all_queries() {
        let expr = dashboard::expand(&q.expr, "default", "web");
        if let Err(e) = prom.query(&expr).await {
            failed.push(format!("{}: {e}\n  {expr}", q.source));
        }
    }
    assert!(failed.is_empty(), "unparsable:\n{}", failed.join("\n"));
}

/// prometheus.yml scraping `pods` every second, as Kubernetes service discovery would label
/// them, with the alert rules loaded.
fn scrape_config(pods: &[Sidecar]) -> String {
    let rules = dashboards().join("understudy-rules.yaml");
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\nscrape_configs:\n  - job_name: understudy\n    static_configs:\n",
        rules.display()
    );
    for pod in pods {
        config += &format!(
            "      - targets: ['{}']\n        labels: {{namespace: default, pod: {}}}\n",
            pod.admin, pod.name
        );
    }
    config
}

/// GETs to `targets` until stopped: traffic through the proxies while leadership moves.
fn load(targets: Vec<std::net::SocketAddr>) -> (Arc<AtomicBool>, tokio::task::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let mut ok = 0;
        // Bounded in count, whatever the test does.
        for i in 0..3000 {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            let target = targets[i % targets.len()];
            if let Ok((StatusCode::OK, _)) = get(target, "/", Duration::from_secs(10)).await {
                ok += 1;
            }
            // Pacing, not synchronisation: a steady trickle of requests.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ok
    });
    (stop, task)
}

#[tokio::test]
async fn prometheus_scrapes_a_failover_and_every_panel_shows_it() {
    let cluster = Loopback::start("obs-failover").await;
    let mut pods = cluster.three(&[]).await;
    let election = cluster.election.clone();
    let refs: Vec<&Sidecar> = pods.iter().collect();
    let old = agreed_leader(&refs, Duration::from_secs(15)).await;
    let prom = Prometheus::start(&scrape_config(&pods)).await;

    // Traffic before the failover (served locally and forwarded), and a settled picture:
    // every pod scraped a few times, one leader.
    let (stop, before) = load(pods.iter().filter_map(|p| p.listen).collect());
    eventually(Duration::from_secs(20), || async {
        prom.value("min(count_over_time(up[1m]))").await >= Some(3.0)
            && prom.value("sum(up)").await == Some(3.0)
            && prom.value("sum(understudy_election_is_leader)").await == Some(1.0)
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    assert!(before.await.unwrap() > 0);
    let epoch = prom
        .value("max(understudy_election_leader_epoch)")
        .await
        .unwrap();

    // Kill the leader (no release: its Lease must expire) under load on the survivors.
    let i = pods.iter().position(|p| p.name == old).unwrap();
    pods[i].sigkill().await;
    let survivors: Vec<&Sidecar> = pods.iter().filter(|p| p.name != old).collect();
    let (stop, during) = load(survivors.iter().filter_map(|p| p.listen).collect());
    let new = agreed_leader_not(&survivors, &old, Duration::from_secs(20)).await;
    let transitions = "min(understudy_election_leader_transitions_total)";
    let leaders = "max by (pod) (understudy_election_is_leader) == 1";
    eventually(Duration::from_secs(20), || async {
        let leader = prom.query(leaders).await.unwrap_or_default();
        prom.value(transitions).await == Some(1.0)
            && leader.len() == 1
            && leader[0]["metric"]["pod"] == new.as_str()
            && prom.value(&format!(r#"up{{pod="{old}"}}"#)).await == Some(0.0)
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    assert!(during.await.unwrap() > 0);

    // The failover as the metrics tell it.
    let gap = r#"understudy_election_failover_duration_seconds_sum
        / understudy_election_failover_duration_seconds_count"#;
    let gaps = prom.query(gap).await.unwrap();
    assert_eq!(
        gaps.len(),
        2,
        "one failover seen by each survivor: {gaps:?}"
    );
    for g in &gaps {
        let seconds = sample(g).unwrap();
        // The killed leader's last renew, then a 3s lease, then one API round trip.
        assert!(
            (2.5..10.0).contains(&seconds),
            "failover took {seconds}s: {g}"
        );
    }
    let max_transitions = "max(understudy_election_leader_transitions_total)";
    assert_eq!(prom.value(max_transitions).await, Some(1.0));
    let epoch_now = prom.value("min(understudy_election_leader_epoch)").await;
    assert_eq!(epoch_now, Some(epoch + 1.0));
    let named = prom
        .query("count by (leader) (understudy_election_leader_info)")
        .await
        .unwrap();
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(named[0]["metric"]["leader"], new.as_str());

    // Every dashboard panel shows data, and something other than NaN.
    let dash = dashboard::load();
    let mut empty = Vec::new();
    for panel in dashboard::panels(&dash) {
        let mut finite = false;
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = dashboard::expand(target["expr"].as_str().unwrap(), "default", &election);
            let result = prom.query(&expr).await.unwrap();
            if result.is_empty() {
                empty.push(format!("{} {}: {expr}", panel["title"], target["refId"]));
            }
            finite |= result.iter().filter_map(sample).any(f64::is_finite);
        }
        if panel["type"] != "row" && !finite {
            empty.push(format!("{}: only NaN", panel["title"]));
        }
    }
    for q in dashboard::queries(&dash)
        .into_iter()
        .filter(|q| !q.source.starts_with("panel"))
    {
        let expr = dashboard::expand(&q.expr, "default", &election);
        if prom.query(&expr).await.unwrap().is_empty() {
            empty.push(format!("{}: {expr}", q.source));
        }
    }
    assert!(empty.is_empty(), "no data:\n{}", empty.join("\n"));

    // The alert rules load, evaluate cleanly, and a normal failover fires none of them.
    let rules = prom.api("/api/v1/rules").await;
    let evaluated: Vec<&Value> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let written = dashboard::rule_queries(&dashboard::yaml("understudy-rules.yaml"));
    assert_eq!(evaluated.len(), written.len());
    for rule in evaluated {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    assert_eq!(prom.query("ALERTS").await.unwrap(), Vec::<Value>::new());

    // And the survivors' metrics, rich after all this, still lint clean.
    for pod in &survivors {
        let (_, text) = pod.admin_get("/metrics").await.unwrap();
        assert_lint_clean(&pod.name, &text);
    }
}

/// An [`Observer`] that sends a line per event, so a test can wait for events.
struct Recorder(mpsc::UnboundedSender<String>);

impl Observer for Recorder {
    fn api_call(&self, _: &str, call: &ApiCall) {
        let _ = self
            .0
            .send(format!("{} {}", call.verb.as_str(), call.result.label()));
    }
    fn renew(&self, _: &str, _: Duration, result: Result<(), RenewFailure>) {
        let _ = self
            .0
            .send(format!("renew {:?}", result.map_err(RenewFailure::as_str)));
    }
    fn watch_opened(&self, _: &str, why: WatchOpened) {
        let _ = self.0.send(format!("watch opened: {}", why.as_str()));
    }
    fn leadership(&self, _: &str, change: Leadership) {
        let _ = self.0.send(format!("{change:?}"));
    }
    fn transition(&self, _: &str, t: &Transition) {
        let gap = if t.gap < Duration::from_secs(1) {
            "< 1s"
        } else {
            ">= 1s"
        };
        let _ = self.0.send(format!(
            "transition {} -> {} at {}, gap {gap}",
            t.from, t.to, t.epoch
        ));
    }
}

/// Receives events until `line` arrives; returns all of them.
async fn until(events: &mut mpsc::UnboundedReceiver<String>, line: &str) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.last().is_none_or(|l| l != line) {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(event)) => seen.push(event),
            _ => panic!("no {line:?} after {seen:?}"),
        }
    }
    seen
}

#[tokio::test]
async fn the_elector_reports_calls_renews_leadership_and_transitions() {
    let cluster = Cluster::start(ClusterOptions::api_only()).await.unwrap();
    let config = Config {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
        resync_period: Duration::from_secs(30),
    };
    let start = |name: &'static str| {
        let client = cluster.client();
        async move {
            let api = kube::Api::<Lease>::namespaced(client, "default");
            let (tx, rx) = mpsc::unbounded_channel();
            let me = Candidate {
                identity: name.into(),
                address: None,
                peer_address: None,
            };
            let (view, handle) =
                spawn_observed(api, "obs-hook", me, config, Arc::new(Recorder(tx)));
            (view, handle, rx)
        }
    };

    // a finds no Lease, creates it, leads and renews.
    let (mut a_view, a, mut a_events) = start("a").await;
    let seen = until(&mut a_events, "renew Ok(())").await;
    for line in [
        "watch opened: start",
        "get 404",
        "create 201",
        "Acquired { epoch: 0 }",
    ] {
        assert!(seen.iter().any(|l| l == line), "{line:?} not in {seen:?}");
    }
    a_view.wait_for(|v| v.role == Role::Leader).await.unwrap();

    // b comes in under a: where it came in is no transition. a hands over; b takes it.
    let (mut b_view, b, mut b_events) = start("b").await;
    b_view.wait_for(|v| v.leader.is_some()).await.unwrap();
    a.release().await.unwrap();
    let released = format!("{:?}", Leadership::Lost(LossReason::Released));
    until(&mut a_events, &released).await;
    let seen = until(&mut b_events, "Acquired { epoch: 1 }").await;
    let transitions: Vec<&String> = seen
        .iter()
        .filter(|l| l.starts_with("transition"))
        .collect();
    assert_eq!(
        transitions,
        ["transition a -> b at 1, gap < 1s"],
        "{seen:?}"
    );
    b.release().await.unwrap();
}
