//! VPC flow-log records: the 14-field ENI record (<https://intl.cloud.tencent.com/document/product/682/18933>), arriving in a CLS
//! record's `content` either as a JSON object with the hyphenated keys (values usually strings) or
//! as the 14 space-separated fields. Both forms parse to one [`FlowRecord`].
//!
//! Conventions, all from the reference: `-` and `-1` mean "absent" in every numeric and address
//! field; `NODATA`/`SKIPDATA` records carry no flow and come back as [`Parsed::NoData`] /
//! [`Parsed::SkipData`] to be counted; unknown JSON keys are ignored; a malformed record is a
//! [`ParseError`] with a [`SkipReason`] and a message naming the field. For ICMP (protocol 1 and
//! 58) the ports are not ports: `srcport` is the ICMP id and `dstport` packs the type and code,
//! kept apart in [`FlowRecord::icmp`] ([`icmp_of`] says how both packings and the documented
//! `0 0` request are read).
//!
//! This module knows nothing of rules or CLS envelopes.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use compact_str::CompactString;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// IANA protocol numbers the rest of the code names.
pub mod protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub(crate) const ICMPV6: u8 = 58;

    /// A protocol's name (`TCP`, `ICMPv6`, …), or `proto <n>` for one without a common name.
    pub fn name(number: u8) -> std::borrow::Cow<'static, str> {
        match known_name(number) {
            Some(name) => std::borrow::Cow::Borrowed(name),
            None => std::borrow::Cow::Owned(format!("proto {number}")),
        }
    }

    /// The protocol a person asks about: `tcp`, `udp`, `icmp`, `icmpv6` (any case) or a
    /// number from 0 to 255. The one reading shared by the lookup API and the CLI.
    pub fn requested(text: &str) -> Option<u8> {
        match text.trim().to_ascii_lowercase().as_str() {
            "tcp" => Some(TCP),
            "udp" => Some(UDP),
            "icmp" => Some(ICMP),
            "icmpv6" => Some(ICMPV6),
            other => other.parse().ok(),
        }
    }

    /// The common name of a protocol, if it has one: the one list of protocol names.
    pub fn known_name(number: u8) -> Option<&'static str> {
        Some(match number {
            ICMP => "ICMP",
            TCP => "TCP",
            UDP => "UDP",
            ICMPV6 => "ICMPv6",
            47 => "GRE",
            50 => "ESP",
            51 => "AH",
            132 => "SCTP",
            _ => return None,
        })
    }
}

/// Whether `(kind, code)` is an ICMP (or ICMPv6) type and code the RFCs define
/// (RFC 792, 950, 1812 for ICMP; RFC 4443 and 4861 for ICMPv6's error and common messages).
fn valid_icmp(v6: bool, kind: u8, code: u8) -> bool {
    if v6 {
        match kind {
            1 => code <= 7,
            2 | 128 | 129 | 130..=137 => code == 0,
            3 => code <= 1,
            4 => code <= 3,
            _ => false,
        }
    } else {
        match kind {
            0 | 4 | 8 | 10 | 13..=18 => code == 0,
            3 => code <= 15,
            5 => code <= 3,
            9 => code == 0 || code == 16,
            11 => code <= 1,
            12 => code <= 2,
            _ => false,
        }
    }
}

/// ICMP type and code from the ports of an ICMP record, or `None` when they cannot be known.
///
/// The flow-log documentation says `dstport` packs the type in bits 0–7 and the code in bits
/// 8–15, yet the same page's ping *request* example shows ports `0 0`; other flow logs pack
/// `type × 256 + code`. So: ports `0 0`, `-` or `-1` carry no type (it may be a request); otherwise
/// the packing that gives a defined type and code is taken, and when both or neither do (and
/// they differ), the type is unknown.
pub(crate) fn icmp_of(protocol: u8, src_port: Option<u16>, dst_port: Option<u16>) -> Option<Icmp> {
    let packed = dst_port?;
    if packed == 0 && src_port.unwrap_or(0) == 0 {
        return None;
    }
    let v6 = protocol == protocol::ICMPV6;
    let low_type = ((packed & 0xff) as u8, (packed >> 8) as u8);
    let high_type = ((packed >> 8) as u8, (packed & 0xff) as u8);
    let (kind, code) = match (
        valid_icmp(v6, low_type.0, low_type.1),
        valid_icmp(v6, high_type.0, high_type.1),
    ) {
        (true, false) => low_type,
        (false, true) => high_type,
        _ if low_type == high_type => low_type,
        _ => return None,
    };
    Some(Icmp {
        kind,
        code,
        id: src_port,
    })
}

