//! Reading one rule's fields as the two rule APIs give them (`DescribeEnterpriseSecurityGroupRule`
//! strings, `DescribeEnterpriseSecurityGroupRuleList` type codes): orders, flags, partitions, scopes,
//! endpoints and services, each field that cannot be read noted with why, and rule text bounded.

use super::*;

/// Which side of a rule an API field describes.
pub(super) fn field_side(field: &str) -> Option<&'static str> {
    match field {
        "SourceType" | "SourceContent" | "SourceId" => Some("source"),
        "DestType" | "DestContent" | "TargetType" | "TargetId" => Some("destination"),
        _ => None,
    }
}

/// A string field that may arrive as a JSON string, number or bool; anything else is kept as
/// its JSON text, for the field's parser to refuse by name.
pub(super) fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.to_string(),
    })
}

/// Longest rule description kept (the API documents at most 100 Unicode characters); a longer
/// one is cut, with a warning.
pub(crate) const MAX_DESCRIPTION_BYTES: usize = 1024;

/// Longest rule field read (ids, contents, ports, protocols, template ids: the API documents at
/// most 512 bytes); a longer one is unreadable and kept only as its first bytes.
pub(crate) const MAX_FIELD_BYTES: usize = 4096;

/// Longest template, VPC or subnet name kept (the APIs allow 60 characters); longer ones are cut.
pub(super) const MAX_NAME_BYTES: usize = 256;

pub(super) fn short_name(name: String) -> String {
    capped(name, MAX_NAME_BYTES).0
}

/// `text` within `limit` bytes (cut on a character boundary, marked `…`), and its length when
/// it was cut.
pub(super) fn capped(text: String, limit: usize) -> (String, Option<usize>) {
    if text.len() <= limit {
        return (text, None);
    }
    let length = text.len();
    (format!("{}…", truncate_utf8(&text, limit)), Some(length))
}

/// The description within [`MAX_DESCRIPTION_BYTES`]; a cut one is reported in `warnings`.
pub(super) fn description(id: &str, text: String, warnings: &mut Vec<String>) -> String {
    let (text, cut) = capped(text, MAX_DESCRIPTION_BYTES);
    if let Some(length) = cut {
        warnings.push(format!(
            "rule {id}: description of {length} bytes cut to {MAX_DESCRIPTION_BYTES}"
        ));
    }
    text
}

/// What the importer notes while reading one rule: the fields it could not read.
#[derive(Default)]
pub(super) struct Notes(BTreeMap<String, String>);

impl Notes {
    /// `text` trimmed, or, past [`MAX_FIELD_BYTES`], its first bytes with the field noted.
    pub(super) fn field(&mut self, field: &str, text: &str) -> String {
        let text = text.trim();
        if text.len() <= MAX_FIELD_BYTES {
            return text.to_string();
        }
        self.0.insert(
            field.to_string(),
            format!(
                "{} bytes, longer than the {MAX_FIELD_BYTES} esgflow reads",
                text.len()
            ),
        );
        format!("{}…", truncate_utf8(text, 64))
    }

    /// The parsed value, or `fallback` with the field noted as unreadable.
    pub(super) fn read<T>(&mut self, field: &str, parsed: Result<T, String>, fallback: T) -> T {
        parsed.unwrap_or_else(|why| {
            self.0.insert(field.to_string(), why);
            fallback
        })
    }
}

/// An id for a rule the API gave none: stable over the item's content.
pub(super) fn anonymous_id(item: &Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(item.to_string().as_bytes());
    format!("no-id-{}", hex::encode(&digest[..4]))
}

pub(super) fn parse_order(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text == "-1" {
        return Ok(u64::from(u32::MAX));
    }
    text.parse::<u64>()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

pub(super) fn parse_flag(text: &str, field: &str) -> Result<bool, String> {
    match text.trim() {
        "" | "0" => Ok(false),
        "1" => Ok(true),
        other => Err(format!("{field} {other:?} is not 0 or 1")),
    }
}

pub(super) fn parse_partition(text: &str) -> Result<Option<u8>, String> {
    match text.trim() {
        "" | "0" => Ok(None),
        "1" => Ok(Some(1)),
        "2" => Ok(Some(2)),
        "3" => Ok(Some(3)),
        other => Err(format!(
            "RulePartition {other:?} is not 1 (first), 2 (middle) or 3 (last)"
        )),
    }
}

/// `Scope`: `SG`, `LH`, `NONE` or a comma list of them.
pub(super) fn parse_scope(text: &str) -> Result<String, String> {
    let scope = text.trim().to_ascii_uppercase();
    match scope
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty() && !matches!(*s, "SG" | "LH" | "NONE"))
    {
        Some(other) => Err(format!("scope {other:?} is not SG, LH or NONE")),
        None => Ok(scope),
    }
}

/// Reads protocol and port text (or the service template) the way the engine will.
pub(super) fn note_services(rule: &Rule, notes: &mut Notes) {
    if rule.service_template.is_some()
        && matches!(
            rule.protocol.trim().to_ascii_uppercase().as_str(),
            "" | "ANY"
        )
    {
        return;
    }
    match Protocol::parse(&rule.protocol) {
        Err(why) => {
            notes.0.insert("Protocol".into(), why);
        }
        Ok(protocol) if protocol.has_ports() => {
            if let Err(why) = PortSet::parse(&rule.port) {
                notes.0.insert("Port".into(), why);
            }
        }
        Ok(_) => {}
    }
}

