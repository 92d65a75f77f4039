//! Evaluation semantics on a hand-built snapshot, and the index checked against the naive linear
//! evaluator on random rule sets.

use std::net::IpAddr;

use esgflow::core::engine::{Decision, Direction, Engine, FlowKey, Scope, StepOutcome};
use esgflow::core::snapshot::{build_from_documents, Snapshot};
use esgflow_local::testdata::synthetic;
use proptest::prelude::*;
use serde_json::{json, Value};

fn rule(
    id: &str,
    order: u32,
    action: &str,
    src: (&str, &str),
    dst: (&str, &str),
    protocol: &str,
    port: &str,
) -> Value {
    json!({"Id": id, "OrderIndex": order.to_string(), "RuleAction": action, "SourceType": src.0, "SourceContent": src.1,
           "DestType": dst.0, "DestContent": dst.1, "Protocol": protocol, "Port": port, "Description": format!("rule {id}"), "Enable": "true"})
}

fn snapshot() -> Snapshot {
    let mut disabled = rule(
        "90",
        1,
        "drop",
        ("net", "0.0.0.0/0"),
        ("net", "0.0.0.0/0"),
        "ANY",
        "-1/-1",
    );
    disabled["Enable"] = json!("false");
    let mut service = rule(
        "17",
        17,
        "accept",
        ("net", "10.0.0.0/8"),
        ("net", "10.0.0.2/32"),
        "",
        "",
    );
    service["ServiceTemplateId"] = json!("ppm-dns");
    let documents = vec![
        (
            "rules".to_string(),
            json!({"Rules": [
                disabled,
                rule("10", 10, "accept", ("net", "10.0.1.0/24"), ("net", "10.0.2.0/24"), "TCP", "8080"),
                rule("11", 11, "log", ("net", "0.0.0.0/0"), ("template", "ipm-db"), "TCP", "3306"),
                rule("12", 12, "accept", ("net", "10.0.2.0/24"), ("template", "ipm-db"), "TCP", "3306"),
                rule("13", 13, "drop", ("net", "0.0.0.0/0"), ("template", "ipm-db"), "TCP", "3306"),
                rule("14", 14, "drop", ("tag", "{\"Key\":\"env\",\"Value\":\"dev\"}"), ("net", "10.0.0.0/16"), "ANY", "-1/-1"),
                rule("15", 15, "drop", ("net", "0.0.0.0/0"), ("template", "ipm-db"), "ICMP", "-1/-1"),
                rule("16", 16, "accept", ("instance", "ins-bastion"), ("net", "10.0.0.0/16"), "TCP", "22,3389"),
                service,
                rule("18", 18, "drop", ("net", "::/0"), ("net", "2001:db8:1::/48"), "ANY", "-1/-1"),
                rule("19", 19, "drop", ("net", "0.0.0.0/0"), ("net", "10.0.0.0/16"), "TCP", "1/65535"),
            ]}),
        ),
        (
            "old".to_string(),
            json!({"Data": [{"OrderIndex": 1, "Id": 500, "SourceId": "0.0.0.0/0", "SourceType": 0, "TargetId": "10.0.9.9", "TargetType": 0,
            "Protocol": "UDP", "Port": "53", "Strategy": "1", "Direction": 1, "Detail": "old block"}]}),
        ),
        (
            "templates".to_string(),
            json!({"AddressTemplateSet": [{"AddressTemplateId": "ipm-db", "AddressTemplateName": "databases", "AddressSet": ["10.0.3.0/24", "10.0.4.10"]}]}),
        ),
        (
            "services".to_string(),
            json!({"ServiceTemplateSet": [{"ServiceTemplateId": "ppm-dns", "ServiceSet": ["udp:53", "tcp:53"]}]}),
        ),
        (
            "vpcs".to_string(),
            json!({"VpcSet": [{"VpcId": "vpc-prod", "CidrBlock": "10.0.0.0/16", "AssistantCidrSet": [{"CidrBlock": "10.10.0.0/16"}]}, {"VpcId": "vpc-dev", "CidrBlock": "172.16.0.0/16"}]}),
        ),
        (
            "subnets".to_string(),
            json!({"SubnetSet": [
            {"VpcId": "vpc-prod", "SubnetId": "subnet-web", "CidrBlock": "10.0.1.0/24"},
            {"VpcId": "vpc-prod", "SubnetId": "subnet-app", "CidrBlock": "10.0.2.0/24"},
            {"VpcId": "vpc-prod", "SubnetId": "subnet-db", "CidrBlock": "10.0.3.0/24"},
            {"VpcId": "vpc-prod", "SubnetId": "subnet-ops", "CidrBlock": "10.10.1.0/24"},
            {"VpcId": "vpc-dev", "SubnetId": "subnet-dev", "CidrBlock": "172.16.1.0/24"}]}),
        ),
        (
            "enis".to_string(),
            json!({"NetworkInterfaceSet": [
            {"NetworkInterfaceId": "eni-bastion", "VpcId": "vpc-prod", "SubnetId": "subnet-ops", "PrivateIpAddressSet": [{"PrivateIpAddress": "10.10.1.10"}], "Attachment": {"InstanceId": "ins-bastion"}},
            {"NetworkInterfaceId": "eni-app1", "VpcId": "vpc-prod", "SubnetId": "subnet-app", "PrivateIpAddressSet": [{"PrivateIpAddress": "10.0.2.8"}], "Attachment": {"InstanceId": "ins-app1"}},
            {"NetworkInterfaceId": "eni-db1", "VpcId": "vpc-prod", "SubnetId": "subnet-db", "PrivateIpAddressSet": [{"PrivateIpAddress": "10.0.3.8"}], "Attachment": {"InstanceId": "ins-db1"}}]}),
        ),
    ];
    build_from_documents(&documents, "2026-01-01T00:00:00Z").unwrap()
}

