//! Remote keys in the config: `[server.remote_keys]` (trust roots, fetch
//! limits, cache lifetimes) and the `[routes.verify]` keys of remote-key
//! schemes (`audience`, `issuer`, `tenant`, `jwks_url`, `email`, `webhook_id`,
//! `key_hosts`, `topic_arns`, and a key endpoint's `client_id`, `key_endpoint`
//! and one `secrets` entry).

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use toml::Spanned;

use super::build::{Builder, span};
use super::file::{ServerSection, VerifySection};
use super::upstream::read_pem_certificates;
use crate::base::one_or_many::OneOrMany;
use crate::keys::KeySettings;
use crate::scheme::Scheme;
use crate::scheme::remote::{HostPattern, HttpsUrl, KeySource, TENANT};
use crate::scheme::source::Source;
use crate::scheme::template::Part;
use crate::verify::remote::{Credentials, JwtClaims, RemoteParams};

/// Default deadline of one key fetch, in ms.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// Default largest key document, in bytes.
pub const DEFAULT_MAX_BYTES: u64 = 65536;
/// Default number of cached key documents.
pub const DEFAULT_MAX_ENTRIES: u64 = 256;
/// Default shortest lifetime of a cached document, in seconds.
pub const DEFAULT_MIN_TTL_SECS: u64 = 60;
/// Default longest lifetime of a cached document, in seconds.
pub const DEFAULT_MAX_TTL_SECS: u64 = 86400;
/// Default new key fetches per route per minute.
pub const DEFAULT_MAX_FETCHES_PER_MINUTE: u64 = 10;
/// The most `min_ttl_secs` and `max_ttl_secs` may say: a year.
const MAX_TTL_LIMIT: u64 = 365 * 86400;

/// The system's trust roots, read once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    Arc::clone(ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            log::warn!(
                "remote keys: no system CA certificate found; set [server.remote_keys] ca_file"
            );
        }
        Arc::new(roots)
    }))
}

