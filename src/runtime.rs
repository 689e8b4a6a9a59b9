//! `RuntimeConfig`: the immutable, validated snapshot a request runs against —
//! built routes with their verifiers and resolved upstreams. Shared through an
//! `ArcSwap`; a reload builds a new one and never mutates this.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderName, Method};
use ipnet::IpNet;

use crate::access_log::Target as AccessLogTarget;
use crate::config::secret::Secret;
use crate::forward::SharedPeer;
use crate::handshake::Handshake;
use crate::policy::Policy;
use crate::routes::RouteTable;
use crate::tls::Certificates;
use crate::verify::Verifier;

/// A whole validated config.
#[derive(Debug)]
pub struct RuntimeConfig {
    /// The file it was loaded from.
    pub source: PathBuf,
    /// 1 for the config loaded at startup, then one more for each successful reload.
    pub generation: u64,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Listener and process settings.
    pub server: ServerSettings,
    /// The routes, indexed for matching.
    pub routes: RouteTable,
    /// The certificates of `[[server.tls]]` (reloaded with the config).
    pub tls: Option<Certificates>,
    /// `[server.remote_keys]`: how provider keys are fetched (reloaded with the config).
    pub remote_keys: Arc<crate::keys::KeySettings>,
    /// Networks whose `X-Forwarded-For` names the client (reloaded with the config).
    pub trusted_proxies: Vec<IpNet>,
    /// Every file the config reads besides itself (`file:` secrets, CA files,
    /// certificates and keys), watched with it.
    pub files: Vec<PathBuf>,
    /// Who the admin listener answers (reloaded with the config).
    pub admin: AdminAccess,
}

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

/// `[server]` after validation and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Webhook listener addresses (a change needs a restart).
    pub listen: Vec<SocketAddr>,
    /// Worker threads (a change needs a restart).
    pub threads: usize,
    /// Whether the config file and the files it reads are watched for
    /// changes (a change needs a restart).
    pub watch_config: bool,
    /// The admin listener's address (a change needs a restart).
    pub admin_listen: Option<SocketAddr>,
    /// Where the access log goes (a change needs a restart; a file is reopened on reload).
    pub access_log: AccessLogTarget,
    /// How long requests in flight may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Limits and deadlines of the webhook listener.
    pub front: FrontDoor,
    /// Webhook listener addresses served with TLS (a change needs a restart).
    pub tls_listen: Vec<SocketAddr>,
    /// Where dedup keys and shared rate limits live (a change needs a restart).
    pub state: StateSettings,
    /// `[spool]`: where async deliveries are kept (a change needs a restart).
    pub spool: SpoolSettings,
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
}

impl Default for RetryPolicy {
    /// The defaults of `[routes.retry]`.
    fn default() -> Self {
        use crate::config::delivery as d;
        Self {
            max_attempts: d::DEFAULT_MAX_ATTEMPTS as u32,
            max_age: Duration::from_secs(d::DEFAULT_MAX_AGE_SECS),
            min_backoff: Duration::from_millis(d::DEFAULT_MIN_BACKOFF_MS),
            max_backoff: Duration::from_millis(d::DEFAULT_MAX_BACKOFF_MS),
            retry_on: RetryOn {
                classes: [false, false, false, false, false, true],
                statuses: vec![408, 429],
                timeout: true,
                connect: true,
            },
            concurrency: d::DEFAULT_CONCURRENCY as usize,
            fifo: false,
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

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// `path`: the whole path.
    Exact(String),
    /// `path_prefix`: a leading part of the path, on a segment boundary.
    Prefix(String),
}

/// Where a route forwards to, resolved and built at load time so forwarding
/// never does DNS or parses certificates.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The connection target: address, TLS and SNI, timeouts, trusted CAs
    /// (shared by the routes with the same upstream).
    pub peer: SharedPeer,
    /// Which idle connections can be reused for it (see [`crate::forward::pool::key`]).
    pub pool_key: u64,
    /// Resolved address.
    pub addr: SocketAddr,
    /// Whether to speak TLS.
    pub tls: bool,
    /// `host[:port]` as written, sent as `Host`.
    pub authority: Box<str>,
    /// Path that replaces the matched path, when the URL has one.
    pub path: Option<Box<str>>,
    /// Query to prepend to the request's query, when the URL has one.
    pub query: Option<Box<str>>,
    /// The URL as written.
    pub url: Box<str>,
}

/// One route.
#[derive(Debug)]
pub struct Route {
    /// Unique name; sent upstream as `x-webhook-route`.
    pub name: String,
    /// Lower-case host to match, without port unless written with one.
    pub host: Option<String>,
    /// Path rule.
    pub path: PathMatch,
    /// Allowed methods.
    pub methods: Arc<[Method]>,
    /// Forwarding target.
    pub upstream: Upstream,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Deadline for the whole request body.
    pub read_timeout: Duration,
    /// Deadline for the upstream's response header, and for each body read.
    pub upstream_timeout: Duration,
    /// The verifiers; any one passing admits a request.
    pub verifiers: Vec<Verifier>,
    /// Headers removed before forwarding (`strip_signature_headers`).
    pub strip_headers: Vec<HeaderName>,
    /// The URL providers call, for schemes that sign it.
    pub public_url: Option<String>,
    /// The token subscription handshakes must carry.
    pub verify_token: Option<Secret>,
    /// The route's own handshake rules (besides its schemes').
    pub handshakes: Vec<Handshake>,
    /// The top-level JSON body members its schemes and handshakes read.
    pub json_members: Arc<[String]>,
    /// Per verifier, its secrets as they may be shown (`env:`/`file:` references,
    /// literals redacted).
    pub secret_sources: Arc<[Vec<String>]>,
    /// What the route asks besides the signature and does for the app; `None`
    /// when it sets nothing of it.
    pub policy: Option<Box<Policy>>,
    /// `delivery = "async"`: how it delivers; `None` for a sync route.
    pub delivery: Option<Box<RetryPolicy>>,
    /// A digest of everything the route does, secrets included, to tell which
    /// routes a reload changed. Never shown.
    pub fingerprint: [u8; 32],
}

impl Route {
    /// The upstream path for a request whose path matched with `remainder` left over,
    /// and its query string.
    pub fn upstream_path_and_query(
        &self,
        request_path: &str,
        remainder: &str,
        query: Option<&str>,
    ) -> String {
        let mut out = match &self.upstream.path {
            Some(base) => crate::verify::request::join_path(base, remainder),
            None => request_path.to_owned(),
        };
        let queries: Vec<&str> = [self.upstream.query.as_deref(), query]
            .into_iter()
            .flatten()
            .collect();
        if !queries.is_empty() {
            out.push('?');
            out.push_str(&queries.join("&"));
        }
        out
    }
}
