//! What a route asks of a delivery besides its signature, and what it does
//! for the app: the client addresses it admits (`allow_ips`), the headers a
//! sender must present (`require_headers`), its rate limit, its replay cache
//! (`dedup`), what happens when the shared state fails (`on_state_error`),
//! shadow mode (`mode = "monitor"`), and re-signing for the app
//! (`forward_signature`). Built and checked with the config; pure data.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use crate::base::secret::Secret;
use crate::mac::{KeyedMac, constant_time_eq};

/// A route's policy; every part optional.
#[derive(Debug, Default)]
pub struct Policy {
    /// `mode = "monitor"`: verify and count, but forward everything.
    pub monitor: bool,
    /// Networks the client must be in; empty: any.
    pub allow_ips: Vec<IpNet>,
    /// Headers each request must carry, with the value each must equal.
    pub require_headers: Vec<RequiredHeader>,
    /// The route's rate limit.
    pub rate_limit: Option<RateLimit>,
    /// How long a delivered event id is remembered (`[routes.dedup] ttl_secs`).
    pub dedup: Option<Duration>,
    /// What to do when the shared state (Redis) fails.
    pub on_state_error: OnStateError,
    /// Re-signing every forwarded request for the app.
    pub forward_signature: Option<ForwardSignature>,
}

impl Policy {
    /// Whether a client at `ip` may deliver to the route.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.allow_ips.is_empty() || self.allow_ips.iter().any(|net| net.contains(&ip))
    }

    /// Checks `require_headers`: each present exactly once and equal to its
    /// value. Every required header is compared, in constant time, whatever
    /// the earlier ones gave, so the answer's timing says nothing of which
    /// failed or how.
    pub fn check_headers(&self, headers: &HeaderMap) -> Result<(), HeaderRefusal> {
        let mut refusal = None;
        for required in &self.require_headers {
            let mut values = headers.get_all(&required.name).iter();
            let outcome = match (values.next(), values.next()) {
                (None, _) => Err(HeaderRefusal::Missing),
                (Some(sent), None)
                    if constant_time_eq(required.value.expose(), sent.as_bytes()) =>
                {
                    Ok(())
                }
                (Some(_), _) => Err(HeaderRefusal::Invalid),
            };
            if let Err(r) = outcome {
                refusal.get_or_insert(r);
            }
        }
        refusal.map_or(Ok(()), Err)
    }
}

/// Why `require_headers` refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRefusal {
    /// A required header is absent.
    Missing,
    /// A required header is there more than once, or with the wrong value.
    Invalid,
}

/// The client's address: the peer's, unless the peer is a trusted proxy; then
/// the last `X-Forwarded-For` hop that is not one (read right to left, so a
/// client cannot name itself by writing the header). When every hop is
/// trusted, the first; when a hop is unreadable, the trusted one that added it.
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack socket shows
/// an IPv4 client), the peer or a hop, is taken as the IPv4 address it is.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    walk_hops(peer, headers, trusted, |_| {})
}

/// The `X-Forwarded-For` chain to send upstream when the peer is a trusted
/// proxy: the client [`client_ip`] names, then each trusted hop after it, then
/// the peer, as `a, b, c`. Hops left of the client were written by the client
/// and are not kept, so the chain's first address is the one the gateway
/// judged. `None` when the peer is not trusted: then the peer alone is the
/// client, and any chain it sent is dropped.
pub fn forwarded_chain(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Option<String> {
    let peer = peer.to_canonical();
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return None;
    }
    let mut hops = Vec::new();
    walk_hops(peer, headers, trusted, |hop| hops.push(hop));
    let chain: Vec<String> = hops
        .iter()
        .rev()
        .chain(std::iter::once(&peer))
        .map(IpAddr::to_string)
        .collect();
    Some(chain.join(", "))
}

/// Reads `X-Forwarded-For` right to left from a trusted `peer`, calling
/// `visit` with each hop taken (nearest first), and returns the client: see
/// [`client_ip`].
fn walk_hops(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    mut visit: impl FnMut(IpAddr),
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all(HeaderName::from_static("x-forwarded-for"))
        .iter()
        .rev()
        .flat_map(|v| v.as_bytes().rsplit(|b| *b == b','));
    for hop in hops {
        let Some(ip) = std::str::from_utf8(hop)
            .ok()
            .and_then(|h| h.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
        else {
            return client;
        };
        visit(ip);
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// The address a per-client limit counts (rate limits, the share of the body
/// budget): an IPv4 address as is, an IPv6 one by its /64 (one subscriber's
/// allocation; a client rotating addresses within it is still one client).
pub fn counted_as(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// One `require_headers` entry.
#[derive(Debug)]
pub struct RequiredHeader {
    /// The header.
    pub name: HeaderName,
    /// The value it must equal (compared in constant time).
    pub value: Secret,
    /// The value's reference as it may be shown (`env:`/`file:`, literals redacted).
    pub source: String,
}

/// `[routes.rate_limit]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// What is limited: the route as a whole, or each client address.
    pub by: LimitBy,
}

/// What a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitBy {
    /// Every request to the route.
    Route,
    /// Each client address's requests to the route.
    ClientIp,
}

impl LimitBy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::ClientIp => "client_ip",
        }
    }
}

