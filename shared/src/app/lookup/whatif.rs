//! `POST /v1/whatif`, `GET /v1/whatif/observe` and `GET /v1/whatif/tighten`: proposed edits to
//! the rules judged against the conversations the records store holds for a window. The answer
//! types are public: `esgflow whatif --json` prints the same.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;

use super::request::{body_json, Answer};
use super::*;
use crate::core::search::TrafficFilter;
use crate::core::whatif::{self, Edit, Report};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Most conversations one what-if judges: the records store gives the largest first.
pub const MAX_CONVERSATIONS: usize = 200_000;

/// Most changed conversations an answer lists (each class is summed whole).
pub(crate) const MAX_LISTED: u32 = 1000;

/// Most edits one proposal holds.
pub(crate) const MAX_EDITS: usize = 200;

/// `POST /v1/whatif`.
#[utoipa::path(post, path = "/v1/whatif", tag = "lookup",
    summary = "What proposed rule edits would do to the traffic the records hold",
    description = "The conversations of the window (traffic records summed by initiator, service end, port, protocol and scope; the largest first, at most 200,000) judged with the current rules and with the edits applied: every conversation whose outcome changes, in classes, and the unchanged ones counted.",
    params(WhatIfParams),
    request_body = WhatIfBody,
    responses(
        (status = 200, description = "the report", body = WhatIfAnswer),
        (status = 400, description = "a parameter, the body or an edit is invalid (the message names it, an edit by its position)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not POST", body = ErrorBody),
        (status = 413, description = "the body is over the cap, or the answer would not fit (`answer_too_large`)", body = ErrorBody),
        (status = 502, description = "the records store failed", body = ErrorBody),
        (status = 503, description = "no snapshot, or no records store", body = ErrorBody),
    ))]
pub(crate) async fn what_if(
    State(lookup): State<Lookup>,
    call: Invocation,
    Query(params): Query<WhatIfParams>,
    body: Bytes,
) -> Answer<WhatIfAnswer> {
    lookup
        .what_if(&params, &body, call.deadline)
        .await
        .map(Json)
}

/// `GET /v1/whatif/observe`.
#[utoipa::path(get, path = "/v1/whatif/observe", tag = "lookup",
    summary = "What each observe rule would block if it were a drop rule",
    description = "For every enabled observe rule, the window's conversations it matches before their decision, and of those the ones it would newly block as a drop rule (no drop rule decides them now), with their flows, bytes and top parties: the what-if of setting it to drop, for every observe rule at once.",
    params(ObserveParams),
    responses(
        (status = 200, description = "one entry per observe rule, in evaluation order", body = ObserveAnswer),
        (status = 400, description = "a parameter is invalid (the message names it)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody),
        (status = 502, description = "the records store failed", body = ErrorBody),
        (status = 503, description = "no snapshot, or no records store", body = ErrorBody),
    ))]
pub(crate) async fn observe_as_drop(
    State(lookup): State<Lookup>,
    call: Invocation,
    Query(params): Query<ObserveParams>,
) -> Answer<ObserveAnswer> {
    let filter = conversations_of(&params.since, &params.until, &params.vpc)?;
    let store = lookup.store()?;
    let engine = lookup.engine(call.deadline).await?;
    let conversations = read_conversations(store, &filter, call.deadline).await?;
    Ok(Json(ObserveAnswer {
        judged: Judged::of(&filter, &engine, &conversations),
        rules: whatif::promotions(&engine, &conversations.rows),
    }))
}

/// `GET /v1/whatif/tighten`.
#[utoipa::path(get, path = "/v1/whatif/tighten", tag = "lookup",
    summary = "A narrower rule that keeps every conversation an accept or drop rule decided",
    description = "The conversations of the window the rule decided, their distinct sources, destinations and services against the rule's own terms, and a `match` edit listing them (or their /24 and /64 networks when there are many), checked by the what-if over the same conversations to change nothing (`changes`: 0).",
    params(TightenParams),
    responses(
        (status = 200, description = "the suggestion", body = TightenAnswer),
        (status = 400, description = "a parameter is invalid, or the rule is not an accept or drop rule (the message names it)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 404, description = "no such rule", body = ErrorBody), (status = 405, description = "not GET", body = ErrorBody),
        (status = 502, description = "the records store failed", body = ErrorBody),
        (status = 503, description = "no snapshot, or no records store", body = ErrorBody),
    ))]
