//! `/v1/explain` handler time in a warm instance: one flow against the reference account's
//! 20,000 rules and against a 10,000-rule synthetic snapshot, through `Lookup::handle` (routing,
//! auth, JSON in and out, the explanation); and `/v1/rules/{uuid}` with its exact shadowing
//! analysis.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use esgflow::app::lookup::{Auth, Lookup};
use esgflow::app::snapshot_cache::SnapshotCache;
use esgflow::events::ApiGatewayRequest;
use esgflow_local::testdata::{reference, synthetic};

fn explain(c: &mut Criterion) {
    esgflow_local::release::measure::Machine::announce("lookup bench");
    let dir = std::env::temp_dir().join(format!("esgflow-bench-lookup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("reference.json");
    reference::snapshot(&reference::account(reference::RULES, 42))
        .unwrap()
        .save(&path)
        .unwrap();
    on_snapshot(c, "reference_20000_rules", &path);
    let path = dir.join("synthetic.json");
    synthetic::snapshot(10_000, 64, 42).save(&path).unwrap();
    on_snapshot(c, "10000_rules", &path);
    std::fs::remove_dir_all(dir).ok();
}

/// The explain and rule-detail groups on one snapshot file.
fn on_snapshot(c: &mut Criterion, label: &str, path: &std::path::Path) {
    let token = "bench-token-0123456789";
    let lookup = Lookup::new(
        Auth::Bearer(token.into()),
        1 << 20,
        SnapshotCache::new(path, Duration::from_secs(3600)),
    )
    .app();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group(format!("explain_{label}"));
    for (name, body) in [
        (
            "early_match",
            r#"{"src":"10.1.2.3","dst":"10.2.3.4","protocol":"tcp","port":443}"#,
        ),
        (
            "no_match",
            r#"{"src":"203.0.113.9","dst":"198.51.100.7","protocol":"udp","port":9999}"#,
        ),
    ] {
        let request: ApiGatewayRequest = serde_json::from_value(serde_json::json!({
            "httpMethod": "POST", "path": "/v1/explain", "headers": {"authorization": format!("Bearer {token}")}, "body": body
        }))
        .unwrap();
        // Warm: the snapshot is loaded and compiled once, as in a warm instance.
        let warm = runtime.block_on(lookup.handle(
            &request,
            "warm",
            Instant::now() + Duration::from_secs(5),
        ));
        assert_eq!(warm.status_code, 200, "{}", warm.body);
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime
                    .block_on(lookup.handle(
                        &request,
                        "bench",
                        Instant::now() + Duration::from_secs(5),
                    ))
                    .body
                    .len()
            })
        });
    }
    group.finish();
    // `/v1/rules/{uuid}` computes the rule's shadowing exactly; the last rule of the snapshot is
    // the costliest (every earlier rule may cover it). No hits topic: CLS is not timed here.
    let snapshot = esgflow::core::snapshot::Snapshot::load(path).unwrap();
    let mut group = c.benchmark_group(format!("rule_detail_{label}"));
    for (name, uuid) in [
        ("first_rule", &snapshot.rules[0].uuid),
        ("last_rule", &snapshot.rules[snapshot.rules.len() - 1].uuid),
    ] {
        let request: ApiGatewayRequest = serde_json::from_value(serde_json::json!({
            "httpMethod": "GET", "path": format!("/v1/rules/{uuid}"), "headers": {"authorization": format!("Bearer {token}")}
        }))
        .unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let answer = runtime.block_on(lookup.handle(
                    &request,
                    "bench",
                    Instant::now() + Duration::from_secs(5),
                ));
                assert_eq!(answer.status_code, 200);
                answer.body.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, explain);
criterion_main!(benches);
