//! The deliverer: one thread with its own runtime and upstream connection
//! pool that attempts due deliveries, each route within its `concurrency`
//! (one at a time in arrival order with `ordering = "fifo"`), and settles
//! each attempt: delivered on a 2xx, tried again later (exponential backoff
//! with full jitter, or the upstream's `Retry-After`) on what `retry_on`
//! lists, a dead letter on anything else or past the limits. Every attempt
//! goes to the route's upstream as the running config has it then. A
//! destination with a circuit breaker gets no attempt while it is open, then
//! one probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rand::Rng;
use serde::Serialize;
use tokio::task::JoinSet;

use super::{Finished, LOG, Meta, Spool, Status, fleet, now_ms};
use crate::base::settings::RetryPolicy;
use crate::destinations::{Allowance, Breaker, Change};
use crate::forward::{ForwardError, Forwarder, pool};
use crate::observe::inflight::{Draining, InFlight};
use crate::observe::record::UpstreamError;
use crate::routes::Route;
use crate::runtime::ConfigStore;

/// The longest the deliverer sleeps before looking at its queues again.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Response body bytes an attempt reads and drops before closing the connection.
const DISCARD_LIMIT: usize = 1024 * 1024;
/// How long a delivery whose request could not be read waits for the next try
/// (nothing recorded: it was not attempted).
const STORE_RETRY_MS: u64 = 1000;

/// The deliverer as a pingora background service.
#[derive(Debug)]
pub struct Deliverer {
    spool: Spool,
    store: ConfigStore,
    attempts: InFlight,
    draining: Draining,
}

impl Deliverer {
    /// Delivers what `spool` holds to the routes of the config in `store`;
    /// attempts in flight are counted in `attempts`; no new attempt starts
    /// once `draining`.
    pub fn new(spool: Spool, store: ConfigStore, attempts: InFlight, draining: Draining) -> Self {
        Self {
            spool,
            store,
            attempts,
            draining,
        }
    }
}

#[async_trait]
impl BackgroundService for Deliverer {
    /// Starts the deliverer's thread, then returns only when the shutdown
    /// begins: pingora logs a service whose `start` returned as exited.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let context = Arc::new(Context {
            spool: self.spool.clone(),
            store: self.store.clone(),
            attempts: self.attempts.clone(),
            draining: self.draining.clone(),
            forwarder: Forwarder::new(),
            breakers: Mutex::new(HashMap::new()),
        });
        let spawned = std::thread::Builder::new()
            .name("hookgate-deliverer".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(run(context)),
                    Err(e) => log::error!("cannot start the deliverer's runtime: {e}"),
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start the deliverer: {e}");
        }
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    }
}

/// What every attempt shares.
struct Context {
    spool: Spool,
    store: ConfigStore,
    attempts: InFlight,
    draining: Draining,
    forwarder: Forwarder,
    /// Each destination's circuit breaker, by route, as this gateway's
    /// attempts found it.
    breakers: Mutex<HashMap<String, Breaker>>,
}

impl Context {
    fn breakers(&self) -> MutexGuard<'_, HashMap<String, Breaker>> {
        self.breakers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many attempts toward `route`'s destination its breaker lets be
    /// in flight at `now` (a route without one: no limit of its own).
    fn allowance(&self, route: Option<&Arc<Route>>, now: u64) -> usize {
        let Some(route) =
            route.filter(|r| r.delivery.as_ref().is_some_and(|p| p.breaker.is_some()))
        else {
            return usize::MAX;
        };
        match self.breakers().get(&route.name).map(|b| b.allowance(now)) {
            None | Some(Allowance::Closed) => usize::MAX,
            Some(Allowance::Probe) => 1,
            Some(Allowance::Open(_)) => 0,
        }
    }

    /// Counts an attempt's result in its destination's breaker (`ok`: the
    /// destination answered, with a status not to be retried).
    fn count_in_breaker(&self, route: &Route, policy: &RetryPolicy, ok: bool) {
        let Some(settings) = &policy.breaker else {
            return;
        };
        let now = now_ms();
        let change = self
            .breakers()
            .entry(route.name.clone())
            .or_default()
            .record(ok, now, settings);
        match change {
            Change::Opened(until) => log::warn!(
                "route {}: destination {}: circuit breaker open for {} s after {} failed \
                 attempt(s); then one probe",
                route.name,
                route.destination,
                until.saturating_sub(now).div_ceil(1000),
                settings.failures
            ),
            Change::Closed => log::info!(
                "route {}: destination {}: circuit breaker closed: the probe succeeded",
                route.name,
                route.destination
            ),
            Change::None => {}
        }
    }
}

