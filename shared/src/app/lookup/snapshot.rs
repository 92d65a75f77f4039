//! `GET /v1/snapshot`: the snapshot answers are made from.

use axum::extract::State;
use axum::Json;

use super::request::Answer;
use super::*;
use serde::Serialize;
use utoipa::ToSchema;

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
    _: Query<NoParameters>,
) -> Answer<SnapshotStatus> {
    let engine = lookup.engine(call.deadline).await?;
    Ok(Json(snapshot_status(&engine)))
}

pub(crate) fn snapshot_status(engine: &Engine) -> SnapshotStatus {
    let rules = engine.rules();
    SnapshotStatus {
        version: engine.version().to_string(),
        rules: rules.len(),
        enabled_rules: rules.iter().filter(|r| r.rule.enabled).count(),
        unresolvable_rules: engine
            .indeterminate_rules()
            .iter()
            .map(|&r| engine.rule(r).rule.uuid.clone())
            .collect(),
    }
}

/// `GET /v1/snapshot`: the rule snapshot answers are made from.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotStatus {
    /// The snapshot version (a digest of its content).
    pub version: String,
    /// Rules.
    pub rules: usize,
    /// Of them, enabled.
    pub enabled_rules: usize,
    /// Uuids of rules whose addresses or services cannot be resolved from the snapshot.
    pub unresolvable_rules: Vec<String>,
}
