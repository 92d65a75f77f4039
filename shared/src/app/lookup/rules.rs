//! `GET /v1/rules` (the rules page), `GET /v1/rules/{uuid}` (one rule) and
//! `GET /v1/stats/top-rules`: their routes, parameters and hit counters.

use axum::extract::{Path, State};
use axum::Json;

use super::request::Answer;
use super::*;
use crate::core::engine::hygiene::{Analysis, Finding};
use serde::Serialize;
use serde_json::Value;
use utoipa::IntoParams;
use utoipa::ToSchema;

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
    Query(params): Query<TopRulesParams>,
) -> Answer<TopRules> {
    let engine = lookup.engine(call.deadline).await?;
    lookup
        .top_rules(&engine, &params, call.deadline)
        .await
        .map(Json)
}

/// `GET /v1/rules/{uuid}`.
#[utoipa::path(get, path = "/v1/rules/{uuid}", tag = "rules",
    summary = "One rule: as the API gave it, resolved, its hygiene finding and hit counters",
    params(("uuid" = String, Path, description = "the rule id"), OneRuleParams),
    responses(
        (status = 200, description = "the rule", body = RuleAnswer),
        (status = 400, description = "a bad window, a parameter the route does not read, or one given twice", body = ErrorBody), (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 404, description = "no such rule (`rule_not_found`)", body = ErrorBody), (status = 503, description = "no snapshot", body = ErrorBody),
    ))]
pub(crate) async fn one_rule(
    State(lookup): State<Lookup>,
    call: Invocation,
    Path(uuid): Path<String>,
    Query(params): Query<OneRuleParams>,
) -> Answer<RuleAnswer> {
    let now = chrono::Utc::now().timestamp();
    let window = window_or_last(
        params.since.as_deref(),
        params.until.as_deref(),
        ("days", false, HIT_WINDOW_DAYS * 86_400),
        now,
    )?;
    let engine = lookup.engine(call.deadline).await?;
    let mut answer = rule(&engine, &uuid)?;
    answer.hits = lookup.rule_hits(&uuid, window, call.deadline).await;
    let compiled = engine.rules().iter().find(|r| r.rule.uuid == uuid);
    if compiled.is_some_and(|r| names_templates(&r.rule)) {
        // Template names and members are in the snapshot, not the engine: read only for a rule
        // that names one; without them the rule still answers, saying why.
        answer.templates = match lookup.served_snapshot(call.deadline).await {
            Ok((_, snapshot)) => Some(templates_of(&snapshot, &compiled.expect("checked").rule)),
            Err(failure) => {
                answer.templates_error = Some(failure.message);
                None
            }
        };
    }
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
    Query(params): Query<RulesParams>,
) -> Answer<RulesPage> {
    lookup.rules(&params, call.deadline).await.map(Json)
}

