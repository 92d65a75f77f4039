//! The records store in the cloud: the hits topic searched with CLS `SearchLog`. Every query
//! text esgflow sends is built here, from validated values only ([`crate::core::search`]), and
//! touches only the fields of [`HITS_INDEX`] — the key-value index the hits topic needs.
//!
//! Query syntax is CQL (`QuerySyntax: 1`): `field:"text"` for text fields, `field:>=n` for
//! numeric (`long`) fields, `AND`/`OR` and parentheses; a `| select …` part is SQL over the
//! matched logs and needs statistics on the fields it touches
//! (<https://www.tencentcloud.com/document/product/614/37803>,
//! <https://www.tencentcloud.com/document/product/614/38736>). A CIDR is a numeric range over
//! `src_ip_num`/`dst_ip_num`, which audit writes for IPv4 addresses.

use std::time::Instant;

use serde_json::{json, Value};

use super::api::{ApiClient, ApiError};
use super::search::{all_rows, analysis_rows, number, rows_up_to, window_ms, CLS_VERSION};
use crate::core::ports::{RecordsStore, SearchFuture, StoreFailure};
use crate::core::search::{
    AddressMatch, Conversations, HitFilter, HitsPage, RuleCounters, TrafficFilter, TrafficQuery,
    TrafficView,
};

/// How CLS indexes a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `text`: searched as `field:"value"`.
    Text,
    /// `long`: searched as `field:n`, `field:>=n`; summed in SQL.
    Long,
}

/// One field of the hits topic's key-value index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexField {
    /// The record field.
    pub name: &'static str,
    /// Its index type.
    pub kind: FieldKind,
    /// Whether SQL touches it (CLS "statistics", `SqlFlag`).
    pub statistics: bool,
}

const fn field(name: &'static str, kind: FieldKind, statistics: bool) -> IndexField {
    IndexField {
        name,
        kind,
        statistics,
    }
}

/// The key-value index the hits topic needs for every query esgflow sends: the one list the
/// query builders use, the deploy creates and docs/records.md shows.
pub const HITS_INDEX: &[IndexField] = &[
    field("record_type", FieldKind::Text, true),
    field("src_ip", FieldKind::Text, false),
    field("dst_ip", FieldKind::Text, false),
    field("src_ip_num", FieldKind::Long, false),
    field("dst_ip_num", FieldKind::Long, false),
    field("dst_port", FieldKind::Long, false),
    field("protocol", FieldKind::Long, false),
    field("rule_uuid", FieldKind::Text, true),
    field("src_vpc", FieldKind::Text, false),
    field("dst_vpc", FieldKind::Text, false),
    field("src_subnet", FieldKind::Text, false),
    field("dst_subnet", FieldKind::Text, false),
    field("fl_action", FieldKind::Text, false),
    field("hits", FieldKind::Long, true),
    field("block_hits", FieldKind::Long, true),
    field("observe_hits", FieldKind::Long, true),
    field("first_hit", FieldKind::Long, true),
    field("last_hit", FieldKind::Long, true),
    field("record_id", FieldKind::Text, false),
];

/// The key-value index the traffic topic needs for the traffic views (when traffic shares the
/// hits topic, that topic needs both lists; a field in both needs statistics if either says so).
pub const TRAFFIC_INDEX: &[IndexField] = &[
    field("record_type", FieldKind::Text, false),
    field("scope", FieldKind::Text, true),
    field("peer", FieldKind::Text, false),
    field("src_vpc", FieldKind::Text, false),
    field("dst_vpc", FieldKind::Text, false),
    field("src_subnet", FieldKind::Text, true),
    field("dst_subnet", FieldKind::Text, true),
    field("src_ip", FieldKind::Text, true),
    field("dst_ip", FieldKind::Text, true),
    field("dst_port", FieldKind::Long, true),
    field("protocol_name", FieldKind::Text, true),
    field("fl_action", FieldKind::Text, true),
    field("flows", FieldKind::Long, true),
    field("packets", FieldKind::Long, true),
    field("bytes", FieldKind::Long, true),
    field("last_seen", FieldKind::Long, true),
    field("enis", FieldKind::Text, true),
];

