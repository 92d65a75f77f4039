//! The rule snapshot: one normalised, versioned document holding the ESG rules, everything the rules
//! refer to (address and service templates and groups, members of instances, resource groups
//! and tags), and the topology (VPCs, subnets, ENIs). `version` is a content hash, so a record can
//! name exactly the rule set it was judged against. Field order, the order of the input files and
//! the order of list items do not change the hash.
//!
//! The snapshot keeps rules as the API described them (source/destination kind and content,
//! protocol and port text). Resolving them to address and port sets is the engine's job
//! ([`crate::core::engine`]), which reports what cannot be resolved.

pub mod diff;
mod import;
pub mod resolve;
pub mod values;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use import::{
    build_from_dir, build_from_documents, import_documents, import_each, refuse_mostly_unreadable,
    ImportError, Imported,
};

/// The normalised rule snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Content hash (16 hex digits of SHA-256 over the normalised content).
    #[serde(default)]
    pub version: String,
    /// When the snapshot was taken (RFC 3339, UTC).
    #[serde(default)]
    pub taken_at: String,
    /// ESG rules, in priority order (new before old, then `order`).
    pub rules: Vec<Rule>,
    /// Address templates (`ipm-…`) by id.
    #[serde(default)]
    pub address_templates: BTreeMap<String, AddressTemplate>,
    /// Address template groups (`ipmg-…`) by id.
    #[serde(default)]
    pub address_template_groups: BTreeMap<String, TemplateGroup>,
    /// Service templates (`ppm-…`) by id.
    #[serde(default)]
    pub service_templates: BTreeMap<String, ServiceTemplate>,
    /// Service template groups (`ppmg-…`) by id.
    #[serde(default)]
    pub service_template_groups: BTreeMap<String, TemplateGroup>,
    /// Members of instances, resource groups and tags that the topology cannot give, keyed
    /// `<kind>:<content>` (e.g. `tag:{"Key":"env","Value":"prod"}`), as addresses.
    #[serde(default)]
    pub members: BTreeMap<String, Vec<String>>,
    /// VPCs.
    #[serde(default)]
    pub vpcs: Vec<Vpc>,
    /// Subnets.
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// Elastic network interfaces.
    #[serde(default)]
    pub enis: Vec<Eni>,
    /// CVM instances, for their names (absent from snapshots taken without them, which keep
    /// their version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<Instance>,
    /// Problems noticed while building (not part of the version).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One ESG rule as the API gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Rule id (`RuleUuid` / `Id`).
    pub uuid: String,
    /// Priority position (`OrderIndex`; 1 is the top).
    pub order: u64,
    /// New or old ESG.
    #[serde(default)]
    pub generation: Generation,
    /// accept, drop or observe.
    pub action: RuleAction,
    /// Whether the rule is enabled.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where traffic comes from.
    pub source: Endpoint,
    /// Where traffic goes.
    pub destination: Endpoint,
    /// Protocol text (`ANY`, `TCP`, ...; empty with a service template).
    #[serde(default)]
    pub protocol: String,
    /// Port text (`80`, `80/90`, `-1/-1`, ...).
    #[serde(default)]
    pub port: String,
    /// Service template or group id, when the rule uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_template: Option<String>,
    /// The rule's description.
    #[serde(default)]
    pub description: String,
    /// Attributes beyond the match: region, scope, partition, dispatch state, and what the
    /// importer could not read.
    #[serde(flatten)]
    pub attributes: RuleAttributes,
}

fn yes() -> bool {
    true
}

/// A rule's attributes beyond source, destination, service and action (each absent from the
/// serialised snapshot when it has its default, so older snapshots keep their version).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleAttributes {
    /// Region of an old-ESG rule: the `Area` it was listed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `Scope`: where the rule applies (`SG` security groups, `LH` Lighthouse, `NONE`, or a
    /// comma list); empty when the API did not say, read as `SG`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// `RulePartition` (1 first, 2 middle, 3 last), when the API gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u8>,
    /// `IsDelay` 1: dispatch is delayed, so the rule may not be in effect yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delayed: bool,
    /// Old ESG `BothWay` 1: the rule is dispatched to both ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub both_ways: bool,
    /// API fields the importer could not read, with why; such a rule is indeterminate.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unreadable: BTreeMap<String, String>,
}

