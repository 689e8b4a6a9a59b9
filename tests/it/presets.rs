use std::process::Command;

use base64::Engine as _;
use hookgate::scheme::presets;
use hookgate::scheme::signature::{Format, Location};
use hookgate::scheme::{Algorithm, KeyFormat, Scheme};
use ring::signature::KeyPair as _;

use crate::support::client::send;
use crate::support::gateway::Gateway;
use crate::support::upstream::Upstream;

const BODY: &str =
    r#"{"id":"evt_1","type":"t","signature":{"token":"tok"},"value":[{"subscriptionId":"s"}]}"#;

/// Key material for a scheme: what the route verifies with and what signs.
fn keys(scheme: &Scheme, seed: u8) -> (String, String) {
    if let Format::Pairs { .. } = scheme.signature.format {
        // Braintree's secrets carry their public key: `public_key|private_key`.
        let key = format!("public-{seed}|secret-{seed}");
        return (key.clone(), key);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let ed = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
    match (scheme.algorithm, scheme.key) {
        (Algorithm::Ed25519, KeyFormat::Hex) => {
            (hex::encode(ed.public_key()), hex::encode([seed; 32]))
        }
        (Algorithm::Ed25519, KeyFormat::Base64) => {
            (b64.encode(ed.public_key()), b64.encode([seed; 32]))
        }
        (Algorithm::Ed25519, _) => {
            let mut pair = vec![seed; 32];
            pair.extend_from_slice(ed.public_key().as_ref());
            (
                format!("whpk_{}", b64.encode(ed.public_key())),
                format!("whsk_{}", b64.encode(pair)),
            )
        }
        (Algorithm::EcdsaP256Sha256, _) => ecdsa_keys()[usize::from(seed % 2)].clone(),
        (_, KeyFormat::Whsec) => {
            let key = format!("whsec_{}", b64.encode([seed; 24]));
            (key.clone(), key)
        }
        (_, KeyFormat::Hex) => {
            let key = hex::encode([seed; 24]);
            (key.clone(), key)
        }
        (_, KeyFormat::Base64) => {
            let key = b64.encode([seed; 24]);
            (key.clone(), key)
        }
        _ => (format!("secret-{seed}"), format!("secret-{seed}")),
    }
}

/// Two ECDSA key pairs (public SPKI, private PKCS#8, both base64), made once:
/// ECDSA keys cannot be derived from a seed like the others.
fn ecdsa_keys() -> &'static [(String, String); 2] {
    static KEYS: std::sync::OnceLock<[(String, String); 2]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let b64 = base64::engine::general_purpose::STANDARD;
        let pair = || {
            let rng = ring::rand::SystemRandom::new();
            let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
            let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let pair =
                ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
            let mut spki =
                hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
            spki.extend_from_slice(pair.public_key().as_ref());
            (b64.encode(spki), b64.encode(pkcs8.as_ref()))
        };
        [pair(), pair()]
    })
}

