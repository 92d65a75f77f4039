//! Record bodies in blocks: up to [`BLOCK`] records stored together column by column (every
//! record's value of one key on consecutive lines), deflated. The records of a batch share most
//! of their values — the account, the snapshot version, the names of the same VPCs, subnets and
//! rules — which a column puts side by side: a reference-account hit record (1,100 bytes of
//! JSON) takes about 80 bytes in a block of 128, against 120 for the same records deflated line
//! by line (measured on a day's first 100,000 lines; docs/records.md).

use std::io::Read;

use serde_json::{Map, Value};

use super::line::Span;

/// Most records in a block: larger blocks compress a little better (256: 74 bytes a record)
/// but a page of search results may read a block for each record it returns.
pub const BLOCK: usize = 128;

/// The keys every record has as a column of table `records`, left out of its block and put
/// back from those columns.
pub const COLUMN_KEYS: [&str; 3] = ["record_type", "record_id", "time"];

/// A block is written once its records' JSON reaches this many bytes, whatever their number.
pub const BLOCK_BYTES: usize = 1 << 20;

/// The longest record a store keeps (a JSON line; audit's are about 1 KB): longer lines are
/// counted as skipped.
pub const MAX_RECORD_BYTES: usize = 8 << 20;

/// Most bytes a block inflates to: [`BLOCK_BYTES`] and one more record of
/// [`MAX_RECORD_BYTES`], with room for escaping; a block past it is refused as damaged.
const MAX_INFLATED: u64 = 4 * (BLOCK_BYTES + MAX_RECORD_BYTES) as u64;

/// A record waiting for its block: its JSON line, and where the fields the block keeps are in
/// it.
pub struct Body {
    pub line: String,
    pub spans: Vec<Span>,
}

/// libdeflate's level 1 (its fastest that compresses: `CompressionLvl::fastest()` is level 0,
/// which stores): over a thousand of the reference day's blocks 3.4 times as fast as zlib's
/// default level 6 (0.115 s against 0.393 s for 41.6 MB) for 19 % more bytes (18.9 % of the text
/// against 15.9 %; bodies are an eighth of the store): the import's third thread shares two cores
/// with the other two (docs/performance.md, "The store's import").
const LEVEL: libdeflater::CompressionLvl = match libdeflater::CompressionLvl::new(1) {
    Ok(level) => level,
    Err(_) => panic!("libdeflate has a level 1"),
};

/// `records` as one block: each value's JSON text as its line holds it.
pub fn encode(records: &[Body]) -> Vec<u8> {
    // Each span's column: the same as the last record's span in its place when the key is the
    // same (a block's records mostly share their keys, in one order), else through a hash; the
    // columns numbered as first met, then put in the keys' order.
    const LEFT_OUT: usize = usize::MAX;
    let mut numbers: foldhash::HashMap<&str, usize> = Default::default();
    let mut met: Vec<&str> = Vec::new();
    let mut last: Vec<(&str, usize)> = Vec::new();
    let mut columns: Vec<usize> = Vec::with_capacity(records.iter().map(|b| b.spans.len()).sum());
    for body in records {
        for (at, span) in body.spans.iter().enumerate() {
            let key = span.key(&body.line);
            let column = match last.get(at) {
                Some(&(same, column)) if same == key => column,
                _ => {
                    let column = *numbers.entry(key).or_insert_with(|| {
                        if COLUMN_KEYS.contains(&key) {
                            LEFT_OUT
                        } else {
                            met.push(key);
                            met.len() - 1
                        }
                    });
                    match last.get_mut(at) {
                        Some(place) => *place = (key, column),
                        None => last.push((key, column)),
                    }
                    column
                }
            };
            columns.push(column);
        }
    }
    let mut order: Vec<usize> = (0..met.len()).collect();
    order.sort_unstable_by_key(|&column| met[column]);
    let keys: Vec<&str> = order.iter().map(|&column| met[column]).collect();
    let mut place = vec![0; met.len()];
    for (k, &column) in order.iter().enumerate() {
        place[column] = k;
    }
    // Each record's value of each key, key by key.
    let mut cells: Vec<Option<&str>> = vec![None; keys.len() * records.len()];
    let mut columns = columns.into_iter();
    for (r, body) in records.iter().enumerate() {
        for span in &body.spans {
            let column = columns.next().expect("a column a span");
            if column != LEFT_OUT {
                cells[place[column] * records.len() + r] = Some(&body.line[span.value.clone()]);
            }
        }
    }
    let mut text = serde_json::to_vec(&(records.len(), &keys)).expect("strings serialize");
    text.reserve(records.iter().map(|body| body.line.len()).sum());
    for cell in cells {
        text.push(b'\n');
        text.extend_from_slice(cell.unwrap_or_default().as_bytes());
    }
    // The whole block at once, by the thread's compressor (made once: its state is zeroed
    // memory a block need not pay for again).
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<libdeflater::Compressor> =
            std::cell::RefCell::new(libdeflater::Compressor::new(LEVEL));
    }
    COMPRESSOR.with_borrow_mut(|compressor| {
        let mut data = vec![0; compressor.deflate_compress_bound(text.len())];
        let n = compressor
            .deflate_compress(&text, &mut data)
            .expect("the bound holds the compressed bytes");
        data.truncate(n);
        data
    })
}

