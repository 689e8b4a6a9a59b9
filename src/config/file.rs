//! The serde mirror of `hookgate.toml`: field for field, strict about unknown
//! keys, spans kept for diagnostics. No validation and no defaults here; see
//! `config::build` for both.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::base::one_or_many::OneOrMany;
use crate::scheme::file::{HandshakeFile, SchemeFile};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[server]`: listeners and defaults for every route.
    #[serde(default)]
    pub server: ServerSection,
    /// `[[routes]]`, in file order.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// `[schemes.NAME]`: schemes defined by this config.
    #[serde(default)]
    pub schemes: BTreeMap<String, Spanned<SchemeFile>>,
    /// `[spool]`: where async deliveries are kept.
    pub spool: Option<Spanned<SpoolSection>>,
}

/// `[spool]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    /// `local` (default): an embedded store in `dir`; `redis`: Redis Streams.
    pub backend: Option<Spanned<String>>,
    /// With `redis`: seconds a silent gateway keeps its pending deliveries. Default 15.
    pub claim_after_secs: Option<Spanned<i64>>,
    /// The store's directory (relative to the config file's). Default `spool`.
    pub dir: Option<Spanned<String>>,
    /// Bytes of deliveries kept at most. Default 10 GiB.
    pub max_bytes: Option<Spanned<i64>>,
}

/// The `[[routes]]` tables of one part of a file parsed in parts (see
/// `config::parts`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesPart {
    /// `[[routes]]`, in file order.
    pub routes: Vec<RouteSection>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address or list of addresses to serve webhooks on. Default `127.0.0.1:8080`.
    pub listen: Option<Spanned<OneOrMany<String>>>,
    /// Worker threads. Default: the number of CPUs.
    pub threads: Option<Spanned<i64>>,
    /// Largest accepted body, in bytes, for routes that do not set one. Default 1 MiB.
    pub max_body_bytes: Option<Spanned<i64>>,
    /// Deadline for receiving a whole request body, in ms. Default 10000.
    pub read_timeout_ms: Option<Spanned<i64>>,
    /// Deadline for the upstream's response header and each body read, in ms. Default 10000.
    pub upstream_timeout_ms: Option<Spanned<i64>>,
    /// Reload when the config file or a file it reads changes. Default true;
    /// SIGHUP always reloads.
    pub watch_config: Option<bool>,
    /// Address of the admin listener (`/healthz`, `/readyz`, `/metrics`,
    /// `/config`, `POST /reload`). Off when absent.
    pub admin_listen: Option<Spanned<String>>,
    /// The admin listener's bearer token: an `env:NAME` or `file:PATH`
    /// reference. Required when `admin_listen` is not a loopback address.
    pub admin_token: Option<Spanned<String>>,
    /// Host names the admin listener answers besides its own address and
    /// loopback (`localhost`, 127.0.0.0/8, `::1`).
    pub admin_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    /// `stdout` (default), `off`, or a file path for the access log.
    pub access_log: Option<Spanned<String>>,
    /// Seconds requests in flight get to finish after SIGTERM. Default 30.
    pub shutdown_grace_secs: Option<Spanned<i64>>,
    /// Deadline for a whole request header, in ms. Default 10000.
    pub header_timeout_ms: Option<Spanned<i64>>,
    /// Seconds an idle client connection is kept open. Default 60.
    pub keepalive_timeout_secs: Option<Spanned<i64>>,
    /// Client connections held at once. Default 10000.
    pub max_connections: Option<Spanned<i64>>,
    /// Largest request header, in bytes. Default 32768.
    pub max_header_bytes: Option<Spanned<i64>>,
    /// Body bytes held across all requests being read or verified. Default 256 MiB.
    pub max_inflight_body_bytes: Option<Spanned<i64>>,
    /// The share of `max_inflight_body_bytes` one client address may hold.
    /// Default: an eighth of it.
    pub max_inflight_body_bytes_per_client: Option<Spanned<i64>>,
    /// After the first 2 s of a body, the least average rate it may come at,
    /// in bytes per second; 0: no minimum. Default 1024.
    pub min_body_bytes_per_sec: Option<Spanned<i64>>,
    /// Address or list of addresses to serve webhooks on with TLS.
    pub tls_listen: Option<Spanned<OneOrMany<String>>>,
    /// `[[server.tls]]`: certificate and key pairs for `tls_listen`.
    #[serde(default)]
    pub tls: Vec<Spanned<TlsSection>>,
    /// Networks whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
    /// `[server.state]`: where dedup keys and shared rate limits live.
    pub state: Option<Spanned<StateSection>>,
    /// `[server.remote_keys]`: how provider keys are fetched and cached.
    pub remote_keys: Option<Spanned<RemoteKeysSection>>,
}

