//! The records esgflow writes: ESG flow-log hits and aggregated traffic. Each carries a
//! deterministic `record_id` (a hash of what identifies it), so a retried batch writes the same
//! ids and downstream consumers can deduplicate.

use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Kinds of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
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
}

impl RecordType {
    /// Every type.
    pub const ALL: [RecordType; 5] = [
        RecordType::BlockHit,
        RecordType::ObserveHit,
        RecordType::UnattributedBlock,
        RecordType::SnapshotDrift,
        RecordType::Traffic,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::BlockHit => "block_hit",
            RecordType::ObserveHit => "observe_hit",
            RecordType::UnattributedBlock => "unattributed_block",
            RecordType::SnapshotDrift => "snapshot_drift",
            RecordType::Traffic => "traffic",
        }
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
    pub rule_generation: &'static str,
    /// accept, drop or observe.
    pub rule_action: &'static str,
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
    pub record_id: String,
    /// Window end, Unix seconds (the record's time).
    pub time: u64,
    /// Window start.
    pub start: u64,
    /// Window end.
    pub end: u64,
    /// AppID.
    pub account_id: String,
    /// The ENI that recorded the flow (the one that rejected it, when both ends did).
    pub eni: String,
    /// `ingress`, `egress` or `unknown`, relative to `eni`.
    pub direction: &'static str,
    /// Source address.
    pub src_ip: IpAddr,
    /// Source port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// Destination address.
    pub dst_ip: IpAddr,
    /// Destination port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// IANA protocol number.
    pub protocol: u8,
    /// ICMP type, for ICMP flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code, for ICMP flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// `ACCEPT` or `REJECT`.
    pub fl_action: &'static str,
    /// Packets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Traffic scope.
    pub scope: &'static str,
    /// Source VPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_vpc: Option<String>,
    /// Source subnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_subnet: Option<String>,
    /// Source instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_instance: Option<String>,
    /// Destination VPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_vpc: Option<String>,
    /// Destination subnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_subnet: Option<String>,
    /// Destination instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_instance: Option<String>,
    /// The snapshot's decision: `allow`, `block` or `none`.
    pub decision: &'static str,
    /// The rule the record is about: the deciding drop rule (block hit, drift), the observe rule
    /// (observe hit), the allowing rule (unattributed block of an allowed flow).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleRef>,
    /// For observe hits: the rule that decided the flow, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deciding_rule_uuid: Option<String>,
    /// Why an unattributed block or drift happened: `no_esg_rule`, `esg_allows`, `reply`,
    /// `esg_blocks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Rules before the decision that could not be judged from the snapshot (comma list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indeterminate_rules: Option<String>,
    /// The snapshot the flow was judged against.
    pub snapshot_version: String,
}

