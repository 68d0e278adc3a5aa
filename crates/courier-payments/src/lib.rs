//! courier's payment service: accounts and a durable two-phase ledger.
//!
//! - [`model`]: ids, currencies, response codes, the clock and validation at the boundary.
//! - [`ledger`]: the group-committing writer, reads, the sweeper and the invariant check.
//! - [`risk`]: RiskService's verdict within a sub-deadline, `Unavailable` when it cannot answer.
//! - [`holders`]: account holders' status from UserService, cached briefly.
//! - [`service`]: the `courier.payments.v1.PaymentService` gRPC handlers.
//! - [`scopes`]: the scope each method needs when authentication is on.

#![warn(missing_docs)]
// tonic::Status is large, and it is what every handler returns; boxing it would only move the cost.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod holders;
#[allow(missing_docs)]
pub mod ledger;
pub mod model;
pub mod risk;
pub mod scopes;
pub mod service;

pub use config::PaymentsConfig;
pub use ledger::Ledger;
pub use service::PaymentsApi;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens the payments store (SQLite or PostgreSQL) and applies its migrations.
pub async fn open_store(config: &courier_kit::db::DbConfig) -> Result<sqlx::AnyPool, sqlx::Error> {
    courier_kit::db::open(config, &MIGRATOR).await
}
