use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::Full;
use hyper::Response;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::PrivatePkcs8KeyDer;

use super::*;

const JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"k1","n":"AQAB","e":"AQAB"}]}"#;

fn settings(min_ttl: u64, max_ttl: u64) -> KeySettings {
    settings_trusting(rustls::RootCertStore::empty(), min_ttl, max_ttl)
}

fn settings_trusting(roots: rustls::RootCertStore, min_ttl: u64, max_ttl: u64) -> KeySettings {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    KeySettings {
        tls: Arc::new(tls),
        timeout: Duration::from_secs(1),
        max_bytes: 1024,
        max_entries: 2,
        min_ttl: Duration::from_secs(min_ttl),
        max_ttl: Duration::from_secs(max_ttl),
        max_fetches_per_minute: NonZeroU32::new(1000).unwrap(),
    }
}

#[test]
fn lifetimes_follow_the_document_within_bounds() {
    let s = settings(60, 86400);
    let secs = |d: Duration| d.as_secs();
    assert_eq!(secs(lifetime(Some(19845), None, 0, &s)), 19845);
    assert_eq!(secs(lifetime(None, None, 0, &s)), 3600);
    assert_eq!(secs(lifetime(Some(0), None, 0, &s)), 60);
    assert_eq!(secs(lifetime(Some(10_000_000), None, 0, &s)), 86400);
    // Never past the certificate's notAfter (but at least min_ttl).
    assert_eq!(secs(lifetime(Some(3600), Some(1000), 400, &s)), 600);
    assert_eq!(secs(lifetime(Some(3600), Some(1000), 5000, &s)), 60);
    assert_eq!(secs(lifetime(Some(0), None, 0, &settings(0, 10))), 0);
}

#[test]
fn entries_are_fresh_then_stale_once_then_missing() {
    let keys = Arc::new(PublicKeys::from_jwks(JWKS.as_bytes()).unwrap());
    let start = Instant::now();
    let min_ttl = Duration::from_secs(60);
    let mut entry = Entry::new(keys, start, Duration::from_secs(400));
    let at = |secs: u64| start + Duration::from_secs(secs);
    assert!(matches!(
        entry.lookup(at(299), None, min_ttl),
        Lookup::Fresh(_)
    ));
    // From three quarters of the lifetime, one caller refreshes, the others use it.
    assert!(matches!(
        entry.lookup(at(300), None, min_ttl),
        Lookup::Stale(_)
    ));
    assert!(matches!(
        entry.lookup(at(301), None, min_ttl),
        Lookup::Fresh(_)
    ));
    assert!(matches!(
        entry.lookup(at(400), None, min_ttl),
        Lookup::Missing
    ));
    // A kid it lacks: fetched again, but not within min_ttl of the last fetch.
    assert!(matches!(
        entry.lookup(at(59), Some("k2"), min_ttl),
        Lookup::Fresh(_)
    ));
    assert!(matches!(
        entry.lookup(at(60), Some("k2"), min_ttl),
        Lookup::Missing
    ));
    assert!(matches!(
        entry.lookup(at(60), Some("k1"), min_ttl),
        Lookup::Fresh(_)
    ));
}

