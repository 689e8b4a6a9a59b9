//! Route matching: host first, then exact path, then longest path prefix, then
//! method. Pure: no pingora types, no I/O.

use std::sync::Arc;

use http::Method;

use crate::runtime::{PathMatch, Route};

/// The outcome of matching one request.
#[derive(Debug)]
pub enum Match<'a> {
    /// A route accepts the request; `remainder` is the path after a matched prefix.
    Found {
        /// The route.
        route: &'a Arc<Route>,
        /// What follows the prefix (empty for exact routes).
        remainder: &'a str,
    },
    /// No route has this host and path.
    NoRoute,
    /// Routes have this path, but none allows the method; these are the allowed ones.
    MethodNotAllowed(Vec<Method>),
}

/// Routes sharing one (host, path rule), differing only by method.
#[derive(Debug)]
struct Group {
    host: Option<String>,
    path: PathMatch,
    routes: Vec<Arc<Route>>,
}

/// All routes of a config, ordered for matching.
#[derive(Debug, Default)]
pub struct RouteTable {
    groups: Vec<Group>,
    len: usize,
}

impl RouteTable {
    /// Indexes `routes`. Validation has already refused overlapping routes.
    pub fn new(routes: Vec<Route>) -> Self {
        let len = routes.len();
        let mut groups: Vec<Group> = Vec::new();
        for route in routes {
            let route = Arc::new(route);
            match groups
                .iter_mut()
                .find(|g| g.host == route.host && g.path == route.path)
            {
                Some(group) => group.routes.push(route),
                None => groups.push(Group {
                    host: route.host.clone(),
                    path: route.path.clone(),
                    routes: vec![route],
                }),
            }
        }
        // Host-specific before host-less; within each, exact before prefix, longer prefix first.
        groups.sort_by_key(|g| {
            let path_rank = match &g.path {
                PathMatch::Exact(_) => usize::MAX,
                PathMatch::Prefix(p) => p.len(),
            };
            (g.host.is_none(), std::cmp::Reverse(path_rank))
        });
        Self { groups, len }
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every route, in matching order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.groups.iter().flat_map(|g| g.routes.iter())
    }

    /// Finds the route for a request. `host` is the `Host` header as sent.
    pub fn find<'a>(&'a self, host: Option<&str>, path: &'a str, method: &Method) -> Match<'a> {
        let host = host.map(|h| h.trim().to_ascii_lowercase());
        for group in &self.groups {
            if !host_matches(group.host.as_deref(), host.as_deref()) {
                continue;
            }
            let Some(remainder) = path_matches(&group.path, path) else {
                continue;
            };
            return match group.routes.iter().find(|r| r.methods.contains(method)) {
                Some(route) => Match::Found { route, remainder },
                None => Match::MethodNotAllowed(
                    group
                        .routes
                        .iter()
                        .flat_map(|r| r.methods.iter().cloned())
                        .collect(),
                ),
            };
        }
        Match::NoRoute
    }
}

fn host_matches(route_host: Option<&str>, request_host: Option<&str>) -> bool {
    let Some(want) = route_host else {
        return true;
    };
    let Some(got) = request_host else {
        return false;
    };
    got == want || strip_port(got) == want
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// The remainder after the rule, or `None` when the path does not match.
fn path_matches<'p>(rule: &PathMatch, path: &'p str) -> Option<&'p str> {
    match rule {
        PathMatch::Exact(p) => (p == path).then_some(""),
        PathMatch::Prefix(p) => {
            let rest = path.strip_prefix(p.as_str())?;
            (p.ends_with('/') || rest.is_empty() || rest.starts_with('/')).then_some(rest)
        }
    }
}

/// Whether `path` has a `.` or `..` segment (also percent-encoded). No provider
/// sends one, and forwarding one could escape the upstream's path prefix.
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

#[cfg(test)]
mod tests;
