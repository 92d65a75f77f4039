//! The records esgflow writes: ESG flow-log hits and aggregated traffic. Each carries a
//! deterministic `record_id` (a hash of what identifies it), so a retried batch writes the same
//! ids and downstream consumers can deduplicate.

use std::net::IpAddr;
use std::sync::Arc;

use compact_str::CompactString;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::core::engine::{DecisionKind, Direction, Scope};
use crate::core::flowlog::FlowAction;
use crate::core::snapshot::{Generation, RuleAction};

names! {
    /// Kinds of records.
    #[derive(Serialize)]
    #[serde(into = "&'static str")]
    #[strum(serialize_all = "snake_case")]
    pub enum RecordType {
        /// FL REJECT and the deciding ESG rule is a drop rule.
        BlockHit,
        /// An observe rule matched (not for replies).
        ObserveHit,
        /// FL REJECT but no ESG drop rule decides it.
        UnattributedBlock,
        /// FL ACCEPT but the snapshot says an ESG drop rule decides it.
        SnapshotDrift,
        /// Aggregated traffic.
        Traffic,
        /// A rule added, removed, modified or reordered between two snapshots.
        RuleChange,
        /// A rule-hygiene finding (shadowed, redundant, unresolvable, unused).
        RuleHygiene,
        /// Per-rule hit counters of one batch.
        RuleHits,
    }
}

names! {
    /// Why a flow-log REJECT has no ESG block rule behind it, or why an ACCEPT contradicts the
    /// snapshot.
    #[derive(Serialize)]
    #[serde(into = "&'static str")]
    #[strum(serialize_all = "snake_case")]
    pub enum Reason {
        /// The record is a reply; replies are not judged (another security group or the network ACL
        /// rejected it).
        Reply,
        /// An ESG rule that cannot be resolved from the snapshot would match before the decision: it
        /// may be what blocked the flow.
        IndeterminateRule,
        /// The ESG allows the flow: another security group or the network ACL rejected it.
        EsgAllows,
        /// No ESG rule decides the flow: another security group or the network ACL rejected it.
        NoEsgRule,
        /// The snapshot says an ESG drop rule decides the flow, yet it was accepted.
        EsgBlocks,
    }
}

names! {
    /// How the audit knew a record was a reply (the record `reply_by`), so a user can see how
    /// sure it is.
    #[derive(Serialize)]
    #[serde(into = "&'static str")]
    #[strum(serialize_all = "snake_case")]
    pub enum ReplyBy {
        /// The batch holds the reversed record (the same 5-tuple, or the same ICMP exchange) and
        /// it started earlier, or, starting in the same second, this record's source port is the
        /// service end.
        Pair,
        /// Its source port is one a rule of the snapshot names as a service (and its
        /// destination port is not).
        ServicePort,
        /// Its source port is privileged or on the fixed list of service ports, or its ICMP type
        /// is a reply's: the last resort.
        PortList,
    }
}

names! {
    /// What the other end of a connection is, seen from its VPC.
    #[derive(Serialize)]
    #[serde(into = "&'static str")]
    #[strum(serialize_all = "snake_case")]
    pub enum Peer {
        /// Both ends in one VPC.
        SameVpc,
        /// Another known VPC.
        OtherVpc,
        /// A private address outside the known VPCs (IDC over a VPN or Direct Connect, peering).
        Private,
        /// A public address.
        Internet,
        /// Neither end is in a known VPC.
        Unknown,
    }
}

/// A protocol number that serialises as its name (`TCP`, `ICMPv6`, `proto 200`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolName(pub u8);

impl ProtocolName {
    /// The name.
    pub fn text(self) -> std::borrow::Cow<'static, str> {
        crate::core::flowlog::protocol::name(self.0)
    }
}

impl Serialize for ProtocolName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text())
    }
}

/// An IPv4 address as the number CLS indexes as `long`, so that a CIDR search is a numeric
/// range (`src_ip_num:>=… AND src_ip_num:<=…`); `None` for IPv6.
pub fn ipv4_number(ip: IpAddr) -> Option<u32> {
    match ip {
        IpAddr::V4(v4) => Some(u32::from(v4)),
        IpAddr::V6(_) => None,
    }
}

/// The rule a record names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    /// Rule id.
    pub rule_uuid: String,
    /// `OrderIndex`.
    pub rule_order: u64,
    /// `new` or `old` ESG.
    pub rule_generation: Generation,
    /// accept, drop or observe.
    pub rule_action: RuleAction,
    /// Description.
    pub rule_description: String,
    /// Source as the rule states it (`net 10.0.0.0/8`, `template ipm-…`).
    pub rule_source: String,
    /// Destination as the rule states it.
    pub rule_destination: String,
    /// Services (`TCP 80,443`, `service template ppm-… (tcp:53, udp:53)`).
    pub rule_service: String,
}

