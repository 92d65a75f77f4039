//! The audit function: CLS shipping event in, ESG flow-log records out, batch summary back.

use esgflow::app::audit::{AuditFunction, InvocationSummary};
use esgflow::app::config::AuditConfig;
use esgflow::events::ClsTriggerEvent;
use esgflow::runtime::{self, service_fn, Diagnostic, LambdaEvent};

// The musl build's allocator: dlmalloc (the allocator glibc's descends from) instead of musl's
// mallocng, which hands memory back to the kernel as soon as it is free, so a function that
// builds and drops a batch's records every event faulted its pages in again each time: on
// 40,000 synthetic lines against 10,000 rules, 8,900 page faults against 24,100 and 1.08× the
// glibc build's time an event against 1.26×, every peak lower. The sync function keeps musl's
// malloc: it runs once a timer tick, and dlmalloc's kept memory raised its peak by 38–54 MB
// (docs/performance.md, "The musl build on the AVX-512 host").
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    runtime::init_tracing();
    let function = AuditConfig::from_env()
        .map_err(|e| e.to_string())
        .and_then(|config| AuditFunction::new(config).map_err(|e| e.to_string()))
        .unwrap_or_else(|err| fail_start(&err));
    function.warm_up().await;
    let function = &function;
    let handler = service_fn(move |event: LambdaEvent<ClsTriggerEvent>| async move {
        let summary = function
            .handle(&event.payload, event.context.deadline())
            .await?;
        tracing::info!(
            records_in = summary.batch.records_in,
            parsed = summary.batch.parsed,
            skipped = summary.batch.skipped_total(),
            flows = summary.judged.flows,
            written = summary.written.values().sum::<usize>(),
            snapshot = %summary.snapshot_version,
            "batch done"
        );
        Ok::<InvocationSummary, Diagnostic>(summary)
    });
    if let Err(err) = runtime::run(handler).await {
        fail_start(&err.to_string());
    }
}

fn fail_start(err: &str) -> ! {
    eprintln!("esgflow-audit: {err}");
    std::process::exit(1);
}
