//! Idle upstream connections, kept per worker thread. A connection is only ever
//! reused by the thread that opened it, so the runtime that watches its socket
//! is the one that uses it: no wake-up crosses threads, and taking or returning
//! a connection needs no lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use pingora::upstreams::peer::{HttpPeer, Peer};
use tokio::io::AsyncReadExt;

/// How long an idle upstream connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream and thread; more are closed.
const MAX_IDLE_PER_UPSTREAM: usize = 128;
/// How often expired idle connections are closed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

thread_local! {
    static IDLE: RefCell<HashMap<u64, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// A connection waiting for its next request.
#[derive(Debug)]
struct Idle {
    stream: Stream,
    since: Instant,
}

/// The key of an upstream's connections: its address, TLS settings and SNI,
/// and the CAs it is verified with, so a changed CA never reuses a connection
/// verified under the old one.
pub fn key(peer: &HttpPeer, ca: &[Vec<u8>]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    peer.reuse_hash().hash(&mut hasher);
    ca.hash(&mut hasher);
    hasher.finish()
}

/// The most recently used idle connection to the upstream `key` that is still
/// open, if any.
pub fn take(key: u64) -> Option<Stream> {
    let now = Instant::now();
    loop {
        let idle = IDLE.with(|idle| idle.borrow_mut().get_mut(&key)?.pop())?;
        if now.duration_since(idle.since) < IDLE_TIMEOUT {
            let mut stream = idle.stream;
            if still_open(&mut stream) {
                return Some(stream);
            }
        }
    }
}

/// Keeps `stream` for the next request to the upstream `key`.
pub fn put(key: u64, stream: Stream) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(key).or_default();
        if list.len() >= MAX_IDLE_PER_UPSTREAM {
            list.remove(0);
        }
        list.push(Idle {
            stream,
            since: Instant::now(),
        });
    });
}

/// Closes every idle connection to the upstream `key`: one of them failed as it
/// was reused, so the upstream has likely closed the others too (a restart).
pub fn discard(key: u64) {
    IDLE.with(|idle| idle.borrow_mut().remove(&key));
}

/// Closes this thread's expired idle connections every few seconds, forever.
pub async fn sweep_forever() {
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        let now = Instant::now();
        IDLE.with(|idle| {
            idle.borrow_mut().retain(|_, list| {
                list.retain(|c| now.duration_since(c.since) < IDLE_TIMEOUT);
                !list.is_empty()
            });
        });
    }
}

/// Whether an idle connection can carry a request: the upstream has neither
/// closed it nor sent anything unasked. The runtime already knows whether the
/// socket became readable, so this costs no system call while it did not.
fn still_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let read = pin!(stream.read(&mut byte));
    matches!(
        read.poll(&mut Context::from_waker(Waker::noop())),
        Poll::Pending
    )
}
