//! Durable async delivery: a route with `delivery = "async"` hands its verified
//! request to the spool, which makes it durable before the provider hears 202,
//! and the [`deliver`]er sends it upstream in the background until the app
//! answers 2xx or the route's retry limits turn it into a dead letter.
//!
//! Two backends keep the deliveries. `local` (`local.rs`, [`store`]): one committer
//! thread takes every change waiting (new deliveries, attempts' results,
//! removals) and applies them in one durable transaction, so concurrent
//! requests share one fsync (group commit); every delivery is this gateway's.
//! `redis` ([`fleet`]): Redis Streams with a consumer group shared by a
//! fleet; a gateway owns the deliveries it has read from the group, and takes
//! over those of a gateway gone silent.
//!
//! Either way the deliveries this gateway owns are indexed in memory (their
//! records, not their requests), and the deliverer takes due ones from there;
//! requests are read from the backend at each attempt.
//!
//! The index changes only once the backend has: a new delivery is indexed
//! once stored, and an attempted delivery is not taken again until its
//! result is recorded, tried again until the backend takes it (the local store is
//! reopened by itself after an I/O error, such as a full disk). So a
//! delivery whose success could not be recorded yet is not sent again
//! meanwhile, and the budget counts what is stored.

pub mod deliver;
pub mod fleet;
mod local;
pub mod request;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::base::settings::{SpoolBackend, SpoolSettings};
use crate::log_limit::LogLimit;
use crate::observe::metrics::Depth;
use crate::observe::metrics::Metrics;
use crate::routes::Route;
use crate::runtime::RuntimeConfig;
use crate::state::{DedupKey, State};
use fleet::Fleet;
use local::LocalBackend;
use request::StoredRequest;
use store::StoreError;

/// What a delivery's record costs in the `max_bytes` budget besides its request.
pub(crate) const RECORD_COST: u64 = 512;
/// Most records a listing returns.
pub const MAX_LISTED: usize = 1000;
/// The first and the longest wait before an attempt's result is recorded again.
const RECORD_RETRY_MIN: Duration = Duration::from_millis(50);
const RECORD_RETRY_MAX: Duration = Duration::from_secs(2);

/// The spool's repeated errors (a full disk, Redis down), logged once per
/// kind per 10 s with a count.
pub(crate) static LOG: LogLimit = LogLimit::new(Duration::from_secs(10));

/// Whether a delivery is still being tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for its next attempt, or being attempted.
    Pending,
    /// A dead letter: not tried again unless retried from the admin API.
    Dead,
}

impl Status {
    /// `pending` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dead => "dead",
        }
    }
}

/// A dedup claim kept by a queued delivery: marked delivered on the app's 2xx,
/// released when the delivery dies or is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptClaim {
    /// The dedup key.
    pub key: String,
    /// The claim's token.
    pub token: u64,
    /// How long a delivered key is remembered, in seconds.
    pub ttl_secs: u64,
}

/// A delivery's id as the 202 and the admin API show it: its number (the
/// order deliveries were accepted in) and the random tag stored with it, 32
/// hex digits. One id tells nothing of another: a lookup whose tag is not
/// the delivery's finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryId {
    /// The delivery's number ([`Meta::id`]).
    pub number: u64,
    /// Its random tag ([`Meta::tag`]).
    pub tag: u64,
}

impl DeliveryId {
    /// Parses an id as shown; `None` for anything but 32 hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let (number, tag) = text.split_at(16);
        Some(Self {
            number: u64::from_str_radix(number, 16).ok()?,
            tag: u64::from_str_radix(tag, 16).ok()?,
        })
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.number, self.tag)
    }
}

