//! The admin listener under attack: a DNS-rebinding page (a foreign `Host`),
//! a client without the admin token, a non-loopback listener without one.

use std::process::Command;
use std::time::Duration;

use crate::async_delivery::Backend;
use crate::support::client::{Answer, Raw, post, send};
use crate::support::gateway::{Gateway, free_port};
use crate::support::upstream::{Reply, Upstream};
use crate::support::{route, sign};

const TOKEN: &str = "9d1c5e7a3b2f4068a1c3e5b7d9f0a2c4";

fn rye_route(upstream: &Upstream) -> String {
    route(
        "rye",
        "/rye",
        &upstream.url(),
        "scheme = \"rye\"\nsecrets = [\"k\"]",
    )
}

/// `method path` on the admin listener with `headers`.
async fn admin(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(gw.admin(), method, path, headers, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_misdirected_and_its_reload_never_happens() {
    let upstream = Upstream::start().await;
    let gw = Gateway::with_admin(&rye_route(&upstream), "watch_config = false\n").await;
    let port = gw.admin().port();
    let evil = format!("evil.example:{port}");
    for (method, path) in [
        ("GET", "/config"),
        ("GET", "/metrics"),
        ("GET", "/deliveries"),
    ] {
        admin(&gw, method, path, &[("host", &evil)])
            .await
            .assert_error(421, "misdirected_request");
    }
    // A reload asked by a rebinding page is refused, and does not happen.
    let config = std::fs::read_to_string(&gw.config_path).unwrap();
    let second = route(
        "two",
        "/two",
        &upstream.url(),
        "scheme = \"rye\"\nsecrets = [\"k\"]",
    );
    std::fs::write(&gw.config_path, format!("{config}{second}")).unwrap();
    admin(&gw, "POST", "/reload", &[("host", &evil)])
        .await
        .assert_error(421, "misdirected_request");
    let view = admin(&gw, "GET", "/config", &[]).await.json();
    assert_eq!(view["generation"], 1);
    assert_eq!(view["routes"].as_array().unwrap().len(), 1);
    // Its own address, loopback names and addresses are answered.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("[::1]:{port}"),
        "127.1.2.3".to_owned(),
    ] {
        let answer = admin(&gw, "GET", "/config", &[("host", &host)]).await;
        assert_eq!(answer.status, 200, "{host}");
    }
    let reloaded = admin(&gw, "POST", "/reload", &[("host", "localhost")]).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert_eq!(reloaded.json()["added"], serde_json::json!(["two"]));
    // Probes come by pod address: any Host.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            admin(&gw, "GET", path, &[("host", &evil)]).await.status,
            200
        );
    }
    // HTTP/1.1 without a Host is a 400, on every endpoint.
    for path in ["/config", "/healthz"] {
        let mut raw = Raw::connect(gw.admin()).await;
        raw.send(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
            .await;
        let answer = raw.read_response(Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer.status, 400, "{path}: {}", answer.head);
        assert_eq!(answer.json(), serde_json::json!({"error": "bad_request"}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_hosts_names_more_hosts_to_answer() {
    let upstream = Upstream::start().await;
    let extra = "admin_hosts = [\"gateway-1.internal\"]\n";
    let gw = Gateway::with_admin(&rye_route(&upstream), extra).await;
    let named = admin(
        &gw,
        "GET",
        "/config",
        &[("host", "Gateway-1.Internal:9190")],
    )
    .await;
    assert_eq!(named.status, 200);
    assert_eq!(
        named.json()["server"]["admin_hosts"],
        serde_json::json!(["gateway-1.internal"])
    );
    admin(&gw, "GET", "/config", &[("host", "gateway-2.internal")])
        .await
        .assert_error(421, "misdirected_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_endpoint_but_the_probes_needs_it() {
    let upstream = Upstream::start().await;
    let extra = "admin_token = \"env:HOOKGATE_ADMIN_TOKEN\"\n";
    let env = [("HOOKGATE_ADMIN_TOKEN", TOKEN), ("RUST_LOG", "debug")];
    let gw = Gateway::with_env(&rye_route(&upstream), extra, &env).await;
    let right = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {}", TOKEN.replace('9', "8"));
    for (method, path) in [
        ("GET", "/config"),
        ("GET", "/metrics"),
        ("GET", "/deliveries"),
        ("POST", "/reload"),
        ("DELETE", "/deliveries/00000000000000010000000000000001"),
    ] {
        let none = admin(&gw, method, path, &[]).await;
        none.assert_error(401, "unauthorized");
        assert_eq!(
            none.header("www-authenticate"),
            r#"Bearer realm="hookgate admin""#
        );
        let bad = admin(&gw, method, path, &[("authorization", &wrong)]).await;
        bad.assert_error(401, "unauthorized");
        assert!(bad.header("www-authenticate").contains("invalid_token"));
    }
    let config = admin(&gw, "GET", "/config", &[("authorization", &right)]).await;
    assert_eq!(config.status, 200);
    assert_eq!(
        config.json()["server"]["admin_token"],
        "env:HOOKGATE_ADMIN_TOKEN"
    );
    assert!(!config.text().contains(TOKEN));
    let metrics = admin(&gw, "GET", "/metrics", &[("authorization", &right)]).await;
    assert_eq!(metrics.status, 200);
    let reload = admin(&gw, "POST", "/reload", &[("authorization", &right)]).await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    // Probes need no token.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(admin(&gw, "GET", path, &[]).await.status, 200);
    }
    // The right token from a foreign Host is still misdirected.
    admin(
        &gw,
        "GET",
        "/config",
        &[("authorization", &right), ("host", "evil.example")],
    )
    .await
    .assert_error(421, "misdirected_request");
    let log = gw.log();
    assert!(!log.contains(TOKEN), "the token was logged:\n{log}");
    assert!(
        !log.contains(&TOKEN.replace('9', "8")),
        "a token sent was logged:\n{log}"
    );
}

#[test]
fn check_refuses_a_non_loopback_admin_listener_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.toml");
    let port = free_port();
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        (out.status.code().unwrap(), stdout)
    };
    let open =
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"0.0.0.0:9190\"\n");
    let (code, out) = check(&open);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!(
            "{}:3:16: `admin_listen` 0.0.0.0:9190 is not a loopback address: set `admin_token` (an `env:` or `file:` reference) so that the admin API asks for it\n",
            path.display()
        )
    );
    std::fs::write(dir.path().join("admin.token"), TOKEN).unwrap();
    // With a route, so that no warning says nothing is served.
    let route = "[[routes]]\nname = \"r\"\npath = \"/r\"\nupstream = \"http://127.0.0.1:9\"\n\
                 verify = { scheme = \"rye\", secrets = [\"k\"] }\n";
    let (code, out) = check(&format!(
        "{open}admin_token = \"file:admin.token\"\n{route}"
    ));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");
}

