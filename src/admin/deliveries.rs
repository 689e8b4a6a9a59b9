//! The admin API over async deliveries: `GET /deliveries?route=R&status=S`,
//! `GET /deliveries/{id}`, `POST /deliveries/{id}/retry` and
//! `DELETE /deliveries/{id}`. Header values are shown only for a fixed list
//! of headers that carry no credential ([`SHOWN_HEADERS`]); every other value
//! is redacted, whatever the route.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::Answer;
use super::config_view::{REDACTED, rfc3339};
use crate::spool::{self, AdminError, DeliveryId, MAX_LISTED, Meta, Spool, Status};

/// The headers whose values `/deliveries/{id}` shows: standard headers that
/// describe the body or the client, and the gateway's own. Any other may carry
/// a credential (`X-Api-Key`, `X-Auth-Token`, a token scheme's secret, a
/// signature): its value is `[redacted]`.
pub const SHOWN_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "traceparent",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "webhook-id",
    "webhook-timestamp",
    "x-webhook-attempt",
    "x-webhook-destination",
    "x-webhook-event-time",
    "x-webhook-event-type",
    "x-webhook-route",
    "x-webhook-unsigned-event-type",
    "x-webhook-unsigned-id",
    "x-webhook-verification",
    "x-webhook-verified",
];

/// Answers a request for `/deliveries…`, or `None` for any other path.
pub async fn answer(
    spool: &Spool,
    method: &str,
    path: &str,
    query: Option<&str>,
) -> Option<Answer> {
    let rest = path.strip_prefix("/deliveries")?;
    let answer = match (method, rest) {
        ("GET" | "HEAD", "" | "/") => list(spool, query).await,
        (_, "" | "/") => not_allowed(),
        _ => {
            let rest = rest.strip_prefix('/')?;
            let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
            let Some(id) = DeliveryId::parse(id) else {
                return Some(Answer::json(404, &json!({"error": "not_found"})));
            };
            match (method, action) {
                ("GET" | "HEAD", "") => show(spool, id).await,
                ("DELETE", "") => done(spool.delete(id).await, "deleted"),
                ("POST", "retry") => done(spool.retry(id).await, "retrying"),
                (_, "" | "retry") => not_allowed(),
                _ => Answer::json(404, &json!({"error": "not_found"})),
            }
        }
    };
    Some(answer)
}

fn not_allowed() -> Answer {
    Answer::json(405, &json!({"error": "method_not_allowed"}))
}

async fn list(spool: &Spool, query: Option<&str>) -> Answer {
    let mut route = None;
    let mut status = None;
    let mut limit = MAX_LISTED;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "route" => route = Some(value.into_owned()),
            "status" => match &*value {
                "pending" => status = Some(Status::Pending),
                "dead" => status = Some(Status::Dead),
                _ => return Answer::json(400, &json!({"error": "bad_request"})),
            },
            "limit" => match value.parse::<usize>() {
                Ok(n) => limit = n.min(MAX_LISTED),
                Err(_) => return Answer::json(400, &json!({"error": "bad_request"})),
            },
            _ => {}
        }
    }
    match spool.list(route.as_deref(), status, limit).await {
        Ok(listed) => Answer::json(200, &Value::Array(listed.iter().map(summary).collect())),
        Err(e) => unavailable(&e),
    }
}

async fn show(spool: &Spool, id: DeliveryId) -> Answer {
    let (meta, in_flight) = match spool.get(id).await {
        Ok(Some(found)) => found,
        Ok(None) => return Answer::json(404, &json!({"error": "not_found"})),
        Err(e) => return unavailable(&e),
    };
    let mut out = summary(&meta);
    out["in_flight"] = json!(in_flight);
    match spool.request(id.number).await {
        Ok(Some(request)) => {
            out["method"] = json!(request.method);
            out["path"] = json!(request.path);
            out["headers"] = request
                .header_lines()
                .map(|(name, value)| json!([name, shown_value(&name, value)]))
                .collect();
        }
        Ok(None) => {}
        Err(e) => log::warn!("admin: {e}"),
    }
    Answer::json(200, &out)
}

/// A header's value as shown: itself for [`SHOWN_HEADERS`], else redacted.
fn shown_value(name: &str, value: String) -> String {
    if SHOWN_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
        value
    } else {
        REDACTED.to_owned()
    }
}

fn done(result: Result<Meta, AdminError>, what: &str) -> Answer {
    match result {
        Ok(meta) => {
            let mut out = summary(&meta);
            out["result"] = json!(what);
            Answer::json(200, &out)
        }
        Err(AdminError::NotFound) => Answer::json(404, &json!({"error": "not_found"})),
        Err(AdminError::InFlight) => Answer::json(409, &json!({"error": "attempt_in_flight"})),
        Err(AdminError::Failed(e)) => unavailable(&e),
    }
}

fn unavailable(e: &spool::store::StoreError) -> Answer {
    log::error!("admin: {e}");
    Answer::json(503, &json!({"error": "spool_unavailable"}))
}

/// A delivery as listed.
fn summary(meta: &Meta) -> Value {
    let time = |ms: u64| rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
    json!({
        "id": meta.shown_id(),
        "route": meta.route,
        "status": meta.status.as_str(),
        "attempts": meta.attempts,
        "last_error": meta.last_error,
        "last_status": meta.last_status,
        "event_id": meta.event_id,
        "body_bytes": meta.body_bytes,
        "created_at": time(meta.created_ms),
        "next_attempt_at": (meta.status == Status::Pending).then(|| time(meta.next_ms)),
    })
}
