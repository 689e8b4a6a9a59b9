//! Headers through which a proxy tells an app who the client is or which URL
//! it asked for (`Forwarded`, `X-Real-IP`, `X-Original-URL`, …) never reach
//! the app as a client wrote them: not on a forwarded request, not on an
//! async delivery. The raw upstream records every byte the app would read.

use std::time::{Duration, Instant};

use crate::support::client::Raw;
use crate::support::gateway::Gateway;
use crate::support::raw_upstream::{Forwarded, RawUpstream};
use crate::support::sign;

const SECRET: &str = "claims-secret";
const BODY: &[u8] = br#"{"event":"claimed"}"#;
/// The value of every forged header; it must never reach the upstream.
const FORGED: &str = "203.0.113.66";

/// Every header a client may forge to claim an address, scheme, host, port,
/// path or URL, in its usual spelling and with `_` for `-`.
const CLAIMS: [&str; 24] = [
    "Forwarded",
    "X-Real-IP",
    "True-Client-IP",
    "X-Original-URL",
    "X-Forwarded-Prefix",
    "X-Client-IP",
    "Client-IP",
    "X-Cluster-Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Original-Forwarded-For",
    "X-Forwarded",
    "Forwarded-For",
    "X-Rewrite-URL",
    "X-Original-URI",
    "X-Original-Host",
    "X-Host",
    "X-Forwarded-Port",
    "X-Forwarded-Server",
    "X-Forwarded-Scheme",
    "X-Forwarded-Ssl",
    "X-Forwarded-Uri",
    "Front-End-Https",
    "X-Url-Scheme",
];

/// A signed POST to `/hook` carrying every claim in both spellings.
fn claiming() -> Vec<u8> {
    let (h, v) = sign::aryeo(SECRET, BODY);
    let mut head = format!("POST /hook HTTP/1.1\r\nHost: gw\r\n{h}: {v}\r\n");
    for name in CLAIMS {
        head.push_str(&format!("{name}: {FORGED}\r\n"));
        head.push_str(&format!("{}: {FORGED}\r\n", name.replace('-', "_")));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", BODY.len()));
    [head.as_bytes(), BODY].concat()
}

/// A route `hook` on `/hook` to `upstream`, verifying aryeo, with `extra` lines.
fn route(upstream: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nname = \"hook\"\npath = \"/hook\"\nupstream = \"{upstream}/in\"\n{extra}\n\
         verify = {{ scheme = \"aryeo\", secrets = [\"{SECRET}\"] }}\n"
    )
}

/// Sends [`claiming`] and returns the status of the answer.
async fn send_claims(gw: &Gateway) -> u16 {
    let mut raw = Raw::connect(gw.addr).await;
    assert!(raw.send(&claiming()).await);
    raw.read_final(Duration::from_secs(5))
        .await
        .expect("an answer")
        .status
}

/// Asserts the upstream got the verified request with the gateway's own
/// client headers and none of the client's claims.
fn assert_no_claims(got: &Forwarded) {
    assert_eq!(got.rest, BODY);
    assert_eq!(got.header("x-webhook-verified"), "aryeo");
    assert_eq!(got.header("x-forwarded-for"), "127.0.0.1");
    assert_eq!(got.header("x-forwarded-proto"), "http");
    for (name, value) in &got.headers {
        let spelled = name.to_ascii_lowercase().replace('_', "-");
        assert!(
            !CLAIMS.iter().any(|c| c.eq_ignore_ascii_case(&spelled)),
            "{name} reached the upstream"
        );
        assert_ne!(
            value.as_slice(),
            FORGED.as_bytes(),
            "{name} carried the forgery"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_and_url_claims_are_not_forwarded() {
    let upstream = RawUpstream::ok().await;
    let gw = Gateway::start(&route(&upstream.url(), "")).await;
    assert_eq!(send_claims(&gw).await, 200);
    drop(gw);
    let connections = upstream.ended().await;
    assert_eq!(connections.len(), 1);
    assert_no_claims(&Forwarded::parse(&connections[0].bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_and_url_claims_are_not_stored_for_async_delivery() {
    let upstream = RawUpstream::ok().await;
    let routes = format!(
        "{}[spool]\n",
        route(&upstream.url(), "delivery = \"async\"")
    );
    let gw = Gateway::start(&routes).await;
    assert_eq!(send_claims(&gw).await, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.recorded().iter().all(|c| c.requests == 0) {
        assert!(Instant::now() < deadline, "the delivery never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = upstream
        .recorded()
        .into_iter()
        .find(|c| c.requests > 0)
        .unwrap();
    assert_no_claims(&Forwarded::parse(&delivered.bytes));
}
