//! The batch pipeline of the audit function: a CLS trigger event in, ESG flow-log records and a
//! batch report out.
//!
//! [`parse_batch`] decodes the batch and parses every record, counting what it could not use by
//! reason (with a few samples of each, so an operator can see what went wrong without fetching
//! the batch). One bad record never fails the batch; only an event that cannot be decoded at all
//! does, so that SCF retries it and the failure is visible. [`judge`] then merges the records of
//! one flow seen on both ENIs, judges every flow against the engine and produces the records.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use compact_str::CompactString;
use serde::Serialize;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use std::time::SystemTime;

use crate::alert::channel::{DispatchReport, Dispatcher};
use crate::alert::{AlertState, MemoryState, RedisState};
use crate::config::AuditConfig;
use crate::sink::{RecordSink, SinkError, Written};
use crate::snapshot::cache::{SnapshotCache, SnapshotUnavailable};

use crate::engine::{likely_reply, Decision, Engine, FlowKey, Placement, Scope};
use crate::events::{scan, ClsTriggerEvent, DecodeError, DecodeLimits, DecodedBatch};
use crate::flowlog::{self, FlowAction, FlowRecord, Parsed, SkipReason};
use crate::records::{
    HitRecord, IdPrefix, Record, RecordId, RecordType, RuleHitsRecord, RuleRef, TrafficRecord,
};
use crate::runtime::Diagnostic;

/// Time kept back from the deadline while loading the snapshot.
pub const SNAPSHOT_LOAD_MARGIN: Duration = Duration::from_millis(1000);

/// How many sample records are kept per skip reason.
pub const SAMPLES_PER_REASON: usize = 3;
/// Longest excerpt of a bad record kept in a sample.
pub const SAMPLE_EXCERPT_CHARS: usize = 200;

/// What one invocation did with its batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    /// `topic_id` of the batch.
    pub topic_id: String,
    /// Records in the batch.
    pub records_in: usize,
    /// Records parsed into flows.
    pub parsed: usize,
    /// NODATA records (no traffic in the window), counted and not evaluated.
    pub nodata: usize,
    /// SKIPDATA records (the platform skipped records), counted and not evaluated.
    pub skipdata: usize,
    /// Records skipped, by reason.
    pub skipped: BTreeMap<SkipReason, usize>,
    /// A few skipped records per reason.
    pub samples: Vec<SkipSample>,
}

/// One skipped record, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkipSample {
    /// Position in the batch.
    pub index: usize,
    /// Why it was skipped.
    pub reason: SkipReason,
    /// The parser's message.
    pub message: String,
    /// The start of the record's content.
    pub excerpt: String,
}

