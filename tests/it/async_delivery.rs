//! Async delivery through the real binary: 202 once stored, delivered in the
//! background with retries, dead letters and the admin API, the spool budget,
//! and kill -9 in the middle of a burst. Each scenario runs on both spool
//! backends: `NAME::local` and `NAME::redis` (a real Redis with AOF on and
//! `appendfsync always`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::client::{Answer, post, send, try_send};
use crate::support::gateway::{Gateway, free_port};
use crate::support::redis::Redis;
use crate::support::sign;
use crate::support::upstream::{Recorded, Reply, Upstream};

/// Where a scenario's gateway keeps its deliveries.
pub enum Backend {
    /// The embedded store beside the config file.
    Local,
    /// Redis Streams on a Redis of the test's own.
    Redis(Redis),
}

impl Backend {
    /// The `redis` backend on a fresh Redis that writes every change to its
    /// append-only file before answering (`appendfsync always`).
    pub async fn redis() -> Self {
        Self::Redis(Redis::start_durable().await)
    }

    /// Starts a gateway with an admin listener, `routes`, and `spool` lines in
    /// `[spool]`; with Redis, a silent gateway's deliveries are taken over after
    /// a second.
    pub async fn gateway(&self, routes: &str, spool: &str) -> Gateway {
        match self {
            Self::Local => Gateway::with_admin(&format!("{routes}[spool]\n{spool}\n"), "").await,
            Self::Redis(redis) => {
                let spool = format!(
                    "{routes}[spool]\nbackend = \"redis\"\nclaim_after_secs = 1\n{spool}\n"
                );
                // This Redis fsyncs every write before it answers: on a
                // loaded machine one fsync can outlast the default 250 ms
                // (a first request then got 503 `state_unavailable`). A
                // killed Redis still fails at once: its port refuses.
                let state = format!(
                    "[server.state]\nredis_url = \"{}\"\nredis_timeout_ms = 2000\n",
                    redis.url()
                );
                Gateway::with_admin(&spool, &state).await
            }
        }
    }
}

/// Runs each scenario on both backends, as `NAME::local` and `NAME::redis`
/// (the scenarios and `Backend` must be in scope of the calling module).
macro_rules! on_each_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn local() {
                super::$name(super::Backend::Local).await;
            }

            #[tokio::test]
            async fn redis() {
                super::$name(super::Backend::redis().await).await;
            }
        }
    )*};
}
pub(crate) use on_each_backend;

on_each_backend!(
    accepted_while_the_upstream_is_down_and_delivered_once_it_is_up,
    retries_follow_the_schedule_then_a_dead_letter_is_retried_from_the_admin_api,
    a_final_answer_is_dead_at_once_and_can_be_deleted,
    past_max_age_a_delivery_is_dead,
    with_dedup_the_delivered_event_is_a_duplicate_and_handshakes_are_answered_at_once,
    a_full_spool_answers_503_and_sync_routes_are_unaffected,
    kill_9_in_a_burst_loses_no_acknowledged_delivery,
    sigterm_leaves_pending_deliveries_queued_for_the_next_start,
    an_upstream_retry_after_puts_off_the_next_attempt,
    fifo_delivers_one_at_a_time_in_arrival_order,
    a_route_removed_by_a_reload_keeps_its_deliveries_until_it_returns,
    every_attempt_is_re_signed_at_its_own_time,
);

/// An async route `hook` on `/hook` to `upstream`, verifying Rye with secret
/// `k`, with `retry` lines in `[routes.retry]` and `extra` route lines.
pub fn async_route(upstream: &str, retry: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"hook\"\npath = \"/hook\"\nupstream = \"{upstream}\"\n\
         delivery = \"async\"\n{extra}\n\
         verify = {{ scheme = \"rye\", secrets = [\"k\"] }}\n[routes.retry]\n{retry}\n"
    )
}

/// POSTs a Rye event `id` signed with `k` to `/hook`.
pub async fn event(gw: &Gateway, id: &str) -> Answer {
    let body = sign::rye_event(id, "order.created", sign::now());
    let (h, v) = sign::rye("k", &body);
    post(gw.addr, "/hook", &[(h, &v)], body).await
}

