//! Building a snapshot from raw API responses, as `tccli` exports them (the response object, with
//! or without the `{"Response": …}` wrapper). Each document's kind is recognised by its keys, so a
//! directory of exports can hold any mix of files and pages; pages of one kind are merged, and an
//! item seen twice (overlapping pages) is kept once. Unknown fields are ignored.
//!
//! Recognised documents (cfw: <https://www.tencentcloud.com/document/api/1160/51369>; vpc: tccli `vpc/v20170312/api.json`):
//! `DescribeEnterpriseSecurityGroupRule` (`Rules[]`, string fields), `DescribeEnterpriseSecurityGroupRuleList`
//! (`Data[]` with `RuleUuid`, integer type codes, `Strategy`, resolved IP lists), the old ESG's
//! `DescribeSecurityGroupList` (`Data[]` with `Direction`), `DescribeAddressTemplates`,
//! `DescribeAddressTemplateGroups`, `DescribeServiceTemplates`, `DescribeServiceTemplateGroups`,
//! cfw `DescribeAddressTemplateList` (`Data[]` with `IpString`), `DescribeVpcs`, `DescribeSubnets`,
//! `DescribeNetworkInterfaces`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::Deserializer;
use serde::Deserialize;
use serde_json::Value;

use crate::core::text::truncate_utf8;

use super::values::{AddressSet, PortSet, Protocol, Service, DOCUMENTED_PORT_ITEMS};
use super::{
    AddressTemplate, Endpoint, EndpointKind, Eni, Generation, Instance, Rule, RuleAction,
    RuleAttributes, ServiceTemplate, Snapshot, Subnet, TemplateGroup, Vpc,
};

mod fields;
mod responses;

use fields::*;
use responses::*;

/// Building a snapshot failed; nothing is written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not JSON, or not a document of a known kind.
    #[error("{document}: {message}")]
    Document {
        /// The file (or document name).
        document: String,
        /// What is wrong.
        message: String,
    },
    /// No document held any rule.
    #[error("no ESG rules found in {0}")]
    NoRules(String),
    /// Most rules could not be read: the listings are not what the API defines, and a snapshot
    /// of indeterminate rules would judge nothing.
    #[error("{unreadable} of {rules} rules cannot be read (the first: {first}): the rule listing is not what the API defines")]
    Unreadable {
        /// Rules with a field that cannot be read.
        unreadable: usize,
        /// Rules in the listings.
        rules: usize,
        /// The first of them, with why.
        first: String,
    },
}

/// Reads every `*.json` file of `dir` (sorted by name) and builds the snapshot.
pub fn build_from_dir(dir: &Path, taken_at: &str) -> Result<Snapshot, ImportError> {
    let io = |source, path: &Path| ImportError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(e, dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut documents = Vec::with_capacity(paths.len());
    for path in &paths {
        let bytes = std::fs::read(path).map_err(|e| io(e, path))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|err| ImportError::Document {
            document: path.display().to_string(),
            message: format!("not valid JSON: {err}"),
        })?;
        documents.push((path.display().to_string(), value));
    }
    let snapshot = build_from_documents(&documents, taken_at)?;
    if snapshot.rules.is_empty() {
        return Err(ImportError::NoRules(dir.display().to_string()));
    }
    Ok(snapshot)
}

/// Builds a snapshot from named API response documents.
pub fn build_from_documents(
    documents: &[(String, Value)],
    taken_at: &str,
) -> Result<Snapshot, ImportError> {
    import_documents(documents, taken_at).map(|imported| imported.snapshot)
}

/// A snapshot built from documents, with the rules whose copies disagreed.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The snapshot (its warnings name every item that could not be read).
    pub snapshot: Snapshot,
    /// Ids of rules that came in more than one differing copy (a listing that changed while
    /// it was paged): a live build reads the APIs once more before keeping one of them.
    pub conflicting: Vec<String>,
}

/// Builds a snapshot from named API response documents. Nothing inside a recognised document
/// makes the build fail: a rule field that cannot be read makes that rule indeterminate, a
/// template entry or topology item that cannot be read is skipped, each with a warning naming
/// it. Only an unreadable or unrecognised document is an error.
pub fn import_documents(
    documents: &[(String, Value)],
    taken_at: &str,
) -> Result<Imported, ImportError> {
    import_each(
        documents.iter().map(|(name, value)| (name, value)),
        taken_at,
    )
}

/// [`import_documents`] over documents handed over one at a time, each dropped once read, so
/// a large account is never held parsed all at once (the live sync).
pub fn import_each<N: AsRef<str>, V: std::borrow::Borrow<Value>>(
    documents: impl IntoIterator<Item = (N, V)>,
    taken_at: &str,
) -> Result<Imported, ImportError> {
    let mut builder = Builder::default();
    for (name, value) in documents {
        let value = value.borrow();
        let body = value.get("Response").unwrap_or(value);
        builder.add(name.as_ref(), body)?;
    }
    Ok(builder.finish(taken_at))
}

