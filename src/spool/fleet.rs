//! The spool's `redis` backend: Redis Streams shared by a fleet of gateways.
//!
//! Each route's pending deliveries are entries of the stream
//! `hookgate:spool:q:ROUTE`, read through the consumer group `hookgate`: a
//! gateway owns the entries it has read (they are in its pending list) until
//! it settles them, and keeps them its own by touching them every third of
//! `claim_after_secs`. Entries a gateway has left untouched for
//! `claim_after_secs` (it died, or lost Redis) are taken over by the others
//! with `XAUTOCLAIM`. Dead letters move to `hookgate:spool:dead:ROUTE`. A
//! delivery's record and request live in the hash `hookgate:spool:d:SID`,
//! where SID is the stream id it was first given (its delivery id is that id
//! packed in 64 bits). `ordering = "fifo"` routes are read by one gateway at a
//! time, the holder of a lease that lapses after `claim_after_secs`.
//!
//! Every change is one Lua script, so a reader never sees an entry without its
//! record; with `appendfsync always`, Redis answers only once the change is on
//! disk, and it writes all the changes of one turn of its event loop with one
//! fsync (group commit for free).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamInfoConsumersReply, StreamRangeReply, StreamReadReply,
};
use redis::{Script, Value};

use super::{Depth, Meta, Refused, Spool, Status, StoreError};
use crate::reload::ConfigStore;
use crate::runtime::FleetSettings;
use crate::shutdown::Draining;
use crate::state::redis::{Link, manager};

/// Every key of the spool starts with this.
const PREFIX: &str = "hookgate:spool:";
/// The set of route names that have (had) deliveries.
const ROUTES: &str = "hookgate:spool:routes";
/// Bytes of deliveries stored, the fleet's `max_bytes` budget.
const BYTES: &str = "hookgate:spool:bytes";
/// The consumer group every gateway reads through.
const GROUP: &str = "hookgate";
/// How long a read waits for new entries before the loop looks around again.
const BLOCK: Duration = Duration::from_millis(500);
/// How long the reader waits for an attempt to end while a route has no
/// room, before it reads the other routes again.
const POLL: Duration = Duration::from_millis(100);
/// Entries a takeover claims per call, and calls per route per turn.
const CLAIM_PAGE: usize = 100;
const CLAIM_PAGES: usize = 10;
/// Entries touched per heartbeat call.
const BEAT_CHUNK: usize = 256;
/// Deliveries of a route a gateway holds per unit of its `concurrency`:
/// besides those it can attempt at once, as many again are read ahead, so an
/// attempt that ends finds the next one indexed, its request with it.
const READ_AHEAD: usize = 2;
/// Bytes of requests read ahead held in memory at most; past it, a request
/// is read at its attempt.
const AHEAD_BYTES: usize = 64 << 20;
/// Bits of a stream id's sequence number in a delivery id.
const SEQ_BITS: u32 = 20;

/// Adds a delivery: KEYS q, routes, bytes; ARGV route, record, request, cost,
/// max_bytes, prefix. Returns its stream id, or nil when the budget is spent.
const ENQUEUE: &str = r"
local cost = tonumber(ARGV[4])
if tonumber(redis.call('GET', KEYS[3]) or '0') + cost > tonumber(ARGV[5]) then
  return false
end
local e = redis.call('XADD', KEYS[1], '*', 'd', '')
redis.call('HSET', ARGV[6] .. 'd:' .. e, 'm', ARGV[2], 'r', ARGV[3], 'c', cost, 'e', e, 's', 'q')
redis.call('INCRBY', KEYS[3], cost)
redis.call('SADD', KEYS[2], ARGV[1])
return e
";

/// The start of the scripts that take a delivery out of its stream: KEYS d,
/// q, dead; ARGV[1] group. Ends the script with 0 when the delivery is not
/// there; else its entry is gone from the stream it was in, and `h` holds
/// its entry, stream and cost.
macro_rules! detach {
    () => {
        r"
local h = redis.call('HMGET', KEYS[1], 'e', 's', 'c')
if not h[1] then return 0 end
if h[2] == 'dead' then
  redis.call('XDEL', KEYS[3], h[1])
else
  redis.call('XACK', KEYS[2], ARGV[1], h[1])
  redis.call('XDEL', KEYS[2], h[1])
end
"
    };
}

/// Removes a delivery (delivered or deleted): KEYS d, q, dead, bytes; ARGV
/// group. Returns 1, or 0 when it was not there.
const REMOVE: &str = concat!(
    detach!(),
    r"
redis.call('DECRBY', KEYS[4], tonumber(h[3]) or 0)
redis.call('DEL', KEYS[1])
return 1
"
);

