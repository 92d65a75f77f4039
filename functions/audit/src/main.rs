//! The audit function: CLS shipping event in, ESG flow-log records out, batch summary back.

use esgflow::app::audit::{AuditFunction, InvocationSummary};
use esgflow::app::config::AuditConfig;
use esgflow::events::ClsTriggerEvent;
use esgflow::runtime::{self, service_fn, Diagnostic, LambdaEvent};

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