/// A block read back: its records' values, line by line.
///
/// Its text: a header line `[records, [keys…]]`, then for each key (in order) a line per
/// record, the record's value as JSON or empty when the record lacks the key.
pub struct Block {
    text: Vec<u8>,
    keys: Vec<String>,
    /// Where each value's line starts, key by key, record by record.
    starts: Vec<usize>,
    /// Records in the block.
    len: usize,
}

impl Block {
    /// Inflates a block [`encode`] wrote.
    pub fn decode(data: &[u8]) -> Result<Self, String> {
        let mut text = Vec::new();
        flate2::read::DeflateDecoder::new(data)
            .take(MAX_INFLATED + 1)
            .read_to_end(&mut text)
            .map_err(|e| format!("a body block does not inflate: {e}"))?;
        if text.len() as u64 > MAX_INFLATED {
            return Err(format!("a body block inflates past {MAX_INFLATED} bytes"));
        }
        let header_end = memchr::memchr(b'\n', &text).unwrap_or(text.len());
        let (len, keys): (usize, Vec<String>) = serde_json::from_slice(&text[..header_end])
            .map_err(|e| format!("a body block's header does not read: {e}"))?;
        let starts: Vec<usize> = memchr::memchr_iter(b'\n', &text).map(|at| at + 1).collect();
        if Some(starts.len()) != len.checked_mul(keys.len()) {
            return Err(format!(
                "a body block holds {} values, not {len} records of {} keys",
                starts.len(),
                keys.len()
            ));
        }
        Ok(Self {
            text,
            keys,
            starts,
            len,
        })
    }

    /// Whether the block holds a record in `slot`.
    pub fn holds(&self, slot: usize) -> bool {
        slot < self.len
    }

