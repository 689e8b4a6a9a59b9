//! Routes and their matching. A [`Route`] is everything one route does, built
//! at config load. Matching: host first, then exact path, then longest path prefix, then
//! method. Exact paths are found by hash; prefixes by looking up the request
//! path's segment boundaries, longest first. A lookup costs the same with one
//! route as with a hundred thousand. Matching is pure: no pingora types, no I/O.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};

use crate::base::secret::Secret;
use crate::base::settings::RetryPolicy;
use crate::destinations::Filter;
use crate::forward::Upstream;
use crate::policy::Policy;
use crate::scheme::handshake::Handshake;
use crate::verify::Verifier;

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// `path`: the whole path.
    Exact(String),
    /// `path_prefix`: a leading part of the path, on a segment boundary.
    Prefix(String),
}

/// One route.
#[derive(Debug)]
pub struct Route {
    /// Unique name; sent upstream as `x-webhook-route`.
    pub name: String,
    /// Lower-case host to match, without port unless written with one.
    pub host: Option<String>,
    /// Path rule.
    pub path: PathMatch,
    /// Allowed methods.
    pub methods: Arc<[Method]>,
    /// Forwarding target: its one destination's upstream.
    pub upstream: Upstream,
    /// Its one destination's name: the route's, for the short form
    /// (`upstream` on the route).
    pub destination: String,
    /// Which verified events its destination wants; `None`: every one.
    pub filter: Option<Box<Filter>>,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Deadline for the whole request body.
    pub read_timeout: Duration,
    /// Deadline for the upstream's response header, and for each body read.
    pub upstream_timeout: Duration,
    /// The verifiers; any one passing admits a request.
    pub verifiers: Vec<Verifier>,
    /// Headers removed before forwarding (`strip_signature_headers`).
    pub strip_headers: Vec<HeaderName>,
    /// The URL providers call, for schemes that sign it.
    pub public_url: Option<String>,
    /// The token subscription handshakes must carry.
    pub verify_token: Option<Secret>,
    /// The route's own handshake rules (besides its schemes').
    pub handshakes: Vec<Handshake>,
    /// The top-level JSON body members its schemes and handshakes read.
    pub json_members: Arc<[String]>,
    /// Per verifier, its secrets as they may be shown (`env:`/`file:` references,
    /// literals redacted).
    pub secret_sources: Arc<[Vec<String>]>,
    /// What the route asks besides the signature and does for the app; `None`
    /// when it sets nothing of it.
    pub policy: Option<Box<Policy>>,
    /// `delivery = "async"`: how it delivers; `None` for a sync route.
    pub delivery: Option<Box<RetryPolicy>>,
    /// A digest of everything the route does, secrets included, to tell which
    /// routes a reload changed. Never shown.
    pub fingerprint: [u8; 32],
}

impl Route {
    /// The upstream path for a request whose path matched with `remainder` left over,
    /// and its query string.
    pub fn upstream_path_and_query(
        &self,
        request_path: &str,
        remainder: &str,
        query: Option<&str>,
    ) -> String {
        let mut out = match &self.upstream.path {
            Some(base) => crate::verify::request::join_path(base, remainder),
            None => request_path.to_owned(),
        };
        let queries: Vec<&str> = [self.upstream.query.as_deref(), query]
            .into_iter()
            .flatten()
            .collect();
        if !queries.is_empty() {
            out.push('?');
            out.push_str(&queries.join("&"));
        }
        out
    }
}

/// The outcome of matching one request.
#[derive(Debug)]
pub enum Match<'t, 'p> {
    /// A route accepts the request; `remainder` is the path after a matched prefix.
    Found {
        /// The route (borrowed from the table).
        route: &'t Arc<Route>,
        /// What follows the prefix (empty for exact routes; borrowed from the path).
        remainder: &'p str,
    },
    /// No route has this host and path.
    NoRoute,
    /// Routes have this path, but none allows the method; these are the allowed ones.
    MethodNotAllowed(Vec<Method>),
}

/// Routes sharing one (host, path rule), differing only by method, in config order.
#[derive(Debug)]
struct Group {
    /// The config position of its first route: of two groups that match a
    /// request equally well (hosts `a.example` and `a.example:8080`), the one
    /// written first wins.
    first: usize,
    routes: Vec<Arc<Route>>,
}

impl Group {
    /// The group's first route allowing `method`, else 405 with every method it allows.
    fn decide<'t, 'p>(&'t self, method: &Method, remainder: &'p str) -> Match<'t, 'p> {
        match self.routes.iter().find(|r| r.methods.contains(method)) {
            Some(route) => Match::Found { route, remainder },
            None => Match::MethodNotAllowed(
                self.routes
                    .iter()
                    .flat_map(|r| r.methods.iter().cloned())
                    .collect(),
            ),
        }
    }
}

/// The path rules of one host, or of the host-less routes.
#[derive(Debug, Default)]
struct Paths {
    exact: HashMap<String, Group>,
    prefixes: HashMap<String, Group>,
    /// `prefix_lengths[n]`: some prefix is `n` bytes long. Only those lengths are
    /// looked up, so a long request path costs no more than the longest prefix.
    prefix_lengths: Vec<bool>,
}

impl Paths {
    fn insert(&mut self, index: usize, route: &Arc<Route>) {
        let (groups, path) = match &route.path {
            PathMatch::Exact(path) => (&mut self.exact, path),
            PathMatch::Prefix(path) => {
                if self.prefix_lengths.len() <= path.len() {
                    self.prefix_lengths.resize(path.len() + 1, false);
                }
                self.prefix_lengths[path.len()] = true;
                (&mut self.prefixes, path)
            }
        };
        groups
            .entry(path.clone())
            .or_insert_with(|| Group {
                first: index,
                routes: Vec::new(),
            })
            .routes
            .push(Arc::clone(route));
    }

