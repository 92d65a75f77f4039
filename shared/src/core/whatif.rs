//! What-if: a proposed rule set judged against the traffic the account really had.
//!
//! The conversations recorded in a window (traffic records summed by initiator, service end,
//! port, protocol and scope) are judged with the current engine and with the proposed one; every
//! conversation whose outcome changes is reported in its class, with its counters and the rules
//! on both sides, and the unchanged ones are counted. Rules are compared by uuid, so the two
//! engines' rule positions never matter.
//!
//! A proposal is either a whole snapshot or [`Edit`]s to the current one: remove a rule, set its
//! action or enabled state, move it to another position, add one (as the rule listing gives it).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::engine::{DecisionKind, Engine, Evaluation, FlowKey, RuleId};
use crate::core::search::{Talker, TrafficSums};
use crate::core::snapshot::{Rule, RuleAction, Snapshot};

/// One change to the current rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Edit {
    /// Remove rule `rule`.
    Remove {
        /// The rule's uuid.
        rule: String,
    },
    /// Change rule `rule`'s action and/or whether it is enabled.
    Set {
        /// The rule's uuid.
        rule: String,
        /// `accept`, `drop` or `observe`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<String>,
        /// Enabled or not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enabled: Option<bool>,
    },
    /// Change what rule `rule` matches: its source or destination (an address, a CIDR or a
    /// comma list of them), its protocol (`TCP`, `UDP`, `ICMP`, `ANY`, …) or its port text
    /// (`80,443`, `8080/8090`); what is not given stays.
    Match {
        /// The rule's uuid.
        rule: String,
        /// The new source addresses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// The new destination addresses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<String>,
        /// The new protocol.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<String>,
        /// The new port text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
    },
    /// Move rule `rule` to position `to` (1: first) among the rules of its kind (new or old
    /// ESG); the rules from there on move down one.
    Move {
        /// The rule's uuid.
        rule: String,
        /// Its new position, from 1.
        to: u64,
    },
    /// Add a rule, given as the rule listing gives one (`DescribeEnterpriseSecurityGroupRule`'s
    /// `Rules` item: `RuleAction`, `SourceType`, `SourceContent`, …), at position `at` (default:
    /// its own `OrderIndex`).
    Add {
        /// The rule, as the API lists it.
        #[schema(value_type = Object)]
        rule: serde_json::Value,
        /// Its position, from 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<u64>,
    },
}

/// `snapshot` with `edits` applied in order, re-numbered and re-versioned; an edit naming a rule
/// the rules do not have, or an added rule that cannot be read, is refused by its position.
pub fn apply(snapshot: &Snapshot, edits: &[Edit]) -> Result<Snapshot, String> {
    apply_to(snapshot.clone(), edits)
}

/// [`apply`] to a snapshot given away: a rule set of 20,000 rules is not held twice.
pub fn apply_to(mut proposed: Snapshot, edits: &[Edit]) -> Result<Snapshot, String> {
    for (i, edit) in edits.iter().enumerate() {
        let refuse = |why: String| format!("edits[{i}]: {why}");
        let at = |rules: &[Rule], uuid: &str| {
            rules
                .iter()
                .position(|r| r.uuid == uuid)
                .ok_or_else(|| refuse(format!("no rule {}", crate::core::text::shown(uuid))))
        };
        match edit {
            Edit::Remove { rule } => {
                let at = at(&proposed.rules, rule)?;
                let removed = proposed.rules.remove(at);
                renumber(&mut proposed.rules, removed.generation, None);
            }
            Edit::Set {
                rule,
                action,
                enabled,
            } => {
                let at = at(&proposed.rules, rule)?;
                if let Some(action) = action {
                    proposed.rules[at].action = match action.as_str() {
                        "accept" => RuleAction::Accept,
                        "drop" => RuleAction::Drop,
                        "observe" | "log" => RuleAction::Observe,
                        other => {
                            return Err(refuse(format!(
                                "action {} is not accept, drop or observe",
                                crate::core::text::shown(other)
                            )))
                        }
                    };
                }
                if let Some(enabled) = enabled {
                    proposed.rules[at].enabled = *enabled;
                }
            }
            Edit::Match {
                rule,
                source,
                destination,
                protocol,
                port,
            } => {
                let at = at(&proposed.rules, rule)?;
                let target = &mut proposed.rules[at];
                for (given, endpoint) in [
                    (source, &mut target.source),
                    (destination, &mut target.destination),
                ] {
                    if let Some(addresses) = given {
                        let mut set = crate::core::snapshot::values::AddressSet::default();
                        for item in addresses
                            .split(',')
                            .map(str::trim)
                            .filter(|i| !i.is_empty())
                        {
                            set.add(item).map_err(&refuse)?;
                        }
                        *endpoint = crate::core::snapshot::Endpoint {
                            kind: crate::core::snapshot::EndpointKind::Net,
                            content: addresses.clone(),
                            resolved: Vec::new(),
                        };
                    }
                }
                if protocol.is_some() || port.is_some() {
                    target.service_template = None;
                }
                if let Some(protocol) = protocol {
                    target.protocol = protocol.trim().to_ascii_uppercase();
                }
                if let Some(port) = port {
                    target.port = port.trim().to_string();
                }
            }
            Edit::Move { rule, to } => {
                let at = at(&proposed.rules, rule)?;
                let generation = proposed.rules[at].generation;
                proposed.rules[at].order = (*to).max(1);
                renumber(&mut proposed.rules, generation, Some(rule));
            }
            Edit::Add { rule, at: position } => {
                let mut added = read_rule(rule).map_err(refuse)?;
                if proposed.rules.iter().any(|r| r.uuid == added.uuid) {
                    return Err(refuse(format!("a rule {} exists already", added.uuid)));
                }
                if let Some(position) = position {
                    added.order = (*position).max(1);
                }
                let (generation, uuid) = (added.generation, added.uuid.clone());
                proposed.rules.push(added);
                renumber(&mut proposed.rules, generation, Some(&uuid));
            }
        }
    }
    proposed.seal();
    Ok(proposed)
}