fn flow(src: &str, dst: &str, protocol: u8, port: Option<u16>) -> FlowKey {
    FlowKey {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        protocol,
        dst_port: port,
    }
}

fn uuid(engine: &Engine, decision: Decision) -> Option<&str> {
    decision.rule().map(|r| engine.rule(r).rule.uuid.as_str())
}

fn observed(engine: &Engine, f: &FlowKey) -> Vec<String> {
    engine
        .evaluate(f)
        .observed
        .iter()
        .map(|&r| engine.rule(r).rule.uuid.clone())
        .collect()
}

#[test]
fn first_terminal_match_decides_and_observe_rules_continue() {
    let engine = Engine::compile(&snapshot()).unwrap();
    // app → db on 3306: observed by 11, allowed by 12.
    let f = flow("10.0.2.8", "10.0.3.8", 6, Some(3306));
    let e = engine.evaluate(&f);
    assert!(matches!(e.decision, Decision::Allow { .. }));
    assert_eq!(uuid(&engine, e.decision), Some("12"));
    assert_eq!(observed(&engine, &f), ["11"]);
    // web → db on 3306: observed by 11, blocked by 13.
    let f = flow("10.0.1.5", "10.0.4.10", 6, Some(3306));
    let e = engine.evaluate(&f);
    assert!(matches!(e.decision, Decision::Block { .. }));
    assert_eq!(uuid(&engine, e.decision), Some("13"));
    assert_eq!(observed(&engine, &f), ["11"]);
}

#[test]
fn disabled_rules_are_skipped_and_no_match_is_none() {
    let engine = Engine::compile(&snapshot()).unwrap();
    let e = engine.evaluate(&flow("192.168.0.1", "192.168.0.2", 6, Some(80)));
    assert_eq!(
        e.decision,
        Decision::None,
        "the disabled catch-all must not decide"
    );
}

#[test]
fn new_esg_rules_come_before_old_ones() {
    let engine = Engine::compile(&snapshot()).unwrap();
    // Old rule 500 (order 1) blocks UDP 53 to 10.0.9.9; the new rule 17 (order 17) allows DNS to
    // 10.0.0.2 only, so 10.0.9.9 falls to the old rule ...
    assert_eq!(
        uuid(
            &engine,
            engine
                .evaluate(&flow("10.0.1.5", "10.0.9.9", 17, Some(53)))
                .decision
        ),
        Some("500")
    );
    // ... and the position of the old rule is after every new rule.
    let old = engine
        .rules()
        .iter()
        .position(|r| r.rule.uuid == "500")
        .unwrap();
    assert_eq!(old, engine.rules().len() - 1);
}

