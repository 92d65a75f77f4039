//! Logging setup shared by every function: `tracing` events, one line each, on stdout (SCF puts
//! stdout into the invocation log), with the `invocation{request_id=…}` span on every line.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. The filter comes from `RUST_LOG` (default `info`); the line
/// format from `ESGFLOW_LOG_FORMAT`: `text` (default) or `json` (one JSON object per line, which
/// CLS indexes field by field). Calling it twice is harmless.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("ESGFLOW_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .with_target(false);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}
