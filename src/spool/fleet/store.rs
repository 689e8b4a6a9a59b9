//! The `redis` backend's store: the Lua scripts that change deliveries
//! (each change one script, so no one sees an entry without its record),
//! and the reads and writes of deliveries, their listing and counting.

use std::collections::{BTreeMap, HashMap, HashSet};

use redis::streams::StreamRangeReply;
use redis::{Script, Value};
use tokio::sync::oneshot;

use super::{
    BYTES, Fleet, GROUP, PREFIX, ROUTES, dead_key, decode, delivery_of, id_of, queue_key,
    record_key, sid,
};
use crate::spool::{DeliveryId, Depth, Meta, Refused, Status, StoreError, now_ms};

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

/// Records attempts' results, many in one call: ARGV group, prefix, then six
/// per result: `x` (delivered or vanished: removed), `q` (kept pending) or
/// `dead`; the route; the delivery's sid; its record; the entry the caller
/// owns; its cost. Returns one number per result: for a removal 1, or 0 when
/// it was not there; else 0 when the entry is no longer the caller's
/// (retried from the admin API, or deleted), else 1, a dead letter moved to
/// the dead stream. A removal whose entry the caller still owns needs no
/// look at the record: acknowledging the entry proves it.
const SETTLE: &str = r"
local out = {}
local group, prefix = ARGV[1], ARGV[2]
local freed = 0
for i = 3, #ARGV, 6 do
  local op, route, sid, entry = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 4]
  local d, q = prefix .. 'd:' .. sid, prefix .. 'q:' .. route
  local done = 0
  if op == 'x' and entry ~= '' and redis.call('XACK', q, group, entry) == 1 then
    redis.call('XDEL', q, entry)
    redis.call('DEL', d)
    freed = freed + tonumber(ARGV[i + 5])
    done = 1
  else
    local h = redis.call('HMGET', d, 'e', 's', 'c')
    if op == 'x' then
      if h[1] then
        if h[2] == 'dead' then
          redis.call('XDEL', prefix .. 'dead:' .. route, h[1])
        else
          redis.call('XACK', q, group, h[1])
          redis.call('XDEL', q, h[1])
        end
        redis.call('DEL', d)
        freed = freed + (tonumber(h[3]) or 0)
        done = 1
      end
    elseif h[1] and h[1] == entry and h[2] == 'q' then
      if op == 'dead' then
        redis.call('XACK', q, group, h[1])
        redis.call('XDEL', q, h[1])
        local e = redis.call('XADD', prefix .. 'dead:' .. route, '*', 'd', sid)
        redis.call('HSET', d, 'e', e, 's', 'dead')
      end
      redis.call('HSET', d, 'm', ARGV[i + 3])
      done = 1
    end
  end
  table.insert(out, done)
end
if freed > 0 then redis.call('DECRBY', prefix .. 'bytes', freed) end
return out
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

/// Most results recorded in one call.
const SETTLE_BATCH: usize = 256;

/// An attempt's result waiting to be recorded with others ([`SETTLE`]'s
/// arguments for it, and who waits for its answer).
pub(super) struct Settling {
    op: &'static str,
    route: String,
    sid: String,
    record: Vec<u8>,
    entry: String,
    cost: u64,
    reply: oneshot::Sender<Result<i64, StoreError>>,
}

/// The scripts, loaded into Redis on first use.
pub(super) struct Scripts {
    pub(super) enqueue: Script,
    pub(super) settle: Script,
    pub(super) requeue: Script,
    pub(super) read: Script,
    pub(super) heartbeat: Script,
    pub(super) lease: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            enqueue: Script::new(ENQUEUE),
            settle: Script::new(SETTLE),
            requeue: Script::new(REQUEUE),
            read: Script::new(READ),
            heartbeat: Script::new(HEARTBEAT),
            lease: Script::new(LEASE),
        }
    }
}

