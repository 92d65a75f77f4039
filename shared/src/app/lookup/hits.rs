//! `GET /v1/hits` (the ESG flow log: hit records, searched and paged), `GET /v1/hits/export`
//! (the same search as CSV or JSON lines) and `GET /v1/hits/{record_id}` (one record, explained
//! against the snapshot that judged it): their routes, parameters, cursors and the CSV form.

use axum::extract::{Path, State};
use axum::Json;

use super::request::Answer;
use super::*;
use serde::Serialize;
use serde_json::Value;
use utoipa::IntoParams;
use utoipa::ToSchema;

/// `GET /v1/hits`.
#[utoipa::path(get, path = "/v1/hits", tag = "flow log",
    summary = "Search the ESG flow log (hit records), newest first",
    description = "Searches the records store: the hits topic in CLS, or the local database `esgflow serve --store` names. Every condition given must hold. Answers the same records, with numbers as numbers, from either store.",
    params(SearchParams, PageParams),
    responses(
        (status = 200, description = "one page of hit records, newest first", body = HitsPage),
        (status = 400, description = "an invalid parameter (named in the message); a parameter the route does not read, or one given twice (`unknown_parameter`, `repeated_parameter`)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody), (status = 410, description = "the cursor is over an hour old, or the store no longer keeps its search", body = ErrorBody), (status = 413, description = "the page does not fit one answer (long records): the message says which limit does (`answer_too_large`)", body = ErrorBody), (status = 502, description = "the records search failed (CLS SearchLog, or the local database)", body = ErrorBody), (status = 503, description = "no records store configured", body = ErrorBody),
    ))]
pub(crate) async fn hits(
    State(lookup): State<Lookup>,
    call: Invocation,
    Query(params): Query<(SearchParams, PageParams)>,
) -> Answer<HitsPage> {
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
        (status = 400, description = "an invalid parameter (named in the message); a parameter the route does not read, or one given twice", body = ErrorBody), (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody), (status = 410, description = "the cursor is over an hour old, or the store no longer keeps its search", body = ErrorBody), (status = 413, description = "one record of the export does not fit an answer", body = ErrorBody), (status = 502, description = "the records search failed", body = ErrorBody), (status = 503, description = "no records store configured", body = ErrorBody),
    ))]
pub(crate) async fn export(
    State(lookup): State<Lookup>,
    call: Invocation,
    Query(params): Query<(SearchParams, ExportParams)>,
) -> Result<Response, Failure> {
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
    Path(id): Path<String>,
    Query(params): Query<HitParams>,
) -> Result<Response, Failure> {
    lookup.hit(&params, &id, call.deadline).await
}

impl Lookup {
    pub(crate) async fn hits(
        &self,
        params: &(SearchParams, PageParams),
        deadline: Instant,
    ) -> Result<HitsPage, Failure> {
        let now = chrono::Utc::now().timestamp();
        let query = HitsQuery::parse(params, now)?;
        let store = self.store()?;
        let page = store
            .search_hits(
                &query.filter,
                query.limit,
                query.cursor.as_ref().map(|c| c.context.as_str()),
                deadline,
            )
            .await
            .map_err(|failure| {
                search_failed(
                    failure,
                    "the records store no longer has this search's position: search again from the first page",
                )
            })?;
        let complete = page.context.is_none();
        let cursor = page.context.map(|context| {
            // A cursor from an earlier page keeps its first page's time: CLS counts the hour
            // from there.
            let issued = query.cursor.as_ref().map_or(now, |c| c.issued);
            HitsCursor {
                issued,
                binding: query.binding(),
                context,
            }
            .to_string()
        });
        let hits = page.hits;
        // The page as the answer carries it, escaped, within the budget; else 413 with how
        // many records of it do fit (a rule description can be long).
        let mut size = 4096;
        for (i, hit) in hits.iter().enumerate() {
            size += escaped_len(&hit.to_string()) + 1;
            if size > self.export_budget {
                return Err(fail(
                    413,
                    "answer_too_large",
                    format!(
                        "this page of {} records does not fit one answer (SCF returns at most 6 MB): the first {i} do; ask for limit={} or fewer",
                        hits.len(),
                        i.max(1)
                    ),
                ));
            }
        }
        let next = cursor.as_ref().map(|cursor| query.next_page(cursor));
        // Nothing in the window: where the same search finds records at all, so the page can
        // offer to go there (a courtesy: a failed look is no failure of the search).
        let newest_elsewhere = if hits.is_empty() && query.cursor.is_none() {
            let anywhere = crate::core::search::HitFilter {
                since: 0,
                until: now.max(query.filter.until),
                ..query.filter.clone()
            };
            let look = deadline.min(Instant::now() + ELSEWHERE_LOOK);
            match store.search_hits(&anywhere, 1, None, look).await {
                Ok(page) => page.hits.first().and_then(|h| h["time"].as_i64()),
                Err(failure) => {
                    tracing::info!(error = ?failure, "no look outside the window");
                    None
                }
            }
        } else {
            None
        };
        Ok(HitsPage {
            newest_elsewhere,
            count: hits.len(),
            hits,
            cursor,
            next,
            complete,
            query: hits_query(&query.filter),
            since: query.filter.since,
            until: query.filter.until,
        })
    }

