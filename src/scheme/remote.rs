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
/// label and `{aws-region}` (`{aws-cn-region}`) for one label shaped as an AWS
/// region of the `amazonaws.com` (`amazonaws.com.cn`) partitions
/// (`sns.{aws-region}.amazonaws.com`), and an optional `:port` (443 when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    labels: Vec<Label>,
    port: u16,
    text: String,
}

/// One label of a [`HostPattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Label {
    /// This label, lower case.
    Exact(String),
    /// `*`: any one label.
    Any,
    /// `{aws-region}`: a region of AWS's `aws` or `aws-us-gov` partitions.
    AwsRegion,
    /// `{aws-cn-region}`: a region of AWS's `aws-cn` partition.
    AwsChinaRegion,
}

/// The first part of an AWS region name in the partitions whose DNS suffix is
/// `amazonaws.com` (`aws`, `aws-us-gov`), as AWS's SDKs list them
/// (`partitions.json`, `regionRegex`).
const AWS_AREAS: &[&str] = &[
    "af", "ap", "ca", "eu", "il", "me", "mx", "sa", "us", "us-gov",
];
/// The middle part of every AWS region name.
const AWS_DIRECTIONS: &[&str] = &[
    "central",
    "east",
    "north",
    "northeast",
    "northwest",
    "south",
    "southeast",
    "southwest",
    "west",
];

/// Whether `label` is shaped as an AWS region name (`us-east-1`,
/// `ap-southeast-7`, `us-gov-west-1`; with `china`, `cn-north-1`): an area of
/// the partition, a compass direction and a number from 1 to 99. Real regions
/// pass and made-up names (`s3`, `probe-1`) do not, so a request cannot make
/// the gateway look up any name it likes under `amazonaws.com`.
fn aws_region(label: &str, china: bool) -> bool {
    let Some((rest, number)) = label.rsplit_once('-') else {
        return false;
    };
    let Some((area, direction)) = rest.rsplit_once('-') else {
        return false;
    };
    let area_ok = if china {
        area == "cn"
    } else {
        AWS_AREAS.contains(&area)
    };
    area_ok
        && AWS_DIRECTIONS.contains(&direction)
        && (1..=2).contains(&number.len())
        && !number.starts_with('0')
        && number.bytes().all(|b| b.is_ascii_digit())
}

impl Label {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "*" => Some(Self::Any),
            "{aws-region}" => Some(Self::AwsRegion),
            "{aws-cn-region}" => Some(Self::AwsChinaRegion),
            _ => (!text.is_empty()
                && text.len() <= 63
                && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .then(|| Self::Exact(text.to_ascii_lowercase())),
        }
    }

    fn matches(&self, label: &str) -> bool {
        !label.is_empty()
            && match self {
                Self::Exact(exact) => exact == label,
                Self::Any => true,
                Self::AwsRegion => aws_region(label, false),
                Self::AwsChinaRegion => aws_region(label, true),
            }
    }
}