impl Lookup {
    /// `GET /v1/rules?days=&offset=&limit=`: the rules in evaluation order with their hit
    /// counters, unused flag and hygiene finding, and the recent rule changes.
    pub(crate) async fn rules(
        &self,
        params: &RulesParams,
        deadline: Instant,
    ) -> Result<RulesPage, Failure> {
        let number = |name, given: &Option<String>, default, range| {
            whole_number(name, given.as_deref(), default, range)
        };
        let days = number("days", &params.days, HIT_WINDOW_DAYS, 1..=HIT_WINDOW_DAYS)?;
        let offset = number("offset", &params.offset, 0, 0..=i64::from(u32::MAX))? as usize;
        let limit = number("limit", &params.limit, 500, 1..=i64::from(MAX_RULES_PAGE))? as usize;
        let now = chrono::Utc::now().timestamp();
        let (since, until) = window_or_last(
            params.since.as_deref(),
            params.until.as_deref(),
            ("days", params.days.is_some(), days * 86_400),
            now,
        )?;
        let filter = RuleFilter::of(params)?;
        let engine = self.engine(deadline).await?;
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
        // The snapshot's hygiene, analysed once per snapshot in the background within a memory
        // budget only, so every build finds the same; a page asked before it ends says so.
        let wait = RULES_HYGIENE_WAIT.min(deadline.saturating_duration_since(Instant::now()) / 2);
        let pending = self.hygiene_of(&engine, wait).await;
        let analysis = pending.as_deref().cloned().unwrap_or_default();
        let hygiene_pending = pending.is_none();
        let findings: std::collections::HashMap<usize, &crate::core::engine::hygiene::RuleFinding> =
            analysis
                .findings
                .iter()
                .map(|f| (f.rule as usize, f))
                .collect();
        let hits_of = |uuid: &str| {
            totals
                .as_ref()
                .ok()
                .map(|t| t.get(uuid).cloned().unwrap_or_default())
        };
        // The filters, then the order, then the page: only the page's rows are built.
        let mut kept: Vec<(usize, u64)> = engine
            .rules()
            .iter()
            .enumerate()
            .filter_map(|(i, compiled)| {
                let hits = hits_of(&compiled.rule.uuid);
                filter
                    .keeps(&compiled.rule, hits.as_ref(), findings.contains_key(&i))
                    .then(|| (i, hits.map_or(0, |h| h.hits)))
            })
            .collect();
        if filter.by_hits {
            kept.sort_by_key(|&(i, hits)| (std::cmp::Reverse(hits), i));
        }
        let matched = kept.len();
        let rules: Vec<RuleRow> = kept
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(i, _)| {
                let compiled = &engine.rules()[i];
                let rule = &compiled.rule;
                let hits = hits_of(&rule.uuid);
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
        let next_offset = (offset + rules.len() < matched).then_some(offset + rules.len());
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
            matched,
            next_offset,
            days: (until - since + 86_399) / 86_400,
            since,
            until,
            hits_error: totals.err(),
            hygiene_analysed: analysis.analysed,
            hygiene_stopped: analysis.stopped,
            hygiene_pending,
            changes,
            changes_error,
            snapshot_version: engine.version().to_string(),
        })
    }

    /// `rule_hits` records. Never fails the request: an unavailable count says why.
    pub(crate) async fn rule_hits(
        &self,
        uuid: &str,
        (since, until): (i64, i64),
        deadline: Instant,
    ) -> RuleHits {
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
        match store.rule_counters(uuid, since, until, deadline).await {
            Ok(counters) => RuleHits {
                available: true,
                reason: None,
                window_days: Some((until - since + 86_399) / 86_400),
                since: Some(since),
                until: Some(until),
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
        params: &TopRulesParams,
        deadline: Instant,
    ) -> Result<TopRules, Failure> {
        let hours = whole_number("hours", params.hours.as_deref(), 24, 1..=720)?;
        let limit = whole_number("limit", params.limit.as_deref(), 10, 1..=50)?;
        let now = chrono::Utc::now().timestamp();
        let (since, until) = window_or_last(
            params.since.as_deref(),
            params.until.as_deref(),
            ("hours", params.hours.is_some(), hours * 3600),
            now,
        )?;
        let hours = (until - since + 3599) / 3600;
        let store = self.store()?;
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
}

/// What `/v1/rules` keeps and how it orders them.
struct RuleFilter {
    action: Option<crate::core::snapshot::RuleAction>,
    generation: Option<crate::core::snapshot::Generation>,
    only: Option<Only>,
    text: Option<String>,
    by_hits: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Only {
    Unused,
    Hit,
    Findings,
}

impl RuleFilter {
    fn of(params: &RulesParams) -> Result<Self, Failure> {
        fn one_of<T: Copy>(
            name: &str,
            given: &Option<String>,
            choices: &[(&str, T)],
        ) -> Result<Option<T>, Failure> {
            let Some(text) = given.as_deref().map(str::trim) else {
                return Ok(None);
            };
            choices
                .iter()
                .find(|(word, _)| word.eq_ignore_ascii_case(text))
                .map(|&(_, value)| Some(value))
                .ok_or_else(|| {
                    let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
                    field_error(
                        name,
                        format!("{} is not one of {}", shown(text), words.join(", ")),
                    )
                })
        }
        use crate::core::snapshot::{Generation, RuleAction};
        Ok(RuleFilter {
            action: one_of(
                "action",
                &params.action,
                &[
                    ("accept", RuleAction::Accept),
                    ("drop", RuleAction::Drop),
                    ("observe", RuleAction::Observe),
                ],
            )?,
            generation: one_of(
                "generation",
                &params.generation,
                &[("new", Generation::New), ("old", Generation::Old)],
            )?,
            only: one_of(
                "only",
                &params.only,
                &[
                    ("unused", Only::Unused),
                    ("hit", Only::Hit),
                    ("findings", Only::Findings),
                ],
            )?,
            text: params
                .q
                .as_deref()
                .map(|q| q.trim().to_lowercase())
                .filter(|q| !q.is_empty()),
            by_hits: one_of("sort", &params.sort, &[("order", false), ("hits", true)])?
                .unwrap_or(false),
        })
    }

    /// Whether `rule` is kept, with its hit counters (None: unknown) and whether it has a
    /// hygiene finding. Without counters, neither `unused` nor `hit` keeps a rule.
    fn keeps(
        &self,
        rule: &crate::core::snapshot::Rule,
        hits: Option<&crate::core::search::RuleCounters>,
        finding: bool,
    ) -> bool {
        self.action.is_none_or(|a| a == rule.action)
            && self.generation.is_none_or(|g| g == rule.generation)
            && match self.only {
                None => true,
                Some(Only::Unused) => hits.is_some_and(|h| rule.enabled && h.hits == 0),
                Some(Only::Hit) => hits.is_some_and(|h| h.hits > 0),
                Some(Only::Findings) => finding,
            }
            && self.text.as_ref().is_none_or(|q| {
                rule.uuid.to_lowercase().contains(q) || rule.description.to_lowercase().contains(q)
            })
    }
}

/// Most rules in one `/v1/rules` page.
pub(crate) const MAX_RULES_PAGE: u32 = 2000;

/// Most recent rule changes `/v1/rules` lists.
pub(crate) const MAX_RULE_CHANGES: u32 = 100;

/// The longest `/v1/rules` waits for the snapshot's hygiene analysis to end.
pub(crate) const RULES_HYGIENE_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// One snapshot's hygiene analysis, run once in the background: its result when it has ended.
pub(crate) struct HygieneRun {
    version: String,
    result: std::sync::OnceLock<std::sync::Arc<Analysis>>,
    ended: tokio::sync::Notify,
}

impl Lookup {
    /// The hygiene analysis of `engine`'s snapshot, waiting at most `wait` for it; `None` while
    /// it runs. The first request for a snapshot starts it (on the blocking pool), within
    /// [`RULES_HYGIENE_BYTES`] and no time limit, so the debug and release builds find the same.
    pub(crate) async fn hygiene_of(
        &self,
        engine: &std::sync::Arc<crate::core::engine::Engine>,
        wait: std::time::Duration,
    ) -> Option<std::sync::Arc<Analysis>> {
        let run = {
            let mut current = self.hygiene.lock().unwrap_or_else(|p| p.into_inner());
            match current.as_ref() {
                Some(run) if run.version == engine.version() => run.clone(),
                _ => {
                    let run = std::sync::Arc::new(HygieneRun {
                        version: engine.version().to_string(),
                        result: std::sync::OnceLock::new(),
                        ended: tokio::sync::Notify::new(),
                    });
                    let (running, engine) = (run.clone(), engine.clone());
                    tokio::task::spawn_blocking(move || {
                        let analysis = crate::core::engine::hygiene::analyze_until(
                            &engine,
                            crate::core::engine::hygiene::Budget {
                                until: None,
                                bytes: RULES_HYGIENE_BYTES,
                            },
                        );
                        let _ = running.result.set(std::sync::Arc::new(analysis));
                        running.ended.notify_waiters();
                    });
                    *current = Some(run.clone());
                    run
                }
            }
        };
        let ended = run.ended.notified();
        if let Some(analysis) = run.result.get() {
            return Some(analysis.clone());
        }
        let _ = tokio::time::timeout(wait, ended).await;
        run.result.get().cloned()
    }
}

/// Memory the hygiene analysis may hold in a lookup: a sixteenth of the function's 64 MB (with 8 MiB, the
/// rules page of the reference account took the function to 66 MB after the heaviest views).
pub const RULES_HYGIENE_BYTES: usize = 4 << 20;

/// `GET /v1/rules/{uuid}` but the hit counters.
pub(crate) fn rule(engine: &Engine, uuid: &str) -> Result<RuleAnswer, Failure> {
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
        crate::core::engine::hygiene::analyze_rule(engine, id as u32, RULES_HYGIENE_BYTES).map(
            |f| RuleHygiene {
                finding: f.finding,
                covering_rules: f.covering,
                detail: f.detail,
            },
        );
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
        templates: None,
        templates_error: None,
    })
}

/// Days of hit counters shown by `/v1/rules/{uuid}`.
pub(crate) const HIT_WINDOW_DAYS: i64 = 30;

/// The query parameters of `/v1/rules`.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RulesParams {
    /// The hit counters' window: its start, Unix seconds or RFC 3339 (with `until`; the span at
    /// most 30 days). Without it, the last `days`.
    #[param(value_type = Option<String>)]
    pub(crate) since: Option<String>,
    /// The window's end (default: now).
    #[param(value_type = Option<String>)]
    pub(crate) until: Option<String>,
    /// The hit counters' window, days before now (1-30, default 30), when `since` is not given.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 30)]
    pub(crate) days: Option<String>,
    /// Only rules of this action: `accept`, `drop` or `observe`.
    #[param(value_type = Option<String>)]
    pub(crate) action: Option<String>,
    /// Only rules of this ESG: `new` or `old`.
    #[param(value_type = Option<String>)]
    pub(crate) generation: Option<String>,
    /// Only `unused` rules (enabled, no hit in the window), rules with a `hit`, or rules with a
    /// hygiene finding (`findings`: shadowed, redundant, unresolvable).
    #[param(value_type = Option<String>)]
    pub(crate) only: Option<String>,
    /// Only rules whose id or description holds this text (any case).
    #[param(value_type = Option<String>)]
    pub(crate) q: Option<String>,
    /// `order` (evaluation order, the default) or `hits` (most hits in the window first, ties in
    /// evaluation order).
    #[param(value_type = Option<String>)]
    pub(crate) sort: Option<String>,
    /// The first rule's position (default 0).
    #[param(value_type = Option<u32>, minimum = 0)]
    pub(crate) offset: Option<String>,
    /// Rules per page (1-2000, default 500).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 2000)]
    pub(crate) limit: Option<String>,
}

