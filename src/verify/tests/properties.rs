//! Properties over arbitrary bodies, for every built-in scheme (each can be
//! signed locally): what is signed verifies at a fixed clock, and a change of
//! one byte of the body, the signature or the signed timestamp is refused.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{as_received, body_for, keys_for, verifier};
use crate::scheme::signature::{Format, Location};
use crate::scheme::source::Source;
use crate::scheme::{BodyFormat, Scheme, presets};
use crate::verify::Verifier;
use crate::verify::request::SignedRequest;
use crate::verify::sign::{Delivery, SignedDelivery, sign};

/// The clock, for signing and verifying alike.
const NOW: i64 = 1_700_000_000;
/// [`NOW`] as Rye's `createdAt` writes it.
const CREATED_AT: &str = "2023-11-14T22:13:20Z";
/// Cases per property: each case signs and verifies with every preset.
const CASES: u32 = 32;

/// Schemes whose signature does not cover the body: a token compared as sent
/// (`gitlab`, `msgraph`, `okta` and the other `token` schemes), a JWT over its
/// own claims (`monday`), Mailgun's signature over its timestamp and token
/// fields, and Adyen's over fields of the first notification item.
const BODY_NOT_COVERED: [&str; 29] = [
    "adyen",
    "adyen-basic-auth",
    "aircall",
    "auth0",
    "azure-devops",
    "azure-event-grid",
    "chargebee",
    "cloudevents",
    "contentful",
    "datocms",
    "figma",
    "flutterwave",
    "gitlab",
    "google-channels",
    "lark",
    "mailchimp",
    "mailgun",
    "monday",
    "msgraph",
    "okta",
    "onedrive",
    "pipedrive",
    "postmark",
    "prismic",
    "revenuecat",
    "ringcentral",
    "sharepoint",
    "strapi",
    "telegram",
];

/// A preset with the key that verifies it and the one that signs for it.
struct Signer {
    name: &'static str,
    scheme: Arc<Scheme>,
    verifier: Verifier,
    sign_key: String,
}

/// Every preset, with keys made once (ECDSA keys are random).
fn signers() -> &'static [Signer] {
    static SIGNERS: OnceLock<Vec<Signer>> = OnceLock::new();
    SIGNERS.get_or_init(|| {
        presets::signable()
            .map(|(name, scheme)| {
                let (verify_key, sign_key) = keys_for(scheme);
                Signer {
                    name,
                    scheme: Arc::clone(scheme),
                    verifier: verifier(Arc::clone(scheme), &[&verify_key], None),
                    sign_key,
                }
            })
            .collect()
    })
}

/// Whether signing needs a JSON body: the scheme accepts only JSON, or places
/// or reads a field of it.
fn needs_json(scheme: &Scheme) -> bool {
    let is_json = |s: &Source| matches!(s, Source::Json(_));
    scheme.body_format == BodyFormat::Json
        || matches!(scheme.signature.location, Location::Json(_))
        || scheme
            .timestamp
            .as_ref()
            .is_some_and(|t| is_json(&t.source))
        || scheme.id.first().is_some_and(is_json)
        || scheme.signed.fields().any(is_json)
}

/// A JSON body with the members some schemes need (Mailgun's signature token,
/// Microsoft Graph's notification list, Rye's `createdAt`: signing adds no
/// member a scheme only reads), arbitrary values in them, and arbitrary other
/// members.
fn json_body() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let others = prop::collection::btree_map("x[a-z]{0,6}", value, 0..5);
    (any::<String>(), any::<String>(), others).prop_map(|(token, state, others)| {
        let mut body: Map<String, Value> = others.into_iter().collect();
        body.insert("signature".into(), serde_json::json!({ "token": token }));
        body.insert("createdAt".into(), CREATED_AT.into());
        body.insert(
            "value".into(),
            serde_json::json!([{ "subscriptionId": state }]),
        );
        serde_json::to_vec(&body).unwrap()
    })
}

/// `wanted`, or a form's type for a scheme that accepts form bodies only.
fn content_type<'a>(scheme: &Scheme, wanted: &'a str) -> &'a str {
    if scheme.signs_form_only() {
        "application/x-www-form-urlencoded"
    } else {
        wanted
    }
}

fn delivery(body: &[u8], content_type: &str) -> Delivery {
    Delivery {
        method: "POST".into(),
        url: "https://hooks.example.com/in?x=1".into(),
        content_type: content_type.into(),
        body: body.to_vec(),
        id: None,
        time: NOW,
        headers: Vec::new(),
    }
}

fn signed(signer: &Signer, delivery: &Delivery) -> SignedDelivery {
    let delivery = Delivery {
        body: body_for(&signer.scheme, &delivery.body),
        content_type: content_type(&signer.scheme, &delivery.content_type).to_owned(),
        ..delivery.clone()
    };
    sign(&signer.scheme, signer.sign_key.as_bytes(), &delivery)
        .unwrap_or_else(|e| panic!("{}: {e}", signer.name))
}