/// Starts due attempts until the shutdown begins; then waits for the
/// attempts in flight to finish and their results to be recorded (the drain
/// exits the process once they are, or when the grace period is over).
async fn run(context: Arc<Context>) {
    tokio::spawn(pool::sweep_forever());
    if context.spool.fleet().is_some() {
        tokio::spawn(fleet::feed(
            context.spool.clone(),
            context.store.clone(),
            context.draining.clone(),
        ));
    }
    let mut attempts = JoinSet::new();
    let mut routes: (u64, HashMap<String, Arc<Route>>) = (0, HashMap::new());
    while !context.draining.is_draining() {
        let config = context.store.snapshot();
        if routes.0 != config.generation || routes.1.is_empty() {
            let by_name = config
                .routes
                .iter()
                .map(|r| (r.name.clone(), Arc::clone(r)))
                .collect();
            routes = (config.generation, by_name);
        }
        let now = now_ms();
        let (due, next) = context.spool.take_due_within(
            now,
            |name| routes.1.get(name).cloned(),
            |name| context.allowance(routes.1.get(name), now),
        );
        for (meta, route) in due {
            let context = Arc::clone(&context);
            // Counted from now, so the drain never misses one about to start.
            let counted = context.attempts.enter();
            attempts.spawn(async move {
                attempt(&context, meta, &route).await;
                drop(counted);
            });
        }
        while attempts.try_join_next().is_some() {}
        let wait = next.map_or(IDLE_CHECK, |at| {
            Duration::from_millis(at.saturating_sub(now)).min(IDLE_CHECK)
        });
        tokio::select! {
            () = context.spool.woken() => {}
            () = tokio::time::sleep(wait) => {}
            () = context.draining.begun() => {}
        }
    }
    log::info!(
        "deliverer: shutting down: no new attempt starts; waiting for {} attempt(s) in flight; \
         pending deliveries stay queued",
        attempts.len()
    );
    if context.spool.fleet().is_some() {
        // Else another gateway would take them over while the app works on them.
        tokio::spawn(fleet::hold(context.spool.clone()));
    }
    while attempts.join_next().await.is_some() {}
    log::info!("deliverer: every attempt has finished and its result is recorded");
}

/// What an attempt got.
enum Answer {
    /// The upstream's status, and its `Retry-After`.
    Status(u16, Option<u64>),
    /// No answer.
    Failed(UpstreamError),
}

/// Attempts one delivery and settles it.
async fn attempt(context: &Context, mut meta: Meta, route: &Route) {
    let default_policy;
    let policy = match route.delivery.as_deref() {
        Some(policy) => policy,
        None => {
            // The route became sync in a reload: its queue still drains.
            default_policy = RetryPolicy::default();
            &default_policy
        }
    };
    let spool = &context.spool;
    let metrics = spool.metrics().clone();
    let now = now_ms();
    if past_age(&meta, policy, now) {
        return spool.finish(dead(meta, "max_age", &metrics)).await;
    }
    let request = match spool.request(meta.id).await {
        Ok(Some(request)) => request,
        Ok(None) => {
            log::error!(
                "spool: delivery {} has no readable request; dropped",
                meta.shown_id()
            );
            return spool.finish(Finished::Vanished(meta)).await;
        }
        Err(e) => {
            if let Some(more) = LOG.check("spool read") {
                log::error!("{e}{more}");
            }
            meta.next_ms = now.saturating_add(STORE_RETRY_MS);
            return spool.finish(Finished::Untried(meta)).await;
        }
    };
    meta.attempts = meta.attempts.saturating_add(1);
    meta.window_attempts = meta.window_attempts.saturating_add(1);
    let Ok(wire) = request.to_wire(route, meta.attempts, &meta.shown_id()) else {
        meta.last_error = Some("invalid_target".to_owned());
        Tried::default().log(&meta, "dead", Some("invalid_target"));
        return spool.finish(dead(meta, "invalid_target", &metrics)).await;
    };
    let started = Instant::now();
    let sent = context
        .forwarder
        .send(&route.upstream, route.upstream_timeout, wire)
        .await;
    let answer = match sent {
        Ok(answered) => {
            let (status, retry_after) = (answered.status(), answered.retry_after());
            let head_only = request.method == "HEAD";
            context
                .forwarder
                .discard(answered, DISCARD_LIMIT, head_only)
                .await;
            Answer::Status(status, retry_after)
        }
        Err(ForwardError::BeforeResponse(_, kind, e)) => {
            log::debug!(
                "route {}: delivery {} attempt {}: {e}",
                route.name,
                meta.shown_id(),
                meta.attempts
            );
            Answer::Failed(kind)
        }
        Err(ForwardError::AfterResponse(_)) => Answer::Failed(UpstreamError::Broken),
    };
    let answered = match &answer {
        Answer::Status(status, _) => {
            (200..300).contains(status) || !policy.retry_on.status(*status)
        }
        Answer::Failed(_) => false,
    };
    context.count_in_breaker(route, policy, answered);
    let tried = Tried::from_answer(&answer, started.elapsed());
    let now = now_ms();
    let (retryable, retry_after) = match answer {
        Answer::Status(status, _) if (200..300).contains(&status) => {
            meta.last_status = Some(status);
            meta.last_error = None;
            tried.log(&meta, "delivered", None);
            metrics.delivery_attempt(&route.name, "delivered");
            return spool.finish(Finished::Delivered(meta)).await;
        }
        Answer::Status(status, retry_after) => {
            meta.last_status = Some(status);
            meta.last_error = Some(format!("status {status}"));
            (policy.retry_on.status(status), retry_after)
        }
        Answer::Failed(kind) => {
            meta.last_status = None;
            meta.last_error = Some(kind.as_str().to_owned());
            let on = match kind {
                UpstreamError::Timeout => policy.retry_on.timeout,
                _ => policy.retry_on.connect,
            };
            (on, None)
        }
    };
    if !retryable {
        tried.log(&meta, "dead", Some("final"));
        return spool.finish(dead(meta, "final", &metrics)).await;
    }
    if meta.window_attempts >= policy.max_attempts {
        tried.log(&meta, "dead", Some("max_attempts"));
        return spool.finish(dead(meta, "max_attempts", &metrics)).await;
    }
    let asked = retry_after.unwrap_or(0).saturating_mul(1000);
    let wait = backoff(meta.window_attempts, policy).max(asked);
    meta.next_ms = now.saturating_add(wait);
    if past_age(&meta, policy, meta.next_ms) {
        tried.log(&meta, "dead", Some("max_age"));
        return spool.finish(dead(meta, "max_age", &metrics)).await;
    }
    tried.log(&meta, "retry", None);
    metrics.delivery_attempt(&route.name, "retry");
    spool.finish(Finished::Kept(meta)).await;
}

