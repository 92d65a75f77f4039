//! SCF's HTTP events to and from the lookup application, as `lambda_http` does for Lambda: an
//! API Gateway / Function URL event ([`ApiGatewayRequest`]) becomes an `http::Request`, the
//! router answers it, and the `http::Response` becomes the integration response
//! ([`ApiGatewayResponse`]).
//!
//! The event's query values arrive decoded (`crate::events::apigw`); they are percent-encoded
//! again here, every byte but the unreserved ones, so the router reads exactly those values
//! back. The invocation's request id and deadline travel as an [`Invocation`] extension.

use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request};
use axum::response::Response;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};
use tower::ServiceExt;

use super::request::Invocation;
use super::router::{failure_response, secured, service, Service};
use super::{fail, Lookup, MAX_ANSWER_BYTES};
use crate::events::apigw::QueryValue;
use crate::events::{ApiGatewayRequest, ApiGatewayResponse};

/// Query names and values: everything but RFC 3986's unreserved characters is encoded.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Path text: what may not stand in a URI path is encoded; `%` and `/` are kept (the path may
/// arrive encoded already).
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// The lookup application, built once per warm instance.
#[derive(Clone)]
pub struct App {
    service: Service,
}

impl App {
    pub(crate) fn new(lookup: Lookup) -> Self {
        Self {
            service: service(lookup),
        }
    }

    /// Answers one SCF HTTP event by `deadline`.
    pub async fn handle(
        &self,
        event: &ApiGatewayRequest,
        request_id: &str,
        deadline: Instant,
    ) -> ApiGatewayResponse {
        let invocation = Invocation {
            request_id: request_id.to_string(),
            deadline,
        };
        let response = match request_of(event, invocation) {
            Ok(request) => match self.service.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
            Err(failure) => secured(failure_response(failure, request_id)).await,
        };
        integration_response(response, request_id).await
    }
}

