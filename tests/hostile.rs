//! A corpus of hostile input, each case next to a good record: the outcome is a clear error (the
//! batch fails as a whole only when the event itself cannot be decoded) or a counted skip, and
//! the good record is never lost.

use std::io::Write;

use base64::Engine as _;
use esgflow::app::audit::parse_batch;
use esgflow::core::flowlog::SkipReason;
use esgflow::events::{ClsTriggerEvent, DecodeLimits};
use serde_json::json;

const GOOD: &str =
    "2 1251762227 eni-web00001 10.0.1.11 10.0.3.10 40001 3306 6 3 180 1763942400 1763942460 REJECT OK";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn event_of_payload(compressed: &[u8]) -> ClsTriggerEvent {
    let data = base64::engine::general_purpose::STANDARD.encode(compressed);
    serde_json::from_value(json!({"clslogs": {"data": data}})).unwrap()
}

fn event_of_json(batch: &[u8]) -> ClsTriggerEvent {
    event_of_payload(&gzip(batch))
}

fn batch(contents: &[String]) -> Vec<u8> {
    let records: Vec<_> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"timestamp": (1_763_942_460_000_000u64 + i as u64).to_string(), "content": c}))
        .collect();
    json!({"topic_id": "t", "records": records})
        .to_string()
        .into_bytes()
}

/// Parses `[hostile, GOOD]` and returns the skip reasons; the good record must be there.
fn with_good(hostile: &str) -> Vec<(SkipReason, usize)> {
    let event = event_of_json(&batch(&[hostile.to_string(), GOOD.to_string()]));
    let (report, flows) = parse_batch(&event, &DecodeLimits::default()).unwrap();
    assert_eq!(report.records_in, 2);
    assert!(
        flows
            .iter()
            .any(|f| f.eni == "eni-web00001" && f.dst_port == Some(3306)),
        "the good record was lost next to {hostile:?}: {report:?}"
    );
    report.skipped.into_iter().collect()
}

fn skipped_as(hostile: &str, reason: SkipReason) {
    assert_eq!(with_good(hostile), vec![(reason, 1)], "{hostile:?}");
}

#[test]
fn undecodable_events_fail_with_a_clear_error() {
    let limits = DecodeLimits::default();
    let whole = gzip(&batch(&[GOOD.to_string()]));
    let cases: Vec<(ClsTriggerEvent, &str)> = vec![
        (
            event_of_payload(&whole[..whole.len() / 2]),
            "not a valid gzip stream",
        ),
        (
            event_of_payload(&gzip(b"this is not JSON")),
            "not valid JSON",
        ),
        (
            serde_json::from_value(json!({"clslogs": {"data": "%%%garbage!!!"}})).unwrap(),
            "not valid base64",
        ),
        (
            event_of_payload(b"plain bytes, no gzip header"),
            "not a valid gzip stream",
        ),
    ];
    for (event, expected) in cases {
        let error = parse_batch(&event, &limits).unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
    }
}

#[test]
fn a_decompression_bomb_and_huge_arrays_are_refused_by_caps() {
    let zeros = vec![b' '; 40 * 1024 * 1024];
    let error = parse_batch(&event_of_json(&zeros), &DecodeLimits::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("decompresses to more than"), "{error}");
    let many: Vec<String> = (0..300).map(|_| GOOD.to_string()).collect();
    let limits = DecodeLimits {
        max_records: 100,
        ..DecodeLimits::default()
    };
    let error = parse_batch(&event_of_json(&batch(&many)), &limits)
        .unwrap_err()
        .to_string();
    assert!(
        // The array is refused as soon as it passes the cap, before the rest is collected.
        error.contains("at least 101 records, over the 100-record cap"),
        "{error}"
    );
}

#[test]
fn ten_megabytes_of_decoded_json_is_processed() {
    let contents: Vec<String> = (0..75_000)
        .map(|i| {
            format!(
                "2 1251762227 eni-{i:08x} 10.0.{}.{} 10.0.3.10 40001 3306 6 3 180 1763942400 1763942460 ACCEPT OK",
                i / 250 % 250,
                i % 250
            )
        })
        .collect();
    let json = batch(&contents);
    assert!(json.len() > 10 * 1024 * 1024, "{}", json.len());
    let (report, flows) = parse_batch(&event_of_json(&json), &DecodeLimits::default()).unwrap();
    assert_eq!((report.parsed, flows.len()), (75_000, 75_000));
}

