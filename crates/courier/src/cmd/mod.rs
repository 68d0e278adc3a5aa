//! The server-side subcommands.

pub mod ledger;
pub mod serve;
