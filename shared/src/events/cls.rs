//! The CLS trigger event: `{"clslogs":{"data":"<base64(gzip(JSON))>"}}` whose decoded JSON is
//! `{"topic_id","topic_name","records":[{"timestamp","content"}]}` (<https://www.tencentcloud.com/document/product/583/38845>).
//!
//! Decoding is bounded: the encoded text, the decompressed bytes and the record count all have
//! caps, so a decompression bomb or a huge array is refused with a clear error instead of
//! exhausting the function's memory. A record that does not fit the expected shape does not fail
//! the batch: it comes back as an `Err` in its slot, to be counted and reported.

use std::borrow::Cow;
use std::io::Read;

use base64::Engine as _;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The event SCF delivers for a CLS trigger.
#[derive(Debug, Clone, Deserialize)]
pub struct ClsTriggerEvent {
    /// The shipped logs.
    pub clslogs: ClsLogs,
}

/// The `clslogs` object.
#[derive(Debug, Clone, Deserialize)]
pub struct ClsLogs {
    /// base64 of a gzip stream holding the batch JSON.
    pub data: String,
}

/// Caps applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest accepted `data` string. SCF's async events are ≤128 KB; sync invokes ≤6 MB.
    pub max_encoded_bytes: usize,
    /// Most bytes gunzip may produce.
    pub max_decoded_bytes: usize,
    /// Most records one batch may hold.
    pub max_records: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_encoded_bytes: 8 * 1024 * 1024,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            max_records: 200_000,
        }
    }
}

/// Default cap on the decompressed batch: 16 MiB. A 128 KB CLS event of flow logs decompresses to
/// about 1–3 MB, so this leaves a wide margin while keeping a bomb far below the memory tier.
pub(crate) const DEFAULT_MAX_DECODED_BYTES: usize = 16 * 1024 * 1024;

/// Why a CLS event could not be decoded at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// `clslogs.data` is longer than the cap.
    #[error("clslogs.data is {len} bytes, over the {limit}-byte cap")]
    EncodedTooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        limit: usize,
    },
    /// `clslogs.data` is not valid base64.
    #[error("clslogs.data is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The base64 payload is not a gzip stream, or it is truncated or corrupt.
    #[error("clslogs.data is not a valid gzip stream: {0}")]
    Gzip(std::io::Error),
    /// gunzip produced more than the cap (a decompression bomb, or a cap set too low).
    #[error("clslogs.data decompresses to more than {limit} bytes (ESGFLOW_MAX_DECODED_BYTES)")]
    DecodedTooLarge {
        /// The cap.
        limit: usize,
    },
    /// The decompressed payload is not the batch JSON.
    #[error("decoded CLS batch is not valid JSON at `{path}`: {message}")]
    Json {
        /// Where in the document the problem is.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// More records than the cap.
    #[error("decoded CLS batch holds at least {count} records, over the {limit}-record cap")]
    TooManyRecords {
        /// How many.
        count: usize,
        /// The cap.
        limit: usize,
    },
}

impl ClsTriggerEvent {
    /// base64 → gunzip (bounded) into a buffer; parse it with [`DecodedBatch::parse`].
    pub fn decompress(&self, limits: &DecodeLimits) -> Result<Vec<u8>, DecodeError> {
        decompress_data(self.clslogs.data.as_bytes(), limits)
    }
}

/// base64 → gunzip with the caps in `limits`. Whitespace inside the base64 text is tolerated.
/// A single gzip member (what CLS sends) is inflated in one shot by libdeflate; anything else by
/// flate2's bounded streaming decoder, which also gives the errors.
pub fn decompress_data(data: &[u8], limits: &DecodeLimits) -> Result<Vec<u8>, DecodeError> {
    if data.len() > limits.max_encoded_bytes {
        return Err(DecodeError::EncodedTooLarge {
            len: data.len(),
            limit: limits.max_encoded_bytes,
        });
    }
    let compressed = if data.iter().any(u8::is_ascii_whitespace) {
        let compact: Vec<u8> = data
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD.decode(compact)?
    } else {
        base64::engine::general_purpose::STANDARD.decode(data)?
    };
    if let Some(decoded) = super::inflate::gunzip_member(&compressed, limits.max_decoded_bytes) {
        return Ok(decoded);
    }
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed.as_slice())
        .take(limits.max_decoded_bytes as u64 + 1);
    let mut decoded = Vec::with_capacity((compressed.len() * 8).min(limits.max_decoded_bytes));
    decoder
        .read_to_end(&mut decoded)
        .map_err(DecodeError::Gzip)?;
    if decoded.len() > limits.max_decoded_bytes {
        return Err(DecodeError::DecodedTooLarge {
            limit: limits.max_decoded_bytes,
        });
    }
    Ok(decoded)
}

