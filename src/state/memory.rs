//! The replay cache in this process's memory: at most `max_entries` keys,
//! each expiring on its own; past the bound the least recently used goes
//! first, and is counted. Large caches are split in shards by the key's hash,
//! each with its own lock and its share of the bound, so worker threads rarely
//! wait on each other and a growing table rehashes a shard at a time.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::{DedupKey, Found};
use crate::observe::metrics::Metrics;

/// What a key holds.
#[derive(Debug)]
enum Entry {
    /// Claimed by the request holding `token`, until `until`.
    Pending { token: u64, until: Instant },
    /// Claimed by `token`, whose request is stored for async delivery: a
    /// copy is a duplicate.
    Stored { token: u64, until: Instant },
    /// Delivered; remembered until `until`.
    Delivered { until: Instant },
}

impl Entry {
    fn until(&self) -> Instant {
        match self {
            Self::Pending { until, .. }
            | Self::Stored { until, .. }
            | Self::Delivered { until } => *until,
        }
    }
}

/// Shards of a large cache.
const SHARDS: usize = 16;
/// Below this many entries a cache is one shard, so its bound is exact.
const SHARDED_FROM: usize = 4096;

type Shard = Mutex<LruCache<Arc<str>, Entry>>;

/// The bounded cache.
pub(super) struct Memory {
    /// Entries each shard holds at most.
    max_entries: usize,
    shards: Box<[Shard]>,
    hasher: RandomState,
}

impl Memory {
    /// An empty cache of at most `max_entries` keys (allocated as it fills).
    pub(super) fn new(max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        let shards = if max_entries < SHARDED_FROM {
            1
        } else {
            SHARDS
        };
        Self {
            max_entries: max_entries.div_ceil(shards),
            shards: (0..shards)
                .map(|_| Mutex::new(LruCache::unbounded()))
                .collect(),
            hasher: RandomState::new(),
        }
    }

    /// The shard holding `key`, locked.
    fn lock(&self, key: &DedupKey) -> MutexGuard<'_, LruCache<Arc<str>, Entry>> {
        let shard = if self.shards.len() == 1 {
            0
        } else {
            (self.hasher.hash_one(key.as_str()) % self.shards.len() as u64) as usize
        };
        // A panic while holding the lock leaves whole entries behind: keep going.
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
        let mut entries = self.lock(key);
        match entries.get(key.as_str()) {
            Some(Entry::Delivered { until } | Entry::Stored { until, .. }) if *until > now => {
                return Found::Delivered;
            }
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
        self.insert(&mut self.lock(key), key, entry, now, metrics);
    }

    /// Marks `key` stored for async delivery if `token` still holds it.
    pub(super) fn stored(&self, key: &DedupKey, token: u64) {
        let mut entries = self.lock(key);
        if let Some(entry) = entries.peek_mut(key.as_str())
            && let Entry::Pending { token: t, until } = *entry
            && t == token
        {
            *entry = Entry::Stored { token, until };
        }
    }

    /// Drops `key` if `token` still holds it.
    pub(super) fn release(&self, key: &DedupKey, token: u64) {
        let mut entries = self.lock(key);
        if matches!(
            entries.peek(key.as_str()),
            Some(Entry::Pending { token: t, .. } | Entry::Stored { token: t, .. }) if *t == token
        ) {
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
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}