#[test]
fn service_templates_icmp_any_and_port_lists() {
    let engine = Engine::compile(&snapshot()).unwrap();
    assert_eq!(
        uuid(
            &engine,
            engine
                .evaluate(&flow("10.0.1.5", "10.0.0.2", 17, Some(53)))
                .decision
        ),
        Some("17")
    );
    assert_eq!(
        uuid(
            &engine,
            engine
                .evaluate(&flow("10.0.1.5", "10.0.0.2", 6, Some(53)))
                .decision
        ),
        Some("17")
    );
    assert_eq!(
        uuid(
            &engine,
            engine
                .evaluate(&flow("10.0.1.5", "10.0.3.8", 1, None))
                .decision
        ),
        Some("15")
    );
    assert_eq!(
        uuid(
            &engine,
            engine
                .evaluate(&flow("10.10.1.10", "10.0.2.8", 6, Some(3389)))
                .decision
        ),
        Some("16"),
        "instance resolved through its ENI"
    );
    assert_eq!(
        uuid(
            &engine,
            engine
                .evaluate(&flow("10.10.1.11", "10.0.2.8", 6, Some(22)))
                .decision
        ),
        Some("19")
    );
    assert_eq!(
        engine
            .evaluate(&flow("10.10.1.11", "10.0.2.8", 17, Some(22)))
            .decision,
        Decision::None
    );
}

#[test]
fn ipv6_never_matches_ipv4_rules() {
    let engine = Engine::compile(&snapshot()).unwrap();
    assert_eq!(
        uuid(
            &engine,
            engine
                .evaluate(&flow("2001:db8:2::1", "2001:db8:1::5", 6, Some(3306)))
                .decision
        ),
        Some("18")
    );
    assert_eq!(
        engine
            .evaluate(&flow("2001:db8:2::1", "2001:db8:9::5", 6, Some(22)))
            .decision,
        Decision::None
    );
}

#[test]
fn unresolvable_rules_are_flagged_not_matched() {
    let snapshot = snapshot();
    assert!(
        snapshot
            .warnings
            .iter()
            .any(|w| w.contains("rule 14") && w.contains("no members")),
        "{:?}",
        snapshot.warnings
    );
    let engine = Engine::compile(&snapshot).unwrap();
    // 172.16.1.5 → 10.0.1.5 UDP 9999: rule 14 (tag source, unresolved) could match; nothing decides.
    let f = flow("172.16.1.5", "10.0.1.5", 17, Some(9999));
    let e = engine.evaluate(&f);
    assert_eq!(e.decision, Decision::None);
    assert_eq!(
        e.indeterminate
            .iter()
            .map(|&r| engine.rule(r).rule.uuid.as_str())
            .collect::<Vec<_>>(),
        ["14"]
    );
    let explanation = engine.explain(&f);
    let step = explanation.steps.iter().find(|s| s.uuid == "14").unwrap();
    assert_eq!(step.outcome, StepOutcome::Indeterminate);
    assert!(step.detail.contains("tag"), "{}", step.detail);
}

#[test]
fn explanation_names_the_first_failing_part() {
    let engine = Engine::compile(&snapshot()).unwrap();
    let explanation = engine.explain(&flow("10.0.1.5", "10.0.3.8", 6, Some(3306)));
    let outcomes: Vec<(&str, StepOutcome)> = explanation
        .steps
        .iter()
        .map(|s| (s.uuid.as_str(), s.outcome))
        .collect();
    assert_eq!(outcomes[0], ("90", StepOutcome::Disabled));
    assert_eq!(outcomes[1], ("10", StepOutcome::NotMatched));
    assert_eq!(outcomes[2], ("11", StepOutcome::Matched));
    assert_eq!(
        outcomes.last().unwrap(),
        &("13", StepOutcome::Matched),
        "stops at the deciding rule"
    );
    let step12 = &explanation.steps[3];
    assert_eq!(
        step12.detail,
        "source 10.0.1.5 not in net 10.0.2.0/24 (10.0.2.0/24)"
    );
    let step10 = &explanation.steps[1];
    assert_eq!(
        step10.detail,
        "destination 10.0.3.8 not in net 10.0.2.0/24 (10.0.2.0/24)"
    );
    let port_miss = engine.explain(&flow("10.0.1.5", "10.0.2.9", 6, Some(9090)));
    assert_eq!(port_miss.steps[1].detail, "TCP port 9090 not in TCP 8080");
    let template_miss = engine.explain(&flow("10.0.1.5", "10.0.5.1", 6, Some(3306)));
    assert_eq!(
        template_miss.steps[2].detail,
        "destination 10.0.5.1 not in template ipm-db (10.0.3.0/24, 10.0.4.10)"
    );
}

