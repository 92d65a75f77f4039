//! Alert cooldown state in Redis (Tencent Cloud Redis in the cloud), shared by every instance and
//! surviving cold starts: the Redis adapter of [`AlertState`].

use std::time::{Duration, SystemTime};

use crate::core::alert::{unix_ms, Admission, AlertPolicy, AlertState, Sent};
use crate::core::ports::BoxFuture;

/// Cooldown state in Redis (Tencent Cloud Redis in the cloud), shared by every instance and
/// surviving cold starts. The check-and-set is one Lua script, so concurrent instances cannot
/// both send the same alert. If Redis cannot be reached within a second, the alert is admitted
/// and a warning logged: a repeated alert is better than a missed one.
pub(crate) struct RedisState {
    client: redis::Client,
    connection: Option<redis::aio::MultiplexedConnection>,
    script: redis::Script,
    release: redis::Script,
}

const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// KEYS[1]: the alert key. ARGV: now (ms), flows, cooldown (ms), regrow factor. Answers
/// `{0, ""}` when held back, `{1, previous entry or ""}` when admitted.
const ADMIT_SCRIPT: &str = r#"
local last = redis.call('GET', KEYS[1])
if last then
  local sep = string.find(last, ':', 1, true)
  local sent = tonumber(string.sub(last, 1, sep - 1))
  local count = tonumber(string.sub(last, sep + 1))
  if tonumber(ARGV[1]) - sent < tonumber(ARGV[3]) and tonumber(ARGV[2]) < count * tonumber(ARGV[4]) then
    return {0, ''}
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', math.max(1, tonumber(ARGV[3])))
return {1, last or ''}
"#;

/// KEYS[1]: the alert key. ARGV: the admission's entry (`ms:flows`), the previous entry or "",
/// now (ms), cooldown (ms). Puts the previous entry back (for what is left of its cooldown) if
/// the key still holds the admission's own.
const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  return 1
end
local sep = string.find(ARGV[2], ':', 1, true)
local left = tonumber(ARGV[4]) - (tonumber(ARGV[3]) - tonumber(string.sub(ARGV[2], 1, sep - 1)))
if left > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', left)
else
  redis.call('DEL', KEYS[1])
end
return 1
"#;

/// An entry `ms:flows`.
fn parse_sent(text: &str) -> Option<Sent> {
    let (ms, flows) = text.split_once(':')?;
    Some((ms.parse().ok()?, flows.parse().ok()?))
}

impl RedisState {
    /// State in the Redis server at `url` (`redis://[:password@]host:port[/db]`).
    pub fn new(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?;
        Ok(Self {
            client,
            connection: None,
            script: redis::Script::new(ADMIT_SCRIPT),
            release: redis::Script::new(RELEASE_SCRIPT),
        })
    }

    /// The connection (a cheap handle to the one multiplexed connection), connecting first if
    /// needed.
    async fn connection(&mut self) -> Result<redis::aio::MultiplexedConnection, String> {
        if self.connection.is_none() {
            let connection = tokio::time::timeout(
                REDIS_TIMEOUT,
                self.client.get_multiplexed_async_connection(),
            )
            .await
            .map_err(|_| "connecting timed out".to_string())?
            .map_err(|e| format!("connecting: {e}"))?;
            self.connection = Some(connection);
        }
        Ok(self.connection.clone().expect("connected above"))
    }

    async fn try_release(
        &mut self,
        key: &str,
        flows: u64,
        now: SystemTime,
        previous: Option<Sent>,
        policy: &AlertPolicy,
    ) -> Result<(), String> {
        let mut connection = self.connection().await?;
        let mut invocation = self.release.key(format!("esgflow:alert:{key}"));
        invocation
            .arg(format!("{}:{flows}", unix_ms(now)))
            .arg(previous.map_or(String::new(), |(ms, count)| format!("{ms}:{count}")))
            .arg(unix_ms(now))
            .arg(policy.cooldown.as_millis() as u64);
        let _: i64 = tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn try_admit(
        &mut self,
        key: &str,
        flows: u64,
        now: SystemTime,
        policy: &AlertPolicy,
    ) -> Result<Admission, String> {
        let mut connection = self.connection().await?;
        let mut invocation = self.script.key(format!("esgflow:alert:{key}"));
        invocation
            .arg(unix_ms(now))
            .arg(flows)
            .arg(policy.cooldown.as_millis() as u64)
            .arg(policy.regrow_factor);
        let (admitted, previous): (i64, String) =
            tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
        Ok(if admitted == 1 {
            Admission::Admitted {
                previous: parse_sent(&previous),
            }
        } else {
            Admission::Held
        })
    }
}

impl AlertState for RedisState {
    fn admit<'a>(
        &'a mut self,
        key: &'a str,
        flows: u64,
        now: SystemTime,
        policy: &'a AlertPolicy,
    ) -> BoxFuture<'a, Admission> {
        Box::pin(async move {
            match self.try_admit(key, flows, now, policy).await {
                Ok(admission) => admission,
                Err(error) => {
                    tracing::warn!(%error, "alert state in Redis unavailable; sending without the cooldown check");
                    self.connection = None;
                    Admission::Admitted { previous: None }
                }
            }
        })
    }

    fn release<'a>(
        &'a mut self,
        key: &'a str,
        flows: u64,
        now: SystemTime,
        previous: Option<Sent>,
        policy: &'a AlertPolicy,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(error) = self.try_release(key, flows, now, previous, policy).await {
                tracing::warn!(%error, "undelivered alert's cooldown not released in Redis");
                self.connection = None;
            }
        })
    }
}