pub(crate) async fn tighten(
    State(lookup): State<Lookup>,
    call: Invocation,
    Query(params): Query<TightenParams>,
) -> Answer<TightenAnswer> {
    let filter = conversations_of(&params.since, &params.until, &params.vpc)?;
    let uuid = params
        .rule
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| field_error("rule", "a rule uuid is required"))?;
    let store = lookup.store()?;
    let (engine, snapshot) = lookup.served_snapshot(call.deadline).await?;
    if !engine.rules().iter().any(|r| r.rule.uuid == uuid) {
        return Err(fail(
            404,
            "unknown_rule",
            format!("the snapshot has no rule {}", shown(uuid)),
        ));
    }
    let conversations = read_conversations(store, &filter, call.deadline).await?;
    let tightening = whatif::tighten(&snapshot, &engine, uuid, &conversations.rows)
        .map_err(|message| field_error("rule", message))?;
    Ok(Json(TightenAnswer {
        judged: Judged::of(&filter, &engine, &conversations),
        tightening,
    }))
}

/// The query parameters of `/v1/whatif/tighten`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TightenParams {
    /// The rule's uuid (an accept or drop rule).
    pub(crate) rule: Option<String>,
    /// A VPC id: conversations with either end in it.
    pub(crate) vpc: Option<String>,
    /// From (Unix seconds or RFC 3339); default: an hour before `until`.
    pub(crate) since: Option<String>,
    /// To (Unix seconds or RFC 3339); default: now. The span may be at most 30 days.
    pub(crate) until: Option<String>,
}

super::request::query_params!(TightenParams);

/// `GET /v1/whatif/tighten`: the suggestion for one rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct TightenAnswer {
    /// What was judged.
    #[serde(flatten)]
    pub judged: Judged,
    /// The suggestion.
    #[serde(flatten)]
    pub tightening: whatif::Tightening,
}

/// The window, the snapshot and the conversations a what-if view judged.
#[derive(Debug, Serialize, ToSchema)]
pub struct Judged {
    /// From, Unix seconds.
    pub since: i64,
    /// To, Unix seconds.
    pub until: i64,
    /// The VPC asked for.
    pub vpc: Option<String>,
    /// The snapshot judged with.
    pub snapshot_version: String,
    /// Conversations judged.
    pub judged: u64,
    /// Whether they were every conversation of the window (false: the 200,000 with the most
    /// bytes, or as many as the store gave before the deadline).
    pub complete: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<String>,
}

impl Judged {
    /// What `conversations` of `filter`, judged with `engine`, were.
    pub fn of(
        filter: &TrafficFilter,
        engine: &Engine,
        conversations: &crate::core::search::Conversations,
    ) -> Self {
        Judged {
            since: filter.since,
            until: filter.until,
            vpc: filter.vpc.clone(),
            snapshot_version: engine.version().to_string(),
            judged: conversations.rows.len() as u64,
            complete: conversations.complete,
            cut: (!conversations.complete).then(|| cut(conversations)),
        }
    }
}

/// The window's conversations, read within two thirds of the time left (the judging takes the
/// rest): the largest ones so far when the store is slower than that.
pub(crate) async fn read_conversations(
    store: &dyn RecordsStore,
    filter: &TrafficFilter,
    deadline: Instant,
) -> Result<crate::core::search::Conversations, Failure> {
    let now = Instant::now();
    let read_by = now + deadline.saturating_duration_since(now) * 2 / 3;
    store
        .conversations(filter, MAX_CONVERSATIONS, read_by)
        .await
        .map_err(|failure| search_failed(failure, "the records search expired: ask again"))
}

/// Why `conversations` are not every conversation of the window.
pub fn cut(conversations: &crate::core::search::Conversations) -> String {
    let n = conversations.rows.len();
    if conversations.cut_by_deadline {
        format!("the records store gave the {n} conversations with the most bytes before the deadline: narrow the window or name a VPC to judge them all")
    } else {
        format!("the window holds more than {n} conversations: the {n} with the most bytes were judged; narrow the window or name a VPC")
    }
}

/// The conversations a what-if reads: the window (`since`, `until`) and the VPC asked for.
fn conversations_of(
    since: &Option<String>,
    until: &Option<String>,
    vpc: &Option<String>,
) -> Result<TrafficFilter, Failure> {
    let (since, until) = window(
        since.as_deref(),
        until.as_deref(),
        chrono::Utc::now().timestamp(),
    )?;
    let mut filter = TrafficFilter::new(since, until);
    filter.vpc = search_id("vpc", vpc.as_deref(), "a VPC id")?;
    Ok(filter)
}

