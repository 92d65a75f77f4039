//! The lookup function's HTTP API for the three jobs: search the ESG flow log, explain a flow
//! or a record, read traffic views, rules and VPCs, and switch a VPC's monitoring.
//!
//! [`Lookup`] holds what the answers are made from (the snapshot cache, the records store, the
//! settings) and makes them; [`router`] is the axum application that routes requests to it,
//! with authentication, the body cap, JSON errors and the security headers as tower layers;
//! [`scf`] turns an API Gateway / Function URL event into an `http::Request` for that router and
//! its answer back into an integration response. The same router serves SCF, `esgflow serve`
//! (through the runtime emulator) and the tests (`tower::ServiceExt::oneshot`).
//!
//! Errors are JSON `{"error": {"code", "message", "request_id"}}` with 400 (naming the bad
//! field), 401, 403, 404, 405, 410, 413, 502, 503 (no snapshot) or 500 (request id only, no
//! internals).

pub mod api;
pub mod router;
pub mod scf;
pub mod wire;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

use axum::http::header;
use axum::response::Response;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::adapters::tencent::cls_query::{hits_query, traffic_search};
use crate::app::records_store::{RecordsStore, StoreFailure};
use crate::app::snapshot_cache::SnapshotCache;
use crate::app::views::{ExplainView, RuleView};
use crate::core::classify::Monitored;
use crate::core::engine::{Detail, Engine, FlowKey, Scope};
use crate::core::records::Peer;
use crate::core::search::{
    is_search_id, series_step, AddressMatch, HitFilter, TrafficFilter, HIT_TYPES,
    MAX_SERIES_POINTS, MAX_TALKERS,
};
pub use router::{router, Invocation, Params};
pub use scf::App;
use strum::VariantArray;
use wire::{
    Coverage, ExplainAnswer, ExplainBody, FlowQuery, HitAnswer, HitCounts, HitsPage, ResolvedSet,
    RowHygiene, RuleAnswer, RuleHits, RuleHygiene, RuleRow, RulesPage, SnapshotStatus, SubnetName,
    SwitchAnswer, SwitchRequest, TopRule, TopRules, TrafficAnswer, VpcState, VpcsAnswer,
};

/// Most flows in one batch explain.
pub(crate) const MAX_BATCH: usize = 1000;

/// How requests are authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`, compared in constant time.
    Bearer(String),
    /// The deployment declared API Gateway authentication in front of the function.
    ApiGateway,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::ApiGateway => f.write_str("ApiGateway"),
        }
    }
}

/// The lookup function's state across a warm instance. Cloning shares it: the router holds
/// one clone per request.
#[derive(Clone)]
pub struct Lookup(Arc<Shared>);

/// What a [`Lookup`] and its clones share.
pub struct Shared {
    auth: Auth,
    max_body_bytes: usize,
    snapshots: Mutex<SnapshotCache>,
    store: Option<RecordsStore>,
    export_budget: usize,
    export_page: u32,
    monitored: Monitored,
    admin_token: Option<String>,
    snapshot_ttl: std::time::Duration,
}

impl std::ops::Deref for Lookup {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// An error answer: rendered as the JSON error body by the router's error layer.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    status: u16,
    code: &'static str,
    message: String,
}

fn fail(status: u16, code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        status,
        code,
        message: message.into(),
    }
}

impl Lookup {
    /// A lookup over the snapshot cache, with the given authentication and body cap.
    pub fn new(auth: Auth, max_body_bytes: usize, snapshots: SnapshotCache) -> Self {
        Self(Arc::new(Shared {
            auth,
            max_body_bytes,
            snapshots: Mutex::new(snapshots),
            store: None,
            export_budget: MAX_ANSWER_BYTES,
            export_page: EXPORT_PAGE,
            monitored: Monitored::All,
            admin_token: None,
            snapshot_ttl: std::time::Duration::from_secs(300),
        }))
    }

