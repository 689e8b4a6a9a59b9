//! The exchange, stage by stage: admit (route, 404/405, the route's policy:
//! `allow_ips`, rate limit, `require_headers`; 413 on the declared length,
//! 100-continue), read the whole body, verify (or, in monitor mode, judge and
//! forward anyway), dedup, then answer locally (an error, a provider
//! handshake, a duplicate), or forward what passed and settle its dedup claim,
//! or, on an async route, enqueue it in the [`crate::spool`] and answer 202.
//! Runs on pingora-core's HTTP/1 session; [`crate::serve`] owns the connections.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v1::server::HttpSession as Session;

use crate::admin::config_view::rfc3339;
use crate::body::{self, BodyError, Pace};
use crate::clock::Clock;
use crate::forward::{ForwardError, Forwarder};
use crate::handshake::AnswerKeys;
use crate::headers::{self, Forwarding, Resign, Verdict};
use crate::keys::{KeyError, KeyStore};
use crate::mac::KeyedMac;
use crate::observe::Observers;
use crate::observe::access_log::Entry;
use crate::observe::limits::{BodyReservation, Spent};
use crate::observe::record::{self, Dedup, Outcome, RequestRecord};
use crate::policy::{self, HeaderRefusal, OnStateError, Policy};
use crate::reject::ErrorCode;
use crate::response::{LocalResponse, NOSNIFF};
use crate::routes::Route;
use crate::routes::{self, Match};
use crate::runtime::ConfigStore;
use crate::runtime::RuntimeConfig;
use crate::scheme::handshake::Handshake;
use crate::scheme::remote::HttpsUrl;
use crate::spool::request::StoredRequest;
use crate::spool::{self, DeliveryId, KeptClaim, Refused, Spool};
use crate::state::{self, Claim, DedupKey, Hold, Rate, State};
use crate::verify::remote::RemoteKeys;
use crate::verify::request::{SignedRequest, UrlParts};
use crate::verify::{KeyNeed, Rejection, Verified, Verifier, verify_any_with_keys};

/// Room reserved for the upstream request's head besides the body.
const HEAD_CAPACITY: usize = 1024;

/// How much longer than `upstream_timeout_ms` a dedup claim lasts: it is
/// settled when the exchange ends, so this only matters if the gateway dies
/// holding it.
const CLAIM_MARGIN: Duration = Duration::from_secs(30);

/// The webhook proxy.
#[derive(Debug)]
pub struct Gateway {
    store: ConfigStore,
    clock: Arc<dyn Clock>,
    forwarder: Forwarder,
    state: State,
    spool: Spool,
    observers: Observers,
    keys: KeyStore,
}

impl Gateway {
    /// A gateway serving the configs in `store`, checking time with `clock`,
    /// keeping dedup claims and rate limits in `state`, async routes'
    /// requests in `spool`, and reporting every request to `observers`.
    pub fn new(
        store: ConfigStore,
        clock: Arc<dyn Clock>,
        forwarder: Forwarder,
        (state, spool): (State, Spool),
        observers: Observers,
    ) -> Self {
        Self {
            store,
            clock,
            forwarder,
            state,
            spool,
            keys: KeyStore::new(observers.metrics.clone()),
            observers,
        }
    }
}

/// Who a request came from: the connection's address, its IP as text
/// (written once per connection, sent upstream in `X-Forwarded-For`), and
/// whether it spoke TLS (`X-Forwarded-Proto`).
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's address as accepted: an IPv4 client of a dual-stack
    /// listener is its IPv4 address, never `::ffff:a.b.c.d`.
    pub addr: SocketAddr,
    /// Its IP address, formatted.
    pub ip: String,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl Client {
    /// The client at `addr`, over TLS or not.
    pub fn new(addr: SocketAddr, tls: bool) -> Self {
        Self {
            addr,
            ip: addr.ip().to_string(),
            tls,
        }
    }
}

