//! A route's policy through the binary: `allow_ips` with `trusted_proxies`,
//! rate limits, `require_headers`, monitor mode, re-signing for the app, and
//! how `/config` shows it.

use std::time::Duration;

use crate::delivery::{deliver, route_with};
use crate::support::client::{Raw, post};
use crate::support::gateway::Gateway;
use crate::support::sign;
use crate::support::upstream::Upstream;

#[tokio::test]
async fn a_client_outside_allow_ips_is_refused_before_its_body() {
    let upstream = Upstream::start().await;
    let routes = route_with(&upstream, "rye", "allow_ips = [\"192.0.2.0/24\"]");
    let gw = Gateway::with_admin(&routes, "").await;
    deliver(&gw, "evt_1")
        .await
        .assert_error(403, "ip_not_allowed");
    // X-Forwarded-For from a proxy nobody trusts is the client's own word.
    let body = sign::rye_event("evt_2", "order.created", sign::now());
    let (h, v) = sign::rye("k", &body);
    post(
        gw.addr,
        "/hook",
        &[(h, &v), ("x-forwarded-for", "192.0.2.7")],
        body,
    )
    .await
    .assert_error(403, "ip_not_allowed");
    upstream.assert_untouched();
    gw.metrics_with(&[r#"hookgate_ip_refused_total{route="hook"} 2"#])
        .await;
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client() {
    let upstream = Upstream::start().await;
    let routes = route_with(&upstream, "rye", "allow_ips = [\"192.0.2.0/24\"]");
    let gw = Gateway::start_with(&routes, "trusted_proxies = [\"127.0.0.1\"]").await;
    let body = sign::rye_event("evt_1", "order.created", sign::now());
    let (h, v) = sign::rye("k", &body);
    let forged_then_real = [(h, v.as_str()), ("x-forwarded-for", "6.6.6.6, 192.0.2.7")];
    let answer = post(gw.addr, "/hook", &forged_then_real, body.clone()).await;
    assert_eq!(answer.text(), "upstream ok");
    // The chain from the client on, the proxy appended; the forged hop is gone.
    assert_eq!(
        upstream.only_request().header("x-forwarded-for"),
        "192.0.2.7, 127.0.0.1"
    );
    // The last untrusted hop decides, not the first.
    let spoofed = [(h, v.as_str()), ("x-forwarded-for", "192.0.2.7, 6.6.6.6")];
    post(gw.addr, "/hook", &spoofed, body)
        .await
        .assert_error(403, "ip_not_allowed");
}

#[tokio::test]
async fn a_rate_limit_refuses_past_its_burst_with_retry_after() {
    let upstream = Upstream::start().await;
    let limit = "[routes.rate_limit]\nper_second = 0.2\nburst = 2";
    let gw = Gateway::with_admin(&route_with(&upstream, "rye", limit), "").await;
    for id in ["a", "b"] {
        assert_eq!(deliver(&gw, id).await.text(), "upstream ok");
    }
    let refused = deliver(&gw, "c").await;
    refused.assert_error(429, "rate_limited");
    let wait: u64 = refused.header("retry-after").parse().unwrap();
    assert!((1..=5).contains(&wait), "Retry-After {wait}");
    assert_eq!(upstream.requests().len(), 2);
    gw.metrics_with(&[r#"hookgate_rate_limited_total{route="hook"} 1"#])
        .await;
}

#[tokio::test]
async fn a_per_client_limit_counts_each_client_apart() {
    let upstream = Upstream::start().await;
    let limit = "[routes.rate_limit]\nper_second = 0.1\nburst = 1\nby = \"client_ip\"";
    let gw = Gateway::start_with(
        &route_with(&upstream, "rye", limit),
        "trusted_proxies = [\"127.0.0.0/8\"]",
    )
    .await;
    let from = |client: &'static str, id: &'static str| {
        let body = sign::rye_event(id, "order.created", sign::now());
        let (h, v) = sign::rye("k", &body);
        async move {
            post(
                gw.addr,
                "/hook",
                &[(h, &v), ("x-forwarded-for", client)],
                body,
            )
            .await
            .status
        }
    };
    assert_eq!(from("198.51.100.1", "a").await, 200);
    assert_eq!(from("198.51.100.1", "b").await, 429);
    assert_eq!(from("198.51.100.2", "c").await, 200);
}

#[tokio::test]
async fn required_headers_must_be_present_and_equal() {
    let upstream = Upstream::start().await;
    let keys = "require_headers = { \"X-Sender-Token\" = \"internal-sender-token\" }";
    let gw = Gateway::start(&route_with(&upstream, "rye", keys)).await;
    let body = sign::rye_event("evt_1", "order.created", sign::now());
    let (h, v) = sign::rye("k", &body);
    post(gw.addr, "/hook", &[(h, &v)], body.clone())
        .await
        .assert_error(401, "missing_header");
    let wrong = [(h, v.as_str()), ("x-sender-token", "internal-sender-tokeN")];
    post(gw.addr, "/hook", &wrong, body.clone())
        .await
        .assert_error(401, "invalid_header");
    upstream.assert_untouched();
    let right = [(h, v.as_str()), ("x-sender-token", "internal-sender-token")];
    assert_eq!(
        post(gw.addr, "/hook", &right, body).await.text(),
        "upstream ok"
    );
}

#[tokio::test]
async fn monitor_mode_forwards_failures_marked_as_such() {
    let upstream = Upstream::start().await;
    let routes = route_with(&upstream, "rye", "mode = \"monitor\"");
    let gw = Gateway::with_admin(&routes, "").await;
    let body = sign::rye_event("evt_1", "order.created", sign::now());
    let (h, forged) = sign::rye("not-k", &body);
    let answer = post(
        gw.addr,
        "/hook",
        &[(h, &forged), ("x-webhook-verified", "rye")],
        body.clone(),
    )
    .await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "upstream ok")
    );
    let sent = upstream.only_request();
    assert_eq!(
        sent.header("x-webhook-verification"),
        "failed; reason=signature_mismatch"
    );
    assert!(sent.header_all("x-webhook-verified").is_empty());
    assert_eq!(sent.body, body);
    // A good one is forwarded as verified, with no failure header.
    assert_eq!(deliver(&gw, "evt_2").await.text(), "upstream ok");
    let good = &upstream.requests()[1];
    assert_eq!(good.header("x-webhook-verified"), "rye");
    assert!(good.header_all("x-webhook-verification").is_empty());
    gw.metrics_with(&[
        r#"hookgate_monitor_failures_total{reason="signature_mismatch",route="hook"} 1"#,
    ])
    .await;
}

#[tokio::test]
async fn re_signed_requests_verify_with_an_independent_standard_webhooks_library() {
    let upstream = Upstream::start().await;
    // A `whsec_` secret as Standard Webhooks writes them: base64 after the prefix.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let keys = format!(
        "[routes.forward_signature]\nscheme = \"standard-webhooks\"\nsecret = \"{secret}\""
    );
    let gw = Gateway::start(&route_with(&upstream, "rye", &keys)).await;
    let created = sign::now() - 30;
    let body = sign::rye_event("evt_resigned", "order.created", created);
    let (h, v) = sign::rye("k", &body);
    let forged = [(h, v.as_str()), ("webhook-signature", "v1,Zm9yZ2Vk")];
    assert_eq!(
        post(gw.addr, "/hook", &forged, body.clone()).await.text(),
        "upstream ok"
    );
    let sent = upstream.only_request();
    let headers = sent.header_map();
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&sent.body, &headers)
        .expect("the re-signed request verifies");
    assert_eq!(sent.header("webhook-id"), "evt_resigned");
    assert_eq!(sent.header("x-webhook-event-time"), created.to_string());
    let forwarded_at: i64 = sent.header("webhook-timestamp").parse().unwrap();
    assert!((forwarded_at - sign::now()).abs() <= 5);
    // Under another secret it does not verify.
    assert!(
        standardwebhooks::Webhook::new("whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB")
            .unwrap()
            .verify(&sent.body, &headers)
            .is_err()
    );
}

#[tokio::test]
async fn config_shows_the_policy_and_never_its_secrets() {
    let upstream = Upstream::start().await;
    let keys = "mode = \"monitor\"\nallow_ips = [\"10.0.0.0/8\"]\non_state_error = \"open\"\n\
        require_headers = { \"X-Sender\" = \"sender-secret-value\" }\n\
        [routes.rate_limit]\nper_second = 5\nburst = 10\nby = \"client_ip\"\n\
        [routes.dedup]\nttl_secs = 86400\n\
        [routes.forward_signature]\nscheme = \"standard-webhooks\"\nsecret = \"whsec_c2lnbmluZy1zZWNyZXQtdmFsdWU=\"";
    let gw = Gateway::with_admin(
        &route_with(&upstream, "rye", keys),
        "trusted_proxies = [\"10.1.0.0/16\"]",
    )
    .await;
    let answer = crate::support::client::send(gw.admin(), "GET", "/config", &[], "").await;
    let text = answer.text();
    for secret in [
        "sender-secret-value",
        "c2lnbmluZy1zZWNyZXQtdmFsdWU",
        "signing-secret-value",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let view = answer.json();
    let route = &view["routes"][0];
    assert_eq!(route["mode"], "monitor");
    assert_eq!(route["allow_ips"], serde_json::json!(["10.0.0.0/8"]));
    assert_eq!(route["on_state_error"], "open");
    assert_eq!(route["rate_limit"]["by"], "client_ip");
    assert_eq!(route["rate_limit"]["burst"], 10);
    assert_eq!(route["dedup"]["ttl_secs"], 86400);
    assert_eq!(route["forward_signature"]["scheme"], "standard-webhooks");
    assert_eq!(route["require_headers"]["x-sender"], "[redacted]");
    assert_eq!(view["trusted_proxies"], serde_json::json!(["10.1.0.0/16"]));
    assert_eq!(view["server"]["state"]["max_entries"], 1_000_000);
}

#[tokio::test]
async fn the_access_log_tells_monitor_failures_dedup_and_the_forwarded_client() {
    let upstream = Upstream::start().await;
    let keys = "mode = \"monitor\"\n[routes.dedup]\nttl_secs = 60";
    let gw = Gateway::start_with(
        &route_with(&upstream, "rye", keys),
        "trusted_proxies = [\"127.0.0.1\"]",
    )
    .await;
    let body = sign::rye_event("evt_logged", "order.created", sign::now());
    let (h, forged) = sign::rye("not-k", &body);
    let from = ("x-forwarded-for", "198.51.100.4");
    post(gw.addr, "/hook", &[(h, &forged), from], body.clone()).await;
    for _ in 0..2 {
        deliver(&gw, "evt_logged").await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let lines: Vec<serde_json::Value> = loop {
        let lines: Vec<serde_json::Value> = gw
            .stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() == 3 || std::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(lines.len(), 3, "{lines:?}");
    // Each worker appends its line when its request ends: find them by content.
    let find = |key: &str, value: &str| {
        lines
            .iter()
            .find(|l| l[key] == value)
            .unwrap_or_else(|| panic!("no line with {key} = {value}: {lines:?}"))
    };
    let failed = find("verification", "failed");
    assert_eq!(failed["reason"], "signature_mismatch");
    assert_eq!(failed["outcome"], "forwarded");
    assert_eq!(failed["forwarded_for"], "198.51.100.4");
    assert!(
        failed.get("dedup").is_none(),
        "failures never touch the store"
    );
    assert!(find("dedup", "claimed").get("forwarded_for").is_none());
    let duplicate = find("dedup", "duplicate");
    assert_eq!(duplicate["outcome"], "duplicate");
    assert_eq!(duplicate["status"], 200);
}

#[tokio::test]
async fn a_rate_limit_removed_by_a_reload_and_added_back_starts_afresh() {
    let upstream = Upstream::start().await;
    let limit = "[routes.rate_limit]\nper_second = 0.05\nburst = 1";
    let gw =
        Gateway::start_with(&route_with(&upstream, "rye", limit), "watch_config = false").await;
    assert_eq!(deliver(&gw, "1").await.status, 200);
    assert_eq!(deliver(&gw, "2").await.status, 429);
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let reload = |text: String, n: usize| {
        std::fs::write(&gw.config_path, text).unwrap();
        gw.signal("HUP");
        gw.wait_log("config reloaded (sighup)", n)
    };
    reload(text.replace(limit, ""), 1).await;
    assert_eq!(deliver(&gw, "3").await.status, 200);
    reload(text, 2).await;
    // The old limiter was forgotten with the limit: a fresh burst.
    assert_eq!(deliver(&gw, "4").await.status, 200);
    assert_eq!(deliver(&gw, "5").await.status, 429);
}

#[tokio::test]
async fn policy_refusals_come_before_the_body_is_read() {
    let upstream = Upstream::start().await;
    let route = |name: &str, keys: &str| {
        route_with(&upstream, "rye", keys)
            .replace("name = \"hook\"", &format!("name = \"{name}\""))
            .replace("path = \"/hook\"", &format!("path = \"/{name}\""))
    };
    let routes = [
        route("ips", "allow_ips = [\"192.0.2.0/24\"]"),
        route(
            "limited",
            "[routes.rate_limit]\nper_second = 0.01\nburst = 1",
        ),
        route("headers", "require_headers = { \"X-Sender\" = \"s\" }"),
    ]
    .concat();
    // The body never comes: read_timeout_ms is far longer than the wait below.
    let gw = Gateway::start_with(&routes, "read_timeout_ms = 30000").await;
    let head_only = |path: &str| {
        format!("POST /{path} HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n").into_bytes()
    };
    // The limited route's one request of the burst.
    let body = sign::rye_event("evt_1", "order.created", sign::now());
    let (h, v) = sign::rye("k", &body);
    assert_eq!(
        post(gw.addr, "/limited", &[(h, &v)], body).await.status,
        200
    );
    for (path, status, code) in [
        ("ips", 403, "ip_not_allowed"),
        ("limited", 429, "rate_limited"),
        ("headers", 401, "missing_header"),
    ] {
        let mut raw = Raw::connect(gw.addr).await;
        assert!(raw.send(&head_only(path)).await);
        let answer = raw
            .read_response(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{path}: no answer without the body"));
        assert_eq!(answer.status, status, "{path}");
        assert_eq!(answer.json()["error"], code, "{path}");
    }
    assert_eq!(upstream.requests().len(), 1);
}