/// Whether `signed` verifies under `signer` at [`NOW`].
fn verifies(signer: &Signer, signed: &SignedDelivery) -> bool {
    let (headers, parts, query) = as_received(signed);
    let req = SignedRequest::new("POST", ("/in", Some(query)), &headers, &signed.body, parts);
    signer.verifier.verify(&req, NOW).is_ok()
}

/// `text` with the byte at `at` (modulo its length) replaced by `byte`, or
/// `None` when that byte is already there.
fn change(text: &[u8], at: usize, byte: u8) -> Option<Vec<u8>> {
    let at = at % text.len();
    let mut changed = text.to_vec();
    (changed[at] != byte).then(|| {
        changed[at] = byte;
        changed
    })
}

/// `signed` with one byte of the value of header `name` changed (the value
/// stays one that can be sent). `None` when nothing changed, or when the
/// change only flips the case of a letter, which may spell the same value
/// (hex digits, the `Bearer` keyword).
fn change_header(
    signed: &SignedDelivery,
    name: &str,
    at: usize,
    byte: u8,
) -> Option<SignedDelivery> {
    let (index, value) = signed
        .headers
        .iter()
        .enumerate()
        .find_map(|(i, (n, v))| n.eq_ignore_ascii_case(name).then_some((i, v)))?;
    let changed = String::from_utf8(change(value.as_bytes(), at, byte)?).ok()?;
    // A hex signature reads the same in either case, and the kv format splits
    // its fields at its separator or whitespace alike (`t=1, v1=…` is
    // `t=1  v1=…`): neither is a change of what was signed.
    let spelled = |text: &str| -> Vec<u8> {
        text.bytes()
            .map(|b| match b {
                b',' | b';' | b'\t' => b' ',
                b => b.to_ascii_lowercase(),
            })
            .collect()
    };
    if spelled(&changed) == spelled(value) {
        return None;
    }
    let mut out = signed.clone();
    out.headers[index].1 = changed;
    Some(out)
}

/// `signed` with one byte of `part` of its body changed; `None` when only the
/// case of a letter flips.
fn change_in_body(
    signed: &SignedDelivery,
    part: &str,
    at: usize,
    byte: u8,
) -> Option<SignedDelivery> {
    let start = signed
        .body
        .windows(part.len())
        .position(|w| w == part.as_bytes())?;
    let changed = change(part.as_bytes(), at, byte)?;
    // As for headers: a hex signature reads the same in either case.
    if changed.eq_ignore_ascii_case(part.as_bytes()) {
        return None;
    }
    let mut out = signed.clone();
    out.body[start..start + part.len()].copy_from_slice(&changed);
    Some(out)
}

/// The signature as sent, one byte changed.
fn change_signature(
    signer: &Signer,
    signed: &SignedDelivery,
    at: usize,
    byte: u8,
) -> Option<SignedDelivery> {
    match &signer.scheme.signature.location {
        Location::Headers(names) => change_header(signed, names[0].as_str(), at, byte),
        Location::Json(pointer) => {
            let value = crate::json::JsonBody::new(&signed.body).text_at(pointer)?;
            change_in_body(signed, &value, at, byte)
        }
        Location::Form(name) => {
            let prefix = format!("{name}=");
            let body = std::str::from_utf8(&signed.body).ok()?;
            let value = body.split('&').find_map(|p| p.strip_prefix(&prefix))?;
            change_in_body(signed, value, at, byte)
        }
        Location::Query(name) => change_query(signed, name, at, byte),
    }
}

/// `signed` with one byte of the value of query parameter `name` changed to an
/// ASCII letter or digit (so the URL stays one that can be sent); `None` when
/// the byte is another one, or when only the case of a letter flips (a
/// percent-escape's hex digit spells the same byte either way).
fn change_query(
    signed: &SignedDelivery,
    name: &str,
    at: usize,
    byte: u8,
) -> Option<SignedDelivery> {
    if !byte.is_ascii_alphanumeric() {
        return None;
    }
    let (base, query) = signed.url.split_once('?')?;
    let mut pairs: Vec<String> = query.split('&').map(str::to_owned).collect();
    let pair = pairs
        .iter_mut()
        .find(|p| p.split_once('=').is_some_and(|(k, _)| k == name))?;
    let value = &pair[name.len() + 1..];
    let changed = String::from_utf8(change(value.as_bytes(), at, byte)?).ok()?;
    if changed.eq_ignore_ascii_case(value) {
        return None;
    }
    *pair = format!("{name}={changed}");
    let mut out = signed.clone();
    out.url = format!("{base}?{}", pairs.join("&"));
    Some(out)
}

