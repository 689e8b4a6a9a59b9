//! What a route matches, as written: its `path` or `path_prefix`, `host`,
//! `methods` and `public_url`, and the check that no two routes overlap (same
//! host, path rule and a method in common).

use std::sync::Arc;

use http::{Method, Uri};
use toml::Spanned;

use super::build::{Builder, MethodKey, Overlaps, span};
use super::file::RouteSection;
use crate::routes::PathMatch;
use crate::scheme::handshake::Handshake;
use crate::verify::Verifier;

impl Overlaps {
    /// Records `r`, called `name`, and returns the first route before it that
    /// one request could match too (same host, same path rule, a method in
    /// common), with the first of `r`'s methods that route has.
    pub(super) fn add(&mut self, r: &RouteSection, name: &Arc<str>) -> Option<(Arc<str>, String)> {
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

impl Builder<'_> {
    pub(super) fn path_rule(&mut self, r: &RouteSection) -> Option<PathMatch> {
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

    pub(super) fn host(&mut self, h: &Spanned<String>) -> Option<String> {
        let host = h.get_ref().trim().to_ascii_lowercase();
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            self.error(span(h), format!("invalid host `{}`", h.get_ref()));
            return None;
        }
        Some(host)
    }

    /// The route's methods: as listed, or POST plus the methods of its handshakes
    /// (GET for Meta's and Dropbox's).
    pub(super) fn methods(
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

    pub(super) fn public_url(&mut self, text: &Spanned<String>) -> Option<String> {
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

    /// Reports `r` if it overlaps a route before it (see [`Overlaps::add`]).
    pub(super) fn check_overlap(&mut self, r: &RouteSection, name: &Arc<str>) {
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
