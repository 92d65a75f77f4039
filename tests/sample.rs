//! The bundled sample is consistent: the checked-in snapshot is what the export builds, and the
//! engine agrees with the generator's independent first-match simulation on every flow except
//! the two kinds the generator plants on purpose (network-ACL rejects and snapshot drift).

use std::net::IpAddr;
use std::path::Path;

use esgflow::core::engine::{likely_reply, Decision, Engine, FlowKey};
use esgflow::core::flowlog::{parse, FlowAction, Parsed};
use esgflow::core::snapshot::{build_from_dir, Snapshot};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn checked_in_snapshot_matches_the_export() {
    let built = build_from_dir(&root().join("samples/export"), "2025-11-24T00:00:00Z").unwrap();
    let checked_in = Snapshot::load(&root().join("samples/snapshot.json")).unwrap();
    assert_eq!(
        built.version, checked_in.version,
        "run `make sample` to rebuild samples/snapshot.json"
    );
    assert_eq!(built, checked_in);
}

/// Instance and ENI names came after snapshots were first published: a snapshot without them
/// (an older file, or a sync role that may not read instances) keeps the version it had before
/// they existed (`fc5db7495138cc7d` is the sample's version from before).
#[test]
fn a_snapshot_without_names_keeps_its_earlier_version() {
    let mut snapshot = Snapshot::load(&root().join("samples/snapshot.json")).unwrap();
    assert!(!snapshot.instances.is_empty());
    snapshot.instances.clear();
    for eni in &mut snapshot.enis {
        assert!(!eni.name.is_empty());
        eni.name.clear();
    }
    snapshot.seal();
    assert_eq!(snapshot.version, "fc5db7495138cc7d");
    let text = serde_json::to_string(&snapshot).unwrap();
    assert!(!text.contains("\"instances\"") && !text.contains("\"name\":\"\""));
}

#[test]
fn engine_agrees_with_the_generator_on_every_flow() {
    let engine =
        Engine::compile(&Snapshot::load(&root().join("samples/snapshot.json")).unwrap()).unwrap();
    let text = std::fs::read_to_string(root().join("samples/flowlogs.txt")).unwrap();
    let in_net = |ip: IpAddr, net: &str| net.parse::<ipnet::IpNet>().unwrap().contains(&ip);
    let (mut checked, mut acl, mut drift) = (0, 0, 0);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Ok(Parsed::Flow(flow)) = parse(line) else {
            continue;
        };
        if likely_reply(&flow) {
            continue;
        }
        let decision = engine.evaluate(&FlowKey::of(&flow)).decision;
        match (flow.action, decision) {
            (FlowAction::Reject, Decision::Block { .. })
            | (FlowAction::Accept, Decision::Allow { .. } | Decision::None) => checked += 1,
            (FlowAction::Reject, _) => {
                assert!(
                    in_net(flow.src, "172.16.1.0/24") && in_net(flow.dst, "192.168.100.0/24"),
                    "unexpected unexplained REJECT: {line}"
                );
                acl += 1;
            }
            (FlowAction::Accept, Decision::Block { rule }) => {
                assert_eq!(
                    flow.dst_port,
                    Some(5432),
                    "unexpected ACCEPT of a blocked flow: {line} (rule {})",
                    engine.rule(rule).rule.uuid
                );
                drift += 1;
            }
        }
    }
    assert!(checked > 2000, "{checked}");
    assert!(acl > 0 && drift > 0, "acl {acl} drift {drift}");
}
