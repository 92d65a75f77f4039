//! The fast path for a decoded CLS batch: one pass over the batch JSON that borrows everything,
//! each record's `content` included, which it leaves in its escaped form. A reader the caller
//! passes (the audit pipeline passes [`crate::core::flowlog::read_embedded`]) reads each content where
//! it lies, in the same pass, instead of the content being unescaped into a new string and
//! parsed a second time.
//!
//! It accepts only the shape CLS ships: an object of strings, integers and literals around the
//! `records` array, records of a `timestamp` (digits, quoted or not) and a `content` string, no
//! `\u` escapes, no duplicate keys. Anything else (nested values, escapes in the envelope's own
//! strings, a malformed document) answers `None`, and the caller decodes the batch with
//! [`DecodedBatch::parse`](super::DecodedBatch::parse), whose errors and per-record reports are
//! the reference. So the fast path never decides anything on its own: when it answers, it answers
//! what the general path would (the `fast_path_agrees` property test and the `cls_event` fuzz
//! target compare the two).

use std::borrow::Cow;

/// A batch read by [`scan`] (its records went to the caller one by one).
#[derive(Debug, PartialEq, Eq)]
pub struct ScannedBatch<'a> {
    /// `topic_id` (empty when absent).
    pub topic_id: &'a str,
    /// `topic_name` (empty when absent).
    pub topic_name: &'a str,
    /// How many records it holds.
    pub records: usize,
}

/// One record read by [`scan`]; `T` is what the content reader made of its content.
pub struct ScannedRecord<'a, T> {
    /// Production time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The content, still escaped.
    pub content: Escaped<'a>,
    /// What the content reader made of the whole content, when it read all of it.
    pub read: Option<T>,
}

/// A JSON string as it stands in the document: the quotes and the escapes still in place. The
/// scanner only lets through strings whose escapes are all of the one-character kind (`\"`,
/// `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`), so [`Escaped::unescape`] cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escaped<'a>(&'a str);

impl<'a> Escaped<'a> {
    /// The text between the quotes, escapes intact.
    pub fn raw(&self) -> &'a str {
        &self.0[1..self.0.len() - 1]
    }

    /// The string's value.
    pub(crate) fn unescape(&self) -> Cow<'a, str> {
        let raw = self.raw();
        if raw.contains('\\') {
            Cow::Owned(
                serde_json::from_str(self.0).expect("the scanner admits only simple escapes"),
            )
        } else {
            Cow::Borrowed(raw)
        }
    }
}

/// Reads `text` as a CLS batch of at most `max_records` records, or answers `None` when it is
/// not in the plain shape CLS ships (see the module documentation).
///
/// `read` is called at the start of every content (just after its opening quote) with the rest of
/// the document. It answers what it made of the content and how many bytes that took, having
/// looked at no raw `"`, no control character and no escape but `\"`; when the next byte is then
/// the closing quote, the content is what it read. Otherwise (or when it answers `None`) the
/// content is scanned as any string and `read` is `None` in the record.
///
/// `each` receives the records in order as they are read, so that no list of them is built;
/// when the answer is `None`, what it received must be thrown away.
pub fn scan<'a, T>(
    text: &'a str,
    max_records: usize,
    read: impl Fn(&'a str) -> Option<(T, usize)>,
    mut each: impl FnMut(ScannedRecord<'a, T>),
) -> Option<ScannedBatch<'a>> {
    let mut cursor = Cursor { text, at: 0 };
    let (mut topic_id, mut topic_name, mut records) = (None, None, None);
    cursor.object(|cursor, key| match key {
        "topic_id" => set_once(&mut topic_id, cursor.plain_string()?),
        "topic_name" => set_once(&mut topic_name, cursor.plain_string()?),
        "records" => set_once(&mut records, cursor.records(max_records, &read, &mut each)?),
        _ => cursor.skip_simple(),
    })?;
    cursor.end()?;
    Some(ScannedBatch {
        topic_id: topic_id.unwrap_or_default(),
        topic_name: topic_name.unwrap_or_default(),
        records: records?,
    })
}

