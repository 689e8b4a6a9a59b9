//! Remote keys for tests: a key server speaking HTTPS with a certificate from a
//! fresh test CA, and signing with the fixture RSA and P-256 keys
//! (tests/fixtures/remote_keys) the way AWS SNS, PayPal, OIDC issuers and
//! Plaid sign.

use std::path::PathBuf;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair,
    RsaPublicKeyComponents,
};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::support::upstream::{Reply, Upstream};

/// The certificate of the signing key (valid 2020–2100).
pub const CERT: &str = include_str!("../../fixtures/remote_keys/signing.pem");
/// A certificate of another key.
pub const OTHER_CERT: &str = include_str!("../../fixtures/remote_keys/other.pem");
/// SNS SignatureVersion 1 messages signed (SHA1withRSA) with the signing key;
/// `https://KEYSERVER/…` stands for the key server.
pub const SNS_V1: &str = include_str!("../../fixtures/remote_keys/sns-v1.json");
const SIGNING_KEY: &str = include_str!("../../fixtures/remote_keys/signing.key");
const PLAID_KEY: &str = include_str!("../../fixtures/remote_keys/plaid-signing.key");

/// An HTTPS server answering every request with one document, counting them.
#[derive(Debug)]
pub struct KeyServer {
    pub server: Upstream,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl KeyServer {
    /// Serves `body` with `Cache-Control: cache_control`.
    pub async fn serving(body: &str, cache_control: &str) -> Self {
        let (server, ca) = Upstream::start_tls().await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        let keys = Self {
            server,
            ca_file,
            _dir: dir,
        };
        keys.answer(200, body, cache_control);
        keys
    }

    /// Answers `status` with `body` from now on.
    pub fn answer(&self, status: u16, body: &str, cache_control: &str) {
        self.server.set_reply(Reply {
            status,
            headers: vec![("cache-control".into(), cache_control.into())],
            body: body.as_bytes().to_vec(),
            ..Reply::default()
        });
    }

    /// `127.0.0.1:PORT`, for `key_hosts`.
    pub fn host(&self) -> String {
        self.server.addr.to_string()
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.host())
    }

    /// `[server.remote_keys]` trusting the test CA; `min_ttl_secs` 0, so a
    /// document's own lifetime is the one kept.
    pub fn server_toml(&self) -> String {
        trusting(&self.ca_file)
    }

    /// The test CA's certificate, PEM.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.ca_file).unwrap()
    }

    /// The paths requested so far.
    pub fn fetched(&self) -> Vec<String> {
        self.server.requests().into_iter().map(|r| r.uri).collect()
    }
}

/// `[server.remote_keys]` trusting the CAs in `ca_file`, `min_ttl_secs` 0.
pub fn trusting(ca_file: &std::path::Path) -> String {
    format!(
        "[server.remote_keys]\nca_file = \"{}\"\nmin_ttl_secs = 0\n",
        ca_file.display()
    )
}

/// The DER of a PEM private key.
fn pem_der(pem: &str) -> Vec<u8> {
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(der)
        .unwrap()
}

fn key_pair() -> RsaKeyPair {
    RsaKeyPair::from_pkcs8(&pem_der(SIGNING_KEY)).unwrap()
}

fn plaid_key_pair() -> EcdsaKeyPair {
    EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &pem_der(PLAID_KEY),
        &SystemRandom::new(),
    )
    .unwrap()
}

/// Plaid's answer to `/webhook_verification_key/get`: the fixture P-256 key
/// as `kid`, expired at `expired_at` when given.
pub fn plaid_key_answer(kid: &str, expired_at: Option<i64>) -> String {
    let pair = plaid_key_pair();
    let point = pair.public_key().as_ref();
    json!({
        "key": {
            "alg": "ES256", "created_at": 1_560_466_150, "crv": "P-256",
            "expired_at": expired_at, "kid": kid, "kty": "EC", "use": "sig",
            "x": base64url(&point[1..33]), "y": base64url(&point[33..]),
        },
        "request_id": "RZ6Omi1bzzwDaLo",
    })
    .to_string()
}

