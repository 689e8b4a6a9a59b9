use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use crate::support::client::{Raw, post, send};
use crate::support::gateway::Gateway;
use crate::support::sign;
use crate::support::upstream::Upstream;
use crate::support::{many_routes, route, scheme};

fn config_text(gw: &Gateway, secret: &str, upstream: &Upstream) -> String {
    let current = std::fs::read_to_string(&gw.config_path).unwrap();
    let server = current.split("[[routes]]").next().unwrap().to_owned();
    format!(
        "{server}{}",
        route("r", "/hook", &upstream.url(), &scheme("aryeo", &[secret]))
    )
}

async fn status_with(gw: &Gateway, secret: &str) -> u16 {
    let (h, v) = sign::aryeo(secret, b"{}");
    post(gw.addr, "/hook", &[(h, &v)], "{}").await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_routes_and_secrets() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start_with(
        &route("r", "/hook", &upstream.url(), &scheme("aryeo", &["old"])),
        "watch_config = false",
    )
    .await;
    assert_eq!(status_with(&gw, "old").await, 200);

    std::fs::write(&gw.config_path, config_text(&gw, "new", &upstream)).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        status_with(&gw, "old").await,
        200,
        "with watch_config = false only SIGHUP reloads"
    );

    gw.signal("HUP");
    gw.wait_log("config reloaded (sighup)", 1).await;
    assert_eq!(status_with(&gw, "new").await, 200);
    assert_eq!(status_with(&gw, "old").await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_file_secrets() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "first\n").unwrap();
    let verify = format!(
        "scheme = \"aryeo\"\nsecrets = [\"file:{}\"]\n",
        secret_file.display()
    );
    let gw = Gateway::start(&route("r", "/hook", &upstream.url(), &verify)).await;
    assert_eq!(status_with(&gw, "first").await, 200);
    std::fs::write(&secret_file, "second\n").unwrap();
    gw.signal("HUP");
    gw.wait_log("config reloaded (sighup)", 1).await;
    assert_eq!(status_with(&gw, "second").await, 200);
    assert_eq!(status_with(&gw, "first").await, 401);
    let log = gw.log();
    assert!(
        !log.contains("first") && !log.contains("second"),
        "a secret reached the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_reload_in_place_and_by_rename() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route(
        "r",
        "/hook",
        &upstream.url(),
        &scheme("aryeo", &["one"]),
    ))
    .await;

    std::fs::write(&gw.config_path, config_text(&gw, "two", &upstream)).unwrap();
    gw.wait_log("config reloaded (file)", 1).await;
    assert_eq!(status_with(&gw, "two").await, 200);
    assert_eq!(status_with(&gw, "one").await, 401);

    // Editors and `git checkout` replace the file: write elsewhere, rename over it.
    let tmp = gw.config_path.with_extension("tmp");
    std::fs::write(&tmp, config_text(&gw, "three", &upstream)).unwrap();
    std::fs::rename(&tmp, &gw.config_path).unwrap();
    gw.wait_log("config reloaded (file)", 2).await;
    assert_eq!(status_with(&gw, "three").await, 200);
    assert_eq!(status_with(&gw, "two").await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_changes_nothing_and_is_logged_with_its_position() {
    let upstream = Upstream::start().await;
    let mut gw = Gateway::start(&route(
        "r",
        "/hook",
        &upstream.url(),
        &scheme("aryeo", &["keep"]),
    ))
    .await;

    let good = config_text(&gw, "keep", &upstream);
    std::fs::write(
        &gw.config_path,
        good.replace("scheme = \"aryeo\"", "scheme = \"nope\""),
    )
    .unwrap();
    gw.wait_log("config reload (file) failed", 1).await;
    let log = gw.log();
    let path = gw.config_path.display().to_string();
    assert!(
        log.contains(&format!("{path}:")) && log.contains("unknown scheme `nope`"),
        "{log}"
    );
    assert!(gw.is_running());
    assert_eq!(
        status_with(&gw, "keep").await,
        200,
        "the old config keeps serving"
    );

    std::fs::write(&gw.config_path, "this is = = not toml").unwrap();
    gw.wait_log("config reload (file) failed", 2).await;
    gw.signal("HUP");
    gw.wait_log("config reload (sighup) failed", 1).await;
    assert_eq!(status_with(&gw, "keep").await, 200);

    std::fs::write(&gw.config_path, config_text_from(&good, "fixed")).unwrap();
    gw.wait_log("config reloaded (file)", 1).await;
    assert_eq!(status_with(&gw, "fixed").await, 200);
}

fn config_text_from(good: &str, secret: &str) -> String {
    good.replace("secrets = [\"keep\"]", &format!("secrets = [\"{secret}\"]"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_config_it_started_with() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route(
        "r",
        "/hook",
        &upstream.url(),
        &scheme("aryeo", &["before"]),
    ))
    .await;
    let body = b"{\"slow\":true}";
    let (h, v) = sign::aryeo("before", body);
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(
        format!(
            "POST /hook HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n{h}: {v}\r\n\r\n{{",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    std::fs::write(&gw.config_path, config_text(&gw, "after", &upstream)).unwrap();
    gw.signal("HUP");
    gw.wait_log("config reloaded", 1).await;

    raw.send(&body[1..]).await;
    let answer = raw
        .read_response(Duration::from_secs(5))
        .await
        .expect("a response");
    assert_eq!(
        answer.status, 200,
        "verified with the secret of the snapshot it started on"
    );
    assert_eq!(upstream.only_request().body, body);
    assert_eq!(
        status_with(&gw, "before").await,
        401,
        "new requests use the new config"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_10_000_routes_serves_every_kind_and_names_what_changed() {
    let upstream = Upstream::start().await;
    let gw = Gateway::with_admin(
        &route("r", "/hook", &upstream.url(), &scheme("aryeo", &["s"])),
        "watch_config = false",
    )
    .await;
    let current = std::fs::read_to_string(&gw.config_path).unwrap();
    let server = current.split("[[routes]]").next().unwrap();
    let many = many_routes(10_000, &upstream.url(), "s");
    std::fs::write(&gw.config_path, format!("{server}{many}")).unwrap();
    let reload = send(gw.admin(), "POST", "/reload", &[], "").await.json();
    assert_eq!(reload["added"].as_array().unwrap().len(), 10_000);
    assert_eq!(reload["removed"], serde_json::json!(["r"]));

    let (h, v) = sign::aryeo("s", b"{}");
    let cases = [
        ("POST", None, "/r/10000", "r10000", "/to/10000"),
        ("POST", None, "/p/9997/x", "r9997", "/to/9997/x"),
        (
            "POST",
            Some("H9998.example:80"),
            "/h/9998",
            "r9998",
            "/to/9998",
        ),
        ("PUT", None, "/q/9999", "r9999", "/to/9999"),
    ];
    for (method, host, path, want_route, want_uri) in cases {
        let mut headers = vec![(h, v.as_str())];
        headers.extend(host.map(|host| ("host", host)));
        let answer = send(gw.addr, method, path, &headers, "{}").await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        let got = upstream.requests().pop().unwrap();
        assert_eq!(
            (got.header("x-webhook-route"), got.uri.as_str()),
            (want_route, want_uri)
        );
    }
    send(gw.addr, "POST", "/h/9998", &[(h, &v)], "{}")
        .await
        .assert_error(404, "no_route");
    send(gw.addr, "GET", "/q/9999", &[(h, &v)], "")
        .await
        .assert_error(405, "method_not_allowed");

    let one_changed = many.replace("/to/5000\"", "/to/5000/new\"");
    std::fs::write(&gw.config_path, format!("{server}{one_changed}")).unwrap();
    let reload = send(gw.admin(), "POST", "/reload", &[], "").await.json();
    assert_eq!(
        (
            &reload["added"],
            &reload["removed"],
            &reload["changed"],
            &reload["unchanged"]
        ),
        (
            &serde_json::json!([]),
            &serde_json::json!([]),
            &serde_json::json!(["r5000"]),
            &serde_json::json!(9_999)
        )
    );
}

/// A route verifying `aryeo` with `file:` secrets.
fn route_with_files(upstream: &Upstream, files: &[&Path]) -> String {
    let list: Vec<String> = files
        .iter()
        .map(|f| format!("\"file:{}\"", f.display()))
        .collect();
    let verify = format!("scheme = \"aryeo\"\nsecrets = [{}]\n", list.join(", "));
    route("r", "/hook", &upstream.url(), &verify)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_file_replaced_by_rename_is_picked_up_without_a_signal() {
    let upstream = Upstream::start().await;
    // The secret lives in a directory of its own, as a mounted secret does.
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("aryeo");
    std::fs::write(&file, "first\n").unwrap();
    let gw = Gateway::start(&route_with_files(&upstream, &[&file])).await;
    assert_eq!(status_with(&gw, "first").await, 200);

    let tmp = secrets.path().join(".aryeo.tmp");
    std::fs::write(&tmp, "second\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    gw.wait_log("config reloaded (file)", 1).await;
    assert_eq!(status_with(&gw, "second").await, 200);
    assert_eq!(status_with(&gw, "first").await, 401);

    // Written in place too.
    std::fs::write(&file, "third").unwrap();
    gw.wait_log("config reloaded (file)", 2).await;
    assert_eq!(status_with(&gw, "third").await, 200);
    assert_eq!(status_with(&gw, "second").await, 401);
    let log = gw.log();
    assert!(log.contains("changed [r]"), "{log}");
    assert!(
        !["first", "second", "third"].iter().any(|s| log.contains(s)),
        "a secret reached the log:\n{log}"
    );
}

/// Publishes `keys` as Kubernetes does a Secret volume: a new timestamped
/// directory, `..data` switched to it by renaming a new symlink over it,
/// the old directory removed; each key is a symlink through `..data`.
fn publish(dir: &Path, version: u32, keys: &[(&str, &str)]) {
    let data = dir.join(format!("..2026_11_30_{version:02}"));
    std::fs::create_dir(&data).unwrap();
    for (key, value) in keys {
        std::fs::write(data.join(key), value).unwrap();
        let link = dir.join(key);
        if !link.exists() {
            symlink(Path::new("..data").join(key), link).unwrap();
        }
    }
    let tmp = dir.join("..data_tmp");
    symlink(data.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if version > 1 {
        std::fs::remove_dir_all(dir.join(format!("..2026_11_30_{:02}", version - 1))).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_secret_swap_rotates_through_two_secrets() {
    let upstream = Upstream::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path();
    publish(dir, 1, &[("current", "one\n"), ("previous", "zero\n")]);
    let (current, previous) = (dir.join("current"), dir.join("previous"));
    let gw = Gateway::start(&route_with_files(&upstream, &[&current, &previous])).await;
    assert_eq!(status_with(&gw, "one").await, 200);

    // Rotation starts: the new secret signs, the old one still passes.
    publish(dir, 2, &[("current", "two\n"), ("previous", "one\n")]);
    gw.wait_log("config reloaded (file)", 1).await;
    assert_eq!(status_with(&gw, "two").await, 200);
    assert_eq!(status_with(&gw, "one").await, 200);
    assert_eq!(status_with(&gw, "zero").await, 401);

    // Rotation ends: the old secret is gone.
    publish(dir, 3, &[("current", "two\n"), ("previous", "two\n")]);
    gw.wait_log("config reloaded (file)", 2).await;
    assert_eq!(status_with(&gw, "two").await, 200);
    assert_eq!(status_with(&gw, "one").await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_secret_file_keeps_the_old_config_serving_and_is_counted() {
    let upstream = Upstream::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("aryeo");
    std::fs::write(&file, "kept\n").unwrap();
    let gw = Gateway::with_admin(&route_with_files(&upstream, &[&file]), "").await;

    std::fs::write(&file, "").unwrap();
    gw.wait_log("config reload (file) failed", 1).await;
    let log = gw.log();
    let config = gw.config_path.display().to_string();
    assert!(
        log.contains(&format!("{config}:"))
            && log.contains(&format!("secret file `{}` is empty", file.display())),
        "{log}"
    );
    gw.metrics_with(&[r#"hookgate_config_reloads_total{result="error",trigger="file"} 1"#])
        .await;
    assert_eq!(status_with(&gw, "kept").await, 200, "the old config serves");

    std::fs::write(&file, "fixed\n").unwrap();
    gw.wait_log("config reloaded (file)", 1).await;
    assert_eq!(status_with(&gw, "fixed").await, 200);
    assert_eq!(status_with(&gw, "kept").await, 401);
    gw.metrics_with(&[
        r#"hookgate_config_reloads_total{result="error",trigger="file"} 1"#,
        r#"hookgate_config_reloads_total{result="ok",trigger="file"} 1"#,
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_file_named_before_it_exists_is_loaded_when_it_appears() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&route(
        "r",
        "/hook",
        &upstream.url(),
        &scheme("aryeo", &["old"]),
    ))
    .await;
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("aryeo");
    let current = std::fs::read_to_string(&gw.config_path).unwrap();
    let server = current.split("[[routes]]").next().unwrap();
    std::fs::write(
        &gw.config_path,
        format!("{server}{}", route_with_files(&upstream, &[&file])),
    )
    .unwrap();
    gw.wait_log("config reload (file) failed", 1).await;
    assert!(gw.log().contains("cannot read secret file"), "{}", gw.log());
    assert_eq!(status_with(&gw, "old").await, 200);

    std::fs::write(&file, "new\n").unwrap();
    gw.wait_log("config reloaded (file)", 1).await;
    assert_eq!(status_with(&gw, "new").await, 200);
    assert_eq!(status_with(&gw, "old").await, 401);
}
