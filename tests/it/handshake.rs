use crate::support::client::post;
use crate::support::gateway::Gateway;
use crate::support::sign;
use crate::support::upstream::Upstream;
use crate::support::{route, scheme};

// Computed vector rye-v1-url-verification-computed from ../shared/vectors (body from docs.rye.com/webhooks).
const V1_BODY: &str = "{\n  \"id\": \"e56b5b2b-40d4-491f-bab2-ecb96bc911a7\",\n  \"developerId\": \"mBdwaN3QWmmvZsNYuWPdLnzIbaDM\",\n  \"createdAt\": \"2024-07-22T14:30:04.367Z\",\n  \"type\": \"WEBHOOK_URL_VERIFICATION\",\n  \"data\": {\n    \"challenge\": \"8eaacf92948128c760d0a25af59231693b2f930fcf8bad61d780fa2796d923bec5bc64e6da55f17196b10a10850f0fa2\"\n  }\n}";
const V1_SIG: &str = "b/xSWP2Nns+6icC7n7apnyUtB/iIf/f5iO2MrDDVjWU=";
const V1_SECRET: &str = "test_webhook_secret_key";
const CHALLENGE: &str = "8eaacf92948128c760d0a25af59231693b2f930fcf8bad61d780fa2796d923bec5bc64e6da55f17196b10a10850f0fa2";

/// A gateway with a route `rye` on `/rye` verifying `scheme` with `secret`.
async fn rye_gateway(scheme_name: &str, secret: &str) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let verify = scheme(scheme_name, &[secret]);
    let gw = Gateway::start(&route("rye", "/rye", &upstream.url(), &verify)).await;
    (upstream, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rye_v1_challenge_is_answered_and_not_forwarded() {
    let (upstream, gw) = rye_gateway("rye-v1", V1_SECRET).await;
    let headers = [
        ("Rye-Hmac-Signature-V1", V1_SIG),
        ("Rye-Verification", "mBdwaN3QWmmvZsNYuWPdLnzIbaDM"),
        ("Content-Type", "application/json"),
    ];
    let answer = post(gw.addr, "/rye", &headers, V1_BODY).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), "application/json");
    assert_eq!(answer.json(), serde_json::json!({ "challenge": CHALLENGE }));
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rye_challenge_needs_a_valid_signature() {
    let (upstream, gw) = rye_gateway("rye", "k").await;
    let body = br#"{"id":"v1","type":"WEBHOOK_URL_VERIFICATION","createdAt":"2026-01-01T00:00:00Z","data":{"challenge":"abc\"123"}}"#;
    post(gw.addr, "/rye", &[], body.to_vec())
        .await
        .assert_error(401, "missing_signature");
    let (h, forged) = sign::rye("not-the-secret", body);
    post(gw.addr, "/rye", &[(h, &forged)], body.to_vec())
        .await
        .assert_error(401, "invalid_signature");
    upstream.assert_untouched();

    let (h, v) = sign::rye("k", body);
    let answer = post(gw.addr, "/rye", &[(h, &v)], body.to_vec()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        serde_json::json!({ "challenge": "abc\"123" })
    );
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenge_without_a_challenge_field_is_a_bad_request() {
    let (upstream, gw) = rye_gateway("rye", "k").await;
    let body = br#"{"type":"WEBHOOK_URL_VERIFICATION","data":{}}"#;
    let (h, v) = sign::rye("k", body);
    post(gw.addr, "/rye", &[(h, &v)], body.to_vec())
        .await
        .assert_error(400, "bad_request");
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aryeo_has_no_handshake_so_such_a_body_is_forwarded() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route("a", "/a", &upstream.url(), &scheme("aryeo", &["k"]))).await;
    let body = br#"{"type":"WEBHOOK_URL_VERIFICATION","data":{"challenge":"c"}}"#;
    let (h, v) = sign::aryeo("k", body);
    assert_eq!(
        post(gw.addr, "/a", &[(h, &v)], body.to_vec()).await.text(),
        "upstream ok"
    );
    assert_eq!(upstream.only_request().body, body);
}

/// A request: path, headers, body.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_handshakes_are_not_answered_unsigned() {
    let upstream = Upstream::start().await;
    let route = |name: &str, scheme: &str, secret: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/{name}\"\nupstream = \"{}\"\n[routes.verify]\nscheme = \"{scheme}\"\nsecrets = [\"{secret}\"]\n",
            upstream.url()
        )
    };
    let discord_key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let routes = [
        route("slack", "slack", "s"),
        route("zoom", "zoom", "s"),
        route("twitch", "twitch", "s"),
        route("discord", "discord", discord_key),
    ]
    .concat();
    let gw = Gateway::start(&routes).await;
    let cases: [Case<'_>; 4] = [
        (
            "/slack",
            &[],
            r#"{"type":"url_verification","challenge":"c"}"#,
        ),
        (
            "/zoom",
            &[],
            r#"{"event":"endpoint.url_validation","payload":{"plainToken":"p"}}"#,
        ),
        (
            "/twitch",
            &[(
                "Twitch-Eventsub-Message-Type",
                "webhook_callback_verification",
            )],
            r#"{"challenge":"c"}"#,
        ),
        ("/discord", &[], r#"{"type":1}"#),
    ];
    for (path, headers, body) in cases {
        let answer = post(gw.addr, path, headers, body).await;
        assert_eq!(answer.status, 401, "{path}: {}", answer.text());
        answer.assert_error(401, "missing_signature");
    }
    upstream.assert_untouched();
}

