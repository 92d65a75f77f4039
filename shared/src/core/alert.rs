//! Alerts: records grouped per rule per batch, filtered by kind, mute lists, a minimum flow count
//! and a per-rule cooldown, then sent to chat robots and webhooks under each platform's rate cap.
//!
//! The policy (what to send) is plain data and a clock; the channels (how to send) are adapters
//! (`crate::adapters::chat`). Cooldown state lives behind the small [`AlertState`] port;
//! [`MemoryState`] keeps it in the warm instance, the Redis adapter (`crate::adapters::redis`)
//! across instances.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::core::engine::Scope;
use crate::core::records::{HitRecord, Reason, Record, RecordType};

/// What is alerted and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertPolicy {
    /// Record types that raise alerts (default: `block_hit`).
    pub kinds: BTreeSet<RecordType>,
    /// Fewest flows for one rule in one batch before it alerts.
    pub min_flows: u64,
    /// No repeat for the same rule within this window ...
    pub cooldown: Duration,
    /// ... unless its flow count reached this many times the last alerted count.
    pub regrow_factor: f64,
    /// Rule uuids never alerted.
    pub muted_rules: BTreeSet<String>,
    /// Rules whose description contains one of these (case-insensitive) are never alerted.
    pub muted_descriptions: Vec<String>,
    /// The region the flows were audited in, named in every alert.
    pub region: Option<String>,
    /// The console's address: alerts about flows link to it, explaining their top flow.
    pub console_url: Option<String>,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        Self {
            kinds: BTreeSet::from([RecordType::BlockHit]),
            min_flows: 1,
            cooldown: Duration::from_secs(900),
            regrow_factor: 2.0,
            muted_rules: BTreeSet::new(),
            muted_descriptions: Vec::new(),
            region: None,
            console_url: None,
        }
    }
}

/// One flow line of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopFlow {
    /// Source.
    pub src: IpAddr,
    /// Destination.
    pub dst: IpAddr,
    /// Destination port.
    pub dst_port: Option<u16>,
    /// Protocol number.
    pub protocol: u8,
    /// Scope.
    pub scope: Scope,
    /// Records of this flow in the batch.
    pub count: u64,
    /// What the snapshot calls the source: its instance's name, else its ENI's name, else its
    /// instance id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_name: Option<String>,
    /// The same for the destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_name: Option<String>,
}

/// One top flow: source, destination, destination port, protocol and scope.
type FlowKey = (IpAddr, IpAddr, Option<u16>, u8, Scope);

/// An address with the name the snapshot has for it: `10.0.1.5 (web-01)`.
fn named(ip: IpAddr, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{ip} ({})", inert(name)),
        None => ip.to_string(),
    }
}

/// `text` as it may appear inside a chat message: on one line (so it cannot start a heading, a
/// quote or a list), with the characters that open links, images and HTML tags (`[ ] < >`)
/// shown as their full-width forms. The platforms document no escape for their markdown, so the
/// text is made inert under every reading rather than escaped; emphasis marks are left alone
/// (at worst cosmetic, and common in names such as `web_01`).
pub(crate) fn inert(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            '[' => out.push('［'),
            ']' => out.push('］'),
            '<' => out.push('＜'),
            '>' => out.push('＞'),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The instance's name, else the ENI's name, else the instance id.
fn end_name(
    instance_name: &Option<compact_str::CompactString>,
    eni_name: &Option<compact_str::CompactString>,
    instance: &Option<compact_str::CompactString>,
) -> Option<String> {
    instance_name
        .as_ref()
        .or(eni_name.as_ref())
        .or(instance.as_ref())
        .map(|name| name.to_string())
}

/// One alert: one rule (or, for unattributed blocks, one reason) in one batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The record type alerted.
    pub kind: RecordType,
    /// Rule id (empty for unattributed blocks without a rule).
    pub rule_uuid: String,
    /// `OrderIndex`.
    pub rule_order: Option<u64>,
    /// Rule description, or the reason for unattributed blocks.
    pub rule_description: String,
    /// The VPCs the flows touch, `vpc-… (name)`, most flows first (at most 3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vpcs: Vec<String>,
    /// The region the flows were audited in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The console, explaining the top flow (when its address is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Why an unattributed block happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Records in the group.
    pub flows: u64,
    /// Distinct sources.
    pub sources: usize,
    /// Distinct destinations.
    pub destinations: usize,
    /// The five flows seen most, most first.
    pub top_flows: Vec<TopFlow>,
    /// Earliest window start.
    pub first_seen: u64,
    /// Latest window end.
    pub last_seen: u64,
    /// Snapshot version.
    pub snapshot_version: String,
    /// One line per item, for alerts that list changes rather than flows (rule changes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// The group's records (for the generic webhook), at most [`MAX_RECORDS_PER_ALERT`].
    #[serde(skip)]
    pub records: Vec<Record>,
}

/// Records carried by one webhook alert.
pub(crate) const MAX_RECORDS_PER_ALERT: usize = 50;

