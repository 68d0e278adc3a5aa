//! The rules file watcher: every interval, compare the file's modification time and size with the last load's,
//! and reload when they changed. Polling (rather than inotify) works the same on every filesystem, including the
//! symlink swaps of mounted configuration volumes, and one `stat` a second costs nothing.
//!
//! An edit that keeps both the size and the modification time (possible within one tick on a filesystem with
//! coarse timestamps) is not noticed; ReloadRules always reads the file.

use std::sync::Weak;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::engine::RiskEngine;

/// Polls until the engine is dropped.
pub(crate) fn spawn(engine: Weak<RiskEngine>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate, and the file was just loaded
        loop {
            ticks.tick().await;
            let Some(engine) = engine.upgrade() else { return };
            // `stat` and a read can block (a network filesystem): off the async workers.
            if tokio::task::spawn_blocking(move || engine.reload_if_changed()).await.is_err() {
                tracing::error!(target: crate::engine::LOG_TARGET, "the rules file check panicked; watching goes on");
            }
        }
    })
}
