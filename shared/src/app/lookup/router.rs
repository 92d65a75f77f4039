//! The lookup application: axum routes over a [`Lookup`], and the tower layers every request
//! and answer passes through.
//!
//! From the outside in: the security headers ([`security_headers`]) on every answer; the JSON
//! error body (`{"error": {"code", "message", "request_id"}}`) for every error, whether a handler,
//! a layer or axum itself refused the request; the body cap; then, per route, the bearer token
//! (the lookup token for reads and explain, the admin token for switches). Only the page and
//! `/v1/healthz` are open.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{header, request::Parts, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use std::convert::Infallible;
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::normalize_path::NormalizePathLayer;

#[allow(unused_imports)]
// ExplainBody, HitAnswer, the parameter structs: named in the documentation
use super::wire::{
    ErrorBody, ErrorDetail, ExplainAnswer, ExplainBody, ExportParams, Health, HitAnswer, HitParams,
    HitsPage, PageParams, RuleAnswer, RulesPage, RulesParams, SearchParams, SnapshotStatus,
    SwitchAnswer, SwitchRequest, TopRules, TopRulesParams, TrafficAnswer, TrafficParams,
    VpcsAnswer,
};
use super::{
    explain, fail, only_parameters, rule, security_headers, snapshot_status, Failure, Lookup,
    EXPORT_PARAMETERS, HITS_PARAMETERS, HIT_PARAMETERS, PAGE, RULES_PARAMETERS,
    TOP_RULES_PARAMETERS, TRAFFIC_PARAMETERS,
};
use crate::events::apigw::QueryValue;

/// Who asked and by when the answer is due: the SCF invocation's request id and deadline, put
/// in the request's extensions by whoever hands the request to the router. Without one a
/// request gets a fresh id and [`DEFAULT_TIMEOUT`].
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The id error answers carry (SCF's request id).
    pub request_id: String,
    /// When the answer must be made by.
    pub deadline: Instant,
}

/// How long a request without an [`Invocation`] may take: the lookup function's deployed limit
/// (`template.yaml`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

impl Invocation {
    fn fresh() -> Self {
        Self {
            request_id: format!("{:016x}", fastrand::u64(..)),
            deadline: Instant::now() + DEFAULT_TIMEOUT,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Invocation {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Invocation>()
            .cloned()
            .unwrap_or_else(Invocation::fresh))
    }
}

/// A request's query parameters: names and values percent-decoded once, `+` kept as `+` (an
/// RFC 3339 offset, as the SCF event carries it), a name given twice kept with every value (the
/// routes refuse it, naming it), a bare name (`?verbose`) read as the empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pub(crate) query_string: BTreeMap<String, QueryValue>,
}

impl Params {
    /// The parameters of a URI's query text.
    pub fn parse(query: &str) -> Self {
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut query_string: BTreeMap<String, QueryValue> = BTreeMap::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = match pair.split_once('=') {
                Some((name, value)) => (decode(name), decode(value)),
                None => (decode(pair), String::new()),
            };
            let merged = match query_string.remove(&name) {
                None => QueryValue::One(value),
                Some(QueryValue::Many(mut values)) => {
                    values.push(value);
                    QueryValue::Many(values)
                }
                Some(earlier) => {
                    let first = earlier.first().unwrap_or_default().to_string();
                    QueryValue::Many(vec![first, value])
                }
            };
            query_string.insert(name, merged);
        }
        Self { query_string }
    }

    /// A parameter's first value.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_string.get(name).and_then(QueryValue::first)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(parts.uri.query().unwrap_or("")))
    }
}