impl Rule {
    /// Whether the rule governs security-group traffic: enabled, and its `Scope` (if any)
    /// includes `SG` (or is `NONE`, "not set").
    pub fn in_effect(&self) -> bool {
        self.enabled && self.scope_includes_security_groups()
    }

    fn scope_includes_security_groups(&self) -> bool {
        let scope = self.attributes.scope.trim();
        scope.is_empty()
            || scope
                .split(',')
                .any(|s| !s.trim().eq_ignore_ascii_case("LH"))
    }

    /// Why the rule cannot be judged even where its addresses and services resolve: fields
    /// the importer could not read, or a delayed dispatch. `None` for an ordinary rule.
    pub fn doubt(&self) -> Option<String> {
        let mut reasons: Vec<String> = self
            .attributes
            .unreadable
            .iter()
            .map(|(field, why)| format!("{field} unreadable: {why}"))
            .collect();
        if self.attributes.delayed {
            reasons.push("dispatch delayed (IsDelay 1): may not be in effect yet".to_string());
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// The evaluation order: new ESG before old, then partition (first, middle, last; a rule
    /// without one counts as middle), then `OrderIndex`, then id ([`IdOrder`]: numeric ids by
    /// value, so `9` comes before `100`).
    pub fn priority(&self) -> (Generation, u8, u64, IdOrder<'_>) {
        (
            self.generation,
            self.attributes.partition.unwrap_or(2),
            self.order,
            IdOrder::of(&self.uuid),
        )
    }
}

/// A rule id as it orders ties: ids of digits by their value (`9` before `100`; the API's ids
/// are numbers), before any other id, which orders as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdOrder<'a> {
    /// An id of at most 38 digits, by value (then as text: `09` after `9`).
    Number(u128, &'a str),
    /// Any other id, as text.
    Text(&'a str),
}

impl<'a> IdOrder<'a> {
    /// The order key of `id`.
    pub fn of(id: &'a str) -> Self {
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = id.parse() {
                return IdOrder::Number(n, id);
            }
        }
        IdOrder::Text(id)
    }
}

names! {
    /// Which ESG a rule belongs to; new-ESG rules are evaluated first.
    #[derive(Default, Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    #[strum(serialize_all = "lowercase")]
    pub enum Generation {
        /// The new ESG (source → destination rules without direction).
        #[default]
        New,
        /// The old ESG (per-direction lists).
        Old,
    }
}

names! {
    /// What a rule does.
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    #[strum(serialize_all = "lowercase")]
    pub enum RuleAction {
        /// Allow (`accept`, Strategy 2): terminal.
        Accept,
        /// Block (`drop`, Strategy 1): terminal.
        Drop,
        /// Observe (`log`, code 0): records a hit, evaluation continues.
        Observe,
        /// An action the importer could not read (the rule is indeterminate).
        Unknown,
    }
}

impl RuleAction {
    /// Parses the API's `RuleAction` text (`accept`, `drop`, `log`, and the isolation variants).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "accept" | "isolateinaccept" | "isolateoutaccept" => Ok(RuleAction::Accept),
            "drop" | "isolateindrop" | "isolateoutdrop" => Ok(RuleAction::Drop),
            "log" | "observe" => Ok(RuleAction::Observe),
            other => Err(format!("action {other:?} is not accept, drop or log")),
        }
    }

    /// Parses a `Strategy` code: 1 block, 2 allow, 0 observe (DescribeCfwRules' coding; the
    /// rule-list API documents no observe code).
    pub(crate) fn from_strategy(code: i64) -> Result<Self, String> {
        match code {
            0 => Ok(RuleAction::Observe),
            1 => Ok(RuleAction::Drop),
            2 => Ok(RuleAction::Accept),
            other => Err(format!(
                "strategy {other} is not 0 (observe), 1 (block) or 2 (allow)"
            )),
        }
    }

