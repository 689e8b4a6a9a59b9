//! Graceful shutdown: counts the requests and async delivery attempts in
//! flight and, on SIGTERM, lets pingora stop accepting and the deliverer stop
//! starting attempts, then exits 0 as soon as the last request has finished
//! and the last attempt's result is recorded, or when the grace period runs
//! out, instead of pingora's fixed sleep.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM};
use tokio::signal::unix::{SignalKind, signal};

use crate::observe::Observers;
use crate::observe::inflight::InFlight;

/// How often the drain checks the requests in flight.
const DRAIN_POLL: Duration = Duration::from_millis(25);
/// How long no request may be in flight before the process exits: covers a
/// connection accepted just before SIGTERM whose request header is still arriving.
const DRAIN_QUIET: Duration = Duration::from_millis(150);
/// How long the access log gets to write its last lines.
const LOG_FLUSH: Duration = Duration::from_secs(2);

/// The first SIGTERM, SIGINT or SIGQUIT that arrives before pingora listens for
/// them (it does once every service has started, and the listeners accept
/// before that): without it such a signal would kill the process at once.
#[derive(Debug, Clone)]
pub struct EarlySignal(Arc<AtomicUsize>);

impl EarlySignal {
    /// Catches the three signals from now on (the last one to arrive counts).
    pub fn catch() -> Result<Self, String> {
        let caught = Arc::new(AtomicUsize::new(0));
        for sig in [SIGTERM, SIGINT, SIGQUIT] {
            let value = usize::try_from(sig).unwrap_or_default();
            signal_hook::flag::register_usize(sig, Arc::clone(&caught), value)
                .map_err(|e| format!("cannot catch signal {sig}: {e}"))?;
        }
        Ok(Self(caught))
    }

    /// What the signal caught asks for, if one was.
    fn asked(&self) -> Option<ShutdownSignal> {
        let sig = i32::try_from(self.0.load(Ordering::Acquire)).ok()?;
        match sig {
            SIGTERM => Some(ShutdownSignal::GracefulTerminate),
            SIGINT => Some(ShutdownSignal::FastShutdown),
            SIGQUIT => Some(ShutdownSignal::GracefulUpgrade),
            _ => None,
        }
    }
}

/// pingora's shutdown signal source, replacing its own: SIGTERM drains, SIGINT
/// stops at once, SIGQUIT hands the listeners to an upgraded process.
#[derive(Debug)]
pub struct SignalWatch {
    /// Requests in flight, the draining flag to set, the access log to flush.
    pub observers: Observers,
    /// The longest the drain waits.
    pub grace: Duration,
    /// A signal that came before the watch began.
    pub early: EarlySignal,
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot install the SIGTERM/SIGINT/SIGQUIT handlers");
            return ShutdownSignal::FastShutdown;
        };
        // Listening now: a signal from before is acted on, as any later one.
        let shutdown = match self.early.asked() {
            Some(early) => early,
            None => tokio::select! {
                _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
                _ = term.recv() => ShutdownSignal::GracefulTerminate,
                _ = int.recv() => ShutdownSignal::FastShutdown,
            },
        };
        self.observers.draining.start();
        if matches!(shutdown, ShutdownSignal::GracefulTerminate) {
            let observers = self.observers.clone();
            let grace = self.grace;
            let spawned = std::thread::Builder::new()
                .name("drain".into())
                .spawn(move || drain(&observers, grace));
            if let Err(e) = spawned {
                log::error!("cannot start the drain; waiting the whole grace period: {e}");
            }
        }
        shutdown
    }
}

/// Waits until no request nor async delivery attempt has been in flight for
/// a moment (an attempt counts until its result is recorded), the grace
/// period is over, or a second SIGTERM or a SIGINT asks to stop now; then
/// flushes the access log and exits 0. Attempts still in flight then are cut:
/// their results are not recorded, so they will be made again (logged: a
/// metric would go with the process).
fn drain(observers: &Observers, grace: Duration) {
    let (requests, attempts) = (&observers.in_flight, &observers.attempts);
    let count = || requests.count() + attempts.count();
    let again = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&again)) {
            log::warn!("cannot watch for a second signal during the drain: {e}");
        }
    }
    let (first_requests, first_attempts) = (requests.count(), attempts.count());
    log::info!(
        "SIGTERM: not accepting new connections nor starting delivery attempts; \
         waiting up to {}s for {first_requests} request(s) in flight and \
         {first_attempts} delivery attempt(s) in flight",
        grace.as_secs(),
    );
    let start = Instant::now();
    let mut idle_since = None;
    loop {
        let now = Instant::now();
        if count() > 0 {
            idle_since = None;
        } else if now.duration_since(*idle_since.get_or_insert(now)) >= DRAIN_QUIET {
            log::info!(
                "drained in {:?}: {first_requests} request(s) and {first_attempts} delivery \
                 attempt(s) finished, their results recorded; exiting",
                start.elapsed()
            );
            break;
        }
        if again.load(Ordering::Acquire) {
            log::warn!(
                "signalled again: exiting with {} request(s) in flight; {}",
                requests.count(),
                cut(attempts)
            );
            break;
        }
        if now.duration_since(start) >= grace {
            log::warn!(
                "grace period of {}s over with {} request(s) still in flight; {}; exiting",
                grace.as_secs(),
                requests.count(),
                cut(attempts)
            );
            break;
        }
        std::thread::sleep(DRAIN_POLL);
    }
    observers.access_log.flush(LOG_FLUSH);
    std::process::exit(0);
}

/// What exiting now does to the attempts in flight.
fn cut(attempts: &InFlight) -> String {
    let n = attempts.count();
    format!(
        "{n} delivery attempt(s) cut before their results were recorded \
         (each will be made again: a possible duplicate)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_requests_in_flight() {
        let in_flight = InFlight::default();
        let a = in_flight.enter();
        let b = in_flight.enter();
        assert_eq!(in_flight.count(), 2);
        drop(a);
        assert_eq!(in_flight.count(), 1);
        drop(b);
        assert_eq!(in_flight.count(), 0);
    }
}