/// One rule as the rule listing gives it, read by the snapshot importer.
fn read_rule(rule: &serde_json::Value) -> Result<Rule, String> {
    let documents = [(
        "the added rule".to_string(),
        serde_json::json!({ "Rules": [rule] }),
    )];
    let read =
        crate::core::snapshot::build_from_documents(&documents, "").map_err(|e| e.to_string())?;
    let rule = read
        .rules
        .into_iter()
        .next()
        .ok_or("the added rule is not a rule the listing would give")?;
    match rule.doubt() {
        Some(doubt) => Err(format!("the added rule cannot be read: {doubt}")),
        None => Ok(rule),
    }
}

/// Numbers the rules of `generation` 1, 2, … in their priority order; `placed` (a rule just
/// given its wanted position) goes before the rule that held that position.
fn renumber(
    rules: &mut [Rule],
    generation: crate::core::snapshot::Generation,
    placed: Option<&str>,
) {
    let mut same: Vec<&mut Rule> = rules
        .iter_mut()
        .filter(|r| r.generation == generation)
        .collect();
    same.sort_by(|a, b| {
        let key = |r: &Rule| (r.order, placed != Some(r.uuid.as_str()));
        key(a)
            .cmp(&key(b))
            .then_with(|| a.priority().cmp(&b.priority()))
    });
    for (i, rule) in same.into_iter().enumerate() {
        rule.order = i as u64 + 1;
    }
}

names! {
    /// How a conversation's outcome changes under the proposal.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    pub enum Outcome {
        /// A drop rule would decide it where none did.
        NewlyBlocked,
        /// No drop rule would decide it where one did.
        NewlyAllowed,
        /// The same decision by another rule.
        OtherRule,
        /// An observe rule would match it that did not.
        NewlyObserved,
        /// An observe rule that matched it would not.
        NoLongerObserved,
        /// The proposal cannot decide it: a rule before its decision cannot be resolved.
        Undecidable,
    }
}

/// One side of a conversation's judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Judgement {
    /// `allow`, `block` or `none` (no ESG rule decides).
    pub decision: DecisionKind,
    /// The deciding rule's uuid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Observe rules that match before the decision.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observed: Vec<String>,
    /// The indeterminate drop rule that may decide it instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspect: Option<String>,
}

impl Judgement {
    fn of(engine: &Engine, evaluation: &Evaluation) -> Self {
        let uuid = |id| engine.rule(id).rule.uuid.clone();
        Judgement {
            decision: evaluation.decision.kind(),
            rule: evaluation.decision.rule().map(uuid),
            observed: evaluation.observed.iter().map(|&id| uuid(id)).collect(),
            suspect: evaluation.suspect.map(uuid),
        }
    }

    fn blocks(&self) -> bool {
        self.decision == DecisionKind::Block
    }
}

/// A conversation whose outcome changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Changed {
    /// How.
    pub outcome: Outcome,
    /// The conversation and its counters over the window.
    #[serde(flatten)]
    pub conversation: Talker,
    /// The initiator's name (instance, else subnet) in the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_name: Option<String>,
    /// The service end's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_name: Option<String>,
    /// With the current rules.
    pub before: Judgement,
    /// With the proposed rules.
    pub after: Judgement,
}

/// An address and what it carried in one class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Party {
    /// The address.
    pub ip: String,
    /// Its name in the snapshot, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conversations.
    pub conversations: u64,
    /// Bytes.
    pub bytes: u64,
}