    /// The settings, while no router holds this lookup yet (the builders run before serving).
    fn configure(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.0).expect("a lookup is configured before it serves")
    }

    /// The axum application over this lookup, ready for SCF events ([`App::handle`]). Build it
    /// once per instance: it shares this lookup, which can no longer be configured.
    pub fn app(&self) -> App {
        App::new(self.clone())
    }

    /// The monitored VPC list (`ESGFLOW_MONITORED_VPCS`), the admin token that may change the
    /// monitoring switches (none: they cannot be changed here), and the snapshot TTL the audit
    /// function re-reads them after.
    pub fn with_monitoring(
        mut self,
        monitored: Monitored,
        admin_token: Option<String>,
        snapshot_ttl: std::time::Duration,
    ) -> Self {
        let shared = self.configure();
        shared.monitored = monitored;
        shared.admin_token = admin_token;
        shared.snapshot_ttl = snapshot_ttl;
        self
    }

    /// Loads the snapshot ahead of the first request (cold start), so that the first request
    /// is as fast as the rest. A failure is logged; requests try again and answer 503 until it
    /// loads.
    pub async fn warm_up(&self) {
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        if let Err(failure) = self.engine(deadline).await {
            tracing::error!(error = %failure.message, "rule snapshot not loaded at start-up");
        }
    }

    /// Searches records (`/v1/hits`, hit counts, top rules) in `store`.
    pub fn with_store(mut self, store: RecordsStore) -> Self {
        self.configure().store = Some(store);
        self
    }

    pub(crate) async fn hits(
        &self,
        params: &Params,
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
                    "the records store no longer keeps this search (CLS keeps it one hour): search again from the first page",
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
        let next = cursor.as_ref().map(|cursor| query.next_page(cursor));
        Ok(HitsPage {
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

    /// `GET /v1/traffic?vpc=…`: totals, top talkers, the subnet matrix and a time series of
    /// the traffic records.
    pub(crate) async fn traffic(
        &self,
        params: &Params,
        deadline: Instant,
    ) -> Result<TrafficAnswer, Failure> {
        let filter = traffic_filter(params, chrono::Utc::now().timestamp())?;
        let store = self.store()?;
        let view = store
            .traffic(&filter, deadline)
            .await
            .map_err(|failure| search_failed(failure, "the records search expired: ask again"))?;
        Ok(TrafficAnswer {
            since: filter.since,
            until: filter.until,
            step: filter.bucket,
            scope: filter.scope.map(|s| s.as_str()),
            peer: filter.peer.map(|p| p.as_str()),
            fl_action: filter.fl_action,
            query: traffic_search(&filter),
            vpc: filter.vpc,
            subnet: filter.subnet,
            view,
        })
    }

    /// `GET /v1/hits/{record_id}`: one hit record, explained against the snapshot it was judged
    /// with while the snapshot store keeps that version (else against the current one, saying
    /// so).
    pub(crate) async fn hit(
        &self,
        params: &Params,
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
        let given = |name: &str| params.query(name).filter(|t| !t.trim().is_empty());
        let now = chrono::Utc::now().timestamp();
        let until = given("until")
            .map(|t| parse_time("until", t))
            .transpose()?
            .unwrap_or(now);
        let since = match given("since") {
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

    /// `GET /v1/rules?days=&offset=&limit=`: the rules in evaluation order with their hit
    /// counters, unused flag and hygiene finding, and the recent rule changes.
    pub(crate) async fn rules(
        &self,
        params: &Params,
        deadline: Instant,
    ) -> Result<RulesPage, Failure> {
        let bounded =
            |name: &'static str, default: i64, min: i64, max: i64| -> Result<i64, Failure> {
                match params.query(name).map(str::trim).filter(|t| !t.is_empty()) {
                    None => Ok(default),
                    Some(text) => text
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (min..=max).contains(n))
                        .ok_or_else(|| {
                            field_error(
                                name,
                                format!("{text:?} is not a whole number from {min} to {max}"),
                            )
                        }),
                }
            };
        let days = bounded("days", HIT_WINDOW_DAYS, 1, HIT_WINDOW_DAYS)?;
        let offset = bounded("offset", 0, 0, i64::from(u32::MAX))? as usize;
        let limit = bounded("limit", 500, 1, MAX_RULES_PAGE as i64)? as usize;
        let engine = self.engine(deadline).await?;
        let until = chrono::Utc::now().timestamp();
        let since = until - days * 86_400;
        // Hit counters and recent changes from the records store, when there is one.
        let (totals, changes) = match &self.store {
            None => (Err(NO_STORE.to_string()), Err(NO_STORE.to_string())),
            Some(store) => {
                let reason = |failure: StoreFailure| match failure {
                    StoreFailure::Failed { message, .. } => message,
                    StoreFailure::CursorExpired => "the records search expired".to_string(),
                };
                let changes = HitFilter {
                    types: vec!["rule_change"],
                    ..HitFilter::new(since, until)
                };
                let (totals, changes) = tokio::join!(
                    store.rule_totals(since, until, deadline),
                    store.search_hits(&changes, MAX_RULE_CHANGES, None, deadline)
                );
                (
                    totals.map_err(reason),
                    changes.map(|page| page.hits).map_err(reason),
                )
            }
        };
        // Hygiene as far as a short budget reaches (every rule of a small set; the sync function
        // reports all of a large one as rule_hygiene records).
        let analysis = crate::core::engine::hygiene::analyze_until(
            &engine,
            Some(
                Instant::now()
                    + RULES_HYGIENE_BUDGET
                        .min(deadline.saturating_duration_since(Instant::now()) / 2),
            ),
        );
        let findings: std::collections::HashMap<usize, &crate::core::engine::hygiene::RuleFinding> =
            analysis
                .findings
                .iter()
                .map(|f| (f.rule as usize, f))
                .collect();
        let rules: Vec<RuleRow> = engine
            .rules()
            .iter()
            .enumerate()
            .skip(offset)
            .take(limit)
            .map(|(i, compiled)| {
                let rule = &compiled.rule;
                let hits = totals
                    .as_ref()
                    .ok()
                    .map(|t| t.get(&rule.uuid).cloned().unwrap_or_default());
                RuleRow {
                    position: i,
                    uuid: rule.uuid.clone(),
                    order: rule.order,
                    action: rule.action,
                    enabled: rule.enabled,
                    generation: rule.generation,
                    description: rule.description.clone(),
                    unused: hits.as_ref().map(|h| rule.enabled && h.hits == 0),
                    hits: hits.map(|h| HitCounts {
                        hits: h.hits,
                        block_hits: h.block_hits,
                        observe_hits: h.observe_hits,
                        first_hit: h.first_hit,
                        last_hit: h.last_hit,
                    }),
                    hygiene: findings.get(&i).map(|f| RowHygiene {
                        finding: f.finding.clone(),
                        covering: f.covering.clone(),
                        detail: f.detail.clone(),
                    }),
                    hygiene_analysed: i < analysis.analysed,
                }
            })
            .collect();
        let total = engine.rules().len();
        let next_offset = (offset + rules.len() < total).then_some(offset + rules.len());
        let size: usize = rules
            .iter()
            .map(|r| serde_json::to_string(r).map_or(0, |t| t.len()))
            .sum();
        if size > MAX_ANSWER_BYTES / 2 {
            return Err(fail(
                413,
                "answer_too_large",
                format!("{limit} rules do not fit one answer: ask with a smaller limit"),
            ));
        }
        let (changes, changes_error) = match changes {
            Ok(changes) => (Some(changes), None),
            Err(reason) => (None, Some(reason)),
        };
        Ok(RulesPage {
            rules,
            total,
            offset,
            next_offset,
            days,
            hits_error: totals.err(),
            hygiene_analysed: analysis.analysed,
            changes,
            changes_error,
            snapshot_version: engine.version().to_string(),
        })
    }

    /// Every VPC of the snapshot with its monitoring state, and the ids the list or the
    /// switches name that the snapshot does not have.
    pub(crate) async fn vpc_states(&self, deadline: Instant) -> Result<VpcsAnswer, Failure> {
        let engine = self.engine(deadline).await?;
        let (switches, problem) = self
            .snapshots
            .lock()
            .await
            .switches_by(
                Instant::now(),
                crate::app::snapshot_cache::load_by(deadline),
            )
            .await;
        let monitored = self.monitored.with_switches(&switches);
        let listed = |id: &str| match &self.monitored {
            Monitored::All => true,
            Monitored::Only(vpcs) => vpcs.contains(id),
            Monitored::Switched { listed, .. } => listed.as_ref().is_none_or(|l| l.contains(id)),
        };
        // Flow-log coverage: the snapshot's ENIs that recorded traffic in the last hour.
        let now = chrono::Utc::now().timestamp();
        let recording = match &self.store {
            None => Err(NO_STORE.to_string()),
            Some(store) => store
                .recording_enis(now - COVERAGE_SECONDS, now, deadline)
                .await
                .map_err(|failure| match failure {
                    StoreFailure::Failed { message, .. } => message,
                    StoreFailure::CursorExpired => "the records search expired".to_string(),
                }),
        };
        let vpcs: Vec<VpcState> = engine
            .topology()
            .vpc_list()
            .into_iter()
            .map(|vpc| {
                let coverage = match &recording {
                    Ok(seen) => Coverage {
                        available: true,
                        enis_recording: Some(vpc.enis.iter().filter(|e| seen.contains(*e)).count()),
                        enis: Some(vpc.enis.len()),
                        window_seconds: Some(COVERAGE_SECONDS),
                        reason: None,
                    },
                    Err(reason) => Coverage {
                        available: false,
                        enis_recording: None,
                        enis: None,
                        window_seconds: None,
                        reason: Some(reason.clone()),
                    },
                };
                VpcState {
                    monitored: monitored.is_on(&vpc.id),
                    switch: switches.vpcs.get(&vpc.id).copied(),
                    listed: listed(&vpc.id),
                    id: vpc.id,
                    name: vpc.name,
                    subnets: vpc.subnets,
                    subnet_names: vpc
                        .subnet_names
                        .into_iter()
                        .map(|(id, name)| SubnetName { id, name })
                        .collect(),
                    enis: vpc.enis.len(),
                    coverage,
                }
            })
            .collect();
        Ok(VpcsAnswer {
            vpcs,
            unknown: monitored.unknown(engine.topology()),
            every_vpc_listed: matches!(self.monitored, Monitored::All),
            switches_updated_at: switches.updated_at,
            switches_error: problem,
            switches_writable: self.admin_token.is_some(),
            takes_effect_within_seconds: self.snapshot_ttl.as_secs(),
            snapshot_version: engine.version().to_string(),
        })
    }

    /// `PUT /v1/vpcs/{id}/monitoring` with `{"monitored": true|false|null}` and the admin token:
    /// switches the VPC's monitoring on or off (null: back to the list), in the snapshot store.
    pub(crate) async fn switch(
        &self,
        vpc: &str,
        body: &[u8],
        deadline: Instant,
    ) -> Result<SwitchAnswer, Failure> {
        if body.len() > 1024 {
            return Err(fail(
                413,
                "payload_too_large",
                "the body is over 1024 bytes: send {\"monitored\": true|false|null}",
            ));
        }
        let change: SwitchRequest = serde_json::from_slice(body).map_err(|e| {
            fail(
                400,
                "invalid_body",
                format!("{e}: send {{\"monitored\": true|false|null}}"),
            )
        })?;
        let engine = self.engine(deadline).await?;
        if !is_search_id(vpc) || !engine.topology().has_vpc(vpc) {
            return Err(fail(
                404,
                "unknown_vpc",
                format!("the snapshot has no VPC {vpc:?}"),
            ));
        }
        let mut cache = self.snapshots.lock().await;
        // Start from what the store holds now, not from a copy up to a TTL old.
        let mut switches = cache
            .switches_now(deadline)
            .await
            .map_err(|e| fail(502, "switches_unavailable", e.to_string()))?;
        match change.monitored {
            Some(on) => switches.vpcs.insert(vpc.to_string(), on),
            None => switches.vpcs.remove(vpc),
        };
        switches.updated_at = Some(chrono::Utc::now().timestamp());
        if switches.to_json().len() > crate::core::monitoring::MAX_SWITCHES_BYTES {
            return Err(fail(
                413,
                "too_many_switches",
                "the switches document would exceed its size cap: clear switches first",
            ));
        }
        cache
            .save_switches(&switches, deadline)
            .await
            .map_err(|e| fail(502, "switches_unavailable", e.to_string()))?;
        drop(cache);
        tracing::info!(vpc, monitored = ?change.monitored, "monitoring switch changed");
        let states = self.vpc_states(deadline).await?;
        let state = states
            .vpcs
            .into_iter()
            .find(|v| v.id == vpc)
            .ok_or_else(|| {
                fail(
                    404,
                    "unknown_vpc",
                    format!("the snapshot has no VPC {vpc:?}"),
                )
            })?;
        Ok(SwitchAnswer {
            vpc: state,
            takes_effect_within_seconds: self.snapshot_ttl.as_secs(),
        })
    }

    /// `GET /v1/hits/export?format=csv|jsonl&…`: the search's records as CSV or JSON lines, as
    /// many pages as fit [`MAX_EXPORT_RECORDS`], the answer budget and the deadline; the rest is
    /// one request away (`X-Esgflow-Next`).
    pub(crate) async fn export(
        &self,
        params: &Params,
        deadline: Instant,
    ) -> Result<Response, Failure> {
        let csv = match params.query("format").map(str::trim) {
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
        let query = HitsQuery::parse_paged(params, now, self.export_page)?;
        let store = self.store()?;
        let mut body = String::new();
        if csv {
            body.push_str(&EXPORT_COLUMNS.join(","));
            body.push_str("\r\n");
        }
        let mut context = query.cursor.as_ref().map(|c| c.context.clone());
        // Sizes as the answer's JSON will carry the body: escaped.
        let (mut count, mut size, mut largest_page) = (0usize, escaped_len(&body), 0usize);
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
                .search_hits(&query.filter, query.limit, context.as_deref(), deadline)
                .await
                .map_err(|failure| {
                    search_failed(
                        failure,
                        "the records store no longer keeps this export (CLS keeps it one hour): export again from the start",
                    )
                })?;
            let before = body.len();
            for hit in &page.hits {
                if csv {
                    csv_row(&mut body, hit);
                } else {
                    body.push_str(&hit.to_string());
                    body.push('\n');
                }
            }
            let added = escaped_len(&body[before..]);
            size += added;
            largest_page = largest_page.max(added);
            count += page.hits.len();
            context = page.context;
            if context.is_none() {
                break true;
            }
        };
        if size > MAX_ANSWER_BYTES {
            return Err(fail(
                413,
                "answer_too_large",
                "one page of this export does not fit an answer: narrow the search",
            ));
        }
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

    /// `rule_hits` records. Never fails the request: an unavailable count says why.
    pub(crate) async fn rule_hits(&self, uuid: &str, deadline: Instant) -> RuleHits {
        let unavailable = |reason: String| RuleHits {
            reason: Some(reason),
            ..RuleHits::default()
        };
        let Some(store) = &self.store else {
            return unavailable(NO_STORE.to_string());
        };
        if !is_search_id(uuid) {
            return unavailable("this rule id cannot be searched".to_string());
        }
        let until = chrono::Utc::now().timestamp();
        let since = until - HIT_WINDOW_DAYS * 86_400;
        match store.rule_counters(uuid, since, until, deadline).await {
            Ok(counters) => RuleHits {
                available: true,
                reason: None,
                window_days: Some(HIT_WINDOW_DAYS),
                hits: Some(counters.hits),
                block_hits: Some(counters.block_hits),
                observe_hits: Some(counters.observe_hits),
                first_hit: counters.first_hit,
                last_hit: counters.last_hit,
            },
            Err(failure) => {
                tracing::warn!(error = ?failure, "rule hit counters unavailable");
                unavailable(match failure {
                    StoreFailure::Failed { code, .. } => {
                        format!("the records search failed: {code}")
                    }
                    StoreFailure::CursorExpired => "the records search failed".to_string(),
                })
            }
        }
    }

    /// `GET /v1/stats/top-rules?hours=&limit=`: the rules with the most block hits.
    pub(crate) async fn top_rules(
        &self,
        engine: &Engine,
        params: &Params,
        deadline: Instant,
    ) -> Result<TopRules, Failure> {
        let bounded = |name: &'static str, default: i64, max: i64| -> Result<i64, Failure> {
            match params.query(name) {
                None | Some("") => Ok(default),
                Some(text) => text
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        field_error(
                            name,
                            format!("{text:?} is not a whole number from 1 to {max}"),
                        )
                    }),
            }
        };
        let hours = bounded("hours", 24, 720)?;
        let limit = bounded("limit", 10, 50)?;
        let store = self.store()?;
        let until = chrono::Utc::now().timestamp();
        let since = until - hours * 3600;
        let rows = store
            .top_block_rules(since, until, limit as u32, deadline)
            .await
            // No cursor is passed here, so the store has no search to forget.
            .map_err(|failure| search_failed(failure, "the records search expired: ask again"))?;
        let rules = rows
            .into_iter()
            .map(|(uuid, hits)| {
                let known = engine.rules().iter().find(|r| r.rule.uuid == uuid);
                TopRule {
                    description: known.map(|r| r.rule.description.clone()),
                    order: known.map(|r| r.rule.order),
                    rule_uuid: uuid,
                    hits,
                }
            })
            .collect();
        Ok(TopRules {
            since,
            until,
            hours,
            rules,
            snapshot_version: engine.version().to_string(),
        })
    }

    /// Where records are searched, or 503 when no store is configured.
    fn store(&self) -> Result<&RecordsStore, Failure> {
        self.store
            .as_ref()
            .ok_or_else(|| fail(503, "hits_unavailable", NO_STORE))
    }

    /// Whether `authorization` (the header's value) carries the lookup token; always when API
    /// Gateway authenticates in front of the function.
    pub(crate) fn admits(&self, authorization: Option<&str>) -> bool {
        let Auth::Bearer(token) = &self.auth else {
            return true;
        };
        let presented = authorization.and_then(bearer_token).unwrap_or("");
        !token.is_empty() && bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
    }

    /// Whether `authorization` may change a monitoring switch: `Err` says why not (403: no
    /// admin token here, 401: not the admin token).
    pub(crate) fn admits_admin(&self, authorization: Option<&str>) -> Result<(), Failure> {
        let Some(admin) = &self.admin_token else {
            return Err(fail(
                403,
                "switches_read_only",
                "monitoring switches cannot be changed here: this lookup has no admin token",
            ));
        };
        let presented = authorization.and_then(bearer_token).unwrap_or("");
        if bool::from(presented.as_bytes().ct_eq(admin.as_bytes())) {
            Ok(())
        } else {
            Err(fail(
                401,
                "unauthorized",
                "changing a monitoring switch needs the admin bearer token",
            ))
        }
    }

    pub(crate) async fn engine(
        &self,
        deadline: Instant,
    ) -> Result<std::sync::Arc<Engine>, Failure> {
        let load_by = crate::app::snapshot_cache::load_by(deadline);
        self.snapshots
            .lock()
            .await
            .engine_by(Instant::now(), load_by)
            .await
            .map_err(|err| fail(503, "snapshot_unavailable", err.to_string()))
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

/// A `/v1/hits` cursor: when its first page was asked (CLS keeps a search context for an hour),
/// a digest of the search it belongs to (CLS needs every other parameter unchanged), and CLS's
/// `Context`. Written `<issued>_<binding>_<context>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HitsCursor {
    issued: i64,
    binding: String,
    context: String,
}

/// How long CLS keeps a search context (tccli `cls/v20201016/api.json`,
/// `SearchLogRequest.Context`).
pub(crate) const CURSOR_LIFETIME_SECONDS: i64 = 3600;

impl std::fmt::Display for HitsCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}_{}", self.issued, self.binding, self.context)
    }
}