impl Alert {
    /// The cooldown key: kind and rule.
    pub fn key(&self) -> String {
        format!(
            "{}:{}",
            self.kind.as_str(),
            if self.rule_uuid.is_empty() {
                &self.rule_description
            } else {
                &self.rule_uuid
            }
        )
    }

    /// A short title.
    pub(crate) fn title(&self) -> String {
        self.title_for(&self.rule_description)
    }

    /// The title with `description` in place of the rule's description.
    fn title_for(&self, description: &str) -> String {
        let what = match self.kind {
            RecordType::BlockHit => "ESG block",
            RecordType::ObserveHit => "ESG observe rule matched",
            RecordType::UnattributedBlock => match self.reason {
                Some(Reason::IndeterminateRule) => {
                    "Rejected; an ESG rule that cannot be resolved may have blocked it"
                }
                Some(Reason::EsgAllows) => {
                    "Rejected although the ESG allows it (network ACL or another security group)"
                }
                Some(Reason::Reply) => "Reply rejected (network ACL or another security group)",
                Some(Reason::NoEsgRule | Reason::EsgBlocks) | None => {
                    "Rejected without an ESG rule (network ACL or another security group)"
                }
            },
            RecordType::SnapshotDrift => "Snapshot drift",
            RecordType::Traffic => "Traffic",
            // A change alert without changes: the run could not read the rules.
            RecordType::RuleChange if self.flows == 0 => "ESG rules not read",
            RecordType::RuleChange => "ESG rules changed",
            RecordType::RuleHygiene => "Rule hygiene",
            RecordType::RuleHits => "Rule hits",
        };
        if !self.details.is_empty() {
            format!("{what}: {description}")
        } else if self.rule_uuid.is_empty() {
            format!("{what}: {description} ({} flows)", self.flows)
        } else {
            format!(
                "{what}: rule {} \"{description}\" ({} flows)",
                self.rule_uuid, self.flows
            )
        }
    }

    /// The message as Markdown (WeCom, DingTalk). Text that rule and resource owners write
    /// (descriptions, names) is shown inert ([`inert`]).
    pub fn markdown(&self) -> String {
        let description = inert(&self.rule_description);
        let mut text = format!("### {}\n", self.title_for(&description));
        if !self.details.is_empty() {
            for line in &self.details {
                text.push_str(&format!("- {}\n", inert(line)));
            }
            if !self.snapshot_version.is_empty() {
                text.push_str(&format!("\nsnapshot {}\n", self.snapshot_version));
            }
            return text;
        }
        if let Some(order) = self.rule_order {
            text.push_str(&format!(
                "> rule **{}** (order {order}): {description}\n",
                self.rule_uuid
            ));
        }
        text.push_str(&format!(
            "> {} flows from {} sources to {} destinations\n",
            self.flows, self.sources, self.destinations
        ));
        let vpcs = inert(&self.vpcs.join(", "));
        match (self.vpcs.is_empty(), &self.region) {
            (false, Some(region)) => text.push_str(&format!("> VPC {vpcs} in {region}\n")),
            (false, None) => text.push_str(&format!("> VPC {vpcs}\n")),
            (true, Some(region)) => text.push_str(&format!("> region {region}\n")),
            (true, None) => {}
        }
        text.push_str(&format!(
            "> window {} – {} (UTC)\n",
            utc(self.first_seen),
            utc(self.last_seen)
        ));
        text.push_str("\ntop flows:\n");
        for flow in &self.top_flows {
            let port = flow.dst_port.map(|p| format!(":{p}")).unwrap_or_default();
            text.push_str(&format!(
                "- {} → {}{port} {} ({}) ×{}\n",
                named(flow.src, flow.src_name.as_deref()),
                named(flow.dst, flow.dst_name.as_deref()),
                crate::core::flowlog::protocol::name(flow.protocol),
                flow.scope.as_str(),
                flow.count
            ));
        }
        if let Some(link) = &self.link {
            text.push_str(&format!("\n[Explain in the esgflow console]({link})\n"));
        }
        text.push_str(&format!("\nsnapshot {}\n", self.snapshot_version));
        text
    }

    /// The message as plain text (Feishu).
    pub fn text(&self) -> String {
        let mut text = self
            .markdown()
            .replace("### ", "")
            .replace("> ", "")
            .replace("**", "");
        if let Some(link) = &self.link {
            text = text.replace(
                &format!("[Explain in the esgflow console]({link})"),
                &format!("Explain in the esgflow console: {link}"),
            );
        }
        text
    }
}

/// The VPCs a group of hits touches, `vpc-… (name)`, most hits first, at most three.
fn vpcs_of(hits: &[&HitRecord]) -> Vec<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for hit in hits {
        let ends = &hit.ends;
        for (vpc, name) in [
            (&ends.src_vpc, &ends.src_vpc_name),
            (&ends.dst_vpc, &ends.dst_vpc_name),
        ] {
            if let Some(vpc) = vpc {
                let label = match name {
                    Some(name) => format!("{vpc} ({name})"),
                    None => vpc.to_string(),
                };
                *counts.entry(label).or_default() += 1;
            }
        }
    }
    let mut vpcs: Vec<(String, usize)> = counts.into_iter().collect();
    vpcs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    vpcs.into_iter().take(3).map(|(label, _)| label).collect()
}

