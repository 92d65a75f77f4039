//! The CLS sink: API 3.0 `UploadLog` (<https://www.tencentcloud.com/document/api/614/42787>).
//!
//! Records become a protobuf `LogGroupList` (field numbers of CLS's `cls.proto`), compressed as a
//! raw LZ4 block (`X-CLS-CompressType: lz4`), posted to `https://cls.tencentcloudapi.com/` (or the
//! configured endpoint) with `X-TC-Action: UploadLog`, `X-CLS-TopicId` and a TC3 signature over
//! the binary body. A group holds at most 10,000 logs and 5 MB of values; larger writes are
//! split. 429, 5xx, network errors and throttling/internal error codes are retried with
//! jittered backoff while the invocation deadline allows; any other refusal fails at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prost::Message;

use crate::adapters::bounded;
use crate::adapters::tencent::transport::{self, Action, CredentialSource};
use crate::core::ports::{BoxFuture, RecordSink, SinkError, Written};
use crate::core::records::{Record, RecordType};

/// `cls.proto`'s `Log.Content`.
#[derive(Clone, PartialEq, Message)]
pub struct LogContent {
    /// Key.
    #[prost(string, required, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, required, tag = "2")]
    pub value: String,
}

/// `cls.proto`'s `Log`.
#[derive(Clone, PartialEq, Message)]
pub struct Log {
    /// Unix time; esgflow writes milliseconds.
    #[prost(int64, required, tag = "1")]
    pub time: i64,
    /// Key/value contents.
    #[prost(message, repeated, tag = "2")]
    pub contents: Vec<LogContent>,
}

/// `cls.proto`'s `LogTag`.
#[derive(Clone, PartialEq, Message)]
pub struct LogTag {
    /// Key.
    #[prost(string, required, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, required, tag = "2")]
    pub value: String,
}

/// `cls.proto`'s `LogGroup`.
#[derive(Clone, PartialEq, Message)]
pub struct LogGroup {
    /// The logs.
    #[prost(message, repeated, tag = "1")]
    pub logs: Vec<Log>,
    /// Context flow (unused).
    #[prost(string, optional, tag = "2")]
    pub context_flow: Option<String>,
    /// File name (unused).
    #[prost(string, optional, tag = "3")]
    pub filename: Option<String>,
    /// Source, usually the sender.
    #[prost(string, optional, tag = "4")]
    pub source: Option<String>,
    /// Tags.
    #[prost(message, repeated, tag = "5")]
    pub log_tags: Vec<LogTag>,
}

/// `cls.proto`'s `LogGroupList`.
#[derive(Clone, PartialEq, Message)]
pub struct LogGroupList {
    /// The groups.
    #[prost(message, repeated, tag = "1")]
    pub log_group_list: Vec<LogGroup>,
}

// CLS's write limits (https://www.tencentcloud.com/document/product/614/78959): at most 10,000
// logs in a LogGroup, 1 MB a value, 5 MB of values in a LogGroup, 6 MB of request body before
// compression. "MB" is read as the smaller 10^6 bytes, so either reading holds.
/// Most logs in one group.
pub(crate) const MAX_LOGS_PER_GROUP: usize = 10_000;
/// Most key and value bytes in one group.
pub(crate) const MAX_GROUP_BYTES: usize = 5_000_000;
/// Most bytes of one request body before compression (the encoded `LogGroupList`).
pub(crate) const MAX_BODY_BYTES: usize = 6_000_000;
/// Longest value; a longer one is cut here and the log names it in [`TRUNCATED_FIELDS`].
pub(crate) const MAX_VALUE_BYTES: usize = 1_000_000;
/// The field that names a log's cut values (comma-separated keys).
pub const TRUNCATED_FIELDS: &str = "truncated_fields";
/// Time kept back from the deadline to report an error to SCF.
const DEADLINE_MARGIN: Duration = Duration::from_millis(300);

