//! The plugin's one error type. Each message says what went wrong in kubectl's words:
//! `Error from server (Reason): …` for the API server's answers, `error: …` for the rest.

use std::time::Duration;

/// The verbs the plugin needs, named in every Forbidden message.
pub const LEASE_PERMISSIONS: &str = "the plugin needs get/list/watch/patch on leases";

/// How long any single API call may take (a watch is bounded by `--wait` instead).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a command failed. Every variant exits with status 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither the election's Lease nor any member Lease exists.
    #[error(
        "Error from server (NotFound): election \"{election}\" not found in namespace \"{namespace}\""
    )]
    NotFound {
        /// The election asked for.
        election: String,
        /// The namespace looked in.
        namespace: String,
    },
    /// RBAC refused a call.
    #[error("Error from server (Forbidden): {message} ({needs})")]
    Forbidden {
        /// The API server's message (user, verb, resource).
        message: String,
        /// The permissions the plugin needs for this call.
        needs: &'static str,
    },
    /// Any other answer of the API server.
    #[error("Error from server ({reason}): {message}")]
    Api {
        /// The Status reason (`Conflict`, `Invalid`, …).
        reason: String,
        /// The Status message.
        message: String,
    },
    /// The API server could not be reached or answered nonsense.
    #[error("error: {doing}: {source}")]
    Client {
        /// What the plugin was doing.
        doing: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// An API call took longer than [`CALL_TIMEOUT`].
    #[error("error: {doing}: the API server did not answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout {
        /// What the plugin was doing.
        doing: String,
    },
    /// No usable kubeconfig or in-cluster configuration.
    #[error("error: {0}")]
    Config(String),
    /// A request the plugin refuses, or a switchover that did not happen; the message says why.
    #[error("error: {0}")]
    Failed(String),
}

impl Error {
    /// Maps a client error met while `doing` something that needs `needs`.
    pub fn from_kube(doing: impl Into<String>, needs: &'static str, e: kube::Error) -> Error {
        match e {
            kube::Error::Api(status) if status.code == 403 || status.reason == "Forbidden" => {
                Error::Forbidden {
                    message: status.message,
                    needs,
                }
            }
            kube::Error::Api(status) => Error::Api {
                reason: if status.reason.is_empty() {
                    format!("{}", status.code)
                } else {
                    status.reason
                },
                message: status.message,
            },
            source => Error::Client {
                doing: doing.into(),
                source,
            },
        }
    }
}

/// Runs API call `call` bounded by [`CALL_TIMEOUT`], mapping its error.
pub async fn call<T>(
    doing: &str,
    needs: &'static str,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::from_kube(doing, needs, e)),
        Err(_) => Err(Error::Timeout {
            doing: doing.to_string(),
        }),
    }
}
