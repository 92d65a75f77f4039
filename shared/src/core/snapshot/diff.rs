//! What changed between two snapshots, rule by rule: added, removed, modified (field-level before
//! and after) and reordered.
//!
//! Rules are matched by generation and uuid. Positions shift whenever a rule is inserted or
//! deleted above others, so "reordered" is not "its `OrderIndex` changed": it is computed from the
//! relative order of the rules present in both snapshots. The rules on a longest increasing
//! subsequence of new positions stayed in order; every other common rule moved, which is the
//! smallest set of moves that explains the new order.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{Generation, Rule, Snapshot};
use crate::core::records::{RecordId, RecordType, RuleChangeRecord};

/// How a rule changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Only in the new snapshot.
    Added,
    /// Only in the old snapshot.
    Removed,
    /// In both, with different fields.
    Modified,
    /// In both, same fields, moved relative to the others.
    Reordered,
}

impl Change {
    /// The record's `change` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Modified => "modified",
            Change::Reordered => "reordered",
        }
    }
}

/// One rule's change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RuleChange {
    /// How.
    pub change: Change,
    /// The rule as it is now (as it was, for a removed rule).
    pub rule: Rule,
    /// Its position before (for rules in both snapshots).
    pub previous_order: Option<u64>,
    /// Changed fields: name → (before, after).
    pub fields: BTreeMap<&'static str, (Value, Value)>,
    /// Whether it also moved relative to the other rules (for modified rules).
    pub moved: bool,
}

/// The fields compared, as the record names them.
fn fields(rule: &Rule) -> [(&'static str, Value); 8] {
    [
        ("action", json!(rule.action.as_str())),
        ("enabled", json!(rule.enabled)),
        (
            "source",
            json!(format!(
                "{} {}",
                rule.source.kind.as_str(),
                rule.source.content
            )),
        ),
        (
            "destination",
            json!(format!(
                "{} {}",
                rule.destination.kind.as_str(),
                rule.destination.content
            )),
        ),
        ("protocol", json!(rule.protocol)),
        ("port", json!(rule.port)),
        ("service_template", json!(rule.service_template)),
        ("description", json!(rule.description)),
    ]
}

fn whole(rule: &Rule) -> Value {
    let mut object: Map<String, Value> = fields(rule)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    object.insert("order".into(), json!(rule.order));
    Value::Object(object)
}

/// Positions (into `items`) on one longest strictly increasing subsequence.
fn longest_increasing(items: &[usize]) -> Vec<bool> {
    let mut tails: Vec<usize> = Vec::new(); // index into items of the smallest tail per length
    let mut previous = vec![usize::MAX; items.len()];
    for (i, &value) in items.iter().enumerate() {
        let length = tails.partition_point(|&t| items[t] < value);
        if length > 0 {
            previous[i] = tails[length - 1];
        }
        if length == tails.len() {
            tails.push(i);
        } else {
            tails[length] = i;
        }
    }
    let mut keep = vec![false; items.len()];
    let mut at = tails.last().copied();
    while let Some(i) = at {
        keep[i] = true;
        at = (previous[i] != usize::MAX).then(|| previous[i]);
    }
    keep
}

/// The changes from `before` to `after`, in the new evaluation order (removed rules last).
pub(crate) fn diff(before: &Snapshot, after: &Snapshot) -> Vec<RuleChange> {
    type Key<'a> = (Generation, &'a str);
    let old: BTreeMap<Key<'_>, (usize, &Rule)> = before
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.generation, r.uuid.as_str()), (i, r)))
        .collect();
    let new_keys: BTreeMap<Key<'_>, usize> = after
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.generation, r.uuid.as_str()), i))
        .collect();
    // Common rules in old order, with their new positions.
    let mut common: Vec<(usize, usize)> = before
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            new_keys
                .get(&(r.generation, r.uuid.as_str()))
                .map(|&j| (i, j))
        })
        .collect();
    common.sort_unstable();
    let kept = longest_increasing(&common.iter().map(|&(_, j)| j).collect::<Vec<_>>());
    let moved: std::collections::BTreeSet<usize> = common
        .iter()
        .zip(&kept)
        .filter(|(_, &k)| !k)
        .map(|(&(_, j), _)| j)
        .collect();

    let mut changes = Vec::new();
    for (j, rule) in after.rules.iter().enumerate() {
        match old.get(&(rule.generation, rule.uuid.as_str())) {
            None => changes.push(RuleChange {
                change: Change::Added,
                rule: rule.clone(),
                previous_order: None,
                fields: BTreeMap::new(),
                moved: false,
            }),
            Some((_, previous)) => {
                let changed: BTreeMap<&'static str, (Value, Value)> = fields(previous)
                    .into_iter()
                    .zip(fields(rule))
                    .filter(|((_, a), (_, b))| a != b)
                    .map(|((name, a), (_, b))| (name, (a, b)))
                    .collect();
                let is_moved = moved.contains(&j);
                let change = if !changed.is_empty() {
                    Change::Modified
                } else if is_moved {
                    Change::Reordered
                } else {
                    continue;
                };
                changes.push(RuleChange {
                    change,
                    rule: rule.clone(),
                    previous_order: Some(previous.order),
                    fields: changed,
                    moved: is_moved,
                });
            }
        }
    }
    for rule in &before.rules {
        if !new_keys.contains_key(&(rule.generation, rule.uuid.as_str())) {
            changes.push(RuleChange {
                change: Change::Removed,
                rule: rule.clone(),
                previous_order: None,
                fields: BTreeMap::new(),
                moved: false,
            });
        }
    }
    changes
}