/// Refuses a snapshot whose rules are mostly unreadable: the listings were not what the API
/// defines (every field null, say), and publishing it would replace a good snapshot with one
/// that judges nothing. A few unreadable rules among readable ones stay, indeterminate.
pub fn refuse_mostly_unreadable(snapshot: &Snapshot) -> Result<(), ImportError> {
    let rules = &snapshot.rules;
    let mut unreadable = rules.iter().filter(|r| !r.attributes.unreadable.is_empty());
    let Some(first) = unreadable.clone().next() else {
        return Ok(());
    };
    let count = unreadable.by_ref().count();
    if count * 2 <= rules.len() {
        return Ok(());
    }
    Err(ImportError::Unreadable {
        unreadable: count,
        rules: rules.len(),
        first: format!("{} {}", first.uuid, first.doubt().unwrap_or_default()),
    })
}

/// The list keys of the recognised documents.
const LIST_KEYS: &[&str] = &[
    "Rules",
    "Data",
    "AddressTemplateSet",
    "AddressTemplateGroupSet",
    "ServiceTemplateSet",
    "ServiceTemplateGroupSet",
    "VpcSet",
    "SubnetSet",
    "NetworkInterfaceSet",
    "InstanceSet",
];

/// Addresses the rule-list API resolved for a rule's source and destination.
type Resolved = (Vec<String>, Vec<String>);

/// A rule's identity: its ESG, its region (old ESG) and its id.
type RuleKey = (Generation, Option<String>, String);

#[derive(Default)]
struct Builder {
    /// Copies from the rule API (`Rules[]`).
    rules: BTreeMap<RuleKey, Vec<Rule>>,
    /// Copies from the rule-list APIs (`Data[]`), with the addresses they resolved.
    listed: BTreeMap<RuleKey, Vec<(Rule, Resolved)>>,
    snapshot: Snapshot,
}

fn document_error(document: &str, message: impl Into<String>) -> ImportError {
    ImportError::Document {
        document: document.to_string(),
        message: message.into(),
    }
}

/// The items of `value[key]`, each read on its own: an item that does not read is skipped
/// with a warning naming it, and the others are kept.
fn items<'v, T: Deserialize<'v>>(
    document: &str,
    value: &'v Value,
    key: &str,
    warnings: &mut Vec<String>,
) -> Vec<(T, &'v Value)> {
    let Some(list) = value.get(key).and_then(Value::as_array) else {
        if value.get(key).is_some_and(|v| !v.is_null()) {
            warnings.push(format!("{document}: {key} is not a list; skipped"));
        }
        return Vec::new();
    };
    let mut read = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        match serde_path_to_error::deserialize::<_, T>(item) {
            Ok(parsed) => read.push((parsed, item)),
            Err(err) => warnings.push(format!(
                "{document}: {key}[{i}]{}: {}; the item is skipped",
                path_suffix(&err.path().to_string()),
                err.inner()
            )),
        }
    }
    read
}

fn path_suffix(path: &str) -> String {
    if path == "." {
        String::new()
    } else if path.starts_with('[') {
        path.to_string()
    } else {
        format!(".{path}")
    }
}

