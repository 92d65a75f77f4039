//! API Gateway trigger (integration request/response) and the Function URL subset
//! (<https://intl.cloud.tencent.com/document/product/583/12513>; Function URL:
//! <https://cloud.tencent.com/document/product/583/96099>).
//!
//! One request type serves both: Function URL events carry only `body`, `headers`, `httpMethod`,
//! `path` and `queryString`, so every other field is optional. Header names are lower-cased on
//! the way in; `queryString` values may be a string, an array (repeated key) or a bool (key with
//! no value).
//!
//! Whether the platform percent-decodes `queryString` is not documented, so names and values
//! are decoded here: `%3A` is `:` either way. A literal `%` never belongs in a value esgflow
//! reads (times, addresses, ids, cursors), so decoding an already decoded value changes nothing
//! it accepts. `+` is kept as `+` (an RFC 3339 offset).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};

/// An HTTP request as SCF delivers it from API Gateway or a Function URL.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGatewayRequest {
    /// `GET`, `POST`, ... (upper-cased on the way in).
    #[serde(deserialize_with = "upper")]
    pub http_method: String,
    /// The request path, e.g. `/v1/explain`.
    #[serde(default)]
    pub path: String,
    /// Headers, names lower-cased.
    #[serde(default, deserialize_with = "lower_keys")]
    pub headers: BTreeMap<String, String>,
    /// Query parameters, names and values percent-decoded.
    #[serde(default, deserialize_with = "decoded_query")]
    pub query_string: BTreeMap<String, QueryValue>,
    /// The body text (base64 when `is_base64_encoded`).
    #[serde(default)]
    pub body: Option<String>,
    /// Whether `body` is base64 (API Gateway's Base64 option; absent for Function URL).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_base64_encoded: bool,
    /// Path parameters of the API definition.
    #[serde(default)]
    pub path_parameters: BTreeMap<String, String>,
    /// API Gateway's request context (absent for Function URL).
    #[serde(default)]
    pub request_context: Option<RequestContext>,
}

/// The `requestContext` object; it may gain fields, never lose them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    /// API Gateway service id.
    #[serde(default)]
    pub service_id: String,
    /// API Gateway request id.
    #[serde(default)]
    pub request_id: String,
    /// Client address.
    #[serde(default)]
    pub source_ip: String,
    /// Stage, e.g. `release`.
    #[serde(default)]
    pub stage: String,
}

/// A `queryString` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueryValue {
    /// `?a=b`
    One(String),
    /// `?a=b&a=c`
    Many(Vec<String>),
    /// `?a` (no value)
    Flag(bool),
}

impl QueryValue {
    /// The first value; a bare flag reads as the empty string.
    pub fn first(&self) -> Option<&str> {
        match self {
            QueryValue::One(v) => Some(v),
            QueryValue::Many(v) => v.first().map(String::as_str),
            QueryValue::Flag(true) => Some(""),
            QueryValue::Flag(false) => None,
        }
    }
}

fn decoded_query<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, QueryValue>, D::Error> {
    let decode = |text: String| -> String {
        if text.contains('%') {
            percent_encoding::percent_decode_str(&text)
                .decode_utf8_lossy()
                .into_owned()
        } else {
            text
        }
    };
    let raw = Option::<BTreeMap<String, QueryValue>>::deserialize(deserializer)?;
    let mut decoded: BTreeMap<String, QueryValue> = BTreeMap::new();
    for (name, value) in raw.unwrap_or_default() {
        let values: Vec<String> = match value {
            QueryValue::One(v) => vec![decode(v)],
            QueryValue::Many(vs) => vs.into_iter().map(decode).collect(),
            flag => {
                decoded.entry(decode(name)).or_insert(flag);
                continue;
            }
        };
        // Two spellings of one name (`ip` and `%69p`) are one name given twice.
        let merged = match decoded.remove(&decode(name.clone())) {
            Some(QueryValue::One(first)) => [vec![first], values].concat(),
            Some(QueryValue::Many(earlier)) => [earlier, values].concat(),
            _ => values,
        };
        let value = match <[String; 1]>::try_from(merged) {
            Ok([one]) => QueryValue::One(one),
            Err(many) => QueryValue::Many(many),
        };
        decoded.insert(decode(name), value);
    }
    Ok(decoded)
}

