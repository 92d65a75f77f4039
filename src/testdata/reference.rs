//! The reference account: a generated large account shaped like a real enterprise's, on which
//! `make measure`, the benches and the docs' figures are sized (`esgflow synthetic --profile
//! enterprise`). Deterministic for a seed.
//!
//! Shape, as the cloud's listings answer it (the same items the stand-in serves and `esgflow
//! snapshot build` reads):
//! - 60 VPCs (`10.v.0.0/16`, each with an IPv6 /56), 10 subnets each (600; `10.v.s.0/24` and an
//!   IPv6 /64), 10 ENIs a subnet (6,000; a third with an IPv6 address), each attached to a CVM
//!   instance with a name;
//! - rules (20,000 by default): 7 % old-ESG rules, the rest new-ESG rules; sources from /8 to
//!   /32 and destinations from /12 to /32 over the VPCs' space, so rules overlap at every prefix
//!   length; 12 % IPv6 ends; a third ANY protocol, the rest TCP/UDP single ports, lists and
//!   ranges of up to 5,000 ports, ICMP, or a service template or group; address templates (with
//!   IPv6 members) and template groups; 55 % accept, 33 % drop, 12 % observe; 3 % disabled; 1 %
//!   tag, domain and resource-group ends (2 % of ends) that cannot be resolved.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::synthetic::Rng;

/// VPCs in the account.
pub const VPCS: u32 = 60;
/// Subnets per VPC.
pub const SUBNETS_PER_VPC: u32 = 10;
/// ENIs per subnet.
pub const ENIS_PER_SUBNET: u32 = 10;
/// Rules in the reference account.
pub const RULES: usize = 20_000;

const COMMON_PORTS: &[u16] = &[
    22, 53, 80, 443, 3306, 3389, 5432, 6379, 8080, 8443, 9090, 9200, 27017, 25, 123, 445, 50051,
    10250, 9443, 2379, 11211, 5672, 9092,
];

/// The first 64 bits of a subnet's IPv6 block (`subnet` 0 with a `/56`: its VPC's).
fn v6_prefix(vpc: u32, subnet: u32) -> String {
    format!("2402:4e00:1013:{vpc:02x}{subnet:02x}")
}

/// One ENI's IPv4 address.
fn eni_v4(vpc: u32, subnet: u32, eni: u32) -> String {
    format!("10.{vpc}.{subnet}.{}", 10 + eni)
}

/// One ENI's IPv6 address (only a third of ENIs have one).
fn eni_v6(vpc: u32, subnet: u32, eni: u32) -> Option<String> {
    (eni % 3 == 0).then(|| format!("{}::{:x}", v6_prefix(vpc, subnet), 10 + eni))
}

/// The IPv4 block of `prefix` bits around a random address of the account's space.
fn v4_block(rng: &mut Rng, prefix: u32) -> String {
    let address: u32 = (10 << 24)
        | ((rng.below(VPCS as u64) as u32) << 16)
        | ((rng.below(SUBNETS_PER_VPC as u64 + 2) as u32) << 8)
        | rng.below(256) as u32;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    let net = std::net::Ipv4Addr::from(address & mask);
    if prefix == 32 {
        net.to_string()
    } else {
        format!("{net}/{prefix}")
    }
}

/// An IPv6 block: a VPC's /56, a subnet's /64, or one ENI's address.
fn v6_block(rng: &mut Rng) -> String {
    let vpc = rng.below(VPCS as u64) as u32;
    let subnet = rng.below(SUBNETS_PER_VPC as u64) as u32;
    match rng.below(3) {
        0 => format!("{}::/56", v6_prefix(vpc, 0)),
        1 => format!("{}::/64", v6_prefix(vpc, subnet)),
        _ => format!("{}::{:x}", v6_prefix(vpc, subnet), 10 + 3 * rng.below(4)),
    }
}

/// An address block: IPv6 12 % of the time, else IPv4 with a prefix from `shortest` to /32,
/// most between /16 and /24; blocks wider than /16 are likelier the broader the rule
/// (`breadth`, 0–100: real rule sets put specific rules first and broad ones last).
fn block(rng: &mut Rng, shortest: u32, breadth: u64) -> String {
    if rng.chance(12) {
        return v6_block(rng);
    }
    let prefix = if rng.chance(2 + breadth / 5) {
        shortest + rng.below(16 - shortest as u64 + 1) as u32
    } else if rng.chance(10) {
        32
    } else {
        16 + rng.below(9) as u32
    };
    v4_block(rng, prefix)
}

