//! A route's `delivery` and `[routes.retry]` keys, and the file's `[spool]`,
//! checked and built into [`RetryPolicy`] and [`SpoolSettings`].

use std::time::Duration;

use toml::Spanned;

use super::build::{Builder, span};
use super::file::{RetrySection, RouteSection, SpoolSection};
use crate::base::settings::{
    DEFAULT_CLAIM_AFTER_SECS, DEFAULT_CONCURRENCY, DEFAULT_MAX_AGE_SECS, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF_MS, DEFAULT_MIN_BACKOFF_MS, DEFAULT_RETRY_ON, DEFAULT_SPOOL_DIR,
    DEFAULT_SPOOL_MAX_BYTES, FleetSettings, RetryOn, RetryPolicy, SpoolBackend, SpoolSettings,
    StateSettings,
};

/// The most attempts a route may ask for (a header number, kept small).
const MAX_MAX_ATTEMPTS: u64 = 1_000;
/// The most attempts in flight a route may ask for.
const MAX_CONCURRENCY: u64 = 1_024;

impl Builder<'_> {
    /// `delivery` (the route's, or its destination's) and `[routes.retry]`:
    /// `None` for a sync route.
    pub(super) fn delivery(
        &mut self,
        r: &RouteSection,
        delivery: Option<&Spanned<String>>,
    ) -> Option<Box<RetryPolicy>> {
        let is_async = match delivery.map(|d| (d, d.get_ref().as_str())) {
            None | Some((_, "sync")) => false,
            Some((_, "async")) => true,
            Some((d, other)) => {
                self.error(
                    span(d),
                    format!("`delivery` is `sync` or `async`, not `{other}`"),
                );
                return None;
            }
        };
        if !is_async {
            if let Some(retry) = &r.retry {
                self.warning(
                    span(retry),
                    "`[routes.retry]` only applies to a route with `delivery = \"async\"`",
                );
            }
            return None;
        }
        let empty = RetrySection {
            max_attempts: None,
            max_age_secs: None,
            min_backoff_ms: None,
            max_backoff_ms: None,
            retry_on: None,
            concurrency: None,
            ordering: None,
        };
        let retry = r.retry.as_ref().map_or(&empty, Spanned::get_ref);
        Some(Box::new(self.retry(retry)?))
    }

    fn retry(&mut self, s: &RetrySection) -> Option<RetryPolicy> {
        let before = self.mark();
        let max_attempts = self.positive_or(&s.max_attempts, "max_attempts", DEFAULT_MAX_ATTEMPTS);
        if let Some(v) = s
            .max_attempts
            .as_ref()
            .filter(|_| max_attempts > MAX_MAX_ATTEMPTS)
        {
            self.error(
                span(v),
                format!("`max_attempts` is at most {MAX_MAX_ATTEMPTS}"),
            );
        }
        let max_age = self.positive_or(&s.max_age_secs, "max_age_secs", DEFAULT_MAX_AGE_SECS);
        let min_backoff =
            self.positive_or(&s.min_backoff_ms, "min_backoff_ms", DEFAULT_MIN_BACKOFF_MS);
        let max_backoff =
            self.positive_or(&s.max_backoff_ms, "max_backoff_ms", DEFAULT_MAX_BACKOFF_MS);
        if min_backoff > max_backoff {
            let at = s.min_backoff_ms.as_ref().or(s.max_backoff_ms.as_ref());
            self.error(
                at.and_then(span),
                format!(
                    "`min_backoff_ms` ({min_backoff}) is over `max_backoff_ms` ({max_backoff})"
                ),
            );
        }
        let concurrency = self.positive_or(&s.concurrency, "concurrency", DEFAULT_CONCURRENCY);
        if let Some(v) = s
            .concurrency
            .as_ref()
            .filter(|_| concurrency > MAX_CONCURRENCY)
        {
            self.error(
                span(v),
                format!("`concurrency` is at most {MAX_CONCURRENCY}"),
            );
        }
        let fifo = match s.ordering.as_ref().map(|o| (o, o.get_ref().as_str())) {
            None | Some((_, "none")) => false,
            Some((_, "fifo")) => true,
            Some((o, other)) => {
                self.error(
                    span(o),
                    format!("`ordering` is `none` or `fifo`, not `{other}`"),
                );
                false
            }
        };
        let retry_on = match &s.retry_on {
            None => DEFAULT_RETRY_ON
                .iter()
                .fold(RetryOn::default(), |mut on, item| {
                    let _ = add_retry_on(&mut on, item);
                    on
                }),
            Some(list) => {
                let mut on = RetryOn::default();
                for item in list.get_ref() {
                    if let Err(message) = add_retry_on(&mut on, item.get_ref()) {
                        self.error(span(item), message);
                    }
                }
                on
            }
        };
        if self.errors_since(before) {
            return None;
        }
        Some(RetryPolicy {
            max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
            max_age: Duration::from_secs(max_age),
            min_backoff: Duration::from_millis(min_backoff),
            max_backoff: Duration::from_millis(max_backoff),
            retry_on,
            concurrency: usize::try_from(concurrency).unwrap_or(1),
            fifo,
            breaker: None,
        })
    }

    /// `[spool]`, with the state's Redis for `backend = "redis"`.
    pub(super) fn spool(
        &mut self,
        s: Option<&Spanned<SpoolSection>>,
        state: &StateSettings,
    ) -> SpoolSettings {
        let section = s.map(Spanned::get_ref);
        let max_bytes = self.positive_or(
            &section.and_then(|s| s.max_bytes.clone()),
            "max_bytes",
            DEFAULT_SPOOL_MAX_BYTES,
        );
        let claim_after = self.positive_or(
            &section.and_then(|s| s.claim_after_secs.clone()),
            "claim_after_secs",
            DEFAULT_CLAIM_AFTER_SECS,
        );
        let dir = section.and_then(|s| s.dir.as_ref());
        let backend = section.and_then(|s| s.backend.as_ref());
        let backend = match backend.map(|b| (b, b.get_ref().as_str())) {
            None | Some((_, "local")) => {
                if let Some(c) = section.and_then(|s| s.claim_after_secs.as_ref()) {
                    self.error(
                        span(c),
                        "`claim_after_secs` applies to `backend = \"redis\"`",
                    );
                }
                let text = dir.map_or(DEFAULT_SPOOL_DIR, |d| d.get_ref().as_str());
                if let Some(d) = dir.filter(|_| text.trim().is_empty()) {
                    self.error(span(d), "`dir` must not be empty");
                }
                SpoolBackend::Local(self.base_dir.join(text))
            }
            Some((b, "redis")) => {
                if let Some(d) = dir {
                    self.error(span(d), "`dir` applies to `backend = \"local\"`");
                }
                let Some(redis) = state.redis.clone() else {
                    self.error(
                        span(b),
                        "`backend = \"redis\"` needs `[server.state] redis_url`",
                    );
                    return SpoolSettings {
                        backend: SpoolBackend::Local(self.base_dir.join(DEFAULT_SPOOL_DIR)),
                        max_bytes,
                    };
                };
                SpoolBackend::Redis(FleetSettings {
                    redis,
                    timeout: state.timeout,
                    claim_after: Duration::from_secs(claim_after),
                })
            }
            Some((b, other)) => {
                self.error(
                    span(b),
                    format!("`backend` is `local` or `redis`, not `{other}`"),
                );
                SpoolBackend::Local(self.base_dir.join(DEFAULT_SPOOL_DIR))
            }
        };
        SpoolSettings { backend, max_bytes }
    }
}

/// Adds one `retry_on` item: `5xx` (a class), `429` (a status), `timeout`, `connect`.
fn add_retry_on(on: &mut RetryOn, item: &str) -> Result<(), String> {
    match item {
        "timeout" => on.timeout = true,
        "connect" => on.connect = true,
        _ => {
            let bytes = item.as_bytes();
            match bytes {
                [d @ b'1'..=b'5', b'x', b'x'] => on.classes[usize::from(d - b'0')] = true,
                _ => match item.parse::<u16>() {
                    Ok(status) if (100..=599).contains(&status) && item.len() == 3 => {
                        on.statuses.push(status);
                    }
                    _ => {
                        return Err(format!(
                            "`retry_on` takes `5xx`-like classes, statuses like `429`, `timeout` and `connect`, not `{item}`"
                        ));
                    }
                },
            }
        }
    }
    Ok(())
}