/// `on_state_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStateError {
    /// Refuse with 503 `state_unavailable` (the provider retries later).
    #[default]
    Closed,
    /// Forward without dedup or shared limits.
    Open,
}

impl OnStateError {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
        }
    }
}

/// `[routes.forward_signature]`: Standard Webhooks signing under the route's
/// own secret.
#[derive(Debug)]
pub struct ForwardSignature {
    /// HMAC-SHA256 keyed with the secret (`whsec_` base64 decoded when so written).
    pub key: KeyedMac,
    /// The secret's reference as it may be shown.
    pub source: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::headers;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_trusted_proxy_s_chain_is_kept_from_the_client_on_and_the_peer_appended() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7")]);
        // What the client wrote left of itself is dropped; the peer is appended.
        assert_eq!(
            forwarded_chain(ip("10.0.0.1"), &xff, &trusted).as_deref(),
            Some("1.2.3.4, 10.0.0.7, 10.0.0.1")
        );
        // An untrusted peer's chain is not kept at all.
        assert_eq!(forwarded_chain(ip("8.8.8.8"), &xff, &trusted), None);
        // A trusted proxy that names nobody: the chain is the peer.
        assert_eq!(
            forwarded_chain(ip("::ffff:10.0.0.1"), &HeaderMap::new(), &trusted).as_deref(),
            Some("10.0.0.1")
        );
        // An unreadable hop ends the chain at the trusted hop that added it.
        let junk = headers(&[("x-forwarded-for", "1.2.3.4, bogus, 10.0.0.5")]);
        assert_eq!(
            forwarded_chain(ip("10.0.0.1"), &junk, &trusted).as_deref(),
            Some("10.0.0.5, 10.0.0.1")
        );
    }

    #[test]
    fn the_client_is_the_last_untrusted_hop() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7")]);
        // From a trusted proxy: skip trusted hops from the right.
        assert_eq!(client_ip(ip("10.0.0.1"), &xff, &trusted), ip("1.2.3.4"));
        // From anyone else: the header is the client's own word, ignored.
        assert_eq!(client_ip(ip("8.8.8.8"), &xff, &trusted), ip("8.8.8.8"));
        // No trusted proxies: always the peer.
        assert_eq!(client_ip(ip("10.0.0.1"), &xff, &[]), ip("10.0.0.1"));
        // Several headers read as one list, the last header last.
        let split = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "10.0.0.9"),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &split, &trusted), ip("1.2.3.4"));
        // An unreadable hop: the trusted proxy that wrote it.
        let junk = headers(&[("x-forwarded-for", "1.2.3.4, junk, 10.0.0.5")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &junk, &trusted), ip("10.0.0.5"));
        // Every hop trusted: the first.
        let inner = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &inner, &trusted), ip("10.1.1.1"));
        // No header at all: the peer.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let none = HeaderMap::new();
        assert_eq!(
            client_ip(ip("::ffff:192.0.2.7"), &none, &trusted),
            ip("192.0.2.7")
        );
        // A mapped peer inside trusted_proxies is trusted; mapped hops too.
        let xff = headers(&[("x-forwarded-for", "::ffff:1.2.3.4, ::ffff:10.0.0.7")]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &xff, &trusted),
            ip("1.2.3.4")
        );
        // Other IPv6 addresses stay as they are.
        assert_eq!(
            client_ip(ip("2001:db8::1"), &none, &trusted),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn required_headers_must_be_there_once_and_equal() {
        let policy = Policy {
            require_headers: vec![
                RequiredHeader {
                    name: HeaderName::from_static("x-sender"),
                    value: Secret::new(b"internal".to_vec()),
                    source: "env:SENDER".into(),
                },
                RequiredHeader {
                    name: HeaderName::from_static("rye-verification"),
                    value: Secret::new(b"dev_1".to_vec()),
                    source: "env:RYE_DEV".into(),
                },
            ],
            ..Policy::default()
        };
        let both = [("x-sender", "internal"), ("rye-verification", "dev_1")];
        assert_eq!(policy.check_headers(&headers(&both)), Ok(()));
        let missing = [("x-sender", "internal")];
        assert_eq!(
            policy.check_headers(&headers(&missing)),
            Err(HeaderRefusal::Missing)
        );
        let wrong = [("x-sender", "internal!"), ("rye-verification", "dev_1")];
        assert_eq!(
            policy.check_headers(&headers(&wrong)),
            Err(HeaderRefusal::Invalid)
        );
        let twice = [
            ("x-sender", "internal"),
            ("x-sender", "internal"),
            ("rye-verification", "dev_1"),
        ];
        assert_eq!(
            policy.check_headers(&headers(&twice)),
            Err(HeaderRefusal::Invalid)
        );
    }

    #[test]
    fn allow_ips_admits_only_its_networks() {
        let policy = Policy {
            allow_ips: vec![
                "192.0.2.0/24".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            ..Policy::default()
        };
        assert!(policy.admits(ip("192.0.2.77")));
        assert!(policy.admits(ip("2001:db8::1")));
        assert!(!policy.admits(ip("192.0.3.1")));
        assert!(Policy::default().admits(ip("203.0.113.9")));
    }
}
