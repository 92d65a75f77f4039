//! The per-rule hit counters (`rule_hits` records) a batch adds up.

use super::*;

/// Counts one hit of `rule` by `flow`.
pub(super) fn count_hit(
    counters: &mut FastMap<RuleId, HitCounter>,
    rule: RuleId,
    flow: &FlowRecord,
    block: bool,
    observe: bool,
) {
    let counter = counters.entry(rule).or_insert_with(|| HitCounter {
        first: u64::MAX,
        ..HitCounter::default()
    });
    counter.hits += 1;
    counter.block_hits += u64::from(block);
    counter.observe_hits += u64::from(observe);
    counter.first = counter.first.min(flow.start);
    counter.last = counter.last.max(flow.end);
}

/// Hit counters per rule. Their ids include a fingerprint of the batch (its traffic record ids,
/// which cover every judged flow), so equal counts from two batches stay two records while a
/// retried batch writes the same ids.
pub(super) fn rule_hits(
    engine: &Engine,
    counters: FastMap<RuleId, HitCounter>,
    records: &mut Vec<Record>,
    id_prefixes: &[IdPrefix],
    version: &Arc<str>,
) {
    let mut fingerprint = RecordId::new("batch");
    for record in records
        .iter()
        .filter(|r| r.record_type() == RecordType::Traffic)
    {
        fingerprint.text(record.record_id());
    }
    let fingerprint = fingerprint.finish();
    let mut counters: Vec<(RuleId, HitCounter)> = counters.into_iter().collect();
    counters.sort_unstable_by_key(|(rule, _)| *rule);
    for (rule, counter) in counters {
        let compiled = engine.rule(rule);
        records.push(Record::RuleHits(Box::new(RuleHitsRecord {
            record_type: RecordType::RuleHits,
            record_id: RecordId::parts()
                .text(&compiled.rule.uuid)
                .text(&fingerprint)
                .finish_after(&id_prefixes[RecordType::RuleHits as usize]),
            time: counter.last,
            rule_uuid: compiled.rule.uuid.clone(),
            rule_action: compiled.rule.action,
            hits: counter.hits,
            block_hits: counter.block_hits,
            observe_hits: counter.observe_hits,
            first_hit: counter.first,
            last_hit: counter.last,
            snapshot_version: version.to_string(),
        })));
    }
}

/// The flow-log action in a record id: one byte instead of the word.
pub(super) fn action_code(action: FlowAction) -> u64 {
    match action {
        FlowAction::Accept => 0,
        FlowAction::Reject => 1,
    }
}

/// Hits of one rule in one batch.
#[derive(Default)]
pub(super) struct HitCounter {
    hits: u64,
    block_hits: u64,
    observe_hits: u64,
    first: u64,
    last: u64,
}