/// Stores an attempt's result: KEYS d, q, dead, bytes; ARGV group, record,
/// `dead` or `q`, sid, the entry the caller owns. Returns 0 when the entry is
/// no longer the caller's (retried from the admin API, or deleted), else 1; a
/// dead letter moves to the dead stream.
const UPDATE: &str = r"
local h = redis.call('HMGET', KEYS[1], 'e', 's')
if not h[1] or h[1] ~= ARGV[5] or h[2] ~= 'q' then return 0 end
if ARGV[3] == 'dead' then
  redis.call('XACK', KEYS[2], ARGV[1], h[1])
  redis.call('XDEL', KEYS[2], h[1])
  local e = redis.call('XADD', KEYS[3], '*', 'd', ARGV[4])
  redis.call('HSET', KEYS[1], 'e', e, 's', 'dead')
end
redis.call('HSET', KEYS[1], 'm', ARGV[2])
return 1
";

/// Queues a delivery again as a new entry (a retry from the admin API):
/// KEYS d, q, dead, bytes; ARGV group, record, sid. Returns 0 when it is not
/// there.
const REQUEUE: &str = concat!(
    detach!(),
    r"
local e = redis.call('XADD', KEYS[2], '*', 'd', ARGV[3])
redis.call('HSET', KEYS[1], 'e', e, 's', 'q', 'm', ARGV[2])
return 1
"
);

/// Reads new entries, each with its record and request: KEYS queues; ARGV
/// group, consumer, prefix, then how many to read from each queue. Returns
/// entry, sid, record and request of each; an entry whose record is gone is
/// acknowledged and deleted.
const READ: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3 + i],
    'STREAMS', key, '>')
  for _, e in ipairs(got and got[1][2] or {}) do
    local sid = e[1]
    if e[2][1] == 'd' and e[2][2] ~= '' then sid = e[2][2] end
    local h = redis.call('HMGET', ARGV[3] .. 'd:' .. sid, 'm', 'r')
    if h[1] then
      table.insert(out, e[1])
      table.insert(out, sid)
      table.insert(out, h[1])
      table.insert(out, h[2])
    else
      redis.call('XACK', key, ARGV[1], e[1])
      redis.call('XDEL', key, e[1])
    end
  end
end
return out
";

/// Touches the entries a consumer still owns, so no one takes them over:
/// KEYS q; ARGV group, consumer, entries… Returns the entries still its own.
const HEARTBEAT: &str = r"
local kept = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    table.insert(kept, ARGV[i])
  end
end
return kept
";

/// Renews a lease: KEYS lease; ARGV holder, ms. Returns 1 when held.
const LEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// The `redis` backend.
pub struct Fleet {
    link: Link,
    /// How long an owner may stay silent before others take its entries.
    claim_after: Duration,
    max_bytes: u64,
    consumer: String,
    scripts: Scripts,
    /// The deliveries this gateway owns.
    owned: Mutex<Owned>,
    /// The fleet's depth per route and bytes used, as last counted.
    counted: Mutex<(BTreeMap<String, Depth>, u64)>,
}

/// The deliveries a gateway owns: the entry (stream id) of each, and the
/// request of each read ahead, until its first attempt.
#[derive(Default)]
struct Owned {
    entries: HashMap<u64, (String, Option<Vec<u8>>)>,
    /// Bytes of the requests held, at most [`AHEAD_BYTES`].
    held: usize,
}

impl Owned {
    /// Owns delivery `id` through `entry`, holding its `request` if it fits.
    fn insert(&mut self, id: u64, entry: String, request: Option<Vec<u8>>) {
        self.remove(id);
        let request = request.filter(|r| self.held + r.len() <= AHEAD_BYTES);
        self.held += request.as_ref().map_or(0, Vec::len);
        self.entries.insert(id, (entry, request));
    }

    fn remove(&mut self, id: u64) {
        if let Some((_, Some(request))) = self.entries.remove(&id) {
            self.held -= request.len();
        }
    }

    fn entry(&self, id: u64) -> Option<&String> {
        self.entries.get(&id).map(|(entry, _)| entry)
    }

    /// The request held for delivery `id`, let go.
    fn take_request(&mut self, id: u64) -> Option<Vec<u8>> {
        let request = self.entries.get_mut(&id)?.1.take()?;
        self.held -= request.len();
        Some(request)
    }
}