/// One ESG flow-log hit (block, observe, unattributed block, drift).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HitRecord {
    /// The record's kind.
    pub record_type: RecordType,
    /// Deterministic id.
    pub record_id: CompactString,
    /// Window end, Unix seconds (the record's time).
    pub time: u64,
    /// Window start.
    pub start: u64,
    /// Window end.
    pub end: u64,
    /// AppID.
    pub account_id: CompactString,
    /// The ENI that recorded the flow (the one that rejected it, when both ends did).
    pub eni: CompactString,
    /// `ingress`, `egress` or `unknown`, relative to `eni`.
    pub direction: Direction,
    /// Source address.
    pub src_ip: IpAddr,
    /// The source IPv4 address as a number, for CIDR searches ([`ipv4_number`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_ip_num: Option<u32>,
    /// Source port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// Destination address.
    pub dst_ip: IpAddr,
    /// The destination IPv4 address as a number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_ip_num: Option<u32>,
    /// Destination port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// IANA protocol number.
    pub protocol: u8,
    /// Its name (`TCP`, `ICMPv6`, `proto 200`).
    pub protocol_name: ProtocolName,
    /// ICMP type, for ICMP flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code, for ICMP flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// `ACCEPT` or `REJECT`.
    pub fl_action: FlowAction,
    /// Packets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Traffic scope.
    pub scope: Scope,
    /// Where both ends are (shared by the records of one placement).
    #[serde(flatten)]
    pub ends: Arc<Ends>,
    /// The snapshot's decision: `allow`, `block` or `none`.
    pub decision: DecisionKind,
    /// The rule the record is about: the deciding drop rule (block hit, drift), the observe rule
    /// (observe hit), the allowing rule (unattributed block of an allowed flow).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Arc<RuleRef>>,
    /// For observe hits: the rule that decided the flow, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deciding_rule_uuid: Option<CompactString>,
    /// Why an unattributed block or drift happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Rules before the decision that could not be judged from the snapshot (comma list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indeterminate_rules: Option<String>,
    /// For a reply (reason `reply`): how the audit knew it was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_by: Option<ReplyBy>,
    /// The snapshot the flow was judged against.
    pub snapshot_version: Arc<str>,
}

/// Where both ends of a flow are: VPC and subnet (ids and names), instance and ENI, each when
/// the snapshot knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ends {
    /// Source VPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_vpc: Option<CompactString>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_vpc_name: Option<CompactString>,
    /// Source subnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_subnet: Option<CompactString>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_subnet_name: Option<CompactString>,
    /// Source instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_instance: Option<CompactString>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_instance_name: Option<CompactString>,
    /// Source ENI (when the address is an ENI's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_eni: Option<CompactString>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_eni_name: Option<CompactString>,
    /// Destination VPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_vpc: Option<CompactString>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_vpc_name: Option<CompactString>,
    /// Destination subnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_subnet: Option<CompactString>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_subnet_name: Option<CompactString>,
    /// Destination instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_instance: Option<CompactString>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_instance_name: Option<CompactString>,
    /// Destination ENI (when the address is an ENI's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_eni: Option<CompactString>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_eni_name: Option<CompactString>,
}

impl Ends {
    fn write_fields(&self, out: &mut impl Fields) {
        for (key, value) in [
            ("src_vpc", &self.src_vpc),
            ("dst_vpc", &self.dst_vpc),
            ("src_vpc_name", &self.src_vpc_name),
            ("dst_vpc_name", &self.dst_vpc_name),
            ("src_subnet", &self.src_subnet),
            ("dst_subnet", &self.dst_subnet),
            ("src_subnet_name", &self.src_subnet_name),
            ("dst_subnet_name", &self.dst_subnet_name),
            ("src_instance", &self.src_instance),
            ("dst_instance", &self.dst_instance),
            ("src_instance_name", &self.src_instance_name),
            ("dst_instance_name", &self.dst_instance_name),
            ("src_eni", &self.src_eni),
            ("dst_eni", &self.dst_eni),
            ("src_eni_name", &self.src_eni_name),
            ("dst_eni_name", &self.dst_eni_name),
        ] {
            if let Some(value) = value {
                out.text(key, value);
            }
        }
    }
}

