//! The replay cache in this process's memory: at most `max_entries` keys,
//! each expiring on its own; past the bound the least recently used goes
//! first, and is counted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::{DedupKey, Found};
use crate::metrics::Metrics;

/// What a key holds.
#[derive(Debug)]
enum Entry {
    /// Claimed by the request holding `token`, until `until`.
    Pending { token: u64, until: Instant },
    /// Delivered; remembered until `until`.
    Delivered { until: Instant },
}

impl Entry {
    fn until(&self) -> Instant {
        match self {
            Self::Pending { until, .. } | Self::Delivered { until } => *until,
        }
    }
}

/// The bounded cache.
pub(super) struct Memory {
    max_entries: usize,
    entries: Mutex<LruCache<Arc<str>, Entry>>,
}

impl Memory {
    /// An empty cache of at most `max_entries` keys (allocated as it fills).
    pub(super) fn new(max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            entries: Mutex::new(LruCache::unbounded()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Arc<str>, Entry>> {
        // A panic while holding the lock leaves whole entries behind: keep going.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims `key` for `token` unless a live entry holds it.
    pub(super) fn claim(
        &self,
        key: &DedupKey,
        token: u64,
        hold: Duration,
        metrics: &Metrics,
    ) -> Found {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.get(key.as_str()) {
            Some(Entry::Delivered { until }) if *until > now => return Found::Delivered,
            Some(Entry::Pending { until, .. }) if *until > now => {
                return Found::InFlight(*until - now);
            }
            _ => {}
        }
        let entry = Entry::Pending {
            token,
            until: now + hold,
        };
        self.insert(&mut entries, key, entry, now, metrics);
        Found::Free
    }

    /// Marks `key` delivered for `ttl`: the event reached the app, whoever
    /// holds the key now.
    pub(super) fn mark(&self, key: &DedupKey, ttl: Duration, metrics: &Metrics) {
        let now = Instant::now();
        let entry = Entry::Delivered { until: now + ttl };
        self.insert(&mut self.lock(), key, entry, now, metrics);
    }

    /// Drops `key` if `token` still holds it.
    pub(super) fn release(&self, key: &DedupKey, token: u64) {
        let mut entries = self.lock();
        if matches!(entries.peek(key.as_str()), Some(Entry::Pending { token: t, .. }) if *t == token)
        {
            entries.pop(key.as_str());
        }
    }

    /// Inserts, then trims to the bound: expired entries at the cold end go
    /// quietly, live ones are evictions.
    fn insert(
        &self,
        entries: &mut LruCache<Arc<str>, Entry>,
        key: &DedupKey,
        entry: Entry,
        now: Instant,
        metrics: &Metrics,
    ) {
        entries.put(key.shared(), entry);
        while entries.len() > self.max_entries {
            if let Some((_, old)) = entries.pop_lru()
                && old.until() > now
            {
                metrics.state_evicted();
            }
        }
    }

    /// Keys held now, expired ones included until they are pushed out.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}
