//! Header normalization for the upstream request: drop hop-by-hop headers and
//! every client-sent copy of the gateway's own headers, then set ours. A client
//! can never forge what the upstream reads in these headers.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use crate::mac::KeyedMac;
use crate::verify::Verified;

/// The scheme that verified the request.
pub const VERIFIED: &str = "x-webhook-verified";
/// The route's name.
pub const ROUTE: &str = "x-webhook-route";
/// The event id, from signed bytes only.
pub const EVENT_ID: &str = "webhook-id";
/// The event time, unix seconds, from signed bytes only.
pub const EVENT_TIMESTAMP: &str = "webhook-timestamp";
/// The event type, from signed bytes only.
pub const EVENT_TYPE: &str = "x-webhook-event-type";
/// The provider's id where the scheme carries it outside the signed bytes
/// (informational: never used for dedup or as `webhook-id`).
pub const UNSIGNED_ID: &str = "x-webhook-unsigned-id";
/// The provider's event type where the scheme carries it outside the signed bytes.
pub const UNSIGNED_EVENT_TYPE: &str = "x-webhook-unsigned-event-type";
/// The client's address.
pub const FORWARDED_FOR: &str = "x-forwarded-for";
/// The scheme the client used.
pub const FORWARDED_PROTO: &str = "x-forwarded-proto";
/// The `Host` the client sent.
pub const FORWARDED_HOST: &str = "x-forwarded-host";
/// Monitor mode: why verification failed.
pub const VERIFICATION: &str = "x-webhook-verification";
/// With `forward_signature`: the event time, unix seconds.
pub const EVENT_TIME: &str = "x-webhook-event-time";
/// With `forward_signature`: the Standard Webhooks signature.
pub const SIGNATURE: &str = "webhook-signature";
/// Async delivery: the attempt number, from 1.
pub const ATTEMPT: &str = "x-webhook-attempt";

/// Headers only the gateway may set; client copies are always removed.
pub const RESERVED: [&str; 13] = [
    VERIFIED,
    ROUTE,
    EVENT_ID,
    EVENT_TIMESTAMP,
    EVENT_TYPE,
    UNSIGNED_ID,
    UNSIGNED_EVENT_TYPE,
    FORWARDED_FOR,
    FORWARDED_PROTO,
    FORWARDED_HOST,
    VERIFICATION,
    EVENT_TIME,
    ATTEMPT,
];

/// Headers through which proxies tell an app who the client is, or which
/// scheme, host, port, path or URL it asked for. A client can write any of
/// them, and an app behind the gateway may believe them, so none is forwarded:
/// the gateway's own `x-forwarded-for`, `-proto` and `-host` say it instead.
/// Every other `x-forwarded-*` header is dropped as well.
pub const CLIENT_CLAIMS: [&str; 18] = [
    "forwarded",
    "x-forwarded",
    "forwarded-for",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "x-original-host",
    "x-host",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-url-scheme",
    "front-end-https",
];

/// Whether a client header never goes upstream as sent: connection-level
/// headers (RFC 9110 §7.6.1), `Expect` (the gateway has already consumed the
/// body), the framing the gateway sets itself, the gateway's own headers and
/// the [`CLIENT_CLAIMS`] (with every `x-forwarded-*`).
/// A name is also dropped when it is one of these with `_` for `-`: CGI-style
/// servers (WSGI, Rack, PHP) read `X_Webhook_Verified` as `X-Webhook-Verified`
/// and some read `Transfer_Encoding` as framing.
fn is_dropped(name: &str) -> bool {
    is_dropped_spelling(&spelled(name))
}

/// A lower-case header name as CGI-style servers read it: `_` for `-`.
fn spelled(name: &str) -> Cow<'_, str> {
    if name.contains('_') {
        Cow::Owned(name.replace('_', "-"))
    } else {
        Cow::Borrowed(name)
    }
}