/// A `Plaid-Verification` JWT for `body` issued at `iat`, naming `kid`,
/// signed (ES256) with the fixture P-256 key.
pub fn plaid_jwt(kid: &str, body: &str, iat: i64) -> String {
    let hash = hex::encode(sha2::Sha256::digest(body.as_bytes()));
    let header = json!({"alg": "ES256", "kid": kid, "typ": "JWT"});
    let claims = json!({"iat": iat, "request_body_sha256": hash});
    let input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let sig = plaid_key_pair()
        .sign(&SystemRandom::new(), input.as_bytes())
        .unwrap();
    format!("{input}.{}", base64url(sig.as_ref()))
}

/// RSASSA-PKCS1-v1_5 SHA-256 of `message` with the signing key.
pub fn sign_sha256(message: &[u8]) -> Vec<u8> {
    let pair = key_pair();
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
        .unwrap();
    sig
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The string SNS signs, per AWS's documented field lists (written here
/// independently of the gateway's).
fn sns_string(message: &Value) -> String {
    let names = if message["Type"] == "Notification" {
        "Message MessageId Subject Timestamp TopicArn Type"
    } else {
        "Message MessageId SubscribeURL Timestamp Token TopicArn Type"
    };
    names
        .split(' ')
        .filter_map(|n| message[n].as_str().map(|v| format!("{n}\n{v}\n")))
        .collect()
}

/// An SNS message (SignatureVersion 2) of `kind` with `fields`, signed.
pub fn sns_v2(kind: &str, cert_url: &str, fields: &Value) -> String {
    let mut message = json!({
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
        "Message": "Hello from SNS",
        "Timestamp": "2024-05-02T00:54:06.655Z",
        "SignatureVersion": "2",
        "SigningCertURL": cert_url,
    });
    for (k, v) in fields.as_object().unwrap() {
        message[k] = v.clone();
    }
    let sig = sign_sha256(sns_string(&message).as_bytes());
    message["Signature"] = Value::String(base64(&sig));
    message.to_string()
}

/// The SignatureVersion 1 fixtures, their certificate URL set to `cert_url`
/// (it is not signed).
pub fn sns_v1(cert_url: &str) -> Vec<String> {
    let messages: Vec<Value> = serde_json::from_str(SNS_V1).unwrap();
    messages
        .into_iter()
        .map(|mut m| {
            m["SigningCertURL"] = Value::String(cert_url.to_owned());
            m.to_string()
        })
        .collect()
}

/// A JWKS publishing the signing key as `kid`, after an unrelated EC key.
pub fn jwks(kid: &str) -> String {
    let pair = key_pair();
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    json!({"keys": [
        {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": "AA", "y": "AA", "use": "sig"},
        {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
         "n": base64url(&public.n), "e": base64url(&public.e)},
    ]})
    .to_string()
}

/// An RS256 JWT with `kid` and `claims`, signed with the signing key.
pub fn jwt(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
    let input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let sig = sign_sha256(input.as_bytes());
    format!("{input}.{}", base64url(&sig))
}

/// PayPal's headers for `body`, signed for `webhook_id`, its certificate at `cert_url`.
pub fn paypal_headers(body: &str, webhook_id: &str, cert_url: &str) -> Vec<(String, String)> {
    let id = "69cd13f0-d67a-11e5-baa3-778b53f4ae55";
    let time = "2024-02-18T20:01:35Z";
    let crc = crc32fast::hash(body.as_bytes());
    let sig = sign_sha256(format!("{id}|{time}|{webhook_id}|{crc}").as_bytes());
    vec![
        ("PAYPAL-TRANSMISSION-ID".into(), id.into()),
        ("PAYPAL-TRANSMISSION-TIME".into(), time.into()),
        ("PAYPAL-TRANSMISSION-SIG".into(), base64(&sig)),
        ("PAYPAL-CERT-URL".into(), cert_url.into()),
        ("PAYPAL-AUTH-ALGO".into(), "SHA256withRSA".into()),
    ]
}
