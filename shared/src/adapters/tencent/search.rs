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
pub async fn analysis_rows(
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

/// The most rows one SQL answer holds: CLS answers at most 10,000, whatever the query's `limit`
/// says (<https://www.tencentcloud.com/document/product/614/38733>).
pub const SQL_PAGE_ROWS: usize = 10_000;

/// The most answers [`all_rows`] reads of one query (100,000 rows).
pub(crate) const MAX_SQL_PAGES: usize = 10;

/// Every row of `query` — a search and a select whose `order by` ends on a unique key, with no
/// `limit` — read [`SQL_PAGE_ROWS`] at a time (`offset S limit N`, the LIMIT syntax of
/// <https://www.tencentcloud.com/document/product/614/38733>) until an answer is short. More
/// than [`MAX_SQL_PAGES`] answers fail, naming the query, instead of stopping silently.
pub(crate) async fn all_rows(
    client: &ApiClient,
    topic: &str,
    query: &str,
    from_ms: i64,
    to_ms: i64,
    deadline: Instant,
) -> Result<Vec<Value>, ApiError> {
    let most = MAX_SQL_PAGES * SQL_PAGE_ROWS;
    let mut rows = Vec::new();
    rows_up_to(
        client,
        topic,
        query,
        (from_ms, to_ms),
        most + 1,
        deadline,
        |row| rows.push(row),
    )
    .await?;
    if rows.len() > most {
        return Err(ApiError::local(
            "SearchLog",
            "TooManyRows",
            format!("more than {most} rows answer {query:?}: narrow the window"),
        ));
    }
    Ok(rows)
}

/// The first `most` rows of `query` (as [`all_rows`] reads them), fewer when the query has
/// fewer, each handed to `each` as its page comes (a page is dropped before the next is asked
/// for); `window` is SearchLog's `(From, To)`. Answers how many rows it handed over, and whether
/// `deadline` cut the reading short: a page after the first that the deadline cuts ends it; the
/// first page's failure is the error.
pub(crate) async fn rows_up_to(
    client: &ApiClient,
    topic: &str,
    query: &str,
    window: (i64, i64),
    most: usize,
    deadline: Instant,
    mut each: impl FnMut(Value),
) -> Result<(usize, bool), ApiError> {
    let mut read = 0;
    while read < most {
        let wanted = (most - read).min(SQL_PAGE_ROWS);
        let paged = match read {
            0 => format!("{query} limit {wanted}"),
            read => format!("{query} offset {read} limit {wanted}"),
        };
        let answer = match analysis_rows(client, topic, &paged, window.0, window.1, deadline).await
        {
            Ok(answer) => answer,
            Err(_) if read > 0 && Instant::now() >= deadline => return Ok((read, true)),
            Err(error) => return Err(error),
        };
        let short = answer.len() < wanted;
        for row in answer.into_iter().take(most - read) {
            read += 1;
            each(row);
        }
        if short {
            break;
        }
    }
    Ok((read, false))
}

/// `[since, until]` (Unix seconds, both in) as SearchLog's `From` and `To`: milliseconds, `To`
/// itself left out (tccli `cls/v20201016/api.json`, `SearchLogRequest.To`), so the whole last
/// second is in, as in the local store.
pub(crate) fn window_ms(since: i64, until: i64) -> (i64, i64) {
    (
        since.saturating_mul(1000),
        until.saturating_add(1).saturating_mul(1000),
    )
}

/// A row's number, whether CLS sent it as a number or as text; `None` for null or absent.
pub fn number(row: &Value, key: &str) -> Option<u64> {
    let value = row.get(key)?;
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}