/// The account's listings: items per action, as the stand-in serves them and as `tccli`
/// exports hold them.
pub fn account(rules: usize, seed: u64) -> BTreeMap<String, Vec<Value>> {
    let mut rng = Rng::new(seed);
    let mut items: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let (mut vpcs, mut subnets, mut enis, mut instances) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    const TIERS: &[&str] = &[
        "web", "app", "api", "db", "cache", "mq", "batch", "ops", "k8s", "edge",
    ];
    for v in 0..VPCS {
        let vpc_id = format!("vpc-{v:08x}");
        vpcs.push(json!({
            "VpcId": vpc_id, "VpcName": format!("{}-{v}", ["prod", "staging", "dev", "shared"][v as usize % 4]),
            "CidrBlock": format!("10.{v}.0.0/16"), "Ipv6CidrBlock": format!("{}::/56", v6_prefix(v, 0)),
            "AssistantCidrSet": [],
        }));
        for s in 0..SUBNETS_PER_VPC {
            let subnet_id = format!("subnet-{v:04x}{s:04x}");
            let tier = TIERS[s as usize];
            subnets.push(json!({
                "VpcId": vpc_id, "SubnetId": subnet_id, "SubnetName": format!("{tier}-{v}"),
                "CidrBlock": format!("10.{v}.{s}.0/24"),
                "Ipv6CidrBlock": format!("{}::/64", v6_prefix(v, s)), "Zone": "ap-guangzhou-3",
            }));
            for e in 0..ENIS_PER_SUBNET {
                let n = (v * SUBNETS_PER_VPC + s) * ENIS_PER_SUBNET + e;
                let instance = format!("ins-{n:08x}");
                let v6: Vec<Value> = eni_v6(v, s, e)
                    .map(|a| json!({"Address": a, "Primary": false}))
                    .into_iter()
                    .collect();
                enis.push(json!({
                    "NetworkInterfaceId": format!("eni-{n:08x}"),
                    "NetworkInterfaceName": format!("{tier}-{v}-{e:02}-eth0"),
                    "VpcId": vpc_id, "SubnetId": subnet_id,
                    "PrivateIpAddressSet": [{"PrivateIpAddress": eni_v4(v, s, e), "Primary": true}],
                    "Ipv6AddressSet": v6,
                    "Attachment": {"InstanceId": instance, "DeviceIndex": 0},
                    "Primary": true, "State": "AVAILABLE",
                }));
                instances.push(json!({
                    "InstanceId": instance, "InstanceName": format!("{tier}-{v}-{e:02}"),
                    "InstanceState": "RUNNING",
                    "PrivateIpAddresses": [eni_v4(v, s, e)],
                    "VirtualPrivateCloud": {"VpcId": vpc_id, "SubnetId": subnet_id},
                }));
            }
        }
    }
    items.insert("DescribeVpcs".into(), vpcs);
    items.insert("DescribeSubnets".into(), subnets);
    items.insert("DescribeNetworkInterfaces".into(), enis);
    items.insert("DescribeInstances".into(), instances);

    let address_templates = (rules / 50).max(4);
    let templates: Vec<Value> = (0..address_templates)
        .map(|t| {
            let addresses: Vec<String> =
                (0..1 + rng.below(6)).map(|_| block(&mut rng, 16, 0)).collect();
            json!({
                "AddressTemplateId": format!("ipm-{t:08x}"), "AddressTemplateName": format!("hosts {t}"),
                "AddressSet": addresses,
                "AddressExtraSet": addresses.iter().map(|a| json!({"Address": a, "Description": ""})).collect::<Vec<_>>(),
                "CreatedTime": "2026-01-01 00:00:00", "TagSet": [],
            })
        })
        .collect();
    let address_groups = (address_templates / 10).max(2);
    let groups: Vec<Value> = (0..address_groups)
        .map(|g| {
            let members: Vec<String> = (0..2 + rng.below(4))
                .map(|_| format!("ipm-{:08x}", rng.below(address_templates as u64)))
                .collect();
            json!({
                "AddressTemplateGroupId": format!("ipmg-{g:08x}"), "AddressTemplateGroupName": format!("hosts group {g}"),
                "AddressTemplateIdSet": members,
                "AddressTemplateSet": members.iter().map(|m| json!({"AddressTemplateId": m})).collect::<Vec<_>>(),
                "CreatedTime": "2026-01-01 00:00:00",
            })
        })
        .collect();
    items.insert("DescribeAddressTemplates".into(), templates);
    items.insert("DescribeAddressTemplateGroups".into(), groups);
    let service_templates = 60;
    let services: Vec<Value> = (0..service_templates)
        .map(|t| {
            let set: Vec<String> = (0..1 + rng.below(4))
                .map(|_| {
                    let protocol = if rng.chance(80) { "tcp" } else { "udp" };
                    if rng.chance(25) {
                        let lo = 1024 + rng.below(40_000);
                        format!("{protocol}:{lo}-{}", lo + rng.below(2_000))
                    } else {
                        format!("{protocol}:{}", rng.pick(COMMON_PORTS))
                    }
                })
                .collect();
            json!({
                "ServiceTemplateId": format!("ppm-{t:08x}"), "ServiceTemplateName": format!("service {t}"),
                "ServiceSet": set,
                "ServiceExtraSet": set.iter().map(|s| json!({"Service": s, "Description": ""})).collect::<Vec<_>>(),
                "CreatedTime": "2026-01-01 00:00:00",
            })
        })
        .collect();
    let service_groups: Vec<Value> = (0..10)
        .map(|g| {
            let members: Vec<String> = (0..2 + rng.below(3))
                .map(|_| format!("ppm-{:08x}", rng.below(service_templates)))
                .collect();
            json!({
                "ServiceTemplateGroupId": format!("ppmg-{g:08x}"), "ServiceTemplateGroupName": format!("services {g}"),
                "ServiceTemplateIdSet": members,
                "ServiceTemplateSet": members.iter().map(|m| json!({"ServiceTemplateId": m})).collect::<Vec<_>>(),
                "CreatedTime": "2026-01-01 00:00:00",
            })
        })
        .collect();
    items.insert("DescribeServiceTemplates".into(), services);
    items.insert("DescribeServiceTemplateGroups".into(), service_groups);

    let old_rules = rules * 7 / 100;
    let new_rules = rules - old_rules;
    let mut listed = Vec::with_capacity(new_rules);
    let mut rule_items = Vec::with_capacity(new_rules);
    for i in 0..new_rules {
        let breadth = (i * 100 / new_rules) as u64;
        let end = |rng: &mut Rng, shortest: u32| -> (&'static str, String) {
            match rng.below(100) {
                0 => (
                    "tag",
                    format!("{{\"Key\":\"team\",\"Value\":\"t{}\"}}", rng.below(9)),
                ),
                1 if rng.chance(50) => ("dnsparse", format!("svc{}.example.com", rng.below(50))),
                1 => ("resourcegroup", format!("cfwrg-{:08x}", rng.below(20))),
                2..=9 => (
                    "template",
                    format!("ipm-{:08x}", rng.below(address_templates as u64)),
                ),
                10..=11 => (
                    "template",
                    format!("ipmg-{:08x}", rng.below(address_groups as u64)),
                ),
                // "Any" ends are kept for the broad rules of the second half.
                12..=15 if breadth >= 50 => ("net", "0.0.0.0/0".to_string()),
                _ => ("net", block(rng, shortest, breadth)),
            }
        };
        let (source_type, source) = end(&mut rng, 8);
        let (dest_type, dest) = end(&mut rng, 12);
        let (protocol, port, service) = service(&mut rng, service_templates);
        let action = match rng.below(100) {
            0..=54 => "accept",
            55..=87 => "drop",
            _ => "log",
        };
        let enabled = !rng.chance(3);
        let id = 100_000 + i;
        rule_items.push(json!({
            "Id": id.to_string(), "OrderIndex": (i + 1).to_string(), "RuleAction": action,
            "SourceType": source_type, "SourceContent": source, "DestType": dest_type, "DestContent": dest,
            "Protocol": protocol, "Port": port, "ServiceTemplateId": service,
            "Description": format!("reference rule {i}"), "Enable": if enabled { "true" } else { "false" },
            "Uid": "", "Scope": "SG",
        }));
        // The rule-list API lists the same rule again (resolving nothing more here).
        listed.push(json!({
            "RuleUuid": id, "OrderIndex": i + 1, "SourceId": "0.0.0.0/0", "SourceType": 0,
            "TargetId": "0.0.0.0/0", "TargetType": 0, "Protocol": protocol, "Port": port,
            "Strategy": if action == "drop" { 1 } else { 2 }, "Status": u8::from(enabled),
            "Detail": format!("reference rule {i}"), "IsNew": 1,
            "SouPrivateIp": "", "PrivateIp": "", "Cidr": "",
        }));
    }
    items.insert("DescribeEnterpriseSecurityGroupRule".into(), rule_items);
    items.insert("DescribeEnterpriseSecurityGroupRuleList".into(), listed);
    let old: Vec<Value> = (0..old_rules)
        .map(|i| {
            let (protocol, port) = match rng.below(3) {
                0 => ("ANY", "-1/-1".to_string()),
                _ => ("TCP", rng.pick(COMMON_PORTS).to_string()),
            };
            json!({
                "OrderIndex": i / 2 + 1, "Id": 900_000 + i, "Uuid": format!("old-{i}"),
                "SourceId": block(&mut rng, 8, 50), "SourceType": 0,
                "TargetId": block(&mut rng, 12, 50), "TargetType": 0,
                "Protocol": protocol, "Port": port,
                "Strategy": if rng.chance(40) { "1" } else { "2" },
                "Detail": format!("old rule {i}"), "Direction": i % 2, "BothWay": 0,
                "Status": u8::from(!rng.chance(3)), "IsNew": 0,
            })
        })
        .collect();
    items.insert("DescribeSecurityGroupList".into(), old);
    items
}