impl Builder {
    fn add(&mut self, name: &str, body: &Value) -> Result<(), ImportError> {
        let has = |key: &str| body.get(key).is_some();
        let first_data = body
            .get("Data")
            .and_then(|d| d.as_array())
            .and_then(|a| a.first());
        let data_has = |key: &str| first_data.is_some_and(|item| item.get(key).is_some());
        let warnings = &mut self.snapshot.warnings;
        let mut cut = Vec::new();
        if has("Rules") {
            for (raw, item) in items::<NewRule>(name, body, "Rules", warnings) {
                let rule = raw.into_rule(item, &mut cut);
                let key = (rule.generation, None, rule.uuid.clone());
                self.rules.entry(key).or_default().push(rule);
            }
        } else if has("Data") && data_has("IpString") {
            for (raw, _) in items::<CfwTemplate>(name, body, "Data", warnings) {
                let addresses = raw
                    .ip_string
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                self.snapshot.address_templates.insert(
                    raw.uuid,
                    AddressTemplate {
                        name: short_name(raw.name),
                        addresses,
                    },
                );
            }
        } else if has("Data")
            && (data_has("RuleUuid")
                || data_has("SourceId")
                || data_has("Direction")
                || has("AllTotal"))
        {
            let generation = if data_has("Direction") {
                Generation::Old
            } else {
                Generation::New
            };
            // The old ESG's answer does not name its region; the live builder adds the `Area` it
            // asked for.
            let region = (generation == Generation::Old)
                .then(|| body.get("Area").and_then(Value::as_str))
                .flatten()
                .map(str::to_string);
            for (raw, item) in items::<ListRule>(name, body, "Data", warnings) {
                let (mut rule, resolved) = raw.into_rule(item, generation, &mut cut);
                rule.attributes.region = region.clone();
                let key = (generation, region.clone(), rule.uuid.clone());
                self.listed.entry(key).or_default().push((rule, resolved));
            }
        } else if has("AddressTemplateSet") {
            for (raw, _) in items::<VpcAddressTemplate>(name, body, "AddressTemplateSet", warnings)
            {
                let mut addresses = raw.address_set;
                addresses.extend(raw.address_extra_set.into_iter().map(|e| e.address));
                self.snapshot.address_templates.insert(
                    raw.address_template_id,
                    AddressTemplate {
                        name: short_name(raw.address_template_name),
                        addresses,
                    },
                );
            }
        } else if has("AddressTemplateGroupSet") {
            for (raw, _) in
                items::<VpcAddressTemplateGroup>(name, body, "AddressTemplateGroupSet", warnings)
            {
                let mut members = raw.address_template_id_set;
                members.extend(
                    raw.address_template_set
                        .into_iter()
                        .map(|t| t.address_template_id),
                );
                self.snapshot.address_template_groups.insert(
                    raw.address_template_group_id,
                    TemplateGroup {
                        name: short_name(raw.address_template_group_name),
                        members,
                    },
                );
            }
        } else if has("ServiceTemplateSet") {
            for (raw, _) in items::<VpcServiceTemplate>(name, body, "ServiceTemplateSet", warnings)
            {
                let mut entries = raw.service_set;
                entries.extend(raw.service_extra_set.into_iter().map(|e| e.service));
                let (services, skipped): (Vec<String>, Vec<String>) = entries
                    .into_iter()
                    .partition(|entry| Service::parse(entry).is_ok());
                for entry in &skipped {
                    let why = Service::parse(entry).err().unwrap_or_default();
                    warnings.push(format!(
                        "{name}: service template {}: entry {entry:?} skipped ({why}); rules using the template are indeterminate",
                        raw.service_template_id
                    ));
                }
                self.snapshot.service_templates.insert(
                    raw.service_template_id,
                    ServiceTemplate {
                        name: short_name(raw.service_template_name),
                        services,
                        skipped,
                    },
                );
            }
        } else if has("ServiceTemplateGroupSet") {
            for (raw, _) in
                items::<VpcServiceTemplateGroup>(name, body, "ServiceTemplateGroupSet", warnings)
            {
                let mut members = raw.service_template_id_set;
                members.extend(
                    raw.service_template_set
                        .into_iter()
                        .map(|t| t.service_template_id),
                );
                self.snapshot.service_template_groups.insert(
                    raw.service_template_group_id,
                    TemplateGroup {
                        name: short_name(raw.service_template_group_name),
                        members,
                    },
                );
            }
        } else if has("VpcSet") {
            for (raw, _) in items::<RawVpc>(name, body, "VpcSet", warnings) {
                let mut cidrs = vec![raw.cidr_block];
                cidrs.extend(raw.assistant_cidr_set.into_iter().map(|a| a.cidr_block));
                cidrs.extend(raw.ipv6_cidr_block.filter(|c| !c.is_empty()));
                self.snapshot.vpcs.retain(|v| v.id != raw.vpc_id);
                self.snapshot.vpcs.push(Vpc {
                    id: raw.vpc_id,
                    name: short_name(raw.vpc_name),
                    cidrs,
                });
            }
        } else if has("SubnetSet") {
            for (raw, _) in items::<RawSubnet>(name, body, "SubnetSet", warnings) {
                let mut cidrs = vec![raw.cidr_block];
                cidrs.extend(raw.ipv6_cidr_block.filter(|c| !c.is_empty()));
                self.snapshot.subnets.retain(|s| s.id != raw.subnet_id);
                self.snapshot.subnets.push(Subnet {
                    id: raw.subnet_id,
                    vpc_id: raw.vpc_id,
                    name: short_name(raw.subnet_name),
                    cidrs,
                });
            }
        } else if has("NetworkInterfaceSet") {
            for (raw, _) in items::<RawEni>(name, body, "NetworkInterfaceSet", warnings) {
                let mut ips: Vec<String> = raw
                    .private_ip_address_set
                    .into_iter()
                    .map(|p| p.private_ip_address)
                    .collect();
                ips.extend(raw.ipv6_address_set.into_iter().map(|a| a.address));
                let instance_id = raw
                    .attachment
                    .map(|a| a.instance_id)
                    .filter(|i| !i.is_empty());
                self.snapshot
                    .enis
                    .retain(|e| e.id != raw.network_interface_id);
                self.snapshot.enis.push(Eni {
                    id: raw.network_interface_id,
                    name: short_name(raw.network_interface_name.unwrap_or_default()),
                    vpc_id: raw.vpc_id,
                    subnet_id: raw.subnet_id,
                    instance_id,
                    ips,
                });
            }
        } else if has("InstanceSet") {
            for (raw, _) in items::<RawInstance>(name, body, "InstanceSet", warnings) {
                self.snapshot.instances.retain(|i| i.id != raw.instance_id);
                self.snapshot.instances.push(Instance {
                    id: raw.instance_id,
                    name: short_name(raw.instance_name.unwrap_or_default()),
                });
            }
        } else if LIST_KEYS.iter().any(|key| {
            body.get(*key)
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
        }) {
            // An empty page (the last page of a listing, or an account without old-ESG rules):
            // nothing to add.
        } else {
            let keys: Vec<&String> = body
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            return Err(document_error(
                name,
                format!("not a recognised API response (top-level keys: {keys:?})"),
            ));
        }
        self.snapshot.warnings.extend(cut);
        Ok(())
    }

