//! A container's environment, as the kubelet computes it: the Service variables
//! (`KUBERNETES_SERVICE_HOST`, and the links of the namespace's Services unless
//! `enableServiceLinks: false`), then `envFrom`, then `env` in order, each value with
//! `$(VAR)` references expanded against what came before; the downward API (`fieldRef`,
//! `resourceFieldRef`), ConfigMap and Secret keys.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::PodCtx;
use crate::cluster::HarnessError;

/// Name -> value, in the order the kubelet sets them (later ones win).
pub type Env = Vec<(String, String)>;

/// Expands `$(NAME)` in `s` with `vars` (`$$` escapes a `$`); an unknown reference stays as
/// written, as in Kubernetes.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        if let Some(after) = tail.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Docker-link style variables of one Service (`<NAME>_SERVICE_HOST`, `<NAME>_PORT`, …).
fn service_vars(svc: &Service) -> Env {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let Some(ip) = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| *ip != "None" && !ip.is_empty())
    else {
        return Vec::new();
    };
    let name = svc
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .to_uppercase()
        .replace('-', "_");
    let ports = spec.ports.clone().unwrap_or_default();
    let Some(first) = ports.first() else {
        return Vec::new();
    };
    let mut vars = vec![
        (format!("{name}_SERVICE_HOST"), ip.to_string()),
        (format!("{name}_SERVICE_PORT"), first.port.to_string()),
    ];
    for p in &ports {
        if let Some(pname) = &p.name {
            vars.push((
                format!(
                    "{name}_SERVICE_PORT_{}",
                    pname.to_uppercase().replace('-', "_")
                ),
                p.port.to_string(),
            ));
        }
    }
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
        p.protocol.clone().unwrap_or_else(|| "TCP".into())
    };
    vars.push((
        format!("{name}_PORT"),
        format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
    ));
    for p in &ports {
        let pre = format!("{name}_PORT_{}_{}", p.port, proto(p).to_uppercase());
        vars.push((
            pre.clone(),
            format!("{}://{ip}:{}", proto(p).to_lowercase(), p.port),
        ));
        vars.push((format!("{pre}_PROTO"), proto(p).to_lowercase()));
        vars.push((format!("{pre}_PORT"), p.port.to_string()));
        vars.push((format!("{pre}_ADDR"), ip.to_string()));
    }
    vars
}

/// The value of a downward-API `fieldPath`.
fn field(pod: &Pod, ctx: &PodCtx, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let map_key = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|k| k.strip_prefix("['"))
            .and_then(|k| k.strip_suffix("']"))
            .map(String::from)
    };
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => ctx.ip.to_string(),
        _ => {
            if let Some(k) = map_key("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = map_key("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(format!(
                    "fieldRef {path} is not supported by the test kubelet"
                ));
            }
        }
    })
}

/// Bytes (memory) or cores (cpu, rounded up) of a quantity divided by `divisor`, as the
/// downward API gives them.
fn resource_value(q: &Quantity, divisor: Option<&Quantity>) -> Result<String, String> {
    let parse = |q: &Quantity| -> Result<f64, String> {
        let s = q.0.as_str();
        let (num, mult) = match s.find(|c: char| c.is_ascii_alphabetic()) {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        let n: f64 = num.parse().map_err(|_| format!("quantity {s}"))?;
        let m = match mult {
            "" => 1.0,
            "m" => 1e-3,
            "k" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "Ki" => 1024.0,
            "Mi" => 1024.0 * 1024.0,
            "Gi" => 1024.0 * 1024.0 * 1024.0,
            other => return Err(format!("quantity suffix {other} in {s}")),
        };
        Ok(n * m)
    };
    let v = parse(q)?;
    let d = divisor.map(parse).transpose()?.unwrap_or(1.0);
    Ok(format!("{}", (v / d).ceil() as u64))
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| s.string_data.as_ref().and_then(|d| d.get(key).cloned()))
}

