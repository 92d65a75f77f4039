//! The wire form of a failed invocation: `{"errorType","errorMessage"}` (the `lambda_runtime`
//! shape; SCF documents no schema, so the body is free-form to the platform and structured for
//! people and tools reading the invocation log).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An invocation failure as posted to `/runtime/invocation/error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    /// A short machine-readable class, e.g. `InvalidEvent`, `Panic`, `SnapshotUnavailable`.
    pub error_type: String,
    /// The human-readable message, with the chain of causes.
    pub error_message: String,
}

impl Diagnostic {
    /// A diagnostic of the given type and message.
    pub fn new(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            error_message: error_message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

impl std::error::Error for Diagnostic {}

/// Renders an error and its sources as `outer: inner: innermost`.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

impl From<super::Error> for Diagnostic {
    fn from(err: super::Error) -> Self {
        match err.downcast::<Diagnostic>() {
            Ok(diagnostic) => *diagnostic,
            Err(err) => Diagnostic::new("HandlerError", error_chain(err.as_ref())),
        }
    }
}

impl From<String> for Diagnostic {
    fn from(message: String) -> Self {
        Diagnostic::new("HandlerError", message)
    }
}

impl From<&str> for Diagnostic {
    fn from(message: &str) -> Self {
        Diagnostic::new("HandlerError", message)
    }
}

impl From<std::io::Error> for Diagnostic {
    fn from(err: std::io::Error) -> Self {
        Diagnostic::new("IoError", err.to_string())
    }
}

impl From<std::convert::Infallible> for Diagnostic {
    fn from(err: std::convert::Infallible) -> Self {
        match err {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_camel_case() {
        let json = serde_json::to_string(&Diagnostic::new("Panic", "boom")).unwrap();
        assert_eq!(json, r#"{"errorType":"Panic","errorMessage":"boom"}"#);
    }

    #[test]
    fn boxed_diagnostic_keeps_its_type() {
        let boxed: super::super::Error = Box::new(Diagnostic::new("SnapshotUnavailable", "gone"));
        assert_eq!(Diagnostic::from(boxed).error_type, "SnapshotUnavailable");
    }

    #[test]
    fn boxed_error_keeps_its_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("writing to topic t-1")]
        struct Outer(#[source] std::io::Error);
        let boxed: super::super::Error = Box::new(Outer(std::io::Error::other("connection reset")));
        let diagnostic = Diagnostic::from(boxed);
        assert_eq!(diagnostic.error_type, "HandlerError");
        assert_eq!(
            diagnostic.error_message,
            "writing to topic t-1: connection reset"
        );
    }
}
