//! The `deploy/` manifests as data, so tests run the configuration users apply.
//!
//! [`build`] renders a kustomization with `kubectl kustomize`; [`Container::find`] picks the
//! `understudy` sidecar out of the built Deployment; [`Container::resolve`] turns its `args` and
//! `env` into what the process gets in a pod, doing the kubelet's part: downward-API fields
//! filled in from [`PodFields`] and `$(VAR)` references expanded. [`sidecar_from_example`] does
//! all three for an example, which is what the local cluster harness starts.
//!
//! ```no_run
//! # fn demo() -> Result<(), understudy_tests::manifest::ManifestError> {
//! use understudy_tests::manifest::{PodFields, example_dir, sidecar_from_example};
//! let pod = PodFields::new("nginx-7d9c-abcde", "nginx-ha", "198.18.0.2");
//! let (args, env) = sidecar_from_example(&example_dir("nginx-ha"), &pod)?;
//! assert_eq!(args[..2], ["--election", "nginx-ha"]);
//! assert!(env.contains(&("POD_IP".into(), "198.18.0.2".into())));
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_json::Value;

/// The sidecar's container name in every manifest under `deploy/`.
pub const SIDECAR: &str = "understudy";

/// What a container's process is started with: its arguments and its environment.
pub type Invocation = (Vec<String>, Vec<(String, String)>);

/// Why a manifest could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// `kubectl` could not be started.
    #[error("kubectl kustomize {dir}: {source}")]
    Kubectl {
        /// The kustomization directory.
        dir: PathBuf,
        /// The spawn error.
        source: std::io::Error,
    },
    /// `kubectl kustomize` failed.
    #[error("kubectl kustomize {dir} failed: {stderr}")]
    Build {
        /// The kustomization directory.
        dir: PathBuf,
        /// What kubectl said.
        stderr: String,
    },
    /// The output is not YAML objects.
    #[error("kubectl kustomize {dir}: output is not YAML: {source}")]
    Yaml {
        /// The kustomization directory.
        dir: PathBuf,
        /// The parse error.
        source: serde_yaml::Error,
    },
    /// No Deployment (or more than one) has a container of that name.
    #[error("expected exactly one Deployment with a container {container:?}, found {found}")]
    Container {
        /// The container name looked for.
        container: String,
        /// How many Deployments have one.
        found: usize,
    },
    /// Something the kubelet would fill in that this module does not know.
    #[error("container {container:?}: unsupported {what}")]
    Unsupported {
        /// The container.
        container: String,
        /// What was found.
        what: String,
    },
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `deploy/examples/<name>`.
pub fn example_dir(name: &str) -> PathBuf {
    repo_root().join("deploy/examples").join(name)
}

/// `kubectl kustomize dir`, parsed: every object of the build, in kubectl's order.
pub fn build(dir: &Path) -> Result<Vec<Value>, ManifestError> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|source| ManifestError::Kubectl {
            dir: dir.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(ManifestError::Build {
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value =
            serde_json::to_value(serde_yaml::Value::deserialize(doc).map_err(|source| {
                ManifestError::Yaml {
                    dir: dir.to_path_buf(),
                    source,
                }
            })?)
            .expect("YAML objects from kubectl map to JSON");
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// Where an environment variable's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvSource {
    /// `value:` (may hold `$(VAR)` references).
    Value(String),
    /// `valueFrom.fieldRef.fieldPath` (the downward API).
    Field(String),
}

/// The pod a container is resolved for: what the downward API would tell it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFields {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `status.podIP`.
    pub ip: String,
}

impl PodFields {
    /// A pod called `name` in `namespace` at `ip`.
    pub fn new(name: &str, namespace: &str, ip: &str) -> PodFields {
        PodFields {
            name: name.to_string(),
            namespace: namespace.to_string(),
            ip: ip.to_string(),
        }
    }

    fn field(&self, path: &str) -> Option<&str> {
        match path {
            "metadata.name" => Some(&self.name),
            "metadata.namespace" => Some(&self.namespace),
            "status.podIP" => Some(&self.ip),
            _ => None,
        }
    }
}

/// A container of a built manifest: what the process is started with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The container name.
    pub name: String,
    /// `args`, unexpanded.
    pub args: Vec<String>,
    /// `env`, in order.
    pub env: Vec<(String, EnvSource)>,
    /// The whole container object, for anything else a test wants to look at.
    pub spec: Value,
}

// === impl Container ===