/// What an attempt got from the upstream, for its log line.
#[derive(Debug, Default)]
struct Tried {
    status: Option<u16>,
    error: Option<&'static str>,
    took: Duration,
}

/// The log line of one attempt, shaped like an access log line.
#[derive(Debug, Serialize)]
struct AttemptLine<'a> {
    /// When the attempt ended, RFC 3339 UTC.
    time: String,
    route: &'a str,
    /// The delivery's id, as in its 202.
    id: &'a str,
    /// The attempt's number, from 1.
    attempt: u32,
    /// `delivered`, `retry` or `dead`.
    outcome: &'a str,
    /// Why it is dead: `final`, `max_attempts`, `max_age`, `invalid_target`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// The upstream's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    /// What went wrong when the upstream gave no status.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// The exchange with the upstream, milliseconds.
    duration_ms: f64,
}

impl Tried {
    fn from_answer(answer: &Answer, took: Duration) -> Self {
        match answer {
            Answer::Status(status, _) => Self {
                status: Some(*status),
                error: None,
                took,
            },
            Answer::Failed(kind) => Self {
                status: None,
                error: Some(kind.as_str()),
                took,
            },
        }
    }

    /// Logs the attempt's line (target `hookgate::attempt`, at info).
    fn log(&self, meta: &Meta, outcome: &str, reason: Option<&str>) {
        let id = meta.shown_id();
        let line = AttemptLine {
            time: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            route: &meta.route,
            id: &id,
            attempt: meta.attempts,
            outcome,
            reason,
            status: self.status,
            error: self.error,
            duration_ms: self.took.as_secs_f64() * 1000.0,
        };
        match serde_json::to_string(&line) {
            Ok(json) => log::info!(target: "hookgate::attempt", "{json}"),
            Err(e) => log::error!("cannot write an attempt's log line: {e}"),
        }
    }
}

/// Whether a delivery is past `max_age_secs` at `at`.
fn past_age(meta: &Meta, policy: &RetryPolicy, at: u64) -> bool {
    let max_age = u64::try_from(policy.max_age.as_millis()).unwrap_or(u64::MAX);
    at >= meta.window_ms.saturating_add(max_age)
}

/// Makes a delivery a dead letter, counted with `reason`.
fn dead(mut meta: Meta, reason: &str, metrics: &crate::observe::metrics::Metrics) -> Finished {
    if let Some(more) = LOG.check(&format!("{}: dead {reason}", meta.route)) {
        log::warn!(
            "route {}: delivery {} is dead ({reason}) after {} attempt(s){more}",
            meta.route,
            meta.shown_id(),
            meta.attempts
        );
    }
    meta.status = Status::Dead;
    if meta.last_error.is_none() {
        meta.last_error = Some(reason.to_owned());
    }
    metrics.delivery_attempt(&meta.route, "dead");
    metrics.dead_letter(&meta.route, reason);
    Finished::Kept(meta)
}

/// The wait after the `failures`-th failed attempt, in ms: uniform between
/// `min_backoff` and `min_backoff × 2^(failures-1)`, capped at `max_backoff`
/// (exponential backoff with full jitter).
pub fn backoff(failures: u32, policy: &RetryPolicy) -> u64 {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let (min, max) = (ms(policy.min_backoff), ms(policy.max_backoff));
    let doublings = failures.saturating_sub(1).min(62);
    let cap = min
        .saturating_mul(1u64 << doublings)
        .clamp(min, max.max(min));
    rand::rng().random_range(min..=cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_its_bounds() {
        let policy = RetryPolicy {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..200 {
            assert_eq!(backoff(1, &policy), 100);
            assert!((100..=200).contains(&backoff(2, &policy)));
            assert!((100..=800).contains(&backoff(4, &policy)));
            assert!((100..=1000).contains(&backoff(30, &policy)));
            assert!((100..=1000).contains(&backoff(u32::MAX, &policy)));
        }
    }
}
