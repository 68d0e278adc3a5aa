//! gRFC A6 retries: the policy compiled per method, exponential backoff with full jitter, server pushback and the
//! per-upstream throttle. tonic has none of this (it never retries), so it is written here; the loop that uses
//! it is in [`super::call`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::HeaderMap;
use rand::Rng;
use tonic::Code;

use super::options::{MethodOptions, RetryPolicy, ThrottleOptions, UpstreamOptions};
use crate::layers::concurrency::RETRY_PUSHBACK_HEADER;

/// A6's client-side cap on attempts.
const MAX_ATTEMPTS: u32 = 5;

/// The header telling the server how many attempts came before this one (absent on the first).
pub const PREVIOUS_ATTEMPTS_HEADER: &str = "grpc-previous-rpc-attempts";

/// A set of status codes, one bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CodeSet(u32);

impl CodeSet {
    pub(crate) fn of(codes: &[Code]) -> Self {
        Self(codes.iter().fold(0, |bits, &code| bits | 1 << code as u32))
    }

    pub(crate) fn contains(self, code: Code) -> bool {
        self.0 & (1 << code as u32) != 0
    }
}

/// A retry policy ready for use.
#[derive(Debug, Clone)]
pub(crate) struct RetryPlan {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub multiplier: f64,
    pub codes: CodeSet,
}

impl RetryPlan {
    fn new(policy: &RetryPolicy) -> Option<Self> {
        let max_attempts = policy.max_attempts.min(MAX_ATTEMPTS);
        (max_attempts > 1).then(|| Self {
            max_attempts,
            initial_backoff: policy.initial_backoff,
            max_backoff: policy.max_backoff,
            multiplier: policy.backoff_multiplier,
            codes: CodeSet::of(&policy.retryable_status_codes),
        })
    }
}

/// What the client does for one method.
#[derive(Debug, Clone)]
pub(crate) struct MethodPlan {
    /// Cap on the call's deadline.
    pub max_timeout: Duration,
    /// `Some` for idempotent methods with retries enabled.
    pub retry: Option<RetryPlan>,
    /// Codes that count as failures for the throttle: the method's retryable codes.
    pub throttle_failures: CodeSet,
}

/// Plans by method path, with the upstream's default for methods not named.
#[derive(Debug)]
pub(crate) struct MethodTable {
    default: MethodPlan,
    by_path: HashMap<String, MethodPlan>,
}

impl MethodTable {
    pub(crate) fn new(options: &UpstreamOptions) -> Self {
        let default = MethodPlan {
            max_timeout: options.max_timeout,
            retry: None,
            throttle_failures: CodeSet::of(&options.retry.retryable_status_codes),
        };
        let plan = |method: &MethodOptions| {
            let policy = method.retry.as_ref().unwrap_or(&options.retry);
            MethodPlan {
                max_timeout: method.max_timeout.unwrap_or(options.max_timeout),
                retry: method.idempotent.then(|| RetryPlan::new(policy)).flatten(),
                throttle_failures: CodeSet::of(&policy.retryable_status_codes),
            }
        };
        let by_path = options.methods.iter().map(|(path, method)| (path.clone(), plan(method))).collect();
        Self { default, by_path }
    }

    /// The plan for `/pkg.Service/Method`: its own, else its service's (`/pkg.Service/`), else the default.
    pub(crate) fn plan(&self, path: &str) -> &MethodPlan {
        if self.by_path.is_empty() {
            return &self.default;
        }
        let service = path.rfind('/').map(|slash| &path[..=slash]);
        self.by_path.get(path).or_else(|| service.and_then(|s| self.by_path.get(s))).unwrap_or(&self.default)
    }
}

/// What a server said with `grpc-retry-pushback-ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushback {
    /// Retry after exactly this long.
    After(Duration),
    /// Negative or unparseable: do not retry.
    Stop,
}

impl Pushback {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(RETRY_PUSHBACK_HEADER)?;
        let millis = value.to_str().ok().and_then(|text| text.parse::<i32>().ok());
        Some(match millis {
            Some(millis) if millis >= 0 => Pushback::After(Duration::from_millis(millis as u64)),
            _ => Pushback::Stop,
        })
    }
}

/// Exponential backoff with full jitter: the n-th retry waits `random(0, min(initial * multiplier^(n-1), max))`.
#[derive(Debug)]
pub(crate) struct Backoff {
    window: Duration,
}

impl Backoff {
    pub(crate) fn new(plan: &RetryPlan) -> Self {
        Self { window: plan.initial_backoff }
    }