/// One class of change, summed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Class {
    /// The change.
    pub outcome: Outcome,
    /// Conversations in it.
    pub conversations: u64,
    /// Their flows and bytes.
    #[serde(flatten)]
    pub sums: TrafficSums,
    /// The initiators with the most bytes (at most [`TOP`]).
    pub top_sources: Vec<Party>,
    /// The service ends with the most bytes (at most [`TOP`]).
    pub top_destinations: Vec<Party>,
    /// The rules that decided them before, with how many conversations each.
    pub rules_before: BTreeMap<String, u64>,
    /// The rules that would decide them after.
    pub rules_after: BTreeMap<String, u64>,
}

/// Most sources and destinations a class names.
pub const TOP: usize = 10;

/// The what-if report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Report {
    /// Conversations judged.
    pub judged: u64,
    /// Whether they were every conversation of the window (false: the store gave its largest
    /// ones only, see `cut`).
    pub complete: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<String>,
    /// Conversations whose addresses could not be read (not judged).
    pub unreadable: u64,
    /// Conversations whose outcome does not change, and their counters.
    pub unchanged: u64,
    /// Their flows and bytes.
    pub unchanged_sums: TrafficSums,
    /// Each class of change, in [`Outcome`] order; classes with nothing are left out.
    pub classes: Vec<Class>,
    /// The changed conversations, most bytes first, at most the asked number.
    pub changed: Vec<Changed>,
    /// How many changed conversations there are in all.
    pub changed_total: u64,
}

/// The outcome of a conversation judged `before` and `after`, `None` when it does not change.
pub fn outcome(before: &Judgement, after: &Judgement) -> Option<Outcome> {
    if after.suspect.is_some() && after.suspect != before.suspect {
        return Some(Outcome::Undecidable);
    }
    match (before.blocks(), after.blocks()) {
        (false, true) => return Some(Outcome::NewlyBlocked),
        (true, false) => return Some(Outcome::NewlyAllowed),
        _ => {}
    }
    if before.decision != after.decision || before.rule != after.rule {
        return Some(Outcome::OtherRule);
    }
    if after.observed.iter().any(|r| !before.observed.contains(r)) {
        return Some(Outcome::NewlyObserved);
    }
    if before.observed.iter().any(|r| !after.observed.contains(r)) {
        return Some(Outcome::NoLongerObserved);
    }
    None
}

/// Judges `conversations` with `current` and `proposed` and reports the changes, listing at
/// most `listed` changed conversations (most bytes first).
pub fn compare(
    current: &Engine,
    proposed: &Engine,
    conversations: &[Talker],
    listed: usize,
) -> Report {
    let mut report = Report {
        judged: 0,
        complete: true,
        cut: None,
        unreadable: 0,
        unchanged: 0,
        unchanged_sums: TrafficSums::default(),
        classes: Vec::new(),
        changed: Vec::new(),
        changed_total: 0,
    };
    let mut classes: BTreeMap<Outcome, Summing> = BTreeMap::new();
    let mut changed: Vec<Changed> = Vec::new();
    let judge = |flow: &FlowKey| {
        (
            Judgement::of(current, &current.evaluate(flow)),
            Judgement::of(proposed, &proposed.evaluate(flow)),
        )
    };
    // Each conversation judged on its own: a window's conversations are distinct ends and
    // services (on the reference day 526,493 of 526,493 — a scope never adds one), so a cache of
    // judgements kept nothing but memory (17 MB for 200,000).
    let by_bytes = |a: &Changed, b: &Changed| {
        b.conversation
            .sums
            .bytes
            .cmp(&a.conversation.sums.bytes)
            .then(b.conversation.sums.flows.cmp(&a.conversation.sums.flows))
            .then_with(|| a.outcome.cmp(&b.outcome))
            .then_with(|| a.conversation.src_ip.cmp(&b.conversation.src_ip))
            .then_with(|| a.conversation.dst_ip.cmp(&b.conversation.dst_ip))
            .then_with(|| a.conversation.dst_port.cmp(&b.conversation.dst_port))
            .then_with(|| a.conversation.scope.cmp(&b.conversation.scope))
    };
    for conversation in conversations {
        let Some(flow) = flow_of(conversation) else {
            report.unreadable += 1;
            continue;
        };
        report.judged += 1;
        let (before, after) = judge(&flow);
        let Some(outcome) = outcome(&before, &after) else {
            report.unchanged += 1;
            report.unchanged_sums.add(&conversation.sums);
            continue;
        };
        report.changed_total += 1;
        let placement = proposed.topology().place(flow.src, flow.dst, None);
        let class = classes.entry(outcome).or_default();
        class.add(conversation, &before, &after);
        let bytes = conversation.sums.bytes;
        class.party(&conversation.src_ip, &placement.src, true, bytes);
        class.party(&conversation.dst_ip, &placement.dst, false, bytes);
        if listed == 0 {
            continue;
        }
        changed.push(Changed {
            outcome,
            conversation: conversation.clone(),
            src_name: name_of(&placement.src),
            dst_name: name_of(&placement.dst),
            before,
            after,
        });
        // Only the `listed` largest are kept: memory stays bounded whatever changes.
        if changed.len() >= listed.saturating_mul(2).max(1024) {
            changed.sort_by(by_bytes);
            changed.truncate(listed);
        }
    }
    changed.sort_by(by_bytes);
    changed.truncate(listed);
    report.changed = changed;
    report.classes = classes
        .into_iter()
        .map(|(outcome, summing)| summing.class(outcome))
        .collect();
    report
}

