//! The only place that reads a request body: bounded by the route's size limit,
//! by a deadline for the whole body, not just for each read, and by a minimum
//! average rate once the body has had a little time to start.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::ErrorType;
use pingora::protocols::http::v1::server::HttpSession as Session;

use crate::observe::limits::{BodyReservation, Spent};

/// The most buffer reserved before any body byte has arrived.
const MAX_UPFRONT_BYTES: usize = 256 * 1024;
/// How long a body may come at any pace before its average rate must reach
/// `min_body_bytes_per_sec`: a client's first bytes may be slow to leave it.
pub const RATE_GRACE: Duration = Duration::from_secs(2);

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// It grew past the limit.
    TooLarge,
    /// It grew past what `max_inflight_body_bytes` has left, or what its
    /// client's share of it has.
    Overloaded(Spent),
    /// It did not arrive in time.
    Timeout,
    /// After [`RATE_GRACE`], it came slower than the minimum rate.
    TooSlow,
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

/// How fast, at the least, and within how long a body must arrive.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// The whole body must arrive within this.
    pub deadline: Duration,
    /// After [`RATE_GRACE`], the average bytes per second since the body
    /// began must stay at this or above; 0: no minimum.
    pub min_rate: u64,
}

impl Pace {
    /// How long after the body began it may go on, having sent `got` bytes,
    /// before it is cut: at the deadline, or when its average rate falls below
    /// the minimum, but not within the grace.
    fn cut_after(self, got: usize) -> Duration {
        if self.min_rate == 0 {
            return self.deadline;
        }
        let paced = Duration::from_millis((got as u64).saturating_mul(1000) / self.min_rate);
        paced.max(RATE_GRACE).min(self.deadline)
    }
}

/// Reads the whole body: at most `max` bytes, at `pace`, each byte covered by
/// `reservation` before it is kept.
pub async fn read_bounded(
    session: &mut Session,
    max: usize,
    pace: Pace,
    reservation: &mut BodyReservation,
) -> Result<Bytes, BodyError> {
    // The cut below bounds every wait; pingora's per-read timer is not needed
    // on top of it.
    session.set_read_timeout(None);
    // Reserve what the client announced only up to a cap: an announced length is
    // a claim, and memory follows the bytes that actually arrive.
    let capacity = content_length(session).map_or(0, |n| {
        usize::try_from(n)
            .unwrap_or(max)
            .min(max)
            .min(MAX_UPFRONT_BYTES)
    });
    let began = tokio::time::Instant::now();
    // A body that arrives in one piece (the usual webhook) is kept as read;
    // only a body in several pieces is gathered into one buffer.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    loop {
        let held = first.as_ref().map_or(0, Bytes::len) + buf.len();
        let cut = pace.cut_after(held);
        let read = tokio::time::timeout_at(began + cut, session.read_body_bytes()).await;
        let chunk = match read {
            Ok(read) => read.map_err(classify)?,
            Err(_elapsed) if cut < pace.deadline => return Err(BodyError::TooSlow),
            Err(_elapsed) => return Err(BodyError::Timeout),
        };
        let Some(chunk) = chunk else { break };
        if held + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        reservation
            .grow_to((held + chunk.len()) as u64)
            .map_err(BodyError::Overloaded)?;
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
    fn a_body_is_cut_when_its_average_rate_falls_below_the_minimum_after_the_grace() {
        let pace = Pace {
            deadline: Duration::from_secs(10),
            min_rate: 1000,
        };
        // Within the grace, any pace: nothing yet, or a little.
        assert_eq!(pace.cut_after(0), RATE_GRACE);
        assert_eq!(pace.cut_after(1500), RATE_GRACE);
        // Then as long as the average holds: 3000 bytes last 3 s, 3001 a ms more.
        assert_eq!(pace.cut_after(3000), Duration::from_secs(3));
        assert_eq!(pace.cut_after(3001), Duration::from_millis(3001));
        // Never past the deadline.
        assert_eq!(pace.cut_after(1 << 40), pace.deadline);
        assert_eq!(pace.cut_after(usize::MAX), pace.deadline);
        // 0: no minimum, only the deadline.
        let unpaced = Pace {
            min_rate: 0,
            ..pace
        };
        assert_eq!(unpaced.cut_after(0), pace.deadline);
        // A deadline within the grace comes first.
        let short = Pace {
            deadline: Duration::from_secs(1),
            ..pace
        };
        assert_eq!(short.cut_after(0), short.deadline);
    }

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