/// Traffic aggregated per batch per (scope, vpc, src, dst, dst_port, protocol, action).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrafficRecord {
    /// Always `traffic`.
    pub record_type: RecordType,
    /// Deterministic id.
    pub record_id: String,
    /// Last seen, Unix seconds (the record's time).
    pub time: u64,
    /// Traffic scope.
    pub scope: &'static str,
    /// The monitored VPC the traffic belongs to (the source's, else the destination's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
    /// Source (the initiator: replies are folded into their connection).
    pub src_ip: IpAddr,
    /// Destination.
    pub dst_ip: IpAddr,
    /// Destination (service) port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// IANA protocol number.
    pub protocol: u8,
    /// `ACCEPT` or `REJECT`.
    pub fl_action: &'static str,
    /// Flow records counted.
    pub flows: u64,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Earliest window start.
    pub first_seen: u64,
    /// Latest window end.
    pub last_seen: u64,
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
    Traffic(TrafficRecord),
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
        }
    }

    /// The record's id.
    pub fn record_id(&self) -> &str {
        match self {
            Record::Hit(h) => &h.record_id,
            Record::Traffic(t) => &t.record_id,
        }
    }

    /// The record's time, Unix seconds.
    pub fn time(&self) -> u64 {
        match self {
            Record::Hit(h) => h.time,
            Record::Traffic(t) => t.time,
        }
    }

    /// The record as flat key/value strings (CLS log contents), in a stable order.
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
    /// Calls `visit` with every present field, in the order [`Record::contents`] gives them
    /// (alphabetical), without building intermediate values: the hot path of the CLS encoder.
    pub fn visit(&self, visit: &mut dyn FnMut(&'static str, FieldValue<'_>)) {
        use FieldValue::{Ip, Number, Text};
        let mut fields: smallvec::SmallVec<[(&'static str, FieldValue<'_>); 40]> =
            smallvec::SmallVec::new();
        match self {
            Record::Hit(h) => {
                fields.extend([
                    ("record_type", Text(h.record_type.as_str())),
                    ("record_id", Text(&h.record_id)),
                    ("time", Number(h.time)),
                    ("start", Number(h.start)),
                    ("end", Number(h.end)),
                    ("account_id", Text(&h.account_id)),
                    ("eni", Text(&h.eni)),
                    ("direction", Text(h.direction)),
                    ("src_ip", Ip(h.src_ip)),
                    ("dst_ip", Ip(h.dst_ip)),
                    ("protocol", Number(u64::from(h.protocol))),
                    ("fl_action", Text(h.fl_action)),
                    ("scope", Text(h.scope)),
                    ("decision", Text(h.decision)),
                    ("snapshot_version", Text(&h.snapshot_version)),
                ]);
                let numbers = [
                    ("src_port", h.src_port.map(u64::from)),
                    ("dst_port", h.dst_port.map(u64::from)),
                    ("icmp_type", h.icmp_type.map(u64::from)),
                    ("icmp_code", h.icmp_code.map(u64::from)),
                    ("packets", h.packets),
                    ("bytes", h.bytes),
                ];
                fields.extend(
                    numbers
                        .into_iter()
                        .filter_map(|(k, v)| v.map(|v| (k, Number(v)))),
                );
                for (key, value) in [
                    ("src_vpc", &h.src_vpc),
                    ("src_subnet", &h.src_subnet),
                    ("src_instance", &h.src_instance),
                    ("dst_vpc", &h.dst_vpc),
                    ("dst_subnet", &h.dst_subnet),
                    ("dst_instance", &h.dst_instance),
                    ("deciding_rule_uuid", &h.deciding_rule_uuid),
                    ("indeterminate_rules", &h.indeterminate_rules),
                ] {
                    if let Some(value) = value {
                        fields.push((key, Text(value.as_str())));
                    }
                }
                if let Some(reason) = h.reason {
                    fields.push(("reason", Text(reason)));
                }
                if let Some(rule) = &h.rule {
                    fields.extend([
                        ("rule_uuid", Text(&rule.rule_uuid)),
                        ("rule_order", Number(rule.rule_order)),
                        ("rule_generation", Text(rule.rule_generation)),
                        ("rule_action", Text(rule.rule_action)),
                        ("rule_description", Text(&rule.rule_description)),
                        ("rule_source", Text(&rule.rule_source)),
                        ("rule_destination", Text(&rule.rule_destination)),
                        ("rule_service", Text(&rule.rule_service)),
                    ]);
                }
            }
            Record::Traffic(t) => {
                fields.extend([
                    ("record_type", Text(t.record_type.as_str())),
                    ("record_id", Text(&t.record_id)),
                    ("time", Number(t.time)),
                    ("scope", Text(t.scope)),
                    ("src_ip", Ip(t.src_ip)),
                    ("dst_ip", Ip(t.dst_ip)),
                    ("protocol", Number(u64::from(t.protocol))),
                    ("fl_action", Text(t.fl_action)),
                    ("flows", Number(t.flows)),
                    ("packets", Number(t.packets)),
                    ("bytes", Number(t.bytes)),
                    ("first_seen", Number(t.first_seen)),
                    ("last_seen", Number(t.last_seen)),
                    ("snapshot_version", Text(&t.snapshot_version)),
                ]);
                if let Some(port) = t.dst_port {
                    fields.push(("dst_port", Number(u64::from(port))));
                }
                if let Some(vpc) = &t.vpc {
                    fields.push(("vpc", Text(vpc.as_str())));
                }
            }
        }
        fields.sort_unstable_by_key(|(k, _)| *k);
        for (key, value) in fields {
            visit(key, value);
        }
    }
}

/// Builds a deterministic record id: 16 hex digits of SHA-256 over typed, length-prefixed parts
/// (raw bytes, no text formatting on the hot path).
#[derive(Clone)]
pub struct RecordId(Sha256);

impl RecordId {
    /// Starts an id for a record of kind `kind`.
    pub fn new(kind: &str) -> Self {
        RecordId(Sha256::new()).text(kind)
    }

    /// Adds a text part.
    pub fn text(mut self, text: &str) -> Self {
        self.0.update((text.len() as u64).to_le_bytes());
        self.0.update(text.as_bytes());
        self
    }

    /// Adds a number.
    pub fn number(mut self, number: u64) -> Self {
        self.0.update(number.to_le_bytes());
        self
    }

    /// Adds an address (family tag and octets).
    pub fn ip(mut self, ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => {
                self.0.update([4]);
                self.0.update(v4.octets());
            }
            IpAddr::V6(v6) => {
                self.0.update([6]);
                self.0.update(v6.octets());
            }
        }
        self
    }

    /// The id.
    pub fn finish(self) -> String {
        hex::encode(&self.0.finalize()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