/// The query parameters of `/v1/rules/{uuid}`.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OneRuleParams {
    /// The hit counters' window: its start, Unix seconds or RFC 3339 (the span at most 30 days;
    /// default: the last 30 days).
    #[param(value_type = Option<String>)]
    pub(crate) since: Option<String>,
    /// The window's end (default: now).
    #[param(value_type = Option<String>)]
    pub(crate) until: Option<String>,
}

/// The query parameters of `/v1/stats/top-rules`.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopRulesParams {
    /// The window's start, Unix seconds or RFC 3339 (with `until`; the span at most 30 days).
    /// Without it, the last `hours`.
    #[param(value_type = Option<String>)]
    pub(crate) since: Option<String>,
    /// The window's end (default: now).
    #[param(value_type = Option<String>)]
    pub(crate) until: Option<String>,
    /// The window, hours before now (1-720, default 24), when `since` is not given.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 720)]
    pub(crate) hours: Option<String>,
    /// Rules (1-50, default 10).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 50)]
    pub(crate) limit: Option<String>,
}

super::request::query_params!(RulesParams, TopRulesParams, OneRuleParams);

/// A rule's resolved source or destination.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResolvedSet {
    /// Whether the snapshot resolves it.
    pub resolved: bool,
    /// The addresses (when resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<String>,
    /// Why not (when not resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A rule-hygiene finding.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleHygiene {
    /// What was found.
    pub finding: Finding,
    /// The rules that cover it (shadowed: earlier; redundant: later), as uuids.
    pub covering_rules: Vec<String>,
    /// Why (unresolvable: the resolution error).
    pub detail: String,
}