impl Container {
    /// The container `name` of the one Deployment in `objects` that has one.
    pub fn find(objects: &[Value], name: &str) -> Result<Container, ManifestError> {
        let found: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "Deployment")
            .filter_map(|d| {
                d["spec"]["template"]["spec"]["containers"]
                    .as_array()?
                    .iter()
                    .find(|c| c["name"] == name)
            })
            .collect();
        let [spec] = found[..] else {
            return Err(ManifestError::Container {
                container: name.to_string(),
                found: found.len(),
            });
        };
        Container::from_spec(spec)
    }

    /// Reads `args` and `env` of a container object.
    pub fn from_spec(spec: &Value) -> Result<Container, ManifestError> {
        let name = spec["name"].as_str().unwrap_or_default().to_string();
        let unsupported = |what: String| ManifestError::Unsupported {
            container: name.clone(),
            what,
        };
        if spec.get("command").is_some() {
            return Err(unsupported(
                "command (the image's entrypoint is assumed)".into(),
            ));
        }
        if spec.get("envFrom").is_some() {
            return Err(unsupported("envFrom".into()));
        }
        let args = spec["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
            .unwrap_or(Some(Vec::new()))
            .ok_or_else(|| unsupported("a non-string argument".into()))?;
        let mut env = Vec::new();
        for var in spec["env"].as_array().into_iter().flatten() {
            let key = var["name"].as_str().unwrap_or_default().to_string();
            let source = if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                EnvSource::Field(path.to_string())
            } else if var.get("valueFrom").is_some() {
                return Err(unsupported(format!("valueFrom of {key} (only fieldRef)")));
            } else {
                EnvSource::Value(var["value"].as_str().unwrap_or_default().to_string())
            };
            env.push((key, source));
        }
        Ok(Container {
            name,
            args,
            env,
            spec: spec.clone(),
        })
    }

    /// The arguments and environment the process gets in `pod`: fields filled in, and
    /// `$(VAR)` in env values and args expanded as the kubelet does (a reference to a variable
    /// defined earlier is replaced, `$$` is a literal `$`, anything else stays as written).
    pub fn resolve(&self, pod: &PodFields) -> Result<Invocation, ManifestError> {
        let mut env: Vec<(String, String)> = Vec::new();
        for (key, source) in &self.env {
            let value = match source {
                EnvSource::Value(v) => expand(v, &env),
                EnvSource::Field(path) => pod
                    .field(path)
                    .ok_or_else(|| ManifestError::Unsupported {
                        container: self.name.clone(),
                        what: format!("fieldRef {path} of {key}"),
                    })?
                    .to_string(),
            };
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value));
        }
        let args = self.args.iter().map(|a| expand(a, &env)).collect();
        Ok((args, env))
    }
}

/// Kubernetes' `$(VAR)` expansion (k8s.io/kubernetes third_party/forked/golang/expansion).
fn expand(input: &str, env: &[(String, String)]) -> String {
    let lookup = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
    let mut out = String::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match lookup(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The `understudy` sidecar of the example at `dir` (built with `kubectl kustomize`), as the
/// process in `pod` would get it: `(args, env)`.
pub fn sidecar_from_example(dir: &Path, pod: &PodFields) -> Result<Invocation, ManifestError> {
    Container::find(&build(dir)?, SIDECAR)?.resolve(pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_the_kubelet() {
        let e = env(&[("A", "x"), ("B", "y")]);
        assert_eq!(expand("$(A)-$(B)", &e), "x-y");
        assert_eq!(expand("$(C)", &e), "$(C)");
        assert_eq!(expand("$$(A)", &e), "$(A)");
        assert_eq!(expand("a$b$", &e), "a$b$");
        assert_eq!(expand("$(A", &e), "$(A");
    }

    #[test]
    fn resolve_fills_fields_and_references() {
        let spec = serde_json::json!({
            "name": "understudy",
            "args": ["--id", "$(POD_NAME)", "--x", "$(NOPE)"],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "WHERE", "value": "$(NS)/$(POD_NAME)"},
                {"name": "LATER", "value": "$(AFTER)"},
                {"name": "AFTER", "value": "z"},
            ],
        });
        let c = Container::from_spec(&spec).unwrap();
        let (args, env) = c.resolve(&PodFields::new("p", "ns", "10.0.0.1")).unwrap();
        assert_eq!(args, ["--id", "p", "--x", "$(NOPE)"]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("WHERE"), "ns/p");
        // Only variables defined earlier are expanded, as in Kubernetes.
        assert_eq!(get("LATER"), "$(AFTER)");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let spec = serde_json::json!({
            "name": "c",
            "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        });
        let c = Container::from_spec(&spec).unwrap();
        assert!(c.resolve(&PodFields::new("p", "ns", "ip")).is_err());
        let spec = serde_json::json!({"name": "c", "command": ["sh"]});
        assert!(Container::from_spec(&spec).is_err());
    }
}
