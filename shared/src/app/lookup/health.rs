//! `GET /` (the console page, served without a token) and `GET /v1/healthz`.

use axum::Json;

use super::*;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

/// The page at `/`: it holds no data, so it is served without a token and asks for one.
#[utoipa::path(get, path = "/", security(()), tag = "console",
    summary = "The console page",
    description = "A self-contained HTML page. Served without a token (it holds no data); the page asks for the token and sends it with its API calls.",
    responses(
        (status = 200, description = "the page", content_type = "text/html", body = String),
        (status = 405, description = "wrong method", body = ErrorBody),
    ))]
pub(crate) async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

#[utoipa::path(get, path = "/v1/healthz", security(()), tag = "lookup",
    summary = "Liveness: answers without a token",
    responses(
        (status = 200, description = "alive", body = Health),
        (status = 405, description = "wrong method", body = ErrorBody),
    ))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// The page served at `/`: a form for `/v1/explain` and the day's top blocking rules.
pub(crate) const PAGE: &str = include_str!("page.html");

/// `GET /v1/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// The esgflow version.
    pub version: &'static str,
}
