//! The lookup API's requests, answers and query parameters as types: the routes read and
//! answer these, and `openapi.json` is generated from them ([`super::api`]). The parameter
//! structs describe what each route reads; the routes read their parameters by hand, strictly
//! (a parameter a route does not read is refused by name), and a test holds the two lists
//! equal.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::app::views::{ExplainView, RuleView};
use crate::core::engine::hygiene::Finding;
use crate::core::search::TrafficView;

/// Every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code (`unknown_parameter`, `unauthorized`, …).
    pub code: String,
    /// In words, naming the field or parameter at fault (500: only "internal error").
    pub message: String,
    /// The invocation's request id, for the function's logs.
    pub request_id: String,
}

/// `GET /v1/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// The esgflow version.
    pub version: &'static str,
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

/// A flow to explain (`POST /v1/explain`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlowQuery {
    /// The source address.
    pub src: String,
    /// The destination address.
    pub dst: String,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `any`, or a protocol number 0-255 (a string or a number).
    #[schema(value_type = String)]
    pub protocol: Value,
    /// The destination port (a number or a string); required for TCP and UDP.
    #[serde(default)]
    #[schema(value_type = Option<u16>)]
    pub port: Option<Value>,
    /// The ENI that recorded the flow, when known.
    #[serde(default)]
    pub eni: Option<String>,
    /// Describe every rule considered, not only those that matched.
    #[serde(default)]
    pub verbose: bool,
}

/// The body of `POST /v1/explain`: a batch of up to 1,000 flows, or one flow.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum ExplainBody {
    /// Up to 1,000 flows, each read as one flow is (a bad one is named by its index).
    Batch {
        /// The flows.
        #[schema(value_type = Vec<FlowQuery>, max_items = 1000)]
        flows: Vec<Value>,
    },
    /// One flow.
    #[schema(value_type = FlowQuery)]
    One(Value),
}

/// The answer of `POST /v1/explain`: one explanation, or one per flow of a batch (a batch's
/// answer is written out one explanation at a time, in this shape, to hold one in memory).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ExplainAnswer<'a> {
    /// One flow's explanation.
    One(Box<ExplainView<'a>>),
    /// A batch's explanations, in the order of its flows.
    Batch(ExplainBatch<'a>),
}

/// A batch's explanations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainBatch<'a> {
    /// The snapshot every flow was judged against.
    pub snapshot_version: &'a str,
    /// One explanation per flow (without `snapshot_version`).
    pub results: Vec<ExplainView<'a>>,
}

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
    /// The window, days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_days: Option<i64>,
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
    /// Its hit counters over the last 30 days.
    pub hits: RuleHits,
}

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
}

/// `GET /v1/traffic`: the traffic views of a VPC, a subnet or every VPC.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrafficAnswer {
    /// From, Unix seconds.
    pub since: i64,
    /// To, Unix seconds.
    pub until: i64,
    /// The time series' step, seconds.
    pub step: u32,
    /// The VPC asked for.
    pub vpc: Option<String>,
    /// The subnet asked for.
    pub subnet: Option<String>,
    /// The scope asked for.
    pub scope: Option<&'static str>,
    /// The peer kind asked for.
    pub peer: Option<&'static str>,
    /// The verdict asked for.
    pub fl_action: Option<&'static str>,
    /// The views.
    #[serde(flatten)]
    pub view: TrafficView,
    /// The CLS search of these traffic records (CQL), to paste into the CLS console.
    pub query: String,
}

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
    /// The next page's offset (null: last page).
    pub next_offset: Option<usize>,
    /// The hit counters' window, days.
    pub days: i64,
    /// Why the hit counters are missing.
    pub hits_error: Option<String>,
    /// Rules analysed, from the top.
    pub hygiene_analysed: usize,
    /// `rule_change` records of the window, newest first (at most 100).
    #[schema(value_type = Option<Vec<Object>>)]
    pub changes: Option<Vec<Value>>,
    /// Why the changes are missing.
    pub changes_error: Option<String>,
    /// The snapshot the rules are read from.
    pub snapshot_version: String,
}

/// A VPC's flow-log coverage: of its ENIs in the snapshot, how many recorded traffic in the last
/// hour (`available` false with a `reason` when there is no records store or it failed).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Coverage {
    /// Whether coverage could be read.
    pub available: bool,
    /// ENIs with traffic records in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enis_recording: Option<usize>,
    /// ENIs of the VPC in the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enis: Option<usize>,
    /// The window, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A subnet's id and name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubnetName {
    /// `subnet-…`.
    pub id: String,
    /// Its name, when the snapshot has one.
    pub name: Option<String>,
}

/// A VPC with its monitoring state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VpcState {
    /// VPC id.
    pub id: String,
    /// Its name, when the snapshot has one.
    pub name: Option<String>,
    /// Its subnets.
    pub subnets: usize,
    /// Its subnets' ids and names, by id.
    pub subnet_names: Vec<SubnetName>,
    /// Its ENIs.
    pub enis: usize,
    /// Whether audit judges flows touching it.
    pub monitored: bool,
    /// Its monitoring switch (null: none; the list applies).
    pub switch: Option<bool>,
    /// Whether the monitored VPC list covers it (every VPC when the list is empty).
    pub listed: bool,
    /// Its flow-log coverage.
    pub coverage: Coverage,
}

/// `GET /v1/vpcs`: every VPC of the snapshot with its monitoring state.
#[derive(Debug, Serialize, ToSchema)]
pub struct VpcsAnswer {
    /// The VPCs.
    pub vpcs: Vec<VpcState>,
    /// Ids the monitored list or a switch names that the snapshot has no VPC for.
    pub unknown: Vec<String>,
    /// Whether no monitored list is set (every VPC is listed).
    pub every_vpc_listed: bool,
    /// When a switch last changed, Unix seconds.
    pub switches_updated_at: Option<i64>,
    /// Why the switches could not be read.
    pub switches_error: Option<String>,
    /// Whether an admin token is configured.
    pub switches_writable: bool,
    /// How soon audit applies a change (its snapshot TTL).
    pub takes_effect_within_seconds: u64,
    /// The snapshot the VPCs are read from.
    pub snapshot_version: String,
}

/// The body of `PUT /v1/vpcs/{id}/monitoring`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SwitchRequest {
    /// On, off, or null: back to the monitored list.
    pub monitored: Option<bool>,
}

/// `PUT /v1/vpcs/{id}/monitoring`: the VPC's new state.
#[derive(Debug, Serialize, ToSchema)]
pub struct SwitchAnswer {
    /// The VPC.
    pub vpc: VpcState,
    /// How soon audit applies the change.
    pub takes_effect_within_seconds: u64,
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
