//! Signature verification: runs a route's verifiers over a [`SignedRequest`] and
//! yields either a [`Verified`] proof or a [`Rejection`]. Pure and synchronous:
//! never performs I/O, never reads the clock itself, never logs secrets or
//! signatures.

pub mod content;
pub mod key;

pub mod remote;
pub mod request;
pub mod sign;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::base::secret::Secret;
use crate::mac::{KeyedMac, constant_time_eq};
use crate::scheme::remote::{HttpsUrl, KeySource};
use crate::scheme::signature::{Format, JWT_INPUT, Location, Received};
use crate::scheme::source::Source;
use crate::scheme::template::Part;
use crate::scheme::{Algorithm, BodyFormat, Scheme};
use content::Content;
use key::Key;
use remote::{Credentials, Document, RemoteKeys, RemoteParams};
use request::{SignedRequest, port_variants};

/// Longest event id or type forwarded upstream as a header; longer values are dropped.
const MAX_METADATA_LEN: usize = 1024;

/// Why a delivery was refused. Each variant maps to one error code of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The signature field is absent.
    #[error("signature missing")]
    SignatureMissing,
    /// A field the signed content needs (timestamp, id, …) is absent.
    #[error("signed field missing")]
    SignedHeaderMissing,
    /// The signature field is present but holds no signature in the scheme's format.
    #[error("signature malformed")]
    SignatureMalformed,
    /// No configured secret produces a received signature.
    #[error("signature mismatch")]
    SignatureMismatch,
    /// The body is not covered by the signature (e.g. Twilio's `bodySHA256`).
    #[error("body not covered by the signature")]
    BodyMismatch,
    /// The scheme's timestamp is absent or unreadable while a tolerance applies.
    #[error("timestamp unreadable")]
    TimestampUnreadable,
    /// The timestamp is older than the tolerance allows.
    #[error("timestamp too old")]
    TimestampTooOld,
    /// The timestamp is further in the future than the tolerance allows.
    #[error("timestamp too new")]
    TimestampTooNew,
    /// The request names a key URL that is not HTTPS on an allowed host.
    #[error("key URL not allowed")]
    KeyUrlRefused,
    /// The provider's key could not be fetched or read.
    #[error("key unavailable")]
    KeyUnavailable,
    /// The certificate is outside its validity period.
    #[error("key expired")]
    KeyExpired,
    /// The JWT names a key (`kid`) the issuer does not publish.
    #[error("unknown key")]
    UnknownKey,
    /// A claim or field the route requires (`aud`, `iss`, `email`, `TopicArn`) does not match.
    #[error("claim mismatch")]
    ClaimMismatch,
    /// The body is not the JSON object or array the scheme accepts
    /// (`body_format = "json"`).
    #[error("body is not JSON")]
    BodyNotJson,
    /// A JSON member the scheme read is in the body twice (at some level of
    /// its pointer): the gateway read one copy, the app may read the other.
    #[error("duplicate JSON key")]
    DuplicateKey,
}

impl Rejection {
    /// A stable label for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::SignatureMissing => "signature_missing",
            Self::SignedHeaderMissing => "signed_field_missing",
            Self::SignatureMalformed => "signature_malformed",
            Self::SignatureMismatch => "signature_mismatch",
            Self::BodyMismatch => "body_mismatch",
            Self::TimestampUnreadable => "timestamp_unreadable",
            Self::TimestampTooOld => "timestamp_too_old",
            Self::TimestampTooNew => "timestamp_too_new",
            Self::KeyUrlRefused => "key_url_not_allowed",
            Self::KeyUnavailable => "key_unavailable",
            Self::KeyExpired => "key_expired",
            Self::UnknownKey => "unknown_key",
            Self::ClaimMismatch => "claim_mismatch",
            Self::BodyNotJson => "body_not_json",
            Self::DuplicateKey => "duplicate_json_key",
        }
    }

    /// How far verification got before failing; with several verifiers on a route,
    /// the one that got furthest explains the refusal.
    fn progress(self) -> u8 {
        match self {
            Self::SignatureMissing => 0,
            Self::SignedHeaderMissing => 1,
            Self::SignatureMalformed
            | Self::SignatureMismatch
            | Self::BodyMismatch
            | Self::BodyNotJson
            | Self::KeyUrlRefused
            | Self::KeyExpired
            | Self::UnknownKey => 2,
            Self::TimestampUnreadable
            | Self::TimestampTooOld
            | Self::TimestampTooNew
            | Self::ClaimMismatch
            | Self::DuplicateKey => 3,
            // Nothing can be said about the signature: that explains most.
            Self::KeyUnavailable => 4,
        }
    }
}

