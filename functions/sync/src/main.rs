//! The sync function (timer trigger): builds the rule snapshot from the live Cloud Firewall and
//! VPC APIs, publishes it when it changed, and writes rule changes and rule hygiene findings.

use esgflow::app::config::SyncConfig;
use esgflow::app::sync::{SyncFunction, SyncSummary};
use esgflow::events::TimerEvent;
use esgflow::runtime::{self, service_fn, Diagnostic, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    runtime::init_tracing();
    let function = SyncConfig::from_env()
        .map_err(|e| e.to_string())
        .and_then(SyncFunction::new)
        .unwrap_or_else(|err| fail_start(&err));
    let function = &function;
    let handler = service_fn(move |event: LambdaEvent<TimerEvent>| async move {
        tracing::info!(trigger = %event.payload.trigger_name, time = %event.payload.time, "timer fired");
        let summary = function
            .run(event.context.deadline(), event.context.memory_limit_mb)
            .await?;
        tracing::info!(
            version = %summary.snapshot_version,
            previous = %summary.previous_version,
            published = summary.published,
            rules = summary.rules,
            "sync done"
        );
        Ok::<SyncSummary, Diagnostic>(summary)
    });
    if let Err(err) = runtime::run(handler).await {
        fail_start(&err.to_string());
    }
}

fn fail_start(err: &str) -> ! {
    eprintln!("esgflow-sync: {err}");
    std::process::exit(1);
}
