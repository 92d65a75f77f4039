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

use serde::Serialize;

use std::sync::Arc;

use std::time::SystemTime;

use crate::adapters::chat::Robot;
use crate::adapters::redis::RedisState;
use crate::app::alerts::{DispatchReport, Dispatcher};
use crate::app::config::AuditConfig;
use crate::app::snapshot_cache::{SnapshotCache, SnapshotUnavailable};
use crate::core::alert::{AlertState, MemoryState};
use crate::core::ports::{RecordSink, SinkError, Written};

use crate::core::classify::{judge, JudgeStats};
use crate::core::engine::Engine;
use crate::core::flowlog::{self, FlowRecord, Parsed, SkipReason};
use crate::events::{scan, ClsTriggerEvent, DecodeError, DecodeLimits, DecodedBatch};
use crate::runtime::Diagnostic;

/// How many sample records are kept per skip reason.
pub(crate) const SAMPLES_PER_REASON: usize = 3;
/// Longest excerpt of a bad record kept in a sample.
pub(crate) const SAMPLE_EXCERPT_CHARS: usize = 200;

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
    pub written: BTreeMap<String, usize>,
    /// Field values cut to the sink's limit (CLS: 1 MB a value), each marked in its record's
    /// `truncated_fields`.
    pub truncated_values: usize,
    /// Alert messages sent (all channels).
    pub alerts_sent: usize,
    /// Alerting in detail: alerts formed, held back by cooldown, sent, rate-limited and failed
    /// per channel.
    pub alerts: DispatchReport,
    /// The snapshot the batch was judged against.
    pub snapshot_version: String,
    /// Ids in `ESGFLOW_MONITORED_VPCS` or the monitoring switches that the snapshot has no VPC
    /// for: their flows are never judged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_monitored_vpcs: Vec<String>,
    /// Monitoring switches in force (VPCs switched on or off over the list).
    pub monitoring_switches: usize,
    /// Why the monitoring switches could not be read (the list alone then applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitoring_switches_error: Option<String>,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

/// The audit function: configuration, the cached snapshot and the sink, kept across the
/// invocations of a warm instance.
pub struct AuditFunction {
    config: AuditConfig,
    snapshots: tokio::sync::Mutex<SnapshotCache>,
    sink: Box<dyn RecordSink>,
    /// The snapshot version whose unknown monitored VPCs were last logged.
    warned_version: std::sync::Mutex<String>,
    alerts: tokio::sync::Mutex<Dispatcher>,
}

impl AuditFunction {
    /// Builds the function with the sink its configuration names.
    pub fn new(config: AuditConfig) -> Result<Self, SinkError> {
        let sink = config.sink.open()?;
        Ok(Self::with_sink(config, sink))
    }

    /// Builds the function with a given sink (tests).
    pub(crate) fn with_sink(config: AuditConfig, sink: Box<dyn RecordSink>) -> Self {
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
            Robot::all(&config.alerts.channels),
            state,
        );
        Self {
            config,
            snapshots,
            sink,
            warned_version: std::sync::Mutex::new(String::new()),
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
        let load_by = crate::app::snapshot_cache::load_by(deadline);
        let engine = self.engine(load_by).await?;
        let (switches, monitoring_switches_error) = self
            .snapshots
            .lock()
            .await
            .switches_by(Instant::now(), load_by)
            .await;
        let monitored = self.config.monitored.with_switches(&switches);
        let unknown_monitored_vpcs = monitored.unknown(engine.topology());
        if !unknown_monitored_vpcs.is_empty() {
            self.warn_unknown_vpcs(&unknown_monitored_vpcs, engine.version());
        }
        let judged = judge(&engine, flows, &monitored);
        let written = if judged.records.is_empty() {
            Written::default()
        } else {
            self.sink.write(&judged.records, deadline).await?
        };
        // Alerts go out only once the records are safely written; a failing channel is counted,
        // never fatal.
        let alerts = self
            .alerts
            .lock()
            .await
            .dispatch(&judged.records, SystemTime::now(), deadline)
            .await;
        Ok(InvocationSummary {
            batch,
            judged: judged.stats,
            sink: self.sink.describe(),
            written: written.records,
            truncated_values: written.truncated_values,
            alerts_sent: alerts.sent_total(),
            alerts,
            snapshot_version: engine.version().to_string(),
            unknown_monitored_vpcs,
            monitoring_switches: switches.vpcs.len(),
            monitoring_switches_error,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Logs the unknown monitored VPCs once per snapshot version and list (every summary names
    /// them).
    fn warn_unknown_vpcs(&self, vpcs: &[String], version: &str) {
        let seen = format!("{version} {vpcs:?}");
        let mut warned = self
            .warned_version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *warned != seen {
            tracing::warn!(
                vpcs = ?vpcs,
                snapshot = version,
                "ESGFLOW_MONITORED_VPCS or the monitoring switches name VPCs the snapshot does not have: their flows are never judged"
            );
            *warned = seen;
        }
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
pub fn parse_scanned(
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
pub fn parse_general(
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
            let general = parse_general(&decoded, &limits).expect("the general path decodes what the fast path takes");
            prop_assert_eq!(parse_scanned(&decoded, &limits), Some(general));
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
