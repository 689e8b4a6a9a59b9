//! Remote keys in a descriptor (`[schemes.NAME.keys]`): where a scheme's
//! verification keys are published (an X.509 certificate named by the request,
//! an issuer's JWKS, or a key endpoint answering for one `kid`), which hosts
//! may serve them, and the URLs' rules. Pure: the fetching lives in `crate::keys`.

use crate::scheme::source::Source;

/// The JSON members AWS SNS signs (`{aws_sns}` reads these).
pub const AWS_SNS_MEMBERS: &[&str] = &[
    "Message",
    "MessageId",
    "Subject",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
];

/// Longest key or confirmation URL accepted from a request.
const MAX_URL_LEN: usize = 2048;

/// Where a scheme's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PEM X.509 certificate at the URL the request names (AWS SNS
    /// `SigningCertURL`, PayPal `PAYPAL-CERT-URL`).
    Certificate {
        /// The request field holding the URL.
        url: Source,
        /// Text the URL's path must end with (`.pem` for SNS).
        path_suffix: Option<String>,
    },
    /// A JSON Web Key Set at a fixed URL (an OIDC issuer's `jwks_uri`); the
    /// signature is a JWT whose `kid` picks the key.
    Jwks {
        /// The JWKS URL; `{tenant}` is replaced by the route's `tenant`.
        url: String,
    },
    /// One JWK per `kid`, from an endpoint asked by a POST of the route's API
    /// credentials (Plaid's `/webhook_verification_key/get`); the signature is
    /// an ES256 JWT whose `kid` names the key.
    KeyEndpoint {
        /// The endpoint's URL (on one of the spec's `hosts`).
        url: String,
    },
}

impl std::fmt::Display for KeySource {
    /// The marker `hookgate schemes` shows: where the remote keys come from.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Certificate { url, .. } => write!(f, "remote keys: X.509 certificate at `{url}`"),
            Self::Jwks { url } => write!(f, "remote keys: JWKS at {url}"),
            Self::KeyEndpoint { url } => write!(f, "remote keys: a JWK per `kid` from {url}"),
        }
    }
}

/// A subscription the gateway confirms itself by fetching a URL from the
/// verified request (AWS SNS `SubscriptionConfirmation` → `SubscribeURL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// The field that marks the request.
    pub when: Source,
    /// Its value.
    pub equals: String,
    /// The field holding the URL to fetch (its host must be on the allowlist).
    pub url: Source,
}

/// `[schemes.NAME.keys]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// Where the keys are.
    pub source: KeySource,
    /// Hosts that may serve certificates and confirmation URLs.
    pub hosts: Vec<HostPattern>,
    /// Accepted `iss` claims of a JWT; `{tenant}` is replaced by the route's `tenant`.
    pub issuers: Vec<String>,
    /// A subscription confirmation the gateway performs itself.
    pub confirm: Option<Confirm>,
}

impl RemoteSpec {
    /// Every request field the spec reads.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        let url = match &self.source {
            KeySource::Certificate { url, .. } => Some(url),
            KeySource::Jwks { .. } | KeySource::KeyEndpoint { .. } => None,
        };
        let confirm = self.confirm.iter().flat_map(|c| [&c.when, &c.url]);
        url.into_iter().chain(confirm)
    }

    /// Whether a text (a URL or an issuer) needs the route's `tenant`.
    pub fn needs_tenant(&self) -> bool {
        let url = match &self.source {
            KeySource::Jwks { url } => url.contains(TENANT),
            KeySource::Certificate { .. } | KeySource::KeyEndpoint { .. } => false,
        };
        url || self.issuers.iter().any(|i| i.contains(TENANT))
    }
}

/// The placeholder a route's `tenant` fills in.
pub const TENANT: &str = "{tenant}";

/// A host allowed to serve keys: DNS labels where `*` stands for exactly one
/// label (`sns.*.amazonaws.com`), and an optional `:port` (443 when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    labels: Vec<String>,
    port: u16,
    text: String,
}

