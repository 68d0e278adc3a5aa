//! The configuration of one upstream, serde-ready so a service can read it from its config file
//! (`[upstreams.users]` say) like every other option.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::Code;

/// How calls to one upstream service are made.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamOptions {
    /// The replicas (`http://host:port`), balanced with power of two choices. Default none.
    pub urls: Vec<String>,
    /// Kept back from the inbound call's remaining deadline for this service's own work after the upstream
    /// answers. Default 5 ms.
    #[serde(with = "humantime_serde")]
    pub reserve: Duration,
    /// The longest deadline an outbound call gets (all its attempts together), and the whole deadline when no
    /// inbound call bounds it. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub max_timeout: Duration,
    /// How long establishing a connection may take. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The retry policy of idempotent methods that name none of their own.
    pub retry: RetryPolicy,
    /// Per method: full path (`/courier.users.v1.UserService/GetUser`) or service prefix
    /// (`/courier.users.v1.UserService/`). Methods not named here are not idempotent, so never retried.
    pub methods: BTreeMap<String, MethodOptions>,
    /// Largest request buffered for retries (gRFC A6 `per_rpc_buffer_limit_in_bytes`); a larger one is sent once
    /// without retries. Default 64 KiB.
    pub retry_buffer_bytes: usize,
    /// gRFC A6 retry throttling for the whole upstream.
    pub throttle: ThrottleOptions,
    /// The adaptive-throttling circuit breaker for the whole upstream.
    pub breaker: BreakerOptions,
    /// Follow each replica's `grpc.health.v1.Health/Watch` and send only to SERVING ones (each watch is one
    /// long call in flight at the replica). Default on.
    pub health_check: bool,
    /// The service name asked of health; empty means the whole server. Default empty.
    pub health_service: String,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            reserve: Duration::from_millis(5),
            max_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            methods: BTreeMap::new(),
            retry_buffer_bytes: 64 * 1024,
            throttle: ThrottleOptions::default(),
            breaker: BreakerOptions::default(),
            health_check: true,
            health_service: String::new(),
        }
    }
}

/// What is known of one method.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MethodOptions {
    /// Safe to run more than once; only idempotent methods are retried. Default false.
    pub idempotent: bool,
    /// Replaces the upstream's `max_timeout` for this method. The deadline covers a response stream to its end,
    /// so a long-lived feed needs a long one.
    #[serde(with = "humantime_serde")]
    pub max_timeout: Option<Duration>,
    /// Replaces the upstream's retry policy for this method.
    pub retry: Option<RetryPolicy>,
}

impl MethodOptions {
    /// An idempotent method with the upstream's retry policy.
    pub fn idempotent() -> Self {
        Self { idempotent: true, ..Self::default() }
    }
}

/// A gRFC A6 retry policy. Retries apply to unary calls: a call whose request is still streaming when it starts
/// is sent once.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts including the first; 1 disables retries, more than 5 counts as 5 (A6's client limit).
    /// Default 3.
    pub max_attempts: u32,
    /// The first retry waits a random time in `[0, initial_backoff)`. Default 10 ms.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// The cap on the n-th retry's window `initial_backoff * backoff_multiplier^(n-1)`. Default 200 ms.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Growth of the backoff window per retry. Default 2.
    pub backoff_multiplier: f64,
    /// Codes that are retried (`["UNAVAILABLE"]`); they also count as failures for throttling. Default
    /// UNAVAILABLE only: it means the request was not processed.
    #[serde(with = "crate::config::codes::list")]
    pub retryable_status_codes: Vec<Code>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            backoff_multiplier: 2.0,
            retryable_status_codes: vec![Code::Unavailable],
        }
    }
}

/// gRFC A6 retry throttling: a token bucket per upstream. Each attempt that fails with a retryable code (or a
/// pushback saying stop) takes a token, each success gives back `token_ratio`; retries happen only while more
/// than half of `max_tokens` are left, so a failing upstream gets no retry storm.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleOptions {
    /// Default on.
    pub enabled: bool,
    /// Bucket size, in (0, 1000]. Default 10.
    pub max_tokens: f64,
    /// Tokens a success gives back, at least 0.001. Default 0.1.
    pub token_ratio: f64,
}

impl Default for ThrottleOptions {
    fn default() -> Self {
        Self { enabled: true, max_tokens: 10.0, token_ratio: 0.1 }
    }
}

/// Client-side adaptive throttling (Google SRE book, "Handling Overload"): over a sliding window, a call is
/// refused locally with probability `max(0, (requests - k * accepts) / (requests + 1))`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerOptions {
    /// Default on.
    pub enabled: bool,
    /// Accepted calls are worth `k` requests: with 2, local refusals start once more than half the calls fail.
    /// Lower is more aggressive. Default 2.
    pub k: f64,
    /// How far back calls count. After an outage the breaker closes within about one to two windows, as the
    /// failures and the refusals they caused age out. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Slices of the window; the oldest slice drops out whole. Default 10.
    pub buckets: u32,
    /// Nothing is refused while the window holds fewer requests than this: at low traffic one failed call would
    /// otherwise refuse half of the next ones for a whole window. Default 10.
    pub min_requests: u32,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        Self { enabled: true, k: 2.0, window: Duration::from_secs(10), buckets: 10, min_requests: 10 }
    }
}
