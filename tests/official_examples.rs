//! esgflow reads what the real APIs answer: every action it reads is fed the official example
//! responses of the pinned `tccli` (`examples.json`), whole, with `null` at every depth, and with
//! every member removed; and the sync function runs end to end against strict stand-ins that
//! serve those examples.

use crate::common;

use esgflow::core::snapshot::{build_from_documents, Generation, Snapshot};
use esgflow_local::standins::cloud::CloudStub;
use esgflow_local::standins::contract;
use serde_json::{json, Value};

fn examples(service: &str, action: &str) -> Vec<Value> {
    let version = match service {
        "cfw" => "2019-09-04",
        "vpc" | "cvm" => "2017-03-12",
        _ => "2020-10-16",
    };
    let examples = contract::definitions(service, version)
        .unwrap()
        .examples(action)
        .to_vec();
    assert!(
        !examples.is_empty(),
        "{service} {action}: no official example"
    );
    examples
}

/// The snapshot built from one action's official examples (as pages of one listing).
fn import(action: &str, examples: &[Value]) -> Snapshot {
    let documents: Vec<(String, Value)> = examples
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("{action}#{i}"), e.clone()))
        .collect();
    build_from_documents(&documents, "t")
        .unwrap_or_else(|e| panic!("{action}: the official example does not import: {e}"))
}