impl IntoResponse for Failure {
    /// The status alone; the error layer writes the body, with the request id.
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// The lookup application as one tower service: [`router`] inside the layers that need the
/// whole answer (the JSON error body sees axum's `Allow` header, the security headers every
/// answer), with trailing slashes trimmed first (`/v1/hits/` is `/v1/hits`, as the function has
/// always answered).
pub type Service = BoxCloneSyncService<Request, Response, Infallible>;

/// The lookup application over `lookup`: what SCF, `esgflow serve` and the tests call.
pub fn service(lookup: Lookup) -> Service {
    let cap = lookup.max_body_bytes;
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(NormalizePathLayer::trim_trailing_slash())
            .layer(middleware::map_response(secured))
            .layer(middleware::from_fn_with_state(cap, json_errors))
            .service(router(lookup)),
    )
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
        .route("/v1/vpcs", get(vpcs))
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
/// an unreadable path) in the same words. A 500 says only "internal error".
async fn json_errors(State(cap): State<usize>, mut request: Request, next: Next) -> Response {
    let invocation = request
        .extensions()
        .get::<Invocation>()
        .cloned()
        .unwrap_or_else(Invocation::fresh);
    let path = request.uri().path().to_string();
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
            refusal(status, &path, allow.as_ref(), cap, &text)
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
    path: &str,
    allow: Option<&HeaderValue>,
    cap: usize,
    text: &[u8],
) -> Failure {
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
            String::from_utf8_lossy(text).trim().to_string(),
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

/// A JSON answer already written out.
fn json_text(text: Box<serde_json::value::RawValue>) -> Response {
    let text: Box<str> = text.into();
    (
        [(header::CONTENT_TYPE, "application/json")],
        String::from(text),
    )
        .into_response()
}

type Answer<T> = Result<Json<T>, Failure>;

/// `POST /v1/explain`: one flow, or `{"flows": [...]}`.
#[utoipa::path(post, path = "/v1/explain", tag = "lookup",
    summary = "Which rule decides a flow, and why",
    description = "One flow, or `{\"flows\": [...]}` with up to 1,000: each explained against the current snapshot.",
    request_body = ExplainBody,
    responses(
        (status = 200, description = "the explanation, or one per flow for the batch form", body = ExplainAnswer),
        (status = 400, description = "malformed JSON or an invalid field (named in the message)", body = ErrorBody), (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "wrong method", body = ErrorBody),
        (status = 413, description = "body over the cap; or an answer that would not fit the 6 MB SCF lets a function return (`answer_too_large`, naming how many flows fit)", body = ErrorBody),
        (status = 503, description = "no snapshot", body = ErrorBody),
    ))]
pub(crate) async fn explain_flows(
    State(lookup): State<Lookup>,
    call: Invocation,
    params: Params,
    body: Bytes,
) -> Result<Response, Failure> {
    only_parameters(&params, "/v1/explain", &[])?;
    let engine = lookup.engine(call.deadline).await?;
    explain(&engine, &body).map(json_text)
}

/// `GET /v1/snapshot`.
#[utoipa::path(get, path = "/v1/snapshot", tag = "lookup",
    summary = "The rule snapshot answers are made from",
    responses(
        (status = 200, description = "snapshot status", body = SnapshotStatus),
        (status = 400, description = "a query parameter (this route reads none), or one given twice: `unknown_parameter`, `repeated_parameter`", body = ErrorBody), (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 503, description = "no snapshot", body = ErrorBody),
    ))]
pub(crate) async fn snapshot(
    State(lookup): State<Lookup>,
    call: Invocation,
    params: Params,
) -> Answer<SnapshotStatus> {
    only_parameters(&params, "/v1/snapshot", &[])?;
    let engine = lookup.engine(call.deadline).await?;
    Ok(Json(snapshot_status(&engine)))
}

/// `GET /v1/stats/top-rules`.
#[utoipa::path(get, path = "/v1/stats/top-rules", tag = "lookup",
    summary = "The rules with the most block hits in the last `hours`",
    params(TopRulesParams),
    responses(
        (status = 200, description = "top rules, most hits first", body = TopRules),
        (status = 400, description = "a parameter is invalid (the message names it); a parameter the route does not read, or one given twice (`unknown_parameter`, `repeated_parameter`)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 502, description = "the records search failed", body = ErrorBody), (status = 503, description = "no records store or no snapshot", body = ErrorBody),
    ))]
pub(crate) async fn top_rules(
    State(lookup): State<Lookup>,
    call: Invocation,
    params: Params,
) -> Answer<TopRules> {
    only_parameters(&params, "/v1/stats/top-rules", &TOP_RULES_PARAMETERS)?;
    let engine = lookup.engine(call.deadline).await?;
    lookup
        .top_rules(&engine, &params, call.deadline)
        .await
        .map(Json)
}

/// `GET /v1/rules/{uuid}`.
#[utoipa::path(get, path = "/v1/rules/{uuid}", tag = "rules",
    summary = "One rule: as the API gave it, resolved, its hygiene finding and hit counters",
    params(("uuid" = String, Path, description = "the rule id")),
    responses(
        (status = 200, description = "the rule", body = RuleAnswer),
        (status = 400, description = "a query parameter (this route reads none), or one given twice", body = ErrorBody), (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 404, description = "no such rule (`rule_not_found`)", body = ErrorBody), (status = 503, description = "no snapshot", body = ErrorBody),
    ))]
pub(crate) async fn one_rule(
    State(lookup): State<Lookup>,
    call: Invocation,
    params: Params,
    Path(uuid): Path<String>,
) -> Answer<RuleAnswer> {
    only_parameters(&params, "/v1/rules/{uuid}", &[])?;
    let engine = lookup.engine(call.deadline).await?;
    let mut answer = rule(&engine, &uuid)?;
    answer.hits = lookup.rule_hits(&uuid, call.deadline).await;
    Ok(Json(answer))
}

