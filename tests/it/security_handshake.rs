//! Handshake answers as an attacker sees them: X's CRC is no signing oracle,
//! an echo that cannot be sent is a logged 400, `hookgate check` warns about
//! every answer that MACs request data, and every response the gateway makes
//! itself is `X-Content-Type-Options: nosniff`.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;

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

/// X's documented CRC example, as in the shared vectors (`twitter-crc-handshake`).
const X_SECRET: &str = "x_consumer_secret_Zqk1";
const X_TOKEN: &str = "ZTcyNDcyYjYtN2RkZC00OGE2LWI0MDEtNmNmYjhmODk4YTIy";
const X_RESPONSE: &str = "sha256=IlNjZT2YRmmz70glob5KoIDsvW+SFMQOIiJrHSH1wPM=";

/// `sha256=` + base64 HMAC-SHA256: X's CRC answer, and its delivery signature.
fn x_mac(message: &[u8]) -> String {
    let mac = sign::hmac_sha256(X_SECRET, message);
    format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    )
}

/// The old sequence: a CRC whose token is a JSON body got that body's MAC,
/// and the body POSTed with it was verified and forwarded. Now a token that
/// is not base64-like gets 400 and no MAC; a genuine token still gets X's
/// answer, and that answer does not sign the token as a body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_x_crc_is_no_signing_oracle() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route(
        "tw",
        "/tw",
        &upstream.url(),
        &scheme("twitter", &[X_SECRET]),
    ))
    .await;
    let body = r#"{"for_user_id":"2244994945","tweet_create_events":[{"id_str":"1"}]}"#;
    let encoded: String = form_urlencoded::byte_serialize(body.as_bytes()).collect();
    let crc = send(gw.addr, "GET", &format!("/tw?crc_token={encoded}"), &[], "").await;
    crc.assert_error(400, "bad_request");
    assert!(!crc.text().contains("sha256="), "{}", crc.text());
    assert_nosniff(&crc, "refused CRC");
    gw.wait_log(
        "INFO  hookgate::proxy] route tw: handshake `query:crc_token` is not a challenge token",
        1,
    )
    .await;
    for token in ["a%20b", &"x".repeat(257), "%22quoted%22", "%5B1%5D"] {
        send(gw.addr, "GET", &format!("/tw?crc_token={token}"), &[], "")
            .await
            .assert_error(400, "bad_request");
    }

    let crc = send(gw.addr, "GET", &format!("/tw?crc_token={X_TOKEN}"), &[], "").await;
    assert_eq!(crc.status, 200, "{}", crc.text());
    assert_eq!(
        crc.json(),
        serde_json::json!({ "response_token": X_RESPONSE })
    );
    assert_eq!(X_RESPONSE, x_mac(X_TOKEN.as_bytes()));
    assert_nosniff(&crc, "CRC answer");

    // What the CRC answered, used as the signature of its token as a body.
    let forged = post(
        gw.addr,
        "/tw",
        &[("x-twitter-webhooks-signature", X_RESPONSE)],
        X_TOKEN,
    )
    .await;
    forged.assert_error(401, "invalid_signature");
    upstream.assert_untouched();

    let genuine = post(
        gw.addr,
        "/tw",
        &[("x-twitter-webhooks-signature", &x_mac(body.as_bytes()))],
        body,
    )
    .await;
    assert_eq!(genuine.text(), "upstream ok");
    assert_eq!(upstream.only_request().body, body.as_bytes());
}

/// `hookgate check` names each route whose handshake MACs request data
/// under its secret, built in or its own, and what bounds that MAC.
#[test]
fn check_warns_about_every_answer_that_macs_request_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let routes = [
        route(
            "tw",
            "/tw",
            "http://127.0.0.1:9",
            &scheme("twitter", &["s"]),
        ),
        route("zm", "/zm", "http://127.0.0.1:9", &scheme("zoom", &["s"])),
        route(
            "own",
            "/own",
            "http://127.0.0.1:9",
            &scheme("aryeo", &["s"]),
        ),
        "[[routes.handshake]]\nverify_first = false\nmethod = \"GET\"\nwhen = \"query:c\"\n\
         body = \"{hmac:query:c}\"\n"
            .to_owned(),
        route("st", "/st", "http://127.0.0.1:9", &scheme("stripe", &["s"])),
    ];
    std::fs::write(
        &path,
        format!("[server]\nlisten = \"127.0.0.1:1\"\n{}", routes.concat()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = String::from_utf8(out.stdout).unwrap();
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 3, "{out}");
    assert!(
        warnings[0].contains(
            "route `tw`: the `twitter` handshake answers an unsigned request with a MAC of request data"
        ) && warnings[0].contains("bounded: it MACs only a token of 1 to 256 bytes")
            && warnings[0].contains("scheme `twitter` accepts only JSON bodies"),
        "{out}"
    );
    assert!(
        warnings[1].contains("route `zm`: the `zoom` handshake answers with a MAC of request data")
            && warnings[1].contains("bounded: it answers only requests that verify first"),
        "{out}"
    );
    assert!(
        warnings[2].contains(
            "route `own`: its own handshake: this answer gives anyone a MAC under your secret"
        ),
        "{out}"
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