/// A delivery's record (everything but its request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The delivery's number: the first half of its id, in arrival order.
    pub id: u64,
    /// The random second half of its id. Records written before ids had one
    /// read as 0: theirs end in 16 zeros.
    #[serde(default)]
    pub tag: u64,
    /// The route's name.
    pub route: String,
    /// When it was accepted, unix ms.
    pub created_ms: u64,
    /// Age and attempts count from here: acceptance, or the last retry from the admin API.
    pub window_ms: u64,
    /// Attempts made; the next one carries `x-webhook-attempt: attempts + 1`.
    pub attempts: u32,
    /// Attempts made since `window_ms`.
    pub window_attempts: u32,
    /// When the next attempt is due, unix ms.
    pub next_ms: u64,
    /// Pending or dead.
    pub status: Status,
    /// What went wrong last.
    pub last_error: Option<String>,
    /// The upstream's last status.
    pub last_status: Option<u16>,
    /// The event id, when the scheme has one.
    pub event_id: Option<String>,
    /// The dedup claim it holds.
    pub claim: Option<KeptClaim>,
    /// Bytes of its stored request.
    pub request_bytes: u64,
    /// Bytes of its body.
    pub body_bytes: u64,
}

impl Meta {
    /// Its id, as the 202 and the admin API show it.
    pub fn delivery_id(&self) -> DeliveryId {
        DeliveryId {
            number: self.id,
            tag: self.tag,
        }
    }

    /// The id as shown.
    pub fn shown_id(&self) -> String {
        self.delivery_id().to_string()
    }

    /// Whether `id` is this delivery's (its tag compared in constant time).
    fn is(&self, id: DeliveryId) -> bool {
        use subtle::ConstantTimeEq;
        self.id == id.number && bool::from(self.tag.ct_eq(&id.tag))
    }

    /// What it costs in the budget.
    fn cost(&self) -> u64 {
        self.request_bytes.saturating_add(RECORD_COST)
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Now, unix ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why a delivery was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The `max_bytes` budget is spent.
    Full,
    /// The local store failed.
    Failed(StoreError),
    /// Redis failed (the `redis` backend).
    Unavailable(StoreError),
}

/// Why an admin action on a delivery did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// No such delivery.
    NotFound,
    /// It is being attempted right now.
    InFlight,
    /// The store failed.
    Failed(StoreError),
}

/// How an attempt ended, for [`Spool::finish`].
#[derive(Debug)]
pub enum Finished {
    /// The app answered 2xx: gone from the spool.
    Delivered(Meta),
    /// Tried again at `next_ms`, or dead: the record as it is now.
    Kept(Meta),
    /// The request was not in the store: the record is dropped.
    Vanished(Meta),
    /// Not attempted (its request could not be read): tried again at
    /// `next_ms`, nothing recorded.
    Untried(Meta),
}

/// The spool; cheap to clone.
#[derive(Clone)]
pub struct Spool(Arc<Inner>);

struct Inner {
    backend: Backend,
    queue: Mutex<Queue>,
    /// Wakes the deliverer: something may have become due.
    wake: Notify,
    /// Wakes the `redis` backend's reader: an attempt has ended, so its
    /// route may have room for more.
    freed: Notify,
    state: State,
    metrics: Metrics,
}

/// Where the deliveries are kept.
enum Backend {
    Local(LocalBackend),
    Fleet(Box<Fleet>),
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Spool");
        match &self.0.backend {
            Backend::Local(local) => local.describe(&mut d),
            Backend::Fleet(_) => _ = d.field("backend", &"redis"),
        }
        d.finish_non_exhaustive()
    }
}

/// The in-memory index.
#[derive(Default)]
struct Queue {
    /// Every delivery, pending or dead, by id (arrival order).
    metas: BTreeMap<u64, Meta>,
    routes: HashMap<String, RouteQueue>,
}

/// One route's pending deliveries that are not being attempted.
#[derive(Default)]
struct RouteQueue {
    /// By due time, then id.
    due: BTreeSet<(u64, u64)>,
    /// By id (for `fifo`: the head is the oldest).
    waiting: BTreeSet<u64>,
    /// Being attempted.
    in_flight: usize,
    /// Attempted, their results being recorded (no longer counted in
    /// `in_flight` unless the route is `fifo`).
    recording: usize,
    /// Whether the route was `fifo` when its deliveries were last taken.
    fifo: bool,
}

impl Queue {
    fn insert(&mut self, meta: Meta) {
        let rq = self.routes.entry(meta.route.clone()).or_default();
        if meta.status == Status::Pending {
            rq.due.insert((meta.next_ms, meta.id));
            rq.waiting.insert(meta.id);
        }
        self.metas.insert(meta.id, meta);
    }

