//! `SignedRequest`: the borrowed view of a delivery that verifiers and handshakes
//! read: method, path, query, headers, raw body, and lazily parsed JSON, form
//! fields and full URL.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};

use http::HeaderMap;

use crate::json::JsonBody;
use crate::scheme::signature::Received;
use crate::scheme::source::Source;

/// How to rebuild the full URL a provider called, for schemes that sign it.
#[derive(Debug, Clone, Copy)]
pub struct UrlParts<'a> {
    /// The route's `public_url`, standing for the matched path.
    pub public_url: Option<&'a str>,
    /// What follows the matched prefix (empty for exact routes).
    pub remainder: &'a str,
    /// The `Host` the client sent.
    pub host: &'a str,
}

/// Joins a base path and a remainder with exactly one `/` between them.
pub fn join_path(base: &str, remainder: &str) -> String {
    let remainder = remainder.trim_start_matches('/');
    if remainder.is_empty() {
        return base.to_owned();
    }
    format!("{}/{remainder}", base.trim_end_matches('/'))
}

/// The URL with its port removed, and with the scheme's default port added:
/// what Twilio's validators also accept.
pub fn port_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host_end = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |i| i + 1)
    } else {
        authority.rfind(':').unwrap_or(authority.len())
    };
    let (host, port) = authority.split_at(host_end);
    let other = if port.is_empty() {
        let default = if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        format!("{scheme}://{host}:{default}{tail}")
    } else {
        format!("{scheme}://{host}{tail}")
    };
    variants.push(other);
    variants
}

/// A delivery as verifiers see it. Everything is borrowed from the session.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    /// The request method.
    pub method: &'a str,
    /// The request path, as received.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The raw body, exactly as received.
    pub body: &'a [u8],
    json: JsonBody<'a>,
    form: OnceCell<Vec<(String, String)>>,
    url_parts: UrlParts<'a>,
    url: OnceCell<String>,
}

impl<'a> SignedRequest<'a> {
    /// Wraps one delivery.
    pub fn new(
        method: &'a str,
        path_and_query: (&'a str, Option<&'a str>),
        headers: &'a HeaderMap,
        body: &'a [u8],
        url_parts: UrlParts<'a>,
    ) -> Self {
        let (path, query) = path_and_query;
        Self {
            method,
            path,
            query,
            headers,
            body,
            json: JsonBody::new(body),
            form: OnceCell::new(),
            url_parts,
            url: OnceCell::new(),
        }
    }

    /// Parses only these top-level JSON members unless another is asked for.
    pub fn with_json_members(mut self, members: &'a [String]) -> Self {
        self.json = JsonBody::with_wanted(self.body, members);
        self
    }