const ACME: &str = r#"
[schemes.acme]
algorithm = "hmac-sha512"
key = "base64"
signed = "{method}|{timestamp}|{header:Acme-Account}|{body}"
tolerance_secs = 120
signature = { header = "Acme-Signature", format = "kv", separator = ";", key = "s", encoding = "base64url" }
timestamp = { from = "signature:ts" }
event = { id = "json:/event/id", type = "header:Acme-Event" }
[[schemes.acme.handshake]]
when = "json:/ping"
json = { pong = "{json:/ping}", ok = true }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheme_defined_in_the_config_verifies_signs_and_answers() {
    let upstream = Upstream::start().await;
    let secret = "YWNtZS1zZWNyZXQta2V5"; // base64 of "acme-secret-key"
    let routes = format!(
        "{ACME}\n[[routes]]\nname = \"acme\"\npath = \"/acme\"\nupstream = \"{}\"\n[routes.verify]\nscheme = \"acme\"\nsecrets = [\"{secret}\"]\n",
        upstream.url()
    );
    let gw = Gateway::start(&routes).await;
    // `hookgate sign` with the config: the signature header for a body, account and time.
    let sign = |body: &str, account: &str, time: i64| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["sign", "--config"])
            .arg(&gw.config_path)
            .args([
                "--scheme",
                "acme",
                "--secret",
                secret,
                "--body",
                body,
                "--time",
                &time.to_string(),
            ])
            .args(["--header", &format!("Acme-Account: {account}")])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix("acme-signature: "))
            .unwrap()
            .to_owned()
    };
    // Independently: HMAC-SHA512 under the base64-decoded key, base64url, kv with ';'.
    let expected = |body: &str, time: i64| {
        use base64::Engine as _;
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(b"acme-secret-key").unwrap();
        mac.update(format!("POST|{time}|acct-9|{body}").as_bytes());
        let s =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("ts={time};s={s}")
    };
    let now = sign::now();
    let body = r#"{"event":{"id":"acme_1"}}"#;
    let sig = sign(body, "acct-9", now);
    assert_eq!(sig, expected(body, now));

    let missing = post(gw.addr, "/acme", &[("Acme-Signature", &sig)], body).await;
    missing.assert_error(401, "missing_signature");
    let tampered = [("Acme-Signature", sig.as_str()), ("Acme-Account", "acct-1")];
    post(gw.addr, "/acme", &tampered, body)
        .await
        .assert_error(401, "invalid_signature");
    let old = sign(body, "acct-9", now - 600);
    let stale = [("Acme-Signature", old.as_str()), ("Acme-Account", "acct-9")];
    post(gw.addr, "/acme", &stale, body)
        .await
        .assert_error(401, "timestamp_out_of_tolerance");
    upstream.assert_untouched();

    let headers = [
        ("Acme-Signature", sig.as_str()),
        ("Acme-Account", "acct-9"),
        ("Acme-Event", "thing.done"),
    ];
    assert_eq!(post(gw.addr, "/acme", &headers, body).await.status, 200);
    let got = upstream.only_request();
    assert_eq!(got.header("x-webhook-verified"), "acme");
    // The id is in the signed body; the type header is not signed, so it is
    // passed on only as the unsigned type.
    assert_eq!(
        (
            got.header("webhook-id"),
            got.header("x-webhook-unsigned-event-type")
        ),
        ("acme_1", "thing.done")
    );
    assert!(got.header_all("x-webhook-event-type").is_empty());
    assert_eq!(got.header("webhook-timestamp"), now.to_string());

    let ping = r#"{"ping":"hello","event":{"id":"ping_1"}}"#;
    let ping_sig = sign(ping, "acct-9", now);
    let answer = post(
        gw.addr,
        "/acme",
        &[("Acme-Signature", &ping_sig), ("Acme-Account", "acct-9")],
        ping,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        serde_json::json!({"pong": "hello", "ok": true})
    );
    assert_eq!(
        upstream.requests().len(),
        1,
        "the handshake is not forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_can_declare_its_own_handshake() {
    let upstream = Upstream::start().await;
    let routes = format!(
        "[[routes]]\nname = \"own\"\npath = \"/own\"\nupstream = \"{}\"\nmethods = [\"POST\", \"GET\"]\n\
         [routes.verify]\nscheme = \"aryeo\"\nsecrets = [\"k\"]\n\
         [[routes.handshake]]\nverify_first = false\nmethod = \"GET\"\nwhen = \"query:echo\"\nbody = \"echo:{{query:echo}}\"\n\
         headers = {{ \"Cache-Control\" = \"no-store\" }}\n",
        upstream.url()
    );
    let gw = Gateway::start(&routes).await;
    let answer =
        crate::support::client::send(gw.addr, "GET", "/own?echo=hi%20there", &[], "").await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "echo:hi there")
    );
    assert_eq!(answer.header("content-type"), "text/plain");
    assert_eq!(answer.header("cache-control"), "no-store");
    crate::support::client::send(gw.addr, "GET", "/own", &[], "")
        .await
        .assert_error(401, "missing_signature");
    upstream.assert_untouched();
}
