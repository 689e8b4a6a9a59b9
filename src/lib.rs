//! hookgate: a webhook verification gateway on pingora.
//!
//! # Layout
//!
//! - [`config`]: `hookgate.toml` → validated [`runtime::RuntimeConfig`], with
//!   `PATH:LINE:COL` diagnostics.
//! - [`routes`]: host / path / method matching.
//! - [`scheme`]: scheme descriptors (the built-in presets and `[schemes.NAME]`).
//! - [`verify`]: signature verification and signing (pure, no I/O).
//! - [`keys`]: remote keys (certificates, JWKS): fetched over HTTPS from
//!   allowlisted hosts, cached, refreshed; handed to [`verify`].
//! - [`handshake`]: provider endpoint-verification challenges.
//! - [`headers`]: upstream header normalization.
//! - [`reject`]: error codes and their responses.
//! - [`limits`]: connections and body bytes the front door holds at once.
//! - [`policy`]: what a route asks besides the signature (allowlists, required
//!   headers, rate limits, dedup, monitor mode, re-signing).
//! - [`tls`]: certificates and TLS settings of the webhook listener.
//! - [`serve`], [`proxy`], [`body`], [`forward`], [`reload`], [`watch`],
//!   [`server`], [`shutdown`]: the pingora shell.
//! - [`spool`]: async delivery: the durable store, group commit, the deliverer.
//! - [`admin`], [`metrics`], [`access_log`], [`record`], [`log_limit`]: what
//!   an operator sees.
//! - [`demo`]: `hookgate demo-app`, a stand-in app to try the gateway with.
//!
//! # Request lifecycle
//!
//! ```text
//! request_filter:  snapshot config ─ route (404/405) ─ Content-Length (413)
//!                  ─ 100-continue ─ read whole body (413/408) ─ verify (401)
//!                  ─ handshake? answer locally : keep Verified in ctx
//! proxy_upstream_filter: normalize headers ─ Connector: write request, read
//!                  response (502/504) ─ relay status, headers, body unchanged
//! ```
//!
//! # Invariants
//!
//! - Nothing reaches the upstream before the whole body is verified: no
//!   connection, no header, no byte.
//! - A request runs on one config snapshot from start to end.
//! - The gateway's own headers are removed from the client's request before
//!   being set, so they cannot be forged.
//! - Secrets never appear in logs, errors or responses.

pub mod access_log;
pub mod admin;
pub mod body;
pub mod clock;
pub mod commands;
pub mod config;
pub mod demo;
pub mod forward;
pub mod handshake;
pub mod headers;
pub mod json;
pub mod keys;
pub mod limits;
pub mod log_limit;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod record;
pub mod reject;
pub mod reload;
pub mod response;
pub mod routes;
pub mod runtime;
pub mod scheme;
pub mod serve;
pub mod server;
pub mod shutdown;
pub mod spool;
pub mod state;
pub mod tls;
pub mod verify;
pub mod watch;
