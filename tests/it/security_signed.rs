//! Only signed bytes decide: a captured delivery replayed with new unsigned
//! headers (Rye's `x-rye-event-id`, GitHub's `X-GitHub-Delivery`) is still a
//! duplicate, can never make a later genuine event one, and never reaches the
//! app as `webhook-id` or `x-webhook-event-type`.

use crate::support::client::{Answer, post};
use crate::support::gateway::Gateway;
use crate::support::sign;
use crate::support::upstream::{Recorded, Upstream};

/// The shipped config's Rye route: `rye` or `rye-v1`, deduplicated for a day.
fn rye_route(upstream: &Upstream) -> String {
    format!(
        "[[routes]]\nname = \"rye\"\npath = \"/webhooks/rye\"\nupstream = \"{}\"\n\
         [routes.dedup]\nttl_secs = 86400\n\
         [[routes.verify]]\nscheme = \"rye\"\nsecrets = [\"k\"]\n\
         [[routes.verify]]\nscheme = \"rye-v1\"\nsecrets = [\"k\"]\n",
        upstream.url()
    )
}

/// POSTs `body` signed by Rye with `k`, with `extra` headers beside the signature.
async fn rye(gw: &Gateway, body: &[u8], extra: &[(&str, &str)]) -> Answer {
    let (h, v) = sign::rye("k", body);
    let mut headers = vec![(h, v.as_str())];
    headers.extend_from_slice(extra);
    post(gw.addr, "/webhooks/rye", &headers, body.to_vec()).await
}

fn is_duplicate(a: &Answer) -> bool {
    let duplicate = serde_json::json!({"status": "duplicate"});
    a.status == 200 && serde_json::from_slice(&a.body).ok() == Some(duplicate)
}

fn forwarded(a: &Answer) -> bool {
    a.status == 200 && a.text() == "upstream ok"
}

/// The values of the gateway's event headers in what the app received.
fn event_headers(r: &Recorded) -> [Vec<&str>; 4] {
    [
        "webhook-id",
        "x-webhook-unsigned-id",
        "x-webhook-event-type",
        "x-webhook-unsigned-event-type",
    ]
    .map(|name| r.header_all(name))
}

#[tokio::test]
async fn a_replay_under_new_rye_headers_is_a_duplicate_and_cannot_poison_a_later_event() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&rye_route(&upstream)).await;
    // The genuine delivery, as Rye sends it.
    let captured = sign::rye_event("evt_1", "order.created", sign::now());
    let genuine = [
        ("x-rye-event-id", "evt_1"),
        ("x-rye-topic", "order.created"),
    ];
    assert!(forwarded(&rye(&gw, &captured, &genuine).await));
    // The app sees the signed body's id and type, and the headers apart.
    assert_eq!(
        event_headers(&upstream.only_request()),
        [
            vec!["evt_1"],
            vec!["evt_1"],
            vec!["order.created"],
            vec!["order.created"]
        ]
    );

    // Replayed with fresh unsigned ids and a relabelled topic: each one is the
    // same signed event, so a duplicate, and none reaches the app.
    for n in 1..=3 {
        let id = format!("replay-{n}");
        let forged = [
            ("x-rye-event-id", id.as_str()),
            ("x-rye-topic", "refund.issued"),
        ];
        let answer = rye(&gw, &captured, &forged).await;
        assert!(
            is_duplicate(&answer),
            "replay-{n}: {} {}",
            answer.status,
            answer.text()
        );
    }
    assert_eq!(upstream.requests().len(), 1, "the app saw the event once");

    // A replay naming a future event's id is a duplicate of the captured one…
    let poison = [
        ("x-rye-event-id", "evt_FUTURE"),
        ("x-rye-topic", "refund.issued"),
    ];
    assert!(is_duplicate(&rye(&gw, &captured, &poison).await));
    // …and does not make the genuine `evt_FUTURE` one: it is delivered, once.
    let future = sign::rye_event("evt_FUTURE", "order.paid", sign::now());
    let answer = rye(&gw, &future, &[("x-rye-event-id", "evt_FUTURE")]).await;
    assert!(forwarded(&answer), "{} {}", answer.status, answer.text());
    assert!(is_duplicate(&rye(&gw, &future, &[]).await));
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].body, future);
    assert_eq!(
        event_headers(&requests[1]),
        [
            vec!["evt_FUTURE"],
            vec!["evt_FUTURE"],
            vec!["order.paid"],
            vec![]
        ]
    );
    // No request the app received names a forged id or type as signed.
    for r in &requests {
        let id = r.header("webhook-id");
        assert!(!id.starts_with("replay-"), "{id}");
        assert_ne!(r.header("x-webhook-event-type"), "refund.issued");
    }
}

#[tokio::test]
async fn a_forged_rye_topic_only_travels_as_the_unsigned_type() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&rye_route(&upstream)).await;
    let body = sign::rye_event("evt_topic", "order.created", sign::now());
    // A client's own copies of the gateway's headers are dropped as well.
    let headers = [
        ("x-rye-topic", "refund.issued"),
        ("x-webhook-event-type", "refund.issued"),
        ("x-webhook-unsigned-id", "forged"),
        ("x-webhook-unsigned-event-type", "forged"),
    ];
    assert!(forwarded(&rye(&gw, &body, &headers).await));
    let r = upstream.only_request();
    assert_eq!(
        event_headers(&r),
        [
            vec!["evt_topic"],
            vec![],
            vec!["order.created"],
            vec!["refund.issued"]
        ]
    );
}

