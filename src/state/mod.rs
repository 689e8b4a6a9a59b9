//! Delivery state shared by every request: the replay cache behind `dedup`
//! (claim, mark delivered, release) and the routes' rate limits. Kept in this
//! process's memory, or in Redis when `[server.state] redis_url` is set so a
//! fleet shares it. Failures are returned, counted and logged (a line per
//! operation per 10 s, with a count); what a request
//! does about them (`on_state_error`) is the proxy's call.

mod memory;
mod rate;
pub(crate) mod redis;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::base::settings::StateSettings;
use crate::log_limit::LogLimit;
use crate::observe::metrics::Metrics;
use crate::policy::{self, LimitBy, RateLimit};

/// Event ids longer than this are keyed by their SHA-256.
const MAX_ID_BYTES: usize = 128;

/// Failed state calls, logged once per operation per 10 s with a count
/// (every one is counted in the metrics).
static LOG: LogLimit = LogLimit::new(Duration::from_secs(10));

/// The store; cheap to clone.
#[derive(Clone)]
pub struct State(Arc<Inner>);

struct Inner {
    memory: memory::Memory,
    redis: Option<redis::Redis>,
    local_limits: rate::LocalLimits,
    metrics: Metrics,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("redis", &self.0.redis.is_some())
            .finish_non_exhaustive()
    }
}

/// A dedup key: the route and the event, namespaced; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey(Arc<str>);

impl DedupKey {
    /// The key for event `id` on `route`; a long id is hashed.
    pub fn new(route: &str, id: &str) -> Self {
        let key = if id.len() <= MAX_ID_BYTES {
            format!("hookgate:dedup:{route}:{id}")
        } else {
            let digest = Sha256::digest(id.as_bytes());
            format!("hookgate:dedup:{route}:sha256:{}", hex::encode(digest))
        };
        Self(key.into())
    }

    /// The key, shared.
    fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key read back as [`Self::as_str`] gave it (kept with an async delivery).
    pub fn from_stored(key: &str) -> Self {
        Self(key.into())
    }
}

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// The key is this request's now: forward, then settle the hold.
    Claimed(Hold),
    /// The event was delivered already, or is stored for async delivery.
    Delivered,
    /// Another request holds the key; come back in this many seconds.
    InFlight {
        /// Seconds until the other request's hold lapses, at least 1.
        retry_after: u64,
    },
}

/// A claimed key. Settle it with [`Hold::delivered`] or [`Hold::release`];
/// one dropped unsettled (the request was cancelled) is released in the
/// background.
#[derive(Debug)]
pub struct Hold {
    state: State,
    key: DedupKey,
    token: u64,
    settled: bool,
}

/// What the rate limit says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// Go ahead.
    Allowed,
    /// Over the limit; the next request is allowed in this many seconds.
    Limited {
        /// Seconds, rounded up, at least 1.
        retry_after: u64,
    },
}

/// A failed state call: which operation, and why (never a secret).
#[derive(Debug)]
pub struct StateError {
    /// `claim`, `mark`, `release` or `rate_limit`.
    pub op: &'static str,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state {} failed: {}", self.op, self.message)
    }
}

impl std::error::Error for StateError {}

impl State {
    /// The store `settings` describe, counting into `metrics`. Redis is
    /// connected lazily, by each worker on its first call, and reconnected by
    /// itself; the gateway serves while it is down.
    pub fn new(settings: &StateSettings, metrics: Metrics) -> Result<Self, String> {
        let redis = settings
            .redis
            .as_ref()
            .map(|r| redis::Redis::new(&r.url, settings.timeout))
            .transpose()?;
        Ok(Self(Arc::new(Inner {
            memory: memory::Memory::new(settings.max_entries),
            redis,
            local_limits: rate::LocalLimits::default(),
            metrics,
        })))
    }

    /// Claims `key` for `hold` (how long an unsettled claim lasts if this
    /// gateway dies), or says who has it.
    pub async fn claim(&self, key: DedupKey, hold: Duration) -> Result<Claim, StateError> {
        // Random, so a claim is told from every other gateway's, and one kept
        // by an async delivery is still this claim's after a restart.
        let token = rand::random::<u64>();
        let found = match &self.0.redis {
            Some(redis) => redis.claim(&key, token, hold).await,
            None => Ok(self.0.memory.claim(&key, token, hold, &self.0.metrics)),
        };
        let found = found.map_err(|message| self.failed("claim", message))?;
        Ok(match found {
            Found::Free => Claim::Claimed(Hold {
                state: self.clone(),
                key,
                token,
                settled: false,
            }),
            Found::Delivered => Claim::Delivered,
            Found::InFlight(left) => Claim::InFlight {
                retry_after: seconds_up(left),
            },
        })
    }

