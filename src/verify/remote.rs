//! Verification with remote keys (AWS SNS, PayPal, OIDC-signed pushes): the
//! keys arrive parsed from a certificate or a JWKS that `crate::keys` fetched;
//! this module checks RSA signatures with them, and a JWT's claims against the
//! route's audience and issuers with the injected clock. Pure: no I/O.

use std::sync::Arc;

use ring::signature::{
    RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256, RsaParameters,
    RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde_json::Value;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::json::{JsonBody, JsonPointer};
use crate::scheme::Algorithm;
use crate::scheme::remote::{HostPattern, HttpsUrl};
use crate::scheme::signature::Encoding;
use crate::scheme::source::Source;
use crate::verify::Rejection;

/// Clock skew allowed on a JWT's `exp`, `nbf` and `iat`, in seconds.
pub const JWT_LEEWAY_SECS: i64 = 60;
/// Most keys kept from one JWKS.
const MAX_JWKS_KEYS: usize = 32;
/// OID of `rsaEncryption`.
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

/// What a fetched document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Document {
    /// A PEM X.509 certificate; its public key is the key.
    Certificate,
    /// A JSON Web Key Set.
    Jwks,
}

/// One RSA public key.
#[derive(Debug)]
enum RsaKey {
    /// DER `RSAPublicKey` (from a certificate).
    Der(Vec<u8>),
    /// Modulus and exponent, big-endian (from a JWK).
    Components { n: Vec<u8>, e: Vec<u8> },
}

/// Public keys parsed from one fetched document.
#[derive(Debug)]
pub struct PublicKeys {
    keys: Vec<(Option<String>, RsaKey)>,
    /// A certificate's validity, unix seconds (`notBefore`, `notAfter`).
    validity: Option<(i64, i64)>,
}

impl PublicKeys {
    /// Parses a fetched document.
    pub fn parse(kind: Document, bytes: &[u8]) -> Result<Self, String> {
        match kind {
            Document::Certificate => Self::from_certificate_pem(bytes),
            Document::Jwks => Self::from_jwks(bytes),
        }
    }

    /// The RSA key of the first certificate in a PEM document.
    pub fn from_certificate_pem(pem: &[u8]) -> Result<Self, String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|_| "the document is not a PEM certificate".to_owned())?;
        let (_, cert) = X509Certificate::from_der(&pem.contents)
            .map_err(|_| "the certificate is not valid DER X.509".to_owned())?;
        let spki = cert.public_key();
        if spki.algorithm.algorithm.to_id_string() != RSA_ENCRYPTION {
            return Err("the certificate's key is not RSA".to_owned());
        }
        let validity = cert.validity();
        Ok(Self {
            keys: vec![(None, RsaKey::Der(spki.subject_public_key.data.to_vec()))],
            validity: Some((
                validity.not_before.timestamp(),
                validity.not_after.timestamp(),
            )),
        })
    }

    /// The RSA signing keys of a JWKS (`{"keys":[{"kty":"RSA","kid","n","e"}]}`).
    pub fn from_jwks(json: &[u8]) -> Result<Self, String> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|_| "the JWKS is not JSON".to_owned())?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| "the JWKS has no `keys` list".to_owned())?;
        let text = |k: &Value, name: &str| k.get(name).and_then(Value::as_str).map(str::to_owned);
        let keys: Vec<_> = list
            .iter()
            .filter(|k| text(k, "kty").as_deref() == Some("RSA"))
            .filter(|k| text(k, "use").is_none_or(|u| u == "sig"))
            .filter_map(|k| {
                let n = Encoding::Base64Url.decode(&text(k, "n")?)?;
                let e = Encoding::Base64Url.decode(&text(k, "e")?)?;
                Some((text(k, "kid"), RsaKey::Components { n, e }))
            })
            .take(MAX_JWKS_KEYS)
            .collect();
        if keys.is_empty() {
            return Err("the JWKS has no RSA signing key".to_owned());
        }
        Ok(Self {
            keys,
            validity: None,
        })
    }

    /// A certificate's `notAfter`, unix seconds.
    pub fn not_after(&self) -> Option<i64> {
        self.validity.map(|(_, after)| after)
    }

    /// Whether a key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|(k, _)| k.as_deref() == Some(kid))
    }

    /// Whether a key (the one named `kid`, when given) signed `message`.
    fn verify(&self, algorithm: Algorithm, kid: Option<&str>, message: &[u8], sig: &[u8]) -> bool {
        let params: &RsaParameters = match algorithm {
            Algorithm::RsaSha1 => &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::RsaSha256 => &RSA_PKCS1_2048_8192_SHA256,
            _ => return false,
        };
        self.keys
            .iter()
            .filter(|(k, _)| kid.is_none() || k.as_deref() == kid)
            .any(|(_, key)| match key {
                RsaKey::Der(der) => UnparsedPublicKey::new(params, der)
                    .verify(message, sig)
                    .is_ok(),
                RsaKey::Components { n, e } => RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .is_ok(),
            })
    }
}

