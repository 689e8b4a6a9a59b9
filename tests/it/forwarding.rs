use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::client::{Raw, post};
use crate::support::gateway::{Gateway, free_port};
use crate::support::sign;
use crate::support::upstream::{Reply, Upstream};
use crate::support::{route, scheme};

const SECRET: &str = "fwd-secret";

fn aryeo_route(upstream_url: &str, extra: &str) -> String {
    route("fwd", "/hook", upstream_url, &scheme("aryeo", &[SECRET]))
        .replace("[routes.verify]", &format!("{extra}\n[routes.verify]"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_gateway_headers_are_replaced_and_provider_headers_kept() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&aryeo_route(&upstream.url(), "")).await;
    let body = br#"{"id":"evt_9"}"#;
    let (h, v) = sign::aryeo(SECRET, body);
    let forged = [
        (h, v.as_str()),
        ("host", "hooks.example.com"),
        ("X-Webhook-Verified", "true"),
        ("x-webhook-route", "admin"),
        ("Webhook-Id", "forged-id"),
        ("Webhook-Timestamp", "1"),
        ("X-Webhook-Event-Type", "forged"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Provider-Header", "kept"),
        ("Connection", "X-Hop"),
        ("X-Hop", "dropped"),
    ];
    assert_eq!(
        post(gw.addr, "/hook", &forged, body.to_vec()).await.status,
        200
    );
    let got = upstream.only_request();
    assert_eq!(got.header("x-webhook-verified"), "aryeo");
    assert_eq!(got.header("x-webhook-route"), "fwd");
    assert!(
        got.header_all("webhook-id").is_empty(),
        "aryeo has no event id; the forged one must go"
    );
    assert!(got.header_all("webhook-timestamp").is_empty());
    assert!(got.header_all("x-webhook-event-type").is_empty());
    assert_eq!(got.header("x-forwarded-for"), "127.0.0.1");
    assert_eq!(got.header("x-forwarded-proto"), "http");
    assert_eq!(got.header("x-forwarded-host"), "hooks.example.com");
    assert_eq!(got.header("host"), upstream.addr.to_string());
    assert_eq!(
        got.header("signature"),
        v,
        "the provider's signature passes through"
    );
    assert_eq!(got.header("x-provider-header"), "kept");
    assert!(got.header_all("x-hop").is_empty());
    assert_eq!(got.method, "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_signature_headers_removes_the_signature() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&aryeo_route(
        &upstream.url(),
        "strip_signature_headers = true",
    ))
    .await;
    let (h, v) = sign::aryeo(SECRET, b"{}");
    assert_eq!(post(gw.addr, "/hook", &[(h, &v)], "{}").await.status, 200);
    assert!(upstream.only_request().header_all("signature").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_answer_comes_back_unchanged() {
    let big = vec![b'z'; 1024 * 1024];
    for (status, body) in [
        (201u16, b"created".to_vec()),
        (500, b"boom".to_vec()),
        (404, Vec::new()),
        (200, big),
    ] {
        let reply = Reply {
            status,
            headers: vec![
                ("x-app".into(), "yes".into()),
                ("set-cookie".into(), "a=1".into()),
                ("content-type".into(), "application/x-app".into()),
            ],
            body: body.clone(),
            delay: Duration::ZERO,
        };
        let upstream = Upstream::with_reply(reply).await;
        let gw = Gateway::start(&aryeo_route(&upstream.url(), "")).await;
        let (h, v) = sign::aryeo(SECRET, b"{}");
        let answer = post(gw.addr, "/hook", &[(h, &v)], "{}").await;
        assert_eq!(answer.status, status);
        assert_eq!(answer.header("x-app"), "yes");
        assert_eq!(answer.header("set-cookie"), "a=1");
        assert_eq!(answer.header("content-type"), "application/x-app");
        assert!(answer.body == body, "status {status}: body changed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_is_502() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let gw = Gateway::start(&aryeo_route(&closed, "")).await;
    let (h, v) = sign::aryeo(SECRET, b"{}");
    post(gw.addr, "/hook", &[(h, &v)], "{}")
        .await
        .assert_error(502, "upstream_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504_after_upstream_timeout() {
    let upstream = Upstream::with_reply(Reply {
        delay: Duration::from_secs(3),
        ..Reply::default()
    })
    .await;
    let gw = Gateway::start(&aryeo_route(&upstream.url(), "upstream_timeout_ms = 400")).await;
    let (h, v) = sign::aryeo(SECRET, b"{}");
    let started = Instant::now();
    post(gw.addr, "/hook", &[(h, &v)], "{}")
        .await
        .assert_error(504, "upstream_timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(
        upstream.requests().len(),
        1,
        "timed-out requests are not retried"
    );
}

/// An upstream that promises 100 bytes, sends 5 and hangs up.
async fn truncating_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_breaks_mid_body_never_yields_a_complete_2xx() {
    let addr = truncating_upstream().await;
    let gw = Gateway::start(&aryeo_route(&format!("http://{addr}"), "")).await;
    let (h, v) = sign::aryeo(SECRET, b"{}");
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(
        format!("POST /hook HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n{h}: {v}\r\n\r\n{{}}")
            .as_bytes(),
    )
    .await;
    assert!(
        raw.read_response(Duration::from_secs(5)).await.is_none(),
        "a truncated body must not arrive as complete"
    );
    assert!(
        raw.closed_within(Duration::from_secs(5)).await,
        "the client connection must be cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_kept_alive_on_both_sides() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&aryeo_route(&upstream.url(), "")).await;
    let (h, v) = sign::aryeo(SECRET, b"{}");
    let mut raw = Raw::connect(gw.addr).await;
    for _ in 0..5 {
        raw.send(
            format!("POST /hook HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n{h}: {v}\r\n\r\n{{}}")
                .as_bytes(),
        )
        .await;
        let answer = raw
            .read_response(Duration::from_secs(5))
            .await
            .expect("response on the same connection");
        assert_eq!(answer.status, 200);
    }
    assert_eq!(upstream.requests().len(), 5);
    assert_eq!(upstream.connections(), 1, "upstream connections are pooled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_is_verified_against_the_configured_ca() {
    let (upstream, ca_pem) = Upstream::start_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let https = format!("https://127.0.0.1:{}/secure", upstream.addr.port());
    let extra = format!("upstream_ca_file = \"{}\"", ca_file.display());
    let gw = Gateway::start(&aryeo_route(&https, &extra)).await;
    let body = br#"{"over":"tls"}"#;
    let (h, v) = sign::aryeo(SECRET, body);
    let answer = post(gw.addr, "/hook", &[(h, &v)], body.to_vec()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let got = upstream.only_request();
    assert_eq!(
        (got.uri.as_str(), got.body.as_slice()),
        ("/secure", &body[..])
    );

    // Without the CA the upstream's certificate is not trusted: no request is sent.
    let gw = Gateway::start(&aryeo_route(&https, "")).await;
    let answer = post(gw.addr, "/hook", &[(h, &v)], body.to_vec()).await;
    answer.assert_error(502, "upstream_unavailable");
    assert_eq!(upstream.requests().len(), 1);
}
