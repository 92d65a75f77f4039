//! Logging setup shared by every function: `tracing` events, one line each, on stdout (SCF puts
//! stdout into the invocation log), with the `invocation{request_id=…}` span on every line.
//!
//! One event is always one line: in the text format a line break inside a value (a request
//! path, an error message quoting input) is written as `\n`, so no input can forge a log line.

use std::borrow::Cow;
use std::io::Write;

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. The filter comes from `RUST_LOG` (default `info`); the line
/// format from `ESGFLOW_LOG_FORMAT`: `text` (default) or `json` (one JSON object per line, which
/// CLS indexes field by field). Calling it twice is harmless.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("ESGFLOW_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(|| OneLine)
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

/// Stdout, one event per line: the formatter hands each event over in one write.
struct OneLine;

impl Write for OneLine {
    fn write(&mut self, event: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write_all(&one_line(event))?;
        Ok(event.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

/// `event` with every line break but a final one written as `\n` (`\r` as `\r`).
fn one_line(event: &[u8]) -> Cow<'_, [u8]> {
    let body = event.strip_suffix(b"\n").unwrap_or(event);
    if !body.iter().any(|b| matches!(b, b'\n' | b'\r')) {
        return Cow::Borrowed(event);
    }
    let mut out = Vec::with_capacity(event.len() + 16);
    for &byte in body {
        match byte {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            other => out.push(other),
        }
    }
    if body.len() < event.len() {
        out.push(b'\n');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_line_break_inside_an_event_cannot_start_a_line() {
        assert_eq!(&*one_line(b"plain event\n"), b"plain event\n");
        assert_eq!(
            &*one_line(b"INFO request served path=/v1/x\nERROR forged\r\n"),
            b"INFO request served path=/v1/x\\nERROR forged\\r\n"
        );
        assert_eq!(&*one_line(b"no newline at all"), b"no newline at all");
        assert_eq!(&*one_line(b"a\nb"), b"a\\nb");
    }
}
