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

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use super::values::{AddressSet, PortSet, Protocol, Service};
use super::{
    AddressTemplate, Endpoint, EndpointKind, Eni, Generation, Rule, RuleAction, ServiceTemplate,
    Snapshot, Subnet, TemplateGroup, Vpc,
};

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
    /// A rule has a field that cannot be used.
    #[error("{document}: rule {rule}: {field}: {message}")]
    Rule {
        /// The file.
        document: String,
        /// The rule id.
        rule: String,
        /// The API field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No document held any rule.
    #[error("no ESG rules found in {0}")]
    NoRules(String),
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
    let mut builder = Builder::default();
    for (name, value) in documents {
        let body = value.get("Response").unwrap_or(value);
        builder.add(name, body)?;
    }
    Ok(builder.finish(taken_at))
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
];

/// Addresses the rule-list API resolved for a rule's source and destination.
type Resolved = (Vec<String>, Vec<String>);

#[derive(Default)]
struct Builder {
    rules: BTreeMap<(Generation, String), Rule>,
    snapshot: Snapshot,
}

fn document_error(document: &str, message: impl Into<String>) -> ImportError {
    ImportError::Document {
        document: document.to_string(),
        message: message.into(),
    }
}

fn items<T: for<'de> Deserialize<'de>>(
    document: &str,
    value: &Value,
    key: &str,
) -> Result<Vec<T>, ImportError> {
    let list = value.get(key).cloned().unwrap_or(Value::Array(Vec::new()));
    let list = if list.is_null() {
        Value::Array(Vec::new())
    } else {
        list
    };
    serde_path_to_error::deserialize(list).map_err(|err| {
        document_error(
            document,
            format!(
                "{key}{}: {}",
                path_suffix(&err.path().to_string()),
                err.inner()
            ),
        )
    })
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
        if has("Rules") {
            for raw in items::<NewRule>(name, body, "Rules")? {
                let rule = raw.into_rule(name)?;
                self.insert_rule(rule, None);
            }
        } else if has("Data") && data_has("IpString") {
            for raw in items::<CfwTemplate>(name, body, "Data")? {
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
                        name: raw.name,
                        addresses,
                    },
                );
            }
        } else if has("Data") && data_has("Direction") {
            for raw in items::<ListRule>(name, body, "Data")? {
                let (rule, resolved) = raw.into_rule(name, Generation::Old)?;
                self.insert_rule(rule, Some(resolved));
            }
        } else if has("Data") && (data_has("RuleUuid") || data_has("SourceId"))
            || (has("Data") && has("AllTotal"))
        {
            for raw in items::<ListRule>(name, body, "Data")? {
                let (rule, resolved) = raw.into_rule(name, Generation::New)?;
                self.insert_rule(rule, Some(resolved));
            }
        } else if has("AddressTemplateSet") {
            for raw in items::<VpcAddressTemplate>(name, body, "AddressTemplateSet")? {
                let mut addresses = raw.address_set;
                addresses.extend(raw.address_extra_set.into_iter().map(|e| e.address));
                self.snapshot.address_templates.insert(
                    raw.address_template_id,
                    AddressTemplate {
                        name: raw.address_template_name,
                        addresses,
                    },
                );
            }
        } else if has("AddressTemplateGroupSet") {
            for raw in items::<VpcAddressTemplateGroup>(name, body, "AddressTemplateGroupSet")? {
                let mut members = raw.address_template_id_set;
                members.extend(
                    raw.address_template_set
                        .into_iter()
                        .map(|t| t.address_template_id),
                );
                self.snapshot.address_template_groups.insert(
                    raw.address_template_group_id,
                    TemplateGroup {
                        name: raw.address_template_group_name,
                        members,
                    },
                );
            }
        } else if has("ServiceTemplateSet") {
            for raw in items::<VpcServiceTemplate>(name, body, "ServiceTemplateSet")? {
                let mut services = raw.service_set;
                services.extend(raw.service_extra_set.into_iter().map(|e| e.service));
                for service in &services {
                    Service::parse(service).map_err(|message| {
                        document_error(
                            name,
                            format!("service template {}: {message}", raw.service_template_id),
                        )
                    })?;
                }
                self.snapshot.service_templates.insert(
                    raw.service_template_id,
                    ServiceTemplate {
                        name: raw.service_template_name,
                        services,
                    },
                );
            }
        } else if has("ServiceTemplateGroupSet") {
            for raw in items::<VpcServiceTemplateGroup>(name, body, "ServiceTemplateGroupSet")? {
                let mut members = raw.service_template_id_set;
                members.extend(
                    raw.service_template_set
                        .into_iter()
                        .map(|t| t.service_template_id),
                );
                self.snapshot.service_template_groups.insert(
                    raw.service_template_group_id,
                    TemplateGroup {
                        name: raw.service_template_group_name,
                        members,
                    },
                );
            }
        } else if has("VpcSet") {
            for raw in items::<RawVpc>(name, body, "VpcSet")? {
                let mut cidrs = vec![raw.cidr_block];
                cidrs.extend(raw.assistant_cidr_set.into_iter().map(|a| a.cidr_block));
                cidrs.extend(raw.ipv6_cidr_block.filter(|c| !c.is_empty()));
                self.snapshot.vpcs.retain(|v| v.id != raw.vpc_id);
                self.snapshot.vpcs.push(Vpc {
                    id: raw.vpc_id,
                    name: raw.vpc_name,
                    cidrs,
                });
            }
        } else if has("SubnetSet") {
            for raw in items::<RawSubnet>(name, body, "SubnetSet")? {
                let mut cidrs = vec![raw.cidr_block];
                cidrs.extend(raw.ipv6_cidr_block.filter(|c| !c.is_empty()));
                self.snapshot.subnets.retain(|s| s.id != raw.subnet_id);
                self.snapshot.subnets.push(Subnet {
                    id: raw.subnet_id,
                    vpc_id: raw.vpc_id,
                    name: raw.subnet_name,
                    cidrs,
                });
            }
        } else if has("NetworkInterfaceSet") {
            for raw in items::<RawEni>(name, body, "NetworkInterfaceSet")? {
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
                    vpc_id: raw.vpc_id,
                    subnet_id: raw.subnet_id,
                    instance_id,
                    ips,
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
        Ok(())
    }

    /// Merges a rule in; the rule-list API's resolved addresses are added to an existing rule of
    /// the same id from the rule API.
    fn insert_rule(&mut self, rule: Rule, resolved: Option<Resolved>) {
        let key = (rule.generation, rule.uuid.clone());
        let entry = self.rules.entry(key).or_insert(rule);
        if let Some((source, destination)) = resolved {
            entry.source.resolved.extend(source);
            entry.destination.resolved.extend(destination);
        }
    }

    fn finish(mut self, taken_at: &str) -> Snapshot {
        self.snapshot.rules = self.rules.into_values().collect();
        self.snapshot.taken_at = taken_at.to_string();
        let warnings = unresolved_warnings(&self.snapshot);
        self.snapshot.warnings.extend(warnings);
        self.snapshot.seal();
        self.snapshot
    }
}

