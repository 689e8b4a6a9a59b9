//! `SignedRequest`: the borrowed view of a delivery that verifiers and handshakes
//! read — method, headers, raw body, lazily parsed JSON and lazily built URL.

use std::cell::OnceCell;

use http::HeaderMap;

use crate::json::JsonBody;
use crate::verify::scheme::FieldSource;

/// How to rebuild the full URL a provider called, for schemes that sign it.
#[derive(Debug, Clone, Copy)]
pub struct UrlParts<'a> {
    /// The route's `public_url`, standing for the matched path.
    pub public_url: Option<&'a str>,
    /// What follows the matched prefix (empty for exact routes).
    pub remainder: &'a str,
    /// The `Host` the client sent.
    pub host: &'a str,
    /// The request path as received.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
}

impl UrlParts<'_> {
    fn build(&self) -> String {
        let mut url = match self.public_url {
            Some(base) => join_path(base, self.remainder),
            None => format!("http://{}{}", self.host, self.path),
        };
        if let Some(q) = self.query {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(q);
        }
        url
    }
}

/// Joins a base path and a remainder with exactly one `/` between them.
pub fn join_path(base: &str, remainder: &str) -> String {
    let remainder = remainder.trim_start_matches('/');
    if remainder.is_empty() {
        return base.to_owned();
    }
    format!("{}/{remainder}", base.trim_end_matches('/'))
}

/// A delivery as verifiers see it. Everything is borrowed from the session.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    /// The request method.
    pub method: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The raw body, exactly as received.
    pub body: &'a [u8],
    json: JsonBody<'a>,
    url_parts: UrlParts<'a>,
    url: OnceCell<String>,
}

impl<'a> SignedRequest<'a> {
    /// Wraps one delivery.
    pub fn new(
        method: &'a str,
        headers: &'a HeaderMap,
        body: &'a [u8],
        url_parts: UrlParts<'a>,
    ) -> Self {
        Self {
            method,
            headers,
            body,
            json: JsonBody::new(body),
            url_parts,
            url: OnceCell::new(),
        }
    }

    /// The body as JSON (parsed on first use).
    pub fn json(&self) -> &JsonBody<'a> {
        &self.json
    }

    /// The full URL the provider called (built on first use).
    pub fn url(&self) -> &str {
        self.url.get_or_init(|| self.url_parts.build())
    }

    /// The first value of a header, when it is valid text.
    pub fn header(&self, name: &http::HeaderName) -> Option<&'a str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads a field as text from the first source that has it.
    pub fn field(&self, sources: &[FieldSource]) -> Option<String> {
        sources.iter().find_map(|source| match source {
            FieldSource::Header(name) => self.header(name).map(str::to_owned),
            FieldSource::Json(pointer) => self.json.text_at(pointer),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(
        public_url: Option<&'a str>,
        remainder: &'a str,
        query: Option<&'a str>,
    ) -> UrlParts<'a> {
        UrlParts {
            public_url,
            remainder,
            host: "gw.local:8080",
            path: "/hooks/a",
            query,
        }
    }

    #[test]
    fn url_is_rebuilt_from_host_or_public_url() {
        assert_eq!(
            parts(None, "", None).build(),
            "http://gw.local:8080/hooks/a"
        );
        assert_eq!(
            parts(None, "", Some("x=1")).build(),
            "http://gw.local:8080/hooks/a?x=1"
        );
        let public = Some("https://example.com/in");
        assert_eq!(
            parts(public, "", Some("x=1")).build(),
            "https://example.com/in?x=1"
        );
        assert_eq!(
            parts(public, "/a", None).build(),
            "https://example.com/in/a"
        );
        assert_eq!(
            parts(Some("https://e.com/in?k=v"), "", Some("x=1")).build(),
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
}
