//! The audit pipeline on one maximum-size CLS event (the records one 128 KB gzip+base64 event
//! holds), next to the floor measured in the same run: base64 + gunzip + serde_json over the
//! envelope and over every record's content JSON. Twice: the reference account's flows against
//! its 20,000 rules (`reference_max_event_*`), and synthetic flows against a 1,000-rule snapshot
//! (`max_event_*`, the figures the docs have followed over time).

use std::io::Write;

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use esgflow::adapters::tencent::cls::encode_bodies;
use esgflow::app::audit::parse_batch;
use esgflow::core::classify::{judge, Monitored};
use esgflow::core::engine::Engine;
use esgflow::events::{ClsTriggerEvent, DecodeLimits};
use esgflow_local::testdata::{reference, synthetic};

const MAX_EVENT_BYTES: usize = 128 * 1024;

/// The batch JSON as a plain serde reading sees it.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    records: Vec<EnvelopeRecord<'a>>,
}

#[derive(serde::Deserialize)]
struct EnvelopeRecord<'a> {
    #[serde(borrow, rename = "timestamp")]
    _timestamp: &'a str,
    #[serde(borrow)]
    content: std::borrow::Cow<'a, str>,
}

fn content(i: usize, flow: &esgflow::core::engine::FlowKey, rng: &mut synthetic::Rng) -> String {
    let action = if rng.chance(30) { "REJECT" } else { "ACCEPT" };
    let port = flow
        .dst_port
        .map(|p| p.to_string())
        .unwrap_or_else(|| "0".into());
    serde_json::json!({
        "version": "2", "account-id": "1251762227", "interface-id": format!("eni-{:08x}", i % 500),
        "srcaddr": flow.src.to_string(), "dstaddr": flow.dst.to_string(), "srcport": (32768 + rng.below(28000)).to_string(),
        "dstport": port, "protocol": flow.protocol.to_string(), "packets": (1 + rng.below(50)).to_string(),
        "bytes": (60 + rng.below(60000)).to_string(), "start": "1763942400", "end": "1763942460",
        "action": action, "log-status": "OK"
    })
    .to_string()
}

fn event_of(contents: &[String]) -> String {
    let records: Vec<_> = contents.iter().enumerate().map(|(i, c)| serde_json::json!({"timestamp": (1_763_942_460_000_000u64 + i as u64).to_string(), "content": c})).collect();
    let batch =
        serde_json::json!({"topic_id": "bench", "topic_name": "flowlog", "records": records});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(batch.to_string().as_bytes()).unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    serde_json::json!({"clslogs": {"data": data}}).to_string()
}

/// The largest event of synthetic flow records that fits in 128 KB.
fn max_event() -> (ClsTriggerEvent, usize) {
    let flows = synthetic::flows(40_000, 64, 11);
    let mut rng = synthetic::Rng::new(5);
    let contents: Vec<String> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| content(i, f, &mut rng))
        .collect();
    largest_event(&contents)
}

/// The largest event of the reference account's flow-log lines that fits in 128 KB.
fn reference_max_event() -> (ClsTriggerEvent, usize) {
    let contents: Vec<String> = reference::flow_lines(40_000, 7, 1_767_225_600)
        .iter()
        .map(|line| {
            let fields: serde_json::Map<String, serde_json::Value> = esgflow::core::flowlog::FIELDS
                .iter()
                .zip(line.split(' '))
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect();
            serde_json::Value::Object(fields).to_string()
        })
        .collect();
    largest_event(&contents)
}

/// The event of the most of `contents` that fits in 128 KB, and how many it holds.
fn largest_event(contents: &[String]) -> (ClsTriggerEvent, usize) {
    let (mut lo, mut hi) = (1, contents.len());
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if event_of(&contents[..mid]).len() <= MAX_EVENT_BYTES {
            lo = mid
        } else {
            hi = mid
        }
    }
    (
        serde_json::from_str(&event_of(&contents[..lo])).unwrap(),
        lo,
    )
}

fn pipeline(c: &mut Criterion) {
    esgflow_local::release::measure::Machine::announce("pipeline bench");
    let reference_engine =
        Engine::compile(&reference::snapshot(&reference::account(reference::RULES, 42)).unwrap())
            .unwrap();
    let (event, records) = reference_max_event();
    measure(
        c,
        &format!("reference_max_event_{records}_records"),
        &event,
        records,
        &reference_engine,
    );
    let (event, records) = max_event();
    let engine = Engine::compile(&synthetic::snapshot(1_000, 64, 42)).unwrap();
    measure(
        c,
        &format!("max_event_{records}_records"),
        &event,
        records,
        &engine,
    );
}

/// The floor, the pipeline and its stages on one event.
fn measure(
    c: &mut Criterion,
    name: &str,
    event: &ClsTriggerEvent,
    records: usize,
    engine: &Engine,
) {
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(records as u64));
    // The floor: what any audit function must do before judging anything, done the plain way:
    // base64 and gunzip (the same decoder the pipeline uses), then serde_json over the envelope
    // (each content unescaped into its own string) and over every content.
    group.bench_function("floor", |b| {
        b.iter(|| {
            let decoded = event.decompress(&limits).unwrap();
            let batch: Envelope = serde_json::from_slice(&decoded).unwrap();
            batch
                .records
                .iter()
                .filter(|r| serde_json::from_str::<serde::de::IgnoredAny>(&r.content).is_ok())
                .count()
        })
    });
    group.bench_function("pipeline", |b| {
        b.iter(|| {
            let (_, flows) = parse_batch(event, &limits).unwrap();
            let records = judge(engine, flows, &Monitored::All).records;
            encode_bodies(&records.iter().collect::<Vec<_>>())
                .bodies
                .into_iter()
                .map(|(_, b)| b.len())
                .sum::<usize>()
        })
    });
    // The stages on their own, so the closing note can say where the time goes.
    let (_, parsed) = parse_batch(event, &limits).unwrap();
    let judged = judge(engine, parsed.clone(), &Monitored::All).records;
    let judged: Vec<_> = judged.iter().collect();
    let bodies = encode_bodies(&judged).bodies;
    eprintln!(
        "{records} flow records -> {} ESG flow-log records; {} lz4 bodies, {} bytes",
        judged.len(),
        bodies.len(),
        bodies.iter().map(|(_, b)| b.len()).sum::<usize>()
    );
    group.bench_function("stage_decode_parse", |b| {
        b.iter(|| parse_batch(event, &limits).unwrap().1.len())
    });
    group.bench_function("stage_judge", |b| {
        b.iter(|| judge(engine, parsed.clone(), &Monitored::All).records.len())
    });
    group.bench_function("stage_encode", |b| {
        b.iter(|| encode_bodies(&judged).bodies.len())
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
