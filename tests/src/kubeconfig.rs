//! kubeconfig files: the one way the product, kubectl and the Kubernetes components reach an
//! API server here, whether the real one ([`crate::world`]) or the emulator.

use base64::Engine as _;
use serde_json::json;

/// How a kubeconfig's user proves who it is.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// A bearer token (a ServiceAccount token, or one of the emulator's).
    Token(String),
    /// A client certificate and its key, both PEM (the components' identities).
    Certificate {
        /// The certificate.
        cert_pem: String,
        /// Its private key.
        key_pem: String,
    },
}

/// Everything a kubeconfig says.
#[derive(Clone, Debug)]
pub struct Kubeconfig<'a> {
    /// The cluster entry's name.
    pub cluster: &'a str,
    /// `https://…` (or `http://` for a plain-HTTP emulator).
    pub server: &'a str,
    /// The CA the server's certificate chains to; `None` for plain HTTP.
    pub ca_pem: Option<&'a str>,
    /// The user entry's name.
    pub user: &'a str,
    /// The user's credentials.
    pub credentials: Credentials,
    /// The context's default namespace.
    pub namespace: &'a str,
}

impl Kubeconfig<'_> {
    /// The kubeconfig as YAML, with its one context current.
    pub fn render(&self) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut cluster = json!({ "server": self.server });
        if let Some(pem) = self.ca_pem {
            cluster["certificate-authority-data"] = json!(b64(pem));
        }
        let user = match &self.credentials {
            Credentials::Token(token) => json!({ "token": token }),
            Credentials::Certificate { cert_pem, key_pem } => json!({
                "client-certificate-data": b64(cert_pem),
                "client-key-data": b64(key_pem),
            }),
        };
        let context = format!("{}@{}", self.user, self.cluster);
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{ "name": self.cluster, "cluster": cluster }],
            "users": [{ "name": self.user, "user": user }],
            "contexts": [{
                "name": context,
                "context": { "cluster": self.cluster, "user": self.user, "namespace": self.namespace },
            }],
            "current-context": context,
            "preferences": {},
        });
        serde_yaml::to_string(&doc).expect("a JSON document always renders as YAML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_rs_reads_a_token_kubeconfig() {
        let yaml = Kubeconfig {
            cluster: "kube-emulator",
            server: "https://127.0.0.1:6443",
            ca_pem: Some("-----BEGIN CERTIFICATE-----\n"),
            user: "pod-a",
            credentials: Credentials::Token("t0k".into()),
            namespace: "default",
        }
        .render();
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("pod-a@kube-emulator"));
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.token.as_ref().map(|_| ()), Some(()));
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert!(cluster.certificate_authority_data.is_some());
    }

    #[test]
    fn kube_rs_reads_a_certificate_kubeconfig_and_plain_http_has_no_ca() {
        let yaml = Kubeconfig {
            cluster: "world",
            server: "http://127.0.0.1:1",
            ca_pem: None,
            user: "admin",
            credentials: Credentials::Certificate {
                cert_pem: "CERT".into(),
                key_pem: "KEY".into(),
            },
            namespace: "ns",
        }
        .render();
        assert!(!yaml.contains("certificate-authority"));
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.client_certificate_data.is_some());
        assert!(user.client_key_data.is_some());
        let ctx = kc.contexts[0].context.as_ref().unwrap();
        assert_eq!(ctx.namespace.as_deref(), Some("ns"));
    }
}
