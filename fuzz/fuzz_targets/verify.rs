//! Whole deliveries through every built-in scheme: signature fields of every
//! format, timestamps, ids and types from headers, JSON, forms, queries and
//! JWT claims, body hashes, and handshake answers. The first line is
//! `NOW SECRET` (the clock, and a secret every scheme is also tried with, so
//! that seeds from the shared vectors get past the signature check); the rest
//! is a delivery as `hookgate_fuzz::Delivery` reads it.

#![no_main]

use std::sync::LazyLock;

use hookgate::base::secret::Secret;
use hookgate::scheme::presets;
use hookgate::verify::Verifier;
use hookgate_fuzz::{Delivery, exercise, split_line};
use libfuzzer_sys::fuzz_target;

/// The clock when the first line gives none.
const NOW: i64 = 1_700_000_000;

/// Every preset with a fixed secret, where that secret is a valid key for it.
static FIXED: LazyLock<Vec<Verifier>> = LazyLock::new(|| verifiers(b"fuzz-secret"));

fn verifiers(secret: &[u8]) -> Vec<Verifier> {
    let secrets = [Secret::new(secret.to_vec())];
    presets::all()
        .values()
        .filter_map(|scheme| Verifier::new(scheme.clone(), &secrets, None).ok())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let (first, rest) = split_line(data);
    let first = String::from_utf8_lossy(first);
    let (now, secret) = first.split_once(' ').unwrap_or((&first, ""));
    let now = now.parse().unwrap_or(NOW);
    let Some(delivery) = Delivery::parse(rest) else {
        return;
    };
    let req = delivery.signed();
    let token = Secret::new(secret.as_bytes().to_vec());
    let given = if secret.is_empty() {
        Vec::new()
    } else {
        verifiers(secret.as_bytes())
    };
    for verifier in FIXED.iter().chain(&given) {
        exercise(verifier, &req, now, &token);
    }
});
