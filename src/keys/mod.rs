//! Remote keys: fetches, caches and refreshes the certificates and JWKS that
//! remote-key schemes (AWS SNS, PayPal, OIDC pushes) verify with, and confirms
//! AWS SNS subscriptions. The only part of verification that does I/O: it
//! hands parsed keys to [`crate::verify`], which never fetches. Only URLs that
//! passed the scheme's allowlist reach it, and only over HTTPS.

pub mod fetch;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

use crate::scheme::remote::HttpsUrl;
use crate::verify::remote::{Document, PublicKeys};

/// Lifetime of a document whose server sent no `Cache-Control: max-age`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// After a failed background refresh, how long before the next try.
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

enum Lookup {
    Fresh(Arc<PublicKeys>),
    Stale(Arc<PublicKeys>),
    Missing,
}

#[derive(Debug)]
struct Inner {
    cache: Mutex<LruCache<CacheKey, Entry>>,
    flights: Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// The process's cache of remote keys, shared by every request and reload.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct KeyStore {
    inner: Arc<Inner>,
}

impl Default for KeyStore {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                cache: Mutex::new(LruCache::new(NonZeroUsize::MIN)),
                flights: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl KeyStore {
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
        fetch::get(
            Arc::clone(&settings.tls),
            url,
            settings.timeout,
            settings.max_bytes,
        )
        .await
        .map(drop)
    }

    fn lookup(&self, settings: &KeySettings, key: &CacheKey, kid: Option<&str>) -> Lookup {
        let mut cache = self.cache(settings);
        let now = Instant::now();
        let Some(entry) = cache.get_mut(key) else {
            return Lookup::Missing;
        };
        let rotated = kid.is_some_and(|k| !entry.keys.has_kid(k))
            && now.duration_since(entry.fetched_at) >= settings.min_ttl;
        if now >= entry.expires_at || rotated {
            Lookup::Missing
        } else if now >= entry.refresh_at && !entry.refreshing {
            entry.refreshing = true;
            Lookup::Stale(Arc::clone(&entry.keys))
        } else {
            Lookup::Fresh(Arc::clone(&entry.keys))
        }
    }

    /// The cache, resized to the settings in force.
    fn cache(
        &self,
        settings: &KeySettings,
    ) -> std::sync::MutexGuard<'_, LruCache<CacheKey, Entry>> {
        let mut cache = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cap = NonZeroUsize::new(settings.max_entries).unwrap_or(NonZeroUsize::MIN);
        if cache.cap() != cap {
            cache.resize(cap);
        }
        cache
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
        let fetched = fetch::get(
            Arc::clone(&settings.tls),
            url,
            settings.timeout,
            settings.max_bytes,
        )
        .await
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
        let keys = PublicKeys::parse(*kind, &fetched.body)
            .map(Arc::new)
            .map_err(|e| format!("{url}: {e}"))?;
        let mut ttl = fetched
            .max_age
            .map_or(DEFAULT_TTL, Duration::from_secs)
            .min(settings.max_ttl);
        if let Some(not_after) = keys.not_after() {
            let left = u64::try_from(not_after.saturating_sub(now_unix)).unwrap_or(0);
            ttl = ttl.min(Duration::from_secs(left));
        }
        let ttl = ttl.max(settings.min_ttl);
        let now = Instant::now();
        let entry = Entry {
            keys: Arc::clone(&keys),
            fetched_at: now,
            refresh_at: now + ttl * 3 / 4,
            expires_at: now + ttl,
            refreshing: false,
        };
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