impl HitsCursor {
    fn parse(text: &str) -> Option<Self> {
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

/// The parameters `/v1/stats/top-rules` reads.
pub const TOP_RULES_PARAMETERS: [&str; 2] = ["hours", "limit"];

/// The parameters `/v1/hits` reads, in the order `openapi.json` documents them.
pub const HITS_PARAMETERS: [&str; 14] = [
    "src",
    "dst",
    "ip",
    "port",
    "protocol",
    "rule",
    "vpc",
    "subnet",
    "fl_action",
    "type",
    "since",
    "until",
    "limit",
    "cursor",
];

/// Refuses a request whose query names a parameter the route does not read, or names one
/// twice: a filter the route would ignore must not silently widen an auditor's search.
fn only_parameters(params: &Params, path: &str, accepted: &[&str]) -> Result<(), Failure> {
    let unknown: Vec<&str> = params
        .query_string
        .keys()
        .map(String::as_str)
        .filter(|name| !accepted.contains(name))
        .collect();
    if !unknown.is_empty() {
        let reads = if accepted.is_empty() {
            "no query parameters".to_string()
        } else {
            accepted.join(", ")
        };
        return Err(fail(
            400,
            "unknown_parameter",
            format!(
                "{path} does not read {}; it reads {reads}",
                unknown.join(", ")
            ),
        ));
    }
    let repeated: Vec<&str> = params
        .query_string
        .iter()
        .filter(
            |(_, value)| matches!(value, crate::events::apigw::QueryValue::Many(v) if v.len() > 1),
        )
        .map(|(name, _)| name.as_str())
        .collect();
    if repeated.is_empty() {
        Ok(())
    } else {
        Err(fail(
            400,
            "repeated_parameter",
            format!("{} given more than once", repeated.join(", ")),
        ))
    }
}

/// The parameters `/v1/hits/export` reads: the search's, but the page size, and the format.
pub const EXPORT_PARAMETERS: [&str; 14] = [
    "src",
    "dst",
    "ip",
    "port",
    "protocol",
    "rule",
    "vpc",
    "subnet",
    "fl_action",
    "type",
    "since",
    "until",
    "format",
    "cursor",
];

/// Records an export asks the store for at a time.
const EXPORT_PAGE: u32 = 1000;

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

/// One CSV row (RFC 4180) of `record`. A cell that a spreadsheet would run as a formula (it
/// starts with `=`, `+`, `-`, `@`, tab or carriage return — a rule description can) is
/// prefixed with `'`.
fn csv_row(out: &mut String, record: &Value) {
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
        let cell = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{cell}")
        } else {
            cell
        };
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

/// `next` (name → text) as a URL query string.
fn query_text(next: &Value) -> String {
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

/// The latest time a search may name, Unix seconds: 9999-12-31T23:59:59Z (times from 1970 to
/// then are accepted, so no arithmetic on them can overflow).
pub(crate) const MAX_TIME_SECONDS: i64 = 253_402_300_799;

/// An id parameter (`name`, as given), checked with [`is_search_id`]; `what` names the kind.
fn search_id(name: &str, given: Option<&str>, what: &str) -> Result<Option<String>, Failure> {
    match given.map(str::trim) {
        Some(text) if is_search_id(text) => Ok(Some(text.to_string())),
        Some(text) => Err(field_error(
            name,
            format!("{text:?} is not {what} (letters, digits, - and _)"),
        )),
        None => Ok(None),
    }
}

/// The parameters `/v1/rules` reads.
pub const RULES_PARAMETERS: [&str; 3] = ["days", "offset", "limit"];

/// Most rules in one `/v1/rules` page.
const MAX_RULES_PAGE: u32 = 2000;

/// Most recent rule changes `/v1/rules` lists.
const MAX_RULE_CHANGES: u32 = 100;

/// The time `/v1/rules` gives the hygiene analysis.
const RULES_HYGIENE_BUDGET: std::time::Duration = std::time::Duration::from_millis(1500);

/// The parameters `/v1/hits/{record_id}` reads.
pub const HIT_PARAMETERS: [&str; 2] = ["since", "until"];

/// The parameters `/v1/traffic` reads, in the order `openapi.json` documents them.
pub const TRAFFIC_PARAMETERS: [&str; 9] = [
    "vpc",
    "subnet",
    "scope",
    "peer",
    "fl_action",
    "since",
    "until",
    "talkers",
    "step",
];

/// The traffic views a `/v1/traffic` request asks for.
fn traffic_filter(params: &Params, now: i64) -> Result<TrafficFilter, Failure> {
    let given = |name: &str| params.query(name).filter(|t| !t.trim().is_empty());
    let named = |name: &str, names: &[&'static str]| -> Result<Option<usize>, Failure> {
        given(name)
            .map(|text| {
                names.iter().position(|n| *n == text.trim()).ok_or_else(|| {
                    field_error(name, format!("{text:?} is not one of {}", names.join(", ")))
                })
            })
            .transpose()
    };
    let scopes: Vec<&'static str> = Scope::VARIANTS.iter().map(|s| s.as_str()).collect();
    let peers: Vec<&'static str> = Peer::VARIANTS.iter().map(|p| p.as_str()).collect();
    let (since, until) = window(given("since"), given("until"), now)?;
    let mut filter = TrafficFilter::new(since, until);
    filter.vpc = search_id("vpc", given("vpc"), "a VPC id")?;
    filter.subnet = search_id("subnet", given("subnet"), "a subnet id")?;
    filter.scope = named("scope", &scopes)?.map(|i| Scope::VARIANTS[i]);
    filter.peer = named("peer", &peers)?.map(|i| Peer::VARIANTS[i]);
    filter.fl_action = fl_action(given("fl_action"))?;
    if let Some(text) = given("talkers") {
        filter.talkers = text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_TALKERS).contains(n))
            .ok_or_else(|| {
                field_error(
                    "talkers",
                    format!("{text:?} is not a whole number from 1 to {MAX_TALKERS}"),
                )
            })?;
    }
    if let Some(text) = given("step") {
        let smallest = series_step(since, until);
        filter.bucket = text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| n % 60 == 0 && (smallest..=86_400).contains(n))
            .ok_or_else(|| {
                field_error(
                    "step",
                    format!(
                        "{text:?} is not a whole number of minutes, in seconds, from {smallest} (at most {MAX_SERIES_POINTS} points over this window) to 86400"
                    ),
                )
            })?;
    }
    Ok(filter)
}

