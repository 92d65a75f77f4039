//! Cuts flow-log lines into CLS trigger events the way CLS ships them: records batched into
//! `{"topic_id","topic_name","records":[{"timestamp","content"}]}`, gzip, base64, wrapped as
//! `{"clslogs":{"data":…}}`, each event at most `max_event_bytes` (SCF's async limit: 128 KB).

use std::io::Write;

use base64::Engine as _;
use serde::Serialize;

/// SCF's async event limit, which CLS batches are cut to.
pub const MAX_ASYNC_EVENT_BYTES: usize = 128 * 1024;

/// How `content` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ContentForm {
    /// A JSON object with the hyphenated FL keys and string values (the assumed CLS shape).
    Json,
    /// The raw 14-field text line.
    Text,
}

/// Options for [`cut_events`].
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// `topic_id` written into every batch.
    pub topic_id: String,
    /// `topic_name` written into every batch.
    pub topic_name: String,
    /// Largest event, bytes of the whole event JSON.
    pub max_event_bytes: usize,
    /// Form of each record's content.
    pub content: ContentForm,
}

impl Default for FeedOptions {
    fn default() -> Self {
        Self {
            topic_id: "00000000-0000-4000-8000-00000000f10w".to_string(),
            topic_name: "flowlog".to_string(),
            max_event_bytes: MAX_ASYNC_EVENT_BYTES,
            content: ContentForm::Json,
        }
    }
}

#[derive(Serialize)]
struct Record {
    timestamp: String,
    content: String,
}

#[derive(Serialize)]
struct Batch<'a> {
    topic_id: &'a str,
    topic_name: &'a str,
    records: &'a [Record],
}

/// A single event is too large even with one record.
#[derive(Debug, thiserror::Error)]
#[error("line {line} alone makes a {size}-byte event, over the {limit}-byte limit")]
pub struct FeedError {
    /// 1-based line number.
    pub line: usize,
    /// Its event size.
    pub size: usize,
    /// The limit.
    pub limit: usize,
}

/// Turns flow-log lines (blank lines and `#` comments skipped) into CLS trigger events, each the
/// complete event JSON, filling every event as full as the size limit allows.
pub fn cut_events<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    options: &FeedOptions,
) -> Result<Vec<Vec<u8>>, FeedError> {
    let records: Vec<(usize, Record)> = lines
        .into_iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| (i + 1, record(l.trim(), options.content)))
        .collect();
    let (numbers, records): (Vec<usize>, Vec<Record>) = records.into_iter().unzip();
    let mut events = Vec::new();
    let mut start = 0;
    // The previous event's record count: the next event usually holds about as many, so the
    // search starts there instead of from one record (each try compresses a whole candidate
    // event: from one record, doubling then bisecting took about 23 tries an event, and 100,000
    // lines took 6.3 s to cut; from the last count, a few).
    let mut guess = 1;
    while start < records.len() {
        // The last event that fit, kept so the one chosen is not compressed again.
        let mut kept: Option<(usize, Vec<u8>)> = None;
        let mut fits = |end: usize| {
            let event = encode(&records[start..end], options);
            let fit = event.len() <= options.max_event_bytes;
            if fit && kept.as_ref().is_none_or(|(at, _)| *at < end) {
                kept = Some((end, event));
            }
            fit
        };
        if !fits(start + 1) {
            // One record that cannot fit at all: say which line.
            return Err(FeedError {
                line: numbers[start],
                size: encode(&records[start..start + 1], options).len(),
                limit: options.max_event_bytes,
            });
        }
        // `good` fits; `bad` does not (or is one past the end): gallop from the guess, then
        // bisect between them.
        let last = records.len();
        let (mut good, mut bad) = (start + 1, last + 1);
        let mut probe = (start + guess).clamp(start + 1, last);
        let mut step = 1;
        if fits(probe) {
            good = probe;
            while good < last {
                probe = (good + step).min(last);
                if fits(probe) {
                    good = probe;
                    step *= 2;
                } else {
                    bad = probe;
                    break;
                }
            }
        } else {
            bad = probe;
            while bad - 1 > good {
                probe = bad.saturating_sub(step).max(good);
                if probe == good || fits(probe) {
                    good = probe;
                    break;
                }
                bad = probe;
                step *= 2;
            }
        }
        while bad - good > 1 {
            let mid = (good + bad) / 2;
            if fits(mid) {
                good = mid;
            } else {
                bad = mid;
            }
        }
        let event = match kept {
            Some((end, event)) if end == good => event,
            _ => encode(&records[start..good], options),
        };
        events.push(event);
        guess = good - start;
        start = good;
    }
    Ok(events)
}

fn record(line: &str, form: ContentForm) -> Record {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    // CLS stamps a record with its production time; the window end is the closest we have.
    let timestamp = fields
        .get(11)
        .and_then(|end| end.parse::<u64>().ok())
        .map(|s| (s * 1_000_000).to_string())
        .unwrap_or_else(|| "0".to_string());
    let content = match form {
        ContentForm::Text => line.to_string(),
        ContentForm::Json => {
            let object: serde_json::Map<String, serde_json::Value> = esgflow::core::flowlog::FIELDS
                .iter()
                .zip(fields.iter())
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                .collect();
            serde_json::Value::Object(object).to_string()
        }
    };
    Record { timestamp, content }
}

