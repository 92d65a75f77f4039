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

/// A deterministic id: 16 hex digits of SHA-256 over the parts, separated by `|`.
pub fn record_id(parts: &[&dyn std::fmt::Display]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.to_string().as_bytes());
        hasher.update(b"|");
    }
    hex::encode(&hasher.finalize()[..8])
}