/// The body could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("request body is marked base64 but is not valid base64: {0}")]
pub(crate) struct BodyError(#[from] base64::DecodeError);

impl ApiGatewayRequest {
    /// A header by (any-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// A query parameter's first value.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_string.get(name).and_then(QueryValue::first)
    }

    /// The body bytes, base64-decoded when flagged.
    pub(crate) fn body_bytes(&self) -> Result<Vec<u8>, BodyError> {
        let Some(body) = &self.body else {
            return Ok(Vec::new());
        };
        if self.is_base64_encoded {
            Ok(base64::engine::general_purpose::STANDARD.decode(body)?)
        } else {
            Ok(body.as_bytes().to_vec())
        }
    }
}

/// The integration response API Gateway expects (and Function URL accepts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGatewayResponse {
    /// Whether `body` is base64.
    pub is_base64_encoded: bool,
    /// HTTP status, an integer.
    pub status_code: u16,
    /// Response headers (string values). `Location` is not supported by API Gateway.
    pub headers: BTreeMap<String, String>,
    /// The body text.
    pub body: String,
}

impl ApiGatewayResponse {
    /// A JSON response.
    pub fn json<T: Serialize>(status_code: u16, body: &T) -> Self {
        Self::with_body(
            status_code,
            "application/json",
            serde_json::to_string(body).expect("response bodies are plain data"),
        )
    }

    /// A response with the given content type and text body.
    pub(crate) fn with_body(status_code: u16, content_type: &str, body: String) -> Self {
        let mut headers = BTreeMap::new();
        headers.insert("Content-Type".to_string(), content_type.to_string());
        Self {
            is_base64_encoded: false,
            status_code,
            headers,
            body,
        }
    }
}

fn upper<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(String::deserialize(deserializer)?.to_ascii_uppercase())
}

fn lower_keys<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum HeaderValue {
        One(String),
        Many(Vec<String>),
    }
    let raw: Option<BTreeMap<String, HeaderValue>> = Option::deserialize(deserializer)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let value = match v {
                HeaderValue::One(v) => v,
                HeaderValue::Many(v) => v.join(", "),
            };
            (k.to_ascii_lowercase(), value)
        })
        .collect())
}

