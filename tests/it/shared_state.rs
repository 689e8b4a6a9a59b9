//! State in a real Redis, started by each test: two gateways share dedup and
//! rate limits; Redis stopped mid-test fails closed or open as the route says,
//! and the gateway recovers by itself when it is back.

use std::time::{Duration, Instant};

use crate::delivery::{deliver, route_with};
use crate::support::client::Answer;
use crate::support::gateway::Gateway;
use crate::support::redis::Redis;
use crate::support::upstream::Upstream;

fn state(redis: &Redis) -> String {
    format!(
        "[server.state]\nredis_url = \"{}\"\nredis_timeout_ms = 200",
        redis.url()
    )
}

fn is_duplicate(a: &Answer) -> bool {
    a.status == 200 && a.json() == serde_json::json!({"status": "duplicate"})
}

#[tokio::test]
async fn a_delivery_accepted_by_one_gateway_is_a_duplicate_at_the_other() {
    let redis = Redis::start().await;
    let upstream = Upstream::start().await;
    let routes = route_with(&upstream, "rye", "[routes.dedup]\nttl_secs = 60");
    let a = Gateway::start_with(&routes, &state(&redis)).await;
    let b = Gateway::start_with(&routes, &state(&redis)).await;
    assert_eq!(deliver(&a, "evt_fleet").await.text(), "upstream ok");
    assert!(is_duplicate(&deliver(&b, "evt_fleet").await));
    assert!(is_duplicate(&deliver(&a, "evt_fleet").await));
    assert_eq!(upstream.requests().len(), 1);
    assert_eq!(redis.cli(&["GET", "hookgate:dedup:hook:evt_fleet"]), "d");
    let ttl: i64 = redis
        .cli(&["PTTL", "hookgate:dedup:hook:evt_fleet"])
        .parse()
        .unwrap();
    assert!((50_000..=60_000).contains(&ttl), "PTTL {ttl}");
}