    /// `GET /v1/hits/{record_id}`: one hit record, explained against the snapshot it was judged
    /// with while the snapshot store keeps that version (else against the current one, saying
    /// so).
    pub(crate) async fn hit(
        &self,
        params: &HitParams,
        id: &str,
        deadline: Instant,
    ) -> Result<Response, Failure> {
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(fail(
                404,
                "not_found",
                format!("{id:?} is not a record id (16 hex digits)"),
            ));
        }
        // The record's own time narrows the search; without it, the last 30 days.
        let now = chrono::Utc::now().timestamp();
        let until = params
            .until
            .as_deref()
            .map(|t| parse_time("until", t))
            .transpose()?
            .unwrap_or(now);
        let since = match params.since.as_deref() {
            Some(text) => parse_time("since", text)?,
            None => until.saturating_sub(MAX_HITS_SPAN_SECONDS).max(0),
        };
        if since > until || until - since > MAX_HITS_SPAN_SECONDS {
            return Err(field_error(
                "since",
                "must be before until, at most 30 days before",
            ));
        }
        let store = self.store()?;
        let record = store
            .hit_by_id(id, since, until, deadline)
            .await
            .map_err(|failure| search_failed(failure, "the records search expired: ask again"))?
            .ok_or_else(|| {
                fail(
                    404,
                    "not_found",
                    format!("no hit record {id} between {since} and {until}"),
                )
            })?;
        let judged_with = record["snapshot_version"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let judged = if judged_with.is_empty() {
            None
        } else {
            self.snapshots
                .lock()
                .await
                .engine_of_version(&judged_with, deadline)
                .await
                .map_err(|err| fail(503, "snapshot_unavailable", err.to_string()))?
        };
        let (engine, note) = match judged {
            Some(engine) => (engine, None),
            None => {
                let current = self.engine(deadline).await?;
                let note = format!(
                    "the snapshot store no longer keeps version {judged_with:?}, which judged this record: explained against the current snapshot {}",
                    current.version()
                );
                (current, Some(note))
            }
        };
        let address = |key: &str| {
            record[key]
                .as_str()
                .and_then(|t| t.parse::<IpAddr>().ok())
                .map(|ip| ip.to_canonical())
        };
        let explanation = match (
            address("src_ip"),
            address("dst_ip"),
            record["protocol"].as_u64(),
        ) {
            (Some(src), Some(dst), Some(protocol)) => {
                let flow = FlowKey::requested(
                    src,
                    dst,
                    u8::try_from(protocol).unwrap_or(0),
                    record["dst_port"]
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok()),
                );
                Some(ExplainView::of(
                    &engine,
                    &flow,
                    record["eni"].as_str(),
                    Detail::Summary,
                ))
            }
            _ => None,
        };
        let answer = HitAnswer {
            explanation,
            judged_with,
            explained_with: engine.version(),
            note,
            record,
        };
        Ok(axum::response::IntoResponse::into_response(axum::Json(
            answer,
        )))
    }

    /// `GET /v1/hits/export?format=csv|jsonl&…`: the search's records as CSV or JSON lines, as
    /// many pages as fit [`MAX_EXPORT_RECORDS`], the answer budget and the deadline; the rest is
    /// one request away (`X-Esgflow-Next`).
    pub(crate) async fn export(
        &self,
        (search, params): &(SearchParams, ExportParams),
        deadline: Instant,
    ) -> Result<Response, Failure> {
        let csv = match params.format.as_deref().map(str::trim) {
            None | Some("") | Some("jsonl") => false,
            Some("csv") => true,
            Some(other) => {
                return Err(field_error(
                    "format",
                    format!("{other:?} is not csv or jsonl"),
                ))
            }
        };
        let now = chrono::Utc::now().timestamp();
        let query = HitsQuery::parse_paged(
            search,
            None,
            params.cursor.as_deref(),
            now,
            self.export_page,
        )?;
        let store = self.store()?;
        let mut body = String::new();
        if csv {
            body.push_str(&EXPORT_COLUMNS.join(","));
            body.push_str("\r\n");
        }
        let mut context = query.cursor.as_ref().map(|c| c.context.clone());
        // Sizes as the answer's JSON will carry the body: escaped.
        let (mut count, mut size, mut largest_page) = (0usize, escaped_len(&body), 0usize);
        let mut limit = query.limit;
        let complete = loop {
            // Another page only while the largest one so far would fit twice, within the
            // record cap, and with time left to answer.
            let room = self.export_budget.saturating_sub(size);
            if count > 0
                && (room < 2 * largest_page.max(64 * 1024)
                    || count + self.export_page as usize > MAX_EXPORT_RECORDS
                    || Instant::now() + std::time::Duration::from_secs(2) > deadline)
            {
                break false;
            }
            let page = store
                .search_hits(&query.filter, limit, context.as_deref(), deadline)
                .await
                .map_err(|failure| {
                    search_failed(
                        failure,
                        "the records store no longer has this export's position: export again from the start",
                    )
                })?;
            let before = body.len();
            // How many of the page's records fit what is left of the budget.
            let (mut fit, mut added) = (0, 0);
            for hit in &page.hits {
                let row = body.len();
                if csv {
                    csv_row(&mut body, hit);
                } else {
                    body.push_str(&hit.to_string());
                    body.push('\n');
                }
                added += escaped_len(&body[row..]);
                fit += usize::from(size + added <= self.export_budget);
            }
            if fit < page.hits.len() {
                body.truncate(before);
                if count > 0 {
                    // The rest goes in the next part, from this page's start.
                    break false;
                }
                if fit == 0 && limit == 1 {
                    return Err(fail(
                        413,
                        "answer_too_large",
                        "one record of this export does not fit an answer: narrow the search",
                    ));
                }
                // The first page is too long for one answer: ask again for what fits.
                limit = fit.max(1) as u32;
                continue;
            }
            size += added;
            largest_page = largest_page.max(added);
            count += page.hits.len();
            context = page.context;
            if context.is_none() {
                break true;
            }
        };
        let (content_type, extension) = if csv {
            ("text/csv; charset=utf-8", "csv")
        } else {
            ("application/x-ndjson", "jsonl")
        };
        let mut headers = vec![
            (header::CONTENT_TYPE.as_str(), content_type.to_string()),
            (
                header::CONTENT_DISPOSITION.as_str(),
                format!(
                    "attachment; filename=\"esgflow-hits-{}-{}.{extension}\"",
                    query.filter.since, query.filter.until
                ),
            ),
            ("x-esgflow-count", count.to_string()),
            ("x-esgflow-complete", complete.to_string()),
        ];
        if let Some(context) = context.filter(|_| !complete) {
            let issued = query.cursor.as_ref().map_or(now, |c| c.issued);
            let cursor = HitsCursor {
                issued,
                binding: query.binding(),
                context,
            }
            .to_string();
            let mut next = query.next_page(&cursor);
            next.as_object_mut().map(|n| n.remove("limit"));
            next["format"] = json!(if csv { "csv" } else { "jsonl" });
            headers.push(("x-esgflow-next", query_text(&next)));
        }
        let mut response = Response::new(axum::body::Body::from(body));
        for (name, value) in headers {
            let value = header::HeaderValue::try_from(value).expect("header values are ASCII");
            response.headers_mut().insert(name, value);
        }
        Ok(response)
    }
}

