//! Talking to Tencent Cloud: credentials, the TC3-HMAC-SHA256 signer, and retry timing bounded by
//! the invocation deadline. Credentials are read from the environment on every call (SCF's role
//! credentials are temporary) and never logged: [`Credentials`]'s `Debug` hides the secrets.

pub mod api;
pub mod qsign;
pub mod search;
pub mod tc3;

use std::fmt;
use std::time::{Duration, Instant};

/// API credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `TENCENTCLOUD_SECRETID`.
    pub secret_id: String,
    /// `TENCENTCLOUD_SECRETKEY`.
    pub secret_key: String,
    /// `TENCENTCLOUD_SESSIONTOKEN` (temporary role credentials), sent as `X-TC-Token`.
    pub token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("secret_id", &redact(&self.secret_id))
            .field("secret_key", &"<redacted>")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The first 4 characters of an id, the rest masked.
pub fn redact(id: &str) -> String {
    let shown: String = id.chars().take(4).collect();
    format!("{shown}…")
}

/// No credentials in the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no Tencent Cloud credentials: TENCENTCLOUD_SECRETID and TENCENTCLOUD_SECRETKEY are not set (attach an execution role to the function)")]
pub struct NoCredentials;

impl Credentials {
    /// Reads `TENCENTCLOUD_SECRETID`, `TENCENTCLOUD_SECRETKEY` and `TENCENTCLOUD_SESSIONTOKEN`.
    pub fn from_env() -> Result<Self, NoCredentials> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        match (var("TENCENTCLOUD_SECRETID"), var("TENCENTCLOUD_SECRETKEY")) {
            (Some(secret_id), Some(secret_key)) => Ok(Self {
                secret_id,
                secret_key,
                token: var("TENCENTCLOUD_SESSIONTOKEN"),
            }),
            _ => Err(NoCredentials),
        }
    }
}

/// Retry timing: jittered exponential backoff that never sleeps past the deadline.
#[derive(Debug, Clone)]
pub struct Retry {
    deadline: Instant,
    delay: Duration,
    max_delay: Duration,
    jitter: crate::engine::synthetic::Rng,
}

impl Retry {
    /// Backoff starting at `first`, doubling up to `max`, until `deadline`.
    pub fn new(deadline: Instant, first: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7);
        Self {
            deadline,
            delay: first,
            max_delay: max,
            jitter: crate::engine::synthetic::Rng::new(seed),
        }
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Sleeps before the next attempt; `false` (without sleeping) when the sleep plus `attempt`
    /// (the time one more attempt needs) would not fit before the deadline.
    pub async fn wait(&mut self, attempt: Duration) -> bool {
        // Full jitter between half and the whole delay, so concurrent instances spread out.
        let half = self.delay / 2;
        let sleep = half + Duration::from_millis(self.jitter.below(half.as_millis().max(1) as u64));
        if sleep + attempt >= self.remaining() {
            return false;
        }
        tokio::time::sleep(sleep).await;
        self.delay = (self.delay * 2).min(self.max_delay);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let c = Credentials {
            secret_id: "AKIDsecretid".into(),
            secret_key: "topsecret".into(),
            token: Some("tok".into()),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("topsecret") && !shown.contains("tok\"") && !shown.contains("secretid"),
            "{shown}"
        );
        assert!(shown.contains("AKID…"));
    }

    #[tokio::test]
    async fn retry_never_sleeps_past_the_deadline() {
        let mut retry = Retry::new(
            Instant::now() + Duration::from_millis(300),
            Duration::from_millis(100),
            Duration::from_secs(1),
        );
        let started = Instant::now();
        let mut waits = 0;
        while retry.wait(Duration::from_millis(20)).await {
            waits += 1;
        }
        assert!(waits >= 1);
        assert!(started.elapsed() < Duration::from_millis(300));
    }
}
