//! Request smuggling through the real binary, in front of a raw upstream that
//! records every byte. Each case sends bytes a desynchronizing client would,
//! all at once, and checks what came of them: HTTP refuses the request (400
//! and the connection closes), or exactly one verified request reaches the
//! upstream, framed by the gateway. Every byte the client places outside the
//! verified body carries [`MARKER`], and the marker must never reach the
//! upstream; bytes that must never be taken for a request hold a validly
//! signed request ([`hidden`]), so a desync would forward it, marker and all.

use std::time::Duration;

use crate::support::client::Raw;
use crate::support::gateway::Gateway;
use crate::support::raw_upstream::{Forwarded, RawUpstream};
use crate::support::{route, scheme, sign};

const SECRET: &str = "smuggle-secret";
/// The verified body every case delivers (20 bytes, `14` in hex).
const BODY: &[u8] = br#"{"event":"verified"}"#;
/// Written into every byte the client sends outside the verified body.
const MARKER: &str = "SMUGGLED";
const WAIT: Duration = Duration::from_secs(5);

/// One attempt: what a client sends in one go, and what must come of it.
#[derive(Debug)]
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// The final statuses the client reads, in order.
    answers: Vec<u16>,
    /// Whether the gateway closes the connection after them.
    closes: bool,
    /// The route and upstream target of the one verified request forwarded;
    /// `None`: nothing may reach the upstream, not even a connection.
    forwarded: Option<(&'static str, &'static str)>,
}

impl Case {
    /// HTTP refuses the request: 400 `bad_request`, the connection closes,
    /// nothing reaches the upstream.
    fn refused(name: &'static str, bytes: Vec<u8>) -> Self {
        Self::answered(name, bytes, &[400]).closing()
    }

    /// The gateway answers `answers` itself; nothing reaches the upstream.
    fn answered(name: &'static str, bytes: Vec<u8>, answers: &[u16]) -> Self {
        Self {
            name,
            bytes,
            answers: answers.to_vec(),
            closes: false,
            forwarded: None,
        }
    }

    /// The verified request goes to `/hook`'s upstream (its answer is the first
    /// of `answers`) and nothing else does.
    fn forwarded(name: &'static str, bytes: Vec<u8>, answers: &[u16]) -> Self {
        Self {
            forwarded: Some(("smuggle", "/in")),
            ..Self::answered(name, bytes, answers)
        }
    }

    /// The connection closes after the answers.
    fn closing(self) -> Self {
        Self {
            closes: true,
            ..self
        }
    }

    /// Forwarded by `route` to `target`.
    fn to(self, route: &'static str, target: &'static str) -> Self {
        Self {
            forwarded: Some((route, target)),
            ..self
        }
    }
}

/// `/hook` (route `smuggle`, at most 1000 body bytes) forwards to `/in` and
/// `/p/…` (route `prefix`) to `/in/…`.
fn routes(upstream: &str) -> String {
    let verify = scheme("aryeo", &[SECRET]);
    let hook = route("smuggle", "/hook", &format!("{upstream}/in"), &verify).replace(
        "[routes.verify]",
        "max_body_bytes = 1000\n\n[routes.verify]",
    );
    let prefix = route("prefix", "/p/", &format!("{upstream}/in/"), &verify)
        .replace("path = ", "path_prefix = ");
    hook + &prefix
}

/// The signature header line over [`BODY`], without its line end.
fn signature() -> String {
    let (h, v) = sign::aryeo(SECRET, BODY);
    format!("{h}: {v}")
}

/// A request signed over [`BODY`]: `line`, the signature, then `headers`
/// (whole lines, `Host` among them), the blank line, and `wire`.
fn request(line: &str, headers: &str, wire: &[u8]) -> Vec<u8> {
    let mut out = format!("{line}\r\n{}\r\n{headers}\r\n", signature()).into_bytes();
    out.extend_from_slice(wire);
    out
}

/// A signed `POST /hook` with `Host: gw`, `headers`, and `wire` after the head.
fn post(headers: &str, wire: &[u8]) -> Vec<u8> {
    request(
        "POST /hook HTTP/1.1",
        &format!("Host: gw\r\n{headers}"),
        wire,
    )
}

/// [`post`] with `Content-Length` framing the body exactly.
fn sized(headers: &str) -> Vec<u8> {
    post(&format!("Content-Length: 20\r\n{headers}"), BODY)
}