/// `(field:"a" OR field:"b")` — a text field equal to one of `values`.
fn any_text(field: &str, values: &[&str]) -> String {
    let terms: Vec<String> = values.iter().map(|v| format!("{field}:\"{v}\"")).collect();
    format!("({})", terms.join(" OR "))
}

/// `(src_<field>:"id" OR dst_<field>:"id")`: either end's VPC or subnet.
fn either_end(field: &str, id: &str) -> String {
    format!("(src_{field}:\"{id}\" OR dst_{field}:\"{id}\")")
}

/// `side` (`src` or `dst`) matching `address`.
fn address(side: &str, address: &AddressMatch) -> String {
    match address {
        AddressMatch::Exact(ip) => format!("{side}_ip:\"{ip}\""),
        AddressMatch::V4Range { first, last } => {
            format!("({side}_ip_num:>={first} AND {side}_ip_num:<={last})")
        }
    }
}

/// The CQL of a hits search.
pub fn hits_query(filter: &HitFilter) -> String {
    let mut parts = vec![any_text("record_type", &filter.types)];
    if let Some(src) = &filter.src {
        parts.push(address("src", src));
    }
    if let Some(dst) = &filter.dst {
        parts.push(address("dst", dst));
    }
    if let Some(either) = &filter.either {
        parts.push(format!(
            "({} OR {})",
            address("src", either),
            address("dst", either)
        ));
    }
    if let Some(port) = filter.port {
        parts.push(format!("dst_port:{port}"));
    }
    if let Some(protocol) = filter.protocol {
        parts.push(format!("protocol:{protocol}"));
    }
    if let Some(rule) = &filter.rule {
        parts.push(format!("rule_uuid:\"{rule}\""));
    }
    parts.extend(filter.vpc.as_deref().map(|id| either_end("vpc", id)));
    parts.extend(filter.subnet.as_deref().map(|id| either_end("subnet", id)));
    if let Some(action) = filter.fl_action {
        parts.push(format!("fl_action:\"{action}\""));
    }
    parts.join(" AND ")
}

/// The CQL of the traffic records a traffic view covers.
pub fn traffic_search(filter: &TrafficFilter) -> String {
    let mut parts = vec!["record_type:\"traffic\"".to_string()];
    parts.extend(filter.vpc.as_deref().map(|id| either_end("vpc", id)));
    parts.extend(filter.subnet.as_deref().map(|id| either_end("subnet", id)));
    parts.extend(
        filter
            .src_subnet
            .as_deref()
            .map(|id| format!("src_subnet:\"{id}\"")),
    );
    parts.extend(
        filter
            .dst_subnet
            .as_deref()
            .map(|id| format!("dst_subnet:\"{id}\"")),
    );
    if let Some(scope) = filter.scope {
        parts.push(format!("scope:\"{scope}\""));
    }
    if let Some(peer) = filter.peer {
        parts.push(format!("peer:\"{peer}\""));
    }
    if let Some(action) = filter.fl_action {
        parts.push(format!("fl_action:\"{action}\""));
    }
    parts.join(" AND ")
}

/// The distinct lists of ENIs that recorded traffic (flow-log coverage), read page by page.
pub const RECORDING_ENIS_QUERY: &str =
    "record_type:\"traffic\" | select enis group by enis order by enis";

/// The query text of one traffic view.
pub fn traffic_query(filter: &TrafficFilter, view: TrafficQuery) -> String {
    let (select, rest) = view.sql(filter);
    format!("{} | select {select} {rest}", traffic_search(filter))
}

/// The CQL finding one hit record by id (`id`: 16 hex digits, checked by the caller).
pub fn hit_by_id_query(id: &str) -> String {
    format!(
        "{} AND record_id:\"{id}\"",
        any_text("record_type", &crate::core::search::HIT_TYPES)
    )
}

/// The numeric fields of hit records. CLS keeps every value as text; these are given back as
/// numbers, so a record reads the same from CLS as from the local store.
pub const NUMERIC_HIT_FIELDS: &[&str] = &[
    "time",
    "start",
    "end",
    "src_port",
    "dst_port",
    "protocol",
    "icmp_type",
    "icmp_code",
    "packets",
    "bytes",
    "rule_order",
    "src_ip_num",
    "dst_ip_num",
];

