//! Rule hygiene against brute force: on small random rule sets confined to a tiny universe
//! (10.0.0.0/29 plus "everything else", four protocol classes, ports 0–10), every flow class is
//! enumerated and each rule is judged shadowed / redundant by evaluating the rule set with and
//! without it. The exact analysis must agree on every rule.

use std::net::{IpAddr, Ipv4Addr};

use esgflow::core::engine::hygiene::{analyze, Finding};
use esgflow::core::engine::{Engine, FlowKey};
use esgflow::core::snapshot::{Endpoint, EndpointKind, Generation, Rule, RuleAction, Snapshot};
use proptest::prelude::*;

const CIDRS: &[&str] = &[
    "0.0.0.0/0",
    "10.0.0.0/29",
    "10.0.0.0/30",
    "10.0.0.4/30",
    "10.0.0.2/31",
    "10.0.0.6/31",
    "10.0.0.1",
    "10.0.0.5",
];
const PROTOCOLS: &[&str] = &["ANY", "TCP", "UDP", "ICMP"];
const PORTS: &[&str] = &["-1/-1", "1", "2/4", "1,3", "5/9", "3/6"];

fn endpoint(i: usize) -> Endpoint {
    Endpoint {
        kind: EndpointKind::Net,
        content: CIDRS[i % CIDRS.len()].to_string(),
        resolved: Vec::new(),
    }
}

type Spec = (usize, usize, usize, usize, u8, bool);

fn snapshot(specs: &[Spec]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for (n, &(src, dst, protocol, port, action, enabled)) in specs.iter().enumerate() {
        let protocol = PROTOCOLS[protocol % PROTOCOLS.len()];
        let port = if matches!(protocol, "TCP" | "UDP") {
            PORTS[port % PORTS.len()]
        } else {
            "-1/-1"
        };
        snapshot.rules.push(Rule {
            uuid: format!("r{}", n + 1),
            order: n as u64 + 1,
            generation: Generation::New,
            action: match action % 3 {
                0 => RuleAction::Accept,
                1 => RuleAction::Drop,
                _ => RuleAction::Observe,
            },
            enabled,
            source: endpoint(src),
            destination: endpoint(dst),
            protocol: protocol.to_string(),
            port: port.to_string(),
            service_template: None,
            description: String::new(),
            attributes: Default::default(),
        });
    }
    snapshot.seal();
    snapshot
}

fn universe() -> Vec<FlowKey> {
    let addresses: Vec<IpAddr> = (0..=8u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
        .collect();
    let mut keys = Vec::new();
    for protocol in [1u8, 6, 17, 47] {
        let ports: Vec<Option<u16>> = if protocol == 6 || protocol == 17 {
            (0..=10).map(Some).collect()
        } else {
            vec![None]
        };
        for port in ports {
            keys.push((protocol, port));
        }
    }
    let mut flows = Vec::new();
    for &src in &addresses {
        for &dst in &addresses {
            for &(protocol, dst_port) in &keys {
                flows.push(FlowKey {
                    src,
                    dst,
                    protocol,
                    dst_port,
                });
            }
        }
    }
    flows
}

/// (decision action, observed uuids) evaluating rule by rule, leaving out `skip`.
fn outcome(engine: &Engine, flow: &FlowKey, skip: Option<usize>) -> (String, Vec<String>) {
    let mut observed = Vec::new();
    for (i, rule) in engine.rules().iter().enumerate() {
        if Some(i) == skip || !rule.rule.enabled || !rule.matches(flow) {
            continue;
        }
        if rule.rule.action.is_terminal() {
            return (rule.rule.action.as_str().to_string(), observed);
        }
        observed.push(rule.rule.uuid.clone());
    }
    ("none".to_string(), observed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn exact_analysis_agrees_with_brute_force(
        specs in prop::collection::vec((0usize..8, 0usize..8, 0usize..4, 0usize..6, 0u8..3, prop::bool::weighted(0.9)), 1..14)
    ) {
        let engine = Engine::compile(&snapshot(&specs)).unwrap();
        let flows = universe();
        let findings = analyze(&engine);
        for (i, rule) in engine.rules().iter().enumerate() {
            if !rule.rule.enabled {
                continue;
            }
            let reached = flows.iter().any(|f| {
                rule.matches(f)
                    && !engine.rules()[..i].iter().any(|e| e.rule.enabled && e.rule.action.is_terminal() && e.matches(f))
            });
            let redundant = reached
                && rule.rule.action.is_terminal()
                && flows.iter().all(|f| outcome(&engine, f, None) == outcome(&engine, f, Some(i)));
            let found = findings.iter().find(|f| f.rule as usize == i).map(|f| f.finding.clone());
            let expected = if !reached {
                Some(Finding::Shadowed)
            } else if redundant {
                Some(Finding::Redundant)
            } else {
                None
            };
            prop_assert_eq!(found, expected, "rule {} of {:?}", rule.rule.uuid, specs);
        }
    }
}

#[test]
fn covering_rules_are_named() {
    // r1 allows 10.0.0.0/30 → any TCP, r2 allows 10.0.0.4/30 → any TCP: together they cover r3.
    let specs = [
        (2, 0, 1, 0, 0, true),
        (3, 0, 1, 0, 0, true),
        // r3 drops TCP 1 from 10.0.0.0/29: r1 and r2 decide all of it first (shadowed).
        (1, 0, 1, 1, 1, true),
        // r4 drops TCP 1 from anywhere: reached from outside 10.0.0.0/29 ...
        (0, 0, 1, 1, 1, true),
        // ... but r5 drops everything, so without r4 nothing would change (redundant).
        (0, 0, 0, 0, 1, true),
    ];
    let engine = Engine::compile(&snapshot(&specs)).unwrap();
    let findings = analyze(&engine);
    let shadowed = findings.iter().find(|f| f.uuid == "r3").unwrap();
    assert_eq!(shadowed.finding, Finding::Shadowed);
    assert_eq!(shadowed.covering, vec!["r1", "r2"]);
    let redundant = findings.iter().find(|f| f.uuid == "r4").unwrap();
    assert_eq!(redundant.finding, Finding::Redundant);
    assert_eq!(redundant.covering, vec!["r5"]);
}