    /// One rule per identity. Identical copies (overlapping pages) are one; the rule API's copy
    /// is the rule, the rule-list copies add the addresses they resolved and the attributes
    /// only they carry. Differing copies of one source are reported, and the one whose JSON
    /// sorts first is kept, so the choice does not depend on the order of the answers.
    fn finish(self, taken_at: &str) -> Imported {
        let Builder {
            rules,
            mut listed,
            mut snapshot,
        } = self;
        let mut conflicting = Vec::new();
        let mut merged = Vec::new();
        let keys: std::collections::BTreeSet<RuleKey> =
            rules.keys().chain(listed.keys()).cloned().collect();
        let mut rules = rules;
        for key in keys {
            let listed_copies = listed.remove(&key).unwrap_or_default();
            let mut resolved: Resolved = (Vec::new(), Vec::new());
            let mut listed_rules = Vec::with_capacity(listed_copies.len());
            for (rule, (source, destination)) in listed_copies {
                resolved.0.extend(source);
                resolved.1.extend(destination);
                listed_rules.push(rule);
            }
            let listed_rule = one_copy(listed_rules, &mut conflicting);
            let mut rule = match (
                one_copy(rules.remove(&key).unwrap_or_default(), &mut conflicting),
                listed_rule.as_ref(),
            ) {
                (Some(mut rule), Some(listed)) => {
                    let (ours, theirs) = (&mut rule.attributes, &listed.attributes);
                    ours.partition = ours.partition.or(theirs.partition);
                    ours.delayed |= theirs.delayed;
                    if ours.scope.is_empty() {
                        ours.scope = theirs.scope.clone();
                    }
                    rule
                }
                (Some(rule), None) => rule,
                (None, Some(listed)) => listed.clone(),
                (None, None) => continue,
            };
            rule.source.resolved.extend(resolved.0);
            rule.destination.resolved.extend(resolved.1);
            merged.push(rule);
        }
        conflicting.sort();
        conflicting.dedup();
        for id in &conflicting {
            snapshot.warnings.push(format!(
                "rule {id}: the answers held differing copies of it (the rules changed while they were read); the copy whose JSON sorts first is kept"
            ));
        }
        snapshot.rules = merged;
        snapshot.taken_at = taken_at.to_string();
        let warnings = rule_warnings(&snapshot);
        snapshot.warnings.extend(warnings);
        snapshot.seal();
        Imported {
            snapshot,
            conflicting,
        }
    }
}

/// One rule out of its copies: identical copies are one; of differing copies the one whose
/// JSON sorts first is kept and the rule is listed in `conflicting`.
fn one_copy(copies: Vec<Rule>, conflicting: &mut Vec<String>) -> Option<Rule> {
    let mut keyed: Vec<(String, Rule)> = copies
        .into_iter()
        .map(|rule| (serde_json::to_string(&rule).unwrap_or_default(), rule))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    if keyed.len() > 1 {
        conflicting.push(keyed[0].1.uuid.clone());
    }
    keyed.into_iter().next().map(|(_, rule)| rule)
}