/// Traffic aggregated per batch per (scope, vpc, src, dst, dst_port, protocol, action).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrafficRecord {
    /// Always `traffic`.
    pub record_type: RecordType,
    /// Deterministic id.
    pub record_id: CompactString,
    /// Last seen, Unix seconds (the record's time).
    pub time: u64,
    /// Traffic scope.
    pub scope: Scope,
    /// The monitored VPC the traffic belongs to (the source's, else the destination's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc: Option<CompactString>,
    /// Source (the initiator: replies are folded into their connection).
    pub src_ip: IpAddr,
    /// The source IPv4 address as a number, for CIDR searches ([`ipv4_number`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_ip_num: Option<u32>,
    /// Destination.
    pub dst_ip: IpAddr,
    /// The destination IPv4 address as a number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_ip_num: Option<u32>,
    /// Destination (service) port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// IANA protocol number.
    pub protocol: u8,
    /// Its name.
    pub protocol_name: ProtocolName,
    /// `ACCEPT` or `REJECT`.
    pub fl_action: FlowAction,
    /// Where both ends of the connection are.
    #[serde(flatten)]
    pub ends: Arc<Ends>,
    /// What the other end is, seen from the VPC.
    pub peer: Peer,
    /// Flow records counted (requests and replies).
    pub flows: u64,
    /// Records in the request direction.
    pub requests: u64,
    /// Reply records folded in.
    pub replies: u64,
    /// Distinct connections (client port, or ICMP id, per aggregate).
    pub connections: u64,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Earliest window start.
    pub first_seen: u64,
    /// Latest window end.
    pub last_seen: u64,
    /// The ENIs whose flow logs recorded it, comma-separated and sorted (for flow-log coverage).
    #[serde(skip_serializing_if = "CompactString::is_empty")]
    pub enis: CompactString,
    /// The snapshot the batch was judged against.
    pub snapshot_version: Arc<str>,
}

/// A change to one rule between two snapshots (written by the sync function).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleChangeRecord {
    /// Always `rule_change`.
    pub record_type: RecordType,
    /// Deterministic id (the change, the rule and both versions).
    pub record_id: CompactString,
    /// When the new snapshot was taken, Unix seconds.
    pub time: u64,
    /// `added`, `removed`, `modified` or `reordered`.
    pub change: &'static str,
    /// Rule id.
    pub rule_uuid: String,
    /// `new` or `old` ESG.
    pub rule_generation: Generation,
    /// The rule's position now (before, for a removed rule).
    pub rule_order: u64,
    /// Its position before, for a reordered or modified rule whose position changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_order: Option<u64>,
    /// accept, drop or observe (now; before, for a removed rule).
    pub rule_action: RuleAction,
    /// Description.
    pub rule_description: String,
    /// The fields that changed (comma list), for a modified rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<String>,
    /// The changed fields' old values (a JSON object), or the whole removed rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// The changed fields' new values (a JSON object), or the whole added rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The previous snapshot.
    pub from_version: String,
    /// The new snapshot.
    pub snapshot_version: String,
}

/// A rule-hygiene finding (written by the sync function).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleHygieneRecord {
    /// Always `rule_hygiene`.
    pub record_type: RecordType,
    /// Deterministic id (finding, rule, snapshot).
    pub record_id: CompactString,
    /// When the snapshot was taken, Unix seconds.
    pub time: u64,
    /// `shadowed`, `redundant`, `unresolvable`, `undecided` or `unused`.
    pub finding: &'static str,
    /// Rule id.
    pub rule_uuid: String,
    /// Position.
    pub rule_order: u64,
    /// accept, drop or observe.
    pub rule_action: RuleAction,
    /// Description.
    pub rule_description: String,
    /// The rules that cover it (comma list of uuids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covering_rules: Option<String>,
    /// Why.
    pub detail: String,
    /// The snapshot analysed.
    pub snapshot_version: String,
}

/// Hits of one rule in one batch (written by the audit function, summed from CLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleHitsRecord {
    /// Always `rule_hits`.
    pub record_type: RecordType,
    /// Deterministic id.
    pub record_id: CompactString,
    /// Last hit, Unix seconds.
    pub time: u64,
    /// Rule id.
    pub rule_uuid: String,
    /// accept, drop or observe.
    pub rule_action: RuleAction,
    /// Flows the rule decided or observed in the batch.
    pub hits: u64,
    /// Of which block hits.
    pub block_hits: u64,
    /// Of which observe hits.
    pub observe_hits: u64,
    /// Earliest hit (window start), Unix seconds.
    pub first_hit: u64,
    /// Latest hit (window end), Unix seconds.
    pub last_hit: u64,
    /// The snapshot the batch was judged against.
    pub snapshot_version: String,
}

/// Any record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Record {
    /// A hit.
    Hit(Box<HitRecord>),
    /// Aggregated traffic.
    Traffic(Box<TrafficRecord>),
    /// A rule change.
    RuleChange(Box<RuleChangeRecord>),
    /// A hygiene finding.
    RuleHygiene(Box<RuleHygieneRecord>),
    /// Rule hit counters.
    RuleHits(Box<RuleHitsRecord>),
}

impl Record {
    /// Wraps a hit.
    pub fn hit(hit: HitRecord) -> Self {
        Record::Hit(Box::new(hit))
    }

