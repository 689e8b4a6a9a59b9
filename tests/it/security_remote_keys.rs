//! Remote keys under attack: a request cannot make the gateway fetch what it
//! likes. Checks that need no key come first, only real provider hosts and
//! plain paths are fetched, and new fetches are bounded per route.

use serde_json::json;

use crate::support::client::{Answer, send};
use crate::support::gateway::Gateway;
use crate::support::remote::{self, KeyServer};
use crate::support::route;
use crate::support::sign::now;
use crate::support::upstream::Upstream;

const CERT_PATH: &str = "/SimpleNotificationService-test.pem";
const TOPIC: &str = "arn:aws:sns:us-west-2:123456789012:MyTopic";

async fn post(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    send(gw.addr, "POST", path, headers, body.to_owned()).await
}

/// `body` with its signature replaced by a forged one.
fn forged(body: &str) -> String {
    let mut message: serde_json::Value = serde_json::from_str(body).unwrap();
    message["Signature"] = json!("Zm9yZ2Vk");
    message.to_string()
}

/// `[server.remote_keys]` trusting `keys`, with `max_fetches_per_minute`.
fn bounded(keys: &KeyServer, per_minute: u32) -> String {
    format!(
        "{}max_fetches_per_minute = {per_minute}\n",
        keys.server_toml()
    )
}

