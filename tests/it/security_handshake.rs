//! Handshake answers as an attacker sees them: an echo that cannot be sent is
//! a logged 400, and every response the gateway makes itself is
//! `X-Content-Type-Options: nosniff`.

use std::time::Duration;

use crate::support::client::{Answer, Raw, post, send};
use crate::support::gateway::Gateway;
use crate::support::sign;
use crate::support::upstream::Upstream;
use crate::support::{route, scheme};

/// Asserts that `answer` carries `X-Content-Type-Options: nosniff`.
fn assert_nosniff(answer: &Answer, what: &str) {
    assert_eq!(
        answer.header("x-content-type-options"),
        "nosniff",
        "{what}: {:?}",
        answer.headers
    );
}

/// Routes whose handshakes echo request values: Meta's challenge into a text
/// body, and a route's own GET handshake echoing a query value into a header.
fn echo_routes(upstream: &Upstream) -> String {
    let meta = route("meta", "/meta", &upstream.url(), &scheme("meta", &["k"]))
        .replace("[routes.verify]", "verify_token = \"tok\"\n[routes.verify]");
    let own = route("echo", "/echo", &upstream.url(), &scheme("aryeo", &["k"]))
        + "[[routes.handshake]]\nverify_first = false\nmethod = \"GET\"\nwhen = \"query:c\"\n\
           headers = { \"X-Echo\" = \"{query:c}\" }\n";
    meta + &own
}

/// An echo holding CR, LF or NUL used to close the connection with nothing
/// logged above debug (a header) or went out as it was (a text body): both
/// are now a 400 JSON error, logged at info, and never reach the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_that_cannot_be_sent_is_a_logged_bad_request() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&echo_routes(&upstream)).await;
    let meta = |challenge: &str| {
        format!("/meta?hub.mode=subscribe&hub.verify_token=tok&hub.challenge={challenge}")
    };
    let fine = send(gw.addr, "GET", &meta("1158201444"), &[], "").await;
    assert_eq!((fine.status, fine.text().as_str()), (200, "1158201444"));
    assert_eq!(fine.header("content-type"), "text/plain");
    assert_nosniff(&fine, "meta challenge");

    for bad in ["a%0D%0ASet-Cookie:%20x=1", "a%00b", "%0A"] {
        let answer = send(gw.addr, "GET", &meta(bad), &[], "").await;
        answer.assert_error(400, "bad_request");
        assert_nosniff(&answer, bad);
    }
    gw.wait_log(
        "INFO  hookgate::proxy] route meta: handshake `query:hub.challenge` holds a character the answer cannot echo",
        3,
    )
    .await;

    let echoed = send(gw.addr, "GET", "/echo?c=abc", &[], "").await;
    assert_eq!((echoed.status, echoed.header("x-echo")), (200, "abc"));
    let answer = send(gw.addr, "GET", "/echo?c=a%0D%0AX-Injected:%201", &[], "").await;
    answer.assert_error(400, "bad_request");
    assert_nosniff(&answer, "header echo");
    assert_eq!(answer.header("x-injected"), "");
    gw.wait_log(
        "INFO  hookgate::proxy] route echo: handshake `query:c` holds a character the answer cannot echo",
        1,
    )
    .await;
    upstream.assert_untouched();
}

/// `X-Content-Type-Options: nosniff` on every kind of answer the gateway
/// makes itself (errors before and after the body, handshakes, the delivery
/// answers, the admin listener's), and not on the app's answers it relays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_the_gateway_makes_is_nosniff() {
    let upstream = Upstream::start().await;
    let dedup = route("dedup", "/dedup", &upstream.url(), &scheme("rye", &["k"]))
        + "[routes.dedup]\nttl_secs = 60\n";
    let queued = route("queued", "/queued", &upstream.url(), &scheme("rye", &["k"]))
        .replace("[routes.verify]", "delivery = \"async\"\n[routes.verify]");
    let routes = format!("{}{dedup}{queued}", echo_routes(&upstream));
    let gw = Gateway::with_admin(&routes, "header_timeout_ms = 500\n").await;

    let event = sign::rye_event("evt_nosniff", "order.created", sign::now());
    let (h, v) = sign::rye("k", &event);
    let relayed = post(gw.addr, "/dedup", &[(h, &v)], event.clone()).await;
    assert_eq!(relayed.text(), "upstream ok");
    assert_eq!(
        relayed.header("x-content-type-options"),
        "",
        "the app's answer is relayed as it is"
    );
    let duplicate = post(gw.addr, "/dedup", &[(h, &v)], event.clone()).await;
    assert_eq!(duplicate.json(), serde_json::json!({"status": "duplicate"}));
    assert_nosniff(&duplicate, "duplicate");
    let accepted = post(gw.addr, "/queued", &[(h, &v)], event.clone()).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    assert_nosniff(&accepted, "accepted");

    let answers = [
        (
            "401",
            post(gw.addr, "/dedup", &[(h, "v0=00")], event.clone()).await,
        ),
        ("404", send(gw.addr, "GET", "/nowhere", &[], "").await),
        ("405", send(gw.addr, "PUT", "/dedup", &[], "").await),
        (
            "413",
            post(gw.addr, "/dedup", &[], vec![b'x'; 2 * 1024 * 1024]).await,
        ),
        (
            "403",
            send(
                gw.addr,
                "GET",
                "/meta?hub.mode=subscribe&hub.verify_token=no&hub.challenge=1",
                &[],
                "",
            )
            .await,
        ),
        (
            "handshake",
            send(gw.addr, "GET", "/echo?c=abc", &[], "").await,
        ),
        ("admin", send(gw.admin(), "GET", "/healthz", &[], "").await),
        (
            "admin 404",
            send(gw.admin(), "GET", "/nothing", &[], "").await,
        ),
    ];
    for (what, answer) in &answers {
        assert_nosniff(answer, what);
    }

    // Answers to a request header that could not be read: too large, too slow.
    let mut large = Raw::connect(gw.addr).await;
    let header = format!(
        "GET /dedup HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(40_000)
    );
    large.send(header.as_bytes()).await;
    let slow = async {
        let mut slow = Raw::connect(gw.addr).await;
        slow.send(b"POST /dedup HTTP/1.1\r\nHost: x\r\n").await;
        slow.read_response(Duration::from_secs(5)).await
    };
    for (status, answer) in [
        (431, large.read_response(Duration::from_secs(5)).await),
        (408, slow.await),
    ] {
        let answer = answer.unwrap_or_else(|| panic!("no {status} answer"));
        assert_eq!(answer.status, status, "{}", answer.head);
        assert!(
            answer
                .head
                .to_ascii_lowercase()
                .contains("x-content-type-options: nosniff"),
            "{status}: {}",
            answer.head
        );
    }
}
