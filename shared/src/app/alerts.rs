//! The alert use case: a batch's records grouped into alerts by the policy, admitted by the
//! cooldown, and sent to every channel under its platform's rate cap before the invocation's
//! deadline, with what happened counted. How a channel speaks to its robot or webhook is the
//! adapter's (`crate::adapters::chat`); this module only knows the [`AlertChannel`] port (in `crate::core::alert`, beside the cooldown port).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use crate::core::alert::{
    group, Admission, Alert, AlertChannel, AlertPolicy, AlertState, RateCap, DEADLINE_MARGIN,
};
use crate::core::records::Record;

/// What dispatching did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DispatchReport {
    /// Alerts formed from the batch (after kinds, mutes and the minimum count).
    pub alerts: usize,
    /// Alerts held back by the cooldown.
    pub suppressed: usize,
    /// Messages sent, per channel.
    pub sent: BTreeMap<&'static str, usize>,
    /// Messages not sent because the channel's rate cap was reached, per channel.
    pub rate_limited: BTreeMap<&'static str, usize>,
    /// Messages that failed after retries, per channel.
    pub failed: BTreeMap<&'static str, usize>,
    /// Messages not tried because the channel timed out earlier in the batch, per channel.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<&'static str, usize>,
    /// Alerts no channel delivered: their cooldown was not started, so the next batch tries
    /// again.
    #[serde(skip_serializing_if = "is_zero")]
    pub undelivered: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl DispatchReport {
    /// Messages sent on all channels.
    pub(crate) fn sent_total(&self) -> usize {
        self.sent.values().sum()
    }
}

/// Sends alerts: policy, cooldown state, rate caps and channels, kept across a warm instance's
/// invocations.
pub(crate) struct Dispatcher {
    /// What to alert.
    pub policy: AlertPolicy,
    channels: Vec<Box<dyn AlertChannel>>,
    state: Box<dyn AlertState>,
    caps: RateCap,
}

/// The longest wait for a rate limit's window to open before a message is dropped instead.
const MAX_RATE_WAIT: Duration = Duration::from_secs(1);

impl Dispatcher {
    /// A dispatcher for `channels` with cooldown state in `state`.
    pub fn new(
        policy: AlertPolicy,
        channels: Vec<Box<dyn AlertChannel>>,
        state: Box<dyn AlertState>,
    ) -> Self {
        Self {
            policy,
            channels,
            state,
            caps: RateCap::default(),
        }
    }

    /// Groups the batch's records into alerts and sends those the cooldown admits to every
    /// channel under its rate cap, finishing before `deadline`. The channels of one alert are
    /// sent to concurrently, so a slow one never holds up another; a channel that timed out is
    /// skipped for the rest of the batch (counted). A failing channel is logged and counted; it
    /// never stops the others. An alert no channel delivered has its cooldown taken back.
    pub(crate) async fn dispatch(
        &mut self,
        records: &[Record],
        now: SystemTime,
        deadline: Instant,
    ) -> DispatchReport {
        let alerts = group(records, &self.policy);
        self.send(&alerts, now, deadline).await
    }

    /// Sends `alerts` (already grouped and filtered by the policy) as [`Dispatcher::dispatch`]
    /// does.
    pub(crate) async fn send(
        &mut self,
        alerts: &[Alert],
        now: SystemTime,
        deadline: Instant,
    ) -> DispatchReport {
        let started = Instant::now();
        let mut report = DispatchReport {
            alerts: alerts.len(),
            ..DispatchReport::default()
        };
        if self.channels.is_empty() {
            return report;
        }
        let mut timed_out: BTreeSet<&'static str> = BTreeSet::new();
        for alert in alerts {
            let key = alert.key();
            let Admission::Admitted { previous } =
                self.state.admit(&key, alert.flows, now, &self.policy).await
            else {
                report.suppressed += 1;
                continue;
            };
            let mut sends = Vec::new();
            for channel in &self.channels {
                let name = channel.name();
                if timed_out.contains(name) {
                    *report.skipped.entry(name).or_default() += 1;
                    continue;
                }
                let limits = channel.limits();
                // A short wait (a per-second limit) is waited out when the deadline allows; a
                // used-up minute drops the message, counted.
                let at = now + started.elapsed();
                let wait = self.caps.wait(name, limits, at);
                if wait > MAX_RATE_WAIT
                    || Instant::now() + wait + DEADLINE_MARGIN >= deadline
                    || !self.caps.take(name, limits, at + wait)
                {
                    *report.rate_limited.entry(name).or_default() += 1;
                    continue;
                }
                sends.push(async move {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    (name, channel.deliver(alert, now, deadline).await)
                });
            }
            let mut delivered = false;
            for (name, outcome) in futures_util::future::join_all(sends).await {
                match outcome {
                    Ok(()) => {
                        delivered = true;
                        *report.sent.entry(name).or_default() += 1;
                    }
                    Err(error) => {
                        tracing::warn!(channel = name, rule = %alert.rule_uuid, error = %error.message, "alert not delivered");
                        *report.failed.entry(name).or_default() += 1;
                        if error.timed_out {
                            timed_out.insert(name);
                        }
                    }
                }
            }
            if !delivered {
                report.undelivered += 1;
                self.state
                    .release(&key, alert.flows, now, previous, &self.policy)
                    .await;
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::alert::{MemoryState, RateLimit, Undelivered};
    use crate::core::ports::BoxFuture;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A channel in memory: it accepts, refuses, or hangs until `hang` has passed and then
    /// reports a timeout (as a robot adapter does after its send timeout); it counts what it
    /// accepted.
    struct Fake {
        name: &'static str,
        answer: Result<(), ()>,
        hang: Option<Duration>,
        accepted: Arc<AtomicUsize>,
    }

    impl AlertChannel for Fake {
        fn name(&self) -> &'static str {
            self.name
        }

        fn limits(&self) -> &'static [RateLimit] {
            &[]
        }

        fn deliver<'a>(
            &'a self,
            _: &'a Alert,
            _: SystemTime,
            _: Instant,
        ) -> BoxFuture<'a, Result<(), Undelivered>> {
            Box::pin(async move {
                if let Some(hang) = self.hang {
                    tokio::time::sleep(hang).await;
                    return Err(Undelivered {
                        message: "timed out".into(),
                        timed_out: true,
                    });
                }
                match self.answer {
                    Ok(()) => {
                        self.accepted.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                    Err(()) => Err(Undelivered {
                        message: "HTTP 500".into(),
                        timed_out: false,
                    }),
                }
            })
        }
    }