/// Proof that a delivery passed verification, with the metadata it carried.
/// Only this module can make one. The id, type and timestamp come only from
/// bytes the signature covers; the scheme's unsigned id and type are kept
/// apart, for information.
#[derive(Debug, Clone)]
pub struct Verified {
    scheme: Arc<Scheme>,
    verifier_index: usize,
    secret_index: usize,
    id: Option<String>,
    timestamp: Option<i64>,
    event_type: Option<String>,
    unsigned_id: Option<String>,
    unsigned_event_type: Option<String>,
}

impl Verified {
    /// The scheme that verified the delivery.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Which of the route's verifiers passed (0-based).
    pub fn verifier_index(&self) -> usize {
        self.verifier_index
    }

    /// Which of the verifier's secrets matched (0-based), for rotation bookkeeping.
    pub fn secret_index(&self) -> usize {
        self.secret_index
    }

    /// The event id, when the scheme has one the signature covers: the only
    /// id that decides anything (dedup, `webhook-id`, the access log's).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The event time in unix seconds, when the signature covers it.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The event type, when the signature covers it.
    pub fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    /// The id the request carries outside the signed bytes, when the scheme
    /// reads one (`x-rye-event-id`): anyone can change it, so it decides nothing.
    pub fn unsigned_id(&self) -> Option<&str> {
        self.unsigned_id.as_deref()
    }

    /// The event type the request carries outside the signed bytes: informational.
    pub fn unsigned_event_type(&self) -> Option<&str> {
        self.unsigned_event_type.as_deref()
    }
}

/// A digest of `secrets`, to tell sets of secrets apart without keeping them
/// around. It stays in the process and is never shown.
pub fn secrets_digest(secrets: &[Secret]) -> [u8; 32] {
    let mut digest = Sha256::new();
    for secret in secrets {
        digest.update((secret.expose().len() as u64).to_be_bytes());
        digest.update(secret.expose());
    }
    digest.finalize().into()
}

/// One scheme with its secrets, ready to check deliveries. Cheap to clone:
/// routes with the same scheme and secrets share one.
#[derive(Debug, Clone)]
pub struct Verifier {
    scheme: Arc<Scheme>,
    keys: Arc<[Key]>,
    /// Each key's label, for the pairs signature format (`label|secret`).
    labels: Arc<[Option<Secret>]>,
    tolerance_secs: Option<u64>,
    /// Whether the scheme signs its timestamp (read only then), decided once.
    timestamp_signed: bool,
    /// Whether the scheme signs the URL (built only then), decided once.
    signs_url: bool,
    secrets_digest: [u8; 32],
    remote: Option<Arc<RemoteParams>>,
}

/// The key document one verifier needs for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyNeed {
    /// None: the scheme has no remote keys, or the request carries no signature.
    None,
    /// Fetch this document (and parse it as `Document`); for a JWKS, `kid`
    /// names the key the token wants.
    Fetch(HttpsUrl, Document, Option<String>),
    /// Ask the key endpoint at the URL for the JWK `kid` names, with the
    /// route's credentials.
    Jwk {
        /// The key endpoint.
        url: HttpsUrl,
        /// The JWT's `kid`.
        kid: String,
        /// What the endpoint is asked with.
        credentials: Arc<Credentials>,
    },
    /// Refused without a fetch: the request fails a check that needs no key
    /// (see [`Verifier::key_need`]), or names a key that may not be fetched
    /// (not HTTPS, host not allowed, not a plain path).
    Refused(Rejection),
}