/// The `http::Request` an event stands for.
fn request_of(
    event: &ApiGatewayRequest,
    invocation: Invocation,
) -> Result<Request<Body>, super::Failure> {
    let body = event
        .body_bytes()
        .map_err(|e| fail(400, "bad_request", e.to_string()))?;
    let method = Method::from_bytes(event.http_method.as_bytes()).map_err(|_| {
        fail(
            400,
            "bad_request",
            format!("{:?} is not an HTTP method", event.http_method),
        )
    })?;
    let mut uri = String::new();
    if !event.path.starts_with('/') {
        uri.push('/');
    }
    uri.extend(utf8_percent_encode(&event.path, PATH));
    let mut separator = '?';
    for (name, value) in &event.query_string {
        // A bare name (`?verbose`) goes as `verbose=`: the routes read both as "".
        let values: Vec<&str> = match value {
            QueryValue::One(v) => vec![v],
            QueryValue::Many(vs) => vs.iter().map(String::as_str).collect(),
            QueryValue::Flag(true) => vec![""],
            QueryValue::Flag(false) => vec![],
        };
        for value in values {
            uri.push(separator);
            separator = '&';
            uri.extend(utf8_percent_encode(name, QUERY));
            uri.push('=');
            uri.extend(utf8_percent_encode(value, QUERY));
        }
    }
    let length = body.len();
    let mut request = Request::builder()
        .method(method)
        .uri(&uri)
        .body(Body::from(body))
        .map_err(|e| fail(400, "bad_request", format!("{}: {e}", event.path)))?;
    let headers = request.headers_mut();
    for (name, value) in &event.headers {
        // A header HTTP cannot carry cannot reach a route either; it is left out.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    request.extensions_mut().insert(invocation);
    Ok(request)
}

/// The integration response for an answer: headers named in their usual capitals (one value
/// per name; repeated ones joined by `, `), a text body as text, anything else in base64.
async fn integration_response(response: Response, request_id: &str) -> ApiGatewayResponse {
    let (parts, body) = response.into_parts();
    // The routes that can answer much budget their answers and say what fits; any other answer
    // past what SCF lets a function return is refused here, as 413 and never as a failure of
    // the platform.
    let too_large = |weight: String| {
        fail(
            413,
            "answer_too_large",
            format!("the answer is {weight} bytes, over the {MAX_ANSWER_BYTES} an SCF function may answer: ask for less (a shorter window, a filter or a smaller limit)"),
        )
    };
    let refused = |failure| async move {
        Box::pin(integration_response(
            secured(failure_response(failure, request_id)).await,
            request_id,
        ))
        .await
    };
    let bytes = match axum::body::to_bytes(body, MAX_ANSWER_BYTES).await {
        Ok(bytes) => bytes,
        Err(err) => {
            tracing::warn!(error = %err, "answer body unreadable or over the cap");
            return refused(too_large(format!("more than {MAX_ANSWER_BYTES}"))).await;
        }
    };
    let weight = String::from_utf8(bytes.to_vec()).map_or(bytes.len().div_ceil(3) * 4, |text| {
        super::escaped_len(&text)
    });
    if weight > MAX_ANSWER_BYTES && parts.status.is_success() {
        return refused(too_large(weight.to_string())).await;
    }
    let mut headers = std::collections::BTreeMap::<String, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(capitalized(name.as_str()))
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    // The platform sets the length of what it sends.
    headers.remove("Content-Length");
    let text = headers.get("Content-Type").is_some_and(|t| {
        t.starts_with("text/") || t.starts_with("application/json") || t.contains("ndjson")
    });
    let (body, is_base64_encoded) = match String::from_utf8(bytes.to_vec()) {
        Ok(body) if text || bytes.is_empty() => (body, false),
        _ => (
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            true,
        ),
    };
    ApiGatewayResponse {
        is_base64_encoded,
        status_code: parts.status.as_u16(),
        headers,
        body,
    }
}

/// `content-security-policy` as `Content-Security-Policy`.
fn capitalized(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::lookup::request::Params;
    use proptest::prelude::*;

    fn event(value: serde_json::Value) -> ApiGatewayRequest {
        serde_json::from_value(value).unwrap()
    }

    proptest! {
        /// Whatever query values an event carries, the router reads exactly those values back:
        /// the adapter's encoding and the router's decoding are inverse.
        #[test]
        fn query_values_reach_the_router_unchanged(
            query in prop::collection::btree_map(
                "[a-z_%+=& ]{0,6}",
                prop_oneof![
                    "\\PC{0,12}".prop_map(|v| serde_json::json!(v)),
                    prop::collection::vec("\\PC{0,8}", 2..4).prop_map(|v| serde_json::json!(v)),
                    Just(serde_json::json!(true)),
                ],
                0..5,
            )
        ) {
            let event = event(serde_json::json!({"httpMethod": "GET", "path": "/v1/hits", "queryString": query}));
            let request = request_of(&event, Invocation { request_id: "r".into(), deadline: Instant::now() }).unwrap();
            let params = Params::parse(request.uri().query().unwrap_or(""));
            let names: Vec<&String> = params.query_string.keys().collect();
            prop_assert_eq!(names, event.query_string.keys().collect::<Vec<_>>());
            for (name, value) in &event.query_string {
                match value {
                    QueryValue::Many(values) => prop_assert_eq!(&params.query_string[name], &QueryValue::Many(values.clone())),
                    _ => prop_assert_eq!(params.query(name), value.first()),
                }
            }
        }
    }

    /// An event is answered as an integration response: headers in their usual capitals, a
    /// JSON or HTML body as text; a body marked base64 that is not is refused by name, with the
    /// security headers still on.
    #[tokio::test]
    async fn events_are_answered_as_integration_responses() {
        let dir = std::env::temp_dir().join(format!("esgflow-scf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snapshot.json");
        crate::core::snapshot::fixtures::sample(0)
            .save(&path)
            .unwrap();
        let app = Lookup::new(
            crate::app::lookup::Auth::Bearer("t0ken".into()),
            4096,
            crate::app::snapshot_cache::SnapshotCache::new(
                &path,
                std::time::Duration::from_secs(60),
            ),
        )
        .app();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let page = app
            .handle(
                &event(serde_json::json!({"httpMethod": "GET", "path": "/"})),
                "r1",
                deadline,
            )
            .await;
        assert_eq!(page.status_code, 200);
        assert!(!page.is_base64_encoded);
        assert!(page.headers["Content-Type"].starts_with("text/html"));
        assert!(page.headers.contains_key("Content-Security-Policy"));
        assert!(!page.headers.contains_key("Content-Length"));
        assert!(page.body.contains("<html"));
        let explained = app
            .handle(
                &event(serde_json::json!({
                    "httpMethod": "post", "path": "/v1/explain",
                    "headers": {"Authorization": "bearer t0ken"},
                    "body": base64::engine::general_purpose::STANDARD.encode(r#"{"src":"10.0.1.11","dst":"10.0.3.10","protocol":"tcp","port":3306}"#),
                    "isBase64Encoded": true
                })),
                "r2",
                deadline,
            )
            .await;
        assert_eq!(explained.status_code, 200, "{}", explained.body);
        assert_eq!(explained.headers["Content-Type"], "application/json");
        let answer: serde_json::Value = serde_json::from_str(&explained.body).unwrap();
        assert_eq!(
            (answer["decision"].as_str(), answer["rule"]["uuid"].as_str()),
            (Some("block"), Some("7010"))
        );
        let bad = app
            .handle(
                &event(serde_json::json!({
                    "httpMethod": "POST", "path": "/v1/explain", "body": "***", "isBase64Encoded": true
                })),
                "r3",
                deadline,
            )
            .await;
        assert_eq!(bad.status_code, 400);
        assert!(bad.headers.contains_key("X-Frame-Options"));
        let error: serde_json::Value = serde_json::from_str(&bad.body).unwrap();
        assert_eq!(error["error"]["request_id"], "r3");
        assert!(error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("base64"));
        std::fs::remove_dir_all(dir).ok();
    }

    /// An answer past what SCF lets a function return — by its bytes, or by its weight once
    /// escaped into the integration response — is refused with 413 and the request id, never a
    /// 5xx (issue #36: a 500 with an empty request id).
    #[tokio::test]
    async fn an_answer_over_the_cap_is_refused_with_its_request_id() {
        for body in [
            vec![b'x'; MAX_ANSWER_BYTES + 128 * 1024],
            vec![b'"'; MAX_ANSWER_BYTES / 2 + 1],
        ] {
            let answer = integration_response(Response::new(Body::from(body)), "r9").await;
            assert_eq!(answer.status_code, 413);
            assert!(answer.headers.contains_key("X-Frame-Options"));
            let error: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
            assert_eq!(error["error"]["request_id"], "r9");
            assert_eq!(error["error"]["code"], "answer_too_large");
        }
        let fits = Response::new(Body::from(vec![b'x'; MAX_ANSWER_BYTES - 10]));
        assert_eq!(integration_response(fits, "r9").await.status_code, 200);
    }

    #[test]
    fn header_names_are_capitalized() {
        assert_eq!(
            capitalized("content-security-policy"),
            "Content-Security-Policy"
        );
        assert_eq!(capitalized("x-esgflow-next"), "X-Esgflow-Next");
    }
}
