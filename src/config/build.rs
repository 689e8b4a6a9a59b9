//! Validation: turns the file model into a [`RuntimeConfig`], collecting every
//! problem (with its span) instead of stopping at the first. Secrets are resolved
//! and upstream host names looked up here, once per load.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::hash::Hash;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use sha2::{Digest, Sha256};
use toml::Spanned;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::file::{ConfigFile, RouteSection, ServerSection, SpoolSection};
use crate::base::diagnostics::{Diagnostic, Severity};
use crate::base::one_or_many::OneOrMany;
use crate::base::secret::{Secret, SecretRef};
use crate::base::settings::{AdminAccess, FrontDoor};
use crate::forward::{self, SharedPeer, TrustedCas, Upstream};
use crate::observe::access_log::Target as AccessLogTarget;
use crate::routes::RouteTable;
use crate::routes::{PathMatch, Route};
use crate::runtime::{RuntimeConfig, ServerSettings};
use crate::scheme::Scheme;
use crate::scheme::build::SchemeBuilder;
use crate::scheme::handshake::Handshake;
use crate::scheme::presets::GENERIC;
use crate::tls::Certificates;
use crate::verify::Verifier;

/// A count from the config as a `usize`, saturating on 32-bit targets.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Default webhook listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `max_body_bytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Default `read_timeout_ms`.
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 10_000;
/// Default `shutdown_grace_secs`.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// Default `upstream_timeout_ms`.
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 10_000;
/// Default `header_timeout_ms`.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default `keepalive_timeout_secs`.
pub const DEFAULT_KEEPALIVE_TIMEOUT_SECS: u64 = 60;
/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;
/// Default `max_header_bytes`: 32 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 32 * 1024;
/// Default `max_inflight_body_bytes`: 256 MiB.
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES: u64 = 256 * 1024 * 1024;
/// Default `min_body_bytes_per_sec`.
pub const DEFAULT_MIN_BODY_BYTES_PER_SEC: u64 = 1024;

/// What an upstream's connection target is made of: address, TLS, host name
/// (SNI), timeout and CA file.
type PeerKey = (SocketAddr, bool, String, Duration, Option<PathBuf>);

/// Route-level defaults taken from `[server]`.
#[derive(Clone, Copy)]
struct RouteDefaults {
    max_body_bytes: u64,
    read_timeout_ms: u64,
    upstream_timeout_ms: u64,
}

impl RouteDefaults {
    /// When `[server]` sets none of them.
    const BUILT_IN: Self = Self {
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        read_timeout_ms: DEFAULT_READ_TIMEOUT_MS,
        upstream_timeout_ms: DEFAULT_UPSTREAM_TIMEOUT_MS,
    };
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
    server: Option<ServerSettings>,
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
    overlaps: Overlaps,
    /// Upstream host → its address (port 0), or the problem: resolved once per load.
    addresses: HashMap<String, Result<SocketAddr, String>>,
    /// `upstream_ca_file` → its certificates, or the problem: read once per load.
    ca_files: HashMap<PathBuf, Result<TrustedCas, String>>,
    /// Connection targets, one per distinct upstream, shared by its routes.
    peers: HashMap<PeerKey, SharedPeer>,
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
    peer_digests: HashMap<usize, [u8; 32]>,
    /// The digest of each named scheme (built-in or `[schemes.NAME]`).
    scheme_digests: HashMap<String, [u8; 32]>,
    /// `env:`/`file:` reference → the secret, or the problem: read once per load.
    pub(super) secrets: HashMap<String, Result<Secret, String>>,
    /// Every file the config reads besides itself (`file:` secrets, CA files,
    /// certificates and keys), whether or not it could be read.
    pub(super) files: BTreeSet<PathBuf>,
}

/// A route's host, path rule and one of its methods, as written.
type MethodKey = (Option<String>, PathMatch, String);

/// Every route so far, for finding overlaps one route at a time.
#[derive(Default)]
struct Overlaps {
    /// Per host, path rule and method: the first route with them, by
    /// position and name.
    first: HashMap<MethodKey, (usize, Arc<str>)>,
    /// How many routes there were.
    count: usize,
}

