//! Header normalization for the upstream request: drop hop-by-hop headers and
//! every client-sent copy of the gateway's own headers, then set ours. A client
//! can never forge what the upstream reads in these headers.

use std::net::IpAddr;

use http::{HeaderName, HeaderValue, Uri, Version};
use pingora::http::RequestHeader;

use crate::verify::Verified;

/// The scheme that verified the request.
pub const VERIFIED: &str = "x-webhook-verified";
/// The route's name.
pub const ROUTE: &str = "x-webhook-route";
/// The event id.
pub const EVENT_ID: &str = "webhook-id";
/// The event time, unix seconds.
pub const EVENT_TIMESTAMP: &str = "webhook-timestamp";
/// The event type.
pub const EVENT_TYPE: &str = "x-webhook-event-type";
/// The client's address.
pub const FORWARDED_FOR: &str = "x-forwarded-for";
/// The scheme the client used.
pub const FORWARDED_PROTO: &str = "x-forwarded-proto";
/// The `Host` the client sent.
pub const FORWARDED_HOST: &str = "x-forwarded-host";

/// Headers only the gateway may set; client copies are always removed.
pub const RESERVED: [&str; 8] = [
    VERIFIED,
    ROUTE,
    EVENT_ID,
    EVENT_TIMESTAMP,
    EVENT_TYPE,
    FORWARDED_FOR,
    FORWARDED_PROTO,
    FORWARDED_HOST,
];

/// Connection-level headers (RFC 9110 §7.6.1), plus `Expect` (the gateway has
/// already consumed the body) and the framing headers it sets itself.
const HOP_BY_HOP: [&str; 12] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "expect",
    "content-length",
];

/// What the upstream request is built from besides the client's headers.
#[derive(Debug)]
pub struct Forwarding<'a> {
    /// The route's name.
    pub route: &'a str,
    /// The verification result.
    pub verified: &'a Verified,
    /// The client's IP address.
    pub client_ip: Option<IpAddr>,
    /// Headers the route strips (`strip_signature_headers`).
    pub strip: &'a [HeaderName],
    /// `Host` for the upstream.
    pub upstream_authority: &'a str,
    /// Path and query for the upstream.
    pub path_and_query: &'a str,
    /// Exact body length.
    pub body_len: usize,
}

/// Builds the upstream request header from the client's. Header-name case is
/// kept for everything passed through.
pub fn upstream_request(
    downstream: &RequestHeader,
    f: &Forwarding<'_>,
) -> pingora::Result<RequestHeader> {
    let mut req = downstream.clone();
    let uri: Uri = f.path_and_query.parse().map_err(|e| {
        pingora::Error::because(pingora::ErrorType::InternalError, "upstream path", e)
    })?;
    req.set_uri(uri);
    req.set_version(Version::HTTP_11);

    let nominated: Vec<String> = downstream
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect();
    for name in nominated
        .iter()
        .map(String::as_str)
        .chain(HOP_BY_HOP)
        .chain(RESERVED)
    {
        req.remove_header(name);
    }
    for name in f.strip {
        req.remove_header(name);
    }

    req.insert_header(http::header::HOST, f.upstream_authority)?;
    req.insert_header(http::header::CONTENT_LENGTH, f.body_len)?;
    req.insert_header(VERIFIED, f.verified.scheme().name.as_str())?;
    req.insert_header(ROUTE, f.route)?;
    if let Some(id) = f.verified.id().and_then(|v| HeaderValue::from_str(v).ok()) {
        req.insert_header(EVENT_ID, id)?;
    }
    if let Some(ts) = f.verified.timestamp() {
        req.insert_header(EVENT_TIMESTAMP, ts.to_string())?;
    }
    if let Some(t) = f
        .verified
        .event_type()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        req.insert_header(EVENT_TYPE, t)?;
    }
    if let Some(ip) = f.client_ip {
        req.insert_header(FORWARDED_FOR, ip.to_string())?;
    }
    req.insert_header(FORWARDED_PROTO, "http")?;
    if let Some(host) = downstream.headers.get(http::header::HOST) {
        req.insert_header(FORWARDED_HOST, host.clone())?;
    }
    Ok(req)
}

/// Hop-by-hop headers never relayed from the upstream's response. Framing
/// (`Content-Length`, `Transfer-Encoding`) is kept: the downstream writer uses it.
pub const RESPONSE_HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

#[cfg(test)]
mod tests;