/// Warnings for rules whose references are missing from the snapshot.
fn unresolved_warnings(snapshot: &Snapshot) -> Vec<String> {
    let mut warnings = Vec::new();
    for rule in &snapshot.rules {
        for (side, endpoint) in [("source", &rule.source), ("destination", &rule.destination)] {
            if let Err(reason) = super::resolve::resolve_endpoint(snapshot, endpoint) {
                warnings.push(format!(
                    "rule {} ({}): {side} cannot be resolved: {reason}",
                    rule.uuid, rule.description
                ));
            }
        }
        if let Some(id) = &rule.service_template {
            if !snapshot.service_templates.contains_key(id)
                && !snapshot.service_template_groups.contains_key(id)
            {
                warnings.push(format!(
                    "rule {} ({}): service template {id} is not in the snapshot",
                    rule.uuid, rule.description
                ));
            }
        }
    }
    warnings
}

/// A string field that may arrive as a JSON string or number.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => {
            return Err(de::Error::custom(format!(
                "expected a string, found {other}"
            )))
        }
    })
}

fn check<T>(
    result: Result<T, String>,
    document: &str,
    rule: &str,
    field: &'static str,
) -> Result<T, ImportError> {
    result.map_err(|message| ImportError::Rule {
        document: document.to_string(),
        rule: rule.to_string(),
        field,
        message,
    })
}