/// `[server.remote_keys]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteKeysSection {
    /// PEM file of the CAs trusted when fetching keys, instead of the system's.
    pub ca_file: Option<Spanned<String>>,
    /// Deadline of one fetch, in ms. Default 5000.
    pub timeout_ms: Option<Spanned<i64>>,
    /// Largest document, in bytes. Default 65536.
    pub max_bytes: Option<Spanned<i64>>,
    /// Documents cached at most. Default 256.
    pub max_entries: Option<Spanned<i64>>,
    /// Shortest lifetime of a cached document, in seconds. Default 60; 0 allowed.
    pub min_ttl_secs: Option<Spanned<i64>>,
    /// Longest lifetime of a cached document, in seconds. Default 86400.
    pub max_ttl_secs: Option<Spanned<i64>>,
    /// New fetches one route may start per minute (and at once). Default 10.
    pub max_fetches_per_minute: Option<Spanned<i64>>,
}

/// `[server.state]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// `redis://` or `rediss://` URL (an `env:`/`file:` reference or literal).
    pub redis_url: Option<Spanned<String>>,
    /// Deadline for each Redis call, in ms. Default 250.
    pub redis_timeout_ms: Option<Spanned<i64>>,
    /// Entries the in-memory store keeps. Default 1,000,000.
    pub max_entries: Option<Spanned<i64>>,
}

/// One `[[server.tls]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain, leaf first (relative to the config file's directory).
    pub cert_file: Spanned<String>,
    /// PEM private key of the leaf certificate.
    pub key_file: Spanned<String>,
}

/// One `[[routes]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Unique name, `[a-z0-9_-]+`.
    pub name: Spanned<String>,
    /// Exact request path.
    pub path: Option<Spanned<String>>,
    /// Path prefix; the longest matching prefix wins.
    pub path_prefix: Option<Spanned<String>>,
    /// `Host` to match; any host when absent.
    pub host: Option<Spanned<String>>,
    /// Allowed methods. Default `["POST"]`.
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    /// `http://` or `https://` URL to forward to; a path in it replaces the
    /// matched path. The short form of one destination named after the route.
    pub upstream: Option<Spanned<String>>,
    /// `[[routes.destinations]]`: where the route delivers, instead of `upstream`.
    #[serde(default)]
    pub destinations: Vec<Spanned<DestinationSection>>,
    /// Overrides `server.max_body_bytes`.
    pub max_body_bytes: Option<Spanned<i64>>,
    /// Overrides `server.read_timeout_ms`.
    pub read_timeout_ms: Option<Spanned<i64>>,
    /// Overrides `server.upstream_timeout_ms`.
    pub upstream_timeout_ms: Option<Spanned<i64>>,
    /// PEM file of CA certificates to trust for an `https` upstream instead of the system's.
    pub upstream_ca_file: Option<Spanned<String>>,
    /// The public URL providers call, for schemes that sign the URL.
    pub public_url: Option<Spanned<String>>,
    /// Remove the scheme's signature headers before forwarding. Default false.
    #[serde(default)]
    pub strip_signature_headers: bool,
    /// The token a subscription handshake must carry (Meta's `hub.verify_token`):
    /// `env:NAME`, `file:PATH` or literal.
    pub verify_token: Option<Spanned<String>>,
    /// The route's own handshake rules, in the scheme descriptor language.
    pub handshake: Option<Spanned<OneOrMany<HandshakeFile>>>,
    /// One verifier table, or several (any one passing admits the request).
    pub verify: Spanned<OneOrMany<VerifySection>>,
    /// `enforce` (default) or `monitor`: verify and count, but forward everything.
    pub mode: Option<Spanned<String>>,
    /// Networks (CIDRs or addresses) the client must be in. Default: any.
    pub allow_ips: Option<Spanned<Vec<Spanned<String>>>>,
    /// Header name → the value it must equal (`env:`, `file:` or literal).
    pub require_headers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// `[routes.rate_limit]`.
    pub rate_limit: Option<Spanned<RateLimitSection>>,
    /// `[routes.dedup]`.
    pub dedup: Option<Spanned<DedupSection>>,
    /// `closed` (default) or `open`: what to do when the shared state fails.
    pub on_state_error: Option<Spanned<String>>,
    /// `[routes.forward_signature]`.
    pub forward_signature: Option<Spanned<ForwardSignatureSection>>,
    /// `sync` (default) or `async`: persist, answer 202, deliver in the background.
    pub delivery: Option<Spanned<String>>,
    /// `[routes.retry]`: how an async route delivers.
    pub retry: Option<Spanned<RetrySection>>,
}

/// One `[[routes.destinations]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSection {
    /// Unique in the route, `[a-z0-9_-]+`.
    pub name: Spanned<String>,
    /// `http://` or `https://` URL, as a route's `upstream`.
    pub upstream: Spanned<String>,
    /// Globs on the signed event type; any type when absent.
    pub events: Option<Spanned<Vec<Spanned<String>>>>,
    /// Conditions on the signed body and headers, all of which must hold.
    pub when: Option<Spanned<Vec<Spanned<ConditionSection>>>>,
    /// `sync` or `async`; the route's `delivery` when absent.
    pub delivery: Option<Spanned<String>>,
    /// `[routes.destinations.breaker]`: rest the destination after failures.
    pub breaker: Option<Spanned<BreakerSection>>,
}