/// Where and how to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClsConfig {
    /// `https://cls.tencentcloudapi.com` (public), `https://cls.internal.tencentcloudapi.com`
    /// (from inside Tencent Cloud), or a local test server.
    pub endpoint: String,
    /// `X-TC-Region`.
    pub region: String,
    /// Topic for hits (block, observe, unattributed, drift).
    pub hits_topic: String,
    /// Topic for traffic records.
    pub traffic_topic: String,
}

/// The CLS sink.
#[derive(Debug, Clone)]
pub(crate) struct ClsSink {
    config: ClsConfig,
    url: reqwest::Url,
    host: String,
    http: reqwest::Client,
    credentials: CredentialSource,
}

impl ClsSink {
    /// A sink for `config`, signing with `credentials`; fails on an endpoint that is not an
    /// http(s) URL.
    pub fn new(config: ClsConfig, credentials: CredentialSource) -> Result<Self, SinkError> {
        let url = reqwest::Url::parse(&config.endpoint).map_err(|e| {
            SinkError::Unusable(format!(
                "CLS endpoint {:?} is not a URL: {e}",
                config.endpoint
            ))
        })?;
        let host = super::host_header(&url).ok_or_else(|| {
            SinkError::Unusable(format!("CLS endpoint {:?} has no host", config.endpoint))
        })?;
        // A redirect is never followed (the transport's client): reqwest would repeat a POST as
        // a bodiless GET (or re-send the records somewhere else), and whatever answered that
        // would be taken for CLS's answer.
        Ok(Self {
            config,
            url,
            host,
            http: transport::client(),
            credentials,
        })
    }

    fn topic_of(&self, record: &Record) -> &str {
        match record.record_type() {
            RecordType::Traffic => &self.config.traffic_topic,
            _ => &self.config.hits_topic,
        }
    }

    async fn upload(&self, topic: &str, body: Vec<u8>, deadline: Instant) -> Result<(), SinkError> {
        let mut retry = transport::retry(deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let attempt_timeout = retry.remaining().min(transport::ATTEMPT_TIMEOUT);
            let failure = match self.attempt(topic, &body, attempt_timeout).await {
                Ok(()) => return Ok(()),
                Err(Failure::Permanent(detail)) => {
                    return Err(SinkError::Rejected {
                        topic: topic.to_string(),
                        detail,
                    })
                }
                Err(Failure::Retryable(detail)) => detail,
            };
            tracing::warn!(topic, attempt = attempts, error = %failure, "CLS upload failed, retrying");
            if !retry.wait(Duration::from_millis(100)).await {
                return Err(SinkError::DeadlineExhausted {
                    topic: topic.to_string(),
                    attempts,
                    last: failure,
                });
            }
        }
    }

    async fn attempt(&self, topic: &str, body: &[u8], timeout: Duration) -> Result<(), Failure> {
        if timeout.is_zero() {
            return Err(Failure::Retryable("no time left".to_string()));
        }
        let credentials = self
            .credentials
            .get()
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        let action = Action {
            service: "cls",
            version: "2020-10-16",
            action: "UploadLog",
            region: &self.config.region,
        };
        let response = transport::tc3_request(
            &self.http,
            self.url.clone(),
            &self.host,
            &action,
            "application/octet-stream",
            body.to_vec(),
            &credentials,
            timeout,
        )
        .header("X-CLS-TopicId", topic)
        .header("X-CLS-CompressType", "lz4")
        .send()
        .await
        .map_err(|e| Failure::Retryable(format!("network: {e}")))?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .unwrap_or("nowhere")
                .to_string();
            return Err(Failure::Permanent(format!(
                "HTTP {status}: CLS answered with a redirect to {location:?}, which is not followed; check ESGFLOW_CLS_ENDPOINT"
            )));
        }
        let text = read_answer(response).await?;
        if let Some((code, _)) = error_of(&text) {
            self.credentials.answered(&code);
        }
        classify(status, &text)
    }
}