/// Why a batch could not be processed; the invocation fails and SCF retries the batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The CLS event could not be decoded.
    #[error("the CLS event could not be decoded: {0}")]
    Decode(#[from] DecodeError),
    /// No rule snapshot is available.
    #[error(transparent)]
    Snapshot(#[from] SnapshotUnavailable),
    /// The records could not be written.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl From<AuditError> for Diagnostic {
    fn from(err: AuditError) -> Self {
        let kind = match err {
            AuditError::Decode(_) => "InvalidBatch",
            AuditError::Snapshot(_) => "SnapshotUnavailable",
            AuditError::Sink(_) => "SinkError",
        };
        Diagnostic::new(kind, err.to_string())
    }
}

/// The audit function's answer to one invocation.
#[derive(Debug, Clone, Serialize)]
pub struct InvocationSummary {
    /// Decoding and parsing.
    #[serde(flatten)]
    pub batch: BatchReport,
    /// Judging.
    #[serde(flatten)]
    pub judged: JudgeStats,
    /// Where records went.
    pub sink: String,
    /// Records written per destination (topic).
    pub written: Written,
    /// Alert messages sent (all channels).
    pub alerts_sent: usize,
    /// Alerting in detail: alerts formed, held back by cooldown, sent, rate-limited and failed
    /// per channel.
    pub alerts: DispatchReport,
    /// The snapshot the batch was judged against.
    pub snapshot_version: String,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

/// The audit function: configuration, the cached snapshot and the sink, kept across the
/// invocations of a warm instance.
pub struct AuditFunction {
    config: AuditConfig,
    snapshots: tokio::sync::Mutex<SnapshotCache>,
    sink: Box<dyn RecordSink>,
    alerts: tokio::sync::Mutex<Dispatcher>,
}

impl AuditFunction {
    /// Builds the function with the sink its configuration names.
    pub fn new(config: AuditConfig) -> Result<Self, SinkError> {
        let sink = config.sink.open()?;
        Ok(Self::with_sink(config, sink))
    }

    /// Builds the function with a given sink (tests).
    pub fn with_sink(config: AuditConfig, sink: Box<dyn RecordSink>) -> Self {
        let snapshots = tokio::sync::Mutex::new(config.snapshot.cache(config.snapshot_ttl));
        let state: Box<dyn AlertState> = match config.alerts.redis.as_deref().map(RedisState::new) {
            Some(Ok(redis)) => Box::new(redis),
            Some(Err(error)) => {
                tracing::error!(%error, "ESGFLOW_ALERT_STATE unusable; keeping cooldown state in memory");
                Box::new(MemoryState::default())
            }
            None => Box::new(MemoryState::default()),
        };
        let alerts = Dispatcher::new(
            config.alerts.policy.clone(),
            config.alerts.channels.clone(),
            state,
        );
        Self {
            config,
            snapshots,
            sink,
            alerts: tokio::sync::Mutex::new(alerts),
        }
    }

    /// Loads the snapshot ahead of the first invocation (cold start). A failure is logged; the
    /// first invocation tries again and fails with the error if it persists.
    pub async fn warm_up(&self) {
        if let Err(err) = self.engine(Instant::now() + Duration::from_secs(5)).await {
            tracing::error!(error = %err, "rule snapshot not loaded at start-up");
        }
    }

    async fn engine(&self, deadline: Instant) -> Result<Arc<Engine>, SnapshotUnavailable> {
        self.snapshots
            .lock()
            .await
            .engine_by(Instant::now(), deadline)
            .await
    }

    /// Handles one CLS batch: decode, parse, judge, write; fails (so SCF retries) if the batch
    /// cannot be decoded, no snapshot is available, or the records cannot be written.
    pub async fn handle(
        &self,
        event: &ClsTriggerEvent,
        deadline: Instant,
    ) -> Result<InvocationSummary, AuditError> {
        let started = Instant::now();
        let (batch, flows) = parse_batch(event, &self.config.decode_limits)?;
        // Loading the snapshot leaves time to write and to report: it never runs to the deadline.
        let load_by = deadline
            .checked_sub(SNAPSHOT_LOAD_MARGIN)
            .unwrap_or(deadline)
            .max(Instant::now());
        let engine = self.engine(load_by).await?;
        let (records, judged) = judge(&engine, flows, &self.config.monitored);
        let written = if records.is_empty() {
            Written::new()
        } else {
            self.sink.write(&records, deadline).await?
        };
        // Alerts go out only once the records are safely written; a failing channel is counted,
        // never fatal.
        let alerts = self
            .alerts
            .lock()
            .await
            .dispatch(&records, SystemTime::now(), deadline)
            .await;
        Ok(InvocationSummary {
            batch,
            judged,
            sink: self.sink.describe(),
            written,
            alerts_sent: alerts.sent_total(),
            alerts,
            snapshot_version: engine.version().to_string(),
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// Decodes the event and parses every record; returns the report and the parsed flows.
///
/// A batch in the plain shape CLS ships goes through [`events::scan`](crate::events::scan) and
/// [`flowlog::read_embedded`], which read each record's content where it lies; any other batch
/// (and one that is not valid UTF-8) through serde_json, record by record. Both give the same
/// answer for a batch the fast path takes.
pub fn parse_batch(
    event: &ClsTriggerEvent,
    limits: &DecodeLimits,
) -> Result<(BatchReport, Vec<FlowRecord>), AuditError> {
    let decoded = event.decompress(limits)?;
    match parse_scanned(&decoded, limits) {
        Some(parsed) => Ok(parsed),
        None => parse_general(&decoded, limits),
    }
}

/// The fast path of [`parse_batch`], or `None` when the batch is not in the plain shape.
pub(crate) fn parse_scanned(
    decoded: &[u8],
    limits: &DecodeLimits,
) -> Option<(BatchReport, Vec<FlowRecord>)> {
    let text = std::str::from_utf8(decoded).ok()?;
    // Each content is parsed as soon as it is read and tallied at once: no list of records.
    // Flow-log contents run to some 300-400 bytes each: room for every record without regrowing.
    let mut tally = Tally::new("", text.len() / 256);
    let mut index = 0;
    let batch = scan(text, limits.max_records, flowlog::read_embedded, |record| {
        // A content the reader did not take is read as `parse` reads any content.
        let parsed = match record.read {
            Some(parsed) => parsed,
            None => flowlog::parse(&record.content.unescape()),
        };
        match parsed {
            Ok(parsed) => tally.parsed(parsed),
            Err(err) => tally.skip(index, err, &record.content.unescape()),
        }
        index += 1;
    })?;
    tally.report.topic_id = batch.topic_id.to_string();
    tally.report.records_in = batch.records;
    Some(tally.finish())
}

/// The general path of [`parse_batch`]: serde_json, record by record.
pub(crate) fn parse_general(
    decoded: &[u8],
    limits: &DecodeLimits,
) -> Result<(BatchReport, Vec<FlowRecord>), AuditError> {
    let repaired: String;
    let batch = match DecodedBatch::parse(decoded, limits) {
        Ok(batch) => batch,
        // Invalid UTF-8 in one record must not cost the whole batch: replace the bad bytes
        // (U+FFFD) and parse again; the damaged record then fails its own parse and is counted.
        Err(DecodeError::Json { .. }) if std::str::from_utf8(decoded).is_err() => {
            repaired = String::from_utf8_lossy(decoded).into_owned();
            DecodedBatch::parse(repaired.as_bytes(), limits)?
        }
        Err(err) => return Err(err.into()),
    };
    let mut tally = Tally::new(&batch.topic_id, batch.records.len());
    for (index, record) in batch.records.iter().enumerate() {
        match record {
            Ok(record) => match flowlog::parse(&record.content) {
                Ok(parsed) => tally.parsed(parsed),
                Err(err) => tally.skip(index, err, &record.content),
            },
            Err(err) => {
                let err = flowlog::ParseError {
                    reason: SkipReason::BadRecord,
                    message: err.message.clone(),
                };
                tally.skip(index, err, "")
            }
        }
    }
    Ok(tally.finish())
}

/// The report and the flows of a batch, as its records are parsed.
struct Tally {
    report: BatchReport,
    flows: Vec<FlowRecord>,
}

impl Tally {
    /// A tally for a batch of `records_in` records (or about that many: the flows' capacity).
    fn new(topic_id: &str, records_in: usize) -> Self {
        Tally {
            report: BatchReport {
                topic_id: topic_id.to_string(),
                records_in,
                ..BatchReport::default()
            },
            flows: Vec::with_capacity(records_in),
        }
    }

    fn parsed(&mut self, parsed: Parsed) {
        match parsed {
            Parsed::Flow(flow) => {
                self.report.parsed += 1;
                self.flows.push(flow);
            }
            Parsed::NoData => self.report.nodata += 1,
            Parsed::SkipData => self.report.skipdata += 1,
        }
    }

    fn skip(&mut self, index: usize, err: flowlog::ParseError, content: &str) {
        self.report.skip(index, err, content)
    }

    fn finish(self) -> (BatchReport, Vec<FlowRecord>) {
        (self.report, self.flows)
    }
}

impl BatchReport {
    fn skip(&mut self, index: usize, err: flowlog::ParseError, content: &str) {
        let count = self.skipped.entry(err.reason).or_default();
        *count += 1;
        if *count <= SAMPLES_PER_REASON {
            self.samples.push(SkipSample {
                index,
                reason: err.reason,
                message: err.message,
                excerpt: content.chars().take(SAMPLE_EXCERPT_CHARS).collect(),
            });
        }
    }

    /// Records skipped for any reason.
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
}

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
            crate::snapshot::Generation::New => "new",
            crate::snapshot::Generation::Old => "old",
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
                    crate::engine::Direction::Ingress => "ingress",
                    crate::engine::Direction::Egress => "egress",
                    crate::engine::Direction::Unknown => "unknown",
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;
    use std::io::Write;

    fn event(json: &serde_json::Value) -> ClsTriggerEvent {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(json.to_string().as_bytes()).unwrap();
        let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        serde_json::from_value(serde_json::json!({"clslogs": {"data": data}})).unwrap()
    }

    #[test]
    fn counts_every_record_and_keeps_the_good_ones() {
        let mut records = vec![
            serde_json::json!({"timestamp": "1", "content": "2 1 eni-a 10.0.0.1 10.0.0.2 1 80 6 1 1 1 2 ACCEPT OK"}),
            serde_json::json!({"timestamp": "2", "content": "V1 1 eni-a - - - - - - - 1 2 - NODATA"}),
            serde_json::json!({"timestamp": "3", "content": "V1 1 eni-a - - - - - - - 1 2 - SKIPDATA"}),
            serde_json::json!({"timestamp": "x", "content": "whatever"}),
        ];
        for _ in 0..5 {
            records.push(serde_json::json!({"timestamp": "4", "content": "2 1 eni-a 10.0.0.999 10.0.0.2 1 80 6 1 1 1 2 ACCEPT OK"}));
        }
        let (report, flows) = parse_batch(
            &event(&serde_json::json!({"topic_id": "t-1", "records": records})),
            &DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(report.topic_id, "t-1");
        assert_eq!(report.records_in, 9);
        assert_eq!(report.parsed, 1);
        assert_eq!(flows.len(), 1);
        assert_eq!(report.nodata, 1);
        assert_eq!(report.skipdata, 1);
        assert_eq!(report.skipped[&SkipReason::BadRecord], 1);
        assert_eq!(report.skipped[&SkipReason::BadAddress], 5);
        assert_eq!(report.skipped_total(), 6);
        let bad_address_samples = report
            .samples
            .iter()
            .filter(|s| s.reason == SkipReason::BadAddress)
            .count();
        assert_eq!(bad_address_samples, SAMPLES_PER_REASON);
        assert_eq!(
            report.records_in,
            report.parsed + report.nodata + report.skipdata + report.skipped_total()
        );
    }

    /// One field of a generated content: a key and a value token, both drawn mostly from what
    /// flow logs hold and partly from what the fast path must leave to serde.
    fn field() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            8 => proptest::sample::select(flowlog::FIELDS.to_vec()).prop_map(str::to_string),
            1 => proptest::sample::select(vec!["extra", "__CONTENT__", "content", "src\\u0061ddr", "Srcaddr"])
                .prop_map(str::to_string),
        ];
        let value = prop_oneof![
            6 => proptest::sample::select(vec![
                "\"10.0.0.1\"", "\"10.0.2.8\"", "\"::ffff:10.0.0.9\"", "\"6\"", "\"17\"", "\"1\"",
                "\"3306\"", "\"-\"", "\"-1\"", "\"\"", "\"ACCEPT\"", "\"REJECT\"", "\"OK\"",
                "\"NODATA\"", "\"1763942400\"", "\"1763942460000\"", "\"eni-1\"", "\" 80 \"",
            ]).prop_map(str::to_string),
            3 => proptest::sample::select(vec![
                "6", "-1", "0", "-0", "007", "80", "1763942400", "1.5", "1e3", "99999999999999999999",
                "123456789012345678", "null", "true", "[1]", "{\"a\":1}", "\"a\\\"b\"", "\"x\\ny\"",
                "\"\\u0041\"", "\"10.0.0.1\t\"",
            ]).prop_map(str::to_string),
        ];
        (key, value, proptest::sample::select(vec!["", " "]))
            .prop_map(|(k, v, pad)| format!("{pad}\"{k}\"{pad}:{pad}{v}"))
    }

    fn content() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::collection::vec(field(), 0..18).prop_map(|fields| format!("{{{}}}", fields.join(","))),
            1 => proptest::sample::select(vec![
                "2 1 eni-a 10.0.0.1 10.0.0.2 1 80 6 1 1 1 2 ACCEPT OK",
                " {\"srcaddr\":\"10.0.0.1\"} ",
                "{\"srcaddr\":\"10.0.0.1\"} x",
                "{\"srcaddr\":\"10.0.0.1\",}",
                "{}",
                "{\"__CONTENT__\":\"2 1 eni-a 10.0.0.1 10.0.0.2 1 80 6 1 1 1 2 REJECT OK\"}",
                "",
            ]).prop_map(str::to_string),
        ]
    }

    /// A canonical record: every field, strings only, as flow logs ship it.
    fn canonical(i: usize) -> String {
        format!(
            r#"{{"version":"2","account-id":"1251762227","interface-id":"eni-{i}","srcaddr":"10.0.0.{}","dstaddr":"10.0.1.8","srcport":"40000","dstport":"3306","protocol":"6","packets":"3","bytes":"180","start":"1763942400","end":"1763942460","action":"REJECT","log-status":"OK"}}"#,
            i % 250
        )
    }

    fn batch(contents: &[String]) -> Vec<u8> {
        let records: Vec<_> = contents
            .iter()
            .enumerate()
            .map(|(i, c)| serde_json::json!({"timestamp": (1_763_942_460_000_000u64 + i as u64).to_string(), "content": c}))
            .collect();
        serde_json::json!({"topic_id": "t-1", "records": records})
            .to_string()
            .into_bytes()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Whatever the fast path takes, it reads as the general path does: same report, same
        /// flows. (It is also made to take the canonical records, so the check is not vacuous.)
        #[test]
        fn fast_path_agrees(contents in proptest::collection::vec(content(), 1..6)) {
            let mut all: Vec<String> = (0..3).map(canonical).collect();
            all.extend(contents);
            let decoded = batch(&all);
            let limits = DecodeLimits::default();
            prop_assert!(parse_scanned(&decoded, &limits).is_some());
            crate::fuzzing::fast_path_agrees(&decoded, &limits);
        }
    }

    #[test]
    fn the_fast_path_takes_canonical_batches_and_reads_them_as_the_general_path() {
        let decoded = batch(&(0..500).map(canonical).collect::<Vec<_>>());
        let (report, flows) = parse_scanned(&decoded, &DecodeLimits::default()).unwrap();
        assert_eq!(
            (report.records_in, report.parsed, flows.len()),
            (500, 500, 500)
        );
        assert_eq!(flows[7].eni, "eni-7");
        assert_eq!(flows[7].dst_port, Some(3306));
        assert_eq!(
            (report, flows),
            parse_general(&decoded, &DecodeLimits::default()).unwrap()
        );
    }

    #[test]
    fn undecodable_event_is_an_invalid_batch() {
        let event: ClsTriggerEvent =
            serde_json::from_value(serde_json::json!({"clslogs": {"data": "@@@"}})).unwrap();
        let err = parse_batch(&event, &DecodeLimits::default()).unwrap_err();
        let diagnostic = Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "InvalidBatch");
        assert!(diagnostic.error_message.contains("base64"));
    }
}