/// The snapshot the importer builds from the account's listings (as sync would from the live
/// APIs).
pub fn snapshot(
    items: &BTreeMap<String, Vec<Value>>,
) -> Result<esgflow::core::snapshot::Snapshot, esgflow::core::snapshot::ImportError> {
    let documents: Vec<(String, Value)> = items
        .iter()
        .filter_map(|(action, list)| {
            let key = crate::standins::cloud::list_key(action)?;
            Some((action.clone(), json!({ key: list })))
        })
        .collect();
    esgflow::core::snapshot::build_from_documents(&documents, "2026-01-01T00:00:00Z")
}

/// A rule's service: a third ANY; else TCP or UDP on a common port, a list, a range of up to
/// 5,000 ports, ICMP, or a service template or group.
fn service(rng: &mut Rng, templates: u64) -> (&'static str, String, String) {
    if rng.chance(33) {
        return ("ANY", "-1/-1".into(), String::new());
    }
    let protocol = if rng.chance(80) { "TCP" } else { "UDP" };
    match rng.below(20) {
        0 => ("ICMP", "-1/-1".into(), String::new()),
        1 => (
            "",
            String::new(),
            format!("ppm-{:08x}", rng.below(templates)),
        ),
        2 => ("", String::new(), format!("ppmg-{:08x}", rng.below(10))),
        3..=7 => {
            let lo = 1 + rng.below(60_000);
            let hi = (lo + rng.below(5_000)).min(65_535);
            (protocol, format!("{lo}/{hi}"), String::new())
        }
        8..=10 => {
            let ports: Vec<String> = (0..2 + rng.below(4))
                .map(|_| rng.pick(COMMON_PORTS).to_string())
                .collect();
            (protocol, ports.join(","), String::new())
        }
        _ => (protocol, rng.pick(COMMON_PORTS).to_string(), String::new()),
    }
}

