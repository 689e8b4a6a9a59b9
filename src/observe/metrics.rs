//! Every Prometheus metric hookgate exports, declared in this one place, with
//! bounded labels (route names, outcome codes, reasons, small indexes; never
//! request data). Served on the admin listener's `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::record::{Outcome, RequestRecord};
use crate::reject::ErrorCode;

/// Label for requests that matched no route.
const NO_ROUTE: &str = "";

/// Deliveries per route for the metrics: pending, dead, the oldest pending's age.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Depth {
    /// Pending deliveries.
    pub pending: u64,
    /// Dead letters.
    pub dead: u64,
    /// Age of the oldest pending delivery, in seconds.
    pub oldest_secs: u64,
}

/// The gateway's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    verification_failures: IntCounterVec,
    secret_matches: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    upstream_errors: IntCounterVec,
    upstream_responses: IntCounterVec,
    in_flight: IntGauge,
    connections_open: IntGauge,
    connections_refused: IntCounter,
    inflight_body_bytes: IntGauge,
    body_bytes: IntCounterVec,
    config_generation: IntGauge,
    reloads: IntCounterVec,
    last_reload: IntGauge,
    access_log_dropped: IntCounter,
    reload_duration: Histogram,
    dedup: IntCounterVec,
    state_errors: IntCounterVec,
    state_evictions: IntCounter,
    rate_limited: IntCounterVec,
    ip_refused: IntCounterVec,
    monitor_failures: IntCounterVec,
    delivery_attempts: IntCounterVec,
    dead_letters: IntCounterVec,
    spool_pending: IntGaugeVec,
    spool_dead: IntGaugeVec,
    spool_oldest: IntGaugeVec,
    spool_bytes: IntGauge,
    spool_unrecorded: IntCounter,
    key_fetches: IntCounterVec,
    key_fetches_refused: IntCounterVec,
}