fn parse_order(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text == "-1" {
        return Ok(u64::from(u32::MAX));
    }
    text.parse::<u64>()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

/// Checks protocol and port text (or the service template) the way the engine will read them.
fn check_services(rule: &Rule, document: &str) -> Result<(), ImportError> {
    if rule.service_template.is_some()
        && matches!(
            rule.protocol.trim().to_ascii_uppercase().as_str(),
            "" | "ANY"
        )
    {
        return Ok(());
    }
    let protocol = check(
        Protocol::parse(&rule.protocol),
        document,
        &rule.uuid,
        "Protocol",
    )?;
    if protocol.has_ports() {
        check(PortSet::parse(&rule.port), document, &rule.uuid, "Port")?;
    }
    Ok(())
}

fn check_endpoint(
    endpoint: &Endpoint,
    document: &str,
    rule: &str,
    field: &'static str,
) -> Result<(), ImportError> {
    if endpoint.kind == EndpointKind::Net {
        check(AddressSet::parse(&endpoint.content), document, rule, field)?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NewRule {
    #[serde(default, deserialize_with = "text")]
    id: String,
    #[serde(default, deserialize_with = "text")]
    source_type: String,
    #[serde(default, deserialize_with = "text")]
    source_content: String,
    #[serde(default, deserialize_with = "text")]
    dest_type: String,
    #[serde(default, deserialize_with = "text")]
    dest_content: String,
    #[serde(default, deserialize_with = "text")]
    rule_action: String,
    #[serde(default, deserialize_with = "text")]
    order_index: String,
    #[serde(default, deserialize_with = "text")]
    protocol: String,
    #[serde(default, deserialize_with = "text")]
    port: String,
    #[serde(default, deserialize_with = "text")]
    service_template_id: String,
    #[serde(default, deserialize_with = "text")]
    description: String,
    #[serde(default, deserialize_with = "text")]
    enable: String,
}

impl NewRule {
    fn into_rule(self, document: &str) -> Result<Rule, ImportError> {
        let id = self.id.trim().to_string();
        if id.is_empty() {
            return Err(document_error(
                document,
                format!(
                    "a rule has no Id (OrderIndex {:?}, description {:?})",
                    self.order_index, self.description
                ),
            ));
        }
        let source = Endpoint {
            kind: check(
                EndpointKind::parse(&self.source_type),
                document,
                &id,
                "SourceType",
            )?,
            content: self.source_content.trim().to_string(),
            resolved: Vec::new(),
        };
        let destination = Endpoint {
            kind: check(
                EndpointKind::parse(&self.dest_type),
                document,
                &id,
                "DestType",
            )?,
            content: self.dest_content.trim().to_string(),
            resolved: Vec::new(),
        };
        check_endpoint(&source, document, &id, "SourceContent")?;
        check_endpoint(&destination, document, &id, "DestContent")?;
        let enabled = match self.enable.trim().to_ascii_lowercase().as_str() {
            "" | "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(ImportError::Rule {
                    document: document.to_string(),
                    rule: id,
                    field: "Enable",
                    message: format!("{other:?} is not true or false"),
                })
            }
        };
        let rule = Rule {
            order: check(parse_order(&self.order_index), document, &id, "OrderIndex")?,
            generation: Generation::New,
            action: check(
                RuleAction::parse(&self.rule_action),
                document,
                &id,
                "RuleAction",
            )?,
            enabled,
            source,
            destination,
            protocol: self.protocol.trim().to_string(),
            port: self.port.trim().to_string(),
            service_template: Some(self.service_template_id.trim().to_string())
                .filter(|s| !s.is_empty()),
            description: self.description,
            uuid: id,
        };
        check_services(&rule, document)?;
        Ok(rule)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListRule {
    #[serde(default, deserialize_with = "text")]
    rule_uuid: String,
    #[serde(default, deserialize_with = "text")]
    id: String,
    #[serde(default, deserialize_with = "text")]
    uuid: String,
    #[serde(default, deserialize_with = "text")]
    order_index: String,
    #[serde(default, deserialize_with = "text")]
    source_id: String,
    #[serde(default, deserialize_with = "text")]
    source_type: String,
    #[serde(default, deserialize_with = "text")]
    target_id: String,
    #[serde(default, deserialize_with = "text")]
    target_type: String,
    #[serde(default, deserialize_with = "text")]
    protocol: String,
    #[serde(default, deserialize_with = "text")]
    port: String,
    #[serde(default, deserialize_with = "text")]
    strategy: String,
    #[serde(default, deserialize_with = "text")]
    status: String,
    #[serde(default, deserialize_with = "text")]
    detail: String,
    #[serde(default, deserialize_with = "text")]
    service_template_id: String,
    #[serde(default, deserialize_with = "text")]
    sou_private_ip: String,
    #[serde(default, deserialize_with = "text")]
    sou_cidr: String,
    #[serde(default, deserialize_with = "text")]
    private_ip: String,
    #[serde(default, deserialize_with = "text")]
    cidr: String,
}

fn split_list(lists: &[&str]) -> Vec<String> {
    lists
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl ListRule {
    fn into_rule(
        self,
        document: &str,
        generation: Generation,
    ) -> Result<(Rule, Resolved), ImportError> {
        let id = [&self.rule_uuid, &self.id, &self.uuid]
            .into_iter()
            .map(|s| s.trim())
            .find(|s| !s.is_empty() && *s != "0")
            .unwrap_or_default()
            .to_string();
        if id.is_empty() {
            return Err(document_error(
                document,
                format!(
                    "a rule has no RuleUuid (OrderIndex {:?}, description {:?})",
                    self.order_index, self.detail
                ),
            ));
        }
        let code = |text: &str, field: &'static str| -> Result<i64, ImportError> {
            check(
                text.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("{text:?} is not an integer code")),
                document,
                &id,
                field,
            )
        };
        let source = Endpoint {
            kind: check(
                EndpointKind::from_code(code(&self.source_type, "SourceType")?),
                document,
                &id,
                "SourceType",
            )?,
            content: self.source_id.trim().to_string(),
            resolved: Vec::new(),
        };
        let destination = Endpoint {
            kind: check(
                EndpointKind::from_code(code(&self.target_type, "TargetType")?),
                document,
                &id,
                "TargetType",
            )?,
            content: self.target_id.trim().to_string(),
            resolved: Vec::new(),
        };
        check_endpoint(&source, document, &id, "SourceId")?;
        check_endpoint(&destination, document, &id, "TargetId")?;
        let enabled = match self.status.trim() {
            "" | "1" => true,
            "0" => false,
            other => {
                return Err(ImportError::Rule {
                    document: document.to_string(),
                    rule: id,
                    field: "Status",
                    message: format!("{other:?} is not 0 or 1"),
                })
            }
        };
        let rule = Rule {
            order: check(parse_order(&self.order_index), document, &id, "OrderIndex")?,
            generation,
            action: check(
                RuleAction::from_strategy(code(&self.strategy, "Strategy")?),
                document,
                &id,
                "Strategy",
            )?,
            enabled,
            source,
            destination,
            protocol: self.protocol.trim().to_string(),
            port: self.port.trim().to_string(),
            service_template: Some(self.service_template_id.trim().to_string())
                .filter(|s| !s.is_empty()),
            description: self.detail,
            uuid: id,
        };
        check_services(&rule, document)?;
        let resolved = (
            split_list(&[&self.sou_private_ip, &self.sou_cidr]),
            split_list(&[&self.private_ip, &self.cidr]),
        );
        Ok((rule, resolved))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CfwTemplate {
    #[serde(deserialize_with = "text")]
    uuid: String,
    #[serde(default, deserialize_with = "text")]
    name: String,
    #[serde(default, deserialize_with = "text")]
    ip_string: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VpcAddressTemplate {
    address_template_id: String,
    #[serde(default)]
    address_template_name: String,
    #[serde(default)]
    address_set: Vec<String>,
    #[serde(default)]
    address_extra_set: Vec<AddressExtra>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddressExtra {
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VpcAddressTemplateGroup {
    address_template_group_id: String,
    #[serde(default)]
    address_template_group_name: String,
    #[serde(default)]
    address_template_id_set: Vec<String>,
    #[serde(default)]
    address_template_set: Vec<AddressTemplateRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddressTemplateRef {
    address_template_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VpcServiceTemplate {
    service_template_id: String,
    #[serde(default)]
    service_template_name: String,
    #[serde(default)]
    service_set: Vec<String>,
    #[serde(default)]
    service_extra_set: Vec<ServiceExtra>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceExtra {
    service: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VpcServiceTemplateGroup {
    service_template_group_id: String,
    #[serde(default)]
    service_template_group_name: String,
    #[serde(default)]
    service_template_id_set: Vec<String>,
    #[serde(default)]
    service_template_set: Vec<ServiceTemplateRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceTemplateRef {
    service_template_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawVpc {
    vpc_id: String,
    #[serde(default)]
    vpc_name: String,
    cidr_block: String,
    #[serde(default)]
    ipv6_cidr_block: Option<String>,
    #[serde(default)]
    assistant_cidr_set: Vec<AssistantCidr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssistantCidr {
    cidr_block: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawSubnet {
    vpc_id: String,
    subnet_id: String,
    #[serde(default)]
    subnet_name: String,
    cidr_block: String,
    #[serde(default)]
    ipv6_cidr_block: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawEni {
    network_interface_id: String,
    vpc_id: String,
    subnet_id: String,
    #[serde(default)]
    private_ip_address_set: Vec<PrivateIp>,
    #[serde(default)]
    ipv6_address_set: Vec<Ipv6Address>,
    #[serde(default)]
    attachment: Option<Attachment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PrivateIp {
    private_ip_address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Ipv6Address {
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Attachment {
    #[serde(default)]
    instance_id: String,
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

    #[test]
    fn bad_rules_name_the_rule_and_the_field() {
        let mut bad_port = new_rule("9", "1", "accept");
        bad_port["Port"] = json!("99999");
        let err = build_from_documents(&docs(&[("f.json", json!({"Rules": [bad_port]}))]), "t")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.json: rule 9: Port: port \"99999\" in \"99999\" is not a number from 0 to 65535"
        );
        let err = build_from_documents(
            &docs(&[("f.json", json!({"Rules": [new_rule("4", "1", "reject")]}))]),
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("rule 4: RuleAction"), "{err}");
        let mut bad_net = new_rule("5", "1", "drop");
        bad_net["SourceContent"] = json!("10.0.0.0/99");
        let err = build_from_documents(&docs(&[("f.json", json!({"Rules": [bad_net]}))]), "t")
            .unwrap_err();
        assert!(err.to_string().contains("rule 5: SourceContent"), "{err}");
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
