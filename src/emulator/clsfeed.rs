//! Cuts flow-log lines into CLS trigger events the way CLS ships them: records batched into
//! `{"topic_id","topic_name","records":[{"timestamp","content"}]}`, gzip, base64, wrapped as
//! `{"clslogs":{"data":…}}`, each event at most `max_event_bytes` (SCF's async limit: 128 KB).

use base64::Engine as _;

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

/// How full an event is cut: its gzip body at least this share of what the limit allows
/// (all but the last event of a file).
pub const FILL_PERCENT: usize = 90;

/// Turns flow-log lines (blank lines and `#` comments skipped) into CLS trigger events, each the
/// complete event JSON, at most `max_event_bytes` and at least [`FILL_PERCENT`] full.
pub fn cut_events<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    options: &FeedOptions,
) -> Result<Vec<Vec<u8>>, FeedError> {
    events(lines, options).collect()
}

/// [`cut_events`] as a stream: one event at a time, reading only the lines it holds. The cut is
/// linear in the input: each event is compressed about once. Its size is read ahead from the
/// last event's compression ratio, compressed, and corrected by that measured ratio when it
/// came out over the limit or under [`FILL_PERCENT`] (40,000 reference lines: 14 compressions
/// for 11 events; the search it replaced, from the last event's count, needed 6–10 an event;
/// 100,000 reference lines are cut in 3.0 s instead of 26.9 s by the debug build).
pub fn events<'a, 'o, L: AsRef<str>>(
    lines: impl IntoIterator<Item = L> + 'a,
    options: &'o FeedOptions,
) -> impl Iterator<Item = Result<Vec<u8>, FeedError>> + 'a
where
    'o: 'a,
{
    let mut lines = lines
        .into_iter()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.as_ref().trim();
            !line.is_empty() && !line.starts_with('#')
        })
        .peekable();
    let head = format!(
        "{{\"topic_id\":{},\"topic_name\":{},\"records\":[",
        serde_json::Value::from(options.topic_id.as_str()),
        serde_json::Value::from(options.topic_name.as_str())
    );
    // The event's bytes besides its base64 body, and the largest gzip body that fits.
    let (envelope, max_gzip) = gzip_budget(options.max_event_bytes);
    let mut pending = Pending::default();
    // Compressed bytes per raw byte, as the last event measured.
    let mut ratio = 0.2_f64;
    std::iter::from_fn(move || {
        if pending.ends.is_empty() && lines.peek().is_none() {
            return None;
        }
        // Aim between the fill floor and the limit.
        let target = max_gzip as f64 * (FILL_PERCENT as f64 + 100.0) / 200.0;
        let (mut want, mut raw) = (0usize, head.len() + 2);
        // Most records known to fit, fewest known not to (bounds of the search).
        let (mut fits, mut over) = (0usize, usize::MAX);
        for _ in 0..MAX_TRIES {
            if over == fits + 1 {
                break;
            }
            let goal = (target / ratio) as usize;
            // Records up to the goal (more than the most known to fit, fewer than too many).
            while want + 1 < over && (want <= fits || raw < goal) {
                if want == pending.ends.len() {
                    match lines.next() {
                        Some((i, line)) => {
                            pending.push(i + 1, line.as_ref().trim(), options.content)
                        }
                        None => break,
                    }
                }
                raw += pending.bytes(want);
                want += 1;
            }
            while want > fits + 1 && raw > goal {
                want -= 1;
                raw -= pending.bytes(want);
            }
            if want == fits {
                // The input ended at a count known to fit.
                break;
            }
            let batch = pending.batch(&head, want);
            let body = gzip(batch.as_bytes());
            ratio = body.len() as f64 / batch.len() as f64;
            if body.len() > max_gzip {
                if want == 1 {
                    return Some(Err(FeedError {
                        line: pending.ends[0].0,
                        size: envelope + base64_len(body.len()),
                        limit: options.max_event_bytes,
                    }));
                }
                over = want;
                continue;
            }
            fits = want;
            let ended = want == pending.ends.len() && lines.peek().is_none();
            if ended || body.len() * 100 >= max_gzip * FILL_PERCENT || want + 1 == over {
                pending.drain(want);
                return Some(Ok(envelope_of(&body)));
            }
        }
        // Records of very different sizes kept the estimate off: the most known to fit.
        let body = gzip(pending.batch(&head, fits).as_bytes());
        pending.drain(fits);
        Some(Ok(envelope_of(&body)))
    })
}

/// Compressions one event may take before it settles for the most records known to fit.
const MAX_TRIES: usize = 12;

/// The records read ahead of the event being cut: their JSON in one string, each followed by
/// a comma (so the first records of an event are one slice of it), and each one's line number
/// and where its comma ends.
#[derive(Default)]
struct Pending {
    text: String,
    ends: std::collections::VecDeque<(usize, usize)>,
}

