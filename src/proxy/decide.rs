//! Deciding: route the request (404/405), admit it by the route's policy
//! (`allow_ips`, rate limit, `require_headers`), check its declared length
//! (413) and reserve its body, answer 100-continue, read the whole body, fetch
//! the keys its verifiers need, and judge it: a [`Decision`] to answer
//! locally, to forward, or that the client is gone. Never writes to the
//! upstream.

use std::net::IpAddr;
use std::time::Duration;

use pingora::http::RequestHeader;
use pingora::protocols::http::v1::server::HttpSession as Session;

use super::{Admitted, Client, Decision, Gateway, LOG, Passed, status_200};
use crate::body::{self, BodyError, Pace};
use crate::handshake::AnswerKeys;
use crate::keys::KeyError;
use crate::mac::KeyedMac;
use crate::observe::limits::Spent;
use crate::observe::record::{self, Outcome, RequestRecord};
use crate::policy::{self, HeaderRefusal, OnStateError, Policy};
use crate::reject::ErrorCode;
use crate::response::LocalResponse;
use crate::routes::Route;
use crate::routes::{self, Match};
use crate::runtime::RuntimeConfig;
use crate::scheme::handshake::Handshake;
use crate::scheme::remote::HttpsUrl;
use crate::state::{self, Rate};
use crate::verify::remote::RemoteKeys;
use crate::verify::request::{SignedRequest, UrlParts};
use crate::verify::{KeyNeed, Rejection, Verified, Verifier, verify_any_with_keys};

/// The verification outcome for a fully read body.
enum Judgement {
    Reject(Rejection),
    Answer(LocalResponse, Outcome),
    /// A verified subscription confirmation (AWS SNS): fetch the URL, answer.
    Confirm(HttpsUrl),
    Forward(Verified),
}

impl Gateway {
    /// Routes, reads, verifies and judges the request, noting in `record` what
    /// it learns on the way.
    pub(super) async fn decide<'c>(
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
            log::debug!(target: LOG,
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
                log::info!(target: LOG,
                    "route {}: {} sent its body slower than min_body_bytes_per_sec; cut",
                    route.name,
                    client.addr
                );
                return Decision::error(ErrorCode::BodyTimeout, true);
            }
            Err(BodyError::Malformed(e)) => {
                log::debug!(target: LOG, "route {}: unreadable body: {e}", route.name);
                return Decision::error(ErrorCode::BadRequest, true);
            }
            Err(BodyError::Disconnected(e)) => {
                log::debug!(target: LOG,
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
                log::info!(target: LOG,
                    "route {}: would refuse ({}); monitor mode forwards it",
                    route.name,
                    rejection.reason()
                );
                record.reason = Some(rejection.reason());
                record.monitor_failed = true;
                Passed::Failed(rejection.reason())
            }
            Judgement::Reject(rejection) => {
                log::info!(target: LOG, "route {}: refused: {}", route.name, rejection.reason());
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
            log::info!(target: LOG, "route {}: {client_ip} is not in allow_ips", route.name);
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
                log::info!(target: LOG,
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
                    log::info!(target: LOG,
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
                log::warn!(target: LOG, "route {}: {e}", route.name);
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
                log::info!(target: LOG,
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
                log::warn!(target: LOG,
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
        Spent::Budget => {
            log::warn!(target: LOG, "route {}: body budget spent; answering 503", route.name)
        }
        Spent::ClientShare => log::info!(target: LOG,
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
            log::info!(target: LOG, "route {}: {error}", route.name);
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

/// 200 `{"status":"confirmed"}`: the gateway confirmed a subscription.
fn confirmed() -> LocalResponse {
    status_200(br#"{"status":"confirmed"}"#)
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
