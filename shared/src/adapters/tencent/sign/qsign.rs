//! The `q-sign-algorithm=sha1` request signature used by COS (object storage) and CLS's legacy
//! endpoints (<https://cloud.tencent.com/document/product/614/12445>; COS: <https://www.tencentcloud.com/document/product/436/7778>).
//!
//! ```text
//! HttpString   = lower(method) \n path \n params \n headers \n   (params/headers: lowerkey=urlencode(value), sorted, &-joined)
//! StringToSign = "sha1" \n KeyTime \n hex(sha1(HttpString)) \n
//! SignKey      = hex(HMAC-SHA1(SecretKey, KeyTime))
//! Signature    = hex(HMAC-SHA1(SignKey as ASCII hex, StringToSign))
//! ```

use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::{Digest, Sha1};

use crate::adapters::tencent::Credentials;

/// What is signed of one request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// The path, as sent (`/esgflow/latest.json`).
    pub path: &'a str,
    /// Query parameters (name, value), unencoded.
    pub params: &'a [(&'a str, &'a str)],
    /// Headers to sign (name, value), unencoded; `host` should be among them.
    pub headers: &'a [(&'a str, &'a str)],
    /// Validity window start, Unix seconds.
    pub start: i64,
    /// Validity window end, Unix seconds.
    pub end: i64,
}

/// Everything but RFC 3986's unreserved characters is encoded, with upper-case hex.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, ENCODE).to_string()
}

/// `k1=v1&k2=v2` over lower-cased, sorted keys, and the `k1;k2` list.
fn canonical(pairs: &[(&str, &str)]) -> (String, String) {
    let mut pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (encode(&k.to_ascii_lowercase()), encode(v)))
        .collect();
    pairs.sort();
    let joined = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let list = pairs
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (joined, list)
}

fn hmac_sha1_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// The `HttpString` of a request (exposed for tests and stubs).
pub(crate) fn http_string(request: &Request<'_>) -> String {
    let (params, _) = canonical(request.params);
    let (headers, _) = canonical(request.headers);
    format!(
        "{}\n{}\n{params}\n{headers}\n",
        request.method.to_ascii_lowercase(),
        request.path
    )
}

/// The signature alone.
pub fn signature(secret_key: &str, request: &Request<'_>) -> String {
    let key_time = format!("{};{}", request.start, request.end);
    let string_to_sign = format!(
        "sha1\n{key_time}\n{}\n",
        hex::encode(Sha1::digest(http_string(request).as_bytes()))
    );
    let sign_key = hmac_sha1_hex(secret_key.as_bytes(), key_time.as_bytes());
    hmac_sha1_hex(sign_key.as_bytes(), string_to_sign.as_bytes())
}

/// The `Authorization` header value.
pub fn authorization(credentials: &Credentials, request: &Request<'_>) -> String {
    let (_, params) = canonical(request.params);
    let (_, headers) = canonical(request.headers);
    let time = format!("{};{}", request.start, request.end);
    format!(
        "q-sign-algorithm=sha1&q-ak={}&q-sign-time={time}&q-key-time={time}&q-header-list={headers}&q-url-param-list={params}&q-signature={}",
        credentials.secret_id,
        signature(&credentials.secret_key, request)
    )
}

/// Checks an `Authorization` header against the request it came with (for local stubs): the
/// signed header list is taken from the header itself, the values from `headers`.
pub fn verify(
    authorization: &str,
    secret_key: &str,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Result<(), String> {
    let field = |name: &str| {
        authorization
            .split('&')
            .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| format!("Authorization has no {name}"))
    };
    let (start, end) = field("q-sign-time")?
        .split_once(';')
        .ok_or("q-sign-time is not start;end")?;
    let signed: Vec<&str> = field("q-header-list")?
        .split(';')
        .filter(|h| !h.is_empty())
        .collect();
    let signed_headers: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| signed.iter().any(|s| s.eq_ignore_ascii_case(k)))
        .copied()
        .collect();
    if signed_headers.len() != signed.len() {
        return Err(format!("signed headers {signed:?} are not all present"));
    }
    if !signed.contains(&"host") {
        return Err("host is not signed".into());
    }
    let request = Request {
        method,
        path,
        params,
        headers: &signed_headers,
        start: start.parse().map_err(|_| "bad q-sign-time")?,
        end: end.parse().map_err(|_| "bad q-sign-time")?,
    };
    let now = chrono::Utc::now().timestamp();
    if now < request.start - 300 || now > request.end {
        return Err("the signature is not valid now".into());
    }
    let expected = signature(secret_key, &request);
    let given = field("q-signature")?;
    if subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes()).into() {
        Ok(())
    } else {
        Err("q-signature does not match".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector published on <https://cloud.tencent.com/document/product/614/12445>, byte for byte.
    #[test]
    fn published_vector() {
        let request = Request {
            method: "GET",
            path: "/logset",
            params: &[("logset_id", "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")],
            headers: &[
                ("Host", "ap-shanghai.cls.tencentyun.com"),
                ("Content-Type", "application/json"),
            ],
            start: 1578976553,
            end: 1578978363,
        };
        assert_eq!(
            http_string(&request),
            "get\n/logset\nlogset_id=xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx\ncontent-type=application%2Fjson&host=ap-shanghai.cls.tencentyun.com\n"
        );
        assert_eq!(
            hex::encode(Sha1::digest(http_string(&request).as_bytes())),
            "e2d0126b61269ef047d9d05b6c385cea0aea9799"
        );
        assert_eq!(
            hmac_sha1_hex(
                b"LUSE4nPK1d4tX5SHyXv6tZXXXXXXXXXX",
                b"1578976553;1578978363"
            ),
            "f49255658de17084898d83beaa755b9f0301591f"
        );
        let credentials = Credentials {
            secret_id: "AKIDc9YlmrBcFk4C8sbmXQ8i65XXXXXXXXXX".into(),
            secret_key: "LUSE4nPK1d4tX5SHyXv6tZXXXXXXXXXX".into(),
            token: None,
        };
        assert_eq!(
            authorization(&credentials, &request),
            "q-sign-algorithm=sha1&q-ak=AKIDc9YlmrBcFk4C8sbmXQ8i65XXXXXXXXXX&q-sign-time=1578976553;1578978363&q-key-time=1578976553;1578978363&q-header-list=content-type;host&q-url-param-list=logset_id&q-signature=315dfa0d0ce55582145f7800df5eb3e9c88d2f84"
        );
    }

    #[test]
    fn verify_accepts_its_own_and_refuses_a_changed_request() {
        let now = chrono::Utc::now().timestamp();
        let headers = [
            ("host", "b-1.cos.ap-guangzhou.myqcloud.com"),
            ("if-none-match", "\"e1\""),
        ];
        let request = Request {
            method: "GET",
            path: "/esgflow/latest.json",
            params: &[],
            headers: &headers,
            start: now - 60,
            end: now + 300,
        };
        let credentials = Credentials {
            secret_id: "AKID".into(),
            secret_key: "key".into(),
            token: None,
        };
        let auth = authorization(&credentials, &request);
        assert_eq!(
            verify(&auth, "key", "GET", "/esgflow/latest.json", &[], &headers),
            Ok(())
        );
        assert!(verify(&auth, "key", "GET", "/esgflow/other.json", &[], &headers).is_err());
        assert!(verify(&auth, "nope", "GET", "/esgflow/latest.json", &[], &headers).is_err());
    }
}
