//! The builder frame: `Builder` turns the file model into a
//! [`RuntimeConfig`], collecting every problem (with its span) instead of
//! stopping at the first. It holds what one load reads and shares (secrets,
//! resolved hosts, CA files, connection targets, verifiers, digests) and
//! assembles each route from what its sibling files check and build:
//! `[server]` in `server.rs`, path rules and overlaps in `paths.rs`, the
//! upstream in `upstream.rs`, the fingerprint in `fingerprint.rs`, and the
//! verifiers, policy, delivery, TLS, admin and remote keys in theirs.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use toml::Spanned;

use super::file::{ConfigFile, RouteSection};
use crate::base::diagnostics::{Diagnostic, Severity};
use crate::base::secret::{Secret, SecretRef};
use crate::base::settings::AdminAccess;
use crate::forward::{SharedPeer, TrustedCas};
use crate::routes::{PathMatch, Route, RouteTable};
use crate::runtime::{RuntimeConfig, ServerSettings};
use crate::scheme::Scheme;
use crate::scheme::build::SchemeBuilder;
use crate::scheme::handshake::Handshake;
use crate::tls::Certificates;
use crate::verify::Verifier;

/// What an upstream's connection target is made of: address, TLS, host name
/// (SNI), timeout and CA file.
pub(super) type PeerKey = (SocketAddr, bool, String, Duration, Option<PathBuf>);

/// Route-level defaults taken from `[server]` (built-in values in `server.rs`).
#[derive(Clone, Copy)]
pub(super) struct RouteDefaults {
    pub(super) max_body_bytes: u64,
    pub(super) read_timeout_ms: u64,
    pub(super) upstream_timeout_ms: u64,
}

/// Builds a [`RuntimeConfig`] from a parsed file whose routes may come in
/// several parts ([`Builder::new`], [`Builder::add_routes`] for each part,
/// [`Builder::finish`]), collecting every problem on the way.
pub(super) struct Builder<'a> {
    source: &'a Path,
    pub(super) base_dir: &'a Path,
    pub(super) diagnostics: Vec<Diagnostic>,
    /// Schemes the config defines under `[schemes.NAME]`.
    pub(super) schemes: BTreeMap<String, Arc<Scheme>>,
    /// `[server]`, when valid.
    pub(super) server: Option<ServerSettings>,
    /// `[[server.tls]]`, when there is any.
    tls: Option<Certificates>,
    /// `[server] trusted_proxies`.
    trusted_proxies: Vec<ipnet::IpNet>,
    /// `[server.remote_keys]`.
    remote_keys: Option<Arc<crate::keys::KeySettings>>,
    /// `[server] admin_token` and `admin_hosts`.
    admin: AdminAccess,
    defaults: RouteDefaults,
    /// The routes built so far (those without problems).
    routes: Vec<Arc<Route>>,
    /// The name of every route so far.
    names: HashSet<Arc<str>>,
    pub(super) overlaps: Overlaps,
    /// Upstream host → its address (port 0), or the problem: resolved once per load.
    pub(super) addresses: HashMap<String, Result<SocketAddr, String>>,
    /// `upstream_ca_file` → its certificates, or the problem: read once per load.
    pub(super) ca_files: HashMap<PathBuf, Result<TrustedCas, String>>,
    /// Connection targets, one per distinct upstream, shared by its routes.
    pub(super) peers: HashMap<PeerKey, SharedPeer>,
    /// Verifiers by scheme, secrets digest and window, shared by the routes
    /// that verify alike.
    pub(super) verifiers: HashMap<(usize, [u8; 32], Option<u64>), Verifier>,
    /// Lists routes share: the JSON members their schemes read, and how their
    /// secrets may be shown.
    json_member_lists: HashSet<Arc<[String]>>,
    method_lists: HashSet<Arc<[Method]>>,
    secret_source_lists: HashSet<Arc<[Vec<String>]>>,
    /// The digest of each of `peers` (which holds them, so their addresses
    /// stay theirs), by address.
    pub(super) peer_digests: HashMap<usize, [u8; 32]>,
    /// The digest of each named scheme (built-in or `[schemes.NAME]`).
    pub(super) scheme_digests: HashMap<String, [u8; 32]>,
    /// `env:`/`file:` reference → the secret, or the problem: read once per load.
    pub(super) secrets: HashMap<String, Result<Secret, String>>,
    /// Every file the config reads besides itself (`file:` secrets, CA files,
    /// certificates and keys), whether or not it could be read.
    pub(super) files: BTreeSet<PathBuf>,
}

