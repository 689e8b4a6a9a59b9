//! What the front door holds at once, counted across every worker: client
//! connections (`max_connections`) and request body bytes being read or
//! verified (`max_inflight_body_bytes`); and how slowly a body may come
//! (`min_body_bytes_per_sec`). Admission hands out guards that give their
//! share back when dropped, so nothing leaks on an early return.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::runtime::FrontDoor;

/// The shared counters; cheap to clone.
#[derive(Debug, Clone)]
pub struct Limits(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    max_connections: usize,
    connections: AtomicUsize,
    max_body_bytes: u64,
    body_bytes: AtomicU64,
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

    /// Reserves `bytes` of body, or `None` when that would pass
    /// `max_inflight_body_bytes`.
    pub fn reserve_body(&self, bytes: u64) -> Option<BodyReservation> {
        let mut reservation = BodyReservation {
            limits: self.clone(),
            bytes: 0,
        };
        reservation.grow_to(bytes).then_some(reservation)
    }

    /// Body bytes reserved now.
    pub fn body_bytes(&self) -> u64 {
        self.0.body_bytes.load(Ordering::Acquire)
    }
}

/// One open client connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionGuard(Limits);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Body bytes a request holds; dropping it gives them back.
#[derive(Debug)]
pub struct BodyReservation {
    limits: Limits,
    bytes: u64,
}

impl BodyReservation {
    /// Holds `total` bytes in all (a chunked body grows as it arrives); false,
    /// holding what it held, when the budget cannot cover it.
    pub fn grow_to(&mut self, total: u64) -> bool {
        let Some(more) = total.checked_sub(self.bytes).filter(|&more| more > 0) else {
            return true;
        };
        let inner = &self.limits.0;
        let taken = inner
            .body_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more)
                    .filter(|&after| after <= inner.max_body_bytes)
            })
            .is_ok();
        if taken {
            self.bytes = total;
        }
        taken
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        self.limits
            .0
            .body_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
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

    fn limits(connections: usize, body: u64) -> Limits {
        Limits::new(&FrontDoor {
            header_timeout: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(1),
            max_connections: connections,
            max_header_bytes: 1024,
            max_inflight_body_bytes: body,
            min_body_bytes_per_sec: 0,
        })
    }

    #[test]
    fn connections_past_the_limit_are_refused_until_one_closes() {
        let l = limits(2, 0);
        let a = l.admit_connection().unwrap();
        let _b = l.admit_connection().unwrap();
        assert!(l.admit_connection().is_none());
        assert_eq!(l.connections(), 2);
        drop(a);
        assert!(l.admit_connection().is_some());
    }

    #[test]
    fn body_bytes_are_reserved_grown_and_given_back() {
        let l = limits(1, 100);
        let mut a = l.reserve_body(60).unwrap();
        assert!(l.reserve_body(41).is_none(), "would pass the budget");
        let b = l.reserve_body(40).unwrap();
        assert_eq!(l.body_bytes(), 100);
        assert!(!a.grow_to(61), "a chunked body cannot outgrow the budget");
        assert_eq!(l.body_bytes(), 100, "a refused growth holds what it held");
        drop(b);
        assert!(a.grow_to(90));
        assert!(a.grow_to(50), "shrinking is a no-op");
        assert_eq!(l.body_bytes(), 90);
        drop(a);
        assert_eq!(l.body_bytes(), 0);
    }
}