impl HostPattern {
    /// Parses `host[:port]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "host pattern `{text}` must be a DNS name (`*` for one label, \
                 `{{aws-region}}` or `{{aws-cn-region}}` for an AWS region) with an optional :port"
            )
        };
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
            None => (text, 443),
        };
        let labels: Vec<Label> = host
            .split('.')
            .map(Label::parse)
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        if labels.iter().any(|l| matches!(l, Label::Exact(_))) && port != 0 {
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
            && labels.iter().zip(&self.labels).all(|(l, p)| p.matches(l))
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

    /// Parses `text` and checks it against `hosts` and the path `suffix`. A
    /// path with a dot segment (`.`, `..`), or with a dot, slash or backslash
    /// written percent-encoded (`%2e`, `%2f`, `%5c`), is refused: a server
    /// could read it as another path than the allowlist saw.
    pub fn allowed(text: &str, hosts: &[HostPattern], suffix: Option<&str>) -> Option<Self> {
        let url = Self::parse(text)?;
        let path = url.path();
        let host_ok = hosts.iter().any(|h| h.matches(&url.host, url.port));
        let path_ok = suffix.is_none_or(|s| path.ends_with(s)) && plain_path(path);
        (host_ok && path_ok).then_some(url)
    }

    /// [`Self::allowed`] for a certificate's URL, which has no query either:
    /// every distinct URL is a document to fetch, and a query would let a
    /// request make up as many as it likes.
    pub fn certificate(text: &str, hosts: &[HostPattern], suffix: Option<&str>) -> Option<Self> {
        Self::allowed(text, hosts, suffix).filter(|url| !url.path_and_query.contains('?'))
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path)
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

/// Whether a URL's path has no dot segment and no dot, slash or backslash
/// written percent-encoded.
fn plain_path(path: &str) -> bool {
    let encoded = path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                w[1..],
                [b'2', b'e' | b'E' | b'f' | b'F'] | [b'5', b'c' | b'C']
            )
    });
    !encoded
        && path
            .split('/')
            .all(|segment| segment != "." && segment != "..")
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
        vec![HostPattern::parse("sns.{aws-region}.amazonaws.com").unwrap()]
    }

    #[test]
    fn host_patterns_match_one_label_per_star() {
        let p = HostPattern::parse("sns.*.amazonaws.com").unwrap();
        assert!(p.matches("sns.us-east-1.amazonaws.com", 443));
        assert!(p.matches("sns.s3.amazonaws.com", 443));
        assert!(!p.matches("sns.us-east-1.amazonaws.com", 8443));
        assert!(!p.matches("sns.a.b.amazonaws.com", 443));
        assert!(!p.matches("sns.amazonaws.com", 443));
        assert!(!p.matches("sns..amazonaws.com", 443));
        assert!(!p.matches("sns.x.amazonaws.com.evil.com", 443));
        let local = HostPattern::parse("localhost:8443").unwrap();
        assert!(local.matches("localhost", 8443));
        assert!(!local.matches("localhost", 443));
        for bad in [
            "",
            "*",
            "*.*",
            "a:b",
            "a:0",
            "exa mple.com",
            "a..b",
            "a/b",
            "{region}.example.com",
            "{aws-region}",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aws_region_labels_take_real_region_shapes_only() {
        let aws = HostPattern::parse("sns.{aws-region}.amazonaws.com").unwrap();
        let china = HostPattern::parse("sns.{aws-cn-region}.amazonaws.com.cn").unwrap();
        for region in [
            "us-east-1",
            "us-west-2",
            "ap-southeast-7",
            "ap-northeast-3",
            "eu-central-2",
            "il-central-1",
            "mx-central-1",
            "ca-west-1",
            "me-south-1",
            "af-south-1",
            "sa-east-1",
            "us-gov-west-1",
            "us-gov-east-1",
        ] {
            assert!(
                aws.matches(&format!("sns.{region}.amazonaws.com"), 443),
                "{region}"
            );
            assert!(
                !china.matches(&format!("sns.{region}.amazonaws.com.cn"), 443),
                "{region}"
            );
        }
        for region in ["cn-north-1", "cn-northwest-1"] {
            assert!(
                china.matches(&format!("sns.{region}.amazonaws.com.cn"), 443),
                "{region}"
            );
            assert!(
                !aws.matches(&format!("sns.{region}.amazonaws.com"), 443),
                "{region}"
            );
        }
        for host in [
            "sns.s3.amazonaws.com",
            "sns.probe-1.amazonaws.com",
            "sns.us-probe-1.amazonaws.com",
            "sns.us-east-01.amazonaws.com",
            "sns.us-east-100.amazonaws.com",
            "sns.us-east-.amazonaws.com",
            "sns.us-east.amazonaws.com",
            "sns.xx-east-1.amazonaws.com",
            "sns.us-iso-east-1.amazonaws.com",
            "sns.-east-1.amazonaws.com",
            "sns.us-east-1x.amazonaws.com",
            "sns.us.east-1.amazonaws.com",
            "sns.amazonaws.com",
        ] {
            assert!(!aws.matches(host, 443), "{host}");
        }
        assert!(!aws.matches("sns.us-east-1.amazonaws.com", 8443));
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
            "https://sns.us-east-1.amazonaws.com/../x.pem",
            "https://sns.us-east-1.amazonaws.com/./x.pem",
            "https://sns.us-east-1.amazonaws.com/a/%2e%2e/x.pem",
            "https://sns.us-east-1.amazonaws.com/a/%2E./x.pem",
            "https://sns.us-east-1.amazonaws.com/a%2fb/x.pem",
            "https://sns.us-east-1.amazonaws.com/a%2F..%2Fx.pem",
            "https://sns.us-east-1.amazonaws.com/a%5c..%5Cx.pem",
            "https://sns.us-east-1.amazonaws.com/a\\..\\x.pem",
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
        assert_eq!(url.path(), "/");
        // A certificate's URL has no query: each would be one more document.
        assert!(HttpsUrl::certificate(subscribe, &sns(), None).is_none());
        assert!(HttpsUrl::certificate(ok, &sns(), Some(".pem")).is_some());
        let dotted = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-a.b.pem";
        assert!(HttpsUrl::certificate(dotted, &sns(), Some(".pem")).is_some());
        let long = format!(
            "https://sns.us-east-1.amazonaws.com/{}.pem",
            "a".repeat(5000)
        );
        assert!(HttpsUrl::allowed(&long, &sns(), Some(".pem")).is_none());
    }
}