impl Overlaps {
    /// Records `r`, called `name`, and returns the first route before it that
    /// one request could match too (same host, same path rule, a method in
    /// common), with the first of `r`'s methods that route has.
    fn add(&mut self, r: &RouteSection, name: &Arc<str>) -> Option<(Arc<str>, String)> {
        let OverlapKey {
            host,
            path,
            methods,
        } = OverlapKey::new(r);
        let index = self.count;
        self.count += 1;
        let path = path?;
        let keys: Vec<MethodKey> = methods
            .into_iter()
            .map(|method| (host.clone(), path.clone(), method))
            .collect();
        // Each of its methods that the first such route has maps to that route.
        let mut earliest: Option<(usize, &Arc<str>, &str)> = None;
        for key in &keys {
            if let Some((i, earlier)) = self.first.get(key) {
                if earliest.is_none_or(|(j, _, _)| *i < j) {
                    earliest = Some((*i, earlier, &key.2));
                }
            }
        }
        let found = earliest.map(|(_, earlier, method)| (Arc::clone(earlier), method.to_owned()));
        for key in keys {
            self.first.entry(key).or_insert((index, Arc::clone(name)));
        }
        found
    }
}

/// Whether two listen addresses would take the same socket: the same port on
/// the same address, or on any address when either is a wildcard.
pub(super) fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// What decides whether two routes overlap, as written: the host (trimmed,
/// lower case), the path rule (none when the route has not exactly one) and the
/// methods (upper case; `POST` when not listed).
struct OverlapKey {
    host: Option<String>,
    path: Option<PathMatch>,
    methods: Vec<String>,
}

impl OverlapKey {
    fn new(r: &RouteSection) -> Self {
        Self {
            host: r
                .host
                .as_ref()
                .map(|h| h.get_ref().trim().to_ascii_lowercase()),
            path: match (&r.path, &r.path_prefix) {
                (Some(p), None) => Some(PathMatch::Exact(p.get_ref().clone())),
                (None, Some(p)) => Some(PathMatch::Prefix(p.get_ref().clone())),
                _ => None,
            },
            methods: match &r.methods {
                None => vec!["POST".to_owned()],
                Some(list) => list
                    .get_ref()
                    .iter()
                    .map(|m| m.get_ref().to_ascii_uppercase())
                    .collect(),
            },
        }
    }
}

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

/// The first address of `host`, with port 0 (the port does not change what a
/// name resolves to).
fn resolve(host: &str) -> Result<SocketAddr, String> {
    match (host, 0).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => Ok(addr),
        Ok(None) => Err(format!("upstream host `{host}` has no address")),
        Err(e) => Err(format!("cannot resolve upstream host `{host}`: {e}")),
    }
}

/// Reads a PEM file of CA certificates for an upstream.
fn read_ca_file(path: &Path) -> Result<TrustedCas, String> {
    read_pem_certificates(path).map(|certs| TrustedCas::new(&certs))
}

