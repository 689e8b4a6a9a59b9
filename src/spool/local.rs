//! The spool's `local` backend: the [`store`](super::store) in one directory,
//! opened on first use and again after an I/O error, and one committer thread
//! that applies every change waiting in one durable transaction (group
//! commit); every delivery is this gateway's, indexed in memory from the
//! store's records at the first open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::store::{Local, Op, Store, StoreError};
use super::{
    AdminError, DeliveryId, Depth, Inner, LOG, Meta, Refused, Spool, Status, now_ms, refresh,
};

/// Changes waiting for the committer, at most; more wait their turn.
const COMMIT_QUEUE: usize = 4096;
/// Changes the committer applies in one transaction, at most.
const MAX_GROUP: usize = 1024;
/// How long a broken local store waits between attempts to open it again.
const REOPEN_EVERY: Duration = Duration::from_millis(250);
/// How long new deliveries are refused at once after one failed on an I/O
/// error (a full disk); then one is tried again.
const INSERT_PAUSE_MS: u64 = 1000;

/// A group of changes and who waits for them.
pub(super) struct Job {
    pub(super) ops: Vec<Op>,
    pub(super) done: Done,
}

/// Where a job's result goes.
type Done = oneshot::Sender<Result<(), StoreError>>;

/// The `local` backend: the store, opened on first use and again after an
/// I/O error, and its committer.
pub(super) struct LocalBackend {
    dir: PathBuf,
    pub(super) store: RwLock<Slot>,
    commits: mpsc::Sender<Job>,
    /// Bytes of the budget used by what is stored (and by new deliveries
    /// being stored).
    used: AtomicU64,
    max_bytes: u64,
    next_id: AtomicU64,
    /// Until when (unix ms) new deliveries are refused without trying: the
    /// last one failed on an I/O error.
    paused_until: AtomicU64,
}

/// The local store, when open.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) store: Option<Box<dyn Store>>,
    /// Whether the index was loaded (at the first open; a reopened store
    /// holds what the index says).
    loaded: bool,
    /// After a failed open: not tried again before then, and why it failed.
    retry: Option<(Instant, StoreError)>,
}

impl LocalBackend {
    /// The backend keeping deliveries in `dir` within `max_bytes`, and the
    /// changes its committer is to apply.
    pub(super) fn new(dir: &Path, max_bytes: u64) -> (Self, mpsc::Receiver<Job>) {
        let (commits, jobs) = mpsc::channel(COMMIT_QUEUE);
        let local = Self {
            dir: dir.to_owned(),
            store: RwLock::new(Slot::default()),
            commits,
            used: AtomicU64::new(0),
            max_bytes,
            next_id: AtomicU64::new(0),
            paused_until: AtomicU64::new(0),
        };
        (local, jobs)
    }

    /// Opens the store now when `open_now` or when it holds deliveries from
    /// before, and starts the committer on `jobs`. Fails when the store
    /// exists but cannot be read.
    pub(super) fn start(
        &self,
        spool: &Spool,
        jobs: mpsc::Receiver<Job>,
        open_now: bool,
    ) -> Result<(), String> {
        if open_now || exists(&self.dir) {
            self.with_store(spool, |_| Ok(()))
                .map_err(|e| e.to_string())?;
        }
        // The committer holds the spool weakly: when the last handle is
        // gone, the channel closes and the thread ends.
        let committer = Arc::downgrade(&spool.0);
        std::thread::Builder::new()
            .name("hookgate-spool".into())
            .spawn(move || commit_forever(&committer, jobs))
            .map_err(|e| format!("cannot start the spool's committer: {e}"))?;
        Ok(())
    }

    /// Its directory and bytes used, for the spool's `Debug`.
    pub(super) fn describe(&self, d: &mut std::fmt::DebugStruct<'_, '_>) {
        d.field("dir", &self.dir)
            .field("used", &self.used.load(Ordering::Relaxed));
    }

    /// Runs `f` on the store: opened (and the index loaded from it) on
    /// first use; closed and opened again once an I/O error broke it (redb's
    /// way back), at most every [`REOPEN_EVERY`] while opening fails.
    pub(super) fn with_store<T>(
        &self,
        spool: &Spool,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        {
            let slot = self.store.read().unwrap_or_else(|e| e.into_inner());
            if let Some(store) = slot.store.as_deref()
                && !store.broken()
            {
                return f(store);
            }
        }
        let mut slot = self.store.write().unwrap_or_else(|e| e.into_inner());
        if slot.store.as_deref().is_some_and(|s| s.broken()) {
            // Closed before it is opened again: redb allows one handle per file.
            slot.store = None;
            if let Some(more) = LOG.check("spool reopen") {
                log::warn!(
                    "spool {}: an I/O error broke the store; opening it again{more}",
                    self.dir.display()
                );
            }
        }
        if slot.store.is_none() {
            if let Some((at, e)) = &slot.retry
                && Instant::now() < *at
            {
                return Err(e.clone());
            }
            let opened = Local::open(&self.dir).and_then(|store| {
                if !slot.loaded {
                    self.load(spool, &store)?;
                }
                Ok(store)
            });
            match opened {
                Ok(store) => {
                    if slot.loaded {
                        if let Some(more) = LOG.check("spool reopened") {
                            log::info!(
                                "spool {}: the store is open again{more}",
                                self.dir.display()
                            );
                        }
                    }
                    slot.loaded = true;
                    slot.retry = None;
                    slot.store = Some(Box::new(store));
                    spool.0.wake.notify_one();
                }
                Err(e) => {
                    slot.retry = Some((Instant::now() + REOPEN_EVERY, e.clone()));
                    return Err(e);
                }
            }
        }
        match slot.store.as_deref() {
            Some(store) => f(store),
            None => Err(StoreError("the store is not open".to_owned())),
        }
    }