/// The changes as `rule_change` records, stamped with the new snapshot's time.
pub(crate) fn change_records(
    before: &Snapshot,
    after: &Snapshot,
    time: u64,
) -> Vec<RuleChangeRecord> {
    diff(before, after)
        .into_iter()
        .map(|c| {
            let (fields, before_value, after_value) = match c.change {
                Change::Added => (None, None, Some(whole(&c.rule).to_string())),
                Change::Removed => (None, Some(whole(&c.rule).to_string()), None),
                Change::Reordered => (
                    Some("order".to_string()),
                    Some(json!({"order": c.previous_order}).to_string()),
                    Some(json!({"order": c.rule.order}).to_string()),
                ),
                Change::Modified => {
                    let mut names: Vec<&str> = c.fields.keys().copied().collect();
                    let mut old: Map<String, Value> = c
                        .fields
                        .iter()
                        .map(|(k, (a, _))| (k.to_string(), a.clone()))
                        .collect();
                    let mut new: Map<String, Value> = c
                        .fields
                        .iter()
                        .map(|(k, (_, b))| (k.to_string(), b.clone()))
                        .collect();
                    if c.moved {
                        names.push("order");
                        old.insert("order".into(), json!(c.previous_order));
                        new.insert("order".into(), json!(c.rule.order));
                    }
                    (
                        Some(names.join(",")),
                        Some(Value::Object(old).to_string()),
                        Some(Value::Object(new).to_string()),
                    )
                }
            };
            let generation = c.rule.generation;
            RuleChangeRecord {
                record_type: RecordType::RuleChange,
                record_id: RecordId::new("rule_change")
                    .text(c.change.as_str())
                    .text(generation.as_str())
                    .text(&c.rule.uuid)
                    .text(&before.version)
                    .text(&after.version)
                    .finish(),
                time,
                change: c.change.as_str(),
                rule_uuid: c.rule.uuid.clone(),
                rule_generation: generation,
                rule_order: c.rule.order,
                previous_order: c.previous_order.filter(|&p| p != c.rule.order),
                rule_action: c.rule.action,
                rule_description: c.rule.description.clone(),
                fields,
                before: before_value,
                after: after_value,
                from_version: before.version.clone(),
                snapshot_version: after.version.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::snapshot::{Endpoint, EndpointKind, RuleAction};

    fn rule(uuid: &str, order: u64, port: &str) -> Rule {
        Rule {
            uuid: uuid.into(),
            order,
            generation: Generation::New,
            action: RuleAction::Drop,
            enabled: true,
            source: Endpoint {
                kind: EndpointKind::Net,
                content: "10.0.0.0/8".into(),
                resolved: Vec::new(),
            },
            destination: Endpoint {
                kind: EndpointKind::Net,
                content: "0.0.0.0/0".into(),
                resolved: Vec::new(),
            },
            protocol: "TCP".into(),
            port: port.into(),
            service_template: None,
            description: format!("rule {uuid}"),
            attributes: Default::default(),
        }
    }

    fn snapshot(rules: Vec<Rule>) -> Snapshot {
        let mut s = Snapshot {
            rules,
            ..Snapshot::default()
        };
        s.seal();
        s
    }

    #[test]
    fn an_insertion_shifts_positions_without_reordering_anything() {
        let before = snapshot(vec![
            rule("a", 1, "22"),
            rule("b", 2, "80"),
            rule("c", 3, "443"),
        ]);
        let after = snapshot(vec![
            rule("a", 1, "22"),
            rule("x", 2, "8080"),
            rule("b", 3, "80"),
            rule("c", 4, "443"),
        ]);
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].change, changes[0].rule.uuid.as_str()),
            (Change::Added, "x")
        );
    }

    #[test]
    fn added_removed_modified_and_reordered() {
        let before = snapshot(vec![
            rule("a", 1, "22"),
            rule("b", 2, "80"),
            rule("c", 3, "443"),
            rule("d", 4, "53"),
        ]);
        let mut modified = rule("b", 3, "81");
        modified.action = RuleAction::Accept;
        let after = snapshot(vec![
            rule("c", 1, "443"),
            rule("a", 2, "22"),
            modified,
            rule("e", 4, "25"),
        ]);
        let records = change_records(&before, &after, 100);
        let summary: Vec<(&str, &str, Option<&str>)> = records
            .iter()
            .map(|r| (r.change, r.rule_uuid.as_str(), r.fields.as_deref()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("reordered", "c", Some("order")),
                ("modified", "b", Some("action,port")),
                ("added", "e", None),
                ("removed", "d", None),
            ]
        );
        let b = &records[1];
        assert_eq!(
            b.before.as_deref(),
            Some(r#"{"action":"drop","port":"80"}"#)
        );
        assert_eq!(
            b.after.as_deref(),
            Some(r#"{"action":"accept","port":"81"}"#)
        );
        assert_eq!(b.previous_order, Some(2));
        let again = change_records(&before, &after, 100);
        assert_eq!(records, again, "deterministic, ids included");
        assert!(change_records(&after, &after, 100).is_empty());
    }
}
