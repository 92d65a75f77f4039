//! The lookup application: axum routes over a [`Lookup`], and the tower layers every request
//! and answer passes through.
//!
//! From the outside in: the security headers ([`security_headers`]) on every answer; the JSON
//! error body (`{"error": {"code", "message", "request_id"}}`) for every error, whether a handler,
//! a layer or axum itself refused the request; the body cap; then, per route, the bearer token
//! (the lookup token for reads and explain, the admin token for switches). Only the page and
//! `/v1/healthz` are open.

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use std::convert::Infallible;
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::normalize_path::NormalizePathLayer;

use super::explain::explain_flows;
use super::health::{healthz, page};
use super::hits::{export, hits, one_hit};
use super::request::Invocation;
use super::request::{ErrorBody, ErrorDetail};
use super::rules::{one_rule, rules, top_rules};
use super::snapshot::snapshot;
use super::traffic::traffic;
use super::vpcs::{switch, vpcs};
use super::whatif::{observe_as_drop, tighten, what_if};
use super::{fail, security_headers, Failure, Lookup};
use crate::core::text::cut;

/// The lookup application as one tower service: [`router`] inside the layers that need the
/// whole answer (the JSON error body sees axum's `Allow` header, the security headers every
/// answer), with trailing slashes trimmed first (`/v1/hits/` is `/v1/hits`, as the function has
/// always answered).
pub type Service = BoxCloneSyncService<Request, Response, Infallible>;

/// The lookup application over `lookup`: what SCF, `esgflow serve` and the tests call.
pub fn service(lookup: Lookup) -> Service {
    layered(router(lookup.clone()), lookup)
}

/// `routes` inside the application's layers; a panic in a route is answered as a 500 with the
/// request id, like any other failure.
fn layered(routes: Router, lookup: Lookup) -> Service {
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(NormalizePathLayer::trim_trailing_slash())
            .layer(middleware::map_response(secured))
            .layer(middleware::from_fn_with_state(lookup, json_errors))
            .layer(CatchPanicLayer::custom(panicked))
            .service(routes),
    )
}

/// A route's panic as a bare 500 (`json_errors` gives it the error body and request id).
fn panicked(panic: Box<dyn std::any::Any + Send>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    fail(
        500,
        "internal_error",
        format!("the route panicked: {message}"),
    )
    .into_response()
}

/// The routes, each behind its token, under the body cap.
pub fn router(lookup: Lookup) -> Router {
    let reads = Router::new()
        .route("/v1/explain", post(explain_flows))
        .route("/v1/snapshot", get(snapshot))
        .route("/v1/stats/top-rules", get(top_rules))
        .route("/v1/rules", get(rules))
        .route("/v1/rules/{uuid}", get(one_rule))
        .route("/v1/hits", get(hits))
        .route("/v1/hits/export", get(export))
        .route("/v1/hits/{record_id}", get(one_hit))
        .route("/v1/traffic", get(traffic))
        .route("/v1/traffic/peers", get(super::traffic::peers))
        .route("/v1/traffic/instances", get(super::traffic::instances))
        .route("/v1/vpcs", get(vpcs))
        .route("/v1/whatif", post(what_if))
        .route("/v1/whatif/observe", get(observe_as_drop))
        .route("/v1/whatif/tighten", get(tighten))
        .route_layer(middleware::from_fn_with_state(lookup.clone(), lookup_token));
    let switches = Router::new()
        .route("/v1/vpcs/{id}/monitoring", put(switch))
        .route_layer(middleware::from_fn_with_state(lookup.clone(), admin_token));
    Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/v1/healthz", get(healthz))
        .merge(reads)
        .merge(switches)
        .layer(RequestBodyLimitLayer::new(lookup.max_body_bytes))
        .with_state(lookup)
}

/// Admits a request carrying the lookup token (or any, behind API Gateway authentication).
async fn lookup_token(
    State(lookup): State<Lookup>,
    request: Request,
    next: Next,
) -> Result<Response, Failure> {
    if lookup.admits(authorization(&request)) {
        Ok(next.run(request).await)
    } else {
        Err(fail(401, "unauthorized", "missing or invalid bearer token"))
    }
}

/// Admits a request carrying the admin token.
async fn admin_token(
    State(lookup): State<Lookup>,
    request: Request,
    next: Next,
) -> Result<Response, Failure> {
    lookup.admits_admin(authorization(&request))?;
    Ok(next.run(request).await)
}

fn authorization(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
}