struct Scripts {
    enqueue: Script,
    remove: Script,
    update: Script,
    requeue: Script,
    read: Script,
    heartbeat: Script,
    lease: Script,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

fn queue_key(route: &str) -> String {
    format!("{PREFIX}q:{route}")
}

fn dead_key(route: &str) -> String {
    format!("{PREFIX}dead:{route}")
}

fn lease_key(route: &str) -> String {
    format!("{PREFIX}lease:{route}")
}

fn record_key(id: u64) -> String {
    format!("{PREFIX}d:{}", sid(id))
}

/// The stream id a delivery id packs.
fn sid(id: u64) -> String {
    format!("{}-{}", id >> SEQ_BITS, id & ((1 << SEQ_BITS) - 1))
}

/// The delivery id of stream id `sid` (`MS-SEQ`).
fn id_of(sid: &str) -> Option<u64> {
    let (ms, seq) = sid.split_once('-')?;
    let (ms, seq) = (ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?);
    (ms < 1 << (64 - SEQ_BITS) && seq < 1 << SEQ_BITS).then_some(ms << SEQ_BITS | seq)
}

/// The delivery an entry stands for: its `d` field, or the entry itself.
fn delivery_of(entry: &StreamId) -> Option<u64> {
    match entry.map.get("d") {
        Some(Value::BulkString(d)) if !d.is_empty() => id_of(std::str::from_utf8(d).ok()?),
        _ => id_of(&entry.id),
    }
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("redis: {e}"))
}

/// A record as stored, with its id.
fn decode(id: u64, bytes: &[u8]) -> Option<Meta> {
    let mut meta = Meta::decode(bytes)?;
    meta.id = id;
    Some(meta)
}

