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

// The corpus in `fixtures/hostile/`: one file per surface, one case per line, each with the
// outcome it must have. Long inputs are written once with an `@@` marker and an `expand` of
// `{"unit", "times"}` (a `{i}` in the unit counts up), so the files stay small.

fn corpus(file: &str) -> Vec<serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hostile")
        .join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{file}: {err}: {line}"))
        })
        .collect()
}

/// `text` with its `@@` marker replaced as `expand` says.
fn expanded(text: &str, expand: &serde_json::Value) -> String {
    let Some(unit) = expand["unit"].as_str() else {
        return text.to_string();
    };
    let times = expand["times"].as_u64().expect("expand.times") as usize;
    let filler: String = if unit.contains("{i}") {
        (0..times)
            .map(|i| unit.replace("{i}", &i.to_string()))
            .collect()
    } else {
        unit.repeat(times)
    };
    text.replacen("@@", &filler, 1)
}

const CORPUS: [&str; 4] = [
    "records.jsonl",
    "events.jsonl",
    "requests.jsonl",
    "snapshots.jsonl",
];

#[test]
fn the_hostile_corpus_holds_at_least_100_cases_with_unique_names() {
    let mut names = std::collections::BTreeSet::new();
    for file in CORPUS {
        for case in corpus(file) {
            let name = case["name"].as_str().expect("every case is named");
            assert!(
                names.insert(format!("{file}: {name}")),
                "{file}: {name} twice"
            );
        }
    }
    assert!(names.len() >= 100, "{} cases", names.len());
}

/// Each hostile record next to a good one: skipped and counted under its reason (or kept, or
/// counted as NODATA/SKIPDATA), the good record kept; then the batch goes the whole audit path
/// (judge, encode, decode the bodies back) with the fuzz target's checks.
#[test]
fn hostile_records_are_counted_and_the_good_record_kept() {
    let cases = corpus("records.jsonl");
    assert!(cases.len() >= 50, "{}", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let content = expanded(case["content"].as_str().unwrap(), &case["expand"]);
        let json = batch(&[content, GOOD.to_string()]);
        let (report, flows) = parse_batch(&event_of_json(&json), &DecodeLimits::default())
            .unwrap_or_else(|err| panic!("{name}: the batch failed: {err}"));
        assert_eq!(report.records_in, 2, "{name}");
        assert!(
            flows
                .iter()
                .any(|f| f.eni == "eni-web00001" && f.dst_port == Some(3306)),
            "{name}: the good record was lost: {report:?}"
        );
        let skipped: Vec<(String, usize)> = report
            .skipped
            .iter()
            .map(|(reason, n)| (reason.to_string(), *n))
            .collect();
        let outcome = match case["expect"].as_str().unwrap() {
            "kept" => {
                (
                    flows.len(),
                    report.nodata + report.skipdata,
                    skipped.clone(),
                ) == (2, 0, vec![])
            }
            "nodata" => (flows.len(), report.nodata, skipped.is_empty()) == (1, 1, true),
            "skipdata" => (flows.len(), report.skipdata, skipped.is_empty()) == (1, 1, true),
            reason => flows.len() == 1 && skipped == vec![(reason.to_string(), 1)],
        };
        assert!(
            outcome,
            "{name}: expected {}, got {} flows, {report:?}",
            case["expect"],
            flows.len()
        );
        if !skipped.is_empty() {
            // The skip is reported with a sample naming what was wrong.
            assert!(!report.samples.is_empty(), "{name}: no sample");
        }
        esgflow_local::testdata::fuzzing::audit(&json);
    }
}

/// The bytes of an event's `data`, or the whole event, as a case's `payload` describes it.
fn hostile_event(payload: &serde_json::Value) -> Result<ClsTriggerEvent, String> {
    let text = |key: &str| expanded(payload[key].as_str().unwrap(), &payload["expand"]);
    if payload["event"].is_string() {
        // As the runtime reads an event: naming the path of the field that does not fit.
        return esgflow::runtime::deserialize_event(text("event").as_bytes())
            .map_err(|diagnostic| diagnostic.error_message);
    }
    if let Some(data) = payload["base64"].as_str() {
        return serde_json::from_value(json!({"clslogs": {"data": data}}))
            .map_err(|err| err.to_string());
    }
    let compressed = if payload["gzip"].is_string() {
        gzip(text("gzip").as_bytes())
    } else if payload["gzip_cut"].is_string() {
        let whole = gzip(text("gzip_cut").as_bytes());
        whole[..whole.len() / 2].to_vec()
    } else if payload["zlib"].is_string() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(text("zlib").as_bytes()).unwrap();
        z.finish().unwrap()
    } else {
        text("raw").into_bytes()
    };
    Ok(event_of_payload(&compressed))
}