impl Verifier {
    /// Prepares a verifier. `tolerance_secs` overrides the scheme's default (0 turns
    /// the check off); it only takes effect when the signature covers the timestamp.
    /// Fails, naming the secret's position, when a secret is not a valid key.
    pub fn new(
        scheme: Arc<Scheme>,
        secrets: &[Secret],
        tolerance_secs: Option<u64>,
    ) -> Result<Self, (usize, String)> {
        let labelled = matches!(scheme.signature.format, Format::Pairs { .. });
        let mut keys = Vec::with_capacity(secrets.len());
        let mut labels = Vec::with_capacity(secrets.len());
        for (i, secret) in secrets.iter().enumerate() {
            let (label, secret) = if labelled {
                let (label, rest) = key::split_label(secret.expose())
                    .map_err(|e| (i, format!("the secret {e}")))?;
                (Some(label), rest)
            } else {
                (None, secret.clone())
            };
            keys.push(Key::prepare(scheme.algorithm, scheme.key, &secret).map_err(|e| (i, e))?);
            labels.push(label);
        }
        let timestamp_signed = scheme.timestamp_is_signed();
        let tolerance_secs = tolerance_secs
            .or(scheme.default_tolerance_secs)
            .filter(|t| *t > 0 && timestamp_signed);
        Ok(Self {
            signs_url: scheme.signed.uses(&Part::Url),
            scheme,
            keys: keys.into(),
            labels: labels.into(),
            tolerance_secs,
            timestamp_signed,
            secrets_digest: secrets_digest(secrets),
            remote: None,
        })
    }

    /// A verifier for a remote-key scheme: no secrets, the route's `params`.
    /// A key endpoint's credentials count among its secrets (for
    /// [`Verifier::secrets_digest`]).
    pub fn remote(scheme: Arc<Scheme>, params: RemoteParams, tolerance_secs: Option<u64>) -> Self {
        let mut verifier = Self::new(scheme, &[], tolerance_secs)
            .unwrap_or_else(|_| unreachable!("no secret to prepare"));
        if let Some(credentials) = &params.credentials {
            verifier.secrets_digest = secrets_digest(std::slice::from_ref(&credentials.secret));
        }
        verifier.remote = Some(Arc::new(params));
        verifier
    }

    /// The route's settings of a remote-key scheme.
    pub fn remote_params(&self) -> Option<&RemoteParams> {
        self.remote.as_deref()
    }

    /// Which key document verifying `req` at time `now` needs. Read before
    /// verification, so the document can be fetched. Every check that needs no
    /// key comes first (`precheck`), and a URL the request
    /// names is checked against the allowlist: a request that fails any of
    /// them is refused without a fetch.
    pub fn key_need(&self, req: &SignedRequest<'_>, now: i64) -> KeyNeed {
        let (Some(params), Some(spec)) = (&self.remote, &self.scheme.remote) else {
            return KeyNeed::None;
        };
        let received = receive(&self.scheme, req);
        if received.signatures.is_empty() {
            return KeyNeed::None;
        }
        if let Err(rejection) = self.precheck(req, &received, params, now) {
            return KeyNeed::Refused(rejection);
        }
        match &spec.source {
            KeySource::Certificate { url, path_suffix } => {
                let Some(text) = req.field(url, Some(&received)) else {
                    return KeyNeed::None;
                };
                match HttpsUrl::certificate(&text, &params.hosts, path_suffix.as_deref()) {
                    Some(url) => KeyNeed::Fetch(url, Document::Certificate, None),
                    None => KeyNeed::Refused(Rejection::KeyUrlRefused),
                }
            }
            KeySource::Jwks { .. } => match &params.jwks_url {
                Some(url) => KeyNeed::Fetch(url.clone(), Document::Jwks, jwt_kid(&received)),
                None => KeyNeed::Refused(Rejection::KeyUrlRefused),
            },
            KeySource::KeyEndpoint { .. } => {
                match (
                    &params.key_endpoint,
                    &params.credentials,
                    jwt_kid(&received),
                ) {
                    // A token naming no key cannot be checked; nothing to fetch.
                    (_, _, None) => KeyNeed::None,
                    (Some(url), Some(credentials), Some(kid)) => KeyNeed::Jwk {
                        url: url.clone(),
                        kid,
                        credentials: Arc::clone(credentials),
                    },
                    _ => KeyNeed::Refused(Rejection::KeyUrlRefused),
                }
            }
        }
    }

