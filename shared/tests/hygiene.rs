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

/// (decision action, observed uuids) evaluating rule by rule, leaving out the rules `removed`.
fn outcome(engine: &Engine, flow: &FlowKey, removed: &[bool]) -> (String, Vec<String>) {
    let mut observed = Vec::new();
    for (i, rule) in engine.rules().iter().enumerate() {
        if removed[i] || !rule.rule.enabled || !rule.matches(flow) {
            continue;
        }
        if rule.rule.action.is_terminal() {
            return (rule.rule.action.as_str().to_string(), observed);
        }
        observed.push(rule.rule.uuid.clone());
    }
    ("none".to_string(), observed)
}

/// The findings by brute force: a rule no flow reaches is shadowed; then, from the last rule up,
/// a reached terminal rule is redundant when removing it, on top of every rule already reported,
/// changes no flow's outcome (so the reported rules can all be removed together).
fn brute_force(engine: &Engine, flows: &[FlowKey]) -> Vec<Option<Finding>> {
    let rules = engine.rules();
    let mut expected = vec![None; rules.len()];
    let mut removed = vec![false; rules.len()];
    for (i, rule) in rules.iter().enumerate() {
        let reached = flows.iter().any(|f| {
            rule.matches(f)
                && !rules[..i]
                    .iter()
                    .any(|e| e.rule.enabled && e.rule.action.is_terminal() && e.matches(f))
        });
        if rule.rule.enabled && !reached {
            expected[i] = Some(Finding::Shadowed);
            removed[i] = true;
        }
    }
    for i in (0..rules.len()).rev() {
        if !rules[i].rule.enabled || removed[i] || !rules[i].rule.action.is_terminal() {
            continue;
        }
        let mut without = removed.clone();
        without[i] = true;
        if flows
            .iter()
            .all(|f| outcome(engine, f, &removed) == outcome(engine, f, &without))
        {
            expected[i] = Some(Finding::Redundant);
            removed[i] = true;
        }
    }
    expected
}

fn rule_specs() -> impl Strategy<Value = Vec<Spec>> {
    prop::collection::vec(
        (
            0usize..8,
            0usize..8,
            0usize..4,
            0usize..6,
            0u8..3,
            prop::bool::weighted(0.9),
        ),
        1..14,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn exact_analysis_agrees_with_brute_force(specs in rule_specs()) {
        let engine = Engine::compile(&snapshot(&specs)).unwrap();
        let flows = universe();
        let findings = analyze(&engine);
        let expected = brute_force(&engine, &flows);
        for (i, rule) in engine.rules().iter().enumerate() {
            if !rule.rule.enabled {
                continue;
            }
            let found = findings.iter().find(|f| f.rule as usize == i).map(|f| f.finding.clone());
            prop_assert_eq!(found, expected[i].clone(), "rule {} of {:?}", rule.rule.uuid, specs);
        }
        // The rules named as covering a shadowed rule are earlier terminal rules that match every
        // flow it matches, on their own.
        for finding in findings.iter().filter(|f| f.finding == Finding::Shadowed) {
            let named: Vec<_> = engine
                .rules()
                .iter()
                .filter(|r| finding.covering.contains(&r.rule.uuid))
                .collect();
            prop_assert_eq!(named.len(), finding.covering.len());
            prop_assert!(named
                .iter()
                .all(|r| r.rule.action.is_terminal() && r.rule.order < engine.rules()[finding.rule as usize].rule.order));
            for flow in flows.iter().filter(|f| engine.rules()[finding.rule as usize].matches(f)) {
                prop_assert!(
                    named.iter().any(|r| r.matches(flow)),
                    "flow {:?} of shadowed {} not matched by {:?} in {:?}", flow, finding.uuid, finding.covering, specs
                );
            }
        }
    }

    /// Every flow of the universe keeps its outcome (action and observe hits) when every rule
    /// reported shadowed or redundant is removed at once.
    #[test]
    fn removing_every_reported_rule_keeps_every_outcome(specs in rule_specs()) {
        let engine = Engine::compile(&snapshot(&specs)).unwrap();
        let mut removed = vec![false; engine.rules().len()];
        for finding in analyze(&engine) {
            if matches!(finding.finding, Finding::Shadowed | Finding::Redundant) {
                removed[finding.rule as usize] = true;
            }
        }
        let kept = vec![false; removed.len()];
        for flow in universe() {
            prop_assert_eq!(
                outcome(&engine, &flow, &kept),
                outcome(&engine, &flow, &removed),
                "flow {:?} of {:?}, removed {:?}", flow, specs, removed
            );
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

/// Redundancy is decided from the bottom up, with the rules reported below counted as removed.
#[test]
fn redundancy_counts_later_reported_rules_as_removed() {
    let found = |specs: &[Spec]| -> Vec<(String, Finding, Vec<String>)> {
        let engine = Engine::compile(&snapshot(specs)).unwrap();
        analyze(&engine)
            .into_iter()
            .map(|f| (f.uuid, f.finding, f.covering))
            .collect()
    };
    let row = |uuid: &str, finding, covering: &[&str]| {
        (
            uuid.to_string(),
            finding,
            covering.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        )
    };
    // A chain, A = 10.0.0.0/30, B = 10.0.0.4/30, X = 10.0.0.1: r1 allows A → X, r2 allows
    // A+B → X, r3 drops A → anywhere, r4 allows B → anywhere. Alone, r1 looks redundant (r2
    // allows the same) and r2 too (r4 allows B → X); together, without both, A → X would be
    // dropped by r3. Only r2 is reported.
    let chain = [
        (2, 6, 0, 0, 0, true),
        (1, 6, 0, 0, 0, true),
        (2, 0, 0, 0, 1, true),
        (3, 0, 0, 0, 0, true),
    ];
    assert_eq!(found(&chain), vec![row("r2", Finding::Redundant, &["r4"])]);
    // r1 allows A → X, r2 drops A+B → X, r3 allows A → anywhere, r4 drops B → anywhere. r2
    // decides only B → X, which r4 decides the same: redundant, so it does not stand between r1
    // and r3, and r1 is redundant too.
    let crossing = [
        (2, 6, 0, 0, 0, true),
        (1, 6, 0, 0, 1, true),
        (2, 0, 0, 0, 0, true),
        (3, 0, 0, 0, 1, true),
    ];
    assert_eq!(
        found(&crossing),
        vec![
            row("r1", Finding::Redundant, &["r3"]),
            row("r2", Finding::Redundant, &["r4"]),
        ]
    );
}
