//! One client connection: read a request header, hand the exchange to the
//! [`Gateway`], and keep the connection for the next request while HTTP/1.1
//! keep-alive allows, as pingora's own HTTP server loop does.

use std::net::SocketAddr;
use std::sync::Arc;

use pingora::ErrorType;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::server::ShutdownWatch;
use tokio::net::TcpStream;

use super::socket;
use crate::proxy::Gateway;

/// Seconds an idle client connection is kept open between requests.
const KEEPALIVE_SECS: u64 = 60;
/// Requests served on one client connection before it is closed.
const KEEPALIVE_REQUEST_LIMIT: u32 = 10_000;

/// Serves requests on `tcp` from `client` until it closes, keep-alive ends, or a
/// shutdown begins (idle connections are then closed at once).
pub(super) async fn serve(
    gateway: &Arc<Gateway>,
    tcp: TcpStream,
    client: SocketAddr,
    mut shutdown: ShutdownWatch,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        log::debug!("cannot set TCP_NODELAY for {client}: {e}");
    }
    let mut session = HttpSession::new(socket::client_stream(tcp, client));
    let mut remaining = KEEPALIVE_REQUEST_LIMIT;
    loop {
        session.set_server_keepalive(Some(KEEPALIVE_SECS));
        remaining -= 1;
        session.set_keepalive_reuses_remaining(Some(remaining));
        let read = tokio::select! {
            biased;
            read = session.read_request() => read,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        match read {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) if e.etype() == &ErrorType::InvalidHTTPHeader => {
                log::debug!("malformed request from {client}: {e}");
                gateway.refuse_malformed(&mut session).await;
                return;
            }
            Err(e) => return log::debug!("reading a request from {client}: {e}"),
        }
        if *shutdown.borrow() {
            session.set_server_keepalive(None);
        }
        // Boxed: an exchange's state is large, and an idle connection should
        // hold only its session, not room for a whole exchange.
        Box::pin(gateway.serve(&mut session, client)).await;
        match session.reuse().await {
            Ok(Some(reusable)) => {
                let (stream, pipelined) = reusable.into_parts();
                session = HttpSession::new(stream);
                if let Some(prefix) = pipelined {
                    session.set_pipelined_prefix(prefix);
                }
            }
            Ok(None) => return,
            Err(e) => return log::debug!("connection from {client} not reusable: {e}"),
        }
    }
}
