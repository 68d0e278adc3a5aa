//! The server-side subcommands.

pub mod auth;
pub mod bench;
pub mod dev;
pub mod ledger;
pub mod serve;
pub mod slo;
pub mod transport;
pub mod tyk;
