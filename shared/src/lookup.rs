//! The lookup function's HTTP routing: API Gateway / Function URL request in, integration
//! response out. Today it serves the health check; unknown paths get 404 and known paths with the
//! wrong method 405, both as JSON errors.

use serde_json::json;

use crate::events::{ApiGatewayRequest, ApiGatewayResponse};

/// Routes one request.
pub fn handle(request: &ApiGatewayRequest, request_id: &str) -> ApiGatewayResponse {
    let path = request.path.trim_end_matches('/');
    match (request.http_method.as_str(), path) {
        ("GET" | "HEAD", "/v1/healthz") => ApiGatewayResponse::json(
            200,
            &json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}),
        ),
        (_, "/v1/healthz") => error(405, "method_not_allowed", "use GET", request_id),
        _ => error(
            404,
            "not_found",
            &format!("no route for {}", request.path),
            request_id,
        ),
    }
}

fn error(status: u16, code: &str, message: &str, request_id: &str) -> ApiGatewayResponse {
    ApiGatewayResponse::json(
        status,
        &json!({"error": {"code": code, "message": message, "request_id": request_id}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str) -> ApiGatewayRequest {
        serde_json::from_value(json!({"httpMethod": method, "path": path})).unwrap()
    }

    #[test]
    fn healthz_answers_ok() {
        let response = handle(&request("GET", "/v1/healthz"), "r");
        assert_eq!(response.status_code, 200);
        assert!(response.body.contains(r#""status":"ok""#));
    }

    #[test]
    fn unknown_path_and_wrong_method() {
        let response = handle(&request("GET", "/nope"), "r-9");
        assert_eq!(response.status_code, 404);
        assert!(response.body.contains("r-9"));
        assert_eq!(
            handle(&request("DELETE", "/v1/healthz"), "r").status_code,
            405
        );
    }
}
