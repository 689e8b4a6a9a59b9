use std::time::Duration;

use crate::support::client::{Raw, post};
use crate::support::demo_app::DemoApp;
use crate::support::gateway::Gateway;
use crate::support::{route, scheme, sign};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_delivery_reaches_the_demo_app_and_is_printed() {
    let app = DemoApp::start().await;
    let upstream = format!("{}/internal/aryeo", app.url());
    let gw = Gateway::start(&route(
        "aryeo",
        "/webhooks/aryeo",
        &upstream,
        &scheme("aryeo", &["s"]),
    ))
    .await;
    let body = br#"{"id":"evt_2","type":"order.created"}"#;
    let (h, v) = sign::aryeo("s", body);
    for _ in 0..2 {
        let answer = post(gw.addr, "/webhooks/aryeo", &[(h, &v)], &body[..]).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.text(), "{\"received\":true}\n");
    }
    let forged = post(gw.addr, "/webhooks/aryeo", &[(h, "00")], &body[..]).await;
    assert_eq!(forged.status, 401);

    let printed = app.wait_printed(2).await;
    let one = format!(
        "POST /internal/aryeo  ({} body bytes)\n  x-webhook-route: aryeo\n  x-webhook-verified: aryeo\n  body: {}\n",
        body.len(),
        std::str::from_utf8(body).unwrap()
    );
    assert_eq!(printed, one.repeat(2), "the forgery never reached it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_are_printed_escaped_and_the_connection_kept() {
    let app = DemoApp::start().await;
    let mut raw = Raw::connect(app.addr).await;
    let mut body = b"\x1b[2J\x1b]0;pwned\x07\r\n\xff\\".to_vec();
    body.resize(100_000, b'a');
    let mut request = format!(
        "POST /in?token=x HTTP/1.1\r\nHost: app\r\nWebhook-Id: msg_é\r\nAuthorization: no\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    // A second, chunked request on the same connection.
    request.extend_from_slice(
        b"POST /again HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert!(raw.send(&request).await);
    for _ in 0..2 {
        let answer = raw.read_response(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            (answer.status, answer.body.as_slice()),
            (200, &b"{\"received\":true}\n"[..])
        );
    }

    let printed = app.wait_printed(2).await;
    assert!(
        printed
            .replace('…', "")
            .bytes()
            .all(|b| b == b'\n' || (b' '..=b'~').contains(&b)),
        "{printed:?}"
    );
    let preview_left = 100_000 - 200;
    assert!(
        printed.starts_with(
            "POST /in  (100000 body bytes)\n  webhook-id: msg_\\xc3\\xa9\n  body: \\x1b[2J\\x1b]0;pwned\\x07\\r\\n\\xff\\\\aaa"
        ) && printed.contains(&format!("a… ({preview_left} more bytes)\n")),
        "{printed}"
    );
    assert!(!printed.contains("token") && !printed.contains("uthorization"));
    assert!(
        printed.ends_with("POST /again  (3 body bytes)\n  body: abc\n"),
        "{printed}"
    );
}
