//! A local stand-in for API Gateway in front of a function under the emulator, as
//! `sam local start-api` does: every HTTP request on 127.0.0.1 becomes an API Gateway trigger
//! event (<https://intl.cloud.tencent.com/document/product/583/12513>: lower-case headers, `queryString` values as string or array,
//! body as text or base64), the function is invoked, and its integration response
//! (`statusCode`, `headers`, `body`, `isBase64Encoded`) becomes the HTTP response. A function
//! error or a malformed integration response becomes a 502, as API Gateway answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::emulator::{Emulator, InvocationResult};

/// Largest request body forwarded (API Gateway's synchronous limit is 6 MB).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// The running gateway.
pub struct Gateway {
    /// Where it listens.
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Gateway {
    /// Serves `emulator`'s function on `bind` (use port 0 for an ephemeral port).
    pub async fn start(emulator: Emulator, bind: SocketAddr) -> std::io::Result<Self> {
        let emulator = Arc::new(Mutex::new(emulator));
        let app = axum::Router::new().fallback(forward).with_state(emulator);
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, server })
    }
}

/// The API Gateway event for an HTTP request.
pub fn event(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    source_ip: &str,
) -> Value {
    let mut query_string = serde_json::Map::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.split_once('=') {
            Some((k, v)) => (k.to_string(), Value::String(v.to_string())),
            None => (pair.to_string(), Value::Bool(true)),
        };
        match query_string.get_mut(&key) {
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => *existing = Value::Array(vec![existing.clone(), value]),
            None => {
                query_string.insert(key, value);
            }
        }
    }
    let (body, encoded) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    json!({
        "requestContext": {"serviceId": "service-local", "path": path, "httpMethod": method, "requestId": "local", "sourceIp": source_ip, "stage": "release"},
        "headers": headers,
        "body": body,
        "path": path,
        "queryString": query_string,
        "httpMethod": method,
        "isBase64Encoded": encoded,
    })
}

fn bad_gateway(message: &str) -> Response {
    let mut response = Response::new(Body::from(
        json!({"errno": 403, "error": message}).to_string(),
    ));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

/// Turns an integration response into an HTTP response.
pub fn response(integration: &Value) -> Response {
    let Some(status) = integration
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
    else {
        return bad_gateway("Invalid scf response format. please check your scf response format.");
    };
    let text = integration
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or("");
    let body = if integration
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(bytes) => bytes,
            Err(_) => return bad_gateway("the integration response body is not valid base64"),
        }
    } else {
        text.as_bytes().to_vec()
    };
    let mut http = Response::new(Body::from(body));
    *http.status_mut() = status;
    for (name, value) in integration
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let values: Vec<&str> = match value {
            Value::String(v) => vec![v.as_str()],
            Value::Array(vs) => vs.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for v in values {
            if let (Ok(name), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                http.headers_mut().append(name, v);
            }
        }
    }
    http
}

async fn forward(State(emulator): State<Arc<Mutex<Emulator>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => return bad_gateway("request body over API Gateway's 6 MB limit"),
    };
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    let event = event(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        &headers,
        &body,
        "127.0.0.1",
    );
    let invocation = emulator
        .lock()
        .await
        .invoke(event.to_string().into_bytes())
        .await;
    match invocation {
        Ok(invocation) => match &invocation.result {
            InvocationResult::Response(_) => response(&invocation.result.json()),
            InvocationResult::Error(_) => bad_gateway("the function failed"),
        },
        Err(err) => bad_gateway(&err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_strings_arrays_or_flags() {
        let event = event(
            "GET",
            "/v1/hits",
            Some("ip=10.0.0.1&type=a&type=b&verbose"),
            &BTreeMap::new(),
            b"",
            "127.0.0.1",
        );
        assert_eq!(event["queryString"]["ip"], "10.0.0.1");
        assert_eq!(event["queryString"]["type"], json!(["a", "b"]));
        assert_eq!(event["queryString"]["verbose"], true);
        assert_eq!(event["isBase64Encoded"], false);
        let binary = super::event(
            "POST",
            "/",
            None,
            &BTreeMap::new(),
            &[0xff, 0xfe],
            "127.0.0.1",
        );
        assert_eq!(binary["isBase64Encoded"], true);
        assert_eq!(binary["body"], "//4=");
    }

    #[test]
    fn integration_responses_map_to_http() {
        let http = response(
            &json!({"isBase64Encoded": false, "statusCode": 404, "headers": {"Content-Type": "application/json", "X-Multi": ["a", "b"]}, "body": "{}"}),
        );
        assert_eq!(http.status(), 404);
        assert_eq!(http.headers().get_all("x-multi").iter().count(), 2);
        assert_eq!(
            response(&json!({"statusCode": "200"})).status(),
            502,
            "a string status is malformed"
        );
    }
}