/// Each hostile event: refused as a whole with an error naming what was wrong (the platform
/// retries the batch), or, when only some records are bad, those counted and the good ones kept.
/// The caps bound the work: a bomb is refused by size, a huge array at the record cap.
#[test]
fn hostile_events_fail_clearly_or_keep_their_good_records() {
    let cases = corpus("events.jsonl");
    assert!(cases.len() >= 15, "{}", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut limits = DecodeLimits::default();
        if let Some(records) = case["limits"]["max_records"].as_u64() {
            limits.max_records = records as usize;
        }
        let outcome = hostile_event(&case["payload"])
            .and_then(|event| parse_batch(&event, &limits).map_err(|err| err.to_string()));
        match (case["error"].as_str(), outcome) {
            (Some(expected), Err(error)) => {
                assert!(
                    error.contains(expected),
                    "{name}: {error:?} does not say {expected:?}"
                )
            }
            (Some(expected), Ok((report, _))) => {
                panic!("{name}: accepted ({report:?}), expected an error saying {expected:?}")
            }
            (None, Err(error)) => panic!("{name}: refused: {error}"),
            (None, Ok((report, flows))) => {
                assert_eq!(
                    flows.len() as u64,
                    case["kept"].as_u64().unwrap(),
                    "{name}: {report:?}"
                );
                let skipped: std::collections::BTreeMap<String, u64> = report
                    .skipped
                    .iter()
                    .map(|(reason, n)| (reason.to_string(), *n as u64))
                    .collect();
                let expected: std::collections::BTreeMap<String, u64> =
                    serde_json::from_value(case["skipped"].clone()).unwrap();
                assert_eq!(skipped, expected, "{name}");
            }
        }
    }
}

/// Each hostile request to the lookup application: the documented status with a JSON error
/// body naming a code, never a 500 and never an answer the token did not open.
#[test]
fn hostile_requests_get_a_documented_refusal() {
    let cases = corpus("requests.jsonl");
    assert!(cases.len() >= 30, "{}", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let path = expanded(case["path"].as_str().unwrap(), &case["expand"]);
        let mut headers = case["headers"].clone();
        if let Some(map) = headers.as_object_mut() {
            for value in map.values_mut() {
                *value = json!(expanded(value.as_str().unwrap(), &case["expand"]));
            }
        }
        let body = case["body"]
            .as_str()
            .map(|body| expanded(body, &case["expand"]));
        let request: esgflow::events::ApiGatewayRequest = serde_json::from_value(json!({
            "httpMethod": case["method"], "path": path, "headers": headers,
            "queryString": case.get("query").cloned().unwrap_or(json!({})),
            "body": body, "isBase64Encoded": case["isBase64Encoded"].as_bool().unwrap_or(false),
        }))
        .unwrap();
        let response = esgflow_local::testdata::fuzzing::answer(&request);
        assert_eq!(
            u64::from(response.status_code),
            case["status"].as_u64().unwrap(),
            "{name}: {}",
            response.body
        );
        let body: serde_json::Value = serde_json::from_str(&response.body)
            .unwrap_or_else(|_| panic!("{name}: not JSON: {}", response.body));
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {body}"));
        if let Some(expected) = case["code"].as_str() {
            assert_eq!(code, expected, "{name}");
        }
    }
}

/// Each damaged or altered snapshot: refused on load with an error naming the fault (a rule
/// changed under the genuine version included).
#[test]
fn hostile_snapshots_are_refused_naming_the_fault() {
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/snapshot.json"),
    )
    .unwrap();
    esgflow::core::snapshot::Snapshot::from_json(sample.as_bytes()).expect("the sample loads");
    let cases = corpus("snapshots.jsonl");
    assert!(cases.len() >= 10, "{}", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let bytes = if let Some(raw) = case["raw"].as_str() {
            raw.to_string()
        } else if let Some(cut) = case["cut"].as_u64() {
            sample[..cut as usize].to_string()
        } else {
            let mut document: serde_json::Value = serde_json::from_str(&sample).unwrap();
            for (pointer, value) in case["set"].as_object().into_iter().flatten() {
                *document
                    .pointer_mut(pointer)
                    .unwrap_or_else(|| panic!("{name}: {pointer}")) = value.clone();
            }
            if let Some(pointer) = case["remove"].as_str() {
                let (parent, key) = pointer.rsplit_once('/').unwrap();
                document
                    .pointer_mut(parent)
                    .and_then(|p| p.as_object_mut())
                    .and_then(|p| p.remove(key))
                    .unwrap_or_else(|| panic!("{name}: {pointer}"));
            }
            document.to_string()
        };
        let error = esgflow::core::snapshot::Snapshot::from_json(bytes.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        let expected = case["error"].as_str().unwrap();
        assert!(
            error.contains(expected),
            "{name}: {error:?} does not say {expected:?}"
        );
    }
}
