//! The audit binary under the emulator writing to a local CLS stand-in that verifies the TC3
//! signature and decodes LZ4 + protobuf: records land once, with stable ids, and failures are
//! retried or reported as docs/records.md says.

use crate::common;

use common::cls_stub::ClsStub;
use esgflow_local::emulator::InvocationResult;

/// web-1 → db-0 MySQL, rejected: observed by 7007, blocked by 7010. app-0 → db-0 MySQL, accepted
/// on both ENIs (one flow). dev → on-prem 443 rejected by the network ACL.
const LINES: &[&str] = &[
    "2 1251762227 eni-web00001 10.0.1.11 10.0.3.10 40001 3306 6 3 180 1763942400 1763942460 REJECT OK",
    "2 1251762227 eni-app00000 10.0.2.10 10.0.3.10 40002 3306 6 9 900 1763942400 1763942460 ACCEPT OK",
    "2 1251762227 eni-db000000 10.0.2.10 10.0.3.10 40002 3306 6 9 900 1763942400 1763942460 ACCEPT OK",
    "2 1251762227 eni-dev00000 172.16.1.10 192.168.100.4 40003 443 6 2 120 1763942400 1763942460 REJECT OK",
];

fn event() -> Vec<u8> {
    common::cls_event("fl-topic", LINES)
}

#[tokio::test]
async fn records_reach_cls_signed_compressed_and_decodable() {
    let stub = ClsStub::start(vec![]).await;
    let mut emulator =
        common::emulator_with("audit", stub.env("topic-hits", "topic-traffic")).await;
    let invocation = emulator.invoke(event()).await.unwrap();
    let summary = invocation.result.json();
    assert!(invocation.result.is_response(), "{summary}");
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
    let accepted = stub.accepted();
    let hits: Vec<_> = accepted
        .iter()
        .filter(|l| l.topic == "topic-hits")
        .collect();
    let types: Vec<&str> = hits
        .iter()
        .map(|l| l.fields["record_type"].as_str())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "block_hit").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "observe_hit").count(),
        2,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "unattributed_block").count(),
        1,
        "{types:?}"
    );
    let block = hits
        .iter()
        .find(|l| l.fields["record_type"] == "block_hit")
        .unwrap();
    assert_eq!(block.fields["rule_uuid"], "7010");
    assert_eq!(
        block.fields["rule_description"],
        "block other data-tier access"
    );
    assert_eq!(block.fields["src_ip"], "10.0.1.11");
    assert_eq!(block.fields["dst_port"], "3306");
    assert_eq!(block.fields["scope"], "inter_subnet");
    assert_eq!(block.fields["src_subnet"], "subnet-web00001");
    assert_eq!(block.fields["dst_instance"], "ins-db000000");
    assert_eq!(block.fields["direction"], "egress");
    assert_eq!(
        block.fields["snapshot_version"],
        summary["snapshot_version"].as_str().unwrap()
    );
    assert_eq!(block.time, 1763942460 * 1000);
    let unattributed = hits
        .iter()
        .find(|l| l.fields["record_type"] == "unattributed_block")
        .unwrap();
    // No rule decides it, but the sample's domain rule (which no snapshot can resolve) would
    // match: the record names it as what may explain the block.
    assert_eq!(unattributed.fields["reason"], "indeterminate_rule");
    assert_eq!(unattributed.fields["rule_uuid"], "7023");
    assert_eq!(unattributed.fields["indeterminate_rules"], "7023");
    assert!(accepted
        .iter()
        .filter(|l| l.topic == "topic-traffic")
        .all(|l| l.fields["record_type"] == "traffic"));
    assert_eq!(
        accepted
            .iter()
            .filter(|l| l.topic == "topic-traffic")
            .count(),
        3,
        "the accepted flow on two ENIs is one flow"
    );
    assert_eq!(summary["duplicates"], 1);
    // 4 hits and 3 per-rule hit counters.
    assert_eq!(summary["written"]["topic-hits"], 7);
    assert_eq!(summary["records"]["rule_hits"], 3);
    let counter = hits
        .iter()
        .find(|l| l.fields["record_type"] == "rule_hits" && l.fields["rule_uuid"] == "7010")
        .expect("a hit counter for the blocking rule");
    assert_eq!(
        (
            counter.fields["hits"].as_str(),
            counter.fields["block_hits"].as_str()
        ),
        ("1", "1")
    );
    assert_eq!(summary["written"]["topic-traffic"], 3);
    assert_eq!(summary["records"]["block_hit"], 1);
}