#[tokio::test]
async fn ten_concurrent_copies_across_two_gateways_reach_the_upstream_once() {
    let redis = Redis::start().await;
    let upstream = Upstream::with_reply(crate::support::upstream::Reply {
        delay: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let routes = route_with(&upstream, "rye", "[routes.dedup]\nttl_secs = 60");
    let a = Gateway::start_with(&routes, &state(&redis)).await;
    let b = Gateway::start_with(&routes, &state(&redis)).await;
    let body =
        crate::support::sign::rye_event("evt_race", "order.created", crate::support::sign::now());
    let (h, v) = crate::support::sign::rye("k", &body);
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let addr = if i % 2 == 0 { a.addr } else { b.addr };
            let (body, v) = (body.clone(), v.clone());
            tokio::spawn(async move {
                crate::support::client::post(addr, "/hook", &[(h, &v)], body).await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        if answer.status == 409 {
            answer.assert_error(409, "delivery_in_progress");
            assert!(answer.header("retry-after").parse::<u64>().unwrap() >= 1);
        }
        statuses.push(answer.status);
    }
    assert_eq!(upstream.requests().len(), 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_failed_delivery_is_released_in_redis() {
    let redis = Redis::start().await;
    let upstream = Upstream::with_reply(crate::support::upstream::Reply {
        status: 503,
        ..Default::default()
    })
    .await;
    let routes = route_with(&upstream, "rye", "[routes.dedup]\nttl_secs = 60");
    let gw = Gateway::start_with(&routes, &state(&redis)).await;
    assert_eq!(deliver(&gw, "evt_release").await.status, 503);
    assert_eq!(
        redis.cli(&["EXISTS", "hookgate:dedup:hook:evt_release"]),
        "0"
    );
    upstream.set_reply(Default::default());
    assert_eq!(deliver(&gw, "evt_release").await.text(), "upstream ok");
}

#[tokio::test]
async fn a_rate_limit_holds_across_the_fleet() {
    let redis = Redis::start().await;
    let upstream = Upstream::start().await;
    let limit = "[routes.rate_limit]\nper_second = 0.1\nburst = 2";
    let routes = route_with(&upstream, "rye", limit);
    let a = Gateway::start_with(&routes, &state(&redis)).await;
    let b = Gateway::start_with(&routes, &state(&redis)).await;
    assert_eq!(deliver(&a, "1").await.status, 200);
    assert_eq!(deliver(&b, "2").await.status, 200);
    let refused = deliver(&a, "3").await;
    refused.assert_error(429, "rate_limited");
    let wait: u64 = refused.header("retry-after").parse().unwrap();
    assert!((1..=10).contains(&wait), "Retry-After {wait}");
    deliver(&b, "4").await.assert_error(429, "rate_limited");
    assert_eq!(upstream.requests().len(), 2);
}

/// Delivers `id` until an answer other than 503 comes, for up to 10 s.
async fn until_recovered(gw: &Gateway, id: &str) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = deliver(gw, id).await;
        if answer.status != 503 || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_down_fails_closed_or_open_as_written_then_recovers() {
    let mut redis = Redis::start().await;
    let upstream = Upstream::start().await;
    let closed = route_with(&upstream, "rye", "[routes.dedup]\nttl_secs = 60");
    let open = closed
        .replace("name = \"hook\"", "name = \"open\"")
        .replace("path = \"/hook\"", "path = \"/open\"")
        .replace(
            "[routes.dedup]",
            "on_state_error = \"open\"\n[routes.dedup]",
        );
    let gw = Gateway::with_admin(&format!("{closed}\n{open}"), &state(&redis)).await;
    assert_eq!(deliver(&gw, "before").await.text(), "upstream ok");

    redis.stop();
    let refused = deliver(&gw, "during").await;
    refused.assert_error(503, "state_unavailable");
    assert_eq!(refused.header("retry-after"), "1");
    // The open route forwards without dedup: both copies go through.
    let body = crate::support::sign::rye_event(
        "during_open",
        "order.created",
        crate::support::sign::now(),
    );
    let (h, v) = crate::support::sign::rye("k", &body);
    for _ in 0..2 {
        let answer = crate::support::client::post(gw.addr, "/open", &[(h, &v)], body.clone()).await;
        assert_eq!(answer.text(), "upstream ok");
    }
    assert_eq!(upstream.requests().len(), 3);
    gw.metrics_with(&[
        r#"hookgate_state_errors_total{op="claim"}"#,
        r#"hookgate_dedup_total{result="bypassed",route="open"} 2"#,
        r#"hookgate_requests_total{outcome="state_unavailable",route="hook"} 1"#,
    ])
    .await;

    // Redis is back (empty): each worker reconnects by itself on its next call.
    redis.resume().await;
    assert_eq!(until_recovered(&gw, "after").await.text(), "upstream ok");
    assert!(is_duplicate(&until_recovered(&gw, "after").await));
    assert_eq!(upstream.requests().len(), 4);
}

#[tokio::test]
async fn a_gateway_starts_and_serves_while_redis_is_down() {
    let mut redis = Redis::start().await;
    redis.stop();
    let upstream = Upstream::start().await;
    let routes = route_with(&upstream, "rye", "[routes.dedup]\nttl_secs = 60");
    let gw = Gateway::start_with(&routes, &state(&redis)).await;
    deliver(&gw, "e")
        .await
        .assert_error(503, "state_unavailable");
    upstream.assert_untouched();
    redis.resume().await;
    assert_eq!(until_recovered(&gw, "e").await.text(), "upstream ok");
    assert!(is_duplicate(&until_recovered(&gw, "e").await));
}

#[tokio::test]
async fn a_password_from_a_file_reaches_redis_and_never_the_logs() {
    let password = "redis-password-never-shown";
    let redis = Redis::start_with(&["--requirepass", password]).await;
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("redis-url");
    std::fs::write(
        &url_file,
        format!("redis://:{password}@127.0.0.1:{}\n", redis.port),
    )
    .unwrap();
    let upstream = Upstream::start().await;
    let routes = route_with(&upstream, "rye", "[routes.dedup]\nttl_secs = 60");
    let server = format!(
        "[server.state]\nredis_url = \"file:{}\"",
        url_file.display()
    );
    let gw = Gateway::with_admin(&routes, &server).await;
    assert_eq!(deliver(&gw, "evt_auth").await.text(), "upstream ok");
    assert_eq!(
        redis.cli(&[
            "-a",
            password,
            "--no-auth-warning",
            "GET",
            "hookgate:dedup:hook:evt_auth"
        ]),
        "d"
    );
    let config = crate::support::client::send(gw.admin(), "GET", "/config", &[], "")
        .await
        .text();
    assert!(!config.contains(password), "{config}");
    assert!(
        config.contains(&format!("file:{}", url_file.display())),
        "{config}"
    );
    assert!(!gw.log().contains(password));
}

#[tokio::test]
async fn rediss_with_a_private_ca_works() {
    let dir = tempfile::tempdir().unwrap();
    let (redis, ca_file) = Redis::start_tls(dir.path()).await;
    let upstream = Upstream::start().await;
    let routes = route_with(&upstream, "rye", "[routes.dedup]\nttl_secs = 60");
    let server = format!(
        "[server.state]\nredis_url = \"rediss://127.0.0.1:{}\"",
        redis.port
    );
    let ca = ca_file.display().to_string();
    let gw = Gateway::with_env(&routes, &server, &[("SSL_CERT_FILE", &ca)]).await;
    assert_eq!(deliver(&gw, "evt_tls").await.text(), "upstream ok");
    assert!(is_duplicate(&deliver(&gw, "evt_tls").await));
    // Without the CA the certificate is not trusted: the state is unavailable.
    let untrusting = Gateway::start_with(&routes, &server).await;
    deliver(&untrusting, "evt_tls_2")
        .await
        .assert_error(503, "state_unavailable");
}

#[tokio::test]
async fn a_redis_slower_than_redis_timeout_ms_is_a_state_error() {
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]).await;
    let upstream = Upstream::start().await;
    let routes = route_with(&upstream, "rye", "[routes.dedup]\nttl_secs = 60");
    let gw = Gateway::start_with(&routes, &state(&redis)).await;
    assert_eq!(deliver(&gw, "before").await.text(), "upstream ok");
    // Redis stops answering for 3 s; the gateway gives up after 200 ms.
    let port = redis.port.to_string();
    let sleeper = std::thread::spawn(move || {
        std::process::Command::new("redis-cli")
            .args(["-p", &port, "DEBUG", "SLEEP", "3"])
            .output()
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    deliver(&gw, "during")
        .await
        .assert_error(503, "state_unavailable");
    sleeper.join().unwrap();
    assert_eq!(until_recovered(&gw, "after").await.text(), "upstream ok");
    assert_eq!(upstream.requests().len(), 2);
}