impl Pending {
    /// Adds the record of `line`, the file's line `number`.
    fn push(&mut self, number: usize, line: &str, form: ContentForm) {
        write_record(&mut self.text, line, form);
        self.text.push(',');
        self.ends.push_back((number, self.text.len()));
    }

    /// The bytes of the first `n` records with their commas.
    fn end(&self, n: usize) -> usize {
        n.checked_sub(1).map_or(0, |last| self.ends[last].1)
    }

    /// The bytes record `at` adds to a batch, its comma included.
    fn bytes(&self, at: usize) -> usize {
        self.end(at + 1) - self.end(at)
    }

    /// The batch JSON of the first `n` records after `head`.
    fn batch(&self, head: &str, n: usize) -> String {
        let records = &self.text[..self.end(n).saturating_sub(1)];
        let mut batch = String::with_capacity(head.len() + records.len() + 2);
        batch.push_str(head);
        batch.push_str(records);
        batch.push_str("]}");
        batch
    }

    /// Forgets the first `n` records.
    fn drain(&mut self, n: usize) {
        let cut = self.end(n);
        self.text.drain(..cut);
        self.ends.drain(..n);
        for (_, end) in &mut self.ends {
            *end -= cut;
        }
    }
}

/// One record of a batch as JSON, `{"timestamp":"…","content":"…"}`, appended to `out`.
fn write_record(out: &mut String, line: &str, form: ContentForm) {
    let fields = fields(line);
    out.push_str("{\"timestamp\":\"");
    write_timestamp(out, fields.get(11).copied());
    out.push_str("\",\"content\":");
    match form {
        ContentForm::Json if plain(line) => write_plain_content(out, &fields),
        ContentForm::Json => json_string(out, &json_object(&fields)),
        ContentForm::Text => json_string(out, line),
    }
    out.push('}');
}

/// CLS stamps a record with its production time in microseconds; the window end (seconds) is
/// the closest we have: its digits and six zeros when it is a number written plainly, else
/// the number worked out, 0 when it is none (or too large).
fn write_timestamp(out: &mut String, end: Option<&str>) {
    match end {
        Some(end)
            if (1..=13).contains(&end.len())
                && !end.starts_with('0')
                && end.bytes().all(|b| b.is_ascii_digit()) =>
        {
            out.push_str(end);
            out.push_str("000000");
        }
        _ => {
            let micros = end
                .and_then(|end| end.parse::<u64>().ok())
                .and_then(|s| s.checked_mul(1_000_000))
                .unwrap_or(0);
            out.push_str(&micros.to_string());
        }
    }
}

/// A line's fields, split at runs of ASCII whitespace as `split_ascii_whitespace` splits them:
/// at its spaces through memchr when no other whitespace is in it (every flow-log line), the
/// cut's hottest loop otherwise left to the toolkit's opt-level 1 (docs/performance.md).
fn fields(line: &str) -> Vec<&str> {
    let bytes = line.as_bytes();
    if memchr::memchr3(b'\t', b'\n', b'\r', bytes).is_some()
        || memchr::memchr(0x0c, bytes).is_some()
    {
        return line.split_ascii_whitespace().collect();
    }
    let mut fields = Vec::with_capacity(esgflow::core::flowlog::FIELDS.len());
    let mut start = 0;
    for end in memchr::memchr_iter(b' ', bytes).chain([bytes.len()]) {
        if end > start {
            fields.push(&line[start..end]);
        }
        start = end + 1;
    }
    fields
}

/// The content object of a line's fields, keyed by the hyphenated FL keys.
fn json_object(fields: &[&str]) -> String {
    let mut object = String::from("{");
    for (i, (key, value)) in esgflow::core::flowlog::FIELDS
        .iter()
        .zip(fields)
        .enumerate()
    {
        if i > 0 {
            object.push(',');
        }
        json_string(&mut object, key);
        object.push(':');
        json_string(&mut object, value);
    }
    object.push('}');
    object
}

/// The content of a line whose fields need no escape (every flow-log line's): the JSON object
/// of its fields written straight as a JSON string's text, each key's part of it made once, in
/// one pass instead of writing the object and escaping it again (the cut's largest cost after
/// compression, docs/performance.md).
fn write_plain_content(out: &mut String, fields: &[&str]) {
    static KEYS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        esgflow::core::flowlog::FIELDS
            .iter()
            .enumerate()
            .map(|(i, key)| format!("{}\\\"{key}\\\":\\\"", if i > 0 { "\\\"," } else { "" }))
            .collect()
    });
    out.push_str("\"{");
    for (key, value) in KEYS.iter().zip(fields) {
        out.push_str(key);
        out.push_str(value);
    }
    if !fields.is_empty() {
        out.push_str("\\\"");
    }
    out.push_str("}\"");
}

