//! What observing one request costs on the request's own thread: counting it in
//! the metrics, and building and queueing its access log line (the write to
//! the file happens on the log's own thread, in batches).
//!
//! Run with `cargo bench --bench observe`. Figures are in
//! docs/performance.md.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};

use hookgate::admin::config_view::rfc3339;
use hookgate::observe::access_log::{AccessLog, Entry, Target};
use hookgate::observe::metrics::Metrics;
use hookgate::observe::record::{Outcome, RequestRecord};

fn forwarded() -> RequestRecord {
    RequestRecord {
        route: Some("rye".into()),
        outcome: Outcome::Forwarded,
        scheme: Some("rye".into()),
        secret_index: Some(0),
        event_id: Some("evt_01HZX4Q7".into()),
        body_bytes: 1024,
        upstream_status: Some(200),
        upstream_time: Some(Duration::from_micros(900)),
        ..RequestRecord::default()
    }
}

fn entry(record: &RequestRecord) -> Entry<'_> {
    Entry {
        time: rfc3339(SystemTime::now()),
        route: record.route.as_deref(),
        method: "POST",
        path: "/webhooks/rye",
        status: Some(200),
        outcome: record.outcome.as_str(),
        reason: None,
        scheme: record.scheme.as_deref(),
        secret_index: record.secret_index,
        event_id: record.event_id.as_deref(),
        body_bytes: record.body_bytes,
        duration_ms: 1.2,
        upstream_ms: Some(0.9),
        upstream_status: record.upstream_status,
        upstream_error: None,
        client: Some("127.0.0.1:50000".into()),
        forwarded_for: None,
        verification: None,
        dedup: None,
        state_error: None,
    }
}

fn observe(c: &mut Criterion) {
    let metrics = Metrics::new();
    let record = forwarded();
    c.bench_function("observe/metrics_record", |b| {
        b.iter(|| metrics.record(black_box(&record)));
    });

    let dir = tempfile::tempdir().expect("a temporary directory");
    let target = Target::File(dir.path().join("access.log"));
    let log = AccessLog::start(&target, metrics.clone()).expect("an access log");
    c.bench_function("observe/access_log_line", |b| {
        b.iter(|| log.write(&entry(black_box(&record))));
    });
    log.flush(Duration::from_secs(5));
}

criterion_group!(benches, observe);
criterion_main!(benches);