    /// The next wait, and the window grows for the one after.
    pub(crate) fn next(&mut self, plan: &RetryPlan, rng: &mut impl Rng) -> Duration {
        let wait = self.window.mul_f64(rng.gen::<f64>());
        let grown =
            Duration::try_from_secs_f64(self.window.as_secs_f64() * plan.multiplier).unwrap_or(plan.max_backoff);
        self.window = grown.min(plan.max_backoff);
        wait
    }

    /// After a pushback the following retry starts again from the initial window (A6).
    pub(crate) fn reset(&mut self, plan: &RetryPlan) {
        self.window = plan.initial_backoff;
    }
}

/// Everything known about a failed attempt.
pub(crate) struct Failed {
    pub code: Code,
    pub pushback: Option<Pushback>,
    /// Attempts made so far, this one included.
    pub attempts: u32,
    /// Time left before the call's deadline.
    pub time_left: Duration,
}

/// How long to wait before the next attempt, or `None` to stop and return this attempt's answer.
pub(crate) fn retry_delay(
    plan: &RetryPlan,
    failed: &Failed,
    backoff: &mut Backoff,
    throttle: Option<&Throttle>,
    rng: &mut impl Rng,
) -> Option<Duration> {
    if !plan.codes.contains(failed.code) || failed.attempts >= plan.max_attempts {
        return None;
    }
    if throttle.is_some_and(|throttle| !throttle.allows_retry()) {
        return None;
    }
    let delay = match failed.pushback {
        Some(Pushback::Stop) => return None,
        Some(Pushback::After(delay)) => {
            backoff.reset(plan);
            delay
        }
        None => backoff.next(plan, rng),
    };
    // Never retry past the deadline: an attempt that cannot start before it is not made.
    (delay < failed.time_left).then_some(delay)
}

/// The A6 token bucket, in thousandths of a token (A6 gives `token_ratio` three decimals), lock-free.
#[derive(Debug)]
pub(crate) struct Throttle {
    milli_tokens: AtomicU32,
    max_milli: u32,
    ratio_milli: u32,
}

impl Throttle {
    pub(crate) fn new(options: &ThrottleOptions) -> Self {
        let max_milli = (options.max_tokens * 1000.0).round() as u32;
        let ratio_milli = (options.token_ratio * 1000.0).round() as u32;
        Self { milli_tokens: AtomicU32::new(max_milli), max_milli, ratio_milli }
    }

    /// An attempt failed with a retryable code, or was told not to retry.
    pub(crate) fn failure(&self) {
        self.update(|tokens| tokens.saturating_sub(1000));
    }

    /// An attempt succeeded.
    pub(crate) fn success(&self) {
        let (ratio, max) = (self.ratio_milli, self.max_milli);
        self.update(|tokens| tokens.saturating_add(ratio).min(max));
    }

    /// Retries are allowed while more than half the bucket is left.
    pub(crate) fn allows_retry(&self) -> bool {
        2 * u64::from(self.milli_tokens.load(Ordering::Relaxed)) > u64::from(self.max_milli)
    }

    /// Tokens left.
    pub(crate) fn tokens(&self) -> f64 {
        f64::from(self.milli_tokens.load(Ordering::Relaxed)) / 1000.0
    }

