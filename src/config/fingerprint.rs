//! A route's fingerprint: a digest of everything it does, its secrets
//! included, so that a reload can tell which routes changed. What routes share
//! (an upstream's connection target, a named scheme) is digested once per load.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::build::{Builder, cached};
use crate::forward::Upstream;
use crate::routes::Route;
use crate::scheme::presets::GENERIC;

/// Formats straight into a digest, without building the text.
struct DigestWriter<'a>(&'a mut Sha256);

impl fmt::Write for DigestWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// The digest of a value's `Debug` text.
fn debug_digest(value: &dyn fmt::Debug) -> [u8; 32] {
    let mut digest = Sha256::new();
    let _ = write!(DigestWriter(&mut digest), "{value:?}");
    digest.finalize().into()
}

impl Builder<'_> {
    /// A digest of a route: everything it does, its secrets included. What
    /// routes share (an upstream's connection target, a named scheme) is
    /// digested once per load.
    pub(super) fn fingerprint(&mut self, route: &Route, policy_secrets: [u8; 32]) -> [u8; 32] {
        // Every field, so that a new one cannot be left out unnoticed.
        let Route {
            name,
            host,
            path,
            methods,
            upstream,
            destination,
            filter,
            max_body_bytes,
            read_timeout,
            upstream_timeout,
            verifiers,
            strip_headers,
            public_url,
            verify_token,
            handshakes,
            json_members,
            secret_sources,
            policy,
            delivery,
            fingerprint: _,
        } = route;
        let Upstream {
            peer,
            pool_key,
            addr,
            tls,
            authority,
            path: upstream_path,
            query,
            url: upstream_url,
        } = upstream;
        let mut digest = Sha256::new();
        let settings = (
            (name, host, path, methods, max_body_bytes, read_timeout),
            (upstream_timeout, strip_headers, public_url, handshakes),
            (json_members, upstream_url, secret_sources, policy, delivery),
            (addr, tls, authority, upstream_path, query, pool_key),
            (destination, filter),
        );
        let _ = write!(DigestWriter(&mut digest), "{settings:?}");
        let peer_digest = *self
            .peer_digests
            .entry(Arc::as_ptr(peer).addr())
            .or_insert_with(|| debug_digest(peer));
        digest.update(peer_digest);
        for verifier in verifiers {
            let scheme = verifier.scheme();
            let scheme_digest = if scheme.name == GENERIC {
                debug_digest(scheme)
            } else {
                cached(&mut self.scheme_digests, scheme.name.as_str(), |_| {
                    debug_digest(scheme)
                })
            };
            digest.update(scheme_digest);
            let _ = write!(DigestWriter(&mut digest), "{:?}", verifier.tolerance_secs());
            digest.update(verifier.secrets_digest());
            let _ = write!(DigestWriter(&mut digest), "{:?}", verifier.remote_params());
        }
        if let Some(token) = verify_token {
            digest.update(Sha256::digest(token.expose()));
        }
        digest.update(policy_secrets);
        digest.finalize().into()
    }
}