#[test]
fn scope_and_direction_from_the_topology() {
    let engine = Engine::compile(&snapshot()).unwrap();
    // The same read back from the engine's image (its ENI maps are made again).
    let loaded = Engine::from_image(&engine.to_image(), engine.version()).unwrap();
    for topology in [engine.topology(), loaded.topology()] {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let p = topology.place(ip("10.0.2.8"), ip("10.0.3.8"), Some("eni-app1"));
        assert_eq!(p.scope, Scope::InterSubnet);
        assert_eq!(p.direction, Direction::Egress);
        assert_eq!(p.src.instance, Some("ins-app1"));
        assert_eq!(p.dst.subnet, Some("subnet-db"));
        let p = topology.place(ip("10.0.2.8"), ip("10.0.2.99"), Some("eni-app1"));
        assert_eq!(p.scope, Scope::IntraSubnet);
        let p = topology.place(ip("203.0.113.5"), ip("10.0.3.8"), Some("eni-db1"));
        assert_eq!(
            (p.scope, p.direction),
            (Scope::VpcInbound, Direction::Ingress)
        );
        let p = topology.place(ip("10.0.3.8"), ip("192.168.100.1"), Some("eni-db1"));
        assert_eq!(p.scope, Scope::VpcOutbound);
        let p = topology.place(ip("10.0.3.8"), ip("172.16.1.4"), None);
        assert_eq!(
            (p.scope, p.direction),
            (Scope::CrossVpc, Direction::Unknown)
        );
        let p = topology.place(ip("10.10.7.1"), ip("10.0.1.1"), None);
        assert_eq!(
            p.scope,
            Scope::InterSubnet,
            "secondary CIDRs belong to the VPC"
        );
        assert_eq!(
            topology.place(ip("8.8.8.8"), ip("1.1.1.1"), None).scope,
            Scope::Unknown
        );
    }
}

#[test]
fn snapshot_round_trips_through_json_with_the_same_version() {
    let snapshot = snapshot();
    let json = serde_json::to_vec(&snapshot).unwrap();
    let mut back = Snapshot::from_json(&json).unwrap();
    assert_eq!(back, snapshot);
    back.seal();
    assert_eq!(back.version, snapshot.version);
}