/// Asserts a 503 `key_unavailable` with a `Retry-After` of a few seconds.
fn assert_bounded(answer: &Answer) {
    answer.assert_error(503, "key_unavailable");
    let after: u64 = answer.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&after), "Retry-After: {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_certificate_urls_make_at_most_the_routes_bound_of_fetches() {
    let keys = KeyServer::serving(remote::CERT, "max-age=3600").await;
    let upstream = Upstream::start().await;
    let verify = format!("scheme = \"aws-sns\"\nkey_hosts = [\"{}\"]\n", keys.host());
    let routes = route("sns", "/sns", &upstream.url(), &verify);
    let gw = Gateway::with_admin(&routes, &bounded(&keys, 3)).await;
    // 200 forged messages, each naming a certificate URL of its own on the
    // allowed host: the key server sees 3 fetches, the rest are refused unfetched.
    let mut statuses = Vec::new();
    for n in 0..200 {
        let url = keys.url(&format!("/SimpleNotificationService-{n}.pem"));
        let body = forged(&remote::sns_v2("Notification", &url, &json!({})));
        let answer = post(&gw, "/sns", &[], &body).await;
        if answer.status == 503 {
            assert_bounded(&answer);
        }
        statuses.push(answer.status);
    }
    assert_eq!(keys.fetched().len(), 3, "{:?}", keys.fetched());
    assert_eq!(statuses[..3], [401, 401, 401]);
    assert!(statuses[3..].iter().all(|s| *s == 503), "{statuses:?}");
    // A document already cached costs no fetch: a genuine message naming one passes.
    let cached = keys.url("/SimpleNotificationService-0.pem");
    let genuine = remote::sns_v2("Notification", &cached, &json!({}));
    assert_eq!(post(&gw, "/sns", &[], &genuine).await.status, 200);
    assert_eq!(keys.fetched().len(), 3);
    assert_eq!(upstream.requests().len(), 1);
    gw.metrics_with(&[r#"hookgate_remote_key_fetches_refused_total{route="sns"} 197"#])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_plaid_kids_make_at_most_the_routes_bound_of_key_requests() {
    // Plaid refuses every forged kid; with min_ttl_secs = 0 no failure is
    // remembered, so only the bound stops the POSTs carrying the API secret.
    let refusal = r#"{"error_code":"INVALID_WEBHOOK_VERIFICATION_KEY_ID"}"#;
    let keys = KeyServer::serving(refusal, "no-store").await;
    keys.answer(400, refusal, "no-store");
    let upstream = Upstream::start().await;
    let verify = format!(
        "scheme = \"plaid\"\nclient_id = \"client-123\"\nsecrets = [\"plaid-secret\"]\nkey_hosts = [\"{}\"]\nkey_endpoint = \"{}\"\n",
        keys.host(),
        keys.url("/webhook_verification_key/get")
    );
    let routes = route("plaid", "/plaid", &upstream.url(), &verify);
    let gw = Gateway::with_admin(&routes, &bounded(&keys, 3)).await;
    let body = r#"{"webhook_type":"TRANSACTIONS","webhook_code":"DEFAULT_UPDATE"}"#;
    let now = now();
    for n in 0..20 {
        let token = remote::plaid_jwt(&format!("forged-{n}"), body, now);
        let answer = post(&gw, "/plaid", &[("Plaid-Verification", &token)], body).await;
        answer.assert_error(503, "key_unavailable");
    }
    assert_eq!(keys.server.requests().len(), 3);
    upstream.assert_untouched();
    gw.metrics_with(&[r#"hookgate_remote_key_fetches_refused_total{route="plaid"} 17"#])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_are_no_aws_region_and_paths_with_dot_segments_are_never_fetched() {
    let keys = KeyServer::serving(remote::CERT, "max-age=3600").await;
    let upstream = Upstream::start().await;
    // The scheme's own hosts: `sns.REGION.amazonaws.com` with a real region shape.
    let own = route("sns", "/sns", &upstream.url(), "scheme = \"aws-sns\"\n");
    let verify = format!("scheme = \"aws-sns\"\nkey_hosts = [\"{}\"]\n", keys.host());
    let local = route("local", "/local", &upstream.url(), &verify);
    let gw = Gateway::with_admin(&format!("{own}{local}"), &keys.server_toml()).await;
    for host in [
        "sns.s3.amazonaws.com",
        "sns.probe-1.amazonaws.com",
        "sns.us-east-1x.amazonaws.com",
        "sns.cn-north-1.amazonaws.com",
        "sns.us-east-1.amazonaws.com.cn",
    ] {
        let url = format!("https://{host}{CERT_PATH}");
        let body = remote::sns_v2("Notification", &url, &json!({}));
        post(&gw, "/sns", &[], &body)
            .await
            .assert_error(401, "invalid_signature");
    }
    // On an allowed host, a path that a server could read as another one.
    for path in [
        "/x/%2e%2e/SimpleNotificationService-test.pem",
        "/x/%2E./SimpleNotificationService-test.pem",
        "/x%2f..%2fSimpleNotificationService-test.pem",
        "/x%5C..%5CSimpleNotificationService-test.pem",
        "/./SimpleNotificationService-test.pem",
        "/SimpleNotificationService-test.pem?v=1",
    ] {
        let body = remote::sns_v2("Notification", &keys.url(path), &json!({}));
        post(&gw, "/local", &[], &body)
            .await
            .assert_error(401, "invalid_signature");
    }
    assert!(keys.fetched().is_empty(), "{:?}", keys.fetched());
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("hookgate_remote_key_fetches_total{"),
        "{metrics}"
    );
    // The bound's counter is there from the start, at 0 for each remote-key route.
    for line in [
        "# HELP hookgate_remote_key_fetches_refused_total ",
        "# TYPE hookgate_remote_key_fetches_refused_total counter",
        r#"hookgate_remote_key_fetches_refused_total{route="sns"} 0"#,
        r#"hookgate_remote_key_fetches_refused_total{route="local"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_failing_a_check_that_needs_no_key_is_refused_unfetched() {
    let keys = KeyServer::serving(remote::CERT, "max-age=3600").await;
    let upstream = Upstream::start().await;
    let verify = format!(
        "scheme = \"aws-sns\"\nkey_hosts = [\"{}\"]\ntopic_arns = [\"{TOPIC}\"]\ntolerance_secs = 300\n",
        keys.host()
    );
    let routes = route("sns", "/sns", &upstream.url(), &verify);
    let gw = Gateway::start_with(&routes, &keys.server_toml()).await;
    let cert_url = keys.url(CERT_PATH);
    let fresh = time::OffsetDateTime::from_unix_timestamp(now())
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let other_topic = remote::sns_v2(
        "Notification",
        &cert_url,
        &json!({"Timestamp": fresh, "TopicArn": "arn:aws:sns:us-west-2:666:Other"}),
    );
    post(&gw, "/sns", &[], &other_topic)
        .await
        .assert_error(401, "invalid_signature");
    // The fixture's 2024 timestamp is far outside 300 s.
    let stale = remote::sns_v2("Notification", &cert_url, &json!({}));
    post(&gw, "/sns", &[], &stale)
        .await
        .assert_error(401, "timestamp_out_of_tolerance");
    let unknown_version = remote::sns_v2(
        "Notification",
        &cert_url,
        &json!({"Timestamp": fresh, "SignatureVersion": "3"}),
    );
    post(&gw, "/sns", &[], &unknown_version)
        .await
        .assert_error(401, "invalid_signature");
    assert!(keys.fetched().is_empty(), "{:?}", keys.fetched());
    let good = remote::sns_v2("Notification", &cert_url, &json!({"Timestamp": fresh}));
    assert_eq!(post(&gw, "/sns", &[], &good).await.status, 200);
    assert_eq!(keys.fetched(), [CERT_PATH]);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oidc_token_for_another_audience_or_issuer_is_refused_before_the_jwks_is_fetched() {
    let keys = KeyServer::serving(&remote::jwks("k1"), "max-age=3600").await;
    let upstream = Upstream::start().await;
    let audience = "https://hooks.example.com/push";
    let verify = format!(
        "scheme = \"google-pubsub-push\"\naudience = \"{audience}\"\njwks_url = \"{}\"\n",
        keys.url("/oauth2/v3/certs")
    );
    let routes = route("push", "/push", &upstream.url(), &verify);
    let gw = Gateway::start_with(&routes, &keys.server_toml()).await;
    let now = now();
    let claims = |aud: &str, iss: &str, exp: i64| json!({"iss": iss, "aud": aud, "iat": now - 5, "exp": exp, "sub": "1"});
    let google = "https://accounts.google.com";
    let body = r#"{"message":{"data":"SGVsbG8=","messageId":"1"},"subscription":"s"}"#;
    for (claims, code) in [
        (
            claims("https://other.example", google, now + 3600),
            "invalid_signature",
        ),
        (
            claims(audience, "https://evil.example", now + 3600),
            "invalid_signature",
        ),
        (
            claims(audience, google, now - 3600),
            "timestamp_out_of_tolerance",
        ),
    ] {
        let bearer = format!("Bearer {}", remote::jwt("forged-kid", &claims));
        post(&gw, "/push", &[("Authorization", &bearer)], body)
            .await
            .assert_error(401, code);
    }
    assert!(keys.fetched().is_empty(), "{:?}", keys.fetched());
    let good = format!(
        "Bearer {}",
        remote::jwt("k1", &claims(audience, google, now + 3600))
    );
    assert_eq!(
        post(&gw, "/push", &[("Authorization", &good)], body)
            .await
            .status,
        200
    );
    assert_eq!(keys.fetched(), ["/oauth2/v3/certs"]);
}