/// Warnings about the rules as built: fields that could not be read, references missing from
/// the snapshot, port lists past the documented length, two-way old-ESG rules.
fn rule_warnings(snapshot: &Snapshot) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut both_ways = 0;
    for rule in &snapshot.rules {
        let name = format!("rule {} ({})", rule.uuid, rule.description);
        for (field, why) in &rule.attributes.unreadable {
            warnings.push(format!(
                "{name}: {field} cannot be read: {why}; the rule is indeterminate"
            ));
        }
        if rule.attributes.delayed {
            warnings.push(format!(
                "{name}: dispatch is delayed (IsDelay 1); the rule is indeterminate until it is dispatched"
            ));
        }
        both_ways += usize::from(rule.attributes.both_ways);
        let items = rule.port.split(',').count();
        if items > DOCUMENTED_PORT_ITEMS && !rule.attributes.unreadable.contains_key("Port") {
            warnings.push(format!(
                "{name}: port list has {items} items, more than the {DOCUMENTED_PORT_ITEMS} the API documents; read as given"
            ));
        }
        for (side, endpoint) in [("source", &rule.source), ("destination", &rule.destination)] {
            if endpoint.kind == EndpointKind::Unknown
                || rule
                    .attributes
                    .unreadable
                    .keys()
                    .any(|f| field_side(f) == Some(side))
            {
                continue;
            }
            if let Err(reason) = super::resolve::resolve_endpoint(snapshot, endpoint) {
                warnings.push(format!("{name}: {side} cannot be resolved: {reason}"));
            }
        }
        if let Some(id) = &rule.service_template {
            if !snapshot.service_templates.contains_key(id)
                && !snapshot.service_template_groups.contains_key(id)
            {
                warnings.push(format!(
                    "{name}: service template {id} is not in the snapshot"
                ));
            }
        }
    }
    if both_ways > 0 {
        warnings.push(format!(
            "{both_ways} old-ESG rules are dispatched both ways (BothWay 1); esgflow judges each from its source to its destination"
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docs(list: &[(&str, Value)]) -> Vec<(String, Value)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }

    fn new_rule(id: &str, order: &str, action: &str) -> Value {
        json!({"Id": id, "OrderIndex": order, "RuleAction": action, "SourceType": "net", "SourceContent": "10.0.0.0/8",
               "DestType": "net", "DestContent": "10.1.0.0/16", "Protocol": "TCP", "Port": "80", "Description": "d", "Enable": "true"})
    }

    /// Rules with the same `OrderIndex` are ordered by id as numbers (`9` before `100`, which
    /// string order once reversed; `09` and `9` then as text), then other ids as text,
    /// whatever order the pages came in; the engine decides by the first of them.
    #[test]
    fn equal_orders_are_tied_by_numeric_id() {
        let rules = [
            new_rule("100", "5", "drop"),
            new_rule("abc", "5", "drop"),
            new_rule("9", "5", "accept"),
            new_rule("09", "5", "accept"),
        ];
        let mut versions = std::collections::BTreeSet::new();
        for rotation in 0..rules.len() {
            let mut listed = rules.to_vec();
            listed.rotate_left(rotation);
            let snapshot =
                build_from_documents(&docs(&[("r", json!({ "Rules": listed }))]), "t").unwrap();
            let order: Vec<&str> = snapshot.rules.iter().map(|r| r.uuid.as_str()).collect();
            assert_eq!(order, ["09", "9", "100", "abc"]);
            versions.insert(snapshot.version.clone());
            let engine = crate::core::engine::Engine::compile(&snapshot).unwrap();
            let flow = crate::core::engine::FlowKey {
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.1.0.1".parse().unwrap(),
                protocol: 6,
                dst_port: Some(80),
            };
            let decided = engine.evaluate(&flow).decision.rule().unwrap();
            assert_eq!(engine.rule(decided).rule.uuid, "09");
        }
        assert_eq!(
            versions.len(),
            1,
            "the version does not depend on page order"
        );
    }

    /// A listing whose rules are mostly unreadable (every field null) is refused by name, not
    /// made into a snapshot of indeterminate rules (issue #36: it replaced a good snapshot);
    /// one unreadable rule among readable ones is kept, indeterminate.
    #[test]
    fn mostly_unreadable_rules_are_refused() {
        let null_rule: serde_json::Map<String, Value> = [
            "Id",
            "OrderIndex",
            "RuleAction",
            "SourceType",
            "SourceContent",
            "DestType",
            "DestContent",
            "Protocol",
            "Port",
            "Enable",
        ]
        .iter()
        .map(|f| (f.to_string(), Value::Null))
        .collect();
        let mut odd = new_rule("7", "7", "drop");
        odd["Protocol"] = json!("SCTP");
        for (rules, refused) in [
            (json!([null_rule, null_rule]), true),
            (json!([odd.clone()]), true),
            (json!([odd, new_rule("1", "1", "accept")]), false),
        ] {
            let snapshot =
                build_from_documents(&docs(&[("r", json!({ "Rules": rules }))]), "t").unwrap();
            match refuse_mostly_unreadable(&snapshot).map(|()| snapshot) {
                Err(e) if refused => {
                    let text = e.to_string();
                    assert!(text.contains("rules cannot be read (the first:"), "{text}");
                }
                Ok(snapshot) if !refused => {
                    assert_eq!(snapshot.rules.len(), 2);
                    assert!(snapshot.rules.iter().any(|r| r.doubt().is_some()));
                }
                other => panic!("{rules}: {other:?}"),
            }
        }
    }

    #[test]
    fn pages_merge_and_the_response_wrapper_is_optional() {
        let snapshot = build_from_documents(
            &docs(&[
                ("p1", json!({"Response": {"Rules": [new_rule("1", "1", "accept"), new_rule("2", "2", "drop")], "TotalCount": "3"}})),
                ("p2", json!({"Rules": [new_rule("2", "2", "drop"), new_rule("3", "3", "log")], "TotalCount": "3"})),
            ]),
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        let ids: Vec<_> = snapshot.rules.iter().map(|r| r.uuid.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3"]);
        assert_eq!(snapshot.rules[2].action, RuleAction::Observe);
    }

    #[test]
    fn version_does_not_depend_on_input_order() {
        let a = build_from_documents(&docs(&[("a", json!({"Rules": [new_rule("1", "1", "accept"), new_rule("2", "2", "drop")]})), ("v", json!({"VpcSet": [{"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16", "AssistantCidrSet": [{"CidrBlock": "10.9.0.0/16"}, {"CidrBlock": "10.8.0.0/16"}]}]}))]), "t1").unwrap();
        let b = build_from_documents(&docs(&[("v", json!({"VpcSet": [{"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16", "AssistantCidrSet": [{"CidrBlock": "10.8.0.0/16"}, {"CidrBlock": "10.9.0.0/16"}]}]})), ("a", json!({"Rules": [new_rule("2", "2", "drop"), new_rule("1", "1", "accept")]}))]), "t2").unwrap();
        assert_eq!(a.version, b.version);
        assert_eq!(a.version.len(), 16);
        let c = build_from_documents(
            &docs(&[(
                "a",
                json!({"Rules": [new_rule("1", "1", "accept"), new_rule("2", "2", "accept")]}),
            )]),
            "t1",
        )
        .unwrap();
        assert_ne!(a.version, c.version);
    }

    #[test]
    fn rule_list_api_shape_with_codes_and_resolved_ips() {
        let snapshot = build_from_documents(
            &docs(&[("list", json!({"Data": [{"OrderIndex": 4, "RuleUuid": 77, "SourceId": "ins-abc", "SourceType": 3, "TargetId": "{\"Key\":\"env\",\"Value\":\"prod\"}", "TargetType": 8,
                "Protocol": "TCP", "Port": "443", "Strategy": 1, "Status": 1, "Detail": "block", "SouPrivateIp": "10.0.1.5,10.0.1.6", "PrivateIp": "10.0.2.8", "Cidr": ""}], "Total": 1, "AllTotal": 1}))]),
            "t",
        )
        .unwrap();
        let rule = &snapshot.rules[0];
        assert_eq!(rule.uuid, "77");
        assert_eq!(rule.order, 4);
        assert_eq!(rule.action, RuleAction::Drop);
        assert_eq!(rule.source.kind, EndpointKind::Instance);
        assert_eq!(rule.source.resolved, ["10.0.1.5", "10.0.1.6"]);
        assert_eq!(rule.destination.kind, EndpointKind::Tag);
        assert_eq!(rule.destination.resolved, ["10.0.2.8"]);
    }

    #[test]
    fn old_esg_rules_are_marked_old() {
        let snapshot = build_from_documents(&docs(&[("old", json!({"Data": [{"OrderIndex": 1, "Id": 5, "SourceId": "0.0.0.0/0", "SourceType": 0, "TargetId": "10.0.0.1", "TargetType": 0, "Protocol": "ANY", "Port": "-1/-1", "Strategy": "2", "Direction": 1, "Detail": "old allow"}]}))]), "t").unwrap();
        assert_eq!(snapshot.rules[0].generation, Generation::Old);
        assert_eq!(snapshot.rules[0].action, RuleAction::Accept);
    }

    fn key(src: &str, dst: &str, protocol: u8, port: u16) -> crate::core::engine::FlowKey {
        crate::core::engine::FlowKey {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol,
            dst_port: Some(port),
        }
    }

    /// The deciding rule's id and the indeterminate rules' ids for a TCP/UDP/other flow from
    /// 10.0.0.1 to 10.1.0.1, the index checked against the linear evaluation.
    fn judged(snapshot: &Snapshot, protocol: u8, port: u16) -> (Option<String>, Vec<String>) {
        let engine = crate::core::engine::Engine::compile(snapshot).unwrap();
        let flow = key("10.0.0.1", "10.1.0.1", protocol, port);
        let evaluation = engine.evaluate(&flow);
        assert_eq!(evaluation, engine.evaluate_linear(&flow));
        let uuid = |id| engine.rule(id).rule.uuid.clone();
        (
            evaluation.decision.rule().map(uuid),
            evaluation
                .indeterminate
                .iter()
                .map(|&id| uuid(id))
                .collect(),
        )
    }

    fn warnings_about(snapshot: &Snapshot, needle: &str) -> Vec<String> {
        snapshot
            .warnings
            .iter()
            .filter(|w| w.contains(needle))
            .cloned()
            .collect()
    }

    #[test]
    fn an_unreadable_rule_field_makes_the_rule_indeterminate_and_names_it() {
        let mut bad_port = new_rule("9", "1", "accept");
        bad_port["Port"] = json!("99999");
        let mut bad_net = new_rule("5", "3", "drop");
        bad_net["SourceContent"] = json!("10.0.0.0/99");
        let mut bad_enable = new_rule("6", "4", "drop");
        bad_enable["Enable"] = json!({"nested": true});
        let mut no_id = new_rule("", "5", "drop");
        no_id.as_object_mut().unwrap().remove("Id");
        let snapshot = build_from_documents(
            &docs(&[(
                "f.json",
                json!({"Rules": [bad_port, new_rule("4", "2", "reject"), bad_net, bad_enable, no_id, new_rule("7", "6", "drop")]}),
            )]),
            "t",
        )
        .expect("unreadable fields do not stop the build");
        assert_eq!(snapshot.rules.len(), 6);
        let rule = |id: &str| snapshot.rules.iter().find(|r| r.uuid == id).unwrap();
        assert_eq!(
            rule("9").attributes.unreadable["Port"],
            "port \"99999\" in \"99999\" is not a number from 0 to 65535"
        );
        assert_eq!(rule("4").action, RuleAction::Unknown);
        assert!(rule("4").attributes.unreadable["RuleAction"].contains("reject"));
        assert!(rule("5")
            .attributes
            .unreadable
            .contains_key("SourceContent"));
        assert!(rule("6").attributes.unreadable["Enable"].contains("nested"));
        let anonymous = snapshot
            .rules
            .iter()
            .find(|r| r.uuid.starts_with("no-id-"))
            .expect("a rule without an id is kept under a stable made-up id");
        assert_eq!(anonymous.attributes.unreadable["Id"], "the rule has no id");
        assert!(rule("7").attributes.unreadable.is_empty());
        assert_eq!(warnings_about(&snapshot, "cannot be read").len(), 5);
        assert_eq!(
            warnings_about(&snapshot, "rule 9 (d): Port cannot be read")[0],
            "rule 9 (d): Port cannot be read: port \"99999\" in \"99999\" is not a number from 0 to 65535; the rule is indeterminate"
        );
        // The engine compiles it; none of the unreadable rules decides a flow, each is listed.
        let (decided, indeterminate) = judged(&snapshot, 6, 80);
        assert_eq!(decided.as_deref(), Some("7"));
        assert_eq!(indeterminate.len(), 5, "{indeterminate:?}");

        let empty_page = json!({"Data": [], "Total": 0, "RequestId": "r"});
        assert!(
            build_from_documents(&docs(&[("old.json", empty_page)]), "t").is_ok(),
            "an empty page is not an error"
        );
        let err =
            build_from_documents(&docs(&[("x.json", json!({"Something": []}))]), "t").unwrap_err();
        assert!(
            err.to_string().contains("not a recognised API response"),
            "{err}"
        );
    }

    /// The cases that used to abort every build: a GRE service entry (a documented protocol, now
    /// read), an entry no protocol matches, an unknown type code, an unknown `Strategy` and a
    /// 16-item port list: the snapshot builds, with one warning for each of the last four.
    #[test]
    fn the_import_is_never_all_or_nothing() {
        let mut sixteen = new_rule("16", "3", "accept");
        sixteen["Port"] = json!((1..=16)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(","));
        let mut templated = new_rule("20", "4", "accept");
        templated["Protocol"] = json!("");
        templated["Port"] = json!("");
        templated["ServiceTemplateId"] = json!("ppm-gre");
        let mut weird = new_rule("21", "5", "drop");
        weird["Protocol"] = json!("");
        weird["Port"] = json!("");
        weird["ServiceTemplateId"] = json!("ppm-weird");
        let listed = |uuid: u64, source_type: i64, strategy: i64| {
            json!({"RuleUuid": uuid, "OrderIndex": uuid, "SourceId": "10.0.0.0/8", "SourceType": source_type,
                   "TargetId": "10.1.0.0/16", "TargetType": 0, "Protocol": "TCP", "Port": "22", "Strategy": strategy, "Status": 1})
        };
        let snapshot = build_from_documents(
            &docs(&[
                ("rules", json!({"Rules": [sixteen, templated, weird]})),
                (
                    "list",
                    json!({"Data": [listed(30, 42, 1), listed(31, 0, 7)], "Total": 2}),
                ),
                (
                    "services",
                    json!({"ServiceTemplateSet": [
                    {"ServiceTemplateId": "ppm-gre", "ServiceSet": ["gre", "tcp:443"]},
                    {"ServiceTemplateId": "ppm-weird", "ServiceSet": ["sctp:900", "tcp:900"]}]}),
                ),
            ]),
            "t",
        )
        .unwrap();
        assert_eq!(snapshot.warnings.len(), 4, "{:#?}", snapshot.warnings);
        assert_eq!(
            warnings_about(&snapshot, "entry \"sctp:900\" skipped").len(),
            1
        );
        assert_eq!(warnings_about(&snapshot, "rule 30 ()").len(), 1);
        assert_eq!(warnings_about(&snapshot, "rule 31 ()").len(), 1);
        assert_eq!(warnings_about(&snapshot, "port list has 16 items").len(), 1);
        assert_eq!(
            snapshot.service_templates["ppm-weird"].skipped,
            ["sctp:900"]
        );
        let rule = |id: &str| snapshot.rules.iter().find(|r| r.uuid == id).unwrap();
        assert_eq!(rule("30").source.kind, EndpointKind::Unknown);
        assert_eq!(rule("31").action, RuleAction::Unknown);

        let decided_by = |protocol, port| judged(&snapshot, protocol, port).0;
        assert_eq!(
            decided_by(6, 16).as_deref(),
            Some("16"),
            "all 16 ports are read"
        );
        assert_eq!(decided_by(47, 0).as_deref(), Some("20"), "GRE is matched");
        assert_eq!(
            decided_by(6, 900),
            None,
            "the template with a skipped entry is indeterminate"
        );
        assert_eq!(
            judged(&snapshot, 6, 22).1,
            ["21", "30", "31"],
            "the skipped entry could be any service"
        );
    }

    /// Rule text is bounded when the snapshot is built: a long description is cut with a
    /// warning, an over-long field makes the rule unreadable and is kept only as its start.
    #[test]
    fn rule_text_is_capped() {
        let mut long = new_rule("1", "1", "accept");
        long["Description"] = json!("描".repeat(1_000_000));
        long["SourceContent"] = json!("10.0.0.1,".repeat(100_000));
        let snapshot = build_from_documents(
            &docs(&[
                ("r", json!({"Rules": [long]})),
                ("v", json!({"VpcSet": [{"VpcId": "vpc-1", "VpcName": "n".repeat(10_000), "CidrBlock": "10.0.0.0/16"}]})),
            ]),
            "t",
        )
        .unwrap();
        let rule = &snapshot.rules[0];
        assert!(rule.description.len() <= MAX_DESCRIPTION_BYTES + 3);
        assert!(rule.source.content.len() < 100);
        assert!(rule.attributes.unreadable["SourceContent"].contains("900000 bytes"));
        assert_eq!(
            warnings_about(&snapshot, "description of 3000000 bytes cut").len(),
            1
        );
        assert!(snapshot.vpcs[0].name.len() <= MAX_NAME_BYTES + 3);
        assert!(serde_json::to_string(&snapshot).unwrap().len() < 20_000);
    }

    /// Identical copies are one rule; differing copies are reported and the same copy is kept
    /// whatever order the answers came in.
    #[test]
    fn duplicate_rule_ids_are_merged_or_reported_order_independently() {
        let a = new_rule("1", "1", "accept");
        let mut b = new_rule("1", "1", "drop");
        b["Description"] = json!("changed");
        let forward = import_documents(
            &docs(&[
                ("p1", json!({"Rules": [a.clone(), a.clone()]})),
                ("p2", json!({"Rules": [b.clone()]})),
            ]),
            "t",
        )
        .unwrap();
        let backward = import_documents(
            &docs(&[
                ("p2", json!({"Rules": [b]})),
                ("p1", json!({"Rules": [a.clone()]})),
            ]),
            "t",
        )
        .unwrap();
        assert_eq!(forward.conflicting, ["1"]);
        assert_eq!(forward.snapshot.version, backward.snapshot.version);
        assert_eq!(forward.snapshot.rules.len(), 1);
        assert_eq!(
            warnings_about(&forward.snapshot, "differing copies").len(),
            1
        );
        let same =
            import_documents(&docs(&[("p1", json!({"Rules": [a.clone(), a]}))]), "t").unwrap();
        assert!(same.conflicting.is_empty() && same.snapshot.warnings.is_empty());
    }

    /// `Scope`, `IsDelay`, `RulePartition` and the old ESG's `BothWay` and region are read: a
    /// Lighthouse-only rule does not govern security groups, a delayed rule is indeterminate,
    /// partitions order the rules, two-way rules are reported.
    #[test]
    fn rule_attributes_are_read_and_honoured() {
        let listed = |uuid: u64, order: u64, extra: Value| {
            let mut rule = json!({"RuleUuid": uuid, "OrderIndex": order, "SourceId": "10.0.0.0/8", "SourceType": 0,
                   "TargetId": "10.1.0.0/16", "TargetType": 0, "Protocol": "ANY", "Port": "-1/-1", "Strategy": 1, "Status": 1});
            rule.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            rule
        };
        let snapshot = build_from_documents(
            &docs(&[
                ("list", json!({"Data": [
                    listed(1, 1, json!({"Scope": "LH"})),
                    listed(2, 2, json!({"IsDelay": 1})),
                    listed(3, 1, json!({"RulePartition": 3, "Strategy": 2})),
                    listed(4, 9, json!({"RulePartition": 1, "Strategy": 2, "Scope": "SG,LH"})),
                ], "Total": 4})),
                ("old", json!({"Area": "ap-beijing", "Data": [{"Id": 5, "OrderIndex": 1, "SourceId": "0.0.0.0/0", "SourceType": 0,
                    "TargetId": "10.0.0.1", "TargetType": 0, "Protocol": "ANY", "Port": "-1/-1", "Strategy": 2, "Direction": 1, "BothWay": 1}]})),
            ]),
            "t",
        )
        .unwrap();
        let order: Vec<&str> = snapshot.rules.iter().map(|r| r.uuid.as_str()).collect();
        assert_eq!(
            order,
            ["4", "1", "2", "3", "5"],
            "partition first, then OrderIndex"
        );
        let old = &snapshot.rules[4];
        assert_eq!(old.attributes.region.as_deref(), Some("ap-beijing"));
        assert!(old.attributes.both_ways);
        assert_eq!(warnings_about(&snapshot, "BothWay").len(), 1);
        assert_eq!(warnings_about(&snapshot, "IsDelay").len(), 1);
        assert_eq!(judged(&snapshot, 6, 80).0.as_deref(), Some("4"));
        // Without the first-partition rule, the Lighthouse-only rule 1 is skipped, the delayed
        // rule 2 is listed as indeterminate and rule 3 decides.
        let mut without = snapshot.clone();
        without.rules.retain(|r| r.uuid != "4");
        assert_eq!(
            judged(&without, 6, 80),
            (Some("3".to_string()), vec!["2".to_string()])
        );
        let engine = crate::core::engine::Engine::compile(&without).unwrap();
        let flow = key("10.0.0.1", "10.1.0.1", 6, 80);
        let explanation = engine.explain(&flow);
        assert!(explanation.steps.iter().any(|s| s.uuid == "1"
            && s.detail == "rule applies to LH only, not to security groups (Scope)"));
    }

    #[test]
    fn topology_and_templates() {
        let snapshot = build_from_documents(
            &docs(&[
                ("r", json!({"Rules": [new_rule("1", "1", "accept")]})),
                ("at", json!({"AddressTemplateSet": [{"AddressTemplateId": "ipm-1", "AddressTemplateName": "db", "AddressSet": ["10.0.3.0/24"], "AddressExtraSet": [{"Address": "10.0.4.1", "Description": "x"}]}]})),
                ("ag", json!({"AddressTemplateGroupSet": [{"AddressTemplateGroupId": "ipmg-1", "AddressTemplateIdSet": ["ipm-1"]}]})),
                ("st", json!({"ServiceTemplateSet": [{"ServiceTemplateId": "ppm-1", "ServiceSet": ["tcp:3306", "udp:53"]}]})),
                ("sg", json!({"ServiceTemplateGroupSet": [{"ServiceTemplateGroupId": "ppmg-1", "ServiceTemplateIdSet": ["ppm-1"]}]})),
                ("s", json!({"SubnetSet": [{"VpcId": "vpc-1", "SubnetId": "subnet-1", "CidrBlock": "10.0.1.0/24"}]})),
                ("e", json!({"NetworkInterfaceSet": [{"NetworkInterfaceId": "eni-1", "VpcId": "vpc-1", "SubnetId": "subnet-1", "PrivateIpAddressSet": [{"PrivateIpAddress": "10.0.1.5", "Primary": true}], "Attachment": {"InstanceId": "ins-1"}}]})),
            ]),
            "t",
        )
        .unwrap();
        assert_eq!(
            snapshot.address_templates["ipm-1"].addresses,
            ["10.0.3.0/24", "10.0.4.1"]
        );
        assert_eq!(
            snapshot.address_template_groups["ipmg-1"].members,
            ["ipm-1"]
        );
        assert_eq!(
            snapshot.service_templates["ppm-1"].services,
            ["tcp:3306", "udp:53"]
        );
        assert_eq!(snapshot.enis[0].instance_id.as_deref(), Some("ins-1"));
        assert_eq!(snapshot.subnets[0].cidrs, ["10.0.1.0/24"]);
    }
}