fn client_config(roots: Arc<RootCertStore>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports the default versions"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

impl Builder<'_> {
    /// `[server.remote_keys]`, with defaults.
    pub(super) fn remote_keys(&mut self, s: &ServerSection) -> Arc<KeySettings> {
        let default = super::file::RemoteKeysSection::default();
        let section = s.remote_keys.as_ref().map_or(&default, Spanned::get_ref);
        let timeout = self.positive_or(&section.timeout_ms, "timeout_ms", DEFAULT_TIMEOUT_MS);
        let max_bytes = self.positive_or(&section.max_bytes, "max_bytes", DEFAULT_MAX_BYTES);
        let max_entries =
            self.positive_or(&section.max_entries, "max_entries", DEFAULT_MAX_ENTRIES);
        let min_ttl = match &section.min_ttl_secs {
            None => DEFAULT_MIN_TTL_SECS,
            Some(v) => u64::try_from(*v.get_ref()).unwrap_or_else(|_| {
                self.error(span(v), "`min_ttl_secs` must not be negative");
                DEFAULT_MIN_TTL_SECS
            }),
        };
        let max_ttl = self.positive_or(&section.max_ttl_secs, "max_ttl_secs", DEFAULT_MAX_TTL_SECS);
        let max_ttl = if max_ttl > MAX_TTL_LIMIT {
            let at = section.max_ttl_secs.as_ref().and_then(span);
            self.error(
                at,
                format!("`max_ttl_secs` must be at most {MAX_TTL_LIMIT} (a year)"),
            );
            DEFAULT_MAX_TTL_SECS
        } else {
            max_ttl
        };
        let max_fetches = self.positive_or(
            &section.max_fetches_per_minute,
            "max_fetches_per_minute",
            DEFAULT_MAX_FETCHES_PER_MINUTE,
        );
        if min_ttl > max_ttl {
            let at = section.min_ttl_secs.as_ref().and_then(span);
            self.error(at, "`min_ttl_secs` must not be over `max_ttl_secs`");
        }
        let roots = match &section.ca_file {
            None => system_roots(),
            Some(file) => {
                let path = self.base_dir.join(file.get_ref());
                let mut roots = RootCertStore::empty();
                match read_pem_certificates(&path) {
                    Ok(certs) => {
                        for der in certs {
                            if roots.add(CertificateDer::from(der)).is_err() {
                                self.error(
                                    span(file),
                                    format!(
                                        "`{}` holds an unusable CA certificate",
                                        path.display()
                                    ),
                                );
                            }
                        }
                    }
                    Err(e) => self.error(span(file), e),
                }
                Arc::new(roots)
            }
        };
        Arc::new(KeySettings {
            tls: client_config(roots),
            timeout: Duration::from_millis(timeout),
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            max_entries: usize::try_from(max_entries).unwrap_or(usize::MAX),
            min_ttl: Duration::from_secs(min_ttl),
            max_ttl: Duration::from_secs(max_ttl),
            max_fetches_per_minute: u32::try_from(max_fetches)
                .ok()
                .and_then(NonZeroU32::new)
                .unwrap_or(NonZeroU32::MAX),
        })
    }

    /// The route's settings of a remote-key scheme, or errors at the keys
    /// that are missing, misspelled for the scheme, or malformed.
    pub(super) fn remote_params(
        &mut self,
        v: &VerifySection,
        scheme: &Scheme,
    ) -> Option<RemoteParams> {
        let name = v.scheme.get_ref();
        let Some(spec) = &scheme.remote else {
            for (key, at) in remote_keys_of(v) {
                if let Some(at) = at {
                    self.error(
                        Some(at),
                        format!(
                            "`{key}` applies to remote-key schemes; scheme `{name}` is not one"
                        ),
                    );
                }
            }
            return None;
        };
        let before = self.mark();
        let endpoint = matches!(spec.source, KeySource::KeyEndpoint { .. });
        match &v.secrets {
            Some(secrets) if !endpoint => self.error(
                span(secrets),
                format!(
                    "scheme `{name}` verifies with keys the provider publishes; remove `secrets`"
                ),
            ),
            _ => {}
        }
        let jwt = matches!(spec.source, KeySource::Jwks { .. });
        let sns = scheme.signed.uses(&Part::AwsSns);
        let webhook = scheme.signed.uses(&Part::WebhookId);
        // In the order of `remote_keys_of`.
        let fits = [
            jwt,
            jwt,
            jwt && spec.needs_tenant(),
            jwt,
            jwt,
            webhook,
            !spec.hosts.is_empty(),
            sns,
            endpoint,
            endpoint,
        ];
        for ((key, at), fits) in remote_keys_of(v).into_iter().zip(fits) {
            if let (Some(at), false) = (at, fits) {
                self.error(
                    Some(at),
                    format!("`{key}` does not apply to scheme `{name}`"),
                );
            }
        }
        let tenant = v.tenant.as_ref().map(|t| t.get_ref().as_str());
        if jwt && spec.needs_tenant() {
            match tenant {
                None => self.error(
                    span(&v.scheme),
                    format!("scheme `{name}` needs `tenant`, the directory (tenant) id"),
                ),
                Some(t) if !valid_tenant(t) => self.error(
                    v.tenant.as_ref().and_then(span),
                    "`tenant` must be a tenant id or domain: letters, digits, `-` and `.`",
                ),
                Some(_) => {}
            }
        }
        let fill = |text: &str| text.replace(TENANT, tenant.unwrap_or_default());
        let jwks_url = match (&spec.source, &v.jwks_url) {
            (KeySource::Jwks { .. }, Some(url)) => HttpsUrl::parse(url.get_ref()).or_else(|| {
                self.error(span(url), "`jwks_url` must be an https:// URL");
                None
            }),
            (KeySource::Jwks { url }, None) => HttpsUrl::parse(&fill(url)),
            (KeySource::Certificate { .. } | KeySource::KeyEndpoint { .. }, _) => None,
        };
        let audiences = list(v.audience.as_ref());
        if jwt && audiences.is_empty() {
            self.error(
                span(&v.scheme),
                format!("scheme `{name}` needs `audience`, the `aud` its tokens carry"),
            );
        }
        let issuers = match &v.issuer {
            Some(list) => &list.get_ref().0,
            None => &spec.issuers,
        };
        let issuers = issuers.iter().map(|i| fill(i)).collect();
        let hosts = match &v.key_hosts {
            None => spec.hosts.clone(),
            Some(list) => {
                let mut hosts = Vec::new();
                for text in list.get_ref() {
                    match HostPattern::parse(text) {
                        Ok(h) => hosts.push(h),
                        Err(e) => self.error(span(list), e),
                    }
                }
                if hosts.is_empty() {
                    self.error(span(list), "`key_hosts` needs at least one host");
                }
                hosts
            }
        };
        let webhook_id = v.webhook_id.as_ref().map(|w| w.get_ref().clone());
        if webhook && webhook_id.as_deref().is_none_or(str::is_empty) {
            self.error(
                span(&v.scheme),
                format!("scheme `{name}` needs `webhook_id`, the id the provider gave the webhook"),
            );
        }
        let mut expect = Vec::new();
        if let Some(topics) = &v.topic_arns {
            let source = Source::parse("json:/TopicArn").ok()?;
            expect.push((source, topics.get_ref().clone()));
        }
        let (key_endpoint, credentials) = match &spec.source {
            KeySource::KeyEndpoint { url } => {
                let endpoint = self.key_endpoint(v, url, &hosts);
                (endpoint, self.credentials(v).map(Arc::new))
            }
            KeySource::Certificate { .. } | KeySource::Jwks { .. } => (None, None),
        };
        if self.errors_since(before) {
            return None;
        }
        Some(RemoteParams {
            hosts,
            jwks_url,
            audiences,
            issuers,
            email: v.email.as_ref().map(|e| e.get_ref().clone()),
            webhook_id,
            expect,
            key_endpoint,
            credentials,
            claims: if endpoint {
                JwtClaims::Scheme
            } else {
                JwtClaims::Oidc
            },
        })
    }

    /// A key-endpoint route's endpoint: its `key_endpoint`, else the
    /// scheme's `url`; either must be HTTPS on one of `hosts`.
    fn key_endpoint(
        &mut self,
        v: &VerifySection,
        url: &str,
        hosts: &[HostPattern],
    ) -> Option<HttpsUrl> {
        let (text, at) = match &v.key_endpoint {
            Some(own) => (own.get_ref().as_str(), span(own)),
            None => (url, span(&v.scheme)),
        };
        let allowed = HttpsUrl::allowed(text, hosts, None);
        if allowed.is_none() {
            let hosts: Vec<&str> = hosts.iter().map(HostPattern::as_str).collect();
            self.error(
                at,
                format!(
                    "`key_endpoint` must be an https:// URL on an allowed host ({}); `key_hosts` sets them",
                    hosts.join(", ")
                ),
            );
        }
        allowed
    }

    /// A key-endpoint route's credentials: `client_id` and the one `secrets`
    /// entry (the API secret, as text).
    fn credentials(&mut self, v: &VerifySection) -> Option<Credentials> {
        let name = v.scheme.get_ref();
        let client_id = match &v.client_id {
            Some(id) if valid_client_id(id.get_ref()) => Some(id.get_ref().clone()),
            Some(id) => {
                self.error(
                    span(id),
                    "`client_id` must be 1 to 256 printable ASCII characters",
                );
                None
            }
            None => {
                self.error(
                    span(&v.scheme),
                    format!("scheme `{name}` needs `client_id`, the API client id its keys are asked with"),
                );
                None
            }
        };
        let secret = match v.secrets.as_ref().map(|s| (s, s.get_ref().as_slice())) {
            Some((_, [one])) => match self.resolve_secret(one.get_ref()) {
                Ok(secret) if std::str::from_utf8(secret.expose()).is_ok() => Some(secret),
                Ok(_) => {
                    self.error(span(one), "the API secret is not text");
                    None
                }
                Err(message) => {
                    self.error(span(one), message);
                    None
                }
            },
            Some((list, _)) => {
                self.error(
                    span(list),
                    format!(
                        "scheme `{name}` takes one secret: the API secret its keys are asked with"
                    ),
                );
                None
            }
            None => {
                self.error(
                    span(&v.scheme),
                    format!("scheme `{name}` needs `secrets` with one entry: the API secret its keys are asked with"),
                );
                None
            }
        };
        Some(Credentials {
            client_id: client_id?,
            secret: secret?,
        })
    }
}

fn valid_client_id(id: &str) -> bool {
    (1..=256).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The remote-key keys of a verify table, with where each is set.
fn remote_keys_of(v: &VerifySection) -> [(&'static str, Option<std::ops::Range<usize>>); 10] {
    [
        ("audience", v.audience.as_ref().map(Spanned::span)),
        ("issuer", v.issuer.as_ref().map(Spanned::span)),
        ("tenant", v.tenant.as_ref().map(Spanned::span)),
        ("jwks_url", v.jwks_url.as_ref().map(Spanned::span)),
        ("email", v.email.as_ref().map(Spanned::span)),
        ("webhook_id", v.webhook_id.as_ref().map(Spanned::span)),
        ("key_hosts", v.key_hosts.as_ref().map(Spanned::span)),
        ("topic_arns", v.topic_arns.as_ref().map(Spanned::span)),
        ("client_id", v.client_id.as_ref().map(Spanned::span)),
        ("key_endpoint", v.key_endpoint.as_ref().map(Spanned::span)),
    ]
}

fn list(value: Option<&Spanned<OneOrMany<String>>>) -> Vec<String> {
    value.map(|l| l.get_ref().0.clone()).unwrap_or_default()
}

fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 253
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests;