/// Validated `/v1/hits` parameters. Only these values reach the CLS query, each checked
/// against a strict syntax and quoted, so no user text can change the query's structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HitsQuery {
    /// What to search.
    pub filter: HitFilter,
    /// Page size (1–1000).
    pub limit: u32,
    /// The cursor of the previous page.
    pub cursor: Option<HitsCursor>,
}

/// A `/v1/hits` cursor: when its first page was asked (a cursor lives an hour: positions in a
/// window shift as late records arrive), a digest of the search it belongs to (a position means
/// something only in its own search), and the store's position after the previous page. Written
/// `<issued>_<binding>_<context>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HitsCursor {
    /// When the search's first page was asked, Unix seconds.
    pub(crate) issued: i64,
    /// A digest of the search's other parameters.
    pub(crate) binding: String,
    /// The store's position (CLS: the row offset; the local store: time and row).
    pub(crate) context: String,
}

/// How long a cursor lives.
pub(crate) const CURSOR_LIFETIME_SECONDS: i64 = 3600;

impl std::fmt::Display for HitsCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}_{}", self.issued, self.binding, self.context)
    }
}

impl HitsCursor {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '_');
        let issued = parts.next()?.parse().ok()?;
        let binding = parts.next()?;
        let context = parts.next()?;
        (binding.len() == 8
            && binding.bytes().all(|b| b.is_ascii_hexdigit())
            && !context.is_empty())
        .then(|| HitsCursor {
            issued,
            binding: binding.to_string(),
            context: context.to_string(),
        })
    }
}