    /// The record's kind.
    pub fn record_type(&self) -> RecordType {
        match self {
            Record::Hit(h) => h.record_type,
            Record::Traffic(t) => t.record_type,
            Record::RuleChange(c) => c.record_type,
            Record::RuleHygiene(h) => h.record_type,
            Record::RuleHits(h) => h.record_type,
        }
    }

    /// The record's id.
    pub fn record_id(&self) -> &str {
        match self {
            Record::Hit(h) => &h.record_id,
            Record::Traffic(t) => &t.record_id,
            Record::RuleChange(c) => &c.record_id,
            Record::RuleHygiene(h) => &h.record_id,
            Record::RuleHits(h) => &h.record_id,
        }
    }

    /// The record's time, Unix seconds.
    pub fn time(&self) -> u64 {
        match self {
            Record::Hit(h) => h.time,
            Record::Traffic(t) => t.time,
            Record::RuleChange(c) => c.time,
            Record::RuleHygiene(h) => h.time,
            Record::RuleHits(h) => h.time,
        }
    }

    /// The record as flat key/value strings (CLS log contents), alphabetical, as serde writes it.
    pub fn contents(&self) -> Vec<(String, String)> {
        let value = serde_json::to_value(self).expect("records are plain data");
        let serde_json::Value::Object(map) = value else {
            unreachable!("records serialize as objects")
        };
        map.into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect()
    }
}