/// Hit counters of a rule over a window, summed from the audit function's `rule_hits` records;
/// `available` false with a `reason` when there is no records store or it failed.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RuleHits {
    /// Whether the counters could be read.
    pub available: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The window, days (rounded up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_days: Option<i64>,
    /// The window's start, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// The window's end, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Every hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hits: Option<u64>,
    /// Hits as the deciding drop rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_hits: Option<u64>,
    /// Hits as an observe rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observe_hits: Option<u64>,
    /// The first hit, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_hit: Option<u64>,
    /// The last hit, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_hit: Option<u64>,
}

/// `GET /v1/rules/{uuid}`: one rule as the API gave it, resolved, with its hygiene finding and
/// hit counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleAnswer {
    /// The snapshot it is read from.
    pub snapshot_version: String,
    /// The rule as the cloud API gave it.
    #[schema(value_type = Object)]
    pub rule: Value,
    /// The rule as answers and records show it.
    pub summary: RuleView,
    /// Its source, resolved.
    pub source: ResolvedSet,
    /// Its destination, resolved.
    pub destination: ResolvedSet,
    /// Its services (`TCP 3306,6379`).
    pub service: String,
    /// No flow can reach the rule: earlier allow/block rules cover its whole match space.
    pub shadowed: bool,
    /// The earlier rules that cover it.
    pub shadowed_by: Vec<String>,
    /// Its rule-hygiene finding (null: nothing to report).
    pub hygiene: Option<RuleHygiene>,
    /// Its hit counters over the window asked for (default: the last 30 days).
    pub hits: RuleHits,
    /// The address and service templates it names, groups with their members (absent: it
    /// names none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<TemplateView>>,
    /// Why its templates could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templates_error: Option<String>,
}

