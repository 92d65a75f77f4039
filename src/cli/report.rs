//! The readable summary `make run` prints: what a batch of ESG flow-log records says.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde_json::Value;

fn text<'a>(record: &'a Value, key: &str) -> &'a str {
    record.get(key).and_then(Value::as_str).unwrap_or("")
}

fn number(record: &Value, key: &str) -> u64 {
    record.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn protocol(record: &Value) -> String {
    match number(record, "protocol") {
        6 => "TCP".into(),
        17 => "UDP".into(),
        1 => "ICMP".into(),
        58 => "ICMPv6".into(),
        other => format!("proto {other}"),
    }
}

fn flow(record: &Value) -> String {
    let port = record
        .get("dst_port")
        .and_then(Value::as_u64)
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!(
        "{} → {}{port}/{}",
        text(record, "src_ip"),
        text(record, "dst_ip"),
        protocol(record)
    )
}

/// Renders the report for `records` (JSON objects as the sinks write them).
pub fn render(records: &[Value]) -> String {
    let mut out = String::new();
    let of_type = |t: &'static str| records.iter().filter(move |r| text(r, "record_type") == t);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for record in records {
        *counts.entry(text(record, "record_type")).or_default() += 1;
    }
    let _ = writeln!(out, "== ESG flow-log records ==");
    for (kind, count) in &counts {
        let _ = writeln!(out, "  {kind:<20} {count}");
    }

    let mut rules: BTreeMap<(u64, &str), (usize, &str, BTreeSet<&str>)> = BTreeMap::new();
    for record in of_type("block_hit") {
        let entry = rules
            .entry((number(record, "rule_order"), text(record, "rule_uuid")))
            .or_insert((0, text(record, "rule_description"), BTreeSet::new()));
        entry.0 += 1;
        entry.2.insert(text(record, "src_ip"));
    }
    let mut rules: Vec<_> = rules.into_iter().collect();
    rules.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    let _ = writeln!(out, "\n== Top blocking rules ==");
    for ((order, uuid), (hits, description, sources)) in rules.iter().take(10) {
        let _ = writeln!(
            out,
            "  {hits:>5} hits  rule {uuid} (order {order}) \"{description}\"  from {} sources",
            sources.len()
        );
    }

    let mut flows: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for record in of_type("block_hit") {
        let entry = flows.entry(flow(record)).or_insert((
            0,
            format!(
                "rule {} \"{}\"",
                text(record, "rule_uuid"),
                text(record, "rule_description")
            ),
        ));
        entry.0 += 1;
    }
    let mut flows: Vec<_> = flows.into_iter().collect();
    flows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    let _ = writeln!(out, "\n== Top blocked flows ==");
    for (flow, (count, rule)) in flows.iter().take(10) {
        let _ = writeln!(out, "  {count:>5}  {flow:<42} blocked by {rule}");
    }

    let mut observed: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for record in of_type("observe_hit") {
        *observed
            .entry((text(record, "rule_uuid"), text(record, "rule_description")))
            .or_default() += 1;
    }
    let _ = writeln!(
        out,
        "\n== Observe rules (dry run) that would have matched =="
    );
    for ((uuid, description), count) in &observed {
        let _ = writeln!(out, "  {count:>5} hits  rule {uuid} \"{description}\"");
    }

    let mut unattributed: BTreeMap<String, usize> = BTreeMap::new();
    for record in of_type("unattributed_block") {
        let why = match text(record, "reason") {
            "indeterminate_rule" => format!(
                "ESG rule {} \"{}\" cannot be resolved and may have blocked it",
                text(record, "rule_uuid"),
                text(record, "rule_description")
            ),
            "esg_allows" => format!(
                "the ESG allows it (rule {}): the network ACL or another security group rejected it",
                text(record, "rule_uuid")
            ),
            "no_esg_rule" => {
                "no ESG rule decides: the network ACL or another security group rejected it"
                    .to_string()
            }
            "reply" => "a reply (not judged): the network ACL or another security group rejected it"
                .to_string(),
            other => other.to_string(),
        };
        *unattributed.entry(why).or_default() += 1;
    }
    let mut drift: BTreeMap<String, usize> = BTreeMap::new();
    for record in of_type("snapshot_drift") {
        *drift
            .entry(format!(
                "rule {} \"{}\"",
                text(record, "rule_uuid"),
                text(record, "rule_description")
            ))
            .or_default() += 1;
    }
    let _ = writeln!(out, "\n== Rejected without an ESG drop rule deciding it ==");
    for (reason, count) in &unattributed {
        let _ = writeln!(out, "  {count:>5}  {reason}");
    }
    let _ = writeln!(
        out,
        "\n== Accepted although the snapshot blocks them (drift: unpublished or stale rules) =="
    );
    for (rule, count) in &drift {
        let _ = writeln!(out, "  {count:>5}  {rule}");
    }

    let mut scopes: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for record in of_type("traffic") {
        let entry = scopes.entry(text(record, "scope")).or_default();
        entry.0 += number(record, "flows");
        entry.1 += number(record, "packets");
        entry.2 += number(record, "bytes");
    }
    let _ = writeln!(out, "\n== Traffic by scope ==");
    let _ = writeln!(
        out,
        "  {:<14} {:>8} {:>10} {:>12}",
        "scope", "flows", "packets", "bytes"
    );
    for (scope, (flows, packets, bytes)) in &scopes {
        let _ = writeln!(out, "  {scope:<14} {flows:>8} {packets:>10} {bytes:>12}");
    }
    out
}
