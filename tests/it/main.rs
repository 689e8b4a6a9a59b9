//! Integration tests: the real gateway binary in front of a real upstream, on
//! loopback, spoken to over HTTP.

// The harness is one binary; `pub` items in `support` are shared between its modules only.
#![allow(unreachable_pub)]

mod support;

/// Async delivery: spool, retries, dead letters, the admin API, kill -9.
mod async_delivery;
/// Body size limits, timeouts, chunked and large bodies, 100-continue.
mod body;
/// `hookgate check`.
mod check;
/// `hookgate check` of a file without routes, and of one with type errors
/// beside other problems.
mod check_whole;
/// `/config` shows every route in one shape.
mod config_shape;
/// Dedup and the replay cache in memory.
mod delivery;
/// `hookgate demo-app` as the upstream: what it prints and answers.
mod demo_app;
/// Destinations: routing by signed event type, body and header; `filtered`.
mod destinations;
/// The Markdown tables of the README and `docs/` are whole, and their links resolve.
mod docs_tables;
/// What the upstream receives and what the client gets back; 502/504.
mod forwarding;
/// Header deadlines, idle connections, connection and memory limits,
/// pipelining, lingering close.
mod front_door;
/// Handshakes answered by the gateway.
mod handshake;
/// The modules import only downward, with no circle; the architecture page
/// draws the same floors.
mod layers;
/// Admin endpoints, metrics, access log, reloads under load, graceful shutdown.
mod ops;
/// Route policy: allow_ips, rate limits, required headers, monitor mode, re-signing.
mod policy;
/// Every built-in scheme: `hookgate sign` output accepted, forgeries refused.
mod presets;
/// Live reload on SIGHUP and file change; secret files rotated while it runs.
mod reload;
/// Remote keys: AWS SNS, PayPal and OIDC pushes verified with keys from a
/// local HTTPS key server; allowlist, caching, failures, SNS confirmation.
mod remote_keys;
/// Routing, path rewriting, 404/405.
mod routing;
/// The admin listener under attack: foreign `Host`, no token, guessable ids,
/// credentials in shown headers.
mod security_admin;
/// A dual-stack listener judges each IPv4 client by its IPv4 address.
mod security_dual_stack;
/// Handshake answers: X's CRC is no signing oracle, unsendable echoes are a
/// logged 400, `check` warns about MACs of request data, nosniff everywhere.
mod security_handshake;
/// Client-address and original-URL headers a client forges never reach the
/// app, forwarded or delivered async.
mod security_headers;
/// Idle uploads: a minimum body rate after a grace, and each client's share
/// of the in-flight body budget.
mod security_idle_uploads;
/// Duplicate JSON members a scheme reads are refused (AWS SNS `Message`).
mod security_json;
/// Remote keys under attack: cheap checks before any fetch, exact provider
/// hosts, plain paths, new fetches bounded per route.
mod security_remote_keys;
/// Only signed bytes decide: replays under new unsigned ids are duplicates,
/// and unsigned ids and types never reach the app as signed ones.
mod security_signed;
/// The gateway's own log: no service "exited" while it serves; one JSON line
/// per async delivery attempt.
mod service_log;
/// Dedup and rate limits in a real Redis shared by two gateways; Redis down.
mod shared_state;
/// `hookgate sign`: bodies sent as given, the same event signed twice is one
/// event, missing bodies and the generic scheme explained.
mod sign_command;
/// Request smuggling: framing tricks reach the upstream as one verified
/// request or not at all.
mod smuggling;
/// The local spool on a full disk (a tmpfs): refused while full, healed
/// without a restart, nothing sent twice.
mod spool_disk_full;
/// Async delivery at its edges: a graceful stop with attempts in flight, a
/// copy of a stored event, a result Redis could not record.
mod spool_durability;
/// TLS on the listener: certificates by SNI, reloads.
mod tls;
/// Upstream faults: 502/504 or a cut connection, counted by kind.
mod upstream_faults;
/// The shared conformance vectors through the HTTP pipeline.
mod vectors;
/// Signatures per scheme, rotation, tolerance; rejections never reach upstream.
mod verify;