fn is_dropped_spelling(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "http2-settings"
            | "expect"
            | "content-length"
            | "host"
    ) || RESERVED.contains(&name)
        || name.starts_with("x-forwarded-")
        || CLIENT_CLAIMS.contains(&name)
}

/// Whether a client header is a copy of the re-signed request's
/// `webhook-signature` (in either spelling).
fn is_signature(name: &str) -> bool {
    spelled(name) == SIGNATURE
}

/// What verification made of a forwarded request.
#[derive(Debug, Clone, Copy)]
pub enum Verdict<'a> {
    /// It verified.
    Verified(&'a Verified),
    /// Monitor mode: it did not, for this reason; forwarded all the same.
    Failed(&'a str),
}

/// Re-signing for the app (`forward_signature`): the key, and the time of
/// forwarding in unix seconds.
#[derive(Debug, Clone, Copy)]
pub struct Resign<'a> {
    /// HMAC-SHA256 keyed with the route's secret.
    pub key: &'a KeyedMac,
    /// Now.
    pub now: i64,
}

/// What the upstream request is built from besides the client's headers.
#[derive(Debug)]
pub struct Forwarding<'a> {
    /// The route's name.
    pub route: &'a str,
    /// The verification result.
    pub verdict: Verdict<'a>,
    /// Re-signing, for a route with `forward_signature` (verified requests only).
    pub resign: Option<Resign<'a>>,
    /// `X-Forwarded-For`: the client's IP address, or the chain a trusted
    /// proxy vouched for with the proxy appended.
    pub client_ip: Option<&'a str>,
    /// Whether the client spoke TLS to the gateway.
    pub tls: bool,
    /// Headers the route strips (`strip_signature_headers`).
    pub strip: &'a [HeaderName],
    /// `Host` for the upstream.
    pub upstream_authority: &'a str,
    /// Path and query for the upstream.
    pub path_and_query: &'a str,
    /// The exact body.
    pub body: &'a [u8],
}

/// The upstream request target holds a byte HTTP/1.1 forbids there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTarget;

impl std::fmt::Display for InvalidTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream request target holds a control character or a space")
    }
}

/// Writes the upstream request's head (request line, headers, blank line) as
/// HTTP/1.1 into `out`, from the client's request as pingora parsed it: the
/// client's headers in their order and case, minus hop-by-hop ones, client
/// copies of the gateway's headers and the route's stripped headers; then the
/// gateway's own. Values were validated by the parser (the client's) or are
/// checked here (the event id and type), so nothing can break the framing.
pub fn write_upstream_head(
    downstream: &RequestHeader,
    f: &Forwarding<'_>,
    out: &mut BytesMut,
) -> Result<(), InvalidTarget> {
    write_request_line(downstream.method.as_str(), f.path_and_query, out)?;
    write_headers(downstream, f, Some(f.upstream_authority), out);
    out.put_slice(b"\r\n");
    Ok(())
}

/// Writes `METHOD TARGET HTTP/1.1`; refuses a target HTTP/1.1 forbids.
pub fn write_request_line(
    method: &str,
    path_and_query: &str,
    out: &mut BytesMut,
) -> Result<(), InvalidTarget> {
    if path_and_query.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(InvalidTarget);
    }
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(path_and_query.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    Ok(())
}

/// The header lines [`write_upstream_head`] writes, without `Host` (an async
/// delivery is kept this way and gets the `Host` of the route's upstream at
/// each attempt, as the running config has it then).
pub fn write_forwarded_headers(downstream: &RequestHeader, f: &Forwarding<'_>, out: &mut BytesMut) {
    write_headers(downstream, f, None, out);
}

/// Writes `Host` followed by one more header line and `block`, header lines as
/// [`write_forwarded_headers`] wrote them, and the blank line.
pub fn write_stored_head(host: &str, extra: (&str, &str), block: &[u8], out: &mut BytesMut) {
    header(out, b"Host", host.as_bytes());
    header(out, extra.0.as_bytes(), extra.1.as_bytes());
    out.put_slice(block);
    out.put_slice(b"\r\n");
}

