//! What the front door holds at once, counted across every worker: client
//! connections (`max_connections`) and request body bytes being read or
//! verified (`max_inflight_body_bytes`, of which one client address may hold
//! `max_inflight_body_bytes_per_client`); and how slowly a body may come
//! (`min_body_bytes_per_sec`). Admission hands out guards that give their
//! share back when dropped, so nothing leaks on an early return.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::base::settings::FrontDoor;
use crate::policy;

/// The shared counters; cheap to clone.
#[derive(Debug, Clone)]
pub struct Limits(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    max_connections: usize,
    connections: AtomicUsize,
    max_body_bytes: u64,
    body_bytes: AtomicU64,
    max_client_body_bytes: u64,
    /// Body bytes each client address holds (IPv6 by /64); sharded, so that
    /// workers rarely wait on each other. An address holding none has no
    /// entry: there are never more entries than requests holding bytes.
    /// Hashed with aHash, keyed at random per process: cheaper than SipHash
    /// for an address, and no client can choose addresses that collide.
    client_body_bytes: DashMap<IpAddr, u64, ahash::RandomState>,
    min_body_rate: u64,
}

impl Limits {
    /// Counters bounded by the front door's settings.
    pub fn new(front: &FrontDoor) -> Self {
        Self(Arc::new(Inner {
            max_connections: front.max_connections,
            connections: AtomicUsize::new(0),
            max_body_bytes: front.max_inflight_body_bytes,
            body_bytes: AtomicU64::new(0),
            max_client_body_bytes: front.max_inflight_body_bytes_per_client,
            client_body_bytes: DashMap::with_hasher(ahash::RandomState::new()),
            min_body_rate: front.min_body_bytes_per_sec,
        }))
    }

    /// `min_body_bytes_per_sec`: after the first 2 s of a body, the least
    /// average bytes per second it may come at; 0: no minimum.
    pub fn min_body_rate(&self) -> u64 {
        self.0.min_body_rate
    }

    /// Admits one more client connection, or `None` when `max_connections`
    /// are already open.
    pub fn admit_connection(&self) -> Option<ConnectionGuard> {
        let inner = &self.0;
        inner
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < inner.max_connections).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionGuard(self.clone()))
    }

    /// Client connections open now.
    pub fn connections(&self) -> usize {
        self.0.connections.load(Ordering::Acquire)
    }

    /// Reserves `bytes` of body for a request from `client`, or says which
    /// budget that would pass.
    pub fn reserve_body(&self, client: IpAddr, bytes: u64) -> Result<BodyReservation, Spent> {
        let mut reservation = BodyReservation {
            limits: self.clone(),
            client: policy::counted_as(client),
            bytes: 0,
        };
        reservation.grow_to(bytes).map(|()| reservation)
    }

    /// Body bytes reserved now.
    pub fn body_bytes(&self) -> u64 {
        self.0.body_bytes.load(Ordering::Acquire)
    }

    /// Adds `more` to what `client` holds, unless that passes its share.
    fn take_client_share(&self, client: IpAddr, more: u64) -> bool {
        let share = self.0.max_client_body_bytes;
        match self.0.client_body_bytes.entry(client) {
            Entry::Occupied(mut held) => match held.get().checked_add(more) {
                Some(after) if after <= share => {
                    *held.get_mut() = after;
                    true
                }
                _ => false,
            },
            Entry::Vacant(none) if more <= share => {
                none.insert(more);
                true
            }
            Entry::Vacant(_) => false,
        }
    }

    /// Gives back `less` of what `client` holds; an address left holding
    /// nothing is forgotten.
    fn give_client_share(&self, client: IpAddr, less: u64) {
        if let Entry::Occupied(mut held) = self.0.client_body_bytes.entry(client) {
            let left = held.get().saturating_sub(less);
            if left == 0 {
                held.remove();
            } else {
                *held.get_mut() = left;
            }
        }
    }
}

/// Which budget a body would pass: 503 `overloaded` either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// `max_inflight_body_bytes`, across all clients.
    Budget,
    /// `max_inflight_body_bytes_per_client`, this client's share.
    ClientShare,
}

/// One open client connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionGuard(Limits);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Body bytes a request holds, counted in the budget and in its client's
/// share; dropping it gives them back.
#[derive(Debug)]
pub struct BodyReservation {
    limits: Limits,
    /// The client address as its share is counted.
    client: IpAddr,
    bytes: u64,
}

