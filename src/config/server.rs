//! `[server]`: the listeners, threads, access log, shutdown grace, the front
//! door's limits (header and keep-alive timeouts, connections, header bytes,
//! the body budget and a client's share of it, the minimum body rate) and the
//! route defaults it sets, with their built-in values.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::build::{Builder, RouteDefaults, span};
use super::file::{ServerSection, SpoolSection};
use crate::base::one_or_many::OneOrMany;
use crate::base::settings::FrontDoor;
use crate::observe::access_log::Target as AccessLogTarget;
use crate::runtime::ServerSettings;

/// Default webhook listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `max_body_bytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Default `read_timeout_ms`.
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 10_000;
/// Default `shutdown_grace_secs`.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// Default `upstream_timeout_ms`.
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 10_000;
/// Default `header_timeout_ms`.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default `keepalive_timeout_secs`.
pub const DEFAULT_KEEPALIVE_TIMEOUT_SECS: u64 = 60;
/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;
/// Default `max_header_bytes`: 32 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 32 * 1024;
/// Default `max_inflight_body_bytes`: 256 MiB.
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES: u64 = 256 * 1024 * 1024;
/// Default `min_body_bytes_per_sec`.
pub const DEFAULT_MIN_BODY_BYTES_PER_SEC: u64 = 1024;

/// A count from the config as a `usize`, saturating on 32-bit targets.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl RouteDefaults {
    /// When `[server]` sets none of them.
    pub(super) const BUILT_IN: Self = Self {
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        read_timeout_ms: DEFAULT_READ_TIMEOUT_MS,
        upstream_timeout_ms: DEFAULT_UPSTREAM_TIMEOUT_MS,
    };
}

/// Whether two listen addresses would take the same socket: the same port on
/// the same address, or on any address when either is a wildcard.
pub(super) fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

