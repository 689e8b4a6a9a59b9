//! The webhook listener on pingora-core: one worker thread per configured
//! thread, each with its own single-threaded runtime, its own accept loop on
//! the shared listening sockets and its own upstream connection pool, so a
//! client connection, its upstream connection and every wake-up between them
//! stay on one thread (as nginx workers do). Each connection is served with
//! pingora-core's HTTP/1 session by [`connection`].

mod connection;
mod socket;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::forward::pool;
use crate::proxy::Gateway;
use crate::record::Observers;
use crate::runtime::{FrontDoor, ServerSettings};

/// Pending connections the kernel queues per listening socket.
const BACKLOG: i32 = 4096;
/// How long an accept loop waits after a failed `accept` (say, out of file
/// descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(20);

/// The webhook listener as a pingora background service. The sockets are bound
/// before the server starts, so a taken port stops startup with a clear error.
#[derive(Debug)]
pub struct Listener {
    sockets: Mutex<Vec<TcpListener>>,
    threads: usize,
    door: Arc<Door>,
}

/// What every worker shares: the exchange logic, the front door's limits, and
/// where refused connections are counted.
#[derive(Debug)]
struct Door {
    gateway: Arc<Gateway>,
    front: FrontDoor,
    observers: Observers,
}

impl Listener {
    /// Binds every `listen` address of `settings` for `gateway`, served by
    /// `settings.threads` workers within `settings.front`'s limits.
    pub fn bind(
        gateway: Arc<Gateway>,
        settings: &ServerSettings,
        observers: Observers,
    ) -> Result<Self, String> {
        let sockets = settings
            .listen
            .iter()
            .map(|addr| bind(*addr).map_err(|e| format!("cannot listen on {addr}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            sockets: Mutex::new(sockets),
            threads: settings.threads.max(1),
            door: Arc::new(Door {
                gateway,
                front: settings.front,
                observers,
            }),
        })
    }
}

/// A non-blocking listening socket with `SO_REUSEADDR` and a deep backlog,
/// as servers bind them.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[async_trait]
impl BackgroundService for Listener {
    async fn start(&self, shutdown: ShutdownWatch) {
        let sockets = std::mem::take(&mut *self.sockets.lock().unwrap_or_else(|e| e.into_inner()));
        for index in 0..self.threads {
            let clones: std::io::Result<Vec<TcpListener>> =
                sockets.iter().map(TcpListener::try_clone).collect();
            let clones = match clones {
                Ok(clones) => clones,
                Err(e) => {
                    log::error!("worker {index}: cannot share the listening sockets: {e}");
                    continue;
                }
            };
            let door = Arc::clone(&self.door);
            let shutdown = shutdown.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("hookgate-worker-{index}"))
                .spawn(move || worker(&door, clones, &shutdown));
            if let Err(e) = spawned {
                log::error!("cannot start worker {index}: {e}");
            }
        }
    }
}

/// One worker: a single-threaded runtime running an accept loop per listening
/// socket and every connection those accept. After a shutdown has begun it keeps
/// running the connections in flight; the process exit ends it.
fn worker(door: &Arc<Door>, sockets: Vec<TcpListener>, shutdown: &ShutdownWatch) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return log::error!("cannot start a worker runtime: {e}"),
    };
    runtime.block_on(async {
        for socket in sockets {
            match tokio::net::TcpListener::from_std(socket) {
                Ok(listener) => {
                    tokio::spawn(accept(listener, Arc::clone(door), shutdown.clone()));
                }
                Err(e) => log::error!("a worker cannot accept connections: {e}"),
            }
        }
        pool::sweep_forever().await;
    });
}

/// Accepts connections until the shutdown begins, serving each on this thread.
/// Past `max_connections`, a new connection is closed at once and counted; the
/// open ones keep being served.
async fn accept(listener: tokio::net::TcpListener, door: Arc<Door>, mut shutdown: ShutdownWatch) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let Some(admitted) = door.observers.limits.admit_connection() else {
                    drop(tcp);
                    door.observers.metrics.connection_refused();
                    log::debug!("refused a connection from {peer}: max_connections open");
                    continue;
                };
                let door = Arc::clone(&door);
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    connection::serve(&door.gateway, tcp, peer, door.front, shutdown).await;
                    drop(admitted);
                });
            }
            Err(e) => {
                log::warn!("accept failed: {e}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}