/// The query parameters of `/v1/whatif/observe`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ObserveParams {
    /// A VPC id: conversations with either end in it.
    pub(crate) vpc: Option<String>,
    /// From (Unix seconds or RFC 3339); default: an hour before `until`.
    pub(crate) since: Option<String>,
    /// To (Unix seconds or RFC 3339); default: now. The span may be at most 30 days.
    pub(crate) until: Option<String>,
}

super::request::query_params!(ObserveParams);

/// `GET /v1/whatif/observe`: each observe rule promoted in thought.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObserveAnswer {
    /// What was judged.
    #[serde(flatten)]
    pub judged: Judged,
    /// Each enabled observe rule, in evaluation order.
    pub rules: Vec<whatif::Promotion>,
}

impl Lookup {
    /// The engine the lookup serves and its snapshot, read again from the store: what an edit
    /// changes.
    pub(crate) async fn served_snapshot(
        &self,
        deadline: Instant,
    ) -> Result<(std::sync::Arc<Engine>, crate::core::snapshot::Snapshot), Failure> {
        let current = self.engine(deadline).await?;
        let snapshot = self
            .snapshots
            .lock()
            .await
            .snapshot_of_version(current.version(), deadline)
            .await
            .map_err(|err| fail(503, "snapshot_unavailable", err.to_string()))?
            .ok_or_else(|| {
                fail(
                    503,
                    "snapshot_unavailable",
                    format!(
                        "the store no longer keeps snapshot {}: ask again",
                        current.version()
                    ),
                )
            })?;
        Ok((current, snapshot))
    }

    /// Judges the window's conversations with the current rules and with the body's edits.
    pub(crate) async fn what_if(
        &self,
        params: &WhatIfParams,
        body: &[u8],
        deadline: Instant,
    ) -> Result<WhatIfAnswer, Failure> {
        let filter = conversations_of(&params.since, &params.until, &params.vpc)?;
        let (since, until) = (filter.since, filter.until);
        let listed = whole_number(
            "limit",
            params.limit.as_deref(),
            100,
            1..=i64::from(MAX_LISTED),
        )? as u32;
        let proposal: WhatIfBody = body_json(
            body,
            "invalid_body",
            ": send {\"edits\": [{\"op\": \"remove\", \"rule\": \"…\"}, …]}",
        )?;
        if proposal.edits.len() > MAX_EDITS {
            return Err(field_error(
                "edits",
                format!("{} edits, more than {MAX_EDITS}", proposal.edits.len()),
            ));
        }
        let store = self.store()?;
        let (current, snapshot) = self.served_snapshot(deadline).await?;
        let proposed = whatif::apply_to(snapshot, &proposal.edits)
            .map_err(|message| fail(400, "invalid_edit", message))?;
        let proposed_engine = Engine::compile_owned(proposed).map_err(|e| {
            fail(
                400,
                "invalid_edit",
                format!("the edited rules do not compile: {e}"),
            )
        })?;
        let conversations = read_conversations(store, &filter, deadline).await?;
        let mut report = whatif::compare(
            &current,
            &proposed_engine,
            &conversations.rows,
            listed as usize,
        );
        if !conversations.complete {
            report.complete = false;
            report.cut = Some(cut(&conversations));
        }
        Ok(WhatIfAnswer {
            since,
            until,
            vpc: filter.vpc,
            snapshot_version: current.version().to_string(),
            proposed_version: proposed_engine.version().to_string(),
            edits: proposal.edits,
            report,
        })
    }
}

/// The query parameters of `/v1/whatif`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WhatIfParams {
    /// A VPC id: conversations with either end in it.
    pub(crate) vpc: Option<String>,
    /// From (Unix seconds or RFC 3339); default: an hour before `until`.
    pub(crate) since: Option<String>,
    /// To (Unix seconds or RFC 3339); default: now. The span may be at most 30 days.
    pub(crate) until: Option<String>,
    /// Changed conversations listed, 1-1000 (default 100); every class is summed whole.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<String>,
}

super::request::query_params!(WhatIfParams);

/// The body of `POST /v1/whatif`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatIfBody {
    /// The edits, applied in order to the current rules (at most 200; none: the current rules
    /// themselves, which change nothing).
    #[serde(default)]
    pub edits: Vec<Edit>,
}

/// `POST /v1/whatif`: the report.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhatIfAnswer {
    /// From, Unix seconds.
    pub since: i64,
    /// To, Unix seconds.
    pub until: i64,
    /// The VPC asked for.
    pub vpc: Option<String>,
    /// The current snapshot.
    pub snapshot_version: String,
    /// The version the edited rules would have.
    pub proposed_version: String,
    /// The edits, as applied.
    pub edits: Vec<Edit>,
    /// What changes.
    #[serde(flatten)]
    pub report: Report,
}