/// [`BODY`] in one chunk and the last chunk.
fn chunked() -> Vec<u8> {
    [b"14\r\n", BODY, b"\r\n0\r\n\r\n"].concat()
}

/// A request carrying the marker and signed validly: bytes that must never
/// be taken for a request (would they be, it would verify and go upstream).
fn hidden() -> Vec<u8> {
    let body = format!(r#"{{"hidden":"{MARKER}"}}"#);
    let (h, v) = sign::aryeo(SECRET, body.as_bytes());
    format!(
        "POST /hook HTTP/1.1\r\nHost: gw\r\n{h}: {v}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A request in its own right, carrying the marker and failing verification
/// (401): what follows a request the gateway read whole.
fn forged() -> Vec<u8> {
    let body = format!(r#"{{"forged":"{MARKER}"}}"#);
    format!(
        "POST /hook HTTP/1.1\r\nHost: gw\r\nSignature: {}\r\nContent-Length: {}\r\n\r\n{body}",
        "0".repeat(64),
        body.len()
    )
    .into_bytes()
}

/// The error code the gateway answers with `status`, for the statuses these
/// cases meet; `None` for the upstream's own 200.
fn error_code(status: u16) -> Option<&'static str> {
    match status {
        200 => None,
        400 => Some("bad_request"),
        401 => Some("invalid_signature"),
        404 => Some("no_route"),
        413 => Some("payload_too_large"),
        other => panic!("no case expects {other}"),
    }
}

/// Runs every case, one after another, each on a gateway and upstream of its
/// own; fails naming every case that failed.
async fn check(cases: Vec<Case>) {
    let mut failed = Vec::new();
    for case in cases {
        let name = case.name;
        if tokio::spawn(check_one(case)).await.is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
}

async fn check_one(case: Case) {
    let name = case.name;
    let upstream = RawUpstream::ok().await;
    let gw = Gateway::start(&routes(&upstream.url())).await;
    let mut raw = Raw::connect(gw.addr).await;
    assert!(raw.send(&case.bytes).await, "{name}: could not send");
    for &status in &case.answers {
        let answer = raw
            .read_final(WAIT)
            .await
            .unwrap_or_else(|| panic!("{name}: no {status} answer"));
        assert_eq!(answer.status, status, "{name}: {}", answer.head);
        match error_code(status) {
            Some(code) => assert_eq!(answer.json()["error"], code, "{name}"),
            None => assert_eq!(answer.body, b"ok", "{name}"),
        }
    }
    if case.closes {
        assert!(raw.closed_within(WAIT).await, "{name}: left open");
        assert!(
            raw.unread().is_empty(),
            "{name}: more was answered: {:?}",
            String::from_utf8_lossy(raw.unread())
        );
    } else {
        // Still in step: the next request is answered as itself.
        raw.send(b"GET /probe HTTP/1.1\r\nHost: gw\r\n\r\n").await;
        let probe = raw.read_final(WAIT).await;
        assert_eq!(
            probe.map(|p| p.status),
            Some(404),
            "{name}: out of step after the answers"
        );
    }
    drop(gw);
    let connections = upstream.ended().await;
    let all: Vec<u8> = connections.iter().flat_map(|c| c.bytes.clone()).collect();
    assert!(
        !String::from_utf8_lossy(&all).contains(MARKER),
        "{name}: a byte from outside the verified body reached the upstream:\n{}",
        String::from_utf8_lossy(&all)
    );
    let Some((route, target)) = case.forwarded else {
        assert!(connections.is_empty(), "{name}: the upstream was reached");
        return;
    };
    assert_eq!(connections.len(), 1, "{name}: {connections:?}");
    let got = Forwarded::parse(&connections[0].bytes);
    assert_eq!(
        (got.method.as_str(), got.target.as_str()),
        ("POST", target),
        "{name}"
    );
    got.assert_framed_around(BODY);
    got.assert_gateway_headers(route, "aryeo");
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// RFC 9112 §6.3: a request with both is a likely smuggling attempt. It is
/// refused before its body is read, whichever header comes first and whatever
/// the length says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_refused_and_closed() {
    let te_cl = "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n";
    let whole = chunked().len() + hidden().len();
    check(vec![
        Case::refused(
            "CL then TE",
            post(
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                &cat(&[&chunked(), &hidden()]),
            ),
        ),
        Case::refused("TE then CL", post(te_cl, &cat(&[&chunked(), &hidden()]))),
        Case::refused(
            "CL 0 and TE",
            post(
                "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
                &cat(&[&chunked(), &hidden()]),
            ),
        ),
        Case::refused(
            "CL covering the hidden request",
            post(
                &format!("Content-Length: {whole}\r\nTransfer-Encoding: chunked\r\n"),
                &cat(&[&chunked(), &hidden()]),
            ),
        ),
        Case::refused(
            "CL and TE in other cases",
            post(
                "content-LENGTH: 20\r\nTRANSFER-encoding: chunked\r\n",
                &cat(&[&chunked(), &hidden()]),
            ),
        ),
        Case::refused(
            "a bare LF hiding Transfer-Encoding after Content-Length",
            post(
                "Content-Length: 20\r\nX-A: 1\nTransfer-Encoding: chunked\r\n",
                &cat(&[&chunked(), &hidden()]),
            ),
        ),
        Case::refused(
            "CL and a TE that is not chunked",
            post(
                "Content-Length: 20\r\nTransfer-Encoding: identity\r\n",
                &cat(&[BODY, &hidden()]),
            ),
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_must_be_one_unsigned_number() {
    let after = |length: &str| post(&format!("{length}\r\n"), &cat(&[BODY, &hidden()]));
    check(vec![
        Case::forwarded(
            "the same length twice",
            post(
                "Content-Length: 20\r\nContent-Length: 20\r\n",
                &cat(&[BODY, &forged()]),
            ),
            &[200, 401],
        ),
        Case::forwarded(
            "a list of the same length",
            post("Content-Length: 20, 20\r\n", &cat(&[BODY, &forged()])),
            &[200, 401],
        ),
        Case::refused(
            "two lengths",
            after("Content-Length: 20\r\nContent-Length: 21"),
        ),
        Case::refused(
            "two lengths, shorter first",
            after("Content-Length: 19\r\nContent-Length: 20"),
        ),
        Case::refused("a list of two lengths", after("Content-Length: 20, 21")),
        Case::forwarded(
            "leading zeros",
            post("Content-Length: 0020\r\n", &cat(&[BODY, &forged()])),
            &[200, 401],
        ),
        Case::refused("a plus sign", after("Content-Length: +20")),
        Case::refused("a minus sign", after("Content-Length: -20")),
        Case::refused("hex", after("Content-Length: 0x14")),
        Case::refused("an exponent", after("Content-Length: 2e1")),
        Case::refused("two numbers", after("Content-Length: 20 20")),
        Case::refused("empty", after("Content-Length: ")),
        Case::refused(
            "past 64 bits",
            after("Content-Length: 18446744073709551636"),
        ),
        // Refused for its size at once: the client sends no body at all.
        Case::answered(
            "a list over the route's limit",
            post("Content-Length: 2000, 2000\r\n", b""),
            &[413],
        )
        .closing(),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_must_end_in_chunked_exactly() {
    let te = |header: &str| post(header, &cat(&[&chunked(), &hidden()]));
    check(vec![
        Case::refused(
            "chunked, identity",
            te("Transfer-Encoding: chunked, identity\r\n"),
        ),
        Case::refused("xchunked", te("Transfer-Encoding: xchunked\r\n")),
        Case::refused("chunkedx", te("Transfer-Encoding: chunkedx\r\n")),
        Case::refused("quoted", te("Transfer-Encoding: \"chunked\"\r\n")),
        Case::refused(
            "a space before the colon",
            te("Transfer-Encoding : chunked\r\n"),
        ),
        Case::refused(
            "a tab before the colon",
            te("Transfer-Encoding\t: chunked\r\n"),
        ),
        Case::refused(
            "chunked, then identity in a second header",
            te("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
        ),
        Case::refused(
            "HTTP/1.0",
            request(
                "POST /hook HTTP/1.0",
                "Host: gw\r\nTransfer-Encoding: chunked\r\n",
                &cat(&[&chunked(), &hidden()]),
            ),
        ),
        Case::forwarded(
            "identity, then chunked in a second header",
            post(
                "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
                &cat(&[&chunked(), &forged()]),
            ),
            &[200, 401],
        ),
        Case::forwarded(
            "identity, chunked",
            post(
                "Transfer-Encoding: identity, chunked\r\n",
                &cat(&[&chunked(), &forged()]),
            ),
            &[200, 401],
        ),
        Case::forwarded(
            "CHUNKED",
            post(
                "Transfer-Encoding: CHUNKED\r\n",
                &cat(&[&chunked(), &forged()]),
            ),
            &[200, 401],
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_lines_http_refuses_never_reach_the_upstream() {
    let with = |line: &[u8]| {
        let head = [b"Content-Length: 20\r\n".as_slice(), line].concat();
        let mut bytes = post("", &cat(&[BODY, &hidden()]));
        let at = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
        bytes.splice(at..at, head);
        bytes
    };
    check(vec![
        Case::refused("obs-fold", with(b"X-Fold: a\r\n SMUGGLED\r\n")),
        Case::refused(
            "obs-fold onto Transfer-Encoding",
            with(b"Transfer-Encoding: identity\r\n chunked\r\n"),
        ),
        Case::refused("a NUL in a value", with(b"X-Nul: a\0SMUGGLED\r\n")),
        Case::refused(
            "a CR alone in a value",
            with(b"X-Cr: a\rTransfer-Encoding: chunked\r\n"),
        ),
        Case::refused("a CR before CRLF", with(b"X-Cr: SMUGGLED\r\r\n")),
        Case::refused("a NUL in a name", with(b"X-N\0ul: SMUGGLED\r\n")),
        Case::refused("no name", with(b": SMUGGLED\r\n")),
        Case::refused("no colon", with(b"X-SMUGGLED\r\n")),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_lines_http_accepts_are_rewritten_by_the_gateway() {
    let lf_only = String::from_utf8(sized(""))
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes();
    check(vec![
        Case::forwarded(
            "bare LF line ends",
            cat(&[&lf_only, &forged()]),
            &[200, 401],
        ),
        Case::forwarded(
            "the gateway's headers, forged",
            post(
                "X-Webhook-Verified: SMUGGLED\r\nX-WEBHOOK-ROUTE: SMUGGLED\r\n\
                 x-webhook-route: SMUGGLED\r\nX-Webhook-Event-Type: SMUGGLED\r\n\
                 X-Webhook-Attempt: SMUGGLED\r\nX-Webhook-Event-Time: SMUGGLED\r\n\
                 X-Webhook-Verification: SMUGGLED\r\nX-Forwarded-For: SMUGGLED\r\n\
                 X-Forwarded-Host: SMUGGLED\r\nX-Forwarded-Proto: SMUGGLED\r\n\
                 Webhook-Id: SMUGGLED\r\nWebhook-Timestamp: SMUGGLED\r\n\
                 Content-Length: 20\r\n",
                &cat(&[BODY, &forged()]),
            ),
            &[200, 401],
        ),
        Case::forwarded(
            "the gateway's headers and framing, spelled with underscores",
            post(
                "X_Webhook_Verified: SMUGGLED\r\nx_webhook_route: SMUGGLED\r\n\
                 X_Forwarded_For: SMUGGLED\r\nWebhook_Id: SMUGGLED\r\n\
                 Transfer_Encoding: SMUGGLED\r\nContent_Length: 99\r\n\
                 Keep_Alive: SMUGGLED\r\nContent-Length: 20\r\n",
                &cat(&[BODY, &forged()]),
            ),
            &[200, 401],
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_are_decoded_strictly_and_trailers_dropped() {
    let te = "Transfer-Encoding: chunked\r\n";
    let sized_chunk = |size: &str| {
        post(
            te,
            &cat(&[size.as_bytes(), b"\r\n", BODY, b"\r\n0\r\n\r\n", &hidden()]),
        )
    };
    let trailers = |lines: &str| {
        post(
            te,
            &cat(&[
                b"14\r\n",
                BODY,
                b"\r\n0\r\n",
                lines.as_bytes(),
                b"\r\n",
                &forged(),
            ]),
        )
    };
    check(vec![
        Case::refused(
            "a size with 17 digits, leading zeros",
            sized_chunk("000000000000000000000014"),
        ),
        Case::refused(
            "bare LF chunk lines",
            post(te, &cat(&[b"14\n", BODY, b"\n0\n\n", &hidden()])),
        ),
        Case::refused("a size of 2^64", sized_chunk("10000000000000000")),
        Case::refused("a size of 17 hex digits", sized_chunk("fffffffffffffffff")),
        Case::refused("a negative size", sized_chunk("-14")),
        Case::refused("a size with a sign", sized_chunk("+14")),
        Case::refused("a size with 0x", sized_chunk("0x14")),
        Case::refused(
            "a chunk longer than its size",
            post(te, &cat(&[b"13\r\n", BODY, b"\r\n0\r\n\r\n", &hidden()])),
        ),
        Case::refused(
            "a chunk shorter than its size",
            post(te, &cat(&[b"15\r\n", BODY, b"\r\n0\r\n\r\n", &hidden()])),
        ),
        Case::forwarded(
            "a space after the size",
            post(te, &cat(&[b"14 \r\n", BODY, b"\r\n0\r\n\r\n", &forged()])),
            &[200, 401],
        ),
        Case::forwarded(
            "an extension of 9 KiB",
            post(
                te,
                &cat(&[
                    format!("14;x={}\r\n", MARKER.repeat(1200)).as_bytes(),
                    BODY,
                    b"\r\n0\r\n\r\n",
                    &forged(),
                ]),
            ),
            &[200, 401],
        ),
        Case::forwarded(
            "an extension",
            post(
                te,
                &cat(&[
                    b"14;ext=SMUGGLED\r\n",
                    BODY,
                    b"\r\n0;last=SMUGGLED\r\n\r\n",
                    &forged(),
                ]),
            ),
            &[200, 401],
        ),
        Case::forwarded(
            "one byte per chunk",
            post(
                te,
                &cat(&[
                    &BODY
                        .iter()
                        .flat_map(|b| [b"1\r\n".as_slice(), &[*b], b"\r\n"].concat())
                        .collect::<Vec<u8>>(),
                    b"0\r\n\r\n",
                    &forged(),
                ]),
            ),
            &[200, 401],
        ),
        Case::forwarded(
            "trailers forging the gateway's headers",
            trailers(
                "X-Webhook-Verified: SMUGGLED\r\nX-Webhook-Route: SMUGGLED\r\n\
                 Webhook-Id: SMUGGLED\r\n",
            ),
            &[200, 401],
        ),
        Case::forwarded(
            "trailers declaring framing",
            trailers(
                "Content-Length: 99\r\nTransfer-Encoding: chunked\r\nX-Smuggled: SMUGGLED\r\n",
            ),
            &[200, 401],
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_targets_reach_the_upstream_in_origin_form_or_not_at_all() {
    let line = |line: &str, host: &str| {
        request(
            line,
            &format!("{host}Content-Length: 20\r\n"),
            &cat(&[BODY, &hidden()]),
        )
    };
    let to = |target: &str| line(&format!("POST {target} HTTP/1.1"), "Host: gw\r\n");
    check(vec![
        Case::forwarded(
            "absolute form",
            request(
                "POST http://gw/hook HTTP/1.1",
                "Host: gw\r\nContent-Length: 20\r\n",
                &cat(&[BODY, &forged()]),
            ),
            &[200, 401],
        ),
        Case::forwarded(
            "absolute form without Host",
            request(
                "POST http://gw/hook HTTP/1.1",
                "Content-Length: 20\r\n",
                &cat(&[BODY, &forged()]),
            ),
            &[200, 401],
        ),
        Case::refused(
            "absolute form naming another host",
            line("POST http://SMUGGLED/hook HTTP/1.1", "Host: gw\r\n"),
        ),
        Case::refused(
            "absolute form with userinfo",
            line("POST http://SMUGGLED@gw/hook HTTP/1.1", "Host: gw\r\n"),
        ),
        Case::refused(
            "HTTP/1.2",
            request(
                "POST /hook HTTP/1.2",
                "Host: gw\r\nContent-Length: 20\r\n",
                &cat(&[BODY, &hidden()]),
            ),
        ),
        Case::refused(
            "HTTP/0.9",
            request(
                "POST /hook HTTP/0.9",
                "Host: gw\r\nContent-Length: 20\r\n",
                &cat(&[BODY, &hidden()]),
            ),
        ),
        Case::refused(
            "two Host headers",
            line("POST /hook HTTP/1.1", "Host: gw\r\nHost: SMUGGLED\r\n"),
        ),
        Case::refused("a dot-dot segment", to("/p/../hook")),
        Case::refused("a dot segment", to("/p/./x")),
        Case::refused("an encoded dot-dot segment", to("/p/%2e%2E/hook")),
        Case::refused("a half-encoded dot-dot segment", to("/p/.%2e/hook")),
        Case::refused("dot-dot before an encoded slash", to("/p/..%2fSMUGGLED")),
        Case::refused(
            "dot-dot before an encoded backslash",
            to("/p/..%5CSMUGGLED"),
        ),
        Case::refused("dot-dot before a backslash", to("/p/..\\SMUGGLED")),
        Case::forwarded(
            "an encoded slash",
            post_to_prefix("/p/a%2Fb", &forged()),
            &[200, 401],
        )
        .to("prefix", "/in/a%2Fb"),
        Case::answered("asterisk form", to("*"), &[404]).closing(),
        Case::answered("a double slash", to("//hook"), &[404]).closing(),
        Case::answered("a NUL in the target", to("/hook\0SMUGGLED"), &[404]).closing(),
        Case::answered("a space in the target", to("/hook SMUGGLED"), &[404]).closing(),
    ])
    .await;
}

/// A signed `POST` of [`BODY`] to `target` on the prefix route, then `after`.
fn post_to_prefix(target: &str, after: &[u8]) -> Vec<u8> {
    request(
        &format!("POST {target} HTTP/1.1"),
        "Host: gw\r\nContent-Length: 20\r\n",
        &cat(&[BODY, after]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_and_connection_headers_never_change_the_framing() {
    let sized_then = |headers: &str, after: &[u8]| {
        post(
            &format!("Content-Length: 20\r\n{headers}"),
            &cat(&[BODY, after]),
        )
    };
    check(vec![
        Case::forwarded(
            "a websocket upgrade",
            sized_then(
                "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                &forged(),
            ),
            &[200, 401],
        ),
        Case::forwarded(
            "an h2c upgrade",
            sized_then(
                "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
                &forged(),
            ),
            &[200, 401],
        ),
        Case::forwarded(
            "Connection naming the gateway's headers and framing",
            sized_then(
                "Connection: x-webhook-verified, X-Webhook-Route, content-length, host\r\n",
                &forged(),
            ),
            &[200, 401],
        ),
        Case::forwarded(
            "Keep-Alive and Proxy-Connection",
            sized_then(
                "Keep-Alive: timeout=SMUGGLED\r\nProxy-Connection: SMUGGLED\r\nTE: SMUGGLED\r\nTrailer: SMUGGLED\r\n",
                &forged(),
            ),
            &[200, 401],
        ),
        Case::forwarded("Connection: close", sized_then("Connection: close\r\n", &hidden()), &[200])
            .closing(),
        Case::answered(
            "CONNECT",
            cat(&[b"CONNECT gw:80 HTTP/1.1\r\nHost: gw:80\r\n\r\n", &hidden()]),
            &[404],
        )
        .closing(),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_followed_by_a_pipelined_request() {
    let expect = |length: usize, body: &[u8], after: &[u8]| {
        post(
            &format!("Content-Length: {length}\r\nExpect: 100-continue\r\n"),
            &cat(&[body, after]),
        )
    };
    let big = vec![b'x'; 2000];
    check(vec![
        Case::forwarded(
            "body and the next request sent before the 100",
            expect(20, BODY, &forged()),
            &[200, 401],
        ),
        Case::forwarded(
            "a chunked body and the next request",
            post(
                "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n",
                &cat(&[&chunked(), &forged()]),
            ),
            &[200, 401],
        ),
        Case::answered(
            "refused for its length, body and next request sent anyway",
            expect(2000, &big, &hidden()),
            &[413],
        )
        .closing(),
        Case::answered(
            "no route, body and next request sent anyway",
            request(
                "POST /nowhere HTTP/1.1",
                "Host: gw\r\nContent-Length: 20\r\nExpect: 100-continue\r\n",
                &cat(&[BODY, &hidden()]),
            ),
            &[404],
        )
        .closing(),
        Case::answered(
            "a forged request, then another",
            cat(&[
                &String::from_utf8(forged())
                    .unwrap()
                    .replace("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n")
                    .into_bytes(),
                &forged(),
            ]),
            &[401, 401],
        ),
    ])
    .await;
}
