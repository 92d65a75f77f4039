//! The sync function end to end: the real binary under the emulator against a local stand-in of
//! the cfw/vpc APIs and COS (every request's TC3 or q-sign signature checked), and the CLS stub
//! for the records and the unused-rule search.

use crate::common;

use std::time::{Duration, Instant};

use common::cls_stub::ClsStub;
use esgflow::adapters::tencent::api::{ApiClient, Listing, PageBudget, Paging};
use esgflow::core::engine::Engine;
use esgflow::core::snapshot::Snapshot;
use esgflow_local::standins::alerts::AlertReceiver;
use esgflow_local::standins::cloud::CloudStub;
use serde_json::{json, Value};

fn sample_version() -> String {
    Snapshot::load(std::path::Path::new(&common::sample_snapshot()))
        .unwrap()
        .version
}

async fn sync_with(
    stub: &CloudStub,
    extra: Vec<(String, String)>,
) -> esgflow_local::emulator::Emulator {
    let mut env = stub.env();
    env.push((
        "ESGFLOW_SNAPSHOT".into(),
        "cos://esg-1250000000/esgflow/snapshots?region=ap-shanghai".into(),
    ));
    env.extend(extra);
    common::emulator_with("sync", env).await
}

/// A cloud stand-in whose COS holds the snapshot a sync run published.
async fn published() -> CloudStub {
    let stub = common::cloud_stub().await;
    let mut sync = sync_with(&stub, vec![]).await;
    assert!(sync
        .invoke(common::timer_event())
        .await
        .unwrap()
        .result
        .is_response());
    stub
}

fn cos_puts(stub: &CloudStub) -> Vec<String> {
    stub.state
        .lock()
        .unwrap()
        .cos_requests
        .iter()
        .filter(|(m, _, s)| m == "PUT" && *s == 200)
        .map(|(_, k, _)| k.clone())
        .collect()
}

#[tokio::test]
async fn publishes_to_cos_once_and_is_idempotent() {
    let stub = common::cloud_stub().await;
    let scratch = common::scratch("sync");
    let records = scratch.path().join("records.jsonl");
    let _ = std::fs::remove_file(&records);
    let mut sync = sync_with(
        &stub,
        vec![("ESGFLOW_JSONL_PATH".into(), records.display().to_string())],
    )
    .await;
    let first = sync.invoke(common::timer_event()).await.unwrap();
    let summary = first.result.json();
    assert!(first.result.is_response(), "{summary}");
    // The live builder gives the same snapshot the file importer built from the same exports.
    assert_eq!(summary["snapshot_version"], sample_version());
    assert_eq!(summary["published"], true);
    assert_eq!(summary["previous_version"], "");
    // With time to spare, the hygiene analysis reaches every rule.
    assert_eq!(summary["hygiene_analysed"], summary["rules"], "{summary}");
    let version = sample_version();
    // The snapshot, its engine's image (named with this build's format), then the pointer.
    let puts = cos_puts(&stub);
    assert_eq!(puts.len(), 3, "{puts:?}");
    assert_eq!(puts[0], format!("/esgflow/snapshots/{version}.json"));
    assert_eq!(puts[2], "/esgflow/snapshots/latest.json");
    let image = puts[1].clone();
    assert!(
        image.starts_with(&format!("/esgflow/snapshots/{version}.")) && image.ends_with(".engine"),
        "{image}"
    );
    let objects = stub.state.lock().unwrap().objects.clone();
    let published: Snapshot =
        serde_json::from_slice(&objects[&format!("/esgflow/snapshots/{version}.json")].0).unwrap();
    assert_eq!(published.version, version);
    let engine = Engine::from_image(&objects[&image].0, &version).unwrap();
    assert_eq!(engine.rules().len(), published.rules.len());
    let pointer: Value =
        serde_json::from_slice(&objects["/esgflow/snapshots/latest.json"].0).unwrap();
    assert_eq!(pointer["engine"], image.rsplit('/').next().unwrap());
    let hygiene: Vec<Value> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(hygiene.iter().all(|r| r["record_type"] == "rule_hygiene"));
    let shadowed = hygiene
        .iter()
        .find(|r| r["finding"] == "shadowed" && r["rule_uuid"] == "7021")
        .expect("the sample's shadowed rule is reported");
    assert_eq!(shadowed["covering_rules"], "7003");

    let requests_before = stub.state.lock().unwrap().cos_requests.len();
    let second = sync.invoke(common::timer_event()).await.unwrap();
    let summary = second.result.json();
    assert_eq!(summary["published"], false, "{summary}");
    assert_eq!(summary["previous_version"], version);
    // An unchanged account costs one small read: the pointer, not the snapshot.
    let second_requests: Vec<(String, String)> = stub.state.lock().unwrap().cos_requests
        [requests_before..]
        .iter()
        .map(|(m, k, _)| (m.clone(), k.clone()))
        .collect();
    assert_eq!(
        second_requests,
        vec![(
            "GET".to_string(),
            "/esgflow/snapshots/latest.json".to_string()
        )]
    );
    assert_eq!(
        cos_puts(&stub).len(),
        3,
        "an unchanged account writes nothing"
    );
    // A pointer another build wrote (no image this build reads): the unchanged snapshot is
    // published again with this build's image, so cold starts need not compile it.
    {
        let mut state = stub.state.lock().unwrap();
        let latest = state
            .objects
            .get_mut("/esgflow/snapshots/latest.json")
            .unwrap();
        let mut pointer: Value = serde_json::from_slice(&latest.0).unwrap();
        pointer["engine"] = json!(format!("{version}.0123456789abcdef.engine"));
        latest.0 = serde_json::to_vec(&pointer).unwrap();
        state.objects.remove(&image);
    }
    let third = sync.invoke(common::timer_event()).await.unwrap();
    assert_eq!(third.result.json()["published"], false);
    assert_eq!(
        cos_puts(&stub)[3..],
        puts[..],
        "the same three objects again"
    );
    assert!(stub.state.lock().unwrap().objects.contains_key(&image));
    assert_eq!(
        std::fs::read_to_string(&records).unwrap().lines().count(),
        hygiene.len(),
        "no records either"
    );
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
    // Paging parameters stayed within the documented maxima, and templates were read in the
    // template region; the old ESG was listed in both directions, in the function's region.
    let mut old_esg_directions = Vec::new();
    for request in &stub.state.lock().unwrap().requests {
        if request.action == "DescribeEnterpriseSecurityGroupRule" {
            assert_eq!(request.body["PageSize"], "50");
        }
        if request.action == "DescribeSecurityGroupList" {
            assert_eq!(request.body["Area"], "ap-shanghai");
            old_esg_directions.push(request.body["Direction"].as_u64().expect("a number"));
        }
        if request.action.contains("Template") {
            assert_eq!(request.region, "ap-guangzhou", "{}", request.action);
        } else {
            assert_eq!(request.region, "ap-shanghai", "{}", request.action);
        }
    }
    old_esg_directions.sort_unstable();
    old_esg_directions.dedup();
    assert_eq!(old_esg_directions, [0, 1]);
    std::fs::remove_file(&records).ok();
}