/// `isBase64Encoded` is a bool for API Gateway but a string (`"false"`) for some triggers.
fn lenient_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    Ok(match Option::<Flag>::deserialize(deserializer)? {
        None => false,
        Some(Flag::Bool(b)) => b,
        Some(Flag::Text(t)) => t.eq_ignore_ascii_case("true"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decoded or not by the platform, a parameter reads the same; two spellings of one name
    /// are one name given twice.
    #[test]
    fn query_names_and_values_are_percent_decoded_once() {
        let request = |query: serde_json::Value| -> ApiGatewayRequest {
            serde_json::from_value(
                serde_json::json!({"httpMethod": "GET", "path": "/v1/hits", "queryString": query}),
            )
            .unwrap()
        };
        for query in [
            serde_json::json!({"until": "2025-11-25T00:00:00+08:00"}),
            serde_json::json!({"until": "2025-11-25T00%3A00%3A00+08:00"}),
            serde_json::json!({"%75ntil": "2025-11-25T00%3a00%3a00+08:00"}),
        ] {
            assert_eq!(
                request(query.clone()).query("until"),
                Some("2025-11-25T00:00:00+08:00"),
                "{query}"
            );
        }
        let twice =
            request(serde_json::json!({"ip": "10.0.0.1", "%69p": ["10.0.0.2", "10.0.0.3"]}));
        assert_eq!(
            twice.query_string["ip"],
            QueryValue::Many(vec![
                "10.0.0.2".into(),
                "10.0.0.3".into(),
                "10.0.0.1".into()
            ])
        );
        assert!(request(serde_json::Value::Null).query_string.is_empty());
        let flag = request(serde_json::json!({"verbose": true}));
        assert_eq!(flag.query("verbose"), Some(""));
    }

    /// The documented API Gateway sample (§3.2), with `isBase64Encoded` and mixed query values.
    const APIGW_SAMPLE: &str = r#"{
      "requestContext": {
        "serviceId": "service-f94sy04v", "path": "/test/{path}", "httpMethod": "POST",
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "identity": { "secretId": "abdcdxxxxxxxsdfs" },
        "sourceIp": "10.0.2.14", "stage": "release"
      },
      "headers": { "Accept": "text/html,application/xml,application/json", "host": "service-f94sy04v-1253970026.ap-guangzhou.apigateway.myqloud.com", "user-agent": "User Agent String" },
      "body": "{\"test\":\"body\"}",
      "pathParameters": { "path": "value" },
      "queryStringParameters": { "foo": "bar" },
      "headerParameters": { "Refer": "10.0.2.14" },
      "stageVariables": { "stage": "release" },
      "path": "/test/value",
      "queryString": { "foo": "bar", "bob": ["alice", "carol"], "flag": true },
      "httpMethod": "post",
      "isBase64Encoded": false
    }"#;

    #[test]
    fn parses_the_documented_api_gateway_event() {
        let req: ApiGatewayRequest = serde_json::from_str(APIGW_SAMPLE).unwrap();
        assert_eq!(req.http_method, "POST");
        assert_eq!(req.path, "/test/value");
        assert_eq!(
            req.header("ACCEPT"),
            Some("text/html,application/xml,application/json")
        );
        assert_eq!(req.query("foo"), Some("bar"));
        assert_eq!(req.query("bob"), Some("alice"));
        assert_eq!(req.query("flag"), Some(""));
        assert_eq!(req.body_bytes().unwrap(), br#"{"test":"body"}"#);
        assert_eq!(req.path_parameters["path"], "value");
        let ctx = req.request_context.unwrap();
        assert_eq!(ctx.source_ip, "10.0.2.14");
        assert_eq!(ctx.stage, "release");
    }

    #[test]
    fn parses_a_function_url_event() {
        let req: ApiGatewayRequest = serde_json::from_str(
            r#"{"body":"","headers":{"x-scf-remote-addr":"1.2.3.4"},"httpMethod":"GET","path":"/v1/healthz","queryString":{}}"#,
        )
        .unwrap();
        assert_eq!(req.http_method, "GET");
        assert_eq!(req.header("X-Scf-Remote-Addr"), Some("1.2.3.4"));
        assert!(req.request_context.is_none());
        assert!(!req.is_base64_encoded);
    }

    #[test]
    fn base64_bodies_and_string_flags() {
        let req: ApiGatewayRequest = serde_json::from_str(
            r#"{"httpMethod":"POST","path":"/","body":"aGVsbG8=","isBase64Encoded":"true"}"#,
        )
        .unwrap();
        assert_eq!(req.body_bytes().unwrap(), b"hello");
        let bad: ApiGatewayRequest = serde_json::from_str(
            r#"{"httpMethod":"POST","path":"/","body":"***","isBase64Encoded":true}"#,
        )
        .unwrap();
        assert!(bad.body_bytes().is_err());
    }

    #[test]
    fn integration_response_has_an_integer_status() {
        let resp = ApiGatewayResponse::json(404, &serde_json::json!({"error": "not found"}));
        let wire = serde_json::to_value(&resp).unwrap();
        assert_eq!(wire["statusCode"], 404);
        assert_eq!(wire["isBase64Encoded"], false);
        assert_eq!(wire["headers"]["Content-Type"], "application/json");
        assert_eq!(wire["body"], r#"{"error":"not found"}"#);
    }
}
