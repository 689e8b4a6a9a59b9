//! The only place that reads a request body: bounded by the route's size limit
//! and by a deadline for the whole body, not just for each read.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::ErrorType;
use pingora::protocols::http::v1::server::HttpSession as Session;

use crate::limits::BodyReservation;

/// The most buffer reserved before any body byte has arrived.
const MAX_UPFRONT_BYTES: usize = 256 * 1024;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// It grew past the limit.
    TooLarge,
    /// It grew past what `max_inflight_body_bytes` has left.
    Overloaded,
    /// It did not arrive in time.
    Timeout,
    /// Its framing was invalid (e.g. bad chunk sizes).
    Malformed(Box<pingora::Error>),
    /// The client went away; nothing can be answered.
    Disconnected(Box<pingora::Error>),
}

/// The request's declared `Content-Length`, if any and valid: the one value of
/// every `Content-Length` header and comma-separated list in them, as pingora
/// frames the body by (it accepts `20, 20` and refuses values that differ).
pub fn content_length(session: &Session) -> Option<u64> {
    let mut length = None;
    let headers = session
        .req_header()
        .headers
        .get_all(http::header::CONTENT_LENGTH);
    for value in headers {
        for part in value.to_str().ok()?.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: u64 = part.parse().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    length
}

/// Whether the request declared both `Transfer-Encoding` and `Content-Length`:
/// RFC 9112 §6.3 calls it a likely smuggling attempt, and it is refused (as
/// nginx does) before its body is read. pingora drops `Content-Length` from the
/// parsed header in that case, so the raw header is searched; only a request
/// with `Transfer-Encoding` pays for it.
pub fn declares_both_lengths(session: &Session) -> bool {
    if !session
        .req_header()
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
    {
        return false;
    }
    has_content_length_line(&session.get_headers_raw_bytes())
}

/// Whether a raw request header (request line, header lines ending in LF or
/// CRLF) has a `Content-Length` line.
fn has_content_length_line(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n').skip(1).any(|line| {
        line.iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| line[..colon].eq_ignore_ascii_case(b"content-length"))
    })
}

/// Reads the whole body: at most `max` bytes, within `deadline` overall, each
/// byte covered by `reservation` before it is kept.
pub async fn read_bounded(
    session: &mut Session,
    max: usize,
    deadline: Duration,
    reservation: &mut BodyReservation,
) -> Result<Bytes, BodyError> {
    // The deadline below bounds the whole body; pingora's per-read timer is
    // not needed on top of it.
    session.set_read_timeout(None);
    // Reserve what the client announced only up to a cap: an announced length is
    // a claim, and memory follows the bytes that actually arrive.
    let capacity = content_length(session).map_or(0, |n| {
        usize::try_from(n)
            .unwrap_or(max)
            .min(max)
            .min(MAX_UPFRONT_BYTES)
    });
    let read_all = async {
        // A body that arrives in one piece (the usual webhook) is kept as read;
        // only a body in several pieces is gathered into one buffer.
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        while let Some(chunk) = session.read_body_bytes().await.map_err(classify)? {
            let held = first.as_ref().map_or(0, Bytes::len) + buf.len();
            if held + chunk.len() > max {
                return Err(BodyError::TooLarge);
            }
            if !reservation.grow_to((held + chunk.len()) as u64) {
                return Err(BodyError::Overloaded);
            }
            match first.take() {
                None if buf.is_empty() => first = Some(chunk),
                held_first => {
                    if buf.is_empty() {
                        buf.reserve(capacity.max(held + chunk.len()));
                    }
                    if let Some(held_first) = held_first {
                        buf.extend_from_slice(&held_first);
                    }
                    buf.extend_from_slice(&chunk);
                }
            }
        }
        Ok(first.unwrap_or_else(|| buf.freeze()))
    };
    match tokio::time::timeout(deadline, read_all).await {
        Ok(result) => result,
        Err(_elapsed) => Err(BodyError::Timeout),
    }
}

fn classify(e: Box<pingora::Error>) -> BodyError {
    match e.etype() {
        ErrorType::ReadTimedout => BodyError::Timeout,
        ErrorType::ReadError | ErrorType::ConnectionClosed | ErrorType::WriteError => {
            BodyError::Disconnected(e)
        }
        _ => BodyError::Malformed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_length_line_is_found_in_any_case_and_line_end() {
        let with = |lines: &str| has_content_length_line(lines.as_bytes());
        assert!(with(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(with("POST / HTTP/1.1\nX-A: 1\ncontent-LENGTH: 0\n\n"));
        assert!(with(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nCONTENT-LENGTH:4\r\n\r\n"
        ));
        // Not a header named so: a value, another name, the request line.
        assert!(!with(
            "POST / HTTP/1.1\r\nX-Note: Content-Length: 4\r\n\r\n"
        ));
        assert!(!with("POST / HTTP/1.1\r\nContent_Length: 4\r\n\r\n"));
        assert!(!with(
            "POST /Content-Length: HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }
}