/// An answer far larger than any page (here 20 MB of rule description) is refused at the
/// documented limit, not read into memory: the run fails naming the limit and nothing is published.
#[tokio::test]
async fn an_oversized_answer_is_refused_at_the_limit() {
    let stub = common::cloud_stub().await;
    stub.oversize_next("DescribeEnterpriseSecurityGroupRule", 20 * 1024 * 1024);
    let mut sync = sync_with(&stub, vec![]).await;
    let run = sync.invoke(common::timer_event()).await.unwrap();
    let answer = run.result.json();
    let message = answer["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("ResponseTooLarge") && message.contains("over 16777216 bytes"),
        "{answer}"
    );
    assert!(cos_puts(&stub).is_empty(), "nothing published");
    eprintln!("{message}");
}

#[tokio::test]
async fn throttling_is_retried_and_a_failed_call_leaves_latest_untouched() {
    let stub = common::cloud_stub().await;
    stub.fail_next("DescribeVpcs", "RequestLimitExceeded");
    let mut sync = sync_with(&stub, vec![]).await;
    let ok = sync.invoke(common::timer_event()).await.unwrap();
    assert!(ok.result.is_response(), "{}", ok.result.json());
    let vpc_calls = stub
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.action == "DescribeVpcs")
        .count();
    assert_eq!(vpc_calls, 2, "throttled once, retried once");

    // A rule changes, but listing subnets fails for good: the run fails, latest stays.
    stub.state
        .lock()
        .unwrap()
        .items
        .get_mut("DescribeEnterpriseSecurityGroupRule")
        .unwrap()[0]["Port"] = json!("8443");
    stub.fail_next("DescribeSubnets", "UnauthorizedOperation");
    let failed = sync.invoke(common::timer_event()).await.unwrap();
    assert!(!failed.result.is_response());
    let error = failed.result.json();
    assert_eq!(error["errorType"], "SnapshotBuildFailed");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("DescribeSubnets") && message.contains("UnauthorizedOperation"),
        "{message}"
    );
    assert_eq!(cos_puts(&stub).len(), 3, "latest untouched");

    // COS refusing the write fails the run too, and a later run publishes.
    stub.fail_next_cos("PUT", 403);
    let refused = sync.invoke(common::timer_event()).await.unwrap();
    assert_eq!(refused.result.json()["errorType"], "SnapshotStoreFailed");
    let latest = |stub: &CloudStub| -> Value {
        serde_json::from_slice(
            &stub.state.lock().unwrap().objects["/esgflow/snapshots/latest.json"].0,
        )
        .unwrap()
    };
    assert_eq!(latest(&stub)["version"], sample_version());
    let retried = sync.invoke(common::timer_event()).await.unwrap();
    assert_eq!(retried.result.json()["published"], true);
    assert_ne!(latest(&stub)["version"], sample_version());
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

