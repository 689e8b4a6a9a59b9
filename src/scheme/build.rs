//! Validation of scheme descriptors: [`SchemeFile`] → [`Scheme`], and handshake
//! tables → [`Handshake`]s, collecting every problem with its span.

use std::ops::Range;

use http::{HeaderName, HeaderValue, Method};
use toml::Spanned;

use super::file::{HandshakeFile, KeysFile, SchemeFile, SignatureFile};
use super::handshake::{AnswerBody, Handshake, JsonAnswer};
use super::remote::{Confirm, HostPattern, HttpsUrl, KeySource, RemoteSpec, TENANT};
use super::signature::{Encoding, Format, LABEL_SEPARATOR, Location, SignatureSpec};
use super::source::Source;
use super::template::{Part, Template};
use super::{
    Algorithm, AlgorithmFrom, BodyFormat, KeyFormat, Scheme, Split, TimeFormat, TimestampSpec,
};
use crate::base::diagnostics::Diagnostic;
use crate::base::one_or_many::OneOrMany;
use crate::json::JsonPointer;

/// Collects diagnostics for one scheme or handshake list.
#[derive(Debug)]
pub struct SchemeBuilder<'d> {
    diagnostics: &'d mut Vec<Diagnostic>,
    errors: usize,
    /// Warn about user-written schemes whose signatures prove less than they seem to.
    pub warn_weak: bool,
}

fn span<T>(s: &Spanned<T>) -> Option<Range<usize>> {
    Some(s.span())
}

impl<'d> SchemeBuilder<'d> {
    /// A builder that adds its findings to `diagnostics`.
    pub fn new(diagnostics: &'d mut Vec<Diagnostic>) -> Self {
        Self {
            diagnostics,
            errors: 0,
            warn_weak: true,
        }
    }

    fn error(&mut self, at: Option<Range<usize>>, message: impl Into<String>) {
        self.errors += 1;
        self.diagnostics.push(Diagnostic::error(at, message));
    }

