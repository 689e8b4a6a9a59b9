//! Scheme descriptors: a provider's signing scheme described as data (key
//! handling, algorithm, signed content, signature grammar, timestamp, event id
//! and type, handshakes). Built-in presets and a config's `[schemes.NAME]` tables
//! are written in the same TOML language ([`mod@file`]), validated by the same
//! builder ([`build`]) into a [`Scheme`].

pub mod build;
pub mod file;
pub mod handshake;
pub mod presets;
pub mod remote;
pub mod signature;
pub mod source;
pub mod template;

use http::{HeaderName, Method};

use crate::mac::HashAlg;
use handshake::Handshake;
use signature::{Location, SignatureSpec};
use source::Source;
use template::{Part, Template};

/// How a signature is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC with a hash: `hmac-sha1`, `hmac-sha256`, `hmac-sha512`.
    Hmac(HashAlg),
    /// `sha256`: a plain SHA-256 of the signed content, which includes `{secret}`.
    Sha256,
    /// `ed25519`: an Ed25519 signature, checked with the provider's public key.
    Ed25519,
    /// `ecdsa-p256-sha256`: an ECDSA P-256 signature (DER), checked with a public key.
    EcdsaP256Sha256,
    /// `token`: the signature field carries the secret itself (compared in constant time).
    Token,
    /// `rsa-sha1`: RSASSA-PKCS1-v1_5 with SHA-1, checked with a remote key (AWS SNS v1).
    RsaSha1,
    /// `rsa-sha256`: RSASSA-PKCS1-v1_5 with SHA-256 (RS256), checked with a remote key.
    RsaSha256,
    /// `es256`: ECDSA P-256 with SHA-256 and a fixed-width `r || s` signature
    /// (a JWT's ES256), checked with a remote key (Plaid).
    Es256,
}

impl Algorithm {
    /// Parses the descriptor spelling.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "hmac-sha1" => Self::Hmac(HashAlg::Sha1),
            "hmac-sha256" => Self::Hmac(HashAlg::Sha256),
            "hmac-sha512" => Self::Hmac(HashAlg::Sha512),
            "sha256" => Self::Sha256,
            "ed25519" => Self::Ed25519,
            "ecdsa-p256-sha256" => Self::EcdsaP256Sha256,
            "token" => Self::Token,
            "rsa-sha1" => Self::RsaSha1,
            "rsa-sha256" => Self::RsaSha256,
            "es256" => Self::Es256,
            _ => return None,
        })
    }

    /// The descriptor spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hmac(HashAlg::Sha1) => "hmac-sha1",
            Self::Hmac(HashAlg::Sha256) => "hmac-sha256",
            Self::Hmac(HashAlg::Sha512) => "hmac-sha512",
            Self::Sha256 => "sha256",
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Self::Token => "token",
            Self::RsaSha1 => "rsa-sha1",
            Self::RsaSha256 => "rsa-sha256",
            Self::Es256 => "es256",
        }
    }

    /// Whether verification uses a public key (so the configured secret is public).
    pub fn is_asymmetric(self) -> bool {
        matches!(
            self,
            Self::Ed25519 | Self::EcdsaP256Sha256 | Self::RsaSha1 | Self::RsaSha256 | Self::Es256
        )
    }

    /// Whether the key is fetched from the provider at run time (never configured).
    pub fn is_remote(self) -> bool {
        matches!(self, Self::RsaSha1 | Self::RsaSha256 | Self::Es256)
    }
}

/// How a configured secret becomes key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// The secret's bytes as written.
    Raw,
    /// Standard base64 (padding optional).
    Base64,
    /// Hexadecimal.
    Hex,
    /// Standard Webhooks: an optional `whsec_` prefix, then base64.
    Whsec,
    /// Standard Webhooks public key: an optional `whpk_` prefix, then base64.
    Whpk,
    /// A base64 DER SubjectPublicKeyInfo (e.g. SendGrid's verification key).
    SpkiBase64,
    /// The SHA-1 digest of the secret's bytes, 20 raw bytes (Braintree's HMAC key).
    Sha1,
}