    /// Takes `id` out of its route's waiting sets; `false` when it is being
    /// attempted (pending but not waiting).
    fn unqueue(&mut self, id: u64) -> Option<bool> {
        let meta = self.metas.get(&id)?;
        let rq = self.routes.entry(meta.route.clone()).or_default();
        if meta.status == Status::Dead {
            return Some(true);
        }
        let was_waiting = rq.waiting.remove(&id);
        rq.due.remove(&(meta.next_ms, id));
        Some(was_waiting)
    }
}

impl Queue {
    /// Takes `id` out of its route's queue for an admin action: refused when
    /// there is no such delivery, or while it is being attempted.
    fn take_out(&mut self, id: DeliveryId) -> Result<(), AdminError> {
        if !self.metas.get(&id.number).is_some_and(|m| m.is(id)) {
            return Err(AdminError::NotFound);
        }
        match self.unqueue(id.number) {
            None => Err(AdminError::NotFound),
            Some(false) => Err(AdminError::InFlight),
            Some(true) => Ok(()),
        }
    }
}

impl Spool {
    /// The spool `settings` describe. A local store is opened now when
    /// `open_now` (a route is async) or when it holds deliveries from before,
    /// else on the first delivery; Redis is connected on first use. Fails
    /// when the local store exists but cannot be read.
    pub fn new(
        settings: &SpoolSettings,
        open_now: bool,
        state: State,
        metrics: Metrics,
    ) -> Result<Self, String> {
        let (backend, jobs) = match &settings.backend {
            SpoolBackend::Local(dir) => {
                let (local, jobs) = LocalBackend::new(dir, settings.max_bytes);
                (Backend::Local(local), Some(jobs))
            }
            SpoolBackend::Redis(fleet) => {
                let fleet = Fleet::new(fleet, settings.max_bytes)?;
                (Backend::Fleet(Box::new(fleet)), None)
            }
        };
        let spool = Self(Arc::new(Inner {
            backend,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            freed: Notify::new(),
            state,
            metrics,
        }));
        if let (Some(local), Some(jobs)) = (spool.local(), jobs) {
            local.start(&spool, jobs, open_now)?;
        }
        Ok(spool)
    }

    /// The `redis` backend, when it is the one.
    pub fn fleet(&self) -> Option<&Fleet> {
        match &self.0.backend {
            Backend::Fleet(fleet) => Some(fleet),
            Backend::Local(_) => None,
        }
    }