    /// The checks of a remote-key request that need no key, in the order
    /// verification makes them: the signed content is complete, the algorithm
    /// is one the scheme allows, the body matches the hash the signature
    /// carries, the signed time is within the window, a JWT's header names the
    /// algorithm and (for an OIDC token) its issuer, audience and times fit,
    /// and the fields the route requires (SNS `TopicArn`) hold a value it
    /// takes. They read bytes not yet verified, so they can only refuse:
    /// verification checks everything again once the key is there.
    fn precheck(
        &self,
        req: &SignedRequest<'_>,
        received: &Received,
        params: &RemoteParams,
        now: i64,
    ) -> Result<(), Rejection> {
        let scheme = &*self.scheme;
        Content::gather(scheme, req, Some(received))?;
        let algorithm = algorithm_for(scheme, req, received)?;
        check_body_hash(scheme, req, received)?;
        if let Some(tolerance) = self.tolerance_secs {
            let timestamp = scheme.timestamp.as_ref().and_then(|spec| {
                req.field(&spec.source, Some(received))
                    .and_then(|t| spec.format.parse(&t))
            });
            check_window(timestamp, now, tolerance)?;
        }
        if let (Format::Jwt, Some(input)) = (&scheme.signature.format, received.field(JWT_INPUT)) {
            remote::precheck_jwt(algorithm, input, params, now)?;
        }
        check_expected(req, received, params)
    }

    /// The URL a verified request asks the gateway to fetch to confirm a
    /// subscription (AWS SNS), when it is that request. `Err` when the URL is
    /// not HTTPS on an allowed host.
    pub fn confirmation(&self, req: &SignedRequest<'_>) -> Result<Option<HttpsUrl>, Rejection> {
        let (Some(params), Some(spec)) = (&self.remote, &self.scheme.remote) else {
            return Ok(None);
        };
        let Some(confirm) = &spec.confirm else {
            return Ok(None);
        };
        if req.field(&confirm.when, None).as_deref() != Some(confirm.equals.as_str()) {
            return Ok(None);
        }
        let text = req
            .field(&confirm.url, None)
            .ok_or(Rejection::SignedHeaderMissing)?;
        HttpsUrl::allowed(&text, &params.hosts, None)
            .map(Some)
            .ok_or(Rejection::KeyUrlRefused)
    }

    /// The scheme this verifier checks.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// A digest of the secrets, to notice a reload that changed them. It stays in
    /// the process and is never shown.
    pub fn secrets_digest(&self) -> [u8; 32] {
        self.secrets_digest
    }

    /// The HMAC key of secret `index`, for a handshake answer's `{hmac:…}`.
    pub fn mac_key(&self, index: usize) -> Option<&KeyedMac> {
        match self.keys.get(index) {
            Some(Key::Mac(mac)) => Some(mac),
            _ => None,
        }
    }

    /// The replay window in force, if any.
    pub fn tolerance_secs(&self) -> Option<u64> {
        self.tolerance_secs
    }

    /// Checks one delivery at time `now` (unix seconds).
    pub fn verify(&self, req: &SignedRequest<'_>, now: i64) -> Result<Verified, Rejection> {
        self.verify_with_keys(req, now, &RemoteKeys::None)
    }

    /// Checks one delivery at time `now` (unix seconds), with the remote keys
    /// fetched for it (see [`Verifier::key_need`]). A JSON body holding a
    /// member the check read twice is refused: the gateway read one copy and
    /// the app may read the other.
    pub fn verify_with_keys(
        &self,
        req: &SignedRequest<'_>,
        now: i64,
        remote_keys: &RemoteKeys,
    ) -> Result<Verified, Rejection> {
        let verified = self.check(req, now, remote_keys)?;
        // The key URL and confirmation fields are read outside verification
        // (before it, and after it): read here too, so that theirs count.
        for source in self.scheme.remote.iter().flat_map(|r| r.sources()) {
            let _ = req.field(source, None);
        }
        if req.json().met_duplicate() {
            return Err(Rejection::DuplicateKey);
        }
        Ok(verified)
    }

