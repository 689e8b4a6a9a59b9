//! `hookgate sign` as a newcomer uses it: the body is sent as given, the event
//! id is the body's, the same event signed twice is one event to the gateway,
//! and a missing body, the generic `hmac` scheme and a config found in the
//! working directory are explained.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::client::{Answer, post};
use crate::support::gateway::Gateway;
use crate::support::upstream::Upstream;

/// Runs `hookgate sign ARGS` in `dir`.
fn sign_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .current_dir(dir)
        .env_remove("HOOKGATE_CONFIG")
        .arg("sign")
        .args(args)
        .output()
        .unwrap()
}

/// What `sign` printed: its headers, and the body when it printed one.
fn printed(out: &Output) -> (Vec<(String, String)>, Option<String>) {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{stderr}");
    let (head, body) = match text.split_once("\n\n") {
        Some((head, body)) => (head, Some(body.trim_end_matches('\n').to_owned())),
        None => (text.as_str(), None),
    };
    let headers = head
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    (headers, body)
}

/// POSTs `body` with the headers `sign` printed.
async fn deliver(gw: &Gateway, path: &str, headers: &[(String, String)], body: &[u8]) -> Answer {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    post(gw.addr, path, &headers, body.to_vec()).await
}

fn is_duplicate(answer: &Answer) -> bool {
    answer.status == 200 && answer.json() == serde_json::json!({"status": "duplicate"})
}

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn routes(upstream: &Upstream) -> String {
    format!(
        "[[routes]]\nname = \"rye\"\npath = \"/rye\"\nupstream = \"{u}\"\n\
         [routes.dedup]\nttl_secs = 600\n[routes.verify]\nscheme = \"rye\"\nsecrets = [\"k\"]\n\n\
         [[routes]]\nname = \"sw\"\npath = \"/sw\"\nupstream = \"{u}\"\n\
         [routes.dedup]\nttl_secs = 600\n[routes.verify]\nscheme = \"standard-webhooks\"\nsecrets = [\"{WHSEC}\"]\n\n\
         [[routes]]\nname = \"slack\"\npath = \"/slack\"\nupstream = \"{u}\"\n\
         [routes.verify]\nscheme = \"slack\"\nsecrets = [\"k\"]\n",
        u = upstream.url()
    )
}

/// The same event signed twice (two runs of `sign`, seconds apart or not) is
/// one event: the gateway forwards it once and answers the second
/// `duplicate`. Rye's body has no `id` here (the gateway keys on its bytes,
/// which `sign` no longer changes); Standard Webhooks' id is a header, which
/// `sign` derives from the body.
#[tokio::test]
async fn the_same_event_signed_twice_is_forwarded_once() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&routes(&upstream)).await;
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"type":"order.created","data":{"order":7}}"#;
    for (path, scheme, secret) in [("/rye", "rye", "k"), ("/sw", "standard-webhooks", WHSEC)] {
        let before = upstream.requests().len();
        for copy in 0..2 {
            let out = sign_in(
                dir.path(),
                &["--scheme", scheme, "--secret", secret, "--body", body],
            );
            let (headers, printed_body) = printed(&out);
            assert_eq!(printed_body, None, "{scheme}: the body was changed");
            let answer = deliver(&gw, path, &headers, body.as_bytes()).await;
            if copy == 0 {
                assert_eq!(answer.status, 200, "{scheme}: {}", answer.text());
                assert_eq!(answer.text(), "upstream ok");
            } else {
                assert!(is_duplicate(&answer), "{scheme}: {}", answer.text());
            }
        }
        assert_eq!(upstream.requests().len(), before + 1, "{scheme}");
    }
    // Rye's id is the body's: `sign` adds no `x-rye-event-id` (which the
    // gateway would only pass on as unsigned) and no `createdAt`.
    let with_id = r#"{"id":"evt_42","type":"order.created"}"#;
    let (headers, printed_body) = printed(&sign_in(
        dir.path(),
        &["--scheme", "rye", "--secret", "k", "--body", with_id],
    ));
    assert_eq!(printed_body, None);
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["content-type", "x-rye-signature"]);
    assert_eq!(
        deliver(&gw, "/rye", &headers, with_id.as_bytes())
            .await
            .status,
        200
    );
    let last = upstream.requests().pop().unwrap();
    assert_eq!(last.header("webhook-id"), "evt_42");
    assert!(last.header_all("x-webhook-unsigned-id").is_empty());
}

