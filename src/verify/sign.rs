//! Signing as a provider does, for `hookgate sign` and for tests: the same
//! signed-content code as verification, so a round trip proves both.

use http::{HeaderMap, HeaderName, HeaderValue};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use sha2::{Digest, Sha256};

use crate::mac::KeyedMac;
use crate::scheme::signature::{
    Format, JWT_INPUT, Location, PAIR_LABEL, Received, decode_base64, jwt_signing_input,
};
use crate::scheme::source::Source;
use crate::scheme::template::Part;
use crate::scheme::{Algorithm, KeyFormat, Scheme};
use crate::verify::content::Content;
use crate::verify::key;
use crate::verify::request::{SignedRequest, UrlParts};

/// A delivery to sign.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The request method.
    pub method: String,
    /// The full URL the provider calls.
    pub url: String,
    /// The body's `Content-Type`.
    pub content_type: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// The event id, sent where the scheme carries one outside the body (a
    /// header such as `webhook-id`). `None`: an id the body carries, or, when
    /// the signature needs one the delivery lacks, one derived from the body
    /// (the same body signed twice is the same event).
    pub id: Option<String>,
    /// The event time, unix seconds.
    pub time: i64,
    /// Other headers the provider sends (some schemes sign them).
    pub headers: Vec<(HeaderName, String)>,
}

/// A signed delivery, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDelivery {
    /// The URL to call (it may have gained a query parameter, e.g. Twilio's `bodySHA256`).
    pub url: String,
    /// Headers to send, in order.
    pub headers: Vec<(String, String)>,
    /// The body to send (it may carry the signature, e.g. Mailgun's).
    pub body: Vec<u8>,
}

/// Whether the delivery carries a value at `source` already.
fn carried(source: &Source, out: &Placed) -> bool {
    match source {
        Source::Header(name) => out.headers.iter().any(|(n, _)| n == name),
        Source::Signature(key) => out.fields.iter().any(|(k, _)| k == key),
        Source::Query(name) => out.url.split_once('?').is_some_and(|(_, query)| {
            form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == name.as_str())
        }),
        Source::Json(pointer) => crate::json::JsonBody::new(&out.body)
            .value_at(pointer)
            .is_some(),
        Source::Form(name) => form_urlencoded::parse(&out.body).any(|(k, _)| k == name.as_str()),
    }
}

/// Puts `value` where the scheme reads `source`, unless the delivery carries
/// one there already. A value placed in the body is added to it, every byte
/// of the body as given kept.
fn place(source: &Source, value: &str, out: &mut Placed) -> Result<(), String> {
    if carried(source, out) {
        return Ok(());
    }
    match source {
        Source::Header(name) => out.headers.push((name.clone(), value.to_owned())),
        Source::Signature(key) => out.fields.push((key.clone(), value.to_owned())),
        Source::Query(name) => {
            let pair: String = form_urlencoded::Serializer::new(String::new())
                .append_pair(name, value)
                .finish();
            out.url.push(if out.url.contains('?') { '&' } else { '?' });
            out.url.push_str(&pair);
        }
        Source::Json(pointer) => {
            out.body = crate::json::JsonBody::new(&out.body)
                .insert(pointer, value)
                .map_err(|why| format!("cannot add `{source}` to the body: {why}"))?;
        }
        Source::Form(name) => {
            let mut s = form_urlencoded::Serializer::new(String::new());
            s.append_pair(name, value);
            if !out.body.is_empty() {
                out.body.push(b'&');
            }
            out.body.extend_from_slice(s.finish().as_bytes());
        }
    }
    Ok(())
}

/// Whether a source is in the body (a value placed there changes it).
fn in_body(source: &Source) -> bool {
    matches!(source, Source::Json(_) | Source::Form(_))
}

/// Whether the signature needs the value read from `source` (bound in the
/// signed content as `part`, or named there): only such values are added.
/// A field of the signature value itself (Stripe's `t=`) always is.
fn signs(scheme: &Scheme, source: &Source, part: &Part) -> bool {
    matches!(source, Source::Signature(_))
        || scheme.signed.uses(part)
        || scheme.signed.fields().any(|field| field == source)
}