/// Every variant of `value` with one member (at any depth) set to `null`, and with one member
/// removed.
fn damaged(value: &Value) -> Vec<Value> {
    fn walk(value: &Value, path: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    path.push(PathStep::Key(key.clone()));
                    out.push(path.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(PathStep::Index(i));
                    out.push(path.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut paths = Vec::new();
    walk(value, &mut Vec::new(), &mut paths);
    let mut variants = Vec::new();
    for path in paths {
        for remove in [false, true] {
            let mut copy = value.clone();
            let (last, parents) = path.split_last().expect("non-empty path");
            let mut target = &mut copy;
            for step in parents {
                target = match step {
                    PathStep::Key(key) => &mut target[key.as_str()],
                    PathStep::Index(i) => &mut target[*i],
                };
            }
            match (last, remove) {
                (PathStep::Key(key), true) => {
                    target.as_object_mut().unwrap().remove(key);
                }
                (PathStep::Key(key), false) => target[key.as_str()] = Value::Null,
                (PathStep::Index(i), true) => {
                    target.as_array_mut().unwrap().remove(*i);
                }
                (PathStep::Index(i), false) => target[*i] = Value::Null,
            }
            variants.push(copy);
        }
    }
    variants
}

#[derive(Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

/// Each example imports, and no damaged variant of it makes the import fail: a member that
/// is `null` or missing costs at most that item, with a warning.
fn reads(service: &str, action: &str) -> Snapshot {
    let examples = examples(service, action);
    let snapshot = import(action, &examples);
    for example in &examples {
        for variant in damaged(example) {
            if let Err(err) = build_from_documents(&[(action.to_string(), variant.clone())], "t") {
                // Only a document stripped of what makes it recognisable may be refused.
                assert!(
                    err.to_string().contains("not a recognised API response"),
                    "{action}: {err}\n{variant}"
                );
            }
        }
    }
    snapshot
}

#[test]
fn describe_enterprise_security_group_rule() {
    let snapshot = reads("cfw", "DescribeEnterpriseSecurityGroupRule");
    assert!(!snapshot.rules.is_empty());
    assert!(snapshot
        .rules
        .iter()
        .all(|r| r.generation == Generation::New));
}

#[test]
fn describe_enterprise_security_group_rule_list() {
    let snapshot = reads("cfw", "DescribeEnterpriseSecurityGroupRuleList");
    assert!(!snapshot.rules.is_empty());
    let rule = &snapshot.rules[0];
    // The addresses the API resolved for a template and a resource group are read.
    assert!(
        !rule.source.resolved.is_empty() && !rule.destination.resolved.is_empty(),
        "{rule:?}"
    );
}

#[test]
fn describe_security_group_list() {
    let snapshot = reads("cfw", "DescribeSecurityGroupList");
    assert!(!snapshot.rules.is_empty());
    assert!(snapshot
        .rules
        .iter()
        .all(|r| r.generation == Generation::Old));
}

#[test]
fn describe_address_templates() {
    assert!(!reads("vpc", "DescribeAddressTemplates")
        .address_templates
        .is_empty());
}

#[test]
fn describe_address_template_groups() {
    assert!(!reads("vpc", "DescribeAddressTemplateGroups")
        .address_template_groups
        .is_empty());
}

#[test]
fn describe_service_templates() {
    let snapshot = reads("vpc", "DescribeServiceTemplates");
    let template = snapshot.service_templates.values().next().unwrap();
    assert!(!template.services.is_empty() && template.skipped.is_empty());
}

#[test]
fn describe_service_template_groups() {
    assert!(!reads("vpc", "DescribeServiceTemplateGroups")
        .service_template_groups
        .is_empty());
}

#[test]
fn describe_vpcs() {
    assert!(!reads("vpc", "DescribeVpcs").vpcs.is_empty());
}

#[test]
fn describe_subnets() {
    assert!(!reads("vpc", "DescribeSubnets").subnets.is_empty());
}

#[test]
fn describe_network_interfaces() {
    let snapshot = reads("vpc", "DescribeNetworkInterfaces");
    assert!(!snapshot.enis.is_empty());
    assert!(snapshot.enis.iter().all(|e| !e.ips.is_empty()));
    assert!(snapshot.enis.iter().any(|e| !e.name.is_empty()));
}

#[test]
fn describe_instances() {
    let snapshot = reads("cvm", "DescribeInstances");
    assert!(!snapshot.instances.is_empty());
    // The examples name their instances (`myInstance`, `测试实例`).
    assert!(snapshot.instances.iter().all(|i| !i.name.is_empty()));
}

/// The sync function end to end against strict stand-ins that serve the official example
/// responses of every listing: it publishes a snapshot holding their rules, templates and
/// topology.
#[tokio::test]
async fn sync_publishes_from_the_official_examples() {
    let mut items = std::collections::BTreeMap::new();
    for (service, action, id_key) in [
        ("cfw", "DescribeEnterpriseSecurityGroupRule", "Id"),
        ("cfw", "DescribeEnterpriseSecurityGroupRuleList", "RuleUuid"),
        ("cfw", "DescribeSecurityGroupList", "Id"),
        ("vpc", "DescribeAddressTemplates", "AddressTemplateId"),
        (
            "vpc",
            "DescribeAddressTemplateGroups",
            "AddressTemplateGroupId",
        ),
        ("vpc", "DescribeServiceTemplates", "ServiceTemplateId"),
        (
            "vpc",
            "DescribeServiceTemplateGroups",
            "ServiceTemplateGroupId",
        ),
        ("vpc", "DescribeVpcs", "VpcId"),
        ("vpc", "DescribeSubnets", "SubnetId"),
        ("vpc", "DescribeNetworkInterfaces", "NetworkInterfaceId"),
        ("cvm", "DescribeInstances", "InstanceId"),
    ] {
        // The member the stand-in serves the listing under.
        let list_key = esgflow_local::standins::cloud::list_key(action).unwrap();
        // Several examples of one action may describe the same item (two `DescribeVpcs`
        // examples show one VPC): one listing holds each item once, as a real one does (a
        // listing that repeats an item fails the run).
        let mut seen = std::collections::BTreeSet::new();
        let list: Vec<Value> = examples(service, action)
            .iter()
            .flat_map(|e| e[list_key].as_array().cloned().unwrap_or_default())
            .filter(|item| seen.insert(item[id_key].to_string()))
            .collect();
        items.insert(action.to_string(), list);
    }
    let old_rules = items["DescribeSecurityGroupList"].len();
    let stub = CloudStub::start(items).await.unwrap();
    let mut env = stub.env();
    env.push((
        "ESGFLOW_SNAPSHOT".into(),
        "cos://esg-1250000000/esgflow/snapshots?region=ap-shanghai".into(),
    ));
    let mut sync = common::emulator_with("sync", env).await;
    let outcome = sync.invoke(common::timer_event()).await.unwrap();
    let summary = outcome.result.json();
    assert!(outcome.result.is_response(), "{summary}");
    assert_eq!(summary["published"], true, "{summary}");
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
    let version = summary["snapshot_version"].as_str().unwrap();
    let published: Snapshot = serde_json::from_slice(
        &stub.state.lock().unwrap().objects[&format!("/esgflow/snapshots/{version}.json")].0,
    )
    .unwrap();
    assert!(published
        .rules
        .iter()
        .any(|r| r.generation == Generation::New));
    assert_eq!(
        published
            .rules
            .iter()
            .filter(|r| r.generation == Generation::Old)
            .count(),
        old_rules
    );
    assert!(!published.address_templates.is_empty());
    assert!(!published.vpcs.is_empty() && !published.enis.is_empty());
    assert!(!published.instances.is_empty());
    assert_eq!(
        summary["warning_count"].as_u64().unwrap() as usize,
        published.warnings.len()
    );
}

/// lookup's `/v1/hits` reads CLS's official `SearchLog` example answer, and the audit function
/// takes CLS's official `UploadLog` answer for a success.
#[tokio::test]
async fn cls_answers_as_the_official_examples_show() {
    let upload = examples("cls", "UploadLog");
    let answer = json!({ "Response": upload[0] }).to_string();
    let stub = common::cls_stub::ClsStub::start(vec![(200, answer.as_str())]).await;
    let line = "2 1251762227 eni-web00001 10.0.1.11 10.0.3.10 40001 3306 6 3 180 1763942400 1763942460 REJECT OK";
    common::audit_into(&stub, &[line]).await;
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
    assert!(!stub.accepted().is_empty());

    let search = examples("cls", "SearchLog");
    let expected = search[0]["Results"].as_array().unwrap().len();
    assert!(expected > 0);
    stub.answer_searches_with(json!({ "Response": search[0] }).to_string());
    let mut env = stub.env("topic-hits", "topic-traffic");
    env.push((
        "ESGFLOW_LOOKUP_TOKEN".into(),
        "t0ken-for-the-examples".into(),
    ));
    env.push(("ESGFLOW_SNAPSHOT".into(), common::sample_snapshot()));
    let mut lookup = common::emulator_with("lookup", env).await;
    let request = json!({
        "requestContext": {"serviceId": "service-x", "path": "/v1/hits", "httpMethod": "GET", "requestId": "r", "sourceIp": "10.0.0.9", "stage": "release"},
        "headers": {"host": "service-x.apigateway.myqloud.com", "authorization": "Bearer t0ken-for-the-examples"},
        "path": "/v1/hits", "httpMethod": "GET", "isBase64Encoded": false, "body": null,
        "queryString": {"since": "1679900000", "until": "1679903000"},
    });
    let result = lookup
        .invoke(request.to_string().into_bytes())
        .await
        .unwrap()
        .result;
    let answer = result.json();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["count"], expected, "{body}");
    assert_eq!(body["complete"], false, "the example says ListOver false");
    assert!(body["next"]["cursor"].is_string(), "{body}");
}
