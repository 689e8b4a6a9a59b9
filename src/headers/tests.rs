//! Upstream header normalization: hop-by-hop and reserved headers removed,
//! the gateway's own set, case kept for the rest.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use pingora::http::RequestHeader;

use super::{Forwarding, Resign, Verdict, write_upstream_head};
use crate::base::secret::Secret;
use crate::scheme::presets;
use crate::verify::request::{SignedRequest, UrlParts};
use crate::verify::{Verified, Verifier};

const BODY: &[u8] = br#"{"id":"evt_1","type":"order.created","createdAt":"2026-01-01T00:00:00Z"}"#;
const URL: UrlParts<'static> = UrlParts {
    public_url: None,
    remainder: "",
    host: "h",
};

fn verified() -> Verified {
    let mut headers = http::HeaderMap::new();
    let rye = presets::get("rye").unwrap();
    let mut rye_mac = crate::mac::KeyedMac::new(crate::mac::HashAlg::Sha256, b"k");
    rye_mac.update(BODY);
    headers.insert(
        "x-rye-signature",
        HeaderValue::from_str(&format!("v0={}", hex::encode(rye_mac.finalize()))).unwrap(),
    );
    let req = SignedRequest::new("POST", ("/", None), &headers, BODY, URL);
    Verifier::new(Arc::clone(&rye), &[Secret::new(b"k".to_vec())], None)
        .unwrap()
        .verify(&req, 0)
        .unwrap()
}

fn downstream(pairs: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build(Method::POST, b"/webhooks/rye?x=1", None).unwrap();
    for (k, v) in pairs {
        req.append_header(k.to_string(), *v).unwrap();
    }
    req
}

/// The upstream head as written on the wire, parsed back (case kept).
fn build(req: &RequestHeader, strip: &[HeaderName]) -> RequestHeader {
    let v = verified();
    build_with(req, strip, Verdict::Verified(&v), None)
}

fn build_with(
    req: &RequestHeader,
    strip: &[HeaderName],
    verdict: Verdict<'_>,
    resign: Option<Resign<'_>>,
) -> RequestHeader {
    let f = Forwarding {
        route: "rye-checkout",
        verdict,
        resign,
        client_ip: Some("10.1.2.3"),
        tls: false,
        strip,
        upstream_authority: "127.0.0.1:3000",
        path_and_query: "/internal/rye?x=1",
        body: BODY,
    };
    let mut wire = bytes::BytesMut::new();
    write_upstream_head(req, &f, &mut wire).unwrap();
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let status = parsed.parse(&wire).unwrap();
    assert_eq!(
        status,
        httparse::Status::Complete(wire.len()),
        "one whole head"
    );
    assert_eq!(parsed.version, Some(1), "HTTP/1.1");
    let mut up = RequestHeader::build(
        parsed.method.unwrap(),
        parsed.path.unwrap().as_bytes(),
        None,
    )
    .unwrap();
    for h in parsed.headers.iter() {
        up.append_header(h.name.to_owned(), h.value).unwrap();
    }
    up
}

