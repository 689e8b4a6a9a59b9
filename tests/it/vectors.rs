//! Every vector of tests/vectors/vectors.json (published and computed deliveries
//! from providers' docs and SDK tests) through the HTTP pipeline: a route per
//! vector, the clock set to the vector's `now`, and the verdict, the handshake
//! answer and what reached the upstream checked.

use std::collections::BTreeSet;

use hookgate::scheme::presets;
use serde_json::Value;

use crate::support::client::send;
use crate::support::inprocess::InProcess;
use crate::support::remote::{self, KeyServer};
use crate::support::sign::now;
use crate::support::upstream::Upstream;

const VECTORS: &str = include_str!("../vectors/vectors.json");

/// The built-in scheme (or test-defined one) that implements a vector's scheme:
/// the preset of that name, or the one the shared vectors' scheme names mean.
fn scheme_for(v: &Value) -> &str {
    let scheme = v["scheme"].as_str().unwrap();
    let provider = v["provider"].as_str().unwrap();
    let key = v["secret_encoding"].as_str().unwrap();
    match (scheme, provider, key) {
        ("aryeo", ..) => "aryeo",
        ("aws-sns", ..) => "aws-sns",
        ("azure-event-grid-entra", ..) => "azure-event-grid-entra",
        ("google-pubsub-push", ..) => "google-pubsub-push",
        ("paypal", ..) => "paypal",
        ("plaid", ..) => "plaid",
        ("asana", ..) => "asana",
        ("docusign", ..) => "docusign",
        ("monday", ..) => "monday",
        ("okta", ..) => "okta",
        ("sentry", ..) => "sentry",
        ("calendly", ..) => "calendly",
        // Discord's two endpoints: interactions (PING is type 1) and webhook events (PING is type 0).
        ("discord-ed25519", ..) if v["body"].as_str().unwrap().contains("\"type\":0") => {
            "discord-events"
        }
        ("discord-ed25519", ..) => "discord",
        ("dropbox" | "dropbox-challenge", ..) => "dropbox",
        ("generic-x-webhook-signature", ..) => "hmac",
        ("github-sha256", ..) => "github",
        ("github-sha1", ..) => "github-sha1",
        ("gitlab-token", ..) => "gitlab",
        ("hubspot-v2", ..) => "hubspot-v2",
        ("hubspot-v3", ..) => "hubspot",
        ("intercom-sha1", ..) => "intercom",
        ("linear", ..) => "linear",
        ("mailgun", ..) => "mailgun",
        ("meta-sha1", ..) => "meta-sha1",
        ("meta-sha256" | "meta-subscribe", ..) => "meta",
        ("msgraph-validation", ..) => "msgraph",
        ("paddle-h1", ..) => "paddle",
        ("pagerduty-v3", ..) => "pagerduty",
        ("rye-v0", ..) => "rye",
        ("rye-hmac-v1", ..) => "rye-v1",
        ("sendgrid-ecdsa", ..) => "sendgrid",
        ("shopify" | "shopify-new-header", ..) => "shopify",
        ("slack-v0", ..) => "slack",
        ("square", ..) => "square",
        ("standard-webhooks", "svix", "whpk_base64_ed25519_public") => "svix-v1a",
        ("standard-webhooks", "svix", _) => "svix",
        ("standard-webhooks", "openai", _) => "openai",
        ("standard-webhooks", ..) => "standard-webhooks",
        ("stripe-v1", ..) => "stripe",
        ("twilio", ..) => "twilio",
        ("twitch-eventsub", ..) => "twitch",
        ("typeform", ..) => "typeform",
        ("zoom-v0", ..) => "zoom",
        // Elastic's test sends Zoom's validation with no signature; the built-in
        // `zoom` scheme refuses that (an unverified answer is a MAC oracle), so the
        // vector runs against a scheme written for it in the test config.
        ("zoom-url-validation", ..) => "zoom-unsigned-validation",
        (name, ..) if presets::get(name).is_some() => name,
        other => panic!("no scheme for vector {other:?}"),
    }
}

/// The test-defined scheme for Elastic's unsigned Zoom validation.
const ZOOM_UNSIGNED: &str = r#"
[schemes.zoom-unsigned-validation]
algorithm = "hmac-sha256"
signed = "v0:{timestamp}:{body}"
signature = { header = "x-zm-signature", prefix = "v0=" }
timestamp = { from = "header:x-zm-request-timestamp" }
[[schemes.zoom-unsigned-validation.handshake]]
verify_first = false
when = "json:/event"
equals = "endpoint.url_validation"
json = { plainToken = "{json:/payload/plainToken}", encryptedToken = "{hmac:json:/payload/plainToken}" }
"#;

fn toml_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// The key servers of the vectors signed with remote keys: one per document
/// served (`keys.document`), each with its own test CA.
struct KeyServers {
    servers: Vec<(String, KeyServer)>,
    /// `[server.remote_keys]` trusting every server's CA.
    toml: String,
    _dir: tempfile::TempDir,
}

