//! Synthetic rule sets and flows, shaped like real ESG rule sets, for benchmarks, property tests
//! and load measurements. Deterministic for a seed.
//!
//! Shape: addresses drawn from a pool of VPC-like blocks in 10.0.0.0/8 (/16 VPCs, /24 and /26
//! subnets, /32 hosts) and a few IPv6 blocks; specific rules first and broader ones later (from
//! 4 % to 29 % "any" sources, 1 % to 11 % "any" destinations), some through address templates,
//! 1 % through tags with no members; services from common ports, small lists, ranges, a few service
//! templates, ANY and ICMP; 60 % accept, 32 % drop, 8 % observe; 2 % disabled.

use esgflow::core::snapshot::{
    AddressTemplate, Endpoint, EndpointKind, Generation, Rule, RuleAction, ServiceTemplate,
    Snapshot,
};

use esgflow::core::engine::FlowKey;
use serde_json::{json, Value};

/// A small, fast, seedable PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const COMMON_PORTS: &[u16] = &[
    22, 53, 80, 443, 3306, 3389, 5432, 6379, 8080, 8443, 9090, 9200, 27017, 25, 123, 445,
];

/// A random address block; `breadth` (0–100) makes /16s likelier, as later rules are broader.
fn address(rng: &mut Rng, vpcs: u64, breadth: u64) -> String {
    let vpc = rng.below(vpcs);
    if rng.chance(4) {
        return match rng.below(3) {
            0 => format!("2001:db8:{vpc:x}::/48"),
            1 => format!("2001:db8:{vpc:x}:{:x}::/64", rng.below(64)),
            _ => format!("2001:db8:{vpc:x}:{:x}::{:x}", rng.below(64), rng.below(256)),
        };
    }
    let roll = rng.below(100);
    if roll < 3 + breadth / 5 {
        format!("10.{vpc}.0.0/16")
    } else if roll < 45 {
        format!("10.{vpc}.{}.0/24", rng.below(64))
    } else if roll < 55 {
        format!("10.{vpc}.{}.{}/26", rng.below(64), rng.below(4) * 64)
    } else {
        format!("10.{vpc}.{}.{}", rng.below(64), rng.below(256))
    }
}

