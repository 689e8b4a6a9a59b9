//! Verification cost per scheme and body size (1 KiB, 64 KiB, 1 MiB).
//!
//! Run with `cargo bench --bench verify`. Reference figures (2-core VM, release):
//! see the README's "Performance" section.

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};

use hookgate::config::load_str;
use hookgate::verify::mac::KeyedMac;
use hookgate::verify::request::{SignedRequest, UrlParts};
use hookgate::verify::template::Part;
use hookgate::verify::verify_any;

const SECRET: &str = "bench-secret";
const TIMESTAMP: &str = "1700000000";

const CONFIG: &str = r#"
[[routes]]
name = "rye"
path = "/rye"
upstream = "http://127.0.0.1:9"
[routes.verify]
scheme = "rye"
secrets = ["bench-secret"]

[[routes]]
name = "rye-v1"
path = "/rye-v1"
upstream = "http://127.0.0.1:9"
[routes.verify]
scheme = "rye-v1"
secrets = ["bench-secret"]

[[routes]]
name = "aryeo"
path = "/aryeo"
upstream = "http://127.0.0.1:9"
[routes.verify]
scheme = "aryeo"
secrets = ["bench-secret"]

[[routes]]
name = "hmac"
path = "/hmac"
upstream = "http://127.0.0.1:9"
[routes.verify]
scheme = "hmac"
header = "x-signature"
prefix = "sha256="
payload = "{timestamp}.{body}"
timestamp_header = "x-timestamp"
tolerance_secs = 300
secrets = ["bench-secret"]
"#;

/// A JSON event padded to `len` bytes, as providers send.
fn body(len: usize) -> Vec<u8> {
    let head = r#"{"id":"evt_1","type":"order.created","createdAt":"2023-11-14T22:13:20Z","pad":""#;
    let mut body = head.as_bytes().to_vec();
    body.resize(len - 2, b'x');
    body.extend_from_slice(b"\"}");
    body
}

fn bench_verify(c: &mut Criterion) {
    let config = load_str(Path::new("bench.toml"), CONFIG)
        .expect("bench config")
        .config;
    let url = UrlParts {
        public_url: None,
        remainder: "",
        host: "h",
        path: "/",
        query: None,
    };
    let mut group = c.benchmark_group("verify");
    for route in config.routes.iter() {
        let scheme = route.verifiers[0].scheme();
        for size in [1024, 64 * 1024, 1024 * 1024] {
            let payload = body(size);
            let mut mac = KeyedMac::new(scheme.algorithm, SECRET.as_bytes());
            for part in scheme.signed_content.parts() {
                match part {
                    Part::Body => mac.update(&payload),
                    Part::Timestamp => mac.update(TIMESTAMP.as_bytes()),
                    Part::Literal(text) => mac.update(text),
                    other => unreachable!("bench schemes do not sign {other:?}"),
                }
            }
            let encoded = scheme.signature.encoding.encode(&mac.finalize());
            let value = format!("{}{encoded}", scheme.signature.prefix);
            let mut headers = HeaderMap::new();
            headers.insert(
                scheme.signature.header.clone(),
                HeaderValue::from_str(&value).unwrap(),
            );
            headers.insert("x-timestamp", HeaderValue::from_static(TIMESTAMP));
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(
                BenchmarkId::new(route.name.as_str(), size),
                &payload,
                |b, payload| {
                    b.iter(|| {
                        let req = SignedRequest::new("POST", &headers, payload, url);
                        let verified =
                            verify_any(&route.verifiers, &req, 1_700_000_000).expect("valid");
                        black_box((
                            verified.id().map(str::len),
                            verified.event_type().map(str::len),
                        ))
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
