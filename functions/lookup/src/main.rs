//! The lookup function: API Gateway / Function URL request in, integration response out.

use esgflow::events::{ApiGatewayRequest, ApiGatewayResponse};
use esgflow::runtime::{self, service_fn, Diagnostic, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    runtime::init_tracing();
    let handler = service_fn(|event: LambdaEvent<ApiGatewayRequest>| async move {
        let response = esgflow::lookup::handle(&event.payload, &event.context.request_id);
        tracing::info!(method = %event.payload.http_method, path = %event.payload.path, status = response.status_code, "request served");
        Ok::<ApiGatewayResponse, Diagnostic>(response)
    });
    if let Err(err) = runtime::run(handler).await {
        eprintln!("esgflow-lookup: {err}");
        std::process::exit(1);
    }
}
