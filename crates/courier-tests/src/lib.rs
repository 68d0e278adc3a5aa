//! The harness for courier's integration tests: servers on `127.0.0.1:0`, ready when health says so, backed by a
//! fresh SQLite file or a fresh PostgreSQL schema.

#![allow(missing_docs)]

pub mod backend;
pub mod bearer;
pub mod grpc_web;
pub mod http;
pub mod server;

pub use backend::Backend;
pub use server::{TestOptions, TestServer};

pub mod logs;
pub mod metrics;
pub mod outbox;
pub mod payments;
pub mod process;
pub mod proxy;
