//! The exchange, stage by stage: admit (route, 404/405, 413 on the declared
//! length, 100-continue), read the whole body, verify, then answer locally (an
//! error or a provider handshake) or forward what passed. Runs on pingora-core's
//! HTTP/1 session; [`crate::serve`] owns the connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v1::server::HttpSession as Session;

use crate::access_log::Entry;
use crate::admin::config_view::rfc3339;
use crate::body::{self, BodyError};
use crate::clock::Clock;
use crate::forward::{ForwardError, Forwarder};
use crate::handshake::{AnswerKeys, Handshake};
use crate::headers::{self, Forwarding};
use crate::limits::BodyReservation;
use crate::record::{self, Observers, Outcome, RequestRecord};
use crate::reject::ErrorCode;
use crate::reload::ConfigStore;
use crate::response::LocalResponse;
use crate::routes::{self, Match};
use crate::runtime::{Route, RuntimeConfig};
use crate::verify::mac::KeyedMac;
use crate::verify::request::{SignedRequest, UrlParts};
use crate::verify::{Rejection, Verified, Verifier, verify_any};

/// Room reserved for the upstream request's head besides the body.
const HEAD_CAPACITY: usize = 1024;

/// The webhook proxy.
#[derive(Debug)]
pub struct Gateway {
    store: ConfigStore,
    clock: Arc<dyn Clock>,
    forwarder: Forwarder,
    observers: Observers,
}

impl Gateway {
    /// A gateway serving the configs in `store`, checking time with `clock`, and
    /// reporting every request to `observers`.
    pub fn new(
        store: ConfigStore,
        clock: Arc<dyn Clock>,
        forwarder: Forwarder,
        observers: Observers,
    ) -> Self {
        Self {
            store,
            clock,
            forwarder,
            observers,
        }
    }
}

/// Who a request came from: the connection's address, and its IP as text
/// (written once per connection, sent upstream in `X-Forwarded-For`).
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's address.
    pub addr: SocketAddr,
    /// Its IP address, formatted.
    pub ip: String,
}

impl Client {
    /// The client at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            ip: addr.ip().to_string(),
        }
    }
}

/// A verified request waiting to be forwarded.
#[derive(Debug)]
struct Admitted<'c> {
    route: &'c Route,
    path_and_query: String,
    body: Bytes,
    verified: Verified,
    /// The body's share of `max_inflight_body_bytes`, held until it is sent.
    _reservation: BodyReservation,
}

/// What the request stages decided.
enum Decision<'c> {
    /// Answer locally; `close` when the body was not read.
    Respond {
        response: LocalResponse,
        outcome: Outcome,
        close: bool,
    },
    /// Forward upstream.
    Forward(Admitted<'c>),
    /// The client went away; nothing can be answered.
    Gone,
}

impl Decision<'_> {
    fn error(code: ErrorCode, close: bool) -> Self {
        Self::Respond {
            response: code.response(),
            outcome: Outcome::Error(code),
            close,
        }
    }
}

/// The verification outcome for a fully read body.
enum Judgement {
    Reject(Rejection),
    Answer(LocalResponse, Outcome),
    Forward(Verified),
}

impl Gateway {
    /// Serves the request whose header `session` has just read from `client`:
    /// decides, answers or forwards, then counts and logs it. The config is
    /// read once, so a reload never changes a request halfway.
    pub async fn serve(&self, session: &mut Session, client: &Client) {
        let _in_flight = self.observers.in_flight.enter();
        let mut record = RequestRecord::default();
        let config = self.store.snapshot();
        match self.decide(session, &config, &mut record).await {
            Decision::Respond {
                response,
                outcome,
                close,
            } => {
                record.outcome = outcome;
                if let Err(e) = write_local(session, &response, close).await {
                    log::debug!("cannot answer {}: {e}", client.addr);
                }
            }
            Decision::Forward(admitted) => {
                self.forward(session, admitted, client, &mut record).await;
            }
            Decision::Gone => session.set_server_keepalive(None),
        }
        self.log(session, &record, client);
    }

