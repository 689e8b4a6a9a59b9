//! The webhook listener on pingora-core: one worker thread per configured
//! thread, each with its own single-threaded runtime, its own accept loop on
//! the shared listening sockets and its own upstream connection pool, so a
//! client connection, its upstream connection and every wake-up between them
//! stay on one thread (as nginx workers do). A worker that accepts a
//! connection while another serves fewer hands the socket over, so a burst of
//! connections spreads over every worker. Each connection is served with
//! pingora-core's HTTP/1 session by the `connection` module.

mod connection;
mod socket;
pub mod tls;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use crate::base::settings::FrontDoor;
use crate::forward::pool;
use crate::observe::Observers;
use crate::observe::limits::ConnectionGuard;
use crate::proxy::Gateway;
use crate::runtime::ServerSettings;

/// Pending connections the kernel queues per listening socket.
const BACKLOG: i32 = 4096;
/// How long an accept loop waits after a failed `accept` (say, out of file
/// descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(20);

/// The webhook listener as a pingora background service. The sockets are bound
/// before the server starts, so a taken port stops startup with a clear error.
#[derive(Debug)]
pub struct Listener {
    /// Each listening socket, and whether it speaks TLS.
    sockets: Mutex<Vec<(TcpListener, bool)>>,
    inboxes: Mutex<Vec<Inbox>>,
    door: Arc<Door>,
}

/// A connection one worker accepted and hands to a less busy one.
type Handoff = (std::net::TcpStream, SocketAddr, bool, ConnectionGuard);
type Inbox = mpsc::UnboundedReceiver<Handoff>;