/// A route's host, path rule and one of its methods, as written.
pub(super) type MethodKey = (Option<String>, PathMatch, String);

/// Every route so far, for finding overlaps one route at a time (see
/// `paths.rs`).
#[derive(Default)]
pub(super) struct Overlaps {
    /// Per host, path rule and method: the first route with them, by
    /// position and name.
    pub(super) first: HashMap<MethodKey, (usize, Arc<str>)>,
    /// How many routes there were.
    pub(super) count: usize,
}

/// `list`, or an equal one built before: many routes hold the same list.
fn shared<T: Eq + Hash>(lists: &mut HashSet<Arc<[T]>>, list: Vec<T>) -> Arc<[T]> {
    if let Some(existing) = lists.get(list.as_slice()) {
        return Arc::clone(existing);
    }
    let list: Arc<[T]> = list.into();
    lists.insert(Arc::clone(&list));
    list
}

/// The top-level JSON members a route's verifiers and handshakes read.
fn json_members(verifiers: &[Verifier], handshakes: &[Handshake]) -> Vec<String> {
    let mut members: Vec<String> = verifiers
        .iter()
        .flat_map(|v| v.scheme().json_members())
        .collect();
    members.extend(
        handshakes
            .iter()
            .flat_map(Handshake::sources)
            .filter_map(|s| s.json_member())
            .map(str::to_owned),
    );
    members.sort();
    members.dedup();
    members
}

/// Whether `name` is a valid route or destination name: `[a-z0-9_-]+`.
pub(super) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

pub(super) fn span<T>(s: &Spanned<T>) -> Option<Range<usize>> {
    Some(s.span())
}

/// `cache[key]`, made by `make` the first time it is asked for.
pub(super) fn cached<K, Q, V>(cache: &mut HashMap<K, V>, key: &Q, make: impl FnOnce(&Q) -> V) -> V
where
    K: Borrow<Q> + Hash + Eq,
    Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
    V: Clone,
{
    if let Some(value) = cache.get(key) {
        return value.clone();
    }
    let value = make(key);
    cache.insert(key.to_owned(), value.clone());
    value
}

impl<'a> Builder<'a> {
    /// Starts building from the file's `[server]` and `[schemes.NAME]` tables;
    /// its routes come with [`Self::add_routes`].
    pub(super) fn new(file: &ConfigFile, source: &'a Path) -> Self {
        let mut b = Self {
            source,
            base_dir: source.parent().unwrap_or(Path::new(".")),
            diagnostics: Vec::new(),
            schemes: BTreeMap::new(),
            server: None,
            tls: None,
            trusted_proxies: Vec::new(),
            remote_keys: None,
            admin: AdminAccess::default(),
            defaults: RouteDefaults::BUILT_IN,
            routes: Vec::new(),
            names: HashSet::new(),
            overlaps: Overlaps::default(),
            addresses: HashMap::new(),
            ca_files: HashMap::new(),
            peers: HashMap::new(),
            verifiers: HashMap::new(),
            json_member_lists: HashSet::new(),
            method_lists: HashSet::new(),
            secret_source_lists: HashSet::new(),
            peer_digests: HashMap::new(),
            scheme_digests: HashMap::new(),
            secrets: HashMap::new(),
            files: BTreeSet::new(),
        };
        b.user_schemes(&file.schemes);
        b.server = b.server(&file.server, file.spool.as_ref());
        b.tls = b.tls_certificates(&file.server);
        b.trusted_proxies = b.trusted_proxies(&file.server);
        b.remote_keys = Some(b.remote_keys(&file.server));
        b.admin = b.admin_access(&file.server);
        b.defaults = b.route_defaults(&file.server);
        let s = &file.server;
        let at = [
            &s.max_body_bytes,
            &s.max_inflight_body_bytes_per_client,
            &s.max_inflight_body_bytes,
        ]
        .into_iter()
        .find_map(|key| key.as_ref().and_then(span));
        b.check_body_share(at, b.defaults.max_body_bytes);
        b
    }

