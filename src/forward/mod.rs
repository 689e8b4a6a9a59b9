//! Forwarding a verified request upstream and relaying the response unchanged.
//! Runs only after the whole body was read and verified, so any body size works
//! and nothing unverified reaches the upstream. Connections come from the
//! worker thread's own [`pool`], and the request header and body leave in one
//! write.

pub mod pool;

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use pingora::connectors::TransportConnector;
use pingora::protocols::Stream;
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{WrappedX509, parse_x509};
use pingora::{Error, ErrorType};
use tokio::io::AsyncWriteExt;

use crate::headers::RESPONSE_HOP_BY_HOP;
use crate::observe::record::UpstreamError;
use crate::reject::ErrorCode;

/// Where a route forwards to, resolved and built at load time so forwarding
/// never does DNS or parses certificates.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The connection target: address, TLS and SNI, timeouts, trusted CAs
    /// (shared by the routes with the same upstream).
    pub peer: SharedPeer,
    /// Which idle connections can be reused for it (see [`pool::key`]).
    pub pool_key: u64,
    /// Resolved address.
    pub addr: SocketAddr,
    /// Whether to speak TLS.
    pub tls: bool,
    /// `host[:port]` as written, sent as `Host`.
    pub authority: Box<str>,
    /// Path that replaces the matched path, when the URL has one.
    pub path: Option<Box<str>>,
    /// Query to prepend to the request's query, when the URL has one.
    pub query: Option<Box<str>>,
    /// The URL as written.
    pub url: Box<str>,
}

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

/// An upstream exchange whose final response header has arrived, and
/// nothing of it has gone to the client yet.
pub struct Answered {
    up: UpstreamSession,
    status: u16,
    pool_key: u64,
}

impl Answered {
    /// The upstream's status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The upstream's `Retry-After` in seconds from now, given as seconds or
    /// as an HTTP-date.
    pub fn retry_after(&self) -> Option<u64> {
        let header = self.up.resp_header()?;
        let value = header.headers.get(http::header::RETRY_AFTER)?;
        retry_after_secs(value.to_str().ok()?, SystemTime::now())
    }
}

/// A `Retry-After` value in seconds from `now`: a number of seconds, or an
/// HTTP-date (a date past is 0), rounded up.
fn retry_after_secs(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse() {
        return Some(seconds);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).unwrap_or_default();
    Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
}

