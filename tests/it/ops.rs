use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::client::{Answer, Raw, post, send};
use crate::support::gateway::{Gateway, free_port};
use crate::support::sign;
use crate::support::upstream::{Reply, Upstream};
use crate::support::{route, scheme};

const LITERAL: &str = "literal-secret-4f1c";
const FROM_FILE: &str = "file-secret-9a7e";

async fn admin(gw: &Gateway, method: &str, path: &str) -> Answer {
    send(gw.admin(), method, path, &[], "").await
}

/// A gateway (with an admin listener) with a route `r` on `/hook` verifying
/// `rye` with a file secret (index 0, in the returned directory) and a literal
/// one (index 1).
async fn secret_gateway(upstream: &Upstream, server_extra: &str) -> (Gateway, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("rye.secret");
    std::fs::write(&file, format!("{FROM_FILE}\n")).unwrap();
    let verify = format!(
        "scheme = \"rye\"\nsecrets = [\"file:{}\", \"{LITERAL}\"]\n",
        file.display()
    );
    let routes = route("r", "/hook", &upstream.url(), &verify);
    (Gateway::with_admin(&routes, server_extra).await, secrets)
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [LITERAL, FROM_FILE] {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_health_config_and_metrics_without_secrets() {
    let upstream = Upstream::start().await;
    let (gw, secrets) = secret_gateway(&upstream, "").await;

    let health = admin(&gw, "GET", "/healthz").await;
    assert_eq!(
        (health.status, health.json()),
        (200, serde_json::json!({"status": "ok"}))
    );
    let ready = admin(&gw, "GET", "/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(
        ready.json(),
        serde_json::json!({"status": "ready", "generation": 1})
    );

    let config = admin(&gw, "GET", "/config").await;
    assert_eq!(config.status, 200);
    assert_eq!(config.header("content-type"), "application/json");
    assert_no_secret("/config", &config.text());
    let view = config.json();
    assert_eq!(view["generation"], 1);
    assert_eq!(view["source"], gw.config_path.display().to_string());
    let loaded_at = time::OffsetDateTime::parse(
        view["loaded_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        (time::OffsetDateTime::now_utc() - loaded_at)
            .whole_seconds()
            .abs()
            < 60
    );
    let route = &view["routes"][0];
    assert_eq!(route["name"], "r");
    assert_eq!(route["path"], "/hook");
    assert_eq!(route["upstream"], upstream.url());
    assert_eq!(route["verify"][0]["scheme"], "rye");
    let file_ref = format!("file:{}", secrets.path().join("rye.secret").display());
    assert_eq!(
        route["verify"][0]["secrets"],
        serde_json::json!([file_ref, "[redacted]"])
    );

    let body = sign::rye_event("evt_ops_1", "order.placed", sign::now());
    let (h, v) = sign::rye(LITERAL, &body);
    assert_eq!(
        post(gw.addr, "/hook", &[(h, &v)], body.clone())
            .await
            .status,
        200
    );
    let (h, forged) = sign::rye("wrong", &body);
    post(gw.addr, "/hook", &[(h, &forged)], body.clone())
        .await
        .assert_error(401, "invalid_signature");
    post(gw.addr, "/hook", &[], body.clone())
        .await
        .assert_error(401, "missing_signature");
    send(gw.addr, "GET", "/hook", &[], "")
        .await
        .assert_error(405, "method_not_allowed");
    post(gw.addr, "/elsewhere", &[], "x")
        .await
        .assert_error(404, "no_route");

    let text = gw
        .metrics_with(&[
            r#"hookgate_requests_total{outcome="forwarded",route="r"} 1"#,
            r#"hookgate_requests_total{outcome="invalid_signature",route="r"} 1"#,
            r#"hookgate_requests_total{outcome="missing_signature",route="r"} 1"#,
            r#"hookgate_requests_total{outcome="method_not_allowed",route=""} 1"#,
            r#"hookgate_requests_total{outcome="no_route",route=""} 1"#,
            r#"hookgate_verification_failures_total{reason="signature_mismatch",route="r"} 1"#,
            r#"hookgate_verification_failures_total{reason="signature_missing",route="r"} 1"#,
            r#"hookgate_secret_matches_total{route="r",scheme="rye",secret_index="1"} 1"#,
            r#"hookgate_request_duration_seconds_count{route="r"} 3"#,
            r#"hookgate_upstream_duration_seconds_count{route="r"} 1"#,
            r#"hookgate_upstream_responses_total{route="r",status_class="2xx"} 1"#,
            "hookgate_requests_in_flight 0",
            &format!(
                r#"hookgate_request_body_bytes_total{{route="r"}} {}"#,
                3 * body.len()
            ),
            "hookgate_config_generation 1",
        ])
        .await;
    assert!(text.contains("# TYPE hookgate_request_duration_seconds histogram"));
    assert!(
        !text.contains("secret_index=\"0\""),
        "index 0 never matched"
    );
    assert_no_secret("/metrics", &text);

    admin(&gw, "GET", "/nothing")
        .await
        .assert_error(404, "not_found");
    admin(&gw, "GET", "/reload")
        .await
        .assert_error(405, "method_not_allowed");
    assert_no_secret("the log", &gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_outcome_and_upstream_error() {
    let upstream = Upstream::start().await;
    let slow = Upstream::with_reply(Reply {
        delay: Duration::from_secs(3),
        ..Reply::default()
    })
    .await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let verify = scheme("rye", &["k"]);
    let timed = "tolerance_secs = 300\n";
    let routes = [
        route("ok", "/ok", &upstream.url(), &format!("{verify}{timed}")),
        route("down", "/down", &closed, &verify),
        route("slow", "/slow", &slow.url(), &verify).replace(
            "[routes.verify]",
            "upstream_timeout_ms = 300\n\n[routes.verify]",
        ),
        route("small", "/small", &upstream.url(), &verify).replace(
            "[routes.verify]",
            "max_body_bytes = 8\nread_timeout_ms = 300\n\n[routes.verify]",
        ),
        route(
            "meta",
            "/meta",
            &upstream.url(),
            &scheme("meta", &["app-secret"]),
        )
        .replace(
            "[routes.verify]",
            "verify_token = \"vt\"\n\n[routes.verify]",
        ),
    ]
    .concat();
    let gw = Gateway::with_admin(&routes, "").await;
    let signed = |body: &[u8]| sign::rye("k", body);

    let challenge = String::from_utf8(sign::rye_event(
        "v",
        "WEBHOOK_URL_VERIFICATION",
        sign::now(),
    ))
    .unwrap()
    .replace(r#""data":{"n":1}"#, r#""data":{"challenge":"c"}"#);
    let (h, v) = signed(challenge.as_bytes());
    let answer = post(gw.addr, "/ok", &[(h, &v)], challenge).await;
    assert_eq!(answer.json(), serde_json::json!({"challenge": "c"}));
    let stale = sign::rye_event("old", "t", sign::now() - 3600);
    let (h, v) = signed(&stale);
    post(gw.addr, "/ok", &[(h, &v)], stale)
        .await
        .assert_error(401, "timestamp_out_of_tolerance");
    let body = sign::rye_event("e", "t", sign::now());
    let (h, v) = signed(&body);
    post(gw.addr, "/down", &[(h, &v)], body.clone())
        .await
        .assert_error(502, "upstream_unavailable");
    post(gw.addr, "/slow", &[(h, &v)], body.clone())
        .await
        .assert_error(504, "upstream_timeout");
    post(gw.addr, "/small", &[(h, &v)], body.clone())
        .await
        .assert_error(413, "payload_too_large");
    post(gw.addr, "/ok/../ok", &[], "x")
        .await
        .assert_error(400, "bad_request");
    let subscribe = "/meta?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1";
    send(gw.addr, "GET", subscribe, &[], "")
        .await
        .assert_error(403, "invalid_verify_token");
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"POST /small HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\n{")
        .await;
    let answer = raw
        .read_response(Duration::from_secs(5))
        .await
        .expect("a 408");
    assert_eq!(answer.status, 408);

    gw.metrics_with(&[
        r#"hookgate_requests_total{outcome="handshake",route="ok"} 1"#,
        r#"hookgate_requests_total{outcome="timestamp_out_of_tolerance",route="ok"} 1"#,
        r#"hookgate_verification_failures_total{reason="timestamp_too_old",route="ok"} 1"#,
        r#"hookgate_requests_total{outcome="upstream_unavailable",route="down"} 1"#,
        r#"hookgate_upstream_errors_total{kind="refused",route="down"} 1"#,
        r#"hookgate_requests_total{outcome="upstream_timeout",route="slow"} 1"#,
        r#"hookgate_upstream_errors_total{kind="timeout",route="slow"} 1"#,
        r#"hookgate_requests_total{outcome="payload_too_large",route="small"} 1"#,
        r#"hookgate_requests_total{outcome="body_timeout",route="small"} 1"#,
        r#"hookgate_requests_total{outcome="bad_request",route=""} 1"#,
        r#"hookgate_requests_total{outcome="invalid_verify_token",route="meta"} 1"#,
    ])
    .await;
    upstream.assert_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_json_line_per_request_and_no_secret() {
    let upstream = Upstream::start().await;
    let (gw, _secrets) = secret_gateway(&upstream, "access_log = \"access.log\"").await;
    let body = sign::rye_event("evt_logged", "order.placed", sign::now());
    let (h, v) = sign::rye(FROM_FILE, &body);
    assert_eq!(
        post(
            gw.addr,
            "/hook?token=query-secret",
            &[(h, &v)],
            body.clone()
        )
        .await
        .status,
        200
    );
    let (h, forged) = sign::rye("wrong", &body);
    post(gw.addr, "/hook", &[(h, &forged)], body.clone())
        .await
        .assert_error(401, "invalid_signature");

    let path = gw.dir().join("access.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() >= 2 {
            break text;
        }
        assert!(Instant::now() < deadline, "access log: {text:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Lines are written as requests end, which need not be the order they were
    // answered in: find each by its outcome.
    assert_eq!(lines.len(), 2, "{text}");
    let line = |outcome: &str| lines.iter().find(|l| l["outcome"] == outcome).unwrap();
    let ok = line("forwarded");
    for (field, value) in [
        ("route", serde_json::json!("r")),
        ("method", serde_json::json!("POST")),
        ("path", serde_json::json!("/hook")),
        ("status", serde_json::json!(200)),
        ("outcome", serde_json::json!("forwarded")),
        ("scheme", serde_json::json!("rye")),
        ("secret_index", serde_json::json!(0)),
        ("event_id", serde_json::json!("evt_logged")),
        ("body_bytes", serde_json::json!(body.len())),
        ("upstream_status", serde_json::json!(200)),
    ] {
        assert_eq!(ok[field], value, "{field} in {ok}");
    }
    assert!(ok["duration_ms"].as_f64().unwrap() >= ok["upstream_ms"].as_f64().unwrap());
    assert!(ok["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(ok["time"].as_str().unwrap().ends_with('Z'));
    let refused = line("invalid_signature");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["outcome"], "invalid_signature");
    assert_eq!(refused["reason"], "signature_mismatch");
    assert!(refused.get("upstream_status").is_none());

    for leak in [
        LITERAL,
        FROM_FILE,
        "query-secret",
        v.as_str(),
        forged.as_str(),
        "order.placed",
    ] {
        assert!(!text.contains(leak), "access log shows {leak}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_reports_changes_and_keeps_the_old_config_on_errors() {
    let upstream = Upstream::start().await;
    let (gw, secrets) = secret_gateway(&upstream, "watch_config = false").await;
    let original = std::fs::read_to_string(&gw.config_path).unwrap();
    let extra = route("added", "/added", &upstream.url(), &scheme("aryeo", &["a"]));

    let unchanged = admin(&gw, "POST", "/reload").await;
    assert_eq!(unchanged.status, 200);
    assert_eq!(
        unchanged.json(),
        serde_json::json!({"generation": 2, "added": [], "removed": [], "changed": [], "unchanged": 1, "restart_needed": false})
    );

    std::fs::write(&gw.config_path, format!("{original}{extra}")).unwrap();
    std::fs::write(secrets.path().join("rye.secret"), "rotated\n").unwrap();
    let changed = admin(&gw, "POST", "/reload").await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    let summary = changed.json();
    assert_eq!(summary["added"], serde_json::json!(["added"]));
    assert_eq!(
        summary["changed"],
        serde_json::json!(["r"]),
        "a rotated secret changes the route"
    );
    gw.wait_log("added [added], removed [], changed [r]", 1)
        .await;

    // A secret that cannot be read fails the reload like any other error.
    std::fs::remove_file(secrets.path().join("rye.secret")).unwrap();
    let failed = admin(&gw, "POST", "/reload").await;
    assert_eq!(failed.status, 400);
    let problems = failed.json();
    assert_eq!(problems["error"], "invalid_config");
    assert_eq!(problems["generation"], 3);
    let first = problems["problems"][0].as_str().unwrap();
    let path = gw.config_path.display().to_string();
    assert!(
        first.starts_with(&format!("{path}:")) && first.contains("rye.secret"),
        "{first}"
    );

    std::fs::write(secrets.path().join("rye.secret"), "back\n").unwrap();
    std::fs::write(
        &gw.config_path,
        format!("{original}{extra}").replace("\"aryeo\"", "\"nope\""),
    )
    .unwrap();
    let failed = admin(&gw, "POST", "/reload").await;
    assert_eq!(failed.status, 400);
    let line = failed.json()["problems"][0].as_str().unwrap().to_owned();
    let at = regex_free_position(&line, &path);
    assert!(at && line.contains("unknown scheme `nope`"), "{line}");

    let body = sign::rye_event("e", "t", sign::now());
    let (h, v) = sign::rye("rotated", &body);
    assert_eq!(
        post(gw.addr, "/hook", &[(h, &v)], body.clone())
            .await
            .status,
        200,
        "generation 3 serves"
    );
    assert_eq!(admin(&gw, "GET", "/config").await.json()["generation"], 3);
    let text = gw
        .metrics_with(&[
            r#"hookgate_config_reloads_total{result="ok",trigger="admin"} 2"#,
            r#"hookgate_config_reloads_total{result="error",trigger="admin"} 2"#,
            "hookgate_config_generation 3",
        ])
        .await;
    let last = text
        .lines()
        .find_map(|l| l.strip_prefix("hookgate_config_last_reload_success_timestamp_seconds "))
        .unwrap();
    assert!((sign::now() - last.parse::<i64>().unwrap()).abs() < 60);
}

/// Whether `line` starts with `path:LINE:COL: `.
fn regex_free_position(line: &str, path: &str) -> bool {
    let Some(rest) = line.strip_prefix(&format!("{path}:")) else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let numeric =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric(parts.next()) && numeric(parts.next())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_reloads_under_load_drop_no_request() {
    let upstream = Upstream::start().await;
    let gw = Gateway::with_admin(
        &route("r", "/hook", &upstream.url(), &scheme("aryeo", &["steady"])),
        "watch_config = false",
    )
    .await;
    let original = std::fs::read_to_string(&gw.config_path).unwrap();
    let good = |n: usize| {
        format!(
            "{original}{}",
            route(
                &format!("extra{n}"),
                &format!("/extra{n}"),
                &upstream.url(),
                &scheme("aryeo", &["x"])
            )
        )
    };
    let broken = original.replace("\"aryeo\"", "\"no-such-scheme\"");

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, ok) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for worker in 0..4 {
        let (stop, sent, ok, addr) = (stop.clone(), sent.clone(), ok.clone(), gw.addr);
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = format!(r#"{{"worker":{worker},"n":{n}}}"#);
                let (h, v) = sign::aryeo("steady", body.as_bytes());
                sent.fetch_add(1, Ordering::Relaxed);
                let answer = post(addr, "/hook", &[(h, &v)], body).await;
                if answer.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.push((answer.status, answer.text()));
                }
            }
            failures
        }));
    }

    let (mut reloaded, mut refused) = (0, 0);
    for i in 0..100 {
        let text = if i % 2 == 0 { good(i) } else { broken.clone() };
        std::fs::write(&gw.config_path, text).unwrap();
        let answer = admin(&gw, "POST", "/reload").await;
        match answer.status {
            200 => reloaded += 1,
            400 => refused += 1,
            other => panic!("reload answered {other}: {}", answer.text()),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }

    let (sent, ok) = (sent.load(Ordering::Relaxed), ok.load(Ordering::Relaxed));
    println!(
        "100 reloads ({reloaded} ok, {refused} refused) under load: {sent} requests, {ok} answered 200"
    );
    assert_eq!((reloaded, refused), (50, 50));
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(ok, sent, "every request was answered 200");
    assert!(sent >= 200, "the load was steady: {sent} requests");
    assert_eq!(
        upstream.requests().len(),
        sent,
        "the upstream got every request"
    );
    assert_eq!(admin(&gw, "GET", "/config").await.json()["generation"], 51);
}

/// Replaces `link` by a symlink to `target` atomically, as Kubernetes does.
fn swap_symlink(target: &str, link: &std::path::Path) {
    let name = link.file_name().unwrap().to_str().unwrap();
    let tmp = link.with_file_name(format!("{name}.tmp"));
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_symlink_swap_is_seen() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route(
        "r",
        "/hook",
        &upstream.url(),
        &scheme("aryeo", &["v1"]),
    ))
    .await;
    // Kubernetes mounts hookgate.toml -> ..data/hookgate.toml, ..data -> ..v1, and
    // updates by writing ..v2 and renaming a new ..data over the old one.
    let dir = gw.dir().to_owned();
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    for version in ["..v1", "..v2"] {
        std::fs::create_dir(dir.join(version)).unwrap();
    }
    std::fs::write(dir.join("..v1/hookgate.toml"), &text).unwrap();
    std::fs::write(
        dir.join("..v2/hookgate.toml"),
        text.replace("\"v1\"", "\"v2\""),
    )
    .unwrap();
    swap_symlink("..v1", &dir.join("..data"));
    swap_symlink("..data/hookgate.toml", &gw.config_path);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !gw.log().contains("config reloaded"),
        "the same contents are not reloaded:\n{}",
        gw.log()
    );

    swap_symlink("..v2", &dir.join("..data"));
    gw.wait_log("config reloaded (file)", 1).await;
    let (h, v) = sign::aryeo("v2", b"{}");
    assert_eq!(post(gw.addr, "/hook", &[(h, &v)], "{}").await.status, 200);
    let (h, v) = sign::aryeo("v1", b"{}");
    post(gw.addr, "/hook", &[(h, &v)], "{}")
        .await
        .assert_error(401, "invalid_signature");
}

/// A gateway (with `server_extra`) with one signed request in flight, held by an
/// upstream that answers after `delay`; the request's answer comes from the task.
async fn one_slow_request(
    delay: Duration,
    server_extra: &str,
) -> (Gateway, Upstream, tokio::task::JoinHandle<Answer>) {
    let upstream = Upstream::with_reply(Reply {
        delay,
        ..Reply::default()
    })
    .await;
    let gw = Gateway::with_admin(
        &route("r", "/hook", &upstream.url(), &scheme("aryeo", &["k"])),
        server_extra,
    )
    .await;
    let addr = gw.addr;
    let answer = tokio::spawn(async move {
        let (h, v) = sign::aryeo("k", b"{\"slow\":1}");
        post(addr, "/hook", &[(h, &v)], "{\"slow\":1}").await
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.connections() == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.metrics_with(&["hookgate_requests_in_flight 1"]).await;
    (gw, upstream, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let (mut gw, _upstream, in_flight) =
        one_slow_request(Duration::from_millis(1500), "shutdown_grace_secs = 20").await;
    let addr = gw.addr;
    let signalled = Instant::now();
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = admin(&gw, "GET", "/readyz").await;
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (503, serde_json::json!("draining"))
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections while draining"
    );

    let answer = in_flight.await.unwrap();
    assert_eq!(
        (answer.status, answer.text()),
        (200, "upstream ok".to_owned())
    );
    assert_eq!(
        gw.wait_exit(Duration::from_secs(5)).await,
        Some(0),
        "{}",
        gw.log()
    );
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "exited {took:?} after SIGTERM, not after the grace period"
    );
    gw.wait_log("drained in", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_while_the_gateway_starts_drains_and_exits_0() {
    // The listeners accept before pingora listens for signals (it does once
    // every service has started): a SIGTERM in between must still drain.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookgate.toml");
    let routes = route("r", "/hook", "http://127.0.0.1:9", &scheme("aryeo", &["k"]));
    for attempt in 0..10 {
        let listen = format!("127.0.0.1:{}", free_port());
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"{listen}\"\nthreads = 2\n{routes}"),
        )
        .unwrap();
        let log = dir.path().join(format!("{attempt}.log"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log)
            .unwrap()
            .contains("Starting service: BG webhook listener")
        {
            assert!(Instant::now() < deadline, "the gateway did not start");
            std::thread::sleep(Duration::from_micros(200));
        }
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "still running after SIGTERM");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(
            status.code(),
            Some(0),
            "{status}: {}",
            std::fs::read_to_string(&log).unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_gateway_exits_0_at_once_on_sigterm() {
    let upstream = Upstream::start().await;
    let mut gw = Gateway::start(&route(
        "r",
        "/hook",
        &upstream.url(),
        &scheme("aryeo", &["k"]),
    ))
    .await;
    gw.signal("TERM");
    assert_eq!(
        gw.wait_exit(Duration::from_secs(3)).await,
        Some(0),
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_the_drain_at_once() {
    let (mut gw, _upstream, stuck) = one_slow_request(
        Duration::from_secs(30),
        "shutdown_grace_secs = 60\nupstream_timeout_ms = 60000",
    )
    .await;
    gw.signal("TERM");
    gw.wait_log("waiting up to 60s for 1 request(s) in flight", 1)
        .await;
    assert_eq!(
        gw.wait_exit(Duration::from_millis(500)).await,
        None,
        "still draining"
    );
    gw.signal("INT");
    assert_eq!(
        gw.wait_exit(Duration::from_secs(3)).await,
        Some(0),
        "{}",
        gw.log()
    );
    gw.wait_log("signalled again: exiting with 1 request(s) in flight", 1)
        .await;
    stuck.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_goes_to_stdout_by_default_and_nowhere_when_off() {
    let upstream = Upstream::start().await;
    let routes = route("r", "/hook", &upstream.url(), &scheme("aryeo", &["k"]));
    for (setting, expect_line) in [("", true), ("access_log = \"off\"", false)] {
        let mut gw = Gateway::start_with(&routes, setting).await;
        post(gw.addr, "/hook", &[], "{}")
            .await
            .assert_error(401, "missing_signature");
        // SIGTERM drains and flushes the access log before the process exits.
        gw.signal("TERM");
        assert_eq!(
            gw.wait_exit(Duration::from_secs(5)).await,
            Some(0),
            "{}",
            gw.log()
        );
        let stdout = gw.stdout();
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if expect_line {
            assert_eq!(lines.len(), 1, "{stdout}");
            assert_eq!(lines[0]["outcome"], "missing_signature");
        } else {
            assert!(stdout.is_empty(), "access_log = \"off\" wrote: {stdout}");
        }
    }
}
