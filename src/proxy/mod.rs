//! The exchange, stage by stage: admit (route, 404/405, the route's policy:
//! `allow_ips`, rate limit, `require_headers`; 413 on the declared length,
//! 100-continue), read the whole body, verify (or, in monitor mode, judge and
//! forward anyway), dedup, then answer locally (an error, a provider
//! handshake, a duplicate), or forward what passed and settle its dedup claim,
//! or, on an async route, enqueue it in the [`crate::spool`] and answer 202.
//! Runs on pingora-core's HTTP/1 session; [`crate::serve`] owns the connections.
//!
//! This file is the shell: the [`Gateway`], the [`Client`], the decision the
//! stages hand on, and [`Gateway::serve`] calling them in order. `decide.rs`
//! routes, admits, reads the body, fetches keys and judges, down to that
//! decision; `deliver.rs` dedups, forwards or enqueues, and logs. Both add to
//! the one `impl Gateway` and import only from this file, as pingora-proxy
//! spreads `HttpProxy` over `proxy_h1.rs` and `proxy_h2.rs`.

mod decide;
mod deliver;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::v1::server::HttpSession as Session;

use crate::clock::Clock;
use crate::forward::Forwarder;
use crate::keys::KeyStore;
use crate::observe::Observers;
use crate::observe::limits::BodyReservation;
use crate::observe::record::{Outcome, RequestRecord};
use crate::reject::ErrorCode;
use crate::response::{LocalResponse, NOSNIFF};
use crate::routes::Route;
use crate::runtime::ConfigStore;
use crate::spool::Spool;
use crate::state::State;
use crate::verify::Verified;

/// The log target of every stage, whichever file a line comes from: the
/// exchange logs as `hookgate::proxy`, what operators filter on.
const LOG: &str = module_path!();

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
}

fn status_200(json: &[u8]) -> LocalResponse {
    LocalResponse {
        status: 200,
        content_type: Some("application/json".to_owned()),
        headers: Vec::new(),
        body: json.to_vec(),
    }
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