impl HostPattern {
    /// Parses `host[:port]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "host pattern `{text}` must be a DNS name (`*` for one label) with an optional :port"
            )
        };
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
            None => (text, 443),
        };
        let labels: Vec<String> = host.split('.').map(str::to_ascii_lowercase).collect();
        let valid = |l: &String| {
            l == "*"
                || (!l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        };
        if labels.iter().all(valid) && labels.iter().any(|l| l != "*") && port != 0 {
            Ok(Self {
                labels,
                port,
                text: text.to_owned(),
            })
        } else {
            Err(bad())
        }
    }

    /// Whether `host` (lower case) on `port` matches.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let labels: Vec<&str> = host.split('.').collect();
        port == self.port
            && labels.len() == self.labels.len()
            && labels
                .iter()
                .zip(&self.labels)
                .all(|(l, p)| !l.is_empty() && (p == "*" || p == l))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// An `https://` URL to fetch keys (or a confirmation) from, checked against
/// an allowlist. Userinfo, fragments, and anything but HTTPS are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpsUrl {
    /// Lower-case host (a DNS name or an IP literal without brackets).
    pub host: String,
    /// The port (443 unless written).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

impl HttpsUrl {
    /// Parses `text`; `None` unless it is a well-formed `https://` URL.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_URL_LEN || text.contains(['#', '\\']) {
            return None;
        }
        let uri: http::Uri = text.parse().ok()?;
        if uri.scheme_str() != Some("https") {
            return None;
        }
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        Some(Self {
            host,
            port: authority.port_u16().unwrap_or(443),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }

    /// Parses `text` and checks it against `hosts` and the path `suffix`.
    pub fn allowed(text: &str, hosts: &[HostPattern], suffix: Option<&str>) -> Option<Self> {
        let url = Self::parse(text)?;
        let path = url.path_and_query.split('?').next().unwrap_or_default();
        let host_ok = hosts.iter().any(|h| h.matches(&url.host, url.port));
        let path_ok = suffix.is_none_or(|s| path.ends_with(s) && !path.contains("/../"));
        (host_ok && path_ok).then_some(url)
    }

    /// The `Host` header value (the port only when it is not 443).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            443 => host,
            port => format!("{host}:{port}"),
        }
    }
}

impl std::fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "https://{}{}", self.authority(), self.path_and_query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sns() -> Vec<HostPattern> {
        vec![HostPattern::parse("sns.*.amazonaws.com").unwrap()]
    }

    #[test]
    fn host_patterns_match_one_label_per_star() {
        let p = &sns()[0];
        assert!(p.matches("sns.us-east-1.amazonaws.com", 443));
        assert!(!p.matches("sns.us-east-1.amazonaws.com", 8443));
        assert!(!p.matches("sns.a.b.amazonaws.com", 443));
        assert!(!p.matches("sns.amazonaws.com", 443));
        assert!(!p.matches("sns..amazonaws.com", 443));
        assert!(!p.matches("sns.x.amazonaws.com.evil.com", 443));
        let local = HostPattern::parse("localhost:8443").unwrap();
        assert!(local.matches("localhost", 8443));
        assert!(!local.matches("localhost", 443));
        for bad in ["", "*", "*.*", "a:b", "a:0", "exa mple.com", "a..b", "a/b"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_must_be_https_on_an_allowed_host() {
        let ok = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem";
        let url = HttpsUrl::allowed(ok, &sns(), Some(".pem")).unwrap();
        assert_eq!(url.host, "sns.us-east-1.amazonaws.com");
        assert_eq!(url.port, 443);
        assert_eq!(url.to_string(), ok);
        for bad in [
            "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
            "https://evil.com/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.pem.txt",
            "https://sns.us-east-1.amazonaws.com/x.pem#frag",
            "https://sns.us-east-1.amazonaws.com:444/x.pem",
            "https://sns.us-east-1.amazonaws.com/a/../x.pem",
            "ftp://sns.us-east-1.amazonaws.com/x.pem",
            "sns.us-east-1.amazonaws.com/x.pem",
            "",
        ] {
            assert!(
                HttpsUrl::allowed(bad, &sns(), Some(".pem")).is_none(),
                "{bad}"
            );
        }
        let subscribe = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=t";
        let url = HttpsUrl::allowed(subscribe, &sns(), None).unwrap();
        assert_eq!(url.path_and_query, "/?Action=ConfirmSubscription&Token=t");
        let long = format!("https://sns.x.amazonaws.com/{}.pem", "a".repeat(5000));
        assert!(HttpsUrl::allowed(&long, &sns(), Some(".pem")).is_none());
    }
}