/// A narrower rule that keeps every conversation a rule decided in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Tightening {
    /// The rule's uuid.
    pub rule: String,
    /// Its action.
    pub action: String,
    /// Conversations it decided in the window.
    pub decided: u64,
    /// Their flows and bytes.
    #[serde(flatten)]
    pub sums: TrafficSums,
    /// Its terms now: source, destination, services.
    pub now: Terms,
    /// The distinct sources, destinations and services it decided.
    pub seen: Seen,
    /// The narrower terms, as a `match` edit; none when the rule decided nothing, or is as
    /// narrow as what it decided already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed: Option<Edit>,
    /// Conversations of the window the proposed terms change (0: the suggestion keeps every
    /// conversation as it is, checked by the what-if).
    pub changes: u64,
}

/// A rule's match terms, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Terms {
    /// Its source.
    pub source: String,
    /// Its destination.
    pub destination: String,
    /// Its services.
    pub services: String,
}

/// What a rule decided, distinct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Seen {
    /// Distinct sources.
    pub sources: u64,
    /// Distinct destinations.
    pub destinations: u64,
    /// The services (`TCP 3306`, `ICMP`), at most [`MAX_LISTED_TERMS`].
    pub services: Vec<String>,
}

/// Most addresses or ports a suggestion lists before it widens them (addresses to their /24 or
/// /64) or keeps the rule's own.
pub const MAX_LISTED_TERMS: usize = 32;