/// The longest span one search may cover.
pub(crate) const MAX_HITS_SPAN_SECONDS: i64 = 30 * 24 * 3600;

/// Records an export asks the store for at a time.
pub(crate) const EXPORT_PAGE: u32 = 1000;

/// Most records in one export answer.
pub(crate) const MAX_EXPORT_RECORDS: usize = 100_000;

/// The CSV columns of an export, in order: `time_utc` is `time` in RFC 3339, the rest are record
/// fields (empty when a record has none).
pub const EXPORT_COLUMNS: [&str; 29] = [
    "time_utc",
    "time",
    "record_type",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "protocol_name",
    "fl_action",
    "decision",
    "rule_uuid",
    "rule_order",
    "rule_action",
    "rule_description",
    "reason",
    "scope",
    "direction",
    "src_vpc",
    "src_subnet",
    "src_instance",
    "src_instance_name",
    "dst_vpc",
    "dst_subnet",
    "dst_instance",
    "dst_instance_name",
    "eni",
    "packets",
    "bytes",
    "record_id",
];

/// One CSV row (RFC 4180) of `record`. Text that a spreadsheet would run as a formula (`=`,
/// `+`, `-`, `@`, tab or carriage return — a rule description can start so) is defused with a
/// `'` before it, at the start of a cell and after every separator a spreadsheet may split on
/// (`,`, `;`, `|`, tab, a line break): a cell `;=cmd…` read by a spreadsheet that splits on `;`
/// would otherwise start a cell with `=cmd…`.
pub(crate) fn csv_row(out: &mut String, record: &Value) {
    for (i, column) in EXPORT_COLUMNS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cell = match *column {
            "time_utc" => record["time"]
                .as_i64()
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            name => match record.get(name) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            },
        };
        let cell = defuse_formulas(cell);
        if cell.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&cell);
        }
    }
    out.push_str("\r\n");
}

/// `cell` with a `'` before every formula character at its start or after a separator.
fn defuse_formulas(cell: String) -> String {
    const FORMULA: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];
    const SEPARATORS: [char; 6] = [',', ';', '|', '\t', '\n', '\r'];
    let mut defused = String::with_capacity(cell.len() + 1);
    let mut at_start = true;
    for c in cell.chars() {
        if at_start && FORMULA.contains(&c) {
            defused.push('\'');
        }
        at_start = SEPARATORS.contains(&c);
        defused.push(c);
    }
    defused
}

