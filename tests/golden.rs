//! Golden test: the bundled sample, cut into CLS events as `make run` cuts them and run through the
//! real audit binary, produces exactly the checked-in summary (counts per record type and per
//! scope). The numbers were reviewed by hand against samples/generate.py: blocks per rule follow
//! the planted flows, the unattributed blocks are the dev → on-prem network-ACL rejects (each naming
//! the unresolvable domain rule 7023 that would match it), the drift records are the app →
//! postgres flows of the unpublished rule, and replies count in their connection's scope.

use crate::common;

use std::collections::BTreeMap;

use esgflow_local::emulator::clsfeed::{cut_events, FeedOptions};
use serde_json::{json, Value};

fn add(total: &mut BTreeMap<String, u64>, map: &Value) {
    for (k, v) in map.as_object().into_iter().flatten() {
        *total.entry(k.clone()).or_default() += v.as_u64().unwrap();
    }
}

#[tokio::test]
async fn the_sample_produces_the_expected_summary() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/samples/flowlogs.txt")).unwrap();
    let events = cut_events(text.lines(), &FeedOptions::default()).unwrap();
    let scratch = common::scratch("golden");
    let records = scratch.path().join("records.jsonl");
    let _ = std::fs::remove_file(&records);
    let mut emulator = common::emulator(
        "audit",
        &[("ESGFLOW_JSONL_PATH", records.to_str().unwrap())],
    )
    .await;
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let (mut record_types, mut scopes, mut skipped) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for event in &events {
        let summary = emulator.invoke(event.clone()).await.unwrap().result.json();
        for key in [
            "records_in",
            "parsed",
            "nodata",
            "skipdata",
            "flows",
            "duplicates",
            "replies",
            "unmonitored",
        ] {
            *totals.entry(key.to_string()).or_default() += summary[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{key} in {summary}"));
        }
        add(&mut record_types, &summary["records"]);
        add(&mut scopes, &summary["scopes"]);
        add(&mut skipped, &summary["skipped"]);
    }
    let actual = json!({"events": events.len(), "totals": totals, "records": record_types, "scopes": scopes, "skipped": skipped});
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/samples/expected-summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        actual,
        expected,
        "actual summary:\n{}",
        serde_json::to_string_pretty(&actual).unwrap()
    );

    // Every record written is in the file, once, with the sample's snapshot version.
    let written = std::fs::read_to_string(&records).unwrap();
    let lines: Vec<Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let total_records: u64 = record_types.values().sum();
    assert_eq!(lines.len() as u64, total_records);
    let mut ids: Vec<&str> = lines
        .iter()
        .map(|r| r["record_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), lines.len(), "record ids are unique");
    std::fs::remove_file(&records).ok();
}
