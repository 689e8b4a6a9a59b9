//! Idle uploads: clients that declare a body and trickle it cannot hold the
//! front door. After a grace, a body slower than `min_body_bytes_per_sec` is
//! cut with 408 `body_timeout`.

use std::time::{Duration, Instant};

use crate::front_door::{SECRET, gateway};
use crate::support::client::{Raw, RawResponse, send};
use crate::support::sign;

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