/// `next` (name → text) as a URL query string.
pub(crate) fn query_text(next: &Value) -> String {
    next.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((name, value.as_str()?)))
        .map(|(name, value)| {
            format!(
                "{name}={}",
                percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl HitsQuery {
    /// Validates the query parameters of `request`; `now` is Unix seconds.
    pub(crate) fn parse(
        (search, page): &(SearchParams, PageParams),
        now: i64,
    ) -> Result<Self, Failure> {
        Self::parse_paged(
            search,
            page.limit.as_deref(),
            page.cursor.as_deref(),
            now,
            100,
        )
    }

    /// Like [`HitsQuery::parse`], with `page` records a page unless `limit` says otherwise.
    pub(crate) fn parse_paged(
        search: &SearchParams,
        limit: Option<&str>,
        cursor: Option<&str>,
        now: i64,
        page: u32,
    ) -> Result<Self, Failure> {
        let address =
            |name: &str, given: &Option<String>| -> Result<Option<AddressMatch>, Failure> {
                given
                    .as_deref()
                    .map(|text| AddressMatch::parse(text).map_err(|e| field_error(name, e)))
                    .transpose()
            };
        let id = |name: &str, given: &Option<String>, what: &str| {
            search_id(name, given.as_deref(), what)
        };
        let port = search
            .port
            .as_deref()
            .map(|text| {
                text.trim().parse::<u16>().map_err(|_| {
                    field_error("port", format!("{} is not a port (0-65535)", shown(text)))
                })
            })
            .transpose()?;
        let protocol = search
            .protocol
            .as_deref()
            .map(|text| {
                crate::core::flowlog::protocol::requested(text).ok_or_else(|| {
                    field_error(
                        "protocol",
                        format!(
                            "{} is not tcp, udp, icmp, icmpv6 or a protocol number (0-255)",
                            shown(text)
                        ),
                    )
                })
            })
            .transpose()?;
        let fl_action = fl_action(search.fl_action.as_deref())?;
        let types = match search.r#type.as_deref() {
            Some(text) => text
                .split(',')
                .map(|t| {
                    HIT_TYPES
                        .iter()
                        .copied()
                        .find(|known| *known == t.trim())
                        .ok_or_else(|| {
                            field_error(
                                "type",
                                format!("{t:?} is not one of {}", HIT_TYPES.join(", ")),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => vec!["block_hit", "observe_hit"],
        };
        let (since, until) = window(search.since.as_deref(), search.until.as_deref(), now)?;
        let limit = match limit {
            Some(text) => text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=1000).contains(l))
                .ok_or_else(|| field_error("limit", format!("{} is not 1-1000", shown(text))))?,
            None => page,
        };
        let cursor =
            match cursor {
                Some(text)
                    if text.len() <= 2048
                        && text
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b)) =>
                {
                    Some(HitsCursor::parse(text).ok_or_else(|| {
                        field_error("cursor", "is not a cursor returned by /v1/hits")
                    })?)
                }
                Some(_) => {
                    return Err(field_error(
                        "cursor",
                        "is not a cursor returned by /v1/hits",
                    ))
                }
                None => None,
            };
        let query = Self {
            filter: HitFilter {
                types,
                src: address("src", &search.src)?,
                dst: address("dst", &search.dst)?,
                either: address("ip", &search.ip)?,
                port,
                protocol,
                rule: id("rule", &search.rule, "a rule uuid")?,
                vpc: id("vpc", &search.vpc, "a VPC id")?,
                subnet: id("subnet", &search.subnet, "a subnet id")?,
                fl_action,
                since,
                until,
            },
            limit,
            cursor,
        };
        if let Some(cursor) = &query.cursor {
            // A cursor continues one search: a relative window recomputed on this request
            // would shift (and a position means something only in its own search), so the
            // first page's window must be given.
            if search.since.is_none() || search.until.is_none() {
                return Err(field_error(
                    "cursor",
                    "continues the search it came from: pass that answer's `next` parameters (they include since and until)",
                ));
            }
            if cursor.binding != query.binding() {
                return Err(field_error(
                    "cursor",
                    "belongs to a different search: pass that answer's `next` parameters unchanged",
                ));
            }
            if now - cursor.issued > CURSOR_LIFETIME_SECONDS {
                return Err(fail(
                    410,
                    "cursor_expired",
                    "the cursor is over an hour old: search again from the first page",
                ));
            }
        }
        Ok(query)
    }

    /// A digest of everything but the cursor: a cursor only continues the search it came from.
    pub(crate) fn binding(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(
            format!(
                "{}|{}|{}|{}",
                hits_query(&self.filter),
                self.filter.since,
                self.filter.until,
                self.limit
            )
            .as_bytes(),
        );
        hex::encode(&digest[..4])
    }

    /// The query parameters of the next page: every parameter of this search made explicit
    /// (the window as absolute times), and the cursor.
    pub(crate) fn next_page(&self, cursor: &str) -> Value {
        let filter = &self.filter;
        let mut next = json!({
            "type": filter.types.join(","),
            "since": filter.since.to_string(),
            "until": filter.until.to_string(),
            "limit": self.limit.to_string(),
            "cursor": cursor,
        });
        let mut set = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                next[name] = json!(value);
            }
        };
        set("src", filter.src.map(|a| a.to_string()));
        set("dst", filter.dst.map(|a| a.to_string()));
        set("ip", filter.either.map(|a| a.to_string()));
        set("port", filter.port.map(|p| p.to_string()));
        set("protocol", filter.protocol.map(|p| p.to_string()));
        set("rule", filter.rule.clone());
        set("vpc", filter.vpc.clone());
        set("subnet", filter.subnet.clone());
        set("fl_action", filter.fl_action.map(str::to_string));
        next
    }
}

/// The search parameters `/v1/hits` and `/v1/hits/export` share.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The source address: an IP address or a CIDR network (10.0.1.0/24); IPv6 one address at
    /// a time.
    pub(crate) src: Option<String>,
    /// The destination address: an IP address or a CIDR network.
    pub(crate) dst: Option<String>,
    /// Either address (source or destination): an IP address or a CIDR network.
    pub(crate) ip: Option<String>,
    /// The destination (service) port.
    #[param(value_type = Option<u16>)]
    pub(crate) port: Option<String>,
    /// tcp, udp, icmp, icmpv6 or an IANA protocol number.
    pub(crate) protocol: Option<String>,
    /// The rule uuid the record names (`rule_uuid`).
    pub(crate) rule: Option<String>,
    /// A VPC id, as the source's or the destination's VPC.
    pub(crate) vpc: Option<String>,
    /// A subnet id, as the source's or the destination's subnet.
    pub(crate) subnet: Option<String>,
    /// The flow log's verdict: ACCEPT or REJECT.
    pub(crate) fl_action: Option<String>,
    /// Comma list of block_hit, observe_hit, unattributed_block, snapshot_drift (default
    /// block_hit,observe_hit).
    pub(crate) r#type: Option<String>,
    /// From: Unix seconds or RFC 3339 (default: an hour before until); at most 30 days before
    /// until.
    pub(crate) since: Option<String>,
    /// To: Unix seconds or RFC 3339 (default: now).
    pub(crate) until: Option<String>,
}

