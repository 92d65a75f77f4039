//! Entry points shared by the `cargo fuzz` targets (`fuzz/fuzz_targets/`) and the stable test
//! that replays every corpus file (`tests/fuzz_corpus.rs`), so what fuzzing found is
//! guarded by `make test`. Each takes arbitrary bytes and checks the invariants that must hold
//! for any input: no panic, bounded work (the decode caps), and for the HTTP entry points an
//! answer with a documented status and a JSON error body, never a 500.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use esgflow::app::lookup::{Auth, Lookup};
use esgflow::core::snapshot::values::{AddressSet, PortSet, Protocol, Service};
use esgflow::core::snapshot::{EndpointKind, RuleAction};
use esgflow::events::cls::decompress_data;
use esgflow::events::{ApiGatewayRequest, ClsTriggerEvent, DecodeLimits, DecodedBatch};

/// Caps small enough that a fuzzer's input can never make the decoder allocate much.
pub fn limits() -> DecodeLimits {
    DecodeLimits {
        max_encoded_bytes: 1 << 20,
        max_decoded_bytes: 4 << 20,
        max_records: 10_000,
    }
}

/// The CLS event decoder: the bytes as a whole trigger event, and as the base64 payload.
pub fn cls_event(data: &[u8]) {
    let limits = limits();
    if let Ok(event) = serde_json::from_slice::<ClsTriggerEvent>(data) {
        if let Ok((report, flows)) = esgflow::app::audit::parse_batch(&event, &limits) {
            assert!(report.parsed == flows.len());
            assert!(
                report.parsed + report.skipped_total() + report.nodata + report.skipdata
                    == report.records_in
            );
        }
    }
    if let Ok(decoded) = decompress_data(data, &limits) {
        assert!(decoded.len() <= limits.max_decoded_bytes);
        if let Ok(batch) = DecodedBatch::parse(&decoded, &limits) {
            assert!(batch.records.len() <= limits.max_records);
        }
    }
    // The decompressed JSON itself, and the fast path agreeing with the general one on it.
    if let Ok(batch) = DecodedBatch::parse(data, &limits) {
        assert!(batch.records.len() <= limits.max_records);
    }
    fast_path_agrees(data, &limits);
}

/// When the fast path of the batch parser takes a batch, it answers exactly what the general
/// path answers: the same report (counts, reasons, samples) and the same flows.
pub fn fast_path_agrees(decoded: &[u8], limits: &DecodeLimits) {
    if let Some(fast) = esgflow::app::audit::parse_scanned(decoded, limits) {
        let general = esgflow::app::audit::parse_general(decoded, limits)
            .expect("the general path decodes what the fast path takes");
        assert_eq!(fast, general);
    }
}

/// The flow-record parser, both forms (a JSON object, or the 14 fields), and its reading of a
/// content still escaped inside the batch, which must agree with it.
pub fn flow_record(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let embedded = format!(
            r#"{{"records":[{{"timestamp":"1","content":{}}}]}}"#,
            serde_json::to_string(text).expect("a string serializes")
        );
        fast_path_agrees(embedded.as_bytes(), &limits());
        if let Ok(esgflow::core::flowlog::Parsed::Flow(flow)) = esgflow::core::flowlog::parse(text)
        {
            if matches!(flow.protocol, 6 | 17) {
                assert!(flow.dst_port.is_some());
            }
        }
    }
}

/// The snapshot's value parsers: ports, protocols, addresses, services, kinds, actions.
pub fn snapshot_values(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ports) = PortSet::parse(text) {
        // What renders parses back to the same set.
        assert_eq!(PortSet::parse(&ports.render()).as_ref(), Ok(&ports));
    }
    if let Ok(set) = AddressSet::parse(text) {
        assert_eq!(AddressSet::parse(&set.render()).as_ref(), Ok(&set));
    }
    let _ = Protocol::parse(text);
    let _ = Service::parse(text);
    let _ = EndpointKind::parse(text);
    let _ = RuleAction::parse(text);
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    lookup: esgflow::app::lookup::App,
}