/// The signed timestamp as sent, one byte changed; `None` for a scheme
/// without one, and for Monday's, inside the JWT's signed part (changing a
/// byte of the token is [`change_signature`]).
fn change_timestamp(
    signer: &Signer,
    signed: &SignedDelivery,
    at: usize,
    byte: u8,
) -> Option<SignedDelivery> {
    let scheme = &signer.scheme;
    let spec = scheme
        .timestamp
        .as_ref()
        .filter(|_| scheme.timestamp_is_signed())?;
    let text = spec.format.format(NOW);
    match (&spec.source, &scheme.signature.location) {
        (Source::Header(name), _) => change_header(signed, name.as_str(), at, byte),
        (Source::Json(_), _) => {
            let count = signed
                .body
                .windows(text.len())
                .filter(|w| *w == text.as_bytes())
                .count();
            (count == 1).then(|| change_in_body(signed, &text, at, byte))?
        }
        (Source::Signature(_), Location::Headers(names))
            if scheme.signature.format != Format::Jwt =>
        {
            let (_, value) = signed
                .headers
                .iter()
                .find(|(n, _)| names[0] == n.as_str())?;
            let start = value.find(&text)?;
            change_header(signed, names[0].as_str(), start + at % text.len(), byte)
        }
        _ => None,
    }
}

/// What a property needs of one case: a body and where to change a byte.
fn case() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, usize, u8)> {
    let byte = prop_oneof![0x20u8..=0x7e, 0x80u8..=0xff];
    (
        prop::collection::vec(any::<u8>(), 1..512),
        json_body(),
        any::<usize>(),
        byte,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn every_preset_verifies_what_it_signs_over_arbitrary_bodies((bytes, json, _, _) in case()) {
        for signer in signers() {
            let json_delivery = delivery(&json, content_type(&signer.scheme, "application/json"));
            prop_assert!(verifies(signer, &signed(signer, &json_delivery)), "{}: JSON body", signer.name);
            if !needs_json(&signer.scheme) {
                let raw = delivery(&bytes, content_type(&signer.scheme, "application/octet-stream"));
                prop_assert!(verifies(signer, &signed(signer, &raw)), "{}: raw body", signer.name);
            }
        }
    }

    #[test]
    fn twilio_verifies_arbitrary_forms(fields in prop::collection::vec((".{0,8}", ".{0,8}"), 0..6)) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(&fields);
        let signer = signers().iter().find(|s| s.name == "twilio").unwrap();
        let form = delivery(form.finish().as_bytes(), "application/x-www-form-urlencoded");
        prop_assert!(verifies(signer, &signed(signer, &form)));
    }

    #[test]
    fn one_changed_byte_of_body_signature_or_timestamp_is_refused((bytes, json, at, byte) in case()) {
        for signer in signers() {
            let body = if needs_json(&signer.scheme) { &json } else { &bytes };
            let signed = signed(signer, &delivery(body, content_type(&signer.scheme, "application/json")));
            let covered = !BODY_NOT_COVERED.contains(&signer.name);
            prop_assert_eq!(covered, signer.scheme.covers_body(), "{}", signer.name);
            // A form's fields are signed decoded: two spellings of one form are one form.
            if covered && !signer.scheme.signs_form_only() {
                if let Some(body) = change(&signed.body, at, byte) {
                    let changed = SignedDelivery { body, ..signed.clone() };
                    prop_assert!(!verifies(signer, &changed), "{}: body changed", signer.name);
                }
            }
            if let Some(changed) = change_signature(signer, &signed, at, byte) {
                prop_assert!(!verifies(signer, &changed), "{}: signature changed: {:?}", signer.name, changed);
            }
            if let Some(changed) = change_timestamp(signer, &signed, at, byte) {
                prop_assert!(!verifies(signer, &changed), "{}: timestamp changed: {:?}", signer.name, changed);
            }
        }
    }
}

/// Every scheme with a signed timestamp has it changed by the property above,
/// but those inside a JWT (Monday's and Vonage's).
#[test]
fn the_timestamp_property_reaches_every_signed_timestamp() {
    let json =
        serde_json::json!({"signature": {"token": "t"}, "value": [{}], "createdAt": CREATED_AT});
    let json = serde_json::to_vec(&json).unwrap();
    let mut reached = BTreeMap::new();
    for signer in signers() {
        let signed = signed(signer, &delivery(&json, "application/json"));
        if signer.scheme.timestamp_is_signed() {
            reached.insert(
                signer.name,
                change_timestamp(signer, &signed, 0, b'x').is_some(),
            );
        }
    }
    let missed: Vec<_> = reached
        .iter()
        .filter(|(_, r)| !**r)
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(missed, ["monday", "vonage"], "{reached:?}");
}
