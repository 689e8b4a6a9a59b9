//! `RequestRecord`: what happened to one request, filled in as it goes through
//! the proxy and read once at the end by the metrics and the access log. It
//! holds no secret, signature or body byte.

use std::time::{Duration, Instant};

use crate::reject::ErrorCode;

/// The longest request-supplied text (an event id) a record keeps, in bytes.
const MAX_TEXT: usize = 200;

/// `text`, cut to at most 200 bytes on a character boundary.
pub fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The client went away before an answer could be given.
    Disconnected,
    /// Forwarded; the upstream answered (or broke off after its header).
    Forwarded,
    /// Answered by the gateway as a provider handshake.
    Handshake,
    /// Answered 200 `{"status":"duplicate"}`: the event was delivered already.
    Duplicate,
    /// An async route's request, stored and answered 202.
    Accepted,
    /// Answered 200 `{"status":"filtered"}`: no destination wants the event.
    Filtered,
    /// Refused or failed with one of the contract's error codes.
    Error(ErrorCode),
}

impl Outcome {
    /// A stable label: `forwarded`, `handshake`, `duplicate`, `accepted`,
    /// `filtered`, `disconnected` or an error code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Forwarded => "forwarded",
            Self::Handshake => "handshake",
            Self::Duplicate => "duplicate",
            Self::Accepted => "accepted",
            Self::Filtered => "filtered",
            Self::Error(code) => code.as_str(),
        }
    }
}

/// Why an upstream exchange failed, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// The connection was refused.
    Refused,
    /// Connecting took too long.
    ConnectTimeout,
    /// The upstream took too long to answer.
    Timeout,
    /// The TLS handshake failed (e.g. an untrusted certificate).
    Tls,
    /// The connection broke or the upstream sent something unreadable.
    Broken,
    /// The upstream broke off after its response header was relayed.
    AbortedMidResponse,
}

impl UpstreamError {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::Timeout => "timeout",
            Self::Tls => "tls",
            Self::Broken => "broken",
            Self::AbortedMidResponse => "aborted_mid_response",
        }
    }
}

/// One request's story.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When the gateway started on it.
    pub start: Instant,
    /// The route that matched, if any.
    pub route: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The verification refusal's reason, for 401s.
    pub reason: Option<&'static str>,
    /// The scheme that verified it.
    pub scheme: Option<String>,
    /// Which of that verifier's secrets matched.
    pub secret_index: Option<usize>,
    /// The event id.
    pub event_id: Option<String>,
    /// Bytes of request body read.
    pub body_bytes: usize,
    /// Status the upstream answered.
    pub upstream_status: Option<u16>,
    /// Time spent on the upstream exchange.
    pub upstream_time: Option<Duration>,
    /// What went wrong upstream.
    pub upstream_error: Option<UpstreamError>,
    /// The client's address as the gateway judged it (`trusted_proxies`).
    pub client_ip: Option<std::net::IpAddr>,
    /// `mode = "monitor"`: verification failed (for `reason`) and the request
    /// was forwarded all the same.
    pub monitor_failed: bool,
    /// What dedup made of it.
    pub dedup: Option<Dedup>,
    /// The state call that failed, if one did.
    pub state_error: Option<&'static str>,
}

/// What dedup made of a verified request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedup {
    /// First of its event: claimed and forwarded.
    Claimed,
    /// Delivered already: answered `duplicate`.
    Duplicate,
    /// Another copy was being delivered: answered 409.
    InProgress,
    /// The state store failed and the route fails open: forwarded unclaimed.
    Bypassed,
}

impl Dedup {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Duplicate => "duplicate",
            Self::InProgress => "in_progress",
            Self::Bypassed => "bypassed",
        }
    }
}

impl Default for RequestRecord {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            route: None,
            outcome: Outcome::Disconnected,
            reason: None,
            scheme: None,
            secret_index: None,
            event_id: None,
            body_bytes: 0,
            upstream_status: None,
            upstream_time: None,
            upstream_error: None,
            client_ip: None,
            monitor_failed: false,
            dedup: None,
            state_error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bounded_cuts_on_a_character_boundary() {
        assert_eq!(super::bounded("evt_1"), "evt_1");
        let long = "é".repeat(150);
        let cut = super::bounded(&long);
        assert_eq!(cut.len(), 200);
        assert!(long.starts_with(&cut));
    }
}