/// Registers a metric the constructor built. The names and options are fixed
/// here, so neither step can fail at run time.
fn register<M: Collector + Clone + 'static>(
    registry: &Registry,
    built: prometheus::Result<M>,
) -> M {
    let metric = built.unwrap_or_else(|e| unreachable!("invalid metric: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| unreachable!("metric registered twice: {e}"));
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    register(
        registry,
        HistogramVec::new(HistogramOpts::new(name, help), labels),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help))
}

/// `2xx` for 204, and so on.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics in its own registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let single = register(
            r,
            IntCounter::new(
                "hookgate_access_log_dropped_total",
                "Access log lines dropped because the writer fell behind.",
            ),
        );
        let connections_refused = register(
            r,
            IntCounter::new(
                "hookgate_connections_refused_total",
                "Client connections closed at once because max_connections were open.",
            ),
        );
        let reload_duration = register(
            r,
            Histogram::with_opts(HistogramOpts::new(
                "hookgate_config_reload_duration_seconds",
                "Time to load and validate a config on reload.",
            )),
        );
        let state_evictions = register(
            r,
            IntCounter::new(
                "hookgate_state_evictions_total",
                "Live replay-cache entries evicted from memory because max_entries were held.",
            ),
        );
        let spool_unrecorded = register(
            r,
            IntCounter::new(
                "hookgate_spool_unrecorded_total",
                "Async delivery attempts whose result the spool could not record when they ended (the local store or Redis failed); each is tried again until recorded, and may be sent again if the gateway stops first.",
            ),
        );
        let spool_gauge = |name: &str, help: &str| {
            register(r, IntGaugeVec::new(Opts::new(name, help), &["route"]))
        };
        Self {
            key_fetches: counter(
                r,
                "hookgate_remote_key_fetches_total",
                "Fetches of remote keys and of SNS subscription confirmations, by kind (certificate, jwks, jwk, confirmation) and result (ok, error).",
                &["kind", "result"],
            ),
            key_fetches_refused: counter(
                r,
                "hookgate_remote_key_fetches_refused_total",
                "Remote key fetches a request needed but its route's max_fetches_per_minute refused (the request got 503 key_unavailable), by route.",
                &["route"],
            ),
            delivery_attempts: counter(
                r,
                "hookgate_delivery_attempts_total",
                "Async delivery attempts by route and outcome (delivered, retry, dead).",
                &["route", "outcome"],
            ),
            dead_letters: counter(
                r,
                "hookgate_dead_letters_total",
                "Async deliveries that became dead letters, by route and reason (final, max_attempts, max_age, invalid_target).",
                &["route", "reason"],
            ),
            spool_pending: spool_gauge(
                "hookgate_spool_pending",
                "Async deliveries pending, by route, at the time of the scrape.",
            ),
            spool_dead: spool_gauge(
                "hookgate_spool_dead",
                "Dead letters kept, by route, at the time of the scrape.",
            ),
            spool_oldest: spool_gauge(
                "hookgate_spool_oldest_pending_age_seconds",
                "Age of the oldest pending async delivery, by route, at the time of the scrape.",
            ),
            spool_bytes: gauge(
                r,
                "hookgate_spool_bytes",
                "Bytes of the spool's max_bytes budget in use, at the time of the scrape.",
            ),
            spool_unrecorded,
            dedup: counter(
                r,
                "hookgate_dedup_total",
                "Verified requests of dedup routes by result (claimed, duplicate, in_progress, bypassed).",
                &["route", "result"],
            ),
            state_errors: counter(
                r,
                "hookgate_state_errors_total",
                "Failed state store calls by operation (claim, mark, release, rate_limit).",
                &["op"],
            ),
            state_evictions,
            rate_limited: counter(
                r,
                "hookgate_rate_limited_total",
                "Requests refused 429 by the route's rate limit.",
                &["route"],
            ),
            ip_refused: counter(
                r,
                "hookgate_ip_refused_total",
                "Requests refused 403 because the client is outside allow_ips.",
                &["route"],
            ),
            monitor_failures: counter(
                r,
                "hookgate_monitor_failures_total",
                "Requests that failed verification on a monitor-mode route and were forwarded all the same, by reason.",
                &["route", "reason"],
            ),
            requests: counter(
                r,
                "hookgate_requests_total",
                "Requests by route and outcome (forwarded, handshake, disconnected, or the error code).",
                &["route", "outcome"],
            ),
            verification_failures: counter(
                r,
                "hookgate_verification_failures_total",
                "Refused signatures by route and reason.",
                &["route", "reason"],
            ),
            secret_matches: counter(
                r,
                "hookgate_secret_matches_total",
                "Verified requests by route, scheme and the index of the secret that matched.",
                &["route", "scheme", "secret_index"],
            ),
            request_duration: histogram(
                r,
                "hookgate_request_duration_seconds",
                "Whole request time, from header to the end of the answer.",
                &["route"],
            ),
            upstream_duration: histogram(
                r,
                "hookgate_upstream_duration_seconds",
                "Upstream exchange time, from connecting to the end of the response.",
                &["route"],
            ),
            upstream_errors: counter(
                r,
                "hookgate_upstream_errors_total",
                "Failed upstream exchanges by route and kind.",
                &["route", "kind"],
            ),
            upstream_responses: counter(
                r,
                "hookgate_upstream_responses_total",
                "Upstream responses relayed, by route and status class (2xx, 4xx, 5xx, ...).",
                &["route", "status_class"],
            ),
            in_flight: gauge(
                r,
                "hookgate_requests_in_flight",
                "Requests between their header and their end, at the time of the scrape.",
            ),
            connections_open: gauge(
                r,
                "hookgate_connections_open",
                "Client connections open, at the time of the scrape.",
            ),
            connections_refused,
            inflight_body_bytes: gauge(
                r,
                "hookgate_inflight_body_bytes",
                "Request body bytes reserved by requests being read or verified, at the time of the scrape.",
            ),
            body_bytes: counter(
                r,
                "hookgate_request_body_bytes_total",
                "Request body bytes read, by route.",
                &["route"],
            ),
            config_generation: gauge(
                r,
                "hookgate_config_generation",
                "Generation of the running config (1 at start, +1 per successful reload).",
            ),
            reloads: counter(
                r,
                "hookgate_config_reloads_total",
                "Reload attempts by trigger and result (ok or error).",
                &["trigger", "result"],
            ),
            last_reload: gauge(
                r,
                "hookgate_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful load.",
            ),
            access_log_dropped: single,
            reload_duration,
            registry,
        }
    }

    /// Counts one finished request.
    pub fn record(&self, record: &RequestRecord) {
        let route = record.route.as_deref().unwrap_or(NO_ROUTE);
        self.requests
            .with_label_values(&[route, record.outcome.as_str()])
            .inc();
        self.request_duration
            .with_label_values(&[route])
            .observe(record.start.elapsed().as_secs_f64());
        if record.body_bytes > 0 {
            self.body_bytes
                .with_label_values(&[route])
                .inc_by(record.body_bytes as u64);
        }
        if let Some(reason) = record.reason {
            self.verification_failures
                .with_label_values(&[route, reason])
                .inc();
        }
        if let (Some(scheme), Some(index)) = (&record.scheme, record.secret_index) {
            self.secret_matches
                .with_label_values(&[route, scheme, &index.to_string()])
                .inc();
        }
        if let Some(time) = record.upstream_time {
            self.upstream_duration
                .with_label_values(&[route])
                .observe(time.as_secs_f64());
        }
        if let Some(status) = record.upstream_status {
            self.upstream_responses
                .with_label_values(&[route, status_class(status)])
                .inc();
        }
        if let Some(kind) = record.upstream_error {
            self.upstream_errors
                .with_label_values(&[route, kind.as_str()])
                .inc();
        }
        self.record_policy(route, record);
    }

    /// The policy's counters: dedup results, refusals, monitor-mode failures.
    fn record_policy(&self, route: &str, record: &RequestRecord) {
        if let Some(dedup) = record.dedup {
            self.dedup.with_label_values(&[route, dedup.as_str()]).inc();
        }
        match record.outcome {
            Outcome::Error(ErrorCode::RateLimited) => {
                self.rate_limited.with_label_values(&[route]).inc();
            }
            Outcome::Error(ErrorCode::IpNotAllowed) => {
                self.ip_refused.with_label_values(&[route]).inc();
            }
            _ => {}
        }
        if let (true, Some(reason)) = (record.monitor_failed, record.reason) {
            self.monitor_failures
                .with_label_values(&[route, reason])
                .inc();
        }
    }

    /// Counts a failed state store call.
    pub fn state_error(&self, op: &str) {
        self.state_errors.with_label_values(&[op]).inc();
    }

    /// Counts a live replay-cache entry evicted from memory.
    pub fn state_evicted(&self) {
        self.state_evictions.inc();
    }

    /// Sets the requests in flight, just before a scrape.
    pub fn set_in_flight(&self, count: usize) {
        self.in_flight.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Sets the open client connections and reserved body bytes, just before a scrape.
    pub fn set_front_door(&self, connections: usize, body_bytes: u64) {
        self.connections_open
            .set(i64::try_from(connections).unwrap_or(i64::MAX));
        self.inflight_body_bytes
            .set(i64::try_from(body_bytes).unwrap_or(i64::MAX));
    }

    /// Counts an async delivery attempt's outcome.
    pub fn delivery_attempt(&self, route: &str, outcome: &str) {
        self.delivery_attempts
            .with_label_values(&[route, outcome])
            .inc();
    }

    /// Counts a new dead letter.
    pub fn dead_letter(&self, route: &str, reason: &str) {
        self.dead_letters.with_label_values(&[route, reason]).inc();
    }

    /// Counts an attempt's result the spool could not record when it ended.
    pub fn spool_unrecorded(&self) {
        self.spool_unrecorded.inc();
    }

    /// Sets the spool's gauges, just before a scrape: per route, pending,
    /// dead and the oldest pending's age; the budget used by what is stored.
    pub fn set_spool(&self, depths: &BTreeMap<String, Depth>, bytes: u64) {
        for gauge in [&self.spool_pending, &self.spool_dead, &self.spool_oldest] {
            gauge.reset();
        }
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (route, d) in depths {
            self.spool_pending
                .with_label_values(&[route])
                .set(n(d.pending));
            self.spool_dead.with_label_values(&[route]).set(n(d.dead));
            self.spool_oldest
                .with_label_values(&[route])
                .set(n(d.oldest_secs));
        }
        self.spool_bytes.set(n(bytes));
    }

    /// Counts a client connection closed at once because the limit was reached.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Notes a config load: the running generation and, on success, its time.
    pub fn config_loaded(&self, generation: u64, at_unix: i64) {
        self.config_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.last_reload.set(at_unix);
    }

    /// Counts a reload attempt.
    pub fn reload(&self, trigger: &str, ok: bool, took: Duration) {
        self.reloads
            .with_label_values(&[trigger, if ok { "ok" } else { "error" }])
            .inc();
        self.reload_duration.observe(took.as_secs_f64());
    }

    /// Counts a fetch of a remote key document (`certificate`, `jwks`) or of a
    /// subscription confirmation (`confirmation`).
    pub fn key_fetch(&self, kind: &'static str, ok: bool) {
        self.key_fetches
            .with_label_values(&[kind, if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Counts a fetch `route`'s bound on new fetches refused.
    pub fn key_fetch_refused(&self, route: &str) {
        self.key_fetches_refused.with_label_values(&[route]).inc();
    }

    /// Gives each of `routes` (those with a remote-key scheme) its refused
    /// fetches series, at 0 until one is refused.
    pub fn key_fetch_routes<'a>(&self, routes: impl IntoIterator<Item = &'a str>) {
        for route in routes {
            self.key_fetches_refused.with_label_values(&[route]);
        }
    }

    /// Counts an access log line that could not be queued.
    pub fn access_log_dropped(&self) {
        self.access_log_dropped.inc();
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> (String, Vec<u8>) {
        let encoder = TextEncoder::new();
        let mut out = Vec::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode metrics: {e}");
        }
        (encoder.format_type().to_owned(), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_land_in_labelled_series() {
        let m = Metrics::new();
        let record = RequestRecord {
            route: Some("rye".into()),
            outcome: Outcome::Error(ErrorCode::InvalidSignature),
            reason: Some("signature_mismatch"),
            body_bytes: 10,
            ..RequestRecord::default()
        };
        m.record(&record);
        m.record(&RequestRecord {
            outcome: Outcome::Forwarded,
            reason: None,
            scheme: Some("rye".into()),
            secret_index: Some(1),
            upstream_status: Some(503),
            ..record
        });
        m.set_in_flight(3);
        m.set_front_door(7, 2048);
        m.connection_refused();
        m.reload("sighup", false, Duration::from_millis(3));
        m.config_loaded(2, 1_700_000_000);
        m.key_fetch("jwks", false);
        m.key_fetch_routes(["sns", "plaid"]);
        m.key_fetch_refused("plaid");
        let text = String::from_utf8(m.render().1).unwrap();
        for line in [
            r#"hookgate_requests_total{outcome="invalid_signature",route="rye"} 1"#,
            r#"hookgate_requests_total{outcome="forwarded",route="rye"} 1"#,
            r#"hookgate_verification_failures_total{reason="signature_mismatch",route="rye"} 1"#,
            r#"hookgate_upstream_responses_total{route="rye",status_class="5xx"} 1"#,
            "hookgate_requests_in_flight 3",
            "hookgate_connections_open 7",
            "hookgate_inflight_body_bytes 2048",
            "hookgate_connections_refused_total 1",
            r#"hookgate_secret_matches_total{route="rye",scheme="rye",secret_index="1"} 1"#,
            r#"hookgate_request_body_bytes_total{route="rye"} 20"#,
            r#"hookgate_config_reloads_total{result="error",trigger="sighup"} 1"#,
            "hookgate_config_generation 2",
            "hookgate_config_last_reload_success_timestamp_seconds 1700000000",
            r#"hookgate_remote_key_fetches_total{kind="jwks",result="error"} 1"#,
            r#"hookgate_remote_key_fetches_refused_total{route="sns"} 0"#,
            r#"hookgate_remote_key_fetches_refused_total{route="plaid"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
