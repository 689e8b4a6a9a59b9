//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/config`,
//! `POST /reload` and the async [`deliveries`], on an address of its own (never the webhook listener). It
//! keeps answering while a SIGTERM drains requests, so `/readyz` can say so.
//! Who may ask is [`access`]'s to decide, before any endpoint runs.

pub mod access;
pub mod config_view;
pub mod deliveries;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::json;

use crate::observe::Observers;
use crate::reload::{Reloader, Trigger};
use crate::response::NOSNIFF;
use crate::runtime::ConfigStore;
use crate::spool::{self, Spool};

/// How long a client has to send its request header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often readiness probes the webhook listeners until they accept.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// A response from the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// Body.
    pub body: Vec<u8>,
    /// More headers (`WWW-Authenticate` on a 401).
    pub headers: Vec<(http::HeaderName, String)>,
}

impl Answer {
    fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Self {
            status,
            content_type: "application/json".to_owned(),
            body,
            headers: Vec::new(),
        }
    }
}

/// What the admin endpoints read and act on.
#[derive(Debug)]
pub struct Admin {
    store: ConfigStore,
    reloader: Arc<Reloader>,
    observers: Observers,
    spool: Spool,
    listening: AtomicBool,
}

impl Admin {
    /// Endpoints over the running config, its reloader, the `observers`'
    /// metrics and state, and the async deliveries in `spool`.
    pub fn new(
        store: ConfigStore,
        reloader: Arc<Reloader>,
        observers: Observers,
        spool: Spool,
    ) -> Self {
        Self {
            store,
            reloader,
            observers,
            spool,
            listening: AtomicBool::new(false),
        }
    }

    /// Answers one request for `path` with `query`.
    pub async fn answer(&self, method: &str, path: &str, query: Option<&str>) -> Answer {
        if path.starts_with("/deliveries") {
            if let Some(answer) = deliveries::answer(&self.spool, method, path, query).await {
                return answer;
            }
        }
        match (method, path) {
            ("GET" | "HEAD", "/healthz") => Answer::json(200, &json!({"status": "ok"})),
            ("GET" | "HEAD", "/readyz") => self.readiness(),
            ("GET" | "HEAD", "/metrics") => {
                let metrics = &self.observers.metrics;
                metrics.set_in_flight(self.observers.in_flight.count());
                let limits = &self.observers.limits;
                metrics.set_front_door(limits.connections(), limits.body_bytes());
                let mut depths = self.spool.depth(spool::now_ms());
                // Every async route has its series, at 0 when nothing waits.
                let config = self.store.snapshot();
                for route in config.routes.iter().filter(|r| r.delivery.is_some()) {
                    depths.entry(route.name.clone()).or_default();
                }
                metrics.set_spool(&depths, self.spool.used_bytes());
                metrics.key_fetch_routes(
                    config
                        .routes
                        .iter()
                        .filter(|r| r.verifiers.iter().any(|v| v.remote_params().is_some()))
                        .map(|r| r.name.as_str()),
                );
                let (content_type, body) = metrics.render();
                Answer {
                    status: 200,
                    content_type,
                    body,
                    headers: Vec::new(),
                }
            }
            ("GET" | "HEAD", "/config") => {
                Answer::json(200, &config_view::render(&self.store.snapshot()))
            }
            ("POST", "/reload") => match self.reloader.reload(Trigger::Admin).await {
                Ok(summary) => Answer::json(200, &json!(summary)),
                Err(report) => Answer::json(
                    400,
                    &json!({
                        "error": "invalid_config",
                        "generation": self.store.snapshot().generation,
                        "problems": report.lines(),
                    }),
                ),
            },
            (_, "/healthz" | "/readyz" | "/metrics" | "/config" | "/reload") => {
                Answer::json(405, &json!({"error": "method_not_allowed"}))
            }
            _ => Answer::json(404, &json!({"error": "not_found"})),
        }
    }