    /// The body as JSON (parsed on first use).
    pub fn json(&self) -> &JsonBody<'a> {
        &self.json
    }

    /// The full URL the provider called (built on first use).
    pub fn url(&self) -> &str {
        self.url.get_or_init(|| {
            let parts = &self.url_parts;
            let mut url = match parts.public_url {
                Some(base) => join_path(base, parts.remainder),
                None => format!("http://{}{}", parts.host, self.path),
            };
            if let Some(q) = self.query {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(q);
            }
            url
        })
    }

    /// Whether the body is `application/x-www-form-urlencoded`.
    pub fn is_form(&self) -> bool {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                mime.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
    }

    /// The decoded form fields of a form body (empty for any other body).
    pub fn form(&self) -> &[(String, String)] {
        self.form.get_or_init(|| {
            if !self.is_form() {
                return Vec::new();
            }
            form_urlencoded::parse(self.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
    }

    /// Twilio's rule: each form field name followed by its value, names sorted,
    /// a repeated name's distinct values sorted; empty for a body that is not a form.
    pub fn form_params(&self) -> Vec<u8> {
        let mut sorted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (k, v) in self.form() {
            sorted.entry(k).or_default().insert(v);
        }
        let mut out = Vec::new();
        for (name, values) in sorted {
            for value in values {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(value.as_bytes());
            }
        }
        out
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The value at `source`. `received` supplies `signature:K` fields.
    pub fn field(&self, source: &Source, received: Option<&Received>) -> Option<Cow<'a, str>> {
        match source {
            Source::Header(name) => self
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(Cow::Borrowed),
            Source::Json(pointer) => self.json.text_at(pointer),
            Source::Query(name) => self.query_param(name).map(Cow::Owned),
            Source::Form(name) => self
                .form()
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| Cow::Owned(v.clone())),
            Source::Signature(key) => received?.field(key).map(|v| Cow::Owned(v.to_owned())),
        }
    }

    /// The value of the first source in `sources` that has one.
    pub fn first_field(
        &self,
        sources: &[Source],
        received: Option<&Received>,
    ) -> Option<Cow<'a, str>> {
        sources.iter().find_map(|s| self.field(s, received))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(
        headers: &'a HeaderMap,
        body: &'a [u8],
        public: Option<&'a str>,
        remainder: &'a str,
        query: Option<&'a str>,
    ) -> SignedRequest<'a> {
        let url = UrlParts {
            public_url: public,
            remainder,
            host: "gw.local:8080",
        };
        SignedRequest::new("POST", ("/hooks/a", query), headers, body, url)
    }

    #[test]
    fn url_is_rebuilt_from_host_or_public_url() {
        let h = HeaderMap::new();
        assert_eq!(
            req(&h, b"", None, "", None).url(),
            "http://gw.local:8080/hooks/a"
        );
        assert_eq!(
            req(&h, b"", None, "", Some("x=1")).url(),
            "http://gw.local:8080/hooks/a?x=1"
        );
        let public = Some("https://example.com/in");
        assert_eq!(
            req(&h, b"", public, "", Some("x=1")).url(),
            "https://example.com/in?x=1"
        );
        assert_eq!(
            req(&h, b"", public, "/a", None).url(),
            "https://example.com/in/a"
        );
        assert_eq!(
            req(&h, b"", Some("https://e.com/in?k=v"), "", Some("x=1")).url(),
            "https://e.com/in?k=v&x=1"
        );
    }

    #[test]
    fn join_path_uses_one_slash() {
        assert_eq!(join_path("/internal/", "/a/b"), "/internal/a/b");
        assert_eq!(join_path("/internal", "a"), "/internal/a");
        assert_eq!(join_path("/internal", ""), "/internal");
        assert_eq!(join_path("/", "/a"), "/a");
    }

    #[test]
    fn port_variants_add_or_remove_the_port() {
        assert_eq!(
            port_variants("https://mycompany.com/myapp.php?foo=1"),
            [
                "https://mycompany.com/myapp.php?foo=1",
                "https://mycompany.com:443/myapp.php?foo=1"
            ]
        );
        assert_eq!(
            port_variants("http://mycompany.com:1234/x"),
            ["http://mycompany.com:1234/x", "http://mycompany.com/x"]
        );
        assert_eq!(port_variants("http://[::1]:8/x")[1], "http://[::1]/x");
        assert_eq!(port_variants("http://h?a=1:2")[1], "http://h:80?a=1:2");
        assert_eq!(port_variants("not a url"), ["not a url"]);
    }

    #[test]
    fn form_params_follow_twilios_rule() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        let body = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234&From=%2B1415";
        let r = req(&h, body, None, "", None);
        assert_eq!(
            r.form_params(),
            b"Digits1234Digits5678From+1415SidCA123SidAccountAC123"
        );
        assert_eq!(
            r.field(&Source::Form("From".into()), None).as_deref(),
            Some("+1415")
        );
        let json = HeaderMap::new();
        assert!(
            req(&json, body, None, "", None).form_params().is_empty(),
            "not a form body"
        );
    }

    #[test]
    fn query_params_are_decoded() {
        let h = HeaderMap::new();
        let r = req(
            &h,
            b"",
            None,
            "",
            Some("validationToken=Validation%3A+Testing&hub.mode=subscribe"),
        );
        assert_eq!(
            r.query_param("validationToken").as_deref(),
            Some("Validation: Testing")
        );
        assert_eq!(
            r.field(&Source::Query("hub.mode".into()), None).as_deref(),
            Some("subscribe")
        );
        assert_eq!(r.query_param("missing"), None);
    }
}