    /// Makes room for about `routes` routes.
    pub(super) fn reserve(&mut self, routes: usize) {
        self.routes.reserve(routes);
        self.names.reserve(routes);
        self.overlaps.first.reserve(routes);
    }

    /// Builds and checks the next routes of the file, in file order; their
    /// spans count from byte `offset` of the file (a part parsed on its own).
    /// Only what later checks need is kept of them.
    pub(super) fn add_routes(&mut self, routes: &[RouteSection], offset: usize) {
        let mark = self.mark();
        for r in routes {
            if let Some(route) = self.route(r) {
                self.routes.push(Arc::new(route));
            }
            let name: Arc<str> = Arc::from(r.name.get_ref().as_str());
            self.check_name(r, &name);
            self.check_overlap(r, &name);
        }
        // Every problem found here is about these routes.
        for span in self.diagnostics[mark..]
            .iter_mut()
            .filter_map(|d| d.span.as_mut())
        {
            *span = span.start + offset..span.end + offset;
        }
    }

    /// The runtime config, only when there is no error; warnings come back
    /// either way, in file order.
    /// The config when it has no error, every problem, and every file it
    /// reads besides itself.
    pub(super) fn finish(self) -> (Option<RuntimeConfig>, Vec<Diagnostic>, Vec<PathBuf>) {
        let has_errors = self
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error);
        let files: Vec<PathBuf> = self.files.into_iter().collect();
        let config = match (self.server, self.remote_keys) {
            (Some(server), Some(remote_keys)) if !has_errors => Some(RuntimeConfig {
                source: self.source.to_owned(),
                generation: 1,
                loaded_at: std::time::SystemTime::now(),
                server,
                routes: RouteTable::from_shared(self.routes),
                tls: self.tls,
                trusted_proxies: self.trusted_proxies,
                files: files.clone(),
                remote_keys,
                admin: self.admin,
            }),
            _ => None,
        };
        let mut diagnostics = self.diagnostics;
        diagnostics.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        (config, diagnostics, files)
    }

    pub(super) fn error(&mut self, at: Option<Range<usize>>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::error(at, message));
    }

    pub(super) fn warning(&mut self, at: Option<Range<usize>>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::warning(at, message));
    }

    /// A positive integer setting, or `default` when absent.
    pub(super) fn positive_or(
        &mut self,
        value: &Option<Spanned<i64>>,
        key: &str,
        default: u64,
    ) -> u64 {
        match value {
            None => default,
            Some(v) => match u64::try_from(*v.get_ref()) {
                Ok(n) if n > 0 => n,
                _ => {
                    self.error(span(v), format!("`{key}` must be a positive integer"));
                    default
                }
            },
        }
    }

    fn route(&mut self, r: &RouteSection) -> Option<Route> {
        let defaults = self.defaults;
        let before = self.mark();
        let name = r.name.get_ref();
        if !is_name(name) {
            self.error(
                span(&r.name),
                format!("route name `{name}` must match [a-z0-9_-]+"),
            );
        }
        let path = self.path_rule(r);
        let host = r.host.as_ref().and_then(|h| self.host(h));
        let public_url = r.public_url.as_ref().and_then(|u| self.public_url(u));
        let max_body_bytes =
            self.positive_or(&r.max_body_bytes, "max_body_bytes", defaults.max_body_bytes);
        if let Some(key) = &r.max_body_bytes {
            self.check_body_share(span(key), max_body_bytes);
        }
        let read_timeout_ms = self.positive_or(
            &r.read_timeout_ms,
            "read_timeout_ms",
            defaults.read_timeout_ms,
        );
        let upstream_timeout_ms = self.positive_or(
            &r.upstream_timeout_ms,
            "upstream_timeout_ms",
            defaults.upstream_timeout_ms,
        );
        let upstream_timeout = Duration::from_millis(upstream_timeout_ms);
        let verify = &r.verify.get_ref().0;
        if verify.is_empty() {
            self.error(
                span(&r.verify),
                format!("route `{name}` needs at least one verifier"),
            );
        }
        let verifiers: Vec<Verifier> = verify.iter().filter_map(|v| self.verifier(v)).collect();
        let destination = self.destination(r, &verifiers, upstream_timeout);
        let handshakes = self.route_handshakes(r, &verifiers);
        self.mac_answer_warnings(r, &verifiers, &handshakes);
        let verify_token = self.verify_token(r, &verifiers, &handshakes);
        let methods = self.methods(r, &verifiers, &handshakes);
        let methods = shared(&mut self.method_lists, methods);
        let json_members = shared(
            &mut self.json_member_lists,
            json_members(&verifiers, &handshakes),
        );
        let (policy, policy_secrets) = self.policy(r, &verifiers);
        let mut delivery = self.delivery(
            r,
            destination
                .as_ref()
                .and_then(|d| d.delivery.as_ref())
                .or(r.delivery.as_ref()),
        );
        if let Some((breaker, at)) = destination.as_ref().and_then(|d| d.breaker.clone()) {
            match delivery.as_deref_mut() {
                Some(policy) => policy.breaker = Some(breaker),
                None => self.error(
                    at,
                    "`[routes.destinations.breaker]` rests an async destination: it needs \
                     `delivery = \"async\"`",
                ),
            }
        }
        let strip_headers = if r.strip_signature_headers {
            let mut names: Vec<HeaderName> = verifiers
                .iter()
                .flat_map(|v| v.scheme().signature_headers())
                .collect();
            names.dedup();
            names
        } else {
            Vec::new()
        };
        if self.errors_since(before) {
            return None;
        }
        let destination = destination?;
        Some(Route {
            name: name.clone(),
            host,
            path: path?,
            methods,
            upstream: destination.upstream,
            destination: destination.name,
            filter: destination.filter,
            max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
            read_timeout: Duration::from_millis(read_timeout_ms),
            upstream_timeout,
            verifiers,
            strip_headers,
            public_url,
            verify_token,
            handshakes,
            json_members,
            secret_sources: shared(
                &mut self.secret_source_lists,
                verify
                    .iter()
                    .map(|v| {
                        v.secrets
                            .iter()
                            .flat_map(|s| s.get_ref())
                            .map(|s| SecretRef::parse(s.get_ref()).describe())
                            .collect()
                    })
                    .collect(),
            ),
            policy,
            delivery,
            fingerprint: [0; 32],
        })
        .map(|mut route| {
            route.fingerprint = self.fingerprint(&route, policy_secrets);
            route
        })
    }

    /// A mark for [`Self::errors_since`]: how many problems there are so far.
    pub(super) fn mark(&self) -> usize {
        self.diagnostics.len()
    }

    /// Whether an error was reported after `mark` (counting from there, so a
    /// check per route does not grow with the routes before it).
    pub(super) fn errors_since(&self, mark: usize) -> bool {
        self.diagnostics[mark..]
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// A scheme builder reporting into this config's diagnostics.
    pub(super) fn scheme_builder(&mut self) -> SchemeBuilder<'_> {
        SchemeBuilder::new(&mut self.diagnostics)
    }

    fn check_name(&mut self, r: &RouteSection, name: &Arc<str>) {
        if !self.names.insert(Arc::clone(name)) {
            self.error(span(&r.name), format!("duplicate route name `{name}`"));
        }
    }
}