impl KeyFormat {
    /// Whether keys in this format are fetched at run time (from a URL the
    /// provider names) rather than configured. Every format is listed, so a new
    /// one must say.
    pub fn is_remote(self) -> bool {
        match self {
            Self::Raw
            | Self::Base64
            | Self::Hex
            | Self::Whsec
            | Self::Whpk
            | Self::SpkiBase64
            | Self::Sha1 => false,
        }
    }

    /// Parses the descriptor spelling.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "raw" => Self::Raw,
            "base64" => Self::Base64,
            "hex" => Self::Hex,
            "whsec" => Self::Whsec,
            "whpk" => Self::Whpk,
            "spki-base64" => Self::SpkiBase64,
            "sha1" => Self::Sha1,
            _ => return None,
        })
    }
}

/// How a timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// Integer seconds since the unix epoch.
    Unix,
    /// Integer milliseconds since the unix epoch.
    UnixMs,
    /// RFC 3339, e.g. `2024-07-22T14:30:04.367Z`.
    Rfc3339,
}

impl TimeFormat {
    /// Parses the descriptor spelling.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "unix" => Self::Unix,
            "unix-ms" => Self::UnixMs,
            "rfc3339" => Self::Rfc3339,
            _ => return None,
        })
    }

    /// Reads `text` as unix seconds; `None` when it is not in this format.
    pub fn parse(self, text: &str) -> Option<i64> {
        let text = text.trim();
        match self {
            Self::Unix => text.parse().ok(),
            Self::UnixMs => text.parse::<i64>().ok().map(|ms| ms.div_euclid(1000)),
            Self::Rfc3339 => {
                let format = time::format_description::well_known::Rfc3339;
                time::OffsetDateTime::parse(text, &format)
                    .ok()
                    .map(|t| t.unix_timestamp())
            }
        }
    }

    /// Writes unix seconds `secs` in this format.
    pub fn format(self, secs: i64) -> String {
        match self {
            Self::Unix => secs.to_string(),
            Self::UnixMs => (i128::from(secs) * 1000).to_string(),
            Self::Rfc3339 => {
                let format = time::format_description::well_known::Rfc3339;
                time::OffsetDateTime::from_unix_timestamp(secs)
                    .ok()
                    .and_then(|t| t.format(&format).ok())
                    .unwrap_or_default()
            }
        }
    }
}

/// What a scheme accepts as a body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyFormat {
    /// `any`: whatever the signature covers.
    #[default]
    Any,
    /// `json`: one JSON object or array; any other body is refused, even when
    /// signed. Then no token an unverified handshake MACs (see
    /// [`handshake::is_challenge_token`]) can pass as signed content.
    Json,
}

impl BodyFormat {
    /// Parses the descriptor spelling.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "any" => Some(Self::Any),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// The event time of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampSpec {
    /// Where it is read from.
    pub source: Source,
    /// How it is written.
    pub format: TimeFormat,
}

/// A complete signing scheme.
#[derive(Debug, Clone)]
pub struct Scheme {
    /// The name routes use in `scheme = "…"`.
    pub name: String,
    /// The provider's documentation of the scheme.
    pub docs: Option<String>,
    /// The provider's name, for listings; the scheme's name when not given.
    pub provider: Option<String>,
    /// How signatures are made.
    pub algorithm: Algorithm,
    /// How secrets become keys.
    pub key: KeyFormat,
    /// What is signed.
    pub signed: Template,
    /// Where the signature is and how it is written.
    pub signature: SignatureSpec,
    /// The event time, when the scheme has one.
    pub timestamp: Option<TimestampSpec>,
    /// Sources of the event id, tried in order, as written (`{id}` signs the first found).
    pub id: Vec<Source>,
    /// Sources of the event type, tried in order, as written.
    pub event_type: Vec<Source>,
    /// `id` split by whether the signature covers each source: only a signed id
    /// decides anything (dedup, `webhook-id`).
    pub ids: Split,
    /// `event_type` split the same way: only a signed type is `x-webhook-event-type`.
    pub types: Split,
    /// Replay window applied when a route does not set `tolerance_secs`.
    pub default_tolerance_secs: Option<u64>,
    /// Also try `{url}` without its port and with the scheme's default port.
    pub url_ports: bool,
    /// Also accept a signature of the signed content followed by one `\n`
    /// (Braintree's SDKs try both).
    pub optional_newline: bool,
    /// A source holding the hex SHA-256 of the body; a body that is not a form
    /// must match it (it is then covered by the signed URL).
    pub body_sha256: Option<Source>,
    /// What the scheme accepts as a body.
    pub body_format: BodyFormat,
    /// Endpoint-verification handshakes the gateway answers itself.
    pub handshakes: Vec<Handshake>,
    /// A request field that picks the algorithm (AWS SNS's `SignatureVersion`).
    pub algorithm_from: Option<AlgorithmFrom>,
    /// Where the verification keys come from, for schemes whose keys the
    /// provider publishes (`[schemes.NAME.keys]`).
    pub remote: Option<remote::RemoteSpec>,
}

