//! A pod's volumes, made as the kubelet makes them, each a directory under the pod's
//! directory that containers get bind-mounted at their `volumeMounts`: `projected` (a bound
//! ServiceAccount token from TokenRequest, ConfigMap and Secret keys, downward-API fields),
//! `emptyDir`, `configMap`, `secret` and `downwardAPI`. Other kinds are refused with an error
//! naming them. Tokens are requested once, at pod start (they last an hour; tests do not).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret, ServiceAccount, Volume};

use super::PodCtx;
use crate::cluster::HarnessError;

/// Makes every volume of `pod`; returns name -> directory.
pub async fn make(pod: &Pod, ctx: &PodCtx) -> Result<Vec<(String, PathBuf)>, HarnessError> {
    let mut out = Vec::new();
    let root = ctx.dir.join("volumes");
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = root.join(&v.name);
        std::fs::create_dir_all(&dir).map_err(|e| HarnessError::io("create", &dir, e))?;
        set_mode(&dir, 0o755)?;
        make_one(pod, ctx, v, &dir).await?;
        out.push((v.name.clone(), dir));
    }
    Ok(out)
}

async fn make_one(pod: &Pod, ctx: &PodCtx, v: &Volume, dir: &Path) -> Result<(), HarnessError> {
    if v.empty_dir.is_some() {
        set_mode(dir, 0o777)?;
        return Ok(());
    }
    if let Some(cm) = &v.config_map {
        let mode = cm.default_mode.unwrap_or(0o644);
        let data = ctx.config_map(&cm.name).await?;
        return write_items(dir, &data, cm.items.as_deref(), mode);
    }
    if let Some(s) = &v.secret {
        let mode = s.default_mode.unwrap_or(0o644);
        let name = s.secret_name.clone().unwrap_or_default();
        let data = ctx.secret(&name).await?;
        return write_items(dir, &data, s.items.as_deref(), mode);
    }
    if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(0o644);
        for item in d.items.iter().flatten() {
            let value = downward(
                pod,
                ctx,
                item.field_ref.as_ref().map(|f| f.field_path.as_str()),
            )?;
            write_file(&dir.join(&item.path), &value, item.mode.unwrap_or(mode))?;
        }
        return Ok(());
    }
    if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644);
        for source in p.sources.iter().flatten() {
            if let Some(t) = &source.service_account_token {
                let token =
                    request_token(pod, ctx, t.expiration_seconds, t.audience.clone()).await?;
                write_file(&dir.join(&t.path), &token, mode)?;
            }
            if let Some(cm) = &source.config_map {
                let data = ctx.config_map(&cm.name).await?;
                write_items(dir, &data, cm.items.as_deref(), mode)?;
            }
            if let Some(s) = &source.secret {
                let data = ctx.secret(&s.name).await?;
                write_items(dir, &data, s.items.as_deref(), mode)?;
            }
            if let Some(d) = &source.downward_api {
                for item in d.items.iter().flatten() {
                    let path = item.field_ref.as_ref().map(|f| f.field_path.as_str());
                    let value = downward(pod, ctx, path)?;
                    write_file(&dir.join(&item.path), &value, item.mode.unwrap_or(mode))?;
                }
            }
        }
        return Ok(());
    }
    Err(HarnessError::Setup(format!(
        "volume {}: only projected, emptyDir, configMap, secret and downwardAPI volumes are made by the test kubelet",
        v.name
    )))
}

fn downward(pod: &Pod, ctx: &PodCtx, path: Option<&str>) -> Result<String, HarnessError> {
    let meta = &pod.metadata;
    match path {
        Some("metadata.namespace") => Ok(ctx.namespace.clone()),
        Some("metadata.name") => Ok(meta.name.clone().unwrap_or_default()),
        Some("metadata.uid") => Ok(meta.uid.clone().unwrap_or_default()),
        Some("metadata.labels") | Some("metadata.annotations") => {
            let map = if path == Some("metadata.labels") {
                meta.labels.clone()
            } else {
                meta.annotations.clone()
            };
            Ok(map
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| format!("{k}={v:?}\n"))
                .collect())
        }
        other => Err(HarnessError::Setup(format!(
            "downwardAPI volume field {other:?} is not supported by the test kubelet"
        ))),
    }
}

/// A bound ServiceAccount token for the pod, from the TokenRequest API (what `kubectl create
/// token` asks for; the kubelet asks the same, bound to the pod).
async fn request_token(
    pod: &Pod,
    ctx: &PodCtx,
    expiration: Option<i64>,
    audience: Option<String>,
) -> Result<String, HarnessError> {
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.into_iter().collect(),
            expiration_seconds: expiration,
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api = kube::Api::<ServiceAccount>::namespaced(ctx.client.clone(), &ctx.namespace);
    let answer: TokenRequest = api
        .create_subresource("token", &sa, &Default::default(), &request)
        .await
        .map_err(|e| {
            HarnessError::api(
                format!("TokenRequest for serviceaccount {}/{sa}", ctx.namespace),
                e,
            )
        })?;
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| HarnessError::Setup(format!("TokenRequest for {sa} returned no token")))
}

/// Keys of a ConfigMap or Secret, as files.
trait Keys {
    fn keys(&self) -> Vec<(String, Vec<u8>)>;
}

impl Keys for ConfigMap {
    fn keys(&self) -> Vec<(String, Vec<u8>)> {
        let text = self
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
        let bin = self
            .binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()));
        text.chain(bin).collect()
    }
}

impl Keys for Secret {
    fn keys(&self) -> Vec<(String, Vec<u8>)> {
        self.data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect()
    }
}

fn write_items(
    dir: &Path,
    data: &impl Keys,
    items: Option<&[KeyToPath]>,
    mode: i32,
) -> Result<(), HarnessError> {
    let keys = data.keys();
    match items {
        None => {
            for (k, v) in keys {
                write_file(&dir.join(&k), &v, mode)?;
            }
        }
        Some(items) => {
            for item in items {
                let (_, v) = keys.iter().find(|(k, _)| *k == item.key).ok_or_else(|| {
                    HarnessError::Setup(format!("volume item: no key {}", item.key))
                })?;
                write_file(&dir.join(&item.path), v, item.mode.unwrap_or(mode))?;
            }
        }
    }
    Ok(())
}

fn write_file(path: &Path, data: impl AsRef<[u8]>, mode: i32) -> Result<(), HarnessError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| HarnessError::io("create", parent, e))?;
    }
    std::fs::write(path, data).map_err(|e| HarnessError::io("write", path, e))?;
    set_mode(path, mode as u32)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), HarnessError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| HarnessError::io("chmod", path, e))
}
