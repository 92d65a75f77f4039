//! Classification: the flows of one batch judged against the engine and turned into ESG flow-log
//! records. No I/O: flows and an engine in, records and counts out.
//!
//! [`judge`] merges the records of one flow seen on both ENIs, skips flows outside the monitored
//! VPCs, tells replies from new connections, asks the engine which rule decides every flow, and
//! produces the hit records, the per-connection traffic aggregates and the per-rule hit counters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use compact_str::CompactString;
use serde::Serialize;

use crate::core::engine::{likely_reply, Decision, Engine, FlowKey, Placement, Scope};
use crate::core::flowlog::{FlowAction, FlowRecord};
use crate::core::records::{
    HitRecord, IdPrefix, Record, RecordId, RecordType, RuleHitsRecord, RuleRef, TrafficRecord,
};

/// What [`judge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JudgeStats {
    /// Distinct flows after merging the records of one flow seen on both ENIs.
    pub flows: usize,
    /// Records merged into a flow already seen in the batch.
    pub duplicates: usize,
    /// Flows that look like replies (not judged as new connections).
    pub replies: usize,
    /// Flows outside the monitored VPCs (skipped).
    pub unmonitored: usize,
    /// Records produced, by type.
    pub records: BTreeMap<RecordType, usize>,
    /// Distinct flows by scope.
    pub scopes: BTreeMap<&'static str, usize>,
}

/// Which VPCs are monitored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Monitored {
    /// Every VPC (the default).
    #[default]
    All,
    /// Only these VPC ids.
    Only(BTreeSet<String>),
}

impl Monitored {
    fn covers(&self, placement: &Placement<'_>) -> bool {
        match self {
            Monitored::All => true,
            Monitored::Only(vpcs) => [placement.src.vpc, placement.dst.vpc]
                .into_iter()
                .flatten()
                .any(|v| vpcs.contains(v)),
        }
    }
}

type FlowIdentity = (IpAddr, IpAddr, Option<u16>, Option<u16>, u8);

/// Merges the records of one flow seen on more than one ENI: same 5-tuple, overlapping windows.
/// REJECT wins (the ENI that rejected it is the interesting one), counters take the larger
/// value, the window the union.
fn merge_duplicates(flows: Vec<FlowRecord>) -> (Vec<FlowRecord>, usize) {
    let mut merged: Vec<FlowRecord> = Vec::with_capacity(flows.len());
    let mut seen: FastMap<FlowIdentity, SmallIndexes> =
        FastMap::with_capacity_and_hasher(flows.len(), Default::default());
    let mut duplicates = 0;
    for flow in flows {
        let identity = (
            flow.src,
            flow.dst,
            flow.src_port,
            flow.dst_port,
            flow.protocol,
        );
        let slots = seen.entry(identity).or_default();
        let existing = slots.iter().copied().find(|&i| {
            let other = &merged[i];
            flow.start <= other.end && other.start <= flow.end
        });
        match existing {
            Some(i) => {
                duplicates += 1;
                let kept = &mut merged[i];
                if flow.action == FlowAction::Reject && kept.action == FlowAction::Accept {
                    kept.action = FlowAction::Reject;
                    kept.eni = flow.eni;
                }
                kept.packets = kept.packets.max(flow.packets);
                kept.bytes = kept.bytes.max(flow.bytes);
                kept.start = kept.start.min(flow.start);
                kept.end = kept.end.max(flow.end);
            }
            None => {
                slots.push(merged.len());
                merged.push(flow);
            }
        }
    }
    (merged, duplicates)
}

type SmallIndexes = smallvec::SmallVec<[usize; 2]>;

/// The batch's hash maps: keyed by what flow logs carry, hashed with foldhash (randomly seeded
/// per process, so crafted traffic cannot aim for collisions) rather than SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct Aggregate {
    flows: u64,
    packets: u64,
    bytes: u64,
    first_seen: u64,
    last_seen: u64,
}