#[test]
fn a_hand_edited_snapshot_with_a_bad_port_names_the_rule() {
    let mut snapshot = snapshot();
    snapshot.rules[3].port = "99999".to_string();
    let id = snapshot.rules[3].uuid.clone();
    let err = Engine::compile(&snapshot).unwrap_err();
    assert_eq!(err.rule, id);
    assert_eq!(err.field, "port");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The index and the naive evaluator agree on every flow: decision, observe hits, and
    /// indeterminate rules; so do both read back from their images.
    #[test]
    fn index_agrees_with_the_linear_evaluator(rules in 0usize..2000, vpcs in 1u64..12, seed in any::<u64>()) {
        let snapshot = synthetic::snapshot(rules, vpcs, seed);
        // Both layouts of the index: flat lists, and the tree a large account's index becomes.
        let engine = Engine::compile(&snapshot).unwrap();
        let tree = Engine::compile_within(&snapshot, 0).unwrap();
        // And each read back from its image (what a cold start loads): the same bytes again,
        // the same answers.
        let image = engine.to_image();
        let loaded = Engine::from_image(&image, &snapshot.version).unwrap();
        prop_assert!(loaded.to_image() == image, "the image of an image's engine is the image");
        let tree_image = tree.to_image();
        let loaded_tree = Engine::from_image(&tree_image, &snapshot.version).unwrap();
        prop_assert!(loaded_tree.to_image() == tree_image);
        for flow in synthetic::flows(300, vpcs, seed ^ 0x5eed) {
            let linear = engine.evaluate_linear(&flow);
            prop_assert_eq!(&engine.evaluate(&flow), &linear, "flow {:?}", flow);
            prop_assert_eq!(&tree.evaluate(&flow), &linear, "tree, flow {:?}", flow);
            prop_assert_eq!(&loaded.evaluate(&flow), &linear, "from the image, flow {:?}", flow);
            prop_assert_eq!(&loaded_tree.evaluate(&flow), &linear, "tree from its image, flow {:?}", flow);
            prop_assert_eq!(loaded.topology().place(flow.src, flow.dst, None), engine.topology().place(flow.src, flow.dst, None));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Hygiene findings hold together: removing every rule reported shadowed or redundant at
    /// once changes no decision. Identical copies (right after a rule, or far after it) are the
    /// hard case: each once reported the other, so removing both changed decisions.
    #[test]
    fn removing_every_flagged_rule_changes_no_decision(
        rules in 2usize..60,
        seed in any::<u64>(),
        copy_every in 2usize..5,
        far in any::<bool>(),
    ) {
        use esgflow::core::engine::hygiene::{analyze, Finding};
        let mut snapshot = synthetic::snapshot(rules, 3, seed);
        let original = std::mem::take(&mut snapshot.rules);
        let mut copies = Vec::new();
        for (i, rule) in original.iter().enumerate() {
            snapshot.rules.push(rule.clone());
            if i % copy_every == 0 {
                let mut copy = rule.clone();
                copy.uuid = format!("{}9{i}", rule.uuid);
                if far { copies.push(copy) } else { snapshot.rules.push(copy) }
            }
        }
        snapshot.rules.extend(copies);
        for (i, rule) in snapshot.rules.iter_mut().enumerate() {
            rule.order = i as u64 + 1;
        }
        let engine = Engine::compile(&snapshot).unwrap();
        let flagged: std::collections::HashSet<String> = analyze(&engine)
            .into_iter()
            .filter(|f| matches!(f.finding, Finding::Shadowed | Finding::Redundant))
            .map(|f| f.uuid)
            .collect();
        let mut pruned = snapshot.clone();
        pruned.rules.retain(|r| !flagged.contains(&r.uuid));
        let pruned_engine = Engine::compile(&pruned).unwrap();
        let kind = |d: &Decision| match d {
            Decision::Allow { .. } => "allow",
            Decision::Block { .. } => "block",
            Decision::None => "none",
        };
        for flow in synthetic::flows(400, 3, seed ^ 0xf10) {
            let before = engine.evaluate(&flow);
            let after = pruned_engine.evaluate(&flow);
            prop_assert_eq!(
                kind(&before.decision),
                kind(&after.decision),
                "flow {:?}; flagged {:?}",
                flow,
                flagged
            );
        }
    }
}

#[test]
fn synthetic_flows_exercise_every_outcome() {
    let engine = Engine::compile(&synthetic::snapshot(1000, 8, 1)).unwrap();
    let (mut allow, mut block, mut none, mut observed, mut indeterminate) = (0, 0, 0, 0, 0);
    for flow in synthetic::flows(5000, 8, 2) {
        let e = engine.evaluate(&flow);
        match e.decision {
            Decision::Allow { .. } => allow += 1,
            Decision::Block { .. } => block += 1,
            Decision::None => none += 1,
        }
        observed += usize::from(!e.observed.is_empty());
        indeterminate += usize::from(!e.indeterminate.is_empty());
    }
    eprintln!(
        "allow {allow} block {block} none {none} observed {observed} indeterminate {indeterminate}"
    );
    for (name, count) in [
        ("allow", allow),
        ("block", block),
        ("none", none),
        ("observed", observed),
        ("indeterminate", indeterminate),
    ] {
        assert!(count > 50, "{name}: {count}");
    }
}

#[test]
fn summary_explanations_agree_with_full_ones() {
    let engine = Engine::compile(&synthetic::snapshot(1500, 6, 9)).unwrap();
    for flow in synthetic::flows(200, 6, 10) {
        let full = engine.explain_with(&flow, esgflow::core::engine::Detail::Full);
        let summary = engine.explain_with(&flow, esgflow::core::engine::Detail::Summary);
        assert_eq!(full.evaluation, summary.evaluation);
        let described: Vec<_> = full
            .steps
            .iter()
            .filter(|s| s.outcome != StepOutcome::NotMatched)
            .cloned()
            .collect();
        assert_eq!(summary.steps, described);
        assert_eq!(summary.not_matched, full.not_matched);
        assert_eq!(full.steps.len(), described.len() + full.not_matched);
    }
}
