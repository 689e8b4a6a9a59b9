//! Destinations through the real binary: a route's `[[routes.destinations]]`
//! routes by the signed event type, by the verified body and by a signed
//! header; an event its destination does not want is answered `filtered`,
//! counted, logged, never forwarded or stored, and remembered by dedup. The
//! async scenarios run on both spool backends.

use std::time::Duration;

use crate::async_delivery::{Backend, accepted, admin, on_each_backend, wait_for, wait_requests};
use crate::support::client::{Answer, post};
use crate::support::gateway::Gateway;
use crate::support::sign;
use crate::support::upstream::{Reply, Upstream};

on_each_backend!(
    an_async_destination_stores_only_what_it_wants,
    a_breaker_rests_a_failing_destination_and_a_probe_brings_it_back,
);

/// A route `r` on `/r` verifying Rye with `k`, to one destination `billing`
/// with `filter` lines, and `extra` route lines.
fn routed(upstream: &str, extra: &str, filter: &str) -> String {
    format!(
        "[[routes]]\nname = \"r\"\npath = \"/r\"\n\
         verify = {{ scheme = \"rye\", secrets = [\"k\"] }}\n{extra}\n\
         [[routes.destinations]]\nname = \"billing\"\nupstream = \"{upstream}\"\n{filter}\n"
    )
}

const FILTER: &str = "events = [\"invoice.*\"]\nwhen = [ { json = \"/data/n\", in = [1, 2] } ]";

/// POSTs a Rye event of type `kind` whose body holds `data`, signed with `k`.
async fn event(gw: &Gateway, id: &str, kind: &str, data: &str) -> Answer {
    let body = format!(r#"{{"id":"{id}","type":"{kind}","data":{data}}}"#);
    let (h, v) = sign::rye("k", body.as_bytes());
    post(gw.addr, "/r", &[(h, &v)], body).await
}

fn assert_filtered(a: &Answer) {
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json(), serde_json::json!({"status": "filtered"}));
}

