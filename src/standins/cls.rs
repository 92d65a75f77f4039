//! A local stand-in for CLS's API 3.0 `UploadLog`: it checks the TC3 signature and the headers
//! the real service needs, LZ4-decompresses and protobuf-decodes the body, keeps the logs, and
//! answers with scripted statuses so tests can make it throttle or refuse.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use esgflow::adapters::tencent::cls::LogGroupList;
use prost::Message;

use super::header;

/// The secret id the stub accepts (the cloud stand-in's).
pub const SECRET_ID: &str = super::cloud::SECRET_ID;
/// The secret key the stub checks signatures with.
pub const SECRET_KEY: &str = super::cloud::SECRET_KEY;
/// The session token the stub requires in `X-TC-Token`.
pub const TOKEN: &str = "stub-session-token";

/// One accepted log: its topic and key/value contents.
#[derive(Debug, Clone)]
pub struct ReceivedLog {
    /// The topic it was uploaded to.
    pub topic: String,
    /// Its log time, milliseconds.
    pub time: i64,
    /// Its contents.
    pub fields: std::collections::BTreeMap<String, String>,
}

/// What the stub was asked and what it kept.
#[derive(Default)]
pub struct StubState {
    /// Scripted answers, consumed one per request; empty → 200.
    pub script: VecDeque<(u16, String)>,
    /// Logs of the uploads it accepted.
    pub accepted: Vec<ReceivedLog>,
    /// Requests received, accepted or not.
    pub requests: usize,
    /// What it found wrong with requests (signature, headers, body), one line each.
    pub problems: Vec<String>,
    /// SearchLog request bodies received.
    pub searches: Vec<serde_json::Value>,
    /// Uploads answered with a redirect.
    pub redirected: usize,
    /// Requests that followed a redirect to `/redirected`.
    pub followed: usize,
    /// An answer every `SearchLog` gets, once its request passed the checks (an official
    /// example response, say).
    pub search_answer: Option<String>,
    /// Search contexts handed out (`Context` → offset of the next page); each belongs to the
    /// parameters it was issued for.
    pub contexts: std::collections::HashMap<String, usize>,
    /// Searches after the first this many are answered only after this long.
    pub slow_searches: Option<(usize, std::time::Duration)>,
}

/// The running stand-in.
pub struct ClsStub {
    /// What it was asked and what it kept.
    pub state: Arc<Mutex<StubState>>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    _server: super::Server,
}

impl ClsStub {
    /// Starts on an ephemeral port, answering the first requests with the `script`ed statuses and
    /// bodies, then 200.
    pub async fn start(script: Vec<(u16, &str)>) -> Self {
        if let Err(problem) = super::contract::definitions("cls", "2020-10-16") {
            panic!("the CLS stand-in checks SearchLog against its definition: {problem}");
        }
        let state = Arc::new(Mutex::new(StubState {
            script: script
                .into_iter()
                .map(|(s, b)| (s, b.to_string()))
                .collect(),
            ..StubState::default()
        }));
        let app = Router::new()
            .route("/", post(answer))
            .route("/redirected", axum::routing::any(redirected))
            .with_state(state.clone());
        let server = super::Server::start("127.0.0.1:0", app)
            .await
            .expect("the CLS stand-in binds an ephemeral port");
        Self {
            state,
            url: server.url(),
            _server: server,
        }
    }

    /// Answers every later `SearchLog` that passes the checks with `body`.
    pub fn answer_searches_with(&self, body: String) {
        self.state.lock().unwrap().search_answer = Some(body);
    }

    /// Answers every `SearchLog` after the first `fast` ones only after `delay`.
    pub fn slow_searches_after(&self, fast: usize, delay: std::time::Duration) {
        self.state.lock().unwrap().slow_searches = Some((fast, delay));
    }

    /// Forgets every search context, as CLS does after an hour.
    pub fn expire_contexts(&self) {
        self.state.lock().unwrap().contexts.clear();
    }