/// The console's explanation of one flow: the page reads the flow from the fragment (which
/// never reaches a server log) and explains it against the current snapshot.
fn console_link(base: &str, flow: &TopFlow) -> String {
    let protocol = match flow.protocol {
        crate::core::flowlog::protocol::TCP => "tcp",
        crate::core::flowlog::protocol::UDP => "udp",
        crate::core::flowlog::protocol::ICMP => "icmp",
        _ => "any",
    };
    let mut link = format!(
        "{}/#src={}&dst={}&protocol={protocol}",
        base.trim_end_matches('/'),
        flow.src,
        flow.dst
    );
    if let Some(port) = flow.dst_port.filter(|_| matches!(protocol, "tcp" | "udp")) {
        link.push_str(&format!("&port={port}"));
    }
    link
}

fn utc(seconds: u64) -> String {
    chrono::DateTime::from_timestamp(seconds as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| seconds.to_string())
}

/// Groups a batch's records into alerts (one per kind and rule), most flows first, applying the
/// kinds, the mute lists and the minimum flow count.
pub fn group(records: &[Record], policy: &AlertPolicy) -> Vec<Alert> {
    let mut groups: BTreeMap<(RecordType, String), Vec<&HitRecord>> = BTreeMap::new();
    for record in records {
        let Record::Hit(hit) = record else { continue };
        if !policy.kinds.contains(&hit.record_type) {
            continue;
        }
        let key = match &hit.rule {
            Some(rule) => rule.rule_uuid.clone(),
            None => String::new(),
        };
        let key = if key.is_empty() {
            format!("reason:{}", hit.reason.map_or("", Reason::as_str))
        } else {
            key
        };
        groups.entry((hit.record_type, key)).or_default().push(hit);
    }
    let mut alerts = Vec::new();
    if policy.kinds.contains(&RecordType::RuleChange) {
        alerts.extend(rule_change_alert(records, policy));
    }
    for ((kind, _), hits) in groups {
        let first = hits[0];
        let (uuid, order, description) = match &first.rule {
            Some(rule) => (
                rule.rule_uuid.clone(),
                Some(rule.rule_order),
                rule.rule_description.clone(),
            ),
            None => (
                String::new(),
                None,
                first.reason.map_or("no rule", Reason::as_str).to_string(),
            ),
        };
        let description_lower = description.to_lowercase();
        if policy.muted_rules.contains(&uuid)
            || policy
                .muted_descriptions
                .iter()
                .any(|p| !p.is_empty() && description_lower.contains(&p.to_lowercase()))
        {
            continue;
        }
        if (hits.len() as u64) < policy.min_flows {
            continue;
        }
        let mut flows: HashMap<FlowKey, (u64, &HitRecord)> = HashMap::new();
        for hit in &hits {
            flows
                .entry((
                    hit.src_ip,
                    hit.dst_ip,
                    hit.dst_port,
                    hit.protocol,
                    hit.scope,
                ))
                .or_insert((0, hit))
                .0 += 1;
        }
        let mut top: Vec<TopFlow> = flows
            .into_iter()
            .map(
                |((src, dst, dst_port, protocol, scope), (count, hit))| TopFlow {
                    src,
                    dst,
                    dst_port,
                    protocol,
                    scope,
                    count,
                    src_name: end_name(
                        &hit.ends.src_instance_name,
                        &hit.ends.src_eni_name,
                        &hit.ends.src_instance,
                    ),
                    dst_name: end_name(
                        &hit.ends.dst_instance_name,
                        &hit.ends.dst_eni_name,
                        &hit.ends.dst_instance,
                    ),
                },
            )
            .collect();
        top.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then((a.src, a.dst, a.dst_port).cmp(&(b.src, b.dst, b.dst_port)))
        });
        top.truncate(5);
        let link = match (&policy.console_url, top.first()) {
            (Some(base), Some(flow)) => Some(console_link(base, flow)),
            _ => None,
        };
        alerts.push(Alert {
            kind,
            rule_uuid: uuid,
            rule_order: order,
            rule_description: description,
            vpcs: vpcs_of(&hits),
            region: policy.region.clone(),
            link,
            reason: first.reason,
            flows: hits.len() as u64,
            sources: hits.iter().map(|h| h.src_ip).collect::<BTreeSet<_>>().len(),
            destinations: hits.iter().map(|h| h.dst_ip).collect::<BTreeSet<_>>().len(),
            top_flows: top,
            first_seen: hits.iter().map(|h| h.start).min().unwrap_or(0),
            last_seen: hits.iter().map(|h| h.end).max().unwrap_or(0),
            snapshot_version: first.snapshot_version.to_string(),
            details: Vec::new(),
            records: hits
                .iter()
                .take(MAX_RECORDS_PER_ALERT)
                .map(|h| Record::Hit(Box::new((*h).clone())))
                .collect(),
        });
    }
    alerts.sort_by(|a, b| b.flows.cmp(&a.flows).then(a.key().cmp(&b.key())));
    alerts
}