/// One flow as a flow log records it on one ENI, in one capture window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// FL version, opaque (`2`, `V1`, ...).
    pub version: CompactString,
    /// The account's AppID, as text.
    pub account_id: CompactString,
    /// The ENI that recorded the flow (`eni-…`).
    pub eni: CompactString,
    /// Source address (IPv4-mapped IPv6 is normalised to IPv4).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (TCP/UDP and other port-carrying protocols; `None` for ICMP or when absent).
    pub src_port: Option<u16>,
    /// Destination port (`None` for ICMP or when absent).
    pub dst_port: Option<u16>,
    /// ICMP type/code, for ICMP and ICMPv6 records whose ports tell them (`None`: unknown).
    pub icmp: Option<Icmp>,
    /// IANA protocol number.
    pub protocol: u8,
    /// Packets in the window (`None` when absent).
    pub packets: Option<u64>,
    /// Bytes in the window (`None` when absent).
    pub bytes: Option<u64>,
    /// Window start, Unix seconds.
    pub start: u64,
    /// Window end, Unix seconds.
    pub end: u64,
    /// What the security group / network ACL did.
    pub action: FlowAction,
}

/// ICMP type and code from the packed `dstport`, and the ICMP id from `srcport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Icmp {
    /// ICMP type.
    pub kind: u8,
    /// ICMP code.
    pub code: u8,
    /// ICMP id (`srcport`), when present.
    pub id: Option<u16>,
}

names! {
    /// The FL `action` field.
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "UPPERCASE")]
    #[strum(serialize_all = "UPPERCASE")]
    pub enum FlowAction {
        /// Allowed by security group and network ACL.
        Accept,
        /// Rejected by a security group or the network ACL (the record does not say which).
        Reject,
    }
}

/// A parsed `content`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A flow to evaluate.
    Flow(FlowRecord),
    /// `log-status` NODATA: no traffic on the ENI in the window.
    NoData,
    /// `log-status` SKIPDATA: records were skipped by the platform in the window.
    SkipData,
}

names! {
    /// Why a record was skipped; the names are the keys of the batch report.
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    #[non_exhaustive]
    pub enum SkipReason {
        /// The CLS record itself was malformed (no timestamp, content not a string, ...).
        BadRecord,
        /// `content` looked like JSON but did not parse.
        BadJson,
        /// A text record with fewer than 14 fields.
        FieldCount,
        /// A field the record needs is absent.
        MissingField,
        /// An address field is not an IP address.
        BadAddress,
        /// A numeric field is not a number in range.
        BadNumber,
        /// `action` is neither ACCEPT nor REJECT.
        BadAction,
        /// `log-status` is not OK, NODATA or SKIPDATA.
        BadStatus,
    }
}

/// A record that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ParseError {
    /// The class of problem.
    pub reason: SkipReason,
    /// What exactly, naming the field and value.
    pub message: String,
}