    /// [`Verifier::verify_with_keys`] but for duplicate JSON members: every
    /// field the scheme reads is read here.
    fn check(
        &self,
        req: &SignedRequest<'_>,
        now: i64,
        remote_keys: &RemoteKeys,
    ) -> Result<Verified, Rejection> {
        let scheme = &*self.scheme;
        let received = receive(scheme, req);
        if !received.present {
            return Err(Rejection::SignatureMissing);
        }
        if received.signatures.is_empty() {
            return Err(Rejection::SignatureMalformed);
        }
        let content = Content::gather(scheme, req, Some(&received))?;
        // Most schemes do not sign the URL: build it (and its variants) only when they do.
        let variants = match (self.signs_url, scheme.url_ports) {
            (true, true) => port_variants(req.url()),
            _ => Vec::new(),
        };
        let url = if self.signs_url { req.url() } else { "" };
        let secret_index = match &self.remote {
            Some(params) => {
                self.check_remote(req, &content, &received, params, remote_keys, now)?;
                0
            }
            None => self
                .keys
                .iter()
                .zip(self.labels.iter())
                .position(|(key, label)| {
                    let signatures = received.labelled(label.as_ref().map(Secret::expose));
                    let newline = scheme.optional_newline;
                    matches(key, &content, url, &signatures, newline)
                        || variants
                            .iter()
                            .any(|v| matches(key, &content, v, &signatures, newline))
                })
                .ok_or(Rejection::SignatureMismatch)?,
        };
        check_body_hash(scheme, req, &received)?;
        if scheme.body_format == BodyFormat::Json && !crate::json::is_document(req.body) {
            return Err(Rejection::BodyNotJson);
        }

        // An unsigned timestamp is never read: it would decide the window.
        let timestamp = scheme
            .timestamp
            .as_ref()
            .filter(|_| self.timestamp_signed)
            .and_then(|spec| {
                req.field(&spec.source, Some(&received))
                    .and_then(|t| spec.format.parse(&t))
            });
        if let Some(tolerance) = self.tolerance_secs {
            check_window(timestamp, now, tolerance)?;
        }
        let first = |sources: &[Source]| {
            bounded(req.first_field(sources, Some(&received)).map(String::from))
        };
        Ok(Verified {
            scheme: Arc::clone(&self.scheme),
            verifier_index: 0,
            secret_index,
            id: first(&scheme.ids.signed),
            timestamp,
            event_type: first(&scheme.types.signed),
            unsigned_id: first(&scheme.ids.unsigned),
            unsigned_event_type: first(&scheme.types.unsigned),
        })
    }
}

impl Verifier {
    fn check_remote(
        &self,
        req: &SignedRequest<'_>,
        content: &Content<'_>,
        received: &Received,
        params: &RemoteParams,
        remote_keys: &RemoteKeys,
        now: i64,
    ) -> Result<(), Rejection> {
        let keys = match remote_keys {
            RemoteKeys::Ready(keys) => keys,
            RemoteKeys::Failed(rejection) => return Err(*rejection),
            // Nothing to fetch: the request does not name its key.
            RemoteKeys::None => return Err(Rejection::SignedHeaderMissing),
        };
        let algorithm = algorithm_for(&self.scheme, req, received)?;
        let webhook_id = params.webhook_id.as_deref().unwrap_or_default();
        let message = content.to_vec("", webhook_id.as_bytes());
        let jwt = match self.scheme.signature.format {
            Format::Jwt => received.field(JWT_INPUT),
            _ => None,
        };
        remote::check(
            algorithm,
            keys,
            &message,
            &received.signatures,
            jwt,
            params,
            now,
        )?;
        check_expected(req, received, params)
    }
}