/// `fl_action` as given (any case), or none.
fn fl_action(given: Option<&str>) -> Result<Option<&'static str>, Failure> {
    match given.map(str::trim) {
        Some(text) if text.eq_ignore_ascii_case("accept") => Ok(Some("ACCEPT")),
        Some(text) if text.eq_ignore_ascii_case("reject") => Ok(Some("REJECT")),
        Some(text) => Err(field_error(
            "fl_action",
            format!("{text:?} is not ACCEPT or REJECT"),
        )),
        None => Ok(None),
    }
}

/// A search window from `since` and `until` as given: until defaults to `now`, since to an hour
/// before until; since must come first, and the span be at most 30 days.
fn window(since: Option<&str>, until: Option<&str>, now: i64) -> Result<(i64, i64), Failure> {
    let until = until
        .map(|t| parse_time("until", t))
        .transpose()?
        .unwrap_or(now);
    let since = since
        .map(|t| parse_time("since", t))
        .transpose()?
        .unwrap_or(until - 3600);
    if since >= until {
        return Err(field_error("since", "must be before until"));
    }
    if until - since > MAX_HITS_SPAN_SECONDS {
        return Err(field_error("since", "the span may be at most 30 days"));
    }
    Ok((since, until))
}

fn parse_time(field: &str, text: &str) -> Result<i64, Failure> {
    let seconds = match text.trim().parse::<i64>() {
        Ok(seconds) => seconds,
        Err(_) => chrono::DateTime::parse_from_rfc3339(text.trim())
            .map(|t| t.timestamp())
            .map_err(|_| {
                field_error(
                    field,
                    format!("{text:?} is neither Unix seconds nor RFC 3339"),
                )
            })?,
    };
    if (0..=MAX_TIME_SECONDS).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(field_error(
            field,
            format!("{text:?} is outside 1970-01-01 to 9999-12-31"),
        ))
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive
/// (RFC 9110 §11.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(char::is_whitespace)?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Headers on every answer: nothing may frame the page or sniff a type, no referrer leaves it,
/// and the page may run only its own script and style (by hash) and talk only to its origin.
fn security_headers(html: bool) -> &'static [(&'static str, String)] {
    static HTML: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    static DATA: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    let common = |policy: String| {
        vec![
            ("Content-Security-Policy", policy),
            ("Referrer-Policy", "no-referrer".to_string()),
            ("X-Content-Type-Options", "nosniff".to_string()),
            ("X-Frame-Options", "DENY".to_string()),
        ]
    };
    if html {
        HTML.get_or_init(|| {
            common(format!(
                "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                inline_hash(PAGE, "script"),
                inline_hash(PAGE, "style")
            ))
        })
    } else {
        DATA.get_or_init(|| common("default-src 'none'; frame-ancestors 'none'".to_string()))
    }
}

/// The CSP source of the page's one inline `<tag>` element: `'sha256-<base64>'` of its text.
fn inline_hash(page: &str, tag: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest;
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = page.find(&open).map(|i| i + open.len()).unwrap_or(0);
    let end = page[start..].find(&close).map_or(start, |i| start + i);
    let digest = sha2::Sha256::digest(&page.as_bytes()[start..end]);
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

impl HitsQuery {
    /// Validates the query parameters of `request`; `now` is Unix seconds.
    fn parse(params: &Params, now: i64) -> Result<Self, Failure> {
        Self::parse_paged(params, now, 100)
    }

    /// Like [`HitsQuery::parse`], with `page` records a page unless `limit` says otherwise.
    fn parse_paged(params: &Params, now: i64, page: u32) -> Result<Self, Failure> {
        let given = |name: &str| params.query(name).filter(|t| !t.trim().is_empty());
        let address = |name: &str| -> Result<Option<AddressMatch>, Failure> {
            given(name)
                .map(|text| AddressMatch::parse(text).map_err(|e| field_error(name, e)))
                .transpose()
        };
        let id = |name: &str, what: &str| search_id(name, given(name), what);
        let port = given("port")
            .map(|text| {
                text.trim()
                    .parse::<u16>()
                    .map_err(|_| field_error("port", format!("{text:?} is not a port (0-65535)")))
            })
            .transpose()?;
        let protocol = given("protocol")
            .map(|text| {
                crate::core::flowlog::protocol::requested(text).ok_or_else(|| {
                    field_error(
                        "protocol",
                        format!(
                            "{text:?} is not tcp, udp, icmp, icmpv6 or a protocol number (0-255)"
                        ),
                    )
                })
            })
            .transpose()?;
        let fl_action = fl_action(given("fl_action"))?;
        let types = match given("type") {
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
        let (since, until) = window(given("since"), given("until"), now)?;
        let limit = match given("limit") {
            Some(text) => text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=1000).contains(l))
                .ok_or_else(|| field_error("limit", format!("{text:?} is not 1-1000")))?,
            None => page,
        };
        let cursor =
            match given("cursor") {
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
                src: address("src")?,
                dst: address("dst")?,
                either: address("ip")?,
                port,
                protocol,
                rule: id("rule", "a rule uuid")?,
                vpc: id("vpc", "a VPC id")?,
                subnet: id("subnet", "a subnet id")?,
                fl_action,
                since,
                until,
            },
            limit,
            cursor,
        };
        if let Some(cursor) = &query.cursor {
            // A cursor continues one search: a relative window recomputed on this request
            // would shift (and CLS refuses a context with any other parameter changed), so the
            // first page's window must be given.
            if given("since").is_none() || given("until").is_none() {
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
                    "the cursor is over an hour old and CLS no longer keeps its search: search again from the first page",
                ));
            }
        }
        Ok(query)
    }

    /// A digest of everything but the cursor: a cursor only continues the search it came from.
    fn binding(&self) -> String {
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
    fn next_page(&self, cursor: &str) -> Value {
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

fn field_error(field: &str, message: impl std::fmt::Display) -> Failure {
    fail(400, "invalid_field", format!("{field}: {message}"))
}

fn parse_flow(value: &Value, prefix: &str) -> Result<(FlowKey, Option<String>, bool), Failure> {
    let query: FlowQuery = serde_json::from_value(value.clone())
        .map_err(|e| fail(400, "invalid_body", format!("{prefix}{e}")))?;
    let address = |name: &str, text: &str| {
        text.trim().parse::<IpAddr>().map_err(|_| {
            field_error(
                &format!("{prefix}{name}"),
                format!("{text:?} is not an IP address"),
            )
        })
    };
    let src = address("src", &query.src)?;
    let dst = address("dst", &query.dst)?;
    let protocol = match &query.protocol {
        Value::String(text) => {
            crate::core::flowlog::protocol::requested(text).ok_or_else(|| {
                field_error(
                    &format!("{prefix}protocol"),
                    format!("{text:?} is not tcp, udp, icmp, icmpv6 or 0-255"),
                )
            })?
        }
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| {
                field_error(&format!("{prefix}protocol"), format!("{n} is not 0-255"))
            })?,
        other => {
            return Err(field_error(
                &format!("{prefix}protocol"),
                format!("{other} is not a protocol"),
            ))
        }
    };
    let port =
        match &query.port {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| {
                        field_error(&format!("{prefix}port"), format!("{n} is not 0-65535"))
                    })?,
            ),
            Some(Value::String(s)) => Some(s.trim().parse::<u16>().map_err(|_| {
                field_error(&format!("{prefix}port"), format!("{s:?} is not 0-65535"))
            })?),
            Some(other) => {
                return Err(field_error(
                    &format!("{prefix}port"),
                    format!("{other} is not a port"),
                ))
            }
        };
    if matches!(protocol, 6 | 17) && port.is_none() {
        return Err(field_error(
            &format!("{prefix}port"),
            "required for TCP and UDP",
        ));
    }
    Ok((
        FlowKey::requested(src, dst, protocol, port),
        query.eni,
        query.verbose,
    ))
}

/// The longest answer body: SCF returns at most 6 MB from a synchronous invocation ("Quota
/// Limits", <https://www.tencentcloud.com/document/product/583/11637>), and the body travels
/// inside the integration response as a JSON string, so it is counted escaped, with room left
/// for the envelope and headers.
pub(crate) const MAX_ANSWER_BYTES: usize = 6_000_000 - 64 * 1024;

