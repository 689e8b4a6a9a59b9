//! The admin listener's gate and delivery ids: a request head (a request line
//! and headers, as `hookgate_fuzz::Delivery` reads them; the body is ignored)
//! through `admin::access::check` with a token and an `admin_hosts` name. A
//! request let through to anything but a probe carried the one right bearer
//! token; a refusal never holds the token. Every `/deliveries/ID` segment
//! that parses as a delivery id prints back as written (lower case).

#![no_main]

use std::sync::LazyLock;

use hookgate::admin::access;
use hookgate::base::secret::Secret;
use hookgate::base::settings::AdminAccess;
use hookgate::spool::DeliveryId;
use hookgate_fuzz::Delivery;
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-admin-token-5d0c81";

static ACCESS: LazyLock<AdminAccess> = LazyLock::new(|| AdminAccess {
    token: Some(Secret::new(TOKEN.as_bytes().to_vec())),
    token_source: Some("env:TOKEN".to_owned()),
    hosts: vec!["gw.internal".to_owned()],
});

fuzz_target!(|data: &[u8]| {
    let Some(head) = Delivery::parse(data) else {
        return;
    };
    let base = head.public_url.as_deref().unwrap_or(&head.path);
    let target = match &head.query {
        Some(query) => format!("{base}?{query}"),
        None => base.to_owned(),
    };
    let Ok(request) = http::Request::builder()
        .method(head.method.as_str())
        .uri(target)
        .body(())
    else {
        return;
    };
    let (mut parts, ()) = request.into_parts();
    parts.headers = head.headers.clone();
    let local = "10.0.0.5:9190".parse().ok();
    match access::check(&ACCESS, &parts, local) {
        Ok(()) if !matches!(parts.uri.path(), "/healthz" | "/readyz") => {
            let sent: Vec<_> = parts.headers.get_all("authorization").iter().collect();
            assert_eq!(sent.len(), 1, "let through without one Authorization");
            let value = sent[0].to_str().expect("the token is ASCII");
            let (scheme, token) = value.split_once(' ').expect("Bearer TOKEN");
            assert!(scheme.eq_ignore_ascii_case("bearer"), "{value:?}");
            assert_eq!(token.trim(), TOKEN);
        }
        Ok(()) => {}
        Err(refusal) => {
            let shown = String::from_utf8_lossy(&refusal.body);
            assert!(!shown.contains(TOKEN));
            assert!(refusal.headers.iter().all(|(_, v)| !v.contains(TOKEN)));
        }
    }
    for segment in head.path.split('/') {
        if let Some(id) = DeliveryId::parse(segment) {
            assert_eq!(id.to_string(), segment.to_ascii_lowercase());
        }
    }
});
