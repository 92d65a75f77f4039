//! Alert cooldown state in Redis (Tencent Cloud Redis in the cloud), shared by every instance and
//! surviving cold starts: the Redis adapter of [`AlertState`].

use std::time::{Duration, SystemTime};

use crate::core::alert::{AlertPolicy, AlertState};
use crate::core::ports::BoxFuture;

/// Cooldown state in Redis (Tencent Cloud Redis in the cloud), shared by every instance and
/// surviving cold starts. The check-and-set is one Lua script, so concurrent instances cannot
/// both send the same alert. If Redis cannot be reached within a second, the alert is admitted
/// and a warning logged: a repeated alert is better than a missed one.
pub(crate) struct RedisState {
    client: redis::Client,
    connection: Option<redis::aio::MultiplexedConnection>,
    script: redis::Script,
}

const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// KEYS[1]: the alert key. ARGV: now (ms), flows, cooldown (ms), regrow factor.
const ADMIT_SCRIPT: &str = r#"
local last = redis.call('GET', KEYS[1])
if last then
  local sep = string.find(last, ':', 1, true)
  local sent = tonumber(string.sub(last, 1, sep - 1))
  local count = tonumber(string.sub(last, sep + 1))
  if tonumber(ARGV[1]) - sent < tonumber(ARGV[3]) and tonumber(ARGV[2]) < count * tonumber(ARGV[4]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', math.max(1, tonumber(ARGV[3])))
return 1
"#;

impl RedisState {
    /// State in the Redis server at `url` (`redis://[:password@]host:port[/db]`).
    pub fn new(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?;
        Ok(Self {
            client,
            connection: None,
            script: redis::Script::new(ADMIT_SCRIPT),
        })
    }

    async fn try_admit(
        &mut self,
        key: &str,
        flows: u64,
        now: SystemTime,
        policy: &AlertPolicy,
    ) -> Result<bool, String> {
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
        let connection = self.connection.as_mut().expect("connected above");
        let now_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let mut invocation = self.script.key(format!("esgflow:alert:{key}"));
        invocation
            .arg(now_ms)
            .arg(flows)
            .arg(policy.cooldown.as_millis() as u64)
            .arg(policy.regrow_factor);
        let admitted: i64 =
            tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(connection))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
        Ok(admitted == 1)
    }
}

impl AlertState for RedisState {
    fn admit<'a>(
        &'a mut self,
        key: &'a str,
        flows: u64,
        now: SystemTime,
        policy: &'a AlertPolicy,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match self.try_admit(key, flows, now, policy).await {
                Ok(admitted) => admitted,
                Err(error) => {
                    tracing::warn!(%error, "alert state in Redis unavailable; sending without the cooldown check");
                    self.connection = None;
                    true
                }
            }
        })
    }
}
