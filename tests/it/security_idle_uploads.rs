//! Idle uploads: clients that declare a body and trickle it cannot hold the
//! front door. One client address holds at most its share of
//! `max_inflight_body_bytes`, so others' deliveries still get in; and after a
//! grace, a body slower than `min_body_bytes_per_sec` is cut with 408
//! `body_timeout`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::front_door::{SECRET, counter, gateway};
use crate::support::client::{Raw, RawResponse, post_from, send};
use crate::support::sign;

/// The provider whose deliveries must get in.
const PROVIDER: &str = "127.0.0.1";
/// The client holding uploads open.
const ATTACKER: &str = "127.0.0.2";

/// The head of a signed `POST /hook` of `body`, without the body.
fn head(body: &[u8]) -> String {
    let (h, v) = sign::aryeo(SECRET, body);
    format!(
        "POST /hook HTTP/1.1\r\nHost: gw\r\n{h}: {v}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
}

/// Sends `body` on `raw` in pieces of `piece` bytes, one every `every`, until
/// it is sent or an answer comes; the answer, if one came within `wait`.
async fn trickle(
    raw: &mut Raw,
    body: &[u8],
    piece: usize,
    every: Duration,
    wait: Duration,
) -> Option<RawResponse> {
    let deadline = Instant::now() + wait;
    let mut pieces = body.chunks(piece);
    while Instant::now() < deadline {
        match pieces.next() {
            Some(piece) => {
                if !raw.send(piece).await {
                    break;
                }
            }
            None => return raw.read_final(wait).await,
        }
        if let Some(answer) = raw.read_final(every).await {
            return Some(answer);
        }
    }
    raw.read_final(Duration::from_secs(1)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_minimum_rate_is_cut_after_the_grace() {
    // The whole-body deadline is far: only the rate can cut the body in time.
    let (upstream, gw) = gateway("read_timeout_ms = 60000").await;
    let body = vec![b'x'; 4000];
    let mut raw = Raw::connect(gw.addr).await;
    let started = Instant::now();
    assert!(raw.send(head(&body).as_bytes()).await);
    // 5 bytes every 200 ms: 25 bytes a second, under the default 1024.
    let answer = trickle(
        &mut raw,
        &body,
        5,
        Duration::from_millis(200),
        Duration::from_secs(15),
    )
    .await
    .expect("the slow body is answered");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "cut within the grace"
    );
    assert_eq!(answer.status, 408);
    assert_eq!(answer.json()["error"], "body_timeout");
    assert!(raw.closed_within(Duration::from_secs(5)).await);
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_above_the_minimum_rate_is_delivered() {
    let (upstream, gw) = gateway("min_body_bytes_per_sec = 100").await;
    let body = vec![b'y'; 750];
    let mut raw = Raw::connect(gw.addr).await;
    assert!(raw.send(head(&body).as_bytes()).await);
    // 50 bytes every 200 ms: 250 bytes a second for 3 s.
    let answer = trickle(
        &mut raw,
        &body,
        50,
        Duration::from_millis(200),
        Duration::from_secs(15),
    )
    .await
    .expect("an answer");
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(upstream.only_request().body, body);
    let view = send(gw.admin(), "GET", "/config", &[], "").await.json();
    assert_eq!(view["server"]["min_body_bytes_per_sec"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_uploads_from_one_address_cannot_lock_out_another() {
    // A budget of 100 000 bytes: a share of 12 500 per client address. The
    // attacker's uploads are never cut by their rate nor, in the test's time,
    // by the read timeout.
    let (upstream, gw) = gateway(
        "max_inflight_body_bytes = 100000\nmin_body_bytes_per_sec = 0\nread_timeout_ms = 60000",
    )
    .await;
    let attacker: IpAddr = ATTACKER.parse().unwrap();
    let declared = vec![b'x'; 10_000];
    let mut uploads = Vec::new();
    for _ in 0..12 {
        let mut raw = Raw::connect_from(attacker, gw.addr).await;
        assert!(raw.send(head(&declared).as_bytes()).await);
        assert!(raw.send(b"x").await);
        uploads.push(raw);
    }
    // Wait until the gateway has dealt with each upload: admitted (its
    // 10 000 bytes held) or refused (503 read).
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut waiting = Vec::new();
        for mut raw in uploads {
            match raw.read_final(Duration::from_millis(20)).await {
                Some(answer) => {
                    assert_eq!(answer.status, 503, "{}", answer.head);
                    assert_eq!(answer.json()["error"], "overloaded");
                    refused += 1;
                }
                None => waiting.push(raw),
            }
        }
        uploads = waiting;
        let held = counter(&gw.metrics().await, "hookgate_inflight_body_bytes");
        if held / 10_000 + refused == 12 {
            break;
        }
        assert!(Instant::now() < deadline, "held {held}, refused {refused}");
    }
    assert_eq!(
        (uploads.len(), refused),
        (1, 11),
        "one upload fits the share"
    );

    // The provider still gets in: a body of exactly its share is delivered,
    // one byte more is refused for this client only.
    let provider: IpAddr = PROVIDER.parse().unwrap();
    let deliver = |size: usize| {
        let body = vec![b'p'; size];
        let (h, v) = sign::aryeo(SECRET, &body);
        async move { post_from(provider, gw.addr, "/hook", &[(h, &v)], body).await }
    };
    deliver(12_501).await.assert_error(503, "overloaded");
    assert_eq!(deliver(12_500).await.status, 200);
    assert_eq!(upstream.only_request().body.len(), 12_500);
    // What the attacker holds is given back when its upload ends.
    drop(uploads);
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&gw.metrics().await, "hookgate_inflight_body_bytes") != 0 {
        assert!(Instant::now() < deadline, "body bytes stay reserved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let view = send(gw.admin(), "GET", "/config", &[], "").await.json();
    assert_eq!(view["server"]["max_inflight_body_bytes_per_client"], 12_500);
}