/// Encodes records as one complete CLS trigger event.
fn encode(records: &[Record], options: &FeedOptions) -> Vec<u8> {
    let batch = Batch {
        topic_id: &options.topic_id,
        topic_name: &options.topic_name,
        records,
    };
    encode_batch_json(&serde_json::to_vec(&batch).expect("plain data serializes"))
}

/// Wraps an already serialized batch JSON as a CLS trigger event: gzip, base64, envelope.
pub fn encode_batch_json(batch_json: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(batch_json)
        .expect("writing to memory cannot fail");
    let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("in memory"));
    serde_json::to_vec(&serde_json::json!({"clslogs": {"data": data}})).expect("plain data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use esgflow::events::{ClsTriggerEvent, DecodeLimits, DecodedBatch};

    fn lines(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("2 1251762227 eni-{i:08x} 10.0.{}.{} 10.1.0.{} {} 443 6 {} {} 1700000000 1700000060 ACCEPT OK", i % 250, i % 200, i % 100, 1024 + i, i, i * 60))
            .collect()
    }

    fn decode(event: &[u8]) -> Vec<String> {
        let event: ClsTriggerEvent = serde_json::from_slice(event).unwrap();
        let bytes = event.decompress(&DecodeLimits::default()).unwrap();
        let batch = DecodedBatch::parse(&bytes, &DecodeLimits::default()).unwrap();
        batch
            .records
            .into_iter()
            .map(|r| r.unwrap().content.into_owned())
            .collect()
    }

    #[test]
    fn every_event_fits_and_no_line_is_lost_or_reordered() {
        let input = lines(3_000);
        let limit = 16 * 1024;
        let options = FeedOptions {
            content: ContentForm::Text,
            max_event_bytes: limit,
            ..FeedOptions::default()
        };
        let events = cut_events(input.iter().map(String::as_str), &options).unwrap();
        assert!(
            events.len() > 3,
            "3k lines should need several 16 KB events"
        );
        assert!(events.iter().all(|e| e.len() <= limit));
        let round_trip: Vec<String> = events.iter().flat_map(|e| decode(e)).collect();
        assert_eq!(round_trip, input);
        // Greedy: every event but the last is nearly full, and could not take the next line.
        for event in &events[..events.len() - 1] {
            assert!(event.len() > limit * 9 / 10, "{}", event.len());
        }
        let records: Vec<Record> = input.iter().map(|l| record(l, options.content)).collect();
        let mut start = 0;
        for event in &events[..events.len() - 1] {
            let end = start + decode(event).len();
            assert!(encode(&records[start..=end], &options).len() > limit);
            start = end;
        }
    }

    /// The cut does not depend on where the search starts: lines of very different lengths,
    /// so one event's count is a poor guess for the next, still give full events that hold
    /// every line once, in order.
    #[test]
    fn events_of_very_different_sizes_are_cut_greedily() {
        let mut input = lines(1_500);
        for (i, line) in input.iter_mut().enumerate() {
            if (i / 300) % 2 == 1 {
                // Long, poorly compressible tails for a stretch of lines.
                let tail: String = (0..120u32)
                    .map(|j| {
                        char::from(
                            b'a' + ((i as u32 * 31 + j).wrapping_mul(2_654_435_761) >> 9) as u8
                                % 26,
                        )
                    })
                    .collect();
                line.push(' ');
                line.push_str(&tail);
            }
        }
        let limit = 8 * 1024;
        let options = FeedOptions {
            content: ContentForm::Text,
            max_event_bytes: limit,
            ..FeedOptions::default()
        };
        let events = cut_events(input.iter().map(String::as_str), &options).unwrap();
        let records: Vec<Record> = input.iter().map(|l| record(l, options.content)).collect();
        let mut start = 0;
        for (n, event) in events.iter().enumerate() {
            assert!(event.len() <= limit);
            let end = start + decode(event).len();
            assert_eq!(decode(event), input[start..end]);
            if n + 1 < events.len() {
                assert!(
                    encode(&records[start..=end], &options).len() > limit,
                    "event {n}"
                );
            }
            start = end;
        }
        assert_eq!(start, input.len());
    }

    #[test]
    fn json_content_has_the_hyphenated_keys() {
        let input = lines(1);
        let events = cut_events(input.iter().map(String::as_str), &FeedOptions::default()).unwrap();
        let content: serde_json::Value = serde_json::from_str(&decode(&events[0])[0]).unwrap();
        assert_eq!(content["interface-id"], "eni-00000000");
        assert_eq!(content["log-status"], "OK");
        assert_eq!(content["dstport"], "443");
    }

    #[test]
    fn a_line_too_large_for_any_event_is_named() {
        // Incompressible filler, so the line stays large after gzip.
        let filler: String = (0..400u32)
            .map(|i| char::from(b'!' + (i.wrapping_mul(2_654_435_761) >> 7) as u8 % 90))
            .collect();
        let long = format!("2 1 eni-a 10.0.0.1 10.0.0.2 1 80 6 1 1 1 2 ACCEPT OK {filler}");
        let options = FeedOptions {
            max_event_bytes: 300,
            content: ContentForm::Text,
            ..FeedOptions::default()
        };
        let err = cut_events(["# comment", "", long.as_str()], &options).unwrap_err();
        assert_eq!(err.line, 3);
    }
}
