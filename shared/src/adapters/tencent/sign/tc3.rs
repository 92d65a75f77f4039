//! TC3-HMAC-SHA256, Tencent Cloud's API 3.0 request signature
//! (https://www.tencentcloud.com/document/api/213/33224).
//!
//! The canonical request covers the method, `/`, the query string (GET), the `content-type` and
//! `host` headers (byte for byte as sent) and the SHA-256 of the exact body bytes, so binary
//! bodies (CLS UploadLog) sign like JSON ones. The credential scope's date is the **UTC** date of
//! the timestamp.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::adapters::tencent::Credentials;

/// The parts of a request that are signed.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `POST` or `GET`.
    pub method: &'a str,
    /// The host header, e.g. `cls.tencentcloudapi.com`.
    pub host: &'a str,
    /// The raw query string for GET (`Limit=10&Offset=0`), empty for POST.
    pub query: &'a str,
    /// The content-type header exactly as sent.
    pub content_type: &'a str,
    /// The exact body bytes.
    pub body: &'a [u8],
    /// The service, e.g. `cls`, `cfw`, `vpc`.
    pub service: &'a str,
    /// `X-TC-Timestamp`, Unix seconds.
    pub timestamp: i64,
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The UTC date (`YYYY-MM-DD`) of a Unix timestamp.
pub fn utc_date(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".to_string())
}

/// The canonical request.
pub(crate) fn canonical_request(request: &SignedRequest<'_>) -> String {
    format!(
        "{}\n/\n{}\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}",
        request.method,
        request.query,
        request.content_type.trim().to_ascii_lowercase(),
        request.host.trim().to_ascii_lowercase(),
        sha256_hex(request.body)
    )
}

/// The string to sign.
pub(crate) fn string_to_sign(request: &SignedRequest<'_>) -> String {
    format!(
        "TC3-HMAC-SHA256\n{}\n{}/{}/tc3_request\n{}",
        request.timestamp,
        utc_date(request.timestamp),
        request.service,
        sha256_hex(canonical_request(request).as_bytes())
    )
}

/// The hex signature.
pub fn signature(secret_key: &str, request: &SignedRequest<'_>) -> String {
    let date = utc_date(request.timestamp);
    let k_date = hmac(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac(&k_date, request.service.as_bytes());
    let k_signing = hmac(&k_service, b"tc3_request");
    hex::encode(hmac(&k_signing, string_to_sign(request).as_bytes()))
}

/// The `Authorization` header value.
pub fn authorization(credentials: &Credentials, request: &SignedRequest<'_>) -> String {
    format!(
        "TC3-HMAC-SHA256 Credential={}/{}/{}/tc3_request, SignedHeaders=content-type;host, Signature={}",
        credentials.secret_id,
        utc_date(request.timestamp),
        request.service,
        signature(&credentials.secret_key, request)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            secret_id: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE".to_string(),
            secret_key: "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE".to_string(),
            token: None,
        }
    }

    /// Vector 1: the published POST example (DescribeInstances, 2019-02-25 UTC; in UTC+8 it is
    /// already the 26th, the classic bug).
    #[test]
    fn published_post_vector() {
        let body = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let request = SignedRequest {
            method: "POST",
            host: "cvm.tencentcloudapi.com",
            query: "",
            content_type: "application/json; charset=utf-8",
            body,
            service: "cvm",
            timestamp: 1551113065,
        };
        assert_eq!(
            sha256_hex(body),
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            sha256_hex(canonical_request(&request).as_bytes()),
            "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(utc_date(1551113065), "2019-02-25");
        assert_eq!(
            signature(&credentials().secret_key, &request),
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        assert_eq!(
            authorization(&credentials(), &request),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    /// Vector 2: the published GET example.
    #[test]
    fn published_get_vector() {
        let request = SignedRequest {
            method: "GET",
            host: "cvm.tencentcloudapi.com",
            query: "Limit=10&Offset=0",
            content_type: "application/x-www-form-urlencoded",
            body: b"",
            service: "cvm",
            timestamp: 1539084154,
        };
        assert_eq!(utc_date(1539084154), "2018-10-09");
        assert_eq!(
            signature(&credentials().secret_key, &request),
            "5da7a33f6993f0614b047e5df4582db9e9bf4672ba50567dba16c6ccf174c474"
        );
    }

    #[test]
    fn binary_bodies_are_hashed_byte_for_byte() {
        let a = SignedRequest {
            method: "POST",
            host: "cls.tencentcloudapi.com",
            query: "",
            content_type: "application/octet-stream",
            body: &[0, 159, 146, 150],
            service: "cls",
            timestamp: 1700000000,
        };
        let b = SignedRequest {
            body: &[0, 159, 146, 151],
            ..a
        };
        assert_ne!(signature("k", &a), signature("k", &b));
        assert!(canonical_request(&a).ends_with(&sha256_hex(&[0, 159, 146, 150])));
    }
}