/// Token the fuzzing harness's lookup accepts.
pub const TOKEN: &str = "fuzz-token-0123456789";

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("esgflow-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("snapshot.json");
        crate::testdata::synthetic::snapshot(200, 8, 7)
            .save(&path)
            .expect("snapshot written");
        Harness {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            lookup: Lookup::new(
                Auth::Bearer(TOKEN.into()),
                64 * 1024,
                esgflow::app::snapshot_cache::SnapshotCache::new(&path, Duration::from_secs(3600)),
            )
            .app(),
        }
    })
}

/// The harness's answer to `request`: the lookup application over a 200-rule synthetic
/// snapshot, no records store, token [`TOKEN`], 64 KB body cap.
pub fn answer(request: &ApiGatewayRequest) -> esgflow::events::ApiGatewayResponse {
    let harness = harness();
    harness.runtime.block_on(harness.lookup.handle(
        request,
        "fuzz",
        Instant::now() + Duration::from_secs(5),
    ))
}

fn serve(request: &ApiGatewayRequest) {
    let response = answer(request);
    assert!(
        [200, 400, 401, 404, 405, 413, 503].contains(&response.status_code),
        "status {} for {request:?}: {}",
        response.status_code,
        response.body
    );
    if response.status_code != 200 {
        let body: serde_json::Value =
            serde_json::from_str(&response.body).expect("error bodies are JSON");
        assert!(body["error"]["code"].is_string());
    }
}

/// The API Gateway request parser of lookup, then routing with those bytes as the request.
pub fn apigw_request(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<ApiGatewayRequest>(data) {
        serve(&request);
    }
}

/// The explain request body, sent authenticated to `POST /v1/explain`.
pub fn explain_body(data: &[u8]) {
    let body = String::from_utf8_lossy(data).into_owned();
    let request: ApiGatewayRequest = serde_json::from_value(serde_json::json!({
        "httpMethod": "POST", "path": "/v1/explain",
        "headers": {"authorization": format!("Bearer {TOKEN}")},
        "body": body,
    }))
    .expect("a well-formed request");
    serve(&request);
}

/// The bundled sample's engine, compiled once.
fn sample_engine() -> &'static esgflow::core::engine::Engine {
    static ENGINE: OnceLock<esgflow::core::engine::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let snapshot = esgflow::core::snapshot::Snapshot::from_json(
            include_str!("../../samples/snapshot.json").as_bytes(),
        )
        .expect("the sample snapshot loads");
        esgflow::core::engine::Engine::compile(&snapshot).expect("the sample compiles")
    })
}

/// The audit step after parsing: flow-log lines (one per input line) judged against the
/// sample snapshot. Whatever the flows, `judge` does not panic, every flow is accounted for
/// once, and every record is consistent: a block hit names a drop rule, traffic counts its
/// records as requests plus replies.
pub fn judge(data: &[u8]) {
    use esgflow::core::classify::{judge, Monitored};
    use esgflow::core::flowlog::{parse, Parsed};
    use esgflow::core::records::{Record, RecordType};
    let text = String::from_utf8_lossy(data);
    let flows: Vec<_> = text
        .lines()
        .filter_map(|line| match parse(line) {
            Ok(Parsed::Flow(flow)) => Some(flow),
            _ => None,
        })
        .collect();
    let parsed = flows.len();
    let judged = judge(sample_engine(), flows, &Monitored::All);
    let stats = &judged.stats;
    assert_eq!(stats.flows + stats.duplicates, parsed, "{stats:?}");
    assert!(
        stats.replies + stats.unmonitored <= stats.flows,
        "{stats:?}"
    );
    for record in &judged.records {
        match record {
            Record::Hit(hit) if hit.record_type == RecordType::BlockHit => {
                let rule = hit.rule.as_ref().expect("a block hit names its rule");
                assert_eq!(rule.rule_action, RuleAction::Drop, "{hit:?}");
            }
            Record::Traffic(traffic) => {
                assert_eq!(
                    traffic.requests.saturating_add(traffic.replies),
                    traffic.flows,
                    "{traffic:?}"
                );
                assert!(traffic.connections <= traffic.flows, "{traffic:?}");
            }
            _ => {}
        }
    }
}