/// `record` with its [`NUMERIC_HIT_FIELDS`] as numbers.
fn typed(mut record: Value) -> Value {
    if let Some(fields) = record.as_object_mut() {
        for name in NUMERIC_HIT_FIELDS {
            if let Some(value) = fields.get_mut(*name) {
                if let Some(number) = value.as_str().and_then(|t| t.parse::<u64>().ok()) {
                    *value = json!(number);
                }
            }
        }
    }
    record
}

/// A raw-log search's `Results`, and the records they hold (each log's `LogJson`, numbers as
/// numbers). An answer without a `Results` list, or with a log that is not a record, is a
/// failed search, not "no hits" (SearchLog's raw results always carry both: tccli
/// `SearchLogResponse.Results`, `LogInfo.LogJson`).
fn results(response: &Value) -> Result<(&[Value], Vec<Value>), ApiError> {
    let failed = |message: String| ApiError {
        action: "SearchLog".into(),
        code: "BadResponse".into(),
        message,
        request_id: response
            .get("RequestId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    };
    let results = response
        .get("Results")
        .and_then(Value::as_array)
        .ok_or_else(|| failed("the answer has no Results list".to_string()))?;
    let read: Vec<Option<Value>> = results
        .iter()
        .map(|log| {
            log.get("LogJson")
                .and_then(Value::as_str)
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .filter(Value::is_object)
                .map(typed)
        })
        .collect();
    let unreadable = read.iter().filter(|r| r.is_none()).count();
    if unreadable > 0 {
        return Err(failed(format!(
            "{unreadable} of its {} logs have no LogJson record",
            results.len()
        )));
    }
    let records = read.into_iter().flatten().collect();
    Ok((results.as_slice(), records))
}

/// The rules with the most block hits, most first.
pub fn top_block_rules_query(limit: u32) -> String {
    format!(
        "record_type:\"block_hit\" | select rule_uuid, count(*) as hits group by rule_uuid order by hits desc limit {limit}"
    )
}

/// Every rule's `rule_hits` summed, for the sync function's unused-rule report; read page by
/// page (an account has more rules than one SQL answer holds).
pub const USED_RULES_QUERY: &str = "record_type:\"rule_hits\" | select rule_uuid, sum(cast(hits as bigint)) as hits, max(cast(last_hit as bigint)) as last_hit group by rule_uuid order by rule_uuid";

/// Every rule's `rule_hits` counters summed, one row per rule; read page by page.
pub const RULE_TOTALS_QUERY: &str = "record_type:\"rule_hits\" | select rule_uuid, sum(cast(hits as bigint)) as hits, sum(cast(block_hits as bigint)) as block_hits, sum(cast(observe_hits as bigint)) as observe_hits, min(cast(first_hit as bigint)) as first_hit, max(cast(last_hit as bigint)) as last_hit group by rule_uuid order by rule_uuid";

/// One rule's `rule_hits` counters summed.
pub fn rule_counters_query(uuid: &str) -> String {
    format!(
        "record_type:\"rule_hits\" AND rule_uuid:\"{uuid}\" | select sum(cast(hits as bigint)) as hits, sum(cast(block_hits as bigint)) as block_hits, sum(cast(observe_hits as bigint)) as observe_hits, min(cast(first_hit as bigint)) as first_hit, max(cast(last_hit as bigint)) as last_hit"
    )
}

/// A row of summed `rule_hits` counters.
fn counters(row: &Value) -> RuleCounters {
    RuleCounters {
        hits: number(row, "hits").unwrap_or(0),
        block_hits: number(row, "block_hits").unwrap_or(0),
        observe_hits: number(row, "observe_hits").unwrap_or(0),
        first_hit: number(row, "first_hit"),
        last_hit: number(row, "last_hit"),
    }
}

/// The hits topic, searched through `SearchLog`.
#[derive(Debug, Clone)]
pub struct ClsRecords {
    /// The API client (CLS endpoint, region).
    pub client: ApiClient,
    /// The hits topic.
    pub topic: String,
    /// The traffic topic (often the hits topic).
    pub traffic_topic: String,
}

impl ClsRecords {
    /// One page of `filter`, newest first; `context` is where an earlier page ended (the row
    /// offset, in decimal). Pages go by `Offset`, not by SearchLog's `Context`: a `Context`
    /// chain ends at 10,000 logs and then reads as complete (tccli `cls/v20201016/api.json`,
    /// `SearchLogRequest.Context` and `.Offset`), so a search or an export past 10,000 records
    /// would stop silently. The search is complete only when CLS gives no logs, or fewer than
    /// asked without `ListOver: false`; a full page always asks for the next.
    pub async fn search_hits(
        &self,
        filter: &HitFilter,
        limit: u32,
        context: Option<&str>,
        deadline: Instant,
    ) -> Result<HitsPage, ApiError> {
        let offset = match context {
            None => 0,
            Some(text) => text.parse::<u64>().map_err(|_| {
                ApiError::local(
                    "SearchLog",
                    "FailedOperation.InvalidContext",
                    format!("{text:?} is not a position this store gave"),
                )
            })?,
        };
        let (from, to) = window_ms(filter.since, filter.until);
        let mut body = json!({
            "TopicId": self.topic, "From": from, "To": to,
            "QueryString": hits_query(filter), "QuerySyntax": 1, "Limit": limit, "Sort": "desc",
            "UseNewAnalysis": true,
        });
        if offset > 0 {
            body["Offset"] = json!(offset);
        }
        let response = self
            .client
            .call("cls", CLS_VERSION, "SearchLog", &body, deadline)
            .await?;
        let (results, hits) = results(&response)?;
        // Over when CLS gives nothing, or fewer logs than asked without saying there are more.
        let more = response.get("ListOver").and_then(Value::as_bool) == Some(false);
        let complete = results.is_empty() || (results.len() < limit as usize && !more);
        let context = (!complete).then(|| (offset + results.len() as u64).to_string());
        Ok(HitsPage { hits, context })
    }

    /// The rules with the most block hits between `since` and `until` (Unix seconds).
    pub async fn top_block_rules(
        &self,
        since: i64,
        until: i64,
        limit: u32,
        deadline: Instant,
    ) -> Result<Vec<(String, u64)>, ApiError> {
        let (from, to) = window_ms(since, until);
        let rows = analysis_rows(
            &self.client,
            &self.topic,
            &top_block_rules_query(limit),
            from,
            to,
            deadline,
        )
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let uuid = row.get("rule_uuid")?.as_str()?;
                Some((uuid.to_string(), number(row, "hits").unwrap_or(0)))
            })
            .take(limit as usize)
            .collect())
    }

    /// The traffic views of `filter`: its four queries, at once.
    pub async fn traffic(
        &self,
        filter: &TrafficFilter,
        deadline: Instant,
    ) -> Result<TrafficView, ApiError> {
        let (from, to) = window_ms(filter.since, filter.until);
        let answers =
            futures_util::future::try_join_all(TrafficQuery::ALL.map(|view| async move {
                let query = traffic_query(filter, view);
                let rows = analysis_rows(
                    &self.client,
                    &self.traffic_topic,
                    &query,
                    from,
                    to,
                    deadline,
                )
                .await?;
                Ok::<_, ApiError>((view, rows))
            }))
            .await?;
        let mut traffic = TrafficView::default();
        for (view, rows) in answers {
            for row in &rows {
                view.add_row(&mut traffic, row);
            }
        }
        traffic.sort();
        Ok(traffic)
    }

    /// The conversations `filter` covers, most bytes first, at most `limit` (read
    /// 10,000 rows at a time; the largest ones so far when `deadline` cuts the reading).
    pub async fn conversations(
        &self,
        filter: &TrafficFilter,
        limit: usize,
        deadline: Instant,
    ) -> Result<Conversations, ApiError> {
        let query = format!(
            "{} | {}",
            traffic_search(filter),
            crate::core::search::conversations_sql()
        );
        let window = window_ms(filter.since, filter.until);
        let mut view = TrafficView::default();
        let (_, cut) = rows_up_to(
            &self.client,
            &self.traffic_topic,
            &query,
            window,
            limit.saturating_add(1),
            deadline,
            |row| TrafficQuery::Talkers.add_row(&mut view, &row),
        )
        .await?;
        let mut conversations = Conversations::of(view.talkers, limit);
        if cut {
            conversations.complete = false;
            conversations.cut_by_deadline = true;
        }
        Ok(conversations)
    }

    /// The hit record `id` written between `since` and `until` (Unix seconds), if any.
    pub async fn hit_by_id(
        &self,
        id: &str,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> Result<Option<Value>, ApiError> {
        let (from, to) = window_ms(since, until);
        let body = json!({
            "TopicId": self.topic, "From": from, "To": to,
            "QueryString": hit_by_id_query(id), "QuerySyntax": 1, "Limit": 1, "Sort": "desc",
            "UseNewAnalysis": true,
        });
        let response = self
            .client
            .call("cls", CLS_VERSION, "SearchLog", &body, deadline)
            .await?;
        Ok(results(&response)?.1.into_iter().next())
    }

    /// The ENIs that recorded traffic between `since` and `until` (Unix seconds).
    pub async fn recording_enis(
        &self,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> Result<std::collections::BTreeSet<String>, ApiError> {
        let (from, to) = window_ms(since, until);
        let rows = all_rows(
            &self.client,
            &self.traffic_topic,
            RECORDING_ENIS_QUERY,
            from,
            to,
            deadline,
        )
        .await?;
        Ok(crate::core::search::split_enis(
            rows.iter().filter_map(|r| r.get("enis")?.as_str()),
        ))
    }

    /// Every rule's counters between `since` and `until` (Unix seconds), by uuid.
    pub async fn rule_totals(
        &self,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> Result<std::collections::BTreeMap<String, RuleCounters>, ApiError> {
        let (from, to) = window_ms(since, until);
        let rows = all_rows(
            &self.client,
            &self.topic,
            RULE_TOTALS_QUERY,
            from,
            to,
            deadline,
        )
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let uuid = row.get("rule_uuid")?.as_str()?.to_string();
                Some((uuid, counters(row)))
            })
            .collect())
    }

    /// `uuid`'s counters between `since` and `until` (Unix seconds).
    pub async fn rule_counters(
        &self,
        uuid: &str,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> Result<RuleCounters, ApiError> {
        let (from, to) = window_ms(since, until);
        let rows = analysis_rows(
            &self.client,
            &self.topic,
            &rule_counters_query(uuid),
            from,
            to,
            deadline,
        )
        .await?;
        Ok(counters(&rows.first().cloned().unwrap_or_default()))
    }
}