impl KeyServers {
    async fn start(vectors: &[Value]) -> Self {
        let mut servers: Vec<(String, KeyServer)> = Vec::new();
        for keys in vectors.iter().filter_map(|v| v.get("keys")) {
            let document = keys["document"].as_str().unwrap();
            if servers.iter().all(|(d, _)| d != document) {
                let cache = keys["cache_control"].as_str().unwrap();
                servers.push((
                    document.to_owned(),
                    KeyServer::serving(document, cache).await,
                ));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("cas.pem");
        let cas: String = servers.iter().map(|(_, s)| s.ca_pem()).collect();
        std::fs::write(&ca_file, cas).unwrap();
        Self {
            servers,
            toml: remote::trusting(&ca_file),
            _dir: dir,
        }
    }

    /// The server of vector `v`'s keys, if it has any.
    fn of(&self, v: &Value) -> Option<&KeyServer> {
        let document = v.get("keys")?["document"].as_str()?;
        self.servers
            .iter()
            .find(|(d, _)| d == document)
            .map(|(_, s)| s)
    }
}

/// `text` with `https://KEYSERVER` pointing at the vector's key server.
fn placed(text: &str, keys: Option<&KeyServer>) -> String {
    match keys {
        Some(server) => text.replace("https://KEYSERVER", &server.url("")),
        None => text.to_owned(),
    }
}

/// The verify-table keys of a remote-key vector: its own (`route`), and where
/// its keys are served (a certificate's host, a key endpoint, or a JWKS URL).
fn remote_keys_for(v: &Value, server: &KeyServer) -> String {
    let mut keys = String::new();
    for (key, value) in v["route"].as_object().into_iter().flatten() {
        keys.push_str(&format!("{key} = {value}\n"));
    }
    let document = v["keys"]["document"].as_str().unwrap();
    let key_answer = serde_json::from_str::<Value>(document)
        .is_ok_and(|d| d.get("key").is_some_and(Value::is_object));
    if document.contains("BEGIN CERTIFICATE") {
        keys.push_str(&format!("key_hosts = [\"{}\"]\n", server.host()));
    } else if key_answer {
        keys.push_str(&format!(
            "key_hosts = [\"{}\"]\nkey_endpoint = \"{}\"\n",
            server.host(),
            server.url("/webhook_verification_key/get")
        ));
    } else {
        keys.push_str(&format!("jwks_url = \"{}\"\n", server.url("/jwks")));
    }
    keys
}

fn route_for(index: usize, v: &Value, upstream: &Upstream, keys: &KeyServers) -> String {
    let scheme = scheme_for(v);
    let method = v["method"].as_str().unwrap();
    let secret = v["secret"].as_str().unwrap_or("unused-secret");
    let mut route = format!(
        "[[routes]]\nname = \"v{index}\"\npath = \"/v/{index}\"\nmethods = [\"{method}\"]\nupstream = \"{}\"\n",
        upstream.url()
    );
    if let Some(url) = v["url"].as_str() {
        let public = url.split('?').next().unwrap();
        route.push_str(&format!("public_url = {}\n", toml_string(public)));
    }
    let secrets = if v["secret_encoding"] == "plain_verify_token" {
        route.push_str(&format!("verify_token = {}\n", toml_string(secret)));
        "unused-app-secret".to_owned()
    } else {
        let checks_token = presets::get(scheme)
            .is_some_and(|s| s.handshakes.iter().any(|h| h.verify_token.is_some()));
        if checks_token {
            // Every Meta route answers the subscription handshake, so it needs a token.
            route.push_str("verify_token = \"unused-verify-token\"\n");
        }
        secret.to_owned()
    };
    match keys.of(v) {
        Some(server) => route.push_str(&format!(
            "[routes.verify]\nscheme = \"{scheme}\"\n{}",
            remote_keys_for(v, server)
        )),
        None => route.push_str(&format!(
            "[routes.verify]\nscheme = \"{scheme}\"\nsecrets = [{}]\n",
            toml_string(&secrets)
        )),
    }
    if scheme == "hmac" {
        route.push_str("header = \"X-Webhook-Signature\"\n");
    }
    if v["now"].is_null() {
        // The vector involves no freshness check (e.g. a 2014 Mailgun signature).
        route.push_str("tolerance_secs = 0\n");
    }
    route
}

/// What went wrong with one vector, if anything.
async fn run(
    index: usize,
    v: &Value,
    gw: &InProcess,
    upstream: &Upstream,
    keys: Option<&KeyServer>,
) -> Option<String> {
    gw.clock.set(v["now"].as_i64().unwrap_or_else(now));
    let before = upstream.requests().len();
    let query = v["url"]
        .as_str()
        .and_then(|u| u.split_once('?'))
        .map(|(_, q)| q);
    let path = match query {
        Some(q) => format!("/v/{index}?{q}"),
        None => format!("/v/{index}"),
    };
    let headers: Vec<(&str, String)> = v["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, val)| (k.as_str(), placed(val.as_str().unwrap(), keys)))
        .collect();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, val)| (*k, val.as_str())).collect();
    let body = placed(v["body"].as_str().unwrap(), keys).into_bytes();
    let answer = send(
        gw.addr,
        v["method"].as_str().unwrap(),
        &path,
        &headers,
        body.clone(),
    )
    .await;
    let forwarded = &upstream.requests()[before..];
    let valid = v["expect"] == "valid";
    let handshake = v["kind"] == "handshake";
    let text = answer.text();

    if let Some(expected) = v.get("expect_response") {
        if let Some(status) = expected["status"].as_u64() {
            if u64::from(answer.status) != status {
                return Some(format!("status {} (want {status}): {text}", answer.status));
            }
        }
        if valid {
            let mut bodies = vec![(
                expected["content_type"].as_str(),
                expected.get("body"),
                expected.get("json"),
            )];
            for alt in expected["alternatives"].as_array().into_iter().flatten() {
                bodies.push((
                    alt["content_type"].as_str(),
                    alt.get("body"),
                    alt.get("json"),
                ));
            }
            let content_type = answer.header("content-type");
            let matches = bodies.iter().any(|(ct, body, json)| {
                let type_ok = ct.is_none_or(|ct| content_type.starts_with(ct));
                let body_ok = match (body.and_then(Value::as_str), json) {
                    (Some(b), _) if expected_json(ct) => {
                        serde_json::from_str::<Value>(b).ok() == serde_json::from_str(&text).ok()
                    }
                    (Some(b), _) => *b == text,
                    (None, Some(j)) => {
                        serde_json::from_str::<Value>(&text).ok().as_ref() == Some(j)
                    }
                    (None, None) => true,
                };
                type_ok && body_ok
            });
            if !matches {
                return Some(format!(
                    "answer {content_type:?} {text:?} is not {expected}"
                ));
            }
            for (name, value) in expected["headers"].as_object().into_iter().flatten() {
                if answer.header(name) != value.as_str().unwrap() {
                    return Some(format!("header {name} = {:?}", answer.header(name)));
                }
            }
        }
    }
    match (handshake, valid) {
        (true, _) | (false, false) if !forwarded.is_empty() => {
            Some(format!("reached the upstream ({})", answer.status))
        }
        (false, false) if !(400..500).contains(&answer.status) => {
            Some(format!("accepted: {} {text}", answer.status))
        }
        (false, true) if answer.status != 200 => Some(format!("refused: {} {text}", answer.status)),
        (false, true) if forwarded.len() != 1 || forwarded[0].body != body => {
            Some("the upstream did not get the exact body".to_owned())
        }
        _ => None,
    }
}

fn expected_json(content_type: &Option<&str>) -> bool {
    content_type.is_some_and(|ct| ct.contains("json"))
}

#[test]
fn every_preset_has_a_valid_and_an_invalid_vector() {
    let vectors: Vec<Value> = serde_json::from_str(VECTORS).unwrap();
    let covered = |expect: &str| -> BTreeSet<&str> {
        vectors
            .iter()
            .filter(|v| v["expect"] == expect)
            .map(scheme_for)
            .collect()
    };
    let (valid, invalid) = (covered("valid"), covered("invalid"));
    let missing: Vec<_> = presets::all()
        .keys()
        .filter(|name| !valid.contains(name.as_str()) || !invalid.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "presets without both vectors: {missing:?}"
    );
}

/// Every provider whose handshake the gateway answers has a vector of it.
#[test]
fn every_handshake_has_a_vector() {
    let vectors: Vec<Value> = serde_json::from_str(VECTORS).unwrap();
    let provider = |name: &str| presets::get(name).map(|s| s.provider_name().to_owned());
    let answered: BTreeSet<Option<String>> = vectors
        .iter()
        .filter(|v| v["kind"] == "handshake" && v["expect"] == "valid")
        .map(|v| provider(scheme_for(v)))
        .collect();
    let missing: BTreeSet<_> = presets::all()
        .values()
        .filter(|s| !s.handshakes.is_empty())
        .map(|s| s.provider_name().to_owned())
        .filter(|p| !answered.contains(&Some(p.clone())))
        .collect();
    assert!(
        missing.is_empty(),
        "handshakes without a vector: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shared_vector_passes_or_fails_as_it_says() {
    let vectors: Vec<Value> = serde_json::from_str(VECTORS).unwrap();
    let upstream = Upstream::start().await;
    let keys = KeyServers::start(&vectors).await;
    let routes: String = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| route_for(i, v, &upstream, &keys))
        .collect();
    let gw = InProcess::start(&format!("{}{ZOOM_UNSIGNED}\n{routes}", keys.toml)).await;
    let mut failures = Vec::new();
    for (index, vector) in vectors.iter().enumerate() {
        if let Some(why) = run(index, vector, &gw, &upstream, keys.of(vector)).await {
            failures.push(format!(
                "{} ({}): {why}",
                vector["id"].as_str().unwrap(),
                vector["origin"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}