/// A synthetic snapshot of `rules` rules. `vpcs` bounds the address pool (more VPCs, sparser
/// rules); the result is sealed (sorted, versioned).
pub fn snapshot(rules: usize, vpcs: u64, seed: u64) -> Snapshot {
    let mut rng = Rng::new(seed);
    let mut snapshot = Snapshot::default();
    let templates = (rules / 50).max(2);
    for t in 0..templates {
        let addresses = (0..1 + rng.below(4))
            .map(|_| address(&mut rng, vpcs, 50))
            .collect();
        snapshot.address_templates.insert(
            format!("ipm-{t:08x}"),
            AddressTemplate {
                name: format!("template {t}"),
                addresses,
            },
        );
    }
    for t in 0..4 {
        let services = (0..1 + rng.below(3))
            .map(|_| {
                format!(
                    "{}:{}",
                    if rng.chance(80) { "tcp" } else { "udp" },
                    rng.pick(COMMON_PORTS)
                )
            })
            .collect();
        snapshot.service_templates.insert(
            format!("ppm-{t:08x}"),
            ServiceTemplate {
                name: format!("service {t}"),
                services,
                skipped: Vec::new(),
            },
        );
    }
    for i in 0..rules {
        // Real rule sets put specific rules first and broad ones last.
        let breadth = (i * 100 / rules.max(1)) as u64;
        let endpoint = |rng: &mut Rng, any_percent: u64| {
            if rng.chance(any_percent) {
                let any = if rng.chance(5) { "::/0" } else { "0.0.0.0/0" };
                Endpoint {
                    kind: EndpointKind::Net,
                    content: any.to_string(),
                    resolved: Vec::new(),
                }
            } else if rng.chance(1) {
                // A tag nobody resolved: the rule is indeterminate.
                Endpoint {
                    kind: EndpointKind::Tag,
                    content: format!("{{\"Key\":\"team\",\"Value\":\"t{}\"}}", rng.below(9)),
                    resolved: Vec::new(),
                }
            } else if rng.chance(15) {
                Endpoint {
                    kind: EndpointKind::Template,
                    content: format!("ipm-{:08x}", rng.below(templates as u64)),
                    resolved: Vec::new(),
                }
            } else {
                Endpoint {
                    kind: EndpointKind::Net,
                    content: address(rng, vpcs, breadth),
                    resolved: Vec::new(),
                }
            }
        };
        let source = endpoint(&mut rng, 4 + breadth / 4);
        let destination = endpoint(&mut rng, 1 + breadth / 10);
        let (protocol, port, service_template) = match rng.below(20) {
            0 => ("ANY".to_string(), "-1/-1".to_string(), None),
            1 => ("ICMP".to_string(), "-1/-1".to_string(), None),
            2 => (
                String::new(),
                String::new(),
                Some(format!("ppm-{:08x}", rng.below(4))),
            ),
            3 => {
                let lo = 1024 + rng.below(30_000) as u16;
                (
                    "TCP".to_string(),
                    format!("{lo}/{}", lo + rng.below(1000) as u16),
                    None,
                )
            }
            4 | 5 => {
                let ports: Vec<String> = (0..2 + rng.below(3))
                    .map(|_| rng.pick(COMMON_PORTS).to_string())
                    .collect();
                ("TCP".to_string(), ports.join(","), None)
            }
            6 => (
                "UDP".to_string(),
                rng.pick(&[53u16, 123, 161, 514]).to_string(),
                None,
            ),
            _ => ("TCP".to_string(), rng.pick(COMMON_PORTS).to_string(), None),
        };
        // An any → any, any-protocol rule in the middle would end every evaluation there; real
        // sets keep such a catch-all for the very end.
        let any = |e: &Endpoint| e.kind == EndpointKind::Net && e.content.ends_with("/0");
        let (protocol, port) = if any(&source)
            && any(&destination)
            && (protocol == "ANY" || service_template.is_some())
        {
            ("TCP".to_string(), "445".to_string())
        } else {
            (protocol, port)
        };
        let service_template = if protocol == "TCP" && port == "445" {
            None
        } else {
            service_template
        };
        let action = match rng.below(100) {
            0..=59 => RuleAction::Accept,
            60..=91 => RuleAction::Drop,
            _ => RuleAction::Observe,
        };
        snapshot.rules.push(Rule {
            uuid: (100_000 + i).to_string(),
            order: i as u64 + 1,
            generation: if rng.chance(5) {
                Generation::Old
            } else {
                Generation::New
            },
            action,
            enabled: !rng.chance(2),
            source,
            destination,
            protocol,
            port,
            service_template,
            description: format!("synthetic rule {i}"),
            attributes: Default::default(),
        });
    }
    snapshot.taken_at = "2026-01-01T00:00:00Z".to_string();
    snapshot.seal();
    snapshot
}

/// Synthetic flows over the same address pool and ports.
pub fn flows(count: usize, vpcs: u64, seed: u64) -> Vec<FlowKey> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let v6 = rng.chance(4);
            let ip = |rng: &mut Rng| {
                if v6 {
                    std::net::IpAddr::from([
                        0x2001,
                        0xdb8,
                        rng.below(vpcs) as u16,
                        rng.below(64) as u16,
                        0,
                        0,
                        0,
                        rng.below(256) as u16,
                    ])
                } else if rng.chance(5) {
                    std::net::IpAddr::from([203, 0, 113, rng.below(256) as u8])
                } else {
                    std::net::IpAddr::from([
                        10,
                        rng.below(vpcs) as u8,
                        rng.below(64) as u8,
                        rng.below(256) as u8,
                    ])
                }
            };
            let src = ip(&mut rng);
            let dst = ip(&mut rng);
            let protocol = match rng.below(20) {
                0 => 1,
                1..=3 => 17,
                _ => 6,
            };
            let dst_port = match protocol {
                6 | 17 if rng.chance(80) => Some(*rng.pick(COMMON_PORTS)),
                6 | 17 => Some(rng.below(65536) as u16),
                _ => None,
            };
            FlowKey {
                src,
                dst,
                protocol,
                dst_port,
            }
        })
        .collect()
}