/// The delivery id of a 202.
pub fn accepted(a: &Answer) -> String {
    assert_eq!(a.status, 202, "{}", a.text());
    let body = a.json();
    assert_eq!(body["status"], "accepted", "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Waits until the upstream has received `n` requests (at most 20 s).
pub async fn wait_requests(upstream: &Upstream, n: usize) -> Vec<Recorded> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let requests = upstream.requests();
        if requests.len() >= n {
            return requests;
        }
        assert!(
            Instant::now() < deadline,
            "the upstream got {} of {n} requests",
            requests.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn admin(gw: &Gateway, method: &str, path: &str) -> Answer {
    send(gw.admin(), method, path, &[], "").await
}

/// Waits until `GET path` on the admin listener satisfies `ok` (at most 20 s).
pub async fn wait_admin(gw: &Gateway, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = admin(gw, "GET", path).await.json();
        if ok(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{path}: {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn accepted_while_the_upstream_is_down_and_delivered_once_it_is_up(backend: Backend) {
    // Nothing listens on the route's upstream: every attempt fails to connect.
    let down = format!("http://127.0.0.1:{}", free_port());
    let retry = "min_backoff_ms = 20\nmax_backoff_ms = 100";
    let gw = backend.gateway(&async_route(&down, retry, ""), "").await;
    let id = accepted(&event(&gw, "evt_down").await);
    let pending = wait_admin(&gw, &format!("/deliveries/{id}"), |d| {
        d["attempts"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["last_error"], "refused");
    assert_eq!(pending["route"], "hook");
    assert_eq!(pending["event_id"], "evt_down");
    // The app comes up elsewhere; the pending delivery goes where the running
    // config says at its next attempt.
    let upstream = Upstream::start().await;
    let config = std::fs::read_to_string(&gw.config_path).unwrap();
    std::fs::write(&gw.config_path, config.replace(&down, &upstream.url())).unwrap();
    assert_eq!(admin(&gw, "POST", "/reload").await.status, 200);
    let got = wait_requests(&upstream, 1).await;
    let first = &got[0];
    assert_eq!(first.header("webhook-id"), "evt_down");
    assert_eq!(first.header("x-webhook-verified"), "rye");
    assert_eq!(first.header("x-webhook-route"), "hook");
    assert_eq!(first.header("host"), upstream.addr.to_string());
    let attempt: u32 = first.header("x-webhook-attempt").parse().unwrap();
    assert!(attempt >= 3, "attempt {attempt}");
    wait_admin(&gw, "/deliveries?route=hook", |list| list == &json!([])).await;
    gw.metrics_with(&[
        r#"hookgate_requests_total{outcome="accepted",route="hook"} 1"#,
        r#"hookgate_delivery_attempts_total{outcome="delivered",route="hook"} 1"#,
        r#"hookgate_spool_pending{route="hook"} 0"#,
    ])
    .await;
}

async fn retries_follow_the_schedule_then_a_dead_letter_is_retried_from_the_admin_api(
    backend: Backend,
) {
    let upstream = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    let retry = "max_attempts = 4\nmin_backoff_ms = 20\nmax_backoff_ms = 80";
    let gw = backend
        .gateway(&async_route(&upstream.url(), retry, ""), "")
        .await;
    let body = sign::rye_event("evt_sched", "order.created", sign::now());
    let (h, v) = sign::rye("k", &body);
    // A client copy of the attempt header is never passed on.
    let a = post(
        gw.addr,
        "/hook?x=1",
        &[(h, &v), ("x-webhook-attempt", "99")],
        body.clone(),
    )
    .await;
    let id = accepted(&a);
    let dead = wait_admin(&gw, "/deliveries?status=dead", |l| {
        l.as_array().is_some_and(|l| l.len() == 1)
    })
    .await;
    assert_eq!(dead[0]["id"], id.as_str());
    assert_eq!(dead[0]["attempts"], 4);
    assert_eq!(dead[0]["last_error"], "status 503");
    let got = upstream.requests();
    assert_eq!(got.len(), 4, "max_attempts = 4");
    for (n, request) in got.iter().enumerate() {
        assert_eq!(request.header("x-webhook-attempt"), (n + 1).to_string());
        assert_eq!(request.header("webhook-id"), "evt_sched");
        assert_eq!(request.uri, "/hook?x=1");
        assert_eq!(request.body, body);
    }
    // One delivery, shown without secrets.
    let shown = admin(&gw, "GET", &format!("/deliveries/{id}")).await.json();
    assert_eq!(shown["status"], "dead");
    assert_eq!(shown["body_bytes"], body.len());
    assert!(
        shown["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "x-rye-signature")
    );
    assert!(admin(&gw, "GET", "/deliveries?status=pending").await.json() == json!([]));
    gw.metrics_with(&[
        r#"hookgate_dead_letters_total{reason="max_attempts",route="hook"} 1"#,
        r#"hookgate_delivery_attempts_total{outcome="retry",route="hook"} 3"#,
        r#"hookgate_spool_dead{route="hook"} 1"#,
    ])
    .await;
    // The app is fixed; the dead letter is retried by hand and delivered.
    upstream.set_reply(Reply::default());
    let retried = admin(&gw, "POST", &format!("/deliveries/{id}/retry")).await;
    assert_eq!(retried.status, 200, "{}", retried.text());
    let got = wait_requests(&upstream, 5).await;
    assert_eq!(got[4].header("x-webhook-attempt"), "5");
    wait_admin(&gw, "/deliveries", |l| l == &json!([])).await;
    assert_eq!(
        admin(&gw, "GET", &format!("/deliveries/{id}")).await.status,
        404
    );
    assert_eq!(
        admin(&gw, "DELETE", &format!("/deliveries/{id}"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_token_a_route_verifies_is_not_shown_by_the_admin_api() {
    let upstream = Upstream::with_reply(Reply {
        status: 400,
        ..Reply::default()
    })
    .await;
    let route = format!(
        "[[routes]]\nname = \"hook\"\npath = \"/hook\"\nupstream = \"{}\"\ndelivery = \"async\"\n\
         verify = {{ scheme = \"telegram\", secrets = [\"tg-token\"] }}\n",
        upstream.url()
    );
    let gw = Gateway::with_admin(&route, "").await;
    let a = post(
        gw.addr,
        "/hook",
        &[("x-telegram-bot-api-secret-token", "tg-token")],
        r#"{"update_id":1}"#,
    )
    .await;
    let id = accepted(&a);
    let shown = wait_admin(&gw, &format!("/deliveries/{id}"), |d| d["status"] == "dead").await;
    let token = shown["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "x-telegram-bot-api-secret-token")
        .unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(token[1], "[redacted]");
    assert!(!shown.to_string().contains("tg-token"), "{shown}");
}

async fn a_final_answer_is_dead_at_once_and_can_be_deleted(backend: Backend) {
    let upstream = Upstream::with_reply(Reply {
        status: 422,
        ..Reply::default()
    })
    .await;
    let gw = backend
        .gateway(&async_route(&upstream.url(), "", ""), "")
        .await;
    let id = accepted(&event(&gw, "evt_final").await);
    let dead = wait_admin(&gw, "/deliveries?route=hook&status=dead", |l| {
        l.as_array().is_some_and(|l| l.len() == 1)
    })
    .await;
    assert_eq!(
        (
            dead[0]["attempts"].as_u64(),
            dead[0]["last_status"].as_u64()
        ),
        (Some(1), Some(422))
    );
    assert_eq!(upstream.requests().len(), 1);
    // With Redis, a dead letter has left the route's queue for a stream of its own.
    let streams = || {
        let Backend::Redis(redis) = &backend else {
            return None;
        };
        let len = |key: &str| redis.cli(&["XLEN", key]);
        Some((
            len("hookgate:spool:q:hook"),
            len("hookgate:spool:dead:hook"),
        ))
    };
    if let Some(lens) = streams() {
        assert_eq!(lens, ("0".to_owned(), "1".to_owned()));
    }
    let deleted = admin(&gw, "DELETE", &format!("/deliveries/{id}")).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(admin(&gw, "GET", "/deliveries").await.json(), json!([]));
    if let Some(lens) = streams() {
        assert_eq!(lens, ("0".to_owned(), "0".to_owned()));
    }
    gw.metrics_with(&[r#"hookgate_dead_letters_total{reason="final",route="hook"} 1"#])
        .await;
}

async fn past_max_age_a_delivery_is_dead(backend: Backend) {
    let upstream = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    // The second attempt would fall past the delivery's age limit.
    let retry = "max_age_secs = 1\nmin_backoff_ms = 1500\nmax_backoff_ms = 1500";
    let gw = backend
        .gateway(&async_route(&upstream.url(), retry, ""), "")
        .await;
    accepted(&event(&gw, "evt_aged").await);
    let dead = wait_admin(&gw, "/deliveries?status=dead", |l| {
        l.as_array().is_some_and(|l| l.len() == 1)
    })
    .await;
    assert_eq!(dead[0]["attempts"], 1, "{dead}");
    assert_eq!(dead[0]["last_error"], "status 503", "{dead}");
    assert_eq!(upstream.requests().len(), 1);
    gw.metrics_with(&[r#"hookgate_dead_letters_total{reason="max_age",route="hook"} 1"#])
        .await;
}

async fn with_dedup_the_delivered_event_is_a_duplicate_and_handshakes_are_answered_at_once(
    backend: Backend,
) {
    let upstream = Upstream::start().await;
    let routes = async_route(&upstream.url(), "", "dedup = { ttl_secs = 60 }");
    let gw = backend.gateway(&routes, "").await;
    accepted(&event(&gw, "evt_dedup").await);
    wait_requests(&upstream, 1).await;
    let again = wait_for(|| event(&gw, "evt_dedup"), |a| a.status == 200).await;
    assert_eq!(again.json(), json!({"status": "duplicate"}));
    // A handshake is answered by the gateway, never queued.
    let body = br#"{"type":"WEBHOOK_URL_VERIFICATION","data":{"challenge":"c1"}}"#.to_vec();
    let (h, v) = sign::rye("k", &body);
    let answer = post(gw.addr, "/hook", &[(h, &v)], body).await;
    assert_eq!(
        (answer.status, answer.json()),
        (200, json!({"challenge": "c1"}))
    );
    assert_eq!(upstream.requests().len(), 1);
}

/// Calls `make` until its answer satisfies `ok` (at most 10 s).
pub async fn wait_for<F: Future<Output = Answer>>(
    make: impl Fn() -> F,
    ok: impl Fn(&Answer) -> bool,
) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = make().await;
        if ok(&answer) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_full_spool_answers_503_and_sync_routes_are_unaffected(backend: Backend) {
    let down = format!("http://127.0.0.1:{}", free_port());
    let upstream = Upstream::start().await;
    let sync = format!(
        "[[routes]]\nname = \"sync\"\npath = \"/sync\"\nupstream = \"{}\"\n\
         verify = {{ scheme = \"rye\", secrets = [\"k\"] }}\n",
        upstream.url()
    );
    let routes = format!("{}{sync}", async_route(&down, "min_backoff_ms = 60000", ""));
    let gw = backend.gateway(&routes, "max_bytes = 3000").await;
    let mut full = None;
    for i in 0..10 {
        let a = event(&gw, &format!("evt_full_{i}")).await;
        if a.status != 202 {
            full = Some(a);
            break;
        }
    }
    let full = full.expect("a 3000-byte spool fills up");
    full.assert_error(503, "spool_full");
    assert_eq!(full.header("retry-after"), "1");
    let body = sign::rye_event("evt_sync", "order.created", sign::now());
    let (h, v) = sign::rye("k", &body);
    let a = post(gw.addr, "/sync", &[(h, &v)], body).await;
    assert_eq!((a.status, a.text().as_str()), (200, "upstream ok"));
}

async fn kill_9_in_a_burst_loses_no_acknowledged_delivery(backend: Backend) {
    const BURST: usize = 1000;
    const CLIENTS: usize = 32;
    let upstream = Upstream::start().await;
    let routes = async_route(
        &upstream.url(),
        "min_backoff_ms = 50\nmax_backoff_ms = 200",
        "",
    );
    let mut gw = backend.gateway(&routes, "").await;
    let addr = gw.addr;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (acked, next) = (acked.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= BURST {
                        return;
                    }
                    let id = format!("evt_burst_{i}");
                    let body = sign::rye_event(&id, "order.created", sign::now());
                    let (h, v) = sign::rye("k", &body);
                    match try_send(addr, "POST", "/hook", &[(h, &v)], body).await {
                        Ok(a) if a.status == 202 => acked.lock().unwrap().push(id),
                        Ok(a) => panic!("{id}: {} {}", a.status, a.text()),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Killed once a third of the burst is acknowledged.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < BURST / 3 {
        assert!(Instant::now() < deadline, "the burst is too slow");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gw.kill9();
    for client in clients {
        client.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() < BURST, "killed in the middle");
    gw.restart().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: HashSet<String> = upstream
            .requests()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        let missing: Vec<&String> = acked.iter().filter(|id| !seen.contains(*id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged deliveries never arrived, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_admin(&gw, "/deliveries?status=pending", |l| l == &json!([])).await;
}

async fn sigterm_leaves_pending_deliveries_queued_for_the_next_start(backend: Backend) {
    let down = format!("http://127.0.0.1:{}", free_port());
    let retry = "min_backoff_ms = 60000\nmax_backoff_ms = 60000";
    let mut gw = backend.gateway(&async_route(&down, retry, ""), "").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(accepted(&event(&gw, &format!("evt_term_{i}")).await));
    }
    // Each has failed its first attempt and waits a minute for the next.
    wait_admin(&gw, "/deliveries?status=pending", |l| {
        l.as_array()
            .is_some_and(|l| l.len() == 3 && l.iter().all(|d| d["attempts"] == 1))
    })
    .await;
    gw.signal("TERM");
    assert_eq!(
        gw.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.log()
    );
    // The app is up by the next start: the queue resumes where it was.
    let upstream = Upstream::start().await;
    let config = std::fs::read_to_string(&gw.config_path).unwrap();
    let config = config
        .replace(&down, &upstream.url())
        .replace("60000", "20");
    std::fs::write(&gw.config_path, config).unwrap();
    gw.restart().await;
    // All three are still there, pending, due a minute after their first
    // attempt as stored; retried by hand so the test need not wait.
    let listed = admin(&gw, "GET", "/deliveries").await.json();
    let listed: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap(), d["status"].as_str().unwrap()))
        .collect();
    let want: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), "pending")).collect();
    assert_eq!(listed, want);
    assert!(upstream.requests().is_empty());
    for id in &ids {
        let a = admin(&gw, "POST", &format!("/deliveries/{id}/retry")).await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let got = wait_requests(&upstream, 3).await;
    let mut seen: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    seen.sort_unstable();
    assert_eq!(seen, ["evt_term_0", "evt_term_1", "evt_term_2"]);
    assert!(got.iter().all(|r| r.header("x-webhook-attempt") == "2"));
}

async fn an_upstream_retry_after_puts_off_the_next_attempt(backend: Backend) {
    let upstream = Upstream::with_reply(Reply {
        status: 429,
        headers: vec![("retry-after".into(), "3600".into())],
        ..Reply::default()
    })
    .await;
    let retry = "min_backoff_ms = 10\nmax_backoff_ms = 20";
    let gw = backend
        .gateway(&async_route(&upstream.url(), retry, ""), "")
        .await;
    let id = accepted(&event(&gw, "evt_later").await);
    let shown = wait_admin(&gw, &format!("/deliveries/{id}"), |d| d["attempts"] == 1).await;
    assert_eq!(
        (shown["status"].as_str(), shown["last_status"].as_u64()),
        (Some("pending"), Some(429))
    );
    // The backoff alone would say 10 ms; the upstream asked for an hour.
    let at = |field: &str| {
        let text = shown[field].as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    };
    assert!(at("next_attempt_at") - at("created_at") >= 3599, "{shown}");
    assert_eq!(upstream.requests().len(), 1);
}

async fn fifo_delivers_one_at_a_time_in_arrival_order(backend: Backend) {
    let upstream = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    let retry = "min_backoff_ms = 10\nmax_backoff_ms = 40\nordering = \"fifo\"";
    let gw = backend
        .gateway(&async_route(&upstream.url(), retry, ""), "")
        .await;
    for id in ["evt_a", "evt_b", "evt_c"] {
        accepted(&event(&gw, id).await);
    }
    // While the oldest fails, nothing behind it is attempted.
    wait_requests(&upstream, 3).await;
    upstream.set_reply(Reply::default());
    wait_admin(&gw, "/deliveries", |l| l == &json!([])).await;
    let got = upstream.requests();
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    let first_b = ids.iter().position(|id| *id == "evt_b").unwrap();
    assert!(
        first_b >= 3,
        "evt_b was attempted before evt_a succeeded: {ids:?}"
    );
    assert!(ids[..first_b].iter().all(|id| *id == "evt_a"), "{ids:?}");
    assert_eq!(&ids[first_b..], ["evt_b", "evt_c"], "{ids:?}");
}

async fn a_route_removed_by_a_reload_keeps_its_deliveries_until_it_returns(backend: Backend) {
    let down = format!("http://127.0.0.1:{}", free_port());
    let retry = "min_backoff_ms = 10\nmax_backoff_ms = 20";
    let gw = backend.gateway(&async_route(&down, retry, ""), "").await;
    let id = accepted(&event(&gw, "evt_orphan").await);
    let with_route = std::fs::read_to_string(&gw.config_path).unwrap();
    let upstream = Upstream::start().await;
    let renamed = with_route
        .replace("name = \"hook\"", "name = \"other\"")
        .replace(&down, &upstream.url());
    std::fs::write(&gw.config_path, &renamed).unwrap();
    assert_eq!(admin(&gw, "POST", "/reload").await.status, 200);
    let shown = admin(&gw, "GET", &format!("/deliveries/{id}")).await.json();
    assert_eq!(
        (shown["route"].as_str(), shown["status"].as_str()),
        (Some("hook"), Some("pending"))
    );
    assert!(upstream.requests().is_empty(), "no other route takes it");
    // The route is back, now to a live upstream: the delivery goes there.
    std::fs::write(&gw.config_path, with_route.replace(&down, &upstream.url())).unwrap();
    assert_eq!(admin(&gw, "POST", "/reload").await.status, 200);
    let got = wait_requests(&upstream, 1).await;
    assert_eq!(got[0].header("webhook-id"), "evt_orphan");
    assert_eq!(got[0].header("x-webhook-route"), "hook");
}

async fn every_attempt_is_re_signed_at_its_own_time(backend: Backend) {
    let upstream = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let signing =
        format!("forward_signature = {{ scheme = \"standard-webhooks\", secret = \"{secret}\" }}");
    let retry = "max_attempts = 2\nmin_backoff_ms = 1100\nmax_backoff_ms = 1100";
    let gw = backend
        .gateway(&async_route(&upstream.url(), retry, &signing), "")
        .await;
    let created = sign::now() - 60;
    let body = sign::rye_event("evt_async_signed", "order.created", created);
    let (h, v) = sign::rye("k", &body);
    let forged = [(h, v.as_str()), ("webhook-signature", "v1,Zm9yZ2Vk")];
    accepted(&post(gw.addr, "/hook", &forged, body.clone()).await);
    let got = wait_requests(&upstream, 2).await;
    let webhook = standardwebhooks::Webhook::new(secret).unwrap();
    for (n, request) in got.iter().enumerate() {
        webhook
            .verify(&request.body, &request.header_map())
            .unwrap_or_else(|e| panic!("attempt {}: {e:?}", n + 1));
        assert_eq!(request.header("webhook-id"), "evt_async_signed");
        assert_eq!(request.header("x-webhook-event-time"), created.to_string());
        assert_eq!(request.header("x-webhook-attempt"), (n + 1).to_string());
        assert_eq!(request.header_all("webhook-signature").len(), 1);
    }
    let stamp = |r: &Recorded| r.header("webhook-timestamp").parse::<i64>().unwrap();
    assert!(
        stamp(&got[1]) > stamp(&got[0]),
        "each attempt is signed when it is made"
    );
    assert!((stamp(&got[1]) - sign::now()).abs() <= 5);
}

/// The event ids of `requests`, in order.
pub fn event_ids(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_gateway_killed_mid_delivery_leaves_its_deliveries_to_the_fleet() {
    // The app is slow at first: the first gateway's attempts hang in flight.
    let upstream = Upstream::with_reply(Reply {
        delay: Duration::from_secs(20),
        ..Reply::default()
    })
    .await;
    let backend = Backend::redis().await;
    let routes = async_route(
        &upstream.url(),
        "concurrency = 4",
        "upstream_timeout_ms = 60000",
    );
    let mut first = backend.gateway(&routes, "").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(accepted(&event(&first, &format!("evt_fleet_{i}")).await));
    }
    let hung = event_ids(&wait_requests(&upstream, 4).await);
    assert_eq!(hung.len(), 4, "the first gateway attempts 4 at once");
    let Backend::Redis(redis) = &backend else {
        unreachable!()
    };
    // It reads as many again ahead, and no more: 2 stay for the fleet.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending = redis.cli(&["XPENDING", "hookgate:spool:q:hook", "hookgate"]);
        let held: usize = pending.lines().next().unwrap().parse().unwrap();
        if held >= 8 {
            assert_eq!(held, 8, "{pending}");
            break;
        }
        assert!(Instant::now() < deadline, "{pending}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    upstream.set_reply(Reply::default());
    let second = backend.gateway(&routes, "").await;
    // Either gateway lists the fleet's deliveries, those the other is
    // attempting included.
    let listed = admin(&second, "GET", "/deliveries?route=hook").await.json();
    let listed: HashSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["event_id"].as_str())
        .collect();
    assert!(
        hung.iter().all(|id| listed.contains(id.as_str())),
        "{listed:?}"
    );
    first.kill9();
    // The second delivers the rest at once, and takes the dead gateway's
    // eight (four attempted, four read ahead) over once they have been
    // silent for `claim_after_secs`.
    wait_admin(&second, "/deliveries", |l| l == &json!([])).await;
    let got = event_ids(&upstream.requests());
    for i in 0..10 {
        let id = format!("evt_fleet_{i}");
        let copies = got.iter().filter(|g| **g == id).count();
        let want = if hung.contains(&id) { 2 } else { 1 };
        assert_eq!(copies, want, "{id} in {got:?}");
    }
    assert_eq!(redis.cli(&["XLEN", "hookgate:spool:q:hook"]), "0");
    assert_eq!(redis.cli(&["GET", "hookgate:spool:bytes"]), "0");
    assert_eq!(redis.cli(&["KEYS", "hookgate:spool:d:*"]), "");
    // The dead gateway's consumer leaves the group once it holds nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = redis.cli(&["XINFO", "CONSUMERS", "hookgate:spool:q:hook", "hookgate"]);
        if info.lines().filter(|l| *l == "name").count() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second
        .metrics_with(&[r#"hookgate_spool_pending{route="hook"} 0"#])
        .await;
}

#[tokio::test]
async fn redis_killed_mid_burst_keeps_every_acknowledged_delivery() {
    const BURST: usize = 300;
    let upstream = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    let mut backend = Backend::redis().await;
    let routes = async_route(
        &upstream.url(),
        "min_backoff_ms = 50\nmax_backoff_ms = 200",
        "",
    );
    let gw = backend.gateway(&routes, "").await;
    let mut acked = Vec::new();
    for i in 0..BURST {
        if i == BURST / 3 {
            // kill -9: whatever was acknowledged is in the append-only file.
            let Backend::Redis(redis) = &mut backend else {
                unreachable!()
            };
            redis.stop();
        }
        let id = format!("evt_aof_{i}");
        let a = event(&gw, &id).await;
        match a.status {
            202 => acked.push(id),
            503 => a.assert_error(503, "state_unavailable"),
            other => panic!("{id}: {other} {}", a.text()),
        }
    }
    assert_eq!(
        acked.len(),
        BURST / 3,
        "nothing is acknowledged while Redis is down"
    );
    let Backend::Redis(redis) = &mut backend else {
        unreachable!()
    };
    redis.resume().await;
    upstream.set_reply(Reply::default());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: HashSet<String> = event_ids(&upstream.requests()).into_iter().collect();
        let missing: Vec<&String> = acked.iter().filter(|id| !seen.contains(*id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged deliveries never arrived, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_admin(&gw, "/deliveries", |l| l == &json!([])).await;
}

#[tokio::test]
async fn fifo_holds_across_a_fleet() {
    let upstream = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    let backend = Backend::redis().await;
    let retry = "min_backoff_ms = 10\nmax_backoff_ms = 40\nordering = \"fifo\"";
    let routes = async_route(&upstream.url(), retry, "");
    let (one, two) = (
        backend.gateway(&routes, "").await,
        backend.gateway(&routes, "").await,
    );
    accepted(&event(&one, "evt_a").await);
    // Both gateways are reading by now: whichever does not hold the route's
    // lease must leave the rest alone while the oldest fails.
    wait_requests(&upstream, 5).await;
    for (gw, id) in [(&two, "evt_b"), (&one, "evt_c"), (&two, "evt_d")] {
        accepted(&event(gw, id).await);
    }
    wait_requests(&upstream, 8).await;
    upstream.set_reply(Reply::default());
    wait_admin(&one, "/deliveries", |l| l == &json!([])).await;
    let ids = event_ids(&upstream.requests());
    let first_b = ids.iter().position(|id| id == "evt_b").unwrap();
    assert!(
        first_b >= 8,
        "evt_b was attempted before evt_a succeeded: {ids:?}"
    );
    assert!(ids[..first_b].iter().all(|id| id == "evt_a"), "{ids:?}");
    assert_eq!(&ids[first_b..], ["evt_b", "evt_c", "evt_d"], "{ids:?}");
}
