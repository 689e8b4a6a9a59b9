//! What is in flight: requests between their header and their log line,
//! async delivery attempts, and whether a shutdown has begun.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The number of requests between their header and their log line.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts a request until the guard is dropped.
    pub fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(Arc::clone(&self.0))
    }

    /// Requests in flight now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One request in flight.
#[derive(Debug)]
pub struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Process state the admin listener reports: whether a shutdown has begun.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<DrainingFlag>);

#[derive(Debug, Default)]
struct DrainingFlag {
    set: AtomicBool,
    begun: Notify,
}

impl Draining {
    /// Whether SIGTERM (or SIGINT) was received.
    pub fn is_draining(&self) -> bool {
        self.0.set.load(Ordering::Acquire)
    }

    /// Waits until the shutdown has begun.
    pub async fn begun(&self) {
        loop {
            // Made before the flag is read, so a start in between wakes it.
            let begun = self.0.begun.notified();
            if self.is_draining() {
                return;
            }
            begun.await;
        }
    }

    /// Marks the shutdown as begun and wakes those waiting for it (the
    /// signal watch calls it).
    pub fn start(&self) {
        self.0.set.store(true, Ordering::Release);
        self.0.begun.notify_waiters();
    }
}
