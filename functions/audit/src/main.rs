//! The audit function: CLS shipping event in, batch report out.

use esgflow::audit::{self, BatchReport};
use esgflow::config::AuditConfig;
use esgflow::events::ClsTriggerEvent;
use esgflow::runtime::{self, service_fn, Diagnostic, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    runtime::init_tracing();
    let config = match AuditConfig::from_env() {
        Ok(config) => config,
        Err(err) => fail_start(&err),
    };
    let config = &config;
    let handler = service_fn(move |event: LambdaEvent<ClsTriggerEvent>| async move {
        let (report, _flows) = audit::parse_batch(&event.payload, &config.decode_limits)?;
        tracing::info!(
            records_in = report.records_in,
            parsed = report.parsed,
            skipped = report.skipped_total(),
            "batch done"
        );
        Ok::<BatchReport, Diagnostic>(report)
    });
    if let Err(err) = runtime::run(handler).await {
        fail_start(err.as_ref());
    }
}

fn fail_start(err: &dyn std::fmt::Display) -> ! {
    eprintln!("esgflow-audit: {err}");
    std::process::exit(1);
}
