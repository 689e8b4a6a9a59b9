//! The serde mirror of a scheme descriptor: a `[schemes.NAME]` table in a
//! config, or one of the built-in presets. Spans are kept for diagnostics; all
//! validation happens in `scheme::build`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::base::one_or_many::OneOrMany;

/// `[schemes.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemeFile {
    /// `hmac-sha1`, `hmac-sha256`, `hmac-sha512`, `sha256`, `ed25519`,
    /// `ecdsa-p256-sha256`, `token`, `rsa-sha1`, `rsa-sha256` or `es256` (the
    /// last three with `keys`).
    pub algorithm: Spanned<String>,
    /// A request field whose value picks the algorithm.
    pub algorithm_from: Option<Spanned<AlgorithmFromFile>>,
    /// Where the keys are published, for schemes verified with remote keys.
    pub keys: Option<Spanned<KeysFile>>,
    /// How a secret becomes a key: `raw` (default), `base64`, `hex`, `whsec`,
    /// `whpk`, `spki-base64`, `sha1`.
    pub key: Option<Spanned<String>>,
    /// Template of the signed content. Default `{body}`.
    pub signed: Option<Spanned<String>>,
    /// Default replay window in seconds for a signed timestamp.
    pub tolerance_secs: Option<Spanned<i64>>,
    /// Also try `{url}` without its port and with the default port (Twilio).
    #[serde(default)]
    pub url_ports: bool,
    /// Also accept an HMAC of the signed content followed by one `\n` (Braintree).
    #[serde(default)]
    pub optional_newline: Option<Spanned<bool>>,
    /// Source of a hex SHA-256 of the body that must match when the body is not a
    /// form (Twilio's `query:bodySHA256`).
    pub body_sha256: Option<Spanned<String>>,
    /// `any` (default) or `json`: the body must be one JSON object or array,
    /// any other body is refused even when signed.
    pub body_format: Option<Spanned<String>>,
    /// Link to the provider's documentation.
    pub docs: Option<String>,
    /// The provider's name, which `hookgate schemes` groups by.
    pub provider: Option<String>,
    /// Where the signature is and how it is written.
    pub signature: Spanned<SignatureFile>,
    /// Where the event time is.
    pub timestamp: Option<Spanned<TimestampFile>>,
    /// Where the event id and type are.
    #[serde(default)]
    pub event: EventFile,
    /// Handshakes: one table, or several `[[schemes.NAME.handshake]]`.
    pub handshake: Option<Spanned<OneOrMany<HandshakeFile>>>,
}

/// `algorithm_from = { from = "json:/SignatureVersion", values = { "1" = "rsa-sha1" } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlgorithmFromFile {
    /// The field, e.g. `json:/SignatureVersion`.
    pub from: Spanned<String>,
    /// Each accepted value and the algorithm it names.
    pub values: Spanned<BTreeMap<String, String>>,
}

/// `[schemes.NAME.keys]`: remote keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// Source of the URL of a PEM certificate, e.g. `json:/SigningCertURL`.
    pub certificate_url: Option<Spanned<String>>,
    /// Text the certificate URL's path must end with, e.g. `.pem`.
    pub path_suffix: Option<Spanned<String>>,
    /// `https://` URL of a JWKS; `{tenant}` is the route's `tenant`.
    pub jwks_url: Option<Spanned<String>>,
    /// `https://` URL answering a POST `{client_id, secret, key_id}` with
    /// `{"key": JWK}`, one key per `kid` (Plaid's `/webhook_verification_key/get`).
    pub key_endpoint: Option<Spanned<String>>,
    /// Hosts (`*` for one label, optional `:port`) that may serve certificates
    /// and confirmation URLs.
    pub hosts: Option<Spanned<Vec<String>>>,
    /// Accepted JWT issuers (`iss`).
    pub issuers: Option<Spanned<Vec<String>>>,
    /// A subscription the gateway confirms by fetching a URL.
    pub confirm: Option<Spanned<ConfirmFile>>,
}

/// `confirm = { when = "json:/Type", equals = "SubscriptionConfirmation", url = "json:/SubscribeURL" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmFile {
    /// The field that marks a confirmation request.
    pub when: Spanned<String>,
    /// Its value.
    pub equals: Spanned<String>,
    /// The field holding the URL to fetch.
    pub url: Spanned<String>,
}

/// `[schemes.NAME.signature]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// Header name, or a list of names (any may carry it).
    pub header: Option<Spanned<OneOrMany<String>>>,
    /// JSON pointer of a body field that carries it.
    pub json: Option<Spanned<String>>,
    /// Name of a form field that carries it.
    pub form: Option<Spanned<String>>,
    /// Name of a query parameter that carries it (a secret put in the URL, for
    /// providers that sign nothing).
    pub query: Option<Spanned<String>>,
    /// `plain` (default), `kv` (`t=…,v1=…`), `versioned` (`v1,<sig> v1,<sig>`)
    /// or `pairs` (`label|<sig>&label|<sig>`).
    pub format: Option<Spanned<String>>,
    /// `kv`: between pairs (default `,`); `versioned`: between entries (default
    /// a space); `pairs`: between entries (default `&`).
    pub separator: Option<Spanned<String>>,
    /// `kv`: the key of the signatures; `versioned`: the version to use.
    pub key: Option<Spanned<String>>,
    /// `plain`: required text before the signature.
    pub prefix: Option<Spanned<String>>,
    /// `hex` (default), `base64`, `base64url`, or `text` (default for `token`).
    pub encoding: Option<Spanned<String>>,
}

/// `[schemes.NAME.timestamp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampFile {
    /// Source, e.g. `header:X-Slack-Request-Timestamp` or `signature:t`.
    pub from: Spanned<String>,
    /// `unix` (default), `unix-ms` or `rfc3339`.
    pub format: Option<Spanned<String>>,
}

/// `[schemes.NAME.event]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFile {
    /// Source(s) of the event id, tried in order.
    pub id: Option<Spanned<OneOrMany<String>>>,
    /// Source(s) of the event type, tried in order.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<OneOrMany<String>>>,
}

/// A handshake rule (in a scheme, or a route's `[[routes.handshake]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandshakeFile {
    /// Whether the request must verify before it is answered. Default true.
    pub verify_first: Option<bool>,
    /// Method the handshake uses; any when absent.
    pub method: Option<Spanned<String>>,
    /// Source that must be present for the request to be this handshake;
    /// without it, every request of `method` (which must then be GET or HEAD).
    pub when: Option<Spanned<String>>,
    /// Value `when` must have; any when absent.
    pub equals: Option<Spanned<String>>,
    /// Source that must equal the route's `verify_token` (else 403).
    pub verify_token: Option<Spanned<String>>,
    /// Answer status. Default 200.
    pub status: Option<Spanned<i64>>,
    /// Answer `Content-Type`. Default `text/plain` for `body`, `application/json` for `json`.
    pub content_type: Option<Spanned<String>>,
    /// Answer body template.
    pub body: Option<Spanned<String>>,
    /// Answer JSON; its strings are templates.
    pub json: Option<Spanned<toml::Value>>,
    /// Answer headers; values are templates.
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
}