fn write_headers(
    downstream: &RequestHeader,
    f: &Forwarding<'_>,
    host: Option<&str>,
    out: &mut BytesMut,
) {
    let nominated = nominated_by_connection(downstream);
    let mut pass = |name: &HeaderName, wire_name: &[u8], value: &HeaderValue| {
        let lower = name.as_str();
        if is_dropped(lower)
            || nominated.iter().any(|n| n.eq_ignore_ascii_case(lower))
            || f.strip.contains(name)
            || (f.resign.is_some() && is_signature(lower))
        {
            return;
        }
        header(out, wire_name, value.as_bytes());
    };
    if downstream.has_case() {
        for ((name, value), (case, _)) in
            downstream.headers.iter().zip(downstream.case_header_iter())
        {
            pass(name, case.as_slice(), value);
        }
    } else {
        for (name, value) in &downstream.headers {
            pass(name, name.as_str().as_bytes(), value);
        }
    }

    if let Some(host) = host {
        header(out, b"Host", host.as_bytes());
    }
    header(
        out,
        b"Content-Length",
        itoa::Buffer::new().format(f.body.len()).as_bytes(),
    );
    header(out, ROUTE.as_bytes(), f.route.as_bytes());
    match f.verdict {
        Verdict::Verified(verified) => write_verified(out, verified, f),
        Verdict::Failed(reason) => {
            out.put_slice(VERIFICATION.as_bytes());
            out.put_slice(b": failed; reason=");
            out.put_slice(reason.as_bytes());
            out.put_slice(b"\r\n");
        }
    }
    if let Some(ip) = f.client_ip {
        header(out, FORWARDED_FOR.as_bytes(), ip.as_bytes());
    }
    let proto: &[u8] = if f.tls { b"https" } else { b"http" };
    header(out, FORWARDED_PROTO.as_bytes(), proto);
    if let Some(host) = downstream.headers.get(http::header::HOST) {
        header(out, FORWARDED_HOST.as_bytes(), host.as_bytes());
    }
}

/// The gateway's headers for a verified request: the scheme, the event's
/// signed id, time and type, and apart from them its unsigned id and type;
/// re-signed for the app when the route asks for it.
fn write_verified(out: &mut BytesMut, verified: &Verified, f: &Forwarding<'_>) {
    header(out, VERIFIED.as_bytes(), verified.scheme().name.as_bytes());
    let id = verified.id().filter(|v| is_header_value(v));
    let optional = [
        (EVENT_TYPE, verified.event_type()),
        (UNSIGNED_ID, verified.unsigned_id()),
        (UNSIGNED_EVENT_TYPE, verified.unsigned_event_type()),
    ];
    for (name, value) in optional {
        if let Some(value) = value.filter(|v| is_header_value(v)) {
            header(out, name.as_bytes(), value.as_bytes());
        }
    }
    let Some(resign) = f.resign else {
        if let Some(id) = id {
            header(out, EVENT_ID.as_bytes(), id.as_bytes());
        }
        if let Some(ts) = verified.timestamp() {
            let ts = itoa::Buffer::new().format(ts).to_owned();
            header(out, EVENT_TIMESTAMP.as_bytes(), ts.as_bytes());
        }
        return;
    };
    let id = id.map_or_else(|| content_id(f.body), str::to_owned);
    let event_time = verified
        .timestamp()
        .map(|ts| itoa::Buffer::new().format(ts).to_owned());
    write_signature(out, resign, &id, event_time.as_deref(), f.body);
}