/// A GitHub route on `/gh`, deduplicated.
fn github_route(upstream: &Upstream) -> String {
    format!(
        "[[routes]]\nname = \"gh\"\npath = \"/gh\"\nupstream = \"{}\"\n\
         [routes.dedup]\nttl_secs = 86400\n\
         [routes.verify]\nscheme = \"github\"\nsecrets = [\"k\"]\n",
        upstream.url()
    )
}

async fn github(gw: &Gateway, body: &[u8], extra: &[(&str, &str)]) -> Answer {
    let signature = format!("sha256={}", hex::encode(sign::hmac_sha256("k", body)));
    let mut headers = vec![("X-Hub-Signature-256", signature.as_str())];
    headers.extend_from_slice(extra);
    post(gw.addr, "/gh", &headers, body.to_vec()).await
}

#[tokio::test]
async fn a_github_delivery_replayed_with_a_new_guid_or_none_is_a_duplicate() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&github_route(&upstream)).await;
    let captured = br#"{"action":"opened","number":7}"#;
    let guid = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let genuine = [
        ("X-GitHub-Delivery", guid),
        ("X-GitHub-Event", "pull_request"),
    ];
    assert!(forwarded(&github(&gw, captured, &genuine).await));
    let r = upstream.only_request();
    // The delivery GUID and event name are headers the signature does not
    // cover: never `webhook-id` or the event type, only passed on as unsigned.
    assert_eq!(
        event_headers(&r),
        [vec![], vec![guid], vec![], vec!["pull_request"]]
    );

    let fresh = [
        ("X-GitHub-Delivery", "00000000-0000-0000-0000-000000000001"),
        ("X-GitHub-Event", "push"),
    ];
    assert!(is_duplicate(&github(&gw, captured, &fresh).await));
    assert!(is_duplicate(&github(&gw, captured, &[]).await));
    assert_eq!(
        upstream.requests().len(),
        1,
        "the app saw the delivery once"
    );

    // Another signed body is another event, whatever its headers say.
    let other = br#"{"action":"closed","number":7}"#;
    assert!(forwarded(&github(&gw, other, &genuine).await));
    assert_eq!(upstream.requests().len(), 2);
}

/// A route on `/p` verifying preset `scheme` with secret `k`, deduplicated.
fn dedup_route(upstream: &Upstream, scheme: &str) -> String {
    format!(
        "[[routes]]\nname = \"p\"\npath = \"/p\"\nupstream = \"{}\"\n\
         [routes.dedup]\nttl_secs = 86400\n\
         [routes.verify]\nscheme = \"{scheme}\"\nsecrets = [\"k\"]\n",
        upstream.url()
    )
}

#[tokio::test]
async fn distinct_events_sharing_a_field_that_names_no_event_are_all_delivered() {
    use base64::Engine as _;
    // Attio: `webhook_id` names the webhook, the same in every delivery.
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&dedup_route(&upstream, "attio")).await;
    for kind in ["record.created", "record.updated"] {
        let body = format!(
            r#"{{"webhook_id":"23e42eaf","events":[{{"event_type":"{kind}","id":{{"record_id":"r1"}}}}]}}"#
        );
        let mac = hex::encode(sign::hmac_sha256("k", body.as_bytes()));
        let answer = post(gw.addr, "/p", &[("Attio-Signature", &mac)], body).await;
        assert!(
            forwarded(&answer),
            "{kind}: {} {}",
            answer.status,
            answer.text()
        );
    }
    assert_eq!(upstream.requests().len(), 2);

    // Acuity: `id` is the appointment's, the same when it is rescheduled.
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&dedup_route(&upstream, "acuity")).await;
    for action in ["scheduled", "rescheduled", "canceled"] {
        let body = format!("action={action}&id=42&calendarID=1&appointmentTypeID=2");
        let mac = base64::engine::general_purpose::STANDARD
            .encode(sign::hmac_sha256("k", body.as_bytes()));
        let headers = [
            ("X-Acuity-Signature", mac.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        let answer = post(gw.addr, "/p", &headers, body.clone()).await;
        assert!(
            forwarded(&answer),
            "{action}: {} {}",
            answer.status,
            answer.text()
        );
        // The provider's retry of the same callback is still one event.
        assert!(is_duplicate(&post(gw.addr, "/p", &headers, body).await));
    }
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn an_async_delivery_without_a_signed_id_carries_its_delivery_id_at_every_attempt() {
    use crate::support::upstream::Reply;
    use std::time::{Duration, Instant};
    let upstream = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    let routes = format!(
        "[[routes]]\nname = \"gh\"\npath = \"/gh\"\nupstream = \"{}\"\ndelivery = \"async\"\n\
         [routes.retry]\nmin_backoff_ms = 20\nmax_backoff_ms = 50\n\
         [routes.verify]\nscheme = \"github\"\nsecrets = [\"k\"]\n",
        upstream.url()
    );
    let gw = Gateway::start(&routes).await;
    let guid = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let answer = github(&gw, br#"{"zen":"async"}"#, &[("X-GitHub-Delivery", guid)]).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    let delivery = answer.json()["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while upstream.requests().is_empty() {
        assert!(Instant::now() < deadline, "no attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    upstream.set_reply(Reply::default());
    while upstream
        .requests()
        .last()
        .unwrap()
        .header("x-webhook-attempt")
        == "1"
    {
        assert!(Instant::now() < deadline, "no second attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The GUID is not signed: the delivery's id stands for the event's, the
    // same at each attempt, and the GUID goes as the unsigned id.
    for r in upstream.requests() {
        assert_eq!(r.header("webhook-id"), delivery);
        assert_eq!(r.header("x-webhook-unsigned-id"), guid);
    }
}