/// What every worker shares: the exchange logic, the front door's limits,
/// where refused connections are counted, and each worker's load.
#[derive(Debug)]
struct Door {
    gateway: Arc<Gateway>,
    front: FrontDoor,
    observers: Observers,
    workers: Vec<Worker>,
    /// The TLS settings of `tls_listen` sockets.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// A worker as the others see it: how many connections it serves, and where
/// to hand it one.
#[derive(Debug)]
struct Worker {
    open: AtomicUsize,
    handoff: mpsc::UnboundedSender<Handoff>,
}

impl Door {
    /// The worker with the fewest connections (`me` on a tie), counted as
    /// serving one more. All workers accept on the same sockets, and one that
    /// wakes first could otherwise take a whole burst of connections.
    fn least_loaded(&self, me: usize) -> usize {
        let load = |i: usize| self.workers[i].open.load(Ordering::Relaxed);
        let mut best = me;
        for i in 0..self.workers.len() {
            if load(i) < load(best) {
                best = i;
            }
        }
        self.workers[best].open.fetch_add(1, Ordering::Relaxed);
        best
    }
}

impl Listener {
    /// Binds every `listen` address of `settings` for `gateway`, and every
    /// `tls_listen` address with `tls`, served by `settings.threads` workers
    /// within `settings.front`'s limits.
    pub fn bind(
        gateway: Arc<Gateway>,
        settings: &ServerSettings,
        tls: Option<Arc<rustls::ServerConfig>>,
        observers: Observers,
    ) -> Result<Self, String> {
        let plain = settings.listen.iter().map(|addr| (addr, false));
        let secure = settings.tls_listen.iter().map(|addr| (addr, true));
        let sockets = plain
            .chain(secure)
            .map(|(addr, tls)| {
                bind(*addr)
                    .map(|socket| (socket, tls))
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (workers, inboxes) = (0..settings.threads.max(1))
            .map(|_| {
                let (handoff, inbox) = mpsc::unbounded_channel();
                let worker = Worker {
                    open: AtomicUsize::new(0),
                    handoff,
                };
                (worker, inbox)
            })
            .unzip();
        Ok(Self {
            sockets: Mutex::new(sockets),
            inboxes: Mutex::new(inboxes),
            door: Arc::new(Door {
                gateway,
                front: settings.front,
                observers,
                workers,
                tls,
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
    /// Starts the workers, then returns only when the shutdown begins:
    /// pingora logs a service whose `start` returned as exited.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let sockets = std::mem::take(&mut *self.sockets.lock().unwrap_or_else(|e| e.into_inner()));
        let inboxes = std::mem::take(&mut *self.inboxes.lock().unwrap_or_else(|e| e.into_inner()));
        for (index, inbox) in inboxes.into_iter().enumerate() {
            let clones: std::io::Result<Vec<(TcpListener, bool)>> = sockets
                .iter()
                .map(|(socket, tls)| Ok((socket.try_clone()?, *tls)))
                .collect();
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
                .spawn(move || worker(&door, index, clones, inbox, &shutdown));
            if let Err(e) = spawned {
                log::error!("cannot start worker {index}: {e}");
            }
        }
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    }
}

/// One worker: a single-threaded runtime running an accept loop per listening
/// socket, the connections handed to it, and every connection it serves.
/// After a shutdown has begun it keeps running the connections in flight; the
/// process exit ends it.
fn worker(
    door: &Arc<Door>,
    index: usize,
    sockets: Vec<(TcpListener, bool)>,
    mut inbox: Inbox,
    shutdown: &ShutdownWatch,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return log::error!("cannot start a worker runtime: {e}"),
    };
    runtime.block_on(async {
        // The shutdown as this worker's connections see it: relayed from the
        // process-wide watch by one task, so that the many connections waiting
        // on it register with a watch only this thread uses.
        let shutdown = &{
            let mut process_wide = shutdown.clone();
            let (relay, local) = tokio::sync::watch::channel(*process_wide.borrow());
            tokio::spawn(async move {
                if process_wide.wait_for(|stopping| *stopping).await.is_ok() {
                    let _ = relay.send(true);
                }
                // Keeps the relay open: connections see the flag, not a close.
                std::future::pending::<()>().await;
            });
            local
        };
        for (socket, tls) in sockets {
            match tokio::net::TcpListener::from_std(socket) {
                Ok(listener) => {
                    let accepting =
                        accept(listener, tls, Arc::clone(door), index, shutdown.clone());
                    tokio::spawn(accepting);
                }
                Err(e) => log::error!("a worker cannot accept connections: {e}"),
            }
        }
        let handed = {
            let door = Arc::clone(door);
            let shutdown = shutdown.clone();
            async move {
                while let Some((tcp, peer, tls, admitted)) = inbox.recv().await {
                    match tokio::net::TcpStream::from_std(tcp) {
                        Ok(tcp) => {
                            serve(&door, index, (tcp, peer, tls), admitted, shutdown.clone())
                        }
                        Err(e) => {
                            log::warn!("worker {index} cannot take a connection from {peer}: {e}");
                            door.workers[index].open.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        };
        tokio::spawn(handed);
        pool::sweep_forever().await;
    });
}

/// Serves a connection on this worker (`index`), counted in its load.
fn serve(
    door: &Arc<Door>,
    index: usize,
    (tcp, peer, tls): (tokio::net::TcpStream, SocketAddr, bool),
    admitted: ConnectionGuard,
    shutdown: ShutdownWatch,
) {
    let door = Arc::clone(door);
    tokio::spawn(async move {
        let tls = door.tls.clone().filter(|_| tls);
        connection::serve(&door.gateway, (tcp, peer, tls), door.front, shutdown).await;
        door.workers[index].open.fetch_sub(1, Ordering::Relaxed);
        drop(admitted);
    });
}

/// Accepts connections until the shutdown begins, serving each on the least
/// busy worker: this one, or another it hands the socket to. Past
/// `max_connections`, a new connection is closed at once and counted; the open
/// ones keep being served.
async fn accept(
    listener: tokio::net::TcpListener,
    tls: bool,
    door: Arc<Door>,
    index: usize,
    mut shutdown: ShutdownWatch,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        let (tcp, peer) = match accepted {
            // A dual-stack socket shows an IPv4 client as `::ffff:a.b.c.d`:
            // from here on, the client is the IPv4 address it is.
            Ok((tcp, peer)) => (tcp, SocketAddr::new(peer.ip().to_canonical(), peer.port())),
            Err(e) => {
                log::warn!("accept failed: {e}");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Some(admitted) = door.observers.limits.admit_connection() else {
            drop(tcp);
            door.observers.metrics.connection_refused();
            log::debug!("refused a connection from {peer}: max_connections open");
            continue;
        };
        let target = door.least_loaded(index);
        if target == index {
            serve(&door, index, (tcp, peer, tls), admitted, shutdown.clone());
            continue;
        }
        // Handed over as a plain socket: the other worker's runtime watches it.
        let handed = tcp
            .into_std()
            .map_err(|e| log::warn!("cannot hand over a connection from {peer}: {e}"))
            .and_then(|tcp| {
                door.workers[target]
                    .handoff
                    .send((tcp, peer, tls, admitted))
                    .map_err(|_| log::warn!("worker {target} is gone; dropping {peer}"))
            });
        if handed.is_err() {
            door.workers[target].open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
