//! The invocation context: what SCF tells a Custom Runtime about one invocation (three headers on
//! `/next`) and about the function (environment variables).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde::Serialize;

/// Time limit assumed when SCF sends no `time_limit_in_ms` header: SCF's default timeout.
pub(crate) const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(3);

/// What one invocation knows about itself.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Context {
    /// The request id SCF assigned (`request_id` header).
    pub request_id: String,
    /// The function's memory limit in MB (`memory_limit_in_mb` header; 0 when absent).
    pub memory_limit_mb: u32,
    /// The function's time limit: a duration (`time_limit_in_ms` header).
    #[serde(serialize_with = "as_millis")]
    pub time_limit: Duration,
    /// When the invocation must be done, in milliseconds since the Unix epoch.
    pub deadline_epoch_ms: u64,
    /// `SCF_FUNCTIONNAME`.
    pub function_name: String,
    /// `SCF_FUNCTIONVERSION`.
    pub function_version: String,
    /// `SCF_NAMESPACE` (not documented for Custom Runtime; empty when absent).
    pub namespace: String,
    /// `TENCENTCLOUD_REGION`.
    pub region: String,
    #[serde(skip)]
    deadline: Instant,
}

fn as_millis<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(value.as_millis() as u64)
}

impl Default for Context {
    fn default() -> Self {
        Self::with_time_limit("local", DEFAULT_TIME_LIMIT)
    }
}

impl Context {
    /// A context that starts now with the given request id and time limit (tests, local tools).
    pub(crate) fn with_time_limit(request_id: &str, time_limit: Duration) -> Self {
        let now = Instant::now();
        Self {
            request_id: request_id.to_string(),
            memory_limit_mb: 0,
            time_limit,
            deadline_epoch_ms: epoch_ms(SystemTime::now() + time_limit),
            function_name: String::new(),
            function_version: String::new(),
            namespace: String::new(),
            region: String::new(),
            deadline: now + time_limit,
        }
    }

    /// Builds the context from the `/next` response headers (names matched case-insensitively,
    /// as HTTP header names are) and the function identity, with the deadline counted from
    /// `received`.
    pub(crate) fn from_headers(
        headers: &HeaderMap,
        function: &FunctionIdentity,
        received: Instant,
    ) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let request_id = match text("request_id") {
            Some(id) => id.to_string(),
            None => {
                tracing::warn!("runtime API sent no request_id header");
                "unknown".to_string()
            }
        };
        let memory_limit_mb = text("memory_limit_in_mb")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let time_limit = text("time_limit_in_ms")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TIME_LIMIT);
        Self {
            request_id,
            memory_limit_mb,
            time_limit,
            deadline_epoch_ms: epoch_ms(SystemTime::now() + time_limit),
            function_name: function.name.clone(),
            function_version: function.version.clone(),
            namespace: function.namespace.clone(),
            region: function.region.clone(),
            deadline: received + time_limit,
        }
    }

    /// The instant the invocation must be finished by.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The function's identity, read once from the environment SCF sets.
#[derive(Debug, Clone, Default)]
pub(crate) struct FunctionIdentity {
    pub name: String,
    pub version: String,
    pub namespace: String,
    pub region: String,
}

impl FunctionIdentity {
    pub(crate) fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        Self {
            name: var("SCF_FUNCTIONNAME"),
            version: var("SCF_FUNCTIONVERSION"),
            namespace: var("SCF_NAMESPACE"),
            region: var("TENCENTCLOUD_REGION"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn time_limit_is_a_duration_counted_from_receipt() {
        let received = Instant::now();
        let ctx = Context::from_headers(
            &headers(&[
                ("request_id", "r-1"),
                ("memory_limit_in_mb", "128"),
                ("time_limit_in_ms", "3000"),
            ]),
            &FunctionIdentity::default(),
            received,
        );
        assert_eq!(ctx.request_id, "r-1");
        assert_eq!(ctx.memory_limit_mb, 128);
        assert_eq!(ctx.time_limit, Duration::from_millis(3000));
        assert_eq!(ctx.deadline(), received + Duration::from_millis(3000));
        assert!(ctx.remaining() <= Duration::from_millis(3000));
    }

    #[test]
    fn missing_headers_fall_back_to_documented_defaults() {
        let ctx = Context::from_headers(
            &HeaderMap::new(),
            &FunctionIdentity::default(),
            Instant::now(),
        );
        assert_eq!(ctx.request_id, "unknown");
        assert_eq!(ctx.memory_limit_mb, 0);
        assert_eq!(ctx.time_limit, DEFAULT_TIME_LIMIT);
    }

    #[test]
    fn serializes_time_limit_as_milliseconds() {
        let ctx = Context::with_time_limit("r", Duration::from_millis(1500));
        let json = serde_json::to_value(&ctx).unwrap();
        assert_eq!(json["time_limit"], 1500);
        assert_eq!(json["request_id"], "r");
    }
}