/// Whether `text` is the same inside a JSON string.
fn plain(text: &str) -> bool {
    // An indexed loop: the toolkit's opt-level 1 leaves an iterator's calls in (a line is
    // checked once, on the cut's hottest path).
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            return false;
        }
        i += 1;
    }
    true
}

/// `text` as a JSON string, appended to `out` (RFC 8259: `"`, `\\` and control characters
/// escaped).
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    if plain(text) {
        out.push_str(text);
        out.push('"');
        return;
    }
    let mut plain = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[plain..i]);
        if escaped.is_empty() {
            out.push_str(&format!("\\u{byte:04x}"));
        } else {
            out.push_str(escaped);
        }
        plain = i + 1;
    }
    out.push_str(&text[plain..]);
    out.push('"');
}

#[cfg(test)]
thread_local! {
    /// Batches compressed on this thread (what the cut's cost is counted in).
    static COMPRESSIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// `bytes` gzipped, as CLS compresses a batch (libdeflate at zlib's default level 6; about
/// twice as fast as zlib for the same size, docs/performance.md).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    #[cfg(test)]
    COMPRESSIONS.with(|n| n.set(n.get() + 1));
    let mut compressor = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
    let mut gz = vec![0; compressor.gzip_compress_bound(bytes.len())];
    let n = compressor
        .gzip_compress(bytes, &mut gz)
        .expect("the bound holds the compressed bytes");
    gz.truncate(n);
    gz
}

/// The bytes of an event besides its base64 body, and the largest gzip body an event of at
/// most `max_event_bytes` holds.
fn gzip_budget(max_event_bytes: usize) -> (usize, usize) {
    let envelope = envelope_of(&[]).len();
    (envelope, max_event_bytes.saturating_sub(envelope) / 4 * 3)
}

/// The length of `n` bytes in padded base64.
fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// A gzip body wrapped as a CLS trigger event: base64, envelope.
fn envelope_of(body: &[u8]) -> Vec<u8> {
    let data = base64::engine::general_purpose::STANDARD.encode(body);
    let mut event = Vec::with_capacity(data.len() + 24);
    event.extend_from_slice(b"{\"clslogs\":{\"data\":\"");
    event.extend_from_slice(data.as_bytes());
    event.extend_from_slice(b"\"}}");
    event
}