    /// Refuses a request whose header could not be read whole: malformed
    /// (400), too slow (408) or too large (431). The connection is closed after
    /// the answer. Counted with no route; there is no header to log.
    pub async fn refuse_header(&self, session: &mut Session, code: ErrorCode) {
        let record = RequestRecord {
            outcome: Outcome::Error(code),
            ..RequestRecord::default()
        };
        if let Err(e) = write_local(session, &code.response(), true).await {
            log::debug!("cannot answer a refused request header: {e}");
        }
        self.observers.metrics.record(&record);
    }

    /// Forwards a verified request and relays the upstream's answer; a failure
    /// before the answer began is answered 502 or 504, one after it cuts the
    /// connection.
    async fn forward(
        &self,
        session: &mut Session,
        admitted: Admitted<'_>,
        client: &Client,
        record: &mut RequestRecord,
    ) {
        let route = &admitted.route;
        let forwarding = Forwarding {
            route: &route.name,
            verified: &admitted.verified,
            client_ip: Some(&client.ip),
            strip: &route.strip_headers,
            upstream_authority: &route.upstream.authority,
            path_and_query: &admitted.path_and_query,
            body_len: admitted.body.len(),
        };
        let mut wire = BytesMut::with_capacity(HEAD_CAPACITY + admitted.body.len());
        if let Err(e) = headers::write_upstream_head(session.req_header(), &forwarding, &mut wire) {
            log::warn!("route {}: {e}", route.name);
            record.outcome = Outcome::Error(ErrorCode::BadRequest);
            if let Err(e) = write_local(session, &ErrorCode::BadRequest.response(), true).await {
                log::debug!("cannot answer {}: {e}", client.addr);
            }
            return;
        }
        wire.extend_from_slice(&admitted.body);
        let head_only = session.req_header().method == http::Method::HEAD;
        let started = Instant::now();
        let sent = self
            .forwarder
            .forward(
                session,
                &route.upstream,
                route.upstream_timeout,
                wire.freeze(),
                head_only,
            )
            .await;
        record.upstream_time = Some(started.elapsed());
        match sent {
            Ok(status) => {
                record.outcome = Outcome::Forwarded;
                record.upstream_status = Some(status);
            }
            Err(error) => {
                record.upstream_error = Some(error.kind());
                match error {
                    ForwardError::BeforeResponse(code, _, e) => {
                        log::warn!(
                            "route {}: upstream {} failed: {e}",
                            route.name,
                            route.upstream.addr
                        );
                        record.outcome = Outcome::Error(code);
                        if let Err(e) = write_local(session, &code.response(), false).await {
                            log::debug!("cannot answer {}: {e}", client.addr);
                        }
                    }
                    ForwardError::AfterResponse(e) => {
                        log::warn!(
                            "route {}: upstream {} broke off its response: {e}",
                            route.name,
                            route.upstream.addr
                        );
                        record.outcome = Outcome::Forwarded;
                        session.set_server_keepalive(None);
                        session.shutdown().await;
                    }
                }
            }
        }
    }

    /// Counts the request in the metrics and writes its access log line.
    fn log(&self, session: &Session, record: &RequestRecord, client: &Client) {
        self.observers.metrics.record(record);
        if !self.observers.access_log.is_on() {
            return;
        }
        let req = session.req_header();
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        self.observers.access_log.write(&Entry {
            time: rfc3339(std::time::SystemTime::now()),
            route: record.route.as_deref(),
            method: req.method.as_str(),
            path: req.uri.path(),
            status: session.response_written().map(|r| r.status.as_u16()),
            outcome: record.outcome.as_str(),
            reason: record.reason,
            scheme: record.scheme.as_deref(),
            secret_index: record.secret_index,
            event_id: record.event_id.as_deref(),
            body_bytes: record.body_bytes,
            duration_ms: ms(record.start.elapsed()),
            upstream_ms: record.upstream_time.map(ms),
            upstream_status: record.upstream_status,
            upstream_error: record.upstream_error.map(|e| e.as_str()),
            client: Some(client.addr.to_string()),
        });
    }
}