/// An async route `hook` to `upstream` verifying Rye with secret `k`.
fn async_route(upstream: &Upstream) -> String {
    format!(
        "[[routes]]\nname = \"hook\"\npath = \"/hook\"\nupstream = \"{}\"\ndelivery = \"async\"\n\
         verify = {{ scheme = \"rye\", secrets = [\"k\"] }}\n[routes.retry]\nmin_backoff_ms = 60000\n",
        upstream.url()
    )
}

/// POSTs a Rye event `id` with `headers` to `/hook`; the 202's delivery id.
async fn accepted(gw: &Gateway, id: &str, headers: &[(&str, &str)]) -> String {
    let body = sign::rye_event(id, "order.created", sign::now());
    let (h, v) = sign::rye("k", &body);
    let mut all = vec![(h, v.as_str())];
    all.extend_from_slice(headers);
    let answer = post(gw.addr, "/hook", &all, body).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    answer.json()["id"].as_str().unwrap().to_owned()
}

async fn delivery_ids_are_not_guessable(backend: Backend) {
    // The app keeps failing: the deliveries stay, pending.
    let upstream = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    let gw = backend.gateway(&async_route(&upstream), "").await;
    let first = accepted(&gw, "evt_1", &[]).await;
    let second = accepted(&gw, "evt_2", &[]).await;
    for id in [&first, &second] {
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(
        first[16..],
        second[16..],
        "each delivery has a tag of its own"
    );
    for id in [&first, &second] {
        let shown = admin(&gw, "GET", &format!("/deliveries/{id}"), &[]).await;
        assert_eq!(shown.status, 200, "{}", shown.text());
        assert_eq!(shown.json()["id"], id.as_str());
    }
    // The next number with the first's tag, the number alone, a tag one off:
    // none of them is a delivery.
    let number = u64::from_str_radix(&first[..16], 16).unwrap();
    let next = format!("{:016x}{}", number + 1, &first[16..]);
    let mut tampered = second.clone().into_bytes();
    tampered[31] = if tampered[31] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    for guess in [next, first[..16].to_owned(), tampered] {
        assert_ne!(guess, second);
        for (method, path) in [
            ("GET", format!("/deliveries/{guess}")),
            ("POST", format!("/deliveries/{guess}/retry")),
            ("DELETE", format!("/deliveries/{guess}")),
        ] {
            admin(&gw, method, &path, &[])
                .await
                .assert_error(404, "not_found");
        }
    }
    let listed = admin(&gw, "GET", "/deliveries", &[]).await.json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
}

mod delivery_ids_are_not_guessable {
    #[tokio::test]
    async fn local() {
        super::delivery_ids_are_not_guessable(super::Backend::Local).await;
    }

    #[tokio::test]
    async fn redis() {
        super::delivery_ids_are_not_guessable(super::Backend::redis().await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shown_headers_are_redacted_but_a_fixed_list_of_non_credentials() {
    let upstream = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    })
    .await;
    let gw = Backend::Local.gateway(&async_route(&upstream), "").await;
    let sent = [
        ("X-Api-Key", "key-5f2e8a"),
        ("X-Auth-Token", "tok-71c4d0"),
        ("X-Shop-Domain", "shop-3b9a.example"),
        ("User-Agent", "Provider-Webhooks/1.0"),
        ("Content-Type", "application/json"),
    ];
    let id = accepted(&gw, "evt_headers", &sent).await;
    let shown = admin(&gw, "GET", &format!("/deliveries/{id}"), &[])
        .await
        .json();
    let headers: std::collections::HashMap<String, String> = shown["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let name = h[0].as_str().unwrap().to_ascii_lowercase();
            (name, h[1].as_str().unwrap().to_owned())
        })
        .collect();
    for name in [
        "x-api-key",
        "x-auth-token",
        "x-shop-domain",
        "x-rye-signature",
    ] {
        assert_eq!(headers[name], "[redacted]", "{name}: {headers:?}");
    }
    for (name, value) in [
        ("user-agent", "Provider-Webhooks/1.0"),
        ("content-type", "application/json"),
        ("x-webhook-verified", "rye"),
        ("x-webhook-route", "hook"),
        ("webhook-id", "evt_headers"),
        ("x-forwarded-for", "127.0.0.1"),
    ] {
        assert_eq!(headers[name], value, "{name}: {headers:?}");
    }
    let text = shown.to_string();
    for secret in ["key-5f2e8a", "tok-71c4d0", "shop-3b9a"] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
}
