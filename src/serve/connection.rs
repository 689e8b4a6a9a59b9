//! One client connection: wait for a request, read its header within the
//! front door's deadline and size limit, hand the exchange to the [`Gateway`],
//! and keep the connection for the next request while HTTP/1.1 keep-alive
//! allows. Pipelined requests are served one after another, in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::ErrorType;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::server::ShutdownWatch;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::socket::Client;
use crate::base::settings::FrontDoor;
use crate::proxy::{Client as Caller, Gateway};
use crate::reject::ErrorCode;

/// Requests served on one client connection before it is closed.
const KEEPALIVE_REQUEST_LIMIT: u32 = 10_000;
/// After an answer given before the request was read whole, how long and how
/// much of the rest the client may still send before the connection closes.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// Serves requests on `tcp` from `peer` until it closes, keep-alive ends, a
/// deadline passes, or a shutdown begins (idle connections are then closed at
/// once).
pub(super) async fn serve(
    gateway: &Arc<Gateway>,
    (tcp, peer, tls): (TcpStream, SocketAddr, Option<Arc<rustls::ServerConfig>>),
    front: FrontDoor,
    mut shutdown: ShutdownWatch,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        log::debug!("cannot set TCP_NODELAY for {peer}: {e}");
    }
    let accepted = Instant::now();
    let caller = Caller::new(peer, tls.is_some());
    let (client, stream) = match tls {
        None => Client::accept(tcp, peer),
        // The handshake counts against the first request's header deadline.
        Some(config) => {
            let handshake = Client::accept_tls(tcp, peer, config);
            match timeout_at(accepted + front.header_timeout, handshake).await {
                Ok(Ok(accepted)) => accepted,
                Ok(Err(e)) => return log::debug!("TLS handshake with {peer} failed: {e}"),
                Err(_elapsed) => return log::debug!("TLS handshake with {peer} timed out"),
            }
        }
    };
    let mut session = HttpSession::new(stream);
    let mut first = true;
    let mut pipelined = false;
    let mut remaining = KEEPALIVE_REQUEST_LIMIT;
    loop {
        // The first request's header must be whole `header_timeout` after the
        // connection opened; a later one's, after its first byte, which may take
        // `keepalive_timeout` to come. A connection that sends nothing in time
        // is closed without an answer. Until a byte comes, the connection holds
        // no read buffer.
        if !pipelined && !client.holds_unread() {
            let wait = async {
                if first {
                    timeout_at(accepted + front.header_timeout, client.sent_something()).await
                } else {
                    timeout_at(Instant::now() + front.keepalive_timeout, client.readable()).await
                }
            };
            tokio::select! {
                biased;
                ready = wait => {
                    if !matches!(ready, Ok(Ok(()))) {
                        return;
                    }
                }
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
        }
        let deadline = if first {
            accepted + front.header_timeout
        } else {
            Instant::now() + front.header_timeout
        };
        first = false;
        remaining -= 1;
        session.set_pipelining_enabled(true);
        session.set_keepalive_reuses_remaining(Some(remaining));
        // Deadlines are kept here, not by pingora's per-read keep-alive timer.
        session.set_server_keepalive(Some(0));
        client.cap_reads(front.max_header_bytes);
        let read = tokio::select! {
            biased;
            read = timeout_at(deadline, session.read_request()) => read,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        let refusal = match read {
            Ok(Ok(Some(size))) if size > front.max_header_bytes => Some(ErrorCode::HeadersTooLarge),
            Ok(Ok(Some(_))) => None,
            Ok(Ok(None)) => return,
            // Rarely, the socket said it was readable with nothing to read:
            // then nothing arrived, and the connection closes without a word.
            Err(_elapsed)
                if !pipelined && client.read_nothing_since_cap(front.max_header_bytes) =>
            {
                return;
            }
            Err(_elapsed) => Some(ErrorCode::HeaderTimeout),
            Ok(Err(_)) if client.reads_capped_out() => Some(ErrorCode::HeadersTooLarge),
            Ok(Err(e)) if e.etype() == &ErrorType::InvalidHTTPHeader => {
                log::debug!("malformed request from {peer}: {e}");
                Some(ErrorCode::BadRequest)
            }
            Ok(Err(e)) => return log::debug!("reading a request from {peer}: {e}"),
        };
        client.uncap_reads();
        if let Some(code) = refusal {
            // Boxed, as the rare paths below: their state need not sit in
            // every connection.
            Box::pin(gateway.refuse_header(&mut session, code)).await;
            drop(session);
            return Box::pin(client.linger(LINGER_TIME, LINGER_BYTES)).await;
        }
        if *shutdown.borrow() {
            session.set_server_keepalive(None);
        }
        gateway.serve(&mut session, &caller).await;
        let unread = !session.is_body_done();
        match session.reuse().await {
            Ok(Some(reusable)) => {
                let (stream, prefix) = reusable.into_parts();
                session = HttpSession::new(stream);
                pipelined = prefix.is_some();
                if let Some(prefix) = prefix {
                    session.set_pipelined_prefix(prefix);
                }
            }
            Ok(None) if unread => return Box::pin(client.linger(LINGER_TIME, LINGER_BYTES)).await,
            Ok(None) => return,
            Err(e) => return log::debug!("connection from {peer} not reusable: {e}"),
        }
    }
}