impl Fleet {
    /// Stores a new delivery durably; its number is its stream id's.
    pub(in crate::spool) async fn enqueue(
        &self,
        meta: &Meta,
        request: &[u8],
    ) -> Result<DeliveryId, Refused> {
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
        let number = id_of(&entry)
            .ok_or_else(|| Refused::Unavailable(StoreError(format!("odd stream id {entry}"))))?;
        Ok(DeliveryId {
            number,
            tag: meta.tag,
        })
    }

    /// A delivery's request: the one read ahead, else read now.
    pub(in crate::spool) async fn request(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
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
    pub(in crate::spool) async fn meta(&self, id: u64) -> Result<Option<Meta>, StoreError> {
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

    /// Records an attempt's result (`gone`: the delivery is removed; else
    /// its record is stored, a dead letter moved to the dead stream) together
    /// with the others that end at about the same time, in one call: the
    /// first to wait lets the attempts beside it have their turn, then takes
    /// every result waiting. For a removal, whether it was there; else
    /// whether the delivery is still this gateway's.
    pub(super) async fn settle(&self, meta: &Meta, gone: bool) -> Result<bool, StoreError> {
        let dead = meta.status == Status::Dead;
        let entry = self.owned().entry(meta.id).cloned();
        let (op, entry) = match (gone, entry) {
            (true, entry) => ("x", entry.unwrap_or_default()),
            (false, Some(entry)) => (if dead { "dead" } else { "q" }, entry),
            (false, None) => return Ok(false),
        };
        let (reply, answer) = oneshot::channel();
        let leads = {
            let mut waiting = self.settling();
            waiting.push(Settling {
                op,
                route: meta.route.clone(),
                sid: sid(meta.id),
                record: if gone { Vec::new() } else { meta.encode() },
                entry,
                cost: meta.cost(),
                reply,
            });
            waiting.len() == 1
        };
        if leads {
            tokio::task::yield_now().await;
            let mut batch = std::mem::take(&mut *self.settling());
            while !batch.is_empty() {
                let rest = batch.split_off(batch.len().min(SETTLE_BATCH));
                self.settle_all(batch).await;
                batch = rest;
            }
        }
        let done = answer
            .await
            .map_err(|_| StoreError("the result was not recorded".into()))??;
        if gone || done != 1 || dead {
            self.owned().remove(meta.id);
        }
        Ok(done == 1)
    }

    /// Records `results` in one call and tells each how it went.
    async fn settle_all(&self, results: Vec<Settling>) {
        let args = &results;
        let done: Result<Vec<i64>, StoreError> = self
            .call(|mut c| async move {
                let mut call = self.scripts.settle.prepare_invoke();
                call.arg(GROUP).arg(PREFIX);
                for r in args {
                    call.arg(r.op)
                        .arg(&r.route)
                        .arg(&r.sid)
                        .arg(&r.record[..])
                        .arg(&r.entry)
                        .arg(r.cost);
                }
                call.invoke_async(&mut c).await
            })
            .await;
        match done {
            Ok(done) if done.len() == results.len() => {
                for (r, done) in results.into_iter().zip(done) {
                    let _ = r.reply.send(Ok(done));
                }
            }
            Ok(done) => {
                let e = StoreError(format!(
                    "redis: {} answers for {} results",
                    done.len(),
                    results.len()
                ));
                for r in results {
                    let _ = r.reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for r in results {
                    let _ = r.reply.send(Err(e.clone()));
                }
            }
        }
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
    pub(in crate::spool) async fn list(
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
    pub(super) async fn metas(&self, ids: &[u64]) -> Result<Vec<Meta>, StoreError> {
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
    pub(in crate::spool) fn depth(&self) -> BTreeMap<String, Depth> {
        self.counted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The fleet's bytes in use, as last counted.
    pub(in crate::spool) fn used_bytes(&self) -> u64 {
        self.counted.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Counts the fleet's deliveries per route, and the bytes in use.
    pub(super) async fn count(&self) -> Result<HashSet<String>, StoreError> {
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
        let now = now_ms();
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