/// Wraps an already serialized batch JSON as a CLS trigger event: gzip, base64, envelope.
pub fn encode_batch_json(batch_json: &[u8]) -> Vec<u8> {
    envelope_of(&gzip(batch_json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use esgflow::events::{ClsTriggerEvent, DecodeLimits, DecodedBatch};

    /// A line's fields are `split_ascii_whitespace`'s, whatever whitespace is in it.
    #[test]
    fn fields_split_as_split_ascii_whitespace_splits() {
        for line in [
            "2 1251762227 eni-1 10.0.0.1 10.0.0.2 1024 443 6 1 60 1700000000 1700000060 ACCEPT OK",
            "  two  spaces   and ends ",
            "a\tb c\r\nd",
            "form\x0cfeed x",
            "",
            " ",
            "single",
            "é ü 中",
        ] {
            assert_eq!(
                fields(line),
                line.split_ascii_whitespace().collect::<Vec<_>>(),
                "{line:?}"
            );
        }
    }

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
        // Every event but the last is full: its body at least FILL_PERCENT of what fits.
        for event in &events[..events.len() - 1] {
            assert!(event.len() >= least_full(limit), "{}", event.len());
        }
    }

    /// The size of an event whose gzip body is [`FILL_PERCENT`] of the most `limit` allows.
    fn least_full(limit: usize) -> usize {
        let (envelope, max_gzip) = gzip_budget(limit);
        envelope + base64_len(max_gzip * FILL_PERCENT / 100)
    }

    /// Lines of very different lengths and compressibility, so one event's ratio is a poor
    /// guess for the next, still give full events that hold every line once, in order.
    #[test]
    fn events_of_very_different_sizes_are_full() {
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
        let mut start = 0;
        for (n, event) in events.iter().enumerate() {
            assert!(event.len() <= limit);
            let end = start + decode(event).len();
            assert_eq!(decode(event), input[start..end]);
            if n + 1 < events.len() {
                assert!(
                    event.len() >= least_full(limit),
                    "event {n}: {}",
                    event.len()
                );
            }
            start = end;
        }
        assert_eq!(start, input.len());
    }

    /// The cut is linear: an event is compressed about once, not searched for by compressing
    /// candidate after candidate (which took 6 to 10 compressions of the whole event).
    #[test]
    fn an_event_is_compressed_about_once() {
        let input = crate::testdata::reference::day_lines(40_000, 3, 1_767_225_600);
        let before = COMPRESSIONS.with(std::cell::Cell::get);
        let events = events(input, &FeedOptions::default())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let compressions = COMPRESSIONS.with(std::cell::Cell::get) - before;
        assert!(events.len() >= 8, "{}", events.len());
        assert!(
            compressions * 10 <= events.len() * 15,
            "{compressions} compressions for {} events",
            events.len()
        );
        for event in &events[..events.len() - 1] {
            assert!(event.len() >= least_full(MAX_ASYNC_EVENT_BYTES));
        }
    }

    /// The cut's events, byte for byte, as the code before the records read ahead were kept in
    /// one string cut them (`esgflow feed --max-event-bytes 4096` of these lines at `f6a4cd0`):
    /// a change to the search for an event's size changes what every replay feeds the
    /// function. Small events, so that a slightly different estimate cuts elsewhere (the ratio
    /// once taken over one byte more than the batch moved 34 of these 370 events).
    #[test]
    fn the_events_are_those_the_cut_has_always_made() {
        use sha2::Digest as _;
        let input = crate::testdata::reference::day_lines(40_000, 3, 1_767_225_600);
        let options = FeedOptions {
            max_event_bytes: 4096,
            ..FeedOptions::default()
        };
        let mut digest = sha2::Sha256::new();
        let mut n = 0;
        for event in events(input, &options) {
            digest.update(event.unwrap());
            n += 1;
        }
        assert_eq!(n, 370);
        assert_eq!(
            format!("{:x}", digest.finalize()),
            "ff84daaeaacf8a1a27313e9a448556ef30f21fa1a2a98e650dfc7f4e92d503a9"
        );
    }

    #[test]
    fn a_string_is_escaped_as_serde_escapes_it() {
        for text in [
            "plain",
            "a \"quoted\" \\ path",
            "tab\tand\u{1}",
            "",
            "\u{7f} ünï",
        ] {
            let mut out = String::new();
            json_string(&mut out, text);
            assert_eq!(out, serde_json::Value::from(text).to_string(), "{text:?}");
        }
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

    fn record(line: &str, form: ContentForm) -> String {
        let mut out = String::new();
        write_record(&mut out, line, form);
        out
    }

    /// The one-pass record of plain fields is the record the general path writes, byte for
    /// byte (a tab between fields sends a line the general way); a field with a quote or a
    /// backslash takes the general path and reads back.
    #[test]
    fn a_plain_line_is_written_as_the_general_path_writes_it() {
        for line in lines(3) {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let general = format!(
                "{{\"timestamp\":\"{}000000\",\"content\":{}}}",
                fields[11],
                serde_json::Value::from(json_object(&fields))
            );
            assert_eq!(record(&line, ContentForm::Json), general);
            assert_eq!(record(&line.replace(' ', "\t"), ContentForm::Json), general);
        }
        let odd = lines(1)[0].replace(" OK", " O\"K\\");
        let written: serde_json::Value =
            serde_json::from_str(&record(&odd, ContentForm::Json)).unwrap();
        let content: serde_json::Value =
            serde_json::from_str(written["content"].as_str().unwrap()).unwrap();
        assert_eq!(content["log-status"], "O\"K\\");
    }

    /// A record's timestamp is its window end in microseconds, however the end is written; 0
    /// when it is not a number or too large for one.
    #[test]
    fn a_timestamp_is_the_window_end_in_microseconds() {
        for (end, micros) in [
            ("1700000060", "1700000060000000"),
            ("0", "0"),
            ("007", "7000000"),
            ("+5", "5000000"),
            ("9999999999999", "9999999999999000000"),
            ("18446744073709", "18446744073709000000"),
            ("18446744073710", "0"),
            ("soon", "0"),
            ("-1", "0"),
        ] {
            let mut out = String::new();
            write_timestamp(&mut out, Some(end));
            assert_eq!(out, micros, "{end}");
        }
        let mut out = String::new();
        write_timestamp(&mut out, None);
        assert_eq!(out, "0");
    }

    /// The records read ahead make each batch as one slice, whatever was cut before.
    #[test]
    fn pending_records_make_the_batch_of_the_first_n() {
        let mut pending = Pending::default();
        let input = lines(5);
        for (i, line) in input.iter().enumerate() {
            pending.push(i + 1, line, ContentForm::Text);
        }
        let batch = |pending: &Pending, n: usize| -> Vec<String> {
            let batch: serde_json::Value =
                serde_json::from_str(&pending.batch("{\"records\":[", n)).unwrap();
            batch["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["content"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(batch(&pending, 0), Vec::<String>::new());
        assert_eq!(batch(&pending, 3), input[..3]);
        assert_eq!(
            (0..5).map(|at| pending.bytes(at)).sum::<usize>(),
            pending.end(5)
        );
        pending.drain(2);
        assert_eq!(pending.ends[0].0, 3);
        assert_eq!(batch(&pending, 3), input[2..]);
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