type TrafficKey<'e> = (
    Scope,
    Option<&'e str>,
    IpAddr,
    IpAddr,
    Option<u16>,
    u8,
    FlowAction,
);

/// The rule a record names, as the record shows it.
fn describe_rule(engine: &Engine, id: u32) -> RuleRef {
    let compiled = engine.rule(id);
    let rule = &compiled.rule;
    RuleRef {
        rule_uuid: rule.uuid.clone(),
        rule_order: rule.order,
        rule_generation: match rule.generation {
            crate::core::snapshot::Generation::New => "new",
            crate::core::snapshot::Generation::Old => "old",
        },
        rule_action: rule.action.as_str(),
        rule_description: rule.description.clone(),
        rule_source: format!("{} {}", rule.source.kind.as_str(), rule.source.content),
        rule_destination: format!(
            "{} {}",
            rule.destination.kind.as_str(),
            rule.destination.content
        ),
        rule_service: compiled.services_label.clone(),
    }
}

/// Judges parsed flows against the engine and produces the records.
pub fn judge(
    engine: &Engine,
    flows: Vec<FlowRecord>,
    monitored: &Monitored,
) -> (Vec<Record>, JudgeStats) {
    let (flows, duplicates) = merge_duplicates(flows);
    let version: Arc<str> = engine.version().into();
    let mut stats = JudgeStats {
        flows: flows.len(),
        duplicates,
        ..JudgeStats::default()
    };
    let mut records = Vec::with_capacity(flows.len() / 2);
    // Record ids start from the record kind and the snapshot version, hashed once per batch.
    let id_prefixes = RecordType::ALL.map(|kind| IdPrefix::new(kind.as_str(), &version));
    let mut scope_counts = [0usize; Scope::ALL.len()];
    // Traffic aggregates in the order their first flow came in the batch (deterministic for a
    // given batch, so a retry writes the same records in the same order), found by key.
    let mut traffic: Vec<(TrafficKey<'_>, Aggregate)> = Vec::with_capacity(flows.len());
    let mut traffic_slots: FastMap<TrafficKey<'_>, usize> =
        FastMap::with_capacity_and_hasher(flows.len(), Default::default());
    // Rules named by records are described once per batch, then cloned.
    let mut rule_refs: FastMap<u32, Arc<RuleRef>> = FastMap::default();
    let mut counters: FastMap<u32, HitCounter> = FastMap::default();
    let mut rule_ref = |id: u32| {
        rule_refs
            .entry(id)
            .or_insert_with(|| Arc::new(describe_rule(engine, id)))
            .clone()
    };
    for flow in &flows {
        let placement = engine.topology().place(flow.src, flow.dst, Some(&flow.eni));
        if !monitored.covers(&placement) {
            stats.unmonitored += 1;
            continue;
        }
        scope_counts[placement.scope as usize] += 1;
        let reply = likely_reply(flow);
        stats.replies += usize::from(reply);
        // Traffic, with replies folded into their connection (initiator → service port).
        let (src, dst, port) = if reply {
            (flow.dst, flow.src, flow.src_port)
        } else {
            (flow.src, flow.dst, flow.dst_port)
        };
        let vpc = placement.src.vpc.or(placement.dst.vpc);
        let key = (
            placement.scope,
            vpc,
            src,
            dst,
            port,
            flow.protocol,
            flow.action,
        );
        let slot = *traffic_slots.entry(key).or_insert_with(|| {
            let aggregate = Aggregate {
                first_seen: u64::MAX,
                ..Aggregate::default()
            };
            traffic.push((key, aggregate));
            traffic.len() - 1
        });
        let aggregate = &mut traffic[slot].1;
        aggregate.flows += 1;
        aggregate.packets += flow.packets.unwrap_or(0);
        aggregate.bytes += flow.bytes.unwrap_or(0);
        aggregate.first_seen = aggregate.first_seen.min(flow.start);
        aggregate.last_seen = aggregate.last_seen.max(flow.end);

        let evaluation = if reply {
            None
        } else {
            Some(engine.evaluate(&FlowKey::of(flow)))
        };
        let decision = evaluation.as_ref().map_or(Decision::None, |e| e.decision);
        if let Some(evaluation) = &evaluation {
            let mut count = |rule: u32, block: bool, observe: bool| {
                let counter = counters.entry(rule).or_insert_with(|| HitCounter {
                    first: u64::MAX,
                    ..HitCounter::default()
                });
                counter.hits += 1;
                counter.block_hits += u64::from(block);
                counter.observe_hits += u64::from(observe);
                counter.first = counter.first.min(flow.start);
                counter.last = counter.last.max(flow.end);
            };
            if let Some(rule) = decision.rule() {
                let blocked =
                    matches!(decision, Decision::Block { .. }) && flow.action == FlowAction::Reject;
                count(rule, blocked, false);
            }
            for &observed in &evaluation.observed {
                count(observed, false, true);
            }
        }
        let indeterminate = evaluation
            .as_ref()
            .filter(|e| !e.indeterminate.is_empty())
            .map(|e| {
                e.indeterminate
                    .iter()
                    .map(|&r| engine.rule(r).rule.uuid.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            });
        let mut hit = |record_type: RecordType,
                       rule: Option<u32>,
                       reason: Option<&'static str>,
                       deciding: Option<CompactString>| {
            let rule = rule.map(&mut rule_ref);
            let uuid = rule.as_ref().map_or("", |r| r.rule_uuid.as_str());
            HitRecord {
                record_id: RecordId::parts()
                    .text(&flow.eni)
                    .ip(flow.src)
                    .number(flow.src_port.map_or(0, u64::from))
                    .ip(flow.dst)
                    .number(flow.dst_port.map_or(0, u64::from))
                    .number(u64::from(flow.protocol))
                    .number(flow.start)
                    .number(flow.end)
                    .text(uuid)
                    .finish_after(&id_prefixes[record_type as usize]),
                record_type,
                time: flow.end,
                start: flow.start,
                end: flow.end,
                account_id: flow.account_id.clone(),
                eni: flow.eni.clone(),
                direction: match placement.direction {
                    crate::core::engine::Direction::Ingress => "ingress",
                    crate::core::engine::Direction::Egress => "egress",
                    crate::core::engine::Direction::Unknown => "unknown",
                },
                src_ip: flow.src,
                src_port: flow.src_port,
                dst_ip: flow.dst,
                dst_port: flow.dst_port,
                protocol: flow.protocol,
                icmp_type: flow.icmp.map(|i| i.kind),
                icmp_code: flow.icmp.map(|i| i.code),
                fl_action: flow.action.as_str(),
                packets: flow.packets,
                bytes: flow.bytes,
                scope: placement.scope.as_str(),
                src_vpc: placement.src.vpc.map(CompactString::from),
                src_subnet: placement.src.subnet.map(CompactString::from),
                src_instance: placement.src.instance.map(CompactString::from),
                dst_vpc: placement.dst.vpc.map(CompactString::from),
                dst_subnet: placement.dst.subnet.map(CompactString::from),
                dst_instance: placement.dst.instance.map(CompactString::from),
                decision: match decision {
                    Decision::Allow { .. } => "allow",
                    Decision::Block { .. } => "block",
                    Decision::None => "none",
                },
                rule,
                deciding_rule_uuid: deciding,
                reason,
                indeterminate_rules: indeterminate.clone(),
                snapshot_version: version.clone(),
            }
        };
        if let Some(evaluation) = &evaluation {
            let deciding = decision
                .rule()
                .map(|r| CompactString::from(engine.rule(r).rule.uuid.as_str()));
            for &observed in &evaluation.observed {
                records.push(Record::hit(hit(
                    RecordType::ObserveHit,
                    Some(observed),
                    None,
                    deciding.clone(),
                )));
            }
        }
        match (flow.action, decision, reply) {
            (FlowAction::Reject, Decision::Block { rule }, _) => records.push(Record::hit(hit(
                RecordType::BlockHit,
                Some(rule),
                None,
                None,
            ))),
            (FlowAction::Reject, _, true) => records.push(Record::hit(hit(
                RecordType::UnattributedBlock,
                None,
                Some("reply"),
                None,
            ))),
            (FlowAction::Reject, Decision::Allow { rule }, _) => records.push(Record::hit(hit(
                RecordType::UnattributedBlock,
                Some(rule),
                Some("esg_allows"),
                None,
            ))),
            (FlowAction::Reject, Decision::None, _) => records.push(Record::hit(hit(
                RecordType::UnattributedBlock,
                None,
                Some("no_esg_rule"),
                None,
            ))),
            (FlowAction::Accept, Decision::Block { rule }, false) => {
                records.push(Record::hit(hit(
                    RecordType::SnapshotDrift,
                    Some(rule),
                    Some("esg_blocks"),
                    None,
                )))
            }
            (FlowAction::Accept, _, _) => {}
        }
    }
    records.reserve_exact(traffic.len() + counters.len());
    for ((scope, vpc, src, dst, port, protocol, action), aggregate) in traffic {
        let scope = scope.as_str();
        records.push(Record::Traffic(TrafficRecord {
            record_type: RecordType::Traffic,
            record_id: RecordId::parts()
                .text(scope)
                .text(vpc.unwrap_or(""))
                .ip(src)
                .ip(dst)
                .number(port.map_or(0, u64::from))
                .number(u64::from(protocol))
                .number(action_code(action))
                .number(aggregate.first_seen)
                .number(aggregate.last_seen)
                .number(aggregate.flows)
                .finish_after(&id_prefixes[RecordType::Traffic as usize]),
            time: aggregate.last_seen,
            scope,
            vpc: vpc.map(CompactString::from),
            src_ip: src,
            dst_ip: dst,
            dst_port: port,
            protocol,
            fl_action: action.as_str(),
            flows: aggregate.flows,
            packets: aggregate.packets,
            bytes: aggregate.bytes,
            first_seen: aggregate.first_seen,
            last_seen: aggregate.last_seen,
            snapshot_version: version.clone(),
        }));
    }
    // Hit counters per rule. Their ids include a fingerprint of the batch (its traffic record
    // ids, which cover every judged flow), so equal counts from two batches stay two records while
    // a retried batch writes the same ids.
    let mut fingerprint = RecordId::new("batch");
    for record in records
        .iter()
        .filter(|r| r.record_type() == RecordType::Traffic)
    {
        fingerprint.text(record.record_id());
    }
    let fingerprint = fingerprint.finish();
    let mut counters: Vec<(u32, HitCounter)> = counters.into_iter().collect();
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
            rule_action: compiled.rule.action.as_str(),
            hits: counter.hits,
            block_hits: counter.block_hits,
            observe_hits: counter.observe_hits,
            first_hit: counter.first,
            last_hit: counter.last,
            snapshot_version: version.to_string(),
        })));
    }
    // Counted in arrays in the loops, kept as named maps in the report.
    let mut type_counts = [0usize; RecordType::ALL.len()];
    for record in &records {
        type_counts[record.record_type() as usize] += 1;
    }
    stats.records = RecordType::ALL
        .into_iter()
        .zip(type_counts)
        .filter(|&(_, n)| n > 0)
        .collect();
    stats.scopes = Scope::ALL
        .into_iter()
        .zip(scope_counts)
        .filter(|&(_, n)| n > 0)
        .map(|(scope, n)| (scope.as_str(), n))
        .collect();
    (records, stats)
}

/// The flow-log action in a record id: one byte instead of the word.
fn action_code(action: FlowAction) -> u64 {
    match action {
        FlowAction::Accept => 0,
        FlowAction::Reject => 1,
    }
}

/// Hits of one rule in one batch.
#[derive(Default)]
struct HitCounter {
    hits: u64,
    block_hits: u64,
    observe_hits: u64,
    first: u64,
    last: u64,
}
