//! The gateway's own log as an operator reads it: a healthy start reads as
//! one (no service "exited" while it serves), and every async delivery
//! attempt is one JSON line.

use std::time::Duration;

use crate::support::client::post;
use crate::support::gateway::{Gateway, free_port};
use crate::support::sign;
use crate::support::upstream::{Reply, Upstream};

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

/// The attempt lines of the log, parsed: the JSON after `hookgate::attempt] `.
fn attempt_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| l.split_once("hookgate::attempt] "))
        .map(|(_, json)| serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}")))
        .collect()
}

/// Waits until the log has `n` attempt lines; those lines.
async fn wait_attempts(gw: &Gateway, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let lines = attempt_lines(&gw.log());
        if lines.len() >= n {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} attempt line(s):\n{}",
            lines.len(),
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every async delivery attempt, failed or delivered, is one JSON line in the
/// log with the route, the delivery's id (as in its 202), the attempt's
/// number, its outcome, the upstream's status or what went wrong, and how
/// long the upstream took; pingora's raw error text is no longer logged.
#[tokio::test]
async fn every_delivery_attempt_is_one_json_line() {
    let upstream = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    let down = format!("http://127.0.0.1:{}", free_port());
    let route = |name: &str, upstream: &str, retry: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/{name}\"\nupstream = \"{upstream}\"\n\
             delivery = \"async\"\nverify = {{ scheme = \"aryeo\", secrets = [\"s\"] }}\n\
             [routes.retry]\n{retry}\n"
        )
    };
    let routes = [
        route(
            "flaky",
            &upstream.url(),
            "min_backoff_ms = 20\nmax_backoff_ms = 40",
        ),
        route("down", &down, "max_attempts = 1"),
    ]
    .concat();
    let gw = Gateway::with_admin(&routes, "").await;
    let deliver = |path: &'static str| {
        let (name, value) = sign::aryeo("s", br#"{"n":1}"#);
        let addr = gw.addr;
        async move {
            let answer = post(addr, path, &[(name, value.as_str())], r#"{"n":1}"#).await;
            assert_eq!(answer.status, 202, "{}", answer.text());
            answer.json()["id"].as_str().unwrap().to_owned()
        }
    };
    let flaky = deliver("/flaky").await;
    wait_attempts(&gw, 2).await;
    upstream.set_reply(Reply::default());
    let down_id = deliver("/down").await;
    let delivered = |l: &serde_json::Value| l["outcome"] == "delivered";
    while !wait_attempts(&gw, 3).await.iter().any(delivered) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = wait_attempts(&gw, 1 + upstream.requests().len()).await;

    let of =
        |id: &str| -> Vec<&serde_json::Value> { lines.iter().filter(|l| l["id"] == id).collect() };
    let tried = of(&flaky);
    assert_eq!(tried.len(), upstream.requests().len(), "{lines:?}");
    for (n, line) in tried.iter().enumerate() {
        let last = n + 1 == tried.len();
        assert_eq!(line["route"], "flaky");
        assert_eq!(line["attempt"], n + 1);
        assert_eq!(line["outcome"], if last { "delivered" } else { "retry" });
        assert_eq!(line["status"], if last { 200 } else { 503 });
        assert!(line.get("error").is_none(), "{line}");
        assert!(
            line["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{line}"
        );
        assert!(
            line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
    }
    let down_lines = of(&down_id);
    assert_eq!(down_lines.len(), 1, "{lines:?}");
    let refused = down_lines[0];
    assert_eq!(
        (&refused["route"], &refused["attempt"], &refused["outcome"]),
        (&"down".into(), &1.into(), &"dead".into())
    );
    assert_eq!(refused["reason"], "max_attempts");
    assert_eq!(refused["error"], "refused");
    assert!(refused.get("status").is_none(), "{refused}");
    let log = gw.log();
    assert!(
        !log.contains("attempt 1:"),
        "pingora's raw error is logged:\n{log}"
    );
}