    /// Whether the first match of such a rule ends evaluation.
    pub fn is_terminal(self) -> bool {
        matches!(self, RuleAction::Accept | RuleAction::Drop)
    }
}

/// A rule's source or destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// What `content` is.
    pub kind: EndpointKind,
    /// The API's content: a CIDR, a template id, an instance id, a tag JSON, ...
    pub content: String,
    /// Addresses the API resolved for it (rule-list API), if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved: Vec<String>,
}

/// Kinds of rule endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// IP or CIDR.
    Net,
    /// Address template or group (`ipm-…`, `ipmg-…`).
    Template,
    /// An asset: instance, ENI, subnet, VPC, CLB, database.
    Instance,
    /// An asset group.
    ResourceGroup,
    /// A tag (`{"Key":…,"Value":…}`).
    Tag,
    /// A region.
    Region,
    /// A domain name (destination only).
    Domain,
    /// A type the importer could not read (the endpoint cannot be resolved).
    Unknown,
}

impl EndpointKind {
    /// Parses the new-ESG `SourceType`/`DestType` text.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "net" => Ok(EndpointKind::Net),
            "template" => Ok(EndpointKind::Template),
            "instance" => Ok(EndpointKind::Instance),
            "resourcegroup" => Ok(EndpointKind::ResourceGroup),
            "tag" => Ok(EndpointKind::Tag),
            "region" => Ok(EndpointKind::Region),
            "dnsparse" | "domain" => Ok(EndpointKind::Domain),
            other => Err(format!("type {other:?} is not net, template, instance, resourcegroup, tag, region or dnsparse")),
        }
    }

    /// Maps the rule-list API's integer type codes.
    pub(crate) fn from_code(code: i64) -> Result<Self, String> {
        match code {
            0 => Ok(EndpointKind::Net),
            1..=6 | 16 | 24 | 25 => Ok(EndpointKind::Instance),
            7 => Ok(EndpointKind::Template),
            8 => Ok(EndpointKind::Tag),
            9 | 10 => Ok(EndpointKind::Region),
            20 => Ok(EndpointKind::Domain),
            100 => Ok(EndpointKind::ResourceGroup),
            other => Err(format!("type code {other} is unknown")),
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Net => "net",
            EndpointKind::Template => "template",
            EndpointKind::Instance => "instance",
            EndpointKind::ResourceGroup => "resourcegroup",
            EndpointKind::Tag => "tag",
            EndpointKind::Region => "region",
            EndpointKind::Domain => "domain",
            EndpointKind::Unknown => "unknown",
        }
    }
}

/// An address template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressTemplate {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// IPs, CIDRs and ranges.
    pub addresses: Vec<String>,
}

/// A service template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTemplate {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Entries such as `tcp:80`, `udp:53-60`, `icmp`, `gre`.
    pub services: Vec<String>,
    /// Entries the importer could not read: rules using the template are indeterminate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// A template group: a name and member template ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateGroup {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Member template ids.
    pub members: Vec<String>,
}

/// A VPC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    /// `vpc-…`.
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Primary and secondary CIDR blocks (IPv4 and IPv6).
    pub cidrs: Vec<String>,
}

/// A subnet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// `subnet-…`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// CIDR blocks (IPv4, and IPv6 if any).
    pub cidrs: Vec<String>,
}

/// An elastic network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eni {
    /// `eni-…`.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its subnet.
    pub subnet_id: String,
    /// Its name (`NetworkInterfaceName`; absent when empty, so older snapshots keep their
    /// version).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The instance it is attached to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Private addresses (IPv4 and IPv6).
    pub ips: Vec<String>,
}

/// A CVM instance (`DescribeInstances`): only what names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// `ins-…`.
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
}

/// Loading or saving a snapshot file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a snapshot.
    #[error("{path} is not a valid snapshot: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with its location.
        message: String,
    },
}

