//! Request framing as the gateway reads it: pingora's HTTP/1 server session
//! reads a request header and then the body through `body::read_bounded`,
//! after the same Content-Length admission and body reservation the gateway
//! makes, from an in-memory connection that hands the input over in pieces.
//!
//! Input: one byte for the piece size, two for the route's `max_body_bytes`,
//! then the bytes the client sends. A body that is read must fit the limit,
//! hold what the framing says (a strict chunked decoder and Content-Length are
//! the reference, where they accept the input and the header pingora parsed is
//! the one on the wire), and give its reservation back.

#![no_main]

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;

use hookgate::body::{self, BodyError, Pace};
use hookgate::observe::limits::Limits;
use hookgate::base::settings::FrontDoor;
use libfuzzer_sys::fuzz_target;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Body bytes all requests may hold at once: less than the largest limit, so
/// that running out of budget is reached too.
const INFLIGHT: u64 = 40_000;
/// What one client may hold of it (the one request here is one client's).
const SHARE: u64 = INFLIGHT / 2;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
});

/// A client connection that sends `data` in pieces of `piece` bytes, then
/// closes; whatever is written to it is dropped.
#[derive(Debug)]
struct Wire {
    data: Vec<u8>,
    at: usize,
    piece: usize,
}

impl AsyncRead for Wire {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self
            .piece
            .min(self.data.len() - self.at)
            .min(buf.remaining());
        buf.put_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl VirtualSocket for Wire {
    fn set_socket_option(&self, _: VirtualSockOpt) -> std::io::Result<()> {
        Ok(())
    }
}

/// A strict chunked decoder: hex sizes, optional extensions, CRLF everywhere,
/// trailers up to the empty line. `None` for anything else.
fn dechunk(mut wire: &[u8]) -> Option<Vec<u8>> {
    fn line<'a>(wire: &mut &'a [u8]) -> Option<&'a [u8]> {
        let end = wire.windows(2).position(|w| w == b"\r\n")?;
        let (line, rest) = wire.split_at(end);
        *wire = &rest[2..];
        Some(line)
    }
    let mut body = Vec::new();
    loop {
        let size_line = line(&mut wire)?;
        let digits = size_line.split(|&b| b == b';').next()?;
        if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let size = usize::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
        if size == 0 {
            while !line(&mut wire)?.is_empty() {}
            return Some(body);
        }
        let (data, rest) = wire.split_at_checked(size)?;
        body.extend_from_slice(data);
        wire = rest.strip_prefix(b"\r\n")?;
    }
}

fuzz_target!(|data: &[u8]| {
    let [piece, max_high, max_low, sent @ ..] = data else {
        return;
    };
    let piece = usize::from(*piece).max(1);
    let max = usize::from(u16::from_be_bytes([*max_high, *max_low]));
    let wire = Wire {
        data: sent.to_vec(),
        at: 0,
        piece,
    };
    let front = FrontDoor {
        header_timeout: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(1),
        max_connections: 1,
        max_header_bytes: 32 * 1024,
        max_inflight_body_bytes: INFLIGHT,
        max_inflight_body_bytes_per_client: SHARE,
        min_body_bytes_per_sec: 1024,
    };
    let limits = Limits::new(&front);
    RUNTIME.block_on(async {
        let stream = L4Stream::from(VirtualSocketStream::new(Box::new(wire)));
        let mut session = HttpSession::new(Box::new(stream));
        if !matches!(session.read_request().await, Ok(Some(_))) {
            return;
        }
        let declared = body::content_length(&session);
        if declared.is_some_and(|n| n > max as u64) {
            return;
        }
        let client = std::net::Ipv4Addr::LOCALHOST.into();
        let Ok(mut reservation) = limits.reserve_body(client, declared.unwrap_or(0)) else {
            return;
        };
        let pace = Pace {
            deadline: Duration::from_secs(10),
            min_rate: front.min_body_bytes_per_sec,
        };
        let read = body::read_bounded(&mut session, max, pace, &mut reservation).await;
        assert!(limits.body_bytes() <= SHARE);
        // Pingora percent-escapes a request target that httparse refuses and
        // parses the rewritten header; its raw bytes are then not the wire's,
        // and where the body began on the wire is not known here.
        let raw = session.get_headers_raw_bytes();
        let after = sent.starts_with(&raw).then(|| &sent[raw.len()..]);
        let headers = &session.req_header().headers;
        let chunked = headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .count();
        match read {
            Ok(body) => {
                assert!(
                    body.len() <= max,
                    "{} bytes over a limit of {max}",
                    body.len()
                );
                assert!(
                    limits.body_bytes() >= body.len() as u64,
                    "every byte kept is reserved"
                );
                if chunked == 1
                    && headers[http::header::TRANSFER_ENCODING]
                        .as_bytes()
                        .eq_ignore_ascii_case(b"chunked")
                {
                    if let Some(expected) = after.and_then(dechunk) {
                        assert_eq!(body, expected, "chunked body");
                    }
                } else if let (0, Some(after)) = (chunked, after) {
                    let n = declared.map_or(0, |n| n as usize);
                    assert_eq!(Some(&body[..]), after.get(..n), "Content-Length body");
                }
            }
            Err(BodyError::Timeout | BodyError::TooSlow) => {
                panic!("an in-memory body cannot time out")
            }
            Err(_) => {}
        }
        drop(reservation);
        assert_eq!(limits.body_bytes(), 0, "the reservation is given back");
    });
});