    fn update(&self, f: impl Fn(u32) -> u32) {
        let _ = self.milli_tokens.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tokens| Some(f(tokens)));
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn plan() -> RetryPlan {
        RetryPlan::new(&RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            backoff_multiplier: 2.0,
            retryable_status_codes: vec![Code::Unavailable],
        })
        .unwrap()
    }

    fn failed(code: Code, attempts: u32, pushback: Option<Pushback>) -> Failed {
        Failed { code, pushback, attempts, time_left: Duration::from_secs(10) }
    }

    #[test]
    fn backoff_windows_grow_by_the_multiplier_up_to_the_cap_with_full_jitter() {
        let plan = plan();
        let mut rng = StdRng::seed_from_u64(7);
        let windows = [100, 200, 300, 300].map(Duration::from_millis);
        let mut maxima = [Duration::ZERO; 4];
        for _ in 0..2000 {
            let mut backoff = Backoff::new(&plan);
            for (i, window) in windows.iter().enumerate() {
                let wait = backoff.next(&plan, &mut rng);
                assert!(wait < *window, "retry {i}: {wait:?} not below {window:?}");
                maxima[i] = maxima[i].max(wait);
            }
        }
        // Full jitter spreads over the whole window.
        for (max, window) in maxima.iter().zip(windows) {
            assert!(*max > window.mul_f64(0.95), "{max:?} of {window:?}");
        }
    }

    #[test]
    fn retries_only_retryable_codes_up_to_max_attempts() {
        let plan = plan();
        let mut rng = StdRng::seed_from_u64(1);
        let mut backoff = Backoff::new(&plan);
        assert!(retry_delay(&plan, &failed(Code::Unavailable, 1, None), &mut backoff, None, &mut rng).is_some());
        assert!(retry_delay(&plan, &failed(Code::Unavailable, 4, None), &mut backoff, None, &mut rng).is_some());
        assert!(retry_delay(&plan, &failed(Code::Unavailable, 5, None), &mut backoff, None, &mut rng).is_none());
        assert!(retry_delay(&plan, &failed(Code::Internal, 1, None), &mut backoff, None, &mut rng).is_none());
        assert!(RetryPlan::new(&RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }).is_none());
        assert_eq!(RetryPlan::new(&RetryPolicy { max_attempts: 9, ..RetryPolicy::default() }).unwrap().max_attempts, 5);
    }

    #[test]
    fn pushback_sets_the_delay_resets_the_backoff_or_stops() {
        let plan = plan();
        let mut rng = StdRng::seed_from_u64(2);
        let mut backoff = Backoff::new(&plan);
        backoff.next(&plan, &mut rng);
        backoff.next(&plan, &mut rng);
        let after = Some(Pushback::After(Duration::from_millis(1234)));
        let delay = retry_delay(&plan, &failed(Code::Unavailable, 1, after), &mut backoff, None, &mut rng);
        assert_eq!(delay, Some(Duration::from_millis(1234)));
        assert_eq!(backoff.window, plan.initial_backoff);
        let stop = Some(Pushback::Stop);
        assert_eq!(retry_delay(&plan, &failed(Code::Unavailable, 1, stop), &mut backoff, None, &mut rng), None);
    }

    #[test]
    fn never_retries_past_the_deadline() {
        let plan = plan();
        let mut rng = StdRng::seed_from_u64(3);
        let mut backoff = Backoff::new(&plan);
        let pushback = Some(Pushback::After(Duration::from_millis(500)));
        let short = Failed { time_left: Duration::from_millis(499), ..failed(Code::Unavailable, 1, pushback) };
        assert_eq!(retry_delay(&plan, &short, &mut backoff, None, &mut rng), None);
    }

    #[test]
    fn pushback_header_values() {
        let parse = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_PUSHBACK_HEADER, value.parse().unwrap());
            Pushback::from_headers(&headers)
        };
        assert_eq!(parse("0"), Some(Pushback::After(Duration::ZERO)));
        assert_eq!(parse("250"), Some(Pushback::After(Duration::from_millis(250))));
        assert_eq!(parse("-1"), Some(Pushback::Stop));
        assert_eq!(parse("soon"), Some(Pushback::Stop));
        assert_eq!(parse("99999999999"), Some(Pushback::Stop));
        assert_eq!(Pushback::from_headers(&HeaderMap::new()), None);
    }

    #[test]
    fn throttle_follows_a6_token_arithmetic() {
        let throttle = Throttle::new(&ThrottleOptions { enabled: true, max_tokens: 10.0, token_ratio: 0.1 });
        for _ in 0..4 {
            throttle.failure();
        }
        assert!(throttle.allows_retry(), "6 tokens > 5");
        throttle.failure();
        assert!(!throttle.allows_retry(), "5 tokens is not more than half");
        throttle.success();
        assert!(throttle.allows_retry(), "5.1 tokens");
        for _ in 0..100 {
            throttle.success();
        }
        assert_eq!(throttle.tokens(), 10.0);
        for _ in 0..20 {
            throttle.failure();
        }
        assert_eq!(throttle.tokens(), 0.0);
    }

    #[test]
    fn methods_resolve_by_path_then_service_then_default() {
        let mut options = UpstreamOptions::default();
        options.methods.insert("/a.S/Get".into(), MethodOptions::idempotent());
        options.methods.insert(
            "/a.T/".into(),
            MethodOptions { max_timeout: Some(Duration::from_millis(50)), ..MethodOptions::idempotent() },
        );
        options.methods.insert("/a.S/Put".into(), MethodOptions::default());
        let table = MethodTable::new(&options);
        assert!(table.plan("/a.S/Get").retry.is_some());
        assert!(table.plan("/a.S/Put").retry.is_none());
        assert!(table.plan("/a.S/Other").retry.is_none());
        assert_eq!(table.plan("/a.T/Any").max_timeout, Duration::from_millis(50));
        assert!(table.plan("/a.T/Any").retry.is_some());
        assert_eq!(table.plan("/b.U/X").max_timeout, Duration::from_secs(1));
    }
}
