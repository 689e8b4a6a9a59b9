//! The gateway built in this test process with a clock the test sets, for
//! conformance vectors that fix "now". The shipped binary has no such clock.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hookgate::clock::ManualClock;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};

use super::gateway::free_port;

/// Never asks the server to stop. Tearing an in-process pingora server down
/// (a fast shutdown of its per-thread runtimes) was seen to spin a runtime
/// thread once in about ten full test runs, so the gateway simply lives until
/// the test process exits. The shipped binary's SIGINT and SIGTERM are unaffected.
struct RunUntilExit;

#[async_trait]
impl ShutdownSignalWatch for RunUntilExit {
    async fn recv(&self) -> ShutdownSignal {
        std::future::pending::<()>().await;
        ShutdownSignal::FastShutdown
    }
}

/// A gateway running on a thread of this process.
pub struct InProcess {
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts the gateway with `routes` (and any `[schemes.*]` tables).
    pub async fn start(routes: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookgate.toml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        std::fs::write(
            &path,
            format!("[server]\nlisten = \"{addr}\"\nthreads = 2\nwatch_config = false\naccess_log = \"off\"\n\n{routes}"),
        )
        .unwrap();
        let loaded = hookgate::config::load(Path::new(&path)).unwrap_or_else(|r| panic!("{r}"));
        let clock = Arc::new(ManualClock::new(0));
        let options = hookgate::server::Options {
            config_path: path,
            clock: clock.clone(),
            sighup: Arc::new(AtomicBool::new(false)),
        };
        let server = hookgate::server::build(loaded.config, options)
            .unwrap_or_else(|e| panic!("{e}"))
            .server;
        std::thread::spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(RunUntilExit),
            })
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "in-process gateway did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            addr,
            clock,
            _dir: dir,
        }
    }
}