/// The longest answer read from CLS: an UploadLog answer is a few hundred bytes.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Reads an answer within [`MAX_ANSWER_BYTES`]. An answer cut off or too long is a failure to
/// retry: whether the records landed is unknown, and record ids make a second copy harmless.
async fn read_answer(response: reqwest::Response) -> Result<String, Failure> {
    bounded::read_text(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| Failure::Retryable(e.to_string()))
}

enum Failure {
    Retryable(String),
    Permanent(String),
}

/// Reads the error code and message out of an API 3.0 (`Response.Error`) or CLS
/// (`errorcode`/`errormessage`) error body.
fn error_of(body: &str) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    if let Some(error) = value.pointer("/Response/Error") {
        let code = error
            .get("Code")
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .to_string();
        let message = error
            .get("Message")
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .to_string();
        return Some((code, message));
    }
    let code = value.get("errorcode").and_then(|c| c.as_str())?;
    let message = value
        .get("errormessage")
        .and_then(|c| c.as_str())
        .unwrap_or("");
    Some((code.to_string(), message.to_string()))
}

/// Whether `body` is API 3.0's answer, `{"Response": {"RequestId": …}}`. Nothing else (an empty
/// body, a 204, a proxy's page, a cut-off answer) says the records were accepted.
fn is_answer(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| {
        v.pointer("/Response/RequestId")
            .is_some_and(serde_json::Value::is_string)
    })
}

fn classify(status: u16, body: &str) -> Result<(), Failure> {
    let error = error_of(body);
    let detail = |error: &Option<(String, String)>| match error {
        Some((code, message)) => format!("HTTP {status} {code}: {message}"),
        None => format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        ),
    };
    match (status, &error) {
        (200..=299, None) if is_answer(body) => Ok(()),
        // A 2xx that is not the API's answer (a proxy, a truncated body): whether the data
        // landed is unknown, so it is sent again; record ids make a duplicate harmless.
        (200..=299, None) => Err(Failure::Retryable(format!(
            "HTTP {status} with an unreadable answer: {}",
            body.chars().take(200).collect::<String>()
        ))),
        (200..=299, Some((code, _))) if transport::retryable(code) => {
            Err(Failure::Retryable(detail(&error)))
        }
        (429 | 500..=599, _) => Err(Failure::Retryable(detail(&error))),
        (_, Some((code, _))) if transport::retryable(code) => {
            Err(Failure::Retryable(detail(&error)))
        }
        _ => Err(Failure::Permanent(detail(&error))),
    }
}

/// Protobuf wire helpers for the hand-written `Log` encoder.
mod wire {
    pub(crate) fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    pub(crate) fn varint_len(value: u64) -> usize {
        (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
    }

    /// A length-delimited field.
    pub fn bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
        out.push(tag);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    /// A `Log.contents` entry (field 2): a `LogContent` of `key` (field 1) and `value` (field 2).
    /// Nearly every entry is under 128 bytes, so its three lengths are one byte each and the
    /// header goes out in one write.
    #[inline]
    pub fn content(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
        let len = 4 + key.len() + value.len();
        if len < 0x80 {
            out.reserve(len + 2);
            out.extend_from_slice(&[0x12, len as u8, 0x0a, key.len() as u8]);
            out.extend_from_slice(key);
            out.extend_from_slice(&[0x12, value.len() as u8]);
            out.extend_from_slice(value);
        } else {
            let len = 2
                + varint_len(key.len() as u64)
                + key.len()
                + varint_len(value.len() as u64)
                + value.len();
            out.push(0x12);
            varint(out, len as u64);
            bytes(out, 0x0a, key);
            bytes(out, 0x12, value);
        }
    }
}

/// One log's fields written into the group as `Log.contents` entries: text as it is, a number
/// straight from itoa's buffer (the most common formatted value; going through `write_to` costs
/// 4 % of the encoder), an address formatted into a buffer on the stack. Values over
/// [`MAX_VALUE_BYTES`] are cut and their keys kept in `cut_keys`.
struct LogFields<'a> {
    group: &'a mut Vec<u8>,
    cut_keys: &'a mut Vec<&'static str>,
    /// The bytes of the keys and values written.
    size: usize,
}