/// The audit function's whole path on one batch, short of the network: decode → parse → judge
/// → encode. The bytes are read as a CLS trigger event (decompressed and parsed), else as the
/// decompressed batch, else as flow-log lines put into a batch; the flows are judged against the
/// sample snapshot and the records encoded into CLS upload bodies. Every body must decode back
/// (LZ4, then protobuf) into exactly the records judged, in order, field by field (a value cut
/// at CLS's 1 MB limit is a prefix, and named in the truncated-fields field).
pub fn audit(data: &[u8]) {
    use esgflow::adapters::tencent::cls::{encode_bodies, LogGroupList};
    use esgflow::app::audit::{parse_batch, parse_general, parse_scanned};
    use esgflow::core::classify::{judge, Monitored};
    use prost::Message;
    let limits = limits();
    let parsed = if let Ok(event) = serde_json::from_slice::<ClsTriggerEvent>(data) {
        parse_batch(&event, &limits).ok()
    } else if data.trim_ascii_start().starts_with(b"{") {
        parse_scanned(data, &limits).or_else(|| parse_general(data, &limits).ok())
    } else {
        let records: Vec<serde_json::Value> = String::from_utf8_lossy(data)
            .lines()
            .map(|line| serde_json::json!({"timestamp": "1763942400", "content": line}))
            .collect();
        let batch = serde_json::json!({ "records": records }).to_string();
        parse_general(batch.as_bytes(), &limits).ok()
    };
    let Some((report, flows)) = parsed else {
        return;
    };
    assert_eq!(report.parsed, flows.len());
    let judged = judge(sample_engine(), flows, &Monitored::All);
    let records: Vec<_> = judged.records.iter().collect();
    let bodies = encode_bodies(&records);
    let mut logs = Vec::new();
    for (count, body) in &bodies.bodies {
        // LZ4 expands at most 255-fold: a small body needs no 6 MB buffer.
        let bound = (body.len() * 255 + 64).min(6_100_000);
        let raw = lz4_flex::block::decompress(body, bound).expect("a body decompresses");
        let list = LogGroupList::decode(raw.as_slice()).expect("a body is a LogGroupList");
        assert_eq!(list.log_group_list.len(), 1, "one group a body");
        assert_eq!(list.log_group_list[0].logs.len(), *count);
        logs.extend(list.log_group_list.into_iter().flat_map(|group| group.logs));
    }
    assert_eq!(logs.len(), records.len(), "every record is encoded once");
    for (record, log) in records.iter().zip(&logs) {
        assert_eq!(log.time, record.time() as i64 * 1000);
        let mut expected = Vec::new();
        record.visit(|key, value| expected.push((key, value.to_string())));
        let (truncated, contents): (Vec<_>, Vec<_>) = log
            .contents
            .iter()
            .partition(|c| c.key == esgflow::adapters::tencent::cls::TRUNCATED_FIELDS);
        assert_eq!(contents.len(), expected.len(), "{record:?}");
        for ((key, value), content) in expected.iter().zip(contents) {
            assert_eq!(content.key, *key);
            if content.value != *value {
                assert!(value.starts_with(&content.value), "{key} changed");
                assert!(
                    truncated
                        .iter()
                        .any(|t| t.value.split(',').any(|k| k == *key)),
                    "{key} cut without being named"
                );
            }
        }
    }
}

/// A fuzzing entry point.
pub type Entry = fn(&[u8]);

/// Every entry point by the name of its fuzz target.
pub const TARGETS: &[(&str, Entry)] = &[
    ("cls_event", cls_event),
    ("flow_record", flow_record),
    ("snapshot_values", snapshot_values),
    ("apigw_request", apigw_request),
    ("explain_body", explain_body),
    ("judge", judge),
    ("audit", audit),
];
