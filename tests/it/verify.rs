use crate::support::client::post;
use crate::support::gateway::Gateway;
use crate::support::sign::{self, now, rye_event};
use crate::support::upstream::Upstream;
use crate::support::{route, scheme};

const SECRET: &str = "s3cret-for-tests";

/// For one scheme: a valid delivery is forwarded; tampered body, wrong secret,
/// missing header and a malformed header are refused with nothing upstream.
async fn check_scheme(name: &str, signer: sign::Signer) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route(
        "r",
        "/hook",
        &upstream.url(),
        &scheme(name, &[SECRET]),
    ))
    .await;
    let body = rye_event("evt_1", "order.created", now());
    let (header, good) = signer(SECRET, &body);

    let rejected = Upstream::start().await;
    let gw_rejected = Gateway::start(&route(
        "r",
        "/hook",
        &rejected.url(),
        &scheme(name, &[SECRET]),
    ))
    .await;
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let (_, wrong) = signer("another-secret", &body);
    let cases = [
        (
            "tampered body",
            vec![(header, good.as_str())],
            &tampered,
            "invalid_signature",
        ),
        (
            "wrong secret",
            vec![(header, wrong.as_str())],
            &body,
            "invalid_signature",
        ),
        ("missing header", vec![], &body, "missing_signature"),
        (
            "garbage header",
            vec![(header, "v0=not-hex!")],
            &body,
            "invalid_signature",
        ),
    ];
    for (what, headers, payload, code) in cases {
        let answer = post(gw_rejected.addr, "/hook", &headers, payload.to_vec()).await;
        assert_eq!(answer.status, 401, "{name}: {what}: {}", answer.text());
        answer.assert_error(401, code);
    }
    rejected.assert_untouched();

    let answer = post(
        gw.addr,
        "/hook",
        &[(header, &good), ("content-type", "application/json")],
        body.clone(),
    )
    .await;
    assert_eq!(answer.status, 200, "{name}: {}", answer.text());
    assert_eq!(answer.text(), "upstream ok");
    let got = upstream.only_request();
    assert_eq!(got.body, body);
    assert_eq!(got.header("x-webhook-verified"), name);
    assert_eq!(got.header("x-webhook-route"), "r");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rye_scheme() {
    check_scheme("rye", sign::rye).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rye_v1_scheme() {
    check_scheme("rye-v1", sign::rye_v1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aryeo_scheme() {
    check_scheme("aryeo", sign::aryeo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rye_official_vector_through_the_proxy() {
    // rye-com/checkout-intents-python@1b54c311 tests/test_event_unwrap.py
    let body = r#"{"id":"evt_ci_acf8e2c44f4c4583bd5b58d291242bb2_awaiting_confirmation","object":"event","type":"checkout_intent.offer_retrieved","createdAt":"2026-04-21T03:27:50.000Z","source":{"type":"checkout_intent","id":"ci_acf8e2c44f4c4583bd5b58d291242bb2"}}"#;
    let sig = "v0=a296fa9084469414e018aa8c33f68d315f88a0b503babb3825f7de87f473803e";
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route(
        "rye",
        "/r",
        &upstream.url(),
        &scheme("rye", &["6b2f15a9c9ee825fcf6f6447351a810c"]),
    ))
    .await;
    let answer = post(gw.addr, "/r", &[("x-rye-signature", sig)], body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let got = upstream.only_request();
    assert_eq!(
        got.header("webhook-id"),
        "evt_ci_acf8e2c44f4c4583bd5b58d291242bb2_awaiting_confirmation"
    );
    assert_eq!(
        got.header("x-webhook-event-type"),
        "checkout_intent.offer_retrieved"
    );
    assert_eq!(got.header("webhook-timestamp"), "1776742070");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_accepts_any_listed_secret() {
    let upstream = Upstream::start().await;
    let verify = "scheme = \"rye\"\nsecrets = [\"new-secret\", \"old-secret\"]\n";
    let gw = Gateway::start(&route("r", "/hook", &upstream.url(), verify)).await;
    for secret in ["new-secret", "old-secret"] {
        let body = rye_event(secret, "t", now());
        let (h, v) = sign::rye(secret, &body);
        assert_eq!(
            post(gw.addr, "/hook", &[(h, &v)], body).await.status,
            200,
            "{secret}"
        );
    }
    let body = rye_event("x", "t", now());
    let (h, v) = sign::rye("retired-secret", &body);
    post(gw.addr, "/hook", &[(h, &v)], body)
        .await
        .assert_error(401, "invalid_signature");
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_come_from_env_and_file() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "from-file\n").unwrap();
    // PATH is set in every environment the tests run in; its value serves as a secret.
    let path_value = std::env::var("PATH").unwrap();
    let verify = format!(
        "scheme = \"aryeo\"\nsecrets = [\"env:PATH\", \"file:{}\"]\n",
        file.display()
    );
    let gw = Gateway::start(&route("r", "/hook", &upstream.url(), &verify)).await;
    for secret in [path_value.as_str(), "from-file"] {
        let (h, v) = sign::aryeo(secret, b"{}");
        assert_eq!(post(gw.addr, "/hook", &[(h, &v)], "{}").await.status, 200);
    }
    assert!(!gw.log().contains("from-file"), "secret in log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_route_accepts_either_rye_scheme() {
    let upstream = Upstream::start().await;
    let routes = format!(
        "[[routes]]\nname = \"rye\"\npath = \"/rye\"\nupstream = \"{}\"\n[[routes.verify]]\n{}[[routes.verify]]\n{}",
        upstream.url(),
        scheme("rye-v1", &[SECRET]),
        scheme("rye", &[SECRET])
    );
    let gw = Gateway::start(&routes).await;
    let body = rye_event("evt_m", "t", now());
    for (signer, expect) in [
        (
            sign::rye_v1 as fn(&str, &[u8]) -> (&'static str, String),
            "rye-v1",
        ),
        (sign::rye, "rye"),
    ] {
        let (h, v) = signer(SECRET, &body);
        assert_eq!(
            post(gw.addr, "/rye", &[(h, &v)], body.clone()).await.status,
            200
        );
        assert_eq!(
            upstream
                .requests()
                .last()
                .unwrap()
                .header("x-webhook-verified"),
            expect
        );
    }
    let (h, v) = sign::rye_v1("nope", &body);
    post(gw.addr, "/rye", &[(h, &v)], body)
        .await
        .assert_error(401, "invalid_signature");
}

fn generic_verify(tolerance: u64) -> String {
    format!(
        "scheme = \"hmac\"\nheader = \"X-Signature\"\nalgorithm = \"sha256\"\nencoding = \"base64\"\nprefix = \"sha256=\"\npayload = \"{{id}}.{{timestamp}}.{{body}}\"\ntimestamp_header = \"X-Timestamp\"\nid_header = \"X-Id\"\ntolerance_secs = {tolerance}\nsecrets = [\"{SECRET}\"]\n"
    )
}

fn generic_sign(id: &str, ts: i64, body: &[u8]) -> String {
    use base64::Engine as _;
    let mut message = format!("{id}.{ts}.").into_bytes();
    message.extend_from_slice(body);
    format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(sign::hmac_sha256(SECRET, &message))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_hmac_with_signed_timestamp_and_tolerance() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route("g", "/g", &upstream.url(), &generic_verify(300))).await;
    let body = b"plain text, not JSON".to_vec();
    let send = |ts: i64, sig: String| {
        let body = body.clone();
        let ts = ts.to_string();
        async move {
            post(
                gw.addr,
                "/g",
                &[
                    ("X-Signature", &sig),
                    ("X-Timestamp", &ts),
                    ("X-Id", "msg_1"),
                ],
                body,
            )
            .await
        }
    };
    let t = now();
    let ok = send(t, generic_sign("msg_1", t, &body)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let got = upstream.only_request();
    assert_eq!(
        (got.header("webhook-id"), got.header("webhook-timestamp")),
        ("msg_1", t.to_string().as_str())
    );
    assert_eq!(got.header("x-webhook-verified"), "hmac");

    send(t - 1000, generic_sign("msg_1", t - 1000, &body))
        .await
        .assert_error(401, "timestamp_out_of_tolerance");
    send(t + 1000, generic_sign("msg_1", t + 1000, &body))
        .await
        .assert_error(401, "timestamp_out_of_tolerance");
    // A fresh timestamp that the signature does not cover is a forgery, not fresh.
    send(t, generic_sign("msg_1", t - 1000, &body))
        .await
        .assert_error(401, "invalid_signature");
    let no_ts = post(
        gw.addr,
        "/g",
        &[
            ("X-Signature", &generic_sign("msg_1", t, &body)),
            ("X-Id", "msg_1"),
        ],
        body.clone(),
    )
    .await;
    no_ts.assert_error(401, "missing_signature");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rye_tolerance_checks_signed_created_at_when_set() {
    let upstream = Upstream::start().await;
    let verify = format!("{}tolerance_secs = 300\n", scheme("rye", &[SECRET]));
    let gw = Gateway::start(&route("r", "/r", &upstream.url(), &verify)).await;
    for (created, status) in [(now(), 200), (now() - 3600, 401), (now() + 3600, 401)] {
        let body = rye_event("e", "t", created);
        let (h, v) = sign::rye(SECRET, &body);
        let answer = post(gw.addr, "/r", &[(h, &v)], body).await;
        assert_eq!(
            answer.status,
            status,
            "created {created}: {}",
            answer.text()
        );
        if status == 401 {
            answer.assert_error(401, "timestamp_out_of_tolerance");
        }
    }
    assert_eq!(upstream.requests().len(), 1);

    // Without tolerance_secs, rye accepts old events: providers retry for hours.
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route(
        "r",
        "/r",
        &upstream.url(),
        &scheme("rye", &[SECRET]),
    ))
    .await;
    let body = rye_event("e", "t", now() - 86_400);
    let (h, v) = sign::rye(SECRET, &body);
    assert_eq!(post(gw.addr, "/r", &[(h, &v)], body).await.status, 200);
}

fn mac_hex_sha1(key: &str, message: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

fn mac_base64_sha512(key: &str, message: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_hmac_signs_method_and_url_with_sha1_and_sha512() {
    let upstream = Upstream::start().await;
    let sha1 = "scheme = \"hmac\"\nheader = \"X-Sig\"\nalgorithm = \"sha1\"\npayload = \"{method} {url}\\n{body}\"\nsecrets = [\"k1\"]\n";
    let sha512 = "scheme = \"hmac\"\nheader = \"X-Sig\"\nalgorithm = \"sha512\"\nencoding = \"base64\"\npayload = \"{url}|{body}\"\nsecrets = [\"k2\"]\n";
    let routes = format!(
        "{}{}",
        route("one", "/one", &upstream.url(), sha1),
        route("two", "/two", &upstream.url(), sha512).replace(
            "[routes.verify]",
            "public_url = \"https://hooks.example.com/in\"\n[routes.verify]"
        )
    );
    let gw = Gateway::start(&routes).await;
    let body = b"a=1&b=2";

    // Without public_url the URL is rebuilt from Host, path and query.
    let url = format!("http://{}/one?x=1", gw.addr);
    let sig = mac_hex_sha1(
        "k1",
        format!("POST {url}\n")
            .as_bytes()
            .iter()
            .chain(body)
            .copied()
            .collect::<Vec<_>>()
            .as_slice(),
    );
    assert_eq!(
        post(gw.addr, "/one?x=1", &[("X-Sig", &sig)], body.to_vec())
            .await
            .status,
        200
    );
    let other_method = crate::support::client::send(
        gw.addr,
        "PUT",
        "/one?x=1",
        &[("X-Sig", &sig)],
        body.to_vec(),
    )
    .await;
    other_method.assert_error(405, "method_not_allowed");
    let wrong_query = post(gw.addr, "/one?x=2", &[("X-Sig", &sig)], body.to_vec()).await;
    wrong_query.assert_error(401, "invalid_signature");

    // With public_url, the URL the provider called is signed, not what the gateway saw.
    let sig = mac_base64_sha512("k2", b"https://hooks.example.com/in?y=2|a=1&b=2");
    assert_eq!(
        post(gw.addr, "/two?y=2", &[("X-Sig", &sig)], body.to_vec())
            .await
            .status,
        200
    );
    let seen_url = format!("http://{}/two?y=2|a=1&b=2", gw.addr);
    let sig = mac_base64_sha512("k2", seen_url.as_bytes());
    post(gw.addr, "/two?y=2", &[("X-Sig", &sig)], body.to_vec())
        .await
        .assert_error(401, "invalid_signature");

    let verified: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.header("x-webhook-route").to_owned())
        .collect();
    assert_eq!(verified, ["one", "two"]);
}
