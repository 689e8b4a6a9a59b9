//! Remote keys: fetches, caches and refreshes the certificates, JWKS and
//! per-`kid` JWKs that remote-key schemes (AWS SNS, PayPal, OIDC pushes, Plaid)
//! verify with, and confirms AWS SNS subscriptions. The only part of
//! verification that does I/O: it hands parsed keys to [`crate::verify`],
//! which never fetches. Only URLs that passed the scheme's allowlist reach it,
//! and only over HTTPS.

pub mod fetch;

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use lru::LruCache;
use tokio::time::Instant;

use crate::observe::metrics::Metrics;
use crate::scheme::remote::HttpsUrl;
use crate::verify::remote::{Credentials, Document, PublicKeys};

/// Lifetime of a document whose server sent no `Cache-Control: max-age`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// After a failed background refresh, how long before the next try; also the
/// longest a failed fetch is remembered (at most `min_ttl`), so a flood of
/// requests naming a failing URL does not become a flood of fetches.
const RETRY_REFRESH: Duration = Duration::from_secs(10);
/// Routes the bound on new fetches tracks before it forgets the idle ones
/// (routes a reload removed).
const MAX_TRACKED_ROUTES: usize = 4096;

/// `[server.remote_keys]` after validation.
#[derive(Debug)]
pub struct KeySettings {
    /// TLS client settings: the trust roots (`ca_file`, else the system's).
    pub tls: Arc<rustls::ClientConfig>,
    /// Deadline of one fetch (connect, TLS, request, whole body).
    pub timeout: Duration,
    /// Largest document accepted, in bytes.
    pub max_bytes: usize,
    /// Documents kept at most; the least recently used is dropped.
    pub max_entries: usize,
    /// Shortest lifetime given to a document, whatever its server says.
    pub min_ttl: Duration,
    /// Longest lifetime given to a document.
    pub max_ttl: Duration,
    /// New fetches (of a document not cached, or a JWKS fetched again for an
    /// unknown `kid`) a route may start per minute, and at once.
    pub max_fetches_per_minute: NonZeroU32,
}

/// Why a request's keys are not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The fetch failed, or failed moments ago; the text says which
    /// document and why (never a secret).
    #[error("{0}")]
    Failed(String),
    /// The route's bound on new fetches is spent: nothing was fetched, and
    /// one may start after `retry_after`.
    #[error("{0}: the route's bound on new key fetches is spent")]
    Limited(String, Duration),
}

/// What a cached document is: its URL, its kind, and for a key endpoint's JWK
/// the `kid` it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    url: HttpsUrl,
    kind: Document,
    kid: Option<String>,
}

impl CacheKey {
    /// The key endpoint a JWK comes from, as a key of its own: where a failed
    /// fetch of any `kid` is remembered.
    fn endpoint(&self) -> Option<Self> {
        (self.kind == Document::Jwk).then(|| Self {
            kid: None,
            ..self.clone()
        })
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kid {
            // Debug-quoted: the `kid` comes from the request.
            Some(kid) => write!(f, "{} ({:?} {kid:?})", self.url, self.kind),
            None => write!(f, "{} ({:?})", self.url, self.kind),
        }
    }
}

/// A document to obtain, and what to ask for it with (a key endpoint's
/// credentials; a plain GET without).
#[derive(Debug, Clone)]
struct Query {
    key: CacheKey,
    credentials: Option<Arc<Credentials>>,
}

/// A cached document.
#[derive(Debug)]
struct Entry {
    keys: Arc<PublicKeys>,
    fetched_at: Instant,
    refresh_at: Instant,
    expires_at: Instant,
    refreshing: bool,
}

/// What a cached document is good for at one instant.
#[derive(Debug)]
enum Lookup {
    /// Use it.
    Fresh(Arc<PublicKeys>),
    /// Use it, and refresh it in the background (the caller does).
    Stale(Arc<PublicKeys>),
    /// Fetch it before use.
    Missing,
}

impl Entry {
    /// A document fetched at `fetched_at`, kept for `ttl`: refreshed after
    /// three quarters of it.
    fn new(keys: Arc<PublicKeys>, fetched_at: Instant, ttl: Duration) -> Self {
        Self {
            keys,
            fetched_at,
            refresh_at: fetched_at + ttl * 3 / 4,
            expires_at: fetched_at + ttl,
            refreshing: false,
        }
    }