    fn readiness(&self) -> Answer {
        let generation = self.store.snapshot().generation;
        let (status, state) = if self.observers.draining.is_draining() {
            (503, "draining")
        } else if !self.listening.load(Ordering::Acquire) {
            (503, "starting")
        } else {
            (200, "ready")
        };
        Answer::json(status, &json!({"status": state, "generation": generation}))
    }

    /// Marks the gateway ready once every webhook listener accepts connections.
    async fn wait_for_listeners(&self, listen: &[SocketAddr]) {
        for addr in listen {
            let target = loopback_for(*addr);
            while tokio::net::TcpStream::connect(target).await.is_err() {
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        }
        self.listening.store(true, Ordering::Release);
        log::info!("ready: listening on {listen:?}");
    }
}

/// The address to probe a listener at: a wildcard address is reached on loopback.
fn loopback_for(addr: SocketAddr) -> SocketAddr {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    target
}

/// The admin listener as a pingora background service. The socket is bound before
/// the server starts, so a taken port stops startup with a clear error.
#[derive(Debug)]
pub struct AdminService {
    admin: Arc<Admin>,
    listener: std::sync::Mutex<Option<TcpListener>>,
    listen: Vec<SocketAddr>,
}

impl AdminService {
    /// Binds `addr` for `admin`, which reports ready once `listen` accepts.
    pub fn bind(
        addr: SocketAddr,
        admin: Arc<Admin>,
        listen: Vec<SocketAddr>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            admin,
            listener: std::sync::Mutex::new(Some(listener)),
            listen,
        })
    }
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let taken = self.listener.lock().ok().and_then(|mut l| l.take());
        let Some(listener) = taken.and_then(|l| tokio::net::TcpListener::from_std(l).ok()) else {
            log::error!("the admin listener cannot start");
            return;
        };
        let admin = Arc::clone(&self.admin);
        let listen = self.listen.clone();
        tokio::spawn(async move { admin.wait_for_listeners(&listen).await });
        // Keeps serving through a graceful shutdown; the process exit ends it.
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let admin = Arc::clone(&self.admin);
                    tokio::spawn(async move { serve(stream, &admin).await });
                }
                Err(e) => {
                    log::warn!("admin listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Serves one request on a connection, then closes it.
async fn serve(stream: tokio::net::TcpStream, admin: &Admin) {
    let local = stream.local_addr().ok();
    let mut session = ServerSession::new_http1(Box::new(Stream::from(stream)));
    match tokio::time::timeout(HEADER_TIMEOUT, session.read_request()).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) | Err(_) => return,
        Ok(Err(e)) => return log::debug!("admin listener: bad request: {e}"),
    }
    let req = session.req_header();
    let method = req.method.as_str().to_owned();
    let allowed = access::check(&admin.store.snapshot().admin, req, local);
    let answer = match allowed {
        Ok(()) => admin.answer(&method, req.uri.path(), req.uri.query()).await,
        Err(refusal) => refusal,
    };
    if let Err(e) = respond(session, &answer, method == "HEAD").await {
        log::debug!("admin listener: cannot answer: {e}");
    }
}

async fn respond(mut session: ServerSession, answer: &Answer, head: bool) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(answer.status, Some(4))?;
    header.insert_header(http::header::CONTENT_TYPE, answer.content_type.as_str())?;
    header.insert_header(http::header::CONTENT_LENGTH, answer.body.len())?;
    header.insert_header(http::header::X_CONTENT_TYPE_OPTIONS, NOSNIFF)?;
    header.insert_header(http::header::CONNECTION, "close")?;
    for (name, value) in &answer.headers {
        header.insert_header(name.clone(), value.as_str())?;
    }
    session.set_keepalive(None);
    session.write_response_header(Box::new(header)).await?;
    if !head {
        session
            .write_response_body(Bytes::copy_from_slice(&answer.body), true)
            .await?;
    }
    session.finish().await.map(|_| ())
}
