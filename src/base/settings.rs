//! The settings a validated config hands to the parts that run it: plain
//! data of `[server]`, `[server.state]`, `[spool]` and `[routes.retry]`, with
//! their defaults. Built by `config`, read by everything above it.

use std::path::PathBuf;
use std::time::Duration;

use super::secret::Secret;

/// Default `max_attempts`.
pub const DEFAULT_MAX_ATTEMPTS: u64 = 12;
/// Default `max_age_secs`: a day.
pub const DEFAULT_MAX_AGE_SECS: u64 = 86_400;
/// Default `min_backoff_ms`.
pub const DEFAULT_MIN_BACKOFF_MS: u64 = 1_000;
/// Default `max_backoff_ms`: an hour.
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 3_600_000;
/// Default `concurrency`.
pub const DEFAULT_CONCURRENCY: u64 = 8;
/// Default `retry_on`.
pub const DEFAULT_RETRY_ON: [&str; 5] = ["5xx", "408", "429", "timeout", "connect"];
/// Default `[spool] dir`, beside the config file.
pub const DEFAULT_SPOOL_DIR: &str = "spool";
/// Default `[spool] max_bytes`: 10 GiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// Default `[spool] claim_after_secs`.
pub const DEFAULT_CLAIM_AFTER_SECS: u64 = 15;

/// `[server] admin_token` and `admin_hosts`: who the admin listener answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminAccess {
    /// The bearer token every admin endpoint but `/healthz` and `/readyz`
    /// requires; none asked when absent (then the listener is on loopback).
    pub token: Option<Secret>,
    /// The token's reference as it may be shown (`env:NAME`, `file:PATH`).
    pub token_source: Option<String>,
    /// Host names (lower case) or IP addresses the listener answers besides
    /// its own address and loopback.
    pub hosts: Vec<String>,
}

/// `[spool]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// Where deliveries are kept.
    pub backend: SpoolBackend,
    /// Bytes of deliveries (requests and their records) kept at most.
    pub max_bytes: u64,
}

/// `[spool] backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolBackend {
    /// `local`: the embedded store in this directory.
    Local(PathBuf),
    /// `redis`: Redis Streams shared by a fleet.
    Redis(FleetSettings),
}

/// The `redis` spool backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// The Redis of `[server.state] redis_url`.
    pub redis: RedisSettings,
    /// Deadline for each Redis call.
    pub timeout: Duration,
    /// How long a gateway may go silent before the others take over its
    /// pending deliveries.
    pub claim_after: Duration,
}

/// How an async route delivers: `delivery = "async"` and `[routes.retry]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before a delivery is dead.
    pub max_attempts: u32,
    /// Age after which a delivery is dead.
    pub max_age: Duration,
    /// Shortest wait between attempts.
    pub min_backoff: Duration,
    /// Longest wait between attempts (an upstream's `Retry-After` may ask for more).
    pub max_backoff: Duration,
    /// What is retried; anything else is final.
    pub retry_on: RetryOn,
    /// Attempts in flight for the route.
    pub concurrency: usize,
    /// One at a time, in arrival order.
    pub fifo: bool,
    /// The destination's circuit breaker, when it has one.
    pub breaker: Option<BreakerSettings>,
}

/// A destination's circuit breaker (`[routes.destinations.breaker]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failed attempts that open it.
    pub failures: u32,
    /// How long it stays open before one probe attempt.
    pub cooldown: Duration,
}

impl Default for RetryPolicy {
    /// The defaults of `[routes.retry]`.
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS as u32,
            max_age: Duration::from_secs(DEFAULT_MAX_AGE_SECS),
            min_backoff: Duration::from_millis(DEFAULT_MIN_BACKOFF_MS),
            max_backoff: Duration::from_millis(DEFAULT_MAX_BACKOFF_MS),
            retry_on: RetryOn {
                classes: [false, false, false, false, false, true],
                statuses: vec![408, 429],
                timeout: true,
                connect: true,
            },
            concurrency: DEFAULT_CONCURRENCY as usize,
            fifo: false,
            breaker: None,
        }
    }
}

/// What an async route retries (`retry_on`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// Status classes, by their first digit (`5xx` sets index 5).
    pub classes: [bool; 6],
    /// Single statuses.
    pub statuses: Vec<u16>,
    /// The upstream did not answer within `upstream_timeout_ms`.
    pub timeout: bool,
    /// The connection could not be made, or broke before an answer.
    pub connect: bool,
}

impl RetryOn {
    /// Whether an answer with `status` is retried.
    pub fn status(&self, status: u16) -> bool {
        let class = usize::from(status / 100);
        self.classes.get(class).copied().unwrap_or(false) || self.statuses.contains(&status)
    }
}

/// `[server.state]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    /// Redis, shared by a fleet; else the state is in this process's memory.
    pub redis: Option<RedisSettings>,
    /// Deadline for each Redis call.
    pub timeout: Duration,
    /// Entries the in-memory store keeps.
    pub max_entries: usize,
}

/// Where Redis is.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// The URL (it may hold a password: never shown).
    pub url: String,
    /// The URL's reference as it may be shown (`env:`/`file:`; a literal is redacted).
    pub shown: String,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.shown)
            .finish()
    }
}

/// What the webhook listener allows a client (a change needs a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontDoor {
    /// The whole request header must arrive within this.
    pub header_timeout: Duration,
    /// An idle client connection is closed after this.
    pub keepalive_timeout: Duration,
    /// Client connections held at once; more are closed at once.
    pub max_connections: usize,
    /// Largest request header.
    pub max_header_bytes: usize,
    /// Body bytes held across all requests being read or verified.
    pub max_inflight_body_bytes: u64,
    /// The share of `max_inflight_body_bytes` one client address may hold
    /// (IPv6 by /64).
    pub max_inflight_body_bytes_per_client: u64,
    /// After the first 2 s of a body, the least average bytes per second it
    /// may come at; 0: no minimum.
    pub min_body_bytes_per_sec: u64,
}
