//! courier's risk service: scores each authorization attempt before the ledger decides it.
//!
//! - [`rules`]: rule sets as data (a TOML file, or the built-in set), validated whole, and their evaluation.
//! - [`state`]: what risk remembers per account (recent attempts, merchants used), bounded in memory.
//! - [`rollout`]: the active rule set, an optional candidate in shadow or on a share of accounts, and counters.
//! - [`engine`]: the above together: one `score` per call on the hot path, reloads and rollout switches beside it.
//! - [`service`]: the `courier.risk.v1.RiskService` gRPC handlers.
//! - [`scopes`]: the scope each method needs when authentication is on.

#![warn(missing_docs)]
// tonic::Status is large, and it is what every handler returns; boxing it would only move the cost.
#![allow(clippy::result_large_err)]

pub mod clock;
pub mod config;
pub mod engine;
pub mod rollout;
pub mod rules;
pub mod scopes;
pub mod service;
pub mod state;
mod watch;

pub use clock::Clock;
pub use config::RiskConfig;
pub use engine::RiskEngine;
pub use service::RiskApi;
