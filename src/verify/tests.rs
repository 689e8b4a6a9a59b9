//! Unit tests for verification: published seed vectors, rotation, tolerance,
//! several verifiers on one route, hostile values, and a sign → verify round
//! trip for every built-in scheme.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::request::{SignedRequest, UrlParts};
use super::sign::{Delivery, SignedDelivery, sign};
use super::{Rejection, Verified, Verifier, verify_any};
use crate::base::secret::Secret;
use crate::mac::{HashAlg, KeyedMac};
use crate::scheme::Scheme;
use crate::scheme::build::SchemeBuilder;
use crate::scheme::presets;

const URL: UrlParts<'static> = UrlParts {
    public_url: None,
    remainder: "",
    host: "gw",
};

/// A header map of `pairs`, in order (shared with other modules' tests).
pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

/// A signed delivery as the gateway receives it: its headers, the URL it was
/// sent to (as the route's public URL), and its query.
fn as_received(signed: &SignedDelivery) -> (HeaderMap, UrlParts<'_>, &str) {
    let headers = signed
        .headers
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
        .collect();
    let (base, query) = signed.url.split_once('?').unwrap();
    let parts = UrlParts {
        public_url: Some(base),
        remainder: "",
        host: "",
    };
    (headers, parts, query)
}

fn secrets(list: &[&str]) -> Vec<Secret> {
    list.iter()
        .map(|s| Secret::new(s.as_bytes().to_vec()))
        .collect()
}

fn preset(name: &str) -> Arc<Scheme> {
    presets::get(name).unwrap_or_else(|| panic!("no preset {name}"))
}

/// A scheme from descriptor text, as a config's `[schemes.x]` would give it.
fn descriptor(text: &str) -> Arc<Scheme> {
    let file = toml::from_str(text).unwrap();
    let mut diagnostics = Vec::new();
    let scheme = SchemeBuilder::new(&mut diagnostics).scheme("test", &file);
    Arc::new(scheme.unwrap_or_else(|| panic!("{diagnostics:?}")))
}

fn verifier(scheme: Arc<Scheme>, keys: &[&str], tolerance: Option<u64>) -> Verifier {
    Verifier::new(scheme, &secrets(keys), tolerance).unwrap()
}

fn check_at(
    v: &Verifier,
    pairs: &[(&str, &str)],
    body: &str,
    now: i64,
) -> Result<Verified, Rejection> {
    let h = headers(pairs);
    let req = SignedRequest::new("POST", ("/h", None), &h, body.as_bytes(), URL);
    v.verify(&req, now)
}

fn check(
    scheme: &str,
    keys: &[&str],
    pairs: &[(&str, &str)],
    body: &str,
) -> Result<usize, Rejection> {
    check_at(&verifier(preset(scheme), keys, None), pairs, body, 0).map(|v| v.secret_index())
}

// Official vector: rye-com/checkout-intents-python@1b54c311 tests/test_event_unwrap.py.
const RYE_BODY: &str = r#"{"id":"evt_ci_acf8e2c44f4c4583bd5b58d291242bb2_awaiting_confirmation","object":"event","type":"checkout_intent.offer_retrieved","createdAt":"2026-04-21T03:27:50.000Z","source":{"type":"checkout_intent","id":"ci_acf8e2c44f4c4583bd5b58d291242bb2"}}"#;
const RYE_SECRET: &str = "6b2f15a9c9ee825fcf6f6447351a810c";
const RYE_SIG: &str = "v0=a296fa9084469414e018aa8c33f68d315f88a0b503babb3825f7de87f473803e";

#[test]
fn rye_official_vector_and_its_negatives() {
    let sig = [("x-rye-signature", RYE_SIG)];
    assert_eq!(check("rye", &[RYE_SECRET], &sig, RYE_BODY), Ok(0));
    assert_eq!(
        check("rye", &["wrong_secret"], &sig, RYE_BODY),
        Err(Rejection::SignatureMismatch)
    );
    let tampered = RYE_BODY.replace("evt_ci_", "evt_tampered_");
    assert_eq!(
        check("rye", &[RYE_SECRET], &sig, &tampered),
        Err(Rejection::SignatureMismatch)
    );
    let no_prefix = [("x-rye-signature", &RYE_SIG[3..])];
    assert_eq!(
        check("rye", &[RYE_SECRET], &no_prefix, RYE_BODY),
        Err(Rejection::SignatureMalformed)
    );
    assert_eq!(
        check("rye", &[RYE_SECRET], &[], RYE_BODY),
        Err(Rejection::SignatureMissing)
    );
}

