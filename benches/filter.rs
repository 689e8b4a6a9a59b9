//! What choosing destinations costs on the request's thread: 20 destinations'
//! filters asked about one verified Stripe-style event (1 KiB), each with a
//! glob on the event type and, for half of them, a condition on a body field.
//! The glob-only filters never parse the body; the body is scanned once per
//! filter that reads it.
//!
//! Run with `cargo bench --bench filter`. Figures are in benches/README.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use serde_json::json;

use hookgate::destinations::{Condition, Event, Field, Filter, Glob, Test};
use hookgate::json::JsonPointer;

/// A 1 KiB `invoice.paid` event.
fn body() -> Vec<u8> {
    let padding = "x".repeat(800);
    format!(
        r#"{{"id":"evt_1","type":"invoice.paid","livemode":true,"data":{{"object":{{"id":"in_1","amount":1200,"currency":"usd","note":"{padding}"}}}}}}"#
    )
    .into_bytes()
}

/// Destination `i`: a glob on the type, and for odd `i` a body condition.
fn filter(i: usize) -> Filter {
    let events = vec![Glob::new(&format!("kind{i}.*")), Glob::new("invoice.*")];
    let when = if i % 2 == 1 {
        vec![Condition {
            field: Field::Json(JsonPointer::parse("/data/object/currency").unwrap()),
            test: Test::In(vec![json!("eur"), json!("usd")]),
        }]
    } else {
        Vec::new()
    };
    Filter { events, when }
}

fn bench(c: &mut Criterion) {
    let body = body();
    let headers = HeaderMap::new();
    // An event is made per request: its body scanned once, each field looked
    // up once, whatever the number of filters.
    let event = || Event::new(Some("invoice.paid"), &headers, &body);
    let with_body: Vec<Filter> = (0..20).map(filter).collect();
    let types_only: Vec<Filter> = (0..20)
        .map(|i| Filter {
            when: Vec::new(),
            ..filter(i)
        })
        .collect();
    for (name, filters) in [
        ("20 destinations, 10 reading the body", &with_body),
        ("20 destinations, event type globs only", &types_only),
    ] {
        assert!(filters.iter().all(|f| f.wants(&event())));
        c.bench_function(name, |b| {
            b.iter(|| {
                let event = event();
                filters
                    .iter()
                    .filter(|f| black_box(f).wants(black_box(&event)))
                    .count()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
