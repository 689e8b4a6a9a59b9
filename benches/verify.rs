//! Verification cost per scheme and body size (1 KiB, 64 KiB, 1 MiB), and the
//! descriptor-driven `rye` scheme against a hand-written rye verifier doing the
//! same work (signature check, then event id, type and creation time).
//!
//! Run with `cargo bench --bench verify`. Figures are in
//! docs/performance.md.

use std::borrow::Cow;
use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;

use hookgate::config::load_str;
use hookgate::scheme::presets;
use hookgate::verify::request::{SignedRequest, UrlParts};
use hookgate::verify::sign::{Delivery, sign};
use hookgate::verify::verify_any;

// The gateway's allocator (see `src/main.rs`), so allocations cost here what
// they cost in the gateway, for the descriptor and the hand-written verifier alike.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SECRET: &str = "bench-secret";
const NOW: i64 = 1_700_000_000;
const SIZES: [usize; 3] = [1024, 64 * 1024, 1024 * 1024];
const SCHEMES: [&str; 7] = [
    "rye",
    "rye-v1",
    "aryeo",
    "hmac",
    "stripe",
    "standard-webhooks",
    "github",
];

/// A POST of a `size`-byte event to `http://h/`.
fn delivery(size: usize) -> Delivery {
    Delivery {
        method: "POST".into(),
        url: "http://h/".into(),
        content_type: "application/json".into(),
        body: body(size),
        id: None,
        time: NOW,
        headers: Vec::new(),
    }
}

/// A JSON event padded to `len` bytes, as providers send.
fn body(len: usize) -> Vec<u8> {
    let head = r#"{"id":"evt_1","type":"order.created","createdAt":"2023-11-14T22:13:20Z","pad":""#;
    let mut body = head.as_bytes().to_vec();
    body.resize(len - 2, b'x');
    body.extend_from_slice(b"\"}");
    body
}

fn config() -> String {
    let mut text = String::new();
    for name in SCHEMES {
        let verify = if name == "hmac" {
            "scheme = \"hmac\"\nheader = \"x-signature\"\nprefix = \"sha256=\"\npayload = \"{timestamp}.{body}\"\ntimestamp_header = \"x-timestamp\"\ntolerance_secs = 300\n".to_owned()
        } else {
            let key = if name == "standard-webhooks" {
                "whsec_YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA=="
            } else {
                SECRET
            };
            format!("scheme = \"{name}\"\nsecrets = [\"{key}\"]\n")
        };
        let secrets = if name == "hmac" {
            format!("secrets = [\"{SECRET}\"]\n")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/{name}\"\nupstream = \"http://127.0.0.1:9\"\n[routes.verify]\n{verify}{secrets}\n"
        ));
    }
    text
}

fn headers_for(signed: &[(String, String)]) -> HeaderMap {
    signed
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), HeaderValue::from_str(v).unwrap()))
        .collect()
}

fn bench_schemes(c: &mut Criterion) {
    let config = load_str(Path::new("bench.toml"), &config())
        .expect("bench config")
        .config;
    let url = UrlParts {
        public_url: None,
        remainder: "",
        host: "h",
    };
    let mut group = c.benchmark_group("verify");
    for route in config.routes.iter() {
        let scheme = route.verifiers[0].scheme();
        let secret = if scheme.name == "standard-webhooks" {
            "whsec_YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA=="
        } else {
            SECRET
        };
        for size in SIZES {
            let signed = sign(scheme, secret.as_bytes(), &delivery(size)).expect("signable");
            let headers = headers_for(&signed.headers);
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(
                BenchmarkId::new(route.name.as_str(), size),
                &signed.body,
                |b, payload| {
                    b.iter(|| {
                        let req = SignedRequest::new("POST", ("/", None), &headers, payload, url)
                            .with_json_members(&route.json_members);
                        let verified = verify_any(&route.verifiers, &req, NOW).expect("valid");
                        black_box((verified.id().map(str::len), verified.timestamp()))
                    });
                },
            );
        }
    }
    group.finish();
}

/// The fields a rye delivery's metadata comes from, read by a typed parse.
#[derive(Deserialize)]
struct RyeEvent<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "createdAt")]
    created_at: Option<Cow<'a, str>>,
}

/// Rye verification written by hand for this one scheme: what a service would do
/// without the gateway.
fn handwritten_rye(
    key: &Hmac<sha2::Sha256>,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<(String, String, i64)> {
    let header = headers.get("x-rye-signature")?.to_str().ok()?;
    let received = hex::decode(header.trim().strip_prefix("v0=")?).ok()?;
    let mut mac = key.clone();
    mac.update(body);
    mac.verify_slice(&received).ok()?;
    let event: RyeEvent<'_> = serde_json::from_slice(body).ok()?;
    let id = match headers.get("x-rye-event-id") {
        Some(h) => h.to_str().ok()?.to_owned(),
        None => event.id?.into_owned(),
    };
    let kind = match headers.get("x-rye-topic") {
        Some(h) => h.to_str().ok()?.to_owned(),
        None => event.kind?.into_owned(),
    };
    let format = time::format_description::well_known::Rfc3339;
    let created = time::OffsetDateTime::parse(event.created_at?.as_ref(), &format)
        .ok()?
        .unix_timestamp();
    Some((id, kind, created))
}

fn bench_descriptor_vs_handwritten(c: &mut Criterion) {
    let config = load_str(Path::new("bench.toml"), &config())
        .expect("bench config")
        .config;
    let route = config
        .routes
        .iter()
        .find(|r| r.name == "rye")
        .expect("rye route");
    let scheme = presets::get("rye").expect("rye preset");
    let key = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    let url = UrlParts {
        public_url: None,
        remainder: "",
        host: "h",
    };
    let mut group = c.benchmark_group("rye");
    for size in SIZES {
        let signed = sign(&scheme, SECRET.as_bytes(), &delivery(size)).expect("signable");
        let headers = headers_for(&signed.headers);
        assert!(handwritten_rye(&key, &headers, &signed.body).is_some());
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("descriptor", size),
            &signed.body,
            |b, payload| {
                b.iter(|| {
                    let req = SignedRequest::new("POST", ("/", None), &headers, payload, url)
                        .with_json_members(&route.json_members);
                    let v = verify_any(&route.verifiers, &req, NOW).expect("valid");
                    black_box((
                        v.id().map(str::len),
                        v.event_type().map(str::len),
                        v.timestamp(),
                    ))
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("handwritten", size),
            &signed.body,
            |b, payload| {
                b.iter(|| black_box(handwritten_rye(&key, &headers, payload).expect("valid")));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_schemes, bench_descriptor_vs_handwritten);
criterion_main!(benches);