/// Hex HMAC-SHA256 of `body` under `secret`.
fn hex_hmac(secret: &str, body: &str) -> String {
    let mut mac = KeyedMac::new(HashAlg::Sha256, secret.as_bytes());
    mac.update(body.as_bytes());
    mac.finalize_with(|m| hex::encode(m))
}

#[test]
fn rye_metadata_comes_from_the_signed_body_and_headers_stay_unsigned() {
    let v = verifier(preset("rye"), &[RYE_SECRET], None);
    let got = check_at(&v, &[("x-rye-signature", RYE_SIG)], RYE_BODY, 0).unwrap();
    assert_eq!(got.scheme().name, "rye");
    let body_id = "evt_ci_acf8e2c44f4c4583bd5b58d291242bb2_awaiting_confirmation";
    assert_eq!(got.id(), Some(body_id));
    assert_eq!(got.event_type(), Some("checkout_intent.offer_retrieved"));
    assert_eq!(got.timestamp(), Some(1_776_742_070));
    assert_eq!((got.unsigned_id(), got.unsigned_event_type()), (None, None));
    // The headers are outside the signature: anyone can set them, so they
    // never replace the body's id and type, and are kept apart.
    let pairs = [
        ("x-rye-signature", RYE_SIG),
        ("x-rye-event-id", "evt_h"),
        ("x-rye-topic", "t_h"),
    ];
    let got = check_at(&v, &pairs, RYE_BODY, 0).unwrap();
    assert_eq!(
        (got.id(), got.event_type()),
        (Some(body_id), Some("checkout_intent.offer_retrieved"))
    );
    assert_eq!(
        (got.unsigned_id(), got.unsigned_event_type()),
        (Some("evt_h"), Some("t_h"))
    );
}

#[test]
fn an_unsigned_id_type_or_timestamp_decides_nothing() {
    // GitHub signs the body only: its delivery GUID and event name are headers.
    let body = r#"{"zen":"hi"}"#;
    let signed = format!("sha256={}", hex_hmac("s", body));
    let v = verifier(preset("github"), &["s"], None);
    let pairs = [
        ("x-hub-signature-256", signed.as_str()),
        ("x-github-delivery", "guid-1"),
        ("x-github-event", "ping"),
    ];
    let got = check_at(&v, &pairs, body, 0).unwrap();
    assert_eq!((got.id(), got.event_type()), (None, None));
    assert_eq!(
        (got.unsigned_id(), got.unsigned_event_type()),
        (Some("guid-1"), Some("ping"))
    );
    // A timestamp read from a header the signature does not cover is not read.
    let scheme = descriptor(
        r#"algorithm = "hmac-sha256"
signature = { header = "sig" }
timestamp = { from = "header:ts" }
event = { id = "header:id", type = "header:kind" }"#,
    );
    let v = verifier(scheme, &["s"], None);
    let pairs = [
        ("sig", &hex_hmac("s", body)[..]),
        ("ts", "1700000000"),
        ("id", "i"),
        ("kind", "k"),
    ];
    let got = check_at(&v, &pairs, body, 0).unwrap();
    assert_eq!(
        (got.id(), got.event_type(), got.timestamp()),
        (None, None, None)
    );
    assert_eq!(
        (got.unsigned_id(), got.unsigned_event_type()),
        (Some("i"), Some("k"))
    );
}

// Computed vector from ../shared/vectors: rye-v1-url-verification-computed.
const RYE_V1_BODY: &str = "{\n  \"id\": \"e56b5b2b-40d4-491f-bab2-ecb96bc911a7\",\n  \"developerId\": \"mBdwaN3QWmmvZsNYuWPdLnzIbaDM\",\n  \"createdAt\": \"2024-07-22T14:30:04.367Z\",\n  \"type\": \"WEBHOOK_URL_VERIFICATION\",\n  \"data\": {\n    \"challenge\": \"8eaacf92948128c760d0a25af59231693b2f930fcf8bad61d780fa2796d923bec5bc64e6da55f17196b10a10850f0fa2\"\n  }\n}";

#[test]
fn rye_v1_vector_and_tampered() {
    let sig = [(
        "Rye-Hmac-Signature-V1",
        "b/xSWP2Nns+6icC7n7apnyUtB/iIf/f5iO2MrDDVjWU=",
    )];
    assert_eq!(
        check("rye-v1", &["test_webhook_secret_key"], &sig, RYE_V1_BODY),
        Ok(0)
    );
    let tampered = RYE_V1_BODY.replace("WEBHOOK_URL_VERIFICATION", "PRODUCT_UPDATED");
    assert_eq!(
        check("rye-v1", &["test_webhook_secret_key"], &sig, &tampered),
        Err(Rejection::SignatureMismatch)
    );
}

