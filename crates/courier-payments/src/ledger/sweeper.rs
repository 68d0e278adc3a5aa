//! The background sweeper: expires holds past their TTL and forgets idempotency keys past their retention.

use std::sync::Weak;

use super::{Inner, Ledger};

/// How long one sweep batch may take. The sweeper is a caller like any other: a batch without a deadline would
/// wait as long as a silent database keeps it (the writer bounds a batch by its callers' deadlines), and every
/// call queued behind it would run into its own deadline instead of being refused UNAVAILABLE. A healthy
/// database commits a sweep batch in milliseconds; one that is cut short is retried at the next interval.
const SWEEP_BUDGET: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs until the ledger is dropped; holds only a weak reference so it never keeps the writer alive.
pub(super) fn spawn(inner: Weak<Inner>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Some(interval) = inner.upgrade().map(|inner| inner.config.sweep_interval) else { return };
            tokio::time::sleep(interval).await;
            let Some(inner) = inner.upgrade() else { return };
            let ledger = Ledger { inner };
            // A full sweep of a large backlog takes several batches; each one stays short.
            loop {
                let deadline = courier_kit::deadline::Instant::now() + SWEEP_BUDGET;
                match courier_kit::deadline::scope(deadline, ledger.sweep()).await {
                    Ok(report) if report.expired >= 512 => continue,
                    Ok(report) => {
                        if report.expired > 0 || report.forgotten_keys > 0 {
                            tracing::info!(target: "courier::ledger", expired = report.expired,
                                forgotten_keys = report.forgotten_keys, "swept");
                        }
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(target: "courier::ledger", %error, "sweep failed; retrying next interval");
                        break;
                    }
                }
            }
        }
    })
}