impl Snapshot {
    /// Sorts everything into canonical order and recomputes `version`.
    pub fn seal(&mut self) {
        self.rules.sort_by(|a, b| a.priority().cmp(&b.priority()));
        for template in self.address_templates.values_mut() {
            template.addresses.sort();
            template.addresses.dedup();
        }
        for template in self.service_templates.values_mut() {
            template.services.sort();
            template.services.dedup();
            template.skipped.sort();
            template.skipped.dedup();
        }
        for group in self
            .address_template_groups
            .values_mut()
            .chain(self.service_template_groups.values_mut())
        {
            group.members.sort();
            group.members.dedup();
        }
        for members in self.members.values_mut() {
            members.sort();
            members.dedup();
        }
        for rule in &mut self.rules {
            rule.source.resolved.sort();
            rule.source.resolved.dedup();
            rule.destination.resolved.sort();
            rule.destination.resolved.dedup();
        }
        self.vpcs.sort_by(|a, b| a.id.cmp(&b.id));
        self.subnets.sort_by(|a, b| a.id.cmp(&b.id));
        self.enis.sort_by(|a, b| a.id.cmp(&b.id));
        self.instances.sort_by(|a, b| a.id.cmp(&b.id));
        for vpc in &mut self.vpcs {
            vpc.cidrs.sort();
            vpc.cidrs.dedup();
        }
        for subnet in &mut self.subnets {
            subnet.cidrs.sort();
        }
        for eni in &mut self.enis {
            eni.ips.sort();
            eni.ips.dedup();
        }
        self.warnings.sort();
        self.warnings.dedup();
        self.version = self.content_hash();
    }