/// Reads a PEM file of certificates (DER each), each checked to be a parseable
/// X.509 certificate (the TLS stack would otherwise fail on it at connect time).
pub(super) fn read_pem_certificates(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        match cert {
            Ok(der) if x509_parser::parse_x509_certificate(&der).is_ok() => {
                certs.push(der.to_vec());
            }
            _ => return Err(format!("`{}` holds an invalid certificate", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("`{}` holds no PEM certificate", path.display()));
    }
    Ok(certs)
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

    /// Warns when bodies of up to `max_body_bytes` (the key at `at`) may be
    /// larger than one client's share of the body budget: those are always
    /// refused 503 `overloaded`, and the provider retries in vain.
    fn check_body_share(&mut self, at: Option<Range<usize>>, max_body_bytes: u64) {
        let Some(share) = self
            .server
            .as_ref()
            .map(|s| s.front.max_inflight_body_bytes_per_client)
            .filter(|&share| max_body_bytes > share)
        else {
            return;
        };
        self.warning(
            at,
            format!(
                "`max_body_bytes` ({max_body_bytes}) is over `max_inflight_body_bytes_per_client` \
                 ({share}): a body larger than {share} bytes is always refused 503 `overloaded`"
            ),
        );
    }

    /// The route defaults `[server]` sets.
    fn route_defaults(&mut self, server: &ServerSection) -> RouteDefaults {
        let built_in = RouteDefaults::BUILT_IN;
        RouteDefaults {
            max_body_bytes: self.positive_or(
                &server.max_body_bytes,
                "max_body_bytes",
                built_in.max_body_bytes,
            ),
            read_timeout_ms: self.positive_or(
                &server.read_timeout_ms,
                "read_timeout_ms",
                built_in.read_timeout_ms,
            ),
            upstream_timeout_ms: self.positive_or(
                &server.upstream_timeout_ms,
                "upstream_timeout_ms",
                built_in.upstream_timeout_ms,
            ),
        }
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

    /// `max_inflight_body_bytes` and the share of it one client may hold
    /// (an eighth of it unless set; never more than it).
    fn body_budget(&mut self, s: &ServerSection) -> (u64, u64) {
        let budget = self.positive_or(
            &s.max_inflight_body_bytes,
            "max_inflight_body_bytes",
            DEFAULT_MAX_INFLIGHT_BODY_BYTES,
        );
        let default_share = (budget / 8).max(1);
        let key = "max_inflight_body_bytes_per_client";
        let share = self.positive_or(&s.max_inflight_body_bytes_per_client, key, default_share);
        if share > budget {
            let at = s.max_inflight_body_bytes_per_client.as_ref().and_then(span);
            self.error(
                at,
                format!("`{key}` ({share}) must not be over `max_inflight_body_bytes` ({budget})"),
            );
            return (budget, default_share);
        }
        (budget, share)
    }

    /// A setting that may be 0, or `default` when absent.
    fn non_negative_or(&mut self, value: &Option<Spanned<i64>>, key: &str, default: u64) -> u64 {
        match value {
            None => default,
            Some(v) => u64::try_from(*v.get_ref()).unwrap_or_else(|_| {
                self.error(span(v), format!("`{key}` must not be negative"));
                default
            }),
        }
    }

    fn server(
        &mut self,
        s: &ServerSection,
        spool: Option<&Spanned<SpoolSection>>,
    ) -> Option<ServerSettings> {
        let (listen, mut ok) = match &s.listen {
            None => (vec![DEFAULT_LISTEN.parse().ok()?], true),
            Some(list) => self.addresses(list, "listen"),
        };
        let cpus = std::thread::available_parallelism().map_or(1, usize::from) as u64;
        let threads = self.positive_or(&s.threads, "threads", cpus);
        let admin_listen =
            s.admin_listen
                .as_ref()
                .and_then(|a| match a.get_ref().parse::<SocketAddr>() {
                    Ok(addr) if listen.iter().any(|l| same_socket(*l, addr)) => {
                        self.error(
                            span(a),
                            "`admin_listen` must not share a port with `listen`",
                        );
                        None
                    }
                    Ok(addr) => Some(addr),
                    Err(_) => {
                        self.error(
                            span(a),
                            format!(
                                "invalid admin_listen address `{}`; write IP:PORT",
                                a.get_ref()
                            ),
                        );
                        None
                    }
                });
        let access_log = match s.access_log.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("stdout") => AccessLogTarget::Stdout,
            Some("off") => AccessLogTarget::Off,
            Some(path) => AccessLogTarget::File(self.base_dir.join(path)),
        };
        let grace = self.positive_or(
            &s.shutdown_grace_secs,
            "shutdown_grace_secs",
            DEFAULT_SHUTDOWN_GRACE_SECS,
        );
        let (max_inflight_body_bytes, max_inflight_body_bytes_per_client) = self.body_budget(s);
        let front = FrontDoor {
            header_timeout: Duration::from_millis(self.positive_or(
                &s.header_timeout_ms,
                "header_timeout_ms",
                DEFAULT_HEADER_TIMEOUT_MS,
            )),
            keepalive_timeout: Duration::from_secs(self.positive_or(
                &s.keepalive_timeout_secs,
                "keepalive_timeout_secs",
                DEFAULT_KEEPALIVE_TIMEOUT_SECS,
            )),
            max_connections: to_usize(self.positive_or(
                &s.max_connections,
                "max_connections",
                DEFAULT_MAX_CONNECTIONS,
            )),
            max_header_bytes: to_usize(self.positive_or(
                &s.max_header_bytes,
                "max_header_bytes",
                DEFAULT_MAX_HEADER_BYTES,
            )),
            max_inflight_body_bytes,
            max_inflight_body_bytes_per_client,
            min_body_bytes_per_sec: self.non_negative_or(
                &s.min_body_bytes_per_sec,
                "min_body_bytes_per_sec",
                DEFAULT_MIN_BODY_BYTES_PER_SEC,
            ),
        };
        let tls_listen = self.tls_listen(s, &listen, admin_listen);
        let state = self.state(s);
        let spool = self.spool(spool, &state);
        ok &= tls_listen.is_some();
        ok.then(|| ServerSettings {
            listen,
            threads: usize::try_from(threads).unwrap_or(1),
            watch_config: s.watch_config.unwrap_or(true),
            admin_listen,
            access_log,
            shutdown_grace: Duration::from_secs(grace),
            front,
            tls_listen: tls_listen.unwrap_or_default(),
            state,
            spool,
        })
    }

    /// The addresses of a `listen`-like key (one or a list of `IP:PORT`), and
    /// whether all of them were valid.
    pub(super) fn addresses(
        &mut self,
        list: &Spanned<OneOrMany<String>>,
        key: &str,
    ) -> (Vec<SocketAddr>, bool) {
        let mut addresses = Vec::new();
        let mut ok = true;
        if list.get_ref().0.is_empty() {
            self.error(span(list), format!("`{key}` needs at least one address"));
            ok = false;
        }
        for text in &list.get_ref().0 {
            match text.parse::<SocketAddr>() {
                Ok(addr) if addresses.contains(&addr) => {
                    self.error(span(list), format!("`{key}` has `{text}` twice"));
                    ok = false;
                }
                Ok(addr) => addresses.push(addr),
                Err(_) => {
                    self.error(
                        span(list),
                        format!(
                            "invalid {key} address `{text}`; write IP:PORT, e.g. `127.0.0.1:8080`"
                        ),
                    );
                    ok = false;
                }
            }
        }
        (addresses, ok)
    }

    fn route(&mut self, r: &RouteSection) -> Option<Route> {
        let defaults = self.defaults;
        let before = self.mark();
        let name = r.name.get_ref();
        if name.is_empty()
            || !name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
        {
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
        let upstream = self.upstream(&r.upstream, r.upstream_ca_file.as_ref(), upstream_timeout);
        let verify = &r.verify.get_ref().0;
        if verify.is_empty() {
            self.error(
                span(&r.verify),
                format!("route `{name}` needs at least one verifier"),
            );
        }
        let verifiers: Vec<Verifier> = verify.iter().filter_map(|v| self.verifier(v)).collect();
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
        let delivery = self.delivery(r);
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
        Some(Route {
            name: name.clone(),
            host,
            path: path?,
            methods,
            upstream: upstream?,
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

    /// A digest of a route: everything it does, its secrets included. What
    /// routes share (an upstream's connection target, a named scheme) is
    /// digested once per load.
    fn fingerprint(&mut self, route: &Route, policy_secrets: [u8; 32]) -> [u8; 32] {
        // Every field, so that a new one cannot be left out unnoticed.
        let Route {
            name,
            host,
            path,
            methods,
            upstream,
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

    fn path_rule(&mut self, r: &RouteSection) -> Option<PathMatch> {
        let (text, rule): (&Spanned<String>, fn(String) -> PathMatch) =
            match (&r.path, &r.path_prefix) {
                (Some(p), None) => (p, PathMatch::Exact),
                (None, Some(p)) => (p, PathMatch::Prefix),
                (Some(_), Some(p)) => {
                    self.error(span(p), "set either `path` or `path_prefix`, not both");
                    return None;
                }
                (None, None) => {
                    self.error(
                        span(&r.name),
                        format!("route `{}` needs `path` or `path_prefix`", r.name.get_ref()),
                    );
                    return None;
                }
            };
        let value = text.get_ref();
        if !value.starts_with('/')
            || value.contains(['?', '#'])
            || value.contains(char::is_whitespace)
        {
            self.error(
                span(text),
                format!("path `{value}` must start with `/` and have no query, fragment or spaces"),
            );
            return None;
        }
        Some(rule(value.clone()))
    }

    fn host(&mut self, h: &Spanned<String>) -> Option<String> {
        let host = h.get_ref().trim().to_ascii_lowercase();
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            self.error(span(h), format!("invalid host `{}`", h.get_ref()));
            return None;
        }
        Some(host)
    }

    /// The route's methods: as listed, or POST plus the methods of its handshakes
    /// (GET for Meta's and Dropbox's).
    fn methods(
        &mut self,
        r: &RouteSection,
        verifiers: &[Verifier],
        handshakes: &[Handshake],
    ) -> Vec<Method> {
        let Some(list) = &r.methods else {
            let mut methods = vec![Method::POST];
            let extra = verifiers
                .iter()
                .flat_map(|v| v.scheme().handshake_methods())
                .chain(handshakes.iter().filter_map(|h| h.method.as_ref()));
            for method in extra {
                if !methods.contains(method) {
                    methods.push(method.clone());
                }
            }
            return methods;
        };
        if list.get_ref().is_empty() {
            self.error(span(list), "`methods` needs at least one method");
        }
        let mut methods = Vec::new();
        for m in list.get_ref() {
            match Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()) {
                Ok(method) if method == Method::CONNECT => {
                    self.error(span(m), "CONNECT cannot be routed");
                }
                Ok(method) if !methods.contains(&method) => methods.push(method),
                Ok(_) => {}
                Err(_) => self.error(span(m), format!("invalid method `{}`", m.get_ref())),
            }
        }
        methods
    }

    fn upstream(
        &mut self,
        text: &Spanned<String>,
        ca_file: Option<&Spanned<String>>,
        timeout: Duration,
    ) -> Option<Upstream> {
        let raw = text.get_ref();
        let uri: Uri = match raw.parse() {
            Ok(uri) => uri,
            Err(e) => {
                self.error(span(text), format!("invalid upstream URL `{raw}`: {e}"));
                return None;
            }
        };
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                self.error(
                    span(text),
                    format!("upstream URL `{raw}` must start with http:// or https://"),
                );
                return None;
            }
        };
        let Some(authority) = uri.authority() else {
            self.error(span(text), format!("upstream URL `{raw}` has no host"));
            return None;
        };
        if authority.as_str().contains('@') {
            self.error(
                span(text),
                format!("upstream URL `{raw}` must not contain credentials"),
            );
            return None;
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addr = match cached(&mut self.addresses, host.as_str(), resolve) {
            Ok(mut addr) => {
                addr.set_port(port);
                addr
            }
            Err(message) => {
                self.error(span(text), message);
                return None;
            }
        };
        // `http::Uri` reports path "/" for "http://host" too; only a written path rewrites.
        let after_authority = raw.split_once("://").map_or("", |(_, rest)| rest);
        let written_path = after_authority
            .find(['/', '?'])
            .is_some_and(|i| after_authority[i..].starts_with('/'));
        let path = uri
            .path_and_query()
            .filter(|_| written_path)
            .map(|pq| pq.path().to_owned());
        let query = uri.query().filter(|q| !q.is_empty()).map(str::to_owned);
        let ca = match ca_file {
            None => None,
            Some(file) if !tls => {
                self.error(span(file), "`upstream_ca_file` needs an https:// upstream");
                return None;
            }
            Some(file) => {
                let path = self.base_dir.join(file.get_ref());
                self.files.insert(path.clone());
                match cached(&mut self.ca_files, path.as_path(), read_ca_file) {
                    Ok(ca) => Some((path, ca)),
                    Err(message) => {
                        self.error(span(file), message);
                        return None;
                    }
                }
            }
        };
        let (ca_path, ca) = ca.unzip();
        let peer = self
            .peers
            .entry((addr, tls, host.clone(), timeout, ca_path))
            .or_insert_with(|| forward::peer(addr, tls, &host, timeout, ca.as_ref()));
        Some(Upstream {
            pool_key: forward::pool::key(peer, ca.as_ref().map(TrustedCas::digest)),
            peer: Arc::clone(peer),
            addr,
            tls,
            authority: authority.as_str().into(),
            path: path.map(Into::into),
            query: query.map(Into::into),
            url: raw.as_str().into(),
        })
    }

    fn public_url(&mut self, text: &Spanned<String>) -> Option<String> {
        let raw = text.get_ref();
        match raw.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                Some(raw.clone())
            }
            _ => {
                self.error(
                    span(text),
                    format!("public_url `{raw}` must be an absolute http(s) URL"),
                );
                None
            }
        }
    }

    fn check_name(&mut self, r: &RouteSection, name: &Arc<str>) {
        if !self.names.insert(Arc::clone(name)) {
            self.error(span(&r.name), format!("duplicate route name `{name}`"));
        }
    }

    /// Reports `r` if it overlaps a route before it (see [`Overlaps::add`]).
    fn check_overlap(&mut self, r: &RouteSection, name: &Arc<str>) {
        let Some((earlier, method)) = self.overlaps.add(r, name) else {
            return;
        };
        let message = format!(
            "route `{name}` overlaps route `{earlier}`: same host, path and method {method}"
        );
        let at = r
            .path
            .as_ref()
            .or(r.path_prefix.as_ref())
            .map(Spanned::span);
        self.error(at, message);
    }
}