    /// Keeps `logs` (time in milliseconds, contents) in `topic` as if uploaded: a topic far
    /// larger than a test would upload.
    pub fn keep(
        &self,
        topic: &str,
        logs: impl IntoIterator<Item = (i64, std::collections::BTreeMap<String, String>)>,
    ) {
        let mut state = self.state.lock().unwrap();
        state
            .accepted
            .extend(logs.into_iter().map(|(time, fields)| ReceivedLog {
                topic: topic.to_string(),
                time,
                fields,
            }));
    }

    /// The logs accepted so far.
    pub fn accepted(&self) -> Vec<ReceivedLog> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// The problems found so far.
    pub fn problems(&self) -> Vec<String> {
        self.state.lock().unwrap().problems.clone()
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    /// SearchLog request bodies received so far.
    pub fn searches(&self) -> Vec<serde_json::Value> {
        self.state.lock().unwrap().searches.clone()
    }

    /// Function settings pointing the audit function at this stub.
    pub fn env(&self, hits_topic: &str, traffic_topic: &str) -> Vec<(String, String)> {
        [
            ("ESGFLOW_CLS_ENDPOINT", self.url.as_str()),
            ("ESGFLOW_CLS_TOPIC_ID", hits_topic),
            ("ESGFLOW_CLS_TRAFFIC_TOPIC_ID", traffic_topic),
            ("TENCENTCLOUD_SECRETID", SECRET_ID),
            ("TENCENTCLOUD_SECRETKEY", SECRET_KEY),
            ("TENCENTCLOUD_SESSIONTOKEN", TOKEN),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// The credentials the stand-in accepts, for a client made in the test process.
pub fn credentials() -> esgflow::adapters::tencent::Credentials {
    esgflow::adapters::tencent::Credentials {
        secret_id: SECRET_ID.to_string(),
        secret_key: SECRET_KEY.to_string(),
        token: Some(TOKEN.to_string()),
    }
}

/// Checks the TC3 signature for the `cls` service, as the API does for every action.
fn check_signature(headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    super::cloud::check_tc3(headers, body, SECRET_ID, SECRET_KEY, &["cls"])
}

/// Checks everything the real service would; returns the decoded logs or what was wrong.
fn verify(headers: &HeaderMap, body: &[u8]) -> Result<(String, LogGroupList), String> {
    for (name, expected) in [
        ("x-tc-action", "UploadLog"),
        ("x-tc-version", "2020-10-16"),
        ("x-cls-compresstype", "lz4"),
        ("content-type", "application/octet-stream"),
        ("x-tc-token", TOKEN),
    ] {
        if header(headers, name) != expected {
            return Err(format!(
                "{name} is {:?}, expected {expected:?}",
                header(headers, name)
            ));
        }
    }
    if header(headers, "x-tc-region").is_empty() {
        return Err("x-tc-region missing".into());
    }
    let topic = header(headers, "x-cls-topicid").to_string();
    if topic.is_empty() {
        return Err("x-cls-topicid missing".into());
    }
    check_signature(headers, body)?;
    let raw = lz4_flex::block::decompress(body, body.len() * 255 + 64)
        .map_err(|e| format!("not an LZ4 block: {e}"))?;
    let list =
        LogGroupList::decode(raw.as_slice()).map_err(|e| format!("not a LogGroupList: {e}"))?;
    check_limits(raw.len(), &list)?;
    Ok((topic, list))
}

/// CLS's write limits (https://www.tencentcloud.com/document/product/614/78959), with "MB"
/// read as 10^6 bytes, the stricter reading: at most 10 groups a request and 1 to 10,000 logs a
/// group, 1 MB a value, 5 MB of values a group, 6 MB of body before compression, no key
/// starting with `_`.
fn check_limits(raw_bytes: usize, list: &LogGroupList) -> Result<(), String> {
    const MB: usize = 1_000_000;
    if raw_bytes > 6 * MB {
        return Err(format!(
            "limit: the body is {raw_bytes} bytes before compression, over 6 MB"
        ));
    }
    if list.log_group_list.len() > 10 {
        return Err(format!(
            "limit: {} log groups, over 10",
            list.log_group_list.len()
        ));
    }
    for group in &list.log_group_list {
        if group.logs.is_empty() || group.logs.len() > 10_000 {
            return Err(format!(
                "limit: a group of {} logs, not 1 to 10,000",
                group.logs.len()
            ));
        }
        let mut values = 0;
        for content in group.logs.iter().flat_map(|l| &l.contents) {
            if content.value.len() > MB {
                return Err(format!(
                    "limit: value of {} is {} bytes, over 1 MB",
                    content.key,
                    content.value.len()
                ));
            }
            if content.key.starts_with('_') {
                return Err(format!("limit: key {:?} starts with _", content.key));
            }
            values += content.value.len();
        }
        if values > 5 * MB {
            return Err(format!(
                "limit: {values} bytes of values in one group, over 5 MB"
            ));
        }
    }
    Ok(())
}

/// `SearchLog`: checks the signature over the JSON body and the body against the action's
/// official definition, keeps the request, and answers as CLS does: the logs of `TopicId`
/// from `From` up to but not including `To` (milliseconds) that the query's search part matches
/// ([`super::cql`]; a malformed one is `FailedOperation.QueryError`), newest first (`Sort`), a
/// page of `Limit` at a time from `Offset`, or with a `Context` for the next — a chain that ends
/// after 10,000 logs, saying it is over, as CLS documents (tccli `cls/v20201016/api.json`,
/// `SearchLogRequest.Context`); with a ` | ` SQL part, its rows.
fn search(state: &mut StubState, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String) {
    let checked =
        check_signature(headers, body).and_then(|()| match header(headers, "x-tc-token") {
            TOKEN => Ok(()),
            other => Err(format!("x-tc-token is {other:?}")),
        });
    if let Err(problem) = checked {
        state.problems.push(format!("SearchLog: {problem}"));
        return (StatusCode::OK, serde_json::json!({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "signature mismatch"}, "RequestId": "stub"}}).to_string());
    }
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    if let Err(refusal) = super::contract::check(headers, "SearchLog", &request) {
        state
            .problems
            .push(format!("SearchLog: {}: {}", refusal.code, refusal.message));
        return (StatusCode::OK, serde_json::json!({"Response": {"Error": {"Code": refusal.code, "Message": refusal.message}, "RequestId": "stub"}}).to_string());
    }
    let query = request["QueryString"].as_str().unwrap_or("").to_string();
    let (topic, from, to) = (
        request["TopicId"].as_str().unwrap_or("").to_string(),
        request["From"].as_i64().unwrap_or(0),
        request["To"].as_i64().unwrap_or(0),
    );
    let ascending = request["Sort"].as_str() == Some("asc");
    state.searches.push(request);
    if let Some(answer) = &state.search_answer {
        return (StatusCode::OK, answer.clone());
    }
    let (search_part, sql) = match query.split_once(" | ") {
        Some((search, sql)) => (search, Some(sql)),
        None => (query.as_str(), None),
    };
    let search_query = match super::cql::Query::parse(search_part) {
        Ok(q) => q,
        Err(problem) => {
            return (StatusCode::OK, serde_json::json!({"Response": {"Error": {"Code": "FailedOperation.QueryError", "Message": format!("query syntax error: {problem}")}, "RequestId": "stub"}}).to_string());
        }
    };
    let mut matched: Vec<&ReceivedLog> = state
        .accepted
        .iter()
        .filter(|l| l.topic == topic && (from..to).contains(&l.time))
        .filter(|l| search_query.matches(&l.fields))
        .collect();
    // Newest first (stable: logs of one time keep their upload order).
    matched.sort_by_key(|l| if ascending { l.time } else { -l.time });
    if let Some(sql) = sql {
        return match analysis(&matched, sql) {
            Ok(rows) => (StatusCode::OK, serde_json::json!({"Response": {"Analysis": true, "AnalysisRecords": rows, "ListOver": true, "RequestId": "stub"}}).to_string()),
            Err(problem) => (StatusCode::OK, serde_json::json!({"Response": {"Error": {"Code": "FailedOperation.QueryError", "Message": format!("SQL error: {problem}")}, "RequestId": "stub"}}).to_string()),
        };
    }
    // Paging as CLS documents it (`SearchLogRequest.Context`, `.Offset`): a context passed back
    // is valid only with every other parameter unchanged, and only while CLS keeps it; an
    // offset cannot go with a context, and has no cap.
    let request = state.searches.last().cloned().unwrap_or_default();
    let start = request["Offset"].as_u64().unwrap_or(0) as usize;
    if start > 0 && request.get("Context").is_some() {
        return (StatusCode::OK, serde_json::json!({"Response": {"Error": {"Code": "InvalidParameter", "Message": "Offset cannot be used with Context"}, "RequestId": "stub"}}).to_string());
    }
    let mut unchanged = request;
    if let Some(object) = unchanged.as_object_mut() {
        object.remove("Context");
    }
    let binding = {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(unchanged.to_string().as_bytes())[..8])
    };
    let offset = match state.searches.last().and_then(|r| r["Context"].as_str()) {
        None => 0,
        Some(context) => match state.contexts.get(context) {
            Some(&offset) if context.starts_with(&binding) => offset,
            _ => {
                return (StatusCode::OK, serde_json::json!({"Response": {"Error": {"Code": "FailedOperation.InvalidContext", "Message": "the context does not belong to this search or has expired"}, "RequestId": "stub"}}).to_string());
            }
        },
    };
    let limit = unchanged["Limit"].as_u64().unwrap_or(100) as usize;
    // A context chain gives 10,000 logs at most, then says it is over.
    let (offset, cap) = match unchanged.get("Offset") {
        Some(_) => (start, usize::MAX),
        None => (offset, CONTEXT_CHAIN_LOGS),
    };
    let results: Vec<serde_json::Value> = matched
        .iter()
        .take(cap)
        .skip(offset)
        .take(limit + 1)
        .map(|l| serde_json::json!({"Time": l.time, "TopicId": l.topic, "LogJson": serde_json::to_string(&l.fields).unwrap()}))
        .collect();
    let list_over = results.len() <= limit;
    let results: Vec<_> = results.into_iter().take(limit).collect();
    let context = format!("{binding}-{}", offset + limit);
    state.contexts.insert(context.clone(), offset + limit);
    (StatusCode::OK, serde_json::json!({"Response": {"Results": results, "Context": context, "ListOver": list_over, "RequestId": "stub"}}).to_string())
}

/// The most logs one `Context` chain gives (tccli `cls/v20201016/api.json`,
/// `SearchLogRequest.Context`).
pub const CONTEXT_CHAIN_LOGS: usize = 10_000;

/// The most rows one SQL answer holds, whatever its `limit` says; without a `limit`, 100
/// (<https://www.tencentcloud.com/document/product/614/38733>).
pub const SQL_MAX_ROWS: usize = 10_000;

/// The SQL part of a query, run as CLS runs it over the logs the search part matched: here in an
/// in-memory SQLite table with one column per field of the topic's index that has statistics
/// (`long` fields as integers), so SQL naming any other field fails as CLS fails it, and every
/// aggregate, `group by`, `order by` and `limit` means what SQL says. CLS SQL has no `FROM`: it
/// is put before the first clause that follows the select list.
fn analysis(selected: &[&ReceivedLog], sql: &str) -> Result<Vec<String>, String> {
    use esgflow::adapters::tencent::cls_query::{FieldKind, HITS_INDEX, TRAFFIC_INDEX};
    let mut columns: Vec<(&str, FieldKind)> = Vec::new();
    for field in HITS_INDEX.iter().chain(TRAFFIC_INDEX) {
        if field.statistics && !columns.iter().any(|(name, _)| *name == field.name) {
            columns.push((field.name, field.kind));
        }
    }
    let db = rusqlite::Connection::open_in_memory().map_err(|e| e.to_string())?;
    let definitions: Vec<String> = columns
        .iter()
        .map(|(name, kind)| match kind {
            FieldKind::Long => format!("{name} INTEGER"),
            FieldKind::Text => format!("{name} TEXT"),
        })
        .collect();
    db.execute_batch(&format!("CREATE TABLE log ({})", definitions.join(", ")))
        .map_err(|e| e.to_string())?;
    {
        let mut insert = db
            .prepare(&format!(
                "INSERT INTO log VALUES ({})",
                vec!["?"; columns.len()].join(", ")
            ))
            .map_err(|e| e.to_string())?;
        for log in selected {
            let values = columns.iter().map(|(name, kind)| {
                use rusqlite::types::Value;
                match (log.fields.get(*name), kind) {
                    (None, _) => Value::Null,
                    (Some(text), FieldKind::Long) => {
                        text.parse::<i64>().map_or(Value::Null, Value::Integer)
                    }
                    (Some(text), FieldKind::Text) => Value::Text(text.clone()),
                }
            });
            insert
                .execute(rusqlite::params_from_iter(values))
                .map_err(|e| e.to_string())?;
        }
    }
    let (sql, offset, limit) = rows_asked(sql)?;
    let lower = sql.to_ascii_lowercase();
    let from = [" where ", " group by ", " having ", " order by "]
        .iter()
        .filter_map(|clause| lower.find(clause))
        .min()
        .unwrap_or(sql.len());
    let statement = format!(
        "{} FROM log{} LIMIT {} OFFSET {offset}",
        &sql[..from],
        &sql[from..],
        limit.min(SQL_MAX_ROWS)
    );
    let mut query = db.prepare(&statement).map_err(|e| e.to_string())?;
    let names: Vec<String> = query.column_names().iter().map(|n| n.to_string()).collect();
    let rows = query
        .query_map([], |row| {
            let mut object = serde_json::Map::new();
            for (i, name) in names.iter().enumerate() {
                let value = match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Integer(n) => serde_json::json!(n),
                    rusqlite::types::ValueRef::Real(f) => serde_json::json!(f),
                    rusqlite::types::ValueRef::Text(t) => {
                        serde_json::json!(String::from_utf8_lossy(t))
                    }
                    _ => serde_json::Value::Null,
                };
                object.insert(name.clone(), value);
            }
            Ok(serde_json::Value::Object(object).to_string())
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
}

/// A query's SQL without its trailing `[offset S] limit N`, with S and N (N is 100 when the SQL
/// gives none).
fn rows_asked(sql: &str) -> Result<(&str, usize, usize), String> {
    let lower = sql.to_ascii_lowercase();
    let number = |text: &str| {
        text.trim()
            .parse::<usize>()
            .map_err(|_| format!("{text:?} is not a row count"))
    };
    let Some(at) = lower.rfind(" limit ") else {
        return Ok((sql, 0, 100));
    };
    let limit = number(&sql[at + " limit ".len()..])?;
    let rest = &sql[..at];
    match lower[..at].rfind(" offset ") {
        Some(o) => Ok((&sql[..o], number(&rest[o + " offset ".len()..])?, limit)),
        None => Ok((rest, 0, limit)),
    }
}

// Pseudo-statuses a script can hold besides real HTTP statuses.
/// Scripted: never answer.
pub const HANG: u16 = 0;
/// Scripted: close the connection without answering.
pub const CLOSE: u16 = 1;
/// Scripted: wait `body` milliseconds, then accept.
pub const DELAY: u16 = 2;
/// Scripted: keep nothing and answer 200 with an empty body.
pub const EMPTY_200: u16 = 3;
/// Scripted: keep nothing and answer `307 Temporary Redirect` to `/redirected`, which answers
/// every request (POST or GET) with a proper UploadLog answer and keeps nothing.
pub const REDIRECT: u16 = 4;

/// The answer to an upload, with the `Location` of a scripted redirect.
async fn answer(
    state: State<Arc<Mutex<StubState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (status, text) = upload(state, headers, body).await;
    let mut response = (status, text).into_response();
    if status == StatusCode::TEMPORARY_REDIRECT {
        response.headers_mut().insert(
            "location",
            axum::http::HeaderValue::from_static("/redirected"),
        );
    }
    response
}

/// Where a scripted redirect points: a proper-looking answer that keeps nothing.
async fn redirected(State(shared): State<Arc<Mutex<StubState>>>) -> (StatusCode, String) {
    shared.lock().unwrap().followed += 1;
    (
        StatusCode::OK,
        serde_json::json!({"Response": {"RequestId": "redirected"}}).to_string(),
    )
}

async fn upload(
    State(shared): State<Arc<Mutex<StubState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if header(&headers, "x-tc-action") == "SearchLog" {
        let delay = {
            let state = shared.lock().unwrap();
            state
                .slow_searches
                .filter(|(fast, _)| state.searches.len() >= *fast)
                .map(|(_, delay)| delay)
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut state = shared.lock().unwrap();
        state.requests += 1;
        return search(&mut state, &headers, &body);
    }
    let scripted = {
        let mut state = shared.lock().unwrap();
        state.requests += 1;
        state.script.pop_front()
    };
    match &scripted {
        Some((HANG, _)) => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
        // Dropping the connection without an answer: the connection task ends with this panic
        // (the lock is not held).
        Some((CLOSE, _)) => panic!("cls stub: closing the connection as scripted"),
        Some((DELAY, ms)) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms.parse().unwrap())).await;
        }
        _ => {}
    }
    let mut state = shared.lock().unwrap();
    let (topic, list) = match verify(&headers, &body) {
        Ok(decoded) => decoded,
        Err(problem) => {
            state.problems.push(problem.clone());
            let code = if problem.starts_with("limit:") {
                "InvalidParameter"
            } else {
                "AuthFailure.SignatureFailure"
            };
            return (StatusCode::OK, serde_json::json!({"Response": {"Error": {"Code": code, "Message": problem}, "RequestId": "stub"}}).to_string());
        }
    };
    match &scripted {
        Some((EMPTY_200, _)) => return (StatusCode::OK, String::new()),
        Some((REDIRECT, _)) => {
            state.redirected += 1;
            return (StatusCode::TEMPORARY_REDIRECT, String::new());
        }
        Some((status, body)) if *status > REDIRECT && *status != 200 => {
            return (StatusCode::from_u16(*status).unwrap(), body.clone());
        }
        _ => {}
    }
    for group in list.log_group_list {
        for log in group.logs {
            let fields = log.contents.into_iter().map(|c| (c.key, c.value)).collect();
            state.accepted.push(ReceivedLog {
                topic: topic.clone(),
                time: log.time,
                fields,
            });
        }
    }
    match scripted {
        // A 200 with a scripted body: the data landed, but the answer is what the script says.
        Some((200, body)) if !body.is_empty() => (StatusCode::OK, body),
        _ => (
            StatusCode::OK,
            serde_json::json!({"Response": {"RequestId": "stub"}}).to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(fields: &[(&str, &str)]) -> ReceivedLog {
        ReceivedLog {
            topic: "t".into(),
            time: 0,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// SQL runs over the matched logs as SQL means it, and only over fields with statistics.
    #[test]
    fn sql_is_evaluated_over_statistics_fields_only() {
        let logs = [
            log(&[("rule_uuid", "a"), ("hits", "2"), ("rule_description", "x")]),
            log(&[("rule_uuid", "a"), ("hits", "3")]),
            log(&[("rule_uuid", "b"), ("hits", "7")]),
        ];
        let selected: Vec<&ReceivedLog> = logs.iter().collect();
        let rows = analysis(
            &selected,
            "select rule_uuid, sum(cast(hits as bigint)) as hits group by rule_uuid order by hits desc limit 1",
        )
        .unwrap();
        assert_eq!(rows, [r#"{"hits":7,"rule_uuid":"b"}"#]);
        let err = analysis(
            &selected,
            "select rule_description, count(*) as n group by rule_description",
        )
        .unwrap_err();
        assert!(err.contains("rule_description"), "{err}");
        // No logs: one row of nulls for an aggregate without grouping, as SQL says.
        let rows = analysis(&[], "select sum(cast(hits as bigint)) as hits").unwrap();
        assert_eq!(rows, [r#"{"hits":null}"#]);
    }
}