/// `GET /v1/rules`.
#[utoipa::path(get, path = "/v1/rules", tag = "rules",
    summary = "The rules in evaluation order with hit counters, unused flag and hygiene finding, and the recent rule changes",
    params(RulesParams),
    responses(
        (status = 200, description = "a page of rules", body = RulesPage),
        (status = 400, description = "a bad parameter, or one the route does not read", body = ErrorBody), (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody), (status = 413, description = "the page does not fit one answer: ask with a smaller limit", body = ErrorBody), (status = 503, description = "no snapshot", body = ErrorBody),
    ))]
pub(crate) async fn rules(
    State(lookup): State<Lookup>,
    call: Invocation,
    params: Params,
) -> Answer<RulesPage> {
    only_parameters(&params, "/v1/rules", &RULES_PARAMETERS)?;
    lookup.rules(&params, call.deadline).await.map(Json)
}

/// `GET /v1/hits`.
#[utoipa::path(get, path = "/v1/hits", tag = "flow log",
    summary = "Search the ESG flow log (hit records), newest first",
    description = "Searches the records store: the hits topic in CLS, or the local database `esgflow serve --store` names. Every condition given must hold. Answers the same records, with numbers as numbers, from either store.",
    params(SearchParams, PageParams),
    responses(
        (status = 200, description = "one page of hit records, newest first", body = HitsPage),
        (status = 400, description = "an invalid parameter (named in the message); a parameter the route does not read, or one given twice (`unknown_parameter`, `repeated_parameter`)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody), (status = 410, description = "the cursor is over an hour old, or the store no longer keeps its search", body = ErrorBody), (status = 502, description = "the records search failed (CLS SearchLog, or the local database)", body = ErrorBody), (status = 503, description = "no records store configured", body = ErrorBody),
    ))]
pub(crate) async fn hits(
    State(lookup): State<Lookup>,
    call: Invocation,
    params: Params,
) -> Answer<HitsPage> {
    only_parameters(&params, "/v1/hits", &HITS_PARAMETERS)?;
    lookup.hits(&params, call.deadline).await.map(Json)
}

/// `GET /v1/hits/export`.
#[utoipa::path(get, path = "/v1/hits/export", tag = "flow log",
    summary = "Export a search of the ESG flow log as CSV or JSON lines",
    description = "The records /v1/hits would find for the same parameters, newest first, as many as fit one answer (at most 100,000 records and SCF's 6 MB); when more remain, X-Esgflow-Next holds the query of the next part.",
    params(SearchParams, ExportParams),
    responses(
        (status = 200, description = "the records",
            content((String = "text/csv"), (String = "application/x-ndjson")),
            headers(
                ("X-Esgflow-Count" = u64, description = "records in this answer"),
                ("X-Esgflow-Complete" = String, description = "true when this answer ends the export"),
                ("X-Esgflow-Next" = String, description = "the query string of the next part, when the export is not complete"),
                ("Content-Disposition" = String, description = "attachment; filename=esgflow-hits-<since>-<until>.csv or .jsonl"),
            )),
        (status = 400, description = "an invalid parameter (named in the message); a parameter the route does not read, or one given twice", body = ErrorBody), (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody), (status = 410, description = "the cursor is over an hour old, or the store no longer keeps its search", body = ErrorBody), (status = 413, description = "one page of the export does not fit an answer", body = ErrorBody), (status = 502, description = "the records search failed", body = ErrorBody), (status = 503, description = "no records store configured", body = ErrorBody),
    ))]
pub(crate) async fn export(
    State(lookup): State<Lookup>,
    call: Invocation,
    params: Params,
) -> Result<Response, Failure> {
    only_parameters(&params, "/v1/hits/export", &EXPORT_PARAMETERS)?;
    lookup.export(&params, call.deadline).await
}

/// `GET /v1/hits/{record_id}`.
#[utoipa::path(get, path = "/v1/hits/{record_id}", tag = "flow log",
    summary = "One hit record, explained against the snapshot version that judged it",
    description = "While the snapshot store keeps that version; else against the current snapshot, with a note.",
    params(("record_id" = String, Path, description = "the record id: 16 hex digits"), HitParams),
    responses(
        (status = 200, description = "the record and its explanation", body = HitAnswer),
        (status = 400, description = "a bad time, or a parameter the route does not read", body = ErrorBody), (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 404, description = "not a record id, or no such hit record in the window", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody), (status = 502, description = "the records store failed", body = ErrorBody), (status = 503, description = "no records store, or no snapshot", body = ErrorBody),
    ))]
