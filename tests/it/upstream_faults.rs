//! An upstream that fails, each way in turn: the client gets 502 or 504 (or a
//! cut connection once the upstream's header was relayed), never a 2xx the
//! upstream did not send, and `hookgate_upstream_errors_total` counts the
//! failure by kind.

use std::time::Duration;

use crate::support::client::Raw;
use crate::support::gateway::{Gateway, free_port};
use crate::support::raw_upstream::{Act, Forwarded, OK, RawUpstream};
use crate::support::upstream::Upstream;
use crate::support::{route, scheme, sign};

const SECRET: &str = "fault-secret";
const BODY: &[u8] = br#"{"event":"fault"}"#;
const WAIT: Duration = Duration::from_secs(5);

/// A gateway with an admin listener and the route `f` on `/hook` to
/// `upstream`, which gets 500 ms to answer; `extra` goes in the route.
async fn gateway(upstream: &str, extra: &str) -> Gateway {
    let routes = route("f", "/hook", upstream, &scheme("aryeo", &[SECRET])).replace(
        "[routes.verify]",
        &format!("upstream_timeout_ms = 500\n{extra}\n[routes.verify]"),
    );
    Gateway::with_admin(&routes, "").await
}

/// A signed `POST /hook` of [`BODY`].
fn signed() -> Vec<u8> {
    let (h, v) = sign::aryeo(SECRET, BODY);
    [
        format!(
            "POST /hook HTTP/1.1\r\nHost: gw\r\n{h}: {v}\r\nContent-Length: {}\r\n\r\n",
            BODY.len()
        )
        .as_bytes(),
        BODY,
    ]
    .concat()
}

/// Sends a signed request on `raw` and asserts the gateway's own answer:
/// `status` and `{"error": code}`.
async fn expect_error(raw: &mut Raw, status: u16, code: &str) {
    assert!(raw.send(&signed()).await);
    let answer = raw.read_final(WAIT).await.expect("an answer");
    assert_eq!(answer.status, status, "{}", answer.head);
    assert!(answer.head.contains("application/json"), "{}", answer.head);
    assert_eq!(answer.json(), serde_json::json!({ "error": code }));
}

/// Sends a signed request on a new connection and asserts its answer.
async fn expect_error_once(gw: &Gateway, status: u16, code: &str) {
    expect_error(&mut Raw::connect(gw.addr).await, status, code).await;
}

/// Starts an upstream playing `act` and a gateway in front of it, sends a
/// signed request on a new connection, and asserts that the upstream's 200
/// header came through and then the connection was cut (never a whole
/// response), counted as `aborted_mid_response`.
async fn expect_cut(act: Act) {
    let upstream = RawUpstream::start(vec![act]).await;
    let gw = gateway(&upstream.url(), "").await;
    let mut raw = Raw::connect(gw.addr).await;
    assert!(raw.send(&signed()).await);
    let (status, head) = raw.read_head(WAIT).await.expect("the relayed header");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("Content-Length: 100"), "{head}");
    assert!(
        raw.closed_within(WAIT).await,
        "the client connection stays open"
    );
    assert!(
        raw.unread().len() < 100,
        "a whole body arrived: {:?}",
        String::from_utf8_lossy(raw.unread())
    );
    counted(&gw, "aborted_mid_response", 1).await;
}