    /// Whether a request to `route` from `client` is within `limit`. With
    /// Redis the limit is the fleet's; without, this process's.
    pub async fn check_rate(
        &self,
        route: &str,
        limit: &RateLimit,
        client: IpAddr,
    ) -> Result<Rate, StateError> {
        let client = policy::counted_as(client);
        let Some(redis) = &self.0.redis else {
            return Ok(self.check_local_rate(route, limit, client));
        };
        let key = match limit.by {
            LimitBy::Route => format!("hookgate:rate:{route}"),
            LimitBy::ClientIp => format!("hookgate:rate:{route}:{client}"),
        };
        redis
            .check_rate(&key, limit)
            .await
            .map(wait_to_rate)
            .map_err(|message| self.failed("rate_limit", message))
    }

    /// This process's own limit for `route`: the whole answer without Redis,
    /// the fallback when Redis fails and the route is `on_state_error = "open"`.
    pub fn check_local_rate(&self, route: &str, limit: &RateLimit, client: IpAddr) -> Rate {
        wait_to_rate(
            self.0
                .local_limits
                .check(route, limit, policy::counted_as(client)),
        )
    }

    /// Forgets the local limits of routes that are gone (after a reload).
    pub fn retain_limits(&self, keep: impl Fn(&str) -> bool) {
        self.0.local_limits.retain(keep);
    }

    fn failed(&self, op: &'static str, message: String) -> StateError {
        self.0.metrics.state_error(op);
        let error = StateError { op, message };
        if let Some(more) = LOG.check(op) {
            log::warn!("{error}{more}");
        }
        error
    }
}

impl Hold {
    /// Marks the event delivered, remembered for `ttl`.
    pub async fn delivered(mut self, ttl: Duration) -> Result<(), StateError> {
        self.settled = true;
        let state = &self.state.0;
        match &state.redis {
            Some(redis) => redis.mark(&self.key, ttl).await,
            None => {
                state.memory.mark(&self.key, ttl, &state.metrics);
                Ok(())
            }
        }
        .map_err(|message| self.state.failed("mark", message))
    }

    /// Gives the key back so the provider's retry goes through.
    pub async fn release(mut self) -> Result<(), StateError> {
        self.settled = true;
        release(&self.state, &self.key, self.token).await
    }

    /// The claimed key.
    pub fn key(&self) -> &DedupKey {
        &self.key
    }

    /// The claim's token.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Keeps the claim past this request, marked as held by a stored async
    /// delivery: a copy of the event is a duplicate from now on. The delivery
    /// settles it later, with [`State::mark_delivered`] or
    /// [`State::release_claim`], by its [`Self::key`] and [`Self::token`].
    /// Kept even when the marking fails (a copy then meets the claim in flight).
    pub async fn stored(mut self) -> Result<(), StateError> {
        self.settled = true;
        let state = &self.state.0;
        match &state.redis {
            Some(redis) => redis.stored(&self.key, self.token).await,
            None => {
                state.memory.stored(&self.key, self.token);
                Ok(())
            }
        }
        .map_err(|message| self.state.failed("mark", message))
    }
}

impl State {
    /// Marks the event of a kept claim delivered, remembered for `ttl`.
    pub async fn mark_delivered(&self, key: &DedupKey, ttl: Duration) -> Result<(), StateError> {
        match &self.0.redis {
            Some(redis) => redis.mark(key, ttl).await,
            None => {
                self.0.memory.mark(key, ttl, &self.0.metrics);
                Ok(())
            }
        }
        .map_err(|message| self.failed("mark", message))
    }

    /// Gives back a kept claim, if `token` still holds it.
    pub async fn release_claim(&self, key: &DedupKey, token: u64) -> Result<(), StateError> {
        release(self, key, token).await
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (state, key, token) = (self.state.clone(), self.key.clone(), self.token);
        if state.0.redis.is_none() {
            state.0.memory.release(&key, token);
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = release(&state, &key, token).await;
            });
        }
    }
}

async fn release(state: &State, key: &DedupKey, token: u64) -> Result<(), StateError> {
    match &state.0.redis {
        Some(redis) => redis.release(key, token).await,
        None => {
            state.0.memory.release(key, token);
            Ok(())
        }
    }
    .map_err(|message| state.failed("release", message))
}

/// What a backend found under a key it was asked to claim.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// Nothing: the claim is taken.
    Free,
    /// Delivered.
    Delivered,
    /// Claimed by another request, whose hold lapses in this long.
    InFlight(Duration),
}

/// Whole seconds, rounded up, at least 1 (for `Retry-After`).
pub fn seconds_up(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).clamp(1, u128::from(u64::MAX)) as u64
}

/// `None`: allowed; `Some(wait)`: over the limit until then.
fn wait_to_rate(wait: Option<Duration>) -> Rate {
    match wait {
        None => Rate::Allowed,
        Some(d) => Rate::Limited {
            retry_after: seconds_up(d),
        },
    }
}

#[cfg(test)]
mod tests;
