//! Who the admin listener answers, checked before any endpoint runs. A page a
//! browser loaded from elsewhere can reach a loopback listener by DNS
//! rebinding, but it asks with its own name in `Host`: only the listener's own
//! address, a loopback name or address, or an `admin_hosts` name is answered
//! (421 otherwise). With `admin_token`, every endpoint also needs
//! `Authorization: Bearer TOKEN` (401 otherwise), compared in constant time.
//! The probes, `/healthz` and `/readyz`, need neither: they come by pod
//! address and say nothing secret.

use std::net::{IpAddr, SocketAddr};

use http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use http::request::Parts;
use serde_json::json;

use super::Answer;
use crate::base::settings::AdminAccess;
use crate::config::admin::admin_host;
use crate::mac::constant_time_eq;

/// Longest `Host` value quoted in a log line.
const MAX_LOGGED_HOST: usize = 100;

/// `Ok` when `req`, on a connection to `local`, may be answered; else the
/// refusal: 400 `bad_request` for an HTTP/1.1 request without one `Host`, 421
/// `misdirected_request` for a foreign `Host`, 401 `unauthorized` without the
/// token. Neither the token sent nor the one expected is ever logged.
pub fn check(access: &AdminAccess, req: &Parts, local: Option<SocketAddr>) -> Result<(), Answer> {
    let Ok(host) = requested_host(req) else {
        return Err(Answer::json(400, &json!({"error": "bad_request"})));
    };
    if matches!(req.uri.path(), "/healthz" | "/readyz") {
        return Ok(());
    }
    if let Some(host) = host
        && !host_allowed(access, host, local)
    {
        let shown: String = host.chars().take(MAX_LOGGED_HOST).collect();
        log::info!(
            "admin listener: refused {} for Host {shown:?}: not its address, loopback or admin_hosts",
            req.uri.path()
        );
        return Err(Answer::json(421, &json!({"error": "misdirected_request"})));
    }
    let Some(token) = &access.token else {
        return Ok(());
    };
    let mut sent = req.headers.get_all(AUTHORIZATION).iter();
    let presented = match (sent.next(), sent.next()) {
        (Some(one), None) => bearer(one.as_bytes()),
        _ => None,
    };
    if presented.is_some_and(|p| constant_time_eq(token.expose(), p)) {
        return Ok(());
    }
    log::info!(
        "admin listener: refused {} without the admin token",
        req.uri.path()
    );
    let challenge = match presented {
        Some(_) => r#"Bearer realm="hookgate admin", error="invalid_token""#,
        None => r#"Bearer realm="hookgate admin""#,
    };
    let mut refusal = Answer::json(401, &json!({"error": "unauthorized"}));
    refusal
        .headers
        .push((WWW_AUTHENTICATE, challenge.to_owned()));
    Err(refusal)
}

/// The host the request names: the request target's authority, else its one
/// `Host` header; `None` for an HTTP/1.0 request naming none. `Err` when an
/// HTTP/1.1 request has no `Host`, or several (RFC 9112 §3.2).
fn requested_host(req: &Parts) -> Result<Option<&str>, ()> {
    if let Some(authority) = req.uri.authority() {
        return Ok(Some(authority.as_str()));
    }
    let mut hosts = req.headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().map(Some).map_err(drop),
        (None, None) if req.version < http::Version::HTTP_11 => Ok(None),
        _ => Err(()),
    }
}

/// Whether `host` (`name[:port]`) is the listener's own address (`local`), a
/// loopback name or address, or a name of `admin_hosts`. The port is not
/// looked at: a rebinding page names its own host, whatever the port.
fn host_allowed(access: &AdminAccess, host: &str, local: Option<SocketAddr>) -> bool {
    let Ok(authority) = host.parse::<http::uri::Authority>() else {
        return false;
    };
    let Some(name) = admin_host(authority.host()) else {
        return false;
    };
    let own = match name.parse::<IpAddr>() {
        Ok(ip) => {
            let ip = ip.to_canonical();
            ip.is_loopback() || local.is_some_and(|l| l.ip().to_canonical() == ip)
        }
        Err(_) => name == "localhost",
    };
    own || access.hosts.contains(&name)
}

