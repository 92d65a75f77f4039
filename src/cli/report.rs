//! The readable summary `make run` prints: what a batch of ESG flow-log records says.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use esgflow::adapters::sqlite::RecordLine;

fn text<'a>(record: &RecordLine<'a>, key: &str) -> Cow<'a, str> {
    record.str(key).unwrap_or_default()
}

fn number(record: &RecordLine<'_>, key: &str) -> u64 {
    record.u64(key).unwrap_or(0)
}

fn protocol(record: &RecordLine<'_>) -> String {
    match number(record, "protocol") {
        6 => "TCP".into(),
        17 => "UDP".into(),
        1 => "ICMP".into(),
        58 => "ICMPv6".into(),
        other => format!("proto {other}"),
    }
}

fn flow(record: &RecordLine<'_>) -> String {
    let port = record
        .u64("dst_port")
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!(
        "{} → {}{port}/{}",
        text(record, "src_ip"),
        text(record, "dst_ip"),
        protocol(record)
    )
}

/// `map`'s value for `key`, a new one made when it has none (the key copied only then: most
/// records add to a count that exists).
fn counter<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("just made")
}

/// What the report sums, record by record: a day of records is read once and never held.
#[derive(Default)]
pub struct Report {
    counts: BTreeMap<String, usize>,
    /// (order, uuid) → (block hits, description, distinct sources).
    rules: BTreeMap<(u64, String), (usize, String, BTreeSet<String>)>,
    /// flow → (block hits, the rule).
    flows: BTreeMap<String, (usize, String)>,
    observed: BTreeMap<(String, String), usize>,
    unattributed: BTreeMap<String, usize>,
    drift: BTreeMap<String, usize>,
    scopes: BTreeMap<String, (u64, u64, u64)>,
}

impl Report {
    /// Counts one record (a JSON object as the sinks write it).
    pub fn add(&mut self, record: &RecordLine<'_>) {
        let kind = text(record, "record_type");
        *counter(&mut self.counts, &kind) += 1;
        let rule = || {
            format!(
                "rule {} \"{}\"",
                text(record, "rule_uuid"),
                text(record, "rule_description")
            )
        };
        match kind.as_ref() {
            "block_hit" => {
                let entry = self
                    .rules
                    .entry((
                        number(record, "rule_order"),
                        text(record, "rule_uuid").to_string(),
                    ))
                    .or_insert_with(|| {
                        (
                            0,
                            text(record, "rule_description").to_string(),
                            BTreeSet::new(),
                        )
                    });
                entry.0 += 1;
                entry.2.insert(text(record, "src_ip").to_string());
                self.flows
                    .entry(flow(record))
                    .or_insert_with(|| (0, rule()))
                    .0 += 1;
            }
            "observe_hit" => {
                *self
                    .observed
                    .entry((
                        text(record, "rule_uuid").to_string(),
                        text(record, "rule_description").to_string(),
                    ))
                    .or_default() += 1;
            }
            "unattributed_block" => {
                let why = match text(record, "reason").as_ref() {
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
                *self.unattributed.entry(why).or_default() += 1;
            }
            "snapshot_drift" => *self.drift.entry(rule()).or_default() += 1,
            "traffic" => {
                let entry = counter(&mut self.scopes, &text(record, "scope"));
                entry.0 += number(record, "flows");
                entry.1 += number(record, "packets");
                entry.2 += number(record, "bytes");
            }
            _ => {}
        }
    }

    /// The report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "== ESG flow-log records ==");
        for (kind, count) in &self.counts {
            let _ = writeln!(out, "  {kind:<20} {count}");
        }
        let mut rules: Vec<_> = self.rules.iter().collect();
        rules.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        let _ = writeln!(out, "\n== Top blocking rules ==");
        for ((order, uuid), (hits, description, sources)) in rules.iter().take(10) {
            let _ = writeln!(
                out,
                "  {hits:>5} hits  rule {uuid} (order {order}) \"{description}\"  from {} sources",
                sources.len()
            );
        }
        let mut flows: Vec<_> = self.flows.iter().collect();
        flows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        let _ = writeln!(out, "\n== Top blocked flows ==");
        for (flow, (count, rule)) in flows.iter().take(10) {
            let _ = writeln!(out, "  {count:>5}  {flow:<42} blocked by {rule}");
        }
        let _ = writeln!(
            out,
            "\n== Observe rules (dry run) that would have matched =="
        );
        for ((uuid, description), count) in &self.observed {
            let _ = writeln!(out, "  {count:>5} hits  rule {uuid} \"{description}\"");
        }
        let _ = writeln!(out, "\n== Rejected without an ESG drop rule deciding it ==");
        for (reason, count) in &self.unattributed {
            let _ = writeln!(out, "  {count:>5}  {reason}");
        }
        let _ = writeln!(
            out,
            "\n== Accepted although the snapshot blocks them (drift: unpublished or stale rules) =="
        );
        for (rule, count) in &self.drift {
            let _ = writeln!(out, "  {count:>5}  {rule}");
        }
        let _ = writeln!(out, "\n== Traffic by scope ==");
        let _ = writeln!(
            out,
            "  {:<14} {:>8} {:>10} {:>12}",
            "scope", "flows", "packets", "bytes"
        );
        for (scope, (flows, packets, bytes)) in &self.scopes {
            let _ = writeln!(out, "  {scope:<14} {flows:>8} {packets:>10} {bytes:>12}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each record type is counted, and traffic summed by scope, however many records add to
    /// one count.
    #[test]
    fn records_are_counted_by_type_and_traffic_summed_by_scope() {
        let mut report = Report::default();
        for line in [
            r#"{"record_type":"traffic","scope":"inter_subnet","flows":1,"packets":2,"bytes":300}"#,
            r#"{"record_type":"traffic","scope":"inter_subnet","flows":2,"packets":3,"bytes":400}"#,
            r#"{"record_type":"traffic","scope":"inbound","flows":5,"packets":6,"bytes":7}"#,
            r#"{"record_type":"observe_hit","rule_uuid":"9","rule_description":"watch"}"#,
        ] {
            report.add(&RecordLine::parse(line).unwrap());
        }
        let out = report.render();
        for expected in [
            "  observe_hit          1\n",
            "  traffic              3\n",
            "  inbound               5          6            7\n",
            "  inter_subnet          3          5          700\n",
        ] {
            assert!(out.contains(expected), "{expected:?} in\n{out}");
        }
    }
}