/// A decoded batch borrowing from the decompressed buffer. Each record is parsed on its own so a
/// malformed one is reported without losing the rest.
#[derive(Debug)]
pub struct DecodedBatch<'a> {
    /// `topic_id` (empty when absent).
    pub topic_id: Cow<'a, str>,
    /// `topic_name` (empty when absent).
    pub topic_name: Cow<'a, str>,
    /// The records, in order; a slot is `Err` when that record is malformed.
    pub records: Vec<Result<ClsRecord<'a>, RecordError>>,
}

/// One shipped log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClsRecord<'a> {
    /// Production time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The log content: a JSON object string for structured topics, or a raw text line.
    pub content: Cow<'a, str>,
}

/// Why one record of a batch was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {index}: {message}")]
pub struct RecordError {
    /// Position in `records`.
    pub index: usize,
    /// What is wrong.
    pub message: String,
}

struct RawBatch<'a> {
    topic_id: Option<Cow<'a, str>>,
    topic_name: Option<Cow<'a, str>>,
    records: Vec<&'a RawValue>,
}

/// Reads a batch document, refusing its `records` array as soon as it holds more than `cap`
/// records (before, the whole array was collected first: 16 MiB of `{}` took 150 MB).
struct BatchSeed {
    cap: usize,
}

impl<'de> de::DeserializeSeed<'de> for BatchSeed {
    type Value = RawBatch<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed {
    type Value = RawBatch<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a CLS batch object with a records array")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut topic_id, mut topic_name, mut records) = (None, None, None);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "topic_id" => topic_id = map.next_value::<Option<Cow<'de, str>>>()?,
                "topic_name" => topic_name = map.next_value::<Option<Cow<'de, str>>>()?,
                "records" => records = Some(map.next_value_seed(RecordsSeed { cap: self.cap })?),
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(RawBatch {
            topic_id,
            topic_name,
            records: records.ok_or_else(|| de::Error::missing_field("records"))?,
        })
    }
}

/// The `records` array, at most `cap` of them.
struct RecordsSeed {
    cap: usize,
}

/// The message of the error that stops a `records` array at its cap.
const OVER_CAP: &str = "esgflow: records over the cap";

impl<'de> de::DeserializeSeed<'de> for RecordsSeed {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.cap));
        while let Some(record) = seq.next_element::<&'de RawValue>()? {
            if records.len() == self.cap {
                return Err(de::Error::custom(OVER_CAP));
            }
            records.push(record);
        }
        Ok(records)
    }
}

#[derive(Deserialize)]
struct RawRecord<'a> {
    timestamp: Timestamp,
    #[serde(borrow)]
    content: Cow<'a, str>,
}

impl<'a> DecodedBatch<'a> {
    /// Parses the decompressed batch JSON. A payload holding several JSON documents one after
    /// another (several gzip members, say) is read whole: the records of every document, in
    /// order, under the first document's topic.
    pub fn parse(decoded: &'a [u8], limits: &DecodeLimits) -> Result<Self, DecodeError> {
        let mut documents = Vec::with_capacity(1);
        for document in serde_json::Deserializer::from_slice(decoded).into_iter::<&'a RawValue>() {
            let document = document.map_err(|err| DecodeError::Json {
                path: format!("document {}", documents.len() + 1),
                message: err.to_string(),
            })?;
            documents.push(document);
        }
        if documents.is_empty() {
            return Err(DecodeError::Json {
                path: ".".to_string(),
                message: "the payload holds no JSON document".to_string(),
            });
        }
        let several = documents.len() > 1;
        let mut batch = Self {
            topic_id: Cow::Borrowed(""),
            topic_name: Cow::Borrowed(""),
            records: Vec::new(),
        };
        for (n, document) in documents.into_iter().enumerate() {
            let mut deserializer = serde_json::Deserializer::from_str(document.get());
            let cap = limits.max_records - batch.records.len();
            let mut track = serde_path_to_error::Track::new();
            let parsed = de::DeserializeSeed::deserialize(
                BatchSeed { cap },
                serde_path_to_error::Deserializer::new(&mut deserializer, &mut track),
            );
            let raw: RawBatch<'a> = match parsed {
                Ok(raw) => raw,
                Err(err) if err.to_string().starts_with(OVER_CAP) => {
                    return Err(DecodeError::TooManyRecords {
                        count: limits.max_records + 1,
                        limit: limits.max_records,
                    })
                }
                Err(err) => {
                    let path = track.path();
                    return Err(DecodeError::Json {
                        path: if several {
                            format!("document {}: {path}", n + 1)
                        } else {
                            path.to_string()
                        },
                        message: err.to_string(),
                    });
                }
            };
            if n == 0 {
                batch.topic_id = raw.topic_id.unwrap_or_default();
                batch.topic_name = raw.topic_name.unwrap_or_default();
            }
            let offset = batch.records.len();
            batch
                .records
                .extend(raw.records.iter().enumerate().map(|(i, value)| {
                    serde_json::from_str::<RawRecord<'a>>(value.get())
                        .map(|r| ClsRecord {
                            timestamp_us: r.timestamp.0,
                            content: r.content,
                        })
                        .map_err(|err| RecordError {
                            index: offset + i,
                            message: err.to_string(),
                        })
                }));
        }
        Ok(batch)
    }
}

