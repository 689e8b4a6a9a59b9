//! This process's rate limits: one GCRA limiter (`governor`) per route, keyed
//! by client address for `by = "client_ip"`. Kept apart from the config so a
//! reload that leaves a route's limit alone keeps its state.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use crate::policy::{LimitBy, RateLimit};

/// Client addresses a keyed limiter tracks before it forgets the idle ones.
const MAX_TRACKED_CLIENTS: usize = 100_000;

/// One route's limiter.
enum Limiter {
    Route(DefaultDirectRateLimiter),
    ClientIp(DefaultKeyedRateLimiter<IpAddr>),
}

/// The limiters by route name, each with the limit it was built for.
#[derive(Default)]
pub(super) struct LocalLimits {
    routes: RwLock<HashMap<String, (RateLimit, Arc<Limiter>)>>,
}

impl LocalLimits {
    /// `None` when a request to `route` from `client` is within `limit`, else
    /// how long until one would be.
    pub(super) fn check(&self, route: &str, limit: &RateLimit, client: IpAddr) -> Option<Duration> {
        let limiter = self.limiter(route, limit);
        let clock = DefaultClock::default();
        let refused = match &*limiter {
            Limiter::Route(l) => l.check().err(),
            Limiter::ClientIp(l) => {
                if l.len() > MAX_TRACKED_CLIENTS {
                    l.retain_recent();
                }
                l.check_key(&client).err()
            }
        };
        refused.map(|not_until| not_until.wait_time_from(clock.now()))
    }

    /// The route's limiter, built (or rebuilt, when its limit changed) on first use.
    fn limiter(&self, route: &str, limit: &RateLimit) -> Arc<Limiter> {
        let read = self.routes.read().unwrap_or_else(|e| e.into_inner());
        if let Some((built_for, limiter)) = read.get(route)
            && built_for == limit
        {
            return limiter.clone();
        }
        drop(read);
        let mut write = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let entry = write
            .entry(route.to_owned())
            .or_insert_with(|| (*limit, Arc::new(build(limit))));
        if entry.0 != *limit {
            *entry = (*limit, Arc::new(build(limit)));
        }
        entry.1.clone()
    }

    /// Keeps only the routes `keep` names.
    pub(super) fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut write = self.routes.write().unwrap_or_else(|e| e.into_inner());
        write.retain(|route, _| keep(route));
    }
}

fn build(limit: &RateLimit) -> Limiter {
    // A rate too small to write as a period waits "forever"; one too large
    // for a period is as fast as governor counts.
    let period = Duration::try_from_secs_f64(1.0 / limit.per_second)
        .unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN));
    match limit.by {
        LimitBy::Route => Limiter::Route(DefaultDirectRateLimiter::direct(quota)),
        LimitBy::ClientIp => Limiter::ClientIp(DefaultKeyedRateLimiter::keyed(quota)),
    }
}
