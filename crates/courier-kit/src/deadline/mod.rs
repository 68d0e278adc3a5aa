//! The deadline of the call being served, readable anywhere in its handler without passing it by hand.
//!
//! gRPC carries a call's deadline as a relative `grpc-timeout` header ([`grpc_timeout`] parses and writes it).
//! tonic reads it only to bound the response future and gives handlers no way to see it, and it does not
//! propagate it to the calls a handler makes. Here the server's deadline layer
//! ([`crate::layers::deadline`]) turns the header (or the method's default) into an absolute [`Instant`] and runs
//! the handler inside [`scope`], so handler code asks [`current`] or [`remaining`], and the resilient client
//! ([`crate::client`]) derives each outbound call's `grpc-timeout` from it.
//!
//! The deadline is a tokio task-local: it follows the handler's future, not work moved to another task. Code that
//! spawns work for the call carries it over with [`scope`]:
//!
//! ```
//! # async fn demo() {
//! let deadline = courier_kit::deadline::current();
//! tokio::spawn(async move {
//!     let work = async { /* outbound calls here see the caller's deadline */ };
//!     match deadline {
//!         Some(deadline) => courier_kit::deadline::scope(deadline, work).await,
//!         None => work.await,
//!     }
//! });
//! # }
//! ```

pub mod grpc_timeout;

use std::future::Future;
use std::time::Duration;

use tokio::task::futures::TaskLocalFuture;
pub use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The deadline of the call this task is serving, or `None` outside a call (or in a task spawned without
/// [`scope`]). Server streams see it while their handler sets up and, when the caller sent a deadline, while
/// the stream is polled.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Time left until [`current`], zero once it has passed; `None` without a deadline.
pub fn remaining() -> Option<Duration> {
    current().map(|deadline| deadline.saturating_duration_since(Instant::now()))
}

/// Runs `future` with `deadline` as [`current`]; an inner scope replaces an outer one while it runs.
pub fn scope<F: Future>(deadline: Instant, future: F) -> TaskLocalFuture<Instant, F> {
    DEADLINE.scope(deadline, future)
}

/// Runs `f` synchronously with `deadline` as [`current`] (for a service's `call`, which runs outside its future).
pub fn sync_scope<R>(deadline: Instant, f: impl FnOnce() -> R) -> R {
    DEADLINE.sync_scope(deadline, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn current_is_set_inside_a_scope_only() {
        assert_eq!(current(), None);
        let deadline = Instant::now() + Duration::from_millis(250);
        let seen = scope(deadline, async {
            tokio::time::advance(Duration::from_millis(100)).await;
            (current(), remaining())
        })
        .await;
        assert_eq!(seen, (Some(deadline), Some(Duration::from_millis(150))));
        assert_eq!(current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_inner_scope_wins_and_remaining_stops_at_zero() {
        let outer = Instant::now() + Duration::from_secs(1);
        let inner = Instant::now() + Duration::from_millis(10);
        let seen = scope(outer, scope(inner, async { current() })).await;
        assert_eq!(seen, Some(inner));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(sync_scope(outer, remaining), Some(Duration::ZERO));
    }
}
