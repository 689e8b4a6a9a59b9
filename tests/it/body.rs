use std::time::{Duration, Instant};

use crate::support::client::{Raw, post};
use crate::support::gateway::Gateway;
use crate::support::sign;
use crate::support::upstream::Upstream;
use crate::support::{route, scheme};

const SECRET: &str = "body-secret";

async fn aryeo_gateway(extra: &str) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let routes = route("big", "/big", &upstream.url(), &scheme("aryeo", &[SECRET]))
        .replace("[routes.verify]", &format!("{extra}\n[routes.verify]"));
    (upstream.clone(), Gateway::start(&routes).await)
}

/// Bytes that are not JSON and not text, so nothing can be normalized on the way.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_mib_body_arrives_byte_for_byte() {
    let (upstream, gw) = aryeo_gateway("max_body_bytes = 6000000").await;
    let body = pattern(5 * 1024 * 1024);
    let (h, v) = sign::aryeo(SECRET, &body);
    let answer = post(gw.addr, "/big", &[(h, &v)], body.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let got = upstream.only_request();
    assert_eq!(got.body.len(), body.len());
    assert!(got.body == body, "body changed on the way");
    assert_eq!(got.header("content-length"), body.len().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_around_pingoras_64k_retry_buffer_are_forwarded() {
    let (upstream, gw) = aryeo_gateway("").await;
    for len in [0, 1, 65_535, 65_536, 65_537, 200_000] {
        let body = pattern(len);
        let (h, v) = sign::aryeo(SECRET, &body);
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            post(gw.addr, "/big", &[(h, &v)], body.clone()),
        )
        .await
        .unwrap_or_else(|_| panic!("{len} bytes: hung"));
        assert_eq!(answer.status, 200, "{len} bytes");
        assert!(
            upstream.requests().last().unwrap().body == body,
            "{len} bytes changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_is_verified_and_forwarded_with_content_length() {
    let (upstream, gw) = aryeo_gateway("").await;
    let body = pattern(150_000);
    let (h, v) = sign::aryeo(SECRET, &body);
    let mut raw = Raw::connect(gw.addr).await;
    let head =
        format!("POST /big HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n{h}: {v}\r\n\r\n");
    assert!(raw.send(head.as_bytes()).await);
    for chunk in body.chunks(10_007) {
        raw.send(format!("{:x}\r\n", chunk.len()).as_bytes()).await;
        raw.send(chunk).await;
        raw.send(b"\r\n").await;
    }
    raw.send(b"0\r\n\r\n").await;
    let answer = raw
        .read_response(Duration::from_secs(10))
        .await
        .expect("a response");
    assert_eq!(answer.status, 200, "{}", answer.head);
    let got = upstream.only_request();
    assert!(got.body == body, "chunked body changed");
    assert_eq!(got.header("content-length"), body.len().to_string());
    assert!(got.header_all("transfer-encoding").is_empty());
}

/// From the `body` fuzz target's first findings: pingora percent-escapes a
/// request target with bytes httparse refuses and parses the rewritten header.
/// The body still starts where the header ended on the wire, and the next
/// request on the connection is framed from there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_after_an_escaped_request_target_is_framed_from_the_wire() {
    let (upstream, gw) = aryeo_gateway("").await;
    let mut raw = Raw::connect(gw.addr).await;
    for body in [&b"abc"[..], b"0\r\n\r\nPOST /big HTTP/1.1\r\n"] {
        let (h, v) = sign::aryeo(SECRET, body);
        let head = format!(
            "POST /big?q=\x7f\x01~ HTTP/1.1\r\nHost: gw\r\n{h}: {v}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        assert!(raw.send(&[head.as_bytes(), body].concat()).await);
        let answer = raw
            .read_response(Duration::from_secs(10))
            .await
            .expect("a response");
        assert_eq!(answer.status, 200, "{}", answer.head);
        assert!(upstream.requests().last().unwrap().body == body);
    }
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_over_limit_is_refused_before_reading() {
    let (upstream, gw) = aryeo_gateway("max_body_bytes = 1000").await;
    let mut raw = Raw::connect(gw.addr).await;
    // Announce 10 MB, send nothing: the answer must not wait for the body.
    let started = Instant::now();
    raw.send(b"POST /big HTTP/1.1\r\nHost: gw\r\nContent-Length: 10000000\r\nExpect: 100-continue\r\nSignature: 00\r\n\r\n").await;
    let answer = raw
        .read_response(Duration::from_secs(5))
        .await
        .expect("a response");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        answer.status, 413,
        "no 100 Continue before the refusal: {}",
        answer.head
    );
    assert_eq!(
        answer.json(),
        serde_json::json!({"error": "payload_too_large"})
    );
    assert!(
        raw.closed_within(Duration::from_secs(5)).await,
        "connection left open with an unread body"
    );

    // One byte over via Content-Length, and exactly at the limit.
    let (h, v) = sign::aryeo(SECRET, &pattern(1001));
    post(gw.addr, "/big", &[(h, &v)], pattern(1001))
        .await
        .assert_error(413, "payload_too_large");
    upstream.assert_untouched();
    let (h, v) = sign::aryeo(SECRET, &pattern(1000));
    assert_eq!(
        post(gw.addr, "/big", &[(h, &v)], pattern(1000))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_is_cut_off_as_soon_as_it_passes_the_limit() {
    let (upstream, gw) = aryeo_gateway("max_body_bytes = 100000").await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(
        b"POST /big HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nSignature: 00\r\n\r\n",
    )
    .await;
    let chunk = pattern(30_000);
    for _ in 0..4 {
        raw.send(format!("{:x}\r\n", chunk.len()).as_bytes()).await;
        raw.send(&chunk).await;
        raw.send(b"\r\n").await;
    }
    // 120 000 bytes sent, no terminating chunk: the refusal must come anyway.
    let answer = raw
        .read_response(Duration::from_secs(5))
        .await
        .expect("413 before the body ends");
    assert_eq!(answer.status, 413);
    assert_eq!(
        answer.json(),
        serde_json::json!({"error": "payload_too_large"})
    );
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_body_gets_408_after_read_timeout() {
    let (upstream, gw) = aryeo_gateway("read_timeout_ms = 500").await;
    let mut raw = Raw::connect(gw.addr).await;
    let started = Instant::now();
    raw.send(
        b"POST /big HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\nSignature: 00\r\n\r\n0123456789",
    )
    .await;
    let answer = raw
        .read_response(Duration::from_secs(5))
        .await
        .expect("a response");
    let waited = started.elapsed();
    assert_eq!(answer.status, 408, "{}", answer.head);
    assert_eq!(answer.json(), serde_json::json!({"error": "body_timeout"}));
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_body_is_bounded_by_the_total_deadline() {
    let (upstream, gw) = aryeo_gateway("read_timeout_ms = 800").await;
    let mut raw = Raw::connect(gw.addr).await;
    let started = Instant::now();
    raw.send(b"POST /big HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\nSignature: 00\r\n\r\n")
        .await;
    // One byte every 200 ms never trips a per-read timeout; the total deadline must.
    let mut answer = None;
    for _ in 0..50 {
        if !raw.send(b"x").await {
            break;
        }
        if let Some(a) = raw.read_response(Duration::from_millis(200)).await {
            answer = Some(a);
            break;
        }
    }
    let answer = answer.expect("408 while the client trickles");
    assert_eq!(answer.status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_then_the_body_is_verified() {
    let (upstream, gw) = aryeo_gateway("").await;
    let body = pattern(5000);
    let (h, v) = sign::aryeo(SECRET, &body);
    let mut raw = Raw::connect(gw.addr).await;
    let head = format!(
        "POST /big HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\nExpect: 100-continue\r\n{h}: {v}\r\n\r\n",
        body.len()
    );
    raw.send(head.as_bytes()).await;
    let (status, _) = raw
        .read_head(Duration::from_secs(2))
        .await
        .expect("100 Continue without the body");
    assert_eq!(status, 100);
    raw.send(&body).await;
    let answer = raw
        .read_response(Duration::from_secs(5))
        .await
        .expect("final response");
    assert_eq!(answer.status, 200);
    let got = upstream.only_request();
    assert!(got.body == body);
    assert!(
        got.header_all("expect").is_empty(),
        "Expect must not be forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_sending_its_refused_body_reads_the_413() {
    let (upstream, gw) = aryeo_gateway("max_body_bytes = 1000").await;
    for _attempt in 0..5 {
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(
            b"POST /big HTTP/1.1\r\nHost: gw\r\nContent-Length: 2000000\r\nSignature: 00\r\n\r\n",
        )
        .await;
        // The answer is given before the body is read; the client keeps sending,
        // as clients without `Expect: 100-continue` do, and reads afterwards.
        tokio::time::sleep(Duration::from_millis(50)).await;
        raw.send(&pattern(2_000_000)).await;
        let answer = raw
            .read_response(Duration::from_secs(5))
            .await
            .expect("the 413 survives the connection's close");
        assert_eq!(answer.status, 413);
    }
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_http_refuses_gets_a_json_400_and_the_connection_closes() {
    let (upstream, gw) = aryeo_gateway("").await;
    let (h, v) = sign::aryeo(SECRET, b"hello");
    let signed = format!("{h}: {v}\r\n");
    for request in [
        "GARBAGE\r\n\r\n".to_owned(),
        format!(
            "POST /big HTTP/1.1\r\nHost: x\r\n{signed}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello"
        ),
        format!("POST /big HTTP/1.1\r\nHost: x\r\n{signed}Transfer-Encoding: gzip\r\n\r\nhello"),
        format!("POST /big HTTP/1.1\r\nHost: x\r\n{signed}Content-Length: +5\r\n\r\nhello"),
    ] {
        let mut raw = Raw::connect(gw.addr).await;
        assert!(raw.send(request.as_bytes()).await);
        let answer = raw
            .read_response(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("no answer to {request:?}"));
        assert_eq!(answer.status, 400, "{request:?}");
        assert_eq!(answer.json()["error"], "bad_request", "{request:?}");
        assert!(
            raw.closed_within(Duration::from_secs(5)).await,
            "{request:?}: the connection stays open"
        );
    }
    upstream.assert_untouched();
}