/// `count` flow-log lines (v2) of one day over the account's ENIs: 12 % IPv6, 10 % from the
/// internet, services on common ports and on any port, 25 % rejected.
pub fn flow_lines(count: usize, seed: u64, day_start: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let span = 86_400 / (count as u64).max(1);
    (0..count)
        .map(|i| {
            let pick = |rng: &mut Rng| {
                (
                    rng.below(VPCS as u64) as u32,
                    rng.below(SUBNETS_PER_VPC as u64) as u32,
                    3 * rng.below(4) as u32,
                )
            };
            let (v, s, e) = pick(&mut rng);
            let (pv, ps, pe) = pick(&mut rng);
            let n = (v * SUBNETS_PER_VPC + s) * ENIS_PER_SUBNET + e;
            let v6 = rng.chance(12);
            let local = if v6 {
                eni_v6(v, s, e).expect("every third ENI has IPv6")
            } else {
                eni_v4(v, s, e)
            };
            let peer = if rng.chance(10) {
                if v6 {
                    format!("2001:db8::{:x}", rng.below(4096))
                } else {
                    format!("203.0.113.{}", rng.below(256))
                }
            } else if v6 {
                eni_v6(pv, ps, pe).expect("every third ENI has IPv6")
            } else {
                eni_v4(pv, ps, pe)
            };
            let protocol = match rng.below(20) {
                0 => 1,
                1..=3 => 17,
                _ => 6,
            };
            let protocol = if v6 && protocol == 1 { 58 } else { protocol };
            let port = match protocol {
                6 | 17 if rng.chance(75) => *rng.pick(COMMON_PORTS),
                6 | 17 => 1 + rng.below(65_535) as u16,
                _ => 0,
            };
            let (src, dst) = if rng.chance(50) {
                (local, peer)
            } else {
                (peer, local)
            };
            let start = day_start + i as u64 * span;
            format!(
                "2 1251762227 eni-{n:08x} {src} {dst} {} {port} {protocol} {} {} {start} {} {} OK",
                32_768 + rng.below(28_000),
                1 + rng.below(50),
                60 + rng.below(60_000),
                start + 60,
                if rng.chance(25) { "REJECT" } else { "ACCEPT" }
            )
        })
        .collect()
}