/// `[routes.destinations.breaker]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSection {
    /// Consecutive failed attempts that open it. Default 5.
    pub failures: Option<Spanned<i64>>,
    /// Seconds it stays open before one probe attempt. Default 30.
    pub cooldown_secs: Option<Spanned<i64>>,
}

/// One condition of a destination's `when`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSection {
    /// A JSON pointer into the body.
    pub json: Option<Spanned<String>>,
    /// A header name.
    pub header: Option<Spanned<String>>,
    /// The value it must equal.
    pub equals: Option<Spanned<toml::Value>>,
    /// The values it must equal one of.
    #[serde(rename = "in")]
    pub one_of: Option<Spanned<Vec<toml::Value>>>,
}

/// `[routes.retry]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts before a delivery is dead. Default 12.
    pub max_attempts: Option<Spanned<i64>>,
    /// Age after which a delivery is dead, in seconds. Default 86400.
    pub max_age_secs: Option<Spanned<i64>>,
    /// Shortest wait between attempts, in ms. Default 1000.
    pub min_backoff_ms: Option<Spanned<i64>>,
    /// Longest wait between attempts, in ms. Default 3600000.
    pub max_backoff_ms: Option<Spanned<i64>>,
    /// What is retried: `5xx`, `4xx`, a status like `429`, `timeout`, `connect`.
    pub retry_on: Option<Spanned<Vec<Spanned<String>>>>,
    /// Attempts in flight for the route. Default 8.
    pub concurrency: Option<Spanned<i64>>,
    /// `none` (default) or `fifo`: one at a time, in arrival order.
    pub ordering: Option<Spanned<String>>,
}

/// `[routes.rate_limit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Requests per second, sustained (may be fractional).
    pub per_second: Spanned<f64>,
    /// Requests allowed at once above it. Default: `per_second`, at least 1.
    pub burst: Option<Spanned<i64>>,
    /// `route` (default) or `client_ip`.
    pub by: Option<Spanned<String>>,
}

/// `[routes.dedup]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSection {
    /// How long a delivered event id is remembered, in seconds.
    pub ttl_secs: Spanned<i64>,
}

/// `[routes.forward_signature]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSignatureSection {
    /// `standard-webhooks`.
    pub scheme: Spanned<String>,
    /// The secret the app verifies with (`whsec_…` base64, `env:`, `file:`).
    pub secret: Spanned<String>,
}

/// One `[routes.verify]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
    /// The scheme's name.
    pub scheme: Spanned<String>,
    /// Secret references; any of them may have signed a delivery. Required,
    /// except for remote-key schemes, which take none (a key-endpoint scheme
    /// takes one: the API secret it asks for keys with).
    pub secrets: Option<Spanned<Vec<Spanned<String>>>>,
    /// JWT schemes: the accepted `aud` value(s).
    pub audience: Option<Spanned<OneOrMany<String>>>,
    /// JWT schemes: the accepted `iss` value(s), instead of the scheme's.
    pub issuer: Option<Spanned<OneOrMany<String>>>,
    /// JWT schemes whose issuer or JWKS URL names a tenant (`{tenant}`).
    pub tenant: Option<Spanned<String>>,
    /// JWT schemes: the JWKS URL, instead of the scheme's.
    pub jwks_url: Option<Spanned<String>>,
    /// JWT schemes: the `email` claim required (with `email_verified`).
    pub email: Option<Spanned<String>>,
    /// PayPal: the webhook's id, part of the signed content.
    pub webhook_id: Option<Spanned<String>>,
    /// Certificate schemes: the hosts allowed to serve certificates (and
    /// confirmation URLs), instead of the scheme's.
    pub key_hosts: Option<Spanned<Vec<String>>>,
    /// AWS SNS: the accepted `TopicArn` values; any topic when absent.
    pub topic_arns: Option<Spanned<Vec<String>>>,
    /// Key-endpoint schemes (Plaid): the API client id the key endpoint is
    /// asked with (with the one `secrets` entry).
    pub client_id: Option<Spanned<String>>,
    /// Key-endpoint schemes: the endpoint's `https://` URL, instead of the
    /// scheme's (on one of its hosts, or of `key_hosts`).
    pub key_endpoint: Option<Spanned<String>>,
    /// `hmac`: the signature header.
    pub header: Option<Spanned<String>>,
    /// `hmac`: `sha1`, `sha256` (default) or `sha512`.
    pub algorithm: Option<Spanned<String>>,
    /// `hmac`: `hex` (default) or `base64`.
    pub encoding: Option<Spanned<String>>,
    /// `hmac`: text before the encoded MAC, e.g. `sha256=`. Default empty.
    pub prefix: Option<Spanned<String>>,
    /// `hmac`: signed-content template. Default `{body}`.
    pub payload: Option<Spanned<String>>,
    /// `hmac`: header holding the timestamp (unix seconds) for `{timestamp}`.
    pub timestamp_header: Option<Spanned<String>>,
    /// `hmac`: header holding the event id for `{id}`.
    pub id_header: Option<Spanned<String>>,
    /// Replay window in seconds, both ways; only for a signed timestamp. 0 turns it off.
    pub tolerance_secs: Option<Spanned<i64>>,
}