/// Places the event time where the scheme reads it, when the signature or
/// the scheme's default replay window needs it (Slack's header, Stripe's
/// `t=`); a time the scheme only reads (Rye's `createdAt`) is not added.
fn place_time(scheme: &Scheme, time: i64, out: &mut Placed) -> Result<(), String> {
    let Some(ts) = &scheme.timestamp else {
        return Ok(());
    };
    let window =
        scheme.default_tolerance_secs.is_some_and(|t| t > 0) && scheme.timestamp_is_signed();
    if window || signs(scheme, &ts.source, &Part::Timestamp) {
        place(&ts.source, &ts.format.format(time), out)?;
    }
    Ok(())
}

/// Places the event id: `given` goes where the scheme carries an id outside
/// the body; without it, an id is added only when the signature needs one
/// and the delivery has none (Standard Webhooks' `webhook-id`), derived from
/// the body so that the same body signed again is the same event. An id the
/// body carries is the event's: nothing else is added.
fn place_id(scheme: &Scheme, given: Option<&str>, out: &mut Placed) -> Result<(), String> {
    let outside = scheme.id.iter().find(|s| !in_body(s));
    if let Some(id) = given {
        let source = outside.ok_or_else(|| match scheme.id.first() {
            Some(source) => format!(
                "scheme `{}` reads the event id from the body (`{source}`): write it there instead of giving --id",
                scheme.name
            ),
            None => format!("scheme `{}` has no event id: drop --id", scheme.name),
        })?;
        return place(source, id, out);
    }
    if scheme.id.iter().any(|s| carried(s, out)) {
        return Ok(());
    }
    // `{id}` binds the first id found: one outside the body where the scheme reads one there.
    let source = if scheme.signed.uses(&Part::Id) {
        outside.or(scheme.id.first())
    } else {
        scheme.id.iter().find(|s| signs(scheme, s, &Part::Id))
    };
    if let Some(source) = source {
        let id = format!("evt_{}", hex::encode(&Sha256::digest(&out.body)[..12]));
        place(source, &id, out)?;
    }
    Ok(())
}