#[test]
fn aryeo_vector() {
    let body =
        r#"{"object":"EVENT","id":"00000000-0000-4000-8000-000000000000","name":"ORDER_CREATED"}"#;
    let sig = [(
        "Signature",
        "26cd5acc3a8dae7e1c0477265d5167f80f1c96a2fbc407065a9eff45a1c6d454",
    )];
    assert_eq!(check("aryeo", &["aryeo_test_secret"], &sig, body), Ok(0));
    assert_eq!(
        check("aryeo", &["aryeo_other_secret"], &sig, body),
        Err(Rejection::SignatureMismatch)
    );
}

#[test]
fn rotation_reports_which_secret_matched() {
    let sig = [("x-rye-signature", RYE_SIG)];
    assert_eq!(
        check("rye", &["old", "older", RYE_SECRET], &sig, RYE_BODY),
        Ok(2)
    );
}

#[test]
fn any_of_several_signature_headers_may_match() {
    let pairs = [
        ("x-rye-signature", "v0=00"),
        ("x-rye-signature", RYE_SIG),
        ("x-rye-signature", "junk"),
    ];
    assert_eq!(check("rye", &[RYE_SECRET], &pairs, RYE_BODY), Ok(0));
}

const GENERIC: &str = r#"
algorithm = "hmac-sha256"
signed = "{method} {url} {id}.{timestamp}.{body}"
signature = { header = "x-sig", prefix = "sha256=", encoding = "base64" }
timestamp = { from = "header:x-ts" }
event = { id = "header:x-id" }
"#;

fn generic_check(
    signed: &str,
    tolerance: Option<u64>,
    ts: i64,
    now: i64,
) -> Result<Verified, Rejection> {
    let scheme = descriptor(&GENERIC.replace("{method} {url} {id}.{timestamp}.{body}", signed));
    let v = verifier(Arc::clone(&scheme), &["k"], tolerance);
    let delivery = Delivery {
        method: "POST".into(),
        url: "http://gw/h".into(),
        content_type: "application/json".into(),
        body: b"{}".to_vec(),
        id: Some("evt_1".into()),
        time: ts,
        headers: Vec::new(),
    };
    let signed = sign(&scheme, b"k", &delivery).unwrap();
    let pairs: Vec<(&str, &str)> = signed
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    check_at(&v, &pairs, "{}", now)
}

#[test]
fn a_descriptor_template_covers_every_placeholder() {
    let got = generic_check("{method} {url} {id}.{timestamp}.{body}", None, 1000, 1000).unwrap();
    assert_eq!((got.id(), got.timestamp()), (Some("evt_1"), Some(1000)));
}

#[test]
fn tolerance_is_inclusive_and_applies_both_ways() {
    let t = "{timestamp}.{body}";
    assert!(generic_check(t, Some(300), 1000, 1300).is_ok());
    assert_eq!(
        generic_check(t, Some(300), 1000, 1301).unwrap_err(),
        Rejection::TimestampTooOld
    );
    assert!(generic_check(t, Some(300), 1000, 700).is_ok());
    assert_eq!(
        generic_check(t, Some(300), 1000, 699).unwrap_err(),
        Rejection::TimestampTooNew
    );
    assert!(
        generic_check(t, Some(0), 1000, 99_999).is_ok(),
        "0 turns the window off"
    );
}

#[test]
fn unsigned_timestamp_never_enforces_tolerance() {
    // The content does not contain {timestamp}: a stale header proves nothing either way.
    assert!(generic_check("{body}", Some(300), 1000, 99_999).is_ok());
}

#[test]
fn missing_signed_field_is_missing_signature() {
    let v = verifier(
        descriptor(&GENERIC.replace("{method} {url} {id}.", "")),
        &["k"],
        None,
    );
    assert_eq!(
        check_at(&v, &[("x-sig", "sha256=AAAA")], "{}", 0).unwrap_err(),
        Rejection::SignedHeaderMissing
    );
}