impl LogFields<'_> {
    #[inline]
    fn put(&mut self, key: &'static str, mut value: &[u8]) {
        if value.len() > MAX_VALUE_BYTES {
            value = cut(value, MAX_VALUE_BYTES);
            self.cut_keys.push(key);
        }
        wire::content(self.group, key.as_bytes(), value);
        self.size += key.len() + value.len();
    }
}

impl crate::core::records::Fields for LogFields<'_> {
    fn text(&mut self, key: &'static str, value: &str) {
        self.put(key, value.as_bytes())
    }

    fn number(&mut self, key: &'static str, value: u64) {
        self.put(key, itoa::Buffer::new().format(value).as_bytes())
    }

    fn ip(&mut self, key: &'static str, value: &std::net::IpAddr) {
        let mut address = [0u8; 64];
        let mut out = &mut address[..];
        crate::core::records::FieldValue::Ip(*value)
            .write_to(&mut out)
            .expect("an address fits in 64 bytes");
        let len = 64 - out.len();
        self.put(key, &address[..len])
    }
}

/// Bodies ready to upload, and how many values were cut to fit.
#[derive(Debug, Default)]
pub struct Bodies {
    /// Each LZ4-compressed `LogGroupList` body with its log count.
    pub bodies: Vec<(usize, Vec<u8>)>,
    /// Values cut to [`MAX_VALUE_BYTES`].
    pub truncated_values: usize,
}