/// An address or service template a rule names, with its name and members.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    /// Where the rule names it: `source`, `destination` or `service`.
    pub side: &'static str,
    /// Its id (`ipm-…`, `ipmg-…`, `ppm-…`, `ppmg-…`).
    pub id: String,
    /// `address_template`, `address_template_group`, `service_template` or
    /// `service_template_group`.
    pub kind: &'static str,
    /// Its name (null: not in the snapshot).
    pub name: Option<String>,
    /// Its addresses or services; a group's member template ids (each listed after it).
    pub members: Vec<String>,
}

/// Whether `rule` names an address or service template.
fn names_templates(rule: &crate::core::snapshot::Rule) -> bool {
    use crate::core::snapshot::EndpointKind;
    rule.source.kind == EndpointKind::Template
        || rule.destination.kind == EndpointKind::Template
        || rule.service_template.is_some()
}

/// The templates `rule` names, read from `snapshot`: each group followed by its members.
fn templates_of(
    snapshot: &crate::core::snapshot::Snapshot,
    rule: &crate::core::snapshot::Rule,
) -> Vec<TemplateView> {
    use crate::core::snapshot::EndpointKind;
    let mut views = Vec::new();
    let mut add = |side: &'static str, id: &str, address: bool| {
        let (groups, kinds) = if address {
            (
                &snapshot.address_template_groups,
                ("address_template_group", "address_template"),
            )
        } else {
            (
                &snapshot.service_template_groups,
                ("service_template_group", "service_template"),
            )
        };
        let members: Vec<String> = match groups.get(id) {
            Some(group) => {
                views.push(TemplateView {
                    side,
                    id: id.to_string(),
                    kind: kinds.0,
                    name: Some(group.name.clone()),
                    members: group.members.clone(),
                });
                group.members.clone()
            }
            None => vec![id.to_string()],
        };
        for member in members {
            let (name, items) = if address {
                snapshot
                    .address_templates
                    .get(&member)
                    .map(|t| (t.name.clone(), t.addresses.clone()))
                    .unzip()
            } else {
                snapshot
                    .service_templates
                    .get(&member)
                    .map(|t| (t.name.clone(), t.services.clone()))
                    .unzip()
            };
            views.push(TemplateView {
                side,
                id: member,
                kind: kinds.1,
                name,
                members: items.unwrap_or_default(),
            });
        }
    };
    for (side, endpoint) in [("source", &rule.source), ("destination", &rule.destination)] {
        if endpoint.kind == EndpointKind::Template {
            add(side, &endpoint.content, true);
        }
    }
    if let Some(id) = &rule.service_template {
        add("service", id, false);
    }
    views
}