/// Whether every field the route requires (SNS `TopicArn`) holds a value it takes.
fn check_expected(
    req: &SignedRequest<'_>,
    received: &Received,
    params: &RemoteParams,
) -> Result<(), Rejection> {
    for (source, allowed) in &params.expect {
        let value = req.field(source, Some(received));
        if !value.is_some_and(|v| allowed.iter().any(|a| *a == v)) {
            return Err(Rejection::ClaimMismatch);
        }
    }
    Ok(())
}

/// The `kid` a received JWT's header names.
fn jwt_kid(received: &Received) -> Option<String> {
    received
        .field(JWT_INPUT)
        .and_then(|input| input.split('.').next())
        .and_then(remote::jwt_kid)
}

/// The algorithm a request was signed with: the scheme's, or the one its
/// `algorithm_from` field names (an unlisted value is malformed).
fn algorithm_for(
    scheme: &Scheme,
    req: &SignedRequest<'_>,
    received: &Received,
) -> Result<Algorithm, Rejection> {
    let Some(from) = &scheme.algorithm_from else {
        return Ok(scheme.algorithm);
    };
    match req.field(&from.source, Some(received)) {
        None => Ok(scheme.algorithm),
        Some(value) => from
            .values
            .iter()
            .find(|(v, _)| *v == value)
            .map(|(_, alg)| *alg)
            .ok_or(Rejection::SignatureMalformed),
    }
}

/// Reads the scheme's signature field(s) from the request.
fn receive(scheme: &Scheme, req: &SignedRequest<'_>) -> Received {
    let spec = &scheme.signature;
    let mut received = Received::default();
    match &spec.location {
        Location::Headers(names) => {
            for value in names.iter().flat_map(|n| req.headers.get_all(n)) {
                match value.to_str() {
                    Ok(text) => spec.format.read(text, spec.encoding, &mut received),
                    Err(_) => received.present = true,
                }
            }
        }
        Location::Json(pointer) => {
            if let Some(text) = req.json().text_at(pointer) {
                spec.format.read(&text, spec.encoding, &mut received);
            }
        }
        Location::Form(name) => {
            for (_, value) in req.form().iter().filter(|(k, _)| k == name) {
                spec.format.read(value, spec.encoding, &mut received);
            }
        }
        Location::Query(name) => {
            if let Some(value) = req.query_param(name) {
                spec.format.read(&value, spec.encoding, &mut received);
            }
        }
    }
    received
}

/// Whether `key` produces one of `signatures` over `content` with `url` (or,
/// with `optional_newline`, over `content` followed by `\n`: HMAC keys only).
fn matches(
    key: &Key,
    content: &Content<'_>,
    url: &str,
    signatures: &[&[u8]],
    optional_newline: bool,
) -> bool {
    let any_equal = |computed: &[u8]| signatures.iter().any(|s| constant_time_eq(computed, s));
    match key {
        Key::Mac(mac) => {
            let mut mac = KeyedMac::clone(mac);
            content.feed(url, &[], &mut |b| mac.update(b));
            let with_newline = optional_newline.then(|| mac.clone());
            mac.finalize_with(|computed| any_equal(computed))
                || with_newline.is_some_and(|mut mac| {
                    mac.update(b"\n");
                    mac.finalize_with(|computed| any_equal(computed))
                })
        }
        Key::Hashed(secret) => {
            let mut hash = Sha256::new();
            content.feed(url, secret.expose(), &mut |b| hash.update(b));
            any_equal(&hash.finalize())
        }
        Key::Token(_) => signatures.iter().any(|s| key.check_signature(&[], s)),
        Key::Ed25519(_) | Key::EcdsaP256(_) => {
            let message = content.to_vec(url, &[]);
            signatures.iter().any(|s| key.check_signature(&message, s))
        }
    }
}