/// What signing has placed so far.
#[derive(Debug)]
struct Placed {
    url: String,
    headers: Vec<(HeaderName, String)>,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Signs `delivery` under `scheme` with `secret` (for asymmetric schemes, the
/// private key: Ed25519 as a hex or base64 seed, or `whsk_…`; ECDSA as base64
/// PKCS#8).
pub fn sign(scheme: &Scheme, secret: &[u8], delivery: &Delivery) -> Result<SignedDelivery, String> {
    if scheme.algorithm.is_remote() {
        return Err(unsignable(scheme));
    }
    let mut placed = Placed {
        url: delivery.url.clone(),
        headers: Vec::new(),
        fields: Vec::new(),
        body: delivery.body.clone(),
    };
    // The pairs format labels the signature with the secret's label.
    let labelled;
    let secret = if matches!(scheme.signature.format, Format::Pairs { .. }) {
        let (label, rest) = key::split_label(secret).map_err(|why| format!("the secret {why}"))?;
        let label = String::from_utf8(label.expose().to_vec())
            .map_err(|_| "the secret's label is not text".to_owned())?;
        placed.fields.push((PAIR_LABEL.to_owned(), label));
        labelled = rest;
        labelled.expose()
    } else {
        secret
    };
    let content_type = HeaderName::from_static("content-type");
    placed
        .headers
        .push((content_type, delivery.content_type.clone()));
    placed.headers.extend(delivery.headers.iter().cloned());
    place_time(scheme, delivery.time, &mut placed)?;
    place_id(scheme, delivery.id.as_deref(), &mut placed)?;
    let is_form = delivery
        .content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded");
    if let (Some(source), false) = (&scheme.body_sha256, is_form || placed.body.is_empty()) {
        place(
            source,
            &hex::encode(Sha256::digest(&placed.body)),
            &mut placed,
        )?;
    }

    if scheme.signature.format == Format::Jwt {
        let input = jwt_signing_input(&placed.fields);
        placed.fields.push((JWT_INPUT.to_owned(), input));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &placed.headers {
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("`{value}` cannot be sent in a header"))?;
        headers.append(name.clone(), value);
    }
    let (base, query) = match placed.url.split_once('?') {
        Some((base, query)) => (base.to_owned(), Some(query.to_owned())),
        None => (placed.url.clone(), None),
    };
    let path = base
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    let url_parts = UrlParts {
        public_url: Some(&base),
        remainder: "",
        host: "",
    };
    let request = SignedRequest::new(
        &delivery.method,
        (path, query.as_deref()),
        &headers,
        &placed.body,
        url_parts,
    );
    let received = Received {
        present: true,
        signatures: Vec::new(),
        fields: placed.fields.clone(),
        labels: Vec::new(),
    };
    let content = Content::gather(scheme, &request, Some(&received))
        .map_err(|_| "the delivery lacks a field the scheme signs".to_owned())?;
    let signature = compute(scheme, secret, &content, request.url())?;

    let encoded = scheme.signature.encoding.encode(&signature);
    let value = scheme.signature.format.write(&encoded, &placed.fields);
    match &scheme.signature.location {
        Location::Headers(names) => {
            let name = names
                .first()
                .ok_or("the scheme names no signature header")?;
            placed.headers.push((name.clone(), value));
        }
        Location::Json(_) | Location::Form(_) | Location::Query(_) => {
            let source = match &scheme.signature.location {
                Location::Json(pointer) => Source::Json(pointer.clone()),
                Location::Form(name) => Source::Form(name.clone()),
                Location::Query(name) => Source::Query(name.clone()),
                Location::Headers(_) => unreachable!("handled above"),
            };
            place(&source, &value, &mut placed)?;
        }
    }
    Ok(SignedDelivery {
        url: placed.url,
        headers: placed
            .headers
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        body: placed.body,
    })
}

fn unsignable(scheme: &Scheme) -> String {
    format!(
        "scheme `{}` is signed with the provider's private key (its keys are fetched at run time); \
         `hookgate sign` cannot sign for it",
        scheme.name
    )
}

fn compute(
    scheme: &Scheme,
    secret: &[u8],
    content: &Content<'_>,
    url: &str,
) -> Result<Vec<u8>, String> {
    match scheme.algorithm {
        Algorithm::Hmac(hash) => {
            let key = key::decode(scheme.key, secret).map_err(|why| format!("the secret {why}"))?;
            let mut mac = KeyedMac::new(hash, &key);
            content.feed(url, &[], &mut |b| mac.update(b));
            Ok(mac.finalize())
        }
        Algorithm::Sha256 => {
            let key = key::decode(scheme.key, secret).map_err(|why| format!("the secret {why}"))?;
            Ok(Sha256::digest(content.to_vec(url, &key)).to_vec())
        }
        Algorithm::Token => {
            key::decode(scheme.key, secret).map_err(|why| format!("the secret {why}"))
        }
        Algorithm::Ed25519 => {
            let seed = ed25519_seed(scheme.key, secret)?;
            let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
                .map_err(|_| "invalid Ed25519 seed".to_owned())?;
            Ok(pair.sign(&content.to_vec(url, &[])).as_ref().to_vec())
        }
        Algorithm::EcdsaP256Sha256 => {
            let text = std::str::from_utf8(secret)
                .map_err(|_| "the private key is not text".to_owned())?;
            let der = decode_base64(text.trim()).ok_or("the private key is not base64 PKCS#8")?;
            let rng = SystemRandom::new();
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &rng)
                .map_err(|_| "the private key is not a P-256 PKCS#8 key".to_owned())?;
            let sig = pair
                .sign(&rng, &content.to_vec(url, &[]))
                .map_err(|_| "ECDSA signing failed".to_owned())?;
            Ok(sig.as_ref().to_vec())
        }
        Algorithm::RsaSha1 | Algorithm::RsaSha256 | Algorithm::Es256 => Err(unsignable(scheme)),
    }
}

/// An Ed25519 private key as 32 seed bytes: hex or base64 of the seed (or of
/// seed followed by public key), or Standard Webhooks' `whsk_…`.
fn ed25519_seed(format: KeyFormat, secret: &[u8]) -> Result<[u8; 32], String> {
    let text = std::str::from_utf8(secret)
        .map_err(|_| "the private key is not text".to_owned())?
        .trim();
    let bytes = match format {
        KeyFormat::Hex => hex::decode(text).map_err(|_| "the private key is not hex".to_owned())?,
        _ => decode_base64(text.strip_prefix("whsk_").unwrap_or(text))
            .ok_or("the private key is not base64")?,
    };
    match bytes.len() {
        32 | 64 => Ok(bytes[..32].try_into().map_err(|_| "bad seed".to_owned())?),
        n => Err(format!(
            "an Ed25519 private key is 32 (or 64) bytes; this one is {n}"
        )),
    }
}
