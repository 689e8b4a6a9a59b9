//! The running config as `/config` shows it: every setting an operator needs to
//! see what is live, and no secret. Secrets appear only as their `env:`/`file:`
//! reference; literal secrets, verify tokens and upstream query strings as
//! `[redacted]`.

use std::time::SystemTime;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::base::settings::{AdminAccess, RetryPolicy, SpoolBackend};
use crate::destinations::{Field, Glob, Test};
use crate::observe::access_log::Target;
use crate::policy::Policy;
use crate::routes::{PathMatch, Route};
use crate::runtime::{RuntimeConfig, ServerSettings};
use crate::scheme::remote::HostPattern;
use crate::verify::remote::RemoteParams;

/// Shown in place of anything secret.
pub const REDACTED: &str = "[redacted]";

/// RFC 3339 UTC time.
pub fn rfc3339(time: SystemTime) -> String {
    OffsetDateTime::from(time)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The whole view.
pub fn render(config: &RuntimeConfig) -> Value {
    json!({
        "generation": config.generation,
        "loaded_at": rfc3339(config.loaded_at),
        "source": config.source.display().to_string(),
        "server": with_admin(server(&config.server), &config.admin),
        "trusted_proxies": config.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "routes": config.routes.iter().map(|r| route(r)).collect::<Vec<_>>(),
    })
}

fn server(s: &ServerSettings) -> Value {
    let access_log = match &s.access_log {
        Target::Off => "off".to_owned(),
        Target::Stdout => "stdout".to_owned(),
        Target::File(path) => path.display().to_string(),
    };
    json!({
        "listen": s.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "admin_listen": s.admin_listen.map(|a| a.to_string()),
        "threads": s.threads,
        "watch_config": s.watch_config,
        "access_log": access_log,
        "shutdown_grace_secs": s.shutdown_grace.as_secs(),
        "header_timeout_ms": s.front.header_timeout.as_millis(),
        "keepalive_timeout_secs": s.front.keepalive_timeout.as_secs(),
        "max_connections": s.front.max_connections,
        "max_header_bytes": s.front.max_header_bytes,
        "max_inflight_body_bytes": s.front.max_inflight_body_bytes,
        "max_inflight_body_bytes_per_client": s.front.max_inflight_body_bytes_per_client,
        "min_body_bytes_per_sec": s.front.min_body_bytes_per_sec,
        "state": {
            "redis_url": s.state.redis.as_ref().map(|r| r.shown.as_str()),
            "redis_timeout_ms": s.state.timeout.as_millis(),
            "max_entries": s.state.max_entries,
        },
        "spool": match &s.spool.backend {
            SpoolBackend::Local(dir) => json!({
                "backend": "local",
                "dir": dir.display().to_string(),
                "max_bytes": s.spool.max_bytes,
            }),
            SpoolBackend::Redis(fleet) => json!({
                "backend": "redis",
                "claim_after_secs": fleet.claim_after.as_secs(),
                "max_bytes": s.spool.max_bytes,
            }),
        },
    })
}

/// `server` with who the admin listener answers: the token's reference
/// (never the token) and the extra host names.
fn with_admin(mut server: Value, admin: &AdminAccess) -> Value {
    server["admin_token"] = json!(admin.token_source);
    server["admin_hosts"] = json!(admin.hosts);
    server
}

/// The route's policy as it may be shown: references, never secrets.
fn policy(p: &Policy) -> Value {
    json!({
        "mode": if p.monitor { "monitor" } else { "enforce" },
        "allow_ips": p.allow_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "require_headers": p.require_headers.iter()
            .map(|h| (h.name.as_str().to_owned(), json!(h.source)))
            .collect::<serde_json::Map<_, _>>(),
        "rate_limit": p.rate_limit.map(|l| json!({
            "per_second": l.per_second,
            "burst": l.burst,
            "by": l.by.as_str(),
        })),
        "dedup": p.dedup.map(|ttl| json!({ "ttl_secs": ttl.as_secs() })),
        "on_state_error": p.on_state_error.as_str(),
        "forward_signature": p.forward_signature.as_ref().map(|f| json!({
            "scheme": "standard-webhooks",
            "secret": f.source,
        })),
    })
}

/// A remote-key verifier's settings; none of them is secret (a key
/// endpoint's API secret is among the verifier's `secrets`, shown as those are).
fn remote_view(p: &RemoteParams) -> Value {
    json!({
        "key_hosts": p.hosts.iter().map(HostPattern::as_str).collect::<Vec<_>>(),
        "jwks_url": p.jwks_url.as_ref().map(ToString::to_string),
        "key_endpoint": p.key_endpoint.as_ref().map(ToString::to_string),
        "client_id": p.credentials.as_ref().map(|c| c.client_id.as_str()),
        "audience": p.audiences,
        "issuer": p.issuers,
        "email": p.email,
        "webhook_id": p.webhook_id,
        "expect": p.expect.iter().map(|(source, values)| json!({
            "field": source.to_string(),
            "values": values,
        })).collect::<Vec<_>>(),
    })
}

fn route(r: &Route) -> Value {
    let mut out = json!({
        "name": r.name,
        "host": r.host,
        "methods": r.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "upstream": upstream_url(&r.upstream.url),
        "max_body_bytes": r.max_body_bytes,
        "read_timeout_ms": r.read_timeout.as_millis(),
        "upstream_timeout_ms": r.upstream_timeout.as_millis(),
        "public_url": r.public_url,
        "strip_headers": r.strip_headers.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
        "verify": r.verifiers.iter().zip(r.secret_sources.iter()).map(|(v, secrets)| {
            let mut view = json!({
                "scheme": v.scheme().name,
                "secrets": secrets,
                "tolerance_secs": v.tolerance_secs(),
            });
            view["remote_keys"] = v.remote_params().map_or(Value::Null, remote_view);
            view
        }).collect::<Vec<_>>(),
        "verify_token": r.verify_token.as_ref().map(|_| REDACTED),
        "handshakes": r.handshakes.len(),
        "delivery": if r.delivery.is_some() { "async" } else { "sync" },
        "destinations": [destination_view(r)],
    });
    // One shape for every route: what a route does not set shows as its
    // default (policy) or `null`, never as a missing key.
    out["retry"] = r.delivery.as_deref().map_or(Value::Null, retry_view);
    let (path, path_prefix) = match &r.path {
        PathMatch::Exact(path) => (Some(path), None),
        PathMatch::Prefix(path) => (None, Some(path)),
    };
    out["path"] = json!(path);
    out["path_prefix"] = json!(path_prefix);
    let defaults = Policy::default();
    if let (Value::Object(out), Value::Object(keys)) =
        (&mut out, policy(r.policy.as_deref().unwrap_or(&defaults)))
    {
        out.extend(keys);
    }
    out
}

/// A route's one destination: its name, upstream and filter.
fn destination_view(r: &Route) -> Value {
    let filter = r.filter.as_deref();
    let when = filter.map_or(&[][..], |f| &f.when[..]);
    json!({
        "name": r.destination,
        "upstream": upstream_url(&r.upstream.url),
        "events": filter.filter(|f| !f.events.is_empty())
            .map(|f| f.events.iter().map(Glob::as_str).collect::<Vec<_>>()),
        "when": when.iter().map(|c| {
            let mut view = match &c.field {
                Field::Json(pointer) => json!({ "json": pointer.as_str() }),
                Field::Header(name) => json!({ "header": name.as_str() }),
            };
            match &c.test {
                Test::Equals(value) => view["equals"] = value.clone(),
                Test::In(values) => view["in"] = json!(values),
            }
            view
        }).collect::<Vec<_>>(),
    })
}

/// An async route's `[routes.retry]`, as written.
fn retry_view(p: &RetryPolicy) -> Value {
    let mut retry_on: Vec<String> = (1..6)
        .filter(|&class| p.retry_on.classes[class])
        .map(|class| format!("{class}xx"))
        .collect();
    retry_on.extend(p.retry_on.statuses.iter().map(ToString::to_string));
    retry_on.extend(p.retry_on.timeout.then(|| "timeout".to_owned()));
    retry_on.extend(p.retry_on.connect.then(|| "connect".to_owned()));
    json!({
        "max_attempts": p.max_attempts,
        "max_age_secs": p.max_age.as_secs(),
        "min_backoff_ms": p.min_backoff.as_millis(),
        "max_backoff_ms": p.max_backoff.as_millis(),
        "retry_on": retry_on,
        "concurrency": p.concurrency,
        "ordering": if p.fifo { "fifo" } else { "none" },
    })
}

/// The upstream URL with its query (which may carry a token) redacted.
fn upstream_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?{REDACTED}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_references_and_hides_secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "file-secret-value\n").unwrap();
        let text = r#"
            [[routes]]
            name = "meta"
            path_prefix = "/meta"
            upstream = "http://127.0.0.1:9/in?token=upstream-token"
            verify_token = "token-value"
            [[routes.verify]]
            scheme = "meta"
            secrets = ["file:secret", "literal-secret-value"]
        "#;
        let path = dir.path().join("hookgate.toml");
        let config = crate::config::load_str(&path, text).unwrap().config;
        let view = render(&config);
        let shown = view.to_string();
        for secret in [
            "env-secret-value",
            "literal-secret-value",
            "token-value",
            "upstream-token",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        let route = &view["routes"][0];
        assert_eq!(
            route["verify"][0]["secrets"],
            json!(["file:secret", REDACTED])
        );
        assert_eq!(route["verify_token"], REDACTED);
        assert_eq!(route["path_prefix"], "/meta");
        assert_eq!(route["upstream"], "http://127.0.0.1:9/in?[redacted]");
        assert_eq!(view["generation"], 1);
        assert_eq!(view["source"], path.display().to_string());
    }

    #[test]
    fn shows_what_remote_key_routes_accept() {
        let text = r#"
            [[routes]]
            name = "sns"
            path = "/sns"
            upstream = "http://127.0.0.1:9/in"
            [routes.verify]
            scheme = "aws-sns"
            topic_arns = ["arn:aws:sns:us-east-1:1:t"]
            [[routes]]
            name = "push"
            path = "/push"
            upstream = "http://127.0.0.1:9/in"
            [routes.verify]
            scheme = "google-pubsub-push"
            audience = "https://h/push"
        "#;
        let config = crate::config::load_str(std::path::Path::new("c.toml"), text)
            .unwrap()
            .config;
        let view = render(&config);
        let sns = &view["routes"][0]["verify"][0]["remote_keys"];
        assert_eq!(
            sns["key_hosts"],
            json!([
                "sns.{aws-region}.amazonaws.com",
                "sns.{aws-cn-region}.amazonaws.com.cn"
            ])
        );
        assert_eq!(
            sns["expect"],
            json!([{"field": "json:/TopicArn", "values": ["arn:aws:sns:us-east-1:1:t"]}])
        );
        let push = &view["routes"][1]["verify"][0];
        assert_eq!(push["secrets"], json!([]));
        assert_eq!(push["remote_keys"]["audience"], json!(["https://h/push"]));
        assert_eq!(
            push["remote_keys"]["jwks_url"],
            "https://www.googleapis.com/oauth2/v3/certs"
        );
    }
}
