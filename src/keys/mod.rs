//! Remote keys: fetches, caches and refreshes the certificates and JWKS that
//! remote-key schemes (AWS SNS, PayPal, OIDC pushes) verify with, and confirms
//! AWS SNS subscriptions. The only part of verification that does I/O: it
//! hands parsed keys to [`crate::verify`], which never fetches. Only URLs that
//! passed the scheme's allowlist reach it, and only over HTTPS.

pub mod fetch;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::scheme::remote::HttpsUrl;
use crate::verify::remote::{Document, PublicKeys};

/// Lifetime of a document whose server sent no `Cache-Control: max-age`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// After a failed background refresh, how long before the next try; also the
/// longest a failed fetch is remembered (at most `min_ttl`), so a flood of
/// requests naming a failing URL does not become a flood of fetches.
const RETRY_REFRESH: Duration = Duration::from_secs(10);

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
}

type CacheKey = (HttpsUrl, Document);

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

#[derive(Debug)]
struct Inner {
    cache: Mutex<LruCache<CacheKey, Entry>>,
    /// Documents whose last fetch failed, and until when that stands.
    failures: Mutex<LruCache<CacheKey, Instant>>,
    flights: Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<()>>>>,
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
            }),
            metrics,
        }
    }

    /// The keys at `url`, from the cache or fetched now. A document past three
    /// quarters of its lifetime is served while a background task refreshes
    /// it; an expired or missing one is fetched before answering (one fetch
    /// per document at a time). A JWKS lacking `kid` is fetched again, at most
    /// once per `min_ttl`, since the issuer may have rotated its keys.
    /// `now_unix` bounds a certificate's lifetime by its `notAfter`.
    pub async fn get(
        &self,
        settings: &Arc<KeySettings>,
        url: &HttpsUrl,
        kind: Document,
        kid: Option<&str>,
        now_unix: i64,
    ) -> Result<Arc<PublicKeys>, String> {
        let key = (url.clone(), kind);
        match self.lookup(settings, &key, kid) {
            Lookup::Fresh(keys) => return Ok(keys),
            Lookup::Stale(keys) => {
                self.refresh_in_background(settings, key, now_unix);
                return Ok(keys);
            }
            Lookup::Missing => {}
        }
        let flight = self.flight(&key);
        let guard = flight.lock().await;
        // Another request may have fetched it while this one waited.
        let result = match self.lookup(settings, &key, kid) {
            Lookup::Fresh(keys) | Lookup::Stale(keys) => Ok(keys),
            Lookup::Missing => self.fetch(settings, &key, now_unix).await,
        };
        drop(guard);
        self.land(&key, &flight);
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

    async fn fetch(
        &self,
        settings: &KeySettings,
        key: &CacheKey,
        now_unix: i64,
    ) -> Result<Arc<PublicKeys>, String> {
        let (url, kind) = key;
        let failed = self.failures(settings).get(key).copied();
        if failed.is_some_and(|until| Instant::now() < until) {
            return Err(format!(
                "{url} ({kind:?}): its last fetch failed moments ago"
            ));
        }
        let result = self.fetch_document(settings, key, now_unix).await;
        let label = match kind {
            Document::Certificate => "certificate",
            Document::Jwks => "jwks",
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
            }
        }
        drop(failures);
        result.map_err(|e| format!("{url} ({kind:?}): {e}"))
    }

    /// Fetches, parses and caches a document.
    async fn fetch_document(
        &self,
        settings: &KeySettings,
        key: &CacheKey,
        now_unix: i64,
    ) -> Result<Arc<PublicKeys>, String> {
        let (url, kind) = key;
        let fetched = fetch::get(settings, url)
            .await
            .map_err(|e| format!("cannot fetch: {e}"))?;
        let keys = PublicKeys::parse(*kind, &fetched.body).map(Arc::new)?;
        let ttl = lifetime(fetched.max_age, keys.not_after(), now_unix, settings);
        let entry = Entry::new(Arc::clone(&keys), Instant::now(), ttl);
        self.cache(settings).put(key.clone(), entry);
        log::info!("remote keys: fetched {url} (kept {} s)", ttl.as_secs());
        Ok(keys)
    }

    fn refresh_in_background(&self, settings: &Arc<KeySettings>, key: CacheKey, now_unix: i64) {
        let store = self.clone();
        let settings = Arc::clone(settings);
        tokio::spawn(async move {
            if let Err(e) = store.fetch(&settings, &key, now_unix).await {
                log::warn!("remote keys: refresh failed, keeping the cached keys: {e}");
                let mut cache = store.cache(&settings);
                if let Some(entry) = cache.get_mut(&key) {
                    entry.refreshing = false;
                    entry.refresh_at = (Instant::now() + RETRY_REFRESH).min(entry.expires_at);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests;
