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

fn serve(request: &ApiGatewayRequest) {
    let harness = harness();
    let response = harness.runtime.block_on(harness.lookup.handle(
        request,
        "fuzz",
        Instant::now() + Duration::from_secs(5),
    ));
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
];