/// The paging parameters of `/v1/hits`.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1-1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<String>,
    /// A cursor from a previous answer; pass that answer's `next` parameters unchanged (a
    /// cursor continues only the search it came from).
    pub(crate) cursor: Option<String>,
}

/// The parameters `/v1/hits/export` adds to the search.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `csv` (RFC 4180, a header row of the columns; text a spreadsheet would run as a formula,
    /// at a cell's start or after a separator in it, gets a ' before it) or `jsonl` (one record
    /// per line, as written; the default).
    pub(crate) format: Option<String>,
    /// Continues an export: pass the previous answer's X-Esgflow-Next query unchanged.
    pub(crate) cursor: Option<String>,
}

/// The query parameters of `/v1/hits/{record_id}`.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HitParams {
    /// From (Unix seconds or RFC 3339); default: 30 days before `until`.
    pub(crate) since: Option<String>,
    /// To; default: now. At most 30 days after `since`.
    pub(crate) until: Option<String>,
}

super::request::query_params!(SearchParams, PageParams, ExportParams, HitParams);

/// `GET /v1/hits`: one page of hit records, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct HitsPage {
    /// The records, as written.
    #[schema(value_type = Vec<Object>)]
    pub hits: Vec<Value>,
    /// Records on this page.
    pub count: usize,
    /// The cursor of the next page (null on the last page); it continues only this search, for
    /// an hour from the first page.
    pub cursor: Option<String>,
    /// The query parameters of the next page: every parameter of this search made explicit
    /// (since and until as Unix seconds) and the cursor; null on the last page.
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub next: Option<Value>,
    /// Whether this is the last page.
    pub complete: bool,
    /// The CLS query (CQL) of this search, to paste into the CLS console.
    pub query: String,
    /// From, Unix seconds.
    pub since: i64,
    /// To, Unix seconds.
    pub until: i64,
    /// On an empty first page: the time of the newest record the same search finds at any time
    /// (null: none, or the look failed).
    pub newest_elsewhere: Option<i64>,
}

/// The longest an empty first page looks for the search's records outside its window.
const ELSEWHERE_LOOK: std::time::Duration = std::time::Duration::from_secs(3);

/// `GET /v1/hits/{record_id}`: one hit record, explained.
#[derive(Debug, Serialize, ToSchema)]
pub struct HitAnswer<'a> {
    /// The record, as written.
    #[schema(value_type = Object)]
    pub record: Value,
    /// The snapshot version that judged it.
    pub judged_with: String,
    /// The snapshot version the explanation uses.
    pub explained_with: &'a str,
    /// The record's flow explained (null when the record names no flow).
    pub explanation: Option<ExplainView<'a>>,
    /// Why the explanation uses another version.
    pub note: Option<String>,
}