#[test]
fn unreadable_signed_timestamp_is_out_of_tolerance() {
    let scheme = descriptor(&GENERIC.replace("{method} {url} {id}.", ""));
    let mut mac = KeyedMac::new(HashAlg::Sha256, b"k");
    mac.update(b"soon.{}");
    let sig = format!(
        "sha256={}",
        scheme.signature.encoding.encode(&mac.finalize())
    );
    let v = verifier(scheme, &["k"], Some(5));
    let got = check_at(&v, &[("x-sig", &sig), ("x-ts", "soon")], "{}", 0);
    assert_eq!(got.unwrap_err(), Rejection::TimestampUnreadable);
}

#[test]
fn rye_tolerance_uses_signed_created_at() {
    let created = 1_776_742_070; // 2026-04-21T03:27:50Z
    let v = verifier(preset("rye"), &[RYE_SECRET], Some(60));
    let sig = [("x-rye-signature", RYE_SIG)];
    assert!(check_at(&v, &sig, RYE_BODY, created + 60).is_ok());
    assert_eq!(
        check_at(&v, &sig, RYE_BODY, created + 61).unwrap_err(),
        Rejection::TimestampTooOld
    );
    assert_eq!(
        check_at(&v, &sig, RYE_BODY, created - 61).unwrap_err(),
        Rejection::TimestampTooNew
    );
}

#[test]
fn verify_any_passes_on_either_scheme_and_explains_the_furthest_failure() {
    let both = [
        verifier(preset("rye-v1"), &[RYE_SECRET], None),
        verifier(preset("rye"), &[RYE_SECRET], None),
    ];
    let run = |pairs: &[(&str, &str)]| {
        let h = headers(pairs);
        let req = SignedRequest::new("POST", ("/h", None), &h, RYE_BODY.as_bytes(), URL);
        verify_any(&both, &req, 0).map(|v| (v.scheme().name.clone(), v.verifier_index()))
    };
    assert_eq!(
        run(&[("x-rye-signature", RYE_SIG)]),
        Ok(("rye".to_owned(), 1))
    );
    assert_eq!(
        run(&[("x-rye-signature", "v0=00")]),
        Err(Rejection::SignatureMismatch)
    );
    assert_eq!(run(&[]), Err(Rejection::SignatureMissing));
}

#[test]
fn hostile_signature_values_never_panic() {
    let values = [
        "",
        "v0=",
        "v0=zz",
        "v0=\t",
        "v0=0",
        &"v0=".repeat(2000),
        "  v0=  ",
    ];
    for v in values {
        assert!(
            check("rye", &[RYE_SECRET], &[("x-rye-signature", v)], RYE_BODY).is_err(),
            "{v:?} must not verify"
        );
    }
    let mut h = HeaderMap::new();
    h.insert(
        "x-rye-signature",
        HeaderValue::from_bytes(b"v0=\xff\xfe").unwrap(),
    );
    let req = SignedRequest::new("POST", ("/h", None), &h, RYE_BODY.as_bytes(), URL);
    let v = verifier(preset("rye"), &[RYE_SECRET], None);
    assert_eq!(
        v.verify(&req, 0).unwrap_err(),
        Rejection::SignatureMalformed
    );
}