/// Where [`Record::write_fields`] puts each present field: a method for each kind of value, so
/// that the value goes in registers. (Through one callback, each of a record's thirty fields was
/// built as a [`FieldValue`] in memory and read back at once, wider than it was stored: the CPU
/// could not forward the stores to the load. The CLS encoder is a quarter faster without it;
/// docs/performance.md.)
pub trait Fields {
    /// A text field.
    fn text(&mut self, key: &'static str, value: &str);
    /// A number.
    fn number(&mut self, key: &'static str, value: u64);
    /// An address.
    fn ip(&mut self, key: &'static str, value: &IpAddr);
}

/// A field value, borrowed, for writers that format it themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue<'a> {
    /// Text.
    Text(&'a str),
    /// A number.
    Number(u64),
    /// An address.
    Ip(IpAddr),
}

impl FieldValue<'_> {
    /// Writes the value as [`Display`](std::fmt::Display) would, without going through the
    /// formatting machinery for numbers and IPv4 addresses (the encoder's hot path), to any byte
    /// sink: a stack buffer in the CLS encoder, where it fails only if the buffer is too small.
    pub(crate) fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut digits = itoa::Buffer::new();
        match self {
            FieldValue::Text(t) => out.write_all(t.as_bytes()),
            FieldValue::Number(n) => out.write_all(digits.format(*n).as_bytes()),
            FieldValue::Ip(IpAddr::V4(v4)) => {
                let [a, b, c, d] = v4.octets();
                out.write_all(digits.format(a).as_bytes())?;
                for octet in [b, c, d] {
                    out.write_all(b".")?;
                    out.write_all(digits.format(octet).as_bytes())?;
                }
                Ok(())
            }
            FieldValue::Ip(ip) => write!(out, "{ip}"),
        }
    }
}

impl std::fmt::Display for FieldValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::Text(t) => f.write_str(t),
            FieldValue::Number(n) => write!(f, "{n}"),
            FieldValue::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl Record {
    /// Calls `visit` with every present field (see [`Record::write_fields`]).
    pub fn visit(&self, visit: impl FnMut(&'static str, FieldValue<'_>)) {
        struct Each<F>(F);
        impl<F: FnMut(&'static str, FieldValue<'_>)> Fields for Each<F> {
            fn text(&mut self, key: &'static str, value: &str) {
                (self.0)(key, FieldValue::Text(value))
            }
            fn number(&mut self, key: &'static str, value: u64) {
                (self.0)(key, FieldValue::Number(value))
            }
            fn ip(&mut self, key: &'static str, value: &IpAddr) {
                (self.0)(key, FieldValue::Ip(*value))
            }
        }
        self.write_fields(&mut Each(visit))
    }

    /// Hands every present field to `out`, without building intermediate values: the hot path
    /// of the CLS encoder. The fields are the ones [`Record::contents`] gives
    /// (`visit_gives_the_contents` guards that). For hits and traffic the fields that repeat
    /// from record to record (type, snapshot, scope, rule) come first and the ones that vary
    /// last, which makes the CLS body smaller and quicker to compress (LZ4 finds longer
    /// matches); key order carries no meaning in CLS.
    pub fn write_fields(&self, out: &mut impl Fields) {
        fn text(out: &mut impl Fields, key: &'static str, value: Option<&str>) {
            if let Some(value) = value {
                out.text(key, value)
            }
        }
        fn number(out: &mut impl Fields, key: &'static str, value: Option<u64>) {
            if let Some(value) = value {
                out.number(key, value)
            }
        }
        match self {
            Record::Hit(h) => {
                let rule = h.rule.as_ref();
                out.text("record_type", h.record_type.as_str());
                out.text("snapshot_version", &h.snapshot_version);
                out.text("account_id", &h.account_id);
                out.text("scope", h.scope.as_str());
                out.text("direction", h.direction.as_str());
                out.text("decision", h.decision.as_str());
                out.text("fl_action", h.fl_action.as_str());
                text(out, "reason", h.reason.map(|r| r.as_str()));
                if let Some(r) = rule {
                    out.text("rule_uuid", &r.rule_uuid);
                    out.number("rule_order", r.rule_order);
                    out.text("rule_action", r.rule_action.as_str());
                    out.text("rule_generation", r.rule_generation.as_str());
                    out.text("rule_description", &r.rule_description);
                    out.text("rule_source", &r.rule_source);
                    out.text("rule_destination", &r.rule_destination);
                    out.text("rule_service", &r.rule_service);
                }
                text(out, "deciding_rule_uuid", h.deciding_rule_uuid.as_deref());
                text(out, "indeterminate_rules", h.indeterminate_rules.as_deref());
                text(out, "reply_by", h.reply_by.map(|r| r.as_str()));
                out.number("protocol", u64::from(h.protocol));
                out.text("protocol_name", &h.protocol_name.text());
                h.ends.write_fields(out);
                out.text("eni", &h.eni);
                out.ip("dst_ip", &h.dst_ip);
                number(out, "dst_ip_num", h.dst_ip_num.map(u64::from));
                number(out, "dst_port", h.dst_port.map(u64::from));
                out.ip("src_ip", &h.src_ip);
                number(out, "src_ip_num", h.src_ip_num.map(u64::from));
                number(out, "src_port", h.src_port.map(u64::from));
                number(out, "icmp_type", h.icmp_type.map(u64::from));
                number(out, "icmp_code", h.icmp_code.map(u64::from));
                out.number("start", h.start);
                out.number("end", h.end);
                out.number("time", h.time);
                number(out, "packets", h.packets);
                number(out, "bytes", h.bytes);
                out.text("record_id", &h.record_id);
            }
            Record::Traffic(t) => {
                out.text("record_type", t.record_type.as_str());
                out.text("snapshot_version", &t.snapshot_version);
                out.text("scope", t.scope.as_str());
                text(out, "vpc", t.vpc.as_deref());
                out.text("peer", t.peer.as_str());
                out.text("fl_action", t.fl_action.as_str());
                t.ends.write_fields(out);
                out.number("protocol", u64::from(t.protocol));
                out.text("protocol_name", &t.protocol_name.text());
                number(out, "dst_port", t.dst_port.map(u64::from));
                out.ip("dst_ip", &t.dst_ip);
                number(out, "dst_ip_num", t.dst_ip_num.map(u64::from));
                out.ip("src_ip", &t.src_ip);
                number(out, "src_ip_num", t.src_ip_num.map(u64::from));
                out.number("first_seen", t.first_seen);
                out.number("last_seen", t.last_seen);
                out.number("time", t.time);
                out.number("flows", t.flows);
                out.number("requests", t.requests);
                out.number("replies", t.replies);
                out.number("connections", t.connections);
                out.number("packets", t.packets);
                out.number("bytes", t.bytes);
                if !t.enis.is_empty() {
                    out.text("enis", &t.enis);
                }
                out.text("record_id", &t.record_id);
            }
            Record::RuleChange(c) => {
                text(out, "after", c.after.as_deref());
                text(out, "before", c.before.as_deref());
                out.text("change", c.change);
                text(out, "fields", c.fields.as_deref());
                out.text("from_version", &c.from_version);
                number(out, "previous_order", c.previous_order);
                out.text("record_id", &c.record_id);
                out.text("record_type", c.record_type.as_str());
                out.text("rule_action", c.rule_action.as_str());
                out.text("rule_description", &c.rule_description);
                out.text("rule_generation", c.rule_generation.as_str());
                out.number("rule_order", c.rule_order);
                out.text("rule_uuid", &c.rule_uuid);
                out.text("snapshot_version", &c.snapshot_version);
                out.number("time", c.time);
            }
            Record::RuleHygiene(h) => {
                text(out, "covering_rules", h.covering_rules.as_deref());
                out.text("detail", &h.detail);
                out.text("finding", h.finding);
                out.text("record_id", &h.record_id);
                out.text("record_type", h.record_type.as_str());
                out.text("rule_action", h.rule_action.as_str());
                out.text("rule_description", &h.rule_description);
                out.number("rule_order", h.rule_order);
                out.text("rule_uuid", &h.rule_uuid);
                out.text("snapshot_version", &h.snapshot_version);
                out.number("time", h.time);
            }
            Record::RuleHits(h) => {
                out.number("block_hits", h.block_hits);
                out.number("first_hit", h.first_hit);
                out.number("hits", h.hits);
                out.number("last_hit", h.last_hit);
                out.number("observe_hits", h.observe_hits);
                out.text("record_id", &h.record_id);
                out.text("record_type", h.record_type.as_str());
                out.text("rule_action", h.rule_action.as_str());
                out.text("rule_uuid", &h.rule_uuid);
                out.text("snapshot_version", &h.snapshot_version);
                out.number("time", h.time);
            }
        }
    }
}

/// Builds a deterministic record id: 16 hex digits of SHA-256 over typed parts: a text as its
/// length (LEB128) and bytes, a number as LEB128, an address as its family tag and octets. The
/// parts are gathered into one buffer and hashed once.
///
/// Ids of the audit function's records (hits, traffic, rule hits) start from an [`IdPrefix`]:
/// the record kind and the snapshot version fill the first 64-byte block, which is hashed once
/// per batch; the record's own parts then fit one more block for nearly every record.
#[derive(Clone)]
pub(crate) struct RecordId(smallvec::SmallVec<[u8; 128]>);

impl RecordId {
    /// Starts an id for a record of kind `kind`.
    pub fn new(kind: &str) -> Self {
        let mut id = RecordId::parts();
        id.text(kind);
        id
    }

