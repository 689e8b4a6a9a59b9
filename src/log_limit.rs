//! Repeated errors logged once per interval per kind, with a count: a failing
//! disk or Redis must not turn every request and every retry into a log line.
//!
//! ```
//! use std::time::Duration;
//! use hookgate::log_limit::LogLimit;
//!
//! static ERRORS: LogLimit = LogLimit::new(Duration::from_secs(10));
//! for n in 0..1000 {
//!     if let Some(more) = ERRORS.check("store") {
//!         // Once, then at most once per 10 s, with the count of the others.
//!         log::error!("store failed ({n}){more}");
//!     }
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Kinds a limit remembers at most; past that, those whose interval is over
/// are forgotten (and a kind seen again is logged at once).
const MAX_KINDS: usize = 1024;

/// One line per kind per interval.
#[derive(Debug)]
pub struct LogLimit {
    every: Duration,
    kinds: Mutex<BTreeMap<String, Window>>,
}

/// A kind's interval: when its last line was logged, and how many were not since.
#[derive(Debug)]
struct Window {
    logged: Instant,
    skipped: u64,
}

/// What to add to a line that is logged: how many of its kind were not logged
/// since the last one (nothing when none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    count: u64,
    every: Duration,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count > 0 {
            write!(
                f,
                " ({} more like this in the last {}s, not logged)",
                self.count,
                self.every.as_secs().max(1)
            )?;
        }
        Ok(())
    }
}

impl LogLimit {
    /// A limit of one line per kind per `every`.
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            kinds: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether to log an occurrence of `kind` now: `Some` (to append to the
    /// line) for the first one and the first after each interval, `None`
    /// (counted) otherwise. `kind` should come from a bounded set (fixed
    /// names, or route names).
    pub fn check(&self, kind: &str) -> Option<Skipped> {
        self.check_at(kind, Instant::now())
    }

    fn check_at(&self, kind: &str, now: Instant) -> Option<Skipped> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(window) = kinds.get_mut(kind) {
            if now.duration_since(window.logged) < self.every {
                window.skipped = window.skipped.saturating_add(1);
                return None;
            }
            let count = std::mem::take(&mut window.skipped);
            window.logged = now;
            return Some(Skipped {
                count,
                every: self.every,
            });
        }
        if kinds.len() >= MAX_KINDS {
            kinds.retain(|_, w| now.duration_since(w.logged) < self.every);
        }
        kinds.insert(
            kind.to_owned(),
            Window {
                logged: now,
                skipped: 0,
            },
        );
        Some(Skipped {
            count: 0,
            every: self.every,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_with_the_count_of_the_others() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(limit.check_at("disk", at(0)).unwrap().to_string(), "");
        for s in 0..10 {
            assert_eq!(limit.check_at("disk", at(s)), None);
        }
        // Another kind has its own interval.
        assert!(limit.check_at("redis", at(5)).is_some());
        let next = limit.check_at("disk", at(10)).unwrap();
        assert_eq!(
            next.to_string(),
            " (10 more like this in the last 10s, not logged)"
        );
        assert_eq!(limit.check_at("disk", at(19)), None);
        assert_eq!(limit.check_at("disk", at(20)).unwrap().count, 1);
    }

    #[test]
    fn the_kinds_remembered_are_bounded() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let start = Instant::now();
        for n in 0..MAX_KINDS {
            assert!(limit.check_at(&n.to_string(), start).is_some());
        }
        let later = start + Duration::from_secs(11);
        assert!(limit.check_at("new", later).is_some());
        assert_eq!(limit.kinds.lock().unwrap().len(), 1);
    }
}
