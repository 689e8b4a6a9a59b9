//! Dedup and the replay cache in memory: one delivery per event, retries after
//! failures, expiry, the bound; only verified requests touch the store.

use std::time::Duration;

use crate::support::client::{Answer, post};
use crate::support::gateway::Gateway;
use crate::support::sign;
use crate::support::upstream::{Reply, Upstream};

/// A `[[routes]]` table on `/hook` verifying `scheme` with secret `k`, then `extra` lines.
pub fn route_with(upstream: &Upstream, scheme: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"hook\"\npath = \"/hook\"\nupstream = \"{}\"\n\
         verify = {{ scheme = \"{scheme}\", secrets = [\"k\"] }}\n{extra}\n",
        upstream.url()
    )
}

/// A gateway whose route deduplicates for 60 s.
async fn dedup_gateway(upstream: &Upstream, scheme: &str) -> Gateway {
    Gateway::start(&route_with(
        upstream,
        scheme,
        "[routes.dedup]\nttl_secs = 60",
    ))
    .await
}

/// POSTs a Rye event `id` signed with `k`.
pub async fn deliver(gw: &Gateway, id: &str) -> Answer {
    let body = sign::rye_event(id, "order.created", sign::now());
    let (h, v) = sign::rye("k", &body);
    post(gw.addr, "/hook", &[(h, &v)], body).await
}

fn is_duplicate(a: &Answer) -> bool {
    a.status == 200 && a.json() == serde_json::json!({"status": "duplicate"})
}

#[tokio::test]
async fn ten_concurrent_copies_reach_the_upstream_once() {
    let upstream = Upstream::with_reply(Reply {
        delay: Duration::from_millis(400),
        ..Reply::default()
    })
    .await;
    let routes = route_with(&upstream, "rye", "[routes.dedup]\nttl_secs = 60");
    let gw = Gateway::with_admin(&routes, "").await;
    let body = sign::rye_event("evt_once", "order.created", sign::now());
    let (h, v) = sign::rye("k", &body);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (addr, body, v) = (gw.addr, body.clone(), v.clone());
            tokio::spawn(async move { post(addr, "/hook", &[(h, &v)], body).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(upstream.requests().len(), 1, "exactly one copy forwarded");
    let forwarded = answers.iter().filter(|a| a.text() == "upstream ok").count();
    assert_eq!(forwarded, 1);
    for a in answers.iter().filter(|a| a.text() != "upstream ok") {
        if a.status == 409 {
            a.assert_error(409, "delivery_in_progress");
            let wait: u64 = a.header("retry-after").parse().unwrap();
            assert!(wait >= 1, "Retry-After {wait}");
        } else {
            assert!(is_duplicate(a), "{} {}", a.status, a.text());
        }
    }
    // Once delivered, every later copy is a duplicate and stays away.
    assert!(is_duplicate(&deliver(&gw, "evt_once").await));
    assert_eq!(upstream.requests().len(), 1);
    gw.metrics_with(&[r#"hookgate_dedup_total{result="claimed",route="hook"} 1"#])
        .await;
}

#[tokio::test]
async fn an_upstream_failure_releases_the_event_for_the_providers_retry() {
    let upstream = Upstream::with_reply(Reply {
        status: 500,
        ..Reply::default()
    })
    .await;
    let gw = dedup_gateway(&upstream, "rye").await;
    assert_eq!(deliver(&gw, "evt_retry").await.status, 500);
    upstream.set_reply(Reply::default());
    let retry = deliver(&gw, "evt_retry").await;
    assert_eq!((retry.status, retry.text().as_str()), (200, "upstream ok"));
    assert!(is_duplicate(&deliver(&gw, "evt_retry").await));
    assert_eq!(upstream.requests().len(), 2, "the failed try and the retry");
}

#[tokio::test]
async fn an_unreachable_upstream_releases_the_event_too() {
    let upstream = Upstream::start().await;
    let dead = format!("http://127.0.0.1:{}", crate::support::gateway::free_port());
    let routes = route_with(&upstream, "rye", "[routes.dedup]\nttl_secs = 60")
        .replace(&upstream.url(), &dead);
    let gw = Gateway::start(&routes).await;
    deliver(&gw, "evt_dead")
        .await
        .assert_error(502, "upstream_unavailable");
    deliver(&gw, "evt_dead")
        .await
        .assert_error(502, "upstream_unavailable");
}

#[tokio::test]
async fn the_replay_cache_expires_after_ttl_secs() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route_with(
        &upstream,
        "rye",
        "[routes.dedup]\nttl_secs = 1",
    ))
    .await;
    assert_eq!(deliver(&gw, "evt_ttl").await.text(), "upstream ok");
    assert!(is_duplicate(&deliver(&gw, "evt_ttl").await));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(deliver(&gw, "evt_ttl").await.text(), "upstream ok");
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn the_memory_bound_evicts_the_least_recent_and_counts_it() {
    let upstream = Upstream::start().await;
    let gw = Gateway::with_admin(
        &route_with(&upstream, "rye", "[routes.dedup]\nttl_secs = 600"),
        "[server.state]\nmax_entries = 2",
    )
    .await;
    for id in ["a", "b", "c"] {
        assert_eq!(deliver(&gw, id).await.text(), "upstream ok");
    }
    assert!(is_duplicate(&deliver(&gw, "c").await));
    // `a` was pushed out by `c`: it goes through again.
    assert_eq!(deliver(&gw, "a").await.text(), "upstream ok");
    assert_eq!(upstream.requests().len(), 4);
    gw.metrics_with(&["hookgate_state_evictions_total 2"]).await;
}

#[tokio::test]
async fn a_scheme_without_event_ids_keys_on_the_content() {
    let upstream = Upstream::start().await;
    let gw = dedup_gateway(&upstream, "aryeo").await;
    let send = |body: &'static [u8]| {
        let (h, v) = sign::aryeo("k", body);
        async move { post(gw.addr, "/hook", &[(h, &v)], body).await }
    };
    assert_eq!(send(br#"{"n":1}"#).await.text(), "upstream ok");
    assert!(is_duplicate(&send(br#"{"n":1}"#).await));
    assert_eq!(send(br#"{"n":2}"#).await.text(), "upstream ok");
    let sent = upstream.requests();
    assert_eq!(sent.len(), 2);
    assert!(
        sent[0].header_all("webhook-id").is_empty(),
        "aryeo names no event"
    );
}

#[tokio::test]
async fn only_verified_requests_touch_the_store() {
    let upstream = Upstream::start().await;
    let gw = dedup_gateway(&upstream, "rye").await;
    let body = sign::rye_event("evt_forged", "order.created", sign::now());
    let (h, forged) = sign::rye("not-k", &body);
    post(gw.addr, "/hook", &[(h, &forged)], body.clone())
        .await
        .assert_error(401, "invalid_signature");
    // The forgery claimed nothing: the real delivery goes through.
    assert_eq!(deliver(&gw, "evt_forged").await.text(), "upstream ok");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn handshakes_are_never_deduplicated() {
    let upstream = Upstream::start().await;
    let gw = dedup_gateway(&upstream, "rye").await;
    let body = br#"{"id":"evt_hs","type":"WEBHOOK_URL_VERIFICATION","data":{"challenge":"c1"}}"#;
    let (h, v) = sign::rye("k", body);
    for _ in 0..2 {
        let answer = post(gw.addr, "/hook", &[(h, &v)], body.to_vec()).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["challenge"], "c1");
    }
    upstream.assert_untouched();
}