/// A body file's bytes are what `sign` signs and what `--curl` sends: keys
/// out of order, spacing and a trailing newline kept; Slack's
/// `url_verification` gets no `event_id` (its signature needs only the
/// timestamp header), and the gateway answers its challenge.
#[tokio::test]
async fn a_body_file_is_signed_and_sent_byte_for_byte() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&routes(&upstream)).await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "/rye",
            "rye",
            "{ \"type\": \"order.created\",\n  \"id\": \"evt_9\", \"data\": {\"b\": 1, \"a\": 2} }\n",
        ),
        (
            "/slack",
            "slack",
            "{\"type\":\"url_verification\",\"token\":\"t\",\"challenge\":\"c-1\"}",
        ),
    ];
    for (path, scheme, body) in cases {
        let file = dir.path().join(format!("{scheme}.json"));
        std::fs::write(&file, body).unwrap();
        let file_arg = file.to_str().unwrap();
        let args = ["--scheme", scheme, "--secret", "k", "--body-file", file_arg];
        let (headers, printed_body) = printed(&sign_in(dir.path(), &args));
        assert_eq!(printed_body, None, "{scheme}: the body was changed");
        let answer = deliver(&gw, path, &headers, body.as_bytes()).await;
        assert_eq!(answer.status, 200, "{scheme}: {}", answer.text());
        if scheme == "slack" {
            assert_eq!(answer.text(), "c-1");
        }
        // `--curl` sends the file itself.
        let target = format!("http://{}{path}", gw.addr);
        let curl = sign_in(dir.path(), &[&args[..], &["--curl", &target]].concat());
        let curl = String::from_utf8(curl.stdout).unwrap();
        assert!(
            curl.ends_with(&format!(" --data-binary '@{file_arg}'\n")),
            "{curl}"
        );
    }
    let forwarded = upstream.only_request();
    assert_eq!(forwarded.body, cases[0].2.as_bytes());
}

/// No body, the generic scheme without a config, and a config found in the
/// working directory: each said on stderr, with what to do; stdout (which
/// `--curl … | sh` runs) stays empty on error.
#[test]
fn sign_explains_a_missing_body_the_generic_scheme_and_the_config_it_used() {
    let empty = tempfile::tempdir().unwrap();
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();

    let out = sign_in(empty.path(), &["--scheme", "rye", "--secret", "k"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("no body to sign: pass --body TEXT or --body-file FILE"),
        "{}",
        stderr(&out)
    );

    let out = sign_in(
        empty.path(),
        &["--scheme", "hmac", "--secret", "k", "--body", "{}"],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let said = stderr(&out);
    assert!(!said.contains("unknown scheme"), "{said}");
    for needed in [
        "--route NAME",
        "`header` (required)",
        "`payload`",
        "conf/hookgate.toml",
    ] {
        assert!(said.contains(needed), "{needed}: {said}");
    }

    // In a directory holding conf/hookgate.toml with one `hmac` route: that
    // route's settings sign, and stderr says so.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(
        dir.path().join("conf/hookgate.toml"),
        "[[routes]]\nname = \"partner\"\npath = \"/p\"\nupstream = \"http://127.0.0.1:9\"\n\
         [routes.verify]\nscheme = \"hmac\"\nheader = \"X-Partner-Sig\"\nprefix = \"sha256=\"\nsecrets = [\"k\"]\n",
    )
    .unwrap();
    let out = sign_in(
        dir.path(),
        &["--scheme", "hmac", "--secret", "k", "--body", "{}"],
    );
    let (headers, _) = printed(&out);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "x-partner-sig" && v.starts_with("sha256="))
    );
    assert_eq!(
        stderr(&out).trim_end(),
        "hookgate sign: using the scheme `hmac` of route `partner` in conf/hookgate.toml"
    );
    // A built-in scheme needs no config and names none.
    let out = sign_in(
        dir.path(),
        &["--scheme", "rye", "--secret", "k", "--body", "{}"],
    );
    printed(&out);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}