impl Builder<'_> {
    /// Warns when bodies of up to `max_body_bytes` (the key at `at`) may be
    /// larger than one client's share of the body budget: those are always
    /// refused 503 `overloaded`, and the provider retries in vain.
    pub(super) fn check_body_share(&mut self, at: Option<Range<usize>>, max_body_bytes: u64) {
        let Some(share) = self
            .server
            .as_ref()
            .map(|s| s.front.max_inflight_body_bytes_per_client)
            .filter(|&share| max_body_bytes > share)
        else {
            return;
        };
        self.warning(
            at,
            format!(
                "`max_body_bytes` ({max_body_bytes}) is over `max_inflight_body_bytes_per_client` \
                 ({share}): a body larger than {share} bytes is always refused 503 `overloaded`"
            ),
        );
    }

    /// The route defaults `[server]` sets.
    pub(super) fn route_defaults(&mut self, server: &ServerSection) -> RouteDefaults {
        let built_in = RouteDefaults::BUILT_IN;
        RouteDefaults {
            max_body_bytes: self.positive_or(
                &server.max_body_bytes,
                "max_body_bytes",
                built_in.max_body_bytes,
            ),
            read_timeout_ms: self.positive_or(
                &server.read_timeout_ms,
                "read_timeout_ms",
                built_in.read_timeout_ms,
            ),
            upstream_timeout_ms: self.positive_or(
                &server.upstream_timeout_ms,
                "upstream_timeout_ms",
                built_in.upstream_timeout_ms,
            ),
        }
    }

    /// `max_inflight_body_bytes` and the share of it one client may hold
    /// (an eighth of it unless set; never more than it).
    fn body_budget(&mut self, s: &ServerSection) -> (u64, u64) {
        let budget = self.positive_or(
            &s.max_inflight_body_bytes,
            "max_inflight_body_bytes",
            DEFAULT_MAX_INFLIGHT_BODY_BYTES,
        );
        let default_share = (budget / 8).max(1);
        let key = "max_inflight_body_bytes_per_client";
        let share = self.positive_or(&s.max_inflight_body_bytes_per_client, key, default_share);
        if share > budget {
            let at = s.max_inflight_body_bytes_per_client.as_ref().and_then(span);
            self.error(
                at,
                format!("`{key}` ({share}) must not be over `max_inflight_body_bytes` ({budget})"),
            );
            return (budget, default_share);
        }
        (budget, share)
    }

    /// A setting that may be 0, or `default` when absent.
    fn non_negative_or(&mut self, value: &Option<Spanned<i64>>, key: &str, default: u64) -> u64 {
        match value {
            None => default,
            Some(v) => u64::try_from(*v.get_ref()).unwrap_or_else(|_| {
                self.error(span(v), format!("`{key}` must not be negative"));
                default
            }),
        }
    }

    pub(super) fn server(
        &mut self,
        s: &ServerSection,
        spool: Option<&Spanned<SpoolSection>>,
    ) -> Option<ServerSettings> {
        let (listen, mut ok) = match &s.listen {
            None => (vec![DEFAULT_LISTEN.parse().ok()?], true),
            Some(list) => self.addresses(list, "listen"),
        };
        let cpus = std::thread::available_parallelism().map_or(1, usize::from) as u64;
        let threads = self.positive_or(&s.threads, "threads", cpus);
        let admin_listen =
            s.admin_listen
                .as_ref()
                .and_then(|a| match a.get_ref().parse::<SocketAddr>() {
                    Ok(addr) if listen.iter().any(|l| same_socket(*l, addr)) => {
                        self.error(
                            span(a),
                            "`admin_listen` must not share a port with `listen`",
                        );
                        None
                    }
                    Ok(addr) => Some(addr),
                    Err(_) => {
                        self.error(
                            span(a),
                            format!(
                                "invalid admin_listen address `{}`; write IP:PORT",
                                a.get_ref()
                            ),
                        );
                        None
                    }
                });
        let access_log = match s.access_log.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("stdout") => AccessLogTarget::Stdout,
            Some("off") => AccessLogTarget::Off,
            Some(path) => AccessLogTarget::File(self.base_dir.join(path)),
        };
        let grace = self.positive_or(
            &s.shutdown_grace_secs,
            "shutdown_grace_secs",
            DEFAULT_SHUTDOWN_GRACE_SECS,
        );
        let (max_inflight_body_bytes, max_inflight_body_bytes_per_client) = self.body_budget(s);
        let front = FrontDoor {
            header_timeout: Duration::from_millis(self.positive_or(
                &s.header_timeout_ms,
                "header_timeout_ms",
                DEFAULT_HEADER_TIMEOUT_MS,
            )),
            keepalive_timeout: Duration::from_secs(self.positive_or(
                &s.keepalive_timeout_secs,
                "keepalive_timeout_secs",
                DEFAULT_KEEPALIVE_TIMEOUT_SECS,
            )),
            max_connections: to_usize(self.positive_or(
                &s.max_connections,
                "max_connections",
                DEFAULT_MAX_CONNECTIONS,
            )),
            max_header_bytes: to_usize(self.positive_or(
                &s.max_header_bytes,
                "max_header_bytes",
                DEFAULT_MAX_HEADER_BYTES,
            )),
            max_inflight_body_bytes,
            max_inflight_body_bytes_per_client,
            min_body_bytes_per_sec: self.non_negative_or(
                &s.min_body_bytes_per_sec,
                "min_body_bytes_per_sec",
                DEFAULT_MIN_BODY_BYTES_PER_SEC,
            ),
        };
        let tls_listen = self.tls_listen(s, &listen, admin_listen);
        let state = self.state(s);
        let spool = self.spool(spool, &state);
        ok &= tls_listen.is_some();
        ok.then(|| ServerSettings {
            listen,
            threads: usize::try_from(threads).unwrap_or(1),
            watch_config: s.watch_config.unwrap_or(true),
            admin_listen,
            access_log,
            shutdown_grace: Duration::from_secs(grace),
            front,
            tls_listen: tls_listen.unwrap_or_default(),
            state,
            spool,
        })
    }

    /// The addresses of a `listen`-like key (one or a list of `IP:PORT`), and
    /// whether all of them were valid.
    pub(super) fn addresses(
        &mut self,
        list: &Spanned<OneOrMany<String>>,
        key: &str,
    ) -> (Vec<SocketAddr>, bool) {
        let mut addresses = Vec::new();
        let mut ok = true;
        if list.get_ref().0.is_empty() {
            self.error(span(list), format!("`{key}` needs at least one address"));
            ok = false;
        }
        for text in &list.get_ref().0 {
            match text.parse::<SocketAddr>() {
                Ok(addr) if addresses.contains(&addr) => {
                    self.error(span(list), format!("`{key}` has `{text}` twice"));
                    ok = false;
                }
                Ok(addr) => addresses.push(addr),
                Err(_) => {
                    self.error(
                        span(list),
                        format!(
                            "invalid {key} address `{text}`; write IP:PORT, e.g. `127.0.0.1:8080`"
                        ),
                    );
                    ok = false;
                }
            }
        }
        (addresses, ok)
    }
}