/// An endpoint whose kind did not read is `Unknown`; a `net` content that does not parse is
/// noted.
pub(super) fn endpoint(
    kind: Result<EndpointKind, String>,
    content: &str,
    fields: (&str, &str),
    notes: &mut Notes,
) -> Endpoint {
    let kind = notes.read(fields.0, kind, EndpointKind::Unknown);
    let content = notes.field(fields.1, content);
    if kind == EndpointKind::Net && !notes.0.contains_key(fields.1) {
        if let Err(why) = AddressSet::parse(&content) {
            notes.0.insert(fields.1.to_string(), why);
        }
    }
    Endpoint {
        kind,
        content,
        resolved: Vec::new(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct NewRule {
    #[serde(default, deserialize_with = "text")]
    pub(super) id: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) source_type: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) source_content: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) dest_type: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) dest_content: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) rule_action: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) order_index: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) protocol: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) port: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) service_template_id: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) description: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) enable: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) scope: String,
}

impl NewRule {
    pub(super) fn into_rule(self, item: &Value, warnings: &mut Vec<String>) -> Rule {
        let mut notes = Notes::default();
        let mut id = notes.field("Id", &self.id);
        if id.is_empty() || notes.0.contains_key("Id") {
            id = anonymous_id(item);
            notes
                .0
                .entry("Id".into())
                .or_insert("the rule has no id".into());
        }
        let source = endpoint(
            EndpointKind::parse(&self.source_type),
            &self.source_content,
            ("SourceType", "SourceContent"),
            &mut notes,
        );
        let destination = endpoint(
            EndpointKind::parse(&self.dest_type),
            &self.dest_content,
            ("DestType", "DestContent"),
            &mut notes,
        );
        let enabled = match self.enable.trim().to_ascii_lowercase().as_str() {
            "" | "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(format!("{other:?} is not true or false")),
        };
        let enabled = notes.read("Enable", enabled, true);
        let order = notes.read("OrderIndex", parse_order(&self.order_index), u64::MAX);
        let action = notes.read(
            "RuleAction",
            RuleAction::parse(&self.rule_action),
            RuleAction::Unknown,
        );
        let scope = notes.read("Scope", parse_scope(&self.scope), String::new());
        let mut rule = Rule {
            order,
            generation: Generation::New,
            action,
            enabled,
            source,
            destination,
            protocol: notes.field("Protocol", &self.protocol),
            port: notes.field("Port", &self.port),
            service_template: Some(notes.field("ServiceTemplateId", &self.service_template_id))
                .filter(|s| !s.is_empty()),
            description: String::new(),
            uuid: id,
            attributes: RuleAttributes {
                scope,
                ..RuleAttributes::default()
            },
        };
        rule.description = description(&rule.uuid, self.description, warnings);
        note_services(&rule, &mut notes);
        rule.attributes.unreadable = notes.0;
        rule
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListRule {
    #[serde(default, deserialize_with = "text")]
    pub(super) rule_uuid: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) id: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) uuid: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) order_index: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) source_id: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) source_type: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) target_id: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) target_type: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) protocol: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) port: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) strategy: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) status: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) detail: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) service_template_id: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) sou_private_ip: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) sou_cidr: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) private_ip: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) cidr: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) scope: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) is_delay: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) rule_partition: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) both_way: String,
}

pub(super) fn split_list(lists: &[&str]) -> Vec<String> {
    lists
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) fn parse_code(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| format!("{text:?} is not an integer code"))
}

impl ListRule {
    pub(super) fn into_rule(
        self,
        item: &Value,
        generation: Generation,
        warnings: &mut Vec<String>,
    ) -> (Rule, Resolved) {
        let mut notes = Notes::default();
        let id = [&self.rule_uuid, &self.id, &self.uuid]
            .into_iter()
            .map(|s| s.trim())
            .find(|s| !s.is_empty() && *s != "0")
            .map(str::to_string)
            .unwrap_or_else(|| {
                notes
                    .0
                    .insert("RuleUuid".into(), "the rule has no id".into());
                anonymous_id(item)
            });
        let source = endpoint(
            parse_code(&self.source_type).and_then(EndpointKind::from_code),
            &self.source_id,
            ("SourceType", "SourceId"),
            &mut notes,
        );
        let destination = endpoint(
            parse_code(&self.target_type).and_then(EndpointKind::from_code),
            &self.target_id,
            ("TargetType", "TargetId"),
            &mut notes,
        );
        let enabled = match self.status.trim() {
            "" | "1" => Ok(true),
            "0" => Ok(false),
            other => Err(format!("{other:?} is not 0 or 1")),
        };
        let enabled = notes.read("Status", enabled, true);
        let order = notes.read("OrderIndex", parse_order(&self.order_index), u64::MAX);
        let action = notes.read(
            "Strategy",
            parse_code(&self.strategy).and_then(RuleAction::from_strategy),
            RuleAction::Unknown,
        );
        let attributes = RuleAttributes {
            scope: notes.read("Scope", parse_scope(&self.scope), String::new()),
            partition: notes.read("RulePartition", parse_partition(&self.rule_partition), None),
            delayed: notes.read("IsDelay", parse_flag(&self.is_delay, "IsDelay"), false),
            both_ways: notes.read("BothWay", parse_flag(&self.both_way, "BothWay"), false),
            ..RuleAttributes::default()
        };
        let mut rule = Rule {
            order,
            generation,
            action,
            enabled,
            source,
            destination,
            protocol: notes.field("Protocol", &self.protocol),
            port: notes.field("Port", &self.port),
            service_template: Some(notes.field("ServiceTemplateId", &self.service_template_id))
                .filter(|s| !s.is_empty()),
            description: String::new(),
            uuid: id,
            attributes,
        };
        rule.description = description(&rule.uuid, self.detail, warnings);
        note_services(&rule, &mut notes);
        rule.attributes.unreadable = notes.0;
        let resolved = (
            split_list(&[&self.sou_private_ip, &self.sou_cidr]),
            split_list(&[&self.private_ip, &self.cidr]),
        );
        (rule, resolved)
    }
}
