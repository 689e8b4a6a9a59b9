//! The verifying half of a route: `[schemes.NAME]` tables, `[routes.verify]`
//! tables (built-in, user-defined or the generic `hmac` scheme), secrets, the
//! route's own handshakes and its `verify_token`.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;

use super::build::{Builder, cached, span};
use super::file::{RouteSection, VerifySection};
use crate::base::one_or_many::OneOrMany;
use crate::base::secret::{Secret, SecretRef};
use crate::scheme::Scheme;
use crate::scheme::file::{EventFile, SchemeFile, SignatureFile, TimestampFile};
use crate::scheme::handshake::{CHALLENGE_CHARACTERS, Handshake, MAX_CHALLENGE_LEN};
use crate::scheme::presets::{self, GENERIC};
use crate::scheme::template::{Part, Template};
use crate::verify::{self, Verifier};

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

impl Builder<'_> {
    /// Builds the config's own schemes.
    pub(super) fn user_schemes(&mut self, schemes: &BTreeMap<String, Spanned<SchemeFile>>) {
        for (name, file) in schemes {
            let at = span(file);
            if !valid_name(name) {
                self.error(at, format!("scheme name `{name}` must match [a-z0-9_-]+"));
            } else if name == GENERIC || presets::get(name).is_some() {
                self.error(
                    at,
                    format!("scheme `{name}` is built in; give yours another name"),
                );
            } else if let Some(scheme) = self.scheme_builder().scheme(name, file.get_ref()) {
                self.schemes.insert(name.clone(), Arc::new(scheme));
            }
        }
    }

    /// The known scheme closest to a misspelled `name`, if any is close.
    fn closest_scheme(&self, name: &str) -> Option<&str> {
        let known = presets::all()
            .keys()
            .chain(self.schemes.keys())
            .map(String::as_str);
        known
            .chain([GENERIC])
            .map(|k| (strsim::jaro_winkler(name, k), k))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k)| k)
    }

    /// Builds one `[routes.verify]` table.
    pub(super) fn verifier(&mut self, v: &VerifySection) -> Option<Verifier> {
        let name = v.scheme.get_ref();
        let scheme = if name == GENERIC {
            self.generic_scheme(v)
        } else if let Some(scheme) = self
            .schemes
            .get(name)
            .cloned()
            .or_else(|| presets::get(name))
        {
            self.refuse_generic_keys(v);
            Some(scheme)
        } else {
            let hint = match self.closest_scheme(name) {
                Some(close) => format!("did you mean `{close}`? "),
                None => String::new(),
            };
            let message = format!(
                "unknown scheme `{name}`; {hint}`hookgate schemes` lists the built-in ones"
            );
            self.error(span(&v.scheme), message);
            None
        };
        let tolerance = v.tolerance_secs.as_ref().and_then(|t| {
            u64::try_from(*t.get_ref())
                .map_err(|_| self.error(span(t), "`tolerance_secs` must not be negative"))
                .ok()
        });
        let Some(scheme) = scheme else {
            // Still report the problems of the secrets it lists.
            if v.secrets.is_some() {
                let _ = self.secrets(v);
            }
            return None;
        };
        if let (Some(t), false) = (&v.tolerance_secs, scheme.timestamp_is_signed()) {
            if *t.get_ref() > 0 {
                self.warning(
                    span(t),
                    format!(
                        "`tolerance_secs` has no effect: scheme `{name}` does not sign a timestamp, \
                         and an unsigned timestamp is never trusted for replay defense"
                    ),
                );
            }
        }
        if scheme.remote.is_some() {
            let params = self.remote_params(v, &scheme)?;
            return Some(Verifier::remote(scheme, params, tolerance));
        }
        // Reports keys of remote-key schemes set on this one.
        let _ = self.remote_params(v, &scheme);
        let secrets = self.secrets(v)?;
        // Routes with the same scheme, secrets and window share one verifier
        // (its keys are prepared once).
        let shared = (
            Arc::as_ptr(&scheme).addr(),
            verify::secrets_digest(&secrets),
            tolerance,
        );
        if let Some(verifier) = self.verifiers.get(&shared) {
            return Some(verifier.clone());
        }
        match Verifier::new(scheme, &secrets, tolerance) {
            Ok(verifier) => {
                self.verifiers.insert(shared, verifier.clone());
                Some(verifier)
            }
            Err((index, why)) => {
                let at = v
                    .secrets
                    .as_ref()
                    .and_then(|s| s.get_ref().get(index))
                    .map(Spanned::span);
                self.error(at, format!("{why} for scheme `{name}`"));
                None
            }
        }
    }

    fn secrets(&mut self, v: &VerifySection) -> Option<Vec<Secret>> {
        let Some(secrets) = v.secrets.as_ref().filter(|s| !s.get_ref().is_empty()) else {
            let at = v.secrets.as_ref().map_or_else(|| span(&v.scheme), span);
            self.error(at, "`secrets` needs at least one secret");
            return None;
        };
        let mut resolved = Vec::new();
        let mut ok = true;
        for reference in secrets.get_ref() {
            match self.resolve_secret(reference.get_ref()) {
                Ok(secret) => resolved.push(secret),
                Err(message) => {
                    self.error(span(reference), message);
                    ok = false;
                }
            }
        }
        ok.then_some(resolved)
    }

    /// Resolves a secret reference; each `env:` or `file:` one is read once
    /// per load, and each `file:` one is recorded among the files to watch.
    pub(super) fn resolve_secret(&mut self, reference: &str) -> Result<Secret, String> {
        let base_dir = self.base_dir;
        let files = &mut self.files;
        match SecretRef::parse(reference) {
            literal @ SecretRef::Literal(_) => literal.resolve(base_dir),
            _ => cached(&mut self.secrets, reference, |r| {
                let parsed = SecretRef::parse(r);
                if let SecretRef::File(path) = parsed {
                    files.insert(base_dir.join(path));
                }
                parsed.resolve(base_dir)
            }),
        }
    }

    fn generic_keys(v: &VerifySection) -> [(&'static str, Option<std::ops::Range<usize>>); 7] {
        [
            ("header", v.header.as_ref().map(Spanned::span)),
            ("algorithm", v.algorithm.as_ref().map(Spanned::span)),
            ("encoding", v.encoding.as_ref().map(Spanned::span)),
            ("prefix", v.prefix.as_ref().map(Spanned::span)),
            ("payload", v.payload.as_ref().map(Spanned::span)),
            (
                "timestamp_header",
                v.timestamp_header.as_ref().map(Spanned::span),
            ),
            ("id_header", v.id_header.as_ref().map(Spanned::span)),
        ]
    }

    fn refuse_generic_keys(&mut self, v: &VerifySection) {
        for (key, at) in Self::generic_keys(v) {
            if let Some(at) = at {
                let scheme = v.scheme.get_ref();
                self.error(
                    Some(at),
                    format!(
                        "`{key}` applies only to scheme = \"hmac\"; scheme `{scheme}` fixes it"
                    ),
                );
            }
        }
    }

    /// The generic `hmac` scheme: the verify table's keys turned into a scheme
    /// descriptor and built like any other.
    fn generic_scheme(&mut self, v: &VerifySection) -> Option<Arc<Scheme>> {
        let before = self.mark();
        if v.header.is_none() {
            self.error(
                span(&v.scheme),
                "scheme `hmac` needs `header`, the signature header's name",
            );
        }
        let algorithm = match &v.algorithm {
            None => Spanned::new(v.scheme.span(), "hmac-sha256".to_owned()),
            Some(a) if matches!(a.get_ref().as_str(), "sha1" | "sha256" | "sha512") => {
                Spanned::new(a.span(), format!("hmac-{}", a.get_ref()))
            }
            Some(a) => {
                self.error(
                    span(a),
                    format!(
                        "unknown algorithm `{}`; use sha1, sha256 or sha512",
                        a.get_ref()
                    ),
                );
                // Build on with a stand-in so the table's other problems are reported too.
                Spanned::new(a.span(), "hmac-sha256".to_owned())
            }
        };
        if let Some(p) = &v.payload {
            if let Ok(t) = Template::parse(p.get_ref()) {
                if t.uses(&Part::Timestamp) && v.timestamp_header.is_none() {
                    self.error(
                        span(p),
                        "payload uses {timestamp} but `timestamp_header` is not set",
                    );
                }
                if t.uses(&Part::Id) && v.id_header.is_none() {
                    self.error(span(p), "payload uses {id} but `id_header` is not set");
                }
            }
        }
        let header = v.header.as_ref()?;
        let header_source =
            |h: &Spanned<String>| Spanned::new(h.span(), format!("header:{}", h.get_ref().trim()));
        let file = SchemeFile {
            algorithm,
            algorithm_from: None,
            keys: None,
            key: None,
            signed: v.payload.clone(),
            tolerance_secs: None,
            url_ports: false,
            optional_newline: None,
            body_sha256: None,
            body_format: None,
            docs: None,
            provider: None,
            signature: Spanned::new(
                v.scheme.span(),
                SignatureFile {
                    header: Some(Spanned::new(
                        header.span(),
                        OneOrMany(vec![header.get_ref().clone()]),
                    )),
                    json: None,
                    form: None,
                    query: None,
                    format: None,
                    separator: None,
                    key: None,
                    prefix: v.prefix.clone(),
                    encoding: v.encoding.clone(),
                },
            ),
            timestamp: v.timestamp_header.as_ref().map(|h| {
                Spanned::new(
                    h.span(),
                    TimestampFile {
                        from: header_source(h),
                        format: None,
                    },
                )
            }),
            event: EventFile {
                id: v.id_header.as_ref().map(|h| {
                    Spanned::new(h.span(), OneOrMany(vec![header_source(h).into_inner()]))
                }),
                kind: None,
            },
            handshake: None,
        };
        let scheme = self.scheme_builder().scheme(GENERIC, &file).map(Arc::new);
        if self.errors_since(before) {
            return None;
        }
        scheme
    }

    /// The route's own `[[routes.handshake]]` rules. `{hmac:…}` in them uses the
    /// route's first verifier's algorithm.
    pub(super) fn route_handshakes(
        &mut self,
        r: &RouteSection,
        verifiers: &[Verifier],
    ) -> Vec<Handshake> {
        let Some(list) = &r.handshake else {
            return Vec::new();
        };
        let algorithm = verifiers.first().map(|v| v.scheme().algorithm);
        self.scheme_builder()
            .handshakes(list, algorithm)
            .unwrap_or_default()
    }

    /// Warns about each handshake of route `r` (its schemes' and its own)
    /// whose answer is a MAC of request data under the route's secret, saying
    /// what bounds it.
    pub(super) fn mac_answer_warnings(
        &mut self,
        r: &RouteSection,
        verifiers: &[Verifier],
        own: &[Handshake],
    ) {
        let route = r.name.get_ref();
        for verifier in verifiers {
            let scheme = verifier.scheme();
            let at = r
                .verify
                .get_ref()
                .0
                .iter()
                .find(|v| *v.scheme.get_ref() == scheme.name)
                .map_or_else(|| span(&r.verify), |v| span(&v.scheme));
            for h in scheme.handshakes.iter().filter(|h| h.macs_request_data()) {
                let whose = format!("the `{}` handshake", scheme.name);
                let message = mac_answer_warning(route, &whose, h, scheme);
                self.warning(at.clone(), message);
            }
        }
        // The route's own handshakes use its first verifier's key.
        let (Some(first), Some(list)) = (verifiers.first(), &r.handshake) else {
            return;
        };
        for h in own.iter().filter(|h| h.macs_request_data()) {
            let message = mac_answer_warning(route, "its own handshake", h, first.scheme());
            self.warning(span(list), message);
        }
    }

    /// Resolves the route's `verify_token`, which is required when a handshake
    /// checks one.
    pub(super) fn verify_token(
        &mut self,
        r: &RouteSection,
        verifiers: &[Verifier],
        handshakes: &[Handshake],
    ) -> Option<Secret> {
        let needed = verifiers
            .iter()
            .flat_map(|v| v.scheme().handshakes.iter())
            .chain(handshakes)
            .any(|h| h.verify_token.is_some());
        match &r.verify_token {
            Some(reference) => match self.resolve_secret(reference.get_ref()) {
                Ok(token) => Some(token),
                Err(message) => {
                    self.error(span(reference), message);
                    None
                }
            },
            None if needed => {
                self.error(
                    span(&r.name),
                    format!(
                        "route `{}` answers a subscription handshake that checks a verify token: set `verify_token`",
                        r.name.get_ref()
                    ),
                );
                None
            }
            None => None,
        }
    }
}

/// The warning for `handshake` of `route`, which MACs request data under the
/// key of `scheme`: what bounds that MAC, or that nothing does.
fn mac_answer_warning(route: &str, whose: &str, handshake: &Handshake, scheme: &Scheme) -> String {
    if handshake.verify_first {
        format!(
            "route `{route}`: {whose} answers with a MAC of request data under the route's secret; \
             bounded: it answers only requests that verify first"
        )
    } else if scheme.refuses_challenge_tokens() {
        format!(
            "route `{route}`: {whose} answers an unsigned request with a MAC of request data under \
             the route's secret; bounded: it MACs only a token of 1 to {MAX_CHALLENGE_LEN} bytes of \
             {CHALLENGE_CHARACTERS}, and scheme `{}` accepts only JSON bodies, which no such token is",
            scheme.name
        )
    } else {
        format!(
            "route `{route}`: {whose}: this answer gives anyone a MAC under your secret without \
             verifying first, and scheme `{}` may take it for the signature of a body the caller \
             chose; a scheme that signs {{body}} with `body_format = \"json\"` refuses such bodies",
            scheme.name
        )
    }
}
