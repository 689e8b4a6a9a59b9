//! Built-in schemes, as descriptors: `rye`, `rye-v1` and `aryeo`. The generic
//! `hmac` scheme is described by each route's own keys (see `config::build`).

use std::sync::Arc;

use http::HeaderName;

use crate::handshake::{AnswerBody, Handshake, Matcher};
use crate::json::JsonPointer;
use crate::verify::mac::{Algorithm, Encoding};
use crate::verify::scheme::{FieldSource, Scheme, SignatureSpec, TimeFormat, TimestampSpec};
use crate::verify::template::Template;

/// Names of the built-in schemes, for error messages and docs.
pub const NAMES: [&str; 4] = ["rye", "rye-v1", "aryeo", "hmac"];

/// The built-in scheme called `name`, if there is one (`hmac` is built per route).
pub fn builtin(name: &str) -> Option<Arc<Scheme>> {
    match name {
        "rye" => Some(Arc::new(rye())),
        "rye-v1" => Some(Arc::new(rye_v1())),
        "aryeo" => Some(Arc::new(aryeo())),
        _ => None,
    }
}

fn pointer(text: &str) -> JsonPointer {
    match JsonPointer::parse(text) {
        Ok(p) => p,
        Err(e) => unreachable!("built-in pointer {text}: {e}"),
    }
}

fn header(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

/// Rye's `WEBHOOK_URL_VERIFICATION` challenge: answer `{"challenge": data.challenge}`.
fn rye_url_verification() -> Handshake {
    Handshake {
        matcher: Matcher::JsonEquals {
            pointer: pointer("/type"),
            value: "WEBHOOK_URL_VERIFICATION".to_owned(),
        },
        status: 200,
        content_type: "application/json",
        body: AnswerBody::JsonObject(vec![("challenge".to_owned(), pointer("/data/challenge"))]),
    }
}

fn created_at() -> Option<TimestampSpec> {
    Some(TimestampSpec {
        source: FieldSource::Json(pointer("/createdAt")),
        format: TimeFormat::Rfc3339,
    })
}

/// Rye (api-v2): `x-rye-signature: v0=<hex HMAC-SHA256(secret, body)>`.
fn rye() -> Scheme {
    Scheme {
        name: "rye".to_owned(),
        algorithm: Algorithm::Sha256,
        signature: SignatureSpec {
            header: header("x-rye-signature"),
            prefix: "v0=".to_owned(),
            encoding: Encoding::Hex,
        },
        signed_content: Template::body(),
        timestamp: created_at(),
        id: vec![
            FieldSource::Header(header("x-rye-event-id")),
            FieldSource::Json(pointer("/id")),
        ],
        event_type: vec![
            FieldSource::Header(header("x-rye-topic")),
            FieldSource::Json(pointer("/type")),
        ],
        default_tolerance_secs: None,
        handshake: Some(rye_url_verification()),
    }
}

/// Rye (legacy): `Rye-Hmac-Signature-V1: <base64 HMAC-SHA256(secret, body)>`.
fn rye_v1() -> Scheme {
    Scheme {
        name: "rye-v1".to_owned(),
        algorithm: Algorithm::Sha256,
        signature: SignatureSpec {
            header: header("rye-hmac-signature-v1"),
            prefix: String::new(),
            encoding: Encoding::Base64,
        },
        signed_content: Template::body(),
        timestamp: created_at(),
        id: vec![FieldSource::Json(pointer("/id"))],
        event_type: vec![FieldSource::Json(pointer("/type"))],
        default_tolerance_secs: None,
        handshake: Some(rye_url_verification()),
    }
}

/// Aryeo: `Signature: <hex HMAC-SHA256(secret, body)>`.
fn aryeo() -> Scheme {
    Scheme {
        name: "aryeo".to_owned(),
        algorithm: Algorithm::Sha256,
        signature: SignatureSpec {
            header: header("signature"),
            prefix: String::new(),
            encoding: Encoding::Hex,
        },
        signed_content: Template::body(),
        timestamp: None,
        id: Vec::new(),
        event_type: Vec::new(),
        default_tolerance_secs: None,
        handshake: None,
    }
}