/// A route's settings for a remote-key scheme.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteParams {
    /// Hosts that may serve certificates and confirmation URLs.
    pub hosts: Vec<HostPattern>,
    /// The JWKS to fetch (JWT schemes).
    pub jwks_url: Option<HttpsUrl>,
    /// Accepted `aud` values (JWT schemes).
    pub audiences: Vec<String>,
    /// Accepted `iss` values (JWT schemes).
    pub issuers: Vec<String>,
    /// The `email` claim required, with `email_verified` (Google service accounts).
    pub email: Option<String>,
    /// PayPal's webhook id, signed as `{webhook_id}`.
    pub webhook_id: Option<String>,
    /// Fields that must hold one of the listed values (SNS `TopicArn`).
    pub expect: Vec<(Source, Vec<String>)>,
}

/// The keys fetched for one verifier and request, as handed to [`crate::verify`].
#[derive(Debug, Clone)]
pub enum RemoteKeys {
    /// Nothing was fetched (the verifier needs no remote key, or the request
    /// named none).
    None,
    /// The parsed document.
    Ready(Arc<PublicKeys>),
    /// Fetching failed, or the request named a key it may not use.
    Failed(Rejection),
}

/// The string AWS SNS signs: `Name\nvalue\n` for each signed field of the
/// message's `Type`, in AWS's order; `Subject` only when present.
pub fn aws_sns_string(json: &JsonBody<'_>) -> Option<Vec<u8>> {
    let field = |name: &str| {
        JsonPointer::parse(&format!("/{name}"))
            .ok()
            .and_then(|p| json.text_at(&p))
    };
    let names: &[&str] = match field("Type")?.as_ref() {
        "Notification" => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
        _ => return None,
    };
    let mut out = Vec::new();
    for name in names {
        match field(name) {
            Some(value) => {
                out.extend_from_slice(name.as_bytes());
                out.push(b'\n');
                out.extend_from_slice(value.as_bytes());
                out.push(b'\n');
            }
            None if *name == "Subject" => {}
            None => return None,
        }
    }
    Some(out)
}

/// A JWT's header and claims, from its signed part `header.payload`.
struct Jwt {
    alg: String,
    kid: Option<String>,
    claims: serde_json::Map<String, Value>,
}

/// The `kid` of a JWT's (base64url) header, if it names one.
pub fn jwt_kid(header: &str) -> Option<String> {
    let json: Value = serde_json::from_slice(&Encoding::Base64Url.decode(header)?).ok()?;
    json.get("kid")
        .and_then(Value::as_str)
        .filter(|k| k.len() <= 256)
        .map(str::to_owned)
}

fn parse_jwt(input: &str) -> Option<Jwt> {
    let (header, payload) = input.split_once('.')?;
    let decode = |part: &str| -> Option<serde_json::Map<String, Value>> {
        match serde_json::from_slice(&Encoding::Base64Url.decode(part)?).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    };
    let header = decode(header)?;
    let text = |name: &str| header.get(name).and_then(Value::as_str).map(str::to_owned);
    Some(Jwt {
        alg: text("alg")?,
        kid: text("kid"),
        claims: decode(payload)?,
    })
}

/// Checks an RSA signature over `message` with `keys`. For a JWT (`jwt` holds
/// its signed part), the header must say RS256, its `kid` picks the key, and
/// the claims must match `params` at time `now`.
pub fn check(
    algorithm: Algorithm,
    keys: &PublicKeys,
    message: &[u8],
    signatures: &[Vec<u8>],
    jwt: Option<&str>,
    params: &RemoteParams,
    now: i64,
) -> Result<(), Rejection> {
    if let Some((not_before, not_after)) = keys.validity {
        if now < not_before || now > not_after {
            return Err(Rejection::KeyExpired);
        }
    }
    let Some(input) = jwt else {
        return signatures
            .iter()
            .any(|s| keys.verify(algorithm, None, message, s))
            .then_some(())
            .ok_or(Rejection::SignatureMismatch);
    };
    let token = parse_jwt(input).ok_or(Rejection::SignatureMalformed)?;
    if token.alg != "RS256" {
        return Err(Rejection::SignatureMalformed);
    }
    if let Some(kid) = &token.kid {
        if !keys.has_kid(kid) {
            return Err(Rejection::UnknownKey);
        }
    }
    let signed = signatures
        .iter()
        .any(|s| keys.verify(algorithm, token.kid.as_deref(), message, s));
    if !signed {
        return Err(Rejection::SignatureMismatch);
    }
    check_claims(&token.claims, params, now)
}

fn check_claims(
    claims: &serde_json::Map<String, Value>,
    params: &RemoteParams,
    now: i64,
) -> Result<(), Rejection> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let time = |name: &str| claims.get(name).and_then(Value::as_i64);
    if !text("iss").is_some_and(|iss| params.issuers.iter().any(|i| i == iss)) {
        return Err(Rejection::ClaimMismatch);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences
        .iter()
        .any(|a| params.audiences.iter().any(|want| want == a))
    {
        return Err(Rejection::ClaimMismatch);
    }
    let exp = time("exp").ok_or(Rejection::TimestampUnreadable)?;
    if now > exp.saturating_add(JWT_LEEWAY_SECS) {
        return Err(Rejection::TimestampTooOld);
    }
    let early = |t: Option<i64>| t.is_some_and(|t| t > now.saturating_add(JWT_LEEWAY_SECS));
    if early(time("nbf")) || early(time("iat")) {
        return Err(Rejection::TimestampTooNew);
    }
    if let Some(email) = &params.email {
        let verified = match claims.get("email_verified") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        };
        if text("email") != Some(email.as_str()) || !verified {
            return Err(Rejection::ClaimMismatch);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