    fn fake(
        name: &'static str,
        answer: Result<(), ()>,
        hang: Option<Duration>,
    ) -> (Box<dyn AlertChannel>, Arc<AtomicUsize>) {
        let accepted = Arc::new(AtomicUsize::new(0));
        let channel = Fake {
            name,
            answer,
            hang,
            accepted: accepted.clone(),
        };
        (Box::new(channel), accepted)
    }

    /// Twelve rules blocking in one batch: twelve alerts.
    fn twelve_alerts() -> Vec<Record> {
        (0..12)
            .map(|i| {
                crate::core::alert::tests::hit(
                    crate::core::records::RecordType::BlockHit,
                    &format!("70{i:02}"),
                    "block",
                    "10.0.1.5",
                    "10.0.3.10",
                    3306,
                )
            })
            .collect()
    }

    fn dispatcher(channels: Vec<Box<dyn AlertChannel>>) -> Dispatcher {
        Dispatcher::new(
            AlertPolicy::default(),
            channels,
            Box::new(MemoryState::default()),
        )
    }

    /// A hung robot beside a healthy webhook over twelve alerts: the webhook gets all twelve
    /// (the hung robot once starved it: 3 of 12 in 59.8 s); the robot costs one timeout and is
    /// skipped for the rest of the batch, counted.
    #[tokio::test]
    async fn a_hung_channel_does_not_starve_a_healthy_one() {
        let hang = Duration::from_millis(300);
        let (hung, _) = fake("wecom", Ok(()), Some(hang));
        let (healthy, accepted) = fake("webhook", Ok(()), None);
        let mut dispatcher = dispatcher(vec![hung, healthy]);
        let started = Instant::now();
        let report = dispatcher
            .dispatch(
                &twelve_alerts(),
                SystemTime::now(),
                started + Duration::from_secs(30),
            )
            .await;
        assert_eq!(report.alerts, 12);
        assert_eq!(report.sent.get("webhook"), Some(&12), "{report:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 12, "{report:?}");
        assert_eq!(report.failed.get("wecom"), Some(&1), "{report:?}");
        assert_eq!(report.skipped.get("wecom"), Some(&11), "{report:?}");
        assert_eq!(report.undelivered, 0);
        // One timeout in all, not one per alert.
        assert!(started.elapsed() < 3 * hang, "{:?}", started.elapsed());
    }

    /// An alert that no channel delivered does not start the cooldown: the next batch tries
    /// again. One that got through does.
    #[tokio::test]
    async fn the_cooldown_starts_only_once_a_channel_accepted() {
        let (refusing, _) = fake("webhook", Err(()), None);
        let mut failing = dispatcher(vec![refusing]);
        let records = &twelve_alerts()[..1];
        let t0 = SystemTime::now();
        let deadline = || Instant::now() + Duration::from_secs(20);
        let first = failing.dispatch(records, t0, deadline()).await;
        assert_eq!((first.undelivered, first.suppressed), (1, 0), "{first:?}");
        let again = failing
            .dispatch(records, t0 + Duration::from_secs(60), deadline())
            .await;
        assert_eq!((again.undelivered, again.suppressed), (1, 0), "{again:?}");

        let (healthy, _) = fake("webhook", Ok(()), None);
        let mut working = dispatcher(vec![healthy]);
        let sent = working.dispatch(records, t0, deadline()).await;
        assert_eq!(sent.sent.get("webhook"), Some(&1));
        let held = working
            .dispatch(records, t0 + Duration::from_secs(60), deadline())
            .await;
        assert_eq!((held.suppressed, held.undelivered), (1, 0), "{held:?}");
    }
}