/// How busy each hour of the day is, relative to the busiest (UTC+8 office hours, shifted to
/// UTC): a quiet night at a fifth of the peak.
const RHYTHM: [u64; 24] = [
    90, 100, 100, 95, 90, 100, 100, 95, 80, 70, 60, 45, 35, 25, 20, 20, 20, 20, 25, 35, 50, 65, 80,
    90,
];

/// A day of the reference account's flow logs, `lines` lines (v2) in time order from
/// `day_start` (another day of the same `seed`: the same conversations, other flows), as the ENIs'
/// flow logs record it: conversations between the account's ENIs (in one subnet, between
/// subnets, between VPCs) and with the internet (both ways); 12 % over IPv6; services on common
/// ports, gRPC 50051, Kubernetes NodePorts (30000–32767), kubelet 10250, DNS, ICMP echo (ports
/// `0 0`) and any high port; a quarter rejected. Each accepted conversation has its replies, and
/// a conversation between two of the account's ENIs is recorded on both (the same flow twice,
/// on two ENIs). Conversations repeat as a real account's do: all but one in twenty are one of
/// [`CONVERSATIONS`] (who talks to whom, on which port, and whether it is let through), the
/// busiest few far more often than the rest; the rest are one-offs (scans, new clients). The
/// busiest hour holds five times the quietest's lines. Streams: ten million lines need no more
/// memory than ten.
pub fn day_lines(lines: usize, seed: u64, day_start: u64) -> impl Iterator<Item = String> {
    let total: u64 = RHYTHM.iter().sum();
    // Each day its own flows; the conversations they repeat are the account's (of `seed`).
    let mut rng = Rng::new(seed ^ day_start.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut pending: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut made = 0usize;
    std::iter::from_fn(move || {
        if made == lines {
            return None;
        }
        while pending.is_empty() {
            // Time from the rhythm: the conversation's share of the day, read on the cumulative
            // hourly weights.
            let share = made as u64 * total * 3600 / lines.max(1) as u64;
            let (mut hour, mut before) = (0usize, 0u64);
            while hour < 23 && (before + RHYTHM[hour]) * 3600 <= share {
                before += RHYTHM[hour];
                hour += 1;
            }
            let within = (share - before * 3600) / RHYTHM[hour];
            let start = day_start + hour as u64 * 3600 + within.min(3599);
            pending.extend(conversation(&mut rng, seed, start));
        }
        made += 1;
        pending.pop_front()
    })
}

/// One ENI of the account: (vpc, subnet, eni).
type Eni = (u32, u32, u32);

/// The conversations the reference account's day repeats (a thousand a VPC).
pub const CONVERSATIONS: u64 = 60_000;

/// The flow-log lines of one conversation starting at `start`: its shape (ends, port, verdict)
/// one of the account's [`CONVERSATIONS`] — the `i`-th about as often as `1/√i` — or, one time
/// in twenty, a one-off; its client port and counters its own.
fn conversation(instance: &mut Rng, seed: u64, start: u64) -> Vec<String> {
    let mut shape = if instance.chance(5) {
        Rng::new(instance.next_u64())
    } else {
        // u² for u uniform in [0, 1): the i-th conversation's chance falls as 1/√i.
        let u = (instance.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let i = (u * u * CONVERSATIONS as f64) as u64;
        Rng::new(seed ^ (i + 1).wrapping_mul(0xd6e8_feb8_6659_fd93))
    };
    let rng = &mut shape;
    // IPv6 between ENIs that have an address (every third); IPv4 between any.
    let v6 = rng.chance(12);
    let host = |rng: &mut Rng| {
        if v6 {
            3 * rng.below(4) as u32
        } else {
            rng.below(ENIS_PER_SUBNET as u64) as u32
        }
    };
    let eni = |rng: &mut Rng| -> Eni {
        (
            rng.below(VPCS as u64) as u32,
            rng.below(SUBNETS_PER_VPC as u64) as u32,
            host(rng),
        )
    };
    let local = eni(rng);
    // The other end: an ENI of the same subnet, of the same VPC, of another VPC, or the
    // internet (a client of ours, or one of our servers' clients).
    let (peer, inbound): (Option<Eni>, bool) = match rng.below(100) {
        0..=14 => (Some((local.0, local.1, host(rng))), false),
        15..=49 => (
            Some((
                local.0,
                rng.below(SUBNETS_PER_VPC as u64) as u32,
                eni(rng).2,
            )),
            false,
        ),
        50..=64 => (Some(eni(rng)), false),
        65..=84 => (None, true),
        _ => (None, false),
    };
    let address = |e: Eni| {
        if v6 {
            eni_v6(e.0, e.1, e.2).expect("an IPv6 ENI")
        } else {
            eni_v4(e.0, e.1, e.2)
        }
    };
    let internet = if v6 {
        format!("2001:db8:{:x}::{:x}", rng.below(64), 1 + rng.below(4096))
    } else {
        format!("203.0.{}.{}", 113 + rng.below(3), 1 + rng.below(254))
    };
    let (icmp, udp) = (if v6 { 58 } else { 1 }, 17);
    let (protocol, port) = match rng.below(100) {
        0..=51 => (6, *rng.pick(COMMON_PORTS)),
        52..=59 => (6, 50051),
        60..=67 => (6, 30_000 + rng.below(2_768) as u16),
        68..=72 => (6, 10250),
        73..=77 => (udp, 53),
        78..=81 => (icmp, 0),
        _ => (
            if rng.chance(80) { 6 } else { udp },
            1024 + rng.below(64_512) as u16,
        ),
    };
    let rejected = rng.chance(if inbound { 40 } else { 15 });
    let rng = instance;
    let client_port = if protocol == icmp {
        0
    } else {
        32_768 + rng.below(28_000) as u16
    };
    // Client and server: the local ENI is the server of an inbound conversation, else the client.
    let (client, server, client_eni, server_eni) = match (peer, inbound) {
        (Some(p), _) => (address(local), address(p), Some(local), Some(p)),
        (None, true) => (internet, address(local), None, Some(local)),
        (None, false) => (address(local), internet, Some(local), None),
    };
    let action = if rejected { "REJECT" } else { "ACCEPT" };
    let packets = 1 + rng.below(if rejected { 3 } else { 200 });
    let bytes = packets * (60 + rng.below(1_400));
    let end = start + 60;
    let line = |e: Eni, src: &str, dst: &str, sport: u16, dport: u16, packets: u64, bytes: u64| {
        let n = (e.0 * SUBNETS_PER_VPC + e.1) * ENIS_PER_SUBNET + e.2;
        format!("2 1251762227 eni-{n:08x} {src} {dst} {sport} {dport} {protocol} {packets} {bytes} {start} {end} {action} OK")
    };
    let mut lines = Vec::with_capacity(4);
    for e in [client_eni, server_eni].into_iter().flatten() {
        lines.push(line(e, &client, &server, client_port, port, packets, bytes));
        if !rejected {
            // The reply, recorded by the same ENI.
            let reply_bytes = packets * (60 + rng.below(8_000));
            lines.push(line(
                e,
                &server,
                &client,
                port,
                client_port,
                packets,
                reply_bytes,
            ));
        }
    }
    lines
}

/// The flows of [`flow_lines`], as the engine judges them.
pub fn flows(count: usize, seed: u64) -> Vec<esgflow::core::engine::FlowKey> {
    flow_lines(count, seed, 1_767_225_600)
        .iter()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let protocol: u8 = fields[7].parse().expect("generated");
            esgflow::core::engine::FlowKey {
                src: fields[3].parse().expect("generated"),
                dst: fields[4].parse().expect("generated"),
                protocol,
                dst_port: matches!(protocol, 6 | 17).then(|| fields[6].parse().expect("generated")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generated day has what a large account's day has, line for line.
    #[test]
    fn a_day_of_flow_logs_has_the_shape_of_a_real_day() {
        use esgflow::core::flowlog::{parse, Parsed};
        use std::collections::{HashMap, HashSet};
        const LINES: usize = 40_000;
        let day = 1_767_225_600;
        let mut flows = Vec::with_capacity(LINES);
        let mut enis_of: HashMap<(String, String, u16, u16, u8), HashSet<String>> = HashMap::new();
        let mut hourly = [0usize; 24];
        let mut last_start = 0;
        for line in day_lines(LINES, 7, day) {
            let Ok(Parsed::Flow(flow)) = parse(&line) else {
                panic!("not a flow: {line}");
            };
            assert!(flow.start >= last_start, "in time order: {line}");
            assert!((day..day + 86_400).contains(&flow.start), "{line}");
            last_start = flow.start;
            hourly[((flow.start - day) / 3600) as usize] += 1;
            let key = (
                flow.src.to_string(),
                flow.dst.to_string(),
                flow.src_port.unwrap_or(0),
                flow.dst_port.unwrap_or(0),
                flow.protocol,
            );
            enis_of.entry(key).or_default().insert(flow.eni.to_string());
            flows.push(flow);
        }
        assert_eq!(flows.len(), LINES);
        let share = |what: &dyn Fn(&esgflow::core::flowlog::FlowRecord) -> bool| {
            flows.iter().filter(|f| what(f)).count() * 100 / LINES
        };
        assert!(share(&|f| f.src.is_ipv6()) >= 8, "IPv6");
        assert!(share(&|f| matches!(f.protocol, 1 | 58)) >= 2, "ICMP");
        assert!(
            flows.iter().filter(|f| f.protocol == 58).count() >= 100,
            "ICMPv6"
        );
        assert!(share(&|f| f.action == esgflow::core::flowlog::FlowAction::Reject) >= 5);
        for (name, port) in [("gRPC", 50051), ("kubelet", 10250), ("DNS", 53)] {
            assert!(share(&|f| f.dst_port == Some(port)) >= 2, "{name}");
        }
        assert!(
            share(&|f| f.dst_port.is_some_and(|p| (30_000..=32_767).contains(&p))) >= 4,
            "NodePorts"
        );
        assert!(
            share(&|f| f
                .dst_port
                .is_some_and(|p| p > 1024 && !COMMON_PORTS.contains(&p)))
                >= 20,
            "services on ports outside any fixed list"
        );
        let internet = |ip: &std::net::IpAddr| {
            let text = ip.to_string();
            text.starts_with("203.0.") || text.starts_with("2001:db8:")
        };
        assert!(share(&|f| internet(&f.src)) >= 5, "internet clients");
        assert!(share(&|f| internet(&f.dst)) >= 5, "internet servers");
        let vpc = |ip: &std::net::IpAddr| ip.to_string().split('.').nth(1).map(str::to_string);
        assert!(
            share(&|f| !internet(&f.src)
                && !internet(&f.dst)
                && !f.src.is_ipv6()
                && vpc(&f.src) != vpc(&f.dst))
                >= 5,
            "cross-VPC"
        );
        // Replies: the reverse of an accepted flow, on the same ENI.
        let replies = flows
            .iter()
            .filter(|f| {
                enis_of
                    .get(&(
                        f.dst.to_string(),
                        f.src.to_string(),
                        f.dst_port.unwrap_or(0),
                        f.src_port.unwrap_or(0),
                        f.protocol,
                    ))
                    .is_some_and(|enis| enis.contains(f.eni.as_str()))
            })
            .count();
        assert!(replies * 100 / LINES >= 40, "replies: {replies}");
        // The same flow seen on two ENIs.
        let twice = enis_of.values().filter(|enis| enis.len() == 2).count();
        assert!(
            twice * 100 / enis_of.len() >= 20,
            "duplicates on two ENIs: {twice}"
        );
        // Conversations repeat: of the lines from a client port (requests, and the replies of
        // services on high ports), one in seven is an ENI's to an end and port it recorded
        // before, and the busiest is seen a hundred times (of one-off conversations only: one in
        // seventy, and none more than 4 times).
        let mut seen: HashMap<(String, String, String, u16, u8), usize> = HashMap::new();
        let requests = flows
            .iter()
            .filter(|f| f.src_port.is_none_or(|p| (32_768..60_768).contains(&p)));
        let mut conversations = 0;
        for f in requests {
            conversations += 1;
            *seen
                .entry((
                    f.eni.to_string(),
                    f.src.to_string(),
                    f.dst.to_string(),
                    f.dst_port.unwrap_or(0),
                    f.protocol,
                ))
                .or_default() += 1;
        }
        let busiest = seen.values().max().copied().unwrap_or(0);
        assert!(
            seen.len() * 100 <= conversations * 90 && busiest >= 30,
            "{} distinct of {conversations}, the busiest {busiest} times",
            seen.len()
        );
        // A daily rhythm.
        let (busiest, quietest) = (hourly.iter().max().unwrap(), hourly.iter().min().unwrap());
        assert!(*busiest >= 4 * quietest, "{hourly:?}");
    }

    /// The reference account is as large as a real enterprise account, in every dimension the
    /// issue names, and builds into a snapshot through the same importer as a live account.
    #[test]
    fn the_reference_account_has_the_shape_of_a_large_account() {
        let items = account(RULES, 42);
        assert!(items
            .keys()
            .all(|action| crate::standins::cloud::list_key(action).is_some()));
        let snapshot = snapshot(&items).unwrap();
        assert!(snapshot.vpcs.len() >= 50, "{} VPCs", snapshot.vpcs.len());
        assert!(snapshot.subnets.len() >= 500);
        assert!(snapshot.enis.len() >= 5_000);
        assert!(snapshot.instances.len() >= 5_000);
        assert!(snapshot.enis.iter().all(|e| e.instance_id.is_some()));
        assert_eq!(snapshot.rules.len(), RULES);
        // Only the tag, domain and resource-group ends are unresolvable (2 % of ends), and every
        // field reads.
        let unexpected: Vec<&String> = snapshot
            .warnings
            .iter()
            .filter(|w| !w.contains("has no members in the snapshot"))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{:?}",
            &unexpected[..3.min(unexpected.len())]
        );
        let engine = esgflow::core::engine::Engine::compile(&snapshot).unwrap();
        let unresolvable = engine.indeterminate_rules().len();
        assert!((200..=1_000).contains(&unresolvable), "{unresolvable}");
        let rules = &snapshot.rules;
        let share = |what: &dyn Fn(&esgflow::core::snapshot::Rule) -> bool| {
            rules.iter().filter(|r| what(r)).count() * 100 / rules.len()
        };
        let v6 = |e: &esgflow::core::snapshot::Endpoint| e.content.contains(':');
        assert!(share(&|r| v6(&r.source) || v6(&r.destination)) >= 10);
        assert!(share(&|r| r.protocol == "ANY") >= 25);
        assert!(share(&|r| r.action == esgflow::core::snapshot::RuleAction::Observe) >= 5);
        assert!(share(&|r| !r.enabled) >= 1);
        assert!(share(&|r| r.generation == esgflow::core::snapshot::Generation::Old) >= 5);
        for kind in ["tag", "domain", "resourcegroup", "template"] {
            assert!(
                rules
                    .iter()
                    .any(|r| r.source.kind.as_str() == kind || r.destination.kind.as_str() == kind),
                "{kind}"
            );
        }
        assert!(rules.iter().any(|r| r.source.content.starts_with("ipmg-")));
        assert!(rules.iter().any(|r| r
            .service_template
            .as_deref()
            .is_some_and(|t| t.starts_with("ppmg-"))));
        // Overlapping prefixes of every length from /8.
        let prefixes: std::collections::BTreeSet<u32> = rules
            .iter()
            .filter_map(|r| r.source.content.split_once('/')?.1.parse().ok())
            .collect();
        assert!((8..=24).all(|p| prefixes.contains(&p)), "{prefixes:?}");
        let wide = rules
            .iter()
            .filter_map(|r| {
                let (lo, hi) = r.port.split_once('/')?;
                Some(hi.parse::<i64>().ok()? - lo.parse::<i64>().ok()?)
            })
            .max();
        assert!(wide.is_some_and(|w| w > 4_000), "{wide:?}");
        // At this size the index is a tree of lists: it agrees with the naive evaluator.
        for flow in flows(300, 3) {
            assert_eq!(
                engine.evaluate(&flow),
                engine.evaluate_linear(&flow),
                "{flow:?}"
            );
        }
        let lines = flow_lines(1_000, 7, 1_764_547_200);
        assert_eq!(lines.len(), 1_000);
        assert!(lines.iter().filter(|l| l.contains("2402:")).count() >= 80);
    }
}
