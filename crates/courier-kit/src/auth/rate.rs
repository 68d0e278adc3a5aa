//! Per-subject rate limits (`[auth.rate_limit]`): one token bucket (GCRA, the `governor` crate) per token
//! subject or service identity, so one noisy caller cannot starve the others. Off by default.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota};
use serde::{Deserialize, Serialize};

/// The `[auth.rate_limit]` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Calls per second each subject may make, sustained; 0 (the default) turns limiting off.
    pub per_second: u32,
    /// Calls a subject may make at once above that rate; default (0) the same as `per_second`.
    pub burst: u32,
}

/// The limiter; answers whether a subject's call may go ahead now.
pub struct RateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

/// Buckets of subjects idle long enough to be full again are dropped this often (in calls), bounding memory.
const FORGET_IDLE_EVERY: u64 = 4096;

impl RateLimiter {
    /// The limiter `config` describes, `None` when it is off.
    pub fn new(config: &RateLimitConfig) -> Option<Self> {
        let rate = NonZeroU32::new(config.per_second)?;
        let burst = NonZeroU32::new(config.burst).unwrap_or(rate);
        let limiter = DefaultKeyedRateLimiter::hashmap(Quota::per_second(rate).allow_burst(burst));
        Some(Self { limiter, checks: AtomicU64::new(0) })
    }

    /// Whether `subject` may make a call now (taking one token if so).
    pub fn allow(&self, subject: &str) -> bool {
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_IDLE_EVERY == FORGET_IDLE_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&subject.to_owned()).is_ok()
    }
}