/// A timestamp given as a decimal string (as documented) or a JSON number.
struct Timestamp(u64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;
        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a timestamp in microseconds, as a string or a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                u64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom(format!("timestamp {v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                v.trim()
                    .parse()
                    .map(Timestamp)
                    .map_err(|_| E::custom(format!("timestamp {v:?} is not a whole number")))
            }
        }
        deserializer.deserialize_any(TimestampVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn encode(json: &[u8]) -> String {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json).unwrap();
        base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
    }

    /// An event of two gzip members, each a whole batch, is read whole: every record of
    /// both; so are two JSON documents in one member. Before, only the first was read and the
    /// batch reported as a success.
    #[test]
    fn every_gzip_member_and_every_document_is_read() {
        let batch = |n: u32| {
            format!(
                r#"{{"topic_id":"t{n}","records":[{{"timestamp":"1","content":"a{n}"}},{{"timestamp":"2","content":"b{n}"}}]}}"#
            )
        };
        let gz = |text: &str| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(text.as_bytes()).unwrap();
            gz.finish().unwrap()
        };
        let two_members = base64::engine::general_purpose::STANDARD
            .encode([gz(&batch(1)), gz(&batch(2))].concat());
        let two_documents = encode(format!("{}\n{}", batch(1), batch(2)).as_bytes());
        for data in [two_members, two_documents] {
            let decoded = decode(&data).unwrap();
            let parsed = DecodedBatch::parse(&decoded, &DecodeLimits::default()).unwrap();
            let contents: Vec<&str> = parsed
                .records
                .iter()
                .map(|r| r.as_ref().unwrap().content.as_ref())
                .collect();
            assert_eq!(contents, ["a1", "b1", "a2", "b2"]);
            assert_eq!(parsed.topic_id, "t1");
        }
        // A second document that is not a batch fails the whole batch, naming it.
        let broken = encode(format!("{}{{\"records\":7}}", batch(1)).as_bytes());
        let err =
            DecodedBatch::parse(&decode(&broken).unwrap(), &DecodeLimits::default()).unwrap_err();
        assert!(err.to_string().contains("document 2: records"), "{err}");
        let limits = DecodeLimits {
            max_records: 3,
            ..DecodeLimits::default()
        };
        let err = DecodedBatch::parse(
            &decode(&encode(format!("{}{}", batch(1), batch(2)).as_bytes())).unwrap(),
            &limits,
        )
        .unwrap_err();
        assert!(
            matches!(err, DecodeError::TooManyRecords { count: 4, .. }),
            "{err}"
        );
    }

    fn decode(data: &str) -> Result<Vec<u8>, DecodeError> {
        decompress_data(data.as_bytes(), &DecodeLimits::default())
    }

    #[test]
    fn decodes_the_documented_sample() {
        let json = br#"{"topic_id":"xxxx-xx-xx-xx-yyyyyyyy","topic_name":"testname","records":[{"timestamp":"1605578090000000","content":"xxxxxxxx"},{"timestamp":"1605578090000003","content":"xxxxxxxx"}]}"#;
        let event: ClsTriggerEvent =
            serde_json::from_str(&format!(r#"{{"clslogs":{{"data":"{}"}}}}"#, encode(json)))
                .unwrap();
        let decoded = event.decompress(&DecodeLimits::default()).unwrap();
        let batch = DecodedBatch::parse(&decoded, &DecodeLimits::default()).unwrap();
        assert_eq!(batch.topic_id, "xxxx-xx-xx-xx-yyyyyyyy");
        assert_eq!(batch.topic_name, "testname");
        assert_eq!(batch.records.len(), 2);
        assert_eq!(
            batch.records[1],
            Ok(ClsRecord {
                timestamp_us: 1605578090000003,
                content: Cow::Borrowed("xxxxxxxx")
            })
        );
    }

    #[test]
    fn numeric_timestamps_and_unknown_fields_are_accepted() {
        let json = br#"{"topic_id":"t","extra":{"a":1},"records":[{"timestamp":1605578090000000,"content":"{\"srcaddr\":\"10.0.0.1\"}","source":"x"}]}"#;
        let batch = DecodedBatch::parse(json, &DecodeLimits::default()).unwrap();
        let record = batch.records[0].as_ref().unwrap();
        assert_eq!(record.timestamp_us, 1605578090000000);
        assert_eq!(record.content, r#"{"srcaddr":"10.0.0.1"}"#);
        assert_eq!(batch.topic_name, "");
    }

    #[test]
    fn a_bad_record_is_reported_in_its_slot_and_the_rest_survive() {
        let json = br#"{"records":[{"timestamp":"abc","content":"a"},{"timestamp":"1","content":"b"},{"content":"c"},{"timestamp":"-5","content":7}]}"#;
        let batch = DecodedBatch::parse(json, &DecodeLimits::default()).unwrap();
        assert!(batch.records[0]
            .as_ref()
            .unwrap_err()
            .message
            .contains("not a whole number"));
        assert_eq!(batch.records[1].as_ref().unwrap().content, "b");
        assert!(batch.records[2]
            .as_ref()
            .unwrap_err()
            .message
            .contains("timestamp"));
        assert_eq!(batch.records[3].as_ref().unwrap_err().index, 3);
    }

    #[test]
    fn bad_base64_is_a_clear_error() {
        let err = decode("!!!not base64!!!").unwrap_err();
        assert!(err.to_string().contains("not valid base64"), "{err}");
    }

    #[test]
    fn gzip_of_garbage_and_truncated_gzip_are_clear_errors() {
        let not_gzip = base64::engine::general_purpose::STANDARD.encode(b"plain text");
        assert!(matches!(decode(&not_gzip), Err(DecodeError::Gzip(_))));
        let full = base64::engine::general_purpose::STANDARD
            .decode(encode(br#"{"records":[]}"#))
            .unwrap();
        let truncated = base64::engine::general_purpose::STANDARD.encode(&full[..full.len() - 6]);
        let err = decode(&truncated).unwrap_err();
        assert!(err.to_string().contains("gzip"), "{err}");
    }

    #[test]
    fn decompression_bomb_is_refused() {
        let zeros = vec![b' '; 4 * 1024 * 1024];
        let data = encode(&zeros);
        assert!(data.len() < 64 * 1024, "the bomb should compress well");
        let limits = DecodeLimits {
            max_decoded_bytes: 1024 * 1024,
            ..DecodeLimits::default()
        };
        let err = decompress_data(data.as_bytes(), &limits).unwrap_err();
        assert!(matches!(err, DecodeError::DecodedTooLarge { limit } if limit == 1024 * 1024));
    }

    #[test]
    fn oversized_encoded_data_is_refused_before_decoding() {
        let limits = DecodeLimits {
            max_encoded_bytes: 10,
            ..DecodeLimits::default()
        };
        let err = decompress_data(b"AAAAAAAAAAAAAAAA", &limits).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::EncodedTooLarge { len: 16, limit: 10 }
        ));
    }

    #[test]
    fn non_json_payload_names_the_problem() {
        let err = DecodedBatch::parse(b"<xml/>", &DecodeLimits::default()).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = DecodedBatch::parse(br#"{"records":"x"}"#, &DecodeLimits::default()).unwrap_err();
        assert!(err.to_string().contains("records"), "{err}");
    }

    #[test]
    fn record_count_cap() {
        let limits = DecodeLimits {
            max_records: 1,
            ..DecodeLimits::default()
        };
        let err = DecodedBatch::parse(
            br#"{"records":[{"timestamp":"1","content":"a"},{"timestamp":"2","content":"b"}]}"#,
            &limits,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DecodeError::TooManyRecords { count: 2, limit: 1 }
        ));
    }

    #[test]
    fn base64_with_line_breaks_is_accepted() {
        let data = encode(br#"{"records":[]}"#);
        let wrapped = format!("{}\n{}", &data[..10], &data[10..]);
        assert!(decode(&wrapped).is_ok());
    }
}