#[tokio::test]
async fn the_same_batch_twice_writes_the_same_record_ids() {
    let stub = ClsStub::start(vec![]).await;
    let mut emulator = common::emulator_with("audit", stub.env("hits", "traffic")).await;
    emulator.invoke(event()).await.unwrap();
    let first: Vec<String> = stub
        .accepted()
        .iter()
        .map(|l| l.fields["record_id"].clone())
        .collect();
    emulator.invoke(event()).await.unwrap();
    let all: Vec<String> = stub
        .accepted()
        .iter()
        .map(|l| l.fields["record_id"].clone())
        .collect();
    assert_eq!(all.len(), first.len() * 2);
    assert_eq!(&all[first.len()..], first.as_slice());
    let mut unique = first.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), first.len(), "ids are distinct within a batch");
}

#[tokio::test]
async fn throttling_is_retried_and_the_data_lands_once() {
    let stub = ClsStub::start(vec![(503, "busy"), (503, "busy")]).await;
    let mut emulator = common::emulator_with("audit", stub.env("hits", "hits")).await;
    let invocation = emulator.invoke(event()).await.unwrap();
    assert!(
        invocation.result.is_response(),
        "{:?}",
        invocation.result.json()
    );
    assert_eq!(stub.requests(), 3);
    let ids: Vec<String> = stub
        .accepted()
        .iter()
        .map(|l| l.fields["record_id"].clone())
        .collect();
    assert_eq!(ids.len(), 10);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "nothing written twice");
}

#[tokio::test]
async fn a_refusal_fails_the_invocation_naming_topic_and_code() {
    let stub = ClsStub::start(vec![(403, r#"{"Response":{"Error":{"Code":"AuthFailure.UnauthorizedOperation","Message":"no permission for topic"},"RequestId":"r"}}"#)]).await;
    let mut emulator =
        common::emulator_with("audit", stub.env("topic-denied", "topic-denied")).await;
    let invocation = emulator.invoke(event()).await.unwrap();
    let InvocationResult::Error(body) = &invocation.result else {
        panic!("expected an error, got {:?}", invocation.result)
    };
    let err: serde_json::Value = serde_json::from_slice(body.as_slice()).unwrap();
    assert_eq!(err["errorType"], "SinkError");
    let message = err["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("topic-denied")
            && message.contains("AuthFailure.UnauthorizedOperation")
            && message.contains("403"),
        "{message}"
    );
    assert_eq!(stub.requests(), 1, "a refusal is not retried");
    assert!(stub.accepted().is_empty());
}

#[tokio::test]
async fn without_credentials_the_invocation_fails_clearly() {
    let stub = ClsStub::start(vec![]).await;
    let env: Vec<(String, String)> = stub
        .env("hits", "hits")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("TENCENTCLOUD_SECRET"))
        .collect();
    let mut emulator = common::emulator_with("audit", env).await;
    let err = emulator.invoke(event()).await.unwrap().result.json();
    assert_eq!(err["errorType"], "SinkError");
    assert!(
        err["errorMessage"]
            .as_str()
            .unwrap()
            .contains("TENCENTCLOUD_SECRETID"),
        "{err}"
    );
}

/// A blocked port scan: 11,000 distinct rejected flows from the known scanner to one database
/// host, in one CLS event within SCF's 128 KB. Every record lands, in requests the CLS stand-in
/// checks against CLS's write limits (10,000 logs a group, 1 MB a value, 5 MB of values a group,
/// 6 MB of body before compression).
#[tokio::test]
async fn a_blocked_port_scan_is_uploaded_within_cls_limits() {
    let lines: Vec<String> = (0..11_000u32)
        .map(|i| {
            format!(
                "2 1251762227 eni-db000000 203.0.113.66 10.0.3.10 {} {} 6 1 44 1763942400 1763942460 REJECT OK",
                40000 + i % 20000,
                1 + i % 65535
            )
        })
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let event = common::cls_event("fl-topic", &lines);
    assert!(event.len() <= 128 * 1024, "{} bytes", event.len());
    let stub = ClsStub::start(vec![]).await;
    let mut emulator =
        common::emulator_with("audit", stub.env("topic-hits", "topic-traffic")).await;
    let invocation = emulator.invoke(event).await.unwrap();
    let summary = invocation.result.json();
    assert!(invocation.result.is_response(), "{summary}");
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
    assert_eq!(summary["records"]["block_hit"], 11_000, "{summary}");
    let landed = stub.accepted();
    let written: u64 = summary["written"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(landed.len() as u64, written);
    assert_eq!(
        landed
            .iter()
            .filter(|l| l.fields["record_type"] == "block_hit")
            .count(),
        11_000
    );
    assert!(
        stub.requests() >= 3,
        "over 11,000 hits need at least two requests to the hits topic, plus traffic: {}",
        stub.requests()
    );
    assert_eq!(summary["truncated_values"], 0);
}
