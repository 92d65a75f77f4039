//! The one way esgflow speaks to Tencent Cloud: where the credentials come from
//! ([`CredentialSource`]), the HTTP client every call goes through ([`client`]: redirects are
//! never followed, so a signed request is never repeated somewhere else), the two signed
//! requests — TC3 for API 3.0 and CLS ([`tc3_request`]), `q-sign` for COS ([`cos_request`]) —,
//! and one retry policy: how long an attempt may take ([`ATTEMPT_TIMEOUT`]), the backoff
//! ([`retry`]) and the one list of error codes worth retrying ([`retryable`]).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::sign::{qsign, tc3};
use super::{Credentials, NoCredentials};
use crate::adapters::retry::Retry;

/// The longest single attempt of any call.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The backoff between attempts until `deadline`: jittered, from 200 ms doubling to 2 s.
pub(crate) fn retry(deadline: Instant) -> Retry {
    Retry::new(deadline, Duration::from_millis(200), Duration::from_secs(2))
}

/// API 3.0 and CLS error codes worth retrying: throttling and transient server trouble (the
/// `Network` code is esgflow's own, for a call that got no answer).
pub(crate) fn retryable(code: &str) -> bool {
    code.starts_with("RequestLimitExceeded")
        || code.starts_with("InternalError")
        || code.starts_with("ServiceUnavailable")
        || matches!(
            code,
            "Network"
                | "FailedOperation.WriteQpsLimit"
                | "FailedOperation.WriteTrafficLimit"
                | "ResourceUnavailable"
        )
}

/// Error codes that say the credentials themselves are stale (a temporary token that expired):
/// the source reads them again before the next call.
pub(crate) fn stale_credentials(code: &str) -> bool {
    matches!(
        code,
        "AuthFailure.TokenFailure" | "AuthFailure.SignatureExpire" | "ExpiredToken"
    )
}

/// The HTTP client of every Tencent Cloud call. A redirect is never followed: reqwest would
/// repeat a POST as a bodiless GET, or send a signed request to another host, and whatever
/// answered would be taken for the service's answer.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the HTTP client builds (as reqwest::Client::new() would)")
}

/// Where calls get their credentials: given (the deploy's key, a test's), or the execution
/// role's temporary credentials that SCF puts in the environment (`TENCENTCLOUD_SECRETID`,
/// `TENCENTCLOUD_SECRETKEY`, `TENCENTCLOUD_SESSIONTOKEN`), read on first use and kept, and read
/// again after a service answered that they went stale. Never logged.
#[derive(Clone, Debug)]
pub struct CredentialSource(Arc<Source>);

#[derive(Debug)]
enum Source {
    Given(Credentials),
    Environment(RwLock<Option<Credentials>>),
}

impl CredentialSource {
    /// The execution role's credentials, from the environment.
    pub fn environment() -> Self {
        Self(Arc::new(Source::Environment(RwLock::new(None))))
    }

    /// These credentials, always.
    pub fn given(credentials: Credentials) -> Self {
        Self(Arc::new(Source::Given(credentials)))
    }

    /// The credentials to sign with.
    pub fn get(&self) -> Result<Credentials, NoCredentials> {
        match &*self.0 {
            Source::Given(credentials) => Ok(credentials.clone()),
            Source::Environment(kept) => {
                if let Some(credentials) = kept.read().expect("not poisoned").as_ref() {
                    return Ok(credentials.clone());
                }
                let read = Credentials::from_env()?;
                *kept.write().expect("not poisoned") = Some(read.clone());
                Ok(read)
            }
        }
    }

    /// A service answered `code`: when it says the credentials went stale, the next call reads
    /// them again.
    pub(crate) fn answered(&self, code: &str) {
        if let (true, Source::Environment(kept)) = (stale_credentials(code), &*self.0) {
            *kept.write().expect("not poisoned") = None;
        }
    }
}

/// An API 3.0 action, as the TC3 signature and its headers name it.
pub(crate) struct Action<'a> {
    /// `cls`, `cfw`, `vpc`, …: the signature's service.
    pub service: &'a str,
    /// `X-TC-Version`.
    pub version: &'a str,
    /// `X-TC-Action`.
    pub action: &'a str,
    /// `X-TC-Region`.
    pub region: &'a str,
}