/// The longest prefix of `value` within `limit` bytes that does not split a UTF-8 character.
fn cut(value: &[u8], limit: usize) -> &[u8] {
    let mut end = limit.min(value.len());
    while end > 0 && end < value.len() && value[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    &value[..end]
}

/// Encodes records straight into LZ4-compressed `LogGroupList` bodies (one group each), within
/// CLS's limits: at most [`MAX_LOGS_PER_GROUP`] logs, [`MAX_GROUP_BYTES`] of keys and values and
/// [`MAX_BODY_BYTES`] of encoded body per request, no value over [`MAX_VALUE_BYTES`] (cut, and
/// named in [`TRUNCATED_FIELDS`]). No intermediate key/value strings are built. The bytes are
/// what prost produces for the same [`LogGroupList`] (a test checks this).
pub fn encode_bodies(records: &[&Record]) -> Bodies {
    let mut out = Bodies::default();
    // The group is built after HEADER bytes kept free for the LogGroupList field header (tag and
    // length varint), written in place when the group is done: no copy of the whole group.
    const HEADER: usize = 11;
    // What the group's end adds: the `source` field, and room for a log's length prefix to
    // grow past the two bytes reserved for it.
    const TRAILER: usize = 16;
    // The group is sized from its first logs (records run from about 400 to 1,000 bytes on
    // the reference account): growing it by doubling copied up to its whole size again.
    const SAMPLE: usize = 16;
    let most = MAX_BODY_BYTES + HEADER + TRAILER;
    let mut group: Vec<u8> = Vec::with_capacity((records.len() * 1024).clamp(4096, 64 << 10));
    group.resize(HEADER, 0);
    let (mut count, mut value_bytes) = (0usize, 0usize);
    let finish = |group: &mut Vec<u8>, count: usize, bodies: &mut Vec<(usize, Vec<u8>)>| {
        wire::bytes(group, 0x22, b"esgflow");
        let mut header = Vec::with_capacity(HEADER);
        header.push(0x0a);
        wire::varint(&mut header, (group.len() - HEADER) as u64);
        let start = HEADER - header.len();
        group[start..HEADER].copy_from_slice(&header);
        bodies.push((count, lz4_flex::block::compress(&group[start..])));
        group.truncate(HEADER);
    };
    let mut cut_keys: Vec<&str> = Vec::new();
    for record in records {
        // Each log is written straight into the group behind a two-byte length, the size of
        // nearly every log (128 B to 16 KB), patched when the log is done.
        let mut start = group.len();
        group.extend_from_slice(&[0x0a, 0, 0]);
        group.push(0x08);
        wire::varint(&mut group, (record.time() as i64 * 1000) as u64);
        cut_keys.clear();
        let mut fields = LogFields {
            group: &mut group,
            cut_keys: &mut cut_keys,
            size: 0,
        };
        record.write_fields(&mut fields);
        let mut size = fields.size;
        if !cut_keys.is_empty() {
            let keys = cut_keys.join(",");
            wire::content(&mut group, TRUNCATED_FIELDS.as_bytes(), keys.as_bytes());
            size += TRUNCATED_FIELDS.len() + keys.len();
            out.truncated_values += cut_keys.len();
        }
        if count > 0
            && (count == MAX_LOGS_PER_GROUP
                || value_bytes + size > MAX_GROUP_BYTES
                || group.len() + TRAILER > MAX_BODY_BYTES)
        {
            // The log goes to the next group.
            let log = group.split_off(start);
            finish(&mut group, count, &mut out.bodies);
            count = 0;
            value_bytes = 0;
            start = group.len();
            group.extend_from_slice(&log);
        }
        let len = group.len() - start - 3;
        match u16::try_from(len) {
            Ok(len @ 0x80..0x4000) => {
                group[start + 1..start + 3].copy_from_slice(&[len as u8 | 0x80, (len >> 7) as u8])
            }
            _ => {
                let mut prefix = Vec::with_capacity(10);
                wire::varint(&mut prefix, len as u64);
                group.splice(start + 1..start + 3, prefix);
            }
        }
        count += 1;
        value_bytes += size;
        if count == SAMPLE && out.bodies.is_empty() {
            let per_log = (group.len() - HEADER) / SAMPLE;
            let want = (per_log * records.len() * 9 / 8).min(most);
            group.reserve(want.saturating_sub(group.len()));
        }
    }
    if count > 0 {
        finish(&mut group, count, &mut out.bodies);
    }
    out
}

/// A group as prost builds it (the reference [`encode_bodies`] is tested against).
#[cfg(test)]
fn group(logs: Vec<Log>) -> LogGroup {
    LogGroup {
        logs,
        context_flow: None,
        filename: None,
        source: Some("esgflow".to_string()),
        log_tags: Vec::new(),
    }
}

/// One record as a CLS log (time in milliseconds), its values formatted with `Display` and the
/// message built by prost: the reference [`encode_bodies`] is tested against. (The field set is
/// [`Record::contents`]'s, which `records::tests::visit_gives_the_contents` checks.)
#[cfg(test)]
fn log_of(record: &Record) -> Log {
    let mut contents = Vec::new();
    record.visit(|key, value| {
        contents.push(LogContent {
            key: key.to_string(),
            value: value.to_string(),
        })
    });
    Log {
        time: record.time() as i64 * 1000,
        contents,
    }
}

impl RecordSink for ClsSink {
    fn describe(&self) -> String {
        format!("cls:{}", self.config.endpoint)
    }

    fn write<'a>(
        &'a self,
        records: &'a [Record],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Written, SinkError>> {
        Box::pin(async move {
            let mut by_topic: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
            for record in records {
                by_topic
                    .entry(self.topic_of(record))
                    .or_default()
                    .push(record);
            }
            let records_total = records.len();
            let mut written = Written::default();
            for (topic, records) in by_topic {
                let encoded = encode_bodies(&records);
                if encoded.truncated_values > 0 {
                    tracing::warn!(
                        topic,
                        values = encoded.truncated_values,
                        "values over 1 MB cut to fit CLS (named in truncated_fields)"
                    );
                }
                for (count, body) in encoded.bodies {
                    if let Err(err) = self.upload(topic, body, deadline).await {
                        return Err(err.after(&written, records_total));
                    }
                    *written.records.entry(topic.to_string()).or_default() += count;
                }
                written.truncated_values += encoded.truncated_values;
            }
            Ok(written)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding check from the reference (§5.1): one group, source 127.0.0.1, one log.
    #[test]
    fn protobuf_matches_the_reference_encoding() {
        let list = LogGroupList {
            log_group_list: vec![LogGroup {
                logs: vec![Log {
                    time: 1700000000000,
                    contents: vec![LogContent {
                        key: "src_ip".into(),
                        value: "10.0.0.1".into(),
                    }],
                }],
                context_flow: None,
                filename: None,
                source: Some("127.0.0.1".into()),
                log_tags: Vec::new(),
            }],
        };
        assert_eq!(
            hex::encode(list.encode_to_vec()),
            "0a280a1b0880d095ffbc3112120a067372635f6970120831302e302e302e3122093132372e302e302e31"
        );
    }

    fn traffic(value_bytes: usize) -> Record {
        Record::Traffic(Box::new(crate::core::records::TrafficRecord {
            record_type: crate::core::records::RecordType::Traffic,
            record_id: "0000000000000000".into(),
            time: 1,
            scope: crate::core::engine::Scope::Unknown,
            vpc: None,
            src_ip: "10.0.0.1".parse().unwrap(),
            src_ip_num: Some(0x0a00_0001),
            dst_ip: "10.0.0.2".parse().unwrap(),
            dst_ip_num: Some(0x0a00_0002),
            dst_port: None,
            protocol: 1,
            protocol_name: crate::core::records::ProtocolName(1),
            fl_action: crate::core::flowlog::FlowAction::Accept,
            ends: Default::default(),
            peer: crate::core::records::Peer::Unknown,
            flows: 1,
            requests: 1,
            replies: 0,
            connections: 1,
            packets: 1,
            bytes: 1,
            first_seen: 1,
            last_seen: 1,
            enis: "".into(),
            snapshot_version: "v".repeat(value_bytes).into(),
        }))
    }

    fn decode(body: &[u8]) -> LogGroup {
        let raw = lz4_flex::block::decompress(body, body.len() * 255 + 64).unwrap();
        let mut list = LogGroupList::decode(raw.as_slice()).unwrap();
        assert_eq!(list.log_group_list.len(), 1);
        list.log_group_list.remove(0)
    }

    #[test]
    fn body_is_a_raw_lz4_block_of_the_protobuf() {
        let record = traffic(1000);
        let bodies = encode_bodies(&[&record]).bodies;
        let raw = LogGroupList {
            log_group_list: vec![group(vec![log_of(&record)])],
        }
        .encode_to_vec();
        assert!(
            bodies[0].1.len() < raw.len(),
            "repetitive content compresses"
        );
        assert_eq!(
            lz4_flex::block::decompress(&bodies[0].1, raw.len()).unwrap(),
            raw
        );
    }

    #[test]
    fn groups_respect_count_and_size_limits() {
        let many: Vec<Record> = (0..25_001).map(|_| traffic(10)).collect();
        let bodies = encode_bodies(&many.iter().collect::<Vec<_>>()).bodies;
        assert_eq!(
            bodies.iter().map(|(count, _)| *count).collect::<Vec<_>>(),
            vec![10_000, 10_000, 5_001]
        );
        assert_eq!(decode(&bodies[2].1).logs.len(), 5_001);
        let big: Vec<Record> = (0..12).map(|_| traffic(900_000)).collect();
        let bodies = encode_bodies(&big.iter().collect::<Vec<_>>()).bodies;
        assert!(bodies.len() > 1, "10.8 MB of values need several groups");
        for (count, body) in &bodies {
            let group = decode(body);
            assert_eq!(group.logs.len(), *count);
            let value_bytes: usize = group
                .logs
                .iter()
                .flat_map(|l| &l.contents)
                .map(|c| c.key.len() + c.value.len())
                .sum();
            assert!(value_bytes <= MAX_GROUP_BYTES, "{value_bytes}");
        }
        assert_eq!(bodies.iter().map(|(count, _)| count).sum::<usize>(), 12);
    }

    /// Many small logs: the group is closed at the 6 MB body limit before the 10,000-log limit.
    #[test]
    fn bodies_stay_within_six_megabytes_before_compression() {
        let many: Vec<Record> = (0..10_000).map(|_| traffic(700)).collect();
        let bodies = encode_bodies(&many.iter().collect::<Vec<_>>()).bodies;
        assert!(bodies.len() > 1, "10,000 logs of ~1 KB do not fit one body");
        for (_, body) in &bodies {
            let raw = lz4_flex::block::decompress(body, MAX_BODY_BYTES * 2).unwrap();
            assert!(raw.len() <= MAX_BODY_BYTES, "{}", raw.len());
        }
        assert_eq!(bodies.iter().map(|(count, _)| count).sum::<usize>(), 10_000);
    }

    /// A value over 1 MB is cut at a character boundary, the log names it, and it is counted.
    #[test]
    fn values_over_one_megabyte_are_cut_and_named() {
        let mut record = traffic(10);
        if let Record::Traffic(t) = &mut record {
            t.snapshot_version = "版".repeat(400_000).into();
        }
        let encoded = encode_bodies(&[&record]);
        assert_eq!(encoded.truncated_values, 1);
        let log = &decode(&encoded.bodies[0].1).logs[0];
        let value = &log
            .contents
            .iter()
            .find(|c| c.key == "snapshot_version")
            .unwrap()
            .value;
        assert!(value.len() <= MAX_VALUE_BYTES && value.len() > MAX_VALUE_BYTES - 3);
        assert!(value.chars().all(|c| c == '版'));
        let marker = log.contents.last().unwrap();
        assert_eq!(
            (marker.key.as_str(), marker.value.as_str()),
            (TRUNCATED_FIELDS, "snapshot_version")
        );
        assert_eq!(encode_bodies(&[&traffic(10)]).truncated_values, 0);
    }

    /// The hand-written encoder produces exactly what prost produces from `Record::contents`.
    #[test]
    fn fast_encoder_matches_prost() {
        use crate::core::records::{HitRecord, RecordType, RuleRef, TrafficRecord};
        let hit = Record::hit(HitRecord {
            record_type: RecordType::BlockHit,
            record_id: "0123456789abcdef".into(),
            time: 1763942460,
            start: 1763942400,
            end: 1763942460,
            account_id: "1251762227".into(),
            eni: "eni-web00001".into(),
            direction: crate::core::engine::Direction::Egress,
            src_ip: "10.0.1.11".parse().unwrap(),
            src_ip_num: Some(0x0a00_010b),
            src_port: Some(40001),
            dst_ip: "10.0.3.10".parse().unwrap(),
            dst_ip_num: Some(0x0a00_030a),
            dst_port: Some(3306),
            protocol: 6,
            protocol_name: crate::core::records::ProtocolName(6),
            icmp_type: None,
            icmp_code: None,
            fl_action: crate::core::flowlog::FlowAction::Reject,
            packets: Some(3),
            bytes: None,
            scope: crate::core::engine::Scope::InterSubnet,
            ends: std::sync::Arc::new(crate::core::records::Ends {
                src_vpc: Some("vpc-prod0001".into()),
                src_vpc_name: Some("生产".into()),
                src_subnet: Some("subnet-web00001".into()),
                dst_vpc: Some("vpc-prod0001".into()),
                dst_instance: Some("ins-db000000".into()),
                dst_eni: Some("eni-db000000".into()),
                ..Default::default()
            }),
            decision: crate::core::engine::DecisionKind::Block,
            rule: Some(std::sync::Arc::new(RuleRef {
                rule_uuid: "7010".into(),
                rule_order: 11,
                rule_generation: crate::core::snapshot::Generation::New,
                rule_action: crate::core::snapshot::RuleAction::Drop,
                rule_description: "数据层 block".into(),
                rule_source: "net 0.0.0.0/0".into(),
                rule_destination: "template ipmg-data0001".into(),
                rule_service: "TCP 3306,6379".into(),
            })),
            deciding_rule_uuid: None,
            reason: None,
            indeterminate_rules: Some("7017".into()),
            reply_by: None,
            snapshot_version: "eab24ee18751aa20".into(),
        });
        let traffic = Record::Traffic(Box::new(TrafficRecord {
            record_type: RecordType::Traffic,
            record_id: "fedcba9876543210".into(),
            time: 9,
            scope: crate::core::engine::Scope::VpcInbound,
            vpc: None,
            src_ip: "2001:db8::1".parse().unwrap(),
            src_ip_num: None,
            dst_ip: "10.0.1.10".parse().unwrap(),
            dst_ip_num: Some(0x0a00_010a),
            dst_port: None,
            protocol: 1,
            protocol_name: crate::core::records::ProtocolName(1),
            fl_action: crate::core::flowlog::FlowAction::Accept,
            ends: Default::default(),
            peer: crate::core::records::Peer::Internet,
            flows: 2,
            requests: 1,
            replies: 1,
            connections: 1,
            packets: 4,
            bytes: 336,
            first_seen: 1,
            last_seen: 9,
            enis: "eni-1".into(),
            snapshot_version: "v".into(),
        }));
        // A log over 16 KB takes a three-byte length, not the two kept for it.
        let Record::Traffic(mut long) = traffic.clone() else {
            unreachable!()
        };
        long.snapshot_version = "v".repeat(20_000).into();
        let long = Record::Traffic(long);
        let records = vec![&hit, &long, &traffic];
        let bodies = encode_bodies(&records).bodies;
        assert_eq!(bodies.len(), 1);
        let expected = LogGroupList {
            log_group_list: vec![group(records.iter().map(|r| log_of(r)).collect())],
        }
        .encode_to_vec();
        let decoded = lz4_flex::block::decompress(&bodies[0].1, expected.len()).unwrap();
        assert_eq!(decoded, expected);
        assert_eq!(bodies[0].0, 3);
    }

    #[test]
    fn error_classification() {
        assert!(classify(200, r#"{"Response":{"RequestId":"x"}}"#).is_ok());
        // Nothing but the API's answer counts as accepted: an empty 200, a 204, a cut-off answer,
        // an answer without a request id.
        for (status, body) in [
            (200, ""),
            (204, ""),
            (200, r#"{"Response":"#),
            (200, r#"{"Response":{}}"#),
        ] {
            assert!(
                matches!(classify(status, body), Err(Failure::Retryable(_))),
                "{status} {body:?}"
            );
        }
        assert!(matches!(
            classify(200, "<html>gateway</html>"),
            Err(Failure::Retryable(d)) if d.contains("unreadable answer")
        ));
        assert!(matches!(
            classify(
                200,
                r#"{"Response":{"Error":{"Code":"FailedOperation.WriteQpsLimit","Message":"slow down"}}}"#
            ),
            Err(Failure::Retryable(_))
        ));
        assert!(
            matches!(classify(200, r#"{"Response":{"Error":{"Code":"ResourceNotFound.TopicNotExist","Message":"no topic"}}}"#), Err(Failure::Permanent(d)) if d.contains("ResourceNotFound.TopicNotExist"))
        );
        assert!(matches!(classify(503, "busy"), Err(Failure::Retryable(_))));
        assert!(matches!(classify(429, ""), Err(Failure::Retryable(_))));
        assert!(
            matches!(classify(403, r#"{"errorcode":"Unauthorized","errormessage":"denied"}"#), Err(Failure::Permanent(d)) if d == "HTTP 403 Unauthorized: denied")
        );
    }
}
