//! A record's JSON line read as its fields, each value left as the JSON text the line holds:
//! the import stores most values as they are, so it parses a line once without building a
//! tree of maps (parsing into `serde_json::Value` and dropping it was a quarter of the import;
//! docs/records.md).

use std::borrow::Cow;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON object line's fields in the order it holds them; a key given twice reads as its
/// last value, as `serde_json::Value` reads it.
pub struct RecordLine<'a> {
    line: &'a str,
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RecordLine<'a> {
    /// `line` as a JSON object's fields; `None` when it is not a JSON object.
    pub fn parse(line: &'a str) -> Option<Self> {
        let Fields(fields) = serde_json::from_str(line).ok()?;
        Some(Self { line, fields })
    }

    /// The JSON text of `key`'s value.
    pub fn raw(&self, key: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.get())
    }

    /// `key`'s value when it is a string.
    pub fn str(&self, key: &str) -> Option<Cow<'a, str>> {
        string(self.raw(key)?)
    }

    /// `key`'s value when it is an integer that fits an `i64`.
    pub fn i64(&self, key: &str) -> Option<i64> {
        self.raw(key)?.parse().ok()
    }

    /// `key`'s value when it is an integer that fits a `u64`.
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.raw(key)?.parse().ok()
    }

    /// Each distinct key (its last value) with where its value's JSON text is in the line,
    /// unless `skip` says to leave it out.
    pub fn spans(&self, mut skip: impl FnMut(&str) -> bool) -> Vec<Span> {
        let start = self.line.as_ptr() as usize;
        let at = |text: &str| text.as_ptr() as usize - start;
        let mut spans = Vec::with_capacity(self.fields.len());
        // From the last field back, each key's last value only: a key is looked for among
        // those after it only when a bit of its length and ends says one may be the same.
        let mut seen = 0_u64;
        for (i, (key, value)) in self.fields.iter().enumerate().rev() {
            let ends = key.bytes().next().map_or(0, usize::from) * 3
                + key.bytes().last().map_or(0, usize::from);
            let bit = 1_u64 << ((key.len() * 7 + ends) % 64);
            if seen & bit != 0 && self.fields[i + 1..].iter().any(|(later, _)| later == key) {
                continue;
            }
            seen |= bit;
            if skip(key) {
                continue;
            }
            let value = at(value.get())..at(value.get()) + value.get().len();
            let key = match key {
                Cow::Borrowed(key) => Key::At(at(key)..at(key) + key.len()),
                Cow::Owned(key) => Key::Text(key.clone()),
            };
            spans.push(Span { key, value });
        }
        spans.reverse();
        spans
    }
}

/// Where a field is in its line: the key's text, and the value's JSON text.
#[derive(Debug, Clone)]
pub struct Span {
    pub key: Key,
    pub value: Range<usize>,
}

/// A key in its line, or its text when the line escapes it.
#[derive(Debug, Clone)]
pub enum Key {
    At(Range<usize>),
    Text(String),
}

impl Span {
    /// The key's text in `line`.
    pub fn key<'l>(&'l self, line: &'l str) -> &'l str {
        match &self.key {
            Key::At(at) => &line[at.clone()],
            Key::Text(text) => text,
        }
    }
}

/// A JSON string's text, borrowed when it holds no escape.
pub fn string(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// An object's entries, keys borrowed when they hold no escape.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

struct FieldsVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
    type Value = Fields<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(32));
        while let Some(KeyText(key)) = map.next_key()? {
            fields.push((key, map.next_value::<&'de RawValue>()?));
        }
        Ok(Fields(fields))
    }
}

struct KeyText<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for KeyText<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = KeyText<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Borrowed(key)))
            }
            fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Owned(key.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every reading agrees with `serde_json::Value`'s, escapes and repeated keys included.
    #[test]
    fn fields_read_as_a_json_value_reads_them() {
        let line = r#"{"a":"plain","b":"tab\there \u00e9","c":-12,"d":18446744073709551615,"e":1.5,"f":null,"g":[1, {"x":"y"}],"k\u0065y":"escaped key","a":"again","h":1e3}"#;
        let value: Value = serde_json::from_str(line).unwrap();
        let record = RecordLine::parse(line).unwrap();
        for key in ["a", "b", "c", "d", "e", "f", "g", "key", "h", "missing"] {
            assert_eq!(
                record.str(key).as_deref(),
                value.get(key).and_then(Value::as_str),
                "{key}"
            );
            assert_eq!(
                record.i64(key),
                value.get(key).and_then(Value::as_i64),
                "{key}"
            );
            assert_eq!(
                record.u64(key),
                value.get(key).and_then(Value::as_u64),
                "{key}"
            );
            assert_eq!(
                record
                    .raw(key)
                    .map(|raw| serde_json::from_str::<Value>(raw).unwrap()),
                value.get(key).cloned(),
                "{key}"
            );
        }
        let spans = record.spans(|key| key == "c");
        let keys: Vec<&str> = spans.iter().map(|span| span.key(line)).collect();
        assert_eq!(keys, ["b", "d", "e", "f", "g", "key", "a", "h"]);
        for span in &spans {
            let read: Value = serde_json::from_str(&line[span.value.clone()]).unwrap();
            assert_eq!(Some(&read), value.get(span.key(line)), "{}", span.key(line));
        }
        assert!(matches!(record.str("a"), Some(Cow::Borrowed("again"))));
        // Many keys, so that some share a bit of the set of those seen, and some given twice:
        // each key once, at its last value, in the order of the last.
        let keys: Vec<String> = (0..150).map(|i| format!("k{}", i * 7 % 101)).collect();
        let line = format!(
            "{{{}}}",
            keys.iter()
                .enumerate()
                .map(|(i, key)| format!("\"{key}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let record = RecordLine::parse(&line).unwrap();
        let spans = record.spans(|_| false);
        let read: Vec<(&str, &str)> = spans
            .iter()
            .map(|span| (span.key(&line), &line[span.value.clone()]))
            .collect();
        let mut expected: Vec<(usize, &str)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            expected.retain(|(_, k)| *k != key.as_str());
            expected.push((i, key.as_str()));
        }
        let expected: Vec<(&str, String)> = expected
            .into_iter()
            .map(|(i, key)| (key, i.to_string()))
            .collect();
        assert_eq!(
            read,
            expected
                .iter()
                .map(|(key, value)| (*key, value.as_str()))
                .collect::<Vec<_>>()
        );
        for not_an_object in [
            "",
            "[1]",
            "\"text\"",
            "{\"a\":1",
            "{\"a\":1} x",
            "{\"a\":tru}",
        ] {
            assert!(
                RecordLine::parse(not_an_object).is_none(),
                "{not_an_object}"
            );
        }
    }
}
