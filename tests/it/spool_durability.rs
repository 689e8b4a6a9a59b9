//! Async delivery at its edges, on both spool backends: a graceful stop with
//! attempts in flight sends nothing twice, a copy of a stored event is a
//! duplicate (never 409), and a result Redis could not record is counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::async_delivery::{
    Backend, accepted, admin, async_route, event, event_ids, on_each_backend, wait_admin,
    wait_requests,
};
use crate::support::gateway::{Gateway, free_port};
use crate::support::upstream::{Reply, Upstream};

on_each_backend!(
    sigterm_waits_for_the_attempts_in_flight_and_nothing_is_sent_twice,
    a_copy_of_a_stored_event_is_a_duplicate_until_its_delivery_dies,
);

/// How many copies of each event the upstream got.
pub fn copies(upstream: &Upstream) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for id in event_ids(&upstream.requests()) {
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

/// Asserts the upstream got each of `ids` exactly once, and nothing else.
fn each_once(upstream: &Upstream, ids: &[String]) {
    let seen = copies(upstream);
    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "never sent: {missing:?}");
    assert_eq!(seen.len(), ids.len(), "{seen:?}");
}

async fn sigterm_waits_for_the_attempts_in_flight_and_nothing_is_sent_twice(backend: Backend) {
    const N: usize = 16;
    const SLOW: Duration = Duration::from_secs(2);
    // The app takes its time over each delivery.
    let upstream = Upstream::with_reply(Reply {
        delay: SLOW,
        ..Reply::default()
    })
    .await;
    let retry = "concurrency = 16\nmin_backoff_ms = 20\nmax_backoff_ms = 100";
    let routes = async_route(&upstream.url(), retry, "");
    let mut gw = backend.gateway(&routes, "").await;
    let ids: Vec<String> = (0..N).map(|i| format!("evt_drain_{i}")).collect();
    for id in &ids {
        accepted(&event(&gw, id).await);
    }
    // All sixteen are with the app now.
    wait_requests(&upstream, N).await;
    // With Redis, a second gateway of the fleet stands ready to take over
    // whatever the first leaves untouched for `claim_after_secs` (1 s here).
    let second: Option<Gateway> = match &backend {
        Backend::Redis(_) => Some(backend.gateway(&routes, "").await),
        Backend::Local => None,
    };
    let signalled = Instant::now();
    gw.signal("TERM");
    assert_eq!(
        gw.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "{}",
        gw.log()
    );
    let took = signalled.elapsed();
    let log = gw.log();
    assert!(
        log.contains(&format!("{N} delivery attempt(s) in flight")),
        "the drain says what it waits for:\n{log}"
    );
    assert!(
        took >= SLOW / 2,
        "exited {took:?} after SIGTERM, before the app had answered:\n{log}"
    );
    match second {
        Some(second) => {
            // Whatever the first left would be taken over within a couple of
            // beats: there must be nothing.
            tokio::time::sleep(Duration::from_secs(3)).await;
            wait_admin(&second, "/deliveries", |l| l == &json!([])).await;
        }
        None => {
            gw.restart().await;
            wait_admin(&gw, "/deliveries", |l| l == &json!([])).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    each_once(&upstream, &ids);
}

#[tokio::test]
async fn past_the_grace_period_an_attempt_is_cut_and_made_again() {
    // The app is slower than the grace period: the attempt cannot finish.
    let upstream = Upstream::with_reply(Reply {
        delay: Duration::from_secs(4),
        ..Reply::default()
    })
    .await;
    let routes = async_route(&upstream.url(), "min_backoff_ms = 20", "");
    let mut gw = Gateway::with_admin(
        &format!("{routes}[spool]\n"),
        "shutdown_grace_secs = 1\nupstream_timeout_ms = 10000\n",
    )
    .await;
    // Described from the start, at 0.
    gw.metrics_with(&["hookgate_spool_unrecorded_total 0"])
        .await;
    accepted(&event(&gw, "evt_cut").await);
    wait_requests(&upstream, 1).await;
    let signalled = Instant::now();
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)).await, Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(3), "{}", gw.log());
    gw.wait_log("1 delivery attempt(s) cut", 1).await;
    // Not recorded: attempted again after the restart, as the same attempt.
    upstream.set_reply(Reply::default());
    gw.restart().await;
    let got = wait_requests(&upstream, 2).await;
    assert_eq!(event_ids(&got), ["evt_cut", "evt_cut"]);
    assert_eq!(got[1].header("x-webhook-attempt"), "1");
    wait_admin(&gw, "/deliveries", |l| l == &json!([])).await;
}

async fn a_copy_of_a_stored_event_is_a_duplicate_until_its_delivery_dies(backend: Backend) {
    // The app is down: the delivery stays pending, its claim held.
    let down = format!("http://127.0.0.1:{}", free_port());
    let retry = "min_backoff_ms = 60000\nmax_backoff_ms = 60000";
    let routes = async_route(&down, retry, "dedup = { ttl_secs = 60 }");
    let gw = backend.gateway(&routes, "").await;
    let id = accepted(&event(&gw, "evt_copy").await);
    wait_admin(&gw, &format!("/deliveries/{id}"), |d| d["attempts"] == 1).await;
    // Stored, so ours: the provider's copy is answered as delivered.
    for _ in 0..3 {
        let copy = event(&gw, "evt_copy").await;
        assert_eq!(
            (copy.status, copy.json()),
            (200, json!({"status": "duplicate"})),
            "{}",
            copy.text()
        );
    }
    gw.metrics_with(&[
        r#"hookgate_dedup_total{result="duplicate",route="hook"} 3"#,
        r#"hookgate_requests_total{outcome="accepted",route="hook"} 1"#,
    ])
    .await;
    let text = gw.metrics().await;
    assert!(!text.contains(r#"result="in_progress""#), "{text}");
    // Deleted (as a dead letter would be): the claim is given back, and the
    // provider's next copy is accepted again.
    assert_eq!(
        admin(&gw, "DELETE", &format!("/deliveries/{id}"))
            .await
            .status,
        200
    );
    accepted(&event(&gw, "evt_copy").await);
}

#[tokio::test]
async fn a_result_redis_could_not_record_is_counted_and_recorded_once_it_is_back() {
    let upstream = Upstream::with_reply(Reply {
        delay: Duration::from_secs(1),
        ..Reply::default()
    })
    .await;
    let mut backend = Backend::redis().await;
    let routes = async_route(&upstream.url(), "min_backoff_ms = 20", "");
    let gw = backend.gateway(&routes, "").await;
    gw.metrics_with(&["hookgate_spool_unrecorded_total 0"])
        .await;
    accepted(&event(&gw, "evt_unrecorded").await);
    wait_requests(&upstream, 1).await;
    // Redis dies while the app works on it: its 2xx cannot be recorded.
    let Backend::Redis(redis) = &mut backend else {
        unreachable!()
    };
    redis.stop();
    gw.metrics_with(&["hookgate_spool_unrecorded_total 1"])
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.resume().await;
    // Recorded once Redis is back: not sent again, by this gateway or any.
    wait_admin(&gw, "/deliveries", |l| l == &json!([])).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    each_once(&upstream, &["evt_unrecorded".to_owned()]);
    gw.wait_log("is recorded now", 1).await;
}