impl ParseError {
    fn new(reason: SkipReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Field names in positional order.
pub const FIELDS: [&str; 14] = [
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
];

/// Parses one CLS record `content`: a JSON object if it starts with `{`, the 14 positional fields
/// otherwise. A JSON object holding only a raw line under `__CONTENT__` (or `content`) is unwrapped.
pub fn parse(content: &str) -> Result<Parsed, ParseError> {
    let trimmed = content.trim_start();
    if trimmed.starts_with('{') {
        let fields: JsonFields = serde_json::from_str(trimmed).map_err(|err| {
            ParseError::new(
                SkipReason::BadJson,
                format!("content is not a JSON object: {err}"),
            )
        })?;
        if fields.srcaddr.is_none() && fields.log_status.is_none() {
            if let Some(Field::Text(raw)) = fields.raw_content.as_ref().or(fields.content.as_ref())
            {
                return parse_text(raw);
            }
        }
        fields.into_raw().to_parsed()
    } else {
        parse_text(trimmed)
    }
}

/// Reads a flat JSON object in its escaped form, from the start of `text` (which runs on past
/// the string the object is in: the batch's hot path reads each content where it lies, before
/// its end is known). Answers what [`parse`] answers for the object, and the length of the object
/// with the spaces after it, having looked at nothing beyond. `None` means the text is not such an object and is for
/// [`parse`] to handle: an escape other than the `\"` around keys and values, a value other than
/// a string or an integer, a repeated field (which serde refuses), the raw-line wrappers
/// `__CONTENT__` and `content`. Whatever it reads holds no raw `"` and no control character, so
/// the string's end, if it is the next byte, is where the object ends.
pub(crate) fn read_embedded(text: &str) -> Option<(Result<Parsed, ParseError>, usize)> {
    let bytes = text.as_bytes();
    let spaces = |mut at: usize| {
        while bytes.get(at) == Some(&b' ') {
            at += 1;
        }
        at
    };
    // `\"text\"` at `at`: the text and the position after the closing quote.
    let quoted = |at: usize| -> Option<(&str, usize)> {
        if bytes.get(at..at + 2)? != b"\\\"" {
            return None;
        }
        let mut end = at + 2;
        while !matches!(*bytes.get(end)?, b'\\' | b'"' | 0..=0x1f) {
            end += 1;
        }
        (bytes.get(end..end + 2)? == b"\\\"").then(|| (&text[at + 2..end], end + 2))
    };
    let mut at = spaces(0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    let mut fields = RawFields::default();
    // Flow logs write the fields in the documented order: try the expected name first.
    let mut expected = 0;
    loop {
        let (key, next) = quoted(spaces(at + 1))?;
        at = spaces(next);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at = spaces(at + 1);
        let value = if bytes.get(at) == Some(&b'\\') {
            let (text, next) = quoted(at)?;
            at = next;
            Field::Text(Cow::Borrowed(text))
        } else {
            let (number, next) = embedded_integer(bytes, at)?;
            at = next;
            Field::Int(number)
        };
        let position = match FIELDS.get(expected) {
            Some(&name) if same_short(name.as_bytes(), key.as_bytes()) => Some(expected),
            _ => FIELDS.iter().position(|&name| name == key),
        };
        let slot = match position {
            Some(index) => {
                expected = index + 1;
                fields.slot(index)
            }
            None if matches!(key, "__CONTENT__" | "content") => return None,
            None => &mut None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
        at = spaces(at);
        match bytes.get(at)? {
            b',' => {}
            b'}' => return Some((fields.to_parsed(), spaces(at + 1))),
            _ => return None,
        }
    }
}

/// `a == b` for the short field names, compared eight bytes at a time in registers rather than
/// through a `memcmp` call (it runs for every field of every record).
#[inline]
fn same_short(a: &[u8], b: &[u8]) -> bool {
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    match a.len() {
        n if n != b.len() => false,
        0..8 => a == b,
        8..=16 => {
            let last = a.len() - 8;
            word(a, 0) == word(b, 0) && word(a, last) == word(b, last)
        }
        _ => a == b,
    }
}

/// An integer as serde_json reads one into an `i64`/`u64` (`-?[0-9]+`, no leading zero, no
/// fraction or exponent, at most 18 digits so it cannot overflow), and the position after it.
fn embedded_integer(bytes: &[u8], at: usize) -> Option<(i128, usize)> {
    let negative = bytes.get(at) == Some(&b'-');
    let digits = at + usize::from(negative);
    let len = bytes[digits..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let end = digits + len;
    if len == 0 || len > 18 || (bytes[digits] == b'0' && (len > 1 || negative)) {
        return None;
    }
    if matches!(bytes.get(end), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    let value = bytes[digits..end]
        .iter()
        .fold(0i128, |n, b| n * 10 + i128::from(b - b'0'));
    Some((if negative { -value } else { value }, end))
}

fn parse_text(line: &str) -> Result<Parsed, ParseError> {
    let mut parts = line.split_ascii_whitespace();
    let mut fields: [&str; 14] = [""; 14];
    for (index, slot) in fields.iter_mut().enumerate() {
        *slot = parts.next().ok_or_else(|| {
            ParseError::new(
                SkipReason::FieldCount,
                format!(
                    "text record has {index} fields, expected 14 (missing {})",
                    FIELDS[index]
                ),
            )
        })?;
    }
    // Trailing fields beyond the 14 documented ones are ignored: a later FL version may add some.
    let mut raw = RawFields::default();
    for (index, field) in fields.into_iter().enumerate() {
        *raw.slot(index) = Some(Field::Text(Cow::Borrowed(field)));
    }
    raw.to_parsed()
}

/// A field value from either form: text (the usual case) or a JSON number.
#[derive(Debug, Clone, PartialEq)]
enum Field<'a> {
    Text(Cow<'a, str>),
    Int(i128),
    Float(f64),
    Null,
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl<'de> Visitor<'de> for FieldVisitor {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field<'de>, E> {
                Ok(Field::Int(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field<'de>, E> {
                Ok(Field::Int(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field<'de>, E> {
                Ok(Field::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Borrowed(if v { "true" } else { "false" })))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Field<'de>, E> {
                Ok(Field::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Field<'de>, E> {
                Ok(Field::Null)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Err(de::Error::custom(
                    "an array where a flow-log field was expected",
                ))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Err(de::Error::custom(
                    "an object where a flow-log field was expected",
                ))
            }
        }
        deserializer.deserialize_any(FieldVisitor)
    }
}

#[derive(Deserialize)]
struct JsonFields<'a> {
    #[serde(borrow, default)]
    version: Option<Field<'a>>,
    #[serde(borrow, default, rename = "account-id")]
    account_id: Option<Field<'a>>,
    #[serde(borrow, default, rename = "interface-id")]
    interface_id: Option<Field<'a>>,
    #[serde(borrow, default)]
    srcaddr: Option<Field<'a>>,
    #[serde(borrow, default)]
    dstaddr: Option<Field<'a>>,
    #[serde(borrow, default)]
    srcport: Option<Field<'a>>,
    #[serde(borrow, default)]
    dstport: Option<Field<'a>>,
    #[serde(borrow, default)]
    protocol: Option<Field<'a>>,
    #[serde(borrow, default)]
    packets: Option<Field<'a>>,
    #[serde(borrow, default)]
    bytes: Option<Field<'a>>,
    #[serde(borrow, default)]
    start: Option<Field<'a>>,
    #[serde(borrow, default)]
    end: Option<Field<'a>>,
    #[serde(borrow, default)]
    action: Option<Field<'a>>,
    #[serde(borrow, default, rename = "log-status")]
    log_status: Option<Field<'a>>,
    #[serde(borrow, default, rename = "__CONTENT__")]
    raw_content: Option<Field<'a>>,
    #[serde(borrow, default)]
    content: Option<Field<'a>>,
}

impl<'a> JsonFields<'a> {
    fn into_raw(self) -> RawFields<'a> {
        RawFields {
            version: self.version,
            account_id: self.account_id,
            interface_id: self.interface_id,
            srcaddr: self.srcaddr,
            dstaddr: self.dstaddr,
            srcport: self.srcport,
            dstport: self.dstport,
            protocol: self.protocol,
            packets: self.packets,
            bytes: self.bytes,
            start: self.start,
            end: self.end,
            action: self.action,
            log_status: self.log_status,
        }
    }
}

/// The 14 fields as found, before validation.
#[derive(Default)]
struct RawFields<'a> {
    version: Option<Field<'a>>,
    account_id: Option<Field<'a>>,
    interface_id: Option<Field<'a>>,
    srcaddr: Option<Field<'a>>,
    dstaddr: Option<Field<'a>>,
    srcport: Option<Field<'a>>,
    dstport: Option<Field<'a>>,
    protocol: Option<Field<'a>>,
    packets: Option<Field<'a>>,
    bytes: Option<Field<'a>>,
    start: Option<Field<'a>>,
    end: Option<Field<'a>>,
    action: Option<Field<'a>>,
    log_status: Option<Field<'a>>,
}

impl<'a> RawFields<'a> {
    /// The field named `FIELDS[index]`.
    fn slot(&mut self, index: usize) -> &mut Option<Field<'a>> {
        match index {
            0 => &mut self.version,
            1 => &mut self.account_id,
            2 => &mut self.interface_id,
            3 => &mut self.srcaddr,
            4 => &mut self.dstaddr,
            5 => &mut self.srcport,
            6 => &mut self.dstport,
            7 => &mut self.protocol,
            8 => &mut self.packets,
            9 => &mut self.bytes,
            10 => &mut self.start,
            11 => &mut self.end,
            12 => &mut self.action,
            _ => &mut self.log_status,
        }
    }
}

/// `text.trim()`, answered at once for the usual value that starts and ends with a visible
/// ASCII character (then there is nothing to trim): this runs several times per field.
#[inline]
fn trimmed(text: &str) -> &str {
    let visible = |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii_graphic());
    let bytes = text.as_bytes();
    if visible(bytes.first()) && visible(bytes.last()) {
        text
    } else {
        text.trim()
    }
}

/// The value with "absent" markers (`-`, `-1`, empty, null) folded into `None`.
fn present<'f, 'a>(field: &'f Option<Field<'a>>) -> Option<&'f Field<'a>> {
    match field {
        None | Some(Field::Null) => None,
        Some(Field::Text(t)) if matches!(trimmed(t), "" | "-" | "-1") => None,
        Some(Field::Int(-1)) => None,
        Some(field) => Some(field),
    }
}

/// Longest identifier field read (ENI, account, version): real ones are 8 to 20 characters.
pub(crate) const MAX_ID_BYTES: usize = 64;

/// An identifier field, refused as `bad_record` past [`MAX_ID_BYTES`].
fn id_of(
    field: &Option<Field<'_>>,
    name: &'static str,
) -> Result<Option<CompactString>, ParseError> {
    match text_of(field) {
        Some(text) if text.len() > MAX_ID_BYTES => Err(ParseError::new(
            SkipReason::BadRecord,
            format!(
                "{name} is {} bytes, longer than any real one ({MAX_ID_BYTES})",
                text.len()
            ),
        )),
        other => Ok(other),
    }
}

fn text_of(field: &Option<Field<'_>>) -> Option<CompactString> {
    present(field).map(|f| match f {
        Field::Text(t) => trimmed(t).into(),
        Field::Int(i) => compact_str::format_compact!("{i}"),
        Field::Float(x) => compact_str::format_compact!("{x}"),
        Field::Null => CompactString::default(),
    })
}

fn number<T: TryFrom<i128>>(
    field: &Option<Field<'_>>,
    name: &'static str,
) -> Result<Option<T>, ParseError> {
    let Some(value) = present(field) else {
        return Ok(None);
    };
    let parsed: Option<i128> = match value {
        // Counters and ports are almost always plain decimal text: the u64 parser is the fast path.
        Field::Text(t) => {
            let t = trimmed(t);
            t.parse::<u64>().map(i128::from).or_else(|_| t.parse()).ok()
        }
        Field::Int(i) => Some(*i),
        Field::Float(x) if x.fract() == 0.0 && x.abs() < 1e30 => Some(*x as i128),
        _ => None,
    };
    parsed
        .and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            ParseError::new(
                SkipReason::BadNumber,
                format!("{name} {} is not a number in range", show(value)),
            )
        })
}

/// Window bounds are Unix seconds; some exporters write milliseconds or microseconds. A value
/// of 10^14 or more is read as microseconds, 10^11 or more as milliseconds (10^11 seconds is
/// the year 5138, so no real second count is mistaken).
fn seconds(value: u64) -> u64 {
    if value >= 100_000_000_000_000 {
        value / 1_000_000
    } else if value >= 100_000_000_000 {
        value / 1_000
    } else {
        value
    }
}

fn required<T>(value: Option<T>, name: &'static str) -> Result<T, ParseError> {
    value.ok_or_else(|| ParseError::new(SkipReason::MissingField, format!("{name} is absent")))
}

fn address(field: &Option<Field<'_>>, name: &'static str) -> Result<IpAddr, ParseError> {
    let value = required(present(field), name)?;
    let parsed = match value {
        Field::Text(t) => trimmed(t).parse::<IpAddr>().ok(),
        _ => None,
    };
    parsed.map(|ip| ip.to_canonical()).ok_or_else(|| {
        ParseError::new(
            SkipReason::BadAddress,
            format!("{name} {} is not an IP address", show(value)),
        )
    })
}

fn show(field: &Field<'_>) -> String {
    const MAX: usize = 64;
    match field {
        Field::Text(t) => format!("{:?}", crate::core::text::truncate_utf8(t, MAX)),
        Field::Int(i) => i.to_string(),
        Field::Float(x) => x.to_string(),
        Field::Null => "null".to_string(),
    }
}

impl RawFields<'_> {
    fn to_parsed(&self) -> Result<Parsed, ParseError> {
        if let Some(status) = present(&self.log_status) {
            let is = |word: &str| matches!(status, Field::Text(t) if trimmed(t).eq_ignore_ascii_case(word));
            if is("NODATA") {
                return Ok(Parsed::NoData);
            } else if is("SKIPDATA") {
                return Ok(Parsed::SkipData);
            } else if !is("OK") {
                return Err(ParseError::new(
                    SkipReason::BadStatus,
                    format!("log-status {} is not OK, NODATA or SKIPDATA", show(status)),
                ));
            }
        }
        let eni = required(id_of(&self.interface_id, "interface-id")?, "interface-id")?;
        let version = id_of(&self.version, "version")?.unwrap_or_default();
        let account_id = id_of(&self.account_id, "account-id")?.unwrap_or_default();
        let src = address(&self.srcaddr, "srcaddr")?;
        let dst = address(&self.dstaddr, "dstaddr")?;
        let protocol: u8 = required(number(&self.protocol, "protocol")?, "protocol")?;
        let src_port: Option<u16> = number(&self.srcport, "srcport")?;
        let dst_port: Option<u16> = number(&self.dstport, "dstport")?;
        let action = required(present(&self.action), "action")?;
        let action = match action {
            Field::Text(t) if trimmed(t).eq_ignore_ascii_case("ACCEPT") => FlowAction::Accept,
            Field::Text(t) if trimmed(t).eq_ignore_ascii_case("REJECT") => FlowAction::Reject,
            other => {
                return Err(ParseError::new(
                    SkipReason::BadAction,
                    format!("action {} is neither ACCEPT nor REJECT", show(other)),
                ))
            }
        };
        let start = seconds(required(number(&self.start, "start")?, "start")?);
        let end = seconds(required(number(&self.end, "end")?, "end")?);
        if end < start {
            return Err(ParseError::new(
                SkipReason::BadNumber,
                format!("end {end} is before start {start}"),
            ));
        }
        let packets = number(&self.packets, "packets")?;
        let bytes = number(&self.bytes, "bytes")?;
        let (src_port, dst_port, icmp) = match protocol {
            protocol::ICMP | protocol::ICMPV6 => {
                (None, None, icmp_of(protocol, src_port, dst_port))
            }
            protocol::TCP | protocol::UDP => (src_port, Some(required(dst_port, "dstport")?), None),
            _ => (src_port, dst_port, None),
        };
        Ok(Parsed::Flow(FlowRecord {
            version,
            account_id,
            eni,
            src,
            dst,
            src_port,
            dst_port,
            icmp,
            protocol,
            packets,
            bytes,
            start,
            end,
            action,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The shortcut never answers differently from `str::trim`.
        #[test]
        fn trimmed_is_trim(text in "[ \t\u{a0}\u{2003}\u{b}a-z0-9.é-]{0,8}") {
            proptest::prop_assert_eq!(trimmed(&text), text.trim());
        }
    }

    fn flow(content: &str) -> FlowRecord {
        match parse(content) {
            Ok(Parsed::Flow(f)) => f,
            other => panic!("expected a flow from {content:?}, got {other:?}"),
        }
    }

    fn reason(content: &str) -> SkipReason {
        parse(content).unwrap_err().reason
    }

    #[test]
    fn text_and_json_forms_parse_to_the_same_record() {
        let text = flow("2 1251762227 eni-lq6mkcis 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK");
        let json = flow(
            r#"{"version":"2","account-id":"1251762227","interface-id":"eni-lq6mkcis","srcaddr":"172.31.16.139","dstaddr":"172.31.16.21","srcport":"20641","dstport":"22","protocol":"6","packets":"20","bytes":"4249","start":"1418530010","end":"1418530070","action":"ACCEPT","log-status":"OK"}"#,
        );
        assert_eq!(text, json);
        assert_eq!(text.dst_port, Some(22));
        assert_eq!(text.packets, Some(20));
    }

    #[test]
    fn json_numbers_and_unknown_keys_are_fine() {
        let f = flow(
            r#"{"srcaddr":"10.0.0.1","dstaddr":"10.0.0.2","srcport":40000,"dstport":443,"protocol":6,"start":1,"end":2,"action":"reject","log-status":"OK","interface-id":"eni-1","vpc-id":"vpc-x","extra":{"nested":[1,2]}}"#,
        );
        assert_eq!(f.action, FlowAction::Reject);
        assert_eq!(f.dst_port, Some(443));
        assert_eq!(f.version, "");
    }

    #[test]
    fn raw_line_wrapped_in_content_key_is_unwrapped() {
        let f = flow(r#"{"__CONTENT__":"2 1 eni-a 10.0.0.1 10.0.0.2 1 80 6 1 1 1 2 ACCEPT OK"}"#);
        assert_eq!(f.dst_port, Some(80));
    }

    #[test]
    fn nodata_and_skipdata_are_not_flows() {
        assert_eq!(
            parse("V1 1251762227 eni-lq6mkcis - - - - - - - 1431280876 1431280934 - NODATA"),
            Ok(Parsed::NoData)
        );
        assert_eq!(
            parse("V1 1251762227 eni-lq6mkcis - - - - - - - 1431280876 1431280934 - SKIPDATA"),
            Ok(Parsed::SkipData)
        );
    }

    /// Both packings are read: the documented one (type in bits 0–7) and `type × 256 + code`;
    /// the documented ping request `0 0` and a packing that fits both ways carry no type.
    #[test]
    fn icmp_ports_become_type_and_code() {
        let f = flow("V1 1 eni-a 203.0.113.12 172.31.16.139 7 2048 1 4 336 1 2 ACCEPT OK");
        assert_eq!(f.src_port, None);
        assert_eq!(f.dst_port, None);
        let kind_code = |line: &str| flow(line).icmp.map(|i| (i.kind, i.code));
        assert_eq!(
            f.icmp,
            Some(Icmp {
                kind: 8,
                code: 0,
                id: Some(7)
            }),
            "2048 = 8 × 256: echo request (type 0 code 8 is not defined)"
        );
        assert_eq!(
            kind_code("V1 1 eni-a 10.0.0.1 10.0.0.2 7 8 1 4 336 1 2 ACCEPT OK"),
            Some((8, 0))
        );
        assert_eq!(
            kind_code("V1 1 eni-a 10.0.0.1 10.0.0.2 7 0 1 4 336 1 2 ACCEPT OK"),
            Some((0, 0)),
            "an id with type 0: echo reply"
        );
        assert_eq!(
            kind_code("V1 1 eni-a 10.0.0.1 10.0.0.2 0 0 1 4 336 1 2 ACCEPT OK"),
            None,
            "the documented request: ports 0 0"
        );
        assert_eq!(
            kind_code("V1 1 eni-a 10.0.0.1 10.0.0.2 - -1 1 4 336 1 2 ACCEPT OK"),
            None
        );
        assert_eq!(
            kind_code("V1 1 eni-a 10.0.0.1 10.0.0.2 7 1283 1 4 336 1 2 ACCEPT OK"),
            None,
            "0x0503 reads as type 3 code 5 or type 5 code 3: unknown"
        );
        assert_eq!(
            kind_code("V1 1 eni-a 2001:db8::1 2001:db8::2 7 128 58 4 336 1 2 ACCEPT OK"),
            Some((128, 0))
        );
        assert_eq!(
            kind_code("V1 1 eni-a 2001:db8::1 2001:db8::2 7 33024 58 4 336 1 2 ACCEPT OK"),
            Some((129, 0)),
            "129 × 256: ICMPv6 echo reply"
        );
    }

    /// An identifier longer than any real one is a bad record, named, not carried into records.
    #[test]
    fn over_long_identifiers_are_bad_records() {
        let eni = "e".repeat(15 * 1024 * 1024);
        let err = parse(&format!(
            "2 1 eni-{eni} 10.0.0.1 10.0.0.2 1 80 6 1 1 1 2 ACCEPT OK"
        ))
        .unwrap_err();
        assert_eq!(err.reason, SkipReason::BadRecord);
        assert!(
            err.message.starts_with("interface-id is 15728644 bytes"),
            "{}",
            err.message
        );
        let account = "9".repeat(65);
        assert_eq!(
            reason(&format!(
                "2 {account} eni-a 10.0.0.1 10.0.0.2 1 80 6 1 1 1 2 ACCEPT OK"
            )),
            SkipReason::BadRecord
        );
        let version = "v".repeat(65);
        assert_eq!(
            reason(&format!(
                "{version} 1 eni-a 10.0.0.1 10.0.0.2 1 80 6 1 1 1 2 ACCEPT OK"
            )),
            SkipReason::BadRecord
        );
        assert!(parse(&format!(
            "2 1 eni-{} 10.0.0.1 10.0.0.2 1 80 6 1 1 1 2 ACCEPT OK",
            "a".repeat(60)
        ))
        .is_ok());
    }

    #[test]
    fn ipv6_and_mapped_ipv4() {
        let f = flow("2 1 eni-a 2001:db8::1 2001:db8::2 1000 53 17 1 60 1 2 ACCEPT OK");
        assert!(f.src.is_ipv6());
        let f = flow("2 1 eni-a ::ffff:10.0.0.1 10.0.0.2 1000 53 17 1 60 1 2 ACCEPT OK");
        assert_eq!(f.src, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn absent_counters_are_none() {
        let f = flow("2 1 eni-a 10.0.0.1 10.0.0.2 1000 53 17 - -1 1 2 ACCEPT OK");
        assert_eq!(f.packets, None);
        assert_eq!(f.bytes, None);
    }

    #[test]
    fn malformed_records_name_the_reason() {
        assert_eq!(reason("2 1 eni-a 10.0.0.1"), SkipReason::FieldCount);
        assert_eq!(
            reason("2 1 eni-a 10.0.0.300 10.0.0.2 1 80 6 1 1 1 2 ACCEPT OK"),
            SkipReason::BadAddress
        );
        assert_eq!(
            reason("2 1 eni-a 10.0.0.1 10.0.0.2 1 99999 6 1 1 1 2 ACCEPT OK"),
            SkipReason::BadNumber
        );
        assert_eq!(
            reason("2 1 eni-a 10.0.0.1 10.0.0.2 1 80 6 1 1 1 2 MAYBE OK"),
            SkipReason::BadAction
        );
        assert_eq!(
            reason("2 1 eni-a 10.0.0.1 10.0.0.2 1 80 6 1 1 1 2 ACCEPT WEIRD"),
            SkipReason::BadStatus
        );
        assert_eq!(
            reason("2 1 eni-a - 10.0.0.2 1 80 6 1 1 1 2 ACCEPT OK"),
            SkipReason::MissingField
        );
        assert_eq!(
            reason("2 1 eni-a 10.0.0.1 10.0.0.2 1 - 6 1 1 1 2 ACCEPT OK"),
            SkipReason::MissingField
        );
        assert_eq!(
            reason("2 1 eni-a 10.0.0.1 10.0.0.2 1 80 999 1 1 1 2 ACCEPT OK"),
            SkipReason::BadNumber
        );
        assert_eq!(
            reason("2 1 eni-a 10.0.0.1 10.0.0.2 1 80 6 -5 1 1 2 ACCEPT OK"),
            SkipReason::BadNumber
        );
        assert_eq!(reason(r#"{"srcaddr": "#), SkipReason::BadJson);
        assert_eq!(reason(r#"{"srcaddr": ["10.0.0.1"]}"#), SkipReason::BadJson);
    }

    #[test]
    fn error_message_names_field_and_value() {
        let err = parse("2 1 eni-a 10.0.0.1 not-an-ip 1 80 6 1 1 1 2 ACCEPT OK").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"bad_address: dstaddr "not-an-ip" is not an IP address"#
        );
    }
}