fn all(req: &RequestHeader, name: &str) -> Vec<String> {
    req.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn forged_gateway_headers_are_replaced() {
    let req = downstream(&[
        ("X-Webhook-Verified", "true"),
        ("x-webhook-verified", "rye"),
        ("X-Webhook-Route", "admin"),
        ("Webhook-Id", "forged"),
        ("webhook-timestamp", "1"),
        ("x-webhook-event-type", "forged"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil"),
        ("Host", "hooks.example.com"),
    ]);
    let up = build(&req, &[]);
    assert_eq!(all(&up, "x-webhook-verified"), ["rye"]);
    assert_eq!(all(&up, "x-webhook-route"), ["rye-checkout"]);
    assert_eq!(all(&up, "webhook-id"), ["evt_1"]);
    assert_eq!(all(&up, "webhook-timestamp"), ["1767225600"]);
    assert_eq!(all(&up, "x-webhook-event-type"), ["order.created"]);
    assert_eq!(all(&up, "x-forwarded-for"), ["10.1.2.3"]);
    assert_eq!(all(&up, "x-forwarded-proto"), ["http"]);
    assert_eq!(all(&up, "x-forwarded-host"), ["hooks.example.com"]);
    assert_eq!(all(&up, "host"), ["127.0.0.1:3000"]);
    assert_eq!(up.uri.to_string(), "/internal/rye?x=1");
}

#[test]
fn reserved_and_framing_headers_spelled_with_underscores_are_dropped() {
    let req = downstream(&[
        ("X_Webhook_Verified", "forged"),
        ("x_webhook_route", "forged"),
        ("Webhook_Id", "forged"),
        ("X_Forwarded_For", "6.6.6.6"),
        ("Transfer_Encoding", "chunked"),
        ("Content_Length", "999"),
        ("X_Webhook_Attempt", "9"),
        ("X-Webhook-Verification", "ok"),
        ("X-Webhook-Event-Time", "1"),
        ("X_Provider_Thing", "kept"),
    ]);
    let up = build(&req, &[]);
    let names: Vec<String> = up
        .case_header_iter()
        .map(|(n, _)| String::from_utf8_lossy(n.as_slice()).into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains('_') && n != "X_Provider_Thing"),
        "{names:?}"
    );
    assert_eq!(all(&up, "x-webhook-verified"), ["rye"]);
    assert_eq!(all(&up, "x_provider_thing"), ["kept"]);
    for gone in [
        "x-webhook-attempt",
        "x-webhook-verification",
        "x-webhook-event-time",
    ] {
        assert!(up.headers.get(gone).is_none(), "{gone} was forwarded");
    }
}

#[test]
fn client_address_and_original_url_claims_are_dropped_in_both_spellings() {
    let mut pairs: Vec<(String, &str)> = Vec::new();
    for name in super::CLIENT_CLAIMS {
        pairs.push((name.to_owned(), "6.6.6.6"));
        pairs.push((name.replace('-', "_").to_ascii_uppercase(), "6.6.6.6"));
    }
    for name in [
        "X-Forwarded-Port",
        "x-forwarded-prefix",
        "X_Forwarded_Server",
    ] {
        pairs.push((name.to_owned(), "6.6.6.6"));
    }
    pairs.push(("X-Provider-Ip".to_owned(), "kept"));
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let up = build(&downstream(&borrowed), &[]);
    let names: Vec<String> = up
        .case_header_iter()
        .map(|(n, _)| String::from_utf8_lossy(n.as_slice()).into_owned())
        .collect();
    let forwarded: Vec<&String> = names
        .iter()
        .filter(|n| n.to_ascii_lowercase().starts_with("x-forwarded"))
        .collect();
    assert_eq!(
        forwarded,
        ["x-forwarded-for", "x-forwarded-proto"],
        "{names:?}"
    );
    assert_eq!(all(&up, "x-forwarded-for"), ["10.1.2.3"]);
    assert_eq!(all(&up, "x-provider-ip"), ["kept"]);
    let values: Vec<&str> = up.headers.values().map(|v| v.to_str().unwrap()).collect();
    assert!(!values.contains(&"6.6.6.6"), "{names:?}");
}

#[test]
fn hop_by_hop_and_nominated_headers_are_dropped_framing_is_ours() {
    let req = downstream(&[
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("X-Secret-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("Expect", "100-continue"),
        ("Proxy-Authorization", "Basic x"),
        ("Content-Length", "999"),
        ("X-Rye-Signature", "v0=abc"),
        ("Content-Type", "application/json"),
    ]);
    let up = build(&req, &[]);
    for gone in [
        "connection",
        "x-secret-hop",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "expect",
        "proxy-authorization",
    ] {
        assert!(
            up.headers.get(gone).is_none(),
            "{gone} must not be forwarded"
        );
    }
    assert_eq!(all(&up, "content-length"), [BODY.len().to_string()]);
    assert_eq!(
        all(&up, "x-rye-signature"),
        ["v0=abc"],
        "provider headers pass through"
    );
    let mut wire = Vec::new();
    up.header_to_h1_wire(&mut wire);
    let wire = String::from_utf8(wire).unwrap();
    assert!(
        wire.contains("Content-Type: application/json"),
        "case is kept:\n{wire}"
    );
    assert!(
        wire.contains("X-Rye-Signature: v0=abc"),
        "case is kept:\n{wire}"
    );
}

#[test]
fn strip_signature_headers_removes_them() {
    let req = downstream(&[("X-Rye-Signature", "v0=abc"), ("x-other", "1")]);
    let up = build(&req, &[HeaderName::from_static("x-rye-signature")]);
    assert!(up.headers.get("x-rye-signature").is_none());
    assert_eq!(all(&up, "x-other"), ["1"]);
}

#[test]
fn a_target_with_a_control_character_or_space_is_refused() {
    let v = verified();
    for target in ["/a b", "/a\r\nX-Evil: 1", "/a\0"] {
        let f = Forwarding {
            route: "r",
            verdict: Verdict::Verified(&v),
            resign: None,
            client_ip: None,
            tls: false,
            strip: &[],
            upstream_authority: "app",
            path_and_query: target,
            body: b"",
        };
        let mut wire = bytes::BytesMut::new();
        assert_eq!(
            write_upstream_head(&downstream(&[]), &f, &mut wire),
            Err(super::InvalidTarget),
            "{target:?}"
        );
    }
}

#[test]
fn the_head_is_whole_and_repeated_headers_keep_their_order() {
    let req = downstream(&[("B-Second", "2"), ("A-First", "1"), ("B-Second", "3")]);
    let up = build(&req, &[]);
    let names: Vec<String> = up
        .case_header_iter()
        .map(|(n, _)| String::from_utf8_lossy(n.as_slice()).into_owned())
        .take(3)
        .collect();
    assert_eq!(names, ["B-Second", "B-Second", "A-First"]);
    assert_eq!(all(&up, "b-second"), ["2", "3"]);
}

#[test]
fn monitor_mode_failures_say_so_and_never_claim_verification() {
    let req = downstream(&[
        ("X-Webhook-Verified", "rye"),
        ("x-webhook-verification", "ok"),
        ("Webhook-Id", "forged"),
    ]);
    let up = build_with(&req, &[], Verdict::Failed("signature_mismatch"), None);
    assert!(all(&up, "x-webhook-verified").is_empty());
    assert!(all(&up, "webhook-id").is_empty());
    assert_eq!(
        all(&up, "x-webhook-verification"),
        ["failed; reason=signature_mismatch"]
    );
    assert_eq!(all(&up, "x-webhook-route"), ["rye-checkout"]);
}

#[test]
fn re_signing_replaces_the_signature_and_moves_the_event_time() {
    let secret = b"route-secret-for-the-app";
    let key = crate::mac::KeyedMac::new(crate::mac::HashAlg::Sha256, secret);
    let req = downstream(&[
        ("webhook-signature", "v1,forged"),
        ("Webhook_Signature", "v1,forged"),
        ("x-webhook-event-time", "1"),
    ]);
    let v = verified();
    let now = 1_800_000_000;
    let up = build_with(
        &req,
        &[],
        Verdict::Verified(&v),
        Some(Resign { key: &key, now }),
    );
    assert_eq!(all(&up, "webhook-id"), ["evt_1"]);
    assert_eq!(all(&up, "webhook-timestamp"), ["1800000000"]);
    assert_eq!(all(&up, "x-webhook-event-time"), ["1767225600"]);
    let signatures = all(&up, "webhook-signature");
    assert_eq!(signatures.len(), 1, "the client's copy is dropped");
    assert!(all(&up, "webhook_signature").is_empty());
    let mut expected = crate::mac::KeyedMac::new(crate::mac::HashAlg::Sha256, secret);
    expected.update(b"evt_1.1800000000.");
    expected.update(BODY);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(expected.finalize());
    assert_eq!(signatures[0], format!("v1,{b64}"));
}

#[test]
fn an_event_without_an_id_is_named_by_its_content() {
    let a = super::content_id(b"{}");
    assert_eq!(a, super::content_id(b"{}"));
    assert_ne!(a, super::content_id(b"{ }"));
    assert!(a.starts_with("hg_") && a.len() == 3 + 32, "{a}");
}

#[test]
fn a_stored_block_is_re_signed_only_when_it_verified() {
    let key = crate::mac::KeyedMac::new(crate::mac::HashAlg::Sha256, b"s");
    let resign = Resign {
        key: &key,
        now: 1_800_000_000,
    };
    let failed =
        b"X-Webhook-Route: r\r\nx-webhook-verification: failed; reason=signature_mismatch\r\n";
    let mut out = bytes::BytesMut::new();
    super::resign_stored(failed, resign, BODY, &mut out);
    assert_eq!(&out[..], &failed[..], "a failure is never signed");
    let verified = b"x-webhook-verified: rye\r\nwebhook-id: evt_1\r\nwebhook-timestamp: 1767225600\r\nWebhook_Signature: v1,forged\r\nX-Other: 1\r\n";
    let mut out = bytes::BytesMut::new();
    super::resign_stored(verified, resign, BODY, &mut out);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(
        text.starts_with("x-webhook-verified: rye\r\nX-Other: 1\r\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "webhook-id: evt_1\r\nwebhook-timestamp: 1800000000\r\nwebhook-signature: v1,"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("x-webhook-event-time: 1767225600\r\n"),
        "{text}"
    );
    assert!(!text.contains("forged"), "{text}");
}

#[test]
fn a_stored_block_without_a_signed_id_gets_the_delivery_id() {
    let unsigned = b"x-webhook-verified: github\r\nx-webhook-unsigned-id: guid\r\n";
    assert_eq!(
        &super::with_delivery_id(unsigned, "00ab")[..],
        b"x-webhook-verified: github\r\nx-webhook-unsigned-id: guid\r\nwebhook-id: 00ab\r\n"
    );
    // A signed id stays; a request that did not verify gets none.
    let signed = b"X-Webhook-Verified: rye\r\nWebhook-Id: evt_1\r\n";
    assert_eq!(&super::with_delivery_id(signed, "00ab")[..], signed);
    let failed = b"x-webhook-verification: failed; reason=signature_mismatch\r\n";
    assert_eq!(&super::with_delivery_id(failed, "00ab")[..], failed);
}
