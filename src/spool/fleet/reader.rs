//! The `redis` backend's reader: makes new entries this gateway's as its
//! routes have room (reading ahead, with their requests), touches what it
//! owns, takes over what silent gateways left, holds the leases of `fifo`
//! routes, and counts the fleet's deliveries for the metrics.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use redis::Value;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamInfoConsumersReply, StreamReadReply};

use super::{Fleet, GROUP, PREFIX, decode, delivery_of, failed, id_of, lease_key, queue_key};
use crate::observe::inflight::Draining;
use crate::runtime::ConfigStore;
use crate::spool::{Meta, Spool, Status, StoreError, now_ms};
use crate::state::redis::manager;

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

/// The deliveries a gateway owns: the entry (stream id) of each, and the
/// request of each read ahead, until its first attempt.
#[derive(Default)]
pub(super) struct Owned {
    entries: HashMap<u64, (String, Option<Vec<u8>>)>,
    /// Bytes of the requests held, at most [`AHEAD_BYTES`].
    held: usize,
}

impl Owned {
    /// Owns delivery `id` through `entry`, holding its `request` if it fits.
    pub(super) fn insert(&mut self, id: u64, entry: String, request: Option<Vec<u8>>) {
        self.remove(id);
        let request = request.filter(|r| self.held + r.len() <= AHEAD_BYTES);
        self.held += request.as_ref().map_or(0, Vec::len);
        self.entries.insert(id, (entry, request));
    }

    pub(super) fn remove(&mut self, id: u64) {
        if let Some((_, Some(request))) = self.entries.remove(&id) {
            self.held -= request.len();
        }
    }

    pub(super) fn entry(&self, id: u64) -> Option<&String> {
        self.entries.get(&id).map(|(entry, _)| entry)
    }

    /// The request held for delivery `id`, let go.
    pub(super) fn take_request(&mut self, id: u64) -> Option<Vec<u8>> {
        let request = self.entries.get_mut(&id)?.1.take()?;
        self.held -= request.len();
        Some(request)
    }
}

impl Fleet {
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
    let now = now_ms();
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
}