    /// The content hash: everything but `version`, `taken_at` and `warnings`, in canonical order.
    pub(crate) fn content_hash(&self) -> String {
        #[derive(Serialize)]
        struct Content<'a> {
            rules: &'a [Rule],
            address_templates: &'a BTreeMap<String, AddressTemplate>,
            address_template_groups: &'a BTreeMap<String, TemplateGroup>,
            service_templates: &'a BTreeMap<String, ServiceTemplate>,
            service_template_groups: &'a BTreeMap<String, TemplateGroup>,
            members: &'a BTreeMap<String, Vec<String>>,
            vpcs: &'a [Vpc],
            subnets: &'a [Subnet],
            enis: &'a [Eni],
            #[serde(skip_serializing_if = "<[Instance]>::is_empty")]
            instances: &'a [Instance],
        }
        let content = Content {
            rules: &self.rules,
            address_templates: &self.address_templates,
            address_template_groups: &self.address_template_groups,
            service_templates: &self.service_templates,
            service_template_groups: &self.service_template_groups,
            members: &self.members,
            vpcs: &self.vpcs,
            subnets: &self.subnets,
            enis: &self.enis,
            instances: &self.instances,
        };
        // Streamed into the hash: the text of a 20,000-rule snapshot (10 MB) is never held
        // beside the file it was read from and the parsed snapshot.
        let mut hasher = Sha256::new();
        serde_json::to_writer(&mut hasher, &content).expect("plain data serializes");
        hex::encode(&hasher.finalize()[..8])
    }

    /// Reads a snapshot file.
    pub fn load(path: &Path) -> Result<Self, SnapshotError> {
        let bytes = std::fs::read(path).map_err(|source| SnapshotError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&bytes).map_err(|message| SnapshotError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses snapshot JSON, naming the path of the first field that does not fit.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        // The fast path parses without tracking paths (this is on every cold start); only a
        // document that fails is parsed again to say where.
        let snapshot: Self = serde_json::from_slice(bytes).or_else(|_| {
            let mut deserializer = serde_json::Deserializer::from_slice(bytes);
            serde_path_to_error::deserialize(&mut deserializer)
                .map_err(|err| format!("at `{}`: {}", err.path(), err.inner()))
        })?;
        snapshot.verify()?;
        Ok(snapshot)
    }

    /// Checks that `version` is the hash of the content: a snapshot whose content was changed
    /// under a genuine version (a rule flipped from drop to accept) is refused, and so is one
    /// without a version.
    pub fn verify(&self) -> Result<(), String> {
        let hash = self.content_hash();
        if self.version == hash {
            Ok(())
        } else if self.version.is_empty() {
            // The hash its content has is not told: it is what a hand edit would need to pass.
            Err("it has no version: build snapshots with `esgflow snapshot build` or the sync function".to_string())
        } else {
            Err(format!(
                "its version {:?} is not the hash of its content: it was altered or damaged after it was built",
                self.version
            ))
        }
    }

    /// Writes the snapshot as pretty JSON, atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), SnapshotError> {
        let io = |source| SnapshotError::Io {
            path: path.display().to_string(),
            source,
        };
        let json = serde_json::to_vec_pretty(self).expect("plain data serializes");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Snapshots for the crate's unit tests: the bundled sample (`samples/snapshot.json`) and variants
/// of it, each with a version of its own. Generated rule sets live in the local toolkit.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::Snapshot;

    /// The sample snapshot (`variant` 0), or a variant whose first rule's description differs.
    pub(crate) fn sample(variant: u32) -> Snapshot {
        let mut snapshot = Snapshot::from_json(include_bytes!("../../../../samples/snapshot.json"))
            .expect("the sample snapshot parses");
        if variant > 0 {
            snapshot.rules[0].description = format!("variant {variant}");
            snapshot.seal();
        }
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_codes() {
        assert_eq!(RuleAction::parse("LOG").unwrap(), RuleAction::Observe);
        assert_eq!(
            RuleAction::parse("isolateindrop").unwrap(),
            RuleAction::Drop
        );
        assert!(RuleAction::parse("reject").unwrap_err().contains("reject"));
        assert_eq!(RuleAction::from_strategy(1).unwrap(), RuleAction::Drop);
        assert_eq!(RuleAction::from_strategy(2).unwrap(), RuleAction::Accept);
        assert!(RuleAction::from_strategy(7).is_err());
        assert_eq!(EndpointKind::from_code(3).unwrap(), EndpointKind::Instance);
        assert_eq!(
            EndpointKind::from_code(100).unwrap(),
            EndpointKind::ResourceGroup
        );
        assert_eq!(
            EndpointKind::parse("dnsparse").unwrap(),
            EndpointKind::Domain
        );
    }

    /// The version is checked against the content on every load: a rule flipped from drop to
    /// accept under the genuine version is refused, so is a snapshot without a version, and the
    /// genuine one loads.
    #[test]
    fn a_snapshot_is_verified_against_its_version() {
        let text = include_str!("../../../../samples/snapshot.json");
        let genuine = Snapshot::from_json(text.as_bytes()).unwrap();
        genuine.verify().unwrap();
        let flipped = text.replacen("\"action\": \"drop\"", "\"action\": \"accept\"", 1);
        assert_ne!(flipped, text);
        let err = Snapshot::from_json(flipped.as_bytes()).unwrap_err();
        assert!(
            err.contains(&genuine.version) && err.contains("not the hash of its content"),
            "{err}"
        );
        // Neither error tells the hash the altered content has (issue #36): what a hand edit
        // would need to pass.
        let altered: Snapshot = serde_json::from_str(&flipped).unwrap();
        assert!(!err.contains(&altered.content_hash()), "{err}");
        let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
        value.as_object_mut().unwrap().remove("version");
        let err = Snapshot::from_json(value.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("no version"), "{err}");
        assert!(!err.contains(&genuine.version), "{err}");
        // Warnings and the time taken are not content: changing them keeps the snapshot valid.
        value["version"] = serde_json::json!(genuine.version);
        value["warnings"] = serde_json::json!(["added later"]);
        Snapshot::from_json(value.to_string().as_bytes()).unwrap();
    }

    #[test]
    fn a_snapshot_that_is_not_json_names_the_problem() {
        assert!(Snapshot::from_json(b"{").is_err());
        let err = Snapshot::from_json(br#"{"rules":[{"uuid":"1","order":1,"action":"maybe"}]}"#)
            .unwrap_err();
        assert!(err.contains("rules[0].action"), "{err}");
    }
}
