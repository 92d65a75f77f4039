//! The lookup function: API Gateway / Function URL request in, through the lookup application
//! (`esgflow::app::lookup::router`), integration response out.

use esgflow::app::config::LookupConfig;
use esgflow::app::lookup::Lookup;
use esgflow::events::{ApiGatewayRequest, ApiGatewayResponse};
use esgflow::runtime::{self, service_fn, Diagnostic, LambdaEvent};

// The musl build's allocator, as the audit function's (its `main.rs` has why).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    runtime::init_tracing();
    let config = LookupConfig::from_env().unwrap_or_else(|err| fail_start(&err.to_string()));
    let mut lookup = Lookup::new(
        config.auth,
        config.max_body_bytes,
        config.snapshot.cache(config.snapshot_ttl),
    )
    .with_monitoring(config.monitored, config.admin_token, config.snapshot_ttl);
    if let Some(records) = config.records {
        let store = records
            .open()
            .unwrap_or_else(|err| fail_start(&format!("ESGFLOW_RECORDS_DB: {err}")));
        lookup = lookup.with_store(store);
    }
    lookup.warm_up().await;
    let app = lookup.app();
    let app = &app;
    let handler = service_fn(move |event: LambdaEvent<ApiGatewayRequest>| async move {
        let response = app
            .handle(
                &event.payload,
                &event.context.request_id,
                event.context.deadline(),
            )
            .await;
        tracing::info!(method = %event.payload.http_method, path = %event.payload.path, status = response.status_code, "request served");
        Ok::<ApiGatewayResponse, Diagnostic>(response)
    });
    if let Err(err) = runtime::run(handler).await {
        fail_start(&err.to_string());
    }
}

fn fail_start(err: &str) -> ! {
    eprintln!("esgflow-lookup: {err}");
    std::process::exit(1);
}
