//! Typed answers shared by the lookup API and the CLI: `esgflow explain --json` prints exactly
//! the [`ExplainView`] that `POST /v1/explain` answers for the same flow and snapshot.

use serde::Serialize;

use crate::core::engine::{
    DecisionKind, Detail, Engine, ExplanationStep, FlowKey, Location, RuleId, Scope, StepOutcome,
};
use crate::core::snapshot::{Generation, RuleAction};

/// A rule as answers show it: identity, action and what it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RuleView {
    /// Rule id.
    pub uuid: String,
    /// `OrderIndex`.
    pub order: u64,
    /// New or old ESG.
    pub generation: Generation,
    /// accept, drop or observe.
    pub action: RuleAction,
    /// The rule's description.
    pub description: String,
    /// Source kind and content (`net 10.0.0.0/8`, `template ipm-…`).
    pub source: String,
    /// Destination kind and content.
    pub destination: String,
    /// Protocols and ports (`TCP 3306,6379`).
    pub service: String,
}

impl RuleView {
    /// The rule at `id` in `engine`, described as records describe it.
    pub fn of(engine: &Engine, id: RuleId) -> Self {
        let described = crate::core::classify::describe_rule(engine, id);
        Self {
            uuid: described.rule_uuid,
            order: described.rule_order,
            generation: described.rule_generation,
            action: described.rule_action,
            description: described.rule_description,
            source: described.rule_source,
            destination: described.rule_destination,
            service: described.rule_service,
        }
    }
}

/// The explanation of one flow against one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Explanation)]
pub struct ExplainView<'a> {
    /// `allow`, `block` or `none`.
    pub decision: DecisionKind,
    /// The deciding rule.
    pub rule: Option<RuleView>,
    /// Observe rules that matched before the decision.
    pub observed: Vec<RuleView>,
    /// Rules before the decision that could not be judged.
    pub indeterminate: Vec<RuleView>,
    /// Traffic scope.
    pub scope: Scope,
    /// Where the source is.
    pub source: Location<'a>,
    /// Where the destination is.
    pub destination: Location<'a>,
    /// The rules described (all of them with [`Detail::Full`]; otherwise those that matched,
    /// are indeterminate or are disabled).
    pub steps: Vec<ExplanationStep>,
    /// Rules considered up to the decision.
    pub rules_considered: usize,
    /// Of those, rules that did not match.
    pub not_matched: usize,
    /// Of those, rules that matched.
    pub matched: usize,
    /// The snapshot judged against (absent on the items of a batch, which names it once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_version: Option<&'a str>,
}

impl<'a> ExplainView<'a> {
    /// Explains `flow` (seen on `eni`, if given) against `engine`.
    pub fn of(engine: &'a Engine, flow: &FlowKey, eni: Option<&str>, detail: Detail) -> Self {
        let explanation = engine.explain_with(flow, detail);
        let placement = engine.topology().place(flow.src, flow.dst, eni);
        let evaluation = &explanation.evaluation;
        let rules = |ids: &[RuleId]| ids.iter().map(|&r| RuleView::of(engine, r)).collect();
        let count = |outcome| {
            explanation
                .steps
                .iter()
                .filter(|s| s.outcome == outcome)
                .count()
        };
        let not_matched = explanation.not_matched;
        Self {
            decision: evaluation.decision.kind(),
            rule: evaluation.decision.rule().map(|r| RuleView::of(engine, r)),
            observed: rules(&evaluation.observed),
            indeterminate: rules(&evaluation.indeterminate),
            scope: placement.scope,
            source: placement.src,
            destination: placement.dst,
            rules_considered: explanation.steps.len() - count(StepOutcome::NotMatched)
                + not_matched,
            matched: count(StepOutcome::Matched),
            not_matched,
            steps: explanation.steps,
            snapshot_version: Some(engine.version()),
        }
    }
}