/// What `text` weighs inside the integration response: every `"` and `\` gains a backslash
/// (serde_json writes control characters already escaped).
fn escaped_len(text: &str) -> usize {
    text.len() + text.bytes().filter(|b| matches!(b, b'"' | b'\\')).count()
}

/// Explains one flow or a batch. Each explanation is written out as soon as it is made and
/// dropped, so memory holds one explanation and the answer; an answer that would pass
/// [`MAX_ANSWER_BYTES`] is refused with 413, saying how many flows do fit.
fn explain(engine: &Engine, body: &[u8]) -> Result<Box<RawValue>, Failure> {
    let too_large = |fit: usize, total: usize| {
        fail(
            413,
            "answer_too_large",
            if fit == 0 {
                "the explanation is over the 6 MB an answer may carry: ask without \"verbose\""
                    .to_string()
            } else {
                format!(
                    "the explanations of the first {fit} of {total} flows fill the 6 MB an answer may carry: send at most {fit} flows per request, or without \"verbose\""
                )
            },
        )
    };
    let parsed: ExplainBody = serde_json::from_slice(body)
        .map_err(|e| fail(400, "invalid_json", format!("the body is not JSON: {e}")))?;
    let text = match parsed {
        ExplainBody::Batch { flows } => {
            if flows.len() > MAX_BATCH {
                return Err(field_error(
                    "flows",
                    format!("{} flows, more than {MAX_BATCH}", flows.len()),
                ));
            }
            let flows = flows
                .iter()
                .enumerate()
                .map(|(i, value)| parse_flow(value, &format!("flows[{i}].")))
                .collect::<Result<Vec<_>, _>>()?;
            let mut text = format!(
                "{{\"snapshot_version\":{},\"results\":[",
                json!(engine.version())
            );
            let mut weight = escaped_len(&text);
            for (i, (flow, eni, verbose)) in flows.iter().enumerate() {
                let mut view = ExplainView::of(engine, flow, eni.as_deref(), detail(*verbose));
                // The batch names its snapshot once.
                view.snapshot_version = None;
                let item = serde_json::to_string(&view).expect("plain data serializes");
                weight += escaped_len(&item) + 1;
                if weight + 2 > MAX_ANSWER_BYTES {
                    return Err(too_large(i, flows.len()));
                }
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&item);
            }
            text.push_str("]}");
            text
        }
        ExplainBody::One(value) => {
            let (flow, eni, verbose) = parse_flow(&value, "")?;
            let view = ExplainView::of(engine, &flow, eni.as_deref(), detail(verbose));
            let text = serde_json::to_string(&ExplainAnswer::One(Box::new(view)))
                .expect("plain data serializes");
            if escaped_len(&text) > MAX_ANSWER_BYTES {
                return Err(too_large(0, 1));
            }
            text
        }
    };
    Ok(RawValue::from_string(text).expect("the answer is JSON"))
}

fn detail(verbose: bool) -> Detail {
    if verbose {
        Detail::Full
    } else {
        Detail::Summary
    }
}