impl BodyReservation {
    /// Holds `total` bytes in all (a chunked body grows as it arrives); when
    /// the client's share or the budget cannot cover it, holds what it held
    /// and says which.
    pub fn grow_to(&mut self, total: u64) -> Result<(), Spent> {
        let Some(more) = total.checked_sub(self.bytes).filter(|&more| more > 0) else {
            return Ok(());
        };
        if !self.limits.take_client_share(self.client, more) {
            return Err(Spent::ClientShare);
        }
        let inner = &self.limits.0;
        let taken = inner
            .body_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more)
                    .filter(|&after| after <= inner.max_body_bytes)
            })
            .is_ok();
        if !taken {
            self.limits.give_client_share(self.client, more);
            return Err(Spent::Budget);
        }
        self.bytes = total;
        Ok(())
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        self.limits
            .0
            .body_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
        self.limits.give_client_share(self.client, self.bytes);
    }
}

/// Raises this process's open-file limit to its hard limit: each client
/// connection takes a descriptor, and each request forwarded another. Warns
/// when even the hard limit cannot hold `max_connections` of each.
pub fn raise_open_files(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            log::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
        }
    }
    let wanted = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(64);
    if hard < wanted {
        log::warn!(
            "max_connections = {max_connections} wants about {wanted} open files (a client and an upstream connection each), but the limit is {hard}"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(connections: usize, body: u64, per_client: u64) -> Limits {
        Limits::new(&FrontDoor {
            header_timeout: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(1),
            max_connections: connections,
            max_header_bytes: 1024,
            max_inflight_body_bytes: body,
            max_inflight_body_bytes_per_client: per_client,
            min_body_bytes_per_sec: 0,
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Client addresses with an entry in the per-client accounting.
    fn clients(l: &Limits) -> usize {
        l.0.client_body_bytes.len()
    }

    #[test]
    fn connections_past_the_limit_are_refused_until_one_closes() {
        let l = limits(2, 0, 0);
        let a = l.admit_connection().unwrap();
        let _b = l.admit_connection().unwrap();
        assert!(l.admit_connection().is_none());
        assert_eq!(l.connections(), 2);
        drop(a);
        assert!(l.admit_connection().is_some());
    }

    #[test]
    fn body_bytes_are_reserved_grown_and_given_back() {
        // One client, with a share larger than the budget.
        let l = limits(1, 100, 1000);
        let c = ip("192.0.2.1");
        let mut a = l.reserve_body(c, 60).unwrap();
        assert_eq!(l.reserve_body(c, 41).unwrap_err(), Spent::Budget);
        let b = l.reserve_body(c, 40).unwrap();
        assert_eq!(l.body_bytes(), 100);
        assert_eq!(
            a.grow_to(61),
            Err(Spent::Budget),
            "a chunked body cannot outgrow the budget"
        );
        assert_eq!(l.body_bytes(), 100, "a refused growth holds what it held");
        drop(b);
        assert_eq!(a.grow_to(90), Ok(()));
        assert_eq!(a.grow_to(50), Ok(()), "shrinking is a no-op");
        assert_eq!(l.body_bytes(), 90);
        drop(a);
        assert_eq!(l.body_bytes(), 0);
        assert_eq!(clients(&l), 0);
    }

    #[test]
    fn one_client_holds_at_most_its_share_and_others_keep_theirs() {
        let l = limits(1, 100, 30);
        let (one, other) = (ip("192.0.2.1"), ip("192.0.2.2"));
        // Exactly the share is admitted, in one request or several.
        let mut a = l.reserve_body(one, 20).unwrap();
        let b = l.reserve_body(one, 10).unwrap();
        assert_eq!(l.reserve_body(one, 1).unwrap_err(), Spent::ClientShare);
        assert_eq!(a.grow_to(21), Err(Spent::ClientShare));
        assert_eq!(l.body_bytes(), 30, "refusals hold nothing more");
        // Another address has its own share.
        let c = l.reserve_body(other, 30).unwrap();
        // An IPv6 client is counted by its /64.
        let v6 = l.reserve_body(ip("2001:db8::1"), 30).unwrap();
        assert_eq!(
            l.reserve_body(ip("2001:db8::2"), 1).unwrap_err(),
            Spent::ClientShare
        );
        // The budget still binds: a refusal by it gives the share back.
        let d = l.reserve_body(ip("198.51.100.1"), 10).unwrap();
        let e = ip("198.51.100.2");
        assert_eq!(l.reserve_body(e, 1).unwrap_err(), Spent::Budget);
        assert_eq!(
            clients(&l),
            4,
            "no entry for a client refused by the budget"
        );
        drop((b, c, v6, d));
        assert_eq!(a.grow_to(30), Ok(()));
        drop(a);
        // Nothing held, nothing remembered.
        assert_eq!((l.body_bytes(), clients(&l)), (0, 0));
        assert!(l.reserve_body(e, 0).is_ok());
        assert_eq!(clients(&l), 0, "an empty body takes no entry");
    }
}