/// Lines shown in one rule-change alert; the rest are counted.
pub(crate) const MAX_CHANGE_LINES: usize = 20;

/// One alert for all the rule changes of a snapshot update.
fn rule_change_alert(records: &[Record], policy: &AlertPolicy) -> Option<Alert> {
    let changes: Vec<&crate::core::records::RuleChangeRecord> = records
        .iter()
        .filter_map(|r| match r {
            Record::RuleChange(c) => Some(c.as_ref()),
            _ => None,
        })
        .collect();
    let first = changes.first()?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for change in &changes {
        *counts.entry(change.change).or_default() += 1;
    }
    let summary = counts
        .iter()
        .map(|(change, n)| format!("{n} {change}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut details: Vec<String> = changes
        .iter()
        .take(MAX_CHANGE_LINES)
        .map(|c| {
            let fields = c
                .fields
                .as_deref()
                .map(|f| format!(" [{f}]"))
                .unwrap_or_default();
            format!(
                "{} rule {} (order {}, {}): {}{fields}",
                c.change,
                c.rule_uuid,
                c.rule_order,
                c.rule_action.as_str(),
                c.rule_description
            )
        })
        .collect();
    if changes.len() > MAX_CHANGE_LINES {
        details.push(format!("… and {} more", changes.len() - MAX_CHANGE_LINES));
    }
    Some(Alert {
        flows: changes.len() as u64,
        records: changes
            .iter()
            .take(MAX_RECORDS_PER_ALERT)
            .map(|c| Record::RuleChange(Box::new((*c).clone())))
            .collect(),
        ..change_alert(
            policy,
            format!(
                "{summary} (snapshot {} → {})",
                first.from_version, first.snapshot_version
            ),
            first.time,
            &first.snapshot_version,
            details,
        )
    })
}

/// A rule-change alert: a description, one line per item, no flows.
fn change_alert(
    policy: &AlertPolicy,
    description: String,
    time: u64,
    snapshot_version: &str,
    details: Vec<String>,
) -> Alert {
    Alert {
        kind: RecordType::RuleChange,
        rule_uuid: String::new(),
        rule_order: None,
        vpcs: Vec::new(),
        region: policy.region.clone(),
        link: None,
        reason: None,
        rule_description: description,
        flows: 0,
        sources: 0,
        destinations: 0,
        top_flows: Vec::new(),
        first_seen: time,
        last_seen: time,
        snapshot_version: snapshot_version.to_string(),
        details,
        records: Vec::new(),
    }
}

/// The rule-change alert of a run that could not read the rules (`None` when rule changes are
/// not alerted): `what` failed (a stable line, the cooldown's key), `details` say how and which
/// snapshot, `kept`, stays in force.
pub fn rules_not_read(
    what: &str,
    details: Vec<String>,
    kept: Option<&str>,
    time: u64,
    policy: &AlertPolicy,
) -> Option<Alert> {
    policy.kinds.contains(&RecordType::RuleChange).then(|| {
        change_alert(
            policy,
            what.to_string(),
            time,
            kept.unwrap_or_default(),
            details,
        )
    })
}

/// Time an alert's delivery leaves before the invocation's deadline, for the rest of the
/// invocation: the dispatcher starts no send, and a channel no retry, that would end later.
pub(crate) const DEADLINE_MARGIN: Duration = Duration::from_millis(300);

/// An alert a channel did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    /// What went wrong (never the channel's URL: it carries the robot's key or token).
    pub message: String,
    /// The channel did not answer in time: it is skipped for the rest of the batch.
    pub timed_out: bool,
}

/// Where alerts go: a chat robot or a webhook.
pub(crate) trait AlertChannel: Send + Sync {
    /// The channel's name in logs and summaries (its kind, never its URL).
    fn name(&self) -> &'static str;
    /// The platform's published rate limits.
    fn limits(&self) -> &'static [RateLimit];
    /// Sends `alert`, as of `now`, retrying within `deadline`; done only when the platform
    /// accepted it.
    fn deliver<'a>(
        &'a self,
        alert: &'a Alert,
        now: SystemTime,
        deadline: std::time::Instant,
    ) -> crate::core::ports::BoxFuture<'a, Result<(), Undelivered>>;
}