/// Keeps the first value of a key; a second one (which serde would refuse) ends the fast path.
fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.text.as_bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.at) {
            self.at += 1;
        }
        bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    /// `{ "key": value, ... }`, calling `field` with the cursor on each value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.plain_string()?;
            self.eat(b':')?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string with its quotes, escapes checked but left in place.
    fn string(&mut self) -> Option<Escaped<'a>> {
        self.eat(b'"')?;
        let bytes = self.text.as_bytes();
        let start = self.at - 1;
        let mut at = self.at;
        loop {
            match *bytes.get(at)? {
                b'"' => break,
                b'\\' => match bytes.get(at + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at += 2,
                    _ => return None,
                },
                0..=0x1f => return None,
                _ => at += 1,
            }
        }
        self.at = at + 1;
        Some(Escaped(&self.text[start..self.at]))
    }

    /// A string without escapes (keys, topic ids).
    fn plain_string(&mut self) -> Option<&'a str> {
        let string = self.string()?.raw();
        (!string.contains('\\')).then_some(string)
    }

    /// `-?[0-9]+`, without a leading zero, as serde_json reads an integer; its digits.
    fn integer(&mut self) -> Option<&'a str> {
        self.peek()?;
        let bytes = self.text.as_bytes();
        let start = self.at;
        let digits = start + usize::from(bytes[start] == b'-');
        let end = digits
            + bytes[digits..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        let leading_zero = end - digits > 1 && bytes[digits] == b'0';
        if end == digits || leading_zero || matches!(bytes.get(end), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.at = end;
        Some(&self.text[start..end])
    }

    /// A value serde ignores without looking inside: a string, an integer or a literal.
    fn skip_simple(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'-' | b'0'..=b'9' => self.integer().map(drop),
            _ => ["true", "false", "null"]
                .into_iter()
                .find(|word| self.text[self.at..].starts_with(word))
                .map(|word| self.at += word.len()),
        }
    }

    /// The records array, each record handed to `each`; answers how many there were.
    fn records<T>(
        &mut self,
        max_records: usize,
        read: &impl Fn(&'a str) -> Option<(T, usize)>,
        each: &mut impl FnMut(ScannedRecord<'a, T>),
    ) -> Option<usize> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(0);
        }
        let mut count = 0;
        loop {
            if count == max_records {
                return None;
            }
            each(self.record(read)?);
            count += 1;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(count);
                }
                _ => return None,
            }
        }
    }

    fn record<T>(
        &mut self,
        read: &impl Fn(&'a str) -> Option<(T, usize)>,
    ) -> Option<ScannedRecord<'a, T>> {
        let (mut timestamp, mut content) = (None, None);
        self.object(|cursor, key| match key {
            "timestamp" => set_once(&mut timestamp, cursor.timestamp()?),
            "content" => set_once(&mut content, cursor.content(read)?),
            _ => cursor.skip_simple(),
        })?;
        let (content, read) = content?;
        Some(ScannedRecord {
            timestamp_us: timestamp?,
            content,
            read,
        })
    }

    /// A content string, read by `read` where it lies when it can.
    fn content<T>(
        &mut self,
        read: &impl Fn(&'a str) -> Option<(T, usize)>,
    ) -> Option<(Escaped<'a>, Option<T>)> {
        if self.peek()? == b'"' {
            let start = self.at;
            if let Some((value, len)) = read(&self.text[start + 1..]) {
                let end = start + 1 + len;
                if self.text.as_bytes().get(end) == Some(&b'"') {
                    self.at = end + 1;
                    return Some((Escaped(&self.text[start..self.at]), Some(value)));
                }
            }
        }
        Some((self.string()?, None))
    }

    /// Digits, quoted or not: the timestamp in microseconds.
    fn timestamp(&mut self) -> Option<u64> {
        let quoted = self.peek()? == b'"';
        let bytes = self.text.as_bytes();
        let start = self.at + usize::from(quoted);
        let len = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = start + len;
        if quoted {
            (bytes.get(end) == Some(&b'"')).then_some(())?;
        } else if len == 0
            || (bytes[start] == b'0' && len > 1)
            || matches!(bytes.get(end), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        let value = self.text[start..end].parse().ok()?;
        self.at = end + usize::from(quoted);
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_reader(_: &str) -> Option<((), usize)> {
        None
    }

    /// `scan` with the records collected.
    fn scan_all<'a, T>(
        text: &'a str,
        max_records: usize,
        read: impl Fn(&'a str) -> Option<(T, usize)>,
    ) -> Option<(ScannedBatch<'a>, Vec<ScannedRecord<'a, T>>)> {
        let mut records = Vec::new();
        let batch = scan(text, max_records, read, |r| records.push(r))?;
        assert_eq!(batch.records, records.len());
        Some((batch, records))
    }

    /// Reads a content that is all `a`s, as a reader that stops short of the quote or runs past
    /// it would.
    #[test]
    fn a_reader_is_trusted_only_when_the_string_ends_where_it_stopped() {
        let text =
            r#"{"records":[{"timestamp":"1","content":"aaa"},{"timestamp":"2","content":"aab"}]}"#;
        let count_a = |rest: &str| Some(((), rest.bytes().take_while(|&b| b == b'a').count()));
        let (_, records) = scan_all(text, 10, count_a).unwrap();
        assert!(records[0].read.is_some());
        assert_eq!(records[0].content.raw(), "aaa");
        assert!(records[1].read.is_none());
        assert_eq!(records[1].content.raw(), "aab");
    }

    #[test]
    fn reads_the_shipped_shape_and_leaves_content_escaped() {
        let text = r#"{"topic_id":"t-1","topic_name":"flowlog","records":[
            {"timestamp":"1605578090000000","content":"{\"srcaddr\":\"10.0.0.1\"}"},
            {"content":"2 1 eni-a 10.0.0.1","timestamp":1605578090000001,"source":"x","n":-3,"b":true}]}"#;
        let (batch, records) = scan_all(text, 10, no_reader).unwrap();
        assert_eq!((batch.topic_id, batch.topic_name), ("t-1", "flowlog"));
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].timestamp_us, 1605578090000000);
        assert_eq!(records[0].content.raw(), r#"{\"srcaddr\":\"10.0.0.1\"}"#);
        assert_eq!(records[0].content.unescape(), r#"{"srcaddr":"10.0.0.1"}"#);
        assert_eq!(records[1].timestamp_us, 1605578090000001);
        assert_eq!(records[1].content.unescape(), "2 1 eni-a 10.0.0.1");
        assert!(matches!(records[1].content.unescape(), Cow::Borrowed(_)));
    }

    #[test]
    fn anything_outside_the_plain_shape_is_left_to_the_general_path() {
        for text in [
            r#"{"records":[{"timestamp":"1","content":"\u0041"}]}"#,
            r#"{"extra":{"a":1},"records":[]}"#,
            r#"{"records":[{"timestamp":"1","content":"a","timestamp":"2"}]}"#,
            r#"{"records":[{"timestamp":"1"}]}"#,
            r#"{"records":[{"timestamp":" 1","content":"a"}]}"#,
            r#"{"records":[{"timestamp":1.5,"content":"a"}]}"#,
            r#"{"records":[{"timestamp":01,"content":"a"}]}"#,
            r#"{"records":[{"timestamp":"1","content":7}]}"#,
            r#"{"records":[{"timestamp":"1","content":"a	b"}]}"#,
            r#"{"topic_id":"a\"b","records":[]}"#,
            r#"{"records":[]} x"#,
            r#"{"records":[],}"#,
            r#"{"records":[{"timestamp":"1","content":"a"},]}"#,
            r#"{"topic_id":null,"records":[]}"#,
            r#"{"topic_id":"t"}"#,
            r#"{"records":[{"timestamp":"99999999999999999999999","content":"a"}]}"#,
            r#"{"records":[{"timestamp":"1","content":"a"}"#,
        ] {
            assert!(scan_all(text, 10, no_reader).is_none(), "{text}");
        }
    }

    #[test]
    fn more_records_than_the_cap_is_left_to_the_general_path() {
        let text =
            r#"{"records":[{"timestamp":"1","content":"a"},{"timestamp":"2","content":"b"}]}"#;
        assert!(scan_all(text, 1, no_reader).is_none());
        assert_eq!(scan_all(text, 2, no_reader).unwrap().1.len(), 2);
    }
}