/// Instance names come from cvm `DescribeInstances`. A sync role that may not call it (a
/// deployment from before names were read) still publishes, without the names and with a
/// warning saying what to allow; every reading of CAM's refusal is taken alike, so the version
/// stays put. Any other failure of the call still fails the run.
#[tokio::test]
async fn instance_names_are_skipped_with_a_warning_when_the_role_may_not_read_them() {
    let stub = common::cloud_stub().await;
    let mut sync = sync_with(&stub, vec![]).await;
    let published = |stub: &CloudStub, summary: &Value| -> Snapshot {
        let version = summary["snapshot_version"].as_str().unwrap();
        serde_json::from_slice(
            &stub.state.lock().unwrap().objects[&format!("/esgflow/snapshots/{version}.json")].0,
        )
        .unwrap()
    };
    stub.fail_next("DescribeInstances", "UnauthorizedOperation");
    let first = sync.invoke(common::timer_event()).await.unwrap();
    let summary = first.result.json();
    assert_eq!(summary["published"], true, "{summary}");
    let unnamed = published(&stub, &summary);
    assert!(unnamed.instances.is_empty());
    assert!(!unnamed.enis.is_empty() && !unnamed.rules.is_empty());
    assert_ne!(unnamed.version, sample_version());
    assert!(
        unnamed
            .warnings
            .iter()
            .any(|w| w.contains("DescribeInstances") && w.contains("cvm:DescribeInstances")),
        "{:?}",
        unnamed.warnings
    );

    for code in [
        "AuthFailure.UnauthorizedOperation",
        "UnauthorizedOperation.CamNoAuth",
    ] {
        stub.fail_next("DescribeInstances", code);
        let again = sync.invoke(common::timer_event()).await.unwrap();
        let summary = again.result.json();
        assert_eq!(summary["published"], false, "{code}: {summary}");
        assert_eq!(summary["snapshot_version"], unnamed.version.as_str());
    }

    stub.fail_next("DescribeInstances", "InvalidParameterValue");
    let failed = sync.invoke(common::timer_event()).await.unwrap();
    let error = failed.result.json();
    assert_eq!(error["errorType"], "SnapshotBuildFailed", "{error}");
    assert!(error["errorMessage"]
        .as_str()
        .unwrap()
        .contains("DescribeInstances"));

    // Allowed again: the names come back.
    let named = sync
        .invoke(common::timer_event())
        .await
        .unwrap()
        .result
        .json();
    assert_eq!(named["published"], true, "{named}");
    let snapshot = published(&stub, &named);
    assert_eq!(snapshot.version, sample_version());
    assert!(snapshot
        .instances
        .iter()
        .any(|i| i.id == "ins-cache01" && i.name == "redis-主"));
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

/// A monitored VPC that `DescribeVpcs` does not return is a warning of the published snapshot,
/// beside the VPC that is found.
#[tokio::test]
async fn an_unknown_monitored_vpc_is_a_snapshot_warning() {
    let stub = common::cloud_stub().await;
    let mut sync = sync_with(
        &stub,
        vec![(
            "ESGFLOW_MONITORED_VPCS".into(),
            "vpc-prod0001,vpc-gone0001".into(),
        )],
    )
    .await;
    let summary = sync
        .invoke(common::timer_event())
        .await
        .unwrap()
        .result
        .json();
    assert_eq!(summary["published"], true, "{summary}");
    let version = summary["snapshot_version"].as_str().unwrap();
    let published: Snapshot = serde_json::from_slice(
        &stub.state.lock().unwrap().objects[&format!("/esgflow/snapshots/{version}.json")].0,
    )
    .unwrap();
    assert_eq!(
        published
            .vpcs
            .iter()
            .map(|v| v.id.as_str())
            .collect::<Vec<_>>(),
        ["vpc-prod0001"]
    );
    let about: Vec<&String> = published
        .warnings
        .iter()
        .filter(|w| w.contains("vpc-gone0001"))
        .collect();
    assert_eq!(about.len(), 1, "{:?}", published.warnings);
    assert!(about[0].contains("ESGFLOW_MONITORED_VPCS"), "{}", about[0]);
    assert!(!published
        .warnings
        .iter()
        .any(|w| w.contains("vpc-prod0001 (")));
}

#[tokio::test]
async fn rule_changes_are_recorded_and_alerted_and_unused_rules_reported() {
    let stub = common::cloud_stub().await;
    let cls = ClsStub::start(vec![]).await;
    let receiver = AlertReceiver::start().await.unwrap();

    // The audit function judges the sample's first flows and writes hit counters to CLS.
    let mut audit = common::emulator_with("audit", cls.env("hits", "traffic")).await;
    let lines: Vec<String> = std::fs::read_to_string(format!(
        "{}/samples/flowlogs.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .lines()
    .take(400)
    // Within the report's window, which ends now.
    .map(common::recent)
    .collect();
    let contents: Vec<&str> = lines.iter().map(String::as_str).collect();
    let invocation = audit
        .invoke(common::cls_event("flowlog", &contents))
        .await
        .unwrap();
    assert!(invocation.result.is_response());
    let counted: std::collections::BTreeSet<String> = cls
        .accepted()
        .iter()
        .filter(|l| l.fields["record_type"] == "rule_hits")
        .map(|l| l.fields["rule_uuid"].clone())
        .collect();
    assert!(!counted.is_empty());

    let mut env = cls.env("hits", "traffic");
    env.extend(receiver.settings());
    env.push(("ESGFLOW_ALERT_KINDS".into(), "rule_change".into()));
    let mut sync = sync_with(&stub, env).await;
    let first = sync.invoke(common::timer_event()).await.unwrap();
    let summary = first.result.json();
    assert!(first.result.is_response(), "{summary}");
    let unused: Vec<String> = serde_json::from_value(summary["unused"].clone()).unwrap();
    let snapshot = Snapshot::load(std::path::Path::new(&common::sample_snapshot())).unwrap();
    let expected: Vec<String> = snapshot
        .rules
        .iter()
        .filter(|r| r.enabled && !counted.contains(&r.uuid))
        .map(|r| r.uuid.clone())
        .collect();
    assert_eq!(unused, expected);
    let search = cls.searches().pop().unwrap();
    assert!(search["QueryString"]
        .as_str()
        .unwrap()
        .starts_with("record_type:\"rule_hits\""));
    assert!(
        receiver.received().is_empty(),
        "no previous snapshot: no change alert"
    );

    // Change the account: one rule's port, one rule removed, one added.
    {
        let mut state = stub.state.lock().unwrap();
        let rules = state
            .items
            .get_mut("DescribeEnterpriseSecurityGroupRule")
            .unwrap();
        let removed = rules.remove(1);
        let mut added = removed.clone();
        added["Id"] = json!("7999");
        added["Description"] = json!("added by the test");
        added["OrderIndex"] = json!("99");
        rules.push(added);
        rules[0]["Port"] = json!("8443");
        // The rule-list API describes the same rules: the removed one goes from there too.
        let id = removed["Id"].as_str().unwrap().parse::<u64>().unwrap();
        state
            .items
            .get_mut("DescribeEnterpriseSecurityGroupRuleList")
            .unwrap()
            .retain(|r| r["RuleUuid"].as_u64() != Some(id));
    }
    let second = sync.invoke(common::timer_event()).await.unwrap();
    let summary = second.result.json();
    assert_eq!(summary["published"], true, "{summary}");
    assert_eq!(summary["changes"]["added"], 1, "{summary}");
    assert_eq!(summary["changes"]["removed"], 1);
    assert_eq!(summary["changes"]["modified"], 1);
    let changes: Vec<_> = cls
        .accepted()
        .into_iter()
        .filter(|l| l.fields["record_type"] == "rule_change")
        .collect();
    assert!(changes.iter().all(|l| l.topic == "hits"));
    let modified = changes
        .iter()
        .find(|l| l.fields["change"] == "modified")
        .unwrap();
    assert_eq!(modified.fields["fields"], "port");
    assert!(modified.fields["after"].contains("8443"));
    assert_eq!(modified.fields["from_version"], snapshot.version);
    // One change alert per channel, through each channel's own signature.
    let deadline = Instant::now() + Duration::from_secs(5);
    while receiver.received().len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = receiver.received();
    assert_eq!(received.len(), 4, "{received:?}");
    assert!(received.iter().all(|r| r.verified), "{received:?}");
    let webhook = received.iter().find(|r| r.channel == "webhook").unwrap();
    assert_eq!(webhook.body["alert"]["kind"], "rule_change");
    assert_eq!(webhook.body["records"].as_array().unwrap().len(), 3);
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
    assert!(cls.problems().is_empty(), "{:?}", cls.problems());
}

#[tokio::test]
async fn audit_reads_the_published_snapshot_from_cos_and_revalidates_with_etags() {
    let stub = published().await;
    let mut env = stub.env();
    env.push((
        "ESGFLOW_SNAPSHOT".into(),
        "cos://esg-1250000000/esgflow/snapshots?region=ap-shanghai".into(),
    ));
    env.push(("ESGFLOW_SNAPSHOT_TTL_SECONDS".into(), "0".into()));
    let mut audit = common::emulator_with("audit", env).await;
    let event = common::cls_event(
        "flowlog",
        &["2 1251762227 eni-web00001 10.0.1.11 10.0.3.21 40000 3306 6 3 180 1763942400 1763942460 REJECT OK"],
    );
    for _ in 0..2 {
        let invocation = audit.invoke(event.clone()).await.unwrap();
        assert_eq!(
            invocation.result.json()["snapshot_version"],
            sample_version()
        );
    }
    let gets: Vec<(String, u16)> = stub
        .state
        .lock()
        .unwrap()
        .cos_requests
        .iter()
        .filter(|(m, _, _)| m == "GET")
        .map(|(_, k, s)| (k.clone(), *s))
        .collect();
    let latest: Vec<u16> = gets
        .iter()
        .filter(|(k, _)| k.ends_with("latest.json"))
        .map(|(_, s)| *s)
        .collect();
    // sync's own read (404), then the audit instance: a full read, then 304s.
    assert_eq!(latest[0], 404);
    assert_eq!(latest[1], 200);
    assert!(latest[2..].iter().all(|&s| s == 304), "{gets:?}");
    let objects = gets
        .iter()
        .filter(|(k, _)| !k.ends_with("latest.json") && !k.contains("/monitoring"))
        .count();
    assert_eq!(
        objects, 1,
        "the snapshot itself is transferred once: {gets:?}"
    );
    // The monitoring switches are read with it, each time the snapshot is checked (none saved):
    // the copy, then whether a change follows it.
    let switches: Vec<(&str, u16)> = gets
        .iter()
        .filter(|(k, _)| k.contains("/monitoring"))
        .map(|(k, s)| (k.rsplit("snapshots/").next().unwrap(), *s))
        .collect();
    assert_eq!(
        switches,
        [
            ("monitoring.json", 404),
            ("monitoring/1.json", 404),
            ("monitoring.json", 404),
            ("monitoring/1.json", 404)
        ],
        "{gets:?}"
    );
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

#[tokio::test]
async fn paging_follows_the_totals() {
    let stub = common::cloud_stub().await;
    let client = stub_client(&stub);
    let deadline = Instant::now() + Duration::from_secs(10);
    let budget = PageBudget::new(64 << 20);
    let pages = client
        .pages(
            &rule_listing(Paging::PageNo { size: 10 }),
            &budget,
            deadline,
        )
        .await
        .unwrap();
    assert_eq!(pages.len(), 4);
    assert_eq!(
        pages
            .iter()
            .map(|p| read(p)["Rules"].as_array().unwrap().len())
            .sum::<usize>(),
        36
    );
    let pages = client
        .pages(
            &Listing {
                service: "vpc",
                version: "2017-03-12",
                action: "DescribeNetworkInterfaces",
                body: &json!({}),
                paging: Paging::Offset {
                    limit: 7,
                    strings: false,
                },
                list_key: "NetworkInterfaceSet",
                id_key: "NetworkInterfaceId",
            },
            &budget,
            deadline,
        )
        .await
        .unwrap();
    assert_eq!(pages.len(), 3, "21 interfaces in pages of 7");
    // A client-side rate limit spaces the calls: 5 calls at 10/s take at least 400 ms.
    let limited = client.clone().with_rate_limit("DescribeVpcs", 10);
    let started = Instant::now();
    for _ in 0..5 {
        limited
            .call(
                "vpc",
                "2017-03-12",
                "DescribeVpcs",
                &json!({"Offset": "0", "Limit": "100"}),
                deadline,
            )
            .await
            .unwrap();
    }
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

/// The listings page side by side, each action at its own pace: with 500 rules the paced rule
/// listing takes ten pages at 20 a second, and the VPC, template and instance listings are all
/// asked before its last page instead of after it (at 20,000 rules this keeps a sync run near
/// the 20 s the rule listing alone needs).
#[tokio::test]
async fn the_listings_page_side_by_side() {
    let stub = CloudStub::start(esgflow_local::testdata::synthetic::export(500, 4, 7))
        .await
        .unwrap();
    let mut sync = sync_with(&stub, vec![]).await;
    let run = sync.invoke(common::timer_event()).await.unwrap();
    let summary = run.result.json();
    assert!(run.result.is_response(), "{summary}");
    assert_eq!(summary["rules"], 500, "{summary}");
    assert_eq!(summary["published"], true, "{summary}");
    let actions: Vec<String> = stub
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .map(|r| r.action.clone())
        .collect();
    let rule_pages: Vec<usize> = (0..actions.len())
        .filter(|&i| actions[i] == "DescribeEnterpriseSecurityGroupRule")
        .collect();
    assert_eq!(rule_pages.len(), 10, "{actions:?}");
    let last_rule_page = rule_pages[9];
    for other in [
        "DescribeVpcs",
        "DescribeAddressTemplates",
        "DescribeInstances",
    ] {
        let first = actions.iter().position(|a| a == other);
        assert!(
            first.is_some_and(|i| i < last_rule_page),
            "{other} waited for the rule listing: {actions:?}"
        );
    }
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

/// Two differing copies of one rule in the answers (the rules changed while they were paged):
/// sync reads every listing once more, then keeps one copy by the importer's order-independent
/// choice and says so in a warning; the snapshot is still published.
/// A listing that answers part of itself — here the rule list stops short of its Total, then a
/// rule is listed twice (an insert shifted the pages) — is read once more and then fails the run:
/// nothing is published, the last good snapshot stays, and both the error and the rule-change
/// alert say which listing, how short, and which snapshot stays in force.
#[tokio::test]
async fn an_incomplete_listing_fails_the_run_and_keeps_the_last_snapshot() {
    use esgflow_local::standins::cloud::Misbehaviour;
    let stub = common::cloud_stub().await;
    let receiver = AlertReceiver::start().await.unwrap();
    let mut env = receiver.settings();
    env.push(("ESGFLOW_ALERT_KINDS".into(), "rule_change".into()));
    let mut sync = sync_with(&stub, env).await;
    let first = sync.invoke(common::timer_event()).await.unwrap();
    assert_eq!(first.result.json()["published"], true);
    let published = first.result.json()["snapshot_version"]
        .as_str()
        .unwrap()
        .to_string();
    let total = stub.state.lock().unwrap().items["DescribeEnterpriseSecurityGroupRuleList"].len();

    stub.misbehave(
        "DescribeEnterpriseSecurityGroupRuleList",
        Misbehaviour::StopsAfter(20),
    );
    let short = sync.invoke(common::timer_event()).await.unwrap();
    let error = short.result.json();
    assert_eq!(error["errorType"], "SnapshotBuildFailed", "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    for expected in [
        "DescribeEnterpriseSecurityGroupRuleList".to_string(),
        format!(
            "20 distinct items of its Total {total} ({} short)",
            total - 20
        ),
        format!("snapshot {published} stays in force"),
    ] {
        assert!(message.contains(&expected), "{expected:?} in {message}");
    }
    let first_pages = |stub: &CloudStub| {
        stub.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| {
                r.action == "DescribeEnterpriseSecurityGroupRuleList" && r.body["Offset"] == 0
            })
            .count()
    };
    assert_eq!(
        first_pages(&stub),
        3,
        "read once more after the first run's read"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while receiver.received().len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let webhook = receiver
        .received()
        .into_iter()
        .find(|r| r.channel == "webhook")
        .expect("a rule-change alert");
    let alert = &webhook.body["alert"];
    assert_eq!(alert["kind"], "rule_change");
    let details = alert["details"].to_string();
    assert!(
        details.contains("20 distinct items")
            && details.contains(&format!("snapshot {published} stays in force")),
        "{alert}"
    );

    // A rule listed twice on the new-ESG listing fails the same way.
    {
        let mut state = stub.state.lock().unwrap();
        state.misbehaving.clear();
        let rules = state
            .items
            .get_mut("DescribeEnterpriseSecurityGroupRule")
            .unwrap();
        let copy = rules[0].clone();
        rules.insert(12, copy);
    }
    let repeated = sync.invoke(common::timer_event()).await.unwrap();
    let message = repeated.result.json()["errorMessage"].to_string();
    assert!(
        message
            .contains("DescribeEnterpriseSecurityGroupRule: IncompleteListing: page 1 repeats 1"),
        "{message}"
    );

    // Listings whose every rule field but the id is null fail it too, naming why (issue #36: a
    // snapshot of unreadable rules replaced the good one).
    {
        let mut state = stub.state.lock().unwrap();
        state
            .items
            .get_mut("DescribeEnterpriseSecurityGroupRule")
            .unwrap()
            .remove(12);
        for action in [
            "DescribeEnterpriseSecurityGroupRule",
            "DescribeEnterpriseSecurityGroupRuleList",
        ] {
            for rule in state.items.get_mut(action).unwrap() {
                for (name, value) in rule.as_object_mut().unwrap() {
                    if !matches!(name.as_str(), "Id" | "Uuid" | "RuleUuid") {
                        *value = Value::Null;
                    }
                }
            }
        }
    }
    let nulls = sync.invoke(common::timer_event()).await.unwrap();
    let message = nulls.result.json()["errorMessage"].to_string();
    assert!(
        message.contains("rules cannot be read")
            && message.contains(&format!("snapshot {published} stays in force")),
        "{message}"
    );
    let latest: Value = serde_json::from_slice(
        &stub.state.lock().unwrap().objects["/esgflow/snapshots/latest.json"].0,
    )
    .unwrap();
    assert_eq!(latest["version"], published.as_str(), "latest untouched");
    assert_eq!(cos_puts(&stub).len(), 3, "published once, by the first run");
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

#[tokio::test]
async fn old_esg_rules_are_read_in_every_configured_region() {
    let stub = common::cloud_stub().await;
    {
        let mut state = stub.state.lock().unwrap();
        let shanghai = state.items["DescribeSecurityGroupList"].clone();
        let mut beijing = shanghai[0].clone();
        beijing["Id"] = json!(9900);
        beijing["Uuid"] = json!("old-9900");
        beijing["Detail"] = json!("beijing: old rule");
        state.areas.insert("ap-shanghai".into(), shanghai);
        state.areas.insert("ap-beijing".into(), vec![beijing]);
    }
    let mut sync = sync_with(
        &stub,
        vec![(
            "ESGFLOW_OLD_ESG_REGIONS".into(),
            "ap-shanghai, ap-beijing".into(),
        )],
    )
    .await;
    let outcome = sync.invoke(common::timer_event()).await.unwrap();
    let summary = outcome.result.json();
    assert_eq!(summary["published"], true, "{summary}");
    let version = summary["snapshot_version"].as_str().unwrap().to_string();
    let published: Snapshot = serde_json::from_slice(
        &stub.state.lock().unwrap().objects[&format!("/esgflow/snapshots/{version}.json")].0,
    )
    .unwrap();
    let old: Vec<(&str, Option<&str>)> = published
        .rules
        .iter()
        .filter(|r| r.generation == esgflow::core::snapshot::Generation::Old)
        .map(|r| (r.uuid.as_str(), r.attributes.region.as_deref()))
        .collect();
    assert!(old.contains(&("9900", Some("ap-beijing"))), "{old:?}");
    assert!(old.len() > 1);
    assert!(
        old.iter()
            .filter(|(id, _)| *id != "9900")
            .all(|(_, region)| *region == Some("ap-shanghai")),
        "{old:?}"
    );
    let mut asked: Vec<(String, u64)> = stub
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.action == "DescribeSecurityGroupList")
        .map(|r| {
            (
                r.body["Area"].as_str().unwrap().to_string(),
                r.body["Direction"].as_u64().unwrap(),
            )
        })
        .collect();
    asked.sort();
    asked.dedup();
    assert_eq!(
        asked,
        [
            ("ap-beijing".to_string(), 0),
            ("ap-beijing".to_string(), 1),
            ("ap-shanghai".to_string(), 0),
            ("ap-shanghai".to_string(), 1)
        ]
    );
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

/// `DescribeEnterpriseSecurityGroupRuleList` documents `Offset` as "current page": whether the
/// API reads it as a row offset or a page number (from 1 or from 0) is unconfirmed. Against a
/// stand-in with each reading, every rule is collected, none twice beyond the detection probe.
#[tokio::test]
async fn the_rule_list_is_read_whole_under_every_reading_of_offset() {
    use esgflow_local::standins::cloud::OffsetMeaning;
    for meaning in [
        OffsetMeaning::Rows,
        OffsetMeaning::PageFromOne,
        OffsetMeaning::PageFromZero,
    ] {
        let stub = common::cloud_stub().await;
        let expected: std::collections::BTreeSet<String> = {
            let mut state = stub.state.lock().unwrap();
            state.rule_list_offset = meaning;
            state.items["DescribeEnterpriseSecurityGroupRuleList"]
                .iter()
                .map(|r| r["RuleUuid"].to_string())
                .collect()
        };
        assert!(expected.len() > 25, "the sample spans several pages of 10");
        let client = stub_client(&stub);
        let pages = client
            .pages(
                &rule_list_listing(),
                &PageBudget::new(64 << 20),
                Instant::now() + Duration::from_secs(10),
            )
            .await
            .unwrap();
        let ids: Vec<String> = pages
            .iter()
            .map(read)
            .flat_map(|p| p["Data"].as_array().unwrap().clone())
            .map(|r| r["RuleUuid"].to_string())
            .collect();
        let distinct: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(distinct, expected, "{meaning:?}: every rule, once");
        // At most the detection probe overlaps (one page), and no page is asked twice after it.
        assert!(
            ids.len() <= expected.len() + 10,
            "{meaning:?}: {} ids",
            ids.len()
        );
        let offsets: Vec<u64> = stub
            .state
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|r| r.body["Offset"].as_u64().unwrap())
            .collect();
        match meaning {
            OffsetMeaning::Rows => assert_eq!(offsets[..4], [0, 1, 11, 21]),
            OffsetMeaning::PageFromOne | OffsetMeaning::PageFromZero => {
                assert_eq!(offsets[..4], [0, 1, 2, 3])
            }
        }
        assert!(stub.problems().is_empty(), "{:?}", stub.problems());
    }
}

/// `esgflow sync --local` publishes the sample's snapshot into a `dir://` store, which
/// `esgflow replay --snapshot dir://…` then judges the sample's flow logs with.
#[test]
fn sync_local_runs_against_the_stand_in() {
    let scratch = common::scratch("sync-local");
    let out = scratch.path().to_path_buf();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_esgflow"))
        .args(["sync", "--local", "--runs", "2", "--exports"])
        .arg(common::sample_exports())
        .arg("--store")
        .arg(format!("dir://{}/snapshots", out.display()))
        .arg("--records")
        .arg(out.join("records.jsonl"))
        .arg("--bin-dir")
        .arg(common::function_binary("sync").parent().unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&sample_version()), "{stdout}");
    let latest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("snapshots/latest.json")).unwrap())
            .unwrap();
    assert_eq!(latest["version"], sample_version());
    // The published store judges a replay as it does in the cloud: `--snapshot` takes the
    // location the functions read (issue #35: it was made a path under the working directory).
    let replay = std::process::Command::new(env!("CARGO_BIN_EXE_esgflow"))
        .arg("replay")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/flowlogs.txt"))
        .arg("--snapshot")
        .arg(format!("dir://{}/snapshots", out.display()))
        .arg("--records")
        .arg(out.join("audit.jsonl"))
        .arg("--bin-dir")
        .arg(common::function_binary("audit").parent().unwrap())
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let audited = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    let first: Value = serde_json::from_str(audited.lines().next().unwrap()).unwrap();
    assert_eq!(first["snapshot_version"], sample_version());
    std::fs::remove_dir_all(&out).ok();
}

/// A page as `ApiClient::pages` keeps it (JSON text), parsed.
/// The new-ESG rule listing, paged as asked.
fn rule_listing(paging: Paging) -> Listing<'static> {
    static BODY: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    Listing {
        service: "cfw",
        version: "2019-09-04",
        action: "DescribeEnterpriseSecurityGroupRule",
        body: BODY.get_or_init(|| json!({})),
        paging,
        list_key: "Rules",
        id_key: "Id",
    }
}

/// The rule-list listing, in pages of 10 (its `Offset` read either way).
fn rule_list_listing() -> Listing<'static> {
    Listing {
        action: "DescribeEnterpriseSecurityGroupRuleList",
        paging: Paging::OffsetOrPage { limit: 10 },
        list_key: "Data",
        id_key: "RuleUuid",
        ..rule_listing(Paging::OffsetOrPage { limit: 10 })
    }
}

/// A client of the stand-in.
fn stub_client(stub: &CloudStub) -> ApiClient {
    ApiClient::new("ap-shanghai", Some(stub.url.clone())).with_credentials(
        esgflow::adapters::tencent::Credentials {
            secret_id: esgflow_local::standins::cloud::SECRET_ID.into(),
            secret_key: esgflow_local::standins::cloud::SECRET_KEY.into(),
            token: None,
        },
    )
}

/// A listing is complete or it fails: each way a paged API can answer part of a listing — pages
/// that stop short of the Total, a first page answered again for every page, a `null` list, a
/// Total that changes while paging — is an `IncompleteListing` error naming the listing and how
/// it fell short, under both paging styles (and every reading of the rule list's `Offset`).
#[tokio::test]
async fn a_listing_that_answers_part_of_itself_fails() {
    use esgflow_local::standins::cloud::{Misbehaviour, OffsetMeaning};
    let cases = [
        (
            Misbehaviour::StopsAfter(20),
            "20 distinct items of its Total 3",
        ),
        (Misbehaviour::RepeatsFirstPage, "repeats 10 of its 10 items"),
        (Misbehaviour::NullList, "answered null for"),
        (Misbehaviour::TotalGrows, "its Total changed from 3"),
    ];
    for (how, expected) in cases {
        for (listing, meaning) in [
            (rule_listing(Paging::PageNo { size: 10 }), None),
            (rule_list_listing(), Some(OffsetMeaning::Rows)),
            (rule_list_listing(), Some(OffsetMeaning::PageFromOne)),
            (rule_list_listing(), Some(OffsetMeaning::PageFromZero)),
        ] {
            let stub = common::cloud_stub().await;
            if let Some(meaning) = meaning {
                stub.state.lock().unwrap().rule_list_offset = meaning;
            }
            let whole = stub.state.lock().unwrap().items[listing.action].len();
            assert!(whole > 30, "the sample spans several pages of 10");
            stub.misbehave(listing.action, how);
            let error = stub_client(&stub)
                .pages(
                    &listing,
                    &PageBudget::new(64 << 20),
                    Instant::now() + Duration::from_secs(10),
                )
                .await
                .expect_err(&format!("{how:?} {meaning:?}"));
            assert_eq!(
                error.code, "IncompleteListing",
                "{how:?} {meaning:?}: {error}"
            );
            assert_eq!(error.action, listing.action);
            let expected = expected.replace("Total 3", &format!("Total {whole}"));
            assert!(
                error.message.contains(&expected),
                "{how:?} {meaning:?}: {error}"
            );
            assert!(stub.problems().is_empty(), "{:?}", stub.problems());
        }
    }
    // An empty listing may answer its list as null when its Total says 0.
    let stub = common::cloud_stub().await;
    stub.state
        .lock()
        .unwrap()
        .items
        .insert("DescribeEnterpriseSecurityGroupRule".into(), Vec::new());
    stub.misbehave(
        "DescribeEnterpriseSecurityGroupRule",
        Misbehaviour::NullList,
    );
    let pages = stub_client(&stub)
        .pages(
            &rule_listing(Paging::PageNo { size: 10 }),
            &PageBudget::new(64 << 20),
            Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(pages.len(), 1);
}

/// The pages a run holds are bounded together, not only one by one: past the budget the listing
/// fails naming the limit.
#[tokio::test]
async fn the_pages_held_are_bounded_together() {
    let stub = common::cloud_stub().await;
    let budget = PageBudget::new(6_000);
    let error = stub_client(&stub)
        .pages(
            &rule_listing(Paging::PageNo { size: 10 }),
            &budget,
            Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code, "PagesTooLarge", "{error}");
    assert!(error.message.contains("5 KiB held at once"), "{error}");
    assert!(budget.held() > 6_000);
}

fn read(page: &esgflow::adapters::tencent::api::Page) -> Value {
    serde_json::from_str(page.get()).unwrap()
}

/// Two lookup functions switching VPCs at the same moment over COS lose no change: each answer
/// is 200 with its change kept, or 409 with nothing changed (issue #36: a change was lost in 4
/// of 30 rounds while both answered 200). Changes are written create-only
/// (`x-cos-forbid-overwrite`), which the stand-in refuses with 409 as COS does.
#[tokio::test]
async fn two_lookups_switching_at_once_lose_no_change() {
    use crate::lookup_e2e::event;
    let stub = published().await;
    let admin = "admin-token-0123456789abcdef";
    let mut env = stub.env();
    for (name, value) in [
        (
            "ESGFLOW_SNAPSHOT",
            "cos://esg-1250000000/esgflow/snapshots?region=ap-shanghai",
        ),
        ("ESGFLOW_SNAPSHOT_TTL_SECONDS", "0"),
        ("ESGFLOW_LOOKUP_TOKEN", "lookup-test-token-0123"),
        ("ESGFLOW_ADMIN_TOKEN", admin),
    ] {
        env.push((name.into(), value.into()));
    }
    let mut first = common::emulator_with("lookup", env.clone()).await;
    let mut second = common::emulator_with("lookup", env).await;
    let switch = |vpc: &str, on: bool| {
        event(
            "PUT",
            &format!("/v1/vpcs/{vpc}/monitoring"),
            Some(admin),
            Some(json!({ "monitored": on })),
        )
    };
    let status = |invocation: esgflow_local::emulator::Invocation| {
        let wire = invocation.result.json();
        (wire["statusCode"].as_u64().unwrap(), wire["body"].clone())
    };
    for round in 0..12 {
        let on = round % 2 == 0;
        let (a, b) = tokio::join!(
            first.invoke(switch("vpc-prod0001", on)),
            second.invoke(switch("vpc-dev00001", on)),
        );
        let (a, b) = (status(a.unwrap()), status(b.unwrap()));
        let read = stub
            .state
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|(key, _)| key.contains("/monitoring/"))
            .max_by_key(|(key, _)| {
                key.rsplit('/')
                    .next()
                    .unwrap()
                    .trim_end_matches(".json")
                    .parse::<u64>()
                    .unwrap()
            })
            .map(|(_, (body, _))| serde_json::from_slice::<Value>(body).unwrap())
            .unwrap();
        for ((code, body), vpc) in [(a, "vpc-prod0001"), (b, "vpc-dev00001")] {
            match code {
                200 => assert_eq!(read["vpcs"][vpc], on, "round {round}: {vpc} lost: {read}"),
                409 => {}
                _ => panic!("round {round}: {vpc}: {code} {body}"),
            }
        }
    }
    let conflicts = stub
        .state
        .lock()
        .unwrap()
        .cos_requests
        .iter()
        .filter(|(m, k, s)| m == "PUT" && k.contains("/monitoring/") && *s == 409)
        .count();
    eprintln!("{conflicts} changes came second and were applied again");
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

/// A run whose listings answer too slowly stops before the function's deadline with an error
/// that says which listing was slow and how slow, and publishes nothing (issue #36: pages of 12 s
/// each ended in the platform's timeout with no summary).
#[tokio::test]
async fn slow_listings_stop_before_the_deadline_and_say_what_was_slow() {
    let stub = common::cloud_stub().await;
    {
        // Four pages of 50 rules, each answered after 1.5 s: 6 s, in a function of 4 s.
        let mut state = stub.state.lock().unwrap();
        let rules = state
            .items
            .get_mut("DescribeEnterpriseSecurityGroupRule")
            .unwrap();
        let model = rules[0].clone();
        for i in 0..160 - rules.len() {
            let mut rule = model.clone();
            rule["Id"] = json!(format!("{}", 90_000 + i));
            rules.push(rule);
        }
        state.slow.insert(
            "DescribeEnterpriseSecurityGroupRule".into(),
            Duration::from_millis(1500),
        );
    }
    let mut env = stub.env();
    env.push((
        "ESGFLOW_SNAPSHOT".into(),
        "cos://esg-1250000000/esgflow/snapshots?region=ap-shanghai".into(),
    ));
    let mut sync = common::emulator_timed("sync", env, Duration::from_secs(4)).await;
    let started = Instant::now();
    let run = sync.invoke(common::timer_event()).await.unwrap();
    let error = run.result.json();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered before the platform's limit: {:?}",
        started.elapsed()
    );
    assert_eq!(error["errorType"], "SnapshotBuildFailed", "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    for expected in [
        "stopped before the function's deadline",
        "DescribeEnterpriseSecurityGroupRule: 2 answers, the slowest 1.",
        "nothing was published",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    assert!(cos_puts(&stub).is_empty(), "nothing published");
    eprintln!("{message}");
}