impl Gateway {
    /// Routes, reads, verifies and judges the request, noting in `record` what
    /// it learns on the way.
    async fn decide<'c>(
        &self,
        session: &mut Session,
        config: &'c RuntimeConfig,
        record: &mut RequestRecord,
    ) -> Decision<'c> {
        let req = session.req_header();
        let path = req.uri.path();
        if routes::has_dot_segment(path) {
            return Decision::error(ErrorCode::BadRequest, true);
        }
        let (route, remainder) = match config.routes.find(host_of(req), path, &req.method) {
            Match::Found { route, remainder } => (&**route, remainder.to_owned()),
            Match::NoRoute => return Decision::error(ErrorCode::NoRoute, true),
            Match::MethodNotAllowed(allowed) => {
                let response = ErrorCode::method_not_allowed(&allowed);
                return Decision::Respond {
                    response,
                    outcome: Outcome::Error(ErrorCode::MethodNotAllowed),
                    close: true,
                };
            }
        };
        record.route = Some(route.name.clone());
        let declared = body::content_length(session);
        if declared.is_some_and(|n| n > route.max_body_bytes as u64) {
            return Decision::error(ErrorCode::PayloadTooLarge, true);
        }
        // A declared body is reserved whole before any of it is read; a chunked
        // one reserves as it arrives.
        let Some(mut reservation) = self.observers.limits.reserve_body(declared.unwrap_or(0))
        else {
            log::warn!("route {}: body budget spent; answering 503", route.name);
            return Decision::error(ErrorCode::Overloaded, true);
        };
        if expects_continue(session.req_header()) && write_continue(session).await.is_err() {
            return Decision::Gone;
        }
        let read = body::read_bounded(
            session,
            route.max_body_bytes,
            route.read_timeout,
            &mut reservation,
        );
        let body = match read.await {
            Ok(body) => body,
            Err(BodyError::Overloaded) => {
                log::warn!("route {}: body budget spent; answering 503", route.name);
                return Decision::error(ErrorCode::Overloaded, true);
            }
            Err(BodyError::TooLarge) => {
                return Decision::error(ErrorCode::PayloadTooLarge, true);
            }
            Err(BodyError::Timeout) => return Decision::error(ErrorCode::BodyTimeout, true),
            Err(BodyError::Malformed(e)) => {
                log::debug!("route {}: unreadable body: {e}", route.name);
                return Decision::error(ErrorCode::BadRequest, true);
            }
            Err(BodyError::Disconnected(e)) => {
                log::debug!(
                    "route {}: the client left while sending its body: {e}",
                    route.name
                );
                return Decision::Gone;
            }
        };
        record.body_bytes = body.len();
        let req = session.req_header();
        match self.judge(req, route, &remainder, &body, record) {
            Judgement::Reject(rejection) => {
                log::info!("route {}: refused: {}", route.name, rejection.reason());
                record.reason = Some(rejection.reason());
                Decision::error(rejection.into(), false)
            }
            Judgement::Answer(response, outcome) => Decision::Respond {
                response,
                outcome,
                close: false,
            },
            Judgement::Forward(verified) => Decision::Forward(Admitted {
                path_and_query: route.upstream_path_and_query(
                    req.uri.path(),
                    &remainder,
                    req.uri.query(),
                ),
                route,
                body,
                verified,
                _reservation: reservation,
            }),
        }
    }

    /// Verifies a fully read request and decides between refusing, answering a
    /// handshake, and forwarding. Synchronous: the borrowed request view never
    /// lives across an await.
    fn judge(
        &self,
        req: &RequestHeader,
        route: &Route,
        remainder: &str,
        body: &[u8],
        record: &mut RequestRecord,
    ) -> Judgement {
        let url = UrlParts {
            public_url: route.public_url.as_deref(),
            remainder,
            host: host_of(req).unwrap_or_default(),
        };
        let path_and_query = (req.uri.path(), req.uri.query());
        let signed =
            SignedRequest::new(req.method.as_str(), path_and_query, &req.headers, body, url)
                .with_json_members(&route.json_members);
        // Handshakes whose requests are not signed are answered before verification.
        let unverified = handshakes(route).find(|(h, _)| !h.verify_first && h.matches(&signed));
        if let Some((handshake, verifier)) = unverified {
            let mac = verifier.and_then(|v| v.mac_key(0));
            return answer(route, handshake, &signed, mac);
        }
        let verified = match verify_any(&route.verifiers, &signed, self.clock.now_unix()) {
            Ok(verified) => verified,
            Err(rejection) => return Judgement::Reject(rejection),
        };
        record.scheme = Some(verified.scheme().name.clone());
        record.secret_index = Some(verified.secret_index());
        record.event_id = verified.id().map(record::bounded);
        let matched = &route.verifiers[verified.verifier_index()];
        let own = verified.scheme().handshakes.iter().chain(&route.handshakes);
        match own.filter(|h| h.verify_first).find(|h| h.matches(&signed)) {
            Some(handshake) => answer(
                route,
                handshake,
                &signed,
                matched.mac_key(verified.secret_index()),
            ),
            None => Judgement::Forward(verified),
        }
    }
}