/// Standard Webhooks: `webhook-id`, `webhook-timestamp` (the time of
/// forwarding) and `webhook-signature` (`v1,` base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}`); the event's own time moves to
/// `x-webhook-event-time`.
fn write_signature(
    out: &mut BytesMut,
    resign: Resign<'_>,
    id: &str,
    event_time: Option<&str>,
    body: &[u8],
) {
    let now = itoa::Buffer::new().format(resign.now).to_owned();
    let mut mac = resign.key.clone();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(now.as_bytes());
    mac.update(b".");
    mac.update(body);
    let signature = mac.finalize_with(|m| format!("v1,{}", BASE64.encode(m)));
    header(out, EVENT_ID.as_bytes(), id.as_bytes());
    header(out, EVENT_TIMESTAMP.as_bytes(), now.as_bytes());
    header(out, SIGNATURE.as_bytes(), signature.as_bytes());
    if let Some(ts) = event_time {
        header(out, EVENT_TIME.as_bytes(), ts.as_bytes());
    }
}

/// Re-signs a stored header block (as [`write_forwarded_headers`] wrote it
/// for a request that was not re-signed then) at the time of an attempt: the
/// block without its `webhook-id`, `webhook-timestamp` and any
/// `webhook-signature`, then the signature's headers as [`write_verified`]
/// writes them. A block of a request that did not verify (monitor mode) is
/// copied as it is: only verified requests are re-signed.
pub fn resign_stored(block: &[u8], resign: Resign<'_>, body: &[u8], out: &mut BytesMut) {
    let lines = || stored_lines(block);
    if !lines().any(|l| named(l).is_some_and(|(n, _)| n == VERIFIED)) {
        out.put_slice(block);
        return;
    }
    let (mut id, mut event_time) = (None, None);
    for line in lines() {
        match named(line) {
            Some((name, value)) if name == EVENT_ID => id = std::str::from_utf8(value).ok(),
            Some((name, value)) if name == EVENT_TIMESTAMP => {
                event_time = std::str::from_utf8(value).ok();
            }
            Some((name, _)) if is_signature(&name) => {}
            _ => {
                out.put_slice(line);
                out.put_slice(b"\r\n");
            }
        }
    }
    let id = id.map_or_else(|| content_id(body), str::to_owned);
    write_signature(out, resign, &id, event_time, body);
}

/// A stored header block (as [`write_forwarded_headers`] wrote it) with
/// `webhook-id: ID` added when the request verified but its scheme read no
/// signed event id: an async delivery's id then stands for the event's, the
/// same at every attempt. Any other block is returned as it is.
pub fn with_delivery_id<'b>(block: &'b [u8], id: &str) -> Cow<'b, [u8]> {
    let names = || stored_lines(block).filter_map(named).map(|(name, _)| name);
    if !names().any(|n| n == VERIFIED) || names().any(|n| n == EVENT_ID) {
        return Cow::Borrowed(block);
    }
    let mut out = BytesMut::with_capacity(block.len() + EVENT_ID.len() + id.len() + 4);
    out.put_slice(block);
    header(&mut out, EVENT_ID.as_bytes(), id.as_bytes());
    Cow::Owned(out.to_vec())
}

/// The non-empty lines of a stored header block, without their line ends.
fn stored_lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    block
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
}

/// A header line's name (lower case) and trimmed value.
fn named(line: &[u8]) -> Option<(String, &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = std::str::from_utf8(&line[..colon])
        .ok()?
        .to_ascii_lowercase();
    Some((name, line[colon + 1..].trim_ascii()))
}

/// An id for an event its scheme gives none: `hg_` and the first 16 bytes
/// of the body's SHA-256 in hex, so a provider's retry of the same event gets
/// the same id (dedup keys on it, re-signing sends it as `webhook-id`).
pub fn content_id(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("hg_{}", hex::encode(&digest[..16]))
}

fn header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Whether `value` may be sent as a header value as is.
fn is_header_value(value: &str) -> bool {
    HeaderValue::from_str(value).is_ok()
}

/// The header names the client's `Connection` headers nominate as hop-by-hop.
fn nominated_by_connection(req: &RequestHeader) -> Vec<&str> {
    req.headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .collect()
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
