//! Verification with remote keys (AWS SNS, PayPal, OIDC-signed pushes, Plaid):
//! the keys arrive parsed from a certificate, a JWKS or a single JWK that
//! `crate::keys` fetched; this module checks RSA and ES256 signatures with
//! them, and a JWT's claims against the route's audience and issuers with the
//! injected clock. Pure: no I/O.

use std::sync::Arc;

use ring::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
    RSA_PKCS1_2048_8192_SHA256, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde_json::Value;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::base::secret::Secret;
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
    /// A key endpoint's answer for one `kid`: `{"key": JWK}` (Plaid).
    Jwk,
}

/// One public key.
#[derive(Debug)]
enum PublicKey {
    /// DER `RSAPublicKey` (from a certificate).
    RsaDer(Vec<u8>),
    /// RSA modulus and exponent, big-endian (from a JWK).
    RsaComponents { n: Vec<u8>, e: Vec<u8> },
    /// An EC P-256 point, uncompressed (`04 || x || y`, from a JWK).
    EcP256(Vec<u8>),
}

impl PublicKey {
    /// Whether this key signed `message` with `algorithm` (a key of another
    /// type never did).
    fn verify(&self, algorithm: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        let rsa: &RsaParameters = match (algorithm, self) {
            (Algorithm::Es256, Self::EcP256(point)) => {
                return UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok();
            }
            (Algorithm::RsaSha1, _) => &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            (Algorithm::RsaSha256, _) => &RSA_PKCS1_2048_8192_SHA256,
            _ => return false,
        };
        match self {
            Self::RsaDer(der) => UnparsedPublicKey::new(rsa, der)
                .verify(message, sig)
                .is_ok(),
            Self::RsaComponents { n, e } => RsaPublicKeyComponents { n, e }
                .verify(rsa, message, sig)
                .is_ok(),
            Self::EcP256(_) => false,
        }
    }
}

/// Public keys parsed from one fetched document.
#[derive(Debug)]
pub struct PublicKeys {
    keys: Vec<(Option<String>, PublicKey)>,
    /// When the keys may be used, unix seconds (`notBefore`, `notAfter`): a
    /// certificate's validity, or up to a JWK's `expired_at`.
    validity: Option<(i64, i64)>,
}

impl PublicKeys {
    /// Parses a fetched document.
    pub fn parse(kind: Document, bytes: &[u8]) -> Result<Self, String> {
        match kind {
            Document::Certificate => Self::from_certificate_pem(bytes),
            Document::Jwks => Self::from_jwks(bytes),
            Document::Jwk => Self::from_key_answer(bytes),
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
            keys: vec![(
                None,
                PublicKey::RsaDer(spki.subject_public_key.data.to_vec()),
            )],
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
                Some((text(k, "kid"), PublicKey::RsaComponents { n, e }))
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

    /// The EC P-256 signing key of a key endpoint's answer
    /// (`{"key":{"kty":"EC","crv":"P-256","kid","x","y","expired_at"},…}`, as
    /// Plaid's `/webhook_verification_key/get` answers). A key with an
    /// `expired_at` is usable until then.
    pub fn from_key_answer(json: &[u8]) -> Result<Self, String> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|_| "the key answer is not JSON".to_owned())?;
        let key = doc
            .get("key")
            .filter(|k| k.is_object())
            .ok_or_else(|| "the key answer has no `key` object".to_owned())?;
        let text = |name: &str| key.get(name).and_then(Value::as_str);
        if text("kty") != Some("EC") || text("crv") != Some("P-256") {
            return Err("the key is not an EC P-256 key".to_owned());
        }
        if text("use").is_some_and(|u| u != "sig") || text("alg").is_some_and(|a| a != "ES256") {
            return Err("the key is not an ES256 signing key".to_owned());
        }
        let coordinate = |name: &str| {
            text(name)
                .and_then(|c| Encoding::Base64Url.decode(c))
                .filter(|c| c.len() == 32)
        };
        let (Some(x), Some(y)) = (coordinate("x"), coordinate("y")) else {
            return Err("the key's `x` and `y` are not 32-byte base64url coordinates".to_owned());
        };
        let expired_at = match key.get("expired_at") {
            None | Some(Value::Null) => None,
            Some(t) => Some(
                t.as_i64()
                    .ok_or_else(|| "the key's `expired_at` is not a unix time".to_owned())?,
            ),
        };
        let point = [&[4][..], &x, &y].concat();
        Ok(Self {
            keys: vec![(text("kid").map(str::to_owned), PublicKey::EcP256(point))],
            // Expired at `at`: usable through the second before.
            validity: expired_at.map(|at| (i64::MIN, at.saturating_sub(1))),
        })
    }