impl Fleet {
    /// The backend `settings` describe, with a budget of `max_bytes`; Redis is
    /// connected on first use.
    pub(super) fn new(settings: &FleetSettings, max_bytes: u64) -> Result<Self, String> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "gateway".to_owned());
        let consumer = format!(
            "{host}:{}:{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        Ok(Self {
            link: Link::new(&settings.redis.url, settings.timeout)?,
            claim_after: settings.claim_after,
            max_bytes,
            consumer,
            scripts: Scripts {
                enqueue: Script::new(ENQUEUE),
                remove: Script::new(REMOVE),
                update: Script::new(UPDATE),
                requeue: Script::new(REQUEUE),
                read: Script::new(READ),
                heartbeat: Script::new(HEARTBEAT),
                lease: Script::new(LEASE),
            },
            owned: Mutex::new(Owned::default()),
            counted: Mutex::new((BTreeMap::new(), 0)),
        })
    }

    fn owned(&self) -> MutexGuard<'_, Owned> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn call<T, F>(&self, call: impl FnOnce(ConnectionManager) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        self.link.call(call).await.map_err(failed)
    }

    /// Stores a new delivery durably; its id is its stream id's.
    pub(super) async fn enqueue(&self, meta: &Meta, request: &[u8]) -> Result<u64, Refused> {
        let record = meta.encode();
        let cost = meta.cost();
        let entry: Option<String> = self
            .call(|mut c| async move {
                self.scripts
                    .enqueue
                    .key(queue_key(&meta.route))
                    .key(ROUTES)
                    .key(BYTES)
                    .arg(&meta.route)
                    .arg(record)
                    .arg(request)
                    .arg(cost)
                    .arg(self.max_bytes)
                    .arg(PREFIX)
                    .invoke_async(&mut c)
                    .await
            })
            .await
            .map_err(Refused::Unavailable)?;
        let entry = entry.ok_or(Refused::Full)?;
        id_of(&entry)
            .ok_or_else(|| Refused::Unavailable(StoreError(format!("odd stream id {entry}"))))
    }

    /// A delivery's request: the one read ahead, else read now.
    pub(super) async fn request(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(request) = self.owned().take_request(id) {
            return Ok(Some(request));
        }
        self.call(|mut c| async move {
            redis::cmd("HGET")
                .arg(record_key(id))
                .arg("r")
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// A delivery's record.
    pub(super) async fn meta(&self, id: u64) -> Result<Option<Meta>, StoreError> {
        let bytes: Option<Vec<u8>> = self
            .call(|mut c| async move {
                redis::cmd("HGET")
                    .arg(record_key(id))
                    .arg("m")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(bytes.and_then(|b| decode(id, &b)))
    }

    /// Runs `script` on a delivery's keys (its record, its route's queue and
    /// dead streams, the budget) with the group and `args` as arguments.
    async fn run(&self, script: &Script, meta: &Meta, args: &[&[u8]]) -> Result<i64, StoreError> {
        self.call(|mut c| async move {
            let mut call = script.key(record_key(meta.id));
            call.key(queue_key(&meta.route))
                .key(dead_key(&meta.route))
                .key(BYTES)
                .arg(GROUP);
            for arg in args {
                call.arg(*arg);
            }
            call.invoke_async(&mut c).await
        })
        .await
    }

    /// Removes a delivery; `false` when it was not there.
    pub(super) async fn remove(&self, meta: &Meta) -> Result<bool, StoreError> {
        let removed = self.run(&self.scripts.remove, meta, &[]).await?;
        self.owned().remove(meta.id);
        Ok(removed == 1)
    }

    /// Stores an attempt's result (a dead letter moves to the dead stream);
    /// `false` when the delivery is no longer this gateway's.
    pub(super) async fn update(&self, meta: &Meta) -> Result<bool, StoreError> {
        let Some(entry) = self.owned().entry(meta.id).cloned() else {
            return Ok(false);
        };
        let dead = meta.status == Status::Dead;
        let to: &[u8] = if dead { b"dead" } else { b"q" };
        let (record, sid) = (meta.encode(), sid(meta.id));
        let args = [&record[..], to, sid.as_bytes(), entry.as_bytes()];
        let kept = self.run(&self.scripts.update, meta, &args).await?;
        if kept != 1 || dead {
            self.owned().remove(meta.id);
        }
        Ok(kept == 1)
    }

    /// Queues a delivery again with `meta` as its record, to be read by
    /// whichever gateway has room first; `false` when it is not there.
    pub(super) async fn requeue(&self, meta: &Meta) -> Result<bool, StoreError> {
        let (record, sid) = (meta.encode(), sid(meta.id));
        let args = [&record[..], sid.as_bytes()];
        let requeued = self.run(&self.scripts.requeue, meta, &args).await?;
        self.owned().remove(meta.id);
        Ok(requeued == 1)
    }

    /// Deliveries, oldest first, of `route` (every route when `None`) with
    /// `status` (any when `None`), at most `limit`: read from the streams, so
    /// the whole fleet's.
    pub(super) async fn list(
        &self,
        route: Option<&str>,
        status: Option<Status>,
        limit: usize,
    ) -> Result<Vec<Meta>, StoreError> {
        let routes: Vec<String> = match route {
            Some(route) => vec![route.to_owned()],
            None => {
                self.call(|mut c| async move {
                    redis::cmd("SMEMBERS").arg(ROUTES).query_async(&mut c).await
                })
                .await?
            }
        };
        let mut streams = Vec::new();
        for route in &routes {
            if status != Some(Status::Dead) {
                streams.push(queue_key(route));
            }
            if status != Some(Status::Pending) {
                streams.push(dead_key(route));
            }
        }
        let mut ids = Vec::new();
        for chunk in streams.chunks(64) {
            let replies: Vec<StreamRangeReply> = self
                .call(|mut c| async move {
                    let mut pipe = redis::pipe();
                    for key in chunk {
                        pipe.cmd("XRANGE")
                            .arg(key)
                            .arg("-")
                            .arg("+")
                            .arg("COUNT")
                            .arg(limit);
                    }
                    pipe.query_async(&mut c).await
                })
                .await?;
            ids.extend(
                replies
                    .iter()
                    .flat_map(|r| r.ids.iter().filter_map(delivery_of)),
            );
        }
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(limit);
        let metas = self.metas(&ids).await?;
        Ok(metas
            .into_iter()
            .filter(|m| status.is_none_or(|s| m.status == s))
            .collect())
    }

    /// The records of `ids` that are there, in the same order.
    async fn metas(&self, ids: &[u64]) -> Result<Vec<Meta>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(256) {
            let records: Vec<Option<Vec<u8>>> = self
                .call(|mut c| async move {
                    let mut pipe = redis::pipe();
                    for id in chunk {
                        pipe.cmd("HGET").arg(record_key(*id)).arg("m");
                    }
                    pipe.query_async(&mut c).await
                })
                .await?;
            out.extend(
                chunk
                    .iter()
                    .zip(records)
                    .filter_map(|(id, r)| decode(*id, &r?)),
            );
        }
        Ok(out)
    }

    /// The fleet's depth per route, as last counted.
    pub(super) fn depth(&self) -> BTreeMap<String, Depth> {
        self.counted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The fleet's bytes in use, as last counted.
    pub(super) fn used_bytes(&self) -> u64 {
        self.counted.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Makes each route's stream and its consumer group, if missing.
    async fn make_groups(&self, routes: &[String]) -> Result<(), StoreError> {
        for route in routes {
            let made: Result<(), StoreError> = self
                .call(|mut c| async move {
                    redis::cmd("XGROUP")
                        .arg("CREATE")
                        .arg(queue_key(route))
                        .arg(GROUP)
                        .arg("0")
                        .arg("MKSTREAM")
                        .query_async(&mut c)
                        .await
                })
                .await;
            match made {
                Ok(()) => {}
                Err(e) if e.0.contains("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads the new entries of routes with room, each at most its room,
    /// without waiting, with their records and requests; the routes that had
    /// some.
    async fn read(
        &self,
        spool: &Spool,
        open: &[(&str, usize)],
    ) -> Result<HashSet<String>, StoreError> {
        let flat: Vec<Value> = self
            .call(|mut c| async move {
                let mut call = self.scripts.read.prepare_invoke();
                call.arg(GROUP).arg(&self.consumer).arg(PREFIX);
                for (route, room) in open {
                    call.key(queue_key(route)).arg(*room);
                }
                call.invoke_async(&mut c).await
            })
            .await?;
        let mut got = Vec::with_capacity(flat.len() / 4);
        for four in flat.chunks(4) {
            if let [entry, sid, record, request] = four {
                let (entry, sid): (String, String) = (
                    redis::from_redis_value_ref(entry).map_err(failed)?,
                    redis::from_redis_value_ref(sid).map_err(failed)?,
                );
                let record: Vec<u8> = redis::from_redis_value_ref(record).map_err(failed)?;
                let request: Option<Vec<u8>> =
                    redis::from_redis_value_ref(request).map_err(failed)?;
                if let Some(meta) = id_of(&sid).and_then(|id| decode(id, &record)) {
                    got.push((entry, meta, request));
                }
            }
        }
        let routes = got.iter().map(|(_, meta, _)| meta.route.clone()).collect();
        self.keep(spool, got);
        Ok(routes)
    }

    /// Waits on `blocking` (at most [`BLOCK`]) for new entries of routes
    /// with room, and reads them.
    async fn wait_for_entries(
        &self,
        spool: &Spool,
        open: &[(&str, usize)],
        mut blocking: ConnectionManager,
    ) -> Result<(), StoreError> {
        let count = open.iter().map(|(_, room)| *room).max().unwrap_or(1);
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(500))
            .arg("STREAMS");
        for (route, _) in open {
            read.arg(queue_key(route));
        }
        for _ in open {
            read.arg(">");
        }
        let reply: Option<StreamReadReply> =
            read.query_async(&mut blocking).await.map_err(failed)?;
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(route) = stream
                .key
                .strip_prefix(PREFIX)
                .and_then(|k| k.strip_prefix("q:"))
            else {
                continue;
            };
            self.take(spool, route, &stream.ids).await?;
        }
        Ok(())
    }

    /// Indexes the entries this gateway just got (read or claimed): their
    /// records are fetched; an entry whose record is gone is dropped.
    async fn take(&self, spool: &Spool, route: &str, got: &[StreamId]) -> Result<(), StoreError> {
        let pairs: Vec<(u64, String)> = got
            .iter()
            .filter_map(|e| Some((delivery_of(e)?, e.id.clone())))
            .collect();
        let ids: Vec<u64> = pairs.iter().map(|(id, _)| *id).collect();
        let metas = self.metas(&ids).await?;
        let found: HashSet<u64> = metas.iter().map(|m| m.id).collect();
        let orphans: Vec<&String> = pairs
            .iter()
            .filter(|(id, _)| !found.contains(id))
            .map(|(_, e)| e)
            .collect();
        if !orphans.is_empty() {
            let key = queue_key(route);
            self.call(|mut c| async move {
                redis::pipe()
                    .cmd("XACK")
                    .arg(&key)
                    .arg(GROUP)
                    .arg(&orphans)
                    .cmd("XDEL")
                    .arg(&key)
                    .arg(&orphans)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        }
        let mut entries: HashMap<u64, String> = pairs.into_iter().collect();
        let got = metas
            .into_iter()
            .filter_map(|m| Some((entries.remove(&m.id)?, m, None)))
            .collect();
        self.keep(spool, got);
        Ok(())
    }

    /// Owns what was just got (entries, their records and any requests read
    /// with them), and indexes what is pending.
    fn keep(&self, spool: &Spool, got: Vec<(String, Meta, Option<Vec<u8>>)>) {
        let mut owned = self.owned();
        let mut pending = Vec::with_capacity(got.len());
        for (entry, meta, request) in got {
            owned.insert(meta.id, entry, request);
            if meta.status == Status::Pending {
                pending.push(meta);
            }
        }
        drop(owned);
        spool.own(pending);
    }

    /// Touches what this gateway owns; forgets what others have taken over.
    async fn heartbeat(&self, spool: &Spool) -> Result<(), StoreError> {
        for (route, ids) in spool.owned() {
            let owned: Vec<(u64, String)> = {
                let owned = self.owned();
                ids.iter()
                    .filter_map(|id| Some((*id, owned.entry(*id)?.clone())))
                    .collect()
            };
            for chunk in owned.chunks(BEAT_CHUNK) {
                let key = queue_key(&route);
                let kept: Vec<String> = self
                    .call(|mut c| async move {
                        let mut call = self.scripts.heartbeat.key(key);
                        call.arg(GROUP).arg(&self.consumer);
                        for (_, entry) in chunk {
                            call.arg(entry);
                        }
                        call.invoke_async(&mut c).await
                    })
                    .await?;
                let kept: HashSet<&str> = kept.iter().map(String::as_str).collect();
                let lost: Vec<u64> = chunk
                    .iter()
                    .filter(|(_, e)| !kept.contains(e.as_str()))
                    .map(|(id, _)| *id)
                    .collect();
                if !lost.is_empty() {
                    log::warn!(
                        "spool: {} deliveries of route {route} were taken over by another gateway",
                        lost.len()
                    );
                    let mut owned = self.owned();
                    for id in &lost {
                        owned.remove(*id);
                    }
                    drop(owned);
                    spool.disown(&lost);
                }
            }
        }
        Ok(())
    }

    /// Holds (or renews) the lease of a `fifo` route; `true` when held.
    async fn lease(&self, route: &str) -> Result<bool, StoreError> {
        let ms = u64::try_from(self.claim_after.as_millis()).unwrap_or(u64::MAX);
        let held: i64 = self
            .call(|mut c| async move {
                self.scripts
                    .lease
                    .key(lease_key(route))
                    .arg(&self.consumer)
                    .arg(ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(held == 1)
    }

    /// Takes over the entries of `route` left untouched for `min_idle`.
    async fn take_over(
        &self,
        spool: &Spool,
        route: &str,
        min_idle: Duration,
    ) -> Result<(), StoreError> {
        let key = queue_key(route);
        let idle = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let mut cursor = "0-0".to_owned();
        for _ in 0..CLAIM_PAGES {
            let (key, from) = (&key, &cursor);
            let reply: StreamAutoClaimReply = self
                .call(|mut c| async move {
                    redis::cmd("XAUTOCLAIM")
                        .arg(key)
                        .arg(GROUP)
                        .arg(&self.consumer)
                        .arg(idle)
                        .arg(from)
                        .arg("COUNT")
                        .arg(CLAIM_PAGE)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            if !reply.claimed.is_empty() {
                log::info!(
                    "spool: took over {} pending deliveries of route {route}",
                    reply.claimed.len()
                );
                self.take(spool, route, &reply.claimed).await?;
            }
            cursor = reply.next_stream_id;
            if cursor == "0-0" {
                break;
            }
        }
        Ok(())
    }

    /// Drops the consumers of `route`'s group that hold nothing and have been
    /// silent for `claim_after_secs` (gateways gone, whose deliveries were
    /// taken over), so the group does not grow with every restart.
    async fn forget_consumers(&self, route: &str) -> Result<(), StoreError> {
        let key = queue_key(route);
        let idle = self.claim_after.as_millis();
        let key = &key;
        let info: StreamInfoConsumersReply = self
            .call(|mut c| async move {
                redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(key)
                    .arg(GROUP)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        for gone in info
            .consumers
            .iter()
            .filter(|c| c.name != self.consumer && c.pending == 0 && c.idle as u128 > idle)
        {
            self.call(|mut c| async move {
                redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(key)
                    .arg(GROUP)
                    .arg(&gone.name)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await?;
        }
        Ok(())
    }

    /// Counts the fleet's deliveries per route, and the bytes in use.
    async fn count(&self) -> Result<HashSet<String>, StoreError> {
        let routes: Vec<String> = self
            .call(
                |mut c| async move { redis::cmd("SMEMBERS").arg(ROUTES).query_async(&mut c).await },
            )
            .await?;
        let routes_ref = &routes;
        let (used, counts): (Option<u64>, Vec<(u64, u64, StreamRangeReply)>) = self
            .call(|mut c| async move {
                let mut pipe = redis::pipe();
                pipe.cmd("GET").arg(BYTES);
                let mut counts = redis::pipe();
                for route in routes_ref {
                    counts
                        .cmd("XLEN")
                        .arg(queue_key(route))
                        .cmd("XLEN")
                        .arg(dead_key(route))
                        .cmd("XRANGE")
                        .arg(queue_key(route))
                        .arg("-")
                        .arg("+")
                        .arg("COUNT")
                        .arg(1);
                }
                let (used,): (Option<u64>,) = pipe.query_async(&mut c).await?;
                if routes_ref.is_empty() {
                    return Ok((used, Vec::new()));
                }
                let flat: Vec<Value> = counts.query_async(&mut c).await?;
                let mut out = Vec::new();
                for three in flat.chunks(3) {
                    if let [pending, dead, first] = three {
                        out.push((
                            redis::from_redis_value_ref(pending)?,
                            redis::from_redis_value_ref(dead)?,
                            redis::from_redis_value_ref(first)?,
                        ));
                    }
                }
                Ok((used, out))
            })
            .await?;
        let oldest: Vec<u64> = counts
            .iter()
            .filter_map(|(_, _, first)| first.ids.first().and_then(delivery_of))
            .collect();
        let created: HashMap<String, u64> = self
            .metas(&oldest)
            .await?
            .into_iter()
            .map(|m| (m.route, m.created_ms))
            .collect();
        let now = super::now_ms();
        let depth = routes
            .iter()
            .zip(counts)
            .map(|(route, (pending, dead, _))| {
                let oldest_secs = created
                    .get(route)
                    .map_or(0, |c| now.saturating_sub(*c) / 1000);
                let depth = Depth {
                    pending,
                    dead,
                    oldest_secs: if pending > 0 { oldest_secs } else { 0 },
                };
                (route.clone(), depth)
            })
            .collect();
        *self.counted.lock().unwrap_or_else(|e| e.into_inner()) = (depth, used.unwrap_or(0));
        Ok(routes.into_iter().collect())
    }
}

/// A route as the reader sees it.
struct Reading {
    name: String,
    concurrency: usize,
    fifo: bool,
}

/// What the reader keeps between turns.
#[derive(Default)]
struct Reader {
    /// Routes whose consumer group exists.
    grouped: HashSet<String>,
    /// Routes with deliveries in Redis (from the last count).
    known: HashSet<String>,
    /// `fifo` routes whose lease this gateway holds.
    leased: HashSet<String>,
    /// When the last heartbeat, takeover and count ran.
    last_beat: Option<Instant>,
    /// Routes whose last read found nothing, and when.
    empty: HashMap<String, Instant>,
}

/// Feeds the spool's index from Redis until the shutdown begins: reads new
/// entries for routes with room, touches what this gateway owns, takes over
/// what silent gateways left, holds the leases of `fifo` routes, and counts the
/// fleet's deliveries for the metrics. Redis failures are logged and retried.
pub async fn feed(spool: Spool, config: ConfigStore, draining: Draining) {
    let Some(fleet) = spool.fleet() else { return };
    let blocking = match manager(fleet.link.client(), BLOCK + fleet.link.timeout()) {
        Ok(conn) => conn,
        Err(e) => {
            log::error!("spool: cannot connect to redis: {e}");
            return;
        }
    };
    let mut reader = Reader::default();
    let mut failing = false;
    while !draining.is_draining() {
        match turn(fleet, &spool, &config, &mut reader, blocking.clone()).await {
            Ok(()) => {
                if failing {
                    log::info!("spool: redis is back");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    log::error!("spool: {e}");
                }
                failing = true;
                reader.grouped.clear();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// During a graceful stop, once the reader has stopped: keeps the
/// deliveries this gateway is attempting its own (touched every third of
/// `claim_after_secs`), so no other gateway takes them over while the app is
/// still working on them, and lets go of those it is not attempting, left to
/// the usual takeover. Runs until the deliverer is done.
pub async fn hold(spool: Spool) {
    let Some(fleet) = spool.fleet() else { return };
    let mut failing = false;
    loop {
        let owned: Vec<u64> = spool.owned().into_values().flatten().collect();
        // Only those being attempted stay in the index.
        spool.disown(&owned);
        match fleet.heartbeat(&spool).await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                log::error!("spool: {e}");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(fleet.claim_after / 3).await;
    }
}

/// One turn of the reader.
async fn turn(
    fleet: &Fleet,
    spool: &Spool,
    config: &ConfigStore,
    reader: &mut Reader,
    blocking: ConnectionManager,
) -> Result<(), StoreError> {
    let beat = fleet.claim_after / 3;
    let snapshot = config.snapshot();
    let routes: Vec<Reading> = snapshot
        .routes
        .iter()
        .filter(|r| r.delivery.is_some() || reader.known.contains(&r.name))
        .map(|r| {
            let (concurrency, fifo) = r
                .delivery
                .as_deref()
                .map_or((1, true), |p| (p.concurrency, p.fifo));
            Reading {
                name: r.name.clone(),
                concurrency,
                fifo,
            }
        })
        .collect();
    let new: Vec<String> = routes
        .iter()
        .filter(|r| !reader.grouped.contains(&r.name))
        .map(|r| r.name.clone())
        .collect();
    fleet.make_groups(&new).await?;
    reader.grouped.extend(new);
    if reader.last_beat.is_none_or(|at| at.elapsed() >= beat) {
        reader.last_beat = Some(Instant::now());
        fleet.heartbeat(spool).await?;
        for route in &routes {
            if route.fifo {
                let held = fleet.lease(&route.name).await?;
                if held && reader.leased.insert(route.name.clone()) {
                    // A new holder takes whatever the last one left, at once.
                    fleet.take_over(spool, &route.name, Duration::ZERO).await?;
                } else if !held {
                    reader.leased.remove(&route.name);
                }
            } else {
                fleet
                    .take_over(spool, &route.name, fleet.claim_after)
                    .await?;
            }
            fleet.forget_consumers(&route.name).await?;
        }
        reader.known = fleet.count().await?;
    }
    let now = super::now_ms();
    let mut full = false;
    let mut open: Vec<(&str, usize)> = Vec::new();
    for route in routes
        .iter()
        .filter(|r| !r.fifo || reader.leased.contains(&r.name))
    {
        match spool.room(&route.name, route.concurrency * READ_AHEAD, now) {
            0 => full = true,
            room => open.push((route.name.as_str(), room)),
        }
    }
    if full {
        // A route found empty is read again at the next poll, not after
        // every attempt that ends.
        open.retain(|(route, _)| {
            reader
                .empty
                .get(*route)
                .is_none_or(|at| at.elapsed() >= POLL)
        });
    }
    if !open.is_empty() {
        let got = fleet.read(spool, &open).await?;
        for (route, _) in &open {
            if got.contains(*route) {
                reader.empty.remove(*route);
            } else {
                reader.empty.insert((*route).to_owned(), Instant::now());
            }
        }
        if !got.is_empty() {
            return Ok(());
        }
        if !full {
            return fleet.wait_for_entries(spool, &open, blocking).await;
        }
    }
    // A route has no room: it is read again as soon as one of this gateway's
    // attempts ends, not after a wait on the other routes' streams.
    let _ = tokio::time::timeout(POLL, spool.freed()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_ahead_are_held_within_their_bytes() {
        let mut owned = Owned::default();
        let big = AHEAD_BYTES / 2;
        owned.insert(1, "1-0".into(), Some(vec![0; big]));
        owned.insert(2, "2-0".into(), Some(vec![0; big]));
        owned.insert(3, "3-0".into(), Some(vec![0; 1]));
        assert_eq!(owned.held, AHEAD_BYTES);
        assert_eq!(owned.entry(3).map(String::as_str), Some("3-0"));
        assert_eq!(owned.take_request(3), None, "past the bytes, not held");
        assert_eq!(owned.take_request(1).map(|r| r.len()), Some(big));
        assert_eq!(owned.take_request(1), None, "held until its first attempt");
        assert_eq!(owned.entry(1).map(String::as_str), Some("1-0"));
        owned.remove(2);
        assert_eq!(owned.held, 0);
        owned.insert(3, "3-1".into(), Some(vec![0; 1]));
        owned.insert(3, "3-2".into(), Some(vec![0; 2]));
        assert_eq!(
            (owned.held, owned.entry(3).cloned()),
            (2, Some("3-2".into()))
        );
    }

    #[test]
    fn delivery_ids_pack_stream_ids() {
        for sid in ["1764489600000-0", "1764489600000-1048575", "0-1"] {
            assert_eq!(super::sid(id_of(sid).unwrap()), sid);
        }
        let (a, b) = (
            id_of("1764489600000-7").unwrap(),
            id_of("1764489600001-0").unwrap(),
        );
        assert!(a < b, "ids keep the streams' order");
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "1-1048576",
            "x-1",
            "18446744073709551615-0",
        ] {
            assert_eq!(id_of(bad), None, "{bad}");
        }
    }
}
