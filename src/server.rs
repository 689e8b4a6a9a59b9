//! Assembles the pingora server: the webhook proxy service on every listen
//! address and the config reloader. Runnable from `main` or in-process (tests).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use pingora::apps::HttpServerOptions;
use pingora::connectors::ConnectorOptions;
use pingora::connectors::http::Connector;
use pingora::proxy::ProxyServiceBuilder;
use pingora::server::Server;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::services::background::background_service;

use crate::clock::Clock;
use crate::forward::Forwarder;
use crate::proxy::Gateway;
use crate::reload::{ConfigStore, Reloader};
use crate::runtime::RuntimeConfig;

/// Seconds pingora waits after SIGTERM before stopping its runtimes; requests in
/// flight have this long to finish.
const GRACE_PERIOD_SECS: u64 = 5;
/// Seconds pingora then allows its runtimes to stop.
const SHUTDOWN_TIMEOUT_SECS: u64 = 1;
/// Requests served on one client connection before it is closed.
const KEEPALIVE_REQUEST_LIMIT: u32 = 10_000;

/// How the server is wired to its surroundings.
#[derive(Debug)]
pub struct Options {
    /// The config file, reloaded on SIGHUP and on change.
    pub config_path: PathBuf,
    /// The clock verifiers check timestamps against.
    pub clock: Arc<dyn Clock>,
    /// Raised by the SIGHUP handler (installed by the caller as early as possible).
    pub sighup: Arc<AtomicBool>,
    /// Whether to reload when the file changes.
    pub watch_file: bool,
}

/// Builds a ready-to-run server for `config`.
pub fn build(config: RuntimeConfig, options: Options) -> Server {
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(GRACE_PERIOD_SECS),
        graceful_shutdown_timeout_seconds: Some(SHUTDOWN_TIMEOUT_SECS),
        // One single-threaded runtime per thread: a connection stays on its thread,
        // which saves the cross-thread wake-ups work stealing costs. Measured with
        // benches/load.sh: ~15% less CPU per request.
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let listen = config.server.listen.clone();
    let store = ConfigStore::new(config);
    let connector = Connector::new(Some(ConnectorOptions::from_server_conf(
        &server.configuration,
    )));
    let gateway = Gateway::new(store.clone(), options.clock, Forwarder::new(connector));

    let mut server_options = HttpServerOptions::default();
    server_options.keepalive_request_limit = Some(KEEPALIVE_REQUEST_LIMIT);
    let mut proxy = ProxyServiceBuilder::new(&server.configuration, gateway)
        .name("hookgate")
        .server_options(server_options)
        .build();
    for addr in &listen {
        proxy.add_tcp(&addr.to_string());
    }

    let reloader = Reloader::new(
        options.config_path,
        store,
        options.sighup,
        options.watch_file,
    );
    server.add_service(proxy);
    let mut reloader = background_service("config reloader", reloader);
    reloader.threads = Some(1);
    server.add_service(reloader);
    server
}
