use std::time::{Duration, Instant};

use crate::support::client::{Raw, post};
use crate::support::gateway::Gateway;
use crate::support::sign;
use crate::support::upstream::Upstream;
use crate::support::{route, scheme};

pub const SECRET: &str = "door-secret";

/// A gateway with an admin listener and `server_extra` in `[server]`, whose
/// route `door` on `/hook` verifies aryeo with [`SECRET`] for `upstream`.
pub async fn gateway(server_extra: &str) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let routes = route(
        "door",
        "/hook",
        &upstream.url(),
        &scheme("aryeo", &[SECRET]),
    );
    let gw = Gateway::with_admin(&routes, server_extra).await;
    (upstream, gw)
}

/// A signed request for `/hook` as raw bytes.
fn signed(body: &str) -> String {
    let (h, v) = sign::aryeo(SECRET, body.as_bytes());
    format!(
        "POST /hook HTTP/1.1\r\nHost: gw\r\n{h}: {v}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Lets this test process hold `n` more sockets.
fn allow_open_files(n: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let want = (soft + n).min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, want, hard).unwrap();
    assert!(want >= n, "the open-file limit {hard} is below {n}");
}

/// The value of the unlabelled metric `name` in `metrics` (0 when absent).
pub fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dribbling_header_gets_408_and_is_closed_within_the_header_deadline() {
    let (upstream, gw) = gateway("header_timeout_ms = 1000").await;
    let mut raw = Raw::connect(gw.addr).await;
    let started = Instant::now();
    assert!(raw.send(b"POST /hook HTTP/1.1\r\n").await);
    // One header line every 300 ms: each read is quick, the whole is not.
    let mut answer = None;
    for i in 0..40 {
        answer = raw.read_response(Duration::from_millis(300)).await;
        if answer.is_some() {
            break;
        }
        raw.send(format!("X-Line-{i}: {}\r\n", "a".repeat(20)).as_bytes())
            .await;
    }
    let answer = answer.expect("a 408");
    assert_eq!(answer.status, 408);
    assert_eq!(answer.json()["error"], "header_timeout");
    assert!(raw.closed_within(Duration::from_secs(3)).await);
    assert!(
        started.elapsed() < Duration::from_millis(1000 + 2000),
        "closed after {:?}",
        started.elapsed()
    );
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_without_an_answer() {
    let (_upstream, gw) = gateway("header_timeout_ms = 500").await;
    let mut raw = Raw::connect(gw.addr).await;
    let started = Instant::now();
    assert!(raw.closed_within(Duration::from_secs(3)).await);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(
        raw.read_head(Duration::from_millis(10)).await.is_none(),
        "nothing is answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout() {
    let (_upstream, gw) = gateway("keepalive_timeout_secs = 1\nheader_timeout_ms = 30000").await;
    let mut raw = Raw::connect(gw.addr).await;
    assert!(raw.send(signed("{}").as_bytes()).await);
    let answer = raw.read_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.status, 200);
    let idle = Instant::now();
    assert!(raw.closed_within(Duration::from_secs(4)).await);
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_are_closed_at_the_deadline_and_memory_falls_back() {
    allow_open_files(2_200);
    let (upstream, gw) = gateway("header_timeout_ms = 2000").await;
    let before = gw.rss_kib();
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        idle.push(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let holding = gw.rss_kib();
    let open = counter(&gw.metrics().await, "hookgate_connections_open");
    assert_eq!(open, 2_000, "every idle connection is open");
    // All of them are closed by the gateway at the deadline.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = gw.metrics().await;
    assert_eq!(counter(&metrics, "hookgate_connections_open"), 0);
    let mut closed = 0;
    for mut stream in idle {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        if matches!(
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        ) {
            closed += 1;
        }
    }
    assert_eq!(closed, 2_000);
    // The gateway still serves, and its allocator gives freed memory back to
    // the system as it works.
    let (h, v) = sign::aryeo(SECRET, b"{}");
    for _ in 0..20 {
        assert_eq!(post(gw.addr, "/hook", &[(h, &v)], "{}").await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = gw.rss_kib();
    assert!(
        after < before + (holding - before) / 2,
        "RSS before {before} KiB, holding 2,000 connections {holding} KiB, after {after} KiB"
    );
    assert_eq!(upstream.requests().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_connections_are_closed_and_counted_the_open_ones_served() {
    let (_upstream, gw) = gateway("max_connections = 4\nheader_timeout_ms = 30000").await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(Raw::connect(gw.addr).await);
    }
    // The four are accepted (and counted) before the fifth arrives, however
    // slowly a loaded machine gets to them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(&gw.metrics().await, "hookgate_connections_open") < 4 {
        assert!(Instant::now() < deadline, "four connections accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut extra = Raw::connect(gw.addr).await;
    assert!(
        extra.closed_within(Duration::from_secs(2)).await,
        "the fifth connection is closed at once"
    );
    for raw in &mut open {
        assert!(raw.send(signed("{}").as_bytes()).await);
        let answer = raw.read_response(Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer.status, 200, "open connections keep being served");
    }
    // The admin listener is not counted against the limit.
    let metrics = gw.metrics().await;
    assert_eq!(counter(&metrics, "hookgate_connections_refused_total"), 1);
    assert_eq!(counter(&metrics, "hookgate_connections_open"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_over_max_header_bytes_gets_431() {
    let (upstream, gw) = gateway("max_header_bytes = 4096").await;
    let big = "x".repeat(5000);
    let mut raw = Raw::connect(gw.addr).await;
    let request = signed("{}").replacen("\r\n", &format!("\r\nX-Big: {big}\r\n"), 1);
    raw.send(request.as_bytes()).await;
    let answer = raw.read_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.status, 431);
    assert_eq!(answer.json()["error"], "headers_too_large");
    assert!(raw.closed_within(Duration::from_secs(3)).await);

    // Just under the limit passes.
    let fits = "x".repeat(3000);
    let mut raw = Raw::connect(gw.addr).await;
    let request = signed("{}").replacen("\r\n", &format!("\r\nX-Big: {fits}\r\n"), 1);
    raw.send(request.as_bytes()).await;
    let answer = raw.read_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_inflight_budget_get_503_before_being_read() {
    let (upstream, gw) = gateway("max_inflight_body_bytes = 1000").await;
    // Declared: refused before a byte of the body is read.
    let mut raw = Raw::connect(gw.addr).await;
    let body = "y".repeat(1500);
    let (h, v) = sign::aryeo(SECRET, body.as_bytes());
    raw.send(
        format!("POST /hook HTTP/1.1\r\nHost: gw\r\n{h}: {v}\r\nContent-Length: 1500\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let answer = raw.read_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json()["error"], "overloaded");
    assert!(
        answer.head.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        answer.head
    );

    // Chunked: refused as soon as it grows past the budget.
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(
        format!(
            "POST /hook HTTP/1.1\r\nHost: gw\r\n{h}: {v}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    for _ in 0..3 {
        raw.send(format!("1f4\r\n{}\r\n", "y".repeat(500)).as_bytes())
            .await;
    }
    let answer = raw.read_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json()["error"], "overloaded");

    // Within the budget, and once the refused ones gave their share back.
    let (h, v) = sign::aryeo(SECRET, b"{}");
    assert_eq!(post(gw.addr, "/hook", &[(h, &v)], "{}").await.status, 200);
    assert_eq!(upstream.requests().len(), 1);
    // Every reservation is given back once its exchange ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&gw.metrics().await, "hookgate_inflight_body_bytes") != 0 {
        assert!(Instant::now() < deadline, "body bytes stay reserved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_each_verified_and_answered_in_order() {
    let (upstream, gw) = gateway("").await;
    let forged = signed(r#"{"n":2}"#).replace(r#"{"n":2}"#, r#"{"n":9}"#);
    let requests = [signed(r#"{"n":1}"#), forged, signed(r#"{"n":3}"#)].concat();
    let mut raw = Raw::connect(gw.addr).await;
    assert!(raw.send(requests.as_bytes()).await);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let answer = raw
            .read_response(Duration::from_secs(5))
            .await
            .expect("every pipelined request is answered");
        statuses.push(answer.status);
    }
    assert_eq!(statuses, [200, 401, 200]);
    let bodies: Vec<Vec<u8>> = upstream.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(
        bodies,
        [br#"{"n":1}"#.to_vec(), br#"{"n":3}"#.to_vec()],
        "the forged request never reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_refusal_reaches_a_client_still_sending_its_body() {
    let (upstream, gw) = gateway("").await;
    for _ in 0..10 {
        let mut raw = Raw::connect(gw.addr).await;
        // No route: refused before the 4 MB body is read.
        let head = "POST /nowhere HTTP/1.1\r\nHost: gw\r\nContent-Length: 4000000\r\n\r\n";
        assert!(raw.send(head.as_bytes()).await);
        raw.send(&vec![b'z'; 256 * 1024]).await;
        let answer = raw
            .read_response(Duration::from_secs(5))
            .await
            .expect("the 404 is readable");
        assert_eq!(answer.status, 404);
        assert_eq!(answer.json()["error"], "no_route");
    }
    upstream.assert_untouched();
}
