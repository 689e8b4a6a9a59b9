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
//!
//! This module is the backend as the spool sees it; `store` holds the
//! scripts and the reads and writes of deliveries, `reader` the reader
//! that makes entries this gateway's and keeps them so.

mod reader;
mod store;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionManager;
use redis::streams::StreamId;

use super::{AdminError, DeliveryId, Depth, Meta, Spool, Status, StoreError, refresh};
use crate::base::settings::FleetSettings;
use crate::state::redis::Link;
use reader::Owned;
pub use reader::{feed, hold};
use store::{Scripts, Settling};

/// Every key of the spool starts with this.
const PREFIX: &str = "hookgate:spool:";
/// The set of route names that have (had) deliveries.
const ROUTES: &str = "hookgate:spool:routes";
/// Bytes of deliveries stored, the fleet's `max_bytes` budget.
const BYTES: &str = "hookgate:spool:bytes";
/// The consumer group every gateway reads through.
const GROUP: &str = "hookgate";
/// Bits of a stream id's sequence number in a delivery id.
const SEQ_BITS: u32 = 20;

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
    /// Attempts' results waiting to be recorded together.
    settling: Mutex<Vec<Settling>>,
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
            scripts: Scripts::new(),
            owned: Mutex::new(Owned::default()),
            counted: Mutex::new((BTreeMap::new(), 0)),
            settling: Mutex::new(Vec::new()),
        })
    }

    fn owned(&self) -> MutexGuard<'_, Owned> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settling(&self) -> MutexGuard<'_, Vec<Settling>> {
        self.settling.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn call<T, F>(&self, call: impl FnOnce(ConnectionManager) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        self.link.call(call).await.map_err(failed)
    }

    /// Records an attempt's result (`gone`: the delivery is removed);
    /// whether this gateway still owns the delivery.
    pub(super) async fn record(&self, meta: &Meta, gone: bool) -> Result<bool, StoreError> {
        let done = self.settle(meta, gone).await?;
        Ok(!gone && done && meta.status == Status::Pending)
    }

    /// The fleet's record of delivery `id`, for an admin action on it:
    /// refused when there is no such delivery, or while this gateway is
    /// attempting it.
    async fn admin_meta(&self, spool: &Spool, id: DeliveryId) -> Result<Meta, AdminError> {
        let meta = self
            .meta(id.number)
            .await
            .map_err(AdminError::Failed)?
            .filter(|m| m.is(id))
            .ok_or(AdminError::NotFound)?;
        if spool.in_flight(id.number) {
            return Err(AdminError::InFlight);
        }
        Ok(meta)
    }

    /// Makes a delivery due now with fresh limits.
    pub(super) async fn retry(&self, spool: &Spool, id: DeliveryId) -> Result<Meta, AdminError> {
        let mut meta = self.admin_meta(spool, id).await?;
        refresh(&mut meta);
        // Read again by whichever gateway has room first.
        spool.disown(&[id.number]);
        match self.requeue(&meta).await {
            Ok(true) => Ok(meta),
            Ok(false) => Err(AdminError::NotFound),
            Err(e) => Err(AdminError::Failed(e)),
        }
    }

    /// Deletes a delivery that is not being attempted.
    pub(super) async fn delete(&self, spool: &Spool, id: DeliveryId) -> Result<Meta, AdminError> {
        let meta = self.admin_meta(spool, id).await?;
        if !self.settle(&meta, true).await.map_err(AdminError::Failed)? {
            return Err(AdminError::NotFound);
        }
        spool.disown(&[id.number]);
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