    /// The prefix group of exactly `prefix`, if one has that length.
    fn prefix(&self, prefix: &str) -> Option<&Group> {
        if self.prefix_lengths.get(prefix.len()) == Some(&true) {
            self.prefixes.get(prefix)
        } else {
            None
        }
    }
}

/// All routes of a config, indexed for matching.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Every route, in config order.
    routes: Vec<Arc<Route>>,
    /// Routes with a `host`, by that host (lower case; with a port only when
    /// the route's host has one).
    hosts: HashMap<String, Paths>,
    /// Routes without a `host`.
    any_host: Paths,
}

impl RouteTable {
    /// Indexes `routes`. Validation has already refused overlapping routes.
    pub fn new(routes: Vec<Route>) -> Self {
        Self::from_shared(routes.into_iter().map(Arc::new).collect())
    }

    /// Indexes routes already behind an `Arc` (a config being built keeps them
    /// so, rather than moving each once more).
    pub fn from_shared(routes: Vec<Arc<Route>>) -> Self {
        // Sized up front, not grown (and rehashed) route by route.
        let hosted = routes.iter().filter(|r| r.host.is_some()).count();
        let exact = routes
            .iter()
            .filter(|r| r.host.is_none() && matches!(r.path, PathMatch::Exact(_)))
            .count();
        let mut table = Self {
            hosts: HashMap::with_capacity(hosted),
            any_host: Paths {
                exact: HashMap::with_capacity(exact),
                prefixes: HashMap::with_capacity(routes.len() - hosted - exact),
                prefix_lengths: Vec::new(),
            },
            routes: Vec::new(),
        };
        for (index, route) in routes.iter().enumerate() {
            let paths = match &route.host {
                Some(host) => table.hosts.entry(host.clone()).or_default(),
                None => &mut table.any_host,
            };
            paths.insert(index, route);
        }
        // Many routes may share a host.
        table.hosts.shrink_to_fit();
        table.routes = routes;
        table
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every route, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }

    /// Finds the route for a request. `host` is the `Host` header as sent.
    pub fn find<'t, 'p>(
        &'t self,
        host: Option<&str>,
        path: &'p str,
        method: &Method,
    ) -> Match<'t, 'p> {
        let hosted = host.and_then(|host| {
            let host = lower_case(host.trim());
            let without_port = strip_port(&host);
            let tables = [
                self.hosts.get(host.as_ref()),
                (without_port != host)
                    .then(|| self.hosts.get(without_port))
                    .flatten(),
            ];
            find_path(&tables, path)
        });
        match hosted.or_else(|| find_path(&[Some(&self.any_host)], path)) {
            Some((group, remainder)) => group.decide(method, remainder),
            None => Match::NoRoute,
        }
    }
}

/// The best group for `path` in any of `tables`, and what follows its prefix:
/// an exact path, else the longest prefix, else nothing; on a tie between
/// tables, the group written first.
fn find_path<'t, 'p>(tables: &[Option<&'t Paths>], path: &'p str) -> Option<(&'t Group, &'p str)> {
    let tables = || tables.iter().flatten();
    if let Some(group) = tables()
        .filter_map(|t| t.exact.get(path))
        .min_by_key(|g| g.first)
    {
        return Some((group, ""));
    }
    let longest = tables().map(|t| t.prefix_lengths.len()).max()?;
    (1..longest.min(path.len() + 1))
        .rev()
        .filter(|&end| on_segment_boundary(path, end))
        .find_map(|end| {
            let group = tables()
                .filter_map(|t| t.prefix(&path[..end]))
                .min_by_key(|g| g.first)?;
            Some((group, &path[end..]))
        })
}

/// Whether a prefix `end` bytes long matches `path` on a segment boundary: it
/// ends with `/`, or the path ends or has a `/` right after it.
fn on_segment_boundary(path: &str, end: usize) -> bool {
    let bytes = path.as_bytes();
    end == bytes.len() || bytes[end] == b'/' || bytes[end - 1] == b'/'
}

/// `host` in lower case, copied only when it has an upper-case letter.
fn lower_case(host: &str) -> Cow<'_, str> {
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Whether `path` has a `.` or `..` segment (also percent-encoded). No provider
/// sends one, and forwarding one could escape the upstream's path prefix.
/// Segments end at `/`, and also at `\` and an encoded `/` or `\` (`%2F`,
/// `%5C`), which some servers decode or read as `/` before they resolve dot
/// segments: `/hooks/..%2Fadmin` is `/admin` to them.
pub fn has_dot_segment(path: &str) -> bool {
    let mut rest = path.as_bytes();
    // Dots in the segment so far, written `.` or `%2e` (any case); `None` once
    // it holds anything else.
    let mut dots = Some(0u8);
    loop {
        let at_end = rest.is_empty();
        let separator = match rest {
            [] => true,
            [b'/' | b'\\', after @ ..]
            | [b'%', b'2', b'f' | b'F', after @ ..]
            | [b'%', b'5', b'c' | b'C', after @ ..] => {
                rest = after;
                true
            }
            [b'.', after @ ..] | [b'%', b'2', b'e' | b'E', after @ ..] => {
                rest = after;
                dots = dots.map(|d| d.saturating_add(1));
                false
            }
            [_, after @ ..] => {
                rest = after;
                dots = None;
                false
            }
        };
        if separator {
            if matches!(dots, Some(1 | 2)) {
                return true;
            }
            if at_end {
                return false;
            }
            dots = Some(0);
        }
    }
}

#[cfg(test)]
mod tests;