    /// A certificate's `notAfter` or a JWK's `expired_at`, unix seconds.
    pub fn not_after(&self) -> Option<i64> {
        self.validity.map(|(_, after)| after)
    }

    /// Whether a key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|(k, _)| k.as_deref() == Some(kid))
    }

    /// Whether a key (the one named `kid`, when given) signed `message`.
    fn verify(&self, algorithm: Algorithm, kid: Option<&str>, message: &[u8], sig: &[u8]) -> bool {
        self.keys
            .iter()
            .filter(|(k, _)| kid.is_none() || k.as_deref() == kid)
            .any(|(_, key)| key.verify(algorithm, message, sig))
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
    /// The key endpoint to ask (key-endpoint schemes).
    pub key_endpoint: Option<HttpsUrl>,
    /// What the key endpoint is asked with (key-endpoint schemes).
    pub credentials: Option<Arc<Credentials>>,
    /// Which of a JWT's claims [`check`] enforces.
    pub claims: JwtClaims,
}

/// The API credentials a key endpoint is asked with (Plaid's `client_id` and
/// `secret`). The secret is redacted from `Debug`, like every [`Secret`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The API client id; not secret.
    pub client_id: String,
    /// The API secret (text).
    pub secret: Secret,
}

/// Which of a JWT's claims the remote-key check itself enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JwtClaims {
    /// An OIDC token's: `iss`, `aud` and `exp` (required), `nbf`, `iat`, and
    /// `email` when the route names one.
    #[default]
    Oidc,
    /// None: the scheme's own timestamp window and body hash check the claims
    /// it names (Plaid's `iat` and `request_body_sha256`).
    Scheme,
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

/// Checks a signature over `message` with `keys`. For a JWT (`jwt` holds its
/// signed part), the header must name the algorithm (RS256 or ES256), its
/// `kid` picks the key, and (for OIDC tokens) the claims must match `params`
/// at time `now`.
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
    check_alg(algorithm, &token)?;
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
    check_claims(&token, params, now)
}

/// The checks of a JWT (`input`, its signed part) that need no key, made
/// before its key is fetched: its header names `algorithm` and, for an OIDC
/// token, its claims match `params` at time `now`. The token is not verified
/// yet, so this can only refuse; [`check`] makes them again.
pub fn precheck_jwt(
    algorithm: Algorithm,
    input: &str,
    params: &RemoteParams,
    now: i64,
) -> Result<(), Rejection> {
    let token = parse_jwt(input).ok_or(Rejection::SignatureMalformed)?;
    check_alg(algorithm, &token)?;
    check_claims(&token, params, now)
}

/// Whether a JWT's header names `algorithm` (RS256 or ES256).
fn check_alg(algorithm: Algorithm, token: &Jwt) -> Result<(), Rejection> {
    let alg = match algorithm {
        Algorithm::RsaSha256 => "RS256",
        Algorithm::Es256 => "ES256",
        _ => return Err(Rejection::SignatureMalformed),
    };
    if token.alg == alg {
        Ok(())
    } else {
        Err(Rejection::SignatureMalformed)
    }
}

/// Whether an OIDC token's claims match `params` at time `now` (the claims of
/// other tokens are the scheme's to check).
fn check_claims(token: &Jwt, params: &RemoteParams, now: i64) -> Result<(), Rejection> {
    if params.claims == JwtClaims::Scheme {
        return Ok(());
    }
    let claims = &token.claims;
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
