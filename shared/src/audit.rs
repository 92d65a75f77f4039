//! The batch pipeline of the audit function: a CLS trigger event in, a batch report out.
//!
//! Today it decodes the batch and parses every record, counting what it could not use by reason
//! (with a few samples of each, so an operator can see what went wrong without fetching the
//! batch). One bad record never fails the batch; only an event that cannot be decoded at all
//! does, so that SCF retries it and the failure is visible.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::events::{ClsTriggerEvent, DecodeError, DecodeLimits, DecodedBatch};
use crate::flowlog::{self, FlowRecord, Parsed, SkipReason};
use crate::runtime::Diagnostic;

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
    /// Wall time spent, milliseconds.
    pub elapsed_ms: u64,
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

/// Why a batch could not be processed at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The CLS event could not be decoded.
    #[error("the CLS event could not be decoded: {0}")]
    Decode(#[from] DecodeError),
}

impl From<AuditError> for Diagnostic {
    fn from(err: AuditError) -> Self {
        let kind = match err {
            AuditError::Decode(_) => "InvalidBatch",
        };
        Diagnostic::new(kind, err.to_string())
    }
}

/// Decodes the event and parses every record; returns the report and the parsed flows.
pub fn parse_batch(
    event: &ClsTriggerEvent,
    limits: &DecodeLimits,
) -> Result<(BatchReport, Vec<FlowRecord>), AuditError> {
    let started = Instant::now();
    let decoded = event.decompress(limits)?;
    let batch = DecodedBatch::parse(&decoded, limits)?;
    let mut report = BatchReport {
        topic_id: batch.topic_id.to_string(),
        records_in: batch.records.len(),
        ..BatchReport::default()
    };
    let mut flows = Vec::with_capacity(batch.records.len());
    for (index, record) in batch.records.iter().enumerate() {
        let outcome = match record {
            Ok(record) => {
                flowlog::parse(&record.content).map_err(|err| (err, record.content.as_ref()))
            }
            Err(err) => Err((
                flowlog::ParseError {
                    reason: SkipReason::BadRecord,
                    message: err.message.clone(),
                },
                "",
            )),
        };
        match outcome {
            Ok(Parsed::Flow(flow)) => {
                report.parsed += 1;
                flows.push(flow);
            }
            Ok(Parsed::NoData) => report.nodata += 1,
            Ok(Parsed::SkipData) => report.skipdata += 1,
            Err((err, content)) => report.skip(index, err, content),
        }
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok((report, flows))
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
