//! `RuntimeConfig`: the immutable, validated snapshot a request runs against —
//! built routes with their verifiers and resolved upstreams — and the
//! [`ConfigStore`] that shares the current one through an `ArcSwap`; a reload
//! builds a new one and never mutates this.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::base::settings::{AdminAccess, FrontDoor, SpoolSettings, StateSettings};
use crate::observe::access_log::Target as AccessLogTarget;
use crate::routes::RouteTable;
use crate::tls::Certificates;

/// A whole validated config.
#[derive(Debug)]
pub struct RuntimeConfig {
    /// The file it was loaded from.
    pub source: PathBuf,
    /// 1 for the config loaded at startup, then one more for each successful reload.
    pub generation: u64,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Listener and process settings.
    pub server: ServerSettings,
    /// The routes, indexed for matching.
    pub routes: RouteTable,
    /// The certificates of `[[server.tls]]` (reloaded with the config).
    pub tls: Option<Certificates>,
    /// `[server.remote_keys]`: how provider keys are fetched (reloaded with the config).
    pub remote_keys: Arc<crate::keys::KeySettings>,
    /// Networks whose `X-Forwarded-For` names the client (reloaded with the config).
    pub trusted_proxies: Vec<IpNet>,
    /// Every file the config reads besides itself (`file:` secrets, CA files,
    /// certificates and keys), watched with it.
    pub files: Vec<PathBuf>,
    /// Who the admin listener answers (reloaded with the config).
    pub admin: AdminAccess,
}

/// `[server]` after validation and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Webhook listener addresses (a change needs a restart).
    pub listen: Vec<SocketAddr>,
    /// Worker threads (a change needs a restart).
    pub threads: usize,
    /// Whether the config file and the files it reads are watched for
    /// changes (a change needs a restart).
    pub watch_config: bool,
    /// The admin listener's address (a change needs a restart).
    pub admin_listen: Option<SocketAddr>,
    /// Where the access log goes (a change needs a restart; a file is reopened on reload).
    pub access_log: AccessLogTarget,
    /// How long requests in flight may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Limits and deadlines of the webhook listener.
    pub front: FrontDoor,
    /// Webhook listener addresses served with TLS (a change needs a restart).
    pub tls_listen: Vec<SocketAddr>,
    /// Where dedup keys and shared rate limits live (a change needs a restart).
    pub state: StateSettings,
    /// `[spool]`: where async deliveries are kept (a change needs a restart).
    pub spool: SpoolSettings,
}

/// The current config snapshot, shared by every request and the reloader.
#[derive(Debug, Clone)]
pub struct ConfigStore(Arc<ArcSwap<RuntimeConfig>>);

impl ConfigStore {
    /// A store holding `config`.
    pub fn new(config: RuntimeConfig) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(config)))
    }

    /// The current snapshot. Take it once per request and keep it.
    pub fn snapshot(&self) -> Arc<RuntimeConfig> {
        self.0.load_full()
    }

    /// Installs `config` as the next generation and returns its number. Requests
    /// in flight keep the snapshot they took.
    pub fn replace(&self, mut config: RuntimeConfig) -> u64 {
        config.generation = self.0.load().generation + 1;
        let generation = config.generation;
        self.0.store(Arc::new(config));
        generation
    }
}