    /// Loads the index from the store, at its first open.
    fn load(&self, spool: &Spool, store: &Local) -> Result<(), StoreError> {
        let metas = store.metas()?;
        let mut queue = spool.queue();
        let mut used = 0u64;
        let mut last = 0u64;
        let mut pending = 0usize;
        for meta in metas {
            used = used.saturating_add(meta.cost());
            last = last.max(meta.id);
            pending += usize::from(meta.status == Status::Pending);
            queue.insert(meta);
        }
        drop(queue);
        self.used.fetch_add(used, Ordering::AcqRel);
        // Ids grow across restarts: from the clock in µs, past any stored one.
        let from_clock = now_ms().saturating_mul(1000);
        self.next_id
            .store(from_clock.max(last.saturating_add(1)), Ordering::Release);
        log::info!(
            "spool {}: {pending} pending deliveries, {used} bytes",
            self.dir.display()
        );
        Ok(())
    }

    /// Applies `ops` to the store durably, with whatever else is waiting.
    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        let gone = || StoreError("the committer has stopped".to_owned());
        self.commits
            .send(Job { ops, done })
            .await
            .map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }

    /// Stores a new delivery durably, numbered here, and indexes it.
    pub(super) async fn enqueue(
        &self,
        spool: &Spool,
        mut meta: Meta,
        request: Vec<u8>,
    ) -> Result<DeliveryId, Refused> {
        if let Err(e) = self.with_store(spool, |_| Ok(())) {
            return Err(Refused::Failed(e));
        }
        if self.paused_until.load(Ordering::Acquire) > meta.created_ms {
            return Err(Refused::Failed(StoreError(
                "the last new delivery failed on an I/O error (a full disk?); \
                 new ones are refused for a moment"
                    .to_owned(),
            )));
        }
        let cost = meta.cost();
        let max = self.max_bytes;
        let reserved = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(cost).filter(|total| *total <= max)
            });
        if reserved.is_err() {
            return Err(Refused::Full);
        }
        meta.id = self.next_id.fetch_add(1, Ordering::AcqRel);
        let id = meta.delivery_id();
        if let Err(e) = self.commit(vec![Op::Insert(meta.clone(), request)]).await {
            self.used.fetch_sub(cost, Ordering::AcqRel);
            return Err(Refused::Failed(e));
        }
        spool.queue().insert(meta);
        spool.0.wake.notify_one();
        Ok(id)
    }

    /// A delivery's request, as stored.
    pub(super) fn request(&self, spool: &Spool, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_store(spool, |store| store.request(id))
    }

    /// Records an attempt's result (`gone`: the delivery is removed);
    /// whether it is still kept.
    pub(super) async fn record(&self, meta: &Meta, gone: bool) -> Result<bool, StoreError> {
        let op = if gone {
            Op::Remove(meta.id)
        } else {
            Op::Update(meta.clone())
        };
        self.commit(vec![op]).await?;
        if gone {
            self.used.fetch_sub(meta.cost(), Ordering::AcqRel);
        }
        Ok(!gone)
    }

    /// Deliveries, oldest first, of `route` (all when `None`) with `status`
    /// (any when `None`), at most `limit`: the index has them all.
    pub(super) fn list(
        &self,
        spool: &Spool,
        route: Option<&str>,
        status: Option<Status>,
        limit: usize,
    ) -> Vec<Meta> {
        spool
            .queue()
            .metas
            .values()
            .filter(|m| route.is_none_or(|r| m.route == r))
            .filter(|m| status.is_none_or(|s| m.status == s))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Delivery `id`'s record.
    pub(super) fn meta(&self, spool: &Spool, id: u64) -> Option<Meta> {
        spool.queue().metas.get(&id).cloned()
    }

    /// Makes a delivery due now with fresh limits.
    pub(super) async fn retry(&self, spool: &Spool, id: DeliveryId) -> Result<Meta, AdminError> {
        let old = {
            let mut queue = spool.queue();
            queue.take_out(id)?;
            let Some(old) = queue.metas.get(&id.number).cloned() else {
                return Err(AdminError::NotFound);
            };
            // Counted in flight until stored, so the deliverer leaves it alone.
            queue.routes.entry(old.route.clone()).or_default().in_flight += 1;
            old
        };
        let mut meta = old.clone();
        refresh(&mut meta);
        let stored = self.commit(vec![Op::Update(meta.clone())]).await;
        {
            let mut queue = spool.queue();
            if let Some(rq) = queue.routes.get_mut(&meta.route) {
                rq.in_flight = rq.in_flight.saturating_sub(1);
            }
            // Not stored: as it was, as it will be after a restart.
            queue.insert(if stored.is_ok() { meta.clone() } else { old });
        }
        spool.0.wake.notify_one();
        stored.map_err(AdminError::Failed)?;
        Ok(meta)
    }

    /// Deletes a delivery that is not being attempted.
    pub(super) async fn delete(&self, spool: &Spool, id: DeliveryId) -> Result<Meta, AdminError> {
        let meta = {
            let mut queue = spool.queue();
            queue.take_out(id)?;
            queue.metas.remove(&id.number).ok_or(AdminError::NotFound)?
        };
        if let Err(e) = self.commit(vec![Op::Remove(id.number)]).await {
            // Still stored: back in the index, as it will be after a restart.
            spool.queue().insert(meta);
            return Err(AdminError::Failed(e));
        }
        self.used.fetch_sub(meta.cost(), Ordering::AcqRel);
        Ok(meta)
    }

    /// Per route: pending, dead, the oldest pending's age at `now`.
    pub(super) fn depth(&self, spool: &Spool, now: u64) -> BTreeMap<String, Depth> {
        let queue = spool.queue();
        let mut out: BTreeMap<String, Depth> = BTreeMap::new();
        for meta in queue.metas.values() {
            let d = out.entry(meta.route.clone()).or_default();
            match meta.status {
                Status::Pending => {
                    d.pending += 1;
                    d.oldest_secs = d
                        .oldest_secs
                        .max(now.saturating_sub(meta.created_ms) / 1000);
                }
                Status::Dead => d.dead += 1,
            }
        }
        out
    }

    /// Bytes of the budget in use.
    pub(super) fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Applies a group of jobs in one transaction; what to tell each.
    /// When that fails, the jobs that add no delivery (attempts' results,
    /// removals, which need little or no new space) are tried again on their
    /// own, so new deliveries that do not fit on a full disk do not hold them
    /// back; those fail.
    pub(super) fn commit_group(
        &self,
        spool: &Spool,
        group: Vec<Job>,
    ) -> Vec<(Done, Result<(), StoreError>)> {
        let all: Vec<&Op> = group.iter().flat_map(|job| &job.ops).collect();
        let Err(error) = self.apply(spool, &all) else {
            return group.into_iter().map(|job| (job.done, Ok(()))).collect();
        };
        if let Some(more) = LOG.check("spool commit") {
            log::error!("{error}{more}");
        }
        let (new, others): (Vec<Job>, Vec<Job>) = group
            .into_iter()
            .partition(|job| job.ops.iter().any(|op| matches!(op, Op::Insert(..))));
        let retried = if new.is_empty() || others.is_empty() {
            Err(error.clone())
        } else {
            let ops: Vec<&Op> = others.iter().flat_map(|job| &job.ops).collect();
            self.apply(spool, &ops)
        };
        let failed = new.into_iter().map(|job| (job.done, Err(error.clone())));
        let others = others.into_iter().map(|job| (job.done, retried.clone()));
        failed.chain(others).collect()
    }

    /// Commits `ops`; after an I/O error on new deliveries, refuses new ones
    /// for a moment (the disk is likely full: each try would break the store).
    fn apply(&self, spool: &Spool, ops: &[&Op]) -> Result<(), StoreError> {
        self.with_store(spool, |store| {
            let result = store.commit(ops);
            if result.is_err()
                && store.broken()
                && ops.iter().any(|op| matches!(op, Op::Insert(..)))
            {
                let until = now_ms().saturating_add(INSERT_PAUSE_MS);
                self.paused_until.store(until, Ordering::Release);
            }
            result
        })
    }
}

/// Applies groups of changes as they come, each group in one durable
/// transaction, until the spool is gone.
fn commit_forever(spool: &Weak<Inner>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let Some(inner) = spool.upgrade() else { return };
        // Told once the spool is let go: a caller that drops its last handle
        // then finds the store closed.
        let told = {
            let spool = Spool(inner);
            let Some(local) = spool.local() else { return };
            local.commit_group(&spool, group)
        };
        for (done, result) in told {
            let _ = done.send(result);
        }
    }
}

/// Whether `dir` holds a store.
pub(super) fn exists(dir: &Path) -> bool {
    dir.join("deliveries.redb").exists()
}
