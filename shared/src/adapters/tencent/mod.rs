//! Adapters to Tencent Cloud: credentials, the two signers ([`sign`]: TC3-HMAC-SHA256 for API
//! 3.0, `q-sign` for COS), the one transport every call goes through ([`transport`]: the
//! credential source, the client, the TC3-signed request, the retryable codes), the API 3.0
//! client with typed errors ([`api`]), the CLS sink and its encoder ([`cls`]), the COS snapshot
//! store ([`cos`]), the cfw/vpc rule source that builds the snapshot ([`rules`]) and CLS
//! `SearchLog` ([`search`]).
//!
//! Credentials come from a [`transport::CredentialSource`] (SCF's role credentials from the
//! environment, read once and again when a service says they went stale) and are never logged:
//! [`Credentials`]'s `Debug` hides the secrets.

pub mod api;
pub mod cls;
pub mod cls_query;
pub mod cos;
pub mod rules;
pub mod search;
pub mod sign;
pub mod transport;

use std::fmt;

/// Every API 3.0 action esgflow calls: `(service, X-TC-Version, action)`. The contract tests
/// check each against the official definitions (`tests/contracts.rs`), and that no other action
/// is called from this module.
pub const ACTIONS: &[(&str, &str, &str)] = &[
    ("cfw", "2019-09-04", "DescribeEnterpriseSecurityGroupRule"),
    (
        "cfw",
        "2019-09-04",
        "DescribeEnterpriseSecurityGroupRuleList",
    ),
    ("cfw", "2019-09-04", "DescribeSecurityGroupList"),
    ("vpc", "2017-03-12", "DescribeAddressTemplates"),
    ("vpc", "2017-03-12", "DescribeAddressTemplateGroups"),
    ("vpc", "2017-03-12", "DescribeServiceTemplates"),
    ("vpc", "2017-03-12", "DescribeServiceTemplateGroups"),
    ("vpc", "2017-03-12", "DescribeVpcs"),
    ("vpc", "2017-03-12", "DescribeSubnets"),
    ("vpc", "2017-03-12", "DescribeNetworkInterfaces"),
    ("cvm", "2017-03-12", "DescribeInstances"),
    ("cls", "2020-10-16", "SearchLog"),
    ("cls", "2020-10-16", "UploadLog"),
];

/// API credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `TENCENTCLOUD_SECRETID`.
    pub secret_id: String,
    /// `TENCENTCLOUD_SECRETKEY`.
    pub secret_key: String,
    /// `TENCENTCLOUD_SESSIONTOKEN` (temporary role credentials), sent as `X-TC-Token`.
    pub token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("secret_id", &redact(&self.secret_id))
            .field("secret_key", &"<redacted>")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The `Host` a request to `url` carries and signs (`host:port` when a port is given), or
/// `None` for a URL without a host.
pub fn host_header(url: &reqwest::Url) -> Option<String> {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => Some(format!("{h}:{p}")),
        (Some(h), None) => Some(h.to_string()),
        (None, _) => None,
    }
}

/// The first 4 characters of an id, the rest masked.
pub fn redact(id: &str) -> String {
    let shown: String = id.chars().take(4).collect();
    format!("{shown}…")
}

/// No credentials in the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no Tencent Cloud credentials: TENCENTCLOUD_SECRETID and TENCENTCLOUD_SECRETKEY are not set (attach an execution role to the function)")]
pub struct NoCredentials;

impl Credentials {
    /// Reads `TENCENTCLOUD_SECRETID`, `TENCENTCLOUD_SECRETKEY` and `TENCENTCLOUD_SESSIONTOKEN`.
    pub fn from_env() -> Result<Self, NoCredentials> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        match (var("TENCENTCLOUD_SECRETID"), var("TENCENTCLOUD_SECRETKEY")) {
            (Some(secret_id), Some(secret_key)) => Ok(Self {
                secret_id,
                secret_key,
                token: var("TENCENTCLOUD_SESSIONTOKEN"),
            }),
            _ => Err(NoCredentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let c = Credentials {
            secret_id: "AKIDsecretid".into(),
            secret_key: "topsecret".into(),
            token: Some("tok".into()),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("topsecret") && !shown.contains("tok\"") && !shown.contains("secretid"),
            "{shown}"
        );
        assert!(shown.contains("AKID…"));
    }
}
