//! Who the admin listener answers, in the config: `[server] admin_token` (an
//! `env:`/`file:` reference, required when `admin_listen` is not a loopback
//! address) and `admin_hosts` (the names it answers besides its own address
//! and loopback).

use std::net::{IpAddr, SocketAddr};

use toml::Spanned;

use super::build::{Builder, span};
use super::file::ServerSection;
use crate::base::secret::SecretRef;
use crate::base::settings::AdminAccess;

/// A token shorter than this is warned about: it could be guessed.
const MIN_TOKEN_BYTES: usize = 16;

/// `text` as a host the admin listener may be asked by (lower case, an IPv6
/// address without brackets), or `None` when it is not a DNS name or an IP
/// address (a port, a path, a wildcard).
pub fn admin_host(text: &str) -> Option<String> {
    let text = text.trim_end_matches('.').to_ascii_lowercase();
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let dns = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    dns.then_some(text)
}

impl Builder<'_> {
    /// `[server] admin_token` and `admin_hosts`, checked against `admin_listen`.
    pub(super) fn admin_access(&mut self, s: &ServerSection) -> AdminAccess {
        let listen = s
            .admin_listen
            .as_ref()
            .and_then(|a| a.get_ref().parse::<SocketAddr>().ok().map(|addr| (a, addr)));
        let mut access = AdminAccess::default();
        if let Some(token) = &s.admin_token {
            self.admin_token(token, &mut access);
        }
        if let Some(hosts) = &s.admin_hosts {
            for host in hosts.get_ref() {
                match admin_host(host.get_ref()) {
                    Some(name) => access.hosts.push(name),
                    None => self.error(
                        span(host),
                        format!(
                            "`admin_hosts` entry `{}` must be a host name or an IP address, without a port",
                            host.get_ref()
                        ),
                    ),
                }
            }
        }
        match listen {
            Some((at, addr))
                if !addr.ip().to_canonical().is_loopback() && s.admin_token.is_none() =>
            {
                self.error(
                    span(at),
                    format!(
                        "`admin_listen` {addr} is not a loopback address: set `admin_token` \
                         (an `env:` or `file:` reference) so that the admin API asks for it"
                    ),
                );
            }
            None if s.admin_token.is_some() || s.admin_hosts.is_some() => {
                let at = s
                    .admin_token
                    .as_ref()
                    .map_or_else(|| s.admin_hosts.as_ref().and_then(span), span);
                self.warning(
                    at,
                    "`admin_token` and `admin_hosts` have no effect without `admin_listen`",
                );
            }
            _ => {}
        }
        access
    }

    /// Resolves `admin_token` into `access`: an `env:`/`file:` reference (a
    /// `file:` one is watched like every secret file), printable ASCII.
    fn admin_token(&mut self, token: &Spanned<String>, access: &mut AdminAccess) {
        let reference = SecretRef::parse(token.get_ref());
        if matches!(reference, SecretRef::Literal(_)) {
            self.error(
                span(token),
                "`admin_token` must be an `env:NAME` or `file:PATH` reference, so that the token stays out of the config file",
            );
            return;
        }
        let secret = match self.resolve_secret(token.get_ref()) {
            Ok(secret) => secret,
            Err(message) => return self.error(span(token), message),
        };
        if !secret.expose().iter().all(|b| b.is_ascii_graphic()) {
            return self.error(
                span(token),
                "`admin_token` must be printable ASCII without spaces, as it is sent in `Authorization: Bearer`",
            );
        }
        if secret.expose().len() < MIN_TOKEN_BYTES {
            self.warning(
                span(token),
                format!(
                    "`admin_token` is shorter than {MIN_TOKEN_BYTES} bytes; use a random one, e.g. `openssl rand -hex 32`"
                ),
            );
        }
        access.token = Some(secret);
        access.token_source = Some(reference.describe());
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::load_str;
    use crate::config::tests::errors;

    /// `[server]` with `lines` (and a route, so that the file serves
    /// something), loaded from a file in `dir`: the admin access and the
    /// warnings, or the problems.
    fn load(
        dir: &Path,
        lines: &str,
    ) -> Result<(crate::base::settings::AdminAccess, Vec<String>), Vec<String>> {
        let route = "[[routes]]\nname = \"r\"\npath = \"/r\"\nupstream = \"http://127.0.0.1:9\"\n\
                     verify = { scheme = \"rye\", secrets = [\"k\"] }\n";
        let text = format!("[server]\n{lines}{route}");
        match load_str(&dir.join("c.toml"), &text) {
            Ok(loaded) => Ok((loaded.config.admin, loaded.warnings.lines().to_vec())),
            Err(report) => Err(report.lines().to_vec()),
        }
    }

    #[test]
    fn a_non_loopback_admin_listener_needs_a_token_reference() {
        for addr in ["0.0.0.0:9190", "[::]:9190", "10.0.0.5:9190"] {
            assert_eq!(
                errors(&format!("[server]\nadmin_listen = \"{addr}\"\n")),
                [format!(
                    "c.toml:2:16: `admin_listen` {} is not a loopback address: set `admin_token` (an `env:` or `file:` reference) so that the admin API asks for it",
                    addr.parse::<std::net::SocketAddr>().unwrap()
                )],
                "{addr}"
            );
        }
        for addr in [
            "127.0.0.1:9190",
            "127.0.0.2:9190",
            "[::1]:9190",
            "[::ffff:127.0.0.1]:9190",
        ] {
            assert!(
                load_str(
                    Path::new("c.toml"),
                    &format!("[server]\nadmin_listen = \"{addr}\"\n")
                )
                .is_ok(),
                "{addr}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let token = "3f9c2b7e0a1d4c6b8e5f7a9c1d3e5f70";
        std::fs::write(dir.path().join("admin.token"), format!("{token}\n")).unwrap();
        let (access, warnings) = load(
            dir.path(),
            "admin_listen = \"0.0.0.0:9190\"\nadmin_token = \"file:admin.token\"\nadmin_hosts = [\"GW-1.internal.\", \"10.0.0.5\", \"[fd00::1]\"]\n",
        )
        .unwrap();
        assert_eq!(access.token.unwrap().expose(), token.as_bytes());
        assert_eq!(access.token_source.as_deref(), Some("file:admin.token"));
        assert_eq!(access.hosts, ["gw-1.internal", "10.0.0.5", "fd00::1"]);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn token_and_host_problems_are_reported_at_their_keys_without_the_token() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short"), "abc123").unwrap();
        std::fs::write(dir.path().join("spaced"), "two words here, long enough").unwrap();
        let listen = "admin_listen = \"127.0.0.1:9190\"\n";
        let problems = |lines: &str| load(dir.path(), &format!("{listen}{lines}")).unwrap_err();
        let path = dir.path().join("c.toml");
        let at = |rest: &str| format!("{}:{rest}", path.display());
        assert_eq!(
            problems("admin_token = \"hunter2-literal-token\"\n"),
            [at(
                "3:15: `admin_token` must be an `env:NAME` or `file:PATH` reference, so that the token stays out of the config file"
            )]
        );
        let missing = problems("admin_token = \"file:nope\"\n");
        assert_eq!(missing.len(), 1);
        assert!(
            missing[0].starts_with(&at("3:15: cannot read secret file")),
            "{missing:?}"
        );
        let spaced = problems("admin_token = \"file:spaced\"\n");
        assert_eq!(
            spaced,
            [at(
                "3:15: `admin_token` must be printable ASCII without spaces, as it is sent in `Authorization: Bearer`"
            )]
        );
        assert!(!spaced[0].contains("two words"));
        assert_eq!(
            problems("admin_hosts = [\"ok.example\", \"evil.example:80\", \"*.example\"]\n"),
            [
                at(
                    "3:30: `admin_hosts` entry `evil.example:80` must be a host name or an IP address, without a port"
                ),
                at(
                    "3:49: `admin_hosts` entry `*.example` must be a host name or an IP address, without a port"
                ),
            ]
        );
        let (_, warnings) = load(
            dir.path(),
            &format!("{listen}admin_token = \"file:short\"\n"),
        )
        .unwrap();
        assert_eq!(
            warnings,
            [at(
                "3:15: warning: `admin_token` is shorter than 16 bytes; use a random one, e.g. `openssl rand -hex 32`"
            )]
        );
        let (_, warnings) = load(dir.path(), "admin_hosts = [\"gw.example\"]\n").unwrap();
        assert_eq!(
            warnings,
            [at(
                "2:15: warning: `admin_token` and `admin_hosts` have no effect without `admin_listen`"
            )]
        );
    }
}
