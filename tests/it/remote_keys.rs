use serde_json::json;

use crate::support::client::send;
use crate::support::gateway::{Gateway, free_port};
use crate::support::remote::{self, KeyServer};
use crate::support::route;
use crate::support::sign::now;
use crate::support::upstream::Upstream;

const CERT_PATH: &str = "/SimpleNotificationService-test.pem";

async fn post(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let answer = send(gw.addr, "POST", path, headers, body.to_owned()).await;
    (answer.status, answer.text())
}

/// A gateway with one route `/NAME` verifying with `verify`, trusting `keys`' CA.
async fn gateway(keys: &KeyServer, upstream: &Upstream, name: &str, verify: &str) -> Gateway {
    let routes = route(name, &format!("/{name}"), &upstream.url(), verify);
    Gateway::start_with(&routes, &keys.server_toml()).await
}

/// A gateway with one route `/sns` verifying AWS SNS with certificates from `keys`.
async fn sns_gateway(keys: &KeyServer, upstream: &Upstream, extra: &str) -> Gateway {
    let verify = format!(
        "scheme = \"aws-sns\"\nkey_hosts = [\"{}\"]\n{extra}",
        keys.host()
    );
    gateway(keys, upstream, "sns", &verify).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_v1_and_v2_messages_pass_once_fetched_and_tampered_ones_are_refused() {
    let keys = KeyServer::serving(remote::CERT, "public, max-age=3600").await;
    let upstream = Upstream::start().await;
    let gw = sns_gateway(&keys, &upstream, "").await;
    let cert_url = keys.url(CERT_PATH);
    let mut valid = remote::sns_v1(&cert_url);
    valid.push(remote::sns_v2(
        "Notification",
        &cert_url,
        &json!({"Subject": "Hi"}),
    ));
    valid.push(remote::sns_v2("Notification", &cert_url, &json!({})));
    for body in &valid {
        assert_eq!(
            post(&gw, "/sns", &[], body).await,
            (200, "upstream ok".into())
        );
    }
    let got = upstream.requests();
    assert_eq!(got.len(), valid.len());
    for (request, body) in got.iter().zip(&valid) {
        assert_eq!(request.body, body.as_bytes());
        assert_eq!(request.header("x-webhook-verified"), "aws-sns");
    }
    assert_eq!(
        got[0].header("webhook-id"),
        "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
    );
    assert_eq!(got[0].header("x-webhook-event-type"), "Notification");
    // One fetch served every message: the certificate is cached for its lifetime.
    assert_eq!(keys.fetched(), [CERT_PATH]);

    let tampered = [
        valid[0].replace("Hello world!", "Hello world?"),
        valid[2].replace("\"SignatureVersion\":\"2\"", "\"SignatureVersion\":\"1\""),
        valid[2].replace("\"SignatureVersion\":\"2\"", "\"SignatureVersion\":\"3\""),
        valid[3].replace("MyTopic", "OtherTopic"),
    ];
    for body in &tampered {
        let (status, text) = post(&gw, "/sns", &[], body).await;
        assert_eq!(
            (status, text.as_str()),
            (401, r#"{"error":"invalid_signature"}"#),
            "{body}"
        );
    }
    let unsigned = valid[3].replace("\"Signature\"", "\"Unsigned\"");
    assert_eq!(post(&gw, "/sns", &[], &unsigned).await.0, 401);
    assert_eq!(upstream.requests().len(), valid.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_key_is_refused() {
    let keys = KeyServer::serving(remote::OTHER_CERT, "max-age=3600").await;
    let upstream = Upstream::start().await;
    let gw = sns_gateway(&keys, &upstream, "").await;
    let body = remote::sns_v2("Notification", &keys.url(CERT_PATH), &json!({}));
    assert_eq!(post(&gw, "/sns", &[], &body).await.0, 401);
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_urls_off_the_allowlist_or_over_http_are_refused_without_fetching() {
    let keys = KeyServer::serving(remote::CERT, "max-age=3600").await;
    let upstream = Upstream::start().await;
    let gw = sns_gateway(&keys, &upstream, "").await;
    let other_port = format!("https://127.0.0.1:{}{CERT_PATH}", free_port());
    let refused = [
        format!("http://{}{CERT_PATH}", keys.host()),
        other_port,
        keys.url("/SimpleNotificationService-test.txt"),
        format!("https://user@{}{CERT_PATH}", keys.host()),
        format!("https://localhost:{}{CERT_PATH}", keys.server.addr.port()),
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem".to_owned(),
    ];
    for url in &refused {
        let body = remote::sns_v2("Notification", url, &json!({}));
        let (status, text) = post(&gw, "/sns", &[], &body).await;
        assert_eq!(
            (status, text.as_str()),
            (401, r#"{"error":"invalid_signature"}"#),
            "{url}"
        );
    }
    assert!(keys.fetched().is_empty(), "{:?}", keys.fetched());
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_server_that_fails_or_is_down_never_lets_a_request_through() {
    let keys = KeyServer::serving("Internal error", "no-store").await;
    keys.answer(500, "Internal error", "no-store");
    let upstream = Upstream::start().await;
    let down_port = free_port();
    let verify = format!(
        "scheme = \"aws-sns\"\nkey_hosts = [\"{}\", \"127.0.0.1:{down_port}\"]\n",
        keys.host()
    );
    let gw = gateway(&keys, &upstream, "sns", &verify).await;
    let failing = remote::sns_v2("Notification", &keys.url(CERT_PATH), &json!({}));
    let down = remote::sns_v2(
        "Notification",
        &format!("https://127.0.0.1:{down_port}{CERT_PATH}"),
        &json!({}),
    );
    for body in [&failing, &down] {
        let answer = send(gw.addr, "POST", "/sns", &[], body.clone()).await;
        assert_eq!(answer.status, 503);
        assert_eq!(answer.text(), r#"{"error":"key_unavailable"}"#);
        assert!(answer.headers.contains_key("retry-after"));
    }
    // Not a document: the body is not a certificate.
    keys.answer(200, "not a certificate", "max-age=60");
    assert_eq!(post(&gw, "/sns", &[], &failing).await.0, 503);
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_is_fetched_again_after_its_lifetime() {
    let keys = KeyServer::serving(remote::CERT, "max-age=0").await;
    let upstream = Upstream::start().await;
    let verify = format!("scheme = \"aws-sns\"\nkey_hosts = [\"{}\"]\n", keys.host());
    let routes = route("sns", "/sns", &upstream.url(), &verify);
    let gw = Gateway::with_admin(&routes, &keys.server_toml()).await;
    let body = remote::sns_v2("Notification", &keys.url(CERT_PATH), &json!({}));
    for _ in 0..3 {
        assert_eq!(post(&gw, "/sns", &[], &body).await.0, 200);
    }
    // A zero lifetime (and min_ttl_secs = 0): every request fetched it again.
    assert_eq!(keys.fetched().len(), 3);
    keys.answer(200, remote::CERT, "max-age=600");
    for _ in 0..3 {
        assert_eq!(post(&gw, "/sns", &[], &body).await.0, 200);
    }
    assert_eq!(keys.fetched().len(), 4);
    assert_eq!(upstream.requests().len(), 6);
    gw.metrics_with(&[r#"hookgate_remote_key_fetches_total{kind="certificate",result="ok"} 4"#])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_confirms_sns_subscriptions_itself() {
    let keys = KeyServer::serving(remote::CERT, "max-age=3600").await;
    let upstream = Upstream::start().await;
    let topic = "arn:aws:sns:us-west-2:123456789012:MyTopic";
    let gw = sns_gateway(&keys, &upstream, &format!("topic_arns = [\"{topic}\"]\n")).await;
    let subscribe = keys.url("/?Action=ConfirmSubscription&TopicArn=t&Token=2336412f37");
    let confirmation = remote::sns_v2(
        "SubscriptionConfirmation",
        &keys.url(CERT_PATH),
        &json!({"Token": "2336412f37", "SubscribeURL": subscribe, "Message": "You have chosen to subscribe"}),
    );
    let (status, text) = post(&gw, "/sns", &[], &confirmation).await;
    assert_eq!((status, text.as_str()), (200, r#"{"status":"confirmed"}"#));
    assert_eq!(
        keys.fetched(),
        [
            CERT_PATH,
            "/?Action=ConfirmSubscription&TopicArn=t&Token=2336412f37"
        ]
    );
    upstream.assert_untouched();

    // A SubscribeURL off the allowlist is never fetched.
    let elsewhere = remote::sns_v2(
        "SubscriptionConfirmation",
        &keys.url(CERT_PATH),
        &json!({"Token": "t", "SubscribeURL": "https://sns.us-west-2.amazonaws.com.evil.example/?Action=ConfirmSubscription"}),
    );
    assert_eq!(post(&gw, "/sns", &[], &elsewhere).await.0, 401);
    // Nor is one of a topic the route does not take.
    let other_topic = remote::sns_v2(
        "SubscriptionConfirmation",
        &keys.url(CERT_PATH),
        &json!({"Token": "t", "SubscribeURL": subscribe, "TopicArn": "arn:aws:sns:us-west-2:666:Other"}),
    );
    assert_eq!(post(&gw, "/sns", &[], &other_topic).await.0, 401);
    assert_eq!(keys.fetched().len(), 2);
    // A confirmation the provider's host refuses is not confirmed.
    keys.answer(403, "denied", "no-store");
    assert_eq!(post(&gw, "/sns", &[], &confirmation).await.0, 502);
    upstream.assert_untouched();
}

fn pubsub_claims(audience: &str, issued: i64) -> serde_json::Value {
    json!({
        "iss": "https://accounts.google.com", "aud": audience, "azp": "1137",
        "sub": "1137", "email": "push@project.iam.gserviceaccount.com", "email_verified": true,
        "iat": issued, "exp": issued + 3600,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_pubsub_push_tokens_are_verified_against_the_jwks() {
    let keys = KeyServer::serving(&remote::jwks("k1"), "public, max-age=19845").await;
    let upstream = Upstream::start().await;
    let audience = "https://hooks.example.com/push";
    let verify = format!(
        "scheme = \"google-pubsub-push\"\naudience = \"{audience}\"\njwks_url = \"{}\"\nemail = \"push@project.iam.gserviceaccount.com\"\n",
        keys.url("/oauth2/v3/certs")
    );
    let gw = gateway(&keys, &upstream, "push", &verify).await;
    let body = r#"{"message":{"data":"SGVsbG8=","messageId":"2070443601311540","publishTime":"2021-02-26T19:13:55.749Z"},"subscription":"projects/p/subscriptions/s"}"#;
    let now = now();
    let bearer = |token: String| format!("Bearer {token}");

    let good = bearer(remote::jwt("k1", &pubsub_claims(audience, now - 5)));
    assert_eq!(
        post(&gw, "/push", &[("Authorization", &good)], body)
            .await
            .0,
        200
    );
    let forwarded = upstream.only_request();
    assert_eq!(forwarded.body, body.as_bytes());
    // The token authenticates the sender, not the body: the message id is
    // passed on as unsigned and never becomes `webhook-id`.
    assert_eq!(
        forwarded.header("x-webhook-unsigned-id"),
        "2070443601311540"
    );
    assert!(forwarded.header_all("webhook-id").is_empty());

    let mut wrong_iss = pubsub_claims(audience, now);
    wrong_iss["iss"] = json!("https://evil.example");
    let mut unverified = pubsub_claims(audience, now);
    unverified["email_verified"] = json!(false);
    let refused = [
        (
            "wrong aud",
            remote::jwt("k1", &pubsub_claims("https://other.example", now)),
            "invalid_signature",
        ),
        (
            "wrong iss",
            remote::jwt("k1", &wrong_iss),
            "invalid_signature",
        ),
        (
            "unverified email",
            remote::jwt("k1", &unverified),
            "invalid_signature",
        ),
        (
            "expired",
            remote::jwt("k1", &pubsub_claims(audience, now - 7200)),
            "timestamp_out_of_tolerance",
        ),
        (
            "unknown kid",
            remote::jwt("k2", &pubsub_claims(audience, now)),
            "invalid_signature",
        ),
    ];
    for (what, token, code) in refused {
        let (status, text) = post(&gw, "/push", &[("Authorization", &bearer(token))], body).await;
        assert_eq!(
            (status, text),
            (401, format!(r#"{{"error":"{code}"}}"#)),
            "{what}"
        );
    }
    let (mut head, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{head}.AAAA");
    head = &forged;
    assert_eq!(
        post(&gw, "/push", &[("Authorization", head)], body).await.0,
        401
    );
    assert_eq!(post(&gw, "/push", &[], body).await.0, 401);
    assert_eq!(upstream.requests().len(), 1);
    // The JWKS was fetched for the first token, and again (its keys may have
    // rotated) for the unknown kid: never per request.
    assert_eq!(keys.fetched(), ["/oauth2/v3/certs", "/oauth2/v3/certs"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_event_grid_entra_tokens_and_the_validation_handshake() {
    let keys = KeyServer::serving(&remote::jwks("entra-1"), "max-age=86400").await;
    let upstream = Upstream::start().await;
    let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let verify = format!(
        "scheme = \"azure-event-grid-entra\"\naudience = \"api://hooks\"\ntenant = \"{tenant}\"\njwks_url = \"{}\"\n",
        keys.url("/discovery/v2.0/keys")
    );
    let gw = gateway(&keys, &upstream, "grid", &verify).await;
    let now = now();
    let claims = |iss: String| json!({"iss": iss, "aud": "api://hooks", "iat": now, "nbf": now, "exp": now + 3600, "appid": "4962773b"});
    let v1 = format!(
        "Bearer {}",
        remote::jwt(
            "entra-1",
            &claims(format!("https://sts.windows.net/{tenant}/"))
        )
    );
    let v2 = format!(
        "Bearer {}",
        remote::jwt(
            "entra-1",
            &claims(format!("https://login.microsoftonline.com/{tenant}/v2.0"))
        )
    );
    let other_tenant = format!(
        "Bearer {}",
        remote::jwt("entra-1", &claims("https://sts.windows.net/other/".into()))
    );

    let event = r#"[{"id":"831e1650-001e-001b-66ab-eeb76e069631","eventType":"Microsoft.Storage.BlobCreated","subject":"/blob","data":{},"dataVersion":"","metadataVersion":"1","eventTime":"2024-01-01T00:00:00Z","topic":"/t"}]"#;
    for token in [&v1, &v2] {
        assert_eq!(
            post(&gw, "/grid", &[("Authorization", token)], event)
                .await
                .0,
            200
        );
    }
    assert_eq!(
        post(&gw, "/grid", &[("Authorization", &other_tenant)], event)
            .await
            .0,
        401
    );
    let got = upstream.requests();
    assert_eq!(got.len(), 2);
    // The token does not cover the body: its type is passed on as unsigned.
    assert_eq!(
        got[0].header("x-webhook-unsigned-event-type"),
        "Microsoft.Storage.BlobCreated"
    );
    assert!(got[0].header_all("x-webhook-event-type").is_empty());

    let validation = r#"[{"id":"2d1781af-3a4c-4d7c-bd0c-e34b19da4e66","topic":"/t","subject":"","data":{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6","validationUrl":"https://rp-eastus2.eventgrid.azure.net/x"},"eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","eventTime":"2024-01-01T00:00:00Z","metadataVersion":"1","dataVersion":"2"}]"#;
    let headers = [
        ("Authorization", v1.as_str()),
        ("aeg-event-type", "SubscriptionValidation"),
    ];
    let answer = send(gw.addr, "POST", "/grid", &headers, validation.to_owned()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
    );
    // Unauthenticated, the handshake is refused like any delivery.
    let unsigned = [("aeg-event-type", "SubscriptionValidation")];
    assert_eq!(post(&gw, "/grid", &unsigned, validation).await.0, 401);
    assert_eq!(upstream.requests().len(), 2);
    assert_eq!(keys.fetched().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_deliveries_verify_with_the_certificate_and_the_webhook_id() {
    let keys = KeyServer::serving(remote::CERT, "max-age=3600").await;
    let upstream = Upstream::start().await;
    let verify = format!(
        "scheme = \"paypal\"\nwebhook_id = \"1JE4291016473214C\"\nkey_hosts = [\"{}\"]\n",
        keys.host()
    );
    let gw = gateway(&keys, &upstream, "paypal", &verify).await;
    let cert_url = keys.url("/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77");
    let body = r#"{"id":"WH-2WR32451HC0233532-67976317FL4543714","event_type":"PAYMENT.CAPTURE.COMPLETED","resource":{"amount":{"value":"10.00"}}}"#;
    let signed = remote::paypal_headers(body, "1JE4291016473214C", &cert_url);
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(post(&gw, "/paypal", &headers, body).await.0, 200);
    let forwarded = upstream.only_request();
    assert_eq!(forwarded.body, body.as_bytes());
    // PayPal signs the body only through its CRC-32, which a forger can keep:
    // the body's id and type are passed on as unsigned and decide nothing.
    assert_eq!(
        forwarded.header("x-webhook-unsigned-id"),
        "WH-2WR32451HC0233532-67976317FL4543714"
    );
    assert_eq!(
        forwarded.header("x-webhook-unsigned-event-type"),
        "PAYMENT.CAPTURE.COMPLETED"
    );
    assert!(forwarded.header_all("webhook-id").is_empty());

    let tampered = body.replace("10.00", "99.00");
    assert_eq!(post(&gw, "/paypal", &headers, &tampered).await.0, 401);
    let other_webhook = remote::paypal_headers(body, "OTHERWEBHOOK", &cert_url);
    let other: Vec<(&str, &str)> = other_webhook
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(post(&gw, "/paypal", &other, body).await.0, 401);
    let mut wrong_algo = headers.clone();
    wrong_algo[4].1 = "SHA1withRSA";
    assert_eq!(post(&gw, "/paypal", &wrong_algo, body).await.0, 401);
    let mut off_list = headers.clone();
    off_list[3].1 = "https://api.paypal.com.evil.example/v1/notifications/certs/CERT";
    assert_eq!(post(&gw, "/paypal", &off_list, body).await.0, 401);
    assert_eq!(upstream.requests().len(), 1);
    assert_eq!(keys.fetched().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_fetch() {
    let keys = KeyServer::serving(remote::CERT, "max-age=3600").await;
    let upstream = Upstream::start().await;
    let gw = sns_gateway(&keys, &upstream, "").await;
    let body = remote::sns_v2("Notification", &keys.url(CERT_PATH), &json!({}));
    let sends: Vec<_> = (0..16)
        .map(|_| tokio::spawn(send(gw.addr, "POST", "/sns", &[], body.clone())))
        .collect();
    for sent in sends {
        assert_eq!(sent.await.unwrap().status, 200);
    }
    assert_eq!(keys.fetched(), [CERT_PATH]);
    assert_eq!(upstream.requests().len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tolerance_bounds_the_signed_sns_timestamp() {
    let keys = KeyServer::serving(remote::CERT, "max-age=3600").await;
    let upstream = Upstream::start().await;
    let gw = sns_gateway(&keys, &upstream, "tolerance_secs = 300\n").await;
    let cert_url = keys.url(CERT_PATH);
    let fresh = time::OffsetDateTime::from_unix_timestamp(now())
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let current = remote::sns_v2("Notification", &cert_url, &json!({"Timestamp": fresh}));
    assert_eq!(post(&gw, "/sns", &[], &current).await.0, 200);
    let old = remote::sns_v2("Notification", &cert_url, &json!({}));
    let (status, text) = post(&gw, "/sns", &[], &old).await;
    assert_eq!(
        (status, text.as_str()),
        (401, r#"{"error":"timestamp_out_of_tolerance"}"#)
    );
    assert_eq!(upstream.requests().len(), 1);
}

const PLAID_SECRET: &str = "plaid-secret-7f3e9a1c0b5d-never-shown";
const PLAID_KEY_PATH: &str = "/webhook_verification_key/get";

/// A Plaid webhook body, pretty-printed as Plaid sends them.
fn plaid_body(code: &str) -> String {
    format!(
        "{{\n  \"environment\": \"sandbox\",\n  \"item_id\": \"wz666MBjYWTp2PDzzggYhM6oWWmBb\",\n  \"webhook_code\": \"{code}\",\n  \"webhook_type\": \"TRANSACTIONS\"\n}}"
    )
}

/// The verify table of a Plaid route asking `endpoint` (on `host`) for keys.
fn plaid_verify(host: &str, endpoint: &str) -> String {
    format!(
        "scheme = \"plaid\"\nclient_id = \"client-123\"\nsecrets = [\"env:PLAID_SECRET\"]\nkey_hosts = [\"{host}\"]\nkey_endpoint = \"{endpoint}\"\n"
    )
}

/// A gateway (with an admin listener, logging at debug) with Plaid routes.
async fn plaid_gateway(keys: &KeyServer, routes: &str) -> Gateway {
    let env = [("PLAID_SECRET", PLAID_SECRET), ("RUST_LOG", "debug")];
    Gateway::with_env(routes, &keys.server_toml(), &env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaid_webhooks_verify_with_the_key_their_kid_names() {
    let keys =
        KeyServer::serving(&remote::plaid_key_answer("plaid-k1", None), "max-age=3600").await;
    let upstream = Upstream::start().await;
    let verify = plaid_verify(&keys.host(), &keys.url(PLAID_KEY_PATH));
    let gw = plaid_gateway(&keys, &route("plaid", "/plaid", &upstream.url(), &verify)).await;
    let now = now();
    let bodies: Vec<String> = ["SYNC_UPDATES_AVAILABLE", "DEFAULT_UPDATE", "INITIAL_UPDATE"]
        .iter()
        .map(|code| plaid_body(code))
        .collect();
    for body in &bodies {
        let token = remote::plaid_jwt("plaid-k1", body, now - 5);
        let answer = post(&gw, "/plaid", &[("Plaid-Verification", &token)], body).await;
        assert_eq!(answer, (200, "upstream ok".into()));
    }
    let got = upstream.requests();
    assert_eq!(got.len(), bodies.len());
    for (request, body) in got.iter().zip(&bodies) {
        assert_eq!(request.body, body.as_bytes(), "forwarded byte for byte");
        assert_eq!(request.header("x-webhook-verified"), "plaid");
    }
    assert_eq!(
        got[0].header("x-webhook-event-type"),
        "SYNC_UPDATES_AVAILABLE"
    );
    // One fetch served every delivery: a POST of the route's credentials and the kid.
    let fetches = keys.server.requests();
    assert_eq!(fetches.len(), 1);
    assert_eq!(
        (fetches[0].method.as_str(), fetches[0].uri.as_str()),
        ("POST", PLAID_KEY_PATH)
    );
    assert_eq!(fetches[0].header("content-type"), "application/json");
    let asked: serde_json::Value = serde_json::from_slice(&fetches[0].body).unwrap();
    assert_eq!(
        asked,
        json!({"client_id": "client-123", "secret": PLAID_SECRET, "key_id": "plaid-k1"})
    );

    // A valid token carries only its own body, and only for 5 minutes.
    let token = remote::plaid_jwt("plaid-k1", &bodies[0], now - 5);
    let tampered = bodies[0].replace("sandbox", "production");
    let (status, text) = post(&gw, "/plaid", &[("Plaid-Verification", &token)], &tampered).await;
    assert_eq!(
        (status, text.as_str()),
        (401, r#"{"error":"invalid_signature"}"#)
    );
    let (status, _) = post(&gw, "/plaid", &[("Plaid-Verification", &token)], "").await;
    assert_eq!(status, 401);
    let old = remote::plaid_jwt("plaid-k1", &bodies[0], now - 301);
    let (status, text) = post(&gw, "/plaid", &[("Plaid-Verification", &old)], &bodies[0]).await;
    assert_eq!(
        (status, text.as_str()),
        (401, r#"{"error":"timestamp_out_of_tolerance"}"#)
    );
    // An RS256 token, a forged signature, or none at all.
    let rs256 = remote::jwt("plaid-k1", &json!({"iat": now}));
    let (head, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", "A".repeat(86));
    for bad in [rs256.as_str(), forged.as_str()] {
        let (status, _) = post(&gw, "/plaid", &[("Plaid-Verification", bad)], &bodies[0]).await;
        assert_eq!(status, 401, "{bad}");
    }
    assert_eq!(post(&gw, "/plaid", &[], &bodies[0]).await.0, 401);
    assert_eq!(upstream.requests().len(), bodies.len());
    assert_eq!(keys.server.requests().len(), 1);

    // The API secret never shows: /config names its reference, logs and metrics nothing.
    let config = send(gw.admin(), "GET", "/config", &[], String::new()).await;
    let view = config.json();
    let verify = &view["routes"][0]["verify"][0];
    assert_eq!(verify["secrets"], json!(["env:PLAID_SECRET"]));
    assert_eq!(verify["remote_keys"]["client_id"], "client-123");
    assert_eq!(
        verify["remote_keys"]["key_endpoint"],
        keys.url(PLAID_KEY_PATH)
    );
    assert!(!config.text().contains(PLAID_SECRET));
    let metrics = gw
        .metrics_with(&[r#"hookgate_remote_key_fetches_total{kind="jwk",result="ok"} 1"#])
        .await;
    assert!(!metrics.contains(PLAID_SECRET));
    let log = gw.log();
    assert!(log.contains("plaid-k1"), "the fetch is logged:\n{log}");
    assert!(!log.contains(PLAID_SECRET), "the secret was logged:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaid_keys_that_are_unknown_expired_or_unreachable_never_let_a_request_through() {
    let keys = KeyServer::serving(
        r#"{"error_code":"INVALID_WEBHOOK_VERIFICATION_KEY_ID","error_type":"INVALID_INPUT"}"#,
        "no-store",
    )
    .await;
    keys.answer(
        400,
        r#"{"error_code":"INVALID_WEBHOOK_VERIFICATION_KEY_ID","error_type":"INVALID_INPUT"}"#,
        "no-store",
    );
    let upstream = Upstream::start().await;
    let down = format!("127.0.0.1:{}", free_port());
    let routes = [
        route(
            "plaid",
            "/plaid",
            &upstream.url(),
            &plaid_verify(&keys.host(), &keys.url(PLAID_KEY_PATH)),
        ),
        route(
            "down",
            "/down",
            &upstream.url(),
            &plaid_verify(&down, &format!("https://{down}{PLAID_KEY_PATH}")),
        ),
    ]
    .concat();
    let gw = plaid_gateway(&keys, &routes).await;
    let now = now();
    let body = plaid_body("DEFAULT_UPDATE");
    let token = |kid: &str| remote::plaid_jwt(kid, &body, now);

    // Plaid refuses the kid (a forged one): 503, so a real Plaid retries; nothing forwarded.
    let unknown = token("forged-kid");
    for path in ["/plaid", "/down"] {
        let answer = send(
            gw.addr,
            "POST",
            path,
            &[("Plaid-Verification", &unknown)],
            body.clone(),
        )
        .await;
        assert_eq!(answer.status, 503, "{path}");
        assert_eq!(answer.text(), r#"{"error":"key_unavailable"}"#);
        assert!(answer.headers.contains_key("retry-after"));
    }
    // A key other than the one the token names, a key Plaid has expired, no key at all.
    let invalid = r#"{"error":"invalid_signature"}"#;
    let cases = [
        (
            "plaid-k2",
            remote::plaid_key_answer("plaid-k1", None),
            401,
            invalid,
        ),
        (
            "plaid-old",
            remote::plaid_key_answer("plaid-old", Some(now - 60)),
            401,
            invalid,
        ),
        (
            "plaid-k3",
            "<html>maintenance</html>".to_owned(),
            503,
            r#"{"error":"key_unavailable"}"#,
        ),
    ];
    for (kid, answer, status, text) in cases {
        keys.answer(200, &answer, "max-age=3600");
        let token = token(kid);
        let got = post(&gw, "/plaid", &[("Plaid-Verification", &token)], &body).await;
        assert_eq!(got, (status, text.to_owned()), "{kid}");
    }
    upstream.assert_untouched();
    assert_eq!(keys.server.requests().len(), 4);
    let log = gw.log();
    assert!(!log.contains(PLAID_SECRET), "the secret was logged:\n{log}");
}