/// Waits until the route's upstream errors of `kind` number `n`.
async fn counted(gw: &Gateway, kind: &str, n: usize) {
    let line = format!(r#"hookgate_upstream_errors_total{{kind="{kind}",route="f"}} {n}"#);
    gw.metrics_with(&[&line]).await;
}

/// Starts an upstream playing `act` on every request and a gateway in front
/// of it, sends one signed request, and asserts the gateway's answer (`status`,
/// `code`) and that it counted one upstream error of `kind`.
async fn one_fault(act: Act, status: u16, code: &str, kind: &str) -> RawUpstream {
    let upstream = RawUpstream::start(vec![act]).await;
    let gw = gateway(&upstream.url(), "").await;
    expect_error_once(&gw, status, code).await;
    counted(&gw, kind, 1).await;
    upstream
}

/// The upstream got the request exactly once, as `POST /hook`, framed by the
/// gateway.
fn assert_requested_once(upstream: &RawUpstream) {
    let connections = upstream.recorded();
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(connections[0].requests, 1);
    let got = Forwarded::parse(&connections[0].bytes);
    assert_eq!(
        (got.method.as_str(), got.target.as_str()),
        ("POST", "/hook")
    );
    got.assert_framed_around(BODY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_502_refused() {
    let gw = gateway(&format!("http://127.0.0.1:{}", free_port()), "").await;
    expect_error_once(&gw, 502, "upstream_unavailable").await;
    counted(&gw, "refused", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_not_accepted_in_time_is_502_connect_timeout() {
    // A listener whose accept queue (backlog 0) one connection fills: the
    // kernel drops every later SYN.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let _filler = std::net::TcpStream::connect(addr).unwrap();
    let gw = gateway(&format!("http://{addr}"), "").await;
    expect_error_once(&gw, 502, "upstream_unavailable").await;
    counted(&gw, "connect_timeout", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_before_any_response_is_502_broken() {
    let act = Act::Reset(Vec::new());
    let upstream = one_fault(act, 502, "upstream_unavailable", "broken").await;
    assert_requested_once(&upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_response_is_502_broken() {
    let garbage: [&[u8]; 5] = [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
        // A switch to another protocol the gateway never asked for: the 101 is
        // not relayed, and what follows is no response.
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\ntunnel\r\n\r\n",
    ];
    for (i, reply) in garbage.iter().enumerate() {
        let act = Act::Reply(reply.to_vec());
        let upstream = one_fault(act, 502, "upstream_unavailable", "broken").await;
        assert_eq!(upstream.connections(), 1, "reply {i}: not sent again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_response_header_is_504_timeout() {
    let act = Act::Stall(b"HTTP/1.1 200 OK\r\n".to_vec());
    let upstream = one_fault(act, 504, "upstream_timeout", "timeout").await;
    assert_requested_once(&upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_response_cuts_the_client_connection() {
    let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial".to_vec();
    expect_cut(Act::Reset(partial.clone())).await;
    // The same, ended by a close rather than a reset.
    expect_cut(Act::Close(partial)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_response_body_cuts_the_client_connection() {
    let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial".to_vec();
    expect_cut(Act::Stall(partial)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_upstream_closes_is_retried_once_on_a_new_one() {
    for (what, second) in [
        ("closed", Act::Close(Vec::new())),
        ("reset", Act::Reset(Vec::new())),
    ] {
        // Each connection answers its first request, then is closed by the
        // upstream when the next one arrives on it: the keep-alive race.
        let upstream = RawUpstream::start(vec![Act::Reply(OK.to_vec()), second]).await;
        let gw = gateway(&upstream.url(), "").await;
        let mut raw = Raw::connect(gw.addr).await;
        for n in 1..=2 {
            assert!(raw.send(&signed()).await);
            let answer = raw.read_final(WAIT).await.expect("an answer");
            assert_eq!(answer.status, 200, "{what}, request {n}: {}", answer.head);
            assert_eq!(answer.body, b"ok");
        }
        drop(gw);
        let connections = upstream.ended().await;
        let requests: Vec<usize> = connections.iter().map(|c| c.requests).collect();
        assert_eq!(
            requests,
            [2, 1],
            "{what}: the second request came on the pooled connection, which \
             dropped it unanswered, then once on a new one"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_closed_right_after_its_answer_is_not_reused() {
    let upstream = RawUpstream::start(vec![Act::Close(OK.to_vec())]).await;
    let gw = gateway(&upstream.url(), "").await;
    let mut raw = Raw::connect(gw.addr).await;
    for n in 1..=3 {
        assert!(raw.send(&signed()).await);
        let answer = raw.read_final(WAIT).await.expect("an answer");
        assert_eq!(answer.status, 200, "request {n}: {}", answer.head);
    }
    drop(gw);
    let requests: Vec<usize> = upstream.ended().await.iter().map(|c| c.requests).collect();
    assert_eq!(requests, [1, 1, 1], "each request answered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_that_began_to_answer_is_never_sent_the_request_again() {
    let began: [(&str, Act); 3] = [
        ("garbage", Act::Reply(b"garbage\r\n\r\n".to_vec())),
        (
            "half a status line, then a reset",
            Act::Reset(b"HTTP/1.1 20".to_vec()),
        ),
        (
            "100 Continue, then a close",
            Act::Close(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
        ),
    ];
    for (what, second) in began {
        let upstream = RawUpstream::start(vec![Act::Reply(OK.to_vec()), second]).await;
        let gw = gateway(&upstream.url(), "").await;
        let mut raw = Raw::connect(gw.addr).await;
        assert!(raw.send(&signed()).await);
        assert_eq!(raw.read_final(WAIT).await.expect("an answer").status, 200);
        expect_error(&mut raw, 502, "upstream_unavailable").await;
        counted(&gw, "broken", 1).await;
        let requests: Vec<usize> = upstream.recorded().iter().map(|c| c.requests).collect();
        assert_eq!(requests, [2], "{what}: the request was sent again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_or_absent_tls_upstream_is_502_tls() {
    // A certificate from a CA the gateway does not trust.
    let (upstream, _ca) = Upstream::start_tls().await;
    let https = format!("https://127.0.0.1:{}/in", upstream.addr.port());
    let gw = gateway(&https, "").await;
    expect_error_once(&gw, 502, "upstream_unavailable").await;
    counted(&gw, "tls", 1).await;
    assert!(upstream.requests().is_empty(), "no request without trust");
    // A plain HTTP server where TLS was expected: it answers the TLS
    // greeting with a 400.
    let plain = Upstream::start().await;
    let gw = gateway(&format!("https://{}/in", plain.addr), "").await;
    expect_error_once(&gw, 502, "upstream_unavailable").await;
    counted(&gw, "tls", 1).await;
    assert!(plain.requests().is_empty(), "no request over plain HTTP");
}

/// A change to an upstream certificate's parameters.
type CertEdit = Box<dyn FnOnce(&mut rcgen::CertificateParams)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_ca_with_a_wrong_or_expired_certificate_is_502_tls() {
    let wrong_name: CertEdit = Box::new(|p| {
        p.subject_alt_names = vec![rcgen::SanType::DnsName("other.example".try_into().unwrap())];
    });
    let expired: CertEdit = Box::new(|p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    for (what, edit) in [("another name", wrong_name), ("expired", expired)] {
        let (upstream, ca_pem) = Upstream::start_tls_with(edit).await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        let https = format!("https://127.0.0.1:{}/in", upstream.addr.port());
        let extra = format!("upstream_ca_file = \"{}\"", ca_file.display());
        let gw = gateway(&https, &extra).await;
        expect_error_once(&gw, 502, "upstream_unavailable").await;
        counted(&gw, "tls", 1).await;
        assert!(upstream.requests().is_empty(), "{what}: a request was sent");
    }
}