pub(crate) async fn one_hit(
    State(lookup): State<Lookup>,
    call: Invocation,
    params: Params,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    only_parameters(&params, "/v1/hits/{record_id}", &HIT_PARAMETERS)?;
    lookup.hit(&params, &id, call.deadline).await
}

/// `GET /v1/traffic`.
#[utoipa::path(get, path = "/v1/traffic", tag = "traffic",
    summary = "Traffic of a VPC: totals per scope and verdict, top talkers, a subnet-to-subnet matrix and a time series",
    params(TrafficParams),
    responses(
        (status = 200, description = "the traffic views", body = TrafficAnswer),
        (status = 400, description = "a parameter is invalid (the message names it); a parameter the route does not read, or one given twice (`unknown_parameter`, `repeated_parameter`)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody),
        (status = 413, description = "the window holds more conversations than one machine sums (local store): narrow it (`view_too_large`)", body = ErrorBody),
        (status = 502, description = "the records store failed", body = ErrorBody), (status = 503, description = "no records store", body = ErrorBody),
    ))]
pub(crate) async fn traffic(
    State(lookup): State<Lookup>,
    call: Invocation,
    params: Params,
) -> Answer<TrafficAnswer> {
    only_parameters(&params, "/v1/traffic", &TRAFFIC_PARAMETERS)?;
    lookup.traffic(&params, call.deadline).await.map(Json)
}

/// `GET /v1/vpcs`.
#[utoipa::path(get, path = "/v1/vpcs", tag = "vpcs",
    summary = "Every VPC of the snapshot with its monitoring state and flow-log coverage",
    responses(
        (status = 200, description = "the VPCs", body = VpcsAnswer),
        (status = 400, description = "a query parameter (the route reads none)", body = ErrorBody), (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody), (status = 503, description = "no snapshot", body = ErrorBody),
    ))]
pub(crate) async fn vpcs(
    State(lookup): State<Lookup>,
    call: Invocation,
    params: Params,
) -> Answer<VpcsAnswer> {
    only_parameters(&params, "/v1/vpcs", &[])?;
    lookup.vpc_states(call.deadline).await.map(Json)
}

/// `PUT /v1/vpcs/{id}/monitoring`.
#[utoipa::path(put, path = "/v1/vpcs/{id}/monitoring", tag = "vpcs",
    summary = "Switch monitoring of one VPC on or off (null: back to the monitored list)",
    description = "Needs the admin token; audit applies it within its snapshot TTL.",
    security(("admin" = [])),
    params(("id" = String, Path, description = "the VPC id")),
    request_body = SwitchRequest,
    responses(
        (status = 200, description = "the VPC's new state", body = SwitchAnswer),
        (status = 400, description = "the body is not {\"monitored\": true|false|null}", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 403, description = "no admin token is configured: the switches are read-only (`switches_read_only`)", body = ErrorBody),
        (status = 404, description = "the snapshot has no such VPC (`unknown_vpc`)", body = ErrorBody), (status = 405, description = "not PUT", body = ErrorBody),
        (status = 413, description = "the body is over 1024 bytes, or the switches document would exceed its cap", body = ErrorBody),
        (status = 502, description = "the snapshot store failed (`switches_unavailable`)", body = ErrorBody), (status = 503, description = "no snapshot", body = ErrorBody),
    ))]
pub(crate) async fn switch(
    State(lookup): State<Lookup>,
    call: Invocation,
    params: Params,
    Path(vpc): Path<String>,
    body: Bytes,
) -> Answer<SwitchAnswer> {
    only_parameters(&params, "/v1/vpcs/{id}/monitoring", &[])?;
    lookup.switch(&vpc, &body, call.deadline).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::lookup::Auth;
    use crate::app::snapshot_cache::SnapshotCache;
    use crate::core::snapshot::fixtures;
    use axum::body::Body;
    use serde_json::Value;
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

    /// Query text is read as the SCF event carries it: decoded once, `+` kept (an RFC 3339
    /// offset), a repeated name kept with every value, a bare name as the empty string.
    #[test]
    fn query_text_is_decoded_once_and_keeps_plus() {
        let params = Params::parse("until=2025-11-25T00%3A00%3A00+08:00&%69p=1&ip=2&verbose&&=x");
        assert_eq!(params.query("until"), Some("2025-11-25T00:00:00+08:00"));
        assert_eq!(
            params.query_string["ip"],
            QueryValue::Many(vec!["1".into(), "2".into()])
        );
        assert_eq!(params.query("verbose"), Some(""));
        assert_eq!(params.query(""), Some("x"));
        assert_eq!(Params::parse(""), Params::default());
    }
}