#[tokio::test]
async fn a_destination_gets_the_events_its_filter_wants_and_the_rest_are_filtered() {
    let upstream = Upstream::start().await;
    let mut gw = Gateway::with_admin(&routed(&upstream.url(), "", FILTER), "").await;
    let wanted = event(&gw, "e1", "invoice.paid", r#"{"n":2}"#).await;
    assert_eq!(wanted.status, 200, "{}", wanted.text());
    let got = upstream.only_request();
    assert!(got.body.starts_with(br#"{"id":"e1""#));
    // By type, by body, and a body that is not what the filter reads.
    assert_filtered(&event(&gw, "e2", "customer.created", r#"{"n":2}"#).await);
    assert_filtered(&event(&gw, "e3", "invoice.paid", r#"{"n":3}"#).await);
    assert_filtered(&event(&gw, "e4", "invoice.paid", r#""none""#).await);
    // A member given twice means two things: not wanted.
    assert_filtered(&event(&gw, "e5", "invoice.paid", r#"{"n":9,"n":1}"#).await);
    assert_eq!(
        upstream.requests().len(),
        1,
        "nothing filtered went upstream"
    );
    gw.metrics_with(&[
        r#"hookgate_requests_total{outcome="filtered",route="r"} 4"#,
        r#"hookgate_requests_total{outcome="forwarded",route="r"} 1"#,
    ])
    .await;
    // An unsigned copy of the type decides nothing: the body's is the one read.
    let body = br#"{"id":"e6","type":"customer.created","data":{"n":1}}"#;
    let (h, v) = sign::rye("k", body);
    let a = post(
        gw.addr,
        "/r",
        &[(h, &v), ("x-rye-topic", "invoice.paid")],
        &body[..],
    )
    .await;
    assert_filtered(&a);
    // A bad signature is still refused before any filter.
    let a = post(gw.addr, "/r", &[("x-rye-signature", "v0=00")], &body[..]).await;
    a.assert_error(401, "invalid_signature");
    // `/config` shows the destination and its filter.
    let config = admin(&gw, "GET", "/config").await.json();
    let destination = &config["routes"][0]["destinations"][0];
    assert_eq!(destination["name"], "billing");
    assert_eq!(destination["events"], serde_json::json!(["invoice.*"]));
    assert_eq!(destination["when"][0]["json"], "/data/n");
    assert_eq!(destination["when"][0]["in"], serde_json::json!([1, 2]));
    // Each filtered one has its access log line (flushed as the gateway stops).
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(5)).await, Some(0));
    let filtered_lines = gw
        .stdout()
        .lines()
        .filter(|l| l.contains(r#""outcome":"filtered""#))
        .count();
    assert_eq!(filtered_lines, 5, "{}", gw.stdout());
}

#[tokio::test]
async fn a_filtered_event_is_remembered_by_dedup() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&routed(
        &upstream.url(),
        "[routes.dedup]\nttl_secs = 60",
        FILTER,
    ))
    .await;
    assert_filtered(&event(&gw, "e1", "customer.created", r#"{"n":1}"#).await);
    let copy = event(&gw, "e1", "customer.created", r#"{"n":1}"#).await;
    assert_eq!(copy.status, 200);
    assert_eq!(copy.json()["status"], "duplicate");
    upstream.assert_untouched();
}

#[tokio::test]
async fn a_signed_header_can_choose_the_destination() {
    let upstream = Upstream::start().await;
    let routes = format!(
        "[[routes]]\nname = \"r\"\npath = \"/r\"\n\
         verify = {{ scheme = \"hmac\", header = \"x-sig\", payload = \"{{header:x-shop}}.{{body}}\", \
         secrets = [\"k\"] }}\n\
         [[routes.destinations]]\nname = \"shop-a\"\nupstream = \"{}\"\n\
         when = [ {{ header = \"x-shop\", in = [\"a.example\", \"b.example\"] }} ]\n",
        upstream.url()
    );
    let gw = Gateway::start(&routes).await;
    let send = |shop: &'static str| {
        let body = b"{}".to_vec();
        let mut signed = shop.as_bytes().to_vec();
        signed.push(b'.');
        signed.extend_from_slice(&body);
        let sig = hex::encode(sign::hmac_sha256("k", &signed));
        let addr = gw.addr;
        async move { post(addr, "/r", &[("x-shop", shop), ("x-sig", &sig)], body).await }
    };
    assert_eq!(send("b.example").await.status, 200);
    assert_eq!(upstream.requests().len(), 1);
    assert_filtered(&send("c.example").await);
    assert_eq!(upstream.requests().len(), 1);
}

async fn an_async_destination_stores_only_what_it_wants(backend: Backend) {
    let upstream = Upstream::start().await;
    let routes = routed(
        &upstream.url(),
        "[routes.dedup]\nttl_secs = 60",
        &format!("{FILTER}\ndelivery = \"async\""),
    );
    let gw = backend.gateway(&routes, "").await;
    // Redis may still be being connected to: 503 until then.
    let first = wait_for(
        || event(&gw, "e1", "customer.created", r#"{"n":1}"#),
        |a| a.status != 503,
    )
    .await;
    assert_filtered(&first);
    let id = accepted(&event(&gw, "e2", "invoice.paid", r#"{"n":1}"#).await);
    let got = wait_requests(&upstream, 1).await;
    assert!(got[0].body.starts_with(br#"{"id":"e2""#));
    // The filtered one was never stored, and a copy of it is a duplicate.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(upstream.requests().len(), 1);
    let copy = event(&gw, "e1", "customer.created", r#"{"n":1}"#).await;
    assert_eq!(copy.json()["status"], "duplicate");
    let listed = admin(&gw, "GET", "/deliveries?route=r").await.json();
    assert!(
        !listed.to_string().contains("e1"),
        "a filtered event is not stored: {listed}"
    );
    assert_eq!(
        admin(&gw, "GET", &format!("/deliveries/{id}")).await.status,
        404,
        "delivered and gone"
    );
}

async fn a_breaker_rests_a_failing_destination_and_a_probe_brings_it_back(backend: Backend) {
    let upstream = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    // Without the breaker, five deliveries retried every 10-20 ms would make
    // 60 attempts (12 each) in well under a second.
    let routes = format!(
        "[[routes]]\nname = \"r\"\npath = \"/r\"\ndelivery = \"async\"\n\
         verify = {{ scheme = \"rye\", secrets = [\"k\"] }}\n\
         [routes.retry]\nmin_backoff_ms = 10\nmax_backoff_ms = 20\nconcurrency = 1\n\
         [[routes.destinations]]\nname = \"app\"\nupstream = \"{}\"\n\
         [routes.destinations.breaker]\nfailures = 3\ncooldown_secs = 1\n",
        upstream.url()
    );
    let gw = backend.gateway(&routes, "").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = format!("e{i}");
        let a = wait_for(
            || event(&gw, &id, "invoice.paid", "{}"),
            |a| a.status != 503,
        )
        .await;
        ids.push(accepted(&a));
    }
    wait_requests(&upstream, 3).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let made = upstream.requests().len();
    // 3 that open it, then about one probe a second (the deliverer looks
    // again at least every second).
    assert!((3..=7).contains(&made), "{made} attempts while open");
    assert!(
        gw.log()
            .contains("circuit breaker open for 1 s after 3 failed attempt(s)")
    );
    // Attempts not made are not counted: every delivery is still pending.
    let listed = admin(&gw, "GET", "/deliveries?route=r&status=pending")
        .await
        .json();
    assert_eq!(listed.as_array().map_or(0, Vec::len), 5, "{listed}");
    upstream.set_reply(Reply::default());
    let got = wait_requests(&upstream, made + 5).await;
    let delivered: std::collections::HashSet<&[u8]> =
        got[made..].iter().map(|r| &r.body[..12]).collect();
    assert_eq!(delivered.len(), 5, "each event arrives once it is back");
    for id in ids {
        let path = format!("/deliveries/{id}");
        let gone = wait_for(|| admin(&gw, "GET", &path), |a| a.status == 404).await;
        assert_eq!(gone.status, 404);
    }
}
