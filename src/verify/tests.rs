//! Unit tests for verification: published seed vectors, rotation, tolerance,
//! several verifiers on one route, and hostile header values.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::mac::{Algorithm, Encoding, KeyedMac};
use super::presets::builtin;
use super::request::{SignedRequest, UrlParts};
use super::scheme::{FieldSource, Scheme, SignatureSpec, TimeFormat, TimestampSpec};
use super::template::Template;
use super::{Rejection, Verifier, verify_any};
use crate::config::secret::Secret;

const URL: UrlParts<'static> = UrlParts {
    public_url: None,
    remainder: "",
    host: "gw",
    path: "/h",
    query: None,
};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

fn secrets(list: &[&str]) -> Vec<Secret> {
    list.iter()
        .map(|s| Secret::new(s.as_bytes().to_vec()))
        .collect()
}

fn check(
    scheme: &str,
    keys: &[&str],
    pairs: &[(&str, &str)],
    body: &str,
) -> Result<usize, Rejection> {
    let verifier = Verifier::new(builtin(scheme).unwrap(), &secrets(keys), None);
    let h = headers(pairs);
    let req = SignedRequest::new("POST", &h, body.as_bytes(), URL);
    verifier.verify(&req, 0).map(|v| v.secret_index())
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

#[test]
fn rye_metadata_prefers_headers_then_body() {
    let verifier = Verifier::new(builtin("rye").unwrap(), &secrets(&[RYE_SECRET]), None);
    let h = headers(&[("x-rye-signature", RYE_SIG)]);
    let req = SignedRequest::new("POST", &h, RYE_BODY.as_bytes(), URL);
    let v = verifier.verify(&req, 0).unwrap();
    assert_eq!(v.scheme().name, "rye");
    assert_eq!(
        v.id(),
        Some("evt_ci_acf8e2c44f4c4583bd5b58d291242bb2_awaiting_confirmation")
    );
    assert_eq!(v.event_type(), Some("checkout_intent.offer_retrieved"));
    assert_eq!(v.timestamp(), Some(1_776_742_070));

    let h = headers(&[
        ("x-rye-signature", RYE_SIG),
        ("x-rye-event-id", "evt_h"),
        ("x-rye-topic", "t_h"),
    ]);
    let req = SignedRequest::new("POST", &h, RYE_BODY.as_bytes(), URL);
    let v = verifier.verify(&req, 0).unwrap();
    assert_eq!((v.id(), v.event_type()), (Some("evt_h"), Some("t_h")));
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

fn generic(template: &str, tolerance: Option<u64>) -> Scheme {
    Scheme {
        name: "hmac".to_owned(),
        algorithm: Algorithm::Sha256,
        signature: SignatureSpec {
            header: HeaderName::from_static("x-sig"),
            prefix: "sha256=".to_owned(),
            encoding: Encoding::Base64,
        },
        signed_content: Template::parse(template).unwrap(),
        timestamp: Some(TimestampSpec {
            source: FieldSource::Header(HeaderName::from_static("x-ts")),
            format: TimeFormat::UnixSeconds,
        }),
        id: vec![FieldSource::Header(HeaderName::from_static("x-id"))],
        event_type: Vec::new(),
        default_tolerance_secs: tolerance,
        handshake: None,
    }
}

fn sign(template_text: &str, secret: &str, ts: &str, id: &str, body: &str) -> String {
    let text = template_text
        .replace("{timestamp}", ts)
        .replace("{id}", id)
        .replace("{method}", "POST")
        .replace("{url}", "http://gw/h")
        .replace("{body}", body);
    let mut mac = KeyedMac::new(Algorithm::Sha256, secret.as_bytes());
    mac.update(text.as_bytes());
    format!("sha256={}", Encoding::Base64.encode(&mac.finalize()))
}

fn generic_check(
    template: &str,
    tolerance: Option<u64>,
    ts: i64,
    now: i64,
) -> Result<usize, Rejection> {
    let sig = sign(template, "k", &ts.to_string(), "evt_1", "{}");
    let verifier = Verifier::new(
        Arc::new(generic(template, tolerance)),
        &secrets(&["k"]),
        None,
    );
    let h = headers(&[
        ("x-sig", &sig),
        ("x-ts", &ts.to_string()),
        ("x-id", "evt_1"),
    ]);
    let req = SignedRequest::new("POST", &h, b"{}", URL);
    verifier.verify(&req, now).map(|v| v.secret_index())
}

#[test]
fn generic_template_covers_every_placeholder() {
    let t = "{method} {url} {id}.{timestamp}.{body}";
    assert_eq!(generic_check(t, None, 1000, 1000), Ok(0));
}

#[test]
fn tolerance_is_inclusive_and_applies_both_ways() {
    let t = "{timestamp}.{body}";
    assert_eq!(generic_check(t, Some(300), 1000, 1300), Ok(0));
    assert_eq!(
        generic_check(t, Some(300), 1000, 1301),
        Err(Rejection::TimestampTooOld)
    );
    assert_eq!(generic_check(t, Some(300), 1000, 700), Ok(0));
    assert_eq!(
        generic_check(t, Some(300), 1000, 699),
        Err(Rejection::TimestampTooNew)
    );
}

#[test]
fn unsigned_timestamp_never_enforces_tolerance() {
    // The payload does not contain {timestamp}: a stale header proves nothing either way.
    assert_eq!(generic_check("{body}", Some(300), 1000, 99_999), Ok(0));
}

#[test]
fn missing_signed_header_is_missing_signature() {
    let verifier = Verifier::new(
        Arc::new(generic("{timestamp}.{body}", None)),
        &secrets(&["k"]),
        None,
    );
    let h = headers(&[("x-sig", "sha256=AAAA")]);
    let req = SignedRequest::new("POST", &h, b"{}", URL);
    assert_eq!(
        verifier.verify(&req, 0).unwrap_err(),
        Rejection::SignedHeaderMissing
    );
}

#[test]
fn unreadable_signed_timestamp_is_out_of_tolerance() {
    let sig = sign("{timestamp}.{body}", "k", "soon", "", "{}");
    let verifier = Verifier::new(
        Arc::new(generic("{timestamp}.{body}", Some(5))),
        &secrets(&["k"]),
        None,
    );
    let h = headers(&[("x-sig", &sig), ("x-ts", "soon")]);
    let req = SignedRequest::new("POST", &h, b"{}", URL);
    assert_eq!(
        verifier.verify(&req, 0).unwrap_err(),
        Rejection::TimestampUnreadable
    );
}

#[test]
fn rye_tolerance_uses_signed_created_at() {
    let created = 1_776_742_070; // 2026-04-21T03:27:50Z
    let verifier = Verifier::new(builtin("rye").unwrap(), &secrets(&[RYE_SECRET]), Some(60));
    let h = headers(&[("x-rye-signature", RYE_SIG)]);
    let req = SignedRequest::new("POST", &h, RYE_BODY.as_bytes(), URL);
    assert!(verifier.verify(&req, created + 60).is_ok());
    assert_eq!(
        verifier.verify(&req, created + 61).unwrap_err(),
        Rejection::TimestampTooOld
    );
    assert_eq!(
        verifier.verify(&req, created - 61).unwrap_err(),
        Rejection::TimestampTooNew
    );
}

#[test]
fn verify_any_passes_on_either_scheme_and_explains_the_furthest_failure() {
    let v1 = Verifier::new(builtin("rye-v1").unwrap(), &secrets(&[RYE_SECRET]), None);
    let v0 = Verifier::new(builtin("rye").unwrap(), &secrets(&[RYE_SECRET]), None);
    let both = [v1, v0];
    let h = headers(&[("x-rye-signature", RYE_SIG)]);
    let req = SignedRequest::new("POST", &h, RYE_BODY.as_bytes(), URL);
    assert_eq!(verify_any(&both, &req, 0).unwrap().scheme().name, "rye");

    let h = headers(&[("x-rye-signature", "v0=00")]);
    let req = SignedRequest::new("POST", &h, RYE_BODY.as_bytes(), URL);
    assert_eq!(
        verify_any(&both, &req, 0).unwrap_err(),
        Rejection::SignatureMismatch
    );

    let h = HeaderMap::new();
    let req = SignedRequest::new("POST", &h, RYE_BODY.as_bytes(), URL);
    assert_eq!(
        verify_any(&both, &req, 0).unwrap_err(),
        Rejection::SignatureMissing
    );
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
        let r = check("rye", &[RYE_SECRET], &[("x-rye-signature", v)], RYE_BODY);
        assert!(r.is_err(), "{v:?} must not verify");
    }
    let mut h = HeaderMap::new();
    h.insert(
        "x-rye-signature",
        HeaderValue::from_bytes(b"v0=\xff\xfe").unwrap(),
    );
    let verifier = Verifier::new(builtin("rye").unwrap(), &secrets(&[RYE_SECRET]), None);
    let req = SignedRequest::new("POST", &h, RYE_BODY.as_bytes(), URL);
    assert_eq!(
        verifier.verify(&req, 0).unwrap_err(),
        Rejection::SignatureMalformed
    );
}
