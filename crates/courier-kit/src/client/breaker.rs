//! The circuit breaker: client-side adaptive throttling from the Google SRE book ("Handling Overload").
//!
//! Instead of a closed/open/half-open state machine with thresholds to tune, each upstream counts, over a
//! sliding window, the attempts that went out (`requests`, each counted when it ends; the breaker's own local
//! refusals do not count: counting them kept it open long after the upstream recovered, since every refusal
//! looked like one more failure) and those the upstream accepted (`accepts`: answered with anything but UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL or a transport
//! failure). A new attempt is refused locally with probability `max(0, (requests - k * accepts) / (requests + 1))`:
//! zero while the upstream handles calls, rising smoothly as it fails, and falling again by itself as accepts
//! come back (some calls always get through to find out) and as the failures age out of the window. When the
//! upstream's health watch reports SERVING again, [`Breaker::reset`] forgets the window, so it closes within one
//! health probe of the upstream's recovery. Below `min_requests` in the
//! window nothing is refused, so one failure at low traffic does not refuse the next calls. tonic has no circuit
//! breaker, so this is written here.
//!
//! The window is a ring of buckets, each one `AtomicU64` packing its epoch and both counts, so recording and
//! reading take no lock.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use tokio::time::Instant;
use tonic::Code;

use super::options::BreakerOptions;

const EPOCH_BITS: u32 = 24;
const COUNT_BITS: u32 = 20;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;
/// Counts saturate here: a million attempts per bucket is far beyond any one upstream of one process.
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

/// Whether an answer counts against the upstream's health.
pub(crate) fn is_failure(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded | Code::Internal)
}

fn pack(epoch: u64, requests: u64, accepts: u64) -> u64 {
    (epoch & EPOCH_MASK) << (2 * COUNT_BITS) | requests << COUNT_BITS | accepts
}

