//! Signing as providers do, computed independently of the gateway's code.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};

/// A provider's signing function: secret and body to (header name, value).
pub type Signer = fn(&str, &[u8]) -> (&'static str, String);

/// HMAC-SHA256.
pub fn hmac_sha256(key: &str, message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Rye's current header: `x-rye-signature: v0=<hex>`.
pub fn rye(secret: &str, body: &[u8]) -> (&'static str, String) {
    (
        "x-rye-signature",
        format!("v0={}", hex::encode(hmac_sha256(secret, body))),
    )
}

/// Rye's legacy header: `Rye-Hmac-Signature-V1: <base64>`.
pub fn rye_v1(secret: &str, body: &[u8]) -> (&'static str, String) {
    (
        "Rye-Hmac-Signature-V1",
        base64::engine::general_purpose::STANDARD.encode(hmac_sha256(secret, body)),
    )
}

/// Aryeo: `Signature: <hex>`.
pub fn aryeo(secret: &str, body: &[u8]) -> (&'static str, String) {
    ("Signature", hex::encode(hmac_sha256(secret, body)))
}

/// Current unix time.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A Rye-style JSON event created at `created` (unix seconds).
pub fn rye_event(id: &str, kind: &str, created: i64) -> Vec<u8> {
    let created = time::OffsetDateTime::from_unix_timestamp(created)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    format!(r#"{{"id":"{id}","object":"event","type":"{kind}","createdAt":"{created}","data":{{"n":1}}}}"#).into_bytes()
}