/// Sources split by whether the signature covers them, each part in the order
/// the descriptor lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// Covered by the signature: these may decide (dedup, filters, `webhook-id`).
    pub signed: Vec<Source>,
    /// Not covered: passed on for information only (`x-webhook-unsigned-id`,
    /// `x-webhook-unsigned-event-type`), never used to decide anything.
    pub unsigned: Vec<Source>,
}

/// The AWS SNS members `{aws_sns}` signs whatever the message's `Type`
/// (`Subject`, `SubscribeURL` and `Token` are signed for some types only).
const AWS_SNS_ALWAYS_SIGNED: [&str; 5] = ["Message", "MessageId", "Timestamp", "TopicArn", "Type"];

/// `algorithm_from`: the algorithm named by a request field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgorithmFrom {
    /// The field, e.g. `json:/SignatureVersion`.
    pub source: Source,
    /// Each accepted value and its algorithm.
    pub values: Vec<(String, Algorithm)>,
}

impl Scheme {
    /// Whether the signature covers the value read from `source`, so that it can
    /// decide something (dedup, `webhook-id`, the event type, the timestamp's
    /// window). Nothing is covered by a `token` scheme, whose "signature" is the
    /// secret itself and authenticates no bytes. Otherwise a source is covered
    /// when the signed content names it (`{header:NAME}`, `{optional:…}`), or
    /// binds it (`{timestamp}` its timestamp source, `{id}` its first id
    /// source), and:
    ///
    /// - `json:` when every body byte is covered (`{body}`, or a `body_sha256`
    ///   carried in the signature itself), or the pointer is a member
    ///   `{aws_sns}` signs for every message type;
    /// - `form:` when every body byte is covered, or `{form_params}` is signed;
    /// - `query:` when `{url}` or `{query}` is signed;
    /// - `signature:` when the format is `jwt` (its claims are signed);
    /// - `header:` only as above.
    ///
    /// A `body_sha256` read from the URL covers only non-form bodies, so it
    /// makes no `json:` or `form:` source signed by itself; nor does `{crc32}`
    /// (PayPal), which anyone can keep while changing the body.
    pub fn covers(&self, source: &Source) -> bool {
        self.covers_as(source, false)
    }

    /// [`Scheme::covers`] for a source of the event id: `{id}` signs the
    /// value `event.id` yields, whichever of its sources that came from.
    pub fn covers_id(&self, source: &Source) -> bool {
        self.covers_as(source, true)
    }

    fn covers_as(&self, source: &Source, as_id: bool) -> bool {
        if self.algorithm == Algorithm::Token {
            return false;
        }
        let signed = &self.signed;
        let bound_timestamp = signed.uses(&Part::Timestamp)
            && self.timestamp.as_ref().is_some_and(|t| t.source == *source);
        let bound_id = signed.uses(&Part::Id)
            && (self.id.first() == Some(source) || (as_id && self.id.contains(source)));
        if bound_timestamp || bound_id || signed.fields().any(|f| f == source) {
            return true;
        }
        match source {
            Source::Header(_) => false,
            Source::Query(_) => signed.uses(&Part::Url) || signed.uses(&Part::Query),
            Source::Signature(_) => self.signature.format == signature::Format::Jwt,
            Source::Json(pointer) => {
                self.covers_every_body_byte()
                    || (signed.uses(&Part::AwsSns)
                        && AWS_SNS_ALWAYS_SIGNED
                            .iter()
                            .any(|m| pointer.as_str().strip_prefix('/') == Some(*m)))
            }
            Source::Form(_) => self.covers_every_body_byte() || signed.uses(&Part::FormParams),
        }
    }