    /// The `local` backend, when it is the one.
    fn local(&self) -> Option<&LocalBackend> {
        match &self.0.backend {
            Backend::Local(local) => Some(local),
            Backend::Fleet(_) => None,
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.0.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accepts a delivery for `route`: stored durably before this returns its
    /// id, then attempted by the deliverer (with `redis`, by whichever gateway
    /// of the fleet reads it first).
    pub async fn enqueue(
        &self,
        route: &str,
        event_id: Option<String>,
        claim: Option<KeptClaim>,
        request: &StoredRequest,
    ) -> Result<DeliveryId, Refused> {
        let bytes = request.encode();
        let now = now_ms();
        let meta = Meta {
            id: 0,
            tag: rand::random(),
            route: route.to_owned(),
            created_ms: now,
            window_ms: now,
            attempts: 0,
            window_attempts: 0,
            next_ms: now,
            status: Status::Pending,
            last_error: None,
            last_status: None,
            event_id,
            claim,
            request_bytes: bytes.len() as u64,
            body_bytes: request.body.len() as u64,
        };
        match &self.0.backend {
            Backend::Local(local) => local.enqueue(self, meta, bytes).await,
            Backend::Fleet(fleet) => fleet.enqueue(&meta, &bytes).await,
        }
    }

    /// Waits until something may have become due.
    pub async fn woken(&self) {
        self.0.wake.notified().await;
    }

    /// Waits until an attempt has ended since the last call (for the
    /// `redis` backend's reader, which reads only what routes have room for).
    pub(crate) async fn freed(&self) {
        self.0.freed.notified().await;
    }

    /// Takes the deliveries due at `now` that their routes have room for
    /// (`concurrency`, `fifo`), each with its route in `config`, and says when
    /// the next one will be due. A route missing from `config` keeps its
    /// deliveries pending.
    pub fn take_due(
        &self,
        now: u64,
        route: impl Fn(&str) -> Option<Arc<Route>>,
    ) -> (Vec<(Meta, Arc<Route>)>, Option<u64>) {
        self.take_due_within(now, route, |_| usize::MAX)
    }

    /// [`Self::take_due`], each route holding at most `most(route)` attempts
    /// in flight besides its `concurrency` (its destination's breaker: none
    /// while open, one probe after the cooldown).
    pub fn take_due_within(
        &self,
        now: u64,
        route: impl Fn(&str) -> Option<Arc<Route>>,
        most: impl Fn(&str) -> usize,
    ) -> (Vec<(Meta, Arc<Route>)>, Option<u64>) {
        let mut queue = self.queue();
        let Queue { metas, routes } = &mut *queue;
        let mut taken = Vec::new();
        let mut next: Option<u64> = None;
        let mut soonest = |at: u64| next = Some(next.map_or(at, |n| n.min(at)));
        for (name, rq) in routes.iter_mut() {
            if rq.waiting.is_empty() {
                continue;
            }
            let Some(route) = route(name) else {
                continue;
            };
            let (concurrency, fifo) = route
                .delivery
                .as_deref()
                .map_or((1, true), |p| (p.concurrency, p.fifo));
            let concurrency = concurrency.min(most(name));
            rq.fifo = fifo;
            // An attempt whose exchange is over frees its place while its
            // result is recorded, as long as fewer than twice `concurrency`
            // are between their attempt and its record (what a crash may
            // send again).
            while rq.in_flight < concurrency && rq.in_flight + rq.recording < 2 * concurrency {
                let head = if fifo {
                    if rq.in_flight > 0 {
                        break;
                    }
                    rq.waiting
                        .first()
                        .and_then(|id| metas.get(id))
                        .map(|m| (m.next_ms, m.id))
                } else {
                    rq.due.first().copied()
                };
                let Some((due, id)) = head else { break };
                if due > now {
                    soonest(due);
                    break;
                }
                rq.due.remove(&(due, id));
                rq.waiting.remove(&id);
                rq.in_flight += 1;
                if let Some(meta) = metas.get(&id) {
                    taken.push((meta.clone(), Arc::clone(&route)));
                }
            }
        }
        (taken, next)
    }

    /// How many more deliveries of `route` this gateway may take at `now`
    /// to hold at most `most` in flight or already due, for the `redis`
    /// backend's reads.
    pub(crate) fn room(&self, route: &str, most: usize, now: u64) -> usize {
        let queue = self.queue();
        let Some(rq) = queue.routes.get(route) else {
            return most;
        };
        let due = rq.due.range(..(now.saturating_add(1), 0)).count();
        most.saturating_sub(rq.in_flight.saturating_add(due))
    }

    /// Adds deliveries this gateway now owns (read or taken over from the
    /// fleet) to the index, as read: one it had already is replaced (it was
    /// queued again), unless it is being attempted.
    pub(crate) fn own(&self, metas: Vec<Meta>) {
        if metas.is_empty() {
            return;
        }
        let mut queue = self.queue();
        for meta in metas {
            if queue.unqueue(meta.id) != Some(false) {
                queue.insert(meta);
            }
        }
        drop(queue);
        self.0.wake.notify_one();
    }

    /// Forgets deliveries this gateway no longer owns (another took them
    /// over), unless they are being attempted.
    pub(crate) fn disown(&self, ids: &[u64]) {
        let mut queue = self.queue();
        for id in ids {
            if queue.unqueue(*id) == Some(true) {
                queue.metas.remove(id);
            }
        }
    }

    /// The ids this gateway owns, by route (for the `redis` backend's heartbeat).
    pub(crate) fn owned(&self) -> HashMap<String, Vec<u64>> {
        let queue = self.queue();
        let mut out: HashMap<String, Vec<u64>> = HashMap::new();
        for meta in queue.metas.values() {
            out.entry(meta.route.clone()).or_default().push(meta.id);
        }
        out
    }

    /// A delivery's request, as stored.
    pub async fn request(&self, id: u64) -> Result<Option<StoredRequest>, StoreError> {
        let bytes = match &self.0.backend {
            Backend::Local(local) => local.request(self, id)?,
            Backend::Fleet(fleet) => fleet.request(id).await?,
        };
        Ok(bytes.and_then(|b| StoredRequest::decode(&b)))
    }

    /// Records how an attempt ended (durably; tried again until the backend
    /// takes it), settles its dedup claim, and puts a delivery still pending
    /// back in its route's queue. Until then the delivery is not attempted
    /// again; its place in the route's `concurrency` is free once the
    /// exchange is over, except on a `fifo` route, where the next attempt
    /// waits for this one's result to be recorded.
    pub async fn finish(&self, finished: Finished) {
        let (meta, gone, tried) = match finished {
            Finished::Delivered(meta) | Finished::Vanished(meta) => (meta, true, true),
            Finished::Kept(meta) => (meta, false, true),
            Finished::Untried(meta) => (meta, false, false),
        };
        let freed = tried && self.free_place(&meta.route);
        if freed {
            self.0.wake.notify_one();
            self.0.freed.notify_one();
        }
        // Whether this gateway still owns it (a fleet's dead letters are in
        // Redis for all to see, owned by none).
        let owned = if tried {
            self.record(&meta, gone).await
        } else {
            true
        };
        {
            let mut queue = self.queue();
            if let Some(rq) = queue.routes.get_mut(&meta.route) {
                if freed {
                    rq.recording = rq.recording.saturating_sub(1);
                } else {
                    rq.in_flight = rq.in_flight.saturating_sub(1);
                }
            }
            if owned {
                queue.insert(meta.clone());
            } else {
                queue.metas.remove(&meta.id);
            }
        }
        self.0.wake.notify_one();
        self.0.freed.notify_one();
        if let Some(claim) = &meta.claim {
            let key = DedupKey::from_stored(&claim.key);
            let settled = if gone && meta.last_status.is_some_and(|s| (200..300).contains(&s)) {
                let ttl = Duration::from_secs(claim.ttl_secs);
                self.0.state.mark_delivered(&key, ttl).await
            } else if gone || meta.status == Status::Dead {
                self.0.state.release_claim(&key, claim.token).await
            } else {
                Ok(())
            };
            if let Err(e) = settled
                && let Some(more) = LOG.check("spool claim")
            {
                log::warn!("spool: delivery {}: {e}{more}", meta.shown_id());
            }
        }
    }

    /// Frees an attempt's place in `route`'s concurrency while its result is
    /// recorded; `false` on a `fifo` route, whose next attempt waits for it.
    fn free_place(&self, route: &str) -> bool {
        let mut queue = self.queue();
        let Some(rq) = queue.routes.get_mut(route).filter(|rq| !rq.fifo) else {
            return false;
        };
        rq.in_flight = rq.in_flight.saturating_sub(1);
        rq.recording += 1;
        true
    }

    /// Records an attempt's result (`gone`: the delivery is removed), trying
    /// again until the backend takes it: one not recorded would be sent again
    /// after a restart, or by the gateway that takes it over. The first
    /// failure is counted in `hookgate_spool_unrecorded_total`. Whether this
    /// gateway still owns the delivery.
    async fn record(&self, meta: &Meta, gone: bool) -> bool {
        let mut wait = RECORD_RETRY_MIN;
        let mut failed = false;
        loop {
            match self.record_once(meta, gone).await {
                Ok(owned) => {
                    if failed && let Some(more) = LOG.check("spool recorded") {
                        log::info!(
                            "spool: the result of delivery {} is recorded now{more}",
                            meta.shown_id()
                        );
                    }
                    return owned;
                }
                Err(e) => {
                    if !failed {
                        failed = true;
                        self.0.metrics.spool_unrecorded();
                    }
                    if let Some(more) = LOG.check("spool record") {
                        log::error!(
                            "spool: the result of delivery {} is not recorded yet; trying again: {e}{more}",
                            meta.shown_id()
                        );
                    }
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2).min(RECORD_RETRY_MAX);
                }
            }
        }
    }

    /// One try of [`Self::record`].
    async fn record_once(&self, meta: &Meta, gone: bool) -> Result<bool, StoreError> {
        match &self.0.backend {
            Backend::Local(local) => local.record(meta, gone).await,
            Backend::Fleet(fleet) => fleet.record(meta, gone).await,
        }
    }

    /// Deliveries, oldest first, of `route` (all when `None`) with `status`
    /// (any when `None`), at most `limit`.
    pub async fn list(
        &self,
        route: Option<&str>,
        status: Option<Status>,
        limit: usize,
    ) -> Result<Vec<Meta>, StoreError> {
        match &self.0.backend {
            Backend::Local(local) => Ok(local.list(self, route, status, limit)),
            Backend::Fleet(fleet) => fleet.list(route, status, limit).await,
        }
    }

    /// Whether this gateway is attempting delivery `id` now.
    fn in_flight(&self, id: u64) -> bool {
        let queue = self.queue();
        queue.metas.get(&id).is_some_and(|meta| {
            meta.status == Status::Pending
                && !queue
                    .routes
                    .get(&meta.route)
                    .is_some_and(|rq| rq.waiting.contains(&id))
        })
    }

    /// One delivery's record, and whether this gateway is attempting it now.
    pub async fn get(&self, id: DeliveryId) -> Result<Option<(Meta, bool)>, StoreError> {
        let meta = match &self.0.backend {
            Backend::Local(local) => local.meta(self, id.number),
            Backend::Fleet(fleet) => fleet.meta(id.number).await?,
        };
        Ok(meta
            .filter(|m| m.is(id))
            .map(|meta| (meta, self.in_flight(id.number))))
    }

    /// Makes a delivery due now with fresh limits (`max_attempts`,
    /// `max_age_secs` count from now); a dead letter becomes pending again.
    pub async fn retry(&self, id: DeliveryId) -> Result<Meta, AdminError> {
        match &self.0.backend {
            Backend::Local(local) => local.retry(self, id).await,
            Backend::Fleet(fleet) => fleet.retry(self, id).await,
        }
    }

    /// Deletes a delivery that is not being attempted; its dedup claim is released.
    pub async fn delete(&self, id: DeliveryId) -> Result<Meta, AdminError> {
        let meta = match &self.0.backend {
            Backend::Local(local) => local.delete(self, id).await?,
            Backend::Fleet(fleet) => fleet.delete(self, id).await?,
        };
        if let Some(claim) = &meta.claim {
            let key = DedupKey::from_stored(&claim.key);
            if let Err(e) = self.0.state.release_claim(&key, claim.token).await {
                log::warn!("spool: delivery {}: {e}", meta.shown_id());
            }
        }
        Ok(meta)
    }

    /// Per route: pending, dead, the oldest pending's age at `now` (with
    /// `redis`, the fleet's, as last counted).
    pub fn depth(&self, now: u64) -> BTreeMap<String, Depth> {
        match &self.0.backend {
            Backend::Local(local) => local.depth(self, now),
            Backend::Fleet(fleet) => fleet.depth(),
        }
    }

    /// Bytes of the budget in use (with `redis`, the fleet's, as last counted).
    pub fn used_bytes(&self) -> u64 {
        match &self.0.backend {
            Backend::Local(local) => local.used_bytes(),
            Backend::Fleet(fleet) => fleet.used_bytes(),
        }
    }

    /// The metrics the spool counts into.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
}

/// Makes `meta` pending and due now, its limits counted from now.
fn refresh(meta: &mut Meta) {
    let now = now_ms();
    meta.status = Status::Pending;
    meta.next_ms = now;
    meta.window_ms = now;
    meta.window_attempts = 0;
}

/// Whether a config needs the spool now: a route is async.
pub fn needed(config: &RuntimeConfig) -> bool {
    config.routes.iter().any(|r| r.delivery.is_some())
}

#[cfg(test)]
mod tests;