/// The token of an `Authorization: Bearer TOKEN` value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    let token = rest.strip_prefix(b" ")?.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::secret::Secret;

    fn request(version: http::Version, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().version(version).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn status(access: &AdminAccess, uri: &str, headers: &[(&str, &str)]) -> u16 {
        let local = "10.0.0.5:9190".parse().ok();
        let req = request(http::Version::HTTP_11, uri, headers);
        check(access, &req, local).map_or_else(|a| a.status, |()| 200)
    }

    #[test]
    fn only_its_own_address_loopback_and_admin_hosts_are_answered() {
        let access = AdminAccess {
            hosts: vec!["gw-1.internal".into()],
            ..AdminAccess::default()
        };
        for host in [
            "127.0.0.1:9190",
            "127.9.9.9",
            "localhost:9190",
            "LOCALHOST.",
            "[::1]:9190",
            "[::ffff:127.0.0.1]",
            "10.0.0.5:9190",
            "10.0.0.5:80",
            "gw-1.internal:9190",
            "GW-1.Internal",
        ] {
            assert_eq!(status(&access, "/config", &[("host", host)]), 200, "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9190",
            "localhost.evil.example",
            "10.0.0.6:9190",
            "gw-1.internal.evil.example",
            "127.0.0.1.nip.io",
            "",
            "a b",
        ] {
            assert_eq!(status(&access, "/config", &[("host", host)]), 421, "{host}");
        }
        // Probes come by pod address: any Host.
        for path in ["/healthz", "/readyz"] {
            assert_eq!(status(&access, path, &[("host", "evil.example")]), 200);
        }
        // An absolute target names the host; HTTP/1.1 without one Host is a 400.
        assert_eq!(status(&access, "http://evil.example/config", &[]), 421);
        assert_eq!(status(&access, "/config", &[]), 400);
        assert_eq!(status(&access, "/healthz", &[]), 400);
        let two = [("host", "127.0.0.1"), ("host", "127.0.0.1")];
        assert_eq!(status(&access, "/config", &two), 400);
        let old = request(http::Version::HTTP_10, "/config", &[]);
        assert!(check(&access, &old, None).is_ok());
    }

    #[test]
    fn with_a_token_every_endpoint_but_the_probes_needs_it() {
        let access = AdminAccess {
            token: Some(Secret::new(b"s3cret-admin-token".to_vec())),
            token_source: Some("env:T".into()),
            hosts: Vec::new(),
        };
        let host = ("host", "127.0.0.1:9190");
        let with = |auth: &str| status(&access, "/config", &[host, ("authorization", auth)]);
        assert_eq!(with("Bearer s3cret-admin-token"), 200);
        assert_eq!(with("bearer  s3cret-admin-token "), 200);
        for wrong in [
            "Bearer s3cret-admin-toke",
            "Bearer s3cret-admin-token2",
            "Basic czNjcmV0LWFkbWluLXRva2Vu",
            "s3cret-admin-token",
            "Bearer",
            "Bearer ",
        ] {
            assert_eq!(with(wrong), 401, "{wrong}");
        }
        let req = request(http::Version::HTTP_11, "/reload", &[host]);
        let refusal = check(&access, &req, None).unwrap_err();
        assert_eq!(refusal.status, 401);
        assert_eq!(refusal.body, b"{\n  \"error\": \"unauthorized\"\n}\n");
        assert_eq!(
            refusal.headers,
            [(
                WWW_AUTHENTICATE,
                r#"Bearer realm="hookgate admin""#.to_owned()
            )]
        );
        let twice = [
            host,
            ("authorization", "Bearer s3cret-admin-token"),
            ("authorization", "Bearer s3cret-admin-token"),
        ];
        assert_eq!(status(&access, "/config", &twice), 401);
        for path in ["/healthz", "/readyz"] {
            assert_eq!(status(&access, path, &[host]), 200);
        }
    }
}