impl From<ApiError> for StoreFailure {
    fn from(err: ApiError) -> Self {
        if err.code.starts_with("FailedOperation.InvalidContext") {
            StoreFailure::CursorExpired
        } else {
            StoreFailure::Failed {
                message: err.to_string(),
                code: err.code,
            }
        }
    }
}

impl RecordsStore for ClsRecords {
    fn search_hits<'a>(
        &'a self,
        filter: &'a HitFilter,
        limit: u32,
        context: Option<&'a str>,
        deadline: Instant,
    ) -> SearchFuture<'a, HitsPage> {
        Box::pin(async move { Ok(self.search_hits(filter, limit, context, deadline).await?) })
    }

    fn top_block_rules(
        &self,
        since: i64,
        until: i64,
        limit: u32,
        deadline: Instant,
    ) -> SearchFuture<'_, Vec<(String, u64)>> {
        Box::pin(async move { Ok(self.top_block_rules(since, until, limit, deadline).await?) })
    }

    fn rule_counters<'a>(
        &'a self,
        uuid: &'a str,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> SearchFuture<'a, RuleCounters> {
        Box::pin(async move { Ok(self.rule_counters(uuid, since, until, deadline).await?) })
    }

    fn rule_totals(
        &self,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> SearchFuture<'_, std::collections::BTreeMap<String, RuleCounters>> {
        Box::pin(async move { Ok(self.rule_totals(since, until, deadline).await?) })
    }

    fn traffic<'a>(
        &'a self,
        filter: &'a TrafficFilter,
        deadline: Instant,
    ) -> SearchFuture<'a, TrafficView> {
        Box::pin(async move { Ok(self.traffic(filter, deadline).await?) })
    }

    fn conversations<'a>(
        &'a self,
        filter: &'a TrafficFilter,
        limit: usize,
        deadline: Instant,
    ) -> SearchFuture<'a, Conversations> {
        Box::pin(async move { Ok(self.conversations(filter, limit, deadline).await?) })
    }

    fn recording_enis(
        &self,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> SearchFuture<'_, std::collections::BTreeSet<String>> {
        Box::pin(async move { Ok(self.recording_enis(since, until, deadline).await?) })
    }

    fn hit_by_id<'a>(
        &'a self,
        id: &'a str,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> SearchFuture<'a, Option<Value>> {
        Box::pin(async move { Ok(self.hit_by_id(id, since, until, deadline).await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SearchLog answer without its `Results` list, or with a log that is not a record, is a
    /// failed search, never "no hits" (issue #36: a hostile answer showed as 0 hits).
    #[test]
    fn an_unreadable_search_answer_is_a_failure_not_no_hits() {
        let good = json!({"Results": [{"LogJson": "{\"record_id\":\"a\",\"dst_port\":\"443\"}"}], "RequestId": "r-1"});
        let (logs, records) = results(&good).unwrap();
        assert_eq!(
            (logs.len(), records[0]["dst_port"].clone()),
            (1, json!(443))
        );
        assert!(results(&json!({"Results": [], "RequestId": "r"}))
            .unwrap()
            .1
            .is_empty());
        for (answer, says) in [
            (json!({"RequestId": "r-2"}), "no Results list"),
            (
                json!({"Results": "x", "RequestId": "r-2"}),
                "no Results list",
            ),
            (
                json!({"Results": [{"LogJson": "{}"}, {"LogJson": "not json"}], "RequestId": "r-2"}),
                "1 of its 2 logs",
            ),
            (
                json!({"Results": [{"Log": "x"}], "RequestId": "r-2"}),
                "1 of its 1 logs",
            ),
        ] {
            let err = results(&answer).unwrap_err();
            assert!(err.message.contains(says), "{err:?}");
            assert_eq!(
                (err.code.as_str(), err.request_id.as_str()),
                ("BadResponse", "r-2")
            );
        }
    }

    fn every_shape() -> Vec<(HitFilter, &'static str)> {
        let base = HitFilter::new(0, 1);
        let with = |f: &dyn Fn(&mut HitFilter)| {
            let mut filter = base.clone();
            f(&mut filter);
            filter
        };
        let at = |t: &str| AddressMatch::parse(t).unwrap();
        vec![
            (
                base.clone(),
                r#"(record_type:"block_hit" OR record_type:"observe_hit")"#,
            ),
            (
                with(&|f| {
                    f.types = vec!["block_hit"];
                    f.src = Some(at("10.0.1.11"));
                    f.dst = Some(at("10.0.3.10"));
                    f.port = Some(3306);
                    f.protocol = Some(6);
                }),
                r#"(record_type:"block_hit") AND src_ip:"10.0.1.11" AND dst_ip:"10.0.3.10" AND dst_port:3306 AND protocol:6"#,
            ),
            (
                with(&|f| f.src = Some(at("10.0.1.0/24"))),
                r#"(record_type:"block_hit" OR record_type:"observe_hit") AND (src_ip_num:>=167772416 AND src_ip_num:<=167772671)"#,
            ),
            (
                with(&|f| f.either = Some(at("10.0.0.0/16"))),
                r#"(record_type:"block_hit" OR record_type:"observe_hit") AND ((src_ip_num:>=167772160 AND src_ip_num:<=167837695) OR (dst_ip_num:>=167772160 AND dst_ip_num:<=167837695))"#,
            ),
            (
                with(&|f| f.either = Some(at("2001:db8::1"))),
                r#"(record_type:"block_hit" OR record_type:"observe_hit") AND (src_ip:"2001:db8::1" OR dst_ip:"2001:db8::1")"#,
            ),
            (
                with(&|f| {
                    f.types = crate::core::search::HIT_TYPES.to_vec();
                    f.rule = Some("esg-rule-0001".into());
                    f.vpc = Some("vpc-prod01".into());
                    f.subnet = Some("subnet-db01".into());
                    f.fl_action = Some("REJECT");
                }),
                r#"(record_type:"block_hit" OR record_type:"observe_hit" OR record_type:"unattributed_block" OR record_type:"snapshot_drift") AND rule_uuid:"esg-rule-0001" AND (src_vpc:"vpc-prod01" OR dst_vpc:"vpc-prod01") AND (src_subnet:"subnet-db01" OR dst_subnet:"subnet-db01") AND fl_action:"REJECT""#,
            ),
        ]
    }

    #[test]
    fn every_query_shape_is_pinned() {
        for (filter, expected) in every_shape() {
            assert_eq!(hits_query(&filter), expected, "{filter:?}");
        }
        assert_eq!(
            top_block_rules_query(10),
            r#"record_type:"block_hit" | select rule_uuid, count(*) as hits group by rule_uuid order by hits desc limit 10"#
        );
        assert_eq!(
            rule_counters_query("esg-1"),
            r#"record_type:"rule_hits" AND rule_uuid:"esg-1" | select sum(cast(hits as bigint)) as hits, sum(cast(block_hits as bigint)) as block_hits, sum(cast(observe_hits as bigint)) as observe_hits, min(cast(first_hit as bigint)) as first_hit, max(cast(last_hit as bigint)) as last_hit"#
        );
        assert_eq!(
            RULE_TOTALS_QUERY,
            r#"record_type:"rule_hits" | select rule_uuid, sum(cast(hits as bigint)) as hits, sum(cast(block_hits as bigint)) as block_hits, sum(cast(observe_hits as bigint)) as observe_hits, min(cast(first_hit as bigint)) as first_hit, max(cast(last_hit as bigint)) as last_hit group by rule_uuid order by rule_uuid"#
        );
        assert_eq!(
            USED_RULES_QUERY,
            r#"record_type:"rule_hits" | select rule_uuid, sum(cast(hits as bigint)) as hits, max(cast(last_hit as bigint)) as last_hit group by rule_uuid order by rule_uuid"#
        );
    }

    #[test]
    fn every_traffic_query_shape_is_pinned() {
        use crate::core::engine::Scope;
        let mut filter = TrafficFilter::new(0, 3600);
        assert_eq!(traffic_search(&filter), r#"record_type:"traffic""#);
        filter.vpc = Some("vpc-prod01".into());
        filter.subnet = Some("subnet-db01".into());
        filter.scope = Some(Scope::VpcInbound);
        filter.peer = Some(crate::core::records::Peer::Private);
        filter.fl_action = Some("REJECT");
        filter.talkers = 5;
        let search = r#"record_type:"traffic" AND (src_vpc:"vpc-prod01" OR dst_vpc:"vpc-prod01") AND (src_subnet:"subnet-db01" OR dst_subnet:"subnet-db01") AND scope:"vpc_inbound" AND peer:"private" AND fl_action:"REJECT""#;
        assert_eq!(traffic_search(&filter), search);
        let sums = "sum(cast(flows as bigint)) as sum_flows, sum(case when fl_action = 'REJECT' then cast(flows as bigint) else 0 end) as sum_rejected, sum(cast(packets as bigint)) as sum_packets, sum(cast(bytes as bigint)) as sum_bytes";
        let expected = [
            format!("{search} | select scope, fl_action, {sums} group by scope, fl_action order by sum_bytes desc, scope, fl_action limit 100"),
            format!("{search} | select src_ip, dst_ip, dst_port, protocol_name, scope, {sums} group by src_ip, dst_ip, dst_port, protocol_name, scope order by sum_bytes desc, sum_flows desc, src_ip, dst_ip, protocol_name, scope limit 5"),
            format!("{search} | select src_subnet, dst_subnet, {sums} group by src_subnet, dst_subnet order by sum_bytes desc, src_subnet, dst_subnet limit 400"),
            format!("{search} | select cast(last_seen as bigint) - cast(last_seen as bigint) % 60 as bucket, {sums} group by bucket order by bucket limit 240"),
        ];
        for (view, expected) in TrafficQuery::ALL.into_iter().zip(expected) {
            assert_eq!(traffic_query(&filter, view), expected, "{view:?}");
        }
        assert_eq!(
            hit_by_id_query("0123456789abcdef"),
            r#"(record_type:"block_hit" OR record_type:"observe_hit" OR record_type:"unattributed_block" OR record_type:"snapshot_drift") AND record_id:"0123456789abcdef""#
        );
        assert_eq!(
            RECORDING_ENIS_QUERY,
            r#"record_type:"traffic" | select enis group by enis order by enis"#
        );
    }

    /// The fields a query's search part names (the words before `:`) and those its SQL part
    /// names (every word but SQL's own and numbers).
    fn fields_of(query: &str) -> (Vec<String>, Vec<String>) {
        const SQL: [&str; 19] = [
            "select", "sum", "cast", "as", "bigint", "min", "max", "count", "group", "by", "order",
            "desc", "limit", "case", "when", "then", "else", "end", "",
        ];
        let (search, sql) = query.split_once(" | ").unwrap_or((query, ""));
        let searched = search
            .split(['(', ' '])
            .filter_map(|term| term.split_once(':').map(|(name, _)| name.to_string()))
            .collect();
        // Quoted literals and the names the queries give their columns are not fields.
        let sql: String = sql.split('\'').step_by(2).collect();
        let analysed = sql
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !SQL.contains(w) && !w.bytes().all(|b| b.is_ascii_digit()))
            .filter(|w| !w.starts_with("sum_") && *w != "bucket")
            .map(str::to_string)
            .collect();
        (searched, analysed)
    }

    #[test]
    fn queries_touch_only_indexed_fields_and_sql_only_statistics_fields() {
        let mut queries: Vec<String> = every_shape().iter().map(|(f, _)| hits_query(f)).collect();
        queries.extend([
            hit_by_id_query("0123456789abcdef"),
            top_block_rules_query(5),
            rule_counters_query("r"),
            USED_RULES_QUERY.to_string(),
            RULE_TOTALS_QUERY.to_string(),
        ]);
        uses_exactly(HITS_INDEX, "HITS_INDEX", &queries);
    }

    /// Every field `queries` search is in `index` (with statistics when SQL touches it), and
    /// every field of `index` is searched.
    fn uses_exactly(index: &[IndexField], name: &str, queries: &[String]) {
        let indexed = |field: &str| index.iter().find(|f| f.name == field);
        let mut seen = std::collections::BTreeSet::new();
        for query in queries {
            let (searched, analysed) = fields_of(query);
            for field in searched {
                assert!(
                    indexed(&field).is_some(),
                    "{field} is not in {name}: {query}"
                );
                seen.insert(field);
            }
            for field in analysed {
                let found =
                    indexed(&field).unwrap_or_else(|| panic!("{field} not indexed: {query}"));
                assert!(found.statistics, "{field} is in SQL without statistics");
                seen.insert(field);
            }
        }
        // The index asks for nothing esgflow does not search.
        for field in index {
            assert!(
                seen.contains(field.name),
                "{} is in {name} but never searched",
                field.name
            );
        }
    }

    #[test]
    fn traffic_queries_touch_only_traffic_index_fields() {
        let mut filter = TrafficFilter::new(0, 3600);
        filter.vpc = Some("v".into());
        filter.subnet = Some("s".into());
        filter.scope = Some(crate::core::engine::Scope::CrossVpc);
        filter.peer = Some(crate::core::records::Peer::Internet);
        filter.fl_action = Some("ACCEPT");
        let queries: Vec<String> = TrafficQuery::ALL
            .iter()
            .map(|view| traffic_query(&filter, *view))
            .chain([RECORDING_ENIS_QUERY.to_string()])
            .collect();
        uses_exactly(TRAFFIC_INDEX, "TRAFFIC_INDEX", &queries);
    }
}