/// Cooldown state: when each alert key was last sent and with how many flows.
pub(crate) trait AlertState: Send {
    /// Decides whether an alert with `flows` flows for `key` may go out at `now`, and if so
    /// records it. Repeats within `cooldown` go out only when `flows` reached `regrow_factor`
    /// times the last count.
    fn admit<'a>(
        &'a mut self,
        key: &'a str,
        flows: u64,
        now: SystemTime,
        policy: &'a AlertPolicy,
    ) -> crate::core::ports::BoxFuture<'a, Admission>;

    /// Takes back an admission no channel delivered, so the cooldown starts only once a
    /// message got through: the entry the admission wrote (at `now`, with `flows`) is replaced by
    /// what was there before, if it is still the admission's own.
    fn release<'a>(
        &'a mut self,
        key: &'a str,
        flows: u64,
        now: SystemTime,
        previous: Option<Sent>,
        policy: &'a AlertPolicy,
    ) -> crate::core::ports::BoxFuture<'a, ()>;
}

/// The last alert sent for a key: when (Unix ms) and with how many flows.
pub(crate) type Sent = (u64, u64);

/// What [`AlertState::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Held back by the cooldown.
    Held,
    /// May go out; the entry it replaced, for [`AlertState::release`].
    Admitted {
        /// The key's previous entry.
        previous: Option<Sent>,
    },
}

/// Unix milliseconds of `time`.
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Cooldown state kept in the warm instance (lost at a cold start, not shared between concurrent
/// instances).
#[derive(Debug, Default)]
pub(crate) struct MemoryState {
    last: HashMap<String, Sent>,
}

impl AlertState for MemoryState {
    fn admit<'a>(
        &'a mut self,
        key: &'a str,
        flows: u64,
        now: SystemTime,
        policy: &'a AlertPolicy,
    ) -> crate::core::ports::BoxFuture<'a, Admission> {
        let previous = self.last.get(key).copied();
        let admission = if self.admit_now(key, flows, now, policy) {
            Admission::Admitted { previous }
        } else {
            Admission::Held
        };
        Box::pin(async move { admission })
    }

    fn release<'a>(
        &'a mut self,
        key: &'a str,
        flows: u64,
        now: SystemTime,
        previous: Option<Sent>,
        _policy: &'a AlertPolicy,
    ) -> crate::core::ports::BoxFuture<'a, ()> {
        if self.last.get(key) == Some(&(unix_ms(now), flows)) {
            match previous {
                Some(previous) => self.last.insert(key.to_string(), previous),
                None => self.last.remove(key),
            };
        }
        Box::pin(async {})
    }
}

impl MemoryState {
    /// The decision of [`AlertState::admit`], synchronously.
    pub(crate) fn admit_now(
        &mut self,
        key: &str,
        flows: u64,
        now: SystemTime,
        policy: &AlertPolicy,
    ) -> bool {
        let now_ms = unix_ms(now);
        if let Some(&(sent, count)) = self.last.get(key) {
            let within =
                now_ms.saturating_sub(sent) < policy.cooldown.as_millis() as u64 || now_ms < sent;
            if within && (flows as f64) < count as f64 * policy.regrow_factor {
                return false;
            }
        }
        self.last.insert(key.to_string(), (now_ms, flows));
        true
    }
}

/// A platform's published rate limit: at most `max` messages in any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimit {
    /// Messages allowed in the window.
    pub max: usize,
    /// The sliding window.
    pub window: Duration,
}

impl RateLimit {
    /// `max` messages a second.
    pub(crate) const fn per_second(max: usize) -> Self {
        Self {
            max,
            window: Duration::from_secs(1),
        }
    }

    /// `max` messages a minute.
    pub(crate) const fn per_minute(max: usize) -> Self {
        Self {
            max,
            window: Duration::from_secs(60),
        }
    }
}

/// Sliding windows per channel, so no platform's published rate limits are exceeded.
#[derive(Debug, Default)]
pub(crate) struct RateCap {
    sent: HashMap<String, Vec<SystemTime>>,
}

impl RateCap {
    /// How long `channel` must wait from `now` before one more message keeps within every one of
    /// `limits` (zero: it may send at once).
    pub fn wait(&mut self, channel: &str, limits: &[RateLimit], now: SystemTime) -> Duration {
        let longest = limits.iter().map(|l| l.window).max().unwrap_or_default();
        let sent = self.sent.entry(channel.to_string()).or_default();
        let age = |t: &SystemTime| now.duration_since(*t).unwrap_or_default();
        sent.retain(|t| age(t) < longest);
        limits
            .iter()
            .filter_map(|limit| {
                let within: Vec<&SystemTime> =
                    sent.iter().filter(|t| age(t) < limit.window).collect();
                // Full: wait until the oldest message that makes it full leaves the window.
                let oldest = within.len().checked_sub(limit.max)?;
                Some(limit.window.saturating_sub(age(within[oldest])))
            })
            .max()
            .unwrap_or_default()
    }

