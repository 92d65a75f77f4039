//! The sync function (timer trigger). Building and publishing rule snapshots from the live APIs
//! is not implemented yet; today it validates the timer event and reports that it fired.

use esgflow::events::TimerEvent;
use esgflow::runtime::{self, service_fn, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    runtime::init_tracing();
    let handler = service_fn(|event: LambdaEvent<TimerEvent>| async move {
        tracing::info!(trigger = %event.payload.trigger_name, time = %event.payload.time, "timer fired");
        Ok::<Value, Diagnostic>(
            json!({"trigger": event.payload.trigger_name, "fired_at": event.payload.time}),
        )
    });
    if let Err(err) = runtime::run(handler).await {
        eprintln!("esgflow-sync: {err}");
        std::process::exit(1);
    }
}