impl std::fmt::Debug for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answered")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Sends verified requests upstream.
pub struct Forwarder {
    connector: TransportConnector,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Forwarder")
    }
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarder {
    /// A forwarder opening new connections (TCP, TLS) with pingora's connector.
    pub fn new() -> Self {
        Self {
            connector: TransportConnector::new(None),
        }
    }

    /// Sends `request` (head and body, as written by
    /// [`crate::headers::write_upstream_head`]) to `target` and reads the
    /// upstream's final response header; [`Forwarder::relay`] then passes the
    /// response on. Between the two the caller knows the upstream's status
    /// and nothing has gone to the client.
    pub async fn send(
        &self,
        target: &Upstream,
        timeout: Duration,
        request: Bytes,
    ) -> Result<Answered, ForwardError> {
        let up = self.exchange(target, timeout, &request).await?;
        let Some(status) = up.resp_header().map(|h| h.status.as_u16()) else {
            let e = Error::explain(
                ErrorType::InvalidHTTPHeader,
                "upstream sent no response header",
            );
            return Err(before(e));
        };
        Ok(Answered {
            up,
            status,
            pool_key: target.pool_key,
        })
    }

    /// Relays an answered upstream's response to the client; `head_only` for a
    /// `HEAD` request, whose response has no body whatever its framing says.
    /// Returns the upstream's status; the connection goes back to the pool
    /// when it can be reused.
    pub async fn relay(
        &self,
        session: &mut HttpSession,
        answered: Answered,
        head_only: bool,
    ) -> Result<u16, ForwardError> {
        let Answered {
            mut up, pool_key, ..
        } = answered;
        let status = relay(session, &mut up, head_only).await?;
        if head_only {
            // What follows a response to HEAD is not known; never reuse it.
            up.shutdown().await;
            return Ok(status);
        }
        up.respect_keepalive();
        if let Some(stream) = up.reuse().await {
            pool::put(pool_key, stream);
        }
        Ok(status)
    }

    /// Reads and drops an answered upstream's response body (an async
    /// delivery needs only the status); the connection goes back to the pool
    /// when it can be reused. A body past `limit` bytes closes it instead, as
    /// does the answer to a `HEAD` request (`head_only`), whose framing says
    /// nothing of what follows.
    pub async fn discard(&self, answered: Answered, limit: usize, head_only: bool) {
        let Answered {
            mut up, pool_key, ..
        } = answered;
        if head_only {
            up.shutdown().await;
            return;
        }
        let mut read = 0usize;
        loop {
            match up.read_body_ref().await {
                Ok(Some(chunk)) => {
                    read = read.saturating_add(chunk.len());
                    if read > limit {
                        up.shutdown().await;
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        up.respect_keepalive();
        if let Some(stream) = up.reuse().await {
            pool::put(pool_key, stream);
        }
    }

    /// Writes the request and reads the final response header. A pooled
    /// connection that fails before any response (the upstream closed it while
    /// idle) is retried once on a new one.
    async fn exchange(
        &self,
        target: &Upstream,
        timeout: Duration,
        request: &Bytes,
    ) -> Result<UpstreamSession, ForwardError> {
        let mut retried = false;
        loop {
            let pooled = if retried {
                None
            } else {
                pool::take(target.pool_key)
            };
            let reused = pooled.is_some();
            let stream = match pooled {
                Some(stream) => stream,
                // Boxed: connecting (TLS included) needs far more state than
                // the reuse of a pooled connection every exchange would carry.
                None => Box::pin(self.connector.new_stream(&*target.peer))
                    .await
                    .map_err(before)?,
            };
            match tokio::time::timeout(timeout, send(stream, request, timeout, reused)).await {
                Ok(Ok(up)) => return Ok(up),
                Ok(Err((e, Began::No))) if reused && !is_timeout(&e) => {
                    log::debug!("pooled upstream connection failed ({e}); retrying on a new one");
                    pool::discard(target.pool_key);
                    retried = true;
                }
                Ok(Err((e, _))) => return Err(before(e)),
                Err(_elapsed) => {
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

/// Whether the upstream began to answer before an exchange failed. Only a
/// request it never began to answer may be sent again: one it did answer, if
/// only in part, it has received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Began {
    No,
    Maybe,
}

/// Sends the request on `stream` in one write and reads the final (non-1xx)
/// response header. On a `reused` connection, whether the upstream began to
/// answer is told by the first byte (peeked, where the stream allows: TCP),
/// else by the failure: anything but a connection that broke (garbage) or
/// after a 1xx.
async fn send(
    mut stream: Stream,
    request: &[u8],
    timeout: Duration,
    reused: bool,
) -> Result<UpstreamSession, (Box<Error>, Began)> {
    let write = |e| {
        (
            Error::because(ErrorType::WriteError, "sending the request", e),
            Began::No,
        )
    };
    stream.write_all(request).await.map_err(write)?;
    stream.flush().await.map_err(write)?;
    let mut peeked = false;
    if reused {
        match stream.try_peek(&mut [0]).await {
            Ok(supported) => peeked = supported,
            Err(e) => {
                let e = Error::because(ErrorType::ReadError, "awaiting the response", e);
                return Err((e, Began::No));
            }
        }
    }
    let answered = |e: Box<Error>, informational: bool| {
        let broke = matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        );
        let answered = if peeked || informational || !broke {
            Began::Maybe
        } else {
            Began::No
        };
        (e, answered)
    };
    // The caller's deadline bounds the wait for the header (a runtime-local
    // timer); pingora's own per-read timer, shared by every thread, bounds
    // each read of the body after it.
    let mut up = UpstreamSession::new(stream);
    up.read_response().await.map_err(|e| answered(e, false))?;
    while up
        .resp_header()
        .is_some_and(|h| h.status.is_informational())
    {
        up.read_response().await.map_err(|e| answered(e, true))?;
    }
    up.read_timeout = Some(timeout);
    up.write_timeout = Some(timeout);
    Ok(up)
}

/// CA certificates trusted instead of the system's (a private CA), parsed once
/// and shared by every route that trusts them.
#[derive(Debug, Clone)]
pub struct TrustedCas {
    certs: Arc<[WrappedX509]>,
    /// A digest of the certificates, so connections verified under other ones
    /// are never reused for these (see [`pool::key`]).
    digest: u64,
}

impl TrustedCas {
    /// Parses DER certificates.
    pub fn new(der: &[Vec<u8>]) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        der.hash(&mut hasher);
        Self {
            certs: der
                .iter()
                .map(|der| WrappedX509::new(der.clone(), parse_x509))
                .collect(),
            digest: hasher.finish(),
        }
    }

    /// The digest of the certificates.
    pub fn digest(&self) -> u64 {
        self.digest
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
    options.idle_timeout = Some(pool::IDLE_TIMEOUT);
    options.ca = ca.map(|ca| Arc::clone(&ca.certs));
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

/// Streams the upstream's response to the client (only its header for `HEAD`).
async fn relay(
    session: &mut HttpSession,
    up: &mut UpstreamSession,
    head_only: bool,
) -> Result<u16, ForwardError> {
    let Some(header) = up.resp_header() else {
        let e = Error::explain(
            ErrorType::InvalidHTTPHeader,
            "upstream sent no response header",
        );
        return Err(before(e));
    };
    let mut response = Box::new(header.clone());
    for name in RESPONSE_HOP_BY_HOP {
        response.remove_header(name);
    }
    let status = response.status.as_u16();
    session
        .write_response_header(response)
        .await
        .map_err(ForwardError::AfterResponse)?;
    if !head_only {
        while let Some(chunk) = up
            .read_body_ref()
            .await
            .map_err(ForwardError::AfterResponse)?
        {
            session
                .write_body(chunk)
                .await
                .map_err(ForwardError::AfterResponse)?;
        }
    }
    session
        .finish_body()
        .await
        .map_err(ForwardError::AfterResponse)?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::retry_after_secs;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777.
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777 - 90);
        assert_eq!(retry_after_secs(" 120 ", now), Some(120));
        assert_eq!(
            retry_after_secs("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(90)
        );
        let past = now + Duration::from_secs(1000);
        assert_eq!(
            retry_after_secs("Sun, 06 Nov 1994 08:49:37 GMT", past),
            Some(0)
        );
        let almost = now + Duration::from_millis(500);
        assert_eq!(
            retry_after_secs("Sun, 06 Nov 1994 08:49:37 GMT", almost),
            Some(90)
        );
        assert_eq!(retry_after_secs("soon", now), None);
        assert_eq!(retry_after_secs("-5", now), None);
    }
}