/// A request waiting to be forwarded.
#[derive(Debug)]
struct Admitted<'c> {
    route: &'c Route,
    /// What of the path is past the route's path rule.
    remainder: String,
    path_and_query: String,
    body: Bytes,
    passed: Passed,
    /// The `X-Forwarded-For` chain a trusted proxy vouched for, from the client
    /// on, the peer appended; `None` when the peer is the client.
    forwarded_for: Option<String>,
    /// The body's share of `max_inflight_body_bytes`, held until it is sent.
    _reservation: BodyReservation,
}

/// Why a request may be forwarded.
#[derive(Debug)]
enum Passed {
    /// It verified.
    Verified(Verified),
    /// Monitor mode: it failed verification, for this reason.
    Failed(&'static str),
}

/// What the request stages decided.
#[expect(
    clippy::large_enum_variant,
    reason = "made once per request and moved up one call; boxing would add an allocation to every forwarded request"
)]
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
    /// A verified subscription confirmation (AWS SNS): fetch the URL, answer.
    Confirm(HttpsUrl),
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
        match self.decide(session, &config, client, &mut record).await {
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
                self.deliver(session, admitted, client, &mut record).await;
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

    /// Delivers an admitted request: on a dedup route, claims its event first
    /// (one delivered, or stored for async delivery, is answered `duplicate`;
    /// one in flight 409), then
    /// forwards it (marking the event delivered on an upstream 2xx, else
    /// releasing it) or, on an async route, enqueues it (the claim is kept
    /// until the deliverer settles it).
    async fn deliver(
        &self,
        session: &mut Session,
        admitted: Admitted<'_>,
        client: &Client,
        record: &mut RequestRecord,
    ) {
        let route = admitted.route;
        let policy = route.policy.as_deref();
        let (Some(ttl), Passed::Verified(verified)) =
            (policy.and_then(|p| p.dedup), &admitted.passed)
        else {
            return self.hand_on(session, admitted, client, record, None).await;
        };
        let id = verified
            .id()
            .map_or_else(|| headers::content_id(&admitted.body), str::to_owned);
        let key = DedupKey::new(&route.name, &id);
        // An async route's claim lasts as long as its delivery may.
        let lasts = route
            .delivery
            .as_ref()
            .map_or(route.upstream_timeout, |p| p.max_age);
        let hold = match self.state.claim(key, lasts + CLAIM_MARGIN).await {
            Ok(Claim::Claimed(hold)) => {
                record.dedup = Some(Dedup::Claimed);
                Some(hold)
            }
            Ok(Claim::Delivered) => {
                record.dedup = Some(Dedup::Duplicate);
                return self
                    .answer(session, record, duplicate(), Outcome::Duplicate, client)
                    .await;
            }
            Ok(Claim::InFlight { retry_after }) => {
                record.dedup = Some(Dedup::InProgress);
                let code = ErrorCode::DeliveryInProgress;
                let response = code.retry_after(retry_after);
                return self
                    .answer(session, record, response, Outcome::Error(code), client)
                    .await;
            }
            Err(e) => {
                record.state_error = Some(e.op);
                if policy.is_some_and(|p| p.on_state_error == OnStateError::Closed) {
                    let code = ErrorCode::StateUnavailable;
                    return self.refuse(session, record, code, client).await;
                }
                record.dedup = Some(Dedup::Bypassed);
                None
            }
        };
        let settle = hold.map(|hold| (hold, ttl));
        self.hand_on(session, admitted, client, record, settle)
            .await;
    }

    /// The last stage: an async route's request is enqueued, any other forwarded.
    async fn hand_on(
        &self,
        session: &mut Session,
        admitted: Admitted<'_>,
        client: &Client,
        record: &mut RequestRecord,
        settle: Option<(Hold, Duration)>,
    ) {
        if admitted.route.delivery.is_some() {
            self.enqueue(session, admitted, client, record, settle)
                .await;
        } else {
            self.forward(session, admitted, client, record, settle)
                .await;
        }
    }

    /// Stores an async route's request as it would be forwarded (without
    /// `Host`, which the route's upstream gives at each attempt) and answers
    /// 202 `{"status":"accepted","id":ID}` once it is durable; 503
    /// `spool_full` when it cannot be stored. A dedup claim is kept with it,
    /// marked stored before the 202.
    async fn enqueue(
        &self,
        session: &mut Session,
        admitted: Admitted<'_>,
        client: &Client,
        record: &mut RequestRecord,
        settle: Option<(Hold, Duration)>,
    ) {
        let route = admitted.route;
        let req = session.req_header();
        let mut block = BytesMut::with_capacity(HEAD_CAPACITY);
        // Re-signed at each attempt, with the time of that attempt.
        let forwarding = Forwarding {
            resign: None,
            ..self.forwarding(&admitted, client)
        };
        headers::write_forwarded_headers(req, &forwarding, &mut block);
        let mut line = BytesMut::new();
        if let Err(e) =
            headers::write_request_line(req.method.as_str(), &admitted.path_and_query, &mut line)
        {
            log::warn!("route {}: {e}", route.name);
            return self
                .refuse(session, record, ErrorCode::BadRequest, client)
                .await;
        }
        let stored = StoredRequest {
            method: req.method.as_str().to_owned(),
            path: req.uri.path().to_owned(),
            remainder: admitted.remainder.clone(),
            query: req.uri.query().map(str::to_owned),
            headers: block.to_vec(),
            body: admitted.body.clone(),
        };
        let event_id = match &admitted.passed {
            Passed::Verified(verified) => verified.id().map(record::bounded),
            Passed::Failed(_) => None,
        };
        let claim = settle.as_ref().map(|(hold, ttl)| KeptClaim {
            key: hold.key().as_str().to_owned(),
            token: hold.token(),
            ttl_secs: ttl.as_secs(),
        });
        let (response, outcome) = match self
            .spool
            .enqueue(&route.name, event_id, claim, &stored)
            .await
        {
            Ok(id) => {
                // The delivery holds the claim now; the deliverer settles it.
                // Marked before the 202: a copy from then on is a duplicate.
                if let Some((hold, _)) = settle
                    && let Err(e) = hold.stored().await
                {
                    record.state_error = Some(e.op);
                }
                (accepted(id), Outcome::Accepted)
            }
            Err(refused) => {
                let name = &route.name;
                let code = match refused {
                    Refused::Full => {
                        if let Some(more) = spool::LOG.check(&format!("{name}: spool full")) {
                            log::warn!("route {name}: the spool is full{more}");
                        }
                        ErrorCode::SpoolFull
                    }
                    Refused::Failed(e) => {
                        if let Some(more) = spool::LOG.check(&format!("{name}: spool failed")) {
                            log::error!("route {name}: {e}{more}");
                        }
                        ErrorCode::SpoolFull
                    }
                    Refused::Unavailable(e) => {
                        if let Some(more) = spool::LOG.check(&format!("{name}: spool unavailable"))
                        {
                            log::error!("route {name}: {e}{more}");
                        }
                        ErrorCode::StateUnavailable
                    }
                };
                // Dropping the claim releases it, so the provider's retry goes through.
                drop(settle);
                (code.response(), Outcome::Error(code))
            }
        };
        self.answer(session, record, response, outcome, client)
            .await;
    }

    /// What the upstream request is built from besides the client's headers.
    fn forwarding<'a>(&self, admitted: &'a Admitted<'_>, client: &'a Client) -> Forwarding<'a> {
        let route = admitted.route;
        let verdict = match &admitted.passed {
            Passed::Verified(verified) => Verdict::Verified(verified),
            Passed::Failed(reason) => Verdict::Failed(reason),
        };
        let resign = route
            .policy
            .as_ref()
            .and_then(|p| p.forward_signature.as_ref())
            .map(|f| Resign {
                key: &f.key,
                now: self.clock.now_unix(),
            });
        Forwarding {
            route: &route.name,
            verdict,
            resign,
            client_ip: Some(admitted.forwarded_for.as_deref().unwrap_or(&client.ip)),
            tls: client.tls,
            strip: &route.strip_headers,
            upstream_authority: &route.upstream.authority,
            path_and_query: &admitted.path_and_query,
            body: &admitted.body,
        }
    }

    /// Answers a request whose body was read with an error.
    async fn refuse(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
        code: ErrorCode,
        client: &Client,
    ) {
        self.answer(
            session,
            record,
            code.response(),
            Outcome::Error(code),
            client,
        )
        .await;
    }

    /// Writes a gateway-made answer to a request whose body was read.
    async fn answer(
        &self,
        session: &mut Session,
        record: &mut RequestRecord,
        response: LocalResponse,
        outcome: Outcome,
        client: &Client,
    ) {
        record.outcome = outcome;
        if let Err(e) = write_local(session, &response, false).await {
            log::debug!("cannot answer {}: {e}", client.addr);
        }
    }

    /// Forwards a request and relays the upstream's answer; a failure before
    /// the answer began is answered 502 or 504, one after it cuts the
    /// connection. A dedup claim in `settle` is settled as soon as the
    /// upstream's status is known, before the client hears anything: marked
    /// delivered (for the given time) on a 2xx, the app's acknowledgement,
    /// else released.
    async fn forward(
        &self,
        session: &mut Session,
        admitted: Admitted<'_>,
        client: &Client,
        record: &mut RequestRecord,
        settle: Option<(Hold, Duration)>,
    ) {
        let route = &admitted.route;
        let forwarding = self.forwarding(&admitted, client);
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
        let answered = self
            .forwarder
            .send(&route.upstream, route.upstream_timeout, wire.freeze())
            .await;
        if let Some((hold, ttl)) = settle {
            let settled = match &answered {
                Ok(a) if (200..300).contains(&a.status()) => hold.delivered(ttl).await,
                _ => hold.release().await,
            };
            if let Err(e) = settled {
                record.state_error = Some(e.op);
            }
        }
        let sent = match answered {
            Ok(answered) => self.forwarder.relay(session, answered, head_only).await,
            Err(e) => Err(e),
        };
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
                        self.refuse(session, record, code, client).await;
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
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
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
            forwarded_for: record
                .client_ip
                .filter(|ip| *ip != client.addr.ip())
                .map(|ip| ip.to_string()),
            verification: record.monitor_failed.then_some("failed"),
            dedup: record.dedup.map(Dedup::as_str),
            state_error: record.state_error,
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
        client: &Client,
        record: &mut RequestRecord,
    ) -> Decision<'c> {
        let req = session.req_header();
        let path = req.uri.path();
        if routes::has_dot_segment(path) {
            return Decision::error(ErrorCode::BadRequest, true);
        }
        if body::declares_both_lengths(session) {
            log::debug!(
                "refused a request from {} with both Content-Length and Transfer-Encoding",
                client.addr
            );
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
        let peer = client.addr.ip();
        let client_ip = policy::client_ip(peer, &req.headers, &config.trusted_proxies);
        record.client_ip = Some(client_ip);
        if let Some(policy) = route.policy.as_deref()
            && let Err(refusal) = self
                .admit(session.req_header(), route, policy, client_ip)
                .await
        {
            return refusal;
        }
        let declared = body::content_length(session);
        if declared.is_some_and(|n| n > route.max_body_bytes as u64) {
            return Decision::error(ErrorCode::PayloadTooLarge, true);
        }
        // A declared body is reserved whole before any of it is read; a chunked
        // one reserves as it arrives. Each counts in its client's share.
        let limits = &self.observers.limits;
        let mut reservation = match limits.reserve_body(client_ip, declared.unwrap_or(0)) {
            Ok(reservation) => reservation,
            Err(spent) => return overloaded(route, client_ip, spent),
        };
        if expects_continue(session.req_header()) && write_continue(session).await.is_err() {
            return Decision::Gone;
        }
        let pace = Pace {
            deadline: route.read_timeout,
            min_rate: self.observers.limits.min_body_rate(),
        };
        let read = body::read_bounded(session, route.max_body_bytes, pace, &mut reservation);
        let body = match read.await {
            Ok(body) => body,
            Err(BodyError::Overloaded(spent)) => return overloaded(route, client_ip, spent),
            Err(BodyError::TooLarge) => {
                return Decision::error(ErrorCode::PayloadTooLarge, true);
            }
            Err(BodyError::Timeout) => return Decision::error(ErrorCode::BodyTimeout, true),
            Err(BodyError::TooSlow) => {
                log::info!(
                    "route {}: {} sent its body slower than min_body_bytes_per_sec; cut",
                    route.name,
                    client.addr
                );
                return Decision::error(ErrorCode::BodyTimeout, true);
            }
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
        let (remote_keys, fetch_wait) = self
            .remote_keys(config, req, route, &remainder, &body)
            .await;
        let monitor = route.policy.as_ref().is_some_and(|p| p.monitor);
        let passed = match self.judge(req, route, &remainder, &body, &remote_keys, record) {
            Judgement::Reject(rejection) if monitor => {
                log::info!(
                    "route {}: would refuse ({}); monitor mode forwards it",
                    route.name,
                    rejection.reason()
                );
                record.reason = Some(rejection.reason());
                record.monitor_failed = true;
                Passed::Failed(rejection.reason())
            }
            Judgement::Reject(rejection) => {
                log::info!("route {}: refused: {}", route.name, rejection.reason());
                record.reason = Some(rejection.reason());
                return match (rejection, fetch_wait) {
                    // The route's new fetches are spent: come back when one is there.
                    (Rejection::KeyUnavailable, Some(wait)) => {
                        let code = ErrorCode::KeyUnavailable;
                        Decision::Respond {
                            response: code.retry_after(state::seconds_up(wait)),
                            outcome: Outcome::Error(code),
                            close: false,
                        }
                    }
                    _ => Decision::error(rejection.into(), false),
                };
            }
            Judgement::Answer(response, outcome) => {
                return Decision::Respond {
                    response,
                    outcome,
                    close: false,
                };
            }
            Judgement::Confirm(url) => return self.confirm(config, route, &url).await,
            Judgement::Forward(verified) => Passed::Verified(verified),
        };
        Decision::Forward(Admitted {
            path_and_query: route.upstream_path_and_query(
                req.uri.path(),
                &remainder,
                req.uri.query(),
            ),
            route,
            remainder,
            body,
            passed,
            forwarded_for: policy::forwarded_chain(peer, &req.headers, &config.trusted_proxies),
            _reservation: reservation,
        })
    }

    /// The route's policy before the body is read: the client's address
    /// (`allow_ips`, 403), the rate limit (429), then `require_headers` (401).
    /// Refusals close the connection, as the body was not read.
    async fn admit(
        &self,
        req: &RequestHeader,
        route: &Route,
        policy: &Policy,
        client_ip: IpAddr,
    ) -> Result<(), Decision<'static>> {
        if !policy.admits(client_ip) {
            log::info!("route {}: {client_ip} is not in allow_ips", route.name);
            return Err(Decision::error(ErrorCode::IpNotAllowed, true));
        }
        let headers = policy.check_headers(&req.headers);
        if let Some(limit) = &policy.rate_limit {
            let rate = match self.state.check_rate(&route.name, limit, client_ip).await {
                Ok(rate) => rate,
                Err(_) if policy.on_state_error == OnStateError::Open => {
                    self.state.check_local_rate(&route.name, limit, client_ip)
                }
                Err(_) => return Err(Decision::error(ErrorCode::StateUnavailable, true)),
            };
            if let Rate::Limited { retry_after } = rate {
                let code = ErrorCode::RateLimited;
                return Err(Decision::Respond {
                    response: code.retry_after(retry_after),
                    outcome: Outcome::Error(code),
                    close: true,
                });
            }
        }
        match headers {
            Ok(()) => Ok(()),
            Err(refusal) => {
                log::info!(
                    "route {}: require_headers refused it: {refusal:?}",
                    route.name
                );
                let code = match refusal {
                    HeaderRefusal::Missing => ErrorCode::MissingHeader,
                    HeaderRefusal::Invalid => ErrorCode::InvalidHeader,
                };
                Err(Decision::error(code, true))
            }
        }
    }

    /// The keys the route's remote-key verifiers need for this request, fetched
    /// (or from the cache); one entry per verifier, none when the route has no
    /// remote-key scheme. A request that fails a check needing no key, or
    /// names a key URL off the allowlist, is refused unfetched; so is one
    /// whose fetch the route's bound on new fetches refused, and then how
    /// long until one is allowed comes with the keys.
    async fn remote_keys(
        &self,
        config: &RuntimeConfig,
        req: &RequestHeader,
        route: &Route,
        remainder: &str,
        body: &[u8],
    ) -> (Vec<RemoteKeys>, Option<Duration>) {
        if route.verifiers.iter().all(|v| v.remote_params().is_none()) {
            return (Vec::new(), None);
        }
        let now = self.clock.now_unix();
        let needs: Vec<KeyNeed> = {
            let signed = signed_request(req, route, remainder, body);
            route
                .verifiers
                .iter()
                .map(|v| v.key_need(&signed, now))
                .collect()
        };
        let mut keys = Vec::with_capacity(needs.len());
        let mut wait = None;
        for need in needs {
            let got = match need {
                KeyNeed::None => Ok(RemoteKeys::None),
                KeyNeed::Refused(rejection) => {
                    log::info!(
                        "route {}: refused before any key fetch ({})",
                        route.name,
                        rejection.reason()
                    );
                    Ok(RemoteKeys::Failed(rejection))
                }
                KeyNeed::Fetch(url, kind, kid) => {
                    let (settings, name) = (&config.remote_keys, &route.name);
                    let got = self
                        .keys
                        .get(settings, name, &url, kind, kid.as_deref(), now);
                    got.await.map(RemoteKeys::Ready)
                }
                KeyNeed::Jwk {
                    url,
                    kid,
                    credentials,
                } => {
                    let (settings, name) = (&config.remote_keys, &route.name);
                    let got = self
                        .keys
                        .get_jwk(settings, name, &url, &kid, &credentials, now);
                    got.await.map(RemoteKeys::Ready)
                }
            };
            keys.push(got.unwrap_or_else(|e| {
                log::warn!("route {}: {e}", route.name);
                if let KeyError::Limited(_, after) = e {
                    wait = Some(after);
                }
                RemoteKeys::Failed(Rejection::KeyUnavailable)
            }));
        }
        (keys, wait)
    }

    /// Confirms a verified subscription by fetching its URL, and answers the
    /// provider: 200 `{"status":"confirmed"}`, or 502 `confirmation_failed`.
    async fn confirm(
        &self,
        config: &RuntimeConfig,
        route: &Route,
        url: &HttpsUrl,
    ) -> Decision<'static> {
        match self.keys.confirm(&config.remote_keys, url).await {
            Ok(()) => {
                log::info!(
                    "route {}: subscription confirmed at {}",
                    route.name,
                    url.host
                );
                Decision::Respond {
                    response: confirmed(),
                    outcome: Outcome::Handshake,
                    close: false,
                }
            }
            Err(e) => {
                log::warn!(
                    "route {}: cannot confirm the subscription at {}: {e}",
                    route.name,
                    url.host
                );
                Decision::error(ErrorCode::ConfirmationFailed, false)
            }
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
        remote_keys: &[RemoteKeys],
        record: &mut RequestRecord,
    ) -> Judgement {
        let signed = signed_request(req, route, remainder, body);
        // Handshakes whose requests are not signed are answered before verification.
        let unverified = handshakes(route).find(|(h, _)| !h.verify_first && h.matches(&signed));
        if let Some((handshake, verifier)) = unverified {
            let mac = verifier.and_then(|v| v.mac_key(0));
            return answer(route, handshake, &signed, mac);
        }
        let now = self.clock.now_unix();
        let verified = match verify_any_with_keys(&route.verifiers, &signed, now, remote_keys) {
            Ok(verified) => verified,
            Err(rejection) => return Judgement::Reject(rejection),
        };
        record.scheme = Some(verified.scheme().name.clone());
        record.secret_index = Some(verified.secret_index());
        record.event_id = verified.id().map(record::bounded);
        let matched = &route.verifiers[verified.verifier_index()];
        match matched.confirmation(&signed) {
            Ok(Some(url)) => return Judgement::Confirm(url),
            Ok(None) => {}
            Err(rejection) => return Judgement::Reject(rejection),
        }
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

/// 503 `overloaded`, before the body is read whole: admitting more of it would
/// pass `max_inflight_body_bytes`, or the client's share of it.
fn overloaded(route: &Route, client: IpAddr, spent: Spent) -> Decision<'static> {
    match spent {
        Spent::Budget => log::warn!("route {}: body budget spent; answering 503", route.name),
        Spent::ClientShare => log::info!(
            "route {}: {client} holds its share of the body budget; answering 503",
            route.name
        ),
    }
    Decision::error(ErrorCode::Overloaded, true)
}