    fn warning(&mut self, at: Option<Range<usize>>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::warning(at, message));
    }

    fn source(&mut self, text: &Spanned<String>) -> Option<Source> {
        Source::parse(text.get_ref())
            .map_err(|e| self.error(span(text), e))
            .ok()
    }

    fn sources(&mut self, list: &Option<Spanned<OneOrMany<String>>>) -> Vec<Source> {
        let Some(list) = list else { return Vec::new() };
        let at = span(list);
        list.get_ref()
            .0
            .iter()
            .filter_map(|text| {
                Source::parse(text)
                    .map_err(|e| self.error(at.clone(), e))
                    .ok()
            })
            .collect()
    }

    fn template(&mut self, text: &Spanned<String>) -> Option<Template> {
        Template::parse(text.get_ref())
            .map_err(|e| self.error(span(text), e))
            .ok()
    }

    fn algorithm(&mut self, text: &Spanned<String>) -> Option<Algorithm> {
        Algorithm::parse(text.get_ref()).or_else(|| {
            self.error(
                span(text),
                format!(
                    "unknown algorithm `{}`; use hmac-sha1, hmac-sha256, hmac-sha512, sha256, \
                     ed25519, ecdsa-p256-sha256, token, rsa-sha1, rsa-sha256 or es256",
                    text.get_ref()
                ),
            );
            None
        })
    }

    /// Builds scheme `name` from its descriptor.
    pub fn scheme(&mut self, name: &str, file: &SchemeFile) -> Option<Scheme> {
        let before = self.errors;
        let algorithm = self.algorithm(&file.algorithm);
        let algorithm_from = file
            .algorithm_from
            .as_ref()
            .and_then(|a| self.algorithm_from(a, algorithm));
        let remote = match &file.keys {
            Some(keys) => self.remote(keys),
            None => None,
        };
        let key = self.key_format(file, algorithm);
        let signed = match &file.signed {
            Some(text) => self.template(text),
            None => Some(Template::body()),
        };
        let signature = self.signature(file.signature.get_ref(), algorithm, span(&file.signature));
        let timestamp = file.timestamp.as_ref().and_then(|t| {
            let t = t.get_ref();
            let source = self.source(&t.from);
            let format = match &t.format {
                None => Some(TimeFormat::Unix),
                Some(f) => TimeFormat::from_name(f.get_ref()).or_else(|| {
                    self.error(
                        span(f),
                        format!(
                            "unknown timestamp format `{}`; use unix, unix-ms or rfc3339",
                            f.get_ref()
                        ),
                    );
                    None
                }),
            };
            Some(TimestampSpec {
                source: source?,
                format: format?,
            })
        });
        let id = self.sources(&file.event.id);
        let event_type = self.sources(&file.event.kind);
        let tolerance = file.tolerance_secs.as_ref().and_then(|t| {
            u64::try_from(*t.get_ref())
                .map_err(|_| self.error(span(t), "`tolerance_secs` must not be negative"))
                .ok()
        });
        let body_sha256 = file.body_sha256.as_ref().and_then(|s| self.source(s));
        let body_format = match &file.body_format {
            None => Some(BodyFormat::Any),
            Some(f) => BodyFormat::parse(f.get_ref()).or_else(|| {
                self.error(
                    span(f),
                    format!("unknown body format `{}`; use any or json", f.get_ref()),
                );
                None
            }),
        };
        let handshakes = match &file.handshake {
            Some(list) => self.handshakes(list, algorithm).unwrap_or_default(),
            None => Vec::new(),
        };
        if let (Some(n), Some(algorithm)) = (&file.optional_newline, algorithm) {
            if !matches!(algorithm, Algorithm::Hmac(_)) {
                self.error(
                    span(n),
                    "`optional_newline` applies to the hmac-sha1, hmac-sha256 and hmac-sha512 algorithms",
                );
            }
        }
        if let (Some(algorithm), Some(signed)) = (algorithm, &signed) {
            self.check_signed(file, algorithm, signed);
            self.check_remote(file, algorithm, signed, signature.as_ref());
        }
        if let (Some(signature), Some(signed)) = (&signature, &signed) {
            self.check_signature_fields(file, signature, signed, timestamp.as_ref(), &id);
        }
        if self.errors > before {
            return None;
        }
        let mut scheme = Scheme {
            name: name.to_owned(),
            docs: file.docs.clone(),
            provider: file.provider.clone(),
            algorithm: algorithm?,
            key: key?,
            signed: signed?,
            signature: signature?,
            timestamp,
            id,
            event_type,
            ids: Split::default(),
            types: Split::default(),
            default_tolerance_secs: tolerance,
            url_ports: file.url_ports,
            optional_newline: file.optional_newline.as_ref().is_some_and(|n| *n.get_ref()),
            body_sha256,
            body_format: body_format?,
            handshakes,
            algorithm_from,
            remote,
        };
        scheme.split_event_sources();
        if tolerance.is_some_and(|t| t > 0) && !scheme.timestamp_is_signed() {
            self.warning(
                file.tolerance_secs.as_ref().map(Spanned::span),
                format!(
                    "`tolerance_secs` has no effect: scheme `{name}` does not sign a timestamp"
                ),
            );
        }
        Some(scheme)
    }

    fn key_format(&mut self, file: &SchemeFile, algorithm: Option<Algorithm>) -> Option<KeyFormat> {
        let (format, at) = match &file.key {
            None => (KeyFormat::Raw, None),
            Some(k) => match KeyFormat::parse(k.get_ref()) {
                Some(f) => (f, span(k)),
                None => {
                    self.error(
                        span(k),
                        format!("unknown key format `{}`; use raw, base64, hex, whsec, whpk, spki-base64 or sha1", k.get_ref()),
                    );
                    return None;
                }
            },
        };
        let fits = match algorithm? {
            Algorithm::Ed25519 => {
                matches!(format, KeyFormat::Hex | KeyFormat::Base64 | KeyFormat::Whpk)
            }
            Algorithm::EcdsaP256Sha256 => format == KeyFormat::SpkiBase64,
            Algorithm::RsaSha1 | Algorithm::RsaSha256 | Algorithm::Es256 => {
                format == KeyFormat::Raw
            }
            Algorithm::Hmac(_) => matches!(
                format,
                KeyFormat::Raw
                    | KeyFormat::Base64
                    | KeyFormat::Hex
                    | KeyFormat::Whsec
                    | KeyFormat::Sha1
            ),
            Algorithm::Sha256 | Algorithm::Token => {
                matches!(
                    format,
                    KeyFormat::Raw | KeyFormat::Base64 | KeyFormat::Hex | KeyFormat::Whsec
                )
            }
        };
        if !fits {
            let at = at.or_else(|| span(&file.algorithm));
            self.error(
                at,
                format!(
                    "key format does not fit algorithm `{}`",
                    file.algorithm.get_ref()
                ),
            );
            return None;
        }
        Some(format)
    }

    fn signature(
        &mut self,
        s: &SignatureFile,
        algorithm: Option<Algorithm>,
        at: Option<Range<usize>>,
    ) -> Option<SignatureSpec> {
        let location = match (&s.header, &s.json, &s.form, &s.query) {
            (Some(names), None, None, None) => {
                let mut headers = Vec::new();
                for name in &names.get_ref().0 {
                    match HeaderName::from_bytes(name.trim().as_bytes()) {
                        Ok(h) => headers.push(h),
                        Err(_) => self.error(span(names), format!("invalid header name `{name}`")),
                    }
                }
                if headers.is_empty() {
                    self.error(span(names), "`header` needs at least one name");
                }
                Location::Headers(headers)
            }
            (None, Some(pointer), None, None) => Location::Json(
                JsonPointer::parse(pointer.get_ref())
                    .map_err(|e| self.error(span(pointer), e))
                    .ok()?,
            ),
            (None, None, Some(name), None) => Location::Form(name.get_ref().clone()),
            (None, None, None, Some(name)) if !name.get_ref().is_empty() => {
                Location::Query(name.get_ref().clone())
            }
            _ => {
                self.error(
                    at,
                    "the signature needs exactly one of `header`, `json`, `form` or `query`",
                );
                return None;
            }
        };
        let default_encoding = if algorithm == Some(Algorithm::Token) {
            Encoding::Text
        } else {
            Encoding::Hex
        };
        let encoding = match &s.encoding {
            None => default_encoding,
            Some(e) => Encoding::parse(e.get_ref()).or_else(|| {
                self.error(
                    span(e),
                    format!(
                        "unknown encoding `{}`; use hex, base64, base64url or text",
                        e.get_ref()
                    ),
                );
                None
            })?,
        };
        let format_name = s.format.as_ref().map_or("plain", |f| f.get_ref().as_str());
        // `inner` is what the format writes inside an entry (`k=v`, `v1,sig`):
        // as the separator too, no entry could be read.
        let separator = |b: &mut Self, default: char, inner: char| -> Option<char> {
            let Some(sep) = &s.separator else {
                return Some(default);
            };
            let mut chars = sep.get_ref().chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c == inner => {
                    b.error(
                        span(sep),
                        format!("`separator` cannot be `{inner}`: the {format_name} format writes it inside each entry"),
                    );
                    None
                }
                (Some(c), None) => Some(c),
                _ => {
                    b.error(span(sep), "`separator` must be one character");
                    None
                }
            }
        };
        let needs_key = |b: &mut Self, what: &str| -> Option<String> {
            match &s.key {
                Some(k) if !k.get_ref().is_empty() => Some(k.get_ref().clone()),
                _ => {
                    b.error(
                        s.format.as_ref().map(Spanned::span),
                        format!("format `{format_name}` needs `key` ({what})"),
                    );
                    None
                }
            }
        };
        let format = match format_name {
            "plain" => {
                if let Some(k) = &s.key {
                    self.error(span(k), "`key` applies to the kv and versioned formats");
                }
                Format::Plain {
                    prefix: s
                        .prefix
                        .as_ref()
                        .map(|p| p.get_ref().clone())
                        .unwrap_or_default(),
                }
            }
            "kv" => Format::KeyValue {
                separator: separator(self, ',', '=')?,
                key: needs_key(self, "the key whose values are signatures, e.g. v1")?,
            },
            "jwt" => Format::Jwt,
            "versioned" => Format::Versioned {
                separator: separator(self, ' ', ',')?,
                version: needs_key(self, "the version to use, e.g. v1")?,
            },
            "pairs" => {
                if let Some(k) = &s.key {
                    self.error(
                        span(k),
                        "`key` does not apply to the pairs format: each secret carries its label, as `label|secret`",
                    );
                }
                Format::Pairs {
                    separator: separator(self, '&', LABEL_SEPARATOR)?,
                }
            }
            other => {
                self.error(
                    s.format.as_ref().map(Spanned::span),
                    format!(
                        "unknown signature format `{other}`; use plain, kv, versioned, pairs or jwt"
                    ),
                );
                return None;
            }
        };
        if let (Some(p), false) = (&s.prefix, matches!(format, Format::Plain { .. })) {
            self.error(span(p), "`prefix` applies to the plain format");
        }
        Some(SignatureSpec {
            location,
            format,
            encoding,
        })
    }

    fn check_signed(&mut self, file: &SchemeFile, algorithm: Algorithm, signed: &Template) {
        let at = file
            .signed
            .as_ref()
            .map(Spanned::span)
            .or_else(|| span(&file.algorithm));
        if signed.parts().iter().any(|p| matches!(p, Part::Hmac(..))) {
            self.error(
                at.clone(),
                "{hmac:…} belongs in handshake answers, not in signed content",
            );
        }
        match algorithm {
            Algorithm::Sha256 if !signed.uses(&Part::Secret) => self.error(
                at.clone(),
                "algorithm `sha256` hashes without a key: the signed content must include {secret}",
            ),
            Algorithm::Sha256 => {}
            _ if signed.uses(&Part::Secret) => {
                self.error(
                    at.clone(),
                    "{secret} may only be signed by algorithm `sha256`",
                );
            }
            _ => {}
        }
        if algorithm == Algorithm::Token && file.signed.is_some() {
            self.error(
                at.clone(),
                "algorithm `token` compares the secret itself; remove `signed`",
            );
        }
        // Named form fields are covered with the rest of the form refused.
        let form_fields = signed.fields().any(|f| matches!(f, Source::Form(_)));
        let covers_body = algorithm != Algorithm::Token
            && (signed.uses(&Part::Body)
                || signed.uses(&Part::FormParams)
                || signed.uses(&Part::AwsSns)
                || signed.uses(&Part::Crc32)
                || file.body_sha256.is_some()
                || form_fields);
        if self.warn_weak && !covers_body {
            self.warning(at, "the signature does not cover the body: a captured signature can carry another body");
        }
    }

    fn algorithm_from(
        &mut self,
        a: &Spanned<super::file::AlgorithmFromFile>,
        algorithm: Option<Algorithm>,
    ) -> Option<AlgorithmFrom> {
        let file = a.get_ref();
        let source = self.source(&file.from);
        let mut values = Vec::new();
        for (value, name) in file.values.get_ref() {
            match Algorithm::parse(name) {
                Some(alg) if alg.is_remote() == algorithm.is_some_and(Algorithm::is_remote) => {
                    values.push((value.clone(), alg));
                }
                Some(_) => self.error(
                    span(&file.values),
                    format!("`{name}` and `algorithm` must both use remote keys, or neither"),
                ),
                None => self.error(
                    span(&file.values),
                    format!("unknown algorithm `{name}` in `algorithm_from`"),
                ),
            }
        }
        if file.values.get_ref().is_empty() {
            self.error(span(&file.values), "`values` needs at least one entry");
        }
        Some(AlgorithmFrom {
            source: source?,
            values,
        })
    }

    fn remote(&mut self, keys: &Spanned<KeysFile>) -> Option<RemoteSpec> {
        let at = span(keys);
        let file = keys.get_ref();
        let source = match (&file.certificate_url, &file.jwks_url, &file.key_endpoint) {
            (Some(url), None, None) => KeySource::Certificate {
                url: self.source(url)?,
                path_suffix: file.path_suffix.as_ref().map(|p| p.get_ref().clone()),
            },
            (None, None, Some(url)) => KeySource::KeyEndpoint {
                url: self.key_url(file, url, "key_endpoint")?,
            },
            (None, Some(url), None) => KeySource::Jwks {
                url: self.key_url(file, url, "jwks_url")?,
            },
            _ => {
                self.error(
                    at,
                    "`keys` needs exactly one of `certificate_url`, `jwks_url` or `key_endpoint`",
                );
                return None;
            }
        };
        let mut hosts = Vec::new();
        for text in file.hosts.iter().flat_map(|h| h.get_ref()) {
            match HostPattern::parse(text) {
                Ok(h) => hosts.push(h),
                Err(e) => self.error(file.hosts.as_ref().and_then(span), e),
            }
        }
        let needs_hosts = matches!(
            source,
            KeySource::Certificate { .. } | KeySource::KeyEndpoint { .. }
        ) || file.confirm.is_some();
        if needs_hosts && file.hosts.is_none() {
            self.error(
                at.clone(),
                "`keys` needs `hosts`: the hosts allowed to serve what the request names",
            );
        }
        let issuers = file
            .issuers
            .as_ref()
            .map(|i| i.get_ref().clone())
            .unwrap_or_default();
        if matches!(source, KeySource::Jwks { .. }) && issuers.is_empty() {
            self.error(at, "`jwks_url` needs `issuers`: the accepted `iss` claims");
        }
        if let (KeySource::KeyEndpoint { url }, false) = (&source, hosts.is_empty()) {
            if HttpsUrl::allowed(url, &hosts, None).is_none() {
                let at = file.key_endpoint.as_ref().and_then(span);
                self.error(at, "`key_endpoint` must be on one of `hosts`");
            }
            if let Some(i) = &file.issuers {
                self.error(span(i), "`issuers` applies to `jwks_url`");
            }
        }
        let confirm = file.confirm.as_ref().and_then(|c| {
            let c = c.get_ref();
            Some(Confirm {
                when: self.source(&c.when)?,
                equals: c.equals.get_ref().clone(),
                url: self.source(&c.url)?,
            })
        });
        Some(RemoteSpec {
            source,
            hosts,
            issuers,
            confirm,
        })
    }

    /// `[keys]`' fixed URL `name` (`jwks_url`, `key_endpoint`): HTTPS (where
    /// `{tenant}` stands for a label), without a `path_suffix` beside it.
    fn key_url(&mut self, file: &KeysFile, url: &Spanned<String>, name: &str) -> Option<String> {
        if HttpsUrl::parse(&url.get_ref().replace(TENANT, "tenant")).is_none() {
            self.error(span(url), format!("`{name}` must be an https:// URL"));
            return None;
        }
        if let Some(p) = &file.path_suffix {
            self.error(span(p), "`path_suffix` applies to `certificate_url`");
        }
        Some(url.get_ref().clone())
    }

    /// Remote-key algorithms and `[keys]` go together, and so do the parts of
    /// signed content only they use.
    fn check_remote(
        &mut self,
        file: &SchemeFile,
        algorithm: Algorithm,
        signed: &Template,
        signature: Option<&SignatureSpec>,
    ) {
        let at = span(&file.algorithm);
        match (algorithm.is_remote(), &file.keys) {
            (true, None) => self.error(
                at.clone(),
                format!(
                    "algorithm `{}` verifies with keys the provider publishes: add `[keys]`",
                    algorithm.as_str()
                ),
            ),
            (false, Some(keys)) => self.error(
                span(keys),
                "`keys` applies to the rsa-sha1, rsa-sha256 and es256 algorithms",
            ),
            _ => {}
        }
        if signed.uses(&Part::WebhookId) && !algorithm.is_remote() {
            self.error(
                at.clone(),
                "{webhook_id} applies to remote-key schemes (PayPal)",
            );
        }
        let keys = file.keys.as_ref().map(Spanned::get_ref);
        let jwks = keys.is_some_and(|k| k.jwks_url.is_some());
        let endpoint = keys.is_some_and(|k| k.key_endpoint.is_some());
        let jwt = signature.is_some_and(|s| s.format == Format::Jwt);
        if !algorithm.is_remote() {
            return;
        }
        if jwks != jwt && !endpoint {
            self.error(
                span(&file.signature),
                "a JWKS verifies JWTs: `jwks_url` and the jwt signature format go together",
            );
        }
        if endpoint && !jwt {
            self.error(
                span(&file.signature),
                "a key endpoint's keys verify JWTs: `key_endpoint` and the jwt signature format go together",
            );
        }
        if jwks && algorithm != Algorithm::RsaSha256 {
            self.error(
                at.clone(),
                "JWTs from a JWKS are verified with rsa-sha256 (RS256)",
            );
        }
        if endpoint != (algorithm == Algorithm::Es256) && keys.is_some() {
            self.error(
                at,
                "a key endpoint serves EC P-256 keys: `key_endpoint` and algorithm `es256` go together",
            );
        }
    }

    fn check_signature_fields(
        &mut self,
        file: &SchemeFile,
        signature: &SignatureSpec,
        signed: &Template,
        timestamp: Option<&TimestampSpec>,
        id: &[Source],
    ) {
        let has_fields = matches!(signature.format, Format::KeyValue { .. } | Format::Jwt);
        let mut used = signed
            .fields()
            .chain(id)
            .chain(timestamp.map(|t| &t.source));
        if !has_fields && used.any(|s| matches!(s, Source::Signature(_))) {
            self.error(
                span(&file.signature),
                "`signature:KEY` sources need the kv or jwt signature format",
            );
        }
        let jwt_input = Source::Signature(super::signature::JWT_INPUT.to_owned());
        if signature.format == Format::Jwt && !signed.fields().any(|f| *f == jwt_input) {
            self.error(
                span(&file.signature),
                "the jwt format signs the token's header and payload: set signed = \"{signature:jwt}\"",
            );
        }
        let at = file
            .signed
            .as_ref()
            .map(Spanned::span)
            .or_else(|| span(&file.algorithm));
        if signed.uses(&Part::Timestamp) && timestamp.is_none() {
            self.error(
                at.clone(),
                "signed content uses {timestamp} but the scheme has no `[timestamp]`",
            );
        }
        if signed.uses(&Part::Id) && id.is_empty() {
            self.error(
                at,
                "signed content uses {id} but the scheme has no `event.id`",
            );
        }
    }

    /// Builds a list of handshake rules. `algorithm` is the scheme's (for
    /// `{hmac:…}`); `None` for a route's own handshakes, which use its first verifier.
    pub fn handshakes(
        &mut self,
        list: &Spanned<OneOrMany<HandshakeFile>>,
        algorithm: Option<Algorithm>,
    ) -> Option<Vec<Handshake>> {
        let before = self.errors;
        let built: Vec<Handshake> = list
            .get_ref()
            .0
            .iter()
            .filter_map(|h| self.handshake(h, algorithm))
            .collect();
        (self.errors == before).then_some(built)
    }

    fn handshake(&mut self, h: &HandshakeFile, algorithm: Option<Algorithm>) -> Option<Handshake> {
        let before = self.errors;
        let when = h.when.as_ref().map(|w| self.source(w));
        let method = h.method.as_ref().and_then(|m| {
            Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes())
                .map_err(|_| self.error(span(m), format!("invalid method `{}`", m.get_ref())))
                .ok()
        });
        if when.is_none() && !matches!(method, Some(Method::GET | Method::HEAD)) {
            // Deliveries are POSTs: a rule matching any of them would answer them all.
            let at = h.method.as_ref().map(Spanned::span).or_else(|| {
                let answer = h.body.as_ref().map(Spanned::span);
                answer.or_else(|| h.json.as_ref().map(Spanned::span))
            });
            self.error(
                at,
                "a handshake without `when` needs method = \"GET\" or \"HEAD\"",
            );
        }
        let verify_token = h.verify_token.as_ref().and_then(|s| self.source(s));
        let status = match &h.status {
            None => 200,
            Some(s) => match u16::try_from(*s.get_ref()) {
                Ok(code) if (200..300).contains(&code) => code,
                _ => {
                    self.error(span(s), "a handshake answer's `status` must be 2xx");
                    200
                }
            },
        };
        let verify_first = h.verify_first.unwrap_or(true);
        let (body, default_type) = match (&h.body, &h.json) {
            (Some(text), None) => (
                self.answer_template(text, algorithm).map(AnswerBody::Text),
                "text/plain",
            ),
            (None, Some(json)) => (
                self.answer_json(json, algorithm).map(AnswerBody::Json),
                "application/json",
            ),
            (None, None) => (Some(AnswerBody::Empty), ""),
            (Some(_), Some(json)) => {
                self.error(
                    span(json),
                    "a handshake answer has either `body` or `json`, not both",
                );
                (None, "")
            }
        };
        let mut headers = Vec::new();
        if let Some(map) = &h.headers {
            for (name, value) in map.get_ref() {
                let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                    self.error(span(map), format!("invalid header name `{name}`"));
                    continue;
                };
                let value = Spanned::new(map.span(), value.clone());
                if let Some(t) = self.answer_template(&value, algorithm) {
                    let literal = t.parts().iter().any(|p| match p {
                        Part::Literal(bytes) => HeaderValue::from_bytes(bytes).is_err(),
                        _ => false,
                    });
                    if literal {
                        self.error(
                            span(map),
                            format!("header `{name}` holds a character a header value may not"),
                        );
                    }
                    headers.push((name, t));
                }
            }
        }
        if let Some(c) = &h.content_type {
            if HeaderValue::from_str(c.get_ref()).is_err() {
                self.error(
                    span(c),
                    "`content_type` holds a character a header value may not",
                );
            }
        }
        let content_type = h
            .content_type
            .as_ref()
            .map(|c| c.get_ref().clone())
            .or_else(|| (!default_type.is_empty()).then(|| default_type.to_owned()));
        if self.errors > before {
            return None;
        }
        Some(Handshake {
            verify_first,
            method,
            when: when.flatten(),
            equals: h.equals.as_ref().map(|e| e.get_ref().clone()),
            verify_token,
            status,
            content_type,
            body: body?,
            headers,
        })
    }

    fn answer_template(
        &mut self,
        text: &Spanned<String>,
        algorithm: Option<Algorithm>,
    ) -> Option<Template> {
        let template = self.template(text)?;
        for part in template.parts() {
            match part {
                Part::Literal(_) | Part::Field(_) | Part::Optional(_) => {}
                // Each route using it is warned about (`config::verifiers`).
                Part::Hmac(..) => {
                    if matches!(algorithm, Some(a) if !matches!(a, Algorithm::Hmac(_))) {
                        self.error(
                            span(text),
                            "{hmac:…} needs a scheme whose algorithm is an HMAC",
                        );
                    }
                }
                other => {
                    self.error(
                        span(text),
                        format!("an answer may use literal text, request fields and {{hmac:…}}, not {other:?}"),
                    );
                }
            }
        }
        Some(template)
    }

    fn answer_json(
        &mut self,
        json: &Spanned<toml::Value>,
        algorithm: Option<Algorithm>,
    ) -> Option<JsonAnswer> {
        Some(match json.get_ref() {
            toml::Value::String(text) => {
                let text = Spanned::new(json.span(), text.clone());
                JsonAnswer::Text(self.answer_template(&text, algorithm)?)
            }
            toml::Value::Integer(n) => JsonAnswer::Literal(serde_json::Value::from(*n)),
            toml::Value::Float(f) => JsonAnswer::Literal(serde_json::Value::from(*f)),
            toml::Value::Boolean(b) => JsonAnswer::Literal(serde_json::Value::from(*b)),
            toml::Value::Datetime(d) => JsonAnswer::Literal(serde_json::Value::from(d.to_string())),
            toml::Value::Array(items) => JsonAnswer::Array(
                items
                    .iter()
                    .map(|i| self.answer_json(&Spanned::new(json.span(), i.clone()), algorithm))
                    .collect::<Option<_>>()?,
            ),
            toml::Value::Table(table) => JsonAnswer::Object(
                table
                    .iter()
                    .map(|(k, v)| {
                        let v =
                            self.answer_json(&Spanned::new(json.span(), v.clone()), algorithm)?;
                        Some((k.clone(), v))
                    })
                    .collect::<Option<_>>()?,
            ),
        })
    }
}
