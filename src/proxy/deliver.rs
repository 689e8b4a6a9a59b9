//! Delivering an admitted request: claim its event on a dedup route (a
//! duplicate answered `duplicate`, one in flight 409), answer `filtered` when
//! its route's destination does not want it, then forward it and
//! relay the upstream's answer, settling the claim by its status, or, on an
//! async route, enqueue it in the [`crate::spool`] and answer 202; and, for
//! every request, count it and write its access log line.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use pingora::protocols::http::v1::server::HttpSession as Session;

use super::{Admitted, Client, Gateway, LOG, Passed, status_200, write_local};
use crate::admin::config_view::rfc3339;
use crate::destinations::Event;
use crate::forward::ForwardError;
use crate::headers::{self, Forwarding, Resign, Verdict};
use crate::observe::access_log::Entry;
use crate::observe::record::{self, Dedup, Outcome, RequestRecord};
use crate::policy::OnStateError;
use crate::reject::ErrorCode;
use crate::response::LocalResponse;
use crate::spool::request::StoredRequest;
use crate::spool::{self, DeliveryId, KeptClaim, Refused};
use crate::state::{Claim, DedupKey, Hold};

/// Room reserved for the upstream request's head besides the body.
const HEAD_CAPACITY: usize = 1024;

/// How much longer than `upstream_timeout_ms` a dedup claim lasts: it is
/// settled when the exchange ends, so this only matters if the gateway dies
/// holding it.
const CLAIM_MARGIN: Duration = Duration::from_secs(30);

impl Gateway {
    /// Delivers an admitted request: on a dedup route, claims its event first
    /// (one delivered, or stored for async delivery, is answered `duplicate`;
    /// one in flight 409), then
    /// forwards it (marking the event delivered on an upstream 2xx, else
    /// releasing it) or, on an async route, enqueues it (the claim is kept
    /// until the deliverer settles it).
    pub(super) async fn deliver(
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

    /// The last stages: routing, where an event the route's destination does
    /// not want is answered `filtered` (and, on a dedup route, marked
    /// delivered); then an async route's request is enqueued, any other
    /// forwarded.
    async fn hand_on(
        &self,
        session: &mut Session,
        admitted: Admitted<'_>,
        client: &Client,
        record: &mut RequestRecord,
        settle: Option<(Hold, Duration)>,
    ) {
        if let (Some(filter), Passed::Verified(verified)) =
            (admitted.route.filter.as_deref(), &admitted.passed)
        {
            let headers = &session.req_header().headers;
            let event = Event::new(verified.event_type(), headers, &admitted.body);
            if !filter.wants(&event) {
                if let Some((hold, ttl)) = settle
                    && let Err(e) = hold.delivered(ttl).await
                {
                    record.state_error = Some(e.op);
                }
                return self
                    .answer(session, record, filtered(), Outcome::Filtered, client)
                    .await;
            }
        }
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
            log::warn!(target: LOG, "route {}: {e}", route.name);
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
                            log::warn!(target: LOG, "route {name}: the spool is full{more}");
                        }
                        ErrorCode::SpoolFull
                    }
                    Refused::Failed(e) => {
                        if let Some(more) = spool::LOG.check(&format!("{name}: spool failed")) {
                            log::error!(target: LOG, "route {name}: {e}{more}");
                        }
                        ErrorCode::SpoolFull
                    }
                    Refused::Unavailable(e) => {
                        if let Some(more) = spool::LOG.check(&format!("{name}: spool unavailable"))
                        {
                            log::error!(target: LOG, "route {name}: {e}{more}");
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
            log::debug!(target: LOG, "cannot answer {}: {e}", client.addr);
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
            log::warn!(target: LOG, "route {}: {e}", route.name);
            record.outcome = Outcome::Error(ErrorCode::BadRequest);
            if let Err(e) = write_local(session, &ErrorCode::BadRequest.response(), true).await {
                log::debug!(target: LOG, "cannot answer {}: {e}", client.addr);
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
                        log::warn!(target: LOG,
                            "route {}: upstream {} failed: {e}",
                            route.name,
                            route.upstream.addr
                        );
                        self.refuse(session, record, code, client).await;
                    }
                    ForwardError::AfterResponse(e) => {
                        log::warn!(target: LOG,
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
    pub(super) fn log(&self, session: &Session, record: &RequestRecord, client: &Client) {
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

/// 202 `{"status":"accepted","id":ID}`: stored for async delivery.
fn accepted(id: DeliveryId) -> LocalResponse {
    LocalResponse {
        status: 202,
        content_type: Some("application/json".to_owned()),
        headers: Vec::new(),
        body: format!(r#"{{"status":"accepted","id":"{id}"}}"#).into_bytes(),
    }
}

/// 200 `{"status":"filtered"}`: no destination wants the event.
fn filtered() -> LocalResponse {
    status_200(br#"{"status":"filtered"}"#)
}

/// 200 `{"status":"duplicate"}`: the event was delivered already.
fn duplicate() -> LocalResponse {
    status_200(br#"{"status":"duplicate"}"#)
}
