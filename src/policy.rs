//! What a route asks of a delivery besides its signature, and what it does
//! for the app: the client addresses it admits (`allow_ips`), the headers a
//! sender must present (`require_headers`), its rate limit, its replay cache
//! (`dedup`), what happens when the shared state fails (`on_state_error`),
//! shadow mode (`mode = "monitor"`), and re-signing for the app
//! (`forward_signature`). Built and checked with the config; pure data.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use crate::config::secret::Secret;
use crate::verify::mac::KeyedMac;

/// A route's policy; every part optional.
#[derive(Debug, Default)]
pub struct Policy {
    /// `mode = "monitor"`: verify and count, but forward everything.
    pub monitor: bool,
    /// Networks the client must be in; empty: any.
    pub allow_ips: Vec<IpNet>,
    /// Headers each request must carry, with the value each must equal.
    pub require_headers: Vec<RequiredHeader>,
    /// The route's rate limit.
    pub rate_limit: Option<RateLimit>,
    /// How long a delivered event id is remembered (`[routes.dedup] ttl_secs`).
    pub dedup: Option<Duration>,
    /// What to do when the shared state (Redis) fails.
    pub on_state_error: OnStateError,
    /// Re-signing every forwarded request for the app.
    pub forward_signature: Option<ForwardSignature>,
}

impl Policy {
    /// Whether a client at `ip` may deliver to the route.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.allow_ips.is_empty() || self.allow_ips.iter().any(|net| net.contains(&ip))
    }
}

/// One `require_headers` entry.
#[derive(Debug)]
pub struct RequiredHeader {
    /// The header.
    pub name: HeaderName,
    /// The value it must equal (compared in constant time).
    pub value: Secret,
    /// The value's reference as it may be shown (`env:`/`file:`, literals redacted).
    pub source: String,
}

/// `[routes.rate_limit]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// What is limited: the route as a whole, or each client address.
    pub by: LimitBy,
}

/// What a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitBy {
    /// Every request to the route.
    Route,
    /// Each client address's requests to the route.
    ClientIp,
}

impl LimitBy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::ClientIp => "client_ip",
        }
    }
}

/// `on_state_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStateError {
    /// Refuse with 503 `state_unavailable` (the provider retries later).
    #[default]
    Closed,
    /// Forward without dedup or shared limits.
    Open,
}

impl OnStateError {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
        }
    }
}

/// `[routes.forward_signature]`: Standard Webhooks signing under the route's
/// own secret.
#[derive(Debug)]
pub struct ForwardSignature {
    /// HMAC-SHA256 keyed with the secret (`whsec_` base64 decoded when so written).
    pub key: KeyedMac,
    /// The secret's reference as it may be shown.
    pub source: String,
}
