//! Kubernetes' naming rules for the objects the sidecar names: the Lease (a DNS-1123
//! subdomain) and its namespace (a DNS-1123 label). Checked at start-up, so that a bad name
//! is a clear error and exit 2, not an API refusal repeated forever.

use super::SettingsError;

const SUBDOMAIN_MAX: usize = 253;
const LABEL_MAX: usize = 63;
const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
    alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
    (e.g. 'example.com')";
const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
    characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name')";

/// The Lease names `election` gives with `actives` slots (`NAME`, or `NAME-0` ..
/// `NAME-{N-1}`), each a valid object name.
pub(super) fn lease_names(
    flag: &'static str,
    election: &str,
    actives: u16,
) -> Result<(), SettingsError> {
    let longest = match actives {
        0 | 1 => election.to_string(),
        n => format!("{election}-{}", n - 1),
    };
    let err = |rule: String| SettingsError::Name {
        flag,
        value: election.to_string(),
        what: "Lease name",
        rule,
    };
    if longest.len() > SUBDOMAIN_MAX {
        return Err(err(format!(
            "must be no more than {SUBDOMAIN_MAX} characters (with --actives {actives} the \
             longest Lease is {longest:?})"
        )));
    }
    if !election.split('.').all(is_label) {
        return Err(err(SUBDOMAIN_RULE.to_string()));
    }
    Ok(())
}

/// A namespace name.
pub(super) fn namespace(flag: &'static str, value: &str) -> Result<(), SettingsError> {
    let err = |rule: String| SettingsError::Name {
        flag,
        value: value.to_string(),
        what: "namespace",
        rule,
    };
    if value.len() > LABEL_MAX {
        return Err(err(format!("must be no more than {LABEL_MAX} characters")));
    }
    if !is_label(value) {
        return Err(err(LABEL_RULE.to_string()));
    }
    Ok(())
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && alnum(&b[0])
        && alnum(&b[b.len() - 1])
        && b.iter().all(|c| alnum(c) || *c == b'-')
}
