//! Engine speed: indexed evaluation on the reference account (20,000 overlapping rules) and on
//! the older synthetic rule sets at 100, 1,000 and 10,000 rules against the naive linear
//! evaluator in the same run; compile time; the hygiene analysis. Prints evaluations per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use esgflow::core::engine::Engine;
use esgflow_local::testdata::{reference, synthetic};

/// The reference account's snapshot.
fn reference_snapshot() -> esgflow::core::snapshot::Snapshot {
    reference::snapshot(&reference::account(reference::RULES, 42))
        .expect("the reference account builds")
}

const VPCS: u64 = 64;
const FLOWS: usize = 4096;

fn evaluate(c: &mut Criterion) {
    esgflow_local::release::measure::Machine::announce("engine bench");
    let flows = synthetic::flows(FLOWS, VPCS, 7);
    let mut group = c.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(FLOWS as u64));
    let engine = Engine::compile(&reference_snapshot()).unwrap();
    let reference_flows = reference::flows(FLOWS, 7);
    group.bench_with_input(
        BenchmarkId::new("indexed", "reference-20000"),
        &engine,
        |b, engine| {
            b.iter(|| {
                reference_flows
                    .iter()
                    .map(|f| engine.evaluate(f).observed.len())
                    .sum::<usize>()
            })
        },
    );
    for rules in [100usize, 1_000, 10_000] {
        let engine = Engine::compile(&synthetic::snapshot(rules, VPCS, 42)).unwrap();
        group.bench_with_input(BenchmarkId::new("indexed", rules), &engine, |b, engine| {
            b.iter(|| {
                flows
                    .iter()
                    .map(|f| engine.evaluate(f).observed.len())
                    .sum::<usize>()
            })
        });
        if rules <= 1_000 || std::env::var_os("ESGFLOW_BENCH_LINEAR_10K").is_some() {
            group.bench_with_input(BenchmarkId::new("linear", rules), &engine, |b, engine| {
                b.iter(|| {
                    flows
                        .iter()
                        .map(|f| engine.evaluate_linear(f).observed.len())
                        .sum::<usize>()
                })
            });
        }
    }
    group.finish();
}

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    let snapshot = reference_snapshot();
    group.bench_with_input(
        BenchmarkId::from_parameter("reference-20000"),
        &snapshot,
        |b, s| b.iter(|| Engine::compile(s).unwrap()),
    );
    for rules in [1_000usize, 10_000] {
        let snapshot = synthetic::snapshot(rules, VPCS, 42);
        group.bench_with_input(BenchmarkId::from_parameter(rules), &snapshot, |b, s| {
            b.iter(|| Engine::compile(s).unwrap())
        });
    }
    group.finish();
}

/// The sync function's rule-hygiene pass (exact shadowing and redundancy of every rule).
fn hygiene(c: &mut Criterion) {
    let mut group = c.benchmark_group("hygiene");
    group.sample_size(10);
    let engine = Engine::compile(&reference_snapshot()).unwrap();
    group.bench_with_input(
        BenchmarkId::from_parameter("reference-20000"),
        &engine,
        |b, engine| b.iter(|| esgflow::core::engine::hygiene::analyze(engine).len()),
    );
    for rules in [1_000usize, 10_000, 20_000] {
        let engine = Engine::compile(&synthetic::snapshot(rules, 64, 42)).unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(rules), &engine, |b, engine| {
            b.iter(|| esgflow::core::engine::hygiene::analyze(engine).len())
        });
    }
    group.finish();
}

criterion_group!(benches, evaluate, compile, hygiene);
criterion_main!(benches);