    /// The record in `slot` (its place in the block), without the [`COLUMN_KEYS`].
    pub fn record(&self, slot: usize) -> Result<Map<String, Value>, String> {
        let mut record = Map::new();
        if slot >= self.len {
            return Err(format!(
                "a body block holds {} records, not {}",
                self.len,
                slot + 1
            ));
        }
        for (k, key) in self.keys.iter().enumerate() {
            let line = k * self.len + slot;
            let start = self.starts[line];
            let end = self
                .starts
                .get(line + 1)
                .map_or(self.text.len(), |next| next - 1);
            let value = &self.text[start..end];
            if !value.is_empty() {
                let value = serde_json::from_slice(value)
                    .map_err(|e| format!("a body block's {key} does not read: {e}"))?;
                record.insert(key.clone(), value);
            }
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::line::RecordLine;
    use std::io::Write;

    fn body(value: &Value) -> Body {
        let line = value.to_string();
        let spans = RecordLine::parse(&line).unwrap().spans(|_| false);
        Body { line, spans }
    }

    /// Each record reads back as it was, without its column keys, whatever keys the others have.
    #[test]
    fn records_of_different_keys_read_back_as_they_were() {
        let records = [
            serde_json::json!({"record_type": "block_hit", "record_id": "a", "time": 1,
                "src_ip": "10.0.0.1", "note": "line\nbreak", "nested": {"a": [1, null]}}),
            serde_json::json!({"record_type": "rule_hits", "time": 2, "hits": 3,
                "empty": "", "null": null}),
            serde_json::json!({"record_type": "rule_hits", "time": 3, "hits": 4, "empty": "x", "null": 1}),
            serde_json::json!({"record_id": "c"}),
        ];
        let bodies: Vec<Body> = records.iter().map(body).collect();
        let block = Block::decode(&encode(&bodies)).unwrap();
        for (slot, record) in records.iter().enumerate() {
            let mut expected = record.as_object().unwrap().clone();
            for key in COLUMN_KEYS {
                expected.remove(key);
            }
            assert_eq!(block.record(slot).unwrap(), expected, "slot {slot}");
        }
        assert!(block.record(4).unwrap_err().contains("holds 4 records"));
    }

    /// Records whose keys come in other orders, or other keys in the same places, each read
    /// back as they were, and the block's keys are in order.
    #[test]
    fn records_of_keys_in_any_order_read_back_as_they_were() {
        let lines = [
            r#"{"b":1,"a":2,"c":3}"#,
            r#"{"a":4,"b":5,"c":6}"#,
            r#"{"b":7,"d":8}"#,
            r#"{"d":9,"b":10,"a":11,"c":12}"#,
            r#"{"time":5,"b":13}"#,
            r#"{"b":14,"time":6,"a":15}"#,
            r#"{"b":16,"a":17}"#,
        ];
        // Each line as written (serde_json would put its keys in order).
        let bodies: Vec<Body> = lines
            .iter()
            .map(|line| Body {
                line: line.to_string(),
                spans: RecordLine::parse(line).unwrap().spans(|_| false),
            })
            .collect();
        let block = Block::decode(&encode(&bodies)).unwrap();
        assert_eq!(block.keys, ["a", "b", "c", "d"]);
        for (slot, line) in lines.iter().enumerate() {
            let mut expected: Map<String, Value> = serde_json::from_str(line).unwrap();
            expected.remove("time");
            assert_eq!(block.record(slot).unwrap(), expected, "slot {slot}");
        }
    }

    /// A block is deflated, not stored: a hundred records alike take a tenth of their text.
    #[test]
    fn a_block_is_compressed() {
        let bodies: Vec<Body> = (0..100)
            .map(|i| {
                body(
                    &serde_json::json!({"record_type": "block_hit", "time": 1_767_225_600 + i,
                    "src_vpc_name": "payments production", "rule_description": "deny the rest",
                    "eni": format!("eni-{:08x}", i % 7)}),
                )
            })
            .collect();
        let text: usize = bodies.iter().map(|body| body.line.len()).sum();
        let block = encode(&bodies);
        assert!(block.len() * 10 < text, "{} bytes of {text}", block.len());
    }

    #[test]
    fn a_damaged_block_is_refused_by_what_is_wrong() {
        assert!(Block::decode(b"not deflate")
            .err()
            .unwrap()
            .contains("does not inflate"));
        let mut deflate =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflate.write_all(b"[2,[\"a\",\"b\"]]\n1\n2\n3").unwrap();
        let uneven = deflate.finish().unwrap();
        assert!(Block::decode(&uneven)
            .err()
            .unwrap()
            .contains("holds 3 values, not 2 records of 2 keys"));
    }
}
