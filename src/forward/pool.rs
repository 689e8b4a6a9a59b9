//! Idle upstream connections, kept per worker thread. A connection is only ever
//! reused by the thread that opened it, so the runtime that watches its socket
//! is the one that uses it: no wake-up crosses threads, and taking or returning
//! a connection needs no lock.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
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
/// Idle connections kept per upstream and thread; more are closed. Generous:
/// below the thread's peak concurrency, every burst would open new connections
/// again, and a burst of connects can overflow the upstream's accept queue.
const MAX_IDLE_PER_UPSTREAM: usize = 1024;
/// How often expired idle connections are closed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

thread_local! {
    static IDLE: RefCell<HashMap<u64, VecDeque<Idle>>> = RefCell::new(HashMap::new());
}

/// A connection waiting for its next request.
#[derive(Debug)]
struct Idle {
    stream: Stream,
    since: Instant,
}

/// The key of an upstream's connections: its address, TLS settings and SNI,
/// and the digest of the CAs it is verified with, so a changed CA never reuses
/// a connection verified under the old one.
pub fn key(peer: &HttpPeer, ca_digest: Option<u64>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    peer.reuse_hash().hash(&mut hasher);
    ca_digest.hash(&mut hasher);
    hasher.finish()
}

/// The most recently used idle connection to the upstream `key` that is still
/// open, if any.
pub fn take(key: u64) -> Option<Stream> {
    let now = Instant::now();
    loop {
        let idle = IDLE.with(|idle| idle.borrow_mut().get_mut(&key)?.pop_back())?;
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
            list.pop_front();
        }
        list.push_back(Idle {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pingora::protocols::l4::stream::Stream as L4Stream;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A connected pair: the pool's side as a pingora stream, and the peer.
    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (theirs, _) = listener.accept().await.unwrap();
        (Box::new(L4Stream::from(ours)), theirs)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_latest_returned_connection_is_taken_first_and_once() {
        let (a, _peer_a) = pair().await;
        let (b, _peer_b) = pair().await;
        let (a_id, b_id) = (a.id(), b.id());
        put(1, a);
        put(1, b);
        assert_eq!(take(2).map(|s| s.id()), None, "another upstream's key");
        assert_eq!(take(1).map(|s| s.id()), Some(b_id));
        assert_eq!(take(1).map(|s| s.id()), Some(a_id));
        assert!(take(1).is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_the_upstream_closed_or_wrote_on_is_not_reused() {
        let (closed, peer) = pair().await;
        drop(peer);
        let (chatty, mut peer) = pair().await;
        peer.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .await
            .unwrap();
        put(3, closed);
        put(3, chatty);
        // Let the runtime see the close and the bytes arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(take(3).is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_open_quiet_connection_is_reused() {
        let (quiet, _peer) = pair().await;
        put(4, quiet);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(take(4).is_some());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn discard_closes_every_idle_connection_of_an_upstream() {
        let (a, _peer_a) = pair().await;
        let (b, _peer_b) = pair().await;
        put(5, a);
        put(6, b);
        discard(5);
        assert!(take(5).is_none());
        assert!(take(6).is_some(), "other upstreams keep theirs");
    }

    #[test]
    fn another_ca_is_another_pool() {
        let peer = HttpPeer::new("127.0.0.1:443", true, "app".to_owned());
        assert_ne!(key(&peer, None), key(&peer, Some(1)));
        assert_ne!(key(&peer, Some(1)), key(&peer, Some(2)));
        assert_eq!(key(&peer, Some(1)), key(&peer.clone(), Some(1)));
    }
}