    /// Whether `channel` may send one more message at `now` under `limits`; if so, counts it.
    pub fn take(&mut self, channel: &str, limits: &[RateLimit], now: SystemTime) -> bool {
        if !self.wait(channel, limits, now).is_zero() {
            return false;
        }
        self.sent.entry(channel.to_string()).or_default().push(now);
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::records::RuleRef;

    pub(crate) fn hit(
        kind: RecordType,
        rule: &str,
        description: &str,
        src: &str,
        dst: &str,
        port: u16,
    ) -> Record {
        Record::hit(HitRecord {
            record_type: kind,
            record_id: compact_str::format_compact!("{rule}{src}{dst}{port}"),
            time: 1763942460,
            start: 1763942400,
            end: 1763942460,
            account_id: "1".into(),
            eni: "eni-1".into(),
            direction: crate::core::engine::Direction::Egress,
            src_ip: src.parse().unwrap(),
            src_ip_num: crate::core::records::ipv4_number(src.parse().unwrap()),
            src_port: Some(40000),
            dst_ip: dst.parse().unwrap(),
            dst_ip_num: crate::core::records::ipv4_number(dst.parse().unwrap()),
            dst_port: Some(port),
            protocol: 6,
            protocol_name: crate::core::records::ProtocolName(6),
            icmp_type: None,
            icmp_code: None,
            fl_action: crate::core::flowlog::FlowAction::Reject,
            packets: Some(1),
            bytes: Some(60),
            scope: crate::core::engine::Scope::InterSubnet,
            ends: std::sync::Arc::new(crate::core::records::Ends {
                dst_vpc: Some("vpc-prod0001".into()),
                dst_vpc_name: Some("prod".into()),
                ..Default::default()
            }),
            decision: crate::core::engine::DecisionKind::Block,
            rule: (!rule.is_empty()).then(|| {
                std::sync::Arc::new(RuleRef {
                    rule_uuid: rule.into(),
                    rule_order: 3,
                    rule_generation: crate::core::snapshot::Generation::New,
                    rule_action: crate::core::snapshot::RuleAction::Drop,
                    rule_description: description.into(),
                    rule_source: "net 0.0.0.0/0".into(),
                    rule_destination: "net 10.0.0.0/16".into(),
                    rule_service: "TCP 22".into(),
                })
            }),
            deciding_rule_uuid: None,
            reason: rule.is_empty().then_some(Reason::NoEsgRule),
            indeterminate_rules: None,
            reply_by: None,
            snapshot_version: "v1".into(),
        })
    }

    #[test]
    fn groups_per_rule_with_counts_and_top_flows() {
        let mut records = Vec::new();
        for i in 0..7 {
            records.push(hit(
                RecordType::BlockHit,
                "7002",
                "block ssh",
                &format!("10.0.1.{}", i % 3),
                "10.0.3.10",
                22,
            ));
        }
        records.push(hit(
            RecordType::BlockHit,
            "7010",
            "block mysql",
            "10.0.1.1",
            "10.0.3.11",
            3306,
        ));
        records.push(hit(
            RecordType::ObserveHit,
            "7007",
            "observe",
            "10.0.1.1",
            "10.0.3.11",
            3306,
        ));
        let alerts = group(&records, &AlertPolicy::default());
        assert_eq!(alerts.len(), 2, "observe hits are opt-in");
        assert_eq!(alerts[0].rule_uuid, "7002");
        assert_eq!(alerts[0].flows, 7);
        assert_eq!(alerts[0].sources, 3);
        assert_eq!(alerts[0].destinations, 1);
        assert_eq!(alerts[0].top_flows[0].count, 3);
        let markdown = alerts[0].markdown();
        assert!(markdown.contains("rule **7002** (order 3): block ssh"));
        assert!(
            markdown.contains("> VPC vpc-prod0001 (prod)\n"),
            "{markdown}"
        );
        assert!(
            markdown.contains("→ 10.0.3.10:22 TCP (inter_subnet)"),
            "protocols by name: {markdown}"
        );
        let policy = AlertPolicy {
            kinds: BTreeSet::from([RecordType::BlockHit, RecordType::ObserveHit]),
            min_flows: 2,
            ..AlertPolicy::default()
        };
        let alerts = group(&records, &policy);
        assert_eq!(alerts.len(), 1, "min_flows drops the single-flow groups");
    }

    /// An alert names its region and, with the console's address configured, links to the
    /// explanation of its top flow.
    #[test]
    fn alerts_name_the_region_and_link_to_the_console() {
        let ssh = hit(
            RecordType::BlockHit,
            "7002",
            "block ssh",
            "10.0.1.1",
            "10.0.3.10",
            22,
        );
        let records = vec![ssh; 2];
        let plain = group(&records, &AlertPolicy::default());
        assert_eq!(
            (plain[0].region.as_deref(), plain[0].link.as_deref()),
            (None, None)
        );
        assert!(!plain[0].markdown().contains("console"));
        let policy = AlertPolicy {
            region: Some("ap-guangzhou".into()),
            console_url: Some("https://esgflow.example.com/".into()),
            ..AlertPolicy::default()
        };
        let alert = &group(&records, &policy)[0];
        let link = "https://esgflow.example.com/#src=10.0.1.1&dst=10.0.3.10&protocol=tcp&port=22";
        assert_eq!(alert.link.as_deref(), Some(link));
        let markdown = alert.markdown();
        assert!(
            markdown.contains("> VPC vpc-prod0001 (prod) in ap-guangzhou\n"),
            "{markdown}"
        );
        assert!(
            markdown.contains(&format!("[Explain in the esgflow console]({link})")),
            "{markdown}"
        );
        assert!(
            alert
                .text()
                .contains(&format!("Explain in the esgflow console: {link}")),
            "{}",
            alert.text()
        );
        let json = serde_json::to_value(alert).unwrap();
        assert_eq!(
            (json["region"].as_str(), json["link"].as_str()),
            (Some("ap-guangzhou"), Some(link))
        );
    }

    /// Text rule and resource owners write cannot add links, headings, quotes or HTML to a
    /// chat message: it stays on its line, and `[ ] < >` show as full-width characters.
    #[test]
    fn descriptions_and_names_are_inert_in_chat_markup() {
        let description =
            "db\n### Urgent: [log in here](http://evil.example) <font color=\"red\">now</font>\r\n> quoted";
        let mut record = hit(
            RecordType::BlockHit,
            "7002",
            description,
            "10.0.1.5",
            "10.0.3.10",
            22,
        );
        if let Record::Hit(h) = &mut record {
            let mut ends = (*h.ends).clone();
            ends.src_instance_name = Some("web_01 [admin](http://x)".into());
            ends.dst_vpc_name = Some("prod\n# big".into());
            h.ends = std::sync::Arc::new(ends);
        }
        let alert = &group(&[record], &AlertPolicy::default())[0];
        for text in [alert.markdown(), alert.text()] {
            for forbidden in ["\n###", "[log in", "](", "<font", "\n> quoted", "\n# big"] {
                assert!(!text.contains(forbidden), "{forbidden:?} in\n{text}");
            }
            assert!(
                text.contains("Urgent: ［log in here］(http://evil.example) ＜font"),
                "{text}"
            );
            assert!(
                text.contains("10.0.1.5 (web_01 ［admin］(http://x))"),
                "{text}"
            );
        }
        // The webhook's JSON keeps the text as it is.
        assert_eq!(
            serde_json::to_value(alert).unwrap()["rule_description"],
            description
        );
    }

    /// Each end of a top flow is named as the snapshot names it: its instance's name, else its
    /// ENI's name, else its instance id; an end the snapshot does not know is the bare address.
    #[test]
    fn top_flows_name_their_ends() {
        let with_ends = |src: &str, ends: crate::core::records::Ends| {
            let mut record = hit(
                RecordType::BlockHit,
                "7002",
                "block ssh",
                src,
                "10.0.3.10",
                22,
            );
            if let Record::Hit(h) = &mut record {
                h.ends = std::sync::Arc::new(ends);
            }
            record
        };
        let text = |s: &str| Some(compact_str::CompactString::from(s));
        let records = vec![
            with_ends(
                "10.0.1.10",
                crate::core::records::Ends {
                    src_instance: text("ins-web00000"),
                    src_instance_name: text("web-01"),
                    src_eni_name: text("web-01-eth0"),
                    dst_instance: text("ins-db000000"),
                    dst_instance_name: text("db-主"),
                    ..Default::default()
                },
            ),
            with_ends(
                "10.0.1.11",
                crate::core::records::Ends {
                    src_instance: text("ins-web00001"),
                    src_eni_name: text("web-02-eth0"),
                    ..Default::default()
                },
            ),
            with_ends(
                "10.0.1.12",
                crate::core::records::Ends {
                    src_instance: text("ins-web00002"),
                    ..Default::default()
                },
            ),
            with_ends("10.0.1.13", crate::core::records::Ends::default()),
        ];
        let alerts = group(&records, &AlertPolicy::default());
        let markdown = alerts[0].markdown();
        for line in [
            "- 10.0.1.10 (web-01) → 10.0.3.10 (db-主):22 TCP",
            "- 10.0.1.11 (web-02-eth0) → 10.0.3.10:22 TCP",
            "- 10.0.1.12 (ins-web00002) → 10.0.3.10:22 TCP",
            "- 10.0.1.13 → 10.0.3.10:22 TCP",
        ] {
            assert!(markdown.contains(line), "{line:?} not in\n{markdown}");
        }
        let json = serde_json::to_value(&alerts[0]).unwrap();
        let first = json["top_flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["src"] == "10.0.1.10")
            .unwrap();
        assert_eq!(
            (first["src_name"].as_str(), first["dst_name"].as_str()),
            (Some("web-01"), Some("db-主"))
        );
    }

    #[test]
    fn muting_by_uuid_or_description() {
        let records = vec![
            hit(
                RecordType::BlockHit,
                "7002",
                "Block SSH",
                "10.0.1.1",
                "10.0.3.10",
                22,
            ),
            hit(
                RecordType::BlockHit,
                "7010",
                "noisy scanner",
                "10.0.1.1",
                "10.0.3.10",
                23,
            ),
        ];
        let policy = AlertPolicy {
            muted_rules: BTreeSet::from(["7002".to_string()]),
            ..AlertPolicy::default()
        };
        assert_eq!(group(&records, &policy).len(), 1);
        let policy = AlertPolicy {
            muted_descriptions: vec!["SCANNER".into(), "ssh".into()],
            ..AlertPolicy::default()
        };
        assert!(group(&records, &policy).is_empty());
    }

    /// Releasing an undelivered admission puts back what was there (or nothing), and only if
    /// the entry is still that admission's own.
    #[test]
    fn a_released_admission_restores_the_previous_entry() {
        let policy = AlertPolicy::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut state = MemoryState::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let Admission::Admitted { previous } = runtime.block_on(state.admit("k", 5, t0, &policy))
        else {
            panic!("the first alert is admitted");
        };
        assert_eq!(previous, None);
        runtime.block_on(state.release("k", 5, t0, previous, &policy));
        // Nothing held: the next one goes out at once.
        let later = t0 + Duration::from_secs(1);
        let Admission::Admitted { previous } =
            runtime.block_on(state.admit("k", 5, later, &policy))
        else {
            panic!("released, so admitted again");
        };
        assert_eq!(previous, None);
        // A regrown count is admitted within the cooldown; releasing it restores the entry before.
        let regrown = later + Duration::from_secs(60);
        let Admission::Admitted { previous } =
            runtime.block_on(state.admit("k", 50, regrown, &policy))
        else {
            panic!("regrown tenfold");
        };
        assert_eq!(previous, Some((unix_ms(later), 5)));
        runtime.block_on(state.release("k", 50, regrown, previous, &policy));
        assert_eq!(
            runtime.block_on(state.admit("k", 6, regrown, &policy)),
            Admission::Held,
            "the earlier alert's cooldown holds again"
        );
        // A release that is not the entry's own changes nothing.
        runtime.block_on(state.release("k", 99, regrown, None, &policy));
        assert_eq!(
            runtime.block_on(state.admit("k", 6, regrown, &policy)),
            Admission::Held
        );
    }

    #[test]
    fn cooldown_with_a_fake_clock() {
        let policy = AlertPolicy::default();
        let mut state = MemoryState::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(state.admit_now("block_hit:7002", 10, t0, &policy));
        assert!(
            !state.admit_now("block_hit:7002", 15, t0 + Duration::from_secs(60), &policy),
            "within the cooldown"
        );
        assert!(
            state.admit_now("block_hit:7002", 20, t0 + Duration::from_secs(120), &policy),
            "grew by the factor"
        );
        assert!(!state.admit_now("block_hit:7002", 21, t0 + Duration::from_secs(180), &policy));
        assert!(
            state.admit_now(
                "block_hit:7002",
                1,
                t0 + Duration::from_secs(120 + 901),
                &policy
            ),
            "after the cooldown"
        );
        assert!(
            state.admit_now("block_hit:7010", 1, t0, &policy),
            "other rules are independent"
        );
    }

    #[test]
    fn rate_cap_is_a_sliding_minute() {
        let per_minute = [RateLimit::per_minute(20)];
        let mut cap = RateCap::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 0..20 {
            assert!(cap.take("wecom", &per_minute, t0 + Duration::from_secs(i)));
        }
        assert!(!cap.take("wecom", &per_minute, t0 + Duration::from_secs(30)));
        assert_eq!(
            cap.wait("wecom", &per_minute, t0 + Duration::from_secs(30)),
            Duration::from_secs(30),
            "until the first message leaves the window"
        );
        assert!(
            cap.take("dingtalk", &per_minute, t0 + Duration::from_secs(30)),
            "per channel"
        );
        assert!(
            cap.take("wecom", &per_minute, t0 + Duration::from_secs(61)),
            "the first message left the window"
        );
    }

    /// Feishu's two published limits: 5 a second and 100 a minute.
    #[test]
    fn rate_cap_keeps_every_window() {
        let feishu = [RateLimit::per_second(5), RateLimit::per_minute(100)];
        let mut cap = RateCap::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut at = t0;
        let mut sent = 0;
        while at < t0 + Duration::from_secs(60) {
            let wait = cap.wait("feishu", &feishu, at);
            if wait.is_zero() {
                assert!(cap.take("feishu", &feishu, at));
                sent += 1;
            } else {
                assert!(!cap.take("feishu", &feishu, at));
            }
            at += Duration::from_millis(10);
            // Never more than 5 in any second.
            let last_second = cap.sent["feishu"]
                .iter()
                .filter(|t| at.duration_since(**t).unwrap() < Duration::from_secs(1))
                .count();
            assert!(last_second <= 5, "{last_second} in one second");
        }
        assert_eq!(sent, 100, "and at most 100 a minute");
        assert!(
            cap.wait("feishu", &feishu, t0 + Duration::from_secs(30)) > Duration::from_secs(1),
            "within the minute it is used up: a long wait"
        );
    }
}