/// Twilio's rule: a body the signature does not cover (anything but a form) must
/// match the SHA-256 carried in the signed URL; a hash carried in the
/// signature itself (Plaid's JWT claim) is required of every body. A scheme that signs the form
/// fields and carries no such hash (Mandrill) covers nothing else: any other
/// non-empty body is refused.
fn check_body_hash(
    scheme: &Scheme,
    req: &SignedRequest<'_>,
    received: &Received,
) -> Result<(), Rejection> {
    let Some(source) = &scheme.body_sha256 else {
        if scheme.signs_named_form_fields() {
            return check_form_fields(scheme, req);
        }
        return if scheme.signs_form_only() && !req.is_form() && !req.body.is_empty() {
            Err(Rejection::BodyMismatch)
        } else {
            Ok(())
        };
    };
    match req.field(source, Some(received)) {
        Some(claimed) => {
            let actual = Sha256::digest(req.body);
            let claimed = hex::decode(claimed.trim()).map_err(|_| Rejection::BodyMismatch)?;
            constant_time_eq(&actual, &claimed)
                .then_some(())
                .ok_or(Rejection::BodyMismatch)
        }
        // A hash the signature carries itself (a JWT claim) is always required.
        None if matches!(source, Source::Signature(_)) => Err(Rejection::BodyMismatch),
        None if req.is_form() || req.body.is_empty() => Ok(()),
        None => Err(Rejection::BodyMismatch),
    }
}

/// A scheme that signs named form fields (Braintree's `bt_payload`) covers the
/// body only when it is a form holding nothing else but its signature field,
/// and each of them once: a repeated field could be read one way here and
/// another way by the app.
fn check_form_fields(scheme: &Scheme, req: &SignedRequest<'_>) -> Result<(), Rejection> {
    let signature = match &scheme.signature.location {
        Location::Form(name) => Some(name.as_str()),
        Location::Headers(_) | Location::Json(_) | Location::Query(_) => None,
    };
    if !req.is_form() && !req.body.is_empty() {
        return Err(Rejection::BodyMismatch);
    }
    let allowed: Vec<&str> = scheme.signed_form_fields().chain(signature).collect();
    let mut seen: Vec<&str> = Vec::with_capacity(allowed.len());
    for (name, _) in req.form() {
        if !allowed.contains(&name.as_str()) || seen.contains(&name.as_str()) {
            return Err(Rejection::BodyMismatch);
        }
        seen.push(name);
    }
    Ok(())
}

fn check_window(timestamp: Option<i64>, now: i64, tolerance: u64) -> Result<(), Rejection> {
    let ts = timestamp.ok_or(Rejection::TimestampUnreadable)?;
    let age = i128::from(now) - i128::from(ts);
    if age > i128::from(tolerance) {
        Err(Rejection::TimestampTooOld)
    } else if -age > i128::from(tolerance) {
        Err(Rejection::TimestampTooNew)
    } else {
        Ok(())
    }
}

fn bounded(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty() && v.len() <= MAX_METADATA_LEN)
}

/// Runs every verifier; the first that passes wins. When all fail, the refusal of
/// the one that got furthest is returned (a bad signature explains more than a
/// missing header of another scheme).
pub fn verify_any(
    verifiers: &[Verifier],
    req: &SignedRequest<'_>,
    now: i64,
) -> Result<Verified, Rejection> {
    verify_any_with_keys(verifiers, req, now, &[])
}

/// [`verify_any`] with the remote keys fetched for the request:
/// `remote_keys[i]` holds verifier `i`'s (a missing entry means nothing was).
pub fn verify_any_with_keys(
    verifiers: &[Verifier],
    req: &SignedRequest<'_>,
    now: i64,
    remote_keys: &[RemoteKeys],
) -> Result<Verified, Rejection> {
    let mut worst: Option<Rejection> = None;
    for (index, verifier) in verifiers.iter().enumerate() {
        let keys = remote_keys.get(index).unwrap_or(&RemoteKeys::None);
        match verifier.verify_with_keys(req, now, keys) {
            Ok(mut verified) => {
                verified.verifier_index = index;
                return Ok(verified);
            }
            Err(r) => {
                if worst.is_none_or(|w| r.progress() > w.progress()) {
                    worst = Some(r);
                }
            }
        }
    }
    Err(worst.unwrap_or(Rejection::SignatureMissing))
}

#[cfg(test)]
pub(crate) mod tests;
