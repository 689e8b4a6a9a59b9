//! A dual-stack listener (`[::]:PORT`) sees IPv4 clients as `::ffff:a.b.c.d`.
//! Each is judged as its IPv4 address: its own rate-limit bucket, `allow_ips`
//! and `trusted_proxies` written in IPv4, the access log and the upstream's
//! `x-forwarded-for` in IPv4. The clients are loopback addresses (127.0.0.1,
//! 127.0.0.2) bound as the connection's source.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::delivery::route_with;
use crate::support::client::{Answer, post_from};
use crate::support::gateway::Gateway;
use crate::support::sign;
use crate::support::upstream::Upstream;

const PROVIDER: &str = "127.0.0.1";
const OTHER: &str = "127.0.0.2";

/// Delivers a new signed Rye event to `/hook` from `source`, with `headers`.
async fn deliver_from(gw: &Gateway, source: &str, id: &str, headers: &[(&str, &str)]) -> Answer {
    let body = sign::rye_event(id, "order.created", sign::now());
    let (h, v) = sign::rye("k", &body);
    let mut all = vec![(h, v.as_str())];
    all.extend_from_slice(headers);
    let source: IpAddr = source.parse().unwrap();
    post_from(source, gw.addr, "/hook", &all, body).await
}

/// The access log's lines so far (the gateway logs to stdout), waiting until
/// there are `count`.
async fn access_log(gw: &Gateway, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<serde_json::Value> = gw
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(Instant::now() < deadline, "access log: {lines:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ipv4_client_has_its_own_rate_limit_and_is_logged_and_forwarded_as_ipv4() {
    let upstream = Upstream::start().await;
    let limit = "[routes.rate_limit]\nper_second = 0.1\nburst = 1\nby = \"client_ip\"";
    let gw = Gateway::dual_stack(&route_with(&upstream, "rye", limit), "").await;
    assert_eq!(deliver_from(&gw, PROVIDER, "a", &[]).await.status, 200);
    deliver_from(&gw, PROVIDER, "b", &[])
        .await
        .assert_error(429, "rate_limited");
    // Another client is not held back by the first one's bucket.
    assert_eq!(deliver_from(&gw, OTHER, "c", &[]).await.status, 200);

    let forwarded: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.header("x-forwarded-for").to_owned())
        .collect();
    assert_eq!(forwarded, [PROVIDER, OTHER]);
    let lines = access_log(&gw, 3).await;
    let mut clients: Vec<&str> = lines
        .iter()
        .map(|l| l["client"].as_str().unwrap())
        .collect();
    clients.sort_unstable();
    assert!(
        clients[..2].iter().all(|c| c.starts_with("127.0.0.1:"))
            && clients[2].starts_with("127.0.0.2:"),
        "{clients:?}"
    );
    assert!(
        lines.iter().all(|l| l["forwarded_for"].is_null()),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_ips_matches_ipv4_clients_by_their_ipv4_address() {
    let upstream = Upstream::start().await;
    let routes = route_with(&upstream, "rye", "allow_ips = [\"127.0.0.1/32\"]");
    let gw = Gateway::dual_stack(&routes, "").await;
    assert_eq!(deliver_from(&gw, PROVIDER, "a", &[]).await.status, 200);
    deliver_from(&gw, OTHER, "b", &[])
        .await
        .assert_error(403, "ip_not_allowed");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_reaching_a_dual_stack_listener_over_ipv4_names_the_client() {
    let upstream = Upstream::start().await;
    let routes = route_with(&upstream, "rye", "allow_ips = [\"192.0.2.0/24\"]");
    let gw = Gateway::dual_stack(&routes, "trusted_proxies = [\"127.0.0.1\"]").await;
    let named = [("x-forwarded-for", "6.6.6.6, 192.0.2.7")];
    assert_eq!(deliver_from(&gw, PROVIDER, "a", &named).await.status, 200);
    // A hop written IPv4-mapped is the IPv4 client too.
    let mapped = [("x-forwarded-for", "::ffff:192.0.2.8")];
    assert_eq!(deliver_from(&gw, PROVIDER, "b", &mapped).await.status, 200);
    // From an untrusted peer the header is the client's own word.
    deliver_from(&gw, OTHER, "c", &named)
        .await
        .assert_error(403, "ip_not_allowed");
    let forwarded: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.header("x-forwarded-for").to_owned())
        .collect();
    assert_eq!(forwarded, ["192.0.2.7, 127.0.0.1", "192.0.2.8, 127.0.0.1"]);
    let lines = access_log(&gw, 3).await;
    let mut named_in_log: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["forwarded_for"].as_str())
        .collect();
    named_in_log.sort_unstable();
    assert_eq!(named_in_log, ["192.0.2.7", "192.0.2.8"]);
}
