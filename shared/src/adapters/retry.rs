//! The one retry driver every adapter uses: jittered exponential backoff that never sleeps past
//! the invocation deadline.

use std::time::{Duration, Instant};

/// Retry timing: jittered exponential backoff that never sleeps past the deadline.
#[derive(Debug, Clone)]
pub(crate) struct Retry {
    deadline: Instant,
    delay: Duration,
    max_delay: Duration,
    jitter: fastrand::Rng,
}

impl Retry {
    /// Backoff starting at `first`, doubling up to `max`, until `deadline`.
    pub fn new(deadline: Instant, first: Duration, max: Duration) -> Self {
        Self {
            deadline,
            delay: first,
            max_delay: max,
            jitter: fastrand::Rng::new(),
        }
    }

    /// Time left before the deadline.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Sleeps before the next attempt; `false` (without sleeping) when the sleep plus `attempt`
    /// (the time one more attempt needs) would not fit before the deadline.
    pub async fn wait(&mut self, attempt: Duration) -> bool {
        // Full jitter between half and the whole delay, so concurrent instances spread out.
        let half = self.delay / 2;
        let sleep =
            half + Duration::from_millis(self.jitter.u64(0..half.as_millis().max(1) as u64));
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
