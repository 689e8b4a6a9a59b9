//! A destination's circuit breaker: after `failures` consecutive failed
//! attempts it opens for `cooldown`; then one probe attempt is let through;
//! its success closes the breaker, its failure opens it for another
//! cooldown. Times are unix ms, given by the caller.

use crate::base::settings::BreakerSettings;

/// How many attempts toward the destination may be in flight now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Closed: as many as its `concurrency` allows.
    Closed,
    /// The cooldown is over: one probe.
    Probe,
    /// Open until then (unix ms): none.
    Open(u64),
}

/// What the breaker did with an attempt's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing to tell.
    None,
    /// It opened (or opened again after a failed probe), until then.
    Opened(u64),
    /// A success closed it.
    Closed,
}

/// One destination's breaker, as this gateway sees its attempts.
#[derive(Debug, Clone, Default)]
pub struct Breaker {
    /// Consecutive failed attempts.
    failures: u32,
    /// When it was opened to last, unless closed since.
    open_until: Option<u64>,
}

impl Breaker {
    /// How many attempts may be in flight at `now`.
    pub fn allowance(&self, now: u64) -> Allowance {
        match self.open_until {
            None => Allowance::Closed,
            Some(until) if now < until => Allowance::Open(until),
            Some(_) => Allowance::Probe,
        }
    }

    /// Counts an attempt's result at `now`: `ok` when the destination
    /// answered (a failed attempt: no answer, or one `retry_on` retries).
    pub fn record(&mut self, ok: bool, now: u64, settings: &BreakerSettings) -> Change {
        if ok {
            self.failures = 0;
            return match self.open_until.take() {
                Some(_) => Change::Closed,
                None => Change::None,
            };
        }
        self.failures = self.failures.saturating_add(1);
        let probe_failed = self.open_until.is_some_and(|until| now >= until);
        if self.failures >= settings.failures.max(1) && (self.open_until.is_none() || probe_failed)
        {
            let cooldown = u64::try_from(settings.cooldown.as_millis()).unwrap_or(u64::MAX);
            let until = now.saturating_add(cooldown);
            self.open_until = Some(until);
            return Change::Opened(until);
        }
        Change::None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn it_opens_after_consecutive_failures_then_lets_one_probe_through() {
        let settings = BreakerSettings {
            failures: 3,
            cooldown: Duration::from_secs(30),
        };
        let mut b = Breaker::default();
        assert_eq!(b.record(false, 0, &settings), Change::None);
        assert_eq!(
            b.record(true, 1, &settings),
            Change::None,
            "a success resets"
        );
        assert_eq!(b.record(false, 2, &settings), Change::None);
        assert_eq!(b.record(false, 3, &settings), Change::None);
        assert_eq!(b.allowance(3), Allowance::Closed);
        assert_eq!(b.record(false, 4, &settings), Change::Opened(30_004));
        assert_eq!(b.allowance(5), Allowance::Open(30_004));
        // An attempt that was in flight when it opened changes nothing.
        assert_eq!(b.record(false, 6, &settings), Change::None);
        assert_eq!(b.allowance(30_004), Allowance::Probe);
        // The probe fails: another cooldown.
        assert_eq!(b.record(false, 30_010, &settings), Change::Opened(60_010));
        assert_eq!(b.allowance(30_011), Allowance::Open(60_010));
        // The next probe succeeds: closed.
        assert_eq!(b.record(true, 60_020, &settings), Change::Closed);
        assert_eq!(b.allowance(60_021), Allowance::Closed);
        assert_eq!(
            b.record(false, 60_022, &settings),
            Change::None,
            "counting anew"
        );
    }
}