    /// What the entry is good for at `now`, for a token naming `kid`. The
    /// first caller to find it stale is told so (and marks it refreshing).
    fn lookup(&mut self, now: Instant, kid: Option<&str>, min_ttl: Duration) -> Lookup {
        let rotated = kid.is_some_and(|k| !self.keys.has_kid(k))
            && now.duration_since(self.fetched_at) >= min_ttl;
        if now >= self.expires_at || rotated {
            Lookup::Missing
        } else if now >= self.refresh_at && !self.refreshing {
            self.refreshing = true;
            Lookup::Stale(Arc::clone(&self.keys))
        } else {
            Lookup::Fresh(Arc::clone(&self.keys))
        }
    }
}

/// Locks `lru`, first resizing it to `max_entries`.
fn bounded<'a, V>(
    lru: &'a Mutex<LruCache<CacheKey, V>>,
    settings: &KeySettings,
) -> MutexGuard<'a, LruCache<CacheKey, V>> {
    let mut lru = lru.lock().unwrap_or_else(PoisonError::into_inner);
    let cap = NonZeroUsize::new(settings.max_entries).unwrap_or(NonZeroUsize::MIN);
    if lru.cap() != cap {
        lru.resize(cap);
    }
    lru
}

/// How long a document is kept: its `max_age` (an hour when absent), never
/// past a certificate's `not_after`, within the settings' bounds.
fn lifetime(
    max_age: Option<u64>,
    not_after: Option<i64>,
    now_unix: i64,
    settings: &KeySettings,
) -> Duration {
    let mut ttl = max_age
        .map_or(DEFAULT_TTL, Duration::from_secs)
        .min(settings.max_ttl);
    if let Some(not_after) = not_after {
        let left = u64::try_from(not_after.saturating_sub(now_unix)).unwrap_or(0);
        ttl = ttl.min(Duration::from_secs(left));
    }
    ttl.max(settings.min_ttl)
}

/// New fetches per route (a GCRA bucket each), built for one
/// `max_fetches_per_minute`.
type FetchBound = (NonZeroU32, Arc<DefaultKeyedRateLimiter<String>>);

#[derive(Debug)]
struct Inner {
    cache: Mutex<LruCache<CacheKey, Entry>>,
    /// Documents whose last fetch failed, and until when that stands.
    failures: Mutex<LruCache<CacheKey, Instant>>,
    flights: Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<()>>>>,
    /// The bound on new fetches per route; kept across reloads that leave
    /// `max_fetches_per_minute` alone.
    bound: Mutex<Option<FetchBound>>,
}

/// The process's cache of remote keys, shared by every request and reload.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct KeyStore {
    inner: Arc<Inner>,
    metrics: Metrics,
}

