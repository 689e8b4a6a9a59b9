//! Forwarding a verified request with pingora's `Connector` (connection pool,
//! TLS) and relaying the upstream's response unchanged. Runs only after the
//! whole body was read and verified, so any body size works and nothing
//! unverified reaches the upstream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::utils::tls::{WrappedX509, parse_x509};
use pingora::{Error, ErrorType};

use crate::headers::RESPONSE_HOP_BY_HOP;
use crate::record::UpstreamError;
use crate::reject::ErrorCode;
use crate::runtime::Upstream;

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why forwarding failed.
#[derive(Debug)]
pub enum ForwardError {
    /// Nothing has gone to the client yet: answer with this code.
    BeforeResponse(ErrorCode, UpstreamError, Box<Error>),
    /// The upstream's response header already went to the client; the connection
    /// must be cut so the client sees a broken response, never a complete one.
    AfterResponse(Box<Error>),
}

impl ForwardError {
    /// What went wrong, as a metric label.
    pub fn kind(&self) -> UpstreamError {
        match self {
            Self::BeforeResponse(_, kind, _) => *kind,
            Self::AfterResponse(_) => UpstreamError::AbortedMidResponse,
        }
    }
}

/// Sends verified requests upstream.
pub struct Forwarder {
    connector: Connector,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Forwarder")
    }
}

impl Forwarder {
    /// Wraps a connector (which owns the upstream connection pool).
    pub fn new(connector: Connector) -> Self {
        Self { connector }
    }

    /// Sends `request` and `body` to `upstream` and relays the response to the
    /// client. Returns the upstream's status.
    pub async fn forward(
        &self,
        session: &mut Session,
        upstream: &Upstream,
        timeout: Duration,
        request: RequestHeader,
        body: Bytes,
    ) -> Result<u16, ForwardError> {
        let peer: &HttpPeer = &upstream.peer;
        let mut up = self.exchange(peer, timeout, &request, &body).await?;
        let status = relay(session, &mut up).await?;
        if up.response_done() {
            self.connector
                .release_http_session(up, peer, peer.idle_timeout())
                .await;
        } else {
            up.shutdown().await;
        }
        Ok(status)
    }

    /// Writes the request and reads the final response header. A pooled connection
    /// that fails before any response (the upstream closed it while idle) is retried
    /// once on a fresh one.
    async fn exchange(
        &self,
        peer: &HttpPeer,
        timeout: Duration,
        request: &RequestHeader,
        body: &Bytes,
    ) -> Result<HttpSession, ForwardError> {
        let mut retried = false;
        loop {
            let (mut up, reused) = self
                .connector
                .get_http_session(peer)
                .await
                .map_err(before)?;
            up.set_read_timeout(Some(timeout));
            up.set_write_timeout(Some(timeout));
            let attempt = async {
                up.write_request_header(Box::new(request.clone())).await?;
                up.write_request_body(body.clone(), true).await?;
                up.finish_request_body().await?;
                up.read_response_header().await?;
                while up
                    .response_header()
                    .is_some_and(|h| h.status.is_informational())
                {
                    up.read_response_header().await?;
                }
                Ok::<(), Box<Error>>(())
            };
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(())) => return Ok(up),
                Ok(Err(e)) if reused && !retried && !is_timeout(&e) => {
                    log::debug!("pooled upstream connection failed ({e}); retrying on a new one");
                    retried = true;
                    up.shutdown().await;
                }
                Ok(Err(e)) => return Err(before(e)),
                Err(_elapsed) => {
                    up.shutdown().await;
                    let e = Error::explain(ErrorType::ReadTimedout, "no upstream response in time");
                    return Err(ForwardError::BeforeResponse(
                        ErrorCode::UpstreamTimeout,
                        UpstreamError::Timeout,
                        e,
                    ));
                }
            }
        }
    }
}

/// CA certificates trusted instead of the system's (a private CA), parsed once
/// and shared by every route that trusts them.
#[derive(Debug, Clone)]
pub struct TrustedCas(Arc<[WrappedX509]>);

impl TrustedCas {
    /// Parses DER certificates.
    pub fn new(der: &[Vec<u8>]) -> Self {
        Self(
            der.iter()
                .map(|der| WrappedX509::new(der.clone(), parse_x509))
                .collect(),
        )
    }
}

/// A connection target, shared by the routes that go to the same upstream.
pub type SharedPeer = Arc<HttpPeer>;

/// Builds the connection target for an upstream: `sni` is its host name, `ca`
/// the certificates to trust instead of the system's.
pub fn peer(
    addr: SocketAddr,
    tls: bool,
    sni: &str,
    timeout: Duration,
    ca: Option<&TrustedCas>,
) -> SharedPeer {
    let mut peer = HttpPeer::new(addr, tls, sni.to_owned());
    let options = &mut peer.options;
    options.connection_timeout = Some(timeout);
    options.total_connection_timeout = Some(timeout);
    options.read_timeout = Some(timeout);
    options.write_timeout = Some(timeout);
    options.idle_timeout = Some(POOL_IDLE_TIMEOUT);
    options.ca = ca.map(|ca| Arc::clone(&ca.0));
    Arc::new(peer)
}

fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}

/// A failure before anything reached the client: timeouts are 504, everything else
/// (refused, unreachable, reset, garbage) is 502.
fn before(e: Box<Error>) -> ForwardError {
    let code = if is_timeout(&e) {
        ErrorCode::UpstreamTimeout
    } else {
        ErrorCode::UpstreamUnavailable
    };
    let kind = match e.etype() {
        ErrorType::ConnectRefused => UpstreamError::Refused,
        ErrorType::ConnectTimedout => UpstreamError::ConnectTimeout,
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => UpstreamError::Timeout,
        ErrorType::TLSWantX509Lookup
        | ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => UpstreamError::Tls,
        _ => UpstreamError::Broken,
    };
    ForwardError::BeforeResponse(code, kind, e)
}

/// Streams the upstream's response to the client.
async fn relay(session: &mut Session, up: &mut HttpSession) -> Result<u16, ForwardError> {
    let mut response = match up.response_header() {
        Some(h) => h.clone(),
        None => {
            let e = Error::explain(
                ErrorType::InvalidHTTPHeader,
                "upstream sent no response header",
            );
            return Err(before(e));
        }
    };
    for name in RESPONSE_HOP_BY_HOP {
        response.remove_header(name);
    }
    let status = response.status.as_u16();
    let done = up.response_done();
    session
        .write_response_header(Box::new(response), done)
        .await
        .map_err(ForwardError::AfterResponse)?;
    if !done {
        while let Some(chunk) = up
            .read_response_body()
            .await
            .map_err(ForwardError::AfterResponse)?
        {
            session
                .write_response_body(Some(chunk), false)
                .await
                .map_err(ForwardError::AfterResponse)?;
        }
        session
            .write_response_body(None, true)
            .await
            .map_err(ForwardError::AfterResponse)?;
    }
    Ok(status)
}
