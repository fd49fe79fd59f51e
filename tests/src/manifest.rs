//! The `deploy/` manifests as data, so tests check and run the configuration users apply.
//!
//! [`build`] renders a kustomization with `kubectl kustomize` (the kubectl `tests/k8s/build`
//! makes); [`Container::find`] picks a container (the `understudy` sidecar, say) out of the
//! built Deployment. Running them is the real cluster's business ([`crate::cluster`]).
//!
//! ```no_run
//! # fn demo() -> Result<(), understudy_tests::manifest::ManifestError> {
//! use understudy_tests::manifest::{Container, SIDECAR, build, example_dir};
//! let sidecar = Container::find(&build(&example_dir("nginx-ha"))?, SIDECAR)?;
//! assert_eq!(sidecar.args[..2], ["--election", "nginx-ha"]);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_json::Value;

/// The sidecar's container name in every manifest under `deploy/`.
pub const SIDECAR: &str = "understudy";

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

/// `to` as a path relative to directory `from` (both absolute): kustomize takes no absolute
/// roots, so an overlay elsewhere names `deploy/…` by climbing up and back down.
pub fn relative(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for c in &to[common..] {
        path.push(c);
    }
    path.display().to_string()
}

/// `kubectl kustomize dir`, parsed: every object of the build, in kubectl's order.
pub fn build(dir: &Path) -> Result<Vec<Value>, ManifestError> {
    let kubectl = crate::cluster::control_plane::k8s_bin()
        .map(|d| d.join("kubectl"))
        .map_err(|e| ManifestError::Kubectl {
            dir: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()),
        })?;
    let out = Command::new(kubectl)
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

/// A container of a built manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The container name.
    pub name: String,
    /// `args`, as written (the kubelet expands `$(VAR)` in them).
    pub args: Vec<String>,
    /// The whole container object, for anything else a test wants to look at.
    pub spec: Value,
}

// === impl Container ===

impl Container {
    /// The container `name` of the one Deployment in `objects` that has one: among its
    /// containers or its init containers (a native sidecar).
    pub fn find(objects: &[Value], name: &str) -> Result<Container, ManifestError> {
        let found: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "Deployment")
            .filter_map(|d| {
                let spec = &d["spec"]["template"]["spec"];
                ["containers", "initContainers"]
                    .iter()
                    .filter_map(|key| spec[*key].as_array())
                    .flatten()
                    .find(|c| c["name"] == name)
            })
            .collect();
        let [spec] = found[..] else {
            return Err(ManifestError::Container {
                container: name.to_string(),
                found: found.len(),
            });
        };
        let args = spec["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        Ok(Container {
            name: name.to_string(),
            args,
            spec: spec.clone(),
        })
    }
}