fn snapshot_status(engine: &Engine) -> SnapshotStatus {
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

/// `GET /v1/rules/{uuid}` but the hit counters.
fn rule(engine: &Engine, uuid: &str) -> Result<RuleAnswer, Failure> {
    let (id, compiled) = engine
        .rules()
        .iter()
        .enumerate()
        .find(|(_, r)| r.rule.uuid == uuid)
        .ok_or_else(|| {
            fail(
                404,
                "rule_not_found",
                format!("no rule {uuid:?} in snapshot {}", engine.version()),
            )
        })?;
    let hygiene =
        crate::core::engine::hygiene::analyze_rule(engine, id as u32).map(|f| RuleHygiene {
            finding: f.finding,
            covering_rules: f.covering,
            detail: f.detail,
        });
    let shadowed = hygiene
        .as_ref()
        .is_some_and(|h| h.finding == crate::core::engine::hygiene::Finding::Shadowed);
    let set = |r: &Result<crate::core::snapshot::values::AddressSet, String>| match r {
        Ok(set) => ResolvedSet {
            resolved: true,
            addresses: Some(set.render()),
            reason: None,
        },
        Err(reason) => ResolvedSet {
            resolved: false,
            addresses: None,
            reason: Some(reason.clone()),
        },
    };
    Ok(RuleAnswer {
        snapshot_version: engine.version().to_string(),
        rule: serde_json::to_value(&compiled.rule).expect("plain data serializes"),
        summary: RuleView::of(engine, id as u32),
        source: set(&compiled.source),
        destination: set(&compiled.destination),
        service: compiled.services_label.clone(),
        shadowed,
        shadowed_by: match &hygiene {
            Some(h) if shadowed => h.covering_rules.clone(),
            _ => Vec::new(),
        },
        hygiene,
        hits: RuleHits::default(),
    })
}

/// A failed CLS search: logged with its details, answered 502 with the CLS error code only.
/// The answer to a failed search: 410 `cursor_expired` (saying `expired`) when the store no
/// longer keeps the search a cursor continues, else 502 naming the store's error code.
fn search_failed(failure: StoreFailure, expired: &str) -> Failure {
    match failure {
        StoreFailure::CursorExpired => fail(410, "cursor_expired", expired),
        StoreFailure::Failed { code, message } if code == crate::app::records_store::TOO_LARGE => {
            let reason = message
                .split_once(": ")
                .map_or(message.as_str(), |(_, m)| m);
            fail(413, "view_too_large", reason.to_string())
        }
        StoreFailure::Failed { code, message } => {
            tracing::error!(%code, error = %message, "records search failed");
            fail(
                502,
                "search_failed",
                format!("the records search failed: {code}"),
            )
        }
    }
}

/// Why records cannot be searched when no store is configured.
const NO_STORE: &str = "no records store is configured for this lookup: deploy it with a hits topic, or run it locally with `esgflow serve --store <database>` after `esgflow replay --store <database>`";

/// The window of flow-log coverage in `/v1/vpcs`: ENIs that recorded traffic in the last hour.
const COVERAGE_SECONDS: i64 = 3600;

/// Days of hit counters shown by `/v1/rules/{uuid}`.
pub(crate) const HIT_WINDOW_DAYS: i64 = 30;

/// The page served at `/`: a form for `/v1/explain` and the day's top blocking rules.
pub(crate) const PAGE: &str = include_str!("page.html");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::snapshot::fixtures;
    use crate::events::ApiGatewayRequest;

    fn lookup() -> (Lookup, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "esgflow-lookup-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snapshot.json");
        fixtures::sample(0).save(&path).unwrap();
        (
            Lookup::new(
                Auth::Bearer("t0ken".into()),
                4096,
                SnapshotCache::new(&path, std::time::Duration::from_secs(60)),
            ),
            dir,
        )
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    fn request(
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> ApiGatewayRequest {
        let mut headers = serde_json::Map::new();
        if let Some(token) = token {
            headers.insert("Authorization".into(), json!(format!("Bearer {token}")));
        }
        serde_json::from_value(
            json!({"httpMethod": method, "path": path, "headers": headers, "body": body}),
        )
        .unwrap()
    }

    fn call(
        lookup: &Lookup,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let response = runtime.block_on(lookup.app().handle(
            &request(method, path, token, body),
            "req-1",
            deadline,
        ));
        (
            response.status_code,
            serde_json::from_str(&response.body).unwrap(),
        )
    }

    /// The parameters of a query, as an SCF event delivers them.
    fn hits_request(query: &[(&str, &str)]) -> Params {
        let query: serde_json::Map<String, Value> = query
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let event: ApiGatewayRequest = serde_json::from_value(
            json!({"httpMethod": "GET", "path": "/v1/hits", "queryString": query}),
        )
        .unwrap();
        Params {
            query_string: event.query_string,
        }
    }

    /// A view too large for one machine is the caller's to narrow (413), not a store failure.
    #[test]
    fn a_view_too_large_is_413_with_how_to_narrow_it() {
        let failure = search_failed(
            StoreFailure::Failed {
                code: crate::app::records_store::TOO_LARGE.to_string(),
                message: "records database x.db: the window holds more than 100000 conversations: narrow it".into(),
            },
            "expired",
        );
        assert_eq!((failure.status, failure.code), (413, "view_too_large"));
        assert!(
            failure.message.starts_with("the window holds"),
            "{}",
            failure.message
        );
        let other = search_failed(
            StoreFailure::Failed {
                code: "local_store".into(),
                message: "disk I/O error".into(),
            },
            "expired",
        );
        assert_eq!(other.status, 502);
    }

    /// Monitoring switches: read by anyone with the lookup token, changed only with the admin
    /// token, saved beside the snapshot, and shown at once.
    #[test]
    fn switches_need_the_admin_token_and_show_at_once() {
        let (lookup, dir) = lookup();
        let put = |lookup: &Lookup, token: &str, vpc: &str, body: &str| {
            call(
                lookup,
                "PUT",
                &format!("/v1/vpcs/{vpc}/monitoring"),
                Some(token),
                Some(body),
            )
        };
        let off = r#"{"monitored": false}"#;
        // Without an admin token the switches are read-only.
        let (status, body) = put(&lookup, "t0ken", "vpc-prod0001", off);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("switches_read_only"))
        );
        let lookup = lookup.with_monitoring(
            Monitored::All,
            Some("admin-token-0123456789".into()),
            std::time::Duration::from_secs(60),
        );
        let admin = "admin-token-0123456789";
        let (status, _) = put(&lookup, "t0ken", "vpc-prod0001", off);
        assert_eq!(status, 401, "the lookup token cannot change a switch");
        let (status, body) = put(&lookup, admin, "vpc-nope", off);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("unknown_vpc"))
        );
        let (status, body) = put(&lookup, admin, "vpc-prod0001", r#"{"on": 1}"#);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_body"))
        );
        let (status, body) = put(&lookup, admin, "vpc-prod0001", off);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["vpc"]["monitored"], false);
        assert_eq!(body["takes_effect_within_seconds"], 60);
        assert!(dir.join("snapshot.monitoring.json").is_file());
        let (status, vpcs) = call(&lookup, "GET", "/v1/vpcs", Some("t0ken"), None);
        assert_eq!(status, 200, "{vpcs}");
        let state = |vpcs: &Value, id: &str| {
            vpcs["vpcs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["id"] == id)
                .cloned()
                .unwrap()
        };
        let prod = state(&vpcs, "vpc-prod0001");
        assert_eq!(
            (&prod["monitored"], &prod["switch"], &prod["listed"]),
            (&json!(false), &json!(false), &json!(true))
        );
        assert_eq!(state(&vpcs, "vpc-dev00001")["monitored"], true);
        // Null drops the switch: back to the list.
        let (status, body) = put(&lookup, admin, "vpc-prod0001", r#"{"monitored": null}"#);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (&body["vpc"]["monitored"], &body["vpc"]["switch"]),
            (&json!(true), &Value::Null)
        );
        let (status, _) = call(
            &lookup,
            "GET",
            "/v1/vpcs/vpc-prod0001/monitoring",
            Some(admin),
            None,
        );
        assert_eq!(status, 405);
        std::fs::remove_dir_all(dir).ok();
    }

    /// The rules page: every rule in order with its counters, unused flag and hygiene, paged,
    /// with the recent rule changes.
    #[cfg(feature = "local-store")]
    #[test]
    fn rules_are_listed_with_hits_hygiene_and_changes() {
        let (lookup, dir) = lookup();
        let now = chrono::Utc::now().timestamp();
        let lines = [
            json!({"record_type": "rule_hits", "record_id": "h1", "time": now - 60, "rule_uuid": "7010",
                   "hits": 3, "block_hits": 3, "observe_hits": 0, "first_hit": now - 100, "last_hit": now - 60}),
            json!({"record_type": "rule_hits", "record_id": "h2", "time": now - 30, "rule_uuid": "7010",
                   "hits": 2, "block_hits": 2, "observe_hits": 0, "first_hit": now - 50, "last_hit": now - 30}),
            json!({"record_type": "rule_change", "record_id": "c1", "time": now - 10, "change": "added",
                   "rule_uuid": "7010"}),
        ]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>();
        let db = dir.join("records.db");
        crate::adapters::sqlite::LocalRecords::create(&db)
            .unwrap()
            .import(lines.as_bytes())
            .unwrap();
        let lookup = lookup.with_store(RecordsStore::Local(
            crate::adapters::sqlite::LocalRecords::open(&db).unwrap(),
        ));
        let (status, page) = call(&lookup, "GET", "/v1/rules", Some("t0ken"), None);
        assert_eq!(status, 200, "{page}");
        let rules = page["rules"].as_array().unwrap();
        let total = page["total"].as_u64().unwrap() as usize;
        assert_eq!(rules.len(), total.min(500));
        assert_eq!(
            page["hygiene_analysed"], total,
            "a small set is analysed whole"
        );
        let rule = rules.iter().find(|r| r["uuid"] == "7010").unwrap();
        assert_eq!(rule["hits"]["hits"], 5, "{rule}");
        assert_eq!(rule["hits"]["first_hit"], now - 100);
        assert_eq!(rule["unused"], false);
        assert!(rules
            .iter()
            .any(|r| r["unused"] == true && r["enabled"] == true));
        assert_eq!(page["changes"][0]["record_id"], "c1", "{page}");
        // In evaluation order; a page continues at next_offset.
        let positions: Vec<u64> = rules
            .iter()
            .map(|r| r["position"].as_u64().unwrap())
            .collect();
        assert_eq!(positions, (0..rules.len() as u64).collect::<Vec<_>>());
        let mut request = request("GET", "/v1/rules", Some("t0ken"), None);
        request.query_string =
            serde_json::from_value(json!({"offset": "2", "limit": "3"})).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let response = runtime.block_on(lookup.app().handle(
            &request,
            "r",
            Instant::now() + std::time::Duration::from_secs(5),
        ));
        let second: Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(second["rules"][0]["uuid"], rules[2]["uuid"]);
        assert_eq!(second["rules"].as_array().unwrap().len(), 3);
        assert_eq!(second["next_offset"], 5);
        std::fs::remove_dir_all(dir).ok();
    }

    /// One record is explained against the snapshot version that judged it while the store
    /// keeps that version; when it does not, against the current one, and the answer says so.
    #[cfg(feature = "local-store")]
    #[test]
    fn a_record_is_explained_against_the_snapshot_that_judged_it() {
        use crate::core::ports::SnapshotStore;
        let dir = std::env::temp_dir().join(format!("esgflow-record-{}", rand_suffix()));
        let snapshots = dir.join("snapshots");
        let store = crate::adapters::files::DirStore::new(&snapshots);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        // The older version judged the record; a newer one is current.
        let (older, current) = (fixtures::sample(0), fixtures::sample(7));
        runtime.block_on(store.publish(&older, deadline)).unwrap();
        runtime.block_on(store.publish(&current, deadline)).unwrap();
        let now = chrono::Utc::now().timestamp();
        let record = |id: &str, version: &str| {
            json!({"record_type": "block_hit", "record_id": id, "time": now - 60,
                   "src_ip": "10.0.1.11", "dst_ip": "10.0.3.10", "dst_port": 3306, "protocol": 6,
                   "rule_uuid": "7010", "snapshot_version": version})
            .to_string()
        };
        let lines = format!(
            "{}\n{}\n",
            record("00000000000000a1", &older.version),
            record("00000000000000a2", "0000000000000000")
        );
        let db = dir.join("records.db");
        crate::adapters::sqlite::LocalRecords::create(&db)
            .unwrap()
            .import(lines.as_bytes())
            .unwrap();
        let lookup = Lookup::new(
            Auth::Bearer("t0ken".into()),
            4096,
            SnapshotCache::with_store(Box::new(store), std::time::Duration::from_secs(60)),
        )
        .with_store(RecordsStore::Local(
            crate::adapters::sqlite::LocalRecords::open(&db).unwrap(),
        ));
        let (status, answer) = call(
            &lookup,
            "GET",
            "/v1/hits/00000000000000a1",
            Some("t0ken"),
            None,
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["judged_with"], older.version.as_str());
        assert_eq!(answer["explained_with"], older.version.as_str());
        assert_eq!(answer["note"], Value::Null);
        assert_eq!(answer["explanation"]["decision"], "block", "{answer}");
        assert_eq!(answer["explanation"]["rule"]["uuid"], "7010", "{answer}");
        assert_eq!(answer["record"]["record_id"], "00000000000000a1");
        // A version the store no longer keeps: the current one explains it, and says so.
        let (status, answer) = call(
            &lookup,
            "GET",
            "/v1/hits/00000000000000a2",
            Some("t0ken"),
            None,
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["explained_with"], current.version.as_str());
        assert!(
            answer["note"].as_str().unwrap().contains("no longer keeps"),
            "{answer}"
        );
        for (path, expected) in [
            ("/v1/hits/00000000000000ff", 404),
            ("/v1/hits/not-an-id", 404),
        ] {
            let (status, _) = call(&lookup, "GET", path, Some("t0ken"), None);
            assert_eq!(status, expected, "{path}");
        }
        std::fs::remove_dir_all(dir).ok();
    }

    /// Flow-log coverage: of each VPC's ENIs, those that recorded traffic in the last hour;
    /// without a records store, why it is unavailable.
    #[cfg(feature = "local-store")]
    #[test]
    fn vpcs_show_flow_log_coverage_of_the_last_hour() {
        let (lookup, dir) = lookup();
        let (status, vpcs) = call(&lookup, "GET", "/v1/vpcs", Some("t0ken"), None);
        assert_eq!(status, 200, "{vpcs}");
        assert_eq!(vpcs["vpcs"][0]["coverage"]["available"], false, "{vpcs}");
        let now = chrono::Utc::now().timestamp();
        let lines: String = [
            (now - 60, "eni-app00000,eni-app00001"),
            (now - 120, "eni-app00001"),
            // Older than an hour: not counted.
            (now - 7200, "eni-app00002"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (time, enis))| {
            format!(
                "{}\n",
                json!({"record_type": "traffic", "record_id": format!("t{i}"), "time": time,
                       "last_seen": time, "scope": "intra_subnet", "src_vpc": "vpc-prod0001",
                       "dst_vpc": "vpc-prod0001", "flows": 1, "enis": enis})
            )
        })
        .collect();
        let db = dir.join("records.db");
        crate::adapters::sqlite::LocalRecords::create(&db)
            .unwrap()
            .import(lines.as_bytes())
            .unwrap();
        let lookup = lookup.with_store(RecordsStore::Local(
            crate::adapters::sqlite::LocalRecords::open(&db).unwrap(),
        ));
        let (status, vpcs) = call(&lookup, "GET", "/v1/vpcs", Some("t0ken"), None);
        assert_eq!(status, 200, "{vpcs}");
        let coverage = |id: &str| {
            vpcs["vpcs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["id"] == id)
                .map(|v| v["coverage"].clone())
                .unwrap()
        };
        assert_eq!(
            coverage("vpc-prod0001"),
            json!({"available": true, "enis_recording": 2, "enis": 17, "window_seconds": 3600})
        );
        assert_eq!(coverage("vpc-dev00001")["enis_recording"], 0);
        std::fs::remove_dir_all(dir).ok();
    }

    /// Traffic view parameters are read strictly: each bad value is named, and the time series'
    /// step keeps a window within its points.
    #[test]
    fn traffic_parameters_are_checked_by_name() {
        let filter = |query: &[(&str, &str)]| traffic_filter(&hits_request(query), 1_000_000);
        let day = [("since", "913600"), ("until", "1000000")];
        let read = filter(&[
            day[0],
            day[1],
            ("vpc", "vpc-1"),
            ("scope", "vpc_inbound"),
            ("peer", "private"),
            ("fl_action", "reject"),
            ("talkers", "5"),
        ])
        .unwrap();
        assert_eq!(
            (
                read.vpc.as_deref(),
                read.scope,
                read.peer,
                read.fl_action,
                read.talkers
            ),
            (
                Some("vpc-1"),
                Some(Scope::VpcInbound),
                Some(Peer::Private),
                Some("REJECT"),
                5
            )
        );
        // A day: 15-minute steps (96 points) unless asked for coarser ones.
        assert_eq!(read.bucket, 900);
        assert_eq!(
            filter(&[day[0], day[1], ("step", "3600")]).unwrap().bucket,
            3600
        );
        assert_eq!(filter(&[]).unwrap().bucket, 60);
        for (name, value) in [
            ("scope", "sideways"),
            ("peer", "moon"),
            ("vpc", "vpc 1"),
            ("talkers", "0"),
            ("talkers", "101"),
            ("step", "300"),
            ("step", "901"),
            ("step", "90000"),
            ("fl_action", "drop"),
        ] {
            let failure = filter(&[day[0], day[1], (name, value)]).unwrap_err();
            assert_eq!(failure.status, 400, "{name}={value}");
            assert!(
                failure.message.starts_with(&format!("{name}: ")),
                "{}",
                failure.message
            );
        }
    }

    /// An export pages through the whole search within its answer budget: every record once,
    /// in order, the rest always one `X-Esgflow-Next` away; CSV cells a spreadsheet would run
    /// as formulas are defused, and quotes, commas and line breaks survive.
    #[cfg(feature = "local-store")]
    #[test]
    fn exports_page_through_the_search_within_the_budget() {
        let (mut lookup, dir) = lookup();
        let lines: String = (0..250)
            .map(|i| {
                let description = match i % 3 {
                    0 => "=HYPERLINK(\"http://x\")".to_string(),
                    1 => "db, \"primary\"\nline two".to_string(),
                    _ => format!("rule {i}"),
                };
                format!(
                    "{}\n",
                    json!({"record_type": "block_hit", "record_id": format!("{i:04}"), "time": 1000 + i,
                           "src_ip": "10.0.1.11", "src_ip_num": 167772427, "dst_ip": "10.0.3.10",
                           "dst_port": 3306, "protocol": 6, "rule_uuid": "7010", "rule_description": description})
                )
            })
            .collect();
        let db = dir.join("records.db");
        crate::adapters::sqlite::LocalRecords::create(&db)
            .unwrap()
            .import(lines.as_bytes())
            .unwrap();
        lookup = lookup.with_store(RecordsStore::Local(
            crate::adapters::sqlite::LocalRecords::open(&db).unwrap(),
        ));
        // Pages of 50 and room for a few: the export needs several answers.
        lookup.configure().export_budget = 40_000;
        lookup.configure().export_page = 50;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for format in ["csv", "jsonl"] {
            let mut query =
                format!("format={format}&type=block_hit&since=0&until=5000&src=10.0.1.0%2F24");
            let mut rows: Vec<String> = Vec::new();
            let mut answers = 0;
            loop {
                answers += 1;
                assert!(answers < 20, "the export ends");
                let pairs: serde_json::Map<String, Value> = query
                    .split('&')
                    .map(|p| p.split_once('=').unwrap())
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                // Through deserialisation, as the platform delivers it (values percent-decoded).
                let request: ApiGatewayRequest = serde_json::from_value(json!({
                    "httpMethod": "GET", "path": "/v1/hits/export",
                    "headers": {"authorization": "Bearer t0ken"}, "queryString": pairs,
                }))
                .unwrap();
                let response = runtime.block_on(lookup.app().handle(
                    &request,
                    "r",
                    Instant::now() + std::time::Duration::from_secs(10),
                ));
                assert_eq!(response.status_code, 200, "{}", response.body);
                let count: usize = response.headers["X-Esgflow-Count"].parse().unwrap();
                let body = response.body.clone();
                if format == "csv" {
                    assert_eq!(response.headers["Content-Type"], "text/csv; charset=utf-8");
                    let (header, rest) = body.split_once("\r\n").unwrap();
                    assert_eq!(header, EXPORT_COLUMNS.join(","));
                    // Rows end with CRLF; a quoted cell may hold a bare LF.
                    rows.extend(rest.split_terminator("\r\n").map(str::to_string));
                    assert_eq!(rest.split_terminator("\r\n").count(), count);
                } else {
                    assert_eq!(response.headers["Content-Type"], "application/x-ndjson");
                    rows.extend(body.lines().map(str::to_string));
                    assert_eq!(body.lines().count(), count);
                }
                match response.headers.get("X-Esgflow-Next") {
                    Some(next) => {
                        assert_eq!(response.headers["X-Esgflow-Complete"], "false");
                        query = next.clone();
                    }
                    None => {
                        assert_eq!(response.headers["X-Esgflow-Complete"], "true");
                        break;
                    }
                }
            }
            assert!(
                answers >= 2,
                "{format}: the budget split the export ({answers})"
            );
            assert_eq!(rows.len(), 250, "{format}: every record once");
            if format == "csv" {
                assert!(rows[0].ends_with(",0249"), "newest first: {}", rows[0]);
                let formula = rows.iter().find(|r| r.contains("HYPERLINK")).unwrap();
                assert!(
                    formula.contains(r#""'=HYPERLINK(""http://x"")""#),
                    "{formula}"
                );
                let quoted = rows.iter().find(|r| r.contains("primary")).unwrap();
                assert!(
                    quoted.contains("\"db, \"\"primary\"\"\nline two\""),
                    "{quoted}"
                );
                assert!(
                    rows[0].starts_with("1970-01-01T00:20:49Z,1249,block_hit,10.0.1.11,"),
                    "{}",
                    rows[0]
                );
            } else {
                let ids: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        serde_json::from_str::<Value>(r).unwrap()["record_id"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .collect();
                let expected: Vec<String> = (0..250).rev().map(|i| format!("{i:04}")).collect();
                assert_eq!(ids, expected);
            }
        }
        // A format it cannot write, and the page size it sets itself, are refused by name.
        for (name, value, code) in [
            ("format", "xlsx", "invalid_field"),
            ("limit", "5", "unknown_parameter"),
        ] {
            let mut request = request("GET", "/v1/hits/export", Some("t0ken"), None);
            request.query_string = serde_json::from_value(json!({ name: value })).unwrap();
            let response = runtime.block_on(lookup.app().handle(
                &request,
                "r",
                Instant::now() + std::time::Duration::from_secs(5),
            ));
            let body: Value = serde_json::from_str(&response.body).unwrap();
            assert_eq!(
                (response.status_code, body["error"]["code"].as_str()),
                (400, Some(code)),
                "{body}"
            );
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn hits_queries_are_built_only_from_validated_values() {
        let q = HitsQuery::parse(
            &hits_request(&[("ip", "10.0.1.5"), ("rule", "7010"), ("type", "block_hit")]),
            1_000_000,
        )
        .unwrap();
        assert_eq!(
            hits_query(&q.filter),
            r#"(record_type:"block_hit") AND (src_ip:"10.0.1.5" OR dst_ip:"10.0.1.5") AND rule_uuid:"7010""#
        );
        assert_eq!(
            (q.filter.since, q.filter.until, q.limit),
            (1_000_000 - 3600, 1_000_000, 100)
        );
        let q = HitsQuery::parse(
            &hits_request(&[("since", "2025-11-24T00:00:00Z"), ("until", "1763946000")]),
            2_000_000_000,
        )
        .unwrap();
        assert_eq!((q.filter.since, q.filter.until), (1763942400, 1763946000));
        assert_eq!(
            hits_query(&q.filter),
            r#"(record_type:"block_hit" OR record_type:"observe_hit")"#
        );
        for (field, value) in [
            ("ip", r#"10.0.0.1" OR *"#),
            ("src", "10.0.0.1/8 OR dst_ip:*"),
            ("dst", "2001:db8::/32"),
            ("dst", "10.0.0.300"),
            ("port", "abc"),
            ("port", "70000"),
            ("protocol", "sctp-ish"),
            ("protocol", "256"),
            ("vpc", r#"vpc-1" OR *"#),
            ("subnet", "subnet 1"),
            ("fl_action", "DROP"),
            ("rule", r#"7010" OR record_type:*"#),
            ("type", "traffic"),
            ("limit", "0"),
            ("limit", "5000"),
            ("cursor", "a b"),
            ("cursor", "opaque-context-without-our-prefix"),
            ("cursor", "17_nothex00_ctx"),
            ("since", "yesterday"),
        ] {
            let err = HitsQuery::parse(&hits_request(&[(field, value)]), 1_000_000).unwrap_err();
            assert_eq!(err.status, 400, "{field}={value}");
            assert!(err.message.starts_with(field), "{field}: {}", err.message);
        }
        let err =
            HitsQuery::parse(&hits_request(&[("since", "10"), ("until", "5")]), 100).unwrap_err();
        assert!(err.message.contains("before until"));
    }

    /// A parameter a route does not read is refused with 400 naming it (`?src=&dst=` once
    /// returned unfiltered hits), and so is a parameter given twice.
    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let (lookup, dir) = lookup();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ask = |path: &str, query: Value| {
            let mut request = request("GET", path, Some("t0ken"), None);
            request.query_string = serde_json::from_value(query).unwrap();
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            let response = runtime.block_on(lookup.app().handle(&request, "r", deadline));
            let body: Value = serde_json::from_str(&response.body).unwrap();
            (response.status_code, body)
        };
        let (status, body) = ask(
            "/v1/hits",
            json!({"source": "10.0.1.5", "dest": "10.0.3.10", "rule": "7010"}),
        );
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("unknown_parameter"))
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("does not read dest, source"), "{message}");
        assert!(message.contains("it reads src, dst, ip, port"), "{message}");
        let (status, body) = ask("/v1/snapshot", json!({"verbose": "1"}));
        assert_eq!(status, 400, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no query parameters"));
        let (status, body) = ask("/v1/stats/top-rules", json!({"hours": "1", "vpc": "vpc-1"}));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("unknown_parameter"))
        );
        let (status, body) = ask("/v1/hits", json!({"ip": ["10.0.0.1", "10.0.0.2"]}));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("repeated_parameter"))
        );
        // The parameters a route reads pass this check (here to the missing hits topic).
        let (status, body) = ask("/v1/hits", json!({"ip": "10.0.0.1", "limit": "5"}));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("hits_unavailable"))
        );
        std::fs::remove_dir_all(dir).ok();
    }

    /// Times outside 1970..9999 are refused by name before any arithmetic on them (the
    /// smallest i64 once overflowed the span check).
    #[test]
    fn search_times_are_bounded() {
        for (field, value) in [
            ("since", "-9223372036854775808"),
            ("until", "-1"),
            ("until", "9223372036854775807"),
            ("since", "253402300800"),
        ] {
            let err = HitsQuery::parse(&hits_request(&[(field, value)]), 1_000_000).unwrap_err();
            assert_eq!(err.status, 400, "{field}={value}");
            assert!(
                err.message.starts_with(field) && err.message.contains("1970"),
                "{field}={value}: {}",
                err.message
            );
        }
        let q = HitsQuery::parse(&hits_request(&[("since", "0"), ("until", "3600")]), 9).unwrap();
        assert_eq!((q.filter.since, q.filter.until), (0, 3600));
    }

    /// The bearer scheme is case-insensitive and may be followed by more than one space; any
    /// other scheme, or the token alone, is refused.
    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer t0ken"), Some("t0ken"));
        assert_eq!(bearer_token("bearer t0ken"), Some("t0ken"));
        assert_eq!(bearer_token("BEARER   t0ken "), Some("t0ken"));
        for refused in ["Basic t0ken", "t0ken", "Bearert0ken", "Bearer ", ""] {
            assert_eq!(bearer_token(refused), None, "{refused:?}");
        }
        let (lookup, dir) = lookup();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (header, status) in [
            ("bearer t0ken", 200),
            ("BEARER t0ken", 200),
            ("Basic t0ken", 401),
        ] {
            let request: ApiGatewayRequest = serde_json::from_value(json!({
                "httpMethod": "GET", "path": "/v1/snapshot", "headers": {"Authorization": header}
            }))
            .unwrap();
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            let response = runtime.block_on(lookup.app().handle(&request, "req-1", deadline));
            assert_eq!(response.status_code, status, "{header}");
        }
        std::fs::remove_dir_all(dir).ok();
    }

    /// Every answer, page or JSON, success or error, carries the security headers; the page's
    /// policy allows exactly its own inline script and style, by hash.
    #[test]
    fn every_answer_carries_the_security_headers() {
        let (lookup, dir) = lookup();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (path, token, status) in [
            ("/", None, 200),
            ("/v1/healthz", None, 200),
            ("/v1/snapshot", None, 401),
            ("/nope", None, 404),
        ] {
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            let response = runtime.block_on(lookup.app().handle(
                &request("GET", path, token, None),
                "r",
                deadline,
            ));
            assert_eq!(response.status_code, status, "{path}");
            let header = |name: &str| response.headers.get(name).cloned().unwrap_or_default();
            let policy = header("Content-Security-Policy");
            assert!(
                policy.contains("frame-ancestors 'none'"),
                "{path}: {policy}"
            );
            assert!(policy.starts_with("default-src 'none'"), "{path}: {policy}");
            assert_eq!(header("Referrer-Policy"), "no-referrer", "{path}");
            assert_eq!(header("X-Content-Type-Options"), "nosniff", "{path}");
            if path == "/" {
                let script =
                    &PAGE[PAGE.find("<script>").unwrap() + 8..PAGE.find("</script>").unwrap()];
                use base64::Engine as _;
                use sha2::Digest;
                let hash = base64::engine::general_purpose::STANDARD
                    .encode(sha2::Sha256::digest(script.as_bytes()));
                assert!(
                    policy.contains(&format!("script-src 'sha256-{hash}';")),
                    "{policy}"
                );
                assert!(!policy.contains("unsafe-inline"), "{policy}");
            }
        }
        std::fs::remove_dir_all(dir).ok();
    }

    /// A cursor carries when its search started and which search it continues; CLS's context
    /// (which may hold `_`) comes back whole.
    #[test]
    fn cursors_bind_to_their_search_and_expire() {
        let first = HitsQuery::parse(
            &hits_request(&[("since", "1000"), ("until", "2000"), ("limit", "5")]),
            2_000,
        )
        .unwrap();
        let cursor = HitsCursor {
            issued: 2_000,
            binding: first.binding(),
            context: "ctx_with_under_scores==".into(),
        }
        .to_string();
        let next = first.next_page(&cursor);
        let pairs: Vec<(&str, &str)> = next
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let second = HitsQuery::parse(&hits_request(&pairs), 2_100).unwrap();
        assert_eq!(second.cursor.unwrap().context, "ctx_with_under_scores==");
        let late = HitsQuery::parse(&hits_request(&pairs), 2_000 + 3_601).unwrap_err();
        assert_eq!((late.status, late.code), (410, "cursor_expired"));
        let mut changed = pairs.clone();
        changed.push(("rule", "7010"));
        let err = HitsQuery::parse(&hits_request(&changed), 2_100).unwrap_err();
        assert!(err.message.contains("different search"), "{}", err.message);
    }

    #[test]
    fn statuses() {
        let (lookup, dir) = lookup();
        assert_eq!(call(&lookup, "GET", "/v1/healthz", None, None).0, 200);
        assert_eq!(call(&lookup, "GET", "/v1/snapshot", None, None).0, 401);
        assert_eq!(
            call(&lookup, "GET", "/v1/snapshot", Some("wrong"), None).0,
            401
        );
        let (status, body) = call(&lookup, "GET", "/v1/snapshot", Some("t0ken"), None);
        assert_eq!(status, 200);
        assert_eq!(body["rules"], fixtures::sample(0).rules.len());
        assert_eq!(
            call(&lookup, "GET", "/v1/explain", Some("t0ken"), None).0,
            405
        );
        assert_eq!(call(&lookup, "GET", "/nope", Some("t0ken"), None).0, 404);
        let (status, body) = call(
            &lookup,
            "POST",
            "/v1/explain",
            Some("t0ken"),
            Some("{not json"),
        );
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_json"))
        );
        let (status, body) = call(
            &lookup,
            "POST",
            "/v1/explain",
            Some("t0ken"),
            Some(r#"{"src":"10.0.0.1","dst":"10.0.0.999","protocol":"tcp","port":22}"#),
        );
        assert_eq!(status, 400);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("dst:"),
            "{body}"
        );
        let (status, body) = call(
            &lookup,
            "POST",
            "/v1/explain",
            Some("t0ken"),
            Some(r#"{"src":"10.0.0.1","dst":"10.0.0.2","protocol":"tcp","port":70000}"#),
        );
        assert_eq!(status, 400);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("port:"),
            "{body}"
        );
        let big = format!(r#"{{"src":"{}"}}"#, "1".repeat(5000));
        assert_eq!(
            call(&lookup, "POST", "/v1/explain", Some("t0ken"), Some(&big)).0,
            413
        );
        assert_eq!(
            call(&lookup, "GET", "/v1/rules/nope", Some("t0ken"), None).0,
            404
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn explain_one_and_batch() {
        let (lookup, dir) = lookup();
        let (status, body) = call(
            &lookup,
            "POST",
            "/v1/explain",
            Some("t0ken"),
            Some(r#"{"src":"10.0.1.5","dst":"10.1.2.8","protocol":"tcp","port":3306}"#),
        );
        assert_eq!(status, 200, "{body}");
        assert!(["allow", "block", "none"].contains(&body["decision"].as_str().unwrap()));
        assert!(body["snapshot_version"].is_string());
        assert!(body["steps"].is_array());
        let flows: Vec<Value> = (0..3).map(|i| json!({"src": format!("10.0.1.{i}"), "dst": "10.1.0.1", "protocol": "udp", "port": 53})).collect();
        let (status, body) = call(
            &lookup,
            "POST",
            "/v1/explain",
            Some("t0ken"),
            Some(&json!({"flows": flows}).to_string()),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"].as_array().unwrap().len(), 3);
        let (status, body) = call(
            &lookup,
            "POST",
            "/v1/explain",
            Some("t0ken"),
            Some(r#"{"flows":[{"src":"10.0.0.1","dst":"x","protocol":"tcp","port":1}]}"#),
        );
        assert_eq!(status, 400);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("flows[0].dst"),
            "{body}"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