impl KeyStore {
    /// An empty store counting its fetches in `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                cache: Mutex::new(LruCache::new(NonZeroUsize::MIN)),
                failures: Mutex::new(LruCache::new(NonZeroUsize::MIN)),
                flights: Mutex::new(HashMap::new()),
                bound: Mutex::new(None),
            }),
            metrics,
        }
    }

    /// The keys at `url`, from the cache or fetched now. A document past three
    /// quarters of its lifetime is served while a background task refreshes
    /// it; an expired or missing one is fetched before answering (one fetch
    /// per document at a time). A JWKS lacking `kid` is fetched again, at most
    /// once per `min_ttl`, since the issuer may have rotated its keys.
    /// `now_unix` bounds a certificate's lifetime by its `notAfter`. A fetch
    /// the request needs (not a background refresh) counts against `route`'s
    /// bound on new fetches; past it nothing is fetched.
    pub async fn get(
        &self,
        settings: &Arc<KeySettings>,
        route: &str,
        url: &HttpsUrl,
        kind: Document,
        kid: Option<&str>,
        now_unix: i64,
    ) -> Result<Arc<PublicKeys>, KeyError> {
        let query = Query {
            key: CacheKey {
                url: url.clone(),
                kind,
                kid: None,
            },
            credentials: None,
        };
        self.obtain(settings, route, query, kid, now_unix).await
    }

    /// The JWK `kid` names, from the cache or asked of the key endpoint at
    /// `url` now (a POST of `credentials` and `kid`), cached and refreshed as
    /// [`KeyStore::get`] does, until the key's `expired_at` at the latest. A
    /// `kid` never fetched before is not asked for while a failed fetch at the
    /// endpoint is remembered, so forged `kid`s cannot make a flood of fetches;
    /// and each counts against `route`'s bound on new fetches.
    pub async fn get_jwk(
        &self,
        settings: &Arc<KeySettings>,
        route: &str,
        url: &HttpsUrl,
        kid: &str,
        credentials: &Arc<Credentials>,
        now_unix: i64,
    ) -> Result<Arc<PublicKeys>, KeyError> {
        let query = Query {
            key: CacheKey {
                url: url.clone(),
                kind: Document::Jwk,
                kid: Some(kid.to_owned()),
            },
            credentials: Some(Arc::clone(credentials)),
        };
        self.obtain(settings, route, query, None, now_unix).await
    }

    async fn obtain(
        &self,
        settings: &Arc<KeySettings>,
        route: &str,
        query: Query,
        kid: Option<&str>,
        now_unix: i64,
    ) -> Result<Arc<PublicKeys>, KeyError> {
        let key = &query.key;
        match self.lookup(settings, key, kid) {
            Lookup::Fresh(keys) => return Ok(keys),
            Lookup::Stale(keys) => {
                self.refresh_in_background(settings, query, now_unix);
                return Ok(keys);
            }
            Lookup::Missing => {}
        }
        let flight = self.flight(key);
        let guard = flight.lock().await;
        // Another request may have fetched it while this one waited.
        let result = match self.lookup(settings, key, kid) {
            Lookup::Fresh(keys) | Lookup::Stale(keys) => Ok(keys),
            Lookup::Missing => self.fetch(settings, &query, now_unix, Some(route)).await,
        };
        drop(guard);
        self.land(key, &flight);
        result
    }

    /// Fetches a confirmation URL (AWS SNS `SubscribeURL`); the answer's body is
    /// read (bounded) and dropped.
    pub async fn confirm(&self, settings: &KeySettings, url: &HttpsUrl) -> Result<(), String> {
        let result = fetch::get(settings, url).await.map(drop);
        self.metrics.key_fetch("confirmation", result.is_ok());
        result
    }

    fn lookup(&self, settings: &KeySettings, key: &CacheKey, kid: Option<&str>) -> Lookup {
        let mut cache = self.cache(settings);
        match cache.get_mut(key) {
            Some(entry) => entry.lookup(Instant::now(), kid, settings.min_ttl),
            None => Lookup::Missing,
        }
    }

    /// The cache, resized to the settings in force.
    fn cache(&self, settings: &KeySettings) -> MutexGuard<'_, LruCache<CacheKey, Entry>> {
        bounded(&self.inner.cache, settings)
    }

    /// The failed fetches, resized to the settings in force.
    fn failures(&self, settings: &KeySettings) -> MutexGuard<'_, LruCache<CacheKey, Instant>> {
        bounded(&self.inner.failures, settings)
    }

    fn flight(&self, key: &CacheKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self
            .inner
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(flights.entry(key.clone()).or_default())
    }

    /// Forgets a finished flight once nobody else waits on it.
    fn land(&self, key: &CacheKey, flight: &Arc<tokio::sync::Mutex<()>>) {
        let mut flights = self
            .inner
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Two references: the map's and the caller's.
        if Arc::strong_count(flight) <= 2 {
            flights.remove(key);
        }
    }

    /// Whether a failed fetch of `key` is still remembered.
    fn failed_recently(&self, settings: &KeySettings, key: &CacheKey) -> bool {
        let failed = self.failures(settings).get(key).copied();
        failed.is_some_and(|until| Instant::now() < until)
    }

    /// Takes one of `route`'s new fetches; `Err` holds how long until one
    /// is there.
    fn take_fetch(&self, settings: &KeySettings, route: &str) -> Result<(), Duration> {
        let per_minute = settings.max_fetches_per_minute;
        let limiter = {
            let mut bound = self
                .inner
                .bound
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match &*bound {
                Some((built_for, limiter)) if *built_for == per_minute => Arc::clone(limiter),
                _ => {
                    let limiter = Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_minute(
                        per_minute,
                    )));
                    *bound = Some((per_minute, Arc::clone(&limiter)));
                    limiter
                }
            }
        };
        if limiter.len() > MAX_TRACKED_ROUTES {
            limiter.retain_recent();
        }
        limiter
            .check_key(&route.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Fetches a document, unless its last fetch (or, for a `kid` never
    /// fetched, its endpoint's) failed moments ago, or the request's `route`
    /// has spent its new fetches (a background refresh has no route).
    async fn fetch(
        &self,
        settings: &KeySettings,
        query: &Query,
        now_unix: i64,
        route: Option<&str>,
    ) -> Result<Arc<PublicKeys>, KeyError> {
        let key = &query.key;
        if self.failed_recently(settings, key) {
            return Err(KeyError::Failed(format!(
                "{key}: its last fetch failed moments ago"
            )));
        }
        let endpoint = key.endpoint();
        if let Some(endpoint) = &endpoint {
            let known = self.cache(settings).contains(key);
            if !known && self.failed_recently(settings, endpoint) {
                return Err(KeyError::Failed(format!(
                    "{key}: a fetch from this endpoint failed moments ago"
                )));
            }
        }
        if let Some(route) = route
            && let Err(wait) = self.take_fetch(settings, route)
        {
            self.metrics.key_fetch_refused(route);
            return Err(KeyError::Limited(key.to_string(), wait));
        }
        let result = self.fetch_document(settings, query, now_unix).await;
        let label = match key.kind {
            Document::Certificate => "certificate",
            Document::Jwks => "jwks",
            Document::Jwk => "jwk",
        };
        self.metrics.key_fetch(label, result.is_ok());
        let mut failures = self.failures(settings);
        match &result {
            Ok(_) => {
                failures.pop(key);
            }
            Err(_) => {
                let until = Instant::now() + settings.min_ttl.min(RETRY_REFRESH);
                failures.put(key.clone(), until);
                if let Some(endpoint) = endpoint {
                    failures.put(endpoint, until);
                }
            }
        }
        drop(failures);
        result.map_err(|e| KeyError::Failed(format!("{key}: {e}")))
    }

    /// Fetches, parses and caches a document.
    async fn fetch_document(
        &self,
        settings: &KeySettings,
        query: &Query,
        now_unix: i64,
    ) -> Result<Arc<PublicKeys>, String> {
        let key = &query.key;
        let url = &key.url;
        let fetched = match &query.credentials {
            None => fetch::get(settings, url).await,
            Some(credentials) => {
                let kid = key.kid.as_deref().unwrap_or_default();
                fetch::post_json(settings, url, key_request(credentials, kid)).await
            }
        };
        let fetched = fetched.map_err(|e| format!("cannot fetch: {e}"))?;
        let keys = PublicKeys::parse(key.kind, &fetched.body).map(Arc::new)?;
        let ttl = lifetime(fetched.max_age, keys.not_after(), now_unix, settings);
        let entry = Entry::new(Arc::clone(&keys), Instant::now(), ttl);
        self.cache(settings).put(key.clone(), entry);
        log::info!("remote keys: fetched {key} (kept {} s)", ttl.as_secs());
        Ok(keys)
    }

    fn refresh_in_background(&self, settings: &Arc<KeySettings>, query: Query, now_unix: i64) {
        let store = self.clone();
        let settings = Arc::clone(settings);
        tokio::spawn(async move {
            if let Err(e) = store.fetch(&settings, &query, now_unix, None).await {
                log::warn!("remote keys: refresh failed, keeping the cached keys: {e}");
                let mut cache = store.cache(&settings);
                if let Some(entry) = cache.get_mut(&query.key) {
                    entry.refreshing = false;
                    entry.refresh_at = (Instant::now() + RETRY_REFRESH).min(entry.expires_at);
                }
            }
        });
    }
}

/// What a key endpoint is asked: `{"client_id", "secret", "key_id"}` (Plaid's
/// `/webhook_verification_key/get`). It holds the secret: it is sent, never shown.
fn key_request(credentials: &Credentials, kid: &str) -> Vec<u8> {
    serde_json::json!({
        "client_id": credentials.client_id,
        "secret": String::from_utf8_lossy(credentials.secret.expose()),
        "key_id": kid,
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests;
