//! The state in Redis, shared by a fleet: a claim is one `SET NX GET PX`,
//! marking delivered one `SET XX PX`, marking stored one compare-and-set
//! script, a release one compare-and-delete script,
//! a rate-limit check one GCRA script timed by Redis's own clock. Each worker
//! thread keeps its own multiplexed connection (the `redis` crate's
//! `ConnectionManager`, which reconnects by itself), so a reply wakes the
//! thread that asked; every call is bounded by `redis_timeout_ms`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use super::{DedupKey, Found};
use crate::policy::RateLimit;

/// What a delivered key holds.
const DELIVERED: &str = "d";

/// Deletes KEYS[1] if its value ends with ARGV[1] (`:` and the claim's token,
/// which holds no `:`).
const RELEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, -string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Marks KEYS[1] stored if it is still the claim ending with ARGV[1] (`:`
/// and the token): `p:` becomes `s:`, its expiry kept. Returns 1 if marked.
const STORED: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 2) == 'p:' and string.sub(v, -string.len(ARGV[1])) == ARGV[1] then
  redis.call('SET', KEYS[1], 's:' .. string.sub(v, 3), 'KEEPTTL')
  return 1
end
return 0
";

/// GCRA: ARGV[1] is the emission interval in ms, ARGV[2] the burst. Returns
/// 0 when allowed (and records it), else the ms to wait.
const GCRA: &str = r"
local period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + period
local over = new_tat - now - burst * period
if over > 0 then
  return math.max(1, math.ceil(over))
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
return 0
";

/// Tells one store's connections from another's in a thread's cache.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This worker's connection to each store it has used.
    static CONNECTIONS: RefCell<Vec<(u64, ConnectionManager)>> = const { RefCell::new(Vec::new()) };
}

/// A client with one multiplexed connection per thread that uses it (the
/// `redis` crate's `ConnectionManager`, which reconnects by itself), every
/// call bounded by one timeout. Used by the state and by the spool's `redis`
/// backend.
pub(crate) struct Link {
    id: u64,
    client: Client,
    timeout: Duration,
}

impl Link {
    /// A link to `url`; nothing is connected yet.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        // The error could quote the URL, and its password: not passed on.
        let client = Client::open(url).map_err(|_| "`redis_url` is not a valid Redis URL")?;
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            client,
            timeout,
        })
    }

    /// The client, for a connection of its own (a blocking read).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The deadline of each call.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// This thread's connection, made on first use.
    fn connection(&self) -> Result<ConnectionManager, String> {
        CONNECTIONS.with(|c| {
            let mut c = c.borrow_mut();
            if let Some((_, conn)) = c.iter().find(|(id, _)| *id == self.id) {
                return Ok(conn.clone());
            }
            let conn = manager(&self.client, self.timeout)?;
            c.push((self.id, conn.clone()));
            Ok(conn)
        })
    }

    /// Runs `call` on this thread's connection within the timeout.
    pub(crate) async fn call<T, F>(
        &self,
        call: impl FnOnce(ConnectionManager) -> F,
    ) -> Result<T, String>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection()?;
        match tokio::time::timeout(self.timeout, call(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }
}

/// A connection to `client` that reconnects by itself, each response awaited
/// at most `timeout`.
pub(crate) fn manager(client: &Client, timeout: Duration) -> Result<ConnectionManager, String> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout.min(Duration::from_secs(5))))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|e| e.to_string())
}

/// A Redis store.
pub(super) struct Redis {
    link: Link,
    stored: Script,
    release: Script,
    gcra: Script,
}

impl Redis {
    /// A store at `url`; nothing is connected yet.
    pub(super) fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            link: Link::new(url, timeout)?,
            stored: Script::new(STORED),
            release: Script::new(RELEASE),
            gcra: Script::new(GCRA),
        })
    }

    async fn call<T, F>(&self, call: impl FnOnce(ConnectionManager) -> F) -> Result<T, String>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        self.link.call(call).await
    }

    /// Claims `key` for `token` for `hold`.
    pub(super) async fn claim(
        &self,
        key: &DedupKey,
        token: u64,
        hold: Duration,
    ) -> Result<Found, String> {
        let hold_ms = hold.as_millis().max(1);
        let deadline = unix_ms() + hold_ms;
        let value = format!("p:{deadline}:{token:016x}");
        let old: Option<String> = self
            .call(|mut c| async move {
                redis::cmd("SET")
                    .arg(key.as_str())
                    .arg(value)
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(hold_ms as u64)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(match old.as_deref() {
            None => Found::Free,
            Some(DELIVERED) => Found::Delivered,
            Some(stored) if stored.starts_with("s:") => Found::Delivered,
            Some(pending) => {
                let until = pending
                    .strip_prefix("p:")
                    .and_then(|rest| rest.split(':').next())
                    .and_then(|ms| ms.parse::<u128>().ok())
                    .unwrap_or(0);
                let left = until.saturating_sub(unix_ms()).max(1);
                Found::InFlight(Duration::from_millis(
                    u64::try_from(left).unwrap_or(u64::MAX),
                ))
            }
        })
    }

    /// Marks `key` delivered for `ttl` (if it is still there).
    pub(super) async fn mark(&self, key: &DedupKey, ttl: Duration) -> Result<(), String> {
        let ttl_ms = u64::try_from(ttl.as_millis().max(1)).unwrap_or(u64::MAX);
        self.call(|mut c| async move {
            redis::cmd("SET")
                .arg(key.as_str())
                .arg(DELIVERED)
                .arg("XX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<Option<String>>(&mut c)
                .await
        })
        .await
        .map(drop)
    }

    /// Deletes `key` if `token`'s claim still holds it.
    pub(super) async fn release(&self, key: &DedupKey, token: u64) -> Result<(), String> {
        self.if_held(&self.release, key, token).await
    }

    /// Marks `key` stored if `token`'s claim still holds it.
    pub(super) async fn stored(&self, key: &DedupKey, token: u64) -> Result<(), String> {
        self.if_held(&self.stored, key, token).await
    }

    /// Runs `script` on `key` with the suffix of `token`'s claim.
    async fn if_held(&self, script: &Script, key: &DedupKey, token: u64) -> Result<(), String> {
        let suffix = format!(":{token:016x}");
        self.call(|mut c| async move {
            script
                .key(key.as_str())
                .arg(suffix)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(drop)
    }

    /// `None` when within `limit` (and counted), else how long to wait.
    pub(super) async fn check_rate(
        &self,
        key: &str,
        limit: &RateLimit,
    ) -> Result<Option<Duration>, String> {
        let period_ms = 1000.0 / limit.per_second;
        let burst = limit.burst;
        let wait: u64 = self
            .call(|mut c| async move {
                self.gcra
                    .key(key)
                    .arg(period_ms)
                    .arg(burst)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait)))
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}
