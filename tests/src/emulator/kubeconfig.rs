//! kubeconfig files: the one way any client reaches the emulator.

use base64::Engine as _;
use serde_json::json;

/// The cluster entry's name in every kubeconfig the emulator writes.
const CLUSTER: &str = "kube-emulator";

/// A kubeconfig for `client` with bearer `token`, current context set, namespace "default".
/// `ca_pem` is `None` for a plain-HTTP emulator.
pub(crate) fn render(server: &str, ca_pem: Option<&str>, client: &str, token: &str) -> String {
    let mut cluster = json!({ "server": server });
    if let Some(pem) = ca_pem {
        cluster["certificate-authority-data"] =
            json!(base64::engine::general_purpose::STANDARD.encode(pem));
    }
    let context = format!("{client}@{CLUSTER}");
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": CLUSTER, "cluster": cluster }],
        "users": [{ "name": client, "user": { "token": token } }],
        "contexts": [{
            "name": context,
            "context": { "cluster": CLUSTER, "user": client, "namespace": "default" },
        }],
        "current-context": context,
        "preferences": {},
    });
    serde_yaml::to_string(&doc).expect("a JSON document always renders as YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_rs_reads_it() {
        let yaml = render(
            "https://127.0.0.1:6443",
            Some("-----BEGIN CERTIFICATE-----\n"),
            "pod-a",
            "t0k",
        );
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("pod-a@kube-emulator"));
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.token.as_ref().map(|_| ()), Some(()));
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert!(cluster.certificate_authority_data.is_some());
        assert!(!render("http://127.0.0.1:1", None, "a", "t").contains("certificate-authority"));
    }
}
