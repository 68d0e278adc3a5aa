//! The server-side subcommands.

pub mod serve;
pub mod ledger;