/// The cfw and vpc API answers (list items per action, as [`crate::standins::cloud`] serves
/// them) from which the sync function would build a snapshot like [`snapshot`]`(rules, vpcs,
/// seed)`: every rule as a new-ESG rule (`DescribeEnterpriseSecurityGroupRule`) and again in the
/// rule-list API (`DescribeEnterpriseSecurityGroupRuleList`), the address and service templates,
/// and one VPC per address block.
pub fn export(
    rules: usize,
    vpcs: u64,
    seed: u64,
) -> std::collections::BTreeMap<String, Vec<Value>> {
    let snapshot = snapshot(rules, vpcs, seed);
    let mut items = std::collections::BTreeMap::<String, Vec<Value>>::new();
    let rules = snapshot
        .rules
        .iter()
        .map(|rule| {
            json!({
                "Id": rule.uuid,
                "OrderIndex": rule.order.to_string(),
                "RuleAction": match rule.action {
                    RuleAction::Accept => "accept",
                    RuleAction::Drop => "drop",
                    RuleAction::Observe => "log",
                    RuleAction::Unknown => "unknown",
                },
                "SourceType": rule.source.kind.as_str(),
                "SourceContent": rule.source.content,
                "DestType": rule.destination.kind.as_str(),
                "DestContent": rule.destination.content,
                "Protocol": rule.protocol,
                "Port": rule.port,
                "ServiceTemplateId": rule.service_template.clone().unwrap_or_default(),
                "Description": rule.description,
                "Enable": if rule.enabled { "true" } else { "false" },
                "Uid": "",
                "Scope": "SG",
            })
        })
        .collect();
    items.insert("DescribeEnterpriseSecurityGroupRule".into(), rules);
    // The rule-list API lists the same rules again (with the addresses it resolved; none here, so
    // the snapshot is the same): a real account pages both, 20,000 rules being another 200 pages
    // at 20 a second.
    let listed = snapshot
        .rules
        .iter()
        .map(|rule| {
            json!({
                "RuleUuid": rule.uuid.parse::<u64>().unwrap_or_default(),
                "OrderIndex": rule.order,
                "SourceId": "0.0.0.0/0",
                "SourceType": 0,
                "TargetId": "0.0.0.0/0",
                "TargetType": 0,
                "Protocol": rule.protocol,
                "Port": rule.port,
                "Strategy": match rule.action {
                    RuleAction::Drop => 1,
                    _ => 2,
                },
                "Status": 1,
                "Detail": rule.description,
                "IsNew": 1,
                "SouPrivateIp": "",
                "PrivateIp": "",
                "Cidr": "",
            })
        })
        .collect();
    items.insert("DescribeEnterpriseSecurityGroupRuleList".into(), listed);
    let templates = snapshot
        .address_templates
        .iter()
        .map(|(id, t)| {
            json!({
                "AddressTemplateId": id,
                "AddressTemplateName": t.name,
                "AddressSet": t.addresses,
                "AddressExtraSet": t.addresses.iter()
                    .map(|a| json!({"Address": a, "Description": ""}))
                    .collect::<Vec<_>>(),
                "CreatedTime": "2026-01-01 00:00:00",
                "TagSet": [],
            })
        })
        .collect();
    items.insert("DescribeAddressTemplates".into(), templates);
    let services = snapshot
        .service_templates
        .iter()
        .map(|(id, t)| {
            json!({
                "ServiceTemplateId": id,
                "ServiceTemplateName": t.name,
                "ServiceSet": t.services,
                "ServiceExtraSet": t.services.iter()
                    .map(|s| json!({"Service": s, "Description": ""}))
                    .collect::<Vec<_>>(),
                "CreatedTime": "2026-01-01 00:00:00",
            })
        })
        .collect();
    items.insert("DescribeServiceTemplates".into(), services);
    let vpcs = (0..vpcs)
        .map(|v| {
            json!({
                "VpcId": format!("vpc-{v:08x}"),
                "VpcName": format!("vpc {v}"),
                "CidrBlock": format!("10.{v}.0.0/16"),
                "AssistantCidrSet": [],
            })
        })
        .collect();
    items.insert("DescribeVpcs".into(), vpcs);
    items
}
