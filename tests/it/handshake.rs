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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rye_v1_challenge_is_answered_and_not_forwarded() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route(
        "rye",
        "/rye",
        &upstream.url(),
        &scheme("rye-v1", &[V1_SECRET]),
    ))
    .await;
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
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route(
        "rye",
        "/rye",
        &upstream.url(),
        &scheme("rye", &["k"]),
    ))
    .await;
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
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route(
        "rye",
        "/rye",
        &upstream.url(),
        &scheme("rye", &["k"]),
    ))
    .await;
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