#[test]
fn malformed_records_are_counted_and_the_rest_kept() {
    let fields: String = (0..10_000).map(|i| format!("\"k{i}\":\"v\",")).collect();
    let wide = format!(
        "{{{fields}\"interface-id\":\"eni-x\",\"srcaddr\":\"10.0.0.1\",\"dstaddr\":\"10.0.0.2\",\"srcport\":\"1\",\"dstport\":\"80\",\"protocol\":\"6\",\"start\":\"1763942400\",\"end\":\"1763942460\",\"action\":\"ACCEPT\",\"log-status\":\"OK\"}}"
    );
    assert_eq!(with_good(&wide), vec![], "unknown keys are ignored");
    skipped_as(
        "2 1251762227 eni-1 10.0.0.1\u{0}10.0.0.2",
        SkipReason::FieldCount,
    );
    skipped_as(
        "2 1251762227 eni-1 10.0.0.\u{0}1 10.0.0.2 1 80 6 1 1 1763942400 1763942460 ACCEPT OK",
        SkipReason::BadAddress,
    );
    skipped_as(
        "2 1251762227 eni-1 10.0.0.1 10.0.0.2 1 70000 6 1 1 1763942400 1763942460 ACCEPT OK",
        SkipReason::BadNumber,
    );
    skipped_as(
        "2 1251762227 eni-1 10.0.0.1 10.0.0.2 1 80 300 1 1 1763942400 1763942460 ACCEPT OK",
        SkipReason::BadNumber,
    );
    skipped_as(
        "2 1251762227 eni-1 10.0.0.1 10.0.0.2 1 80 6 -5 1 1763942400 1763942460 ACCEPT OK",
        SkipReason::BadNumber,
    );
    skipped_as(
        "2 1251762227 eni-1 10.0.0.1 10.0.0.2 1 80 6 1 99999999999999999999999999999999999999999 1763942400 1763942460 ACCEPT OK",
        SkipReason::BadNumber,
    );
    skipped_as(
        "2 1251762227 eni-1 10.0.0.1 10.0.0.2 1 80 6 1 1 1763942460 1763942400 ACCEPT OK",
        SkipReason::BadNumber,
    );
    skipped_as("{\"srcaddr\": [1, 2]}", SkipReason::BadJson);
}

#[test]
fn mapped_addresses_and_timestamp_units_are_normalised() {
    let parse = |line: &str| {
        let event = event_of_json(&batch(&[line.to_string()]));
        parse_batch(&event, &DecodeLimits::default())
            .unwrap()
            .1
            .remove(0)
    };
    let mapped = parse(
        "2 1 eni-1 ::ffff:10.0.0.1 ::ffff:10.0.0.2 1 80 6 1 1 1763942400 1763942460 ACCEPT OK",
    );
    assert_eq!(mapped.src.to_string(), "10.0.0.1");
    assert!(mapped.src.is_ipv4() && mapped.dst.is_ipv4());
    for (start, end) in [
        ("1763942400", "1763942460"),
        ("1763942400000", "1763942460000"),
        ("1763942400000000", "1763942460000000"),
    ] {
        let flow = parse(&format!(
            "2 1 eni-1 10.0.0.1 10.0.0.2 1 80 6 1 1 {start} {end} ACCEPT OK"
        ));
        assert_eq!((flow.start, flow.end), (1763942400, 1763942460), "{start}");
    }
}

#[test]
fn invalid_utf8_in_one_record_loses_nothing_else() {
    let mut json = batch(&["BAD-HERE".to_string(), GOOD.to_string()]);
    let at = json.windows(8).position(|w| w == b"BAD-HERE").unwrap();
    json[at + 3] = 0xff;
    json[at + 4] = 0xfe;
    let (report, flows) = parse_batch(&event_of_json(&json), &DecodeLimits::default()).unwrap();
    assert_eq!(report.records_in, 2);
    assert_eq!(flows.len(), 1, "{report:?}");
    assert_eq!(report.skipped_total(), 1);
}

#[test]
fn duplicated_records_are_one_flow_and_an_all_bad_batch_is_a_report() {
    let engine = esgflow::core::engine::Engine::compile(
        &esgflow_local::testdata::synthetic::snapshot(10, 2, 1),
    )
    .unwrap();
    let event = event_of_json(&batch(&[
        GOOD.to_string(),
        GOOD.to_string(),
        GOOD.to_string(),
    ]));
    let (_, flows) = parse_batch(&event, &DecodeLimits::default()).unwrap();
    let stats =
        esgflow::core::classify::judge(&engine, flows, &esgflow::core::classify::Monitored::All)
            .stats;
    assert_eq!((stats.flows, stats.duplicates), (1, 2));

    let bad: Vec<String> = ["", "x", "{", "1 2 3", "{\"a\":1}"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (report, flows) =
        parse_batch(&event_of_json(&batch(&bad)), &DecodeLimits::default()).unwrap();
    assert!(flows.is_empty());
    assert_eq!(report.skipped_total(), 5, "{report:?}");
    assert!(!report.samples.is_empty());
}
