//! What the fuzz targets share: splitting an input into lines, and reading a
//! delivery written as plain text into the [`SignedRequest`] verifiers see.
//!
//! A delivery is written like an HTTP/1 request, leniently:
//!
//! ```text
//! POST https://hooks.example.com/in?x=1      (or a path: /in?x=1)
//! Content-Type: application/json
//! X-Signature: abc
//!
//! {"body": "every byte after the blank line"}
//! ```
//!
//! A header line that is not a valid name and value is skipped, so that most
//! mutations still reach the verifier.

use http::{HeaderMap, HeaderName, HeaderValue};

use hookgate::base::secret::Secret;
use hookgate::handshake::AnswerKeys;
use hookgate::verify::request::{SignedRequest, UrlParts};
use hookgate::verify::{Verifier, verify_any};

/// The text up to the first `\n` (without it), and everything after it.
pub fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// A delivery read from text.
#[derive(Debug)]
pub struct Delivery {
    /// The request method.
    pub method: String,
    /// The URL the provider called, up to `?`, when the request line gives one.
    pub public_url: Option<String>,
    /// The request path.
    pub path: String,
    /// The raw query, without `?`.
    pub query: Option<String>,
    /// The headers that are valid.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Vec<u8>,
}

impl Delivery {
    /// Reads a delivery: a request line, header lines up to an empty line, and
    /// the body. `None` when the request line is not `METHOD TARGET`.
    pub fn parse(data: &[u8]) -> Option<Self> {
        let (line, mut rest) = split_line(data);
        let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
        let (method, target) = line.split_once(' ')?;
        let mut headers = HeaderMap::new();
        loop {
            let (line, after) = split_line(rest);
            rest = after;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = HeaderName::from_bytes(&line[..colon]);
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
            if let (Ok(name), Ok(value)) = (name, value) {
                headers.append(name, value);
            }
        }
        let (base, query) = match target.split_once('?') {
            Some((base, query)) => (base, Some(query.to_owned())),
            None => (target, None),
        };
        let (public_url, path) = match base.split_once("://") {
            Some((_, rest)) => {
                let path = rest.find('/').map_or("/", |i| &rest[i..]);
                (Some(base.to_owned()), path.to_owned())
            }
            None => (None, base.to_owned()),
        };
        Some(Self {
            method: method.to_owned(),
            public_url,
            path,
            query,
            headers,
            body: rest.to_vec(),
        })
    }

    /// The delivery as verifiers and handshakes see it.
    pub fn signed(&self) -> SignedRequest<'_> {
        let url = UrlParts {
            public_url: self.public_url.as_deref(),
            remainder: "",
            host: "gw.example:8080",
        };
        SignedRequest::new(
            &self.method,
            (&self.path, self.query.as_deref()),
            &self.headers,
            &self.body,
            url,
        )
    }
}

/// Runs `verifier` and its scheme's handshakes over `req` at `now`, checking
/// what a pass promises: metadata within bounds, a timestamp inside the
/// replay window, and the same verdict through [`verify_any`].
pub fn exercise(verifier: &Verifier, req: &SignedRequest<'_>, now: i64, token: &Secret) {
    let verdict = verifier.verify(req, now);
    let any = verify_any(std::slice::from_ref(verifier), req, now);
    assert_eq!(verdict.is_ok(), any.is_ok());
    if let Ok(verified) = &verdict {
        let metadata = [
            verified.id(),
            verified.event_type(),
            verified.unsigned_id(),
            verified.unsigned_event_type(),
        ];
        for meta in metadata.into_iter().flatten() {
            assert!(!meta.is_empty() && meta.len() <= 1024, "metadata {meta:?}");
        }
        // Only signed sources yield the id, type and timestamp that decide.
        let scheme = verifier.scheme();
        assert!(verified.id().is_none() || !scheme.ids.signed.is_empty());
        assert!(verified.event_type().is_none() || !scheme.types.signed.is_empty());
        assert!(verified.timestamp().is_none() || scheme.timestamp_is_signed());
        if let Some(tolerance) = verifier.tolerance_secs() {
            let ts = verified.timestamp().expect("a tolerance needs a timestamp");
            let age = (i128::from(now) - i128::from(ts)).unsigned_abs();
            assert!(age <= u128::from(tolerance), "{ts} is {age}s from {now}");
        }
    }
    let keys = AnswerKeys {
        verify_token: Some(token),
        mac: verifier.mac_key(0),
    };
    for handshake in &verifier.scheme().handshakes {
        if handshake.matches(req) && (!handshake.verify_first || verdict.is_ok()) {
            let _ = handshake.answer(req, keys);
        }
    }
}