/// The environment of container `c` of `pod`.
pub async fn resolve(pod: &Pod, c: &Container, ctx: &PodCtx) -> Result<Env, HarnessError> {
    let bad = |m: String| HarnessError::Setup(format!("container {}: {m}", c.name));
    let mut env: Env = Vec::new();
    let kube_ip = ctx.kubernetes_service_ip.to_string();
    for (k, v) in [
        ("KUBERNETES_SERVICE_HOST", kube_ip.clone()),
        ("KUBERNETES_SERVICE_PORT", "443".into()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443".into()),
        ("KUBERNETES_PORT", format!("tcp://{kube_ip}:443")),
        ("KUBERNETES_PORT_443_TCP", format!("tcp://{kube_ip}:443")),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp".into()),
        ("KUBERNETES_PORT_443_TCP_PORT", "443".into()),
        ("KUBERNETES_PORT_443_TCP_ADDR", kube_ip.clone()),
    ] {
        env.push((k.to_string(), v));
    }
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    if links {
        let services = kube::Api::<Service>::namespaced(ctx.client.clone(), &ctx.namespace)
            .list(&Default::default())
            .await
            .map_err(|e| HarnessError::api(format!("list services in {}", ctx.namespace), e))?;
        for svc in &services.items {
            if ctx.namespace == "default" && svc.metadata.name.as_deref() == Some("kubernetes") {
                continue;
            }
            env.extend(service_vars(svc));
        }
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let cm = ctx.config_map(&r.name).await?;
            for (k, v) in cm.data.unwrap_or_default() {
                env.push((format!("{prefix}{k}"), v));
            }
        }
        if let Some(r) = &from.secret_ref {
            let s = ctx.secret(&r.name).await?;
            for k in s.data.clone().unwrap_or_default().keys() {
                if let Some(v) = secret_value(&s, k) {
                    env.push((format!("{prefix}{k}"), v));
                }
            }
        }
    }
    for var in c.env.iter().flatten() {
        let known: BTreeMap<String, String> = env.iter().cloned().collect();
        let value = if let Some(v) = &var.value {
            expand(v, &known)
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                field(pod, ctx, &f.field_path).map_err(bad)?
            } else if let Some(r) = &from.resource_field_ref {
                let resources = c.resources.clone().unwrap_or_default();
                let (kind, res) = r
                    .resource
                    .split_once('.')
                    .ok_or_else(|| bad(format!("resourceFieldRef {}", r.resource)))?;
                let map = match kind {
                    "limits" => resources.limits.unwrap_or_default(),
                    _ => resources.requests.unwrap_or_default(),
                };
                match map.get(res) {
                    Some(q) => resource_value(q, r.divisor.as_ref()).map_err(bad)?,
                    // No limit: the node's allocatable, as the kubelet gives it.
                    None if res == "memory" => "8589934592".into(),
                    None => "2".into(),
                }
            } else if let Some(k) = &from.config_map_key_ref {
                let cm = ctx.config_map(&k.name).await?;
                cm.data
                    .and_then(|d| d.get(&k.key).cloned())
                    .ok_or_else(|| bad(format!("configmap {} has no key {}", k.name, k.key)))?
            } else if let Some(k) = &from.secret_key_ref {
                let s = ctx.secret(&k.name).await?;
                secret_value(&s, &k.key)
                    .ok_or_else(|| bad(format!("secret {} has no key {}", k.name, k.key)))?
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_and_unknown_ones_stay() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$(B)", &vars), "x-$(B)");
        assert_eq!(expand("$$(A) $5 $(", &vars), "$(A) $5 $(");
        assert_eq!(expand("plain", &vars), "plain");
    }

    #[test]
    fn quantities_round_up_by_divisor() {
        let q = |s: &str| Quantity(s.to_string());
        assert_eq!(resource_value(&q("128Mi"), None).unwrap(), "134217728");
        assert_eq!(resource_value(&q("128Mi"), Some(&q("1Mi"))).unwrap(), "128");
        assert_eq!(resource_value(&q("500m"), None).unwrap(), "1");
    }
}
