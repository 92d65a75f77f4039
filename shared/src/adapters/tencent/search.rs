//! CLS `SearchLog` with SQL analysis (tccli `cls/v20201016/api.json`): the rows of a
//! `<search> | <SQL>` query, read from `AnalysisRecords` (one JSON object string per row, with
//! `UseNewAnalysis`).

use std::time::Instant;

use serde_json::{json, Value};

use super::api::{ApiClient, ApiError};

/// CLS API version.
pub(crate) const CLS_VERSION: &str = "2020-10-16";

/// Runs `query` (CQL search, then SQL) over `topic` between `from_ms` and `to_ms` and returns
/// the result rows as JSON objects.
pub(crate) async fn analysis_rows(
    client: &ApiClient,
    topic: &str,
    query: &str,
    from_ms: i64,
    to_ms: i64,
    deadline: Instant,
) -> Result<Vec<Value>, ApiError> {
    let body = json!({
        "TopicId": topic,
        "From": from_ms,
        "To": to_ms,
        "QueryString": query,
        "QuerySyntax": 1,
        "UseNewAnalysis": true,
        "Limit": 1000,
    });
    let response = client
        .call("cls", CLS_VERSION, "SearchLog", &body, deadline)
        .await?;
    Ok(response
        .get("AnalysisRecords")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|row| serde_json::from_str::<Value>(row).ok())
        .collect())
}

/// A row's number, whether CLS sent it as a number or as text; `None` for null or absent.
pub fn number(row: &Value, key: &str) -> Option<u64> {
    let value = row.get(key)?;
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}