    /// Whether the signature covers the body byte for byte, whatever it is:
    /// `{body}`, or a `body_sha256` the signature carries (a JWT claim,
    /// required of every body).
    fn covers_every_body_byte(&self) -> bool {
        self.signed.uses(&Part::Body)
            || self
                .body_sha256
                .as_ref()
                .is_some_and(|s| matches!(s, Source::Signature(_)) && self.covers(s))
    }

    /// Whether the signature covers the timestamp, so it can be trusted for
    /// replay defense.
    pub fn timestamp_is_signed(&self) -> bool {
        self.timestamp
            .as_ref()
            .is_some_and(|t| self.covers(&t.source))
    }

    /// Splits the event id and type sources by [`Scheme::covers_id`] and
    /// [`Scheme::covers`] (the builder calls it once the scheme is complete).
    pub fn split_event_sources(&mut self) {
        let split = |sources: &[Source], covered: &dyn Fn(&Source) -> bool| {
            let (signed, unsigned) = sources.iter().cloned().partition(|s| covered(s));
            Split { signed, unsigned }
        };
        let ids = split(&self.id, &|s| self.covers_id(s));
        let types = split(&self.event_type, &|s| self.covers(s));
        self.ids = ids;
        self.types = types;
    }

    /// Whether the signature covers only the decoded form fields of the body
    /// (all of them, or named ones), with no body hash for other bodies: such
    /// a scheme accepts form bodies only (Mandrill, Braintree).
    pub fn signs_form_only(&self) -> bool {
        (self.signed.uses(&Part::FormParams) || self.signed_form_fields().next().is_some())
            && !self.signed.uses(&Part::Body)
            && self.body_sha256.is_none()
    }