/// A delivery as `hookgate sign` printed it.
#[derive(Debug, Clone)]
struct Signed {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// The body to sign: [`BODY`], or for a scheme that signs named form fields
/// (Braintree's `bt_payload`), a form carrying it in each of them.
fn body_for(scheme: &Scheme) -> String {
    if !scheme.signs_named_form_fields() {
        return BODY.to_owned();
    }
    let mut form = form_urlencoded::Serializer::new(String::new());
    for field in scheme.signed_form_fields() {
        form.append_pair(field, BODY);
    }
    form.finish()
}

fn sign(scheme: &str, secret: &str, url: &str, time: Option<i64>) -> Signed {
    let unsigned = body_for(&presets::get(scheme).unwrap());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    cmd.args([
        "sign", "--scheme", scheme, "--secret", secret, "--body", &unsigned, "--url", url,
    ]);
    if presets::get(scheme).is_some_and(|s| s.signs_form_only()) {
        // Such a scheme (Mandrill) accepts form bodies only.
        cmd.args(["--content-type", "application/x-www-form-urlencoded"]);
    }
    if let Some(t) = time {
        cmd.args(["--time", &t.to_string()]);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "sign {scheme}: {text}");
    let (head, body) = text
        .split_once("\n\n")
        .map_or((text.as_str(), None), |(h, b)| (h, Some(b)));
    let mut signed = Signed {
        path: url.to_owned(),
        headers: Vec::new(),
        body: unsigned,
    };
    for line in head.lines() {
        if let Some(url) = line.strip_prefix("# url: ") {
            signed.path = url.to_owned();
        } else if let Some((name, value)) = line.split_once(": ") {
            signed.headers.push((name.to_owned(), value.to_owned()));
        }
    }
    if let Some(body) = body {
        signed.body = body.trim_end_matches('\n').to_owned();
    }
    let (_, rest) = signed.path.split_once("://").unwrap();
    signed.path = rest[rest.find('/').unwrap()..].to_owned();
    signed
}

async fn deliver(gw: &Gateway, d: &Signed) -> (u16, String) {
    let headers: Vec<(&str, &str)> = d
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let answer = send(gw.addr, "POST", &d.path, &headers, d.body.clone()).await;
    (answer.status, answer.text())
}

/// The delivery without its signature (header dropped, or body field removed).
fn unsigned(scheme: &Scheme, d: &Signed) -> Signed {
    let mut d = d.clone();
    match &scheme.signature.location {
        Location::Headers(names) => d
            .headers
            .retain(|(k, _)| !names.iter().any(|n| n.as_str() == k.to_ascii_lowercase())),
        Location::Json(pointer) => {
            let mut doc: serde_json::Value = serde_json::from_str(&d.body).unwrap();
            let (parent, key) = pointer.as_str().rsplit_once('/').unwrap();
            doc.pointer_mut(parent)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(key);
            d.body = doc.to_string();
        }
        Location::Form(name) => {
            let kept: Vec<&str> = d
                .body
                .split('&')
                .filter(|pair| !pair.starts_with(&format!("{name}=")))
                .collect();
            d.body = kept.join("&");
        }
        Location::Query(name) => {
            let (path, query) = d.path.split_once('?').unwrap();
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| !pair.starts_with(&format!("{name}=")))
                .collect();
            d.path = format!("{path}?{}", kept.join("&"));
        }
    }
    d
}

fn routes(upstream: &Upstream) -> String {
    let mut text = String::new();
    for (name, scheme) in presets::signable() {
        let (verify_key, _) = keys(scheme, 1);
        text.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/p/{name}\"\nupstream = \"{}\"\nverify_token = \"vt\"\n[routes.verify]\nscheme = \"{name}\"\nsecrets = [\"{verify_key}\"]\n\n",
            upstream.url()
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_preset_accepts_what_sign_makes_and_refuses_forgeries() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&routes(&upstream)).await;
    let refused = Upstream::start().await;
    let gw_refusing = Gateway::start(&routes(&refused)).await;
    let now = crate::support::sign::now();
    let mut failures = Vec::new();
    for (name, scheme) in presets::signable() {
        let (_, sign_key) = keys(scheme, 1);
        let (_, wrong_key) = keys(scheme, 2);
        let url = |gw: &Gateway| format!("http://{}/p/{name}", gw.addr);

        let good = sign(name, &sign_key, &url(&gw), None);
        let before = upstream.requests().len();
        let (status, text) = deliver(&gw, &good).await;
        let got = upstream.requests();
        if status != 200 || got.len() != before + 1 || got[before].body != good.body.as_bytes() {
            failures.push(format!("{name}: valid delivery: {status} {text}"));
        }

        let mut cases = vec![
            (
                "wrong secret",
                sign(name, &wrong_key, &url(&gw_refusing), None),
            ),
            (
                "missing signature",
                unsigned(scheme, &sign(name, &sign_key, &url(&gw_refusing), None)),
            ),
        ];
        if scheme.covers_body() {
            let mut tampered = sign(name, &sign_key, &url(&gw_refusing), None);
            tampered.body = tampered.body.replace("evt_1", "evt_2");
            cases.push(("tampered body", tampered));
        }
        if let (true, Some(window)) = (scheme.timestamp_is_signed(), scheme.default_tolerance_secs)
        {
            let window = window as i64;
            cases.push((
                "old timestamp",
                sign(name, &sign_key, &url(&gw_refusing), Some(now - window - 60)),
            ));
        }
        for (what, delivery) in cases {
            let (status, text) = deliver(&gw_refusing, &delivery).await;
            if status != 401 {
                failures.push(format!("{name}: {what}: {status} {text}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    refused.assert_untouched();
}