#[tokio::test]
async fn urls_nobody_serves_are_errors_and_the_cache_stays_bounded() {
    let metrics = Metrics::new();
    let store = KeyStore::new(metrics.clone());
    let s = Arc::new(settings(0, 10));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = HttpsUrl::parse(&format!("https://127.0.0.1:{port}/keys")).unwrap();
    let error = store
        .get(&s, "r", &url, Document::Jwks, None, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot fetch"), "{error}");
    assert_eq!(store.cache(&s).cap().get(), 2);
    // With min_ttl_secs 0, a failure is not remembered; otherwise it is, briefly.
    let error = store
        .get(&s, "r", &url, Document::Jwks, None, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot fetch"), "{error}");
    let remembering = Arc::new(settings(60, 100));
    let error = store
        .get(&remembering, "r", &url, Document::Jwks, None, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot fetch"), "{error}");
    let error = store
        .get(&remembering, "r", &url, Document::Jwks, None, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("moments ago"), "{error}");
    // Three fetches were tried; the remembered failure was not one.
    let text = String::from_utf8(metrics.render().1).unwrap();
    let line = r#"hookgate_remote_key_fetches_total{kind="jwks",result="error"} 3"#;
    assert!(text.contains(line), "{text}");
    assert!(store.inner.flights.lock().unwrap().is_empty());
}

/// An HTTPS server on loopback answering every request with `document`, with
/// a self-signed certificate for 127.0.0.1; its port, settings trusting it,
/// and a count of requests.
async fn key_server(document: &'static str) -> (u16, Arc<KeySettings>, Arc<AtomicUsize>) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let key = PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key.into())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, hits) = (acceptor.clone(), Arc::clone(&counted));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |_| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let body = Full::new(Bytes::from(document));
                    async move { Ok::<_, Infallible>(Response::new(body)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, Arc::new(settings_trusting(roots, 0, 3600)), hits)
}

fn jwks_key(url: &HttpsUrl) -> CacheKey {
    CacheKey {
        url: url.clone(),
        kind: Document::Jwks,
        kid: None,
    }
}

/// Puts a document of `JWKS` (kid `k1`) due for refresh but not expired.
fn put_stale(store: &KeyStore, settings: &KeySettings, key: &CacheKey) {
    let now = Instant::now();
    let entry = Entry {
        keys: Arc::new(PublicKeys::from_jwks(JWKS.as_bytes()).unwrap()),
        fetched_at: now,
        refresh_at: now,
        expires_at: now + Duration::from_secs(3600),
        refreshing: false,
    };
    store.cache(settings).put(key.clone(), entry);
}

/// Waits (boundedly) for the background refresh of `key` to settle.
async fn settled(store: &KeyStore, settings: &KeySettings, key: &CacheKey) -> Arc<PublicKeys> {
    for _ in 0..1000 {
        if let Some(entry) = store.cache(settings).peek(key).filter(|e| !e.refreshing) {
            return Arc::clone(&entry.keys);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the background refresh never settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_document_is_served_while_a_background_fetch_replaces_it() {
    let new = r#"{"keys":[{"kty":"RSA","kid":"k2","n":"AQAB","e":"AQAB"}]}"#;
    let (port, settings, hits) = key_server(new).await;
    let store = KeyStore::new(Metrics::new());
    let url = HttpsUrl::parse(&format!("https://127.0.0.1:{port}/keys")).unwrap();
    let key = jwks_key(&url);
    put_stale(&store, &settings, &key);
    let served = store
        .get(&settings, "r", &url, Document::Jwks, None, 0)
        .await;
    assert!(
        served.unwrap().has_kid("k1"),
        "the cached keys answer at once"
    );
    assert!(settled(&store, &settings, &key).await.has_kid("k2"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Fresh again: no further fetch.
    let served = store
        .get(&settings, "r", &url, Document::Jwks, None, 0)
        .await;
    assert!(served.unwrap().has_kid("k2"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_background_refresh_keeps_the_cached_keys() {
    let (port, settings, hits) = key_server("not a JWKS").await;
    let store = KeyStore::new(Metrics::new());
    let url = HttpsUrl::parse(&format!("https://127.0.0.1:{port}/keys")).unwrap();
    let key = jwks_key(&url);
    put_stale(&store, &settings, &key);
    let served = store
        .get(&settings, "r", &url, Document::Jwks, None, 0)
        .await;
    assert!(served.unwrap().has_kid("k1"));
    assert!(settled(&store, &settings, &key).await.has_kid("k1"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let entry_refresh = store.cache(&settings).peek(&key).unwrap().refresh_at;
    assert!(entry_refresh > Instant::now(), "the next try waits");
    let served = store
        .get(&settings, "r", &url, Document::Jwks, None, 0)
        .await;
    assert!(served.unwrap().has_kid("k1"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_key_endpoint_is_not_asked_about_new_kids_for_a_while() {
    let (port, quick, hits) = key_server("not a key answer").await;
    // A failure is remembered for min(min_ttl, 10 s): 10 s here.
    let settings = Arc::new(KeySettings {
        tls: Arc::clone(&quick.tls),
        min_ttl: Duration::from_secs(60),
        ..settings(60, 3600)
    });
    let store = KeyStore::new(Metrics::new());
    let url = HttpsUrl::parse(&format!(
        "https://127.0.0.1:{port}/webhook_verification_key/get"
    ))
    .unwrap();
    let credentials = Arc::new(Credentials {
        client_id: "client".into(),
        secret: crate::base::secret::Secret::new(b"s3cret".to_vec()),
    });
    for kid in ["forged-1", "forged-1", "forged-2", "forged-3"] {
        let got = store
            .get_jwk(&settings, "r", &url, kid, &credentials, 0)
            .await;
        let err = got.unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "one fetch, then none");
    // Without a remembered failure (min_ttl 0), each kid is asked for.
    let store = KeyStore::new(Metrics::new());
    for kid in ["forged-1", "forged-2"] {
        assert!(
            store
                .get_jwk(&quick, "r", &url, kid, &credentials, 0)
                .await
                .is_err()
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_fetches_are_bounded_per_route_and_cached_documents_are_not_counted() {
    let (port, quick, hits) = key_server(JWKS).await;
    let settings = Arc::new(KeySettings {
        tls: Arc::clone(&quick.tls),
        max_entries: 16,
        max_fetches_per_minute: NonZeroU32::new(2).unwrap(),
        ..settings(0, 3600)
    });
    let metrics = Metrics::new();
    let store = KeyStore::new(metrics.clone());
    let urls: Vec<HttpsUrl> = (0..5)
        .map(|n| HttpsUrl::parse(&format!("https://127.0.0.1:{port}/keys/{n}")).unwrap())
        .collect();
    let mut results = Vec::new();
    for url in &urls {
        let got = store.get(&settings, "a", url, Document::Jwks, None, 0);
        results.push(match got.await {
            Ok(_) => "ok",
            Err(KeyError::Limited(_, wait)) if wait > Duration::ZERO => "limited",
            Err(e) => panic!("{e}"),
        });
    }
    assert_eq!(results, ["ok", "ok", "limited", "limited", "limited"]);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "nothing fetched past the bound"
    );
    // A cached document costs nothing; another route has a bound of its own.
    let cached = store.get(&settings, "a", &urls[0], Document::Jwks, None, 0);
    assert!(cached.await.is_ok());
    let other = store.get(&settings, "b", &urls[4], Document::Jwks, None, 0);
    assert!(other.await.is_ok());
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let text = String::from_utf8(metrics.render().1).unwrap();
    let line = r#"hookgate_remote_key_fetches_refused_total{route="a"} 3"#;
    assert!(text.contains(line), "{text}");
}

#[test]
fn key_requests_carry_the_credentials_and_the_kid() {
    let credentials = Credentials {
        client_id: "cid\"".into(),
        secret: crate::base::secret::Secret::new(b"sec".to_vec()),
    };
    let body: serde_json::Value =
        serde_json::from_slice(&key_request(&credentials, "k\u{1}")).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"client_id": "cid\"", "secret": "sec", "key_id": "k\u{1}"})
    );
}
