//! What every courier service shares, and nothing that knows about users or payments.
//!
//! - [`server`]: one way to run a set of tonic services with health, reflection, limits, keepalive, an access log
//!   and graceful shutdown.
//! - [`layers`]: the tower layers that stack runs (concurrency limit, receive-size limit, access log).
//! - [`status`]: building rich `tonic::Status` values (`google.rpc.BadRequest`, `ResourceInfo`, `ErrorInfo`) in one
//!   place, so every service answers failures the same way.
//! - [`config`]: layered configuration (defaults < TOML file < `COURIER_*` environment < flags).
//! - [`db`]: opening the SQLite or PostgreSQL pool with durable settings and a service's migrations.
//! - [`time`]: microseconds in stores, `google.protobuf.Timestamp` on the wire.
//! - [`logging`]: `tracing` set-up, human or JSON.

#![warn(missing_docs)]

pub mod config;
pub mod db;
pub mod layers;
pub mod logging;
pub mod server;
pub mod status;
pub mod time;
