//! A route's policy keys (`mode`, `allow_ips`, `require_headers`,
//! `[routes.rate_limit]`, `[routes.dedup]`, `on_state_error`,
//! `[routes.forward_signature]`) and the server's `trusted_proxies` and
//! `[server.state]`, checked and built into [`crate::policy`] types.

use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::build::{Builder, span};
use super::file::{RouteSection, ServerSection};
use crate::base::secret::SecretRef;
use crate::base::settings::StateSettings;
use crate::mac::{HashAlg, KeyedMac};
use crate::policy::{ForwardSignature, LimitBy, OnStateError, Policy, RateLimit, RequiredHeader};
use crate::scheme::KeyFormat;
use crate::verify::Verifier;
use crate::verify::key;

/// Default `[server.state] redis_timeout_ms`.
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 250;
/// Default `[server.state] max_entries`.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;

impl Builder<'_> {
    /// A route's policy: `None` when it sets none of the keys; the digest of
    /// the secrets it holds, for the route's fingerprint.
    pub(super) fn policy(
        &mut self,
        r: &RouteSection,
        verifiers: &[Verifier],
    ) -> (Option<Box<Policy>>, [u8; 32]) {
        let mut secrets = Sha256::new();
        let monitor = match r.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
            None | Some((_, "enforce")) => false,
            Some((_, "monitor")) => true,
            Some((m, other)) => {
                self.error(
                    span(m),
                    format!("`mode` is `enforce` or `monitor`, not `{other}`"),
                );
                false
            }
        };
        let allow_ips = r
            .allow_ips
            .as_ref()
            .map(|list| self.networks(list, "allow_ips"))
            .unwrap_or_default();
        let mut require_headers = Vec::new();
        for (name, value) in r.require_headers.iter().flat_map(|h| h.get_ref()) {
            let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                self.error(span(value), format!("`{name}` is not a header name"));
                continue;
            };
            match self.resolve_secret(value.get_ref()) {
                Ok(secret) => {
                    secrets.update(secret.expose());
                    require_headers.push(RequiredHeader {
                        name: header,
                        value: secret,
                        source: SecretRef::parse(value.get_ref()).describe(),
                    });
                }
                Err(message) => self.error(span(value), message),
            }
        }
        let rate_limit = r.rate_limit.as_ref().and_then(|l| self.rate_limit(l));
        let dedup = r.dedup.as_ref().and_then(|d| {
            let ttl = d.get_ref().ttl_secs.get_ref();
            if *ttl <= 0 {
                self.error(span(&d.get_ref().ttl_secs), "`ttl_secs` must be a positive integer");
                return None;
            }
            if verifiers.iter().any(|v| v.scheme().id.is_empty()) {
                self.warning(
                    span(d),
                    "a scheme of this route has no event id: its deliveries are deduplicated by the SHA-256 of the signed content",
                );
            }
            let unsigned = verifiers
                .iter()
                .map(Verifier::scheme)
                .find(|s| s.ids.signed.is_empty() && !s.ids.unsigned.is_empty());
            if let Some(scheme) = unsigned {
                self.warning(
                    span(d),
                    format!(
                        "the event id of scheme `{}` is not covered by its signature ({}): anyone can change it, so dedup keys on the SHA-256 of the body instead",
                        scheme.name,
                        scheme
                            .ids
                            .unsigned
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            Some(Duration::from_secs(ttl.unsigned_abs()))
        });
        let on_state_error = match r.on_state_error.as_ref().map(|o| (o, o.get_ref().as_str())) {
            None | Some((_, "closed")) => OnStateError::Closed,
            Some((_, "open")) => OnStateError::Open,
            Some((o, other)) => {
                self.error(
                    span(o),
                    format!("`on_state_error` is `closed` or `open`, not `{other}`"),
                );
                OnStateError::Closed
            }
        };
        let forward_signature = r.forward_signature.as_ref().and_then(|f| {
            let f = f.get_ref();
            if f.scheme.get_ref() != "standard-webhooks" {
                self.error(
                    span(&f.scheme),
                    format!(
                        "`forward_signature` signs with `standard-webhooks`, not `{}`",
                        f.scheme.get_ref()
                    ),
                );
                return None;
            }
            let secret = self
                .resolve_secret(f.secret.get_ref())
                .and_then(|s| key::decode(KeyFormat::Whsec, s.expose()))
                .map_err(|message| self.error(span(&f.secret), message))
                .ok()?;
            secrets.update(&secret);
            Some(ForwardSignature {
                key: KeyedMac::new(HashAlg::Sha256, &secret),
                source: SecretRef::parse(f.secret.get_ref()).describe(),
            })
        });
        let policy = Policy {
            monitor,
            allow_ips,
            require_headers,
            rate_limit,
            dedup,
            on_state_error,
            forward_signature,
        };
        let any = policy.monitor
            || !policy.allow_ips.is_empty()
            || !policy.require_headers.is_empty()
            || policy.rate_limit.is_some()
            || policy.dedup.is_some()
            || r.on_state_error.is_some()
            || policy.forward_signature.is_some();
        (any.then(|| Box::new(policy)), secrets.finalize().into())
    }

    fn rate_limit(
        &mut self,
        section: &Spanned<super::file::RateLimitSection>,
    ) -> Option<RateLimit> {
        let l = section.get_ref();
        let per_second = *l.per_second.get_ref();
        if !(per_second.is_finite() && per_second > 0.0) {
            self.error(
                span(&l.per_second),
                "`per_second` must be a positive number",
            );
            return None;
        }
        let burst = match &l.burst {
            None => per_second.ceil().max(1.0) as u32,
            Some(b) => match u32::try_from(*b.get_ref()) {
                Ok(n) if n > 0 => n,
                _ => {
                    self.error(span(b), "`burst` must be a positive integer");
                    return None;
                }
            },
        };
        let by = match l.by.as_ref().map(|b| (b, b.get_ref().as_str())) {
            None | Some((_, "route")) => LimitBy::Route,
            Some((_, "client_ip")) => LimitBy::ClientIp,
            Some((b, other)) => {
                self.error(
                    span(b),
                    format!("`by` is `route` or `client_ip`, not `{other}`"),
                );
                return None;
            }
        };
        Some(RateLimit {
            per_second,
            burst,
            by,
        })
    }

    /// A list of networks: CIDRs, or single addresses. One written in
    /// IPv4-mapped form (`::ffff:10.0.0.0/104`) is the IPv4 network it maps
    /// (`10.0.0.0/8`): clients are matched by their IPv4 address, also on a
    /// dual-stack listener.
    pub(super) fn networks(
        &mut self,
        list: &Spanned<Vec<Spanned<String>>>,
        key: &str,
    ) -> Vec<IpNet> {
        if list.get_ref().is_empty() {
            self.error(span(list), format!("`{key}` needs at least one network"));
        }
        list.get_ref()
            .iter()
            .filter_map(|text| {
                let t = text.get_ref().trim();
                t.parse::<IpNet>()
                    .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        self.error(
                            span(text),
                            format!("`{t}` is not a network; write a CIDR like `10.0.0.0/8` or an address"),
                        );
                    })
                    .ok()
                    .map(unmapped)
            })
            .collect()
    }

    /// `[server] trusted_proxies`.
    pub(super) fn trusted_proxies(&mut self, s: &ServerSection) -> Vec<IpNet> {
        s.trusted_proxies
            .as_ref()
            .map(|list| self.networks(list, "trusted_proxies"))
            .unwrap_or_default()
    }

    /// `[server.state]`.
    pub(super) fn state(&mut self, s: &ServerSection) -> StateSettings {
        let section = s.state.as_ref().map(Spanned::get_ref);
        let timeout = self.positive_or(
            &section.and_then(|st| st.redis_timeout_ms.clone()),
            "redis_timeout_ms",
            DEFAULT_REDIS_TIMEOUT_MS,
        );
        let max_entries = self.positive_or(
            &section.and_then(|st| st.max_entries.clone()),
            "max_entries",
            DEFAULT_MAX_ENTRIES,
        );
        let redis = section
            .and_then(|st| st.redis_url.as_ref())
            .and_then(|url| {
                let resolved = self
                    .resolve_secret(url.get_ref())
                    .map_err(|message| self.error(span(url), message))
                    .ok()?;
                let text = String::from_utf8(resolved.expose().to_vec())
                    .ok()
                    .filter(|t| t.starts_with("redis://") || t.starts_with("rediss://"));
                let Some(text) = text else {
                    self.error(span(url), "`redis_url` must be a redis:// or rediss:// URL");
                    return None;
                };
                // The error's text could quote the URL, and its password: not shown.
                if redis::Client::open(text.as_str()).is_err() {
                    self.error(span(url), "`redis_url` is not a valid Redis URL");
                    return None;
                }
                Some(crate::base::settings::RedisSettings {
                    url: text,
                    shown: SecretRef::parse(url.get_ref()).describe(),
                })
            });
        StateSettings {
            redis,
            timeout: Duration::from_millis(timeout),
            max_entries: usize::try_from(max_entries).unwrap_or(usize::MAX),
        }
    }
}

/// The IPv4 network an IPv6 network inside `::ffff:0:0/96` maps; any other
/// network as it is.
fn unmapped(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else {
        return net;
    };
    match (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96)) {
        (Some(v4), Some(len)) => ipnet::Ipv4Net::new(v4, len).map_or(net, IpNet::V4),
        _ => net,
    }
}
