//! The gateway's own log as an operator reads it: a healthy start reads as
//! one (no service "exited" while it serves).

use std::time::Duration;

use crate::support::client::post;
use crate::support::gateway::Gateway;
use crate::support::sign;
use crate::support::upstream::Upstream;

/// pingora logs `service '…' exited.` when a service's `start` returns; the
/// webhook listener and the deliverer used to return as soon as their
/// threads ran, so a healthy start logged both as exited. Now they return
/// when the shutdown begins, and a SIGTERM still exits 0.
#[tokio::test]
async fn a_serving_gateway_logs_no_service_as_exited() {
    let upstream = Upstream::start().await;
    let routes = crate::support::route(
        "a",
        "/a",
        &upstream.url(),
        &crate::support::scheme("aryeo", &["s"]),
    );
    let mut gw = Gateway::with_admin(&routes, "").await;
    let (name, value) = sign::aryeo("s", b"{}");
    let answer = post(gw.addr, "/a", &[(name, value.as_str())], "{}").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    gw.wait_log("serving 1 route(s)", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let serving = gw.log();
    assert!(!serving.contains("exited"), "{serving}");

    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)).await, Some(0));
    let stopped = gw.log();
    assert!(stopped.starts_with(&serving), "{stopped}");
    assert!(stopped.contains("SIGTERM"), "{stopped}");
}