    /// The form fields the signed content names (`{form:NAME}`).
    pub fn signed_form_fields(&self) -> impl Iterator<Item = &str> {
        self.signed.fields().filter_map(|s| match s {
            Source::Form(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether the signature covers named form fields rather than the body
    /// (Braintree's `{form:bt_payload}`): the body must then be a form of
    /// those fields and the signature's, each once, and nothing else.
    pub fn signs_named_form_fields(&self) -> bool {
        self.signs_form_only() && !self.signed.uses(&Part::FormParams)
    }

    /// Whether the signature covers the body (through `{body}`, the form
    /// fields, or a signed body hash). Token schemes never do.
    pub fn covers_body(&self) -> bool {
        self.algorithm != Algorithm::Token
            && (self.signed.uses(&Part::Body)
                || self.signed.uses(&Part::FormParams)
                || self.signed.uses(&Part::AwsSns)
                || self.signed.uses(&Part::Crc32)
                || self.body_sha256.is_some()
                || self.signs_named_form_fields())
    }

    /// Whether no token an unverified handshake may MAC (see
    /// [`handshake::is_challenge_token`]) can be content this scheme
    /// accepts as signed: it signs the body, and a body must be a JSON object
    /// or array, so the signed content holds a `{` or `[` no such token has.
    pub fn refuses_challenge_tokens(&self) -> bool {
        self.body_format == BodyFormat::Json && self.signed.uses(&Part::Body)
    }

    /// Headers that carry signature material (the signature, and a header
    /// timestamp); `strip_signature_headers` removes these before forwarding.
    pub fn signature_headers(&self) -> Vec<HeaderName> {
        let mut names = match &self.signature.location {
            Location::Headers(names) => names.clone(),
            Location::Json(_) | Location::Form(_) | Location::Query(_) => Vec::new(),
        };
        if let Some(TimestampSpec {
            source: Source::Header(h),
            ..
        }) = &self.timestamp
        {
            names.push(h.clone());
        }
        names
    }

    /// The top-level JSON body members the scheme reads: only these are parsed.
    pub fn json_members(&self) -> Vec<String> {
        let mut sources: Vec<&Source> = Vec::new();
        sources.extend(self.timestamp.as_ref().map(|t| &t.source));
        sources.extend(&self.id);
        sources.extend(&self.event_type);
        sources.extend(self.signed.fields());
        sources.extend(&self.body_sha256);
        sources.extend(self.handshakes.iter().flat_map(Handshake::sources));
        sources.extend(self.algorithm_from.as_ref().map(|a| &a.source));
        sources.extend(self.remote.iter().flat_map(remote::RemoteSpec::sources));
        let signature = match &self.signature.location {
            Location::Json(pointer) => pointer.first_segment(),
            _ => None,
        };
        let mut members: Vec<String> = sources
            .iter()
            .filter_map(|s| s.json_member())
            .chain(signature)
            .chain(
                self.signed
                    .uses(&Part::AwsSns)
                    .then_some(remote::AWS_SNS_MEMBERS)
                    .into_iter()
                    .flatten()
                    .copied(),
            )
            .map(str::to_owned)
            .collect();
        members.sort();
        members.dedup();
        members
    }

    /// The provider the scheme belongs to, for listings: its `provider`, else its name.
    pub fn provider_name(&self) -> &str {
        self.provider.as_deref().unwrap_or(&self.name)
    }

    /// Whether the scheme verifies with keys fetched at run time (the
    /// "remote keys" marker of `hookgate schemes`).
    pub fn fetches_keys(&self) -> bool {
        self.key.is_remote() || self.remote.is_some()
    }

    /// Methods the scheme's handshakes use besides POST (e.g. GET for Meta).
    pub fn handshake_methods(&self) -> impl Iterator<Item = &Method> {
        self.handshakes.iter().filter_map(|h| h.method.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scheme from descriptor text, as a config's `[schemes.x]` would give it.
    fn scheme(text: &str) -> Scheme {
        let file = toml::from_str(text).unwrap();
        let mut diagnostics = Vec::new();
        let built = build::SchemeBuilder::new(&mut diagnostics).scheme("x", &file);
        built.unwrap_or_else(|| panic!("{diagnostics:?}"))
    }

    fn preset(name: &str) -> std::sync::Arc<Scheme> {
        presets::get(name).unwrap()
    }

    fn src(text: &str) -> Source {
        Source::parse(text).unwrap()
    }

    /// Which of `sources` `scheme` counts as signed.
    fn signed<'a>(scheme: &Scheme, sources: &[&'a str]) -> Vec<&'a str> {
        sources
            .iter()
            .copied()
            .filter(|s| scheme.covers(&src(s)))
            .collect()
    }

    const EVERY_KIND: [&str; 6] = [
        "header:x-id",
        "json:/id",
        "form:id",
        "query:id",
        "signature:t",
        "signature:iat",
    ];

    #[test]
    fn a_signed_body_covers_its_json_and_form_fields_not_headers() {
        let s = scheme("algorithm = \"hmac-sha256\"\nsignature = { header = \"sig\" }");
        assert_eq!(signed(&s, &EVERY_KIND), ["json:/id", "form:id"]);
        // A CRC-32 is no signature: a body of the same CRC is easy to make.
        let paypal = preset("paypal");
        assert_eq!(
            signed(
                &paypal,
                &[
                    "json:/id",
                    "header:paypal-transmission-id",
                    "header:paypal-transmission-time"
                ]
            ),
            [
                "header:paypal-transmission-id",
                "header:paypal-transmission-time"
            ]
        );
    }

    #[test]
    fn a_token_covers_nothing() {
        let s = scheme(
            "algorithm = \"token\"\nsignature = { header = \"Authorization\" }\n\
             timestamp = { from = \"json:/ts\" }\nevent = { id = \"json:/id\" }",
        );
        assert!(signed(&s, &EVERY_KIND).is_empty());
        assert!(!s.timestamp_is_signed());
        assert_eq!(s.ids.unsigned, [src("json:/id")]);
        for name in [
            "gitlab",
            "okta",
            "cloudevents",
            "azure-event-grid",
            "adyen-basic-auth",
        ] {
            let p = preset(name);
            assert!(
                p.ids.signed.is_empty() && p.types.signed.is_empty(),
                "{name}"
            );
        }
    }

    #[test]
    fn named_and_bound_fields_are_covered() {
        let s = scheme(
            "algorithm = \"hmac-sha256\"\nsigned = \"{id}.{timestamp}.{header:x-a}.{optional:header:x-b}:{form:p}\"\n\
             signature = { header = \"sig\", format = \"kv\", key = \"v1\" }\n\
             timestamp = { from = \"signature:t\" }\n\
             event = { id = [\"header:x-id\", \"header:x-id2\"], type = [\"header:x-id2\", \"header:x-a\"] }",
        );
        assert_eq!(
            signed(
                &s,
                &[
                    "header:x-a",
                    "header:x-b",
                    "header:x-c",
                    "signature:t",
                    "signature:u",
                    "form:p",
                    "form:q",
                    "json:/id"
                ]
            ),
            ["header:x-a", "header:x-b", "signature:t", "form:p"]
        );
        // {id} signs what `event.id` yields: any of its sources as the id, but
        // only the first as anything else (a later one is not what was signed
        // while an earlier one is present).
        assert!(s.covers(&src("header:x-id")) && !s.covers(&src("header:x-id2")));
        assert!(s.covers_id(&src("header:x-id2")));
        assert_eq!(s.ids.signed, [src("header:x-id"), src("header:x-id2")]);
        assert_eq!(s.types.signed, [src("header:x-a")]);
        assert_eq!(s.types.unsigned, [src("header:x-id2")]);
        assert!(s.timestamp_is_signed());
    }

    #[test]
    fn the_signed_url_or_query_covers_query_parameters() {
        for signed_content in ["{url}", "{query}{body}"] {
            let s = scheme(&format!(
                "algorithm = \"hmac-sha256\"\nsigned = \"{signed_content}\"\nsignature = {{ header = \"sig\" }}"
            ));
            assert!(s.covers(&src("query:id")), "{signed_content}");
        }
        let path = scheme(
            "algorithm = \"hmac-sha256\"\nsigned = \"{path}{body}\"\nsignature = { header = \"sig\" }",
        );
        assert!(!path.covers(&src("query:id")));
    }

    #[test]
    fn jwt_claims_are_covered_and_the_body_only_through_a_claimed_hash() {
        // monday: the JWT covers its claims, not the body.
        let monday = preset("monday");
        assert_eq!(
            signed(&monday, &EVERY_KIND),
            ["signature:t", "signature:iat"]
        );
        assert!(monday.timestamp_is_signed());
        assert!(monday.ids.signed.is_empty() && monday.types.signed.is_empty());
        // vonage and plaid carry the body's SHA-256 in a claim: the body is covered.
        for name in ["vonage", "plaid"] {
            assert!(preset(name).covers(&src("json:/id")), "{name}");
        }
        // A kv signature's other keys are not signed unless the content names them.
        let stripe = preset("stripe");
        assert!(stripe.covers(&src("signature:t")) && !stripe.covers(&src("signature:v0")));
    }

    #[test]
    fn form_params_cover_the_form_and_a_url_body_hash_covers_no_json() {
        // Twilio: the form by {form_params}; a JSON body by the bodySHA256 in
        // the signed URL, which a form body need not carry, so no JSON field
        // counts as signed.
        let twilio = preset("twilio");
        assert_eq!(signed(&twilio, &EVERY_KIND), ["form:id", "query:id"]);
        // Braintree signs one named field, and refuses any other.
        let braintree = preset("braintree");
        assert_eq!(
            signed(&braintree, &["form:bt_payload", "form:other", "json:/id"]),
            ["form:bt_payload"]
        );
    }

    #[test]
    fn aws_sns_covers_the_members_it_signs_for_every_type() {
        let sns = preset("aws-sns");
        assert_eq!(
            signed(
                &sns,
                &[
                    "json:/MessageId",
                    "json:/Type",
                    "json:/Timestamp",
                    "json:/Message",
                    "json:/TopicArn",
                    "json:/Token",
                    "json:/Subject",
                    "json:/SubscribeURL",
                    "json:/Message/id",
                    "json:/Other"
                ]
            ),
            [
                "json:/MessageId",
                "json:/Type",
                "json:/Timestamp",
                "json:/Message",
                "json:/TopicArn"
            ]
        );
    }

    #[test]
    fn every_built_in_timestamp_is_signed_and_splits_keep_their_order() {
        for (name, s) in presets::all() {
            if s.timestamp.is_some() {
                assert!(s.timestamp_is_signed(), "{name}");
            }
            let (ids, types) = (&s.ids, &s.types);
            assert_eq!(ids.signed.len() + ids.unsigned.len(), s.id.len(), "{name}");
            assert_eq!(
                types.signed.len() + types.unsigned.len(),
                s.event_type.len(),
                "{name}"
            );
            let in_order = |part: &[Source], all: &[Source]| {
                let positions: Vec<usize> = part
                    .iter()
                    .map(|p| all.iter().position(|a| a == p).unwrap())
                    .collect();
                positions.is_sorted()
            };
            assert!(
                in_order(&ids.signed, &s.id) && in_order(&ids.unsigned, &s.id),
                "{name}"
            );
        }
        let rye = preset("rye");
        assert_eq!(rye.ids.signed, [src("json:/id")]);
        assert_eq!(rye.ids.unsigned, [src("header:x-rye-event-id")]);
        assert_eq!(rye.types.signed, [src("json:/type")]);
        assert_eq!(rye.types.unsigned, [src("header:x-rye-topic")]);
        let github = preset("github");
        assert!(github.ids.signed.is_empty() && github.types.signed.is_empty());
        // Standard Webhooks signs its id header through {id}.
        assert_eq!(
            preset("standard-webhooks").ids.signed,
            [src("header:webhook-id")]
        );
    }

    #[test]
    fn time_formats_parse_and_format() {
        assert_eq!(TimeFormat::Unix.parse(" 1700000000 "), Some(1_700_000_000));
        assert_eq!(TimeFormat::Unix.parse("17e8"), None);
        assert_eq!(
            TimeFormat::UnixMs.parse("1693657560000"),
            Some(1_693_657_560)
        );
        assert_eq!(
            TimeFormat::UnixMs.parse("1693657560999"),
            Some(1_693_657_560)
        );
        assert_eq!(
            TimeFormat::Rfc3339.parse("2024-07-22T14:30:04.367Z"),
            Some(1_721_658_604)
        );
        assert_eq!(
            TimeFormat::Rfc3339.parse("2024-07-22T16:30:04+02:00"),
            Some(1_721_658_604)
        );
        assert_eq!(
            TimeFormat::Rfc3339.parse("2019-11-16T10:11:12.634234626Z"),
            Some(1_573_899_072)
        );
        assert_eq!(TimeFormat::Rfc3339.parse("yesterday"), None);
        for f in [TimeFormat::Unix, TimeFormat::UnixMs, TimeFormat::Rfc3339] {
            assert_eq!(
                f.parse(&f.format(1_700_000_000)),
                Some(1_700_000_000),
                "{f:?}"
            );
        }
        for hostile in ["", "-", "99999999999999999999999", "-9223372036854775808"] {
            let _ = TimeFormat::UnixMs.parse(hostile);
            let _ = TimeFormat::Rfc3339.parse(hostile);
        }
    }

    #[test]
    fn spellings_round_trip() {
        for name in [
            "hmac-sha1",
            "hmac-sha256",
            "hmac-sha512",
            "sha256",
            "ed25519",
            "ecdsa-p256-sha256",
            "token",
            "rsa-sha1",
            "rsa-sha256",
            "es256",
        ] {
            assert_eq!(Algorithm::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(Algorithm::parse("md5"), None);
        assert_eq!(KeyFormat::parse("whsec"), Some(KeyFormat::Whsec));
        assert_eq!(KeyFormat::parse("pem"), None);
    }
}