/// Every handshake a route answers, with the verifier whose key `{hmac:…}` uses:
/// its schemes' handshakes, then its own (which use its first verifier).
fn handshakes(route: &Route) -> impl Iterator<Item = (&Handshake, Option<&Verifier>)> {
    let schemes = route
        .verifiers
        .iter()
        .flat_map(|v| v.scheme().handshakes.iter().map(move |h| (h, Some(v))));
    schemes.chain(
        route
            .handshakes
            .iter()
            .map(|h| (h, route.verifiers.first())),
    )
}

fn answer(
    route: &Route,
    handshake: &Handshake,
    signed: &SignedRequest<'_>,
    mac: Option<&KeyedMac>,
) -> Judgement {
    let keys = AnswerKeys {
        verify_token: route.verify_token.as_ref(),
        mac,
    };
    match handshake.answer(signed, keys) {
        Ok(response) => Judgement::Answer(response, Outcome::Handshake),
        Err(error) => {
            log::info!("route {}: {error}", route.name);
            let code = ErrorCode::from(&error);
            Judgement::Answer(code.response(), Outcome::Error(code))
        }
    }
}

/// The host the client addressed: the `Host` header, or the authority of an
/// absolute-form request target.
fn host_of(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

fn expects_continue(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && req
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Writes `100 Continue`. pingora closes a connection that is answered before
/// its body was read; a 100 always is, and must cost neither the keep-alive
/// nor the requests the client pipelined after its body.
async fn write_continue(session: &mut Session) -> pingora::Result<()> {
    session.set_close_on_response_before_downstream_finish(false);
    let written = session.write_continue_response().await;
    session.set_close_on_response_before_downstream_finish(true);
    written
}

/// Writes a gateway-made response. `close` ends the connection afterwards, for
/// answers given before the body was read.
async fn write_local(
    session: &mut Session,
    response: &LocalResponse,
    close: bool,
) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(response.status, Some(3 + response.headers.len()))?;
    if let Some(content_type) = &response.content_type {
        header.insert_header(http::header::CONTENT_TYPE, content_type.as_str())?;
    }
    header.insert_header(http::header::CONTENT_LENGTH, response.body.len())?;
    for (name, value) in &response.headers {
        header.insert_header(name.clone(), value.as_str())?;
    }
    if close {
        session.set_server_keepalive(None);
    }
    session.write_response_header(Box::new(header)).await?;
    session.write_body(&response.body).await?;
    session.finish_body().await.map(drop)
}