/// A narrower rule for `uuid` (an accept or drop rule) that keeps every conversation it decided
/// over `conversations`: the addresses it decided, listed (or their /24 and /64 networks when
/// there are many), the one protocol and its ports when it decided one; checked by [`compare`]
/// over the same conversations to change nothing.
pub fn tighten(
    snapshot: &Snapshot,
    engine: &Engine,
    uuid: &str,
    conversations: &[Talker],
) -> Result<Tightening, String> {
    let (id, compiled) = engine
        .rules()
        .iter()
        .enumerate()
        .find(|(_, r)| r.rule.uuid == uuid)
        .ok_or_else(|| format!("no rule {}", crate::core::text::shown(uuid)))?;
    let rule = &compiled.rule;
    if !matches!(rule.action, RuleAction::Accept | RuleAction::Drop) {
        return Err(format!(
            "rule {uuid} is an {} rule: only accept and drop rules decide",
            rule.action.as_str()
        ));
    }
    let mut sums = TrafficSums::default();
    let (mut sources, mut destinations) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    let mut services: std::collections::BTreeSet<(u8, Option<u16>)> =
        std::collections::BTreeSet::new();
    let mut decided = 0;
    for conversation in conversations {
        let Some(flow) = flow_of(conversation) else {
            continue;
        };
        if engine.evaluate(&flow).decision.rule() == Some(id as RuleId) {
            decided += 1;
            sums.add(&conversation.sums);
            sources.insert(flow.src);
            destinations.insert(flow.dst);
            services.insert((flow.protocol, flow.dst_port));
        }
    }
    let label = |endpoint: &crate::core::snapshot::Endpoint| {
        crate::core::snapshot::resolve::describe_endpoint(endpoint)
    };
    let mut tightening = Tightening {
        rule: uuid.to_string(),
        action: rule.action.as_str().to_string(),
        decided,
        sums,
        now: Terms {
            source: label(&rule.source),
            destination: label(&rule.destination),
            services: compiled.services_label.clone(),
        },
        seen: Seen {
            sources: sources.len() as u64,
            destinations: destinations.len() as u64,
            services: services
                .iter()
                .take(MAX_LISTED_TERMS)
                .map(|(protocol, port)| {
                    let name = crate::core::flowlog::protocol::name(*protocol);
                    port.map_or(name.to_string(), |p| format!("{name} {p}"))
                })
                .collect(),
        },
        proposed: None,
        changes: 0,
    };
    if decided == 0 {
        return Ok(tightening);
    }
    let protocols: std::collections::BTreeSet<u8> = services.iter().map(|(p, _)| *p).collect();
    let ports: std::collections::BTreeSet<u16> = services.iter().filter_map(|(_, p)| *p).collect();
    let (protocol, port) = match protocols.iter().next() {
        Some(&only)
            if protocols.len() == 1
                && matches!(only, 6 | 17)
                && ports.len() <= MAX_LISTED_TERMS =>
        {
            (
                Some(crate::core::flowlog::protocol::name(only).to_string()),
                Some(
                    ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            )
        }
        Some(&only) if protocols.len() == 1 && !matches!(only, 6 | 17) => (
            Some(crate::core::flowlog::protocol::name(only).to_string()),
            Some("-1/-1".to_string()),
        ),
        _ => (None, None),
    };
    let edit = Edit::Match {
        rule: uuid.to_string(),
        source: narrowed(&sources),
        destination: narrowed(&destinations),
        protocol,
        port,
    };
    let proposed = apply(snapshot, std::slice::from_ref(&edit))?;
    let proposed = Engine::compile_owned(proposed).map_err(|e| e.to_string())?;
    tightening.changes = compare(engine, &proposed, conversations, 0).changed_total;
    if proposed.version() != engine.version() {
        tightening.proposed = Some(edit);
    }
    Ok(tightening)
}

/// `addresses` as a rule's net content: each address when there are few, else their /24 (IPv4)
/// and /64 (IPv6) networks when those are few; `None` (keep the rule's own) past that.
fn narrowed(addresses: &std::collections::BTreeSet<IpAddr>) -> Option<String> {
    if addresses.len() <= MAX_LISTED_TERMS {
        return Some(
            addresses
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let networks: std::collections::BTreeSet<String> = addresses
        .iter()
        .map(|address| match address {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                format!("{a}.{b}.{c}.0/24")
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        })
        .collect();
    (networks.len() <= MAX_LISTED_TERMS).then(|| networks.into_iter().collect::<Vec<_>>().join(","))
}

/// What an observe rule would block if it were a drop rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Promotion {
    /// The observe rule's uuid.
    pub rule: String,
    /// Its position in the evaluation order (from 0).
    pub position: usize,
    /// Its description.
    pub description: String,
    /// Conversations it matches before their decision.
    pub matched: u64,
    /// Of those, the ones it would newly block (no drop rule decides them now).
    pub newly_blocked: u64,
    /// Their flows and bytes.
    #[serde(flatten)]
    pub sums: TrafficSums,
    /// The initiators of the newly blocked with the most bytes (at most [`TOP`]).
    pub top_sources: Vec<Party>,
    /// Their service ends with the most bytes (at most [`TOP`]).
    pub top_destinations: Vec<Party>,
}

/// For every enabled observe rule, what it would block as a drop rule over `conversations`: one
/// evaluation of each conversation with the current rules, since an observe rule that matches
/// before the decision would, as a drop rule, decide there (what [`compare`] reports for the
/// proposal "set it to drop", as the tests check rule by rule).
pub fn promotions(engine: &Engine, conversations: &[Talker]) -> Vec<Promotion> {
    let mut by_rule: BTreeMap<RuleId, (u64, Summing)> = BTreeMap::new();
    for (id, compiled) in engine.rules().iter().enumerate() {
        if compiled.rule.action == RuleAction::Observe && compiled.rule.in_effect() {
            by_rule.insert(id as RuleId, (0, Summing::default()));
        }
    }
    for conversation in conversations {
        let Some(flow) = flow_of(conversation) else {
            continue;
        };
        let evaluation = engine.evaluate(&flow);
        for id in &evaluation.observed {
            let Some((matched, summing)) = by_rule.get_mut(id) else {
                continue;
            };
            *matched += 1;
            if evaluation.decision.kind() != DecisionKind::Block {
                summing.conversations += 1;
                summing.sums.add(&conversation.sums);
                let placement = engine.topology().place(flow.src, flow.dst, None);
                let bytes = conversation.sums.bytes;
                summing.party(&conversation.src_ip, &placement.src, true, bytes);
                summing.party(&conversation.dst_ip, &placement.dst, false, bytes);
            }
        }
    }
    by_rule
        .into_iter()
        .map(|(id, (matched, summing))| {
            let rule = &engine.rule(id).rule;
            let class = summing.class(Outcome::NewlyBlocked);
            Promotion {
                rule: rule.uuid.clone(),
                position: id as usize,
                description: rule.description.clone(),
                matched,
                newly_blocked: class.conversations,
                sums: class.sums,
                top_sources: class.top_sources,
                top_destinations: class.top_destinations,
            }
        })
        .collect()
}

/// A location's name: its instance's, else its subnet's.
fn name_of(location: &crate::core::engine::Location) -> Option<String> {
    location
        .instance_name
        .or(location.subnet_name)
        .map(str::to_string)
}

/// The flow a conversation stands for; `None` when its addresses or protocol cannot be read.
pub fn flow_of(conversation: &Talker) -> Option<FlowKey> {
    let src: IpAddr = conversation.src_ip.parse().ok()?;
    let dst: IpAddr = conversation.dst_ip.parse().ok()?;
    let protocol = protocol_number(&conversation.protocol_name)?;
    Some(FlowKey::requested(
        src,
        dst,
        protocol,
        conversation.dst_port,
    ))
}

/// The number of a protocol as records name it (`TCP`, `ICMPv6`, `proto 132`).
fn protocol_number(name: &str) -> Option<u8> {
    if let Some(number) = name.strip_prefix("proto ") {
        return number.trim().parse().ok();
    }
    (0..=u8::MAX).find(|&n| crate::core::flowlog::protocol::known_name(n) == Some(name))
}

/// A class being summed.
#[derive(Default)]
struct Summing {
    conversations: u64,
    sums: TrafficSums,
    sources: HashMap<String, Party>,
    destinations: HashMap<String, Party>,
    rules_before: BTreeMap<String, u64>,
    rules_after: BTreeMap<String, u64>,
}

impl Summing {
    fn add(&mut self, conversation: &Talker, before: &Judgement, after: &Judgement) {
        self.conversations += 1;
        self.sums.add(&conversation.sums);
        for (side, into) in [
            (before, &mut self.rules_before),
            (after, &mut self.rules_after),
        ] {
            for rule in side.rule.iter().chain(&side.observed).chain(&side.suspect) {
                *into.entry(rule.clone()).or_default() += 1;
            }
        }
    }

    /// Counts a conversation of `bytes` for `ip` (at `location`), as a source or a destination.
    fn party(
        &mut self,
        ip: &str,
        location: &crate::core::engine::Location,
        source: bool,
        bytes: u64,
    ) {
        let into = if source {
            &mut self.sources
        } else {
            &mut self.destinations
        };
        let party = into.entry(ip.to_string()).or_insert_with(|| Party {
            ip: ip.to_string(),
            name: name_of(location),
            conversations: 0,
            bytes: 0,
        });
        party.conversations += 1;
        party.bytes = party.bytes.saturating_add(bytes);
    }

    fn class(self, outcome: Outcome) -> Class {
        let top = |parties: HashMap<String, Party>| {
            let mut parties: Vec<Party> = parties.into_values().collect();
            parties.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.ip.cmp(&b.ip)));
            parties.truncate(TOP);
            parties
        };
        Class {
            outcome,
            conversations: self.conversations,
            sums: self.sums,
            top_sources: top(self.sources),
            top_destinations: top(self.destinations),
            rules_before: self.rules_before,
            rules_after: self.rules_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::snapshot::fixtures;
    use proptest::prelude::*;

    fn conversation(src: &str, dst: &str, port: Option<u16>, protocol: &str, bytes: u64) -> Talker {
        Talker {
            src_ip: src.into(),
            dst_ip: dst.into(),
            dst_port: port,
            protocol_name: protocol.into(),
            scope: "inter_subnet".into(),
            sums: TrafficSums {
                flows: 1,
                rejected_flows: 0,
                packets: 1,
                bytes,
            },
        }
    }

    /// Conversations over the sample's subnets and the internet, on the ports its rules name
    /// and others.
    fn conversations() -> impl Strategy<Value = Vec<Talker>> {
        let address = prop_oneof![
            (1u8..4, 0u8..40).prop_map(|(s, h)| format!("10.0.{s}.{h}")),
            (0u8..40).prop_map(|h| format!("10.10.1.{h}")),
            (0u8..40).prop_map(|h| format!("172.16.1.{h}")),
            Just("203.0.113.66".to_string()),
            Just("198.51.100.7".to_string()),
        ];
        let service = prop_oneof![
            prop::sample::select(vec![22u16, 80, 443, 3306, 6379, 8080, 8085, 9000])
                .prop_map(|p| (Some(p), "TCP")),
            (1u16..65535).prop_map(|p| (Some(p), "UDP")),
            Just((None, "ICMP")),
        ];
        prop::collection::vec(
            (address.clone(), address, service, 1u64..1_000_000).prop_map(
                |(src, dst, (port, protocol), bytes)| {
                    conversation(&src, &dst, port, protocol, bytes)
                },
            ),
            1..80,
        )
    }

    fn engine(snapshot: &Snapshot) -> Engine {
        Engine::compile(snapshot).unwrap()
    }

    proptest! {
        // Each case compiles the sample once or twice: 64 cases keep the suite light.
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A proposal equal to the current rules changes nothing.
        #[test]
        fn the_same_rules_change_nothing(conversations in conversations()) {
            let current = engine(&fixtures::sample(0));
            let same = engine(&apply(&fixtures::sample(0), &[]).unwrap());
            let report = compare(&current, &same, &conversations, 1000);
            prop_assert_eq!(report.changed_total, 0);
            prop_assert_eq!(report.unchanged, conversations.len() as u64);
        }

        /// Removing an accept rule changes exactly the conversations it decided, and every
        /// reported change is what evaluating the conversation on both rule sets says.
        #[test]
        fn removing_an_accept_rule_changes_exactly_what_it_decided(
            conversations in conversations(),
            pick in 0usize..100,
        ) {
            let snapshot = fixtures::sample(0);
            let accepts: Vec<&Rule> = snapshot.rules.iter().filter(|r| r.action == RuleAction::Accept && r.enabled).collect();
            let removed = accepts[pick % accepts.len()].uuid.clone();
            let proposed = apply(&snapshot, &[Edit::Remove { rule: removed.clone() }]).unwrap();
            let (current, proposed) = (engine(&snapshot), engine(&proposed));
            let report = compare(&current, &proposed, &conversations, usize::MAX);
            let decided = conversations.iter().filter(|c| {
                let flow = flow_of(c).unwrap();
                let before = Judgement::of(&current, &current.evaluate(&flow));
                before.rule.as_deref() == Some(removed.as_str())
            }).count() as u64;
            prop_assert_eq!(report.changed_total, decided);
            for changed in &report.changed {
                let flow = flow_of(&changed.conversation).unwrap();
                let before = Judgement::of(&current, &current.evaluate(&flow));
                let after = Judgement::of(&proposed, &proposed.evaluate(&flow));
                prop_assert_eq!(&changed.before, &before);
                prop_assert_eq!(&changed.after, &after);
                prop_assert_eq!(Some(changed.outcome), outcome(&before, &after));
                prop_assert_eq!(changed.before.rule.as_deref(), Some(removed.as_str()));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// What `promotions` says an observe rule would block is what `compare` reports as
        /// newly blocked for the proposal "set it to drop", rule by rule.
        #[test]
        fn promotions_agree_with_the_what_if_of_each_observe_rule(conversations in conversations()) {
            let snapshot = fixtures::sample(0);
            let current = engine(&snapshot);
            let promoted = promotions(&current, &conversations);
            prop_assert!(!promoted.is_empty());
            for promotion in promoted {
                let edit = Edit::Set { rule: promotion.rule.clone(), action: Some("drop".into()), enabled: None };
                let proposed = apply(&snapshot, &[edit]).unwrap();
                let report = compare(&current, &engine(&proposed), &conversations, 0);
                let blocked = report.classes.iter().find(|c| c.outcome == Outcome::NewlyBlocked);
                prop_assert_eq!(promotion.newly_blocked, blocked.map_or(0, |c| c.conversations), "{}", promotion.rule);
                prop_assert_eq!(promotion.sums.bytes, blocked.map_or(0, |c| c.sums.bytes));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// A suggested narrower rule keeps every conversation of the window as it was, and
        /// counts exactly the conversations the rule decided.
        #[test]
        fn a_tightened_rule_changes_nothing_observed(conversations in conversations(), pick in 0usize..100) {
            let snapshot = fixtures::sample(0);
            let current = engine(&snapshot);
            let terminal: Vec<&Rule> = snapshot.rules.iter()
                .filter(|r| matches!(r.action, RuleAction::Accept | RuleAction::Drop) && r.in_effect())
                .collect();
            let uuid = terminal[pick % terminal.len()].uuid.clone();
            let tightening = tighten(&snapshot, &current, &uuid, &conversations).unwrap();
            let decided = conversations.iter().filter(|c| {
                let flow = flow_of(c).unwrap();
                Judgement::of(&current, &current.evaluate(&flow)).rule.as_deref() == Some(uuid.as_str())
            }).count() as u64;
            prop_assert_eq!(tightening.decided, decided);
            prop_assert_eq!(tightening.changes, 0, "{:?}", tightening.proposed);
        }
    }

    /// 7008 (accept 10.0.2.0/24 → the db template, TCP 3306) decided only app-01 and app-02 to
    /// db-01: the suggestion names those two sources, that one destination and port 3306, and
    /// an observe rule cannot be tightened.
    #[test]
    fn the_suggestion_names_what_the_rule_decided() {
        let snapshot = fixtures::sample(0);
        let current = engine(&snapshot);
        let conversations = [
            conversation("10.0.2.10", "10.0.3.10", Some(3306), "TCP", 10),
            conversation("10.0.2.11", "10.0.3.10", Some(3306), "TCP", 20),
            conversation("10.0.1.11", "10.0.2.11", Some(8080), "TCP", 30),
        ];
        let tightening = tighten(&snapshot, &current, "7008", &conversations).unwrap();
        assert_eq!(
            (
                tightening.decided,
                tightening.sums.bytes,
                tightening.changes
            ),
            (2, 30, 0)
        );
        assert_eq!(tightening.seen.services, ["TCP 3306"]);
        assert_eq!(
            tightening.proposed,
            Some(Edit::Match {
                rule: "7008".into(),
                source: Some("10.0.2.10,10.0.2.11".into()),
                destination: Some("10.0.3.10".into()),
                protocol: Some("TCP".into()),
                port: Some("3306".into()),
            })
        );
        assert!(tighten(&snapshot, &current, "7007", &conversations)
            .unwrap_err()
            .contains("observe"));
        let nothing = tighten(&snapshot, &current, "7001", &conversations).unwrap();
        assert_eq!((nothing.decided, nothing.proposed), (0, None));
    }

    /// The sample's db subnet is reached on 3306 from app hosts (rule 7008 accepts); turning
    /// the accept into a drop blocks them, named and summed.
    #[test]
    fn an_accept_turned_drop_is_reported_newly_blocked() {
        let snapshot = fixtures::sample(0);
        let proposed = apply(
            &snapshot,
            &[Edit::Set {
                rule: "7008".into(),
                action: Some("drop".into()),
                enabled: None,
            }],
        )
        .unwrap();
        let conversations = [
            conversation("10.0.2.11", "10.0.3.10", Some(3306), "TCP", 500),
            conversation("10.0.2.12", "10.0.3.10", Some(3306), "TCP", 700),
            conversation("10.0.1.11", "10.0.2.11", Some(8080), "TCP", 900),
            conversation("10.0.2.11", "10.0.3.10", Some(3306), "bogus", 1),
        ];
        let report = compare(&engine(&snapshot), &engine(&proposed), &conversations, 10);
        assert_eq!((report.judged, report.unreadable), (3, 1));
        assert_eq!(report.changed_total, 2);
        assert_eq!(report.unchanged, 1);
        let class = &report.classes[0];
        assert_eq!(class.outcome, Outcome::NewlyBlocked);
        assert_eq!((class.conversations, class.sums.bytes), (2, 1200));
        assert_eq!(class.rules_before.get("7008"), Some(&2));
        assert_eq!(class.rules_after.get("7008"), Some(&2));
        assert_eq!(class.top_sources[0].ip, "10.0.2.12");
        assert_eq!(report.changed[0].conversation.sums.bytes, 700);
        assert_eq!(report.changed[0].before.decision, DecisionKind::Allow);
        assert_eq!(report.changed[0].after.decision, DecisionKind::Block);
        assert!(
            report.changed[0].dst_name.is_some(),
            "{:?}",
            report.changed[0]
        );
    }

    /// Moves, additions and refusals: a rule moved to the top decides before the rest; an added
    /// rule is read as the listing gives it; an unknown rule or action is refused by position.
    #[test]
    fn edits_move_add_and_refuse_by_position() {
        let snapshot = fixtures::sample(0);
        let moved = apply(
            &snapshot,
            &[Edit::Move {
                rule: "7010".into(),
                to: 1,
            }],
        )
        .unwrap();
        let first = moved
            .rules
            .iter()
            .filter(|r| r.generation == moved.rules[0].generation)
            .min_by_key(|r| r.order)
            .unwrap();
        assert_eq!(first.uuid, "7010");
        let orders: Vec<u64> = moved
            .rules
            .iter()
            .filter(|r| r.generation == first.generation)
            .map(|r| r.order)
            .collect();
        assert_eq!(orders, (1..=orders.len() as u64).collect::<Vec<_>>());
        assert_ne!(moved.version, snapshot.version);
        // 10.0.2.11 → 10.0.3.10:3306 was allowed by 7008; with 7010 first it is blocked.
        let flow = conversation("10.0.2.11", "10.0.3.10", Some(3306), "TCP", 1);
        let report = compare(
            &engine(&snapshot),
            &engine(&moved),
            std::slice::from_ref(&flow),
            10,
        );
        assert_eq!(report.classes[0].outcome, Outcome::NewlyBlocked);
        let added = apply(
            &snapshot,
            &[Edit::Add {
                rule: serde_json::json!({"Id": "9901", "OrderIndex": "1", "RuleAction": "drop",
                    "SourceType": "net", "SourceContent": "10.0.2.11", "DestType": "net",
                    "DestContent": "10.0.3.0/24", "Protocol": "TCP", "Port": "3306",
                    "Enable": "true"}),
                at: None,
            }],
        )
        .unwrap();
        let report = compare(&engine(&snapshot), &engine(&added), &[flow], 10);
        assert_eq!(report.changed[0].after.rule.as_deref(), Some("9901"));
        for (edits, named) in [
            (
                vec![Edit::Remove {
                    rule: "nope".into(),
                }],
                "edits[0]: no rule \"nope\"",
            ),
            (
                vec![
                    Edit::Remove {
                        rule: "7010".into(),
                    },
                    Edit::Set {
                        rule: "7008".into(),
                        action: Some("reject".into()),
                        enabled: None,
                    },
                ],
                "edits[1]: action \"reject\" is not accept, drop or observe",
            ),
            (
                vec![Edit::Add {
                    rule: serde_json::json!({"Id": "7008"}),
                    at: None,
                }],
                "edits[0]: the added rule cannot be read",
            ),
        ] {
            let refused = apply(&snapshot, &edits).unwrap_err();
            assert!(refused.starts_with(named), "{refused}");
        }
    }
}
