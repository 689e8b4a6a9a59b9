//! What an operator sees, and what the gateway counts while it works: the
//! request record, metrics, the access log, the front door's limits and what
//! is in flight. Components report here; nothing here imports a component.

pub mod access_log;
pub mod inflight;
pub mod limits;
pub mod metrics;
pub mod record;

use access_log::AccessLog;
use inflight::{Draining, InFlight};
use limits::Limits;
use metrics::Metrics;

/// What the gateway reports to, and what reports its state; cheap to clone.
/// Shared by the proxy, the admin listener, the reloader and the shutdown.
#[derive(Debug, Clone)]
pub struct Observers {
    /// Counters and histograms.
    pub metrics: Metrics,
    /// One line per request.
    pub access_log: AccessLog,
    /// Requests in flight.
    pub in_flight: InFlight,
    /// Whether a shutdown has begun.
    pub draining: Draining,
    /// Async delivery attempts in flight (the drain waits for them too).
    pub attempts: InFlight,
    /// Client connections and body bytes held.
    pub limits: Limits,
}