/// The TC3-HMAC-SHA256 signed POST of `body` to `url` (whose `Host` is `host`) for `action`,
/// within `timeout`: `Content-Type`, `Host`, `X-TC-Action`, `X-TC-Version`, `X-TC-Region`,
/// `X-TC-Timestamp`, `Authorization` and, for temporary credentials, `X-TC-Token`. The caller
/// adds what its service adds (CLS: the topic and the compression) and sends it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tc3_request(
    http: &reqwest::Client,
    url: reqwest::Url,
    host: &str,
    action: &Action<'_>,
    content_type: &str,
    body: Vec<u8>,
    credentials: &Credentials,
    timeout: Duration,
) -> reqwest::RequestBuilder {
    let timestamp = chrono::Utc::now().timestamp();
    let signed = tc3::SignedRequest {
        method: "POST",
        host,
        query: "",
        content_type,
        body: &body,
        service: action.service,
        timestamp,
    };
    let mut request = http
        .post(url)
        .timeout(timeout)
        .header("Content-Type", content_type)
        .header("Host", host)
        .header("X-TC-Action", action.action)
        .header("X-TC-Version", action.version)
        .header("X-TC-Region", action.region)
        .header("X-TC-Timestamp", timestamp.to_string())
        .header("Authorization", tc3::authorization(credentials, &signed));
    if let Some(token) = &credentials.token {
        request = request.header("X-TC-Token", token);
    }
    request.body(body)
}

/// The `q-sign` signed COS request `method path` to `url` (whose `Host` is `host`), with the
/// signed `headers` (lower-case names, `host` among them), within `timeout`: `Host`,
/// `Authorization` valid from a minute ago for ten minutes and, for temporary credentials,
/// `x-cos-security-token`. The caller adds the body and sends it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cos_request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: reqwest::Url,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    credentials: &Credentials,
    timeout: Duration,
) -> reqwest::RequestBuilder {
    let now = chrono::Utc::now().timestamp();
    let verb = method.as_str().to_string();
    let signed = qsign::Request {
        method: &verb,
        path,
        params: &[],
        headers,
        start: now - 60,
        end: now + 600,
    };
    let mut request = http
        .request(method, url)
        .timeout(timeout)
        .header("Host", host)
        .header("Authorization", qsign::authorization(credentials, &signed));
    if let Some(token) = &credentials.token {
        request = request.header("x-cos-security-token", token);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One list for every caller: the API client's codes and CLS's write limits alike.
    #[test]
    fn one_list_of_retryable_codes() {
        for code in [
            "RequestLimitExceeded",
            "RequestLimitExceeded.UinLimitExceeded",
            "InternalError",
            "InternalError.DbError",
            "ServiceUnavailable",
            "Network",
            "FailedOperation.WriteQpsLimit",
            "FailedOperation.WriteTrafficLimit",
            "ResourceUnavailable",
        ] {
            assert!(retryable(code), "{code}");
        }
        for code in [
            "AuthFailure.SignatureFailure",
            "ResourceNotFound.TopicNotExist",
            "InvalidParameter",
            "FailedOperation.InvalidContext",
        ] {
            assert!(!retryable(code), "{code}");
        }
    }

    /// Given credentials are used as given; the environment is read once and again only after
    /// a service said the token went stale.
    #[test]
    fn credentials_are_read_once_and_again_when_stale() {
        let given = Credentials {
            secret_id: "AKIDgiven".into(),
            secret_key: "key".into(),
            token: None,
        };
        let source = CredentialSource::given(given.clone());
        source.answered("AuthFailure.TokenFailure");
        assert_eq!(source.get().unwrap(), given);

        let environment = CredentialSource::environment();
        let Source::Environment(kept) = &*environment.0 else {
            unreachable!()
        };
        *kept.write().unwrap() = Some(given.clone());
        assert_eq!(environment.get().unwrap(), given, "kept, not read again");
        environment.answered("AuthFailure.SignatureFailure");
        assert!(
            kept.read().unwrap().is_some(),
            "a bad signature is not staleness"
        );
        environment.answered("AuthFailure.TokenFailure");
        assert!(
            kept.read().unwrap().is_none(),
            "read again on the next call"
        );
    }
}
