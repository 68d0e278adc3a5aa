//! Time as the services see it. Tests move a manual clock (a hold that expires after 7 days, a velocity window of a
//! minute) instead of waiting; production reads the system clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Microseconds since the Unix epoch, from the system or from a test's hand.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that starts at the system time and moves only by [`Clock::advance`].
    pub fn manual() -> Self {
        Self { manual: Some(Arc::new(AtomicI64::new(system_now_us()))) }
    }

    /// Now, in microseconds since the epoch.
    pub fn now_us(&self) -> i64 {
        match &self.manual {
            Some(now) => now.load(Ordering::Relaxed),
            None => system_now_us(),
        }
    }

    /// Moves a manual clock forward; a no-op on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(now) = &self.manual {
            now.fetch_add(i64::try_from(by.as_micros()).unwrap_or(i64::MAX), Ordering::Relaxed);
        }
    }
}

fn system_now_us() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}
