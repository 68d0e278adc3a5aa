//! Counters a run updates as it goes, for a progress display: calls answered, errors, and the latency of the
//! calls since the display last looked (so its p99 is the current one, not the run's so far).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::report::new_histogram;

/// Shared by every caller of a run and read by whoever displays progress.
#[derive(Debug)]
pub struct Live {
    ok: AtomicU64,
    errors: AtomicU64,
    window: Mutex<Histogram<u64>>,
}

/// What [`Live::take`] saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Calls answered since the start (warm-up included).
    pub ok: u64,
    /// Failed calls since the start.
    pub errors: u64,
    /// p99 in microseconds of the calls answered since the last snapshot (0 when there were none).
    pub window_p99_us: u64,
}

impl Default for Live {
    fn default() -> Self {
        Self { ok: AtomicU64::new(0), errors: AtomicU64::new(0), window: Mutex::new(new_histogram()) }
    }
}

impl Live {
    /// Records an answered call that took `micros`.
    pub fn ok(&self, micros: u64) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        let _ = self.window.lock().expect("live window").record(micros);
    }

    /// Records a failed call.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far and the p99 since the last call, which starts a new window.
    pub fn take(&self) -> Snapshot {
        let p99 = {
            let mut window = self.window.lock().expect("live window");
            let p99 = if window.is_empty() { 0 } else { window.value_at_quantile(0.99) };
            window.reset();
            p99
        };
        Snapshot {
            ok: self.ok.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            window_p99_us: p99,
        }
    }
}