/// Hit counters in the rules page.
#[derive(Debug, Serialize, ToSchema)]
pub struct HitCounts {
    /// Every hit.
    pub hits: u64,
    /// Hits as the deciding drop rule.
    pub block_hits: u64,
    /// Hits as an observe rule.
    pub observe_hits: u64,
    /// The first hit, Unix seconds.
    pub first_hit: Option<u64>,
    /// The last hit, Unix seconds.
    pub last_hit: Option<u64>,
}

/// A rule's hygiene finding in the rules page.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowHygiene {
    /// What was found.
    pub finding: Finding,
    /// The covering rules, as uuids.
    pub covering: Vec<String>,
    /// Why.
    pub detail: String,
}

/// One rule of the rules page.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleRow {
    /// Place in evaluation order, from 0.
    pub position: usize,
    /// Rule id.
    pub uuid: String,
    /// `OrderIndex`.
    pub order: u64,
    /// accept, drop or observe.
    pub action: crate::core::snapshot::RuleAction,
    /// Whether it is enabled.
    pub enabled: bool,
    /// New or old ESG.
    pub generation: crate::core::snapshot::Generation,
    /// Its description.
    pub description: String,
    /// Its hit counters in the window (null: no records store, or it failed).
    pub hits: Option<HitCounts>,
    /// Enabled with no hits in the window (null: no records store).
    pub unused: Option<bool>,
    /// Its hygiene finding (null: none, or not analysed).
    pub hygiene: Option<RowHygiene>,
    /// Whether the analysis reached it.
    pub hygiene_analysed: bool,
}

/// `GET /v1/rules`: a page of the rules in evaluation order, and the recent rule changes.
#[derive(Debug, Serialize, ToSchema)]
pub struct RulesPage {
    /// The rules of this page.
    pub rules: Vec<RuleRow>,
    /// Rules in the snapshot.
    pub total: usize,
    /// The first rule's position.
    pub offset: usize,
    /// Rules the filters keep (all of them without filters); `offset` and `next_offset` count
    /// within these.
    pub matched: usize,
    /// The next page's offset (null: last page).
    pub next_offset: Option<usize>,
    /// The hit counters' window, days (rounded up).
    pub days: i64,
    /// The window's start, Unix seconds.
    pub since: i64,
    /// The window's end, Unix seconds.
    pub until: i64,
    /// Why the hit counters are missing.
    pub hits_error: Option<String>,
    /// Rules analysed, from the top.
    pub hygiene_analysed: usize,
    /// Why the analysis stopped before the last rule (absent: it did not): its time, or its
    /// memory budget; the sync function's `rule_hygiene` records cover the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hygiene_stopped: Option<crate::core::engine::hygiene::Stopped>,
    /// The analysis of this snapshot has not ended yet (it runs once per snapshot, in the
    /// background): no rule is analysed in this answer; ask again.
    pub hygiene_pending: bool,
    /// `rule_change` records of the window, newest first (at most 100).
    #[schema(value_type = Option<Vec<Object>>)]
    pub changes: Option<Vec<Value>>,
    /// Why the changes are missing.
    pub changes_error: Option<String>,
    /// The snapshot the rules are read from.
    pub snapshot_version: String,
}

/// A rule of the top-rules answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopRule {
    /// The rule id the records name.
    pub rule_uuid: String,
    /// Its block hits.
    pub hits: u64,
    /// Its description (null: not in the current snapshot).
    pub description: Option<String>,
    /// Its `OrderIndex` (null: not in the current snapshot).
    pub order: Option<u64>,
}

/// `GET /v1/stats/top-rules`: the rules with the most block hits, most first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopRules {
    /// From, Unix seconds.
    pub since: i64,
    /// To, Unix seconds.
    pub until: i64,
    /// The window, hours.
    pub hours: i64,
    /// The rules.
    pub rules: Vec<TopRule>,
    /// The snapshot descriptions are read from.
    pub snapshot_version: String,
}
