//! The payment service's settings: the `[payments]` table of the configuration file (and `COURIER_PAYMENTS__*`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The bound of `holder_stale_if_error`: a holder frozen in UserService is never approved on a status older than
/// `holder_cache_ttl` plus this.
pub const MAX_HOLDER_STALE_IF_ERROR: Duration = Duration::from_secs(300);

/// Ledger and service settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    /// How long an approved hold stays open before the sweeper releases it.
    #[serde(with = "humantime_serde")]
    pub hold_ttl: Duration,
    /// How long an idempotency key and its stored answer are kept (at least).
    #[serde(with = "humantime_serde")]
    pub idempotency_retention: Duration,
    /// How often the sweeper runs.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Largest amount one authorization may ask for (minor units); above it declines with 13.
    pub max_authorization_amount: i64,
    /// Most operations the writer commits in one transaction.
    pub max_batch: usize,
    /// How long the writer waits, when a batch is not full, for more operations to join it before committing:
    /// fewer commits and fsyncs per operation for that much more latency. 0 (the default) commits at once;
    /// measured in docs/performance.md (step 13). On PostgreSQL the wait rounds up to whole milliseconds.
    #[serde(with = "humantime_serde")]
    pub commit_linger: Duration,
    /// How long a holder's status from UserService is trusted before asking again.
    #[serde(with = "humantime_serde")]
    pub holder_cache_ttl: Duration,
    /// How long past `holder_cache_ttl` a holder's cached status is still used while UserService fails
    /// (stale-if-error), instead of declining 91 at once; at most [`MAX_HOLDER_STALE_IF_ERROR`] (larger values
    /// count as that). 0 turns it off.
    #[serde(with = "humantime_serde")]
    pub holder_stale_if_error: Duration,
    /// Most authorizations one AuthorizeStream works on at once; the stream's reader waits beyond it.
    pub stream_in_flight: usize,
    /// Most authorizations all AuthorizeStream calls of the process work on at once, shared first come first
    /// served; each stream's reader also waits while they are all taken. Without it, 300 streams of 64 each put
    /// 19,200 authorizations at once on a pool of 16 store connections (most timed out waiting for one) and
    /// held their memory.
    pub streams_in_flight: usize,
    /// How long one UserService lookup may take (retries included).
    #[serde(with = "humantime_serde")]
    pub users_timeout: Duration,
    /// How long one RiskService call may take before the fallback policy decides.
    #[serde(with = "humantime_serde")]
    pub risk_timeout: Duration,
    /// The least time an Authorize must have left when it is about to ask RiskService (the risk client's 5 ms
    /// reserve included); with less it is refused with DEADLINE_EXCEEDED before any effect, so a caller cannot
    /// skip risk scoring by choosing a short deadline. The stand-in decides only when risk was asked and failed.
    #[serde(with = "humantime_serde")]
    pub risk_min_budget: Duration,
    /// Who decides when RiskService does not answer in time, fails, or its circuit is open.
    pub risk_fallback: Fallback,
    /// `stand_in`: largest amount approved without risk, per authorization (minor units); above declines 91.
    pub stand_in_max_amount: i64,
    /// `stand_in`: most approved without risk per account per UTC day (minor units); beyond declines 91.
    pub stand_in_daily_limit: i64,
    /// Whether each batch also writes its events to the `outbox` table (for the relay). Not read from the
    /// `[payments]` table: set by the server from `[outbox] broker`, so rows are only written when something
    /// publishes them.
    #[serde(skip)]
    pub outbox: bool,
}

/// The explicit fallback when RiskService cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Approve small amounts (per authorization and per account per day limits), decline the rest with 91.
    StandIn,
    /// Decline everything with 91.
    FailClosed,
    /// Decide on funds alone.
    FailOpen,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            hold_ttl: Duration::from_secs(7 * 24 * 3600),
            idempotency_retention: Duration::from_secs(24 * 3600),
            sweep_interval: Duration::from_secs(1),
            max_authorization_amount: 1_000_000_000,
            max_batch: 256,
            commit_linger: Duration::ZERO,
            holder_cache_ttl: Duration::from_secs(5),
            holder_stale_if_error: Duration::from_secs(30),
            stream_in_flight: 64,
            streams_in_flight: 512,
            users_timeout: Duration::from_millis(100),
            risk_timeout: Duration::from_millis(100),
            risk_min_budget: Duration::from_millis(10),
            risk_fallback: Fallback::StandIn,
            stand_in_max_amount: 10_000,
            stand_in_daily_limit: 50_000,
            outbox: false,
        }
    }
}