/// The request as verifiers see it.
fn signed_request<'a>(
    req: &'a RequestHeader,
    route: &'a Route,
    remainder: &'a str,
    body: &'a [u8],
) -> SignedRequest<'a> {
    let url = UrlParts {
        public_url: route.public_url.as_deref(),
        remainder,
        host: host_of(req).unwrap_or_default(),
    };
    let path_and_query = (req.uri.path(), req.uri.query());
    SignedRequest::new(req.method.as_str(), path_and_query, &req.headers, body, url)
        .with_json_members(&route.json_members)
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

/// 202 `{"status":"accepted","id":ID}`: stored for async delivery.
fn accepted(id: DeliveryId) -> LocalResponse {
    LocalResponse {
        status: 202,
        content_type: Some("application/json".to_owned()),
        headers: Vec::new(),
        body: format!(r#"{{"status":"accepted","id":"{id}"}}"#).into_bytes(),
    }
}

/// 200 `{"status":"duplicate"}`: the event was delivered already.
fn duplicate() -> LocalResponse {
    status_200(br#"{"status":"duplicate"}"#)
}

/// 200 `{"status":"confirmed"}`: the gateway confirmed a subscription.
fn confirmed() -> LocalResponse {
    status_200(br#"{"status":"confirmed"}"#)
}

fn status_200(json: &[u8]) -> LocalResponse {
    LocalResponse {
        status: 200,
        content_type: Some("application/json".to_owned()),
        headers: Vec::new(),
        body: json.to_vec(),
    }
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

/// Writes a gateway-made response, with `X-Content-Type-Options: nosniff`
/// (set last: an answer's own copy cannot change it). `close` ends the
/// connection afterwards, for answers given before the body was read.
async fn write_local(
    session: &mut Session,
    response: &LocalResponse,
    close: bool,
) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(response.status, Some(4 + response.headers.len()))?;
    if let Some(content_type) = &response.content_type {
        header.insert_header(http::header::CONTENT_TYPE, content_type.as_str())?;
    }
    header.insert_header(http::header::CONTENT_LENGTH, response.body.len())?;
    for (name, value) in &response.headers {
        header.insert_header(name.clone(), value.as_str())?;
    }
    header.insert_header(http::header::X_CONTENT_TYPE_OPTIONS, NOSNIFF)?;
    if close {
        session.set_server_keepalive(None);
    }
    session.write_response_header(Box::new(header)).await?;
    session.write_body(&response.body).await?;
    session.finish_body().await.map(drop)
}