    /// Starts the parts of an id to be finished after an [`IdPrefix`].
    pub fn parts() -> Self {
        RecordId(smallvec::SmallVec::new())
    }

    fn leb128(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    /// Adds a text part.
    pub fn text(&mut self, text: &str) -> &mut Self {
        self.leb128(text.len() as u64);
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    /// Adds a number.
    pub fn number(&mut self, number: u64) -> &mut Self {
        self.leb128(number);
        self
    }

    /// Adds an address (family tag and octets).
    pub fn ip(&mut self, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(v4) => {
                self.0.push(4);
                self.0.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.0.push(6);
                self.0.extend_from_slice(&v6.octets());
            }
        }
        self
    }

    /// The id (16 characters, held inline: no allocation).
    pub fn finish(&self) -> CompactString {
        hex_id(Sha256::digest(&self.0).as_slice())
    }

    /// The id of these parts after `prefix`.
    pub(crate) fn finish_after(&self, prefix: &IdPrefix) -> CompactString {
        let mut hasher = prefix.0.clone();
        hasher.update(&self.0);
        hex_id(hasher.finalize().as_slice())
    }
}

/// The first block of the ids of one kind of record in one batch: the kind and the snapshot
/// version, zero-padded to 64 bytes, hashed once.
#[derive(Clone)]
pub(crate) struct IdPrefix(Sha256);

impl IdPrefix {
    /// The prefix for records of kind `kind` judged against snapshot `version`.
    pub fn new(kind: &str, version: &str) -> Self {
        let mut id = RecordId::new(kind);
        id.text(version);
        let mut block = id.0.to_vec();
        block.resize(block.len().div_ceil(64) * 64, 0);
        IdPrefix(Sha256::new_with_prefix(&block))
    }
}

/// The first 8 bytes of a digest as 16 hex digits.
fn hex_id(digest: &[u8]) -> CompactString {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 16];
    for (i, byte) in digest[..8].iter().enumerate() {
        text[2 * i] = DIGITS[usize::from(byte >> 4)];
        text[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
    }
    CompactString::from_utf8(text).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    /// Each name has one source: serde, `as_str` and `Display` agree for every variant, and no
    /// two variants share a name.
    fn names_agree<T>()
    where
        T: VariantArray
            + Serialize
            + Copy
            + Into<&'static str>
            + std::fmt::Display
            + std::fmt::Debug,
    {
        let mut seen = std::collections::BTreeSet::new();
        for &variant in T::VARIANTS {
            let name: &'static str = variant.into();
            assert_eq!(serde_json::to_value(variant).unwrap(), name, "{variant:?}");
            assert_eq!(variant.to_string(), name, "{variant:?}");
            assert!(seen.insert(name), "{name} twice");
        }
    }

    #[test]
    fn every_enum_a_record_carries_has_one_name_per_variant() {
        names_agree::<RecordType>();
        names_agree::<Reason>();
        names_agree::<Peer>();
        names_agree::<Scope>();
        names_agree::<Direction>();
        names_agree::<DecisionKind>();
        names_agree::<FlowAction>();
        names_agree::<crate::core::flowlog::SkipReason>();
        names_agree::<RuleAction>();
        names_agree::<Generation>();
        assert_eq!(Scope::VpcInbound.as_str(), "vpc_inbound");
        assert_eq!(FlowAction::Reject.as_str(), "REJECT");
        assert_eq!(Reason::IndeterminateRule.as_str(), "indeterminate_rule");
        assert_eq!(serde_json::to_value(ProtocolName(58)).unwrap(), "ICMPv6");
        assert_eq!(
            serde_json::to_value(ProtocolName(200)).unwrap(),
            "proto 200"
        );
    }

    fn hit(full: bool) -> HitRecord {
        let some = |s: &str| full.then(|| CompactString::from(s));
        HitRecord {
            record_type: RecordType::ObserveHit,
            record_id: "0123456789abcdef".into(),
            time: 1_763_942_460,
            start: 1_763_942_400,
            end: 1_763_942_460,
            account_id: "1251762227".into(),
            eni: "eni-1".into(),
            direction: crate::core::engine::Direction::Egress,
            src_ip: "10.0.1.5".parse().unwrap(),
            src_ip_num: Some(0x0a00_0105),
            src_port: full.then_some(40000),
            dst_ip: "2001:db8::8".parse().unwrap(),
            dst_ip_num: None,
            dst_port: full.then_some(3306),
            protocol: 6,
            protocol_name: crate::core::records::ProtocolName(6),
            icmp_type: full.then_some(8),
            icmp_code: full.then_some(0),
            fl_action: crate::core::flowlog::FlowAction::Reject,
            packets: full.then_some(3),
            bytes: full.then_some(180),
            scope: crate::core::engine::Scope::InterSubnet,
            ends: Arc::new(ends(full)),
            decision: crate::core::engine::DecisionKind::Block,
            rule: full.then(|| {
                Arc::new(RuleRef {
                    rule_uuid: "r-1".into(),
                    rule_order: 7,
                    rule_generation: crate::core::snapshot::Generation::New,
                    rule_action: crate::core::snapshot::RuleAction::Observe,
                    rule_description: "watch \"db\"".into(),
                    rule_source: "net 10.0.0.0/8".into(),
                    rule_destination: "template ipm-1".into(),
                    rule_service: "TCP 3306".into(),
                })
            }),
            deciding_rule_uuid: some("r-2"),
            reason: full.then_some(crate::core::records::Reason::EsgAllows),
            indeterminate_rules: full.then(|| "r-0".to_string()),
            reply_by: full.then_some(crate::core::records::ReplyBy::Pair),
            snapshot_version: "v1".into(),
        }
    }

    fn ends(full: bool) -> Ends {
        let some = |s: &str| full.then(|| CompactString::from(s));
        Ends {
            src_vpc: some("vpc-a"),
            src_vpc_name: some("prod"),
            src_subnet: some("subnet-a"),
            src_subnet_name: some("web"),
            src_instance: some("ins-a"),
            src_instance_name: some("web-01"),
            src_eni: some("eni-a"),
            src_eni_name: some("web-01 primary"),
            dst_vpc: some("vpc-b"),
            dst_vpc_name: some("数据"),
            dst_subnet: some("subnet-b"),
            dst_subnet_name: some("db"),
            dst_instance: some("ins-b"),
            dst_instance_name: some("db-主"),
            dst_eni: some("eni-b"),
            dst_eni_name: some("db eni"),
        }
    }

    fn traffic(full: bool) -> TrafficRecord {
        TrafficRecord {
            record_type: RecordType::Traffic,
            record_id: "fedcba9876543210".into(),
            time: 9,
            scope: crate::core::engine::Scope::VpcInbound,
            vpc: full.then(|| "vpc-a".into()),
            src_ip: "203.0.113.9".parse().unwrap(),
            src_ip_num: ipv4_number("203.0.113.9".parse().unwrap()),
            dst_ip: "10.0.1.5".parse().unwrap(),
            dst_ip_num: Some(0x0a00_0105),
            dst_port: full.then_some(443),
            protocol: 6,
            protocol_name: crate::core::records::ProtocolName(6),
            fl_action: crate::core::flowlog::FlowAction::Accept,
            ends: Arc::new(ends(full)),
            peer: crate::core::records::Peer::Internet,
            flows: 2,
            requests: 1,
            replies: 1,
            connections: 1,
            packets: 10,
            bytes: 1000,
            first_seen: 1,
            last_seen: 9,
            enis: if full {
                "eni-a,eni-b".into()
            } else {
                "".into()
            },
            snapshot_version: "v1".into(),
        }
    }

    #[test]
    fn visit_gives_the_contents() {
        for record in [
            Record::hit(hit(true)),
            Record::hit(hit(false)),
            Record::Traffic(Box::new(traffic(true))),
            Record::Traffic(Box::new(traffic(false))),
            Record::RuleChange(Box::new(RuleChangeRecord {
                record_type: RecordType::RuleChange,
                record_id: "1".into(),
                time: 5,
                change: "modified",
                rule_uuid: "r-1".into(),
                rule_generation: crate::core::snapshot::Generation::New,
                rule_order: 2,
                previous_order: Some(3),
                rule_action: crate::core::snapshot::RuleAction::Drop,
                rule_description: "d".into(),
                fields: Some("port".into()),
                before: Some("{\"port\":\"80\"}".into()),
                after: Some("{\"port\":\"81\"}".into()),
                from_version: "v0".into(),
                snapshot_version: "v1".into(),
            })),
            Record::RuleHygiene(Box::new(RuleHygieneRecord {
                record_type: RecordType::RuleHygiene,
                record_id: "2".into(),
                time: 5,
                finding: "shadowed",
                rule_uuid: "r-2".into(),
                rule_order: 9,
                rule_action: crate::core::snapshot::RuleAction::Accept,
                rule_description: "x".into(),
                covering_rules: Some("r-1".into()),
                detail: "why".into(),
                snapshot_version: "v1".into(),
            })),
            Record::RuleHits(Box::new(RuleHitsRecord {
                record_type: RecordType::RuleHits,
                record_id: "3".into(),
                time: 9,
                rule_uuid: "r-1".into(),
                rule_action: crate::core::snapshot::RuleAction::Drop,
                hits: 4,
                block_hits: 3,
                observe_hits: 1,
                first_hit: 1,
                last_hit: 9,
                snapshot_version: "v1".into(),
            })),
        ] {
            let mut visited = Vec::new();
            record.visit(|key, value| {
                let mut bytes = Vec::new();
                value.write_to(&mut bytes).unwrap();
                assert_eq!(String::from_utf8(bytes).unwrap(), value.to_string());
                visited.push((key.to_string(), value.to_string()))
            });
            visited.sort();
            assert_eq!(visited, record.contents());
        }
    }

    #[test]
    fn ids_are_stable_and_parts_do_not_run_together() {
        let a = RecordId::new("block_hit").text("ab").text("c").finish();
        let b = RecordId::new("block_hit").text("a").text("bc").finish();
        assert_ne!(a, b);
        assert_eq!(a, RecordId::new("block_hit").text("ab").text("c").finish());
        assert_eq!(a.len(), 16);
        let v4 = RecordId::new("t").ip("10.0.0.1".parse().unwrap()).finish();
        let v6 = RecordId::new("t")
            .ip("::ffff:10.0.0.1".parse().unwrap())
            .finish();
        assert_ne!(v4, v6);
        // Pinned: the encoding is part of the record format (docs/records.md, `record_id`); a change to
        // it must be deliberate and noted there.
        assert_eq!(
            a,
            hex::encode(&Sha256::digest(b"\x09block_hit\x02ab\x01c")[..8])
        );
        assert_eq!(
            RecordId::new("t").number(300).finish(),
            hex::encode(&Sha256::digest(b"\x01t\xac\x02")[..8])
        );
    }

    #[test]
    fn long_ids_spill_without_changing() {
        let long = "x".repeat(300);
        let mut id = RecordId::new("t");
        id.text("ab").text(&long).number(1);
        let mut bytes = b"\x01t\x02ab\xac\x02".to_vec();
        bytes.extend_from_slice(long.as_bytes());
        bytes.push(1);
        assert_eq!(id.finish(), hex::encode(&Sha256::digest(&bytes)[..8]));
    }

    /// Numbers of every LEB128 length and both address families are written as their bytes:
    /// the id's encoding, pinned (a faster writer must give the same bytes).
    #[test]
    fn numbers_and_addresses_are_their_bytes() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let v6: IpAddr = "2402:4e00::1".parse().unwrap();
        let mut id = RecordId::parts();
        id.number(0)
            .ip(v4)
            .number(127)
            .number(128)
            .ip(v6)
            .number(u64::MAX)
            .text("z");
        let mut bytes = vec![0, 4, 10, 1, 2, 3, 0x7f, 0x80, 0x01, 6];
        bytes.extend_from_slice(
            &"2402:4e00::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        bytes.extend_from_slice(&[0xff; 9]);
        bytes.extend_from_slice(&[0x01, 1, b'z']);
        assert_eq!(id.0.as_slice(), bytes.as_slice());
    }

    #[test]
    fn a_prefixed_id_is_the_hash_of_the_padded_prefix_and_the_parts() {
        let prefix = IdPrefix::new("traffic", "eab24ee18751aa20");
        let id = RecordId::parts()
            .text("vpc-1")
            .number(7)
            .finish_after(&prefix);
        let mut bytes = b"\x07traffic\x10eab24ee18751aa20".to_vec();
        bytes.resize(64, 0);
        bytes.extend_from_slice(b"\x05vpc-1\x07");
        assert_eq!(id, hex::encode(&Sha256::digest(&bytes)[..8]));
        // The prefix is part of the identity.
        let other = IdPrefix::new("traffic", "eab24ee18751aa21");
        assert_ne!(
            id,
            RecordId::parts()
                .text("vpc-1")
                .number(7)
                .finish_after(&other)
        );
    }
}
