//! Remote-key requests before any fetch: every remote-key preset, set up as a
//! route would be, says which key a delivery needs (`Verifier::key_need`,
//! with its checks that need no key and its URL allowlist). A certificate URL
//! it would fetch passes the allowlist again as written; and a check made
//! before the fetch never refuses a delivery that verifies with the fixture
//! certificate (the SNS and PayPal seeds are signed with its key). The first
//! line is `NOW`; the rest is a delivery as `hookgate_fuzz::Delivery` reads it.

#![no_main]

use std::path::Path;
use std::sync::{Arc, LazyLock};

use hookgate::runtime::RuntimeConfig;
use hookgate::scheme::remote::HttpsUrl;
use hookgate::verify::remote::{Document, PublicKeys, RemoteKeys};
use hookgate::verify::{KeyNeed, Rejection, Verifier};
use hookgate_fuzz::{Delivery, split_line};
use libfuzzer_sys::fuzz_target;

/// The clock when the first line gives none.
const NOW: i64 = 1_700_000_000;

/// The certificate of the key the test fixtures are signed with.
const CERT: &[u8] = include_bytes!("../../tests/fixtures/remote_keys/signing.pem");

/// A route per remote-key preset, with the keys each needs.
const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:1"

[[routes]]
name = "sns"
path = "/sns"
upstream = "http://127.0.0.1:9"
verify = { scheme = "aws-sns", topic_arns = ["arn:aws:sns:us-west-2:123456789012:MyTopic"] }

[[routes]]
name = "paypal"
path = "/paypal"
upstream = "http://127.0.0.1:9"
verify = { scheme = "paypal", webhook_id = "1JE4291016473214C" }

[[routes]]
name = "push"
path = "/push"
upstream = "http://127.0.0.1:9"
verify = { scheme = "google-pubsub-push", audience = "https://hooks.example.com/push" }

[[routes]]
name = "grid"
path = "/grid"
upstream = "http://127.0.0.1:9"
verify = { scheme = "azure-event-grid-entra", audience = "api://hooks", tenant = "contoso.onmicrosoft.com" }

[[routes]]
name = "plaid"
path = "/plaid"
upstream = "http://127.0.0.1:9"
verify = { scheme = "plaid", client_id = "client-123", secrets = ["plaid-secret"] }
"#;

static CONFIG_LOADED: LazyLock<RuntimeConfig> = LazyLock::new(|| {
    hookgate::config::load_str(Path::new("fuzz.toml"), CONFIG)
        .expect("the remote-key routes load")
        .config
});

static KEYS: LazyLock<RemoteKeys> = LazyLock::new(|| {
    RemoteKeys::Ready(Arc::new(
        PublicKeys::from_certificate_pem(CERT).expect("the fixture certificate"),
    ))
});

fn verifiers() -> impl Iterator<Item = &'static Verifier> {
    CONFIG_LOADED.routes.iter().flat_map(|r| r.verifiers.iter())
}

fuzz_target!(|data: &[u8]| {
    let (first, rest) = split_line(data);
    let now = String::from_utf8_lossy(first).trim().parse().unwrap_or(NOW);
    let Some(delivery) = Delivery::parse(rest) else {
        return;
    };
    let req = delivery.signed();
    for verifier in verifiers() {
        let params = verifier.remote_params().expect("a remote-key verifier");
        let need = verifier.key_need(&req, now);
        if let KeyNeed::Fetch(url, Document::Certificate, _) = &need {
            let again = HttpsUrl::certificate(&url.to_string(), &params.hosts, None);
            assert_eq!(again.as_ref(), Some(url), "{url}");
        }
        if verifier.verify_with_keys(&req, now, &KEYS).is_ok() {
            assert!(
                !matches!(need, KeyNeed::Refused(r) if r != Rejection::KeyUrlRefused),
                "refused before the fetch, verified after: {need:?}"
            );
        }
    }
});