/// Gives every error answer the JSON error body with the request id: a [`Failure`] as the
/// handler or layer made it, axum's own refusals (no route, wrong method, a body over the cap,
/// an unreadable path) in the same words. A 500 says only "internal error". An unknown route
/// names its path only to a caller holding the lookup token: nothing is echoed before
/// authentication.
async fn json_errors(State(lookup): State<Lookup>, mut request: Request, next: Next) -> Response {
    let invocation = request
        .extensions()
        .get::<Invocation>()
        .cloned()
        .unwrap_or_else(Invocation::fresh);
    let path = lookup
        .admits(authorization(&request))
        .then(|| request.uri().path().to_string());
    request.extensions_mut().insert(invocation.clone());
    let mut response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let failure = match response.extensions_mut().remove::<Failure>() {
        Some(failure) => failure,
        None => {
            let text = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap_or_default();
            refusal(
                status,
                path.as_deref(),
                allow.as_ref(),
                lookup.max_body_bytes,
                &text,
            )
        }
    };
    let mut answer = failure_response(failure, &invocation.request_id);
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}

/// axum's refusal of a request, in the API's words.
fn refusal(
    status: StatusCode,
    path: Option<&str>,
    allow: Option<&HeaderValue>,
    cap: usize,
    text: &[u8],
) -> Failure {
    let path = path.map_or_else(|| "this path".to_string(), |path| cut(path, 64));
    match status {
        StatusCode::NOT_FOUND => fail(404, "not_found", format!("no route for {path}")),
        StatusCode::METHOD_NOT_ALLOWED => {
            let methods = allow
                .and_then(|a| a.to_str().ok())
                .unwrap_or("other methods")
                .replace(',', ", ");
            fail(
                405,
                "method_not_allowed",
                format!("{path} accepts {methods}"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => fail(
            413,
            "payload_too_large",
            format!("the body is over the {cap}-byte cap"),
        ),
        status if status.is_client_error() => fail(
            status.as_u16(),
            "bad_request",
            cut(String::from_utf8_lossy(text).trim(), 200),
        ),
        _ => fail(500, "internal_error", String::from_utf8_lossy(text)),
    }
}

/// The JSON error answer for `failure`.
pub(crate) fn failure_response(failure: Failure, request_id: &str) -> Response {
    if failure.status >= 500 {
        tracing::error!(code = failure.code, error = %failure.message, "request failed");
    }
    let message = if failure.status == 500 {
        "internal error".to_string()
    } else {
        failure.message
    };
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody {
        error: ErrorDetail {
            code: failure.code.to_string(),
            message,
            request_id: request_id.to_string(),
        },
    };
    (status, Json(body)).into_response()
}

/// Adds the security headers to an answer.
pub(crate) async fn secured(mut response: Response) -> Response {
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    for (name, value) in security_headers(html) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::lookup::Auth;
    use crate::app::snapshot_cache::SnapshotCache;
    use crate::core::snapshot::fixtures;
    use axum::body::Body;
    use serde_json::Value;
    use std::time::{Duration, Instant};
    use tower::ServiceExt;

    const TOKEN: &str = "t0ken-0123456789abcdef";

    fn lookup(dir: &std::path::Path) -> Lookup {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("snapshot.json");
        fixtures::sample(0).save(&path).unwrap();
        Lookup::new(
            Auth::Bearer(TOKEN.into()),
            4096,
            SnapshotCache::new(&path, Duration::from_secs(60)),
        )
    }

    /// One request through the application in-process; the answer's status, headers and body.
    async fn ask(
        app: Service,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, axum::http::HeaderMap, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let mut request = request.body(Body::from(body.to_string())).unwrap();
        request.extensions_mut().insert(Invocation {
            request_id: "req-7".into(),
            deadline: Instant::now() + Duration::from_secs(5),
        });
        let response = app.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (parts.status.as_u16(), parts.headers, value)
    }

    /// An error shows a short prefix of the input it names, never the whole of it — before
    /// the token is checked (an unknown route) or after (a bad parameter) (issue #36: a 200 KB
    /// input came back whole).
    #[tokio::test]
    async fn errors_echo_only_a_prefix_of_the_input() {
        let dir = std::env::temp_dir().join(format!("esgflow-echo-{}", std::process::id()));
        let app = service(lookup(&dir));
        let long = "x".repeat(10_000);
        for (uri, token, status) in [
            (format!("/{long}"), Some(TOKEN), 404),
            (format!("/v1/hits?src={long}"), Some(TOKEN), 400),
            (format!("/v1/traffic?scope={long}"), Some(TOKEN), 400),
        ] {
            let (got, _, answer) = ask(app.clone(), "GET", &uri, token, "").await;
            assert_eq!(got, status, "{answer}");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(
                message.len() < 300,
                "{} characters: {message}",
                message.len()
            );
            assert!(
                message.contains("(10001 characters)") || message.contains("(10000 characters)"),
                "{message}"
            );
            assert_eq!(answer["error"]["request_id"], "req-7");
        }
        // Before authentication nothing of the input comes back.
        for (method, uri) in [
            ("GET", format!("/{long}")),
            ("DELETE", "/v1/healthz".into()),
        ] {
            let (got, _, answer) = ask(app.clone(), method, &uri, Some("wrong"), "").await;
            assert!(got == 404 || got == 405, "{answer}");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains("this path"), "{message}");
            assert!(
                !message.contains("xxx") && !message.contains("healthz"),
                "{message}"
            );
        }
    }

    /// A route that panics is answered as any failure: a 500 error body with the request id
    /// and the security headers (issue #36: the platform answered a bare 5xx).
    #[tokio::test]
    async fn a_panicking_route_answers_500_with_the_request_id() {
        let dir = std::env::temp_dir().join(format!("esgflow-panic-{}", std::process::id()));
        let routes = Router::new().route("/boom", get(|| async { panic!("boom") as &str }));
        let app = layered(routes, lookup(&dir));
        let (status, headers, answer) = ask(app, "GET", "/boom", None, "").await;
        assert_eq!(status, 500);
        assert_eq!(answer["error"]["request_id"], "req-7");
        assert_eq!(answer["error"]["message"], "internal error");
        assert!(headers.contains_key("x-frame-options"));
        std::fs::remove_dir_all(dir).ok();
    }

    /// Every route, in-process through the tower service: its status for a good request and
    /// for the refusals the layers make (token, method, body cap, unknown route), each refusal
    /// as the JSON error body with the invocation's request id, every answer with the security
    /// headers.
    #[tokio::test]
    async fn every_route_answers_through_the_application() {
        let dir = std::env::temp_dir().join(format!("esgflow-router-{}", std::process::id()));
        let app = service(lookup(&dir));
        let flow = r#"{"src":"10.0.1.11","dst":"10.0.3.10","protocol":"tcp","port":3306}"#;
        let uuid = fixtures::sample(0).rules[0].uuid.clone();
        let big = format!(r#"{{"src":"{}"}}"#, "1".repeat(5000));
        // Method, URI, token, body; the status and error code expected.
        type Case<'a> = (
            &'a str,
            String,
            Option<&'a str>,
            &'a str,
            u16,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            ("GET", "/".into(), None, "", 200, None),
            ("GET", "/index.html".into(), None, "", 200, None),
            ("HEAD", "/v1/healthz".into(), None, "", 200, None),
            ("GET", "/v1/healthz/".into(), None, "", 200, None),
            (
                "POST",
                "/".into(),
                None,
                "",
                405,
                Some("method_not_allowed"),
            ),
            (
                "GET",
                "/v1/snapshot".into(),
                None,
                "",
                401,
                Some("unauthorized"),
            ),
            (
                "GET",
                "/v1/snapshot".into(),
                Some("wrong"),
                "",
                401,
                Some("unauthorized"),
            ),
            ("GET", "/v1/snapshot".into(), Some(TOKEN), "", 200, None),
            ("GET", "/v1/snapshot/".into(), Some(TOKEN), "", 200, None),
            (
                "POST",
                "/v1/snapshot".into(),
                Some(TOKEN),
                "",
                405,
                Some("method_not_allowed"),
            ),
            (
                "GET",
                "/v1/snapshot?x=1".into(),
                Some(TOKEN),
                "",
                400,
                Some("unknown_parameter"),
            ),
            ("POST", "/v1/explain".into(), Some(TOKEN), flow, 200, None),
            (
                "GET",
                "/v1/explain".into(),
                Some(TOKEN),
                "",
                405,
                Some("method_not_allowed"),
            ),
            (
                "POST",
                "/v1/explain".into(),
                Some(TOKEN),
                &big,
                413,
                Some("payload_too_large"),
            ),
            (
                "POST",
                "/v1/explain".into(),
                Some(TOKEN),
                "{",
                400,
                Some("invalid_json"),
            ),
            (
                "GET",
                format!("/v1/rules/{uuid}"),
                Some(TOKEN),
                "",
                200,
                None,
            ),
            (
                "GET",
                "/v1/rules/nope".into(),
                Some(TOKEN),
                "",
                404,
                Some("rule_not_found"),
            ),
            (
                "GET",
                "/v1/rules?limit=2".into(),
                Some(TOKEN),
                "",
                200,
                None,
            ),
            (
                "GET",
                "/v1/rules?limit=0".into(),
                Some(TOKEN),
                "",
                400,
                Some("invalid_field"),
            ),
            (
                "GET",
                "/v1/stats/top-rules".into(),
                Some(TOKEN),
                "",
                503,
                Some("hits_unavailable"),
            ),
            (
                "GET",
                "/v1/hits?src=10.0.1.11".into(),
                Some(TOKEN),
                "",
                503,
                Some("hits_unavailable"),
            ),
            (
                "GET",
                "/v1/hits?source=10.0.1.11".into(),
                Some(TOKEN),
                "",
                400,
                Some("unknown_parameter"),
            ),
            (
                "GET",
                "/v1/hits?ip=1&ip=2".into(),
                Some(TOKEN),
                "",
                400,
                Some("repeated_parameter"),
            ),
            (
                "GET",
                "/v1/hits".into(),
                None,
                "",
                401,
                Some("unauthorized"),
            ),
            (
                "GET",
                "/v1/hits/export?format=csv".into(),
                Some(TOKEN),
                "",
                503,
                Some("hits_unavailable"),
            ),
            (
                "GET",
                "/v1/hits/export?format=xml".into(),
                Some(TOKEN),
                "",
                400,
                Some("invalid_field"),
            ),
            (
                "GET",
                "/v1/hits/00000000000000a1".into(),
                Some(TOKEN),
                "",
                503,
                Some("hits_unavailable"),
            ),
            (
                "GET",
                "/v1/hits/not-an-id".into(),
                Some(TOKEN),
                "",
                404,
                Some("not_found"),
            ),
            (
                "GET",
                "/v1/traffic?vpc=vpc-prod0001".into(),
                Some(TOKEN),
                "",
                503,
                Some("hits_unavailable"),
            ),
            ("GET", "/v1/vpcs".into(), Some(TOKEN), "", 200, None),
            (
                "DELETE",
                "/v1/vpcs".into(),
                Some(TOKEN),
                "",
                405,
                Some("method_not_allowed"),
            ),
            (
                "PUT",
                "/v1/vpcs/vpc-prod0001/monitoring".into(),
                Some(TOKEN),
                r#"{"monitored":false}"#,
                403,
                Some("switches_read_only"),
            ),
            (
                "GET",
                "/nope".into(),
                Some(TOKEN),
                "",
                404,
                Some("not_found"),
            ),
            ("GET", "/v1".into(), None, "", 404, Some("not_found")),
        ];
        for (method, uri, token, body, status, code) in cases {
            let (got, headers, answer) = ask(app.clone(), method, &uri, token, body).await;
            let case = format!("{method} {uri}: {answer}");
            assert_eq!(got, status, "{case}");
            assert!(headers.contains_key("content-security-policy"), "{case}");
            assert_eq!(headers["x-frame-options"], "DENY", "{case}");
            match code {
                Some(code) => {
                    assert_eq!(answer["error"]["code"], code, "{case}");
                    assert_eq!(answer["error"]["request_id"], "req-7", "{case}");
                    assert!(
                        !answer["error"]["message"].as_str().unwrap().is_empty(),
                        "{case}"
                    );
                }
                None if method == "HEAD" => assert_eq!(answer, Value::String(String::new())),
                None if uri.starts_with("/v1/") => assert!(answer.is_object(), "{case}"),
                None => assert!(answer.as_str().unwrap().contains("<html"), "{case}"),
            }
        }
        std::fs::remove_dir_all(dir).ok();
    }

    /// A wrong method is answered with the methods the route does accept, in words and in
    /// `Allow`; an unknown route names the path.
    #[tokio::test]
    async fn refusals_say_what_would_be_accepted() {
        let dir = std::env::temp_dir().join(format!("esgflow-router-405-{}", std::process::id()));
        let app = service(lookup(&dir));
        let (status, headers, answer) =
            ask(app.clone(), "POST", "/v1/snapshot", Some(TOKEN), "").await;
        assert_eq!(status, 405);
        assert_eq!(headers[header::ALLOW], "GET,HEAD");
        assert_eq!(answer["error"]["message"], "/v1/snapshot accepts GET, HEAD");
        let (_, _, answer) = ask(app.clone(), "GET", "/v2/hits", Some(TOKEN), "").await;
        assert_eq!(answer["error"]["message"], "no route for /v2/hits");
        let (_, _, answer) = ask(app, "POST", "/v1/explain", Some(TOKEN), &"x".repeat(5000)).await;
        assert_eq!(
            answer["error"]["message"],
            "the body is over the 4096-byte cap"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