#[test]
fn twilio_json_body_must_match_the_signed_body_hash() {
    let scheme = preset("twilio");
    let v = verifier(Arc::clone(&scheme), &["12345"], None);
    let body = r#"{"property": "value", "boolean": true}"#;
    let delivery = Delivery {
        method: "POST".into(),
        url: "https://mycompany.com/myapp.php?foo=1&bar=2".into(),
        content_type: "application/json".into(),
        body: body.as_bytes().to_vec(),
        id: None,
        time: 0,
        headers: Vec::new(),
    };
    let signed = sign(&scheme, b"12345", &delivery).unwrap();
    assert!(
        signed.url.ends_with(
            "&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        )
    );
    let (h, parts, query) = as_received(&signed);
    let ok = SignedRequest::new(
        "POST",
        ("/myapp.php", Some(query)),
        &h,
        body.as_bytes(),
        parts,
    );
    assert!(v.verify(&ok, 0).is_ok());
    let tampered = SignedRequest::new("POST", ("/myapp.php", Some(query)), &h, b"{}", parts);
    assert_eq!(v.verify(&tampered, 0).unwrap_err(), Rejection::BodyMismatch);
    let unhashed_query = "foo=1&bar=2";
    let no_hash = SignedRequest::new(
        "POST",
        ("/myapp.php", Some(unhashed_query)),
        &h,
        body.as_bytes(),
        parts,
    );
    assert!(
        v.verify(&no_hash, 0).is_err(),
        "a JSON body without bodySHA256 is not covered"
    );
}

/// Key material for a preset: the secret to verify with and the one to sign with.
fn keys_for(scheme: &Scheme) -> (String, String) {
    if let crate::scheme::signature::Format::Pairs { .. } = scheme.signature.format {
        let key = "round-trip-public|round-trip-secret".to_owned();
        return (key.clone(), key);
    }
    use base64::Engine as _;
    use ring::signature::KeyPair as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let seed = [7u8; 32];
    let ed = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    match (scheme.algorithm, scheme.key) {
        (crate::scheme::Algorithm::Ed25519, crate::scheme::KeyFormat::Hex) => {
            (hex::encode(ed.public_key().as_ref()), hex::encode(seed))
        }
        (crate::scheme::Algorithm::Ed25519, crate::scheme::KeyFormat::Base64) => {
            (b64.encode(ed.public_key().as_ref()), b64.encode(seed))
        }
        (crate::scheme::Algorithm::Ed25519, _) => {
            let mut pair = seed.to_vec();
            pair.extend_from_slice(ed.public_key().as_ref());
            (
                format!("whpk_{}", b64.encode(ed.public_key())),
                format!("whsk_{}", b64.encode(pair)),
            )
        }
        (crate::scheme::Algorithm::EcdsaP256Sha256, _) => {
            let rng = ring::rand::SystemRandom::new();
            let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
            let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let pair =
                ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
            let mut spki =
                hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
            spki.extend_from_slice(pair.public_key().as_ref());
            (b64.encode(spki), b64.encode(pkcs8.as_ref()))
        }
        (_, crate::scheme::KeyFormat::Whsec) => {
            let key = format!("whsec_{}", b64.encode(b"round-trip-key-32-bytes-long!!!!"));
            (key.clone(), key)
        }
        (_, crate::scheme::KeyFormat::Hex) => {
            let key = hex::encode(b"round-trip-key");
            (key.clone(), key)
        }
        (_, crate::scheme::KeyFormat::Base64) => {
            let key = b64.encode(b"round-trip-key");
            (key.clone(), key)
        }
        _ => (
            "round-trip-secret".to_owned(),
            "round-trip-secret".to_owned(),
        ),
    }
}

#[test]
fn a_token_in_the_query_is_read_decoded_and_compared() {
    let v = verifier(preset("mailchimp"), &["s3cr+t"], None);
    let h = headers(&[("content-type", "application/x-www-form-urlencoded")]);
    let at = |query| {
        let req = SignedRequest::new("POST", ("/h", Some(query)), &h, b"type=subscribe", URL);
        v.verify(&req, 0).map(|_| ())
    };
    assert_eq!(at("a=1&secret=s3cr%2Bt"), Ok(()));
    assert_eq!(at("secret=s3cr+t"), Err(Rejection::SignatureMismatch));
    assert_eq!(at("secret=other"), Err(Rejection::SignatureMismatch));
    assert_eq!(at("a=1"), Err(Rejection::SignatureMissing));
}

#[test]
fn an_optional_signed_field_counts_as_empty_when_absent() {
    let scheme = descriptor(
        r#"
algorithm = "hmac-sha256"
signed = "{optional:json:/a}:{optional:json:/b}"
signature = { header = "x-sig" }
"#,
    );
    let mac = |text: &str| {
        let mut mac = KeyedMac::new(HashAlg::Sha256, b"k");
        mac.update(text.as_bytes());
        hex::encode(mac.finalize())
    };
    let v = verifier(scheme, &["k"], None);
    let sig = mac("1:");
    assert!(check_at(&v, &[("x-sig", &sig)], r#"{"a":1}"#, 0).is_ok());
    assert!(check_at(&v, &[("x-sig", &sig)], r#"{"a":1,"b":""}"#, 0).is_ok());
    assert_eq!(
        check_at(&v, &[("x-sig", &sig)], r#"{"a":1,"b":2}"#, 0).unwrap_err(),
        Rejection::SignatureMismatch
    );
}

#[test]
fn a_scheme_signing_only_form_fields_refuses_other_bodies() {
    let scheme = preset("mandrill");
    assert!(scheme.signs_form_only() && !preset("twilio").signs_form_only());
    let v = verifier(Arc::clone(&scheme), &["key"], None);
    let form = Delivery {
        method: "POST".into(),
        url: "https://hooks.example.com/in?x=1".into(),
        content_type: "application/x-www-form-urlencoded".into(),
        body: b"mandrill_events=%5B%5D".to_vec(),
        id: None,
        time: 0,
        headers: Vec::new(),
    };
    let signed = sign(&scheme, b"key", &form).unwrap();
    let (mut h, parts, query) = as_received(&signed);
    let req = SignedRequest::new("POST", ("/in", Some(query)), &h, &signed.body, parts);
    assert!(v.verify(&req, 0).is_ok());
    // The same signature over no form fields, with a JSON body instead.
    let json = signed_without_fields(&scheme, &form);
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert("x-mandrill-signature", json.parse().unwrap());
    let req = SignedRequest::new("POST", ("/in", Some(query)), &h, br#"{"a":1}"#, parts);
    assert_eq!(v.verify(&req, 0).unwrap_err(), Rejection::BodyMismatch);
    let empty = SignedRequest::new("POST", ("/in", Some(query)), &h, b"", parts);
    assert!(v.verify(&empty, 0).is_ok());
}

/// A POST of `body` as JSON to `https://hooks.example.com/in?x=1`.
fn json_post(body: &[u8]) -> Delivery {
    Delivery {
        method: "POST".into(),
        url: "https://hooks.example.com/in?x=1".into(),
        content_type: "application/json".into(),
        body: body.to_vec(),
        id: None,
        time: 0,
        headers: Vec::new(),
    }
}

/// X's CRC answer is the HMAC of the token, which would sign a delivery whose
/// body is that token: the `twitter` scheme accepts only JSON bodies.
#[test]
fn a_json_only_scheme_refuses_other_signed_bodies() {
    let scheme = preset("twitter");
    let v = verifier(Arc::clone(&scheme), &["consumer-secret"], None);
    let signed_body = |body: &[u8]| sign(&scheme, b"consumer-secret", &json_post(body)).unwrap();
    for body in [
        &b"ZTcyNDcyYjYtN2RkZC00OGE2"[..],
        b"",
        b"\"{}\"",
        b"1",
        b"{} {}",
    ] {
        let signed = signed_body(body);
        let (h, parts, query) = as_received(&signed);
        let req = SignedRequest::new("POST", ("/in", Some(query)), &h, body, parts);
        assert_eq!(
            v.verify(&req, 0).unwrap_err(),
            Rejection::BodyNotJson,
            "{body:?}"
        );
    }
    for body in [&br#"{"for_user_id":"1"}"#[..], b" [1]\n"] {
        let signed = signed_body(body);
        let (h, parts, query) = as_received(&signed);
        let req = SignedRequest::new("POST", ("/in", Some(query)), &h, body, parts);
        assert!(v.verify(&req, 0).is_ok(), "{body:?}");
    }
}

/// A signed body holding a member the scheme reads twice (at any level of
/// its pointer) means one thing to the gateway and maybe another to the app:
/// refused, and answered 400. A repeated member nothing reads is no matter.
#[test]
fn a_member_the_scheme_reads_twice_is_refused() {
    let scheme = descriptor(
        "algorithm = \"hmac-sha256\"\nsignature = { header = \"X-Sig\" }\n\
         event = { id = \"json:/data/id\", type = \"json:/type\" }",
    );
    let v = verifier(Arc::clone(&scheme), &["k"], None);
    let mac = |body: &str| {
        let signed = sign(&scheme, b"k", &json_post(body.as_bytes())).unwrap();
        let (_, sig) = signed
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("X-Sig"))
            .unwrap();
        sig.clone()
    };
    let verify = |body: &str| check_at(&v, &[("X-Sig", &mac(body))], body, 0);
    let fine = r#"{"type":"t","data":{"id":"e1"},"pad":{"x":1,"x":2},"other":1,"other":2}"#;
    assert_eq!(verify(fine).unwrap().id(), Some("e1"));
    for twice in [
        r#"{"type":"evil","type":"t","data":{"id":"e1"}}"#,
        r#"{"type":"t","data":{"id":"evil","id":"e1"}}"#,
        r#"{"type":"t","data":{"id":"evil"},"data":{"id":"e1"}}"#,
        r#"{"typ\u0065":"evil","type":"t","data":{"id":"e1"}}"#,
    ] {
        assert_eq!(
            verify(twice).unwrap_err(),
            Rejection::DuplicateKey,
            "{twice}"
        );
    }
    assert_eq!(
        crate::reject::ErrorCode::from(Rejection::DuplicateKey).as_str(),
        "bad_request"
    );
}

/// Mandrill's signature of `delivery`'s URL with no form fields.
fn signed_without_fields(scheme: &Scheme, delivery: &Delivery) -> String {
    let empty = Delivery {
        body: Vec::new(),
        ..delivery.clone()
    };
    let signed = sign(scheme, b"key", &empty).unwrap();
    signed
        .headers
        .into_iter()
        .find(|(n, _)| n == "x-mandrill-signature")
        .unwrap()
        .1
}

// Braintree's SDK tests (braintree_ruby, braintree_python, braintree_node):
// `verify("20f9f8ed05f77439fe955c977e4c8a53")` under the integration keys is
// `integration_public_key|d9b899556c966b3f06945ec21311865d35df3ce4`, made by
// the same digest as a payload's signature.
const BT_KEYS: &str = "integration_public_key|integration_private_key";
const BT_PAYLOAD: &str = "20f9f8ed05f77439fe955c977e4c8a53";
const BT_SIGNATURE: &str = "integration_public_key|d9b899556c966b3f06945ec21311865d35df3ce4";

/// Braintree's form body of `fields`, checked with `keys`.
fn braintree(keys: &[&str], fields: &[(&str, &str)]) -> Result<usize, Rejection> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(fields);
    let form_type = [("content-type", "application/x-www-form-urlencoded")];
    check("braintree", keys, &form_type, &form.finish())
}

#[test]
fn braintree_picks_the_pair_of_its_public_key() {
    let pair = |keys: &[&str], signature: &str, payload: &str| {
        braintree(
            keys,
            &[("bt_signature", signature), ("bt_payload", payload)],
        )
    };
    let mismatch = Err(Rejection::SignatureMismatch);
    assert_eq!(pair(&[BT_KEYS], BT_SIGNATURE, BT_PAYLOAD), Ok(0));
    let wrong_private = "integration_public_key|other_private_key";
    assert_eq!(pair(&[wrong_private], BT_SIGNATURE, BT_PAYLOAD), mismatch);
    // The right signature under another public key counts for nothing.
    let other_key = BT_SIGNATURE.replace("integration_public_key", "other_public_key");
    assert_eq!(pair(&[BT_KEYS], &other_key, BT_PAYLOAD), mismatch);
    // Several pairs: the route's is found among them; rotation across key pairs.
    let both = format!("other_public_key|{}&{BT_SIGNATURE}", "ab".repeat(20));
    assert_eq!(
        pair(&["other_public_key|x", BT_KEYS], &both, BT_PAYLOAD),
        Ok(1)
    );
    let tampered = "20f9f8ed05f77439fe955c977e4c8a54";
    assert_eq!(pair(&[BT_KEYS], BT_SIGNATURE, tampered), mismatch);
    // Compared as sent: a space around the signature is not Braintree's.
    let spaced = format!("{BT_SIGNATURE} ");
    assert_eq!(
        pair(&[BT_KEYS], &spaced, BT_PAYLOAD),
        Err(Rejection::SignatureMalformed)
    );
}

#[test]
fn braintree_accepts_the_payload_signed_with_a_trailing_newline() {
    // The SDKs try the payload, then the payload followed by "\n" (a framework
    // may have trimmed it); never the payload without its own last newline.
    let key = super::key::decode(crate::scheme::KeyFormat::Sha1, b"private").unwrap();
    let mut mac = KeyedMac::new(HashAlg::Sha1, &key);
    mac.update(b"PD94\n");
    let signature = format!("public|{}", hex::encode(mac.finalize()));
    let keys = ["public|private"];
    assert_eq!(
        braintree(
            &keys,
            &[("bt_signature", &signature), ("bt_payload", "PD94\n")]
        ),
        Ok(0)
    );
    assert_eq!(
        braintree(
            &keys,
            &[("bt_signature", &signature), ("bt_payload", "PD94")]
        ),
        Ok(0)
    );
    assert_eq!(
        braintree(
            &keys,
            &[("bt_signature", &signature), ("bt_payload", "PD94\n\n")]
        ),
        Err(Rejection::SignatureMismatch)
    );
}

#[test]
fn braintree_refuses_a_form_with_more_than_its_two_fields() {
    // A second `bt_payload` could be the one the app reads.
    let repeated = [
        ("bt_signature", BT_SIGNATURE),
        ("bt_payload", BT_PAYLOAD),
        ("bt_payload", "PGV2aWw+"),
    ];
    assert_eq!(
        braintree(&[BT_KEYS], &repeated),
        Err(Rejection::BodyMismatch)
    );
    let extra = [
        ("bt_signature", BT_SIGNATURE),
        ("bt_payload", BT_PAYLOAD),
        ("kind", "x"),
    ];
    assert_eq!(braintree(&[BT_KEYS], &extra), Err(Rejection::BodyMismatch));
    let twice = [
        ("bt_signature", BT_SIGNATURE),
        ("bt_signature", BT_SIGNATURE),
        ("bt_payload", BT_PAYLOAD),
    ];
    assert_eq!(braintree(&[BT_KEYS], &twice), Err(Rejection::BodyMismatch));
    let no_payload = [("bt_signature", BT_SIGNATURE)];
    assert_eq!(
        braintree(&[BT_KEYS], &no_payload),
        Err(Rejection::SignedHeaderMissing)
    );
    // The same fields as a JSON body are not a form.
    let json = format!(r#"{{"bt_signature":"{BT_SIGNATURE}","bt_payload":"{BT_PAYLOAD}"}}"#);
    assert_eq!(
        check(
            "braintree",
            &[BT_KEYS],
            &[("content-type", "application/json")],
            &json
        ),
        Err(Rejection::SignatureMissing)
    );
}

#[test]
fn a_scheme_signing_optional_form_fields_refuses_other_bodies() {
    let scheme = descriptor(
        r#"
algorithm = "hmac-sha256"
signed = "{optional:form:payload}"
signature = { header = "x-sig" }
"#,
    );
    let v = verifier(scheme, &["k"], None);
    let mut mac = KeyedMac::new(HashAlg::Sha256, b"k");
    mac.update(b"");
    let sig = hex::encode(mac.finalize());
    let form = "application/x-www-form-urlencoded";
    let at = |content_type: &str, body: &str| {
        let pairs = [("x-sig", sig.as_str()), ("content-type", content_type)];
        check_at(&v, &pairs, body, 0).map(|_| ())
    };
    assert_eq!(at(form, ""), Ok(()));
    assert_eq!(at(form, "payload="), Ok(()));
    assert_eq!(at(form, "other=1"), Err(Rejection::BodyMismatch));
    assert_eq!(
        at("application/json", r#"{"a":1}"#),
        Err(Rejection::BodyMismatch)
    );
}

#[test]
fn braintree_secrets_must_carry_their_public_key() {
    let error = Verifier::new(preset("braintree"), &secrets(&["SECRETVALUE"]), None).unwrap_err();
    assert_eq!(error.0, 0);
    assert!(
        error.1.contains("public_key|private_key") && !error.1.contains("SECRETVALUE"),
        "{}",
        error.1
    );
}

/// The body to sign for `scheme`: `body` itself, or for a scheme that signs
/// named form fields (Braintree), a form carrying `body` in each of them.
fn body_for(scheme: &Scheme, body: &[u8]) -> Vec<u8> {
    if !scheme.signs_named_form_fields() {
        return body.to_vec();
    }
    let text = String::from_utf8_lossy(body);
    let mut form = form_urlencoded::Serializer::new(String::new());
    for field in scheme.signed_form_fields() {
        form.append_pair(field, &text);
    }
    form.finish().into_bytes()
}

#[test]
fn every_preset_verifies_what_it_signs() {
    for (name, scheme) in presets::signable() {
        let (verify_key, sign_key) = keys_for(scheme);
        let v = verifier(Arc::clone(scheme), &[&verify_key], None);
        let now = 1_700_000_000;
        let body = r#"{"id":"evt_1","type":"t","signature":{"token":"tok"},"value":[{"subscriptionId":"s"}]}"#;
        let content_type = if scheme.signs_form_only() {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        let delivery = Delivery {
            method: "POST".into(),
            url: "https://hooks.example.com/in?x=1".into(),
            content_type: content_type.into(),
            body: body_for(scheme, body.as_bytes()),
            id: None,
            time: now,
            headers: Vec::new(),
        };
        let signed =
            sign(scheme, sign_key.as_bytes(), &delivery).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (h, parts, query) = as_received(&signed);
        let req = SignedRequest::new("POST", ("/in", Some(query)), &h, &signed.body, parts);
        let got = v
            .verify(&req, now)
            .unwrap_or_else(|r| panic!("{name}: {r:?} for {signed:?}"));
        assert_eq!(got.scheme().name, *name);
        let mut tampered = signed.body.clone();
        tampered.extend_from_slice(b" ");
        let tampered_req = SignedRequest::new("POST", ("/in", Some(query)), &h, &tampered, parts);
        assert_eq!(
            v.verify(&tampered_req, now).is_err(),
            scheme.covers_body(),
            "{name}: tampered body"
        );
    }
}

mod properties;