fn unpack(bucket: u64) -> (u64, u64, u64) {
    (bucket >> (2 * COUNT_BITS), bucket >> COUNT_BITS & COUNT_MAX, bucket & COUNT_MAX)
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Breaker {
    k: f64,
    min_requests: u64,
    origin: Instant,
    bucket_nanos: u128,
    buckets: Box<[AtomicU64]>,
}

impl Breaker {
    pub(crate) fn new(options: &BreakerOptions) -> Self {
        let count = options.buckets.max(1);
        let bucket_nanos = (options.window.as_nanos() / u128::from(count)).max(1);
        // Every bucket starts one full ring old, so it counts for nothing until written.
        let stale = pack(EPOCH_MASK.wrapping_sub(u64::from(count)) & EPOCH_MASK, 0, 0);
        let buckets = (0..count).map(|_| AtomicU64::new(stale)).collect();
        Self {
            k: options.k,
            min_requests: u64::from(options.min_requests),
            origin: Instant::now(),
            bucket_nanos,
            buckets,
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_nanos() / self.bucket_nanos) as u64 & EPOCH_MASK
    }

    fn add(&self, now: Instant, requests: u64, accepts: u64) {
        let epoch = self.epoch(now);
        let slot = &self.buckets[(epoch % self.buckets.len() as u64) as usize];
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bucket| {
            let (seen, r, a) = unpack(bucket);
            let age = epoch.wrapping_sub(seen) & EPOCH_MASK;
            if age == 0 {
                Some(pack(epoch, (r + requests).min(COUNT_MAX), (a + accepts).min(COUNT_MAX)))
            } else if age < EPOCH_MASK / 2 {
                // The slot holds an older slice of time: start it afresh.
                Some(pack(epoch, requests, accepts))
            } else {
                // Another thread already moved the slot to a newer slice than this (late) sample.
                None
            }
        });
    }

    /// Requests and accepts within the window.
    fn totals(&self, now: Instant) -> (u64, u64) {
        let epoch = self.epoch(now);
        let ring = self.buckets.len() as u64;
        self.buckets.iter().fold((0, 0), |(requests, accepts), slot| {
            let (seen, r, a) = unpack(slot.load(Ordering::Relaxed));
            if epoch.wrapping_sub(seen) & EPOCH_MASK < ring {
                (requests + r, accepts + a)
            } else {
                (requests, accepts)
            }
        })
    }

    /// The chance that an attempt made now is refused locally.
    pub(crate) fn reject_probability(&self) -> f64 {
        self.reject_probability_at(Instant::now())
    }

    fn reject_probability_at(&self, now: Instant) -> f64 {
        let (requests, accepts) = self.totals(now);
        if requests < self.min_requests {
            return 0.0;
        }
        let requests = requests as f64;
        ((requests - self.k * accepts as f64) / (requests + 1.0)).max(0.0)
    }

    /// Whether an attempt may go out now. A refusal is not counted: it says nothing about the upstream.
    pub(crate) fn admit(&self) -> bool {
        let reject = self.reject_probability_at(Instant::now());
        reject <= 0.0 || rand::thread_rng().gen::<f64>() >= reject
    }

    /// Forgets every count: the upstream's health says it serves again (see [`super::balance`]).
    pub(crate) fn reset(&self) {
        let stale = pack(self.epoch(Instant::now()).wrapping_sub(self.buckets.len() as u64) & EPOCH_MASK, 0, 0);
        for slot in self.buckets.iter() {
            slot.store(stale, Ordering::Relaxed);
        }
    }

    /// An admitted attempt ended. Attempts count when they end, not when they start, so calls still in flight
    /// (a long stream, say) weigh neither for nor against the upstream.
    pub(crate) fn record(&self, accepted: bool) {
        self.add(Instant::now(), 1, u64::from(accepted));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(&BreakerOptions { min_requests: 0, ..BreakerOptions::default() })
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_nothing_below_min_requests() {
        let breaker = Breaker::new(&BreakerOptions::default());
        for _ in 0..9 {
            breaker.record(false);
        }
        assert_eq!(breaker.reject_probability(), 0.0);
        breaker.record(false);
        assert!((breaker.reject_probability() - 10.0 / 11.0).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn admits_everything_while_the_upstream_accepts() {
        let breaker = breaker();
        for _ in 0..1000 {
            assert!(breaker.admit());
            breaker.record(true);
        }
        assert_eq!(breaker.reject_probability(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn follows_the_sre_formula() {
        let breaker = breaker();
        // 30 requests, 10 accepted: (30 - 2 * 10) / 31.
        for i in 0..30 {
            breaker.add(Instant::now(), 1, u64::from(i % 3 == 0));
        }
        assert!((breaker.reject_probability() - 10.0 / 31.0).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_in_flight_and_refusals_do_not_count() {
        let breaker = breaker();
        // Many admitted calls still running: nothing is known of them yet.
        for _ in 0..100 {
            assert!(breaker.admit());
        }
        assert_eq!(breaker.reject_probability(), 0.0);
        breaker.record(false);
        assert_eq!(breaker.reject_probability(), 0.5);
        let refused = (0..1000).filter(|_| !breaker.admit()).count();
        assert!(refused > 0);
        let (requests, accepts) = breaker.totals(Instant::now());
        assert_eq!((requests, accepts), (1, 0), "its own refusals are no evidence against the upstream");
    }

    #[tokio::test(start_paused = true)]
    async fn reset_closes_it_at_once() {
        let breaker = breaker();
        for _ in 0..50 {
            breaker.record(false);
        }
        assert!(breaker.reject_probability() > 0.9);
        breaker.reset();
        assert_eq!(breaker.reject_probability(), 0.0);
        breaker.record(true);
        assert_eq!(breaker.totals(Instant::now()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_age_out_of_the_window() {
        let breaker = breaker();
        for _ in 0..50 {
            breaker.add(Instant::now(), 1, 0);
        }
        assert!(breaker.reject_probability() > 0.9);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(breaker.reject_probability() > 0.9, "still inside the window");
        tokio::time::advance(Duration::from_millis(5_001)).await;
        assert_eq!(breaker.reject_probability(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_is_reused_after_a_full_ring() {
        let breaker = breaker();
        breaker.add(Instant::now(), 7, 0);
        tokio::time::advance(Duration::from_secs(10)).await;
        breaker.add(Instant::now(), 1, 1);
        let (requests, accepts) = breaker.totals(Instant::now());
        assert_eq!((requests, accepts), (1, 1));
    }

    #[test]
    fn counts_pack_and_saturate() {
        let bucket = pack(EPOCH_MASK + 5, COUNT_MAX, 3);
        assert_eq!(unpack(bucket), (4, COUNT_MAX, 3));
    }
}
