//! hookgate: a webhook verification gateway on pingora.
//!
//! # Layout
//!
//! The modules stand in floors and import only from their own floor and
//! below, never in a circle (`tests/it/layers.rs` keeps it so;
//! `docs/architecture.md` says each module's job):
//!
//! ```text
//! 11  shell      proxy/  serve/  server  shutdown  commands  demo
//! 10  services   spool/  reload  admin/
//!  9  config/    hookgate.toml → Builder → RuntimeConfig
//!  8  runtime    RuntimeConfig + ConfigStore
//!  7  routes     Route, PathMatch, RouteTable
//!  6  I/O        forward/  keys/  state/  body
//!  5  observe/   record, metrics, access log, limits, in flight, Observers
//!  4  judging    handshake  headers  policy  reject
//!  3  verify/    pure checks: Verified / Rejection
//!  2  scheme/    descriptors as data;  destinations/  which events each wants
//!  1  leaves     clock  json/  log_limit  mac  response  tls/  watch
//!  0  base/      settings, secrets, diagnostics, OneOrMany
//! ```
//!
//! # Request lifecycle
//!
//! ```text
//! proxy::serve   decide: snapshot config ─ route (404/405) ─ admit: policy
//!                  (403/429/401), Content-Length (413), 100-continue ─ read
//!                  the whole body (413/408) ─ remote keys ─ judge: verify (401)
//!                  or answer a handshake
//!                deliver: dedup (duplicate / 409) ─ route: no destination
//!                  wants it (200 filtered) ─ answer locally, or
//!                  forward (502/504) and settle the claim, or enqueue in the
//!                  spool and answer 202 ─ log
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

pub mod admin;
pub mod base;
pub mod body;
pub mod clock;
pub mod commands;
pub mod config;
pub mod demo;
pub mod destinations;
pub mod forward;
pub mod handshake;
pub mod headers;
pub mod json;
pub mod keys;
pub mod log_limit;
pub mod mac;
pub mod observe;
pub mod policy;
pub mod proxy;
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
