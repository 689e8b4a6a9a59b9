//! Assembles the pingora server: the webhook proxy on every listen address, the
//! admin listener, the reloader, the spool and its deliverer, the metrics and
//! the access log, and the signal watch that drains on SIGTERM. Runnable from `main` or in-process (tests).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::UNIX_EPOCH;

use pingora::server::Server;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::background_service;

use crate::admin::{Admin, AdminService};
use crate::clock::Clock;
use crate::forward::Forwarder;
use crate::observe::Observers;
use crate::observe::access_log::AccessLog;
use crate::observe::inflight::{Draining, InFlight};
use crate::observe::limits::{self, Limits};
use crate::observe::metrics::Metrics;
use crate::proxy::Gateway;
use crate::reload::{ReloadService, Reloader};
use crate::runtime::ConfigStore;
use crate::runtime::RuntimeConfig;
use crate::serve::{self, Listener};
use crate::shutdown::{EarlySignal, SignalWatch};
use crate::spool::deliver::Deliverer;
use crate::spool::{self, Spool};
use crate::state::State;

/// Seconds pingora allows its runtimes to stop once the grace period is over.
const SHUTDOWN_TIMEOUT_SECS: u64 = 1;

/// How the server is wired to its surroundings.
#[derive(Debug)]
pub struct Options {
    /// The config file, reloaded on SIGHUP, on change and on `POST /reload`.
    pub config_path: PathBuf,
    /// The clock verifiers check timestamps against.
    pub clock: Arc<dyn Clock>,
    /// Raised by the SIGHUP handler (installed by the caller as early as possible).
    pub sighup: Arc<AtomicBool>,
}

/// A server ready to run, with what `main` needs around it.
pub struct Assembled {
    /// The pingora server.
    pub server: Server,
    /// The signal watch to run it with: SIGTERM drains and exits.
    pub signals: SignalWatch,
    /// The access log, to flush after the server stops.
    pub access_log: AccessLog,
}

impl std::fmt::Debug for Assembled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembled")
            .field("signals", &self.signals)
            .finish_non_exhaustive()
    }
}

/// Builds a ready-to-run server for `config`. Fails, with a message naming the
/// address or file, when a listener cannot be bound or the access log opened.
pub fn build(config: RuntimeConfig, options: Options) -> Result<Assembled, String> {
    // Before any listener accepts: a SIGTERM from then on drains.
    let early = EarlySignal::catch()?;
    let settings = config.server.clone();
    // pingora's runtimes only carry the background services (the webhook
    // listener runs its own worker threads), one thread each.
    let conf = ServerConf {
        threads: 1,
        // A backstop: the drain started on SIGTERM exits as soon as requests in
        // flight are done, and at the latest when `shutdown_grace` is over.
        grace_period_seconds: Some(settings.shutdown_grace.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(SHUTDOWN_TIMEOUT_SECS),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let metrics = Metrics::new();
    let loaded_unix = config
        .loaded_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    metrics.config_loaded(
        config.generation,
        i64::try_from(loaded_unix).unwrap_or(i64::MAX),
    );
    let access_log = AccessLog::start(&settings.access_log, metrics.clone())
        .map_err(|e| format!("cannot open the access log {:?}: {e}", settings.access_log))?;
    let observers = Observers {
        metrics: metrics.clone(),
        access_log: access_log.clone(),
        in_flight: InFlight::default(),
        draining: Draining::default(),
        attempts: InFlight::default(),
        limits: Limits::new(&settings.front),
    };

    limits::raise_open_files(settings.front.max_connections);
    let state = State::new(&settings.state, metrics.clone())?;
    let spool = Spool::new(
        &settings.spool,
        spool::needed(&config),
        state.clone(),
        metrics.clone(),
    )
    .map_err(|e| format!("cannot open the spool: {e}"))?;
    let store = ConfigStore::new(config);
    // Made before a listener is bound: the reloader takes the contents of the
    // config file and of the files it reads as its baseline, and a change made
    // once the gateway answers must not be part of it.
    let reloader = Arc::new(Reloader::new(
        options.config_path,
        store.clone(),
        metrics,
        access_log.clone(),
        state.clone(),
    ));
    let gateway = Gateway::new(
        store.clone(),
        options.clock,
        Forwarder::new(),
        (state, spool.clone()),
        observers.clone(),
    );
    let deliverer = Deliverer::new(
        spool.clone(),
        store.clone(),
        observers.attempts.clone(),
        observers.draining.clone(),
    );
    let mut deliverer = background_service("deliverer", deliverer);
    deliverer.threads = Some(1);
    server.add_service(deliverer);
    let tls = if settings.tls_listen.is_empty() {
        None
    } else {
        Some(serve::tls::server_config(store.clone())?)
    };
    let listener = Listener::bind(Arc::new(gateway), &settings, tls, observers.clone())?;
    let mut listener = background_service("webhook listener", listener);
    listener.threads = Some(1);
    server.add_service(listener);

    if let Some(addr) = settings.admin_listen {
        let admin = Admin::new(store, Arc::clone(&reloader), observers.clone(), spool);
        let every_listener = [settings.listen.clone(), settings.tls_listen.clone()].concat();
        let service = AdminService::bind(addr, Arc::new(admin), every_listener)
            .map_err(|e| format!("cannot listen on admin_listen {addr}: {e}"))?;
        let mut service = background_service("admin listener", service);
        service.threads = Some(1);
        server.add_service(service);
    }
    let reload = ReloadService::new(reloader, options.sighup, settings.watch_config);
    let mut reload = background_service("config reloader", reload);
    reload.threads = Some(1);
    server.add_service(reload);

    let signals = SignalWatch {
        observers,
        grace: settings.shutdown_grace,
        early,
    };
    Ok(Assembled {
        server,
        signals,
        access_log,
    })
}
